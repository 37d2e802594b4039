/* ternd's control socket, DATA_DIR/audit/control: the way `tern` gets an admin record into the
 * audit log while ternd holds the log's writer lock. The protocol is one request line from the
 * client and one reply line from ternd, then ternd closes:
 *
 *   client:  {"command":"user add","args":["alice@example.org"],"result":"ok"}\n
 *   ternd:   ok SEQ\n          the record is in the log and durable (its seq)
 *            error REASON\n    nothing was recorded, and why
 *
 * Or a poke of the outbound queue after `tern queue` changed the spool itself:
 *
 *   client:  {"queue":"flush"|"delete"|"hold"|"release","id":"ID"}\n   (no id: flush all)
 *   ternd:   ok\n              the queue manager looks again (relay_queue_poke)
 *
 * The Unix user is never the client's word: ternd takes the uid from SO_PEERCRED and the
 * name from the password database. The request's parsing is a pure function here too, so that
 * `tern` writing the log itself (ternd not running) makes the very same record. */
#ifndef TERN_NET_CONTROL_H
#define TERN_NET_CONTROL_H

#include <jansson.h>
#include <stddef.h>

#define CONTROL_SOCKET_NAME "control" /* in DATA_DIR/audit */
#define CONTROL_LINE_MAX 16384        /* bytes of a request, its newline included */
#define CONTROL_ARGS_MAX 64           /* args kept in a record; more are summed up in the last */
#define CONTROL_CLIENTS_MAX 32        /* control clients at once; more are told to retry */
#define CONTROL_TIMEOUT_SECONDS 5     /* for the whole request line */
#define CONTROL_REPLY_MAX 1024        /* bytes of a reply line, its newline included */

struct server;

/* With the audit log open (srv->audit), listens on DATA_DIR/audit/control (a stale socket
 * left by a crash is replaced; mode 0600, so only ternd's user and root can connect) and
 * serves it on srv->base, appending and syncing each record on srv->pool. Without the log it
 * does nothing. 0, or -1 with a reason that says what to do. */
int control_open(struct server *srv, char *err, size_t errlen);

/* Stops listening, removes the socket and drops the clients (one whose record is on the pool
 * still gets its reply when the job is done). Safe to call before or after the pool is freed,
 * and more than once. */
void control_close(struct server *srv);

/* The fields of an admin record, in their order: unix_user, uid, command, args, result, from
 * one request line (len bytes, without its newline) and the peer's uid and user name (NULL or
 * "" when the uid has none: then unix_user is ""). command and result must be non-empty
 * strings and args, if present, an array of strings; strings are bounded as audit_str bounds
 * them and args to CONTROL_ARGS_MAX. NULL with a reason when the line is not such a request
 * (or memory ran out). Pure: no I/O, any bytes are safe. */
json_t *control_admin_fields(const char *line, size_t len, unsigned long uid, const char *unix_user,
                             char *err, size_t errlen);

#endif
