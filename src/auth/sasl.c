/* The SASL side of SMTP AUTH: one GNU SASL context for the process and one server session per
 * exchange, with the policy GNU SASL leaves to its caller (who the user is, whether the password
 * or SCRAM proof matches the users table, who may act as whom) and the bounds it does not impose
 * (response size, step count). Base64 is decoded and encoded here, not by gsasl_step64, so a
 * malformed response is told apart from a wrong password. The Gsasl context is only read after
 * sasl_new; everything an exchange changes lives in its struct sasl_conn, which the callback
 * reaches through the session hook, so exchanges may step on different threads at once. */
#include "auth/sasl.h"

#include "auth/passwd.h"
#include "util/err.h"

#include <gsasl.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#define SASL_MAX_RESPONSE (12 * 1024) /* base64 characters in one client response */
#define SASL_MAX_STEPS 4              /* PLAIN needs 2, LOGIN 3, SCRAM 4 (with the final ack) */
#define SASL_FAKE_KEY_LEN 32
#define SASL_SALT_LEN 16 /* what passwd_hash_scram makes, so a fake salt looks like a real one */

enum sasl_mech { MECH_PLAIN, MECH_LOGIN, MECH_SCRAM, MECH_COUNT };

static const char *const mech_names[MECH_COUNT] = {"PLAIN", "LOGIN", "SCRAM-SHA-256"};

struct sasl {
    Gsasl *ctx;
    bool offered[MECH_COUNT];
    char mechs[64];
    /* Keys the fake SCRAM credentials of unknown users: random per process, so nobody can tell
     * them from real ones, yet stable, so asking twice for one name gives the same salt. */
    unsigned char fake_key[SASL_FAKE_KEY_LEN];
};

struct sasl_conn {
    struct sasl *s;
    const struct tables *t;
    Gsasl_session *gs;
    enum sasl_mech mech;
    unsigned steps;
    bool over;          /* a final status was returned: any further step fails */
    bool final_pending; /* SCRAM: server-final sent as a 334, waiting for the client's "" */
    int login_phase;    /* LOGIN: 0 before the first prompt, 1 after "User Name", 2 after it */
    bool scram_started; /* SCRAM: the client-first message has been stepped */
    bool internal;      /* the callback hit an internal failure: answer SASL_TEMP */
    char authid[TABLES_ADDR_MAX + 1]; /* lowercased, maybe truncated: for the log and throttle */
    char user[TABLES_ADDR_MAX + 1];   /* identity granted once the mechanism succeeded */
    char why[160];                    /* the callback's reason, for the log */
};

/* Copies s lowercased (ASCII) into dst, truncating. Returns -1 if it did not fit. */
static int lower_into(char *dst, size_t n, const char *s, size_t len)
{
    size_t i = 0;
    for (; i < len && i + 1 < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        dst[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch);
    }
    dst[i] = '\0';
    return i == len ? 0 : -1;
}

/* ---- base64 (RFC 4648, padded), strict: a response that is not exactly this is a 501 ---- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

/* Decodes in[0..len) into out (at least len / 4 * 3 + 1 bytes, NUL-terminated for gsasl's
 * sake). -1 when in is not padded base64. */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t *outlen)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        size_t pad = 0;
        for (size_t k = 0; k < 4; k++) {
            unsigned char ch = (unsigned char)in[i + k];
            if (ch == '=' && i + 4 == len && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = b64_value(ch)) < 0)
                return -1; /* a character after '=', or outside the alphabet */
        }
        uint32_t w = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | v[3];
        out[o++] = (unsigned char)(w >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(w >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)w;
    }
    out[o] = '\0';
    *outlen = o;
    return 0;
}

/* malloc'd padded base64 of in[0..len), or NULL when out of memory. */
static char *b64_encode(const unsigned char *in, size_t len)
{
    char *out = malloc((len + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t w = (uint32_t)in[i] << 16;
        if (i + 1 < len)
            w |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < len)
            w |= in[i + 2];
        out[o++] = b64_alphabet[w >> 18 & 63];
        out[o++] = b64_alphabet[w >> 12 & 63];
        out[o++] = i + 1 < len ? b64_alphabet[w >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? b64_alphabet[w & 63] : '=';
    }
    out[o] = '\0';
    return out;
}

/* Hex text of exactly n bytes into out. -1 when malformed. */
static int hex_decode(const char *hex, unsigned char *out, size_t n)
{
    if (strlen(hex) != 2 * n)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int v = 0;
        for (size_t k = 0; k < 2; k++) {
            char ch = hex[2 * i + k];
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d < 0)
                return -1;
            v = v * 16 + d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* ---- SCRAM credentials ---- */

/* What GNU SASL's SCRAM server wants: all four as text. Keys in base64 (see set_scram). */
struct scram_creds {
    char iter[16];
    char salt[64];
    char stored[64];
    char server[64];
};

/* Sets creds from the users table entry. -1 if it holds no usable SCRAM-SHA-256 secret. */
static int scram_real(const char *stored, struct scram_creds *c)
{
    struct passwd_scram p;
    unsigned char stk[32], svk[32];
    if (passwd_scram_parts(stored, &p) < 0 || hex_decode(p.stored_hex, stk, sizeof(stk)) < 0 ||
        hex_decode(p.server_hex, svk, sizeof(svk)) < 0)
        return -1;
    char *a = b64_encode(stk, sizeof(stk)), *b = b64_encode(svk, sizeof(svk));
    int r = -1;
    if (a && b) {
        snprintf(c->iter, sizeof(c->iter), "%s", p.iter);
        snprintf(c->salt, sizeof(c->salt), "%s", p.salt_b64);
        snprintf(c->stored, sizeof(c->stored), "%s", a);
        snprintf(c->server, sizeof(c->server), "%s", b);
        r = 0;
    }
    free(a);
    free(b);
    return r;
}

/* HMAC-SHA-256(fake_key, label || 0 || name). -1 on a crypto failure. */
static int fake_mac(const struct sasl *s, const char *label, const char *name,
                    unsigned char mac[32])
{
    unsigned char msg[32 + TABLES_ADDR_MAX + 1];
    size_t ll = strlen(label), nl = strlen(name);
    if (ll + 1 + nl > sizeof(msg))
        return -1;
    memcpy(msg, label, ll + 1);
    memcpy(msg + ll + 1, name, nl);
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), s->fake_key, sizeof(s->fake_key), msg, ll + 1 + nl, mac, &maclen) ||
        maclen != 32)
        return -1;
    return 0;
}

/* Credentials for a name that must not authenticate by SCRAM (unknown, locked, {CRYPT} only):
 * derived from the name, so they look like a real user's and the proof simply fails. */
static int scram_fake(const struct sasl *s, const char *name, struct scram_creds *c)
{
    unsigned char salt[32], stk[32], svk[32];
    if (fake_mac(s, "salt", name, salt) < 0 || fake_mac(s, "stored", name, stk) < 0 ||
        fake_mac(s, "server", name, svk) < 0)
        return -1;
    char *a = b64_encode(salt, SASL_SALT_LEN), *b = b64_encode(stk, 32), *d = b64_encode(svk, 32);
    int r = -1;
    if (a && b && d) {
        snprintf(c->iter, sizeof(c->iter), "%u", (unsigned)PASSWD_SCRAM_ITER);
        snprintf(c->salt, sizeof(c->salt), "%s", a);
        snprintf(c->stored, sizeof(c->stored), "%s", b);
        snprintf(c->server, sizeof(c->server), "%s", d);
        r = 0;
    }
    free(a);
    free(b);
    free(d);
    return r;
}

/* Answers GNU SASL's SCRAM questions all at once, on the first of them: the server reads the
 * rest with gsasl_property_get, which asks the callback only for what is still unset.
 * GNU SASL 2.2 wants StoredKey and ServerKey in base64, whatever its header says (hex fails). */
static int set_scram(struct sasl_conn *c, Gsasl_session *gs)
{
    const char *authid = gsasl_property_fast(gs, GSASL_AUTHID);
    char name[TABLES_ADDR_MAX + 1];
    const struct tables_user *u = NULL;
    if (authid && lower_into(name, sizeof(name), authid, strlen(authid)) == 0)
        u = tables_user(c->t, name);
    else
        lower_into(name, sizeof(name), authid ? authid : "", authid ? strlen(authid) : 0);

    struct scram_creds cr;
    if (!u || u->locked || scram_real(u->password, &cr) < 0) {
        err_set(c->why, sizeof(c->why), "%s",
                !u          ? "unknown user"
                : u->locked ? "user is locked (nologin)"
                            : "user has no SCRAM-SHA-256 secret");
        if (scram_fake(c->s, name, &cr) < 0) {
            c->internal = true;
            err_set(c->why, sizeof(c->why), "cannot derive SCRAM credentials");
            return GSASL_CRYPTO_ERROR;
        }
    }
    int rc = GSASL_OK;
    if (gsasl_property_set(gs, GSASL_SCRAM_ITER, cr.iter) != GSASL_OK ||
        gsasl_property_set(gs, GSASL_SCRAM_SALT, cr.salt) != GSASL_OK ||
        gsasl_property_set(gs, GSASL_SCRAM_STOREDKEY, cr.stored) != GSASL_OK ||
        gsasl_property_set(gs, GSASL_SCRAM_SERVERKEY, cr.server) != GSASL_OK) {
        c->internal = true;
        err_set(c->why, sizeof(c->why), "out of memory");
        rc = GSASL_MALLOC_ERROR;
    }
    explicit_bzero(&cr, sizeof(cr)); /* StoredKey alone allows an offline dictionary attack */
    return rc;
}

/* ---- PLAIN and LOGIN ---- */

/* Checks authid's password. Unknown and locked users cost the same as known ones. */
static int validate_simple(struct sasl_conn *c, Gsasl_session *gs)
{
    const char *authid = gsasl_property_fast(gs, GSASL_AUTHID);
    const char *pw = gsasl_property_fast(gs, GSASL_PASSWORD);
    if (!pw)
        pw = "";
    size_t pwlen = strlen(pw);
    char name[TABLES_ADDR_MAX + 1];
    const struct tables_user *u = NULL;
    if (authid && lower_into(name, sizeof(name), authid, strlen(authid)) == 0)
        u = tables_user(c->t, name);
    if (!u || u->locked) {
        passwd_verify_dummy(pw, pwlen);
        err_set(c->why, sizeof(c->why), "%s", u ? "user is locked (nologin)" : "unknown user");
        return GSASL_AUTHENTICATION_ERROR;
    }
    int r = passwd_verify(u->password, pw, pwlen);
    if (r == 1)
        return GSASL_OK;
    err_set(c->why, sizeof(c->why), "%s",
            r == 0 ? "wrong password" : "stored credential is unusable");
    return GSASL_AUTHENTICATION_ERROR;
}

/* GNU SASL's questions and validation requests. Runs inside gsasl_step, on the thread stepping
 * this exchange: it touches only that exchange's struct and the read-only tables. */
static int sasl_callback(Gsasl *ctx, Gsasl_session *gs, Gsasl_property prop)
{
    struct sasl_conn *c = gs ? gsasl_session_hook_get(gs) : NULL;
    if (!c)
        return GSASL_NO_CALLBACK;
    switch (prop) {
    case GSASL_VALIDATE_SIMPLE:
        return validate_simple(c, gs);
    case GSASL_SCRAM_ITER:
    case GSASL_SCRAM_SALT:
    case GSASL_SCRAM_STOREDKEY:
    case GSASL_SCRAM_SERVERKEY:
        return set_scram(c, gs);
    default:
        /* No channel binding (never -PLUS), no plaintext password to hand out. */
        return GSASL_NO_CALLBACK;
    }
}

/* ---- the process-wide context ---- */

struct sasl *sasl_new(char *err, size_t errlen)
{
    struct sasl *s = calloc(1, sizeof(*s));
    if (!s) {
        err_set(err, errlen, "out of memory starting SASL");
        return NULL;
    }
    if (getrandom(s->fake_key, sizeof(s->fake_key), 0) != (ssize_t)sizeof(s->fake_key)) {
        err_set(err, errlen, "cannot read random bytes for SASL");
        free(s);
        return NULL;
    }
    int rc = gsasl_init(&s->ctx);
    if (rc != GSASL_OK) {
        err_set(err, errlen, "cannot start GNU SASL: %s", gsasl_strerror(rc));
        free(s);
        return NULL;
    }
    gsasl_callback_set(s->ctx, sasl_callback);
    size_t o = 0;
    for (int m = 0; m < MECH_COUNT; m++) {
        if (!gsasl_server_support_p(s->ctx, mech_names[m]))
            continue;
        s->offered[m] = true;
        o += (size_t)snprintf(s->mechs + o, sizeof(s->mechs) - o, "%s%s", o ? " " : "",
                              mech_names[m]);
    }
    if (o == 0) {
        err_set(err, errlen, "GNU SASL offers none of PLAIN, LOGIN, SCRAM-SHA-256");
        sasl_free(s);
        return NULL;
    }
    return s;
}

void sasl_free(struct sasl *s)
{
    if (!s)
        return;
    gsasl_done(s->ctx);
    free(s);
}

const char *sasl_mechanisms(const struct sasl *s)
{
    return s->mechs;
}

static int mech_find(const struct sasl *s, const char *mech, size_t len)
{
    for (int m = 0; m < MECH_COUNT; m++) {
        if (s->offered[m] && strlen(mech_names[m]) == len &&
            strncasecmp(mech_names[m], mech, len) == 0)
            return m;
    }
    return -1;
}

bool sasl_supported(const struct sasl *s, const char *mech, size_t len)
{
    return mech && mech_find(s, mech, len) >= 0;
}

/* ---- one exchange ---- */

struct sasl_conn *sasl_conn_new(struct sasl *s, const char *mech, const struct tables *t, char *err,
                                size_t errlen)
{
    int m = mech ? mech_find(s, mech, strlen(mech)) : -1;
    if (m < 0) {
        err_set(err, errlen, "mechanism %.32s is not offered", mech ? mech : "(none)");
        return NULL;
    }
    struct sasl_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        err_set(err, errlen, "out of memory starting an AUTH exchange");
        return NULL;
    }
    c->s = s;
    c->t = t;
    c->mech = (enum sasl_mech)m;
    int rc = gsasl_server_start(s->ctx, mech_names[m], &c->gs);
    if (rc != GSASL_OK) {
        err_set(err, errlen, "cannot start %s: %s", mech_names[m], gsasl_strerror(rc));
        free(c);
        return NULL;
    }
    gsasl_session_hook_set(c->gs, c);
    return c;
}

void sasl_conn_free(struct sasl_conn *c)
{
    if (!c)
        return;
    gsasl_finish(c->gs);
    free(c);
}

const char *sasl_conn_authid(const struct sasl_conn *c)
{
    return c->authid;
}

/* GNU SASL's verdicts: the client's fault (or a wrong secret) is a 535, ours a 454. */
static bool gsasl_client_fault(int rc)
{
    switch (rc) {
    case GSASL_AUTHENTICATION_ERROR:
    case GSASL_MECHANISM_PARSE_ERROR:
    case GSASL_MECHANISM_CALLED_TOO_MANY_TIMES:
    case GSASL_SASLPREP_ERROR:
    case GSASL_BASE64_ERROR: /* inside a mechanism's message, e.g. SCRAM's c= or p= */
    case GSASL_NO_AUTHID:
    case GSASL_NO_AUTHZID:
    case GSASL_NO_CB_TLS_UNIQUE:
    case GSASL_NO_CB_TLS_EXPORTER:
    case GSASL_INTEGRITY_ERROR:
        return true;
    default:
        return false;
    }
}

/* GNU SASL's name for rc, for the log; it has none for codes it does not know. */
static const char *rc_name(int rc)
{
    const char *n = gsasl_strerror_name(rc);
    return n ? n : "unknown GNU SASL error";
}

/* The mechanism succeeded for authid: decides who the client now is. An authorization identity
 * other than authid is granted only to admins, and only as an existing, unlocked local user. */
static enum sasl_status authorize(struct sasl_conn *c, char *why, size_t whylen)
{
    const char *authid = gsasl_property_fast(c->gs, GSASL_AUTHID);
    const char *authzid = gsasl_property_fast(c->gs, GSASL_AUTHZID);
    char a[TABLES_ADDR_MAX + 1], z[TABLES_ADDR_MAX + 1];
    const struct tables_user *u = NULL;
    if (authid && lower_into(a, sizeof(a), authid, strlen(authid)) == 0)
        u = tables_user(c->t, a);
    if (!u || u->locked) {
        /* Cannot happen when the callback did its job; refuse rather than trust it. */
        err_set(why, whylen, "mechanism succeeded for an unknown or locked user");
        return SASL_FAIL;
    }
    if (!authzid || !*authzid) {
        snprintf(c->user, sizeof(c->user), "%s", u->addr);
        return SASL_OK;
    }
    const struct tables_user *target = NULL;
    if (lower_into(z, sizeof(z), authzid, strlen(authzid)) == 0)
        target = tables_user(c->t, z);
    if (target == u) {
        snprintf(c->user, sizeof(c->user), "%s", u->addr);
        return SASL_OK;
    }
    if (!u->admin) {
        err_set(why, whylen, "%s may not act as %.64s: not an admin", u->addr, z);
        return SASL_NOT_ADMIN;
    }
    if (!target || target->locked) {
        err_set(why, whylen, "admin %s asked to act as %.64s: %s", u->addr, z,
                target ? "a locked user" : "not a local user");
        return SASL_FAIL;
    }
    snprintf(c->user, sizeof(c->user), "%s", target->addr);
    return SASL_OK;
}

/* Remembers the authentication identity as soon as the client has named it. */
static void note_authid(struct sasl_conn *c, const unsigned char *raw, size_t rawlen)
{
    if (c->authid[0])
        return;
    if (c->mech == MECH_LOGIN && raw) {
        /* LOGIN names the user in its own response; GNU SASL records it only with the password. */
        if (!memchr(raw, '\0', rawlen))
            lower_into(c->authid, sizeof(c->authid), (const char *)raw, rawlen);
        return;
    }
    const char *p = gsasl_property_fast(c->gs, GSASL_AUTHID);
    if (p)
        lower_into(c->authid, sizeof(c->authid), p, strlen(p));
}

/* One gsasl_step, with the LOGIN prompt bookkeeping. */
static int step_raw(struct sasl_conn *c, const unsigned char *in, size_t len, bool have_in,
                    char **gout, size_t *goutlen)
{
    *gout = NULL;
    *goutlen = 0;
    if (c->mech == MECH_LOGIN && c->login_phase == 0 && have_in && len > 0) {
        /* AUTH LOGIN <user>: GNU SASL's LOGIN ignores an initial response and prompts for the
         * user name. Take its prompt, drop it, and answer it with the initial response. */
        int rc = gsasl_step(c->gs, NULL, 0, gout, goutlen);
        gsasl_free(*gout);
        *gout = NULL;
        *goutlen = 0;
        if (rc != GSASL_NEEDS_MORE)
            return rc;
        c->login_phase = 1;
    }
    if (c->mech == MECH_LOGIN && c->login_phase == 1)
        note_authid(c, in, len);
    if (c->mech == MECH_SCRAM && !c->scram_started && len > 0) {
        /* RFC 5802: a client asking for channel binding ("p=") on a mechanism without -PLUS
         * must fail. GNU SASL 2.2 leaves that to the application and carries on. */
        if (in[0] != 'n' && in[0] != 'y')
            return GSASL_AUTHENTICATION_ERROR;
        c->scram_started = true;
    }
    int rc = gsasl_step(c->gs, have_in ? (const char *)in : NULL, have_in ? len : 0, gout, goutlen);
    if (c->mech == MECH_LOGIN && rc == GSASL_NEEDS_MORE)
        c->login_phase++;
    if (c->mech != MECH_LOGIN)
        note_authid(c, NULL, 0);
    return rc;
}

/* Hands the granted identity to the caller. */
static enum sasl_status grant(const struct sasl_conn *c, char *user, size_t userlen, char *why,
                              size_t whylen)
{
    int n = user && userlen ? snprintf(user, userlen, "%s", c->user) : -1;
    if (n < 0 || (size_t)n >= userlen) {
        err_set(why, whylen, "user buffer too small");
        return SASL_TEMP;
    }
    return SASL_OK;
}

/* sasl_conn_step within the bounds: decodes in into raw, steps, and maps the outcome. */
static enum sasl_status step_decoded(struct sasl_conn *c, const char *in, size_t inlen,
                                     unsigned char *raw, char **out, char *user, size_t userlen,
                                     char *why, size_t whylen)
{
    size_t rawlen = 0;
    if (in && b64_decode(in, inlen, raw, &rawlen) < 0) {
        err_set(why, whylen, "response is not base64");
        return SASL_BAD_BASE64;
    }
    if (c->final_pending) {
        /* SCRAM's server-final went out as a 334: the only acceptable answer is empty. */
        if (rawlen != 0) {
            err_set(why, whylen, "unexpected data after SCRAM server-final");
            return SASL_FAIL;
        }
        return grant(c, user, userlen, why, whylen);
    }

    c->internal = false;
    char *gout = NULL;
    size_t goutlen = 0;
    int rc = step_raw(c, raw, rawlen, in != NULL, &gout, &goutlen);
    /* GNU SASL keeps the password as a property until the session ends; it is done with it. */
    gsasl_property_set(c->gs, GSASL_PASSWORD, NULL);

    enum sasl_status st;
    if (c->internal) {
        st = SASL_TEMP;
        err_set(why, whylen, "%s", c->why);
    } else if (rc == GSASL_NEEDS_MORE) {
        st = SASL_CONTINUE;
    } else if (rc == GSASL_OK) {
        st = authorize(c, why, whylen);
        if (st == SASL_OK && goutlen > 0) {
            /* Additional data with success (SCRAM's v=): SMTP has no room for it in the 235,
             * so it goes out as a challenge and the 235 follows the client's empty answer. */
            st = SASL_CONTINUE;
            c->final_pending = true;
        } else if (st == SASL_OK) {
            st = grant(c, user, userlen, why, whylen);
        }
    } else if (gsasl_client_fault(rc)) {
        st = SASL_FAIL;
        err_set(why, whylen, "%s: %s", mech_names[c->mech], c->why[0] ? c->why : rc_name(rc));
    } else {
        st = SASL_TEMP;
        err_set(why, whylen, "%s: %s", mech_names[c->mech], rc_name(rc));
    }
    if (st == SASL_CONTINUE) {
        *out = b64_encode((const unsigned char *)(gout ? gout : ""), goutlen);
        if (!*out) {
            st = SASL_TEMP;
            err_set(why, whylen, "out of memory");
        }
    }
    gsasl_free(gout);
    return st;
}

enum sasl_status sasl_conn_step(struct sasl_conn *c, const char *in, char **out, char *user,
                                size_t userlen, char *why, size_t whylen)
{
    *out = NULL;
    if (user && userlen)
        user[0] = '\0';
    if (c->over) {
        err_set(why, whylen, "AUTH exchange already finished");
        return SASL_FAIL;
    }
    if (++c->steps > SASL_MAX_STEPS) {
        c->over = true;
        err_set(why, whylen, "more than %d steps", SASL_MAX_STEPS);
        return SASL_FAIL;
    }
    size_t inlen = in ? strnlen(in, SASL_MAX_RESPONSE + 1) : 0;
    if (inlen > SASL_MAX_RESPONSE) {
        c->over = true;
        err_set(why, whylen, "response longer than %d characters", SASL_MAX_RESPONSE);
        return SASL_FAIL;
    }
    /* The decoded response may be a password: it lives on the heap and is scrubbed on every way
     * out. */
    size_t rawcap = inlen / 4 * 3 + 1;
    unsigned char *raw = calloc(1, rawcap);
    enum sasl_status st = SASL_TEMP;
    if (raw)
        st = step_decoded(c, in, inlen, raw, out, user, userlen, why, whylen);
    else
        err_set(why, whylen, "out of memory");
    if (raw)
        explicit_bzero(raw, rawcap);
    free(raw);
    if (st != SASL_CONTINUE)
        c->over = true;
    return st;
}
