/* File helpers the unit tests share: a scratch folder removed with everything in it (read-only
 * folders included), a file written from a string, a file read whole. Include after cmocka.h:
 * failures are cmocka assertions. */
#ifndef TERN_TESTS_TESTFS_H
#define TERN_TESTS_TESTFS_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int testfs_rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        chmod(path, 0700); /* a test that made a folder read-only can still clean it up */
    return remove(path);
}

/* rm -rf dir. */
static inline void testfs_rm_tree(const char *dir)
{
    nftw(dir, testfs_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Writes text to path, replacing it. */
static inline void testfs_put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* The whole file, NUL-terminated (malloc'd); *len, when given, without the NUL. */
static inline char *testfs_get(const char *path, size_t *len)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    assert_true(f && fstat(fileno(f), &st) == 0);
    char *buf = malloc((size_t)st.st_size + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)st.st_size, f), (size_t)st.st_size);
    fclose(f);
    buf[st.st_size] = '\0';
    if (len)
        *len = (size_t)st.st_size;
    return buf;
}

/* The file holds exactly want. */
static inline void testfs_assert_file(const char *path, const char *want)
{
    char *got = testfs_get(path, NULL);
    assert_string_equal(got, want);
    free(got);
}

#endif
