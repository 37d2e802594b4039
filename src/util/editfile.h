/* An admin-edited text file (the users file, the mailboxes file) changed in place safely while
 * ternd may be reading it and other admins may be editing it: resolve it (a symlink's target is
 * what changes, never the link), take NAME.lock beside it with a timeout, read it whole with its
 * mode and owner, let the caller build the new text and check it, write that to a temporary file
 * with the same mode and owner, flush, rename it over the original, flush the folder. Readers see
 * the old file or the new one, never half of one. The caller owns what the text means; this owns
 * the files. Reasons name the file by the caller's noun and configuration key. */
#ifndef TERN_UTIL_EDITFILE_H
#define TERN_UTIL_EDITFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define EDITFILE_MAX (64u << 20) /* a file past this is not one a person keeps */

/* A growable byte buffer, always NUL-terminated once anything was added. */
struct editfile_buf {
    char *p;
    size_t len, cap;
};
int editfile_buf_add(struct editfile_buf *b, const void *s, size_t n); /* 0, or -1: no memory */
int editfile_buf_str(struct editfile_buf *b, const char *s);

/* One line of a buffer, cut the way conf/'s loaders cut: [start, end) without its line end,
 * next where the following line starts, [lead, tail) without the blanks (and a CR) around it. */
struct editfile_line {
    size_t start, end, next;
    size_t lead, tail;
};
/* Blanks within a line, as the loaders skip them. */
bool editfile_is_blank(char c);
/* The next line from *pos on that holds something (not blank, not a '#' comment), moving *pos
 * past it; false at the end of the buffer. */
bool editfile_next_line(const struct editfile_buf *b, size_t *pos, struct editfile_line *l);

/* Which file, and how to speak of it. */
struct editfile {
    const char *path; /* as configured; may be relative or a symlink */
    const char *noun; /* "users file": reasons say "the users file" */
    const char *key;  /* "users": its key in tern.conf, for the hint */
    int lock_timeout_ms;
    bool optional; /* absent reads as empty and the first edit creates it (its folder must exist)
                    * with the mode and owner below; else absent is an error */
    mode_t mode;   /* of a file created new */
    uid_t uid;     /* owner of a file created new and of its lock; (uid_t)-1: whoever runs this */
    gid_t gid;
};

/* The caller's part of one edit. Each returns as documented, or -1 having written its own
 * reason where it keeps them (editfile_edit then fails with EDITFILE_CALLER). */
struct editfile_ops {
    /* Builds the new text into out from old (the whole file; empty when it does not exist
     * yet). path is the resolved file. 1: write out; 0: the file stays as it is. */
    int (*apply)(void *ctx, const char *path, const struct editfile_buf *old,
                 struct editfile_buf *out);
    /* Checks the would-be file tmp before it replaces path (NULL: no check). 0: go ahead. */
    int (*check)(void *ctx, const char *tmp, const char *path);
    void *ctx;
};

/* Why an edit failed. Callers map these to their own kinds (their CLI's exit status). */
enum editfile_fail {
    EDITFILE_OK,
    EDITFILE_IO,     /* cannot find, read, write, rename or flush; also out of memory */
    EDITFILE_LOCKED, /* another edit held the lock past lock_timeout_ms */
    EDITFILE_CALLER, /* apply or check said no: the reason is the caller's, err is untouched */
};

/* One whole edit: resolve, lock, read, apply, write, check, rename, flush, unlock. 0 (also when
 * apply left the file alone), or -1 with *fail set and, unless EDITFILE_CALLER, a reason in err.
 * The buffers are wiped before they are freed: the users file holds password hashes. */
int editfile_edit(const struct editfile *f, const struct editfile_ops *ops,
                  enum editfile_fail *fail, char *err, size_t errlen);

/* Writes len bytes to a new file DIR/.NAME.XXXXXX with mode, and owner uid/gid unless uid is
 * (uid_t)-1, flushed to disk; its path goes to tmp. 0, or -1 with a reason (nothing left
 * behind). `tern init` writes its first files with it too. */
int editfile_write_temp(const char *dir, const char *name, const void *content, size_t len,
                        mode_t mode, uid_t uid, gid_t gid, char *tmp, size_t tmplen, char *err,
                        size_t errlen);
/* Flushes a folder, so that a name just linked or renamed into it survives a crash. 0, or -1
 * with errno set. */
int editfile_sync_dir(const char *dir);

/* The reason a check gives when the would-be file would not load: "nothing changed: PATH would
 * no longer load:" and the loader's reasons msgs on the next lines, with tmp written as path
 * (the admin knows no temporary file), no line end at the end. Into out (outlen bytes). */
void editfile_invalid_reason(char *out, size_t outlen, const char *path, const char *tmp,
                             const char *msgs);

#endif
