/* The daemon's running state and its three parts: listening sockets (listen.c, bound before
 * privileges are dropped), connections (conn.c: bytes between a socket and a protocol core, the
 * store requests, timeouts and limits), and the server (server.c: accept, signals, reload,
 * drain). Everything here runs on the one event-loop thread. */
#ifndef TERN_NET_SERVER_H
#define TERN_NET_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "conf/config.h"

struct event_base;
struct event;
struct evconnlistener;
struct pool;
struct conn;
struct sasl;
struct throttle;
struct relay_queue;
typedef struct ssl_ctx_st SSL_CTX;

struct server {
    struct event_base *base;
    struct conf *conf; /* the current configuration; connections hold their own reference */
    struct pool *pool;
    struct evconnlistener *listeners[CONF_MAX_LISTENERS];
    enum conf_listener_kind kinds[CONF_MAX_LISTENERS];
    size_t nlisteners;
    struct conn *conns; /* all open connections, a doubly-linked list */
    size_t nconns;
    bool draining;
    const char *stop_reason; /* for the audit log's stop record */
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer, *watch;
    SSL_CTX *tls_ctx;            /* from [tls]; NULL without a certificate; swapped on reload */
    struct sasl *sasl;           /* the AUTH mechanisms; NULL if GNU SASL could not start */
    struct throttle *throttle;   /* failed AUTH per IP and per user */
    bool acl_busy, acl_again;    /* a dovecot-acl sync is on the pool; another is wanted after it */
    struct audit *audit;         /* DATA_DIR/audit, NULL when [audit] enabled = no */
    char session_prefix[16];     /* the first half of every session id: ternd's start */
    unsigned long long sessions; /* the second half: a counter */
    bool audit_busy;             /* audit maintenance is on the pool */
    struct event *audit_timer, *sig_usr1;
    int control_fd; /* DATA_DIR/audit/control, -1 when closed (net/control.c) */
    struct event *control_ev;
    struct relay_queue *relay; /* the outbound queue manager (relay/queue.h); NULL: none */
    struct watcher *watchers;  /* the live terminals (net/watch.h) */
    size_t nwatchers;
    int watch_busy; /* a loop over watchers runs: removals wait for its end */
    struct file_stamp {
        long long mtime_ns, size, ino;
    } stamps[4]; /* config, users, aliases, mailboxes */
};

/* listen.c: binds every listener of c. fds[i] matches c->listeners[i]. 0, or -1 with a reason
 * (already formatted for the administrator) in err. */
int listen_open(const struct conf *c, int *fds, char *err, size_t errlen);

/* conn.c */
void conn_accept(struct server *srv, int fd, const struct sockaddr *sa, socklen_t salen,
                 enum conf_listener_kind kind);
/* SIGTERM: idle connections get 421 now, busy ones when their message is done. */
void conn_drain_all(struct server *srv, bool force);
void conn_free_all(struct server *srv);

/* audit_srv.c: the daemon's audit log. srv_audit appends one record (fields stolen; NULL for
 * none) and logs a failure; a no-op without a log. */
#include <jansson.h>
int srv_audit_open(struct server *srv, char *err, size_t errlen);
void srv_audit(struct server *srv, const char *event, json_t *fields);
/* sha: the hex SHA-256 of the configuration bytes the reload read (conf_load_sha256). */
void srv_audit_reload(struct server *srv, const char *sha, bool ok, const char *error);
void srv_audit_close(struct server *srv, const char *reason);
void srv_session_id(struct server *srv, char *out, size_t outlen);

/* server.c */
int server_run(struct conf *c, const int *fds, char *err, size_t errlen);

#endif
