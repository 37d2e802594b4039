/* `tern watch`: a user's terminal for SEND, SOML and SAML (RFC 821 3.4). Locally it connects to
 * ternd's watch socket (DATA_DIR/watch), where ternd knows who it is from the socket itself
 * (the Unix user's uid against the users file's uid field) or checks the user's password; over
 * the network it speaks to a ternd's submission port with libtern: STARTTLS, AUTH, XWATCH. Then
 * it prints each message as it arrives (watch_show.c) until it is stopped, ternd ends the
 * watch, or --count messages have come. Both ways carry the same frames, read by the same
 * reader (client/termframe.h), which bounds what it keeps whatever the server sends. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/client_opts.h"
#include "cli/watch.h"
#include "client/termframe.h"
#include "conf/config.h"
#include "net/watch_sock.h"

#define PASSWORD_MAX 1024
#define REPLY_WAIT_MS 30000 /* for ternd's answer to the request (a password takes a while) */

static const char usage[] =
    "usage: tern watch [-c CONFIG] [--socket PATH] [--password] [USER]\n"
    "       tern watch --server HOST[:PORT] --user USER [options]\n"
    "\n"
    "Becomes a terminal of USER (user@domain): prints each message that SEND, SOML or SAML\n"
    "delivers to it, like write(1), until Ctrl-C. Locally through ternd's socket\n"
    "DATA_DIR/watch: root may watch anyone, another Unix user the users whose uid field is\n"
    "its uid (USER may then be left out), anyone else with the user's password. Over the\n"
    "network through a ternd's submission port: STARTTLS, AUTH as USER, then XWATCH.\n"
    "\n"
    "  -c, --config FILE   the configuration naming data_dir (default $TERN_CONF, else\n"
    "                      /etc/tern/tern.conf, else ./var/tern.conf)\n"
    "  --socket PATH       ternd's watch socket itself (default DATA_DIR/watch)\n"
    "  --password          give USER's password (from $TERN_PASSWORD, --password-file or a\n"
    "                      prompt), for a Unix user the users file does not map to USER\n"
    "  --password-file FILE  the password is the first line of FILE\n"
    "  --server HOST[:PORT]  watch on this server's submission port (default port 587)\n"
    "  --user USER         with --server: the user to authenticate as and watch\n"
    "  --count N           stop after N messages\n" CLIENT_USAGE "\n"
    "Each message shows its sender, time, subject and the first 20 lines of its body, each\n"
    "cut at 200 columns; control characters, escape sequences, NULs and bytes that are not\n"
    "UTF-8 are shown escaped (\\xNN, \\uNNNN), never obeyed.\n"
    "Exit status: 0 after --count messages; 75 ternd ended the watch or the connection broke;\n"
    "77 refused (wrong uid or password); 64 bad usage.\n";

struct watch_opts {
    struct client_cli cc;
    const char *config, *socket, *server, *user, *password_file;
    bool password;
    long count; /* 0: no end */
};

enum { O_CONFIG = 1, O_SOCKET, O_PASSWORD, O_PWFILE, O_SERVER, O_USER, O_COUNT, O_HELP };

static int parse(int argc, char **argv, struct watch_opts *o)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, O_CONFIG},
        {"socket", required_argument, NULL, O_SOCKET},
        {"password", no_argument, NULL, O_PASSWORD},
        {"password-file", required_argument, NULL, O_PWFILE},
        {"server", required_argument, NULL, O_SERVER},
        {"user", required_argument, NULL, O_USER},
        {"count", required_argument, NULL, O_COUNT},
        {"help", no_argument, NULL, O_HELP},
        CLIENT_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    client_opts_init(&o->cc);
    opterr = 0;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        int t = client_opts_take(&o->cc, "watch", ch, argv[optind - 1], optarg);
        if (t < 0)
            return EX_USAGE;
        if (t > 0)
            continue;
        char *end = NULL;
        switch (ch) {
        case 'c':
        case O_CONFIG:
            o->config = optarg;
            break;
        case O_SOCKET:
            o->socket = optarg;
            break;
        case O_PASSWORD:
            o->password = true;
            break;
        case O_PWFILE:
            o->password_file = optarg;
            o->password = true;
            break;
        case O_SERVER:
            o->server = optarg;
            break;
        case O_USER:
            o->user = optarg;
            break;
        case O_COUNT:
            errno = 0;
            o->count = strtol(optarg, &end, 10);
            if (errno || !end || *end || o->count < 1) {
                fprintf(stderr, "tern watch: --count %s: give a number of messages, 1 or more\n",
                        optarg);
                return EX_USAGE;
            }
            break;
        case 'h':
        case O_HELP:
            fputs(usage, stdout);
            return -1;
        default:
            return client_option_error("watch", ch, argv[optind - 1]);
        }
    }
    if (optind < argc && !o->server && !o->user)
        o->user = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "tern watch: unexpected argument '%s'; see tern watch --help\n",
                argv[optind]);
        return EX_USAGE;
    }
    if (o->server && !o->user) {
        fprintf(stderr, "tern watch: --server needs --user USER (who to authenticate as)\n");
        return EX_USAGE;
    }
    if (o->server && (o->socket || o->config)) {
        fprintf(stderr, "tern watch: --server watches over the network; -c and --socket are "
                        "for the local socket\n");
        return EX_USAGE;
    }
    if (!o->server && o->password && !o->user) {
        fprintf(stderr, "tern watch: --password needs the USER whose password it is\n");
        return EX_USAGE;
    }
    if (getenv("TERN_PASSWORD") && o->user)
        o->password = true;
    return 0;
}

/* ---- the local socket ----------------------------------------------------------------------- */

static int sock_connect(const struct watch_opts *o, char *path, size_t pathlen)
{
    if (o->socket) {
        snprintf(path, pathlen, "%s", o->socket);
    } else {
        char dir[PATH_MAX], err[PATH_MAX + 128];
        const char *conf = o->config ? o->config : conf_default_path();
        if (conf_peek_data_dir(conf, dir, sizeof dir, err, sizeof err) != 0) {
            fprintf(stderr, "tern watch: %s; name the configuration with -c FILE\n", err);
            return -EX_CONFIG;
        }
        if (snprintf(path, pathlen, "%s/%s", dir, WSOCK_NAME) >= (int)pathlen) {
            fprintf(stderr, "tern watch: the path %s/%s is too long\n", dir, WSOCK_NAME);
            return -EX_CONFIG;
        }
    }
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "tern watch: the socket path %s is too long\n", path);
        return -EX_USAGE;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        fprintf(stderr, "tern watch: cannot connect to %s: %s; is ternd running?\n", path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -EX_UNAVAILABLE;
    }
    return fd;
}

static int write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

/* The request line: {"watch":USER[,"password":PW]}\n, malloc'd; the password wiped after. */
static char *request_line(const char *user, const char *password, size_t *len)
{
    json_t *req = json_object();
    if (!req || (user && json_object_set_new(req, "watch", json_string(user)) != 0) ||
        (password && json_object_set_new(req, "password", json_string(password)) != 0)) {
        json_decref(req);
        return NULL;
    }
    char *s = json_dumps(req, JSON_COMPACT);
    json_decref(req);
    char *line = s ? malloc(strlen(s) + 2) : NULL;
    if (line) {
        *len = strlen(s) + 1;
        memcpy(line, s, *len - 1);
        line[*len - 1] = '\n';
        line[*len] = '\0';
    }
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
    return line;
}

/* Reads ternd's answer line into line (bounded), keeping what follows it in rest. */
static int read_answer(int fd, char *line, size_t cap, char *rest, size_t *restlen)
{
    size_t n = 0;
    *restlen = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, REPLY_WAIT_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            return -1;
        ssize_t r = recv(fd, line + n, cap - 1 - n, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        n += (size_t)r;
        char *nl = memchr(line, '\n', n);
        if (nl) {
            *restlen = n - (size_t)(nl + 1 - line);
            memcpy(rest, nl + 1, *restlen);
            *nl = '\0';
            return 0;
        }
        if (n == cap - 1)
            return -1;
    }
}

/* Shows the frames of buf; -1 when the stream is not frames, 1 when --count is reached. */
static int show_frames(struct tframe *f, const char *buf, size_t len, long *seen, long count)
{
    while (len > 0) {
        size_t used = 0;
        enum tframe_event ev = tframe_feed(f, buf, len, &used);
        buf += used;
        len -= used;
        if (ev == TFRAME_MESSAGE) {
            struct tern_term_message m = {0};
            tframe_take_message(f, &m);
            watch_show(stdout, &m);
            tern_term_message_free(&m);
            if (count && ++*seen >= count)
                return 1;
        } else if (ev == TFRAME_REPLY || ev == TFRAME_BAD) {
            fprintf(stderr, "tern watch: ternd sent what is not a terminal message (%s)\n",
                    ev == TFRAME_BAD ? f->why : "a reply");
            return -1;
        }
    }
    return 0;
}

static int watch_local(struct watch_opts *o, char *password)
{
    char path[PATH_MAX];
    int fd = sock_connect(o, path, sizeof path);
    if (fd < 0)
        return -fd;
    size_t len = 0;
    char *line = request_line(o->user, o->password ? password : NULL, &len);
    explicit_bzero(password, PASSWORD_MAX + 2);
    int rc = EX_TEMPFAIL;
    char answer[600], *buf = malloc(65536);
    size_t restlen = 0;
    if (!line || !buf) {
        fprintf(stderr, "tern watch: out of memory\n");
        rc = EX_OSERR;
        goto out;
    }
    if (write_all(fd, line, len) != 0 || read_answer(fd, answer, sizeof answer, buf, &restlen)) {
        fprintf(stderr, "tern watch: ternd at %s did not answer\n", path);
        goto out;
    }
    if (strncmp(answer, "ok ", 3) != 0) {
        fprintf(stderr, "tern watch: refused: ");
        const char *why = strncmp(answer, "error ", 6) == 0 ? answer + 6 : answer;
        cli_put_safe(stderr, why, strlen(why));
        fputc('\n', stderr);
        rc = EX_NOPERM;
        goto out;
    }
    fprintf(stderr, "tern watch: watching ");
    cli_put_safe(stderr, answer + 3, strlen(answer + 3));
    fprintf(stderr, " (Ctrl-C to stop)\n");
    struct tframe f;
    tframe_init(&f);
    long seen = 0;
    int s = show_frames(&f, buf, restlen, &seen, o->count);
    while (s == 0) {
        ssize_t r = recv(fd, buf, 65536, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            fprintf(stderr, "tern watch: ternd ended the watch\n");
            break;
        }
        s = show_frames(&f, buf, (size_t)r, &seen, o->count);
    }
    tframe_free(&f);
    rc = s > 0 ? 0 : EX_TEMPFAIL;
out:
    if (line) {
        explicit_bzero(line, len);
        free(line);
    }
    free(buf);
    close(fd);
    return rc;
}

/* ---- over the network ------------------------------------------------------------------------ */

static int watch_server(struct watch_opts *o, char *password)
{
    char host[256], port[32] = "";
    if (client_parse_server(o->server, host, sizeof host, port, sizeof port) != 0) {
        fprintf(stderr, "tern watch: --server %s: write HOST, HOST:PORT or [IPV6]:PORT\n",
                o->server);
        return EX_USAGE;
    }
    if (!port[0])
        snprintf(port, sizeof port, "%s", client_default_port(o->cc.tls, true));
    struct tern_reply r = {0};
    struct tern_term_message m = {0};
    int rc = EX_TEMPFAIL;
    struct tern_client *c = client_connect("watch", &o->cc, host, port, &r);
    if (!c) {
        explicit_bzero(password, PASSWORD_MAX + 2);
        rc = client_exit_status(r.code);
        goto out;
    }
    const char *mech = tern_is_tls(c) && strstr(tern_caps(c)->auth, "PLAIN") ? "PLAIN" : NULL;
    int a = tern_auth(c, mech, o->user, password, &r);
    explicit_bzero(password, PASSWORD_MAX + 2);
    if (a != 0 || tern_watch(c, &r) != 0) {
        fprintf(stderr, "tern watch: %s refused: %d%s%s ", a ? "AUTH" : "XWATCH", r.code,
                r.enh[0] ? " " : "", r.enh);
        cli_put_safe(stderr, tern_reply_text(&r), strlen(tern_reply_text(&r)));
        fputc('\n', stderr);
        rc = r.code == 535 || r.code == 530 || r.code == 550 ? EX_NOPERM
                                                             : client_exit_status(r.code);
        goto out;
    }
    fprintf(stderr, "tern watch: watching %s on %s port %s (Ctrl-C to stop)\n", o->user, host,
            port);
    long seen = 0;
    for (;;) {
        int n = tern_watch_next(c, -1, &m, &r);
        if (n < 0) {
            fprintf(stderr, "tern watch: the watch ended: %d ", r.code);
            cli_put_safe(stderr, tern_reply_text(&r), strlen(tern_reply_text(&r)));
            fputc('\n', stderr);
            break;
        }
        if (n == 1) {
            watch_show(stdout, &m);
            if (o->count && ++seen >= o->count) {
                tern_quit(c, NULL);
                rc = 0;
                break;
            }
        }
    }
out:
    tern_term_message_free(&m);
    tern_reply_free(&r);
    tern_free(c);
    return rc;
}

int cli_watch(int argc, char **argv)
{
    struct watch_opts o = {0};
    int rc = parse(argc, argv, &o);
    if (rc == -1)
        return 0; /* --help */
    if (rc != 0)
        return rc;
    char *password = calloc(1, PASSWORD_MAX + 2);
    if (!password)
        return EX_OSERR;
    if ((o.server || o.password) &&
        (rc = client_password("watch", o.user, o.password_file, password, PASSWORD_MAX + 2)) != 0) {
        free(password);
        return rc;
    }
    rc = o.server ? watch_server(&o, password) : watch_local(&o, password);
    explicit_bzero(password, PASSWORD_MAX + 2);
    free(password);
    return rc;
}
