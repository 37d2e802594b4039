/* libtern's blocking driver, shared by the files of the public API (driver.c, sasl.c, send.c):
 * the handle, and the moves every command is made of — queue a command in the core, flush the
 * output while reading what arrives (so a long pipelined batch cannot deadlock against a server
 * that stops reading while its replies go unread), and wait, bounded by the RFC 5321 timeout of
 * the command, for the next reply. A broken connection is closed at once and every later call
 * answers 101 with the reason. */
#ifndef TERN_CLIENT_DRIVER_H
#define TERN_CLIENT_DRIVER_H

#include "client/client.h"
#include "client/transport.h"
#include "tern/client.h"

#include <stdbool.h>

#define DRV_INBUF 16384 /* server bytes read ahead of the parser */

struct tern_client {
    struct tern_client_opts o; /* strings point into owned copies below */
    char *owned[7];
    struct smtpc *core;
    struct tport tp;
    char in[DRV_INBUF]; /* read, not yet parsed */
    size_t inlen;
    bool connected; /* a connection is open and in step */
    bool data_mode; /* 354 to DATA seen: message data goes next */
    struct smtpc_stuff stuff;
    char host[256];    /* as given to tern_connect: the name TLS verifies */
    char helo[256];    /* the name the last EHLO/HELO used */
    char failure[512]; /* why the connection broke, for every later call */
    struct tern_caps caps;
    struct tframe *frames; /* after XWATCH's 250: the terminal messages being read (watch.c) */
};

/* 0 when a command may be sent now; else -1 with r saying why (0 or 101). */
int drv_ready(struct tern_client *c, enum tern_cmd cmd, struct tern_reply *r);
/* Queues one command line (no wait). -1 with r a local (0) or connection (101) reply when the
 * handle cannot send it now. */
int drv_queue(struct tern_client *c, enum tern_cmd cmd, const char *line, bool secret,
              struct tern_reply *r);
/* Sends everything queued. -1 with r a 101 reply when the connection broke. */
int drv_flush(struct tern_client *c, struct tern_reply *r);
/* Flushes, then waits for the next reply in order. 0 with r the reply (any class), -1 with r a
 * 101 reply when none came (the connection is then closed). */
int drv_reply(struct tern_client *c, struct tern_reply *r);
/* drv_queue + drv_reply: 0 when r is positive, 1 when intermediate, -1 otherwise. */
int drv_exchange(struct tern_client *c, enum tern_cmd cmd, const char *line, bool secret,
                 struct tern_reply *r);
/* Closes the connection because of why (kept for later calls) and fills r (may be NULL) with a
 * 101 reply for cmd. */
void drv_fail(struct tern_client *c, enum tern_cmd cmd, struct tern_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Is the server's PIPELINING to be used? */
bool drv_pipelining(const struct tern_client *c);

/* watch.c: forgets the watch (the connection is closing). */
void drv_watch_reset(struct tern_client *c);
/* watch.c: QUIT while watching: sends it, drops messages until the 221, closes. */
int drv_watch_quit(struct tern_client *c, struct tern_reply *r);

#endif
