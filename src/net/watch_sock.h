/* ternd's local watch socket, DATA_DIR/watch: how `tern watch` on this machine becomes a user's
 * terminal (the protocol is described at the top of watch_sock.c and in ternd(8)). */
#ifndef TERN_NET_WATCH_SOCK_H
#define TERN_NET_WATCH_SOCK_H

#include <stddef.h>

#define WSOCK_NAME "watch"   /* in DATA_DIR */
#define WSOCK_LINE_MAX 4096  /* the request line, its newline included */
#define WSOCK_TIMEOUT 5      /* seconds for the request line */
#define WSOCK_PENDING_MAX 64 /* clients asking at once (watchers are counted by watch.h) */

struct server;

/* Listens on DATA_DIR/watch (mode 0666; a stale socket left by a crash is replaced, one a
 * running ternd answers on is not). 0, or -1 with a reason that says what to do. */
int watch_sock_open(struct server *srv, char *err, size_t errlen);

/* Stops listening, removes the socket, and ends every client and its watch. After the pool is
 * freed. */
void watch_sock_close(struct server *srv);

#endif
