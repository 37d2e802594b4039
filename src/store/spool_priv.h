/* What store/spool_entry.c and store/spool_state.c share inside the store: the spool's path
 * names, reading a small file whole with a bound, and giving a file tern made as root to the
 * owner of DATA_DIR/spool. Not for use outside src/store/. */
#ifndef TERN_STORE_SPOOL_PRIV_H
#define TERN_STORE_SPOOL_PRIV_H

#include <jansson.h>
#include <stddef.h>

#include "store/spool.h"

#define SPOOL_WHO "spool"
#define SPOOL_ID_MAX 96      /* spool_entry.id, NUL included */
#define SPOOL_RCPTS_MAX 1000 /* recipients of one envelope, as spool.c writes them */
/* The largest envelope spool.c writes is 1000 recipients of 319 bytes, each byte escaped as
 * \u00XX: under 2 MB. Anything much bigger in queue/ is not ours and is not read into memory. */
#define SPOOL_ENV_FILE_MAX (4u << 20)

/* spool.c: fills e from a parsed envelope whose file is ID.env (the id inside must be the
 * file's own); e->rcpts is malloc'd even on failure (free it). -1 if anything is off. */
int spool_parse_env(json_t *root, const char *id, struct spool_entry *e);
/* qsort order of entries: oldest first, by queued time, then by id (seconds, microseconds,
 * pid, counter: each '-'-separated field compared as a number). */
int spool_cmp_entry(const void *a, const void *b);

/* DATA_DIR/spool[/SUB[/ID.EXT]] into out (sub NULL: the spool folder; ext NULL: the folder
 * SUB); EXT may have a suffix such as "state.XXXXXX". 0, or -1 (ENAMETOOLONG) with a reason. */
int spool_path(char *out, size_t outlen, const char *data_dir, const char *sub, const char *id,
               const char *ext, char *err, size_t errlen);

/* Reads the regular file at path (not following a symlink) whole into *buf (malloc'd, NUL
 * added; *len without it). A file over max bytes is refused with EFBIG. 0, or -1 with errno
 * (ENOENT kept, for callers to whom absence is an answer) and a reason. */
int spool_read_file(const char *path, size_t max, char **buf, size_t *len, char *err,
                    size_t errlen);

/* When running as root, gives fd (a file or folder tern just made at path) to the owner of
 * DATA_DIR/spool if that is not root, so ternd, running as its own user, can use it. 0, or -1
 * with errno and a reason. */
int spool_give_back(int fd, const char *data_dir, const char *path, char *err, size_t errlen);

#endif
