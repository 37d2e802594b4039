/* Who an authenticated user may send as (promise 2: no send-as abuse), inside the session core:
 * its own address, the aliases that reach it, and the shared mailboxes it is a member of; for
 * MAIL FROM and, with check_from, the From: header. Mail a member sends as a shared mailbox gets
 * a `Sender:` field naming the member (sender_header), added where the header section ends. */
#include "smtp/session_priv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "smtp/hdr.h"

enum tables_status txn_lookup(const struct smtp_session *s, const char *local, const char *domain,
                              char (*small)[TABLES_ADDR_MAX + 1], char (**big)[TABLES_ADDR_MAX + 1],
                              char (**boxes)[TABLES_ADDR_MAX + 1], size_t *n, char *fwd,
                              size_t fwdlen)
{
    *big = NULL;
    *boxes = small;
    enum tables_status st =
        tables_resolve(s->env->tables, local, domain, small, SMTP_SMALL_EXPANSION, n, fwd, fwdlen);
    if (st != TABLES_TOO_MANY)
        return st;
    *big = malloc(TABLES_MAX_EXPANSION * sizeof **big);
    if (!*big)
        return TABLES_TOO_MANY;
    *boxes = *big;
    return tables_resolve(s->env->tables, local, domain, *big, TABLES_MAX_EXPANSION, n, fwd,
                          fwdlen);
}

/* Is any mailbox local@domain resolves to one that ok() accepts? Routing characters and
 * address literals never resolve (promise 2). */
static bool reaches(const struct smtp_session *s, const char *local, const char *domain,
                    bool (*ok)(const struct smtp_session *s, const char *box))
{
    if (strpbrk(local, "%!@") || domain[0] == '[')
        return false;
    char small[SMTP_SMALL_EXPANSION][TABLES_ADDR_MAX + 1];
    char(*big)[TABLES_ADDR_MAX + 1], (*boxes)[TABLES_ADDR_MAX + 1];
    size_t n = 0;
    bool found = false;
    enum tables_status st = txn_lookup(s, local, domain, small, &big, &boxes, &n, NULL, 0);
    if (st == TABLES_OK || st == TABLES_FORWARD) /* a forwarded user still owns its aliases */
        for (size_t i = 0; i < n && !found; i++)
            found = ok(s, boxes[i]);
    free(big);
    return found;
}

/* The user's own mailbox, or a shared mailbox it is a member of. */
static bool own_box(const struct smtp_session *s, const char *box)
{
    return strcmp(box, s->auth_user) == 0 || tables_is_member(s->env->tables, box, s->auth_user);
}

static bool shared_box(const struct smtp_session *s, const char *box)
{
    return tables_is_shared(s->env->tables, box);
}

/* Does the authenticated user own local@domain: its own address, an alias that reaches it, or a
 * shared mailbox (or an alias reaching one) it is a member of? */
static bool owns_address(const struct smtp_session *s, const char *local, const char *domain)
{
    char addr[SMTP_LOCAL_MAX + SMTP_DOMAIN_MAX + 2];
    snprintf(addr, sizeof addr, "%s@%s", local, domain);
    return strcasecmp(addr, s->auth_user) == 0 || reaches(s, local, domain, own_box);
}

bool sendas_owns_sender(const struct smtp_session *s, const struct smtp_path *p)
{
    return p->null || owns_address(s, p->local, p->domain);
}

/* The addresses of the one From: field; -1 when there is not exactly one readable field. */
static int from_addresses(const struct smtp_session *s, char (*addrs)[HDR_ADDR_MAX + 1], int max)
{
    const struct smtp_data *d = &s->data;
    if (d->nfrom != 1 || d->from_overflow)
        return -1;
    int n = hdr_from_addresses(d->from, d->from_len, addrs, max);
    return n < 1 || n > max ? -1 : n;
}

bool sendas_owns_from(const struct smtp_session *s)
{
    char addrs[8][HDR_ADDR_MAX + 1];
    int n = from_addresses(s, addrs, 8);
    if (n < 0)
        return false;
    for (int i = 0; i < n; i++) {
        char *at = strrchr(addrs[i], '@');
        if (!at)
            return false;
        *at = '\0';
        if (!owns_address(s, addrs[i], at + 1))
            return false;
    }
    return true;
}

/* Does addr name a shared mailbox, itself or through an alias that reaches one? */
static bool names_shared(const struct smtp_session *s, const char *addr)
{
    char local[SMTP_LOCAL_MAX + 1];
    const char *at = strrchr(addr, '@');
    if (!at || (size_t)(at - addr) > SMTP_LOCAL_MAX)
        return false;
    memcpy(local, addr, (size_t)(at - addr));
    local[at - addr] = '\0';
    return reaches(s, local, at + 1, shared_box);
}

/* Is the message written as a shared mailbox: its envelope sender or an author in From:? */
static bool as_shared(const struct smtp_session *s)
{
    if (s->txn.from[0] && names_shared(s, s->txn.from))
        return true;
    char addrs[8][HDR_ADDR_MAX + 1];
    int n = from_addresses(s, addrs, 8);
    for (int i = 0; i < n; i++)
        if (names_shared(s, addrs[i]))
            return true;
    return false;
}

void sendas_arm(struct smtp_session *s)
{
    s->data.stop_at_header_end = s->env->sender_header && s->authenticated;
}

size_t sendas_reserve(const struct smtp_session *s)
{
    return s->data.in_header && s->env->sender_header && s->authenticated && !s->sender_added
               ? SMTP_SENDER_RESERVE
               : 0;
}

void sendas_header_end(struct smtp_session *s)
{
    if (s->sender_added || !s->authenticated || !s->env->sender_header || s->data.nsender != 0 ||
        smtp_data_failed(&s->data) || s->store_failed || !as_shared(s))
        return;
    char field[SMTP_SENDER_RESERVE];
    int n = snprintf(field, sizeof field, "Sender: %s%s", s->auth_user,
                     s->data.header_end_lf ? "\n" : "\r\n");
    if (n <= 0 || (size_t)n >= sizeof field || SMTP_CHUNK - s->chunk_len < (size_t)n)
        return; /* cannot happen: sendas_reserve kept the room */
    memcpy(s->chunk + s->chunk_len, field, (size_t)n);
    s->chunk_len += (size_t)n;
    s->sender_added = true;
}
