/* What an SMTP reply code means, in words a person can read next to the server's own text
 * (cli/meanings.c): the codes of RFC 5321 §4.2.2-4.2.3 and every other code the seeds' tables
 * list, for `tern smtp`, `tern probe` and anything else that shows a reply to a human. */
#ifndef TERN_CLI_MEANINGS_H
#define TERN_CLI_MEANINGS_H

/* The meaning of code (0 and 101 are libtern's own: refused locally, connection error), or
 * NULL for a code no table lists. */
const char *smtp_code_meaning(int code);

/* What the first digit says (RFC 5321 §4.2.1), for any code 200..599: "positive completion",
 * "positive intermediate", "transient negative completion", "permanent negative completion";
 * NULL outside that range. */
const char *smtp_code_class(int code);

/* smtp_code_meaning, else a sentence built on smtp_code_class; never NULL. */
const char *smtp_code_describe(int code);

#endif
