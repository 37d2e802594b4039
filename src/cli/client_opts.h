/* The client-side options `tern send`, `tern probe` and `tern smtp` share (cli/client_opts.c). */
#ifndef TERN_CLI_CLIENT_OPTS_H
#define TERN_CLI_CLIENT_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "tern/client.h"

/* getopt_long values of the shared options; their long names are listed by CLIENT_LONGOPTS. */
enum {
    CLIENT_OPT_TLS = 1000,
    CLIENT_OPT_STARTTLS,
    CLIENT_OPT_NO_TLS,
    CLIENT_OPT_INSECURE,
    CLIENT_OPT_CA_FILE,
    CLIENT_OPT_HELO,
    CLIENT_OPT_VERBOSE,
    CLIENT_OPT_TIMEOUT,
};

#define CLIENT_LONGOPTS                                                                            \
    {"tls", no_argument, NULL, CLIENT_OPT_TLS},                                                    \
        {"starttls", no_argument, NULL, CLIENT_OPT_STARTTLS},                                      \
        {"no-tls", no_argument, NULL, CLIENT_OPT_NO_TLS},                                          \
        {"insecure", no_argument, NULL, CLIENT_OPT_INSECURE},                                      \
        {"ca-file", required_argument, NULL, CLIENT_OPT_CA_FILE},                                  \
        {"helo", required_argument, NULL, CLIENT_OPT_HELO},                                        \
        {"verbose", no_argument, NULL, CLIENT_OPT_VERBOSE},                                        \
    {                                                                                              \
        "timeout", required_argument, NULL, CLIENT_OPT_TIMEOUT                                     \
    }

#define CLIENT_USAGE                                                                               \
    "  --starttls          STARTTLS before anything else (the default); fail if refused\n"         \
    "  --tls               implicit TLS from the first byte (default port 465)\n"                  \
    "  --no-tls            no encryption at all\n"                                                 \
    "  --ca-file FILE      trust the CAs in FILE (PEM) instead of the system's\n"                  \
    "  --insecure          do not verify the server's certificate (test servers only)\n"           \
    "  --helo NAME         the name to give in EHLO (default: this host's name)\n"                 \
    "  --timeout SECONDS   one timeout for every step (default: RFC 5321's, up to 10 min)\n"       \
    "  --verbose           print the dialogue on standard error (C: and S: lines; AUTH data\n"     \
    "                      and the message itself are not shown)\n"

struct client_cli {
    struct tern_client_opts opts;
    enum tern_tls tls;
};

void client_opts_init(struct client_cli *cc);
/* Takes one of the shared options (getopt's opt, as given on the command line: option, with
 * its value arg): 1 taken, 0 not one of them, -1 a bad value, said on stderr for tern cmd. */
int client_opts_take(struct client_cli *cc, const char *cmd, int opt, const char *option,
                     const char *arg);

/* HOST[:PORT], [IPV6]:PORT or a bare IPv6 address; port "" when none. 0, or -1 when malformed. */
int client_parse_server(const char *given, char *host, size_t hostlen, char *port, size_t portlen);
/* The one HOST[:PORT] argument at argv[optind_] (and nothing after it); prints why not. */
int client_server_arg(const char *cmd, int argc, char **argv, int optind_, char *host,
                      size_t hostlen, char *port, size_t portlen);
/* getopt's ':' (value missing) or '?' for option: prints why; EX_USAGE. */
int client_option_error(const char *cmd, int ch, const char *option);

/* 465 for implicit TLS, else 587 when submitting as a user, else 25. */
const char *client_default_port(enum tern_tls tls, bool submission);

/* Connects, greets (and STARTTLS as asked) and says EHLO; prints why not (NULL then). */
struct tern_client *client_connect(const char *cmd, struct client_cli *cc, const char *host,
                                   const char *port, struct tern_reply *r);

/* 0 for 2yz/3yz, EX_TEMPFAIL for 4yz and connection errors, EX_UNAVAILABLE for 5yz, EX_USAGE
 * for libtern's own refusals. */
int client_exit_status(int code);

/* The password for user: --password-file FILE's first line, else $TERN_PASSWORD, else asked on
 * the terminal without echo. 0, or an exit status with the reason printed. */
int client_password(const char *cmd, const char *user, const char *file, char *pw, size_t cap);

#endif
