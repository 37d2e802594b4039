/* `tern user`: adds, removes, locks and unlocks users, sets passwords and lists who there is.
 * Passwords come from a no-echo prompt on the terminal, the first line of standard input or
 * the first line of a file, never from the command line (where ps and shell history would see
 * them); they are hashed here and wiped, and the users file is edited through auth/userfile. */
#include "cli/audit_admin.h"
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <termios.h>
#include <unistd.h>

#include "auth/passwd.h"
#include "auth/userfile.h"
#include "conf/config.h"

#define HASH_MAX 256 /* what tables_user.password holds */

static const char usage[] =
    "usage: tern user add ADDR [--name NAME] [--admin] [--scram] [PASSWORD] [-c CONFIG]\n"
    "       tern user passwd ADDR [--scram | --crypt] [PASSWORD] [-c CONFIG]\n"
    "       tern user del ADDR [-c CONFIG]\n"
    "       tern user lock ADDR [-c CONFIG]\n"
    "       tern user unlock ADDR [-c CONFIG]\n"
    "       tern user list [-c CONFIG]\n"
    "\n"
    "Edits the users file that CONFIG names; each edit is checked to load as ternd would\n"
    "load it and replaces the file in one step. A running ternd notices the change\n"
    "within seconds (it watches the file), or at once on SIGHUP.\n"
    "\n"
    "  add       add ADDR (user@domain in a local domain, not an alias)\n"
    "  passwd    set ADDR's password (keeps its scheme unless --scram or --crypt)\n"
    "  del       remove ADDR (its mailbox is left on disk)\n"
    "  lock      forbid ADDR to authenticate (mail to it is still delivered)\n"
    "  unlock    allow it again\n"
    "  list      address, scheme, flags (admin, locked, moved) and name of every user\n"
    "\n"
    "  -c, --config FILE     configuration (default $TERN_CONF, else /etc/tern/tern.conf\n"
    "                        if it exists, else ./var/tern.conf)\n"
    "  --name NAME           full name\n"
    "  --admin               may authorize as another user (AUTH PLAIN authzid)\n"
    "  --scram               store {SCRAM-SHA-256}, which the SCRAM-SHA-256 mechanism needs\n"
    "                        (PLAIN and LOGIN work too); default {CRYPT} yescrypt\n"
    "  --crypt               passwd: store {CRYPT} yescrypt\n"
    "\n"
    "PASSWORD is where the password comes from; without one it is asked for twice on the\n"
    "terminal, without echo:\n"
    "  --password-stdin      the first line of standard input\n"
    "  --password-file FILE  the first line of FILE\n"
    "\n"
    "Exit status: 0 done, 64 bad arguments, 65 bad data (address, name, password, user\n"
    "exists), 66 password file unreadable, 67 no such user, 73 cannot write the users file,\n"
    "75 another edit holds the lock, 78 bad configuration or the edit would break it.\n";

enum opt_bit {
    OPT_NAME = 1 << 0,
    OPT_ADMIN = 1 << 1,
    OPT_SCRAM = 1 << 2,
    OPT_CRYPT = 1 << 3,
    OPT_PWSRC = 1 << 4, /* --password-stdin, --password-file */
};

struct user_opts {
    const char *sub;
    const char *config;
    const char *addr;
    const char *name;
    const char *password_file;
    bool password_stdin;
    bool admin, scram, crypt;
    unsigned given; /* enum opt_bit of the options given */
    char *refusal;  /* CLI_ADMIN_RESULT_MAX: the first reason printed, for the audit record */
};

struct subcommand {
    const char *name;
    bool takes_addr;
    bool changes;     /* an admin action: recorded in the audit log */
    unsigned allowed; /* enum opt_bit */
    int (*run)(const struct user_opts *o, const struct conf *c);
};

/* Maps an edit's failure to the exit status. */
static int status_of(const struct userfile_err *e)
{
    switch (e->fail) {
    case USERFILE_OK:
        return 0;
    case USERFILE_BAD:
        return EX_DATAERR;
    case USERFILE_NOUSER:
        return EX_NOUSER;
    case USERFILE_IO:
        return EX_CANTCREAT;
    case USERFILE_LOCKED:
        return EX_TEMPFAIL;
    case USERFILE_INVALID:
        return EX_CONFIG;
    }
    return EX_SOFTWARE;
}

/* Prints why the action is refused ("tern user SUB: ...") and keeps the first such reason for
 * the action's audit record. */
static void refuse(const struct user_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse(const struct user_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_admin_vrefuse("user", o->sub, o->refusal, fmt, ap);
    va_end(ap);
}

static int report_fail(const struct user_opts *o, const struct userfile_err *e)
{
    refuse(o, "%s", e->msg);
    return status_of(e);
}

static void remind_reload(void)
{
    printf("ternd picks this up within seconds (at once: kill -HUP $(pidof ternd))\n");
}

/* ---- reading a password ---------------------------------------------------------------- */

static volatile sig_atomic_t prompt_signal;

static void on_prompt_signal(int sig)
{
    prompt_signal = sig;
}

/* Reads one line from fd into pw (room for PASSWD_MAX + 1), without its line end. The rest of
 * an overlong line is read away too, so that it cannot reach the shell from the terminal.
 * Returns the length, -1 on a read error or signal, -2 when the line is too long. */
static long read_line(int fd, char *pw)
{
    size_t n = 0;
    bool too_long = false;
    for (;;) {
        char ch;
        ssize_t r = read(fd, &ch, 1);
        if (r < 0 && errno == EINTR && !prompt_signal)
            continue;
        if (r < 0)
            return -1;
        if (r == 0 || ch == '\n')
            break;
        if (n < PASSWD_MAX + 1)
            pw[n++] = ch;
        else
            too_long = true;
    }
    if (n > 0 && pw[n - 1] == '\r')
        n--;
    if (too_long || n > PASSWD_MAX)
        return -2;
    pw[n] = '\0';
    return (long)n;
}

static const int prompt_signals[] = {SIGINT, SIGQUIT, SIGTERM, SIGHUP, SIGTSTP};
#define NSIG_PROMPT (sizeof(prompt_signals) / sizeof(prompt_signals[0]))

/* Asks twice on the terminal without echo. 0, or an exit status with the reason printed. */
static int prompt_password(const struct user_opts *o, char *pw, size_t *len)
{
    int fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    struct termios old;
    if (fd < 0 || tcgetattr(fd, &old) < 0) {
        if (fd >= 0)
            close(fd);
        refuse(o, "no terminal to ask for the password; give it as the first line "
                  "of standard input with --password-stdin, or of a file with --password-file "
                  "FILE");
        return EX_USAGE;
    }
    /* A signal while echo is off must not leave the terminal that way: catch, restore, then
     * let the signal do what it would have done. */
    struct sigaction sa = {.sa_handler = on_prompt_signal}, saved[NSIG_PROMPT];
    sigemptyset(&sa.sa_mask);
    prompt_signal = 0;
    for (size_t i = 0; i < NSIG_PROMPT; i++)
        sigaction(prompt_signals[i], &sa, &saved[i]);
    struct termios quiet = old;
    quiet.c_lflag &= ~(tcflag_t)ECHO;
    quiet.c_lflag |= ECHONL;
    tcsetattr(fd, TCSAFLUSH, &quiet);

    char *again = malloc(PASSWD_MAX + 2);
    long n1 = -1, n2 = -1;
    char prompt[TABLES_ADDR_MAX + 64];
    int plen = snprintf(prompt, sizeof(prompt), "password for %s: ", o->addr);
    if (again && write(fd, prompt, (size_t)plen) == plen)
        n1 = read_line(fd, pw);
    if (again && n1 > 0 && write(fd, "again: ", 7) == 7)
        n2 = read_line(fd, again);

    tcsetattr(fd, TCSAFLUSH, &old);
    for (size_t i = 0; i < NSIG_PROMPT; i++)
        sigaction(prompt_signals[i], &saved[i], NULL);
    close(fd);
    bool same = n1 >= 0 && n1 == n2 && memcmp(pw, again, (size_t)n1) == 0;
    if (again) {
        explicit_bzero(again, PASSWD_MAX + 2);
        free(again);
    }
    if (prompt_signal) {
        explicit_bzero(pw, PASSWD_MAX + 2);
        if (prompt_signal != SIGTSTP)
            raise(prompt_signal);
        refuse(o, "interrupted; nothing changed");
        return EX_TEMPFAIL;
    }
    if (!again || n1 == -1 || (n1 > 0 && n2 == -1)) {
        refuse(o, "cannot read from the terminal: %s", again ? strerror(errno) : "out of memory");
        return EX_IOERR;
    }
    if (n1 == -2 || n2 == -2) {
        refuse(o, "the password is longer than %d bytes; choose a shorter one", PASSWD_MAX);
        return EX_DATAERR;
    }
    if (n1 == 0) {
        refuse(o, "the password is empty; nothing changed");
        return EX_DATAERR;
    }
    if (!same) {
        refuse(o, "the two passwords differ; nothing changed, try again");
        return EX_DATAERR;
    }
    *len = (size_t)n1;
    return 0;
}

/* The first line of standard input or of --password-file. 0, or an exit status. */
static int read_password(const struct user_opts *o, char *pw, size_t *len)
{
    if (!o->password_stdin && !o->password_file)
        return prompt_password(o, pw, len);
    const char *from = o->password_stdin ? "standard input" : o->password_file;
    int fd = 0;
    if (o->password_file) {
        fd = open(o->password_file, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            refuse(o, "cannot read the password file %s: %s", o->password_file, strerror(errno));
            return EX_NOINPUT;
        }
    }
    prompt_signal = 0;
    long n = read_line(fd, pw);
    int saved = errno;
    if (o->password_file)
        close(fd);
    if (n == -1) {
        refuse(o, "cannot read the password from %s: %s", from, strerror(saved));
        return o->password_file ? EX_NOINPUT : EX_IOERR;
    }
    if (n == -2) {
        refuse(o,
               "the first line of %s is longer than %d bytes; a password must be "
               "shorter",
               from, PASSWD_MAX);
        return EX_DATAERR;
    }
    if (n == 0) {
        refuse(o, "the first line of %s is empty; put the password there", from);
        return EX_DATAERR;
    }
    *len = (size_t)n;
    return 0;
}

/* Reads the password and hashes it in the scheme asked for into hash. 0, or an exit status. */
static int new_password(const struct user_opts *o, bool scram, char *hash)
{
    char *pw = malloc(PASSWD_MAX + 2);
    if (!pw) {
        refuse(o, "out of memory");
        return EX_OSERR;
    }
    size_t len = 0;
    int r = read_password(o, pw, &len);
    if (r == 0) {
        char err[256];
        int h =
            scram ? passwd_hash_scram(pw, len, PASSWD_SCRAM_ITER, hash, HASH_MAX, err, sizeof(err))
                  : passwd_hash_crypt(pw, len, hash, HASH_MAX, err, sizeof(err));
        if (h < 0) {
            refuse(o, "%s%s", err,
                   !scram && len >= 512 ? " (or use --scram, which takes up to 1024)" : "");
            r = EX_DATAERR;
        }
    }
    explicit_bzero(pw, PASSWD_MAX + 2);
    free(pw);
    return r;
}

static const char *scheme_text(bool scram)
{
    return scram ? "{SCRAM-SHA-256} (SCRAM-SHA-256, PLAIN and LOGIN)" : "{CRYPT} yescrypt";
}

/* ---- the subcommands -------------------------------------------------------------------- */

static int run_add(const struct user_opts *o, const struct conf *c)
{
    struct userfile uf;
    userfile_from_conf(&uf, c);
    /* Refuse what can be refused before asking for a password; userfile checks again under
     * its lock. */
    if (tables_user(c->tables, o->addr)) {
        refuse(o,
               "%s is a user already; change the password with tern user "
               "passwd %s",
               o->addr, o->addr);
        return EX_DATAERR;
    }
    const char *at = strchr(o->addr, '@');
    if (at && !tables_is_local_domain(c->tables, at + 1)) {
        refuse(o,
               "%s is not one of the local domains; add it to domains = in %s "
               "first",
               at + 1, c->path);
        return EX_DATAERR;
    }
    char hash[HASH_MAX];
    int r = new_password(o, o->scram, hash);
    if (r)
        return r;
    struct userfile_err e;
    if (userfile_add(&uf, o->addr, hash, o->name ? o->name : "", o->admin, &e) < 0)
        return report_fail(o, &e);
    printf("added %s%s to %s, password stored as %s\n", o->addr, o->admin ? " (admin)" : "",
           c->users_file, scheme_text(o->scram));
    remind_reload();
    return 0;
}

static int run_passwd(const struct user_opts *o, const struct conf *c)
{
    struct userfile uf;
    userfile_from_conf(&uf, c);
    const struct tables_user *u = tables_user(c->tables, o->addr);
    if (!u) {
        refuse(o, "%s is not a user; tern user list shows who is", o->addr);
        return EX_NOUSER;
    }
    bool scram = o->scram || (!o->crypt && strncasecmp(u->password, "{SCRAM-SHA-256}", 15) == 0);
    char hash[HASH_MAX];
    int r = new_password(o, scram, hash);
    if (r)
        return r;
    struct userfile_err e;
    if (userfile_set_password(&uf, o->addr, hash, &e) < 0)
        return report_fail(o, &e);
    printf("set the password of %s, stored as %s\n", o->addr, scheme_text(scram));
    if (u->locked)
        printf("%s is still locked; tern user unlock %s lets it authenticate\n", o->addr, o->addr);
    remind_reload();
    return 0;
}

static int run_del(const struct user_opts *o, const struct conf *c)
{
    struct userfile uf;
    userfile_from_conf(&uf, c);
    struct userfile_err e;
    if (userfile_delete(&uf, o->addr, &e) < 0)
        return report_fail(o, &e);
    const char *at = strchr(o->addr, '@');
    printf("deleted %s from %s\n", o->addr, c->users_file);
    printf("its mail, if any, is left in %s/mail/%s/%.*s; remove it when no longer needed\n",
           c->data_dir, at + 1, (int)(at - o->addr), o->addr);
    remind_reload();
    return 0;
}

/* lock and unlock: the same edit in two directions, each with its own words. */
static int set_locked(const struct user_opts *o, const struct conf *c, bool lock)
{
    struct userfile uf;
    userfile_from_conf(&uf, c);
    struct userfile_err e;
    bool changed = false;
    if ((lock ? userfile_lock : userfile_unlock)(&uf, o->addr, &changed, &e) < 0)
        return report_fail(o, &e);
    if (!changed) {
        printf("%s %s; nothing changed\n", o->addr, lock ? "was locked already" : "was not locked");
        return 0;
    }
    if (lock)
        printf("locked %s: it can no longer authenticate; mail to it is still delivered\n",
               o->addr);
    else
        printf("unlocked %s: it may authenticate again\n", o->addr);
    remind_reload();
    return 0;
}

static int run_lock(const struct user_opts *o, const struct conf *c)
{
    return set_locked(o, c, true);
}

static int run_unlock(const struct user_opts *o, const struct conf *c)
{
    return set_locked(o, c, false);
}

/* The scheme of a stored password, for people. */
static const char *scheme_of(const char *pw)
{
    static const struct {
        const char *prefix, *name;
    } crypts[] = {
        {"$y$", "yescrypt"},     {"$gy$", "gost-yescrypt"}, {"$7$", "scrypt"},
        {"$2b$", "bcrypt"},      {"$2a$", "bcrypt"},        {"$2y$", "bcrypt"},
        {"$6$", "sha512-crypt"}, {"$5$", "sha256-crypt"},   {"$1$", "md5-crypt"},
    };
    if (!*pw)
        return "none";
    if (strncasecmp(pw, "{SCRAM-SHA-256}", 15) == 0)
        return "SCRAM-SHA-256";
    if (strncasecmp(pw, "{CRYPT}", 7) != 0)
        return "unknown";
    for (size_t i = 0; i < sizeof(crypts) / sizeof(crypts[0]); i++)
        if (strncmp(pw + 7, crypts[i].prefix, strlen(crypts[i].prefix)) == 0)
            return crypts[i].name;
    return "crypt";
}

static int run_list(const struct user_opts *o, const struct conf *c)
{
    struct userfile uf;
    userfile_from_conf(&uf, c);
    struct userfile_err e;
    struct tables_user *users;
    size_t n;
    if (userfile_list(&uf, &users, &n, &e) < 0)
        return report_fail(o, &e);
    int width = 7;
    for (size_t i = 0; i < n; i++)
        if ((int)strlen(users[i].addr) > width)
            width = (int)strlen(users[i].addr);
    if (n == 0)
        printf("no users in %s; add one with tern user add ADDR\n", c->users_file);
    else
        printf("%-*s  %-13s  %-12s  %s\n", width, "ADDRESS", "SCHEME", "FLAGS", "NAME");
    for (size_t i = 0; i < n; i++) {
        const struct tables_user *u = &users[i];
        char flags[TABLES_ADDR_MAX + 32] = "";
        if (u->admin)
            strcat(flags, "admin");
        if (u->locked)
            strcat(flags, flags[0] ? ",locked" : "locked");
        if (u->moved[0]) {
            strcat(flags, flags[0] ? ",moved=" : "moved=");
            strcat(flags, u->moved);
        }
        if (u->name[0])
            printf("%-*s  %-13s  %-12s  %s\n", width, u->addr, scheme_of(u->password),
                   flags[0] ? flags : "-", u->name);
        else /* no blanks at the end of the line */
            printf("%-*s  %-13s  %s\n", width, u->addr, scheme_of(u->password),
                   flags[0] ? flags : "-");
    }
    explicit_bzero(users, n * sizeof(*users));
    free(users);
    return 0;
}

static const struct subcommand subcommands[] = {
    {"add", true, true, OPT_NAME | OPT_ADMIN | OPT_SCRAM | OPT_PWSRC, run_add},
    {"passwd", true, true, OPT_SCRAM | OPT_CRYPT | OPT_PWSRC, run_passwd},
    {"del", true, true, 0, run_del},
    {"lock", true, true, 0, run_lock},
    {"unlock", true, true, 0, run_unlock},
    {"list", false, false, 0, run_list},
};

/* The action's admin record: the address and the options given, never a password (of
 * --password-file only the flag: the path is nobody's business either). */
static void record(const struct user_opts *o, const struct conf *c, int status)
{
    const char *args[8];
    size_t n = 0;
    args[n++] = o->addr;
    if (o->name) {
        args[n++] = "--name";
        args[n++] = o->name;
    }
    if (o->admin)
        args[n++] = "--admin";
    if (o->scram)
        args[n++] = "--scram";
    if (o->crypt)
        args[n++] = "--crypt";
    if (o->password_stdin)
        args[n++] = "--password-stdin";
    if (o->password_file)
        args[n++] = "--password-file";
    char command[32], text[64];
    snprintf(command, sizeof(command), "user %s", o->sub);
    cli_audit_admin(c, command, args, n, cli_admin_result(status, o->refusal, text, sizeof(text)));
}

/* 0, 1 when --help was asked, or EX_USAGE. argv[0] is the subcommand. */
static int parse_args(int argc, char **argv, struct user_opts *o)
{
    enum { O_NAME = 256, O_ADMIN, O_SCRAM, O_CRYPT, O_PWFILE, O_PWSTDIN };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"name", required_argument, NULL, O_NAME},
        {"admin", no_argument, NULL, O_ADMIN},
        {"scram", no_argument, NULL, O_SCRAM},
        {"crypt", no_argument, NULL, O_CRYPT},
        {"password-file", required_argument, NULL, O_PWFILE},
        {"password-stdin", no_argument, NULL, O_PWSTDIN},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 0; /* glibc: start a fresh scan, whatever parsed before */
    opterr = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, ":c:h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h':
            return 1;
        case 'c':
            o->config = optarg;
            break;
        case O_NAME:
            o->name = optarg;
            o->given |= OPT_NAME;
            break;
        case O_ADMIN:
            o->admin = true;
            o->given |= OPT_ADMIN;
            break;
        case O_SCRAM:
            o->scram = true;
            o->given |= OPT_SCRAM;
            break;
        case O_CRYPT:
            o->crypt = true;
            o->given |= OPT_CRYPT;
            break;
        case O_PWFILE:
            o->password_file = optarg;
            o->given |= OPT_PWSRC;
            break;
        case O_PWSTDIN:
            o->password_stdin = true;
            o->given |= OPT_PWSRC;
            break;
        default:
            return cli_option_error("user", o->sub, ch, argv[optind - 1]);
        }
    }
    if (optind < argc)
        o->addr = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "tern user %s: one address only (got %s too); see tern user --help\n",
                o->sub, argv[optind]);
        return EX_USAGE;
    }
    return 0;
}

int cli_user(int argc, char **argv)
{
    int r;
    const struct subcommand *sc =
        cli_subcommand(argc, argv, "user", usage, subcommands,
                       sizeof(subcommands) / sizeof(subcommands[0]), sizeof(subcommands[0]), &r);
    if (!sc)
        return r;
    struct user_opts o = {.sub = sc->name};
    r = parse_args(argc - 1, argv + 1, &o);
    if (r == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (r || (r = cli_options_allowed("user", sc->name, o.given, sc->allowed)))
        return r;
    if (sc->takes_addr && !o.addr) {
        fprintf(stderr, "tern user %s: which user? give ADDR, like alice@example.org\n", sc->name);
        return EX_USAGE;
    }
    if (!sc->takes_addr && o.addr) {
        fprintf(stderr, "tern user %s: takes no address (got %s)\n", sc->name, o.addr);
        return EX_USAGE;
    }
    if (o.password_stdin && o.password_file) {
        fprintf(stderr, "tern user %s: give --password-stdin or --password-file, not both\n",
                sc->name);
        return EX_USAGE;
    }
    if (o.scram && o.crypt) {
        fprintf(stderr, "tern user %s: give --scram or --crypt, not both\n", sc->name);
        return EX_USAGE;
    }
    char addr[TABLES_ADDR_MAX + 1];
    if (o.addr) {
        if (strlen(o.addr) > TABLES_ADDR_MAX) {
            fprintf(stderr, "tern user %s: the address is longer than %d characters\n", sc->name,
                    TABLES_ADDR_MAX);
            return EX_DATAERR;
        }
        memcpy(addr, o.addr, strlen(o.addr) + 1);
        conf_lowercase(addr);
        const char *at = strchr(addr, '@');
        if (!at || at == addr || !at[1] || strchr(at + 1, '@')) {
            fprintf(stderr, "tern user %s: '%s' is not an address; write it as user@domain\n",
                    sc->name, o.addr);
            return EX_DATAERR;
        }
        o.addr = addr;
    }
    struct conf *c = cli_load_conf("user", sc->name, &o.config, &r);
    if (!c)
        return r;
    char refusal[CLI_ADMIN_RESULT_MAX] = "";
    o.refusal = refusal;
    r = sc->run(&o, c);
    if (sc->changes)
        record(&o, c, r);
    conf_unref(c);
    return r;
}
