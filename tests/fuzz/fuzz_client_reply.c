/* libFuzzer harness for libtern's reply parser and client core (src/client/reply.c, client.c):
 * the input after its first byte is what a hostile server sends, fed to a core awaiting many
 * replies, in pieces whose size the first byte picks. Traps on a broken invariant: the core
 * never reads more than it is given, every reply it gives has a code 200-559, 1 to
 * TERN_REPLY_MAX_LINES lines of at most TERN_REPLY_MAX_LINE octets with no NUL, CR or LF, a text
 * that is the lines joined by LF, an enhanced code of the reply's class or none, and the class
 * the table gives for its command; replies come in the order the commands were queued; splitting
 * the input differently gives the same replies and the same failure; and the capability parser
 * keeps its strings terminated and bounded. With bit 7 of the first byte set, the input is
 * message data instead: the DATA transform must leave no bare CR or LF, dot-stuff every line
 * that starts with a dot, and undo to the CRLF-normalised input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "client/reply.h"

#define FUZZ_CHECK(cond)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            __builtin_trap();                                                                      \
    } while (0)

#define FUZZ_PENDING 64 /* replies awaited */

static const enum tern_cmd cmds[] = {
    TERN_CMD_CONNECT, TERN_CMD_EHLO, TERN_CMD_MAIL, TERN_CMD_RCPT, TERN_CMD_RCPT,
    TERN_CMD_DATA,    TERN_CMD_AUTH, TERN_CMD_VRFY, TERN_CMD_HELP, TERN_CMD_OTHER,
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

/* What one run gave, to compare runs with different splits. */
struct outcome {
    size_t nreplies;
    unsigned long long digest; /* of every reply's code, enh and text, in order */
    bool broken;
    char why[256];
};

static unsigned long long mix(unsigned long long h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void check_reply(const struct tern_reply *r, enum tern_cmd cmd)
{
    FUZZ_CHECK(r->code >= 200 && r->code <= 559);
    FUZZ_CHECK(r->cmd == cmd);
    FUZZ_CHECK(r->cls == smtpc_classify(cmd, r->code));
    FUZZ_CHECK(r->nlines >= 1 && r->nlines <= TERN_REPLY_MAX_LINES);
    FUZZ_CHECK(r->text != NULL);
    size_t enh = strnlen(r->enh, sizeof r->enh);
    FUZZ_CHECK(enh < sizeof r->enh);
    if (enh > 0) {
        FUZZ_CHECK(r->enh[0] == '0' + r->code / 100 && r->enh[1] == '.');
        FUZZ_CHECK(strspn(r->enh, "0123456789.") == enh);
    }
    size_t off = 0, tlen = strlen(r->text);
    for (size_t i = 0; i < r->nlines; i++) {
        size_t n = strlen(r->lines[i]);
        FUZZ_CHECK(n <= TERN_REPLY_MAX_LINE);
        FUZZ_CHECK(!memchr(r->lines[i], '\r', n) && !memchr(r->lines[i], '\n', n));
        FUZZ_CHECK(off + n <= tlen && memcmp(r->text + off, r->lines[i], n) == 0);
        off += n;
        FUZZ_CHECK(r->text[off] == (i + 1 < r->nlines ? '\n' : '\0'));
        off++;
    }
    struct tern_caps caps;
    smtpc_parse_caps(r, cmd == TERN_CMD_EHLO, &caps);
    FUZZ_CHECK(strnlen(caps.auth, sizeof caps.auth) < sizeof caps.auth);
    FUZZ_CHECK(strnlen(caps.domain, sizeof caps.domain) < sizeof caps.domain);
    FUZZ_CHECK(caps.esmtp == 0 || r->code == 250);
}

static void run(const char *in, size_t len, size_t step, struct outcome *o)
{
    memset(o, 0, sizeof *o);
    struct smtpc *c = smtpc_new(NULL, NULL);
    FUZZ_CHECK(c != NULL);
    for (size_t i = 0; i < FUZZ_PENDING; i++)
        FUZZ_CHECK(smtpc_expect(c, cmds[i % NCMDS]) == 0);
    struct tern_reply r = {0};
    size_t off = 0;
    o->digest = 14695981039346656037ULL;
    while (off < len && !smtpc_broken(c)) {
        size_t n = len - off < step ? len - off : step;
        size_t used = smtpc_feed(c, in + off, n);
        FUZZ_CHECK(used <= n);
        off += used;
        while (smtpc_reply(c, &r)) {
            check_reply(&r, cmds[o->nreplies % NCMDS]);
            o->nreplies++;
            char code[8];
            int k = snprintf(code, sizeof code, "%d", r.code);
            o->digest = mix(mix(mix(o->digest, code, (size_t)k), r.enh, strlen(r.enh)), r.text,
                            strlen(r.text) + 1);
        }
        if (used == 0 && !smtpc_broken(c))
            break; /* every awaited reply came: the rest is not read */
    }
    FUZZ_CHECK(o->nreplies <= FUZZ_PENDING);
    if (smtpc_broken(c)) {
        o->broken = true;
        snprintf(o->why, sizeof o->why, "%s", smtpc_broken(c));
        FUZZ_CHECK(o->why[0] != '\0');
    }
    tern_reply_free(&r);
    smtpc_free(c);
}

static void fuzz_transform(const unsigned char *in, size_t len, bool dots)
{
    char *out = malloc(SMTPC_TRANSFORM_MAX(len) + 1);
    char *norm = malloc(SMTPC_TRANSFORM_MAX(len) + 1);
    FUZZ_CHECK(out && norm);
    struct smtpc_stuff st = {.bol = true, .dots = dots}, st2 = {.bol = true};
    size_t n = smtpc_transform(&st, in, len, true, out);
    FUZZ_CHECK(n <= SMTPC_TRANSFORM_MAX(len));
    /* what it must be: every CR, LF or CRLF one CRLF, and a CRLF at the end if missing */
    size_t m = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' || in[i] == '\n') {
            if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
                i++;
            norm[m++] = '\r';
            norm[m++] = '\n';
        } else {
            norm[m++] = (char)in[i];
        }
    }
    if (m > 0 && norm[m - 1] != '\n') {
        norm[m++] = '\r';
        norm[m++] = '\n';
    }
    FUZZ_CHECK(smtpc_measure(&st2, in, len, true) == m);
    /* undo the stuffing line by line and compare */
    size_t o = 0, k = 0;
    bool bol = true;
    while (o < n) {
        if (bol && dots) {
            if (out[o] == '.') {
                FUZZ_CHECK(o + 1 < n && out[o + 1] == '.');
                o++;
            }
        }
        FUZZ_CHECK(out[o] != '\r' || (o + 1 < n && out[o + 1] == '\n'));
        FUZZ_CHECK(out[o] != '\n' || (o > 0 && out[o - 1] == '\r'));
        FUZZ_CHECK(k < m && out[o] == norm[k]);
        bol = out[o] == '\n';
        o++;
        k++;
    }
    FUZZ_CHECK(k == m);
    free(out);
    free(norm);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned char mode = data[0];
    const char *in = (const char *)data + 1;
    size_t len = size - 1;
    if (mode & 0x80) {
        fuzz_transform(data + 1, len, !(mode & 0x40));
        return 0;
    }
    struct outcome whole, split;
    run(in, len, len ? len : 1, &whole);
    run(in, len, (size_t)(mode & 0x0f) + 1, &split);
    FUZZ_CHECK(whole.nreplies == split.nreplies);
    FUZZ_CHECK(whole.digest == split.digest);
    FUZZ_CHECK(whole.broken == split.broken);
    FUZZ_CHECK(strcmp(whole.why, split.why) == 0);
    return 0;
}
