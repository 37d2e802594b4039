/* Finds and rewrites lines of the mailboxes file (see mboxline.h). A rewritten line keeps its
 * indentation, its name and members as written, its comment and its line end: only the member
 * list or the quota= word the edit is about changes, so that an admin's layout survives. */
#include "conf/mboxline.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void mbox_fail(struct mboxfile_err *e, enum mboxfile_fail f, const char *fmt, ...)
{
    e->fail = f;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
}

void mboxfile_format_size(uint64_t bytes, char *out, size_t outlen)
{
    static const char units[] = "GMK";
    for (int i = 0; i < 3; i++) {
        uint64_t unit = (uint64_t)1 << (10 * (3 - i));
        if (bytes && bytes % unit == 0) {
            snprintf(out, outlen, "%llu%c", (unsigned long long)(bytes / unit), units[i]);
            return;
        }
    }
    snprintf(out, outlen, "%llu", (unsigned long long)bytes);
}

/* A member (as written, len bytes) as lowercased local@domain, a bare one in domain. */
void mbox_norm_member(const char *m, size_t len, const char *domain, char *out)
{
    size_t dl = strlen(domain);
    if (len > TABLES_ADDR_MAX)
        len = TABLES_ADDR_MAX;
    memcpy(out, m, len);
    out[len] = '\0';
    conf_lowercase(out);
    if (!memchr(m, '@', len) && len + 1 + dl <= TABLES_ADDR_MAX) {
        out[len] = '@';
        memcpy(out + len + 1, domain, dl + 1);
    }
}

/* The line of a shared mailbox: [start, next) the whole line with its line end; inside it the
 * member list after the colon is [list, list_end), and what follows it, blanks and a comment,
 * runs to the line's end. Cut the way the loader cuts. */
struct line {
    size_t start, next;
    size_t list, list_end;
};

/* Finds the line of shared mailbox addr (lowercased). 1 found, 0 not. */
static int find_box(const struct editfile_buf *b, const char *addr, struct line *out)
{
    size_t alen = strlen(addr);
    struct editfile_line l;
    for (size_t pos = 0; editfile_next_line(b, &pos, &l);) {
        size_t cut = l.tail; /* a comment: '#' after a blank */
        for (size_t p = l.lead + 1; p < l.tail; p++)
            if (b->p[p] == '#' && editfile_is_blank(b->p[p - 1])) {
                cut = p;
                break;
            }
        const char *colon = memchr(b->p + l.lead, ':', cut - l.lead);
        if (!colon)
            continue;
        size_t list = (size_t)(colon - b->p) + 1, name_end = list - 1, list_end = cut;
        while (name_end > l.lead && editfile_is_blank(b->p[name_end - 1]))
            name_end--;
        while (list_end > list && editfile_is_blank(b->p[list_end - 1]))
            list_end--;
        if (name_end - l.lead == alen && strncasecmp(b->p + l.lead, addr, alen) == 0) {
            *out = (struct line){l.start, l.next, list, list_end};
            return 1;
        }
    }
    return 0;
}

/* A word of a member list: [off, off + len) in the file. */
struct word {
    size_t off, len;
    bool quota;
    char norm[TABLES_ADDR_MAX + 1]; /* members: lowercased local@domain */
};

/* Splits l's member list into words the way the loader's strtok does. *words is malloc'd. */
static int split_words(const struct editfile_buf *b, const struct line *l, const char *domain,
                       struct word **words, size_t *n)
{
    size_t cap = 8;
    *n = 0;
    *words = malloc(cap * sizeof(**words));
    if (!*words)
        return -1;
    for (size_t p = l->list; p < l->list_end;) {
        while (p < l->list_end && (b->p[p] == ',' || editfile_is_blank(b->p[p])))
            p++;
        size_t q = p;
        while (q < l->list_end && b->p[q] != ',' && !editfile_is_blank(b->p[q]))
            q++;
        if (q == p)
            break;
        if (*n == cap) {
            struct word *nw = realloc(*words, cap * 2 * sizeof(**words));
            if (!nw)
                return -1;
            *words = nw;
            cap *= 2;
        }
        struct word *w = &(*words)[(*n)++];
        w->off = p;
        w->len = q - p;
        w->quota = w->len >= 6 && strncasecmp(b->p + p, "quota=", 6) == 0;
        mbox_norm_member(b->p + p, w->len, domain, w->norm);
        p = q;
    }
    return 0;
}

/* The new member list and quota word of line l into out, in place of the old ones. */
static int rewrite_line(const struct editfile_buf *b, const struct line *l, struct mbox_edit *ed,
                        struct editfile_buf *out, struct mboxfile_err *e)
{
    const char *domain = strchr(ed->addr, '@') + 1;
    struct word *w = NULL;
    size_t nw = 0;
    int r = -1;
    if (split_words(b, l, domain, &w, &nw) < 0)
        goto done;
    bool *drop = calloc(nw + 1, sizeof(*drop));
    bool *add = calloc(ed->n + 1, sizeof(*add));
    if (!drop || !add) {
        free(drop);
        free(add);
        goto done;
    }
    size_t kept = 0, have_quota = 0;
    uint64_t old_quota = 0;
    for (size_t i = 0; i < nw; i++) {
        if (w[i].quota) {
            have_quota++;
            char v[32];
            snprintf(v, sizeof(v), "%.*s", (int)(w[i].len - 6), b->p + w[i].off + 6);
            if (conf_parse_size(v, &old_quota) < 0)
                old_quota = UINT64_MAX; /* the loader refuses it: a new value fixes it */
        }
    }
    ed->changed = false;
    if (ed->op == MBOX_ADD_MEMBERS) {
        for (size_t k = 0; k < ed->n; k++) {
            add[k] = true;
            for (size_t i = 0; i < nw && add[k]; i++)
                add[k] = w[i].quota || strcmp(w[i].norm, ed->norm[k]) != 0;
            for (size_t j = 0; j < k && add[k]; j++)
                add[k] = !add[j] || strcmp(ed->norm[j], ed->norm[k]) != 0;
            ed->changed |= add[k];
        }
    } else if (ed->op == MBOX_DEL_MEMBERS) {
        for (size_t k = 0; k < ed->n; k++) {
            bool found = false;
            for (size_t i = 0; i < nw; i++)
                if (!w[i].quota && strcmp(w[i].norm, ed->norm[k]) == 0)
                    found = drop[i] = true;
            if (!found) {
                mbox_fail(e, MBOXFILE_BAD,
                          "%s is not a member of %s; tern mailbox members %s lists who is",
                          ed->norm[k], ed->addr, ed->addr);
                goto free_all;
            }
        }
        for (size_t i = 0; i < nw; i++)
            kept += !w[i].quota && !drop[i];
        if (kept == 0) {
            mbox_fail(e, MBOXFILE_BAD,
                      "that would leave %s without members; remove the mailbox itself with tern "
                      "mailbox del %s",
                      ed->addr, ed->addr);
            goto free_all;
        }
        ed->changed = true;
    } else { /* MBOX_QUOTA */
        ed->changed = ed->quota ? have_quota != 1 || old_quota != ed->quota : have_quota > 0;
        for (size_t i = 0; i < nw; i++)
            drop[i] = w[i].quota;
    }
    r = 0;
    if (!ed->changed)
        goto free_all;
    /* Everything up to the list stays. Each word kept stays in its place with the separator
     * before it (the first one kept takes the list's first separator), a new quota takes the old
     * one's place, new members and a first quota come last; then what followed the list (its
     * comment) and the rest of the file. */
    char size[32] = "";
    bool want_quota = ed->op == MBOX_QUOTA && ed->quota;
    if (want_quota)
        mboxfile_format_size(ed->quota, size, sizeof(size));
    r = editfile_buf_add(out, b->p, l->list);
    bool first = true;
    for (size_t i = 0; i < nw && !r; i++) {
        bool swap = want_quota && w[i].quota;
        if (drop[i] && !swap)
            continue;
        size_t from = first ? l->list : w[i - 1].off + w[i - 1].len;
        size_t to = first ? w[0].off : w[i].off;
        r = editfile_buf_add(out, b->p + from, to - from);
        if (!r && swap)
            r = editfile_buf_str(out, "quota=") || editfile_buf_str(out, size);
        else if (!r)
            r = editfile_buf_add(out, b->p + w[i].off, w[i].len);
        want_quota = want_quota && !swap;
        first = false;
    }
    for (size_t k = 0; k < ed->n && !r && ed->op == MBOX_ADD_MEMBERS; k++)
        if (add[k]) {
            r = editfile_buf_str(out, first ? " " : ", ") || editfile_buf_str(out, ed->members[k]);
            first = false;
        }
    if (!r && want_quota)
        r = editfile_buf_str(out, " quota=") || editfile_buf_str(out, size);
    if (!r)
        r = editfile_buf_add(out, b->p + l->list_end, b->len - l->list_end);
free_all:
    free(drop);
    free(add);
done:
    free(w);
    if (r != 0 && e->fail == MBOXFILE_OK)
        mbox_fail(e, MBOXFILE_IO, "out of memory editing the mailboxes file");
    return r ? -1 : 0;
}

int mbox_apply(const struct editfile_buf *b, struct mbox_edit *ed, struct editfile_buf *out,
               struct mboxfile_err *e)
{
    struct line l;
    int found = find_box(b, ed->addr, &l);
    ed->changed = true;
    if (ed->op == MBOX_ADD) {
        if (found) {
            mbox_fail(e, MBOXFILE_BAD,
                      "%s is a shared mailbox already; change its members with tern mailbox "
                      "add-member or del-member",
                      ed->addr);
            return -1;
        }
        bool nl = b->len > 0 && b->p[b->len - 1] != '\n';
        int r = (b->len == 0 && editfile_buf_str(out, MBOXFILE_HEADER)) ||
                editfile_buf_add(out, b->p, b->len) || (nl && editfile_buf_str(out, "\n")) ||
                editfile_buf_str(out, ed->addr) || editfile_buf_str(out, ":");
        for (size_t k = 0; k < ed->n && !r; k++) {
            bool again = false; /* the same member twice, written either way: once is enough */
            for (size_t j = 0; j < k && !again; j++)
                again = strcmp(ed->norm[j], ed->norm[k]) == 0;
            if (!again)
                r = editfile_buf_str(out, k ? ", " : " ") || editfile_buf_str(out, ed->members[k]);
        }
        if (!r && ed->quota) {
            char size[32];
            mboxfile_format_size(ed->quota, size, sizeof(size));
            r = editfile_buf_str(out, " quota=") || editfile_buf_str(out, size);
        }
        if (r || editfile_buf_str(out, "\n")) {
            mbox_fail(e, MBOXFILE_IO, "out of memory editing the mailboxes file");
            return -1;
        }
        return 0;
    }
    if (!found) {
        mbox_fail(e, MBOXFILE_NOBOX,
                  "%s is not a shared mailbox; tern mailbox list shows which are", ed->addr);
        return -1;
    }
    if (ed->op == MBOX_DELETE) {
        if (editfile_buf_add(out, b->p, l.start) ||
            editfile_buf_add(out, b->p + l.next, b->len - l.next)) {
            mbox_fail(e, MBOXFILE_IO, "out of memory editing the mailboxes file");
            return -1;
        }
        return 0;
    }
    return rewrite_line(b, &l, ed, out, e);
}
