/* `tern audit show` and `tern audit trace`: reading records back and picking the ones asked
 * for. Neither verifies (verify does): a line that is no record is skipped and counted, and
 * the count is reported, so that a damaged log can still be read.
 *
 * Sessions: records of one SMTP session carry the same `session`, from its connect record to
 * its disconnect. A session is told apart from a later one that reuses its id by the seq of
 * its connect (a "session instance"), so an id that ternd hands out again after a restart
 * does not join two sessions. --user, --ip and --message-id pick sessions: a record is shown
 * when a record of its session instance matched (so `--user alice` shows the connect, HELO,
 * MAIL and RCPT around alice's AUTH, not only the AUTH); a record outside any session must
 * match itself. That takes two passes over the files, the first only remembering the session
 * instances that matched. The other filters apply to each record alone, and all combine with
 * AND. trace is the same first pass on one Message-ID, printing each session it found whole. */
#include "cli/audit.h"
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define INSTANCE_MAX (AUDIT_LINE_MAX + 32)

enum who { W_USER = 1, W_IP = 2, W_MSGID = 4 };

/* Called for each record read; non-zero stops the reading with that exit status. */
typedef int (*record_fn)(void *arg, const struct audit_record *rec, const char *line, size_t len);

struct reader {
    const struct acli *o;
    record_fn fn;
    void *arg;
    char *line; /* the line being assembled, AUDIT_LINE_MAX bytes */
    size_t len;
    bool overlong;
    const char *file;
    uint64_t lineno;
    uint64_t records, skipped;
    char skip_where[PATH_MAX + 32], skip_why[160]; /* the first line skipped */
};

/* One line, complete when it ended in a newline. 0, or the callback's exit status. */
static int take_line(struct reader *r, bool complete)
{
    char why[160] = "";
    r->lineno++;
    if (!complete)
        snprintf(why, sizeof(why), "the file ends inside a line");
    else if (r->overlong)
        snprintf(why, sizeof(why), "longer than a record may be");
    for (size_t i = 0; !why[0] && i < r->len; i++)
        /* The writer's lines are ASCII without controls (jansson leaves DEL as it is). */
        if ((unsigned char)r->line[i] < 0x20 || (unsigned char)r->line[i] > 0x7f)
            snprintf(why, sizeof(why), "a byte 0x%02x no record has", (unsigned char)r->line[i]);
    struct audit_record rec;
    if (!why[0] && audit_record_parse(r->line, r->len, &rec, true, why, sizeof(why)) == 0) {
        r->records++;
        int rc = r->fn(r->arg, &rec, r->line, r->len);
        audit_record_release(&rec);
        return rc;
    }
    if (r->skipped++ == 0) {
        snprintf(r->skip_where, sizeof(r->skip_where), "%s:%llu", r->file,
                 (unsigned long long)r->lineno);
        snprintf(r->skip_why, sizeof(r->skip_why), "%s", why[0] ? why : "not a record");
    }
    return 0;
}

static int read_file(struct reader *r, const char *path, char *chunk)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        int e = errno;
        fprintf(stderr, "tern audit %s: cannot open %s: %s%s\n", r->o->sub, path, strerror(e),
                e == EACCES ? "; run as root or as the user ternd runs as" : "");
        return EX_NOINPUT;
    }
    r->file = path;
    r->lineno = 0;
    r->len = 0;
    r->overlong = false;
    int rc = 0;
    for (;;) {
        ssize_t got = read(fd, chunk, READ_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            fprintf(stderr, "tern audit %s: cannot read %s: %s\n", r->o->sub, path,
                    strerror(errno));
            rc = EX_IOERR;
            break;
        }
        if (got == 0)
            break;
        for (const char *p = chunk, *end = chunk + got; p < end && rc == 0;) {
            const char *nl = memchr(p, '\n', (size_t)(end - p));
            size_t take = (size_t)((nl ? nl : end) - p);
            if (r->len + take < AUDIT_LINE_MAX) {
                memcpy(r->line + r->len, p, take);
                r->len += take;
            } else {
                r->overlong = true;
            }
            p += take;
            if (nl) {
                rc = take_line(r, true);
                r->len = 0;
                r->overlong = false;
                p++;
            }
        }
        if (rc)
            break;
    }
    if (rc == 0 && (r->len || r->overlong))
        rc = take_line(r, false);
    close(fd);
    return rc;
}

/* Reads every file of o in order, handing each record to fn. 0, or an exit status: EX_OSERR
 * (out of memory, for the caller to say), or another with the reason printed. */
static int scan(const struct acli *o, struct reader *r, record_fn fn, void *arg)
{
    memset(r, 0, sizeof(*r));
    r->o = o;
    r->fn = fn;
    r->arg = arg;
    r->line = malloc(AUDIT_LINE_MAX);
    char *chunk = malloc(READ_CHUNK);
    int rc = 0;
    if (!r->line || !chunk)
        rc = EX_OSERR; /* said by the caller, as for the callbacks' */
    for (size_t i = 0; rc == 0 && i < o->nfiles; i++)
        rc = read_file(r, o->files[i], chunk);
    free(chunk);
    free(r->line);
    r->line = NULL;
    return rc;
}

static void report_skipped(const struct reader *r)
{
    if (r->skipped)
        fprintf(stderr,
                "tern audit %s: skipped %llu line%s that %s no record (the first at %s: %s); "
                "tern audit verify says what happened to the log\n",
                r->o->sub, (unsigned long long)r->skipped, r->skipped == 1 ? "" : "s",
                r->skipped == 1 ? "is" : "are", r->skip_where, r->skip_why);
}

/* ---- sessions and filters ------------------------------------------------------------------ */

struct sessions {
    json_t *open;    /* session key -> seq of its connect, for the sessions open at this point */
    json_t *matched; /* instance key -> enum who bits its records matched */
    char *inst;      /* the current record's instance key: "CONNECTSEQ:SESSION" */
    size_t inst_len;
};

static int sessions_init(struct sessions *s)
{
    s->open = json_object();
    s->matched = json_object();
    s->inst = malloc(INSTANCE_MAX);
    return s->open && s->matched && s->inst ? 0 : -1;
}

static void sessions_free(struct sessions *s)
{
    json_decref(s->open);
    json_decref(s->matched);
    free(s->inst);
}

/* Follows connects and disconnects; the instance of rec, or NULL when it has no session. */
static const char *track(struct sessions *s, const struct audit_record *rec)
{
    char num[32];
    size_t klen;
    const char *key = acli_session_key(rec->obj, num, sizeof(num), &klen);
    if (!key)
        return NULL;
    if (strcmp(rec->event, "connect") == 0)
        json_object_setn_new_nocheck(s->open, key, klen, json_integer((json_int_t)rec->seq));
    json_t *c = json_object_getn(s->open, key, klen);
    int n = snprintf(s->inst, INSTANCE_MAX,
                     "%llu:", (unsigned long long)(c ? json_integer_value(c) : 0));
    if (klen > INSTANCE_MAX - (size_t)n)
        klen = INSTANCE_MAX - (size_t)n;
    memcpy(s->inst + n, key, klen);
    s->inst_len = (size_t)n + klen;
    if (strcmp(rec->event, "disconnect") == 0)
        json_object_deln(s->open, key, klen);
    return s->inst;
}

static bool equal_nocase(const char *a, size_t alen, const char *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++)
        if (tolower((unsigned char)a[i]) != tolower((unsigned char)b[i]))
            return false;
    return true;
}

static bool field_nocase(json_t *obj, const char *name, const char *want)
{
    json_t *v = json_object_get(obj, name);
    return json_is_string(v) &&
           equal_nocase(json_string_value(v), json_string_length(v), want, strlen(want));
}

/* The enum who bits that rec matches by itself. */
static unsigned who_direct(const struct acli *o, const struct audit_record *rec)
{
    unsigned m = 0;
    if (o->user &&
        (field_nocase(rec->obj, "user", o->user) || field_nocase(rec->obj, "auth_user", o->user)))
        m |= W_USER;
    if (o->ip && field_nocase(rec->obj, "ip", o->ip)) /* IPv6 hex in either case */
        m |= W_IP;
    if (o->msgid) {
        json_t *mid = json_object_get(rec->obj, "message_id"),
               *id = json_object_get(rec->obj, "id");
        if ((json_is_string(mid) &&
             acli_msgid_equal(json_string_value(mid), json_string_length(mid), o->msgid,
                              strlen(o->msgid))) ||
            (strcmp(rec->event, "message") == 0 && json_is_string(id) &&
             strcmp(json_string_value(id), o->msgid) == 0))
            m |= W_MSGID;
    }
    return m;
}

static unsigned who_wanted(const struct acli *o)
{
    return (o->user ? W_USER : 0) | (o->ip ? W_IP : 0) | (o->msgid ? W_MSGID : 0);
}

static bool event_listed(const char *list, const char *event)
{
    size_t n = strlen(event);
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && strncmp(p, event, n) == 0)
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* ---- show ---------------------------------------------------------------------------------- */

struct show {
    struct acli *o;
    struct sessions s;
    unsigned who;
    uint64_t shown;
};

/* First pass: remembers the session instances whose records match a who filter. */
static int mark_sessions(void *arg, const struct audit_record *rec, const char *line, size_t len)
{
    struct show *sh = arg;
    struct sessions *s = &sh->s;
    unsigned m = who_direct(sh->o, rec);
    const char *inst = track(s, rec);
    if (m && inst) {
        json_t *had = json_object_getn(s->matched, inst, s->inst_len);
        json_int_t bits = (had ? json_integer_value(had) : 0) | (json_int_t)m;
        if (json_object_setn_new_nocheck(s->matched, inst, s->inst_len, json_integer(bits)) != 0)
            return EX_OSERR;
    }
    return 0;
}

static int show_one(void *arg, const struct audit_record *rec, const char *line, size_t len)
{
    struct show *sh = arg;
    const struct acli *o = sh->o;
    const char *inst = track(&sh->s, rec);
    if (sh->who) {
        json_t *bits = inst ? json_object_getn(sh->s.matched, inst, sh->s.inst_len) : NULL;
        unsigned m = inst ? (bits ? (unsigned)json_integer_value(bits) : 0) : who_direct(o, rec);
        if ((m & sh->who) != sh->who)
            return 0;
    }
    if (o->session) {
        char num[32];
        size_t klen;
        const char *key = acli_session_key(rec->obj, num, sizeof(num), &klen);
        if (!key || klen != strlen(o->session) || memcmp(key, o->session, klen) != 0)
            return 0;
    }
    if (o->event && !event_listed(o->event, rec->event))
        return 0;
    int64_t us = audit_ts_us(rec->ts);
    if (us < o->since_us || us > o->until_us)
        return 0;
    if (o->json) {
        fwrite(line, 1, len, stdout);
        putchar('\n');
    } else {
        if (sh->shown == 0)
            acli_print_heading(stdout);
        acli_print_record(stdout, rec, false);
    }
    sh->shown++;
    return ferror(stdout) ? EX_IOERR : 0;
}

static int finish_output(const struct acli *o, int rc)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "tern audit %s: writing standard output: %s\n", o->sub, strerror(errno));
        return EX_IOERR;
    }
    return rc;
}

int acli_show(struct acli *o)
{
    struct show sh = {.o = o, .who = who_wanted(o)};
    struct reader r;
    int rc = 0;
    if (sessions_init(&sh.s) != 0) {
        sessions_free(&sh.s);
        fprintf(stderr, "tern audit show: out of memory\n");
        return EX_OSERR;
    }
    if (sh.who) {
        rc = scan(o, &r, mark_sessions, &sh);
        json_object_clear(sh.s.open);
    }
    if (rc == 0)
        rc = scan(o, &r, show_one, &sh);
    sessions_free(&sh.s);
    if (rc == EX_OSERR)
        fprintf(stderr, "tern audit show: out of memory\n");
    if (rc == EX_IOERR && ferror(stdout))
        return finish_output(o, rc);
    if (rc)
        return rc;
    report_skipped(&r);
    if (sh.shown == 0)
        fprintf(stderr, "tern audit show: no record matches (%llu read from %zu file%s)\n",
                (unsigned long long)r.records, o->nfiles, o->nfiles == 1 ? "" : "s");
    return finish_output(o, 0);
}

/* ---- trace --------------------------------------------------------------------------------- */

/* One session found by trace, printed into memory while the files are read, then in turn. */
#define FOLLOW_MAX 4

struct block {
    json_t *msg; /* the first message record that matched, for the title */
    /* the spool ids whose delivery belongs to the story: the message's own queued copy, then
     * the reports about it (relay and bounce records name them) */
    char follow[FOLLOW_MAX][96];
    size_t nfollow;
    char *text;
    size_t size;
    FILE *mem;
    bool connect, disconnect;
};

struct trace {
    struct acli *o;
    struct sessions s;
    json_t *index; /* instance key -> block number */
    struct block *blocks;
    size_t nblocks, cap;
};

static int new_block(struct trace *t, const struct audit_record *rec, const char *inst, size_t ilen)
{
    if (t->nblocks == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 4;
        struct block *b = realloc(t->blocks, cap * sizeof(*b));
        if (!b)
            return EX_OSERR;
        t->blocks = b;
        t->cap = cap;
    }
    struct block *b = &t->blocks[t->nblocks];
    memset(b, 0, sizeof(*b));
    if (!(b->mem = open_memstream(&b->text, &b->size)))
        return EX_OSERR;
    b->msg = json_incref(rec->obj);
    const char *q = json_string_value(json_object_get(rec->obj, "queued"));
    static const char prefix[] = "spool/queue/";
    if (q && strncmp(q, prefix, sizeof prefix - 1) == 0) {
        size_t n = strcspn(q + sizeof prefix - 1, ".");
        if (n > 0 && n < sizeof b->follow[0])
            snprintf(b->follow[b->nfollow++], sizeof b->follow[0], "%.*s", (int)n,
                     q + sizeof prefix - 1);
    }
    if (inst && json_object_setn_new_nocheck(t->index, inst, ilen,
                                             json_integer((json_int_t)t->nblocks)) != 0) {
        fclose(b->mem);
        free(b->text);
        json_decref(b->msg);
        return EX_OSERR;
    }
    t->nblocks++;
    return 0;
}

/* First pass: a block for each session instance (or lone record) with a matching message. */
static int find_messages(void *arg, const struct audit_record *rec, const char *line, size_t len)
{
    struct trace *t = arg;
    const char *inst = track(&t->s, rec);
    if (strcmp(rec->event, "message") != 0 || !(who_direct(t->o, rec) & W_MSGID))
        return 0;
    if (inst && json_object_getn(t->index, inst, t->s.inst_len))
        return 0; /* a second message of a session already found */
    return new_block(t, rec, inst, inst ? t->s.inst_len : 0);
}

static void put_line(const struct trace *t, FILE *out, const struct audit_record *rec,
                     const char *line, size_t len, bool detail)
{
    if (t->o->json) {
        fwrite(line, 1, len, out);
        putc('\n', out);
    } else {
        acli_print_record(out, rec, detail);
    }
}

/* The block whose queued copy (or report) a relay or bounce record is about, or NULL. */
static struct block *followed(const struct trace *t, const struct audit_record *rec)
{
    if (strcmp(rec->event, "relay") != 0 && strcmp(rec->event, "bounce") != 0)
        return NULL;
    const char *id = json_string_value(json_object_get(rec->obj, "id"));
    for (size_t k = 0; id && k < t->nblocks; k++)
        for (size_t f = 0; f < t->blocks[k].nfollow; f++)
            if (strcmp(t->blocks[k].follow[f], id) == 0)
                return &t->blocks[k];
    return NULL;
}

/* Second pass: every record of those sessions into its block, and then what became of the
 * queued copy: its delivery attempts and the reports sent about it. */
static int fill_blocks(void *arg, const struct audit_record *rec, const char *line, size_t len)
{
    struct trace *t = arg;
    struct block *fb = followed(t, rec);
    if (fb) {
        const char *report = json_string_value(json_object_get(rec->obj, "report"));
        if (report && fb->nfollow < FOLLOW_MAX && strlen(report) < sizeof fb->follow[0])
            snprintf(fb->follow[fb->nfollow++], sizeof fb->follow[0], "%s", report);
        put_line(t, fb->mem, rec, line, len, true);
        return 0;
    }
    const char *inst = track(&t->s, rec);
    bool traced = strcmp(rec->event, "message") == 0 && (who_direct(t->o, rec) & W_MSGID);
    json_t *i = inst ? json_object_getn(t->index, inst, t->s.inst_len) : NULL;
    if (i) {
        struct block *b = &t->blocks[json_integer_value(i)];
        b->connect |= strcmp(rec->event, "connect") == 0;
        b->disconnect |= strcmp(rec->event, "disconnect") == 0;
        put_line(t, b->mem, rec, line, len, traced);
    } else if (traced && !inst) {
        /* A message record outside any session: its block is the one made for it. */
        for (size_t k = 0; k < t->nblocks; k++) {
            struct block *b = &t->blocks[k];
            json_t *seq = json_object_get(b->msg, "seq");
            if (!json_object_get(b->msg, "session") &&
                (uint64_t)json_integer_value(seq) == rec->seq)
                put_line(t, b->mem, rec, line, len, true);
        }
    }
    return 0;
}

static void print_title(const struct block *b)
{
    json_t *v;
    fputs("message", stdout);
    static const char *const names[] = {"id", "message_id", "from", "auth_user"};
    for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
        if (json_is_string(v = json_object_get(b->msg, names[k]))) {
            printf(" %s=", names[k]);
            cli_put_safe(stdout, json_string_value(v), json_string_length(v));
        }
    }
    char num[32];
    size_t klen;
    const char *key = acli_session_key(b->msg, num, sizeof(num), &klen);
    if (key) {
        fputs(", session ", stdout);
        cli_put_safe(stdout, key, klen);
    } else {
        fputs(", in no session", stdout);
    }
    putchar('\n');
    if (key && !b->connect)
        puts("  (its connect is not in the files read: the session began in an earlier file)");
    if (key && !b->disconnect)
        puts("  (no disconnect in the files read: the session was still open, or ternd "
             "stopped)");
}

int acli_trace(struct acli *o)
{
    struct trace t = {.o = o, .index = json_object()};
    struct reader r;
    int rc = sessions_init(&t.s) != 0 || !t.index ? EX_OSERR : 0;
    if (rc == 0)
        rc = scan(o, &r, find_messages, &t);
    if (rc == 0 && t.nblocks) {
        json_object_clear(t.s.open);
        rc = scan(o, &r, fill_blocks, &t);
    }
    if (rc == EX_OSERR)
        fprintf(stderr, "tern audit trace: out of memory\n");
    for (size_t k = 0; k < t.nblocks; k++) {
        struct block *b = &t.blocks[k];
        if (fclose(b->mem) != 0 && rc == 0) {
            fprintf(stderr, "tern audit trace: out of memory\n");
            rc = EX_OSERR;
        }
        if (rc == 0) {
            if (!o->json) {
                if (k)
                    putchar('\n');
                print_title(b);
            }
            fwrite(b->text, 1, b->size, stdout);
        }
        free(b->text);
        json_decref(b->msg);
    }
    free(t.blocks);
    json_decref(t.index);
    sessions_free(&t.s);
    if (rc)
        return rc;
    report_skipped(&r);
    if (t.nblocks == 0) {
        fprintf(stderr, "tern audit trace: no message record has the Message-ID or queue id ");
        cli_put_safe(stderr, o->msgid, strlen(o->msgid));
        fprintf(stderr,
                " (%llu records read from %zu file%s); tern audit show --event message lists "
                "the messages there are\n",
                (unsigned long long)r.records, o->nfiles, o->nfiles == 1 ? "" : "s");
        return finish_output(o, 1);
    }
    return finish_output(o, 0);
}
