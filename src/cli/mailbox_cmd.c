/* `tern mailbox`: makes, changes and removes shared mailboxes (the `mailboxes` file, edited
 * through conf/mboxfile so that every edit is atomic and checked as ternd would load it), keeps
 * Dovecot's ACLs in step after each edit, and, for any mailbox, lists, shows and checks what is
 * in its Maildir (mailbox_read.c). Parsing the command line is here. */
#include "cli/audit_admin.h"
#include "cli/cli.h"
#include "cli/mailbox.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include "conf/mboxfile.h"
#include "store/acl.h"
#include "store/maildir.h"
#include "store/quota.h"

#define ERRBUF_SIZE (256 * 1024)

static const char usage[] =
    "usage: tern mailbox add ADDR MEMBER... [--quota SIZE] [-c CONFIG]\n"
    "       tern mailbox del ADDR [-c CONFIG]\n"
    "       tern mailbox members ADDR [-c CONFIG]\n"
    "       tern mailbox add-member ADDR MEMBER... [-c CONFIG]\n"
    "       tern mailbox del-member ADDR MEMBER... [-c CONFIG]\n"
    "       tern mailbox quota ADDR SIZE|none [-c CONFIG]\n"
    "       tern mailbox list [NAME] [--json] [-c CONFIG]\n"
    "       tern mailbox show NAME ID [-c CONFIG]\n"
    "       tern mailbox check [NAME...] [-c CONFIG]\n"
    "\n"
    "A shared mailbox is one Maildir that several users receive into, read (through\n"
    "Dovecot) and send as. The first six edit the mailboxes file that CONFIG names;\n"
    "each edit is checked to load as ternd would load it and replaces the file in one\n"
    "step. A running ternd notices the change within seconds (it watches the file).\n"
    "After each edit the Dovecot ACL files (dovecot-acl) of shared Maildirs are\n"
    "brought in line with the file.\n"
    "\n"
    "  add         make ADDR (team@domain in a local domain, not a user or alias) a\n"
    "              shared mailbox with these members, and make its Maildir\n"
    "  del         remove ADDR (its Maildir and mail are left on disk)\n"
    "  members     the members as written, and the users they reach\n"
    "  add-member  add members (those already there are skipped)\n"
    "  del-member  remove members (not the last one: del removes the mailbox)\n"
    "  quota       set ADDR's quota to SIZE, or remove it with none (or 0); for a\n"
    "              user, set userdb_quota_rule=*:storage=SIZE in the users file\n"
    "\n"
    "NAME is any mailbox's address, a user's or a shared one's:\n"
    "  list        without NAME: every mailbox with its messages, size, quota and\n"
    "              use; with NAME: its messages in new/ and cur/, oldest first:\n"
    "              ID DATE SIZE FLAGS FROM SUBJECT\n"
    "  show        write message ID (or any unique start of it) to standard output,\n"
    "              byte for byte as stored\n"
    "  check       for each NAME (default: every mailbox) remove files older than\n"
    "              36 hours from tmp/, recompute maildirsize (the Maildir++ quota\n"
    "              file); and bring every shared mailbox's ACL in line\n"
    "\n"
    "A MEMBER is a user or an alias: user@domain, or a bare local part, taken in\n"
    "ADDR's domain. SIZE is bytes with an optional K, M or G (units of 1024): 500M.\n"
    "\n"
    "  -c, --config FILE   configuration (default $TERN_CONF, else /etc/tern/tern.conf\n"
    "                      if it exists, else ./var/tern.conf)\n"
    "  --quota SIZE        add: the new mailbox's quota\n"
    "  --json              list: a JSON array instead of lines\n"
    "\n"
    "Exit status: 0 done, 64 bad arguments, 65 bad data (address, member, size, exists\n"
    "already, not a member, the last member, an ID that fits several messages),\n"
    "66 no such message, 67 no such mailbox, 71 out of memory, 73 cannot write the\n"
    "mailboxes file, 74 cannot read a Maildir, write ACLs or clean up (check), 75 another\n"
    "edit holds the lock, 78 bad configuration or the edit would break it.\n";

enum opt_bit {
    OPT_QUOTA = 1 << 0,
    OPT_JSON = 1 << 1,
};

struct subcommand {
    const char *name;
    int min, max; /* operands; max -1: no limit */
    bool changes; /* an admin action: recorded in the audit log */
    unsigned allowed;
    const char *operands; /* for the message when they are wrong */
    int (*run)(const struct mbox_opts *o, const struct conf *c);
};

static int status_of(const struct mboxfile_err *e)
{
    switch (e->fail) {
    case MBOXFILE_OK:
        return 0;
    case MBOXFILE_BAD:
        return EX_DATAERR;
    case MBOXFILE_NOBOX:
        return EX_NOUSER;
    case MBOXFILE_IO:
        return EX_CANTCREAT;
    case MBOXFILE_LOCKED:
        return EX_TEMPFAIL;
    case MBOXFILE_INVALID:
        return EX_CONFIG;
    }
    return EX_SOFTWARE;
}

/* Prints why the action is refused ("tern mailbox SUB: ...") and keeps the first reason in
 * o->refusal for the action's audit record. */
static void refuse(const struct mbox_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void refuse(const struct mbox_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cli_admin_vrefuse("mailbox", o->sub, o->refusal, fmt, ap);
    va_end(ap);
}

static int report_fail(const struct mbox_opts *o, const struct mboxfile_err *e)
{
    refuse(o, "%s", e->msg);
    return status_of(e);
}

int mbox_take_addr(const char *sub, const char *name, char *out)
{
    size_t n = strlen(name);
    const char *at = strchr(name, '@');
    if (n > TABLES_ADDR_MAX || !at || at == name || !at[1] || strchr(at + 1, '@')) {
        fprintf(stderr, "tern mailbox %s: '%s' is not an address; write it as local@domain\n", sub,
                name);
        return EX_DATAERR;
    }
    memcpy(out, name, n + 1);
    conf_lowercase(out);
    return 0;
}

int mbox_find(const char *sub, const struct conf *c, const char *addr, char *dir,
              const struct tables_user **u)
{
    struct stat st;
    *u = tables_user(c->tables, addr);
    if (maildir_path(c->data_dir, addr, dir, PATH_MAX) != 0) {
        fprintf(stderr, "tern mailbox %s: %s does not make a Maildir path; check the address\n",
                sub, addr);
        return EX_DATAERR;
    }
    if (!*u && stat(dir, &st) != 0) {
        fprintf(stderr,
                "tern mailbox %s: %s is neither a user nor a shared mailbox, and has no Maildir; "
                "tern mailbox list shows the mailboxes\n",
                sub, addr);
        return EX_NOUSER;
    }
    return 0;
}

void mbox_owner(const char *sub, const struct conf *c, uid_t *uid, gid_t *gid)
{
    if (mboxfile_owner(c, uid, gid) < 0)
        fprintf(stderr,
                "tern mailbox %s: warning: the user %s (user = in %s) does not exist; files "
                "made now belong to root: chown them to the user ternd runs as\n",
                sub, c->user, c->path);
    /* Made here by root, DATA_DIR/mail must still be ternd's, as ternd would have made it. */
    char mail[PATH_MAX + 8];
    snprintf(mail, sizeof(mail), "%s/mail", c->data_dir);
    if (mkdir(mail, 0750) == 0 && *uid != (uid_t)-1 && chown(mail, *uid, *gid) != 0)
        fprintf(stderr, "tern mailbox %s: warning: cannot give %s to %s: %s; chown it\n", sub, mail,
                c->user, strerror(errno));
}

/* The edited files as ternd will now load them, or NULL with the reason on stderr. */
static struct conf *reload(const struct mbox_opts *o)
{
    char *err = malloc(ERRBUF_SIZE);
    struct conf *c = err ? conf_load(o->config, err, ERRBUF_SIZE) : NULL;
    if (!c && err)
        fprintf(stderr, "%s", err);
    free(err);
    return c;
}

/* After an edit: the ACL files (and a new shared mailbox's Maildir), owned by ternd's user when
 * we are root, so that ternd and Dovecot can use what we made. 0, or EX_IOERR. */
static int sync_acls(const struct mbox_opts *o)
{
    struct conf *c = reload(o);
    if (!c) {
        refuse(o, "the edit was made, but reading it back failed (see above); ternd will "
                  "update the ACLs when it reloads");
        return EX_IOERR;
    }
    uid_t uid;
    gid_t gid;
    mbox_owner(o->sub, c, &uid, &gid);
    char err[1024];
    size_t changed = 0;
    int r = acl_sync(c->data_dir, c->tables, uid, gid, &changed, err, sizeof(err));
    conf_unref(c);
    if (r != 0) {
        refuse(o,
               "the mailboxes file was changed, but the ACLs were not: %s; "
               "fix that and run tern mailbox check",
               err);
        return EX_IOERR;
    }
    if (changed)
        printf("updated %zu Dovecot ACL file%s (dovecot-acl)\n", changed, changed == 1 ? "" : "s");
    return 0;
}

static void remind_reload(void)
{
    printf("ternd picks this up within seconds (at once: kill -HUP $(pidof ternd))\n");
}

/* Parses SIZE or none into bytes (0: none). 0, or EX_DATAERR with the reason. */
static int take_size(const struct mbox_opts *o, const char *s, uint64_t *out)
{
    if (strcmp(s, "none") == 0) {
        *out = 0;
        return 0;
    }
    if (conf_parse_size(s, out) < 0) {
        refuse(o,
               "'%s' is not a size; write bytes with an optional K, M or G, "
               "like 500M, or none",
               s);
        return EX_DATAERR;
    }
    return 0;
}

static const char *size_text(uint64_t bytes, char *buf, size_t len)
{
    mboxfile_format_size(bytes, buf, len);
    return buf;
}

static int run_add(const struct mbox_opts *o, const struct conf *c)
{
    struct mboxfile mf;
    mboxfile_from_conf(&mf, c);
    uint64_t quota = 0;
    int r = o->quota ? take_size(o, o->quota, &quota) : 0;
    if (r)
        return r;
    struct mboxfile_err e;
    if (mboxfile_add(&mf, o->args[0], (const char *const *)o->args + 1, (size_t)o->nargs - 1, quota,
                     &e) < 0)
        return report_fail(o, &e);
    char size[32];
    printf("added shared mailbox %s to %s, %d member%s%s%s\n", o->args[0], c->mailboxes_file,
           o->nargs - 1, o->nargs == 2 ? "" : "s", quota ? ", quota " : "",
           quota ? size_text(quota, size, sizeof(size)) : "");
    r = sync_acls(o);
    remind_reload();
    return r;
}

/* Edits of a shared mailbox named with a user's address: say what to use instead. */
static int refuse_user(const struct mbox_opts *o, const struct conf *c)
{
    const struct tables_user *u = tables_user(c->tables, o->args[0]);
    if (!u || u->shared)
        return 0;
    refuse(o,
           "%s is a user, not a shared mailbox; tern user manages users, tern "
           "mailbox list shows which mailboxes are shared",
           o->args[0]);
    return EX_NOUSER;
}

static int run_del(const struct mbox_opts *o, const struct conf *c)
{
    if (refuse_user(o, c))
        return EX_NOUSER;
    struct mboxfile mf;
    mboxfile_from_conf(&mf, c);
    struct mboxfile_err e;
    if (mboxfile_delete(&mf, o->args[0], &e) < 0)
        return report_fail(o, &e);
    char dir[PATH_MAX];
    printf("deleted shared mailbox %s from %s\n", o->args[0], c->mailboxes_file);
    if (maildir_path(c->data_dir, o->args[0], dir, sizeof(dir)) == 0)
        printf("its mail, if any, is left in %s; remove it when no longer needed\n", dir);
    int r = sync_acls(o);
    remind_reload();
    return r;
}

static int run_members(const struct mbox_opts *o, const struct conf *c)
{
    const char *addr = o->args[0];
    long n = tables_shared_members(c->tables, addr, NULL, 0);
    if (n < 0) {
        const struct tables_user *u = tables_user(c->tables, addr);
        fprintf(stderr, "tern mailbox members: %s is %s; tern mailbox list shows the mailboxes\n",
                addr, u ? "a user, not a shared mailbox" : "not a shared mailbox");
        return EX_NOUSER;
    }
    long nu = tables_shared_users(c->tables, addr, NULL, 0);
    const char **m = calloc((size_t)n + 1, sizeof(*m));
    const char **users = calloc((size_t)(nu > 0 ? nu : 0) + 1, sizeof(*users));
    if (!m || !users) {
        free(m);
        free(users);
        fprintf(stderr, "tern mailbox members: out of memory\n");
        return EX_OSERR;
    }
    tables_shared_members(c->tables, addr, m, (size_t)n);
    tables_shared_users(c->tables, addr, users, (size_t)nu);
    const struct tables_user *box = tables_user(c->tables, addr);
    char size[32];
    printf("%s: %ld member%s%s%s\n", addr, n, n == 1 ? "" : "s",
           box && box->quota ? ", quota " : "",
           box && box->quota ? size_text(box->quota, size, sizeof(size)) : "");
    for (long i = 0; i < n; i++) {
        const struct tables_user *u = tables_user(c->tables, m[i]);
        printf("  %s  %s\n", m[i], u ? (u->moved[0] ? "user, moved" : "user") : "alias");
    }
    printf("reaches %ld user%s:\n", nu, nu == 1 ? "" : "s");
    for (long i = 0; i < nu; i++)
        printf("  %s\n", users[i]);
    free(m);
    free(users);
    return 0;
}

static int run_add_member(const struct mbox_opts *o, const struct conf *c)
{
    if (refuse_user(o, c))
        return EX_NOUSER;
    struct mboxfile mf;
    mboxfile_from_conf(&mf, c);
    struct mboxfile_err e;
    bool changed = false;
    if (mboxfile_add_members(&mf, o->args[0], (const char *const *)o->args + 1,
                             (size_t)o->nargs - 1, &changed, &e) < 0)
        return report_fail(o, &e);
    if (!changed) {
        printf("every one of them is a member of %s already; nothing changed\n", o->args[0]);
        return 0;
    }
    printf("added to the members of %s (tern mailbox members %s shows them)\n", o->args[0],
           o->args[0]);
    int r = sync_acls(o);
    remind_reload();
    return r;
}

static int run_del_member(const struct mbox_opts *o, const struct conf *c)
{
    if (refuse_user(o, c))
        return EX_NOUSER;
    struct mboxfile mf;
    mboxfile_from_conf(&mf, c);
    struct mboxfile_err e;
    if (mboxfile_del_members(&mf, o->args[0], (const char *const *)o->args + 1,
                             (size_t)o->nargs - 1, &e) < 0)
        return report_fail(o, &e);
    printf("removed from the members of %s (tern mailbox members %s shows who is left)\n",
           o->args[0], o->args[0]);
    int r = sync_acls(o);
    remind_reload();
    return r;
}

/* After a quota change: the first line of maildirsize holds the limit, for Dovecot. */
static void rewrite_maildirsize(const struct mbox_opts *o, const struct conf *c, uint64_t quota)
{
    char dir[PATH_MAX], err[1024];
    struct stat st;
    struct quota_usage u;
    if (maildir_path(c->data_dir, o->args[0], dir, sizeof(dir)) != 0 || stat(dir, &st) != 0)
        return; /* nothing delivered yet: the first delivery writes it */
    if (quota_recalc(dir, quota, &u, err, sizeof(err)) != 0) {
        fprintf(stderr, "tern mailbox quota: warning: %s; tern mailbox check %s retries\n", err,
                o->args[0]);
        return;
    }
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/%s", dir, QUOTA_FILE);
    if (geteuid() == 0 && lchown(path, st.st_uid, st.st_gid) != 0)
        fprintf(stderr, "tern mailbox quota: warning: cannot give %s to its Maildir's owner: %s\n",
                path, strerror(errno));
    printf("%s uses %llu bytes in %llu messages", o->args[0], (unsigned long long)u.bytes,
           (unsigned long long)u.count);
    if (quota)
        printf(" (%llu%% of the quota)", (unsigned long long)(u.bytes * 100 / quota));
    printf("\n");
}

static int run_quota(const struct mbox_opts *o, const struct conf *c)
{
    const struct tables_user *u = tables_user(c->tables, o->args[0]);
    if (u && !u->shared) {
        refuse(o,
               "%s is a user, whose quota is in the users file: add "
               "userdb_quota_rule=*:storage=SIZE to the extra fields (after the last colon) of "
               "its line in %s (Dovecot reads the same field)",
               o->args[0], c->users_file);
        return EX_DATAERR;
    }
    uint64_t quota;
    int r = take_size(o, o->args[1], &quota);
    if (r)
        return r;
    struct mboxfile mf;
    mboxfile_from_conf(&mf, c);
    struct mboxfile_err e;
    bool changed = false;
    if (mboxfile_set_quota(&mf, o->args[0], quota, &changed, &e) < 0)
        return report_fail(o, &e);
    char size[32];
    if (!changed) {
        printf("%s has %s%s already; nothing changed\n", o->args[0],
               quota ? "the quota " : "no quota",
               quota ? size_text(quota, size, sizeof(size)) : "");
        return 0;
    }
    if (quota)
        printf("set the quota of %s to %s\n", o->args[0], size_text(quota, size, sizeof(size)));
    else
        printf("removed the quota of %s\n", o->args[0]);
    rewrite_maildirsize(o, c, quota);
    remind_reload();
    return 0;
}

static const struct subcommand subcommands[] = {
    {"add", 2, -1, true, OPT_QUOTA, "ADDR MEMBER...", run_add},
    {"del", 1, 1, true, 0, "ADDR", run_del},
    {"members", 1, 1, false, 0, "ADDR", run_members},
    {"add-member", 2, -1, true, 0, "ADDR MEMBER...", run_add_member},
    {"del-member", 2, -1, true, 0, "ADDR MEMBER...", run_del_member},
    {"quota", 2, 2, true, 0, "ADDR SIZE|none", run_quota},
    {"list", 0, 1, false, OPT_JSON, "[NAME]", mbox_list},
    {"show", 2, 2, false, 0, "NAME ID", mbox_show},
    {"check", 0, -1, true, 0, "[NAME...]", mbox_check},
};

/* The action's admin record: its operands (addresses, members, a size) and --quota. */
static void record(const struct mbox_opts *o, const struct conf *c, int status)
{
    const char **args = calloc((size_t)o->nargs + 2, sizeof(*args));
    size_t n = 0;
    for (int i = 0; args && i < o->nargs; i++)
        args[n++] = o->args[i];
    if (args && o->quota) {
        args[n++] = "--quota";
        args[n++] = o->quota;
    }
    char command[32], text[64];
    snprintf(command, sizeof(command), "mailbox %s", o->sub);
    /* out of memory: the record without args */
    cli_audit_admin(c, command, args, n, cli_admin_result(status, o->refusal, text, sizeof(text)));
    free(args);
}

/* 0, 1 when --help was asked, or EX_USAGE. argv[0] is the subcommand. */
static int parse_args(int argc, char **argv, struct mbox_opts *o, unsigned *given)
{
    enum { O_QUOTA = 256, O_JSON };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"quota", required_argument, NULL, O_QUOTA},
        {"json", no_argument, NULL, O_JSON},
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
        case O_QUOTA:
            o->quota = optarg;
            *given |= OPT_QUOTA;
            break;
        case O_JSON:
            o->json = true;
            *given |= OPT_JSON;
            break;
        default:
            return cli_option_error("mailbox", o->sub, ch, argv[optind - 1]);
        }
    }
    o->args = argv + optind;
    o->nargs = argc - optind;
    return 0;
}

int cli_mailbox(int argc, char **argv)
{
    int r;
    const struct subcommand *sc =
        cli_subcommand(argc, argv, "mailbox", usage, subcommands,
                       sizeof(subcommands) / sizeof(subcommands[0]), sizeof(subcommands[0]), &r);
    if (!sc)
        return r;
    struct mbox_opts o = {.sub = sc->name};
    unsigned given = 0;
    r = parse_args(argc - 1, argv + 1, &o, &given);
    if (r == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (r || (r = cli_options_allowed("mailbox", sc->name, given, sc->allowed)))
        return r;
    if (o.nargs < sc->min || (sc->max >= 0 && o.nargs > sc->max)) {
        fprintf(stderr, "tern mailbox %s: give %s%s; see tern mailbox --help\n", sc->name,
                sc->operands, o.nargs < sc->min ? "" : ", nothing more");
        return EX_USAGE;
    }
    /* The first operand is an address everywhere but in check, where all are. */
    int naddr = strcmp(sc->name, "check") == 0 ? o.nargs : o.nargs > 0;
    char(*addrs)[TABLES_ADDR_MAX + 1] = calloc((size_t)naddr + 1, sizeof(*addrs));
    if (!addrs) {
        fprintf(stderr, "tern mailbox %s: out of memory\n", sc->name);
        return EX_OSERR;
    }
    for (int i = 0; i < naddr && r == 0; i++) {
        r = mbox_take_addr(sc->name, o.args[i], addrs[i]);
        o.args[i] = addrs[i];
    }
    struct conf *c = r ? NULL : cli_load_conf("mailbox", sc->name, &o.config, &r);
    char refusal[CLI_ADMIN_RESULT_MAX] = "";
    o.refusal = refusal;
    if (c) {
        r = sc->run(&o, c);
        if (sc->changes)
            record(&o, c, r);
        conf_unref(c);
    }
    free(addrs);
    return r;
}
