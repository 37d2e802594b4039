/* ternd, the tern mail server daemon: parses its arguments, loads and checks the configuration,
 * binds the listeners, drops root privileges, and runs the server. Nothing else lives here. */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "net/server.h"
#include "util/log.h"
#include "util/version.h"

#define EX_USAGE 64
#define EX_SOFTWARE 70
#define EX_OSERR 71
#define EX_CONFIG 78

static void usage(FILE *f)
{
    fprintf(f, "usage: ternd [-c FILE] [-t] [-d] [-h] [-V]\n"
               "\n"
               "The tern SMTP server. Runs in the foreground and logs to standard error.\n"
               "\n"
               "  -c FILE   configuration file (default: $TERN_CONF, else /etc/tern/tern.conf if\n"
               "            it exists, else ./var/tern.conf)\n"
               "  -t        check the configuration and exit (0 valid, 78 invalid)\n"
               "  -d        debug logging\n"
               "  -h        this help\n"
               "  -V        version\n"
               "\n"
               "Signals: SIGTERM/SIGINT drain and stop, SIGHUP reloads configuration, users and\n"
               "aliases. See ternd(8) and tern.conf(5).\n");
}

/* Started as root: become the configured user, so that no mail session ever runs as root. */
static int drop_privileges(const struct conf *c)
{
    if (geteuid() != 0)
        return 0;
    if (!c->user[0]) {
        fprintf(stderr,
                "ternd: refusing to run mail sessions as root: set `user =` in [server] "
                "of %s to an unprivileged account (make run creates `tern`)\n",
                c->path);
        return -1;
    }
    struct passwd *pw = getpwnam(c->user);
    if (!pw) {
        fprintf(stderr,
                "ternd: user '%s' (from %s) does not exist; create it with: useradd "
                "--system --no-create-home --shell /usr/sbin/nologin %s\n",
                c->user, c->path, c->user);
        return -1;
    }
    if (pw->pw_uid == 0) {
        fprintf(stderr, "ternd: `user = %s` in %s is root; name an unprivileged account\n", c->user,
                c->path);
        return -1;
    }
    if (setgroups(0, NULL) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0) {
        fprintf(stderr, "ternd: cannot become user %s: %s\n", c->user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0) { /* must be impossible now */
        fprintf(stderr, "ternd: privileges could not be dropped\n");
        return -1;
    }
    return 0;
}

/* The mail folder must be writable by whoever ternd now is; say how to fix it if not. */
static int check_data_dir(const struct conf *c)
{
    char mail[PATH_MAX + 8];
    snprintf(mail, sizeof mail, "%s/mail", c->data_dir);
    if (mkdir(mail, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "ternd: cannot create %s: %s; fix with: chown -R %s %s\n", mail,
                strerror(errno), c->user[0] ? c->user : "<ternd's user>", c->data_dir);
        return -1;
    }
    if (access(mail, W_OK | X_OK) != 0) {
        fprintf(stderr, "ternd: %s is not writable: %s; fix with: chown -R %s %s\n", mail,
                strerror(errno), c->user[0] ? c->user : "<ternd's user>", c->data_dir);
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *file = NULL;
    bool check_only = false;
    int opt;
    while ((opt = getopt(argc, argv, "c:tdhV")) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 't':
            check_only = true;
            break;
        case 'd':
            log_set_level(LOG_LVL_DEBUG);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("ternd %s\n", TERN_VERSION);
            return 0;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }
    if (!file)
        file = conf_default_path();
    static char err[65536];
    struct conf *c = conf_load(file, err, sizeof err);
    if (!c) {
        fprintf(stderr, "%s", err);
        fprintf(stderr, "ternd: %s is not valid; fix the lines above (tern config check %s)\n",
                file, file);
        return EX_CONFIG;
    }
    if (check_only) {
        printf("%s: ok\n", file);
        conf_unref(c);
        return 0;
    }
    int fds[CONF_MAX_LISTENERS];
    if (listen_open(c, fds, err, sizeof err) != 0) {
        fprintf(stderr, "ternd: %s\n", err);
        conf_unref(c);
        return EX_OSERR;
    }
    if (drop_privileges(c) != 0 || check_data_dir(c) != 0) {
        conf_unref(c);
        return EX_CONFIG;
    }
    log_info("ternd starting: %s, %zu domains, %zu users, %zu shared mailboxes, data in %s",
             c->hostname, tables_ndomains(c->tables),
             tables_nusers(c->tables) - tables_nshared(c->tables), tables_nshared(c->tables),
             c->data_dir);
    if (server_run(c, fds, err, sizeof err) != 0) {
        fprintf(stderr, "ternd: %s\n", err);
        return EX_SOFTWARE;
    }
    log_info("ternd stopped");
    return 0;
}
