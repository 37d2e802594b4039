/* File helpers the unit tests share: a scratch folder removed with everything in it (read-only
 * folders included), a file written from a string, a file read whole. Include after cmocka.h:
 * failures are cmocka assertions. */
#ifndef TERN_TESTS_TESTFS_H
#define TERN_TESTS_TESTFS_H

#include <ftw.h>
#include <stdarg.h>
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

/* Makes a fresh folder from tmpl (a mkdtemp pattern, copied into dir) and writes files into it:
 * pairs of name and text, ending with NULL. */
static inline void testfs_make_dir(char *dir, size_t cap, const char *tmpl, ...)
{
    assert_true(strlen(tmpl) < cap);
    strcpy(dir, tmpl);
    assert_non_null(mkdtemp(dir));
    va_list ap;
    va_start(ap, tmpl);
    const char *name;
    while ((name = va_arg(ap, const char *))) {
        const char *text = va_arg(ap, const char *);
        char path[4096];
        int n = snprintf(path, sizeof path, "%s/%s", dir, name);
        assert_true(n > 0 && (size_t)n < sizeof path);
        testfs_put(path, text);
    }
    va_end(ap);
}

/* dir/name into buf. */
static inline void testfs_path(char *buf, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

/* The file holds exactly want. */
static inline void testfs_assert_file(const char *path, const char *want)
{
    char *got = testfs_get(path, NULL);
    assert_string_equal(got, want);
    free(got);
}

#endif
