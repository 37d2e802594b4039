/* Durable Maildir delivery. A message is written once into tmp/ of the first recipient's Maildir,
 * then (in maildir_commit, on a worker thread) fsync'd, hard-linked into new/ of every recipient
 * Maildir (copied where link fails across filesystems), each new/ directory fsync'd, and the tmp
 * file removed. Either every recipient has the message or none does. */
#ifndef TERN_STORE_MAILDIR_H
#define TERN_STORE_MAILDIR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define MAILDIR_ID_MAX 96

struct maildir_msg;

/* Creates (if needed) DATA_DIR/mail/DOMAIN/USER/{tmp,new,cur} for each mailbox "user@domain"
 * and opens a unique tmp file in the first. The id (also the base of the Maildir file name,
 * "SECONDS.MUSECPpidQcount.HOST") is written to id. NULL with a reason in err on failure.
 * Runs on the loop: only mkdir/open, no fsync. */
struct maildir_msg *maildir_begin(const char *data_dir, const char *hostname,
                                  const char *const *mailboxes, size_t n, char *id, size_t idlen,
                                  char *err, size_t errlen);

/* Before commit: narrows the recipients to those of the n mailboxes given (a subset of those
 * given to begin; SOML drops the users whose terminal took the message). The tmp file stays
 * where it is. Returns how many Maildirs are left; with none, commit must not be called. */
size_t maildir_keep(struct maildir_msg *m, const char *const *mailboxes, size_t n);

/* A fresh unique id of the same shape as a message's (for a message stored nowhere: SEND). */
void maildir_new_id(char *out, size_t outlen, const char *hostname);

/* Appends bytes (page cache only). 0, or -1 with a reason (the message is then doomed: commit
 * will fail). */
int maildir_append(struct maildir_msg *m, const void *buf, size_t len, char *err, size_t errlen);

/* Worker thread: fsync, link into every new/ as NAME,S=SIZE, fsync each new/, unlink tmp.
 * 0 on success; -1 with a reason, and then no copy is left anywhere. */
int maildir_commit(struct maildir_msg *m, char *err, size_t errlen);

/* Discards the message (unlinks tmp) and frees. Safe after commit (then only frees). */
void maildir_free(struct maildir_msg *m);

/* Bytes appended so far. */
size_t maildir_size(const struct maildir_msg *m);

/* Maildir path for "user@domain" under data_dir: DATA_DIR/mail/DOMAIN/USER. */
int maildir_path(const char *data_dir, const char *mailbox, char *out, size_t outlen);

/* Creates (if needed) the Maildir of "user@domain" with tmp/ new/ cur/, its path in out. 0, or
 * -1 with a reason. */
int maildir_make(const char *data_dir, const char *mailbox, char *out, size_t outlen, char *err,
                 size_t errlen);

#endif
