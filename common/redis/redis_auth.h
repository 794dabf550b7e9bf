/* redis_auth.h: Redis addresses and AUTH for every connection we make.
 *
 * The credentials come from a daemon's config keys `redis_user` and
 * `redis_password_file` (a file holding the password), or else from the
 * environment: SF_REDIS_USER and SF_REDIS_PASSWORD.  A password is never a
 * config value or a flag, so it cannot show in `ps`; it is never logged
 * (errors name the user, and Redis's own error text carries no password).
 * AUTH is the first command of every connection and every reconnect.
 */
#ifndef SF_REDIS_AUTH_H
#define SF_REDIS_AUTH_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stddef.h>
#include <sys/time.h>

typedef struct {
    char user[128];   /* "" = the default user (requirepass) */
    char *password;   /* NULL = no AUTH (owned, wiped on free) */
} sf_redis_auth_t;

/* Fills a from user / password_file (either may be NULL or ""), falling
 * back to SF_REDIS_USER / SF_REDIS_PASSWORD.  The file's trailing newline
 * is dropped; an empty or unreadable file is an error naming the file.  A
 * user without any password is an error. */
int sf_redis_auth_load(const char *user, const char *password_file, sf_redis_auth_t *a, char *err, size_t n);

/* Reads password_file again (a rotated or corrected password takes effect
 * on the next connection); on an error a keeps what it had.  Nothing to do
 * without a file. */
int sf_redis_auth_refresh(sf_redis_auth_t *a, const char *user, const char *password_file, char *err, size_t n);

/* "user 'NAME'" or "the default user", for messages. */
const char *sf_redis_auth_who(const sf_redis_auth_t *a, char *buf, size_t n);

/* Wipes and frees the password. */
void sf_redis_auth_free(sf_redis_auth_t *a);

/* Parses "unix:/path" or "host[:port]" (port 6379 by default). */
int sf_redis_addr_parse(const char *addr, char *host, size_t hn, int *port, int *is_unix);

/* A blocking connection to addr with AUTH done (a may be NULL or hold no
 * password: then a PING checks that Redis wants none).  NULL on failure,
 * with err naming the address and, for a refused AUTH, the user. */
redisContext *sf_redis_connect(const char *addr, const sf_redis_auth_t *a, struct timeval timeout, char *err,
                               size_t n);

/* Sends AUTH on a new async connection, ahead of any other command; cb
 * gets its reply (an error reply: refused).  Does nothing and returns 0
 * when a has no password.  Returns 1 when AUTH was sent. */
int sf_redis_auth_async(redisAsyncContext *ac, const sf_redis_auth_t *a, redisCallbackFn *cb, void *arg);

/* The hint for an error reply: whether it was a refused password, or a
 * Redis that wants one. */
const char *sf_redis_auth_hint(const char *redis_error);

#endif
