/* The HELP texts: what a human typing at tern needs to know, one line per command. */
#include "smtp/help.h"

#include "smtp/grammar.h"

static const char *const overview[] = {
    "This is tern, an SMTP server (RFC 5321).",
    "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT",
    "          HELP VRFY EXPN SEND SOML SAML ETRN TURN",
    "Send HELP <command> for its syntax.",
    "To report a problem, write to postmaster at this domain.",
};

static const struct {
    const char *word;
    const char *text;
} topics[] = {
    {"HELO", "HELO <domain>: identify yourself (plain SMTP)"},
    {"EHLO", "EHLO <domain>: identify yourself and list the extensions (ESMTP)"},
    {"MAIL", "MAIL FROM:<sender> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]: start a mail"},
    {"RCPT", "RCPT TO:<recipient>: add a recipient (repeat for each, at most the limit)"},
    {"DATA", "DATA: send the message, end it with a line holding only \".\""},
    {"BDAT", "BDAT <octets> [LAST]: send the next chunk of the message (CHUNKING)"},
    {"RSET", "RSET: abandon the current mail transaction"},
    {"NOOP", "NOOP: do nothing, answer 250"},
    {"QUIT", "QUIT: close the session"},
    {"HELP", "HELP [command]: this help"},
    {"VRFY", "VRFY <user or address>: confirm a local mailbox (per policy)"},
    {"EXPN", "EXPN <list>: list the members of a mailing list (per policy)"},
    {"SEND", "SEND FROM:<sender>: start a mail for the recipients' terminals"},
    {"SOML", "SOML FROM:<sender>: start a mail for terminal, or mailbox if none"},
    {"SAML", "SAML FROM:<sender>: start a mail for terminal and mailbox"},
    {"ETRN", "ETRN <domain> | @<domain> | #<queue>: start delivering a relay domain's queued "
             "mail (RFC 1985)"},
    {"TURN", "TURN: after AUTH, reverse roles and take your relay domains' queued mail "
             "(RFC 821, RFC 2645)"},
    {"XWATCH", "XWATCH: after STARTTLS and AUTH on the submission port, receive your terminal "
               "messages here (tern watch)"},
};

const char *const *smtp_help_overview(size_t *n)
{
    *n = sizeof overview / sizeof overview[0];
    return overview;
}

const char *smtp_help_topic(const char *word, size_t len)
{
    for (size_t i = 0; i < sizeof topics / sizeof topics[0]; i++)
        if (smtp_word_eq(word, len, topics[i].word))
            return topics[i].text;
    return NULL;
}
