/* A session's ties to the outbound queue (relay/queue.h): which domains tern relays for, ETRN
 * starting their delivery, and TURN handing the connection itself to the queue manager, which
 * then delivers that mail to the peer over it (RFC 821 4.1.1; RFC 2645 says why only an
 * authenticated client may ask). */
#include "net/conn_priv.h"

#include <event2/bufferevent.h>
#include <stdio.h>

#include "relay/queue.h"
#include "util/log.h"

bool conn_relay_domain(void *ctx, const char *domain)
{
    struct conn *c = ctx;
    return conf_relay_domain(c->conf, domain);
}

int conn_etrn(void *ctx, const char *node, bool subdomains, char *text, size_t textlen)
{
    struct conn *c = ctx;
    int n = relay_queue_etrn(c->srv->relay, node, subdomains);
    if (n < 0)
        return 458; /* the queue cannot start a run now (stopping, or too many waiting) */
    log_info("ETRN %s%s from %s: delivery started", subdomains ? "@" : "", node, c->ip);
    (void)text;
    (void)textlen;
    return 250;
}

void conn_turn(struct conn *c, const struct smtp_request *q)
{
    struct bufferevent *bev = c->bev;
    c->bev = NULL;
    c->turned = true;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    bufferevent_set_timeouts(bev, NULL, NULL);
    log_info("TURN from %s port %d: roles reversed, delivering %zu domain%s to it", c->ip, c->port,
             q->nturn, q->nturn == 1 ? "" : "s");
    relay_queue_turn(c->srv->relay, bev, q->turn_domains, q->nturn, c->ip);
}
