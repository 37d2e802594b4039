/* `tern smtp`: an SMTP session for a person at a terminal (or a script on a pipe). It connects
 * with libtern (STARTTLS when offered, by default), then reads command lines and sends each as
 * one SMTP command through tern_command, printing every reply line as the server sent it
 * (made safe for the terminal) and under it the reply's class for that command and what its
 * code means (cli/meanings.c). DATA reads the message lines up to a lone "." and sends them
 * with tern_data_write (libtern stuffs the dots); STARTTLS does the handshake; AUTH is done by
 * tern itself (`auth [MECH] [USER]`), which asks for the password without echo, so it never
 * appears on the screen, in a transcript or in the line history. Lines are read with GNU
 * readline (editing, history) when stdin is a terminal and readline was there at build time,
 * else with getline. */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<readline/readline.h>)
#include <readline/history.h>
#include <readline/readline.h>
#define SMTP_READLINE 1 /* the Makefile links -lreadline when pkg-config knows it */
#endif
#endif

#include "cli/cli.h"
#include "cli/client_opts.h"
#include "cli/meanings.h"

#define PASSWORD_MAX 1024

static const char usage[] =
    "usage: tern smtp HOST[:PORT] [options]\n"
    "\n"
    "Talks SMTP to a server by hand: each line you type is sent as one command, and each\n"
    "reply is printed with its class (positive, intermediate, negative) and what its code\n"
    "means. DATA takes the message that follows, up to a line with a lone \".\". Works on a\n"
    "pipe too: one command a line on standard input.\n"
    "\n"
    "  HOST[:PORT]         the server; [IPV6]:PORT for an IPv6 address with a port (default\n"
    "                      port 25; 587 with --user; 465 with --tls)\n"
    "  --user USER         EHLO, STARTTLS and AUTH as USER before handing over; the password\n"
    "                      comes from $TERN_PASSWORD, --password-file FILE or a prompt\n"
    "  --password-file FILE  the password (for --user, or auth in the session) is the first\n"
    "                      line of FILE\n"
    "  --starttls          require STARTTLS before anything else (default: STARTTLS when\n"
    "                      offered, after an EHLO tern sends for you)\n"
    "  --tls               implicit TLS from the first byte (default port 465)\n"
    "  --no-tls            stay in clear; nothing is sent before your first command\n"
    "  --ca-file FILE      trust the CAs in FILE (PEM) instead of the system's\n"
    "  --insecure          do not verify the server's certificate (test servers only)\n"
    "  --helo NAME         the name tern gives in its EHLO (default: this host's name)\n"
    "  --timeout SECONDS   one timeout for every reply (default: RFC 5321's, up to 10 min)\n"
    "  --verbose           print the dialogue on standard error as well\n"
    "\n"
    "Type help in the session for tern smtp's own commands (auth, quit).\n"
    "\n"
    "Exit status: 0 the session ended with QUIT (or end of input); 75 (EX_TEMPFAIL) no\n"
    "connection, or it broke or the server closed it; 69 (EX_UNAVAILABLE) the server refused\n"
    "the connection or AUTH for good; 65 input ended in the middle of a message; 64 bad\n"
    "usage.\n";

static const char session_help[] =
    "tern smtp's own commands (in lower case; anything else is sent to the server):\n"
    "  help                this list (HELP in capitals asks the server for its help)\n"
    "  auth [MECH] [USER]  AUTH as USER (default: --user) with MECH (PLAIN, LOGIN,\n"
    "                      SCRAM-SHA-256; default: PLAIN under TLS, else the best offered);\n"
    "                      asks for the password without echo; AUTH MECH does the same\n"
    "                      (AUTH MECH RESPONSE is sent as typed, but kept out of the history)\n"
    "  quit                send QUIT and end (as end of input, Ctrl-D, does)\n"
    "Every other line is one SMTP command, sent as typed: EHLO name, MAIL FROM:<a@b>,\n"
    "RCPT TO:<c@d>, DATA, RSET, VRFY name, EXPN list, HELP, NOOP, STARTTLS, QUIT ...\n"
    "After DATA's 354, type the message (header lines, an empty line, the body) and end it\n"
    "with a line holding only \".\"; lines that begin with a dot are sent as typed (tern adds\n"
    "the extra dot SMTP needs, and the server takes it off).\n";

enum { O_USER = 1, O_PWFILE, O_HELP };
enum smtp_tls { S_OPPORTUNISTIC, S_STARTTLS, S_IMPLICIT, S_NONE };

struct session {
    struct client_cli cc;
    enum smtp_tls mode;
    const char *user, *password_file;
    char host[256], port[32], helo[256];
    bool tty;          /* stdin is a terminal: prompts, and what is typed is not echoed back */
    bool use_readline; /* lines come from readline */
    char *line;        /* the last line read (getline's buffer, or readline's) */
    size_t cap;
    struct tern_client *c;
    int status; /* the exit status */
};

/* ---- showing replies --------------------------------------------------------------------- */

static void put_safe(const char *s)
{
    cli_put_safe(stdout, s, strlen(s));
}

/* The server's lines after "< ", then "= CLASS reply to CMD: CODE meaning" (CMD is verb when
 * libtern does not know the command). Codes 0 and 101 are libtern's own, not the server's:
 * they are shown as "!" lines with the reason. */
static void show_reply_to(const struct tern_reply *r, const char *verb)
{
    const char *text = tern_reply_text(r);
    if (r->code == TERN_CODE_LOCAL) {
        printf("! not sent: ");
        put_safe(text);
        putchar('\n');
        return;
    }
    if (r->code == TERN_CODE_CONNECTION) {
        printf("! ");
        put_safe(text);
        putchar('\n');
    } else {
        for (size_t i = 0; i < r->nlines; i++) {
            printf("< %d%c%s%s", r->code, i + 1 < r->nlines ? '-' : ' ', r->enh,
                   r->enh[0] ? " " : "");
            put_safe(r->lines[i]);
            putchar('\n');
        }
    }
    printf("= %s reply to ", tern_class_name(r->cls));
    put_safe(r->cmd == TERN_CMD_OTHER && verb ? verb : tern_cmd_name(r->cmd));
    printf(": %d %s\n", r->code, smtp_code_describe(r->code));
}

static void show_reply(const struct tern_reply *r)
{
    show_reply_to(r, NULL);
}

/* What was sent, when the person did not type it (tern's own EHLO) or it was not shown as
 * typed (a pipe). */
static void show_sent(const char *line)
{
    printf("> ");
    put_safe(line);
    putchar('\n');
}

static void show_tls(struct session *s)
{
    struct tern_tls_info info;
    if (tern_tls_info(s->c, &info) < 0)
        return;
    printf("* TLS: ");
    put_safe(info.protocol);
    printf(" ");
    put_safe(info.cipher);
    printf(", certificate ");
    put_safe(info.subject[0] ? info.subject : "(none)");
    if (info.verified) {
        printf(", verified\n");
    } else {
        printf(", NOT verified (");
        put_safe(info.verify_error);
        printf(")%s\n", s->cc.opts.insecure ? ": --insecure" : "");
    }
}

/* After a failed handshake: what to try (libtern's own reasons already say it for the rest). */
static void hint(const struct tern_reply *r)
{
    if (r->code == TERN_CODE_CONNECTION && strstr(tern_reply_text(r), "certificate"))
        fprintf(stderr,
                "tern smtp: give the server's CA with --ca-file FILE, or, only for a test server, "
                "--insecure\n");
}

/* ---- reading lines ----------------------------------------------------------------------- */

/* One line from stdin without its LF (or CRLF) into s->line, with room for one more byte at
 * [*len]. 1 read, 0 end of input, -1 error. */
static int read_line(struct session *s, const char *prompt, size_t *len)
{
#ifdef SMTP_READLINE
    if (s->use_readline) {
        free(s->line);
        s->line = readline(prompt);
        if (!s->line)
            return 0;
        *len = strlen(s->line);
        return 1;
    }
#endif
    if (s->tty) {
        fputs(prompt, stdout);
        fflush(stdout);
    }
    errno = 0;
    ssize_t n = getline(&s->line, &s->cap, stdin);
    if (n < 0)
        return errno ? -1 : 0;
    if (n > 0 && s->line[n - 1] == '\n')
        s->line[--n] = '\0';
    if (n > 0 && s->line[n - 1] == '\r')
        s->line[--n] = '\0';
    *len = (size_t)n;
    return 1;
}

/* Lines worth recalling go in readline's history; never one that may hold credentials. */
static void remember(struct session *s, const char *line)
{
#ifdef SMTP_READLINE
    if (s->use_readline && line[0] && strncasecmp(line, "auth", 4) != 0)
        add_history(line);
#else
    (void)s;
    (void)line;
#endif
}

/* ---- the session ------------------------------------------------------------------------- */

/* The message after DATA's 354: lines up to a lone ".", each sent with its line end (libtern
 * makes it CRLF and stuffs a leading dot). 0, or the exit status when the session must end. */
static int message(struct session *s)
{
    struct tern_reply r = {0};
    if (s->tty)
        printf("* type the message; a line with only \".\" ends it\n");
    size_t nlines = 0, len;
    int got;
    while ((got = read_line(s, "data> ", &len)) > 0) {
        if (len == 1 && s->line[0] == '.')
            break;
        s->line[len] = '\n'; /* read_line leaves room: the line end goes with the line */
        if (tern_data_write(s->c, s->line, len + 1, &r) != 0) {
            show_reply(&r);
            tern_reply_free(&r);
            return EX_TEMPFAIL;
        }
        nlines++;
    }
    if (got <= 0) {
        printf("! %s in the middle of the message: it was not sent; closed the connection "
               "without ending it, so the server drops it\n",
               got < 0 ? "error reading standard input" : "end of input");
        tern_quit(s->c, &r); /* in the middle of DATA: closes without sending anything */
        tern_reply_free(&r);
        return got < 0 ? EX_IOERR : EX_DATAERR;
    }
    if (!s->tty) {
        printf("> <message: %zu line%s>\n", nlines, nlines == 1 ? "" : "s");
        show_sent(".");
    }
    tern_data_end(s->c, &r);
    show_reply(&r);
    tern_reply_free(&r);
    return 0;
}

/* `auth [MECH] [USER]`: a word with an @ is the user, the other the mechanism. 0 when the
 * server said 235, else an exit status (the reason printed). */
static int auth(struct session *s, char *args)
{
    const char *mech = NULL, *user = s->user;
    for (char *save = NULL, *w = strtok_r(args, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
        if (strchr(w, '@'))
            user = w;
        else if (!mech)
            mech = w;
    if (!user) {
        printf("! auth: whose password? type auth [MECH] USER, or start tern smtp with --user "
               "USER\n");
        return EX_USAGE;
    }
    if (!tern_is_tls(s->c)) {
        printf("! auth: the connection is not encrypted and tern never sends a password in "
               "clear: type STARTTLS first, or connect with --tls\n");
        return EX_USAGE;
    }
    char *pw = calloc(1, PASSWORD_MAX + 2);
    if (!pw) {
        printf("! auth: out of memory\n");
        return EX_OSERR;
    }
    int rc = client_password("smtp", user, s->password_file, pw, PASSWORD_MAX + 2);
    if (rc == 0) {
        /* PLAIN by default under TLS, as tern send: it works with any hash the server keeps */
        if (!mech && strstr(tern_caps(s->c)->auth, "PLAIN"))
            mech = "PLAIN";
        struct tern_reply r = {0};
        printf("> AUTH %s <as ", mech ? mech : "(the best offered)");
        put_safe(user);
        printf(", password hidden>\n");
        tern_auth(s->c, mech, user, pw, &r);
        show_reply(&r);
        rc = r.code == 235 ? 0 : client_exit_status(r.code) ? client_exit_status(r.code) : EX_USAGE;
        tern_reply_free(&r);
    }
    explicit_bzero(pw, PASSWORD_MAX + 2);
    free(pw);
    return rc;
}

/* One line typed in the session. 0 to read the next, 1 when the session is over. */
static int command(struct session *s, char *line, size_t len)
{
    if (memchr(line, '\0', len)) {
        printf("! not sent: the line holds a NUL byte, which no SMTP command may\n");
        return 0;
    }
    while (*line == ' ' || *line == '\t')
        line++;
    size_t n = strlen(line);
    while (n > 0 && (line[n - 1] == ' ' || line[n - 1] == '\t'))
        line[--n] = '\0';
    if (n == 0)
        return 0;
    char *arg = line + strcspn(line, " \t");
    if (*arg) {
        *arg++ = '\0';
        arg += strspn(arg, " \t");
    }
    /* "auth ..." is always tern's, and so is "AUTH MECH [USER]"; "AUTH MECH RESPONSE" goes out
     * as typed (a base64 initial response never holds the @ of a user name) */
    const char *second = strpbrk(arg, " \t");
    bool raw_auth = strcasecmp(line, "AUTH") == 0 && strcmp(line, "auth") != 0 && second &&
                    !strchr(second, '@');
    if (!s->tty && raw_auth) {
        printf("> ");
        put_safe(line);
        printf(" %.*s <credentials hidden>\n", (int)strcspn(arg, " \t"), arg);
    } else if (!s->tty) {
        printf("> ");
        put_safe(line);
        printf("%s", *arg ? " " : "");
        put_safe(arg);
        putchar('\n');
    }
    if (strcmp(line, "help") == 0) {
        fputs(session_help, stdout);
        return 0;
    }
    if (strcmp(line, "auth") == 0 || (strcasecmp(line, "AUTH") == 0 && !raw_auth)) {
        (void)auth(s, arg); /* a person sees why and may try again */
        return !tern_is_connected(s->c);
    }
    if (strcasecmp(line, "BDAT") == 0) {
        printf("! not sent: BDAT carries its data in octets after the command, which a typed "
               "session cannot count; use DATA\n");
        return 0;
    }
    bool starttls = strcasecmp(line, "STARTTLS") == 0;
    struct tern_reply r = {0};
    int rc = tern_command(s->c, strcmp(line, "quit") == 0 ? "QUIT" : line, *arg ? arg : NULL, &r);
    if (starttls && rc == 0)
        show_tls(s);
    show_reply_to(&r, line);
    if (starttls && rc != 0)
        hint(&r);
    if (r.cmd == TERN_CMD_AUTH && r.code == 334)
        printf("! the server waits for more AUTH data, which tern smtp does not send raw: the "
               "next line will be refused (501); use auth [MECH] instead\n");
    int end = 0;
    if (r.cmd == TERN_CMD_DATA && r.code == 354 && tern_is_connected(s->c)) {
        int st = message(s);
        if (st != 0) {
            s->status = st;
            end = 1;
        } else if (!tern_is_connected(s->c)) {
            printf("! the connection is closed\n");
            s->status = EX_TEMPFAIL;
            end = 1;
        }
    } else if (r.cmd == TERN_CMD_QUIT) {
        s->status = client_exit_status(r.code);
        end = 1;
    } else if (!tern_is_connected(s->c)) {
        printf("! the connection is closed\n");
        s->status = client_exit_status(r.code) ? client_exit_status(r.code) : EX_TEMPFAIL;
        end = 1;
    }
    tern_reply_free(&r);
    return end || !tern_is_connected(s->c);
}

/* Connects, shows the greeting, and does what the options ask before handing over: EHLO and
 * STARTTLS (when offered, or required), AUTH with --user. 0, or the exit status. */
static int open_session(struct session *s)
{
    struct tern_reply r = {0};
    int rc = 0;
    enum tern_tls first = s->mode == S_IMPLICIT ? TERN_TLS_IMPLICIT : TERN_TLS_NONE;
    if (tern_connect(s->c, s->host, s->port, first, &r) != 0) {
        if (r.code >= 200)
            show_reply(&r);
        fprintf(stderr, "tern smtp: %s port %s: %d ", s->host, s->port, r.code);
        cli_put_safe(stderr, tern_reply_text(&r), strlen(tern_reply_text(&r)));
        fputc('\n', stderr);
        hint(&r);
        rc = client_exit_status(r.code);
        goto out;
    }
    show_reply(&r);
    if (tern_is_tls(s->c))
        show_tls(s);
    bool greet = s->mode == S_OPPORTUNISTIC || s->mode == S_STARTTLS || s->user;
    if (!greet)
        goto out;
    char line[300];
    snprintf(line, sizeof line, "EHLO %s", s->helo);
    show_sent(line);
    tern_ehlo(s->c, s->helo, &r);
    show_reply(&r);
    if (r.cls != TERN_POSITIVE && (s->mode == S_STARTTLS || s->user)) {
        rc = client_exit_status(r.code) ? client_exit_status(r.code) : EX_TEMPFAIL;
        goto out;
    }
    bool offered = (tern_caps(s->c)->flags & TERN_CAP_STARTTLS) != 0;
    if (!tern_is_tls(s->c) && offered && s->mode != S_NONE) {
        show_sent("STARTTLS");
        if (tern_starttls(s->c, &r) == 0)
            show_tls(s);
        show_reply(&r);
        if (r.cls != TERN_POSITIVE) {
            hint(&r);
            if (!tern_is_connected(s->c) || s->mode == S_STARTTLS) {
                rc = client_exit_status(r.code) ? client_exit_status(r.code) : EX_TEMPFAIL;
                goto out;
            }
        }
    } else if (!tern_is_tls(s->c) && s->mode == S_STARTTLS) {
        fprintf(stderr,
                "tern smtp: %s does not offer STARTTLS; --no-tls goes on in clear, --tls "
                "uses implicit TLS (port 465)\n",
                s->host);
        rc = EX_TEMPFAIL;
        goto out;
    }
    if (s->user) {
        char none[] = "";
        rc = auth(s, none);
    }
out:
    if (rc != 0 && tern_is_connected(s->c))
        tern_quit(s->c, NULL);
    tern_reply_free(&r);
    return rc;
}

static void session(struct session *s)
{
    if (s->tty)
        printf("* type SMTP commands; help lists tern smtp's own; QUIT or Ctrl-D ends\n");
    for (;;) {
        fflush(stdout);
        size_t len;
        int got = read_line(s, "smtp> ", &len);
        if (got < 0) {
            fprintf(stderr, "tern smtp: cannot read standard input: %m\n");
            s->status = EX_IOERR;
        }
        if (got <= 0) { /* end of input: say goodbye properly */
            struct tern_reply r = {0};
            show_sent("QUIT");
            tern_quit(s->c, &r);
            show_reply(&r);
            if (!s->status)
                s->status = client_exit_status(r.code);
            tern_reply_free(&r);
            return;
        }
        remember(s, s->line);
        if (command(s, s->line, len))
            return;
    }
}

static int parse(int argc, char **argv, struct session *s)
{
    static const struct option longopts[] = {
        {"user", required_argument, NULL, O_USER},
        {"password-file", required_argument, NULL, O_PWFILE},
        {"help", no_argument, NULL, O_HELP},
        CLIENT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    client_opts_init(&s->cc);
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (ch == CLIENT_OPT_TLS || ch == CLIENT_OPT_STARTTLS || ch == CLIENT_OPT_NO_TLS)
            s->mode = ch == CLIENT_OPT_TLS        ? S_IMPLICIT
                      : ch == CLIENT_OPT_STARTTLS ? S_STARTTLS
                                                  : S_NONE;
        int t = client_opts_take(&s->cc, "smtp", ch, argv[optind - 1], optarg);
        if (t < 0)
            return EX_USAGE;
        if (t > 0)
            continue;
        switch (ch) {
        case O_USER:
            s->user = optarg;
            break;
        case O_PWFILE:
            s->password_file = optarg;
            break;
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            return -1;
        default:
            return client_option_error("smtp", ch, argv[optind - 1]);
        }
    }
    if (client_server_arg("smtp", argc, argv, optind, s->host, sizeof s->host, s->port,
                          sizeof s->port) != 0)
        return EX_USAGE;
    if (!s->port[0])
        snprintf(s->port, sizeof s->port, "%s",
                 client_default_port(s->mode == S_IMPLICIT ? TERN_TLS_IMPLICIT : TERN_TLS_NONE,
                                     s->user != NULL));
    /* the EHLO name tern gives is shown, so it is chosen here rather than inside libtern */
    if (s->cc.opts.helo_name)
        snprintf(s->helo, sizeof s->helo, "%s", s->cc.opts.helo_name);
    else if (gethostname(s->helo, sizeof s->helo) != 0 || !s->helo[0] ||
             !memchr(s->helo, '\0', sizeof s->helo))
        snprintf(s->helo, sizeof s->helo, "localhost");
    return 0;
}

int cli_smtp(int argc, char **argv)
{
    struct session *s = calloc(1, sizeof *s);
    if (!s) {
        fprintf(stderr, "tern smtp: out of memory\n");
        return EX_OSERR;
    }
    int rc = parse(argc, argv, s);
    if (rc != 0) {
        free(s);
        return rc < 0 ? 0 : rc;
    }
    s->tty = isatty(STDIN_FILENO);
#ifdef SMTP_READLINE
    s->use_readline = s->tty;
    if (s->use_readline) {
        rl_readline_name = "tern";
        rl_bind_key('\t', rl_insert); /* no file names to complete in SMTP */
        using_history();
    }
#endif
    if (!(s->c = tern_client_new(&s->cc.opts))) {
        fprintf(stderr, "tern smtp: out of memory\n");
        free(s);
        return EX_OSERR;
    }
    rc = open_session(s);
    if (rc == 0) {
        session(s);
        rc = s->status;
    }
    fflush(stdout);
#ifdef SMTP_READLINE
    if (s->use_readline)
        clear_history();
#endif
    tern_free(s->c);
    free(s->line);
    free(s);
    return rc;
}
