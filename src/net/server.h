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
    struct event *sig_term, *sig_int, *sig_hup, *drain_timer, *watch;
    SSL_CTX *tls_ctx;          /* from [tls]; NULL without a certificate; swapped on reload */
    struct sasl *sasl;         /* the AUTH mechanisms; NULL if GNU SASL could not start */
    struct throttle *throttle; /* failed AUTH per IP and per user */
    bool acl_busy, acl_again;  /* a dovecot-acl sync is on the pool; another is wanted after it */
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

/* server.c */
int server_run(struct conf *c, const int *fds, char *err, size_t errlen);

#endif
