/* The queue manager inside ternd: it delivers what waits in DATA_DIR/spool/queue/ to other
 * servers (MX lookup through relay/dns.c, the SMTP client of relay/smtpout.c on the event loop),
 * or into local Maildirs (bounces and forwards to local users), retries temporary failures on a
 * backoff schedule, and queues an RFC 3464 report to the sender for permanent failures, expiry
 * and long delays (relay/dsn.c). An entry leaves the spool only after every recipient got a
 * final answer and any report about it is itself queued: kill -9 at any moment loses nothing,
 * and at worst a recipient gets a message twice. Everything here runs on the loop's thread;
 * file work goes to the worker pool. */
#ifndef TERN_RELAY_QUEUE_H
#define TERN_RELAY_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

struct event_base;
struct bufferevent;
struct pool;
struct conf;
struct relay_queue;

struct relay_queue_opts {
    struct event_base *base;
    struct pool *pool;
    struct conf *conf; /* referenced; relay_queue_set_conf swaps it on reload */
    /* Told of each delivery attempt, bounce and expiry (fields stolen). NULL: nobody. */
    void (*audit)(void *arg, const char *event, json_t *fields);
    void *audit_arg;
};

/* Starts the manager (resolver, TLS client context, the first scan of the spool). NULL with a
 * reason the administrator can act on. */
struct relay_queue *relay_queue_new(const struct relay_queue_opts *o, char *err, size_t errlen);
void relay_queue_set_conf(struct relay_queue *q, struct conf *c);

/* Something changed in the spool: verb "new" (ternd queued id), or an admin's "flush" (id NULL:
 * everything), "delete", "hold", "release". The manager looks again; flush also makes the
 * entries due now. A NULL q is a no-op (no manager: ternd is starting or stopping). */
void relay_queue_poke(struct relay_queue *q, const char *verb, const char *id);

/* ETRN: starts a delivery attempt now for everything queued to domain (and its subdomains when
 * subdomains is set). Returns the number of entries queued for it as far as the manager knows
 * now (a scan may find more), or -1 when the manager cannot start one (stopping). */
int relay_queue_etrn(struct relay_queue *q, const char *domain, bool subdomains);

/* TURN: bev is a connection whose peer was just told 250 to TURN; the manager owns it from now
 * on, waits for the peer's greeting and delivers over it everything queued to domains, then
 * QUITs and closes it. peer names it in logs. */
void relay_queue_turn(struct relay_queue *q, struct bufferevent *bev, const char *const *domains,
                      size_t ndomains, const char *peer);

/* Stops delivering: closes connections, cancels lookups. Jobs still on the pool finish and do
 * nothing more; call before pool_free, then relay_queue_free after it. */
void relay_queue_stop(struct relay_queue *q);
void relay_queue_free(struct relay_queue *q);

#endif
