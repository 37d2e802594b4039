/* HELP (RFC 5321 4.1.1.8): the 214 overview and one syntax line per command. */
#ifndef TERN_SMTP_HELP_H
#define TERN_SMTP_HELP_H

#include <stddef.h>

/* The overview lines for a bare HELP. */
const char *const *smtp_help_overview(size_t *n);

/* The help line for a command word (any case), or NULL when there is no such topic. */
const char *smtp_help_topic(const char *word, size_t len);

#endif
