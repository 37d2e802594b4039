/* What `tern send`, `tern probe` and `tern smtp` share on the client side: reading
 * HOST[:PORT], the connection options (--tls, --starttls, --no-tls, --insecure, --ca-file,
 * --helo, --timeout, --verbose) into libtern's options, the --verbose transcript, the password
 * (TERN_PASSWORD, --password-file or a prompt on the terminal; never the command line), and the
 * mapping of a reply to an exit status. */
#include "cli/client_opts.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "cli/cli.h"

int client_parse_server(const char *given, char *host, size_t hostlen, char *port, size_t portlen)
{
    const char *h = given, *p = NULL;
    size_t hl;
    if (given[0] == '[') { /* [v6]:port */
        const char *close = strchr(given, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -1;
        h = given + 1;
        hl = (size_t)(close - h);
        p = close[1] == ':' ? close + 2 : NULL;
    } else {
        const char *colon = strchr(given, ':');
        if (colon && strchr(colon + 1, ':')) /* a bare IPv6 address: no port */
            colon = NULL;
        hl = colon ? (size_t)(colon - given) : strlen(given);
        p = colon ? colon + 1 : NULL;
    }
    if (hl == 0 || hl >= hostlen || (p && (!*p || strlen(p) >= portlen)))
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    snprintf(port, portlen, "%s", p ? p : "");
    return 0;
}

int client_server_arg(const char *cmd, int argc, char **argv, int optind_, char *host,
                      size_t hostlen, char *port, size_t portlen)
{
    if (optind_ + 1 != argc) {
        fprintf(stderr, "tern %s: give one server, HOST or HOST:PORT (%s); see tern %s --help\n",
                cmd, optind_ == argc ? "none given" : "more than one given", cmd);
        return -1;
    }
    if (client_parse_server(argv[optind_], host, hostlen, port, portlen) != 0) {
        fprintf(stderr, "tern %s: %s: write HOST, HOST:PORT or [IPV6]:PORT\n", cmd, argv[optind_]);
        return -1;
    }
    return 0;
}

int client_option_error(const char *cmd, int ch, const char *option)
{
    fprintf(stderr,
            ch == ':' ? "tern %s: %s needs a value; see tern %s --help\n"
                      : "tern %s: unknown option %s; see tern %s --help\n",
            cmd, option, cmd);
    return EX_USAGE;
}

/* --verbose: every line, with what came from the server made safe for a terminal. */
static void transcript(void *arg, char dir, const char *line, size_t len)
{
    (void)arg;
    fprintf(stderr, "%c: ", dir);
    cli_put_safe(stderr, line, len);
    fputc('\n', stderr);
}

void client_opts_init(struct client_cli *cc)
{
    memset(cc, 0, sizeof *cc);
    cc->tls = TERN_TLS_STARTTLS; /* encrypted unless the user says otherwise */
}

int client_opts_take(struct client_cli *cc, const char *cmd, int opt, const char *option,
                     const char *arg)
{
    switch (opt) {
    case CLIENT_OPT_TLS:
        cc->tls = TERN_TLS_IMPLICIT;
        return 1;
    case CLIENT_OPT_STARTTLS:
        cc->tls = TERN_TLS_STARTTLS;
        return 1;
    case CLIENT_OPT_NO_TLS:
        cc->tls = TERN_TLS_NONE;
        return 1;
    case CLIENT_OPT_INSECURE:
        cc->opts.insecure = 1;
        return 1;
    case CLIENT_OPT_CA_FILE:
        cc->opts.ca_file = arg;
        return 1;
    case CLIENT_OPT_HELO:
        cc->opts.helo_name = arg;
        return 1;
    case CLIENT_OPT_VERBOSE:
        cc->opts.transcript = transcript;
        return 1;
    case CLIENT_OPT_TIMEOUT: {
        char *end;
        errno = 0;
        unsigned long s = strtoul(arg, &end, 10);
        if (errno || *end || s == 0 || s > 3600) {
            fprintf(stderr, "tern %s: %s %s: give a number of seconds, 1 to 3600\n", cmd, option,
                    arg);
            return -1;
        }
        unsigned ms = (unsigned)s * 1000;
        cc->opts.timeouts = (struct tern_timeouts){ms, ms, ms, ms, ms, ms, ms, ms};
        return 1;
    }
    }
    return 0;
}

const char *client_default_port(enum tern_tls tls, bool submission)
{
    return tls == TERN_TLS_IMPLICIT ? "465" : submission ? "587" : "25";
}

struct tern_client *client_connect(const char *cmd, struct client_cli *cc, const char *host,
                                   const char *port, struct tern_reply *r)
{
    struct tern_client *c = tern_client_new(&cc->opts);
    if (!c) {
        fprintf(stderr, "tern %s: out of memory\n", cmd);
        return NULL;
    }
    if (tern_connect(c, host, port, cc->tls, r) != 0) {
        fprintf(stderr, "tern %s: %s port %s: %d ", cmd, host, port, r->code);
        cli_put_safe(stderr, tern_reply_text(r), strlen(tern_reply_text(r)));
        fputc('\n', stderr);
        if (cc->tls == TERN_TLS_STARTTLS && r->code != TERN_CODE_CONNECTION)
            fprintf(stderr,
                    "tern %s: the server did not let TLS start; --no-tls sends in clear, "
                    "--tls uses implicit TLS (port 465)\n",
                    cmd);
        else if (r->code == TERN_CODE_CONNECTION && strstr(tern_reply_text(r), "certificate"))
            fprintf(stderr,
                    "tern %s: give the server's CA with --ca-file FILE, or, only for a "
                    "test server, --insecure\n",
                    cmd);
        tern_free(c);
        return NULL;
    }
    if (cc->tls == TERN_TLS_NONE || cc->tls == TERN_TLS_IMPLICIT) {
        tern_reply_free(r);
        if (tern_ehlo(c, NULL, r) != 0) {
            fprintf(stderr, "tern %s: %s refused EHLO and HELO: %d %s\n", cmd, host, r->code,
                    tern_reply_text(r));
            tern_free(c);
            return NULL;
        }
    }
    return c;
}

int client_exit_status(int code)
{
    if (code >= 200 && code < 400)
        return 0;
    if (code == TERN_CODE_LOCAL)
        return EX_USAGE;
    if (code == TERN_CODE_CONNECTION || (code >= 400 && code < 500))
        return EX_TEMPFAIL; /* try again later */
    return EX_UNAVAILABLE;  /* 5yz: permanent */
}

/* --- the password ------------------------------------------------------------------------- */

static volatile sig_atomic_t ask_signal;
static void on_ask_signal(int sig)
{
    ask_signal = sig;
}

/* One line from fd into buf (cap bytes with the NUL); its length, -1 on error, -2 too long. */
static long read_secret_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR && !ask_signal)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || ch == '\n')
            break;
        if (n + 1 >= cap)
            return -2;
        buf[n++] = ch;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (long)n;
}

int client_password(const char *cmd, const char *user, const char *file, char *pw, size_t cap)
{
    const char *env = getenv("TERN_PASSWORD");
    if (!file && env) {
        if (strlen(env) >= cap) {
            fprintf(stderr, "tern %s: TERN_PASSWORD is too long\n", cmd);
            return EX_DATAERR;
        }
        snprintf(pw, cap, "%s", env);
        return 0;
    }
    if (file) {
        int fd = open(file, O_RDONLY | O_CLOEXEC);
        long n = fd < 0 ? -1 : read_secret_line(fd, pw, cap);
        int e = errno;
        if (fd >= 0)
            close(fd);
        if (n < 0) {
            fprintf(stderr, "tern %s: cannot read the password from %s: %s\n", cmd, file,
                    n == -2 ? "its first line is too long" : strerror(e));
            return n == -2 ? EX_DATAERR : EX_NOINPUT;
        }
        return 0;
    }
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios old;
    if (fd < 0 || tcgetattr(fd, &old) < 0) {
        if (fd >= 0)
            close(fd);
        fprintf(stderr,
                "tern %s: no terminal to ask for %s's password; set TERN_PASSWORD or use "
                "--password-file FILE\n",
                cmd, user);
        return EX_USAGE;
    }
    /* echo goes off: a signal meanwhile must not leave the terminal that way */
    static const int sigs[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP};
    struct sigaction sa = {.sa_handler = on_ask_signal}, saved[4];
    sigemptyset(&sa.sa_mask);
    ask_signal = 0;
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &sa, &saved[i]);
    struct termios quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tcsetattr(fd, TCSAFLUSH, &quiet);
    char prompt[600];
    int plen = snprintf(prompt, sizeof prompt, "password for %s: ", user);
    long n = -1;
    if (plen > 0 && plen < (int)sizeof prompt && write(fd, prompt, (size_t)plen) == plen)
        n = read_secret_line(fd, pw, cap);
    tcsetattr(fd, TCSAFLUSH, &old);
    for (int i = 0; i < 4; i++)
        sigaction(sigs[i], &saved[i], NULL);
    close(fd);
    if (ask_signal) {
        explicit_bzero(pw, cap);
        raise(ask_signal);
        return EX_TEMPFAIL;
    }
    if (n < 0) {
        fprintf(stderr, "tern %s: cannot read the password: %s\n", cmd,
                n == -2 ? "too long" : strerror(errno));
        return EX_IOERR;
    }
    return 0;
}
