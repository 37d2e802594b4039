/* `tern init`: makes a data folder that ternd can start from: a documented tern.conf listening
 * on loopback, a users file with one first user whose random password is shown once and stored
 * only as a yescrypt hash, an aliases file so postmaster and abuse reach that user, and an empty
 * shared mailboxes file that says what goes in it. It never overwrites: each file is written to a
 * temporary name, synced, and linked into place only if the name is still free. */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "auth/passwd.h"
#include "conf/config.h"
#include "conf/mboxfile.h"
#include "util/editfile.h"

#define PASSWORD_LEN 16

static const char usage[] =
    "usage: tern init [DIR] [--domain D] [--user LOCAL] [--hostname H]\n"
    "                 [--smtp PORT] [--submission PORT] [--smtps PORT] [--run-as UNIX_USER]\n"
    "\n"
    "Creates DIR (default ./var) and, each only when it is not there yet:\n"
    "  DIR/tern.conf  listeners on 127.0.0.1, the domain, this host's name\n"
    "  DIR/users      one first user, LOCAL@D, with a random password printed once\n"
    "  DIR/aliases    postmaster and abuse, both to that user\n"
    "  DIR/mailboxes  no shared mailboxes yet, only a comment on the format\n"
    "                 (tern mailbox add makes them)\n"
    "Existing files are left alone; the command says which it created.\n"
    "\n"
    "  --domain D          the mail domain (default example.org)\n"
    "  --user LOCAL        the first user's local part (default admin)\n"
    "  --hostname H        this server's name (default: the machine's name)\n"
    "  --smtp PORT         SMTP port on 127.0.0.1 (default 2525)\n"
    "  --submission PORT   submission port on 127.0.0.1 (default 2587)\n"
    "  --smtps PORT        SMTPS port (default 2465); active when DIR/tls/ has cert.pem+key.pem\n"
    "  --run-as USER       Unix user ternd drops to when started as root (default tern)\n";

struct init_opts {
    const char *dir;
    char domain[256];
    char local[65];
    char hostname[256];
    const char *run_as;
    int smtp, submission, smtps;
};

static int parse_port(const char *opt, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 1 || v > 65535) {
        fprintf(stderr, "tern init: --%s %s: not a port; give a number from 1 to 65535\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

/* Copies an option value, lowercased; -1 when it does not fit or check rejects it. */
static int take_name(const char *opt, const char *v, char *dst, size_t n,
                     bool (*check)(const char *), const char *example)
{
    if (strlen(v) >= n || !check(v)) {
        fprintf(stderr, "tern init: --%s %s: not a valid name; give one like %s\n", opt, v,
                example);
        return -1;
    }
    strcpy(dst, v);
    conf_lowercase(dst);
    return 0;
}

static bool valid_unix_user(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len >= 32 || (s[0] >= '0' && s[0] <= '9') || s[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
            return false;
    return true;
}

/* 0, 1 when --help was asked, or EX_USAGE. */
static int parse_args(int argc, char **argv, struct init_opts *o)
{
    enum { O_DOMAIN = 256, O_USER, O_HOSTNAME, O_SMTP, O_SUBMISSION, O_SMTPS, O_RUN_AS };
    static const struct option longopts[] = {
        {"domain", required_argument, NULL, O_DOMAIN},
        {"user", required_argument, NULL, O_USER},
        {"hostname", required_argument, NULL, O_HOSTNAME},
        {"smtp", required_argument, NULL, O_SMTP},
        {"submission", required_argument, NULL, O_SUBMISSION},
        {"smtps", required_argument, NULL, O_SMTPS},
        {"run-as", required_argument, NULL, O_RUN_AS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* glibc: start a fresh scan, whatever parsed before */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        int r = 0;
        switch (ch) {
        case 'h':
            return 1;
        case O_DOMAIN:
            r = take_name("domain", optarg, o->domain, sizeof(o->domain), conf_valid_domain,
                          "example.org");
            break;
        case O_USER:
            r = take_name("user", optarg, o->local, sizeof(o->local), conf_valid_local, "admin");
            break;
        case O_HOSTNAME:
            r = take_name("hostname", optarg, o->hostname, sizeof(o->hostname), conf_valid_domain,
                          "mail.example.org");
            break;
        case O_SMTP:
            r = parse_port("smtp", optarg, &o->smtp);
            break;
        case O_SUBMISSION:
            r = parse_port("submission", optarg, &o->submission);
            break;
        case O_SMTPS:
            r = parse_port("smtps", optarg, &o->smtps);
            break;
        case O_RUN_AS:
            if (!valid_unix_user(optarg)) {
                fprintf(stderr,
                        "tern init: --run-as %s: not a Unix user name; give one like "
                        "tern\n",
                        optarg);
                r = -1;
            }
            o->run_as = optarg;
            break;
        case ':':
            fprintf(stderr, "tern init: %s needs a value; see tern init --help\n",
                    argv[optind - 1]);
            return EX_USAGE;
        default:
            fprintf(stderr, "tern init: unknown option %s; see tern init --help\n",
                    argv[optind - 1]);
            return EX_USAGE;
        }
        if (r < 0)
            return EX_USAGE;
    }
    if (optind < argc)
        o->dir = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "tern init: one DIR only (got %s too); see tern init --help\n",
                argv[optind]);
        return EX_USAGE;
    }
    if (o->smtp == o->submission || (o->smtps == o->smtp || o->smtps == o->submission)) {
        fprintf(stderr, "tern init: the smtp, submission and smtps ports must differ; pick "
                        "another with --smtp, --submission or --smtps\n");
        return EX_USAGE;
    }
    return 0;
}

/* mkdir -p; the last folder gets 0750 (mail is private), the ones above it 0755. 1 when it
 * made DIR, 0 when DIR was there, -1 with errno. */
static int make_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) == 0) {
        if (S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
        return -1;
    }
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s", dir) >= (int)sizeof(path)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(path, 0750) < 0)
        return errno == EEXIST ? 0 : -1;
    chmod(path, 0750); /* whatever the umask */
    return 1;
}

/* Writes dir/name atomically and only if absent: temporary file, fsync, link into place, fsync
 * the folder. 1 created, 0 already there (left alone), -1 with a reason in err. */
static int write_new(const char *dir, const char *name, const char *content, mode_t mode, char *err,
                     size_t errlen)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    struct stat st;
    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s/.%s.XXXXXX", dir, name) >= (int)sizeof(tmp)) {
        snprintf(err, errlen, "%s/%s: path too long; use a shorter DIR", dir, name);
        return -1;
    }
    if (lstat(path, &st) == 0)
        return 0;
    if (editfile_write_temp(dir, name, content, strlen(content), mode, (uid_t)-1, (gid_t)-1, tmp,
                            sizeof(tmp), err, errlen) < 0)
        return -1;
    int r = 1;
    if (link(tmp, path) < 0) {
        if (errno == EEXIST) {
            r = 0; /* someone made it meanwhile: theirs stays */
        } else {
            snprintf(err, errlen, "cannot create %s: %s; check the folder's permissions", path,
                     strerror(errno));
            r = -1;
        }
    }
    unlink(tmp);
    if (r == 1)
        editfile_sync_dir(dir); /* the new name survives a crash too */
    return r;
}

/* PASSWORD_LEN characters from 62, uniformly: bytes of 248 and over are drawn again. */
static int make_password(char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    size_t n = 0;
    while (n < PASSWORD_LEN) {
        unsigned char buf[64];
        ssize_t got = getrandom(buf, sizeof(buf), 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        for (ssize_t i = 0; i < got && n < PASSWORD_LEN; i++)
            if (buf[i] < 248)
                out[n++] = alphabet[buf[i] % 62];
    }
    out[n] = '\0';
    return 0;
}

/* TLS lines: active when DIR/tls/ already holds a certificate and key (make run makes them
 * first), commented out with how to get them otherwise, since smtps needs them to load. */
static void tls_lines(const char *dir, int smtps, char *listen, size_t ln, char *tls, size_t tn)
{
    char cert[PATH_MAX + 16], key[PATH_MAX + 16];
    snprintf(cert, sizeof cert, "%s/tls/cert.pem", dir);
    snprintf(key, sizeof key, "%s/tls/key.pem", dir);
    bool have = access(cert, R_OK) == 0 && access(key, R_OK) == 0;
    snprintf(listen, ln, "%ssmtps = 127.0.0.1:%d%s\n", have ? "" : "# ", smtps,
             have ? "" : "    ; needs [tls] below");
    snprintf(tls, tn,
             "[tls]\n"
             "%scert = tls/cert.pem%s\n"
             "%skey = tls/key.pem\n",
             have ? "" : "# ", have ? "" : "    ; PEM chain; make run creates a self-signed one",
             have ? "" : "# ");
}

static int make_conf(const struct init_opts *o, char *buf, size_t n)
{
    char listen[256], tls[512];
    tls_lines(o->dir, o->smtps, listen, sizeof listen, tls, sizeof tls);
    char date[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof(date), "%Y-%m-%d", gmtime_r(&now, &tm));
    int r = snprintf(
        buf, n,
        "# tern.conf, written by `tern init` on %s. Every key is described in tern.conf(5);\n"
        "# check changes with `tern config check FILE`. Relative paths are relative to the\n"
        "# folder of this file (users, aliases and mailboxes: to data_dir).\n"
        "\n"
        "[server]\n"
        "hostname = %s\n"
        "data_dir = .\n"
        "user = %s\n"
        "domains = %s    ; the first is the primary domain; more: comma and/or space separated\n"
        "# users = users             ; passwd-file: user@domain:{CRYPT}hash:::Full Name:::\n"
        "# aliases = aliases         ; name: member, member\n"
        "# mailboxes = mailboxes     ; shared: team@domain: member, member [quota=SIZE]\n"
        "# workers = 4\n"
        "\n"
        "[listen]\n"
        "smtp = 127.0.0.1:%d\n"
        "submission = 127.0.0.1:%d\n"
        "%s"
        "\n"
        "[limits]\n"
        "# message_size = 25M\n"
        "# recipients = 100\n"
        "# connections = 1000\n"
        "# connections_per_ip = 50\n"
        "# bad_commands = 20\n"
        "# junk_commands = 1000\n"
        "# command_timeout = 300\n"
        "# data_timeout = 600\n"
        "# shutdown_timeout = 30\n"
        "# min_free_space = 100M\n"
        "\n"
        "[policy]\n"
        "# deny = 192.0.2.0/24, 2001:db8::/32\n"
        "# vrfy = authenticated      ; none | authenticated | all\n"
        "# expn = authenticated\n"
        "\n"
        "%s"
        "\n"
        "[auth]\n"
        "# plaintext = no           ; no | loopback (AUTH in clear from 127.0.0.1, for tests)\n"
        "# max_failures = 5\n"
        "# window = 600\n",
        date, o->hostname, o->run_as, o->domain, o->smtp, o->submission, listen, tls);
    return r < 0 || (size_t)r >= n ? -1 : 0;
}

static void report(int r, const char *dir, const char *name, const char *what)
{
    if (r > 0)
        printf("created %s/%s%s\n", dir, name, what);
    else
        printf("left alone %s/%s (already there)\n", dir, name);
}

int cli_init(int argc, char **argv)
{
    struct init_opts o = {
        .dir = "./var",
        .domain = "example.org",
        .local = "admin",
        .run_as = "tern",
        .smtp = 2525,
        .submission = 2587,
        .smtps = 2465,
    };
    int r = parse_args(argc, argv, &o);
    if (r == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (r)
        return r;
    if (!o.hostname[0]) {
        if (gethostname(o.hostname, sizeof(o.hostname) - 1) < 0 || !conf_valid_domain(o.hostname)) {
            fprintf(stderr,
                    "tern init: this machine's name '%s' is not a domain name; using "
                    "localhost (set it with --hostname)\n",
                    o.hostname);
            strcpy(o.hostname, "localhost");
        }
        conf_lowercase(o.hostname);
    }

    int made = make_dir(o.dir);
    if (made < 0) {
        fprintf(stderr,
                "tern init: cannot create %s: %s; pick another DIR or fix the "
                "permissions\n",
                o.dir, strerror(errno));
        return EX_CANTCREAT;
    }
    printf(made ? "created %s/\n" : "left alone %s/ (already there)\n", o.dir);

    char err[PATH_MAX + 256];
    char conf[4096];
    if (make_conf(&o, conf, sizeof(conf)) < 0) {
        fprintf(stderr, "tern init: the configuration does not fit; shorten --hostname\n");
        return EX_SOFTWARE;
    }
    r = write_new(o.dir, "tern.conf", conf, 0640, err, sizeof(err));
    if (r < 0)
        goto fail;
    report(r, o.dir, "tern.conf", "");

    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/users", o.dir);
    struct stat st;
    char password[PASSWORD_LEN + 1] = "";
    if (lstat(path, &st) < 0) {
        char hash[256], users[1024], why[256];
        if (make_password(password) < 0) {
            fprintf(stderr, "tern init: cannot make a random password: %s\n", strerror(errno));
            return EX_SOFTWARE;
        }
        if (passwd_hash_crypt(password, PASSWORD_LEN, hash, sizeof(hash), why, sizeof(why)) < 0) {
            fprintf(stderr, "tern init: cannot make a password hash: %s\n", why);
            explicit_bzero(password, sizeof(password));
            return EX_SOFTWARE;
        }
        snprintf(users, sizeof(users),
                 "# users: one line a user, Dovecot passwd-file format:\n"
                 "#   user@domain:{CRYPT}hash:uid:gid:Full Name:home:shell:extra fields\n"
                 "# Make a hash with `mkpasswd -m yescrypt`. Extra field moved=new@addr marks a\n"
                 "# user who has left.\n"
                 "%s@%s:%s:::Administrator:::\n",
                 o.local, o.domain, hash);
        r = write_new(o.dir, "users", users, 0640, err, sizeof(err));
        explicit_bzero(users, sizeof(users));
        if (r < 0) {
            explicit_bzero(password, sizeof(password));
            goto fail;
        }
        if (r == 0)
            explicit_bzero(password, sizeof(password));
    } else {
        r = 0;
    }
    char who[512];
    snprintf(who, sizeof(who), " with %s@%s", o.local, o.domain);
    report(r, o.dir, "users", who);

    char aliases[1024];
    snprintf(aliases, sizeof(aliases),
             "# aliases: name: member, member. A bare name applies in every local domain;\n"
             "# members are local users or other aliases.\n"
             "postmaster: %s@%s\n"
             "abuse: %s@%s\n",
             o.local, o.domain, o.local, o.domain);
    r = write_new(o.dir, "aliases", aliases, 0640, err, sizeof(err));
    if (r < 0)
        goto fail;
    report(r, o.dir, "aliases", "");

    r = write_new(o.dir, "mailboxes", MBOXFILE_HEADER, 0640, err, sizeof(err));
    if (r < 0)
        goto fail;
    report(r, o.dir, "mailboxes", "");

    if (password[0]) {
        printf("\npassword for %s@%s: %s\n", o.local, o.domain, password);
        printf("This password will not be shown again: keep it somewhere safe now.\n");
        explicit_bzero(password, sizeof(password));
    }
    printf("\nnext: tern config check %s/tern.conf\n", o.dir);
    return 0;
fail:
    fprintf(stderr, "tern init: %s\n", err);
    return EX_CANTCREAT;
}
