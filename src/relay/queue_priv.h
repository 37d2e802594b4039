/* The queue manager's state, shared by queue.c (entries: scanning the spool, scheduling, what
 * becomes of an entry after an attempt), queue_out.c (destinations and their SMTP connections,
 * TURN) and queue_job.c (the work done on the pool: local delivery, reports, saving state).
 * Internal to src/relay/. */
#ifndef TERN_RELAY_QUEUE_PRIV_H
#define TERN_RELAY_QUEUE_PRIV_H

#include "relay/queue.h"

#include <limits.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <time.h>

#include "conf/config.h"
#include "relay/dns.h"
#include "relay/smtpout.h"
#include "store/spool_state.h"

#define RQ_MAX_ENTRIES 10000 /* entries in memory at once; a bigger queue waits for later scans */
#define RQ_SCAN_SECONDS 60   /* the spool is read again at least this often */
#define RQ_DSN_HEAD_MAX (64u << 10) /* bytes of the original read for a report */

struct rq_dest;

/* One spool entry being delivered (from the moment a scan finds it due until its new state is
 * saved or it is removed). */
struct rq_entry {
    struct rq_entry *next;
    struct spool_entry e;
    struct spool_state st;
    bool *fresh_fail; /* per recipient: failed in this attempt (to be reported) */
    unsigned busy;    /* units in flight */
    bool finishing;   /* its end-of-attempt job is on the pool */
};

/* The recipients of one entry that go to one destination in one transaction. */
struct rq_unit {
    struct rq_unit *next;
    struct rq_entry *ent;
    size_t n;
    size_t idx[]; /* recipient indexes in ent */
};

/* One outbound connection (or a TURN). */
struct rq_conn {
    struct rq_conn *next;
    struct relay_queue *q;
    struct rq_dest *d; /* NULL for a TURN */
    struct smtpout *so;
    size_t addr;         /* the address being tried, in d->route */
    bool plain_retry;    /* retrying this address without TLS after a failed handshake */
    struct rq_unit *cur; /* the unit being sent */
    int fd;              /* cur's message file */
    char last_err[512];
    /* a TURN: the connection handed over, the domains it may take, its own units */
    struct bufferevent *bev;
    char (*turn_domains)[256];
    size_t nturn;
    char peer[128];
    struct rq_unit *turn_units;
};

enum rq_route_state { ROUTE_NONE, ROUTE_PENDING, ROUTE_OK, ROUTE_FAILED };

struct rq_dest {
    struct rq_dest *next;
    struct relay_queue *q;
    char key[600];  /* what makes it one destination */
    char name[300]; /* for messages: the domain or the next hop */
    bool local;     /* local Maildirs: units go to the pool */
    bool relayhost; /* the relayhost: its TLS level and credentials */
    bool mx;        /* look up MX records of name */
    unsigned port;
    struct rq_unit *units, **tail;
    size_t nunits, nconns;
    size_t nfree; /* connections without a unit (connecting or between messages) */
    enum rq_route_state rstate;
    struct relay_route route;
    char route_err[512];
    int route_code; /* 0 temporary; 550/556 permanent */
    struct relay_dns_query *query;
};

struct relay_queue {
    struct event_base *base;
    struct pool *pool;
    struct conf *conf;
    void (*audit)(void *arg, const char *event, json_t *fields);
    void *audit_arg;
    struct relay_dns *dns;
    SSL_CTX *ssl;
    struct event *timer;
    struct rq_entry *entries;
    size_t nentries;
    struct rq_dest *dests;
    struct rq_conn *conns;
    size_t nconns;
    bool scanning, rescan, stopping;
    /* ETRN domains waiting for the scan in flight (or the next) to make their entries due */
    char etrn[16][256];
    bool etrn_sub[16];
    size_t netrn;
    struct rq_conn *turn_wait; /* TURNs waiting for a scan, linked through next */
};

/* queue.c */
struct rq_entry *rq_find(struct relay_queue *q, const char *id);
void rq_entry_free(struct relay_queue *q, struct rq_entry *ent);
/* The results of one unit (rcpts[k] for ent recipient idx[k]), from remote (for the state) and
 * tls (for the audit log). Frees the unit; finishes the entry when it was its last. */
void rq_unit_done(struct relay_queue *q, struct rq_unit *u, const struct smtpout_reply *r,
                  const char *remote, const char *tls);
/* Every recipient of u gets the same reply (a destination that failed as a whole). */
void rq_unit_fail_all(struct relay_queue *q, struct rq_unit *u, int code, const char *enh,
                      const char *text, const char *remote);
/* A message's domain part, lowercased, into out. */
void rq_domain(const char *addr, char *out, size_t outlen);
/* Schedules every pending recipient of ent (not busy) into its destination's units. */
void rq_schedule(struct relay_queue *q, struct rq_entry *ent);
/* Reads the whole spool again (soon): due entries, ETRN domains and waiting TURNs. */
void rq_scan(struct relay_queue *q);

/* queue_out.c */
void rq_dest_add(struct relay_queue *q, struct rq_unit *u, const char *domain);
void rq_dest_run(struct relay_queue *q, struct rq_dest *d);
void rq_turn_start(struct relay_queue *q, struct rq_conn *t);
void rq_out_stop(struct relay_queue *q);

/* queue_job.c: pool work */
void rq_local_deliver(struct relay_queue *q, struct rq_unit *u);
/* The end of an attempt for ent (its units all done): reports, then remove or save state. */
void rq_finish(struct relay_queue *q, struct rq_entry *ent);

#endif
