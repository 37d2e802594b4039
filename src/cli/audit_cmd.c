/* `tern audit`: verifies the audit log (src/audit/) and reads it. Parsing the command line,
 * finding the files (the series in DATA_DIR/audit, or the FILEs named), verify and rotate
 * are here; show and trace are in audit_show.c.
 *
 * rotate: only the process holding audit/lock may write the log, and a running ternd holds
 * it. There is no pid file to find ternd by, and a signal it does not handle would kill it,
 * so rotate never signals: with the lock free it opens the log itself (audit_open, as ternd
 * would) and rotates; with the lock held it names the holder (from /proc/locks when it can)
 * and tells the admin to send it SIGUSR1, on which ternd (once it writes the log) rotates.
 * Files made here as root are given to the owner of audit/, so that ternd can go on. */
#include "cli/audit.h"
#include "cli/audit_admin.h"
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "audit/log.h"
#include "audit/verify.h"
#include "conf/config.h"

#define ERRBUF_SIZE (256 * 1024)

static const char usage[] =
    "usage: tern audit verify [--key FILE] [--head FILE | --no-head] [FILE...] [-c CONFIG]\n"
    "       tern audit show [--user ADDR] [--ip IP] [--session ID] [--message-id ID]\n"
    "                       [--event NAME[,NAME...]] [--since T] [--until T] [--json]\n"
    "                       [FILE...] [-c CONFIG]\n"
    "       tern audit trace MESSAGE-ID [--json] [FILE...] [-c CONFIG]\n"
    "       tern audit rotate [-c CONFIG]\n"
    "\n"
    "The audit log is DATA_DIR/audit/audit.log and the files rotated from it\n"
    "(audit.log.000001, ...): one record a line for each thing ternd and tern did,\n"
    "each with a MAC that chains it to the record before, under a key that evolves\n"
    "(by default every 15 minutes). Without FILE, the whole series is read.\n"
    "\n"
    "  verify    check the chain: exit 0 and a summary when it is intact; exit 1\n"
    "            naming the first bad FILE:LINE and what was done there: edited,\n"
    "            deleted, inserted, reordered, truncated (or: wrong key)\n"
    "  show      the records that pass every filter given, as a table\n"
    "  trace     the story of a message: each session that sent MESSAGE-ID (a\n"
    "            Message-ID, <> optional, or the queue id of the 250 reply), every\n"
    "            record from its connect to its disconnect\n"
    "  rotate    start a new audit.log, chained from the current one; when ternd\n"
    "            has the log open it must do it: kill -USR1 $(pidof ternd)\n"
    "\n"
    "  -c, --config FILE   configuration naming data_dir (default $TERN_CONF, else\n"
    "                      /etc/tern/tern.conf if it exists, else ./var/tern.conf);\n"
    "                      read only when no FILE is given\n"
    "  --key FILE          verify with the first key: the first-key file made with\n"
    "                      the log (\"0 HEXKEY\"), which the admin keeps off the\n"
    "                      machine; it checks every record's MAC. Without it the\n"
    "                      current key DATA_DIR/audit/key checks the records of its\n"
    "                      own epoch on, and older ones for order and links only\n"
    "  --head FILE         the head file that finds a cut end (default\n"
    "                      DATA_DIR/audit/head)\n"
    "  --no-head           do not compare the end with a head file\n"
    "  --user ADDR         sessions in which ADDR authenticated or sent (the user or\n"
    "                      auth_user field, in any case)\n"
    "  --ip IP             sessions from IP (the ip field)\n"
    "  --message-id ID     sessions that sent Message-ID ID or queue id ID\n"
    "  --session ID        the records of session ID\n"
    "  --event NAMES       records of these kinds: connect, helo, starttls, auth, mail,\n"
    "                      rcpt, data, message, disconnect, limit, admin, start, ...\n"
    "  --since T, --until T\n"
    "                      records from / until T: 2026-11-25T10:00:00Z (RFC 3339),\n"
    "                      2026-11-25 (the whole day, UTC), or -30m, -2h, -1d, -1w ago\n"
    "  --json              the records as stored, one a line, byte for byte\n"
    "\n"
    "--user, --ip and --message-id pick whole sessions: every record of a session in\n"
    "which a record matched is shown (a record outside any session must match\n"
    "itself). Every filter must hold. show and trace do not verify: run verify.\n"
    "With FILE... the key and head are those beside the last FILE when it is named\n"
    "audit.log, and none otherwise (then verify says what it could not check).\n"
    "\n"
    "Exit status: 0 done (verify: intact), 1 verify found the log changed or the key\n"
    "wrong, or trace found no such message, 64 bad arguments, 65 bad data (a key file\n"
    "that is not a first key, a time that is not one), 66 no log, or a file, key or\n"
    "head that cannot be read, 71 out of memory, 73 rotate could not write the log,\n"
    "74 a read or write error, 75 ternd has the log open (rotate), 77 no permission\n"
    "to write the log, 78 bad configuration.\n";

enum opt_bit {
    OPT_KEY = 1 << 0,
    OPT_HEAD = 1 << 1, /* --head, --no-head */
    OPT_FILTER = 1 << 2,
    OPT_JSON = 1 << 3,
};

struct subcommand {
    const char *name;
    unsigned allowed;
    int min, max; /* operands; max -1: no limit */
    int (*run)(struct acli *o);
};

/* A library reason without its "audit: " prefix: ours says tern audit SUB already. */
static const char *bare(const char *err)
{
    return strncmp(err, "audit: ", 7) == 0 ? err + 7 : err;
}

/* ---- verify --------------------------------------------------------------------------------- */

/* Reads --key: the first key, epoch 0. 0, or an exit status with the reason printed. */
static int load_first_key(const struct acli *o, unsigned char key[AUDIT_KEY_LEN])
{
    char err[PATH_MAX + 256];
    uint64_t epoch = 0;
    int fd = open(o->key, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr,
                "tern audit verify: cannot read the key file %s: %s; --key takes the first-key "
                "file made with the log\n",
                o->key, strerror(errno));
        return EX_NOINPUT;
    }
    close(fd);
    if (audit_key_load(o->key, &epoch, key, err, sizeof(err)) != 0) {
        fprintf(stderr,
                "tern audit verify: %s; --key takes the first-key file made with the log, as "
                "it was written\n",
                bare(err));
        return EX_DATAERR;
    }
    if (epoch != 0) {
        OPENSSL_cleanse(key, AUDIT_KEY_LEN);
        fprintf(stderr,
                "tern audit verify: %s is a key of epoch %llu, not the first key (epoch 0): it "
                "is a copy of audit/key, not first-key; give the first-key file made with the "
                "log, or leave out --key to verify with the current key\n",
                o->key, (unsigned long long)epoch);
        return EX_DATAERR;
    }
    return 0;
}

/* Can path be opened for reading? 0, or EX_NOINPUT with the reason printed. */
static int readable(const char *what, const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    int e = errno;
    fprintf(stderr, "tern audit verify: cannot read %s%s: %s%s\n", what, path, strerror(e),
            e == EACCES ? "; run as root or as the user ternd runs as" : "");
    return EX_NOINPUT;
}

static void print_span(const struct audit_verify_result *r)
{
    printf("  seq %llu to %llu, %s to %s, epochs %llu to %llu\n", (unsigned long long)r->first_seq,
           (unsigned long long)r->last_seq, r->first_ts, r->last_ts,
           (unsigned long long)r->first_epoch, (unsigned long long)r->last_epoch);
}

static void print_fault(const struct acli *o, const struct audit_verify_result *r,
                        const char *keyname)
{
    const char *file = r->file ? r->file : "-";
    if (r->line)
        printf("%s:%llu: %s: %s\n", file, (unsigned long long)r->line,
               audit_verdict_name(r->verdict), r->why);
    else
        printf("%s: %s: %s\n", file, audit_verdict_name(r->verdict), r->why);
    if (r->records) {
        printf("before it: %llu record%s passed\n", (unsigned long long)r->records,
               r->records == 1 ? "" : "s");
        print_span(r);
        printf("  proven for those: %s\n", r->scope);
    }
    switch (r->verdict) {
    case AUDIT_WRONG_KEY:
        printf("what to do: make sure %s is this log's key; --key takes the first-key file "
               "made when this log was created (a copy of another log's, or a retyped one with "
               "a mistake, gives this)\n",
               keyname);
        break;
    case AUDIT_TRUNCATED:
        printf("what to do: records were cut from the end of the log (a crash tears at most "
               "a last line that was never synced, and ternd cuts that itself when it starts); "
               "copy the files as they are, as evidence, and compare with the syslog copy if "
               "there is one\n");
        break;
    default:
        printf("what to do: the log was changed after it was written; copy the files as they "
               "are, as evidence, before anything else writes to them, and compare with the "
               "syslog copy if there is one\n");
        break;
    }
}

static int run_verify(struct acli *o)
{
    unsigned char first[AUDIT_KEY_LEN];
    struct audit_verify_opts vo = {0};
    char keypath[PATH_MAX + 32], headpath[PATH_MAX + 32], firstpath[PATH_MAX + 32];
    int rc = 0;
    if (o->key) {
        if ((rc = load_first_key(o, first)) != 0)
            return rc;
        vo.first_key = first;
    } else if (o->dir[0]) {
        snprintf(keypath, sizeof(keypath), "%s/%s", o->dir, AUDIT_KEY_NAME);
        if (access(keypath, F_OK) == 0) {
            vo.key_file = keypath;
        } else if (o->series) {
            fprintf(stderr,
                    "tern audit verify: the current key %s is missing: without a key no MAC "
                    "can be checked; give the first key with --key FILE (it checks every "
                    "record)\n",
                    keypath);
            return EX_NOINPUT;
        }
    }
    if (o->head) {
        vo.head_file = o->head;
    } else if (!o->no_head && o->dir[0]) {
        snprintf(headpath, sizeof(headpath), "%s/%s", o->dir, AUDIT_HEAD_NAME);
        if (access(headpath, F_OK) == 0)
            vo.head_file = headpath;
        else
            fprintf(stderr,
                    "tern audit verify: warning: %s is missing, so a cut end cannot be "
                    "noticed; ternd writes it again as it goes on\n",
                    headpath);
    }
    if (vo.key_file)
        rc = readable("the key file ", vo.key_file);
    if (rc == 0 && vo.head_file)
        rc = readable("the head file ", vo.head_file);
    for (size_t i = 0; rc == 0 && i < o->nfiles; i++)
        rc = readable("", o->files[i]);
    if (rc) {
        OPENSSL_cleanse(first, sizeof(first));
        return rc;
    }

    if (o->dir[0]) {
        snprintf(firstpath, sizeof(firstpath), "%s/%s", o->dir, AUDIT_FIRST_KEY_NAME);
        if (access(firstpath, F_OK) == 0)
            fprintf(stderr,
                    "tern audit verify: warning: the first key %s is still on this machine: "
                    "whoever takes the machine can rewrite the whole log with it unnoticed; "
                    "move it off (keep it offline) and give it with --key to verify\n",
                    firstpath);
    }
    struct audit_verify_result r;
    audit_verify((const char *const *)o->files, o->nfiles, &vo, &r);
    OPENSSL_cleanse(first, sizeof(first));
    const char *keyname = o->key ? o->key : vo.key_file ? vo.key_file : "the key";
    switch (r.verdict) {
    case AUDIT_INTACT:
        printf("intact: %llu record%s in %zu file%s\n", (unsigned long long)r.records,
               r.records == 1 ? "" : "s", o->nfiles, o->nfiles == 1 ? "" : "s");
        if (r.records)
            print_span(&r);
        if (o->key)
            printf("  key: the first key %s\n", o->key);
        else if (vo.key_file)
            printf("  key: the current key %s\n", vo.key_file);
        else
            printf("  key: none (give --key FILE, the first key, to check MACs)\n");
        printf("  proven: %s\n", r.scope);
        if (r.head_checked)
            printf("  end: the log reaches the record %s names: nothing was cut from it\n",
                   vo.head_file);
        break;
    case AUDIT_UNREADABLE: {
        fprintf(stderr, "tern audit verify: %s\n", bare(r.why));
        bool input = r.file && ((vo.key_file && strcmp(r.file, vo.key_file) == 0) ||
                                (vo.head_file && strcmp(r.file, vo.head_file) == 0));
        rc = input || r.line == 0 ? EX_NOINPUT : EX_IOERR;
        break;
    }
    default:
        print_fault(o, &r, keyname);
        rc = 1;
        break;
    }
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tern audit verify: writing standard output: %s\n", strerror(errno));
        return EX_IOERR;
    }
    return rc;
}

/* ---- rotate --------------------------------------------------------------------------------- */

/* The pid holding an flock on the file open at fd, from /proc/locks; 0 when it does not say. */
static pid_t flock_holder(int fd)
{
    struct stat st;
    FILE *f = fstat(fd, &st) == 0 ? fopen("/proc/locks", "re") : NULL;
    if (!f)
        return 0;
    char line[256];
    pid_t found = 0;
    while (!found && fgets(line, sizeof(line), f)) {
        char type[16];
        int pid;
        unsigned maj, min;
        unsigned long ino;
        if (sscanf(line, "%*[^:]: %15s %*s %*s %d %x:%x:%lu", type, &pid, &maj, &min, &ino) == 5 &&
            strcmp(type, "FLOCK") == 0 && maj == major(st.st_dev) && min == minor(st.st_dev) &&
            ino == (unsigned long)st.st_ino && pid != getpid())
            found = pid;
    }
    fclose(f);
    return found;
}

/* Does another process hold DIR/lock? If so, says who and what to do. */
static bool report_if_held(const struct acli *o)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%s", o->dir, AUDIT_LOCK_NAME);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return false; /* no lock file: no writer ever; or unreadable, and audit_open says */
    if (flock(fd, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
        close(fd);
        return false;
    }
    pid_t pid = flock_holder(fd);
    close(fd);
    char comm[64] = "";
    char cpath[64];
    snprintf(cpath, sizeof(cpath), "/proc/%d/comm", (int)pid);
    FILE *f = pid ? fopen(cpath, "re") : NULL;
    if (f) {
        if (!fgets(comm, sizeof(comm), f))
            comm[0] = '\0';
        comm[strcspn(comm, "\n")] = '\0';
        fclose(f);
    }
    if (pid && strcmp(comm, "ternd") == 0)
        fprintf(stderr,
                "tern audit rotate: ternd (pid %d) has the audit log in %s open, and only the "
                "writer may rotate it; ask it to: kill -USR1 %d\n",
                (int)pid, o->dir, (int)pid);
    else if (pid)
        fprintf(stderr,
                "tern audit rotate: process %d has the audit log in %s open (not ternd: another "
                "tern command?); wait for it to finish and try again\n",
                (int)pid, o->dir);
    else
        fprintf(stderr,
                "tern audit rotate: another process has the audit log in %s open (ternd?); if "
                "it is ternd, ask it to rotate: kill -USR1 $(pidof ternd)\n",
                o->dir);
    return true;
}

/* Made by root, the files must still be ternd's: give them to the folder's owner. */
static void give_back(const struct acli *o, const struct stat *dst)
{
    char err[PATH_MAX + 256];
    if (cli_audit_give_back(o->dir, dst->st_uid, dst->st_gid, err, sizeof(err)) != 0)
        fprintf(stderr, "tern audit rotate: warning: %s before ternd starts\n", err);
}

static int run_rotate(struct acli *o)
{
    struct stat dst;
    if (o->nfiles == 0 && stat(o->dir, &dst) == 0 && access(o->dir, R_OK | X_OK) != 0) {
        fprintf(stderr,
                "tern audit rotate: cannot read %s: %s; run as root or as the user ternd "
                "runs as\n",
                o->dir, strerror(errno));
        return EX_NOPERM;
    }
    if (stat(o->dir, &dst) != 0 || o->nfiles == 0) {
        fprintf(stderr, "tern audit rotate: there is no audit log in %s; nothing to rotate\n",
                o->dir);
        return EX_NOINPUT;
    }
    if (access(o->dir, W_OK) != 0) {
        fprintf(stderr,
                "tern audit rotate: cannot write %s: %s; run as root or as the user ternd runs "
                "as\n",
                o->dir, strerror(errno));
        return EX_NOPERM;
    }
    if (report_if_held(o))
        return EX_TEMPFAIL;
    char err[PATH_MAX + 512];
    struct audit_opts ao = {.dir = o->dir};
    struct audit *a = audit_open(&ao, NULL, err, sizeof(err));
    if (!a) {
        if (report_if_held(o)) /* ternd started meanwhile */
            return EX_TEMPFAIL;
        fprintf(stderr, "tern audit rotate: %s\n", bare(err));
        return EX_DATAERR;
    }
    int rc = 0;
    if (audit_rotate(a, err, sizeof(err)) != 0) {
        fprintf(stderr, "tern audit rotate: %s\n", bare(err));
        rc = EX_CANTCREAT;
    }
    struct audit_stats st;
    audit_get_stats(a, &st);
    if (audit_close(a, err, sizeof(err)) != 0 && rc == 0) {
        fprintf(stderr, "tern audit rotate: %s\n", bare(err));
        rc = EX_CANTCREAT;
    }
    give_back(o, &dst);
    if (rc)
        return rc;
    char **files;
    size_t n;
    if (audit_series(o->dir, &files, &n, err, sizeof(err)) == 0 && n >= 2) {
        const char *old = strrchr(files[n - 2], '/');
        printf("rotated: %s/%s is now %s; the new %s/%s starts with record %llu, chained from "
               "it\n",
               o->dir, AUDIT_LOG_NAME, old ? old + 1 : files[n - 2], o->dir, AUDIT_LOG_NAME,
               (unsigned long long)st.seq);
        audit_series_free(files, n);
    } else {
        printf("rotated %s/%s\n", o->dir, AUDIT_LOG_NAME);
    }
    return 0;
}

/* ---- the command line ----------------------------------------------------------------------- */

static const struct subcommand subcommands[] = {
    {"verify", OPT_KEY | OPT_HEAD, 0, -1, run_verify},
    {"show", OPT_FILTER | OPT_JSON, 0, -1, acli_show},
    {"trace", OPT_JSON, 1, -1, acli_trace},
    {"rotate", 0, 0, 0, run_rotate},
};

/* 0, 1 when --help was asked, or EX_USAGE. argv[0] is the subcommand. */
static int parse_args(int argc, char **argv, struct acli *o, unsigned *given, int *first_arg)
{
    enum {
        O_KEY = 256,
        O_HEAD,
        O_NOHEAD,
        O_USER,
        O_IP,
        O_SESSION,
        O_MSGID,
        O_EVENT,
        O_SINCE,
        O_UNTIL,
        O_JSON
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, O_KEY},
        {"head", required_argument, NULL, O_HEAD},
        {"no-head", no_argument, NULL, O_NOHEAD},
        {"user", required_argument, NULL, O_USER},
        {"ip", required_argument, NULL, O_IP},
        {"session", required_argument, NULL, O_SESSION},
        {"message-id", required_argument, NULL, O_MSGID},
        {"event", required_argument, NULL, O_EVENT},
        {"since", required_argument, NULL, O_SINCE},
        {"until", required_argument, NULL, O_UNTIL},
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
        case O_KEY:
            o->key = optarg;
            *given |= OPT_KEY;
            break;
        case O_HEAD:
            o->head = optarg;
            *given |= OPT_HEAD;
            break;
        case O_NOHEAD:
            o->no_head = true;
            *given |= OPT_HEAD;
            break;
        case O_USER:
        case O_IP:
        case O_SESSION:
        case O_MSGID:
        case O_EVENT:
        case O_SINCE:
        case O_UNTIL: {
            const char **slot[] = {&o->user,  &o->ip,    &o->session, &o->msgid,
                                   &o->event, &o->since, &o->until};
            *slot[ch - O_USER] = optarg;
            *given |= OPT_FILTER;
            break;
        }
        case O_JSON:
            o->json = true;
            *given |= OPT_JSON;
            break;
        default:
            return cli_option_error("audit", o->sub, ch, argv[optind - 1]);
        }
    }
    *first_arg = optind;
    return 0;
}

/* Checks the filters' values. 0, or an exit status with the reason printed. */
static int check_filters(struct acli *o)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t now_us = (int64_t)now.tv_sec * 1000000 + now.tv_nsec / 1000;
    o->since_us = INT64_MIN;
    o->until_us = INT64_MAX;
    const char *bad = NULL;
    if (o->since && acli_parse_time(o->since, false, now_us, &o->since_us) != 0)
        bad = o->since;
    else if (o->until && acli_parse_time(o->until, true, now_us, &o->until_us) != 0)
        bad = o->until;
    if (bad) {
        fprintf(stderr,
                "tern audit %s: '%s' is not a time; write 2026-11-25T10:00:00Z, 2026-11-25, or "
                "how long ago as -30m, -2h, -1d or -1w\n",
                o->sub, bad);
        return EX_DATAERR;
    }
    if (o->since_us > o->until_us) {
        fprintf(stderr, "tern audit %s: --since %s is after --until %s: nothing can match\n",
                o->sub, o->since, o->until);
        return EX_USAGE;
    }
    if (o->event && (!o->event[0] || strspn(o->event, "abcdefghijklmnopqrstuvwxyz0123456789_.,") !=
                                         strlen(o->event))) {
        fprintf(stderr,
                "tern audit %s: '%s' is not a list of event names (lowercase, separated by "
                "commas, like auth,message)\n",
                o->sub, o->event);
        return EX_USAGE;
    }
    return 0;
}

/* The files to read: FILE operands, or the series in DATA_DIR/audit found through the
 * configuration. 0, or an exit status with the reason printed. */
static int find_files(struct acli *o, char **args, int nargs)
{
    if (nargs > 0) {
        o->files = args;
        o->nfiles = (size_t)nargs;
        /* A log's folder, when the last file is its current file: key and head are there. */
        const char *last = args[nargs - 1], *slash = strrchr(last, '/');
        if (strcmp(slash ? slash + 1 : last, AUDIT_LOG_NAME) == 0) {
            if (!slash)
                snprintf(o->dir, sizeof(o->dir), ".");
            else if (slash == last)
                snprintf(o->dir, sizeof(o->dir), "/");
            else
                snprintf(o->dir, sizeof(o->dir), "%.*s", (int)(slash - last), last);
        }
        return 0;
    }
    int status;
    struct conf *c = cli_load_conf("audit", o->sub, &o->config, &status);
    if (!c)
        return status;
    snprintf(o->dir, sizeof(o->dir), "%s/audit", c->data_dir);
    conf_unref(c);
    char *err = malloc(ERRBUF_SIZE);
    if (!err) {
        fprintf(stderr, "tern audit %s: out of memory\n", o->sub);
        return EX_OSERR;
    }
    int rc = 0;
    if (audit_series(o->dir, &o->files, &o->nfiles, err, ERRBUF_SIZE) == 0) {
        o->series = true;
    } else if (strcmp(o->sub, "rotate") != 0) { /* rotate says it its own way */
        struct stat st;
        if (stat(o->dir, &st) != 0 && errno == ENOENT) {
            fprintf(stderr,
                    "tern audit %s: there is no audit log: %s does not exist; ternd makes it "
                    "when it runs with the audit log on (or name the files to read)\n",
                    o->sub, o->dir);
            free(err);
            return EX_NOINPUT;
        }
        bool denied = access(o->dir, R_OK | X_OK) != 0 && errno == EACCES;
        fprintf(stderr, "tern audit %s: %s; %s\n", o->sub, bare(err),
                denied ? "run as root or as the user ternd runs as"
                       : "ternd writes the log there once it runs with the audit log on, or "
                         "name the files to read");
        rc = EX_NOINPUT;
    }
    free(err);
    return rc;
}

int cli_audit(int argc, char **argv)
{
    int r;
    const struct subcommand *sc =
        cli_subcommand(argc, argv, "audit", usage, subcommands,
                       sizeof(subcommands) / sizeof(subcommands[0]), sizeof(subcommands[0]), &r);
    if (!sc)
        return r;
    struct acli o = {.sub = sc->name};
    unsigned given = 0;
    int first = 0;
    r = parse_args(argc - 1, argv + 1, &o, &given, &first);
    if (r == 1) {
        fputs(usage, stdout);
        return 0;
    }
    if (r || (r = cli_options_allowed("audit", sc->name, given, sc->allowed)))
        return r;
    char **args = argv + 1 + first;
    int nargs = argc - 1 - first;
    if (nargs < sc->min || (sc->max >= 0 && nargs > sc->max)) {
        fprintf(stderr, "tern audit %s: %s; see tern audit --help\n", sc->name,
                sc->max == 0 ? "takes no operands, only -c CONFIG"
                             : "which message? give its Message-ID or queue id");
        return EX_USAGE;
    }
    if (o.head && o.no_head) {
        fprintf(stderr, "tern audit verify: give --head FILE or --no-head, not both\n");
        return EX_USAGE;
    }
    if (sc->run == acli_trace) {
        o.msgid = args[0];
        args++;
        nargs--;
    }
    if ((r = check_filters(&o)) != 0 || (r = find_files(&o, args, nargs)) != 0)
        return r;
    r = sc->run(&o);
    if (o.series)
        audit_series_free(o.files, o.nfiles);
    return r;
}
