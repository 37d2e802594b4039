/* Unit tests for one audit record and the key, without a log directory where none is needed:
 * hostile strings (newlines, quotes, NULs, escapes, invalid UTF-8, 5000 bytes) stay inside
 * one ASCII line and come back as written, bounded and valid; oversized records shrink
 * instead of failing; reserved keys and bad event names are refused; the parser refuses
 * every near-miss of the format; time stamps round-trip; the key evolves as SHA-256 and its
 * file format is strict; the streaming verifier gives the same verdict fed byte by byte. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "testfs.h"

#include <ftw.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "audit/key.h"
#include "audit/log.h"
#include "audit/record.h"
#include "audit/verify.h"

static const unsigned char zero_mac[AUDIT_MAC_LEN];
static const unsigned char key0[AUDIT_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

/* Formats one record as the writer would; returns its length with the newline. */
static size_t format(char *out, const char *event, json_t *fields, uint64_t seq)
{
    struct audit_record_meta m = {seq, 1714566896123456, 0, event};
    unsigned char mac[AUDIT_MAC_LEN];
    size_t len = 0;
    char err[256];
    int rc = audit_record_format(&m, fields, key0, zero_mac, out, AUDIT_LINE_MAX + 1, &len, mac,
                                 err, sizeof(err));
    json_decref(fields);
    if (rc != 0)
        fail_msg("format: %s", err);
    return len;
}

/* Checks the line is one line of printable ASCII ending in its only newline. */
static void assert_one_ascii_line(const char *line, size_t len)
{
    assert_true(len <= AUDIT_LINE_MAX);
    assert_int_equal(line[len - 1], '\n');
    for (size_t i = 0; i + 1 < len; i++)
        assert_true(line[i] >= 0x20 && line[i] < 0x7f);
}

static void test_hostile_strings(void **state)
{
    static char out[AUDIT_LINE_MAX + 1];
    static const char helo[] = "evil\r\n{\"seq\":1}\n\"quoted\"\\\x1b[31m\xe2\x80\xa8 \xff\xfe end";
    char big[5000];
    memset(big, 'A', sizeof(big));
    json_t *f = json_object();
    json_object_set_new(f, "helo", audit_strn(helo, sizeof(helo) - 1));
    json_object_set_new(f, "nul", audit_strn("a\0b", 3));
    json_object_set_new(f, "big", audit_strn(big, sizeof(big)));
    json_object_set_new(f, "none", audit_str(NULL));
    size_t len = format(out, "smtp.helo", f, 7);
    assert_one_ascii_line(out, len);
    assert_non_null(strstr(out, "\\u0000"));

    struct audit_record rec;
    char why[128];
    assert_int_equal(audit_record_parse(out, len - 1, &rec, true, why, sizeof(why)), 0);
    assert_int_equal(rec.seq, 7);
    assert_string_equal(rec.event, "smtp.helo");
    assert_string_equal(rec.ts, "2024-05-01T12:34:56.123456Z");
    assert_true(audit_record_mac_ok(&rec, out, key0, zero_mac));
    json_t *h = json_object_get(rec.obj, "helo");
    /* Every valid byte kept; the two invalid ones each became U+FFFD. */
    assert_string_equal(json_string_value(h),
                        "evil\r\n{\"seq\":1}\n\"quoted\"\\\x1b[31m\xe2\x80\xa8 "
                        "\xef\xbf\xbd\xef\xbf\xbd end");
    json_t *n = json_object_get(rec.obj, "nul");
    assert_int_equal(json_string_length(n), 3);
    assert_memory_equal(json_string_value(n), "a\0b", 3);
    const char *b = json_string_value(json_object_get(rec.obj, "big"));
    assert_int_equal(strspn(b, "A"), AUDIT_FIELD_MAX);
    assert_string_equal(b + AUDIT_FIELD_MAX, "...[+4000 bytes]");
    assert_true(json_is_null(json_object_get(rec.obj, "none")));
    audit_record_release(&rec);
}

/* A cut never splits a character. */
static void test_cut_at_character(void **state)
{
    char s[AUDIT_FIELD_MAX + 8];
    memset(s, 'x', sizeof(s));
    memcpy(s + AUDIT_FIELD_MAX - 1, "\xe2\x82\xac", 3); /* a euro sign across the limit */
    json_t *j = audit_strn(s, sizeof(s));
    const char *v = json_string_value(j);
    assert_int_equal(strspn(v, "x"), AUDIT_FIELD_MAX - 1);
    assert_string_equal(v + AUDIT_FIELD_MAX - 1, "...[+9 bytes]");
    json_decref(j);
}

static void test_oversize_records(void **state)
{
    static char out[AUDIT_LINE_MAX + 1];
    char val[AUDIT_FIELD_MAX];
    memset(val, 'v', sizeof(val));
    /* 30 strings of 1000 bytes: cut to 64 each. */
    json_t *f = json_object();
    for (int i = 0; i < 30; i++) {
        char k[24];
        snprintf(k, sizeof(k), "f%d", i);
        json_object_set_new(f, k, json_stringn(val, sizeof(val)));
    }
    size_t len = format(out, "big", f, 2);
    assert_one_ascii_line(out, len);
    assert_non_null(strstr(out, "\"f29\":\"vvvv"));
    assert_non_null(strstr(out, "...[+936 bytes]"));
    /* 2000 short fields: too many to keep at all. */
    f = json_object();
    for (int i = 0; i < 2000; i++) {
        char k[24];
        snprintf(k, sizeof(k), "field%d", i);
        json_object_set_new(f, k, json_string("0123456789"));
    }
    len = format(out, "huge", f, 3);
    assert_one_ascii_line(out, len);
    assert_non_null(strstr(out, "\"event\":\"huge\",\"fields_dropped\":"));
    /* A long array and deep nesting are bounded too. */
    f = json_object();
    json_t *arr = json_array(), *deep = json_array();
    for (int i = 0; i < 5000; i++)
        json_array_append_new(arr, json_integer(i));
    json_object_set_new(f, "rcpts", arr);
    json_t *inner = deep;
    for (int i = 0; i < 20; i++) {
        json_t *next = json_array();
        json_array_append_new(inner, next);
        inner = next;
    }
    json_object_set_new(f, "deep", deep);
    len = format(out, "arrays", f, 4);
    assert_one_ascii_line(out, len);
    assert_non_null(strstr(out, "\"...[+3976 more]\""));
    assert_non_null(strstr(out, "[nested too deep]"));
}

static void test_refusals(void **state)
{
    static char out[AUDIT_LINE_MAX + 1];
    struct audit_record_meta m = {1, 0, 0, "conn.open"};
    unsigned char mac[AUDIT_MAC_LEN];
    size_t len;
    char err[256];
    static const char *const reserved[] = {"seq", "ts", "epoch", "event", "mac"};
    for (size_t i = 0; i < 5; i++) {
        json_t *f = json_pack("{s:i}", reserved[i], 1);
        assert_int_equal(audit_record_format(&m, f, key0, zero_mac, out, sizeof(out), &len, mac,
                                             err, sizeof(err)),
                         -1);
        assert_non_null(strstr(err, reserved[i]));
        json_decref(f);
    }
    static const char *const names[] = {
        "",    "Conn", "conn open",
        "x\n", "é",    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        m.event = names[i];
        assert_false(audit_event_name_valid(names[i]));
        assert_int_equal(audit_record_format(&m, NULL, key0, zero_mac, out, sizeof(out), &len, mac,
                                             err, sizeof(err)),
                         -1);
    }
    m.event = "conn.open";
    json_t *arr = json_array();
    assert_int_equal(
        audit_record_format(&m, arr, key0, zero_mac, out, sizeof(out), &len, mac, err, sizeof(err)),
        -1);
    json_decref(arr);
}

/* Lines that are almost records. */
static void test_parse_refuses(void **state)
{
    static char out[AUDIT_LINE_MAX + 1];
    size_t len = format(out, "conn.open", json_pack("{s:s}", "ip", "192.0.2.1"), 5);
    out[--len] = '\0';
    const char *mac = strstr(out, ",\"mac\":\"") + 8;
    char hex[65];
    memcpy(hex, mac, 64);
    hex[64] = '\0';
    struct audit_record rec;
    assert_int_equal(audit_record_parse(out, len, &rec, false, NULL, 0), 0);
    char bad[AUDIT_LINE_MAX * 2];
    const char *near[] = {
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"seq\":6,"
        "\"mac\":\"@\"}",
        "{\"seq\":5,\"epoch\":0,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"event\":\"x\",\"mac\":\"@"
        "\"}",
        "{\"seq\":0,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":\"@"
        "\"}",
        "{\"seq\":5.0,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":"
        "\"@\"}",
        "{\"seq\":99999999999999999999999,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,"
        "\"event\":\"x\",\"mac\":\"@\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":9999999999,\"event\":\"x\","
        "\"mac\":\"@\"}",
        "{\"seq\":5,\"ts\":\"2024-13-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":\"@"
        "\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01 "
        "12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":\"@\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"X\",\"mac\":\"@"
        "\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\\u0000\","
        "\"mac\":\"@\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"a\":"
        "\"\xff\","
        "\"mac\":\"@\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":\"@"
        "\","
        "\"mac\":\"@\"}",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":\"@"
        "\" }",
        "{\"seq\":5,\"ts\":\"2024-05-01T12:34:56.123456Z\",\"epoch\":0,\"event\":\"x\",\"mac\":\"@"
        "\"}}",
        "[\"seq\",5,\"ts\",\"2024-05-01T12:34:56.123456Z\",\"epoch\",0,\"event\",\"x\",\"mac\":\"@"
        "\"}",
    };
    for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
        size_t n = 0;
        for (const char *t = near[i]; *t; t++) { /* each @ stands for the real mac */
            size_t add = *t == '@' ? 64 : 1;
            memcpy(bad + n, *t == '@' ? hex : t, add);
            n += add;
        }
        bad[n] = '\0';
        char why[160] = "";
        if (audit_record_parse(bad, n, &rec, false, why, sizeof(why)) != -1)
            fail_msg("accepted near-miss %zu: %s", i, bad);
        assert_true(why[0] != '\0');
    }
    /* An upper-case mac, a NUL inside, and a line too long. */
    memcpy(bad, out, len + 1);
    bad[len - 3] = 'A';
    assert_int_equal(audit_record_parse(bad, len, &rec, false, NULL, 0), -1);
    memcpy(bad, out, len + 1);
    bad[20] = '\0';
    assert_int_equal(audit_record_parse(bad, len, &rec, false, NULL, 0), -1);
    memset(bad, ' ', AUDIT_LINE_MAX);
    assert_int_equal(audit_record_parse(bad, AUDIT_LINE_MAX, &rec, false, NULL, 0), -1);
    /* And the mac is over the bytes: one changed byte that still parses fails it. */
    memcpy(bad, out, len + 1);
    *strstr(bad, "192.0.2.1") = '8';
    assert_int_equal(audit_record_parse(bad, len, &rec, false, NULL, 0), 0);
    assert_false(audit_record_mac_ok(&rec, bad, key0, zero_mac));
}

static void test_time_stamps(void **state)
{
    char ts[AUDIT_TS_LEN + 1];
    audit_format_ts(0, ts);
    assert_string_equal(ts, "1970-01-01T00:00:00.000000Z");
    audit_format_ts(1714566896123456, ts);
    assert_string_equal(ts, "2024-05-01T12:34:56.123456Z");
    assert_true(audit_ts_valid(ts));
    assert_int_equal(audit_ts_us(ts), 1714566896123456);
    assert_false(audit_ts_valid("2024-05-01T12:34:56.123456"));
    assert_false(audit_ts_valid("2024-05-01T24:34:56.123456Z"));
    assert_false(audit_ts_valid("2024-05-00T12:34:56.123456Z"));
}

static void test_key(void **state)
{
    unsigned char k[AUDIT_KEY_LEN] = {0};
    char hex[AUDIT_KEY_HEX_LEN + 1], id[AUDIT_KEY_ID_HEX_LEN + 1], id2[AUDIT_KEY_ID_HEX_LEN + 1];
    audit_key_id(k, id);
    audit_key_evolve(k);
    audit_hex(k, sizeof(k), hex);
    /* SHA-256 of 32 zero bytes. */
    assert_string_equal(hex, "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925");
    audit_key_id(k, id2);
    assert_int_equal(strlen(id), 16);
    assert_string_not_equal(id, id2);
    assert_int_equal(strncmp(id, hex, 16) == 0, 0); /* the id is not the next key */

    char dir[] = "/tmp/tern-audit-key-XXXXXX", path[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);
    assert_int_equal(audit_key_store(path, 42, k, 0600, err, sizeof(err)), 0);
    uint64_t e;
    unsigned char back[AUDIT_KEY_LEN];
    assert_int_equal(audit_key_load(path, &e, back, err, sizeof(err)), 0);
    assert_int_equal(e, 42);
    assert_memory_equal(back, k, sizeof(k));
#define HEX64 "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    static const char *const bad[] = {"",
                                      "42\n",
                                      "42 abc\n",
                                      ("x " HEX64 "\n"),
                                      ("42  " HEX64 "\n"),
                                      ("99999999999999999999999 " HEX64 "\n"),
                                      ("42 " HEX64 "\n\n")};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        FILE *fp = fopen(path, "w");
        fputs(bad[i], fp);
        fclose(fp);
        assert_int_equal(audit_key_load(path, &e, back, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "is not an audit key file"));
    }
    unlink(path);
    rmdir(dir);
}

/* The streaming verifier: the same verdict whatever the chunks, and garbage lines are
 * verdicts, not crashes. */
static void test_verifier_chunks(void **state)
{
    char dir[] = "/tmp/tern-audit-rec-XXXXXX", adir[64], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(adir, sizeof(adir), "%s/audit", dir);
    struct audit_opts o = {.dir = adir};
    struct audit_open_info info;
    struct audit *a = audit_open(&o, &info, err, sizeof(err));
    assert_non_null(a);
    for (int i = 0; i < 20; i++)
        assert_int_equal(audit_append(a, "auth.fail", json_pack("{s:s}", "user", "bob\n\"x\""),
                                      NULL, err, sizeof(err)),
                         0);
    assert_int_equal(audit_close(a, err, sizeof(err)), 0);
    unsigned char first[AUDIT_KEY_LEN];
    assert_int_equal(audit_unhex(info.first_key_hex, 64, first, sizeof(first)), 0);
    char path[96];
    snprintf(path, sizeof(path), "%s/audit.log", adir);
    FILE *fp = fopen(path, "r");
    static char data[1 << 16];
    size_t n = fread(data, 1, sizeof(data), fp);
    fclose(fp);

    struct audit_verify_opts vo = {.first_key = first};
    struct audit_verify_result r;
    struct audit_verifier *v = audit_verifier_new(&vo, &r);
    audit_verifier_begin_file(v, "mem");
    for (size_t i = 0; i < n; i++)
        audit_verifier_feed(v, data + i, 1);
    audit_verifier_end_file(v);
    assert_int_equal(audit_verifier_finish(v), AUDIT_INTACT);
    assert_int_equal(r.records, 21);
    assert_true(r.macs_all);

    static const struct {
        const char *s;
        size_t len;
    } junk[] = {{"\n", 1},   {"\r\n", 2},           {"null\n", 5},
                {"{}\n", 3}, {"{\"seq\":2}\n", 10}, {"\x00\x01\x02\n", 4}};
    size_t first_line = (size_t)(strchr(data, '\n') - data) + 1;
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        v = audit_verifier_new(&vo, &r);
        audit_verifier_begin_file(v, "mem");
        audit_verifier_feed(v, data, first_line);
        audit_verifier_feed(v, junk[i].s, junk[i].len);
        audit_verifier_end_file(v);
        assert_int_equal(audit_verifier_finish(v), AUDIT_EDITED);
        assert_int_equal(r.line, 2);
    }
    /* One line of a megabyte with no newline. */
    v = audit_verifier_new(&vo, &r);
    audit_verifier_begin_file(v, "mem");
    static char big[1 << 20];
    memset(big, '{', sizeof(big));
    audit_verifier_feed(v, big, sizeof(big));
    audit_verifier_end_file(v);
    assert_int_equal(audit_verifier_finish(v), AUDIT_TRUNCATED);
    testfs_rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_strings),
        cmocka_unit_test(test_cut_at_character),
        cmocka_unit_test(test_oversize_records),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_time_stamps),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_verifier_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
