/* The version tern reports (ternd -V, the audit log's start record). */
#ifndef TERN_UTIL_VERSION_H
#define TERN_UTIL_VERSION_H

#define TERN_VERSION "0.1"

#endif
