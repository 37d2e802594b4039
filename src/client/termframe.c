/* Terminal-message frames (termframe.h has the format): the formatter ternd writes each message
 * with once for all of a user's terminals, and the incremental reader of a stream of frames and
 * replies from a server that may be hostile. The reader is a byte-at-a-time state machine so
 * that a frame may arrive split anywhere, and it never holds more than one TERM line, one reply
 * and TERN_TERM_TEXT_MAX octets of a message, however much the server sends. */
#include "client/termframe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    TF_LINE,  /* between frames, at the start of a line */
    TF_HEAD,  /* reading a TERM line */
    TF_REPLY, /* reading a reply */
    TF_BOL,   /* message text, at the start of a line */
    TF_DOT,   /* message text: a line began with "." */
    TF_DOTCR, /* message text: a line began with ".\r" */
    TF_MID,   /* message text, inside a line */
    TF_BAD,   /* gave up */
};

char *tframe_format(long long time, const char *id, const char *from, const char *msg, size_t len,
                    size_t *outlen)
{
    /* worst case: every octet a LF (CRLF each) or a "." alone on its line (".." CRLF) */
    size_t cap = TFRAME_HEAD_MAX + 2 * len + len / 2 + 8;
    char *out = malloc(cap);
    if (!out)
        return NULL;
    int h = snprintf(out, TFRAME_HEAD_MAX, "TERM time=%lld id=%.128s size=%zu from=<%.1000s>\r\n",
                     time, id, len, from);
    size_t o = h > 0 && h < TFRAME_HEAD_MAX ? (size_t)h : 0;
    bool bol = true;
    for (size_t i = 0; i < len; i++) {
        char ch = msg[i];
        if (bol && ch == '.')
            out[o++] = '.'; /* RFC 5321 4.5.2, so that a "." line cannot end the frame */
        if (ch == '\n' && (i == 0 || msg[i - 1] != '\r'))
            out[o++] = '\r'; /* a bare LF (BDAT allows it): the line still ends in CRLF */
        out[o++] = ch;
        bol = ch == '\n';
    }
    if (!bol) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    memcpy(out + o, ".\r\n", 3);
    *outlen = o + 3;
    return out;
}

void tframe_init(struct tframe *p)
{
    memset(p, 0, sizeof *p);
    rparse_init(&p->reply);
    p->state = TF_LINE;
}

void tframe_free(struct tframe *p)
{
    rparse_reset(&p->reply);
    tern_term_message_free(&p->msg);
    p->cap = 0;
}

static enum tframe_event bad(struct tframe *p, const char *why)
{
    snprintf(p->why, sizeof p->why, "%.150s", why);
    p->state = TF_BAD;
    return TFRAME_BAD;
}

/* Keeps one octet of message text, while there is room; the rest is only counted. */
static void keep(struct tframe *p, char ch)
{
    struct tern_term_message *m = &p->msg;
    if (m->len >= TERN_TERM_TEXT_MAX) {
        m->truncated = 1;
        return;
    }
    if (m->len + 1 >= p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 4096;
        if (cap > TERN_TERM_TEXT_MAX + 1)
            cap = TERN_TERM_TEXT_MAX + 1;
        char *t = realloc(m->text, cap);
        if (!t) { /* keep what there is: a shorter message is no danger */
            m->truncated = 1;
            return;
        }
        m->text = t;
        p->cap = cap;
    }
    m->text[m->len++] = ch;
    m->text[m->len] = '\0';
}

/* The value of key=VALUE in the TERM line (the rest of the line for the last key, from). */
static const char *field(const char *head, const char *key, size_t *vlen, bool rest)
{
    size_t klen = strlen(key);
    for (const char *p = head; (p = strstr(p, key)); p++) {
        if (p[-1] != ' ' || p[klen] != '=')
            continue;
        const char *v = p + klen + 1;
        *vlen = rest ? strlen(v) : strcspn(v, " ");
        return v;
    }
    return NULL;
}

static unsigned long long number(const char *v, size_t n)
{
    unsigned long long x = 0;
    for (size_t i = 0; i < n && i < 19 && v[i] >= '0' && v[i] <= '9'; i++)
        x = x * 10 + (unsigned long long)(v[i] - '0');
    return x;
}

/* A whole TERM line (without CRLF) in p->head: starts a message. */
static bool start_message(struct tframe *p)
{
    tern_term_message_free(&p->msg);
    p->cap = 0;
    struct tern_term_message *m = &p->msg;
    const char *h = p->head;
    if (memchr(h, '\0', p->head_len) || memchr(h, '\r', p->head_len))
        return false;
    size_t n;
    const char *v;
    if ((v = field(h, "time", &n, false)))
        m->time = (long long)number(v, n);
    if ((v = field(h, "size", &n, false)))
        m->size = number(v, n);
    if ((v = field(h, "id", &n, false)))
        snprintf(m->id, sizeof m->id, "%.*s", (int)(n < sizeof m->id ? n : sizeof m->id - 1), v);
    if (!(v = field(h, "from", &n, true)) || n < 2 || v[0] != '<' || v[n - 1] != '>')
        return false;
    n -= 2;
    snprintf(m->from, sizeof m->from, "%.*s", (int)(n < sizeof m->from ? n : sizeof m->from - 1),
             v + 1);
    return true;
}

enum tframe_event tframe_feed(struct tframe *p, const char *buf, size_t len, size_t *used)
{
    size_t i = 0;
    enum tframe_event ev = TFRAME_MORE;
    while (i < len && ev == TFRAME_MORE) {
        char ch = buf[i];
        switch (p->state) {
        case TF_BAD:
            *used = i;
            return TFRAME_BAD;
        case TF_LINE:
            if (ch == 'T') {
                p->state = TF_HEAD;
                p->head_len = 0;
            } else if (ch >= '0' && ch <= '9') {
                p->state = TF_REPLY;
                rparse_reset(&p->reply);
            } else {
                ev = bad(p, "the server sent a line that is neither a TERM line nor a reply");
                continue;
            }
            continue; /* the same octet, in its new state */
        case TF_HEAD:
            i++;
            if (ch != '\n') {
                if (p->head_len >= TFRAME_HEAD_MAX)
                    ev = bad(p, "the server sent a TERM line that is too long");
                else
                    p->head[p->head_len++] = ch;
                break;
            }
            if (p->head_len > 0 && p->head[p->head_len - 1] == '\r')
                p->head_len--;
            p->head[p->head_len] = '\0';
            if (strncmp(p->head, "TERM ", 5) != 0 || !start_message(p))
                ev = bad(p, "the server sent a malformed TERM line");
            else
                p->state = TF_BOL;
            break;
        case TF_REPLY: {
            size_t u = 0;
            int rc = rparse_feed(&p->reply, buf + i, len - i, &u);
            i += u;
            if (rc < 0)
                ev = bad(p, p->reply.err);
            else if (rc > 0) {
                p->state = TF_LINE;
                ev = TFRAME_REPLY;
            }
            break;
        }
        case TF_BOL:
            i++;
            if (ch == '.')
                p->state = TF_DOT;
            else {
                keep(p, ch);
                p->state = ch == '\n' ? TF_BOL : TF_MID;
            }
            break;
        case TF_DOT:
            i++;
            if (ch == '\r') {
                p->state = TF_DOTCR;
            } else if (ch == '\n') {
                p->state = TF_LINE; /* ".\n": lenient, the end all the same */
                ev = TFRAME_MESSAGE;
            } else {
                keep(p, ch); /* the stuffed dot is dropped, the octet after it kept */
                p->state = ch == '\n' ? TF_BOL : TF_MID;
            }
            break;
        case TF_DOTCR:
            if (ch == '\n') {
                i++;
                p->state = TF_LINE;
                ev = TFRAME_MESSAGE;
            } else {
                keep(p, '\r'); /* ".\rX": not the end; the octet is looked at again */
                p->state = TF_MID;
            }
            break;
        case TF_MID:
            i++;
            keep(p, ch);
            if (ch == '\n')
                p->state = TF_BOL;
            break;
        }
    }
    *used = i;
    return ev;
}

void tframe_take_message(struct tframe *p, struct tern_term_message *m)
{
    tern_term_message_free(m);
    *m = p->msg;
    if (!m->text) { /* an empty message is "" too, never NULL */
        m->text = calloc(1, 1);
        m->truncated |= !m->text;
    }
    memset(&p->msg, 0, sizeof p->msg);
    p->cap = 0;
}

int tframe_take_reply(struct tframe *p, struct tern_reply *r)
{
    return rparse_take(&p->reply, r);
}
