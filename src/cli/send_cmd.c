/* `tern send`: builds a message from its options (cli/compose.c) or takes a ready one (--raw),
 * connects to a server with libtern (STARTTLS by default), authenticates when --user is given,
 * sends it in one pipelined transaction, and says what each recipient's answer was. The exit
 * status tells success (0), a temporary failure worth retrying (75) and a permanent one (69)
 * apart. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/client_opts.h"
#include "cli/compose.h"

#define SEND_MAX_RCPTS 1000
#define SEND_MAX_LIST 256 /* --header, --attach */
#define PASSWORD_MAX 1024

static const char usage[] =
    "usage: tern send --from ADDRESS --to ADDRESS [--to ...] [options]\n"
    "\n"
    "Builds a message and sends it to a mail server: to your own server's submission port\n"
    "with --user, or to any server's port 25 without.\n"
    "\n"
    "  --server HOST[:PORT]  the server (default localhost; port 587 with --user, 465 with\n"
    "                      --tls, else 25); [IPV6]:PORT for an IPv6 address with a port\n"
    "  --user USER         authenticate as USER (AUTH); the password comes from\n"
    "                      $TERN_PASSWORD, --password-file FILE or a prompt, never argv\n"
    "  --password-file FILE  the password is the first line of FILE\n"
    "  --auth MECH         PLAIN, LOGIN or SCRAM-SHA-256 (default: PLAIN under TLS, else\n"
    "                      the best the server offers)\n"
    "  --from ADDRESS      the sender, e.g. 'Alice <alice@example.org>' (required)\n"
    "  --to ADDRESS        a recipient (To:); repeat for more\n"
    "  --cc ADDRESS        a recipient shown in Cc:\n"
    "  --bcc ADDRESS       a recipient not shown in the message\n"
    "  --subject TEXT      the subject (UTF-8 is encoded as RFC 2047 says)\n"
    "  --header 'NAME: VALUE'  one more header field; repeat for more\n"
    "  --body FILE|-       the text of the message (default: standard input when it is not\n"
    "                      a terminal, else empty)\n"
    "  --attach FILE       attach a file (MIME); repeat for more\n"
    "  --raw FILE|-        send FILE as it is (a whole message with its header); --subject,\n"
    "                      --header, --body and --attach do not apply\n"
    "  --bdat              use BDAT (CHUNKING) when the server offers it\n"
    "  --mode MODE         mail (default): to the mailboxes; send: to the recipients'\n"
    "                      terminals only (their tern watch); soml: the terminal, else the\n"
    "                      mailbox; saml: the mailbox and the terminal too (RFC 821)\n" CLIENT_USAGE
    "\n"
    "Exit status: 0 accepted for every recipient; 75 (EX_TEMPFAIL) a temporary failure or no\n"
    "connection: try again later; 69 (EX_UNAVAILABLE) refused for good; 64 bad usage; 66 a\n"
    "file cannot be read; 65 the message or an address is malformed.\n";

struct send_opts {
    struct client_cli cc;
    const char *server, *user, *password_file, *mech, *from, *subject, *body, *raw;
    const char *to[SEND_MAX_RCPTS], *cc_[SEND_MAX_RCPTS], *bcc[SEND_MAX_RCPTS];
    size_t nto, ncc, nbcc;
    const char *headers[SEND_MAX_LIST], *attach[SEND_MAX_LIST];
    size_t nheaders, nattach;
    enum tern_send_mode mode;
};

enum {
    O_SERVER = 1,
    O_USER,
    O_PWFILE,
    O_AUTH,
    O_FROM,
    O_TO,
    O_CC,
    O_BCC,
    O_SUBJECT,
    O_HEADER,
    O_BODY,
    O_ATTACH,
    O_RAW,
    O_BDAT,
    O_MODE,
    O_HELP
};

static int add(const char **list, size_t *n, size_t max, const char *v, const char *what)
{
    if (*n >= max) {
        fprintf(stderr, "tern send: more than %zu %s; send in several runs\n", max, what);
        return -1;
    }
    list[(*n)++] = v;
    return 0;
}

static int parse(int argc, char **argv, struct send_opts *o)
{
    static const struct option longopts[] = {
        {"server", required_argument, NULL, O_SERVER},
        {"user", required_argument, NULL, O_USER},
        {"password-file", required_argument, NULL, O_PWFILE},
        {"auth", required_argument, NULL, O_AUTH},
        {"from", required_argument, NULL, O_FROM},
        {"to", required_argument, NULL, O_TO},
        {"cc", required_argument, NULL, O_CC},
        {"bcc", required_argument, NULL, O_BCC},
        {"subject", required_argument, NULL, O_SUBJECT},
        {"header", required_argument, NULL, O_HEADER},
        {"body", required_argument, NULL, O_BODY},
        {"attach", required_argument, NULL, O_ATTACH},
        {"raw", required_argument, NULL, O_RAW},
        {"bdat", no_argument, NULL, O_BDAT},
        {"mode", required_argument, NULL, O_MODE},
        {"help", no_argument, NULL, O_HELP},
        CLIENT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    client_opts_init(&o->cc);
    opterr = 0;
    optind = 1;
    int ch, rc = 0;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        int t = client_opts_take(&o->cc, "send", ch, argv[optind - 1], optarg);
        if (t < 0)
            return EX_USAGE;
        if (t > 0)
            continue;
        switch (ch) {
        case O_SERVER:
            o->server = optarg;
            break;
        case O_USER:
            o->user = optarg;
            break;
        case O_PWFILE:
            o->password_file = optarg;
            break;
        case O_AUTH:
            o->mech = optarg;
            break;
        case O_FROM:
            o->from = optarg;
            break;
        case O_TO:
            rc |= add(o->to, &o->nto, SEND_MAX_RCPTS, optarg, "recipients");
            break;
        case O_CC:
            rc |= add(o->cc_, &o->ncc, SEND_MAX_RCPTS, optarg, "recipients");
            break;
        case O_BCC:
            rc |= add(o->bcc, &o->nbcc, SEND_MAX_RCPTS, optarg, "recipients");
            break;
        case O_SUBJECT:
            o->subject = optarg;
            break;
        case O_HEADER:
            rc |= add(o->headers, &o->nheaders, SEND_MAX_LIST, optarg, "--header");
            break;
        case O_BODY:
            o->body = optarg;
            break;
        case O_ATTACH:
            rc |= add(o->attach, &o->nattach, SEND_MAX_LIST, optarg, "--attach");
            break;
        case O_RAW:
            o->raw = optarg;
            break;
        case O_BDAT:
            o->cc.opts.use_bdat = 1;
            break;
        case O_MODE: {
            static const char *const modes[] = {"mail", "send", "soml", "saml"};
            size_t m = 0;
            while (m < 4 && strcasecmp(optarg, modes[m]) != 0)
                m++;
            if (m == 4) {
                fprintf(stderr, "tern send: --mode %s: write mail, send, soml or saml\n", optarg);
                return EX_USAGE;
            }
            o->mode = (enum tern_send_mode)m;
            break;
        }
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            return -1;
        default:
            return client_option_error("send", ch, argv[optind - 1]);
        }
    }
    if (rc)
        return EX_USAGE;
    if (optind < argc) {
        fprintf(stderr, "tern send: unexpected argument '%s'; see tern send --help\n",
                argv[optind]);
        return EX_USAGE;
    }
    if (!o->from || o->nto + o->ncc + o->nbcc == 0) {
        fprintf(stderr, "tern send: --from and at least one --to, --cc or --bcc are needed; see "
                        "tern send --help\n");
        return EX_USAGE;
    }
    if (o->raw && (o->subject || o->nheaders || o->body || o->nattach)) {
        fprintf(stderr, "tern send: --raw sends a whole message: leave out --subject, --header, "
                        "--body and --attach\n");
        return EX_USAGE;
    }
    if ((o->password_file || o->mech) && !o->user) {
        fprintf(stderr, "tern send: --password-file and --auth go with --user\n");
        return EX_USAGE;
    }
    return 0;
}

/* Reads FILE or "-" (standard input) whole. */
static int slurp(const char *path, const char *what, char **data, size_t *len)
{
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tern send: cannot read %s %s: %m\n", what, path);
        return EX_NOINPUT;
    }
    char err[COMPOSE_ERR_MAX];
    int rc = compose_read(f, what, COMPOSE_MAX_DEFAULT, data, len, err, sizeof err);
    if (f != stdin)
        fclose(f);
    if (rc != 0) {
        fprintf(stderr, "tern send: %s\n", err);
        return EX_DATAERR;
    }
    return 0;
}

/* The message to send: --raw checked, or composed (8-bit body when the server takes it). */
static int build(const struct send_opts *o, bool eight_bit, char **msg, size_t *len)
{
    char err[COMPOSE_ERR_MAX];
    char *data = NULL;
    size_t dlen = 0;
    int rc;
    if (o->raw) {
        if ((rc = slurp(o->raw, "the message", &data, &dlen)) != 0)
            return rc;
        rc = compose_raw_check(data, dlen, 0, msg, len, err, sizeof err);
        free(data);
        if (rc != 0) {
            fprintf(stderr, "tern send: %s\n", err);
            return EX_DATAERR;
        }
        return 0;
    }
    if (o->body) {
        if ((rc = slurp(o->body, "the body", &data, &dlen)) != 0)
            return rc;
    } else if (!isatty(STDIN_FILENO) && (rc = slurp("-", "the body", &data, &dlen)) != 0) {
        return rc;
    }
    struct compose_attachment at[SEND_MAX_LIST];
    FILE *files[SEND_MAX_LIST] = {0};
    rc = 0;
    for (size_t i = 0; i < o->nattach && rc == 0; i++) {
        at[i] = (struct compose_attachment){.path = o->attach[i]};
        if (!(files[i] = fopen(o->attach[i], "rb"))) {
            fprintf(stderr, "tern send: cannot read the attachment %s: %m\n", o->attach[i]);
            rc = EX_NOINPUT;
        }
        at[i].file = files[i];
    }
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    struct compose_input in = {
        .from = o->from,
        .to = o->to,
        .n_to = o->nto,
        .cc = o->cc_,
        .n_cc = o->ncc,
        .subject = o->subject,
        .headers = o->headers,
        .n_headers = o->nheaders,
        .body = data ? data : "",
        .body_len = dlen,
        .attach = at,
        .n_attach = o->nattach,
        .now = now,
        .utc_offset = tm.tm_gmtoff,
        .eight_bit = eight_bit,
    };
    if (rc == 0 && compose_message(&in, msg, len, err, sizeof err) != 0) {
        fprintf(stderr, "tern send: %s\n", err);
        rc = EX_DATAERR;
    }
    for (size_t i = 0; i < o->nattach; i++)
        if (files[i])
            fclose(files[i]);
    free(data);
    return rc;
}

static void print_reply(FILE *out, const char *who, const struct tern_reply *r)
{
    fprintf(out, "%s: %d%s%s ", who, r->code, r->enh[0] ? " " : "", r->enh);
    const char *t = tern_reply_text(r);
    cli_put_safe(out, t, strlen(t));
    fputc('\n', out);
}

/* The envelope: every --to, --cc and --bcc as a bare address, in that order. */
static int envelope(const struct send_opts *o, char (*addr)[HDR_ADDR_MAX + 1], size_t *n,
                    char from[HDR_ADDR_MAX + 1])
{
    char err[COMPOSE_ERR_MAX];
    if (compose_envelope_addr(o->from, from, err, sizeof err) != 0) {
        fprintf(stderr, "tern send: --from %s: %s\n", o->from, err);
        return EX_DATAERR;
    }
    const char *const *lists[3] = {o->to, o->cc_, o->bcc};
    size_t counts[3] = {o->nto, o->ncc, o->nbcc};
    *n = 0;
    for (int l = 0; l < 3; l++)
        for (size_t i = 0; i < counts[l]; i++) {
            if (compose_envelope_addr(lists[l][i], addr[*n], err, sizeof err) != 0) {
                fprintf(stderr, "tern send: %s: %s\n", lists[l][i], err);
                return EX_DATAERR;
            }
            (*n)++;
        }
    return 0;
}

static int run(struct send_opts *o)
{
    char host[256] = "localhost", port[32] = "";
    if (o->server && client_parse_server(o->server, host, sizeof host, port, sizeof port) != 0) {
        fprintf(stderr, "tern send: --server %s: write HOST, HOST:PORT or [IPV6]:PORT\n",
                o->server);
        return EX_USAGE;
    }
    if (!port[0])
        snprintf(port, sizeof port, "%s", client_default_port(o->cc.tls, o->user != NULL));
    size_t total = o->nto + o->ncc + o->nbcc;
    char(*addr)[HDR_ADDR_MAX + 1] = calloc(total, sizeof *addr);
    char from[HDR_ADDR_MAX + 1];
    const char **rcpts = calloc(total, sizeof *rcpts);
    char *password = calloc(1, PASSWORD_MAX + 2);
    char *msg = NULL;
    size_t msglen = 0, n = 0;
    struct tern_client *c = NULL;
    struct tern_reply r = {0};
    struct tern_send_result res = {0};
    int rc = 0;
    if (!addr || !rcpts || !password) {
        fprintf(stderr, "tern send: out of memory\n");
        rc = EX_OSERR;
        goto out;
    }
    if ((rc = envelope(o, addr, &n, from)) != 0)
        goto out;
    for (size_t i = 0; i < n; i++)
        rcpts[i] = addr[i];
    if (o->user &&
        (rc = client_password("send", o->user, o->password_file, password, PASSWORD_MAX + 2)) != 0)
        goto out;
    if (!(c = client_connect("send", &o->cc, host, port, &r))) {
        rc = client_exit_status(r.code);
        goto out;
    }
    /* Under TLS, PLAIN by default: it works whatever hash the server keeps, where SCRAM needs
     * the server to hold SCRAM keys for the user (and a failed try counts against the user). */
    const char *mech = o->mech;
    if (!mech && tern_is_tls(c) && strstr(tern_caps(c)->auth, "PLAIN"))
        mech = "PLAIN";
    if (o->user && tern_auth(c, mech, o->user, password, &r) != 0) {
        print_reply(stderr, "tern send: AUTH refused", &r);
        if (r.code == TERN_CODE_LOCAL && !tern_is_tls(c))
            fprintf(stderr, "tern send: a password is never sent in clear: drop --no-tls\n");
        rc = client_exit_status(r.code);
        goto out;
    }
    explicit_bzero(password, PASSWORD_MAX + 2);
    if ((rc = build(o, (tern_caps(c)->flags & TERN_CAP_8BITMIME) != 0, &msg, &msglen)) != 0)
        goto out;
    int sent = tern_send_message_mode(c, o->mode, from, rcpts, n, msg, msglen, &res);
    int worst = 0; /* 0, EX_TEMPFAIL or EX_UNAVAILABLE: a permanent refusal outweighs */
    if (res.mail.code == TERN_CODE_LOCAL && res.mail.nlines) {
        /* libtern refused before sending: too big for the server's SIZE, an address that
         * needs SMTPUTF8 the server lacks; no server will take it as it is */
        fprintf(stderr, "tern send: not sent: ");
        cli_put_safe(stderr, tern_reply_text(&res.mail), strlen(tern_reply_text(&res.mail)));
        fputc('\n', stderr);
        worst = EX_DATAERR;
    } else if (res.mail.code && client_exit_status(res.mail.code)) {
        static const char *const verbs[] = {"MAIL", "SEND", "SOML", "SAML"};
        char who[64];
        snprintf(who, sizeof who, "tern send: %s FROM refused", verbs[o->mode]);
        print_reply(stderr, who, &res.mail);
        worst = client_exit_status(res.mail.code);
    }
    for (size_t i = 0; res.mail.cls == TERN_POSITIVE && i < res.nrcpt; i++) {
        int s = client_exit_status(res.rcpt[i].code);
        if (s) {
            char who[HDR_ADDR_MAX + 64];
            snprintf(who, sizeof who, "tern send: <%s> refused", rcpts[i]);
            print_reply(stderr, who, &res.rcpt[i]);
            if (worst != EX_UNAVAILABLE)
                worst = s;
        }
    }
    if (sent == 0) {
        printf("sent to %zu of %zu recipients via %s port %s%s: ", res.accepted, n, host, port,
               tern_is_tls(c) ? " (TLS)" : "");
        print_reply(stdout, "server", &res.final);
    } else if (res.final.code) {
        print_reply(stderr, "tern send: message refused", &res.final);
        worst = client_exit_status(res.final.code);
    } else if (res.data.code && client_exit_status(res.data.code)) {
        print_reply(stderr, "tern send: DATA refused", &res.data);
        worst = client_exit_status(res.data.code);
    }
    rc = sent == 0 ? worst : worst ? worst : EX_TEMPFAIL;
    tern_quit(c, NULL);
out:
    if (password)
        explicit_bzero(password, PASSWORD_MAX + 2);
    free(password);
    tern_send_result_free(&res);
    tern_reply_free(&r);
    tern_free(c);
    free(msg);
    free(addr);
    free(rcpts);
    return rc;
}

int cli_send(int argc, char **argv)
{
    struct send_opts *o = calloc(1, sizeof *o);
    if (!o)
        return EX_OSERR;
    int rc = parse(argc, argv, o);
    if (rc == -1)
        rc = 0; /* --help */
    else if (rc == 0)
        rc = run(o);
    free(o);
    return rc;
}
