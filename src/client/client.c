/* The SMTP client protocol core (see client.h): a queue of expected replies in the order the
 * commands were sent, an output buffer, the reply parser, the classification table from the
 * seeds' "positive / negative response per command" table, the message-data transform and the
 * EHLO capability parser. No I/O: the driver (driver.c) moves the bytes. */
#include "client/client.h"

#include "client/reply.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct smtpc {
    tern_transcript_fn *fn;
    void *arg;
    char *out; /* bytes to send: out[off..len) */
    size_t off, len, cap;
    bool secret;             /* out holds an AUTH response: wipe it once sent */
    enum tern_cmd *q;        /* ring of expected replies, SMTPC_MAX_PENDING */
    size_t qhead, qlen;      /* qlen counts expected and completed replies */
    struct tern_reply *done; /* ring of completed replies, parallel to q */
    size_t ndone;            /* the first ndone of the queue are complete */
    unsigned long long data_octets;
    struct rparse p;
    char broken[256];
};

struct smtpc *smtpc_new(tern_transcript_fn *fn, void *arg)
{
    struct smtpc *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->q = calloc(SMTPC_MAX_PENDING, sizeof *c->q);
    c->done = calloc(SMTPC_MAX_PENDING, sizeof *c->done);
    if (!c->q || !c->done) {
        smtpc_free(c);
        return NULL;
    }
    c->fn = fn;
    c->arg = arg;
    rparse_init(&c->p);
    return c;
}

static void wipe_output(struct smtpc *c)
{
    if (c->secret && c->out)
        memset(c->out, 0, c->cap); /* the buffer held a password's encoding */
    c->secret = false;
    c->off = c->len = 0;
}

void smtpc_reset(struct smtpc *c)
{
    wipe_output(c);
    for (size_t i = 0; i < SMTPC_MAX_PENDING; i++)
        tern_reply_free(&c->done[i]);
    c->qhead = c->qlen = c->ndone = 0;
    c->data_octets = 0;
    c->broken[0] = '\0';
    rparse_reset(&c->p);
}

void smtpc_free(struct smtpc *c)
{
    if (!c)
        return;
    if (c->q && c->done)
        smtpc_reset(c);
    free(c->out);
    free(c->q);
    free(c->done);
    free(c);
}

static void transcript(struct smtpc *c, char dir, const char *line, size_t len)
{
    if (c->fn)
        c->fn(c->arg, dir, line, len);
}

/* Makes room for n more output octets. */
static int reserve(struct smtpc *c, size_t n)
{
    if (c->off > 0 && c->off == c->len)
        wipe_output(c);
    if (c->cap - c->len >= n)
        return 0;
    if (c->off > 0) { /* slide the unsent bytes down before growing */
        memmove(c->out, c->out + c->off, c->len - c->off);
        c->len -= c->off;
        c->off = 0;
        if (c->cap - c->len >= n)
            return 0;
    }
    size_t cap = c->cap ? c->cap : 4096;
    while (cap - c->len < n)
        cap *= 2;
    char *o = malloc(cap);
    if (!o)
        return -1;
    if (c->out) {
        memcpy(o, c->out, c->len);
        if (c->secret)
            memset(c->out, 0, c->cap); /* realloc would leave the old copy behind */
        free(c->out);
    }
    c->out = o;
    c->cap = cap;
    return 0;
}

static int push(struct smtpc *c, enum tern_cmd cmd)
{
    if (c->qlen >= SMTPC_MAX_PENDING)
        return -1;
    c->q[(c->qhead + c->qlen) % SMTPC_MAX_PENDING] = cmd;
    c->qlen++;
    return 0;
}

int smtpc_expect(struct smtpc *c, enum tern_cmd cmd)
{
    return push(c, cmd);
}

int smtpc_command(struct smtpc *c, enum tern_cmd cmd, const char *line, bool secret, char *why,
                  size_t whylen)
{
    size_t n = strlen(line);
    if (n > SMTPC_MAX_COMMAND) {
        snprintf(why, whylen, "the command is %zu octets long, more than the %d libtern sends", n,
                 SMTPC_MAX_COMMAND);
        return -1;
    }
    if (strpbrk(line, "\r\n")) {
        snprintf(why, whylen,
                 "the command holds a CR or LF, which would smuggle in another "
                 "command; give one line without line breaks");
        return -1;
    }
    if (c->qlen >= SMTPC_MAX_PENDING) {
        snprintf(why, whylen, "%d commands are already waiting for replies; read them first",
                 SMTPC_MAX_PENDING);
        return -1;
    }
    if (reserve(c, n + 2) < 0) {
        snprintf(why, whylen, "out of memory queueing a command");
        return -1;
    }
    memcpy(c->out + c->len, line, n);
    memcpy(c->out + c->len + n, "\r\n", 2);
    c->len += n + 2;
    c->secret |= secret;
    push(c, cmd);
    if (!secret) {
        transcript(c, 'C', line, n);
    } else if (strncasecmp(line, "AUTH ", 5) == 0) {
        /* "AUTH PLAIN <initial response>": the mechanism may be shown, the response not */
        char shown[64];
        const char *sp = strchr(line + 5, ' ');
        size_t mech = sp ? (size_t)(sp - line) : n;
        int k = snprintf(shown, sizeof shown, "%.*s%s", (int)(mech < 40 ? mech : 40), line,
                         sp ? " <auth data hidden>" : "");
        transcript(c, 'C', shown, (size_t)k);
    } else {
        static const char hidden[] = "<auth data hidden>";
        transcript(c, 'C', hidden, sizeof hidden - 1);
    }
    return 0;
}

size_t smtpc_transform(struct smtpc_stuff *st, const void *buf, size_t len, bool end, char *out)
{
    const unsigned char *in = buf;
    size_t o = 0;
#define EMIT(ch)                                                                                   \
    do {                                                                                           \
        if (out)                                                                                   \
            out[o] = (char)(ch);                                                                   \
        o++;                                                                                       \
    } while (0)
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = in[i];
        if (st->cr) { /* a CR ends a line whether or not LF follows: no bare CR goes out */
            st->cr = false;
            st->bol = true;
            EMIT('\r');
            EMIT('\n');
            if (ch == '\n')
                continue;
        }
        if (ch == '\r') {
            st->cr = true;
            continue;
        }
        if (ch == '\n') { /* bare LF */
            EMIT('\r');
            EMIT('\n');
            st->bol = true;
            continue;
        }
        if (st->bol && ch == '.' && st->dots)
            EMIT('.'); /* RFC 5321 §4.5.2 */
        st->bol = false;
        if (ch >= 0x80)
            st->eight = true;
        EMIT(ch);
    }
    if (end && (st->cr || !st->bol)) { /* the message's last line gets its CRLF */
        EMIT('\r');
        EMIT('\n');
        st->cr = false;
        st->bol = true;
    }
#undef EMIT
    return o;
}

unsigned long long smtpc_measure(struct smtpc_stuff *st, const void *buf, size_t len, bool end)
{
    return smtpc_transform(st, buf, len, end, NULL);
}

int smtpc_data(struct smtpc *c, struct smtpc_stuff *st, const void *buf, size_t len)
{
    if (len > (SIZE_MAX - 8) / 2 || reserve(c, SMTPC_TRANSFORM_MAX(len)) < 0)
        return -1;
    size_t n = smtpc_transform(st, buf, len, false, c->out + c->len);
    c->len += n;
    c->data_octets += n;
    return 0;
}

int smtpc_data_end(struct smtpc *c, struct smtpc_stuff *st)
{
    if (c->qlen >= SMTPC_MAX_PENDING || reserve(c, 8) < 0)
        return -1;
    size_t n = smtpc_transform(st, "", 0, true, c->out + c->len);
    memcpy(c->out + c->len + n, ".\r\n", 3);
    c->len += n + 3;
    c->data_octets += n;
    char shown[64];
    int k = snprintf(shown, sizeof shown, "<message: %llu octets>", c->data_octets);
    transcript(c, 'C', shown, (size_t)k);
    transcript(c, 'C', ".", 1);
    c->data_octets = 0;
    push(c, TERN_CMD_DATA_END);
    return 0;
}

int smtpc_raw(struct smtpc *c, const void *buf, size_t len)
{
    if (reserve(c, len) < 0)
        return -1;
    memcpy(c->out + c->len, buf, len);
    c->len += len;
    char shown[64];
    int k = snprintf(shown, sizeof shown, "<message data: %zu octets>", len);
    transcript(c, 'C', shown, (size_t)k);
    return 0;
}

size_t smtpc_output(const struct smtpc *c, const char **out)
{
    *out = c->out ? c->out + c->off : "";
    return c->len - c->off;
}

void smtpc_sent(struct smtpc *c, size_t n)
{
    if (n > c->len - c->off)
        n = c->len - c->off;
    c->off += n;
    if (c->off == c->len)
        wipe_output(c);
}

/* Shows the complete reply r in the transcript, line by line, as the server sent it. */
static void transcript_reply(struct smtpc *c, const struct tern_reply *r)
{
    if (!c->fn)
        return;
    for (size_t i = 0; i < r->nlines; i++) {
        size_t n = strlen(r->lines[i]) + sizeof r->enh + 8;
        char *line = malloc(n);
        if (!line)
            return;
        int k = snprintf(line, n, "%d%c%s%s%s", r->code, i + 1 < r->nlines ? '-' : ' ', r->enh,
                         r->enh[0] ? " " : "", r->lines[i]);
        transcript(c, 'S', line, (size_t)k);
        free(line);
    }
}

size_t smtpc_feed(struct smtpc *c, const char *buf, size_t len)
{
    size_t total = 0;
    while (total < len && c->ndone < c->qlen && !c->broken[0]) {
        size_t used = 0;
        int rc = rparse_feed(&c->p, buf + total, len - total, &used);
        total += used;
        if (rc < 0) {
            snprintf(c->broken, sizeof c->broken, "%s", c->p.err);
            break;
        }
        if (rc == 0)
            continue;
        size_t slot = (c->qhead + c->ndone) % SMTPC_MAX_PENDING;
        struct tern_reply *r = &c->done[slot];
        if (rparse_take(&c->p, r) < 0) {
            snprintf(c->broken, sizeof c->broken, "out of memory reading a reply");
            break;
        }
        r->cmd = c->q[slot];
        r->cls = smtpc_classify(r->cmd, r->code);
        c->ndone++;
        transcript_reply(c, r);
        if (r->cmd == TERN_CMD_STARTTLS)
            break; /* what follows belongs to TLS, or is an injection attempt */
    }
    return total;
}

int smtpc_reply(struct smtpc *c, struct tern_reply *r)
{
    if (c->ndone == 0)
        return 0;
    tern_reply_free(r);
    *r = c->done[c->qhead];
    memset(&c->done[c->qhead], 0, sizeof c->done[c->qhead]);
    c->qhead = (c->qhead + 1) % SMTPC_MAX_PENDING;
    c->qlen--;
    c->ndone--;
    return 1;
}

size_t smtpc_waiting(const struct smtpc *c)
{
    return c->qlen - c->ndone;
}

enum tern_cmd smtpc_head(const struct smtpc *c)
{
    if (c->ndone >= c->qlen)
        return TERN_CMD_OTHER;
    return c->q[(c->qhead + c->ndone) % SMTPC_MAX_PENDING];
}

const char *smtpc_broken(const struct smtpc *c)
{
    return c->broken[0] ? c->broken : NULL;
}

/* ---- classification: the seeds' client table, one row per command ---- */

struct class_row {
    const char *name;
    int positive[4]; /* zero-terminated */
    int intermediate;
};

/* Indexed by enum tern_cmd. 200 is RFC 876's nonstandard success, which the seeds list. */
static const struct class_row class_table[] = {
    [TERN_CMD_CONNECT] = {"connect", {220}, 0},
    [TERN_CMD_HELO] = {"HELO", {250}, 0},
    [TERN_CMD_EHLO] = {"EHLO", {250}, 0},
    [TERN_CMD_MAIL] = {"MAIL", {250}, 0},
    [TERN_CMD_RCPT] = {"RCPT", {250, 251}, 0},
    [TERN_CMD_DATA] = {"DATA", {0}, 354},
    [TERN_CMD_DATA_END] = {"end of data", {250}, 0},
    [TERN_CMD_BDAT] = {"BDAT", {250}, 0},
    [TERN_CMD_RSET] = {"RSET", {250, 200}, 0},
    [TERN_CMD_VRFY] = {"VRFY", {250, 251, 252}, 0},
    [TERN_CMD_EXPN] = {"EXPN", {250, 252}, 0},
    [TERN_CMD_HELP] = {"HELP", {211, 214}, 0},
    [TERN_CMD_NOOP] = {"NOOP", {250, 200}, 0},
    [TERN_CMD_QUIT] = {"QUIT", {221}, 0},
    [TERN_CMD_SEND] = {"SEND", {250}, 0},
    [TERN_CMD_SOML] = {"SOML", {250}, 0},
    [TERN_CMD_SAML] = {"SAML", {250}, 0},
    [TERN_CMD_TURN] = {"TURN", {250}, 0},
    [TERN_CMD_STARTTLS] = {"STARTTLS", {220}, 0},
    [TERN_CMD_AUTH] = {"AUTH", {235}, 334},
    [TERN_CMD_OTHER] = {"command", {0}, 0},
};

enum tern_class smtpc_classify(enum tern_cmd cmd, int code)
{
    if ((unsigned)cmd > TERN_CMD_OTHER || code < 200 || code > 599)
        return TERN_NEGATIVE;  /* 0 and 101 are libtern's own: never success */
    if (cmd == TERN_CMD_OTHER) /* a verb the table does not know: the reply's own class */
        return code < 300 ? TERN_POSITIVE : code < 400 ? TERN_INTERMEDIATE : TERN_NEGATIVE;
    const struct class_row *row = &class_table[cmd];
    for (size_t i = 0; i < 4 && row->positive[i]; i++)
        if (row->positive[i] == code)
            return TERN_POSITIVE;
    if (row->intermediate == code)
        return TERN_INTERMEDIATE;
    return TERN_NEGATIVE; /* listed refusals and unexpected codes alike */
}

const char *tern_cmd_name(enum tern_cmd cmd)
{
    if ((unsigned)cmd > TERN_CMD_OTHER)
        return "command";
    return class_table[cmd].name;
}

enum tern_cmd smtpc_cmd_of(const char *verb)
{
    for (int i = TERN_CMD_HELO; i < TERN_CMD_OTHER; i++)
        if (i != TERN_CMD_DATA_END && strcasecmp(verb, class_table[i].name) == 0)
            return (enum tern_cmd)i;
    return TERN_CMD_OTHER;
}

/* ---- EHLO capabilities ---- */

/* Adds the mechanism names in s to caps->auth: upper-cased, only names RFC 4422 allows (at most
 * 20 of A-Z 0-9 - _), no duplicates, and only while they fit whole. */
static void add_mechs(struct tern_caps *caps, const char *s)
{
    while (*s) {
        while (*s == ' ')
            s++;
        size_t n = strcspn(s, " ");
        char name[24];
        bool ok = n > 0 && n <= 20;
        for (size_t i = 0; ok && i < n; i++) {
            char ch = s[i];
            if (ch >= 'a' && ch <= 'z')
                ch = (char)(ch - 'a' + 'A');
            ok = (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_';
            name[i] = ch;
        }
        if (ok) {
            name[n] = '\0';
            size_t have = strlen(caps->auth);
            bool dup = false;
            for (const char *p = caps->auth; *p; p += strcspn(p, " "), p += *p == ' ')
                dup |= strncmp(p, name, n) == 0 && (p[n] == ' ' || p[n] == '\0');
            if (!dup && have + n + 2 <= sizeof caps->auth)
                snprintf(caps->auth + have, sizeof caps->auth - have, "%s%s", have ? " " : "",
                         name);
        }
        s += n;
    }
}

static const struct {
    const char *name;
    unsigned flag;
} cap_names[] = {
    {"PIPELINING", TERN_CAP_PIPELINING},
    {"8BITMIME", TERN_CAP_8BITMIME},
    {"SMTPUTF8", TERN_CAP_SMTPUTF8},
    {"ENHANCEDSTATUSCODES", TERN_CAP_ENHANCEDSTATUSCODES},
    {"CHUNKING", TERN_CAP_CHUNKING},
    {"STARTTLS", TERN_CAP_STARTTLS},
    {"DSN", TERN_CAP_DSN},
    {"BINARYMIME", TERN_CAP_BINARYMIME},
};

void smtpc_parse_caps(const struct tern_reply *r, bool ehlo, struct tern_caps *caps)
{
    memset(caps, 0, sizeof *caps);
    if (r->code != 250 || r->nlines == 0)
        return;
    caps->esmtp = ehlo;
    /* the domain: the first word of the first line, printable ASCII only */
    const char *d = r->lines[0];
    size_t dn = 0;
    while (d[dn] > ' ' && d[dn] < 0x7f && dn + 1 < sizeof caps->domain)
        dn++;
    memcpy(caps->domain, d, dn);
    caps->domain[dn] = '\0';
    if (!ehlo)
        return;
    for (size_t i = 1; i < r->nlines; i++) {
        const char *line = r->lines[i];
        size_t kw = strcspn(line, " =");
        const char *arg = line + kw + (line[kw] != '\0');
        for (size_t k = 0; k < sizeof cap_names / sizeof cap_names[0]; k++)
            if (strlen(cap_names[k].name) == kw && strncasecmp(line, cap_names[k].name, kw) == 0)
                caps->flags |= cap_names[k].flag;
        if (kw == 4 && strncasecmp(line, "SIZE", 4) == 0) {
            caps->flags |= TERN_CAP_SIZE;
            unsigned long long v = 0;
            size_t j = 0;
            for (; arg[j] >= '0' && arg[j] <= '9' && j < 19; j++)
                v = v * 10 + (unsigned)(arg[j] - '0'); /* 19 digits cannot overflow */
            caps->size = arg[j] == '\0' ? v : 0;       /* a limit we cannot read is none */
        } else if (kw == 4 && strncasecmp(line, "AUTH", 4) == 0) {
            caps->flags |= TERN_CAP_AUTH; /* "AUTH=" is the pre-RFC 4954 form some still send */
            add_mechs(caps, arg);
        }
    }
}
