/* The synchronous driver the session-core unit tests share (test_session*.c, test_events.c,
 * test_sendas.c): collecting the core's replies, feeding input while performing the core's
 * requests, the code of the last reply line, a PLAIN-only mechanism check, and a copy of an
 * audit event. Each test keeps its own fixture (tables, env, simulated store and SASL): those
 * differ on purpose. Include after cmocka.h and smtp/session.h: failures are cmocka
 * assertions. */
#ifndef TERN_TESTS_SESSION_FIXTURE_H
#define TERN_TESTS_SESSION_FIXTURE_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Appends the core's pending output to out (NUL-terminated, *outlen bytes) and marks it sent. */
static inline void sfx_collect(struct smtp_session *s, char *out, size_t cap, size_t *outlen)
{
    const char *o;
    size_t n = smtp_session_pending_output(s, &o);
    assert_true(*outlen + n < cap);
    memcpy(out + *outlen, o, n);
    *outlen += n;
    out[*outlen] = '\0';
    smtp_session_output_sent(s, n);
}

/* Feeds len bytes, calling serve(arg) (which performs the core's requests and collects its
 * output) whenever the core stops; returns how many bytes the core took (fewer when it closed or
 * stopped taking input). */
static inline size_t sfx_feed(struct smtp_session *s, const char *data, size_t len,
                              void (*serve)(void *), void *arg)
{
    size_t off = 0;
    serve(arg);
    while (off < len && smtp_session_wants_close(s) == SMTP_OPEN) {
        size_t used = smtp_session_feed(s, data + off, len - off);
        off += used;
        serve(arg);
        if (used == 0 && !smtp_session_request(s) && smtp_session_wants_close(s) == SMTP_OPEN)
            break;
    }
    serve(arg);
    return off;
}

/* The code of the last reply line written after out[before] (0 if nothing was written). */
static inline int sfx_last_code(const char *out, size_t outlen, size_t before)
{
    if (outlen == before)
        return 0;
    assert_true(outlen >= before + 2 && out[outlen - 1] == '\n');
    size_t start = outlen - 2;
    while (start > before && out[start - 1] != '\n')
        start--;
    return atoi(out + start);
}

/* env.auth_mech_ok: PLAIN only. */
static inline bool sfx_mech_plain(void *ctx, const char *mech, size_t len)
{
    (void)ctx;
    return len == 5 && strncasecmp(mech, "PLAIN", 5) == 0;
}

/* One event as the hook saw it, copied: the core's strings live only during the call. */
struct sfx_event {
    bool limit;
    char verb[16], mech[32], enh[16], rule[32], text[600];
    char arg[600];
    size_t arg_len;
    int code;
};

static inline void sfx_copy_str(char *dst, size_t cap, const char *src)
{
    assert_non_null(src);
    assert_true(strlen(src) < cap);
    strcpy(dst, src);
}

/* Copies ev into r, checking every string is there and fits. */
static inline void sfx_record(struct sfx_event *r, const struct smtp_event *ev)
{
    r->limit = ev->limit;
    r->code = ev->code;
    sfx_copy_str(r->verb, sizeof r->verb, ev->verb);
    sfx_copy_str(r->mech, sizeof r->mech, ev->mech);
    sfx_copy_str(r->enh, sizeof r->enh, ev->enh);
    sfx_copy_str(r->rule, sizeof r->rule, ev->rule);
    sfx_copy_str(r->text, sizeof r->text, ev->text);
    assert_true(ev->arg_len < sizeof r->arg);
    assert_true(ev->arg_len == 0 || ev->arg);
    if (ev->arg_len)
        memcpy(r->arg, ev->arg, ev->arg_len);
    r->arg[ev->arg_len] = '\0';
    r->arg_len = ev->arg_len;
}

#endif
