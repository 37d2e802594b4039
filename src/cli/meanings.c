/* The table of SMTP reply codes and what each means, for people reading replies (`tern smtp`
 * prints one of these under every reply). The texts are RFC 5321's own (§4.2.2 by code, §4.2.3
 * by class) where it defines the code; the seeds' tables add codes RFC 5321 does not define: the
 * AUTH codes of RFC 4954 (235, 334, 454, 530, 535, 538), STARTTLS's 454 (RFC 3207), RFC 876's
 * nonstandard 200, RFC 1846's 521, libtern's 101 for a connection that failed, and the 4yz/5yz
 * codes some servers use that no RFC assigns (422, 431, 441, 442, 446, 471, 510, 512, 523,
 * 541). Where the seeds word a code differently from the RFC, the RFC's wording is kept and the
 * seeds' explanation added in parentheses when it tells more. */
#include "cli/meanings.h"

#include <stddef.h>

#include "tern/client.h"

struct meaning {
    int code;
    const char *text;
};

/* Sorted by code; smtp_code_meaning searches it in order (it is short, and a reply is shown
 * to a person: no lookup here is ever hot). */
static const struct meaning meanings[] = {
    {TERN_CODE_LOCAL, "Not sent: tern refused the command before sending anything"},
    {TERN_CODE_CONNECTION, "Server connection error (wrong server name or connection port, "
                           "or the connection broke)"},
    {200, "Nonstandard success response (see RFC 876)"},
    {211, "System status, or system help reply"},
    {214, "Help message (how to use the server, or the meaning of a nonstandard command; "
          "useful only to the human user)"},
    {220, "<domain> Service ready"},
    {221, "<domain> Service closing transmission channel"},
    {235, "Authentication successful (response to AUTH)"},
    {250, "Requested mail action okay, completed"},
    {251, "User not local; will forward to <forward-path>"},
    {252, "Cannot VRFY user, but will accept message and attempt delivery"},
    {334, "Server challenge: the AUTH mechanism is accepted; send the next response"},
    {354, "Start mail input; end with <CRLF>.<CRLF>"},
    {421, "<domain> Service not available, closing transmission channel"},
    {422, "The recipient's mailbox has exceeded its storage limit"},
    {431, "File overload (too many messages sent to a particular domain)"},
    {441, "No response from the recipient's server"},
    {442, "Connection dropped"},
    {446, "Internal loop has occurred"},
    {450, "Requested mail action not taken: mailbox unavailable (e.g., mailbox busy or "
          "temporarily blocked for policy reasons)"},
    {451, "Requested action aborted: local error in processing"},
    {452, "Requested action not taken: insufficient system storage"},
    {454, "TLS not available due to a temporary reason (to STARTTLS), or temporary "
          "authentication failure (to AUTH)"},
    {455, "Server unable to accommodate parameters"},
    {471, "Mail server error due to the local spam filter"},
    {500, "Syntax error, command unrecognized (this may include errors such as command line too "
          "long)"},
    {501, "Syntax error in parameters or arguments"},
    {502, "Command not implemented"},
    {503, "Bad sequence of commands"},
    {504, "Command parameter not implemented"},
    {510, "Invalid email address"},
    {512, "A DNS error (recheck the address of your recipients)"},
    {521, "<domain> does not accept mail (see RFC 1846)"},
    {523, "The total size of your mailing exceeds the recipient server's limits"},
    {530, "Authentication required (often: STARTTLS must come first)"},
    {535, "Authentication credentials invalid"},
    {538, "Encryption required for requested authentication mechanism"},
    {541, "Message rejected by spam filter"},
    {550, "Requested action not taken: mailbox unavailable (e.g., mailbox not found, no access, "
          "or command rejected for policy reasons)"},
    {551, "User not local; please try <forward-path>"},
    {552, "Requested mail action aborted: exceeded storage allocation"},
    {553, "Requested action not taken: mailbox name not allowed (e.g., mailbox syntax "
          "incorrect)"},
    {554, "Transaction failed (or, in reply to the connection, \"No SMTP service here\")"},
    {555, "MAIL FROM/RCPT TO parameters not recognized or not implemented"},
};

const char *smtp_code_meaning(int code)
{
    for (size_t i = 0; i < sizeof meanings / sizeof meanings[0]; i++)
        if (meanings[i].code == code)
            return meanings[i].text;
    return NULL;
}

const char *smtp_code_class(int code)
{
    switch (code / 100) {
    case 2:
        return "positive completion";
    case 3:
        return "positive intermediate";
    case 4:
        return "transient negative completion";
    case 5:
        return "permanent negative completion";
    }
    return NULL;
}

const char *smtp_code_describe(int code)
{
    const char *m = smtp_code_meaning(code);
    if (m)
        return m;
    /* a code no table lists: its first digit still says what to do (RFC 5321 §4.2.1) */
    switch (code / 100) {
    case 2:
        return "A code no table lists; its first digit means positive completion: done";
    case 3:
        return "A code no table lists; its first digit means positive intermediate: go on";
    case 4:
        return "A code no table lists; its first digit means transient negative completion: "
               "try again later";
    case 5:
        return "A code no table lists; its first digit means permanent negative completion: do "
               "not repeat it as it was";
    }
    return "Not an SMTP reply code";
}
