/* Brute-force throttling of AUTH: failures counted per client IP and per user name over a
 * sliding window. Past `limit` failures a key is blocked until the window has passed since its
 * last failure; below that, each failure adds a growing delay before the next reply. Pure: the
 * caller passes the time. Bounded: at most `max_keys` keys, the oldest forgotten first. */
#ifndef TERN_AUTH_THROTTLE_H
#define TERN_AUTH_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct throttle;

struct throttle *throttle_new(unsigned limit, unsigned window_seconds, size_t max_keys);
void throttle_free(struct throttle *t);

/* A failed AUTH from ip as user (user may be "" when unknown). */
void throttle_fail(struct throttle *t, const char *ip, const char *user, time_t now);

/* Seconds to hold the reply to the next AUTH from ip for user: 0 with no recent failures,
 * then 1, 2, 4 ... capped at 30. */
unsigned throttle_delay(const struct throttle *t, const char *ip, const char *user, time_t now);

/* Over the limit for ip or for user: refuse with 454 4.7.0 without even trying. */
bool throttle_blocked(const struct throttle *t, const char *ip, const char *user, time_t now);

#endif
