/* ternd's terminals (RFC 821 3.4): the registry of live watchers, each a connection to which
 * terminal messages are written, several per user. A watcher comes from the local socket
 * DATA_DIR/watch (watch_sock.c) or from XWATCH on a submission connection (conn_term.c); the
 * registry does not care which: it holds the connection's bufferevent, writes frames to it, and
 * keeps every watcher bounded. A watcher that does not read loses messages once
 * WATCH_OUT_MAX octets wait for it; it never blocks ternd or makes it grow. Everything here
 * runs on the loop. */
#ifndef TERN_NET_WATCH_H
#define TERN_NET_WATCH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "policy/tables.h"

#define WATCH_MAX 1024    /* watchers in all */
#define WATCH_PER_USER 16 /* watchers of one user */
#define WATCH_OUT_MAX                                                                              \
    (2u << 20) /* octets waiting for one watcher: a message that would pass                        \
                  it is dropped for that watcher ([terminal] max_size is at                        \
                  most 1M, so one message always fits an idle watcher) */

struct server;
struct bufferevent;
struct watcher;

enum watch_via { WATCH_SOCKET, WATCH_XWATCH };

/* Why user (lowercased user@domain) cannot have a terminal under t, or NULL when it can: a
 * user with a mailbox here, not locked, not forwarded or moved, not a shared mailbox. */
const char *watch_unfit(const struct tables *t, const char *user);

/* Registers bev as a terminal of user. The caller owns bev and calls watch_remove before it
 * frees it; kick(owner, why) is how the registry asks it to end the watch (after a reload
 * that took the user away). fields (stolen) identify the watcher in the audit records: the
 * session, or the uid and pid. Records the "watch" event. NULL with a reason (the limits). */
struct watcher *watch_add(struct server *srv, const char *user, struct bufferevent *bev,
                          enum watch_via via, void (*kick)(void *owner, const char *why),
                          void *owner, json_t *fields, char *err, size_t errlen);

/* Unregisters x and records the "watch_end" event with why ("quit", "closed", ...). */
void watch_remove(struct server *srv, struct watcher *x, const char *why);

/* Has user a live terminal? */
bool watch_live(const struct server *srv, const char *user);

/* Writes frame (len octets) to every terminal of user that has room for it. Returns how many
 * took it; *dropped: how many had no room. */
size_t watch_write(struct server *srv, const char *user, const char *frame, size_t len,
                   size_t *dropped);

/* After a reload: every watcher whose user can no longer have a terminal is kicked. */
void watch_recheck(struct server *srv, const struct tables *t);

/* Records a refused watch ("watch" with result "fail"). fields stolen, as for watch_add. */
void watch_audit_refused(struct server *srv, enum watch_via via, const char *user, json_t *fields,
                         const char *why);

/* At exit: the registry must be empty by now (the owners removed their watchers). */
void watch_free_all(struct server *srv);

#endif
