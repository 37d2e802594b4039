/* The verifier of verify.h: a streaming state machine over lines (so a log of any size is
 * checked in bounded memory), the chain rules, the key that evolves alongside the records,
 * and the classification of a seq fault by the lines that follow it. It stops at the first
 * fault: later lines of a tampered log prove nothing more. */
#include "audit/verify.h"

#include "util/err.h"
#include "util/fsutil.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* How far past a forward jump in seq to look for the skipped records before calling them
 * deleted rather than moved. Only seqs are kept while looking, so this costs nothing. */
#define LOOKAHEAD 1024
#define READ_CHUNK 65536

enum pending { P_NONE, P_GAP, P_BACK };

struct audit_verifier {
    struct audit_verify_result *r;
    uint64_t max_epoch;
    bool done; /* a verdict is reached: ignore the rest */

    /* The earliest key given, k(base_epoch), and a copy evolved to evo_epoch. */
    bool have_key;
    unsigned char base_key[AUDIT_KEY_LEN], evo_key[AUDIT_KEY_LEN];
    uint64_t base_epoch, evo_epoch;
    bool key_proven; /* a mac or key id has matched: a later mismatch is an edit */

    bool have_head;
    uint64_t head_seq;
    unsigned char head_mac[AUDIT_MAC_LEN];

    /* Where we are. */
    const char *file;
    uint64_t line;
    bool file_has_record;
    size_t files;

    /* The line being assembled. */
    char *buf;
    size_t len;
    bool overlong;

    /* The last good record. */
    bool have_prev, prev_known;
    uint64_t prev_seq, prev_epoch;
    char prev_ts[AUDIT_TS_LEN + 1];
    unsigned char prev_mac[AUDIT_MAC_LEN];
    bool first_link_checked;
    uint64_t unchecked; /* records whose mac could not be checked */

    /* A seq fault waiting for the lines after it to say what it is. */
    enum pending pending;
    const char *p_file;
    uint64_t p_line, p_expected, p_got, p_seen;
};

const char *audit_verdict_name(enum audit_verdict v)
{
    switch (v) {
    case AUDIT_INTACT:
        return "intact";
    case AUDIT_EDITED:
        return "edited";
    case AUDIT_DELETED:
        return "deleted";
    case AUDIT_INSERTED:
        return "inserted";
    case AUDIT_REORDERED:
        return "reordered";
    case AUDIT_TRUNCATED:
        return "truncated";
    case AUDIT_WRONG_KEY:
        return "wrong key";
    case AUDIT_UNREADABLE:
        return "unreadable";
    }
    return "unknown";
}

/* Sets the verdict at file:line, once. */
__attribute__((format(printf, 5, 6))) static void fault(struct audit_verifier *v,
                                                        enum audit_verdict kind, const char *file,
                                                        uint64_t line, const char *fmt, ...)
{
    if (v->done)
        return;
    v->done = true;
    v->r->verdict = kind;
    v->r->file = file;
    v->r->line = line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->r->why, sizeof(v->r->why), fmt, ap);
    va_end(ap);
}

/* A fault at the current line. */
#define FAULT(v, kind, ...) fault((v), (kind), (v)->file, (v)->line, __VA_ARGS__)

/* Settles a pending seq fault with what the lines after it showed (or failed to show). */
static void settle(struct audit_verifier *v, enum audit_verdict kind)
{
    unsigned long long e = v->p_expected, g = v->p_got;
    v->pending = P_NONE;
    switch (kind) {
    case AUDIT_DELETED:
        if (g == e + 1)
            fault(v, kind, v->p_file, v->p_line, "record %llu is missing before this line", e);
        else
            fault(v, kind, v->p_file, v->p_line,
                  "records %llu to %llu are missing before this line", e, g - 1);
        break;
    case AUDIT_REORDERED:
        fault(v, kind, v->p_file, v->p_line,
              "record %llu is out of order: record %llu should come here and comes later", g, e);
        break;
    case AUDIT_INSERTED:
        fault(v, kind, v->p_file, v->p_line,
              "an extra line: record %llu was already seen (the log goes on with %llu)", g, e);
        break;
    default:
        fault(v, kind, v->p_file, v->p_line,
              "its seq %llu was changed from %llu (the next line follows on from %llu)", g, e, e);
        break;
    }
}

/* A line after a pending seq fault: seq is the line's seq, or 0 when it is no record. */
static void look_ahead(struct audit_verifier *v, uint64_t seq)
{
    if (seq && v->p_seen == 0) {
        bool lone = seq == v->p_expected + 1 && v->p_got != v->p_expected + 1;
        if (v->pending == P_BACK) {
            settle(v, lone ? AUDIT_EDITED : AUDIT_INSERTED);
            return;
        }
        if (lone) {
            settle(v, AUDIT_EDITED);
            return;
        }
    }
    if (seq && v->pending == P_GAP && seq >= v->p_expected && seq < v->p_got) {
        settle(v, AUDIT_REORDERED);
        return;
    }
    if (++v->p_seen >= LOOKAHEAD)
        settle(v, v->pending == P_GAP ? AUDIT_DELETED : AUDIT_INSERTED);
}

/* The key for epoch, evolved from the earliest one given; NULL for epochs before it. */
static const unsigned char *key_for(struct audit_verifier *v, uint64_t epoch)
{
    if (!v->have_key || epoch < v->base_epoch)
        return NULL;
    if (epoch < v->evo_epoch) {
        memcpy(v->evo_key, v->base_key, AUDIT_KEY_LEN);
        v->evo_epoch = v->base_epoch;
    }
    for (; v->evo_epoch < epoch; v->evo_epoch++)
        audit_key_evolve(v->evo_key);
    return v->evo_key;
}

/* A member that is a string of exactly n lowercase hex digits, or NULL. */
static const char *hex_member(json_t *obj, const char *name, size_t n)
{
    json_t *m = json_object_get(obj, name);
    if (!json_is_string(m) || json_string_length(m) != n)
        return NULL;
    const char *s = json_string_value(m);
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return NULL;
    return s;
}

/* The chain rules that need no key. false after a fault. */
static bool check_links(struct audit_verifier *v, const struct audit_record *rec)
{
    bool create = strcmp(rec->event, "create") == 0, rotate = strcmp(rec->event, "rotate") == 0;
    bool epoch_ev = strcmp(rec->event, "epoch") == 0;
    if ((rec->seq == 1) != create) {
        FAULT(v, AUDIT_EDITED,
              create ? "a create record that is not record 1"
                     : "record 1 is not the create record");
        return false;
    }
    if (create && rec->epoch != 0) {
        FAULT(v, AUDIT_EDITED, "the create record is not in epoch 0");
        return false;
    }
    if (rotate && v->file_has_record) {
        FAULT(v, AUDIT_EDITED, "a rotate record that does not open its file");
        return false;
    }
    if (v->have_prev && !v->file_has_record && !rotate) {
        FAULT(v, AUDIT_EDITED, "the file follows another but does not open with a rotate record");
        return false;
    }
    if ((create || rotate || epoch_ev) && !hex_member(rec->obj, "key_id", AUDIT_KEY_ID_HEX_LEN)) {
        FAULT(v, AUDIT_EDITED, "a %s record without a key id", rec->event);
        return false;
    }
    if (rec->epoch > v->max_epoch) {
        FAULT(v, AUDIT_EDITED, "epoch %llu is past any a log reaches",
              (unsigned long long)rec->epoch);
        return false;
    }
    if (rotate) {
        const char *pm = hex_member(rec->obj, "prev_mac", AUDIT_MAC_HEX_LEN);
        unsigned char m[AUDIT_MAC_LEN];
        if (!pm || audit_unhex(pm, AUDIT_MAC_HEX_LEN, m, AUDIT_MAC_LEN) != 0) {
            FAULT(v, AUDIT_EDITED, "a rotate record without prev_mac");
            return false;
        }
        if (v->have_prev && CRYPTO_memcmp(m, v->prev_mac, AUDIT_MAC_LEN) != 0) {
            FAULT(v, AUDIT_EDITED, "the rotate record does not chain from the previous file's end");
            return false;
        }
        if (!v->have_prev) { /* the series starts here: the link it carries is the chain's */
            memcpy(v->prev_mac, m, AUDIT_MAC_LEN);
            v->prev_known = true;
        }
    }
    if (!v->have_prev) {
        if (create) {
            memset(v->prev_mac, 0, AUDIT_MAC_LEN);
            v->prev_known = true;
        }
        v->first_link_checked = v->prev_known;
        return true;
    }
    if (strcmp(rec->ts, v->prev_ts) < 0) {
        FAULT(v, AUDIT_EDITED, "its time %s is before the previous record's %s", rec->ts,
              v->prev_ts);
        return false;
    }
    if (rec->epoch < v->prev_epoch) {
        FAULT(v, AUDIT_EDITED, "its epoch goes back from %llu to %llu",
              (unsigned long long)v->prev_epoch, (unsigned long long)rec->epoch);
        return false;
    }
    if (rec->epoch > v->prev_epoch && !epoch_ev && !rotate) {
        FAULT(v, AUDIT_EDITED, "the epoch changes on a %s record", rec->event);
        return false;
    }
    if (epoch_ev && rec->epoch == v->prev_epoch) {
        FAULT(v, AUDIT_EDITED, "an epoch record that starts no new epoch");
        return false;
    }
    return true;
}

/* The mac (and key id) of a record whose links hold. false after a fault. */
static bool check_mac(struct audit_verifier *v, const struct audit_record *rec, const char *line)
{
    const unsigned char *key = key_for(v, rec->epoch);
    if (!key || !v->prev_known) {
        v->unchecked++;
        return true;
    }
    const char *id = hex_member(rec->obj, "key_id", AUDIT_KEY_ID_HEX_LEN);
    if (id) {
        char mine[AUDIT_KEY_ID_HEX_LEN + 1];
        audit_key_id(key, mine);
        if (strcmp(id, mine) != 0) {
            FAULT(v, AUDIT_WRONG_KEY,
                  "the key given is not this log's: its key at epoch %llu has id %s, the key "
                  "given makes %s",
                  (unsigned long long)rec->epoch, id, mine);
            return false;
        }
        v->key_proven = true;
    }
    if (audit_record_mac_ok(rec, line, key, v->prev_mac)) {
        v->key_proven = true;
        v->r->macs_checked++;
        return true;
    }
    if (!v->key_proven)
        FAULT(v, AUDIT_WRONG_KEY,
              "the key given does not verify the first record it applies to: a wrong key, or "
              "that record was edited");
    else
        FAULT(v, AUDIT_EDITED, "its mac does not match: the record was edited");
    return false;
}

/* Takes in one well-formed record. */
static void check_record(struct audit_verifier *v, const struct audit_record *rec, const char *line)
{
    if (v->have_prev && rec->seq != v->prev_seq + 1) {
        v->pending = rec->seq > v->prev_seq + 1 ? P_GAP : P_BACK;
        v->p_file = v->file;
        v->p_line = v->line;
        v->p_expected = v->prev_seq + 1;
        v->p_got = rec->seq;
        v->p_seen = 0;
        return;
    }
    if (!check_links(v, rec) || !check_mac(v, rec, line))
        return;
    struct audit_verify_result *r = v->r;
    if (!v->have_prev) {
        r->first_seq = rec->seq;
        r->first_epoch = rec->epoch;
        memcpy(r->first_ts, rec->ts, sizeof(r->first_ts));
    }
    r->records++;
    r->last_seq = rec->seq;
    r->last_epoch = rec->epoch;
    memcpy(r->last_ts, rec->ts, sizeof(r->last_ts));
    v->have_prev = v->prev_known = v->file_has_record = true;
    v->prev_seq = rec->seq;
    v->prev_epoch = rec->epoch;
    memcpy(v->prev_ts, rec->ts, sizeof(v->prev_ts));
    memcpy(v->prev_mac, rec->mac, AUDIT_MAC_LEN);
}

/* One line of the current file; complete when it ended in a newline. */
static void on_line(struct audit_verifier *v, bool complete)
{
    v->line++;
    if (v->done)
        return;
    struct audit_record rec;
    char why[160] = "longer than a record may be";
    bool ok = complete && !v->overlong &&
              audit_record_parse(v->buf, v->len, &rec, true, why, sizeof(why)) == 0;
    if (v->pending != P_NONE) {
        look_ahead(v, ok ? rec.seq : 0);
    } else if (!complete) {
        FAULT(v, AUDIT_TRUNCATED,
              "the file ends inside a line: its end was cut (or torn by a "
              "crash mid-write)");
    } else if (!ok) {
        FAULT(v, AUDIT_EDITED, "not a record: %s", why);
    } else {
        check_record(v, &rec, v->buf);
    }
    if (ok)
        audit_record_release(&rec);
}

struct audit_verifier *audit_verifier_new(const struct audit_verify_opts *o,
                                          struct audit_verify_result *r)
{
    memset(r, 0, sizeof(*r));
    struct audit_verifier *v = calloc(1, sizeof(*v));
    if (!v || !(v->buf = malloc(AUDIT_LINE_MAX))) {
        free(v);
        return NULL;
    }
    v->r = r;
    v->max_epoch = o->max_epoch && o->max_epoch < AUDIT_EPOCH_MAX ? o->max_epoch : AUDIT_EPOCH_MAX;
    if (o->first_key) {
        memcpy(v->base_key, o->first_key, AUDIT_KEY_LEN);
        memcpy(v->evo_key, o->first_key, AUDIT_KEY_LEN);
        v->have_key = true;
    }
    char why[sizeof(r->why)];
    if (o->key_file) {
        unsigned char k[AUDIT_KEY_LEN];
        uint64_t e;
        if (audit_key_load(o->key_file, &e, k, why, sizeof(why)) != 0) {
            fault(v, AUDIT_UNREADABLE, o->key_file, 0, "%s", why);
        } else if (v->have_key) { /* both: the key file must be the first key, evolved */
            if (e > v->max_epoch || CRYPTO_memcmp(key_for(v, e), k, AUDIT_KEY_LEN) != 0)
                fault(v, AUDIT_WRONG_KEY, o->key_file, 0,
                      "%s (epoch %llu) is not the first key given, evolved: one of them "
                      "belongs to another log",
                      o->key_file, (unsigned long long)e);
        } else {
            memcpy(v->base_key, k, AUDIT_KEY_LEN);
            memcpy(v->evo_key, k, AUDIT_KEY_LEN);
            v->base_epoch = v->evo_epoch = e;
            v->have_key = true;
        }
        OPENSSL_cleanse(k, sizeof(k));
    }
    if (o->head_file && !v->done) {
        FILE *f = fopen(o->head_file, "re");
        char line[128] = "", *end = NULL;
        unsigned long long s = 0;
        if (!f) {
            fsutil_err(why, sizeof(why), "audit", "cannot open the head file", o->head_file, errno);
            fault(v, AUDIT_UNREADABLE, o->head_file, 0, "%s", why);
        } else {
            if (fgets(line, sizeof(line), f))
                s = strtoull(line, &end, 10);
            fclose(f);
            if (!end || end == line || *end != ' ' || strlen(end) != AUDIT_MAC_HEX_LEN + 2 ||
                end[AUDIT_MAC_HEX_LEN + 1] != '\n' ||
                audit_unhex(end + 1, AUDIT_MAC_HEX_LEN, v->head_mac, AUDIT_MAC_LEN) != 0)
                fault(v, AUDIT_UNREADABLE, o->head_file, 1,
                      "%s is not a head file (one line: SEQ and 64 hex digits)", o->head_file);
            v->head_seq = s;
            v->have_head = true;
        }
    }
    return v;
}

void audit_verifier_begin_file(struct audit_verifier *v, const char *name)
{
    v->file = name;
    v->line = 0;
    v->len = 0;
    v->overlong = false;
    v->file_has_record = false;
    v->files++;
}

void audit_verifier_feed(struct audit_verifier *v, const void *data, size_t n)
{
    const char *p = data, *end = p + n;
    while (p < end && !v->done) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t take = (size_t)((nl ? nl : end) - p);
        if (v->len + take < AUDIT_LINE_MAX) {
            memcpy(v->buf + v->len, p, take);
            v->len += take;
        } else {
            v->overlong = true; /* keep counting lines; the content is no record anyway */
        }
        p += take;
        if (nl) {
            on_line(v, true);
            v->len = 0;
            v->overlong = false;
            p++;
        }
    }
}

void audit_verifier_end_file(struct audit_verifier *v)
{
    if (v->len > 0 || v->overlong)
        on_line(v, false);
    v->len = 0;
    v->overlong = false;
}

/* Compares the end of the log with head. */
static void check_head(struct audit_verifier *v)
{
    struct audit_verify_result *r = v->r;
    unsigned long long last = r->records ? r->last_seq : 0, head = v->head_seq;
    /* head may lag the log (records written since the last sync), never lead it. */
    if (last < head)
        fault(v, AUDIT_TRUNCATED, v->file, v->line + 1,
              "the log ends at record %llu but head says record %llu was written: the end was "
              "cut",
              last, head);
    else if (last == head && r->records &&
             CRYPTO_memcmp(v->prev_mac, v->head_mac, AUDIT_MAC_LEN) != 0)
        fault(v, AUDIT_EDITED, v->file, v->line,
              "the last record is not the one head names: it was replaced");
    r->head_checked = true;
}

/* Says in words what the verdict rests on. */
static void describe_scope(struct audit_verifier *v)
{
    struct audit_verify_result *r = v->r;
    r->macs_all = r->records > 0 && r->macs_checked == r->records && v->first_link_checked;
    size_t n = 0;
    if (!v->have_key)
        n = (size_t)snprintf(r->scope, sizeof(r->scope),
                             "no key given: order, times and links checked, no mac");
    else if (r->macs_all)
        n = (size_t)snprintf(r->scope, sizeof(r->scope), "every record's mac checked");
    else
        n = (size_t)snprintf(r->scope, sizeof(r->scope),
                             "macs checked for %llu of %llu records (those of epoch %llu on); "
                             "the rest for order, times and links only (the first key checks "
                             "them all)",
                             (unsigned long long)r->macs_checked, (unsigned long long)r->records,
                             (unsigned long long)v->base_epoch);
    if (r->records && r->first_seq > 1 && n < sizeof(r->scope))
        n += (size_t)snprintf(r->scope + n, sizeof(r->scope) - n,
                              "; the series starts at record %llu",
                              (unsigned long long)r->first_seq);
    if (!v->have_head && n < sizeof(r->scope))
        snprintf(r->scope + n, sizeof(r->scope) - n,
                 "; no head file: a cut end would go unnoticed");
}

enum audit_verdict audit_verifier_finish(struct audit_verifier *v)
{
    if (v->pending != P_NONE)
        settle(v, v->pending == P_GAP ? AUDIT_DELETED : AUDIT_INSERTED);
    if (!v->done && v->have_head)
        check_head(v);
    if (!v->done)
        v->r->verdict = AUDIT_INTACT;
    describe_scope(v);
    enum audit_verdict verdict = v->r->verdict;
    OPENSSL_cleanse(v->base_key, sizeof(v->base_key));
    OPENSSL_cleanse(v->evo_key, sizeof(v->evo_key));
    free(v->buf);
    free(v);
    return verdict;
}

/* Feeds one file to v. 0, or -1 after setting an unreadable verdict. */
static int feed_file(struct audit_verifier *v, const char *path, char *chunk)
{
    char why[sizeof(v->r->why)];
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fsutil_err(why, sizeof(why), "audit", "cannot open", path, errno);
        fault(v, AUDIT_UNREADABLE, path, 0, "%s", why);
        return -1;
    }
    audit_verifier_begin_file(v, path);
    for (;;) {
        ssize_t got = read(fd, chunk, READ_CHUNK);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            fsutil_err(why, sizeof(why), "audit", "cannot read", path, errno);
            fault(v, AUDIT_UNREADABLE, path, v->line, "%s", why);
            close(fd);
            return -1;
        }
        if (got == 0 || v->done)
            break;
        audit_verifier_feed(v, chunk, (size_t)got);
    }
    close(fd);
    audit_verifier_end_file(v);
    return 0;
}

int audit_verify(const char *const *files, size_t n, const struct audit_verify_opts *o,
                 struct audit_verify_result *r)
{
    struct audit_verifier *v = audit_verifier_new(o, r);
    char *chunk = malloc(READ_CHUNK);
    if (!v || !chunk) {
        if (v)
            audit_verifier_finish(v);
        free(chunk);
        r->verdict = AUDIT_UNREADABLE;
        snprintf(r->why, sizeof(r->why), "audit: out of memory");
        return -1;
    }
    for (size_t i = 0; i < n && !v->done; i++)
        if (feed_file(v, files[i], chunk) != 0)
            break;
    free(chunk);
    enum audit_verdict verdict = audit_verifier_finish(v);
    return verdict == AUDIT_INTACT ? 0 : verdict == AUDIT_UNREADABLE ? -1 : 1;
}
