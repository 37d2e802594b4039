/* The words of the outbound client: server replies and local failures as results (struct
 * smtpout_reply: one line, bounded, no control characters), the name of the step a failure
 * happened in (Postfix's wording: "lost connection with HOST[IP] while sending RCPT TO"), and the
 * RFC 5321 §4.5.3.2 timeout of each reply awaited, with the defaults where none is configured. */
#include "relay/smtpout_priv.h"

#include <event2/event.h>
#include <stdio.h>
#include <string.h>

#define PICK(v, def) ((v) > 0 ? (v) : (def))

/* One line of text: control characters become spaces, and a cut never splits a UTF-8
 * character. */
static void flatten(char *out, size_t cap, const char *in)
{
    size_t n = strlen(in), o = 0;
    if (n >= cap) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)in[n] & 0xc0) == 0x80)
            n--; /* in[n] continues a character: drop its beginning too */
    }
    for (; o < n; o++) {
        unsigned char ch = (unsigned char)in[o];
        out[o] = ch < 0x20 || ch == 0x7f ? ' ' : (char)ch;
    }
    out[o] = '\0';
}

void so_reply_of(struct smtpout_reply *out, const struct tern_reply *r)
{
    memset(out, 0, sizeof *out);
    out->code = r->code;
    snprintf(out->enh, sizeof out->enh, "%s", r->enh);
    flatten(out->text, sizeof out->text, tern_reply_text(r));
    out->cmd = r->cmd;
}

void so_vlocal(struct smtpout_reply *out, int code, const char *enh, enum tern_cmd cmd,
               const char *fmt, va_list ap)
{
    char text[sizeof out->text];
    vsnprintf(text, sizeof text, fmt, ap);
    memset(out, 0, sizeof *out);
    out->code = code;
    snprintf(out->enh, sizeof out->enh, "%s", enh);
    flatten(out->text, sizeof out->text, text);
    out->cmd = cmd;
    out->local = true;
}

void so_local(struct smtpout_reply *out, int code, const char *enh, enum tern_cmd cmd,
              const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    so_vlocal(out, code, enh, cmd, fmt, ap);
    va_end(ap);
}

/* ---- timeouts ---- */

int so_timeout_for(const struct smtpout *s, enum tern_cmd cmd)
{
    const struct smtpout_opts *o = &s->o;
    switch (cmd) {
    case TERN_CMD_CONNECT:
        return PICK(o->greeting_timeout, 300);
    case TERN_CMD_DATA:
        return PICK(o->data_init_timeout, 120);
    case TERN_CMD_DATA_END:
        return PICK(o->dot_timeout, 600);
    case TERN_CMD_QUIT:
        return PICK(o->quit_timeout, 10);
    default:
        return PICK(o->command_timeout, 300);
    }
}

void so_arm(struct smtpout *s, int seconds)
{
    struct timeval tv = {seconds, 0};
    evtimer_add(s->timer, &tv);
}

void so_arm_reply(struct smtpout *s)
{
    if (smtpc_waiting(s->core) > 0)
        so_arm(s, so_timeout_for(s, smtpc_head(s->core)));
    else
        evtimer_del(s->timer);
}

const char *so_stage(const struct smtpout *s)
{
    switch (s->state) {
    case SO_CONNECTING:
        return "connecting";
    case SO_HANDSHAKE:
        return "performing the TLS handshake";
    case SO_BODY:
        return "sending message body";
    case SO_READY:
        return "waiting for the next message";
    default:
        break;
    }
    if (smtpc_waiting(s->core) == 0)
        return "talking to it";
    switch (smtpc_head(s->core)) {
    case TERN_CMD_CONNECT:
        return "receiving the initial server greeting";
    case TERN_CMD_EHLO:
        return "performing the EHLO handshake";
    case TERN_CMD_HELO:
        return "performing the HELO handshake";
    case TERN_CMD_STARTTLS:
        return "sending STARTTLS";
    case TERN_CMD_AUTH:
        return "authenticating";
    case TERN_CMD_MAIL:
        return "sending MAIL FROM";
    case TERN_CMD_RCPT:
        return "sending RCPT TO";
    case TERN_CMD_DATA:
        return "sending DATA command";
    case TERN_CMD_DATA_END:
        return "sending end of data -- message may be sent more than once";
    case TERN_CMD_RSET:
        return "sending RSET";
    case TERN_CMD_QUIT:
        return "sending QUIT";
    default:
        return "talking to it";
    }
}

enum tern_cmd so_stage_cmd(const struct smtpout *s)
{
    if (smtpc_waiting(s->core) > 0)
        return smtpc_head(s->core);
    switch (s->state) {
    case SO_CONNECTING:
        return TERN_CMD_CONNECT;
    case SO_HANDSHAKE:
        return TERN_CMD_STARTTLS;
    case SO_BODY:
        return TERN_CMD_DATA_END; /* the message is what the final reply would have answered */
    default:
        return TERN_CMD_OTHER;
    }
}
