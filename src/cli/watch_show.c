/* How `tern watch` prints a terminal message, like write(1) prints what another user writes:
 * who, when, the subject, the first lines of the body. The message is the sender's bytes, as
 * hostile as any: every line goes through cli_put_safe_cols, which escapes what a terminal
 * would obey (C0 and C1 controls, DEL, bidi controls, NUL, bytes that are not UTF-8) and stops
 * at a column, so neither an escape sequence nor a megabyte-long line reaches the screen. */
#include "cli/watch.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

#include "cli/cli.h"

/* The end of the line that starts at i: the offset of its LF, or len. */
static size_t line_end(const char *t, size_t len, size_t i)
{
    const char *nl = memchr(t + i, '\n', len - i);
    return nl ? (size_t)(nl - t) : len;
}

/* The offset where the body starts: after the empty line that ends the header, or len. */
static size_t body_start(const char *t, size_t len)
{
    for (size_t i = 0; i < len;) {
        size_t e = line_end(t, len, i);
        if (e == i || (e == i + 1 && t[i] == '\r'))
            return e < len ? e + 1 : len;
        i = e + 1;
    }
    return len;
}

/* The Subject: field of the header t[0..hlen), unfolded, into out (at most cap - 1 octets);
 * false when there is none. */
static bool subject(const char *t, size_t hlen, char *out, size_t cap)
{
    size_t n = 0;
    bool in = false, found = false;
    for (size_t i = 0; i < hlen;) {
        size_t e = line_end(t, hlen, i), end = e;
        if (end > i && t[end - 1] == '\r')
            end--;
        bool cont = t[i] == ' ' || t[i] == '\t';
        if (!cont)
            in = false;
        size_t from = i;
        if (!found && !cont && end - i >= 8 && strncasecmp(t + i, "subject:", 8) == 0) {
            in = found = true;
            from = i + 8;
            while (from < end && (t[from] == ' ' || t[from] == '\t'))
                from++;
        }
        for (size_t k = from; in && k < end && n + 1 < cap; k++)
            out[n++] = t[k];
        i = e + 1;
    }
    out[n] = '\0';
    return found;
}

/* One line, cut at WATCH_SHOW_COLS columns (and said so). */
static void put_line(FILE *out, const char *s, size_t len)
{
    if (len > 0 && s[len - 1] == '\r')
        len--;
    if (cli_put_safe_cols(out, s, len, WATCH_SHOW_COLS) < len)
        fputs(" [...]", out);
    fputc('\n', out);
}

void watch_show(FILE *out, const struct tern_term_message *m)
{
    const char *t = m->text ? m->text : "";
    size_t len = m->text ? m->len : 0;
    char when[64] = "?";
    time_t secs = (time_t)m->time;
    struct tm tm;
    if (m->time > 0 && localtime_r(&secs, &tm))
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", &tm);
    fputs("\nMessage from ", out);
    if (m->from[0])
        cli_put_safe_cols(out, m->from, strnlen(m->from, sizeof m->from), 256);
    else
        fputs("<> (a bounce)", out);
    fprintf(out, " at %s (id ", when);
    cli_put_safe_cols(out, m->id, strnlen(m->id, sizeof m->id), 128);
    fputs("):\n", out);

    size_t body = body_start(t, len);
    char subj[WATCH_SUBJECT_MAX + 1];
    fputs("Subject: ", out);
    if (subject(t, body, subj, sizeof subj))
        put_line(out, subj, strlen(subj));
    else
        fputs("(none)\n", out);
    fputc('\n', out);

    size_t shown = 0, i = body;
    for (; i < len && shown < WATCH_SHOW_LINES; shown++) {
        size_t e = line_end(t, len, i);
        put_line(out, t + i, e - i);
        i = e + 1;
    }
    size_t more = 0;
    for (; i < len; i = line_end(t, len, i) + 1)
        more++;
    if (more)
        fprintf(out, "[%zu more line%s]\n", more, more == 1 ? "" : "s");
    if (m->truncated)
        fprintf(out, "[only the first %zu of %llu octets arrived]\n", len, m->size);
    fputs("EOF\n", out);
    fflush(out);
}
