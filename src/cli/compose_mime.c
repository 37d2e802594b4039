/* The body of a composed message (mime_build, compose_priv.h): the size limit over body and
 * attachments, the text part with the lightest transfer encoding its bytes allow, each
 * attachment in base64 with its type and file name, and the multipart/mixed around them under
 * a boundary that is checked not to occur in any of them. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/compose_priv.h"
#include "util/err.h"

#define BOUNDARY_RANDOM 24 /* characters, each one of 62: 142 bits */
#define BOUNDARY_TRIES 16

/* Shown by programs that do not know MIME, where the parts begin. */
static const char preamble[] = "This is a multi-part message in MIME format.";

/* RFC 2045 token, for a charset or a type given by the caller. */
static bool is_token(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c >= 0x7f || strchr("()<>@,;:\\\"/[]?=", c) != NULL)
            return false;
    }
    return n > 0;
}

/* The text part: its header fields into ph, the encoded body into pb; *eight when it went as
 * 8bit (a multipart around it must say so too, RFC 2045 6.4). */
static int text_part(const struct compose_input *in, struct cbuf *ph, struct cbuf *pb,
                     bool *eight_out, char *err, size_t errlen)
{
    const unsigned char *s = in->body;
    size_t n = in->body != NULL ? in->body_len : 0;
    struct cbuf nb = {0};

    /* Bare LF to CRLF: SMTP needs CRLF, and RFC 5322 allows no bare LF. */
    for (size_t i = 0, run = 0; i < n; i++) {
        if (s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) {
            cb_put(&nb, s + run, i - run);
            cb_put(&nb, "\r\n", 2);
            run = i + 1;
        }
        if (i + 1 == n)
            cb_put(&nb, s + run, n - run);
    }
    /* The last line ends like the others: the SMTP layer ends DATA with CRLF "." CRLF. */
    if (nb.n > 0 && (nb.n < 2 || memcmp(nb.p + nb.n - 2, "\r\n", 2) != 0))
        cb_put(&nb, "\r\n", 2);

    const unsigned char *b = (const unsigned char *)nb.p;
    bool nul = false, bare_cr = false, eight = false;
    size_t line = 0, longest = 0;
    for (size_t i = 0; i < nb.n; i++) {
        nul |= b[i] == 0;
        eight |= b[i] >= 0x80;
        if (b[i] == '\r' && i + 1 < nb.n && b[i + 1] == '\n') {
            longest = line > longest ? line : longest;
            line = 0;
            i++;
            continue;
        }
        bare_cr |= b[i] == '\r';
        line++;
    }
    longest = line > longest ? line : longest;

    const char *charset = in->body_charset;
    if (charset != NULL && !is_token(charset, strlen(charset))) {
        err_set(err, errlen, "'%s' is not a charset name (such as iso-8859-1)", charset);
        cb_free(&nb);
        return -1;
    }
    if (charset == NULL)
        charset = !eight ? "us-ascii" : enc_utf8_valid(b, nb.n) ? "utf-8" : "unknown-8bit";
    /* 7bit and 8bit promise lines of at most 998 octets and no NUL or bare CR (RFC 2045 2.7,
     * 2.8); past that, and for 8-bit text a server without 8BITMIME cannot take,
     * quoted-printable. */
    const char *cte = "7bit";
    if (nul || bare_cr || longest > COMPOSE_HARD_LINE || (eight && !in->eight_bit))
        cte = "quoted-printable";
    else if (eight)
        cte = "8bit";
    *eight_out = cte[0] == '8';

    cb_puts(ph, "Content-Type: text/plain; charset=");
    cb_puts(ph, charset);
    cb_puts(ph, "\r\nContent-Transfer-Encoding: ");
    cb_puts(ph, cte);
    cb_puts(ph, "\r\n");
    if (cte[0] == 'q')
        enc_qp(pb, b, nb.n);
    else
        cb_put(pb, nb.p, nb.n);
    bool oom = nb.oom;
    cb_free(&nb);
    if (oom) {
        err_set(err, errlen, "out of memory encoding the body (%zu octets)", n);
        return -1;
    }
    return 0;
}

/* One attachment, header fields and base64 body, into p. */
static int attach_part(const struct compose_attachment *a, const unsigned char *data, size_t len,
                       struct cbuf *p, char *err, size_t errlen)
{
    const char *name = a->name;
    if (name == NULL) {
        const char *slash = strrchr(a->path, '/');
        name = slash != NULL ? slash + 1 : a->path;
    }
    if (name[0] == 0) {
        err_set(err, errlen, "attachment '%s' has no file name: give a file, not a folder",
                a->path);
        return -1;
    }
    if (!enc_utf8_valid((const unsigned char *)name, strlen(name))) {
        err_set(err, errlen,
                "the file name of attachment '%s' is not UTF-8, so it cannot be written in "
                "the message; rename the file",
                a->path);
        return -1;
    }
    const char *type = a->type != NULL ? a->type : compose_guess_type(name);
    const char *slash = strchr(type, '/');
    if (slash == NULL || !is_token(type, (size_t)(slash - type)) ||
        !is_token(slash + 1, strlen(slash + 1))) {
        err_set(err, errlen, "attachment type '%s' is not of the form type/subtype", type);
        return -1;
    }

    struct fold f;
    fold_start(&f, p, "Content-Type");
    fold_words(&f, type, strlen(type));
    /* A text file read as us-ascii (the default) would show its UTF-8 as mojibake. */
    if (strncmp(type, "text/", 5) == 0 && enc_utf8_valid(data, len)) {
        fold_token(&f, "", 0, ";", 1);
        fold_words(&f, enc_ascii(data, len) ? "charset=us-ascii" : "charset=utf-8",
                   enc_ascii(data, len) ? 16 : 13);
    }
    fold_param(&f, "name", name); /* for programs older than Content-Disposition */
    bool ok = fold_end(&f);
    fold_start(&f, p, "Content-Disposition");
    fold_words(&f, "attachment", 10);
    fold_param(&f, "filename", name);
    ok &= fold_end(&f);
    if (!ok) {
        err_set(err, errlen, "the type of attachment '%s' is too long for a header line", a->path);
        return -1;
    }
    cb_puts(p, "Content-Transfer-Encoding: base64\r\n\r\n");
    enc_base64_lines(p, data, len);
    return 0;
}

static bool occurs(const struct cbuf *parts, size_t n, const char *s)
{
    size_t sn = strlen(s);
    for (size_t i = 0; i < n; i++) {
        if (parts[i].n > 0 && memmem(parts[i].p, parts[i].n, s, sn) != NULL)
            return true;
    }
    return memmem(preamble, sizeof preamble - 1, s, sn) != NULL;
}

/* A boundary found in no part: not just not on a line of its own (RFC 2046 5.1.1) but nowhere,
 * so no reading of any part can take it for a delimiter. Random, so that a collision takes a
 * part written to match; a retry counter at the end, so that even a random source stuck on one
 * value gives distinct candidates. */
static int choose_boundary(const struct compose_input *in, const struct cbuf *parts, size_t n,
                           char *bnd, size_t bndlen, char *err, size_t errlen)
{
    static const char alnum[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (size_t k = 0; k < BOUNDARY_TRIES; k++) {
        unsigned char r[BOUNDARY_RANDOM];
        if (compose_get_random(in, r, sizeof r, err, errlen) < 0)
            return -1;
        /* "=_" cannot occur in base64 or quoted-printable: only a 7bit or 8bit part can
         * ever hold it */
        size_t w = (size_t)snprintf(bnd, bndlen, "=_tern_");
        for (size_t i = 0; i < sizeof r; i++)
            bnd[w++] = alnum[r[i] % 62];
        bnd[w] = 0;
        if (k > 0)
            snprintf(bnd + w, bndlen - w, "_%zu", k);
        if (!occurs(parts, n, bnd))
            return 0;
    }
    err_set(err, errlen,
            "no MIME boundary absent from the message's parts after %d tries: the random "
            "source keeps repeating itself",
            BOUNDARY_TRIES);
    return -1;
}

struct loaded {
    const unsigned char *data;
    size_t len;
    char *owned; /* read from a FILE*: ours to free */
};

static void too_big(const char *path, size_t len, bool or_more, size_t max, char *err,
                    size_t errlen)
{
    char lim[COMPOSE_SIZE_TEXT];
    err_set(err, errlen,
            "attachment '%s' (%zu octets%s) takes body and attachments over the limit of %s; "
            "send fewer or smaller files, or share large ones another way",
            path, len, or_more ? " or more" : "", compose_size_text(lim, max));
}

/* Every attachment's bytes, within the limit left after the body. */
static int load_attachments(const struct compose_input *in, struct loaded *ld, size_t max,
                            char *err, size_t errlen)
{
    char lim[COMPOSE_SIZE_TEXT];
    size_t total = in->body != NULL ? in->body_len : 0;
    if (total > max) {
        err_set(err, errlen,
                "the body is %zu octets, over the limit of %s for body and attachments "
                "together; send less, or share large files another way",
                total, compose_size_text(lim, max));
        return -1;
    }
    for (size_t i = 0; i < in->n_attach; i++) {
        const struct compose_attachment *a = &in->attach[i];
        if (a->path == NULL) {
            err_set(err, errlen, "attachment %zu has no path", i + 1);
            return -1;
        }
        if (a->data != NULL) {
            ld[i].data = a->data;
            ld[i].len = a->len;
        } else if (a->file != NULL) {
            bool over;
            if (compose_read_bounded(a->file, max - total, &ld[i].owned, &ld[i].len, &over) < 0) {
                if (over)
                    too_big(a->path, ld[i].len, true, max, err, errlen);
                else
                    err_set(err, errlen, "cannot read attachment '%s': %s", a->path,
                            strerror(errno));
                return -1;
            }
            ld[i].data = (const unsigned char *)ld[i].owned;
        } else {
            err_set(err, errlen, "attachment '%s' has neither bytes nor an open file", a->path);
            return -1;
        }
        if (ld[i].len > max - total) {
            too_big(a->path, ld[i].len, false, max, err, errlen);
            return -1;
        }
        total += ld[i].len;
    }
    return 0;
}

/* multipart/mixed: the text part (if any) first, then the attachments in the order given. */
static int multipart(const struct compose_input *in, const struct loaded *ld, struct cbuf *h,
                     struct cbuf *b, char *err, size_t errlen)
{
    size_t n = in->n_attach + 1, np = 0;
    struct cbuf *parts = calloc(n, sizeof *parts);
    bool eight = false;
    int rc = -1;

    if (parts == NULL) {
        err_set(err, errlen, "out of memory composing the message");
        return -1;
    }
    if (in->body != NULL) {
        struct cbuf pb = {0};
        if (text_part(in, &parts[0], &pb, &eight, err, errlen) < 0) {
            cb_free(&pb);
            goto done;
        }
        cb_put(&parts[0], "\r\n", 2);
        cb_put(&parts[0], pb.p, pb.n);
        parts[0].oom |= pb.oom;
        cb_free(&pb);
        np++;
    }
    for (size_t i = 0; i < in->n_attach; i++, np++) {
        if (attach_part(&in->attach[i], ld[i].data, ld[i].len, &parts[np], err, errlen) < 0)
            goto done;
    }

    char bnd[64];
    if (choose_boundary(in, parts, np, bnd, sizeof bnd, err, errlen) < 0)
        goto done;
    struct fold f;
    fold_start(&f, h, "Content-Type");
    fold_words(&f, "multipart/mixed;", 16);
    char param[80];
    int pn = snprintf(param, sizeof param, "boundary=\"%s\"", bnd);
    fold_token(&f, " ", 1, param, (size_t)pn);
    fold_end(&f);
    if (eight)
        cb_puts(h, "Content-Transfer-Encoding: 8bit\r\n");

    /* Each delimiter's leading CRLF belongs to it (RFC 2046 5.1.1), so every part keeps its
     * own last line break. */
    cb_puts(b, preamble);
    for (size_t i = 0; i < np; i++) {
        cb_puts(b, "\r\n--");
        cb_puts(b, bnd);
        cb_puts(b, "\r\n");
        cb_put(b, parts[i].p, parts[i].n);
        b->oom |= parts[i].oom;
    }
    cb_puts(b, "\r\n--");
    cb_puts(b, bnd);
    cb_puts(b, "--\r\n");
    rc = 0;
done:
    for (size_t i = 0; i < n; i++)
        cb_free(&parts[i]);
    free(parts);
    return rc;
}

int mime_build(const struct compose_input *in, struct cbuf *h, struct cbuf *b, char *err,
               size_t errlen)
{
    size_t max = in->max_size > 0 ? in->max_size : COMPOSE_MAX_DEFAULT;
    struct loaded *ld = calloc(in->n_attach + 1, sizeof *ld);
    int rc = -1;

    if (ld == NULL) {
        err_set(err, errlen, "out of memory composing the message");
        return -1;
    }
    if (load_attachments(in, ld, max, err, errlen) == 0) {
        bool eight;
        if (in->n_attach == 0)
            rc = text_part(in, h, b, &eight, err, errlen);
        else
            rc = multipart(in, ld, h, b, err, errlen);
    }
    for (size_t i = 0; i < in->n_attach; i++)
        free(ld[i].owned);
    free(ld);
    return rc;
}
