/* conn.h: a daemon's one asynchronous Redis connection on its libuv loop —
 * the address parsed once, a connection over TCP or a unix socket, AUTH as
 * its first command, and a reconnect with backoff whenever the connection
 * is lost, refused or dropped.  The coordinator's store and the learner use
 * it; neither connects by itself.
 *
 * The owner sees two events.  Up: connected, and AUTH accepted when one was
 * sent; from now until the next down, sf_redis_conn_ac() is the context to
 * send commands on (it is NULL at every other time, so nothing is ever sent
 * ahead of AUTH or on a connection that is going away).  Down: the
 * connection is gone, with why; commands that were in flight had their
 * callbacks called with a NULL reply first, as hiredis does.  A refused
 * AUTH is a down of its own (never preceded by an up).  After every down
 * and every failed attempt the next attempt waits for the backoff.
 *
 * Credentials are the owner's (sf_redis_auth_t, borrowed): before every
 * attempt but the first they are read again from the password file, so a
 * rotated password takes effect without a restart.  The log says what
 * happens, each kind of failure at most once a minute where it repeats:
 * "redis: connected", "redis: connection lost (…)", "redis: ADDR refused
 * AUTH as user 'U': …", "redis: AUTH accepted".
 *
 * The handle is caller-allocated, like libuv's: its memory must stay valid
 * until the close callback has run.  Loop thread only.
 */
#ifndef SF_REDIS_CONN_H
#define SF_REDIS_CONN_H

#include <hiredis/async.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/redis/keys.h"
#include "common/redis/redis_auth.h"
#include "common/runtime/config.h"

/* A daemon's Redis settings, for its config schema (sf_cfg_field_t rows):
 * T has the fields char *redis, *redis_prefix, *redis_user and
 * *redis_password_file.  The password itself is never a setting
 * (redis_auth.h). */
#define SF_REDIS_CFG_FIELDS(T)                                                                                 \
    {"redis", SF_CFG_STRING, offsetof(T, redis), "127.0.0.1:6379", 1, 0,                                       \
     "Redis address: host:port or unix:/path/to/socket"},                                                      \
    {"redis_prefix", SF_CFG_STRING, offsetof(T, redis_prefix), SF_KEY_PREFIX, 1, 0, "prefix of every Redis key"}, \
    {"redis_user", SF_CFG_STRING, offsetof(T, redis_user), "", 1, 0,                                           \
     "Redis ACL user for AUTH (default $SF_REDIS_USER, else the default user)"},                               \
    {"redis_password_file", SF_CFG_STRING, offsetof(T, redis_password_file), "", 1, 0,                         \
     "file holding the Redis password (default $SF_REDIS_PASSWORD; empty: no AUTH)"}

/* Why a connection went down. */
enum {
    SF_REDIS_LOST = 1,     /* an up connection was lost (Redis died, the network, an error on the socket) */
    SF_REDIS_DROPPED,      /* the owner dropped an up connection (sf_redis_conn_drop) */
    SF_REDIS_AUTH_REFUSED, /* Redis refused AUTH */
};

typedef struct sf_redis_conn_s sf_redis_conn_t;
typedef void (*sf_redis_up_cb)(sf_redis_conn_t *rc);
typedef void (*sf_redis_down_cb)(sf_redis_conn_t *rc, int why);
typedef void (*sf_redis_close_cb)(sf_redis_conn_t *rc);

#define SF_REDIS_RETRY_MIN_MS 100  /* the first wait before a reconnect, by default */
#define SF_REDIS_RETRY_MAX_MS 1000 /* the longest, by default */

typedef struct {
    const char *addr;              /* "unix:/path" or "host[:port]" (borrowed, for the handle's life) */
    sf_redis_auth_t *auth;         /* borrowed; NULL or no password: no AUTH */
    const char *user, *password_file; /* the config keys auth was loaded from (borrowed; may be NULL) */
    int64_t retry_min_ms, retry_max_ms; /* the wait doubles from min to max; 0: the defaults above */
    const char *held;              /* for the log, what waits while Redis is away ("writes are held"); may be NULL */
    sf_redis_up_cb on_up;          /* may be NULL */
    sf_redis_down_cb on_down;      /* may be NULL */
    void *data;                    /* becomes rc->data */
} sf_redis_conn_opts_t;

struct sf_redis_conn_s {
    void *data;                    /* the owner's */
    /* The rest is the module's. */
    sf_redis_conn_opts_t o;
    uv_loop_t *loop;
    char host[512];
    int port, is_unix;
    redisAsyncContext *ac;         /* while connecting, authenticating or up */
    int up, authing, refused, dropped, closing;
    int keep_backoff;              /* dropped by the owner: the waits keep growing across an up */
    int64_t retry_ms;              /* the last wait, 0 after an up */
    uint64_t attempts;
    int64_t auth_logged_ms, refresh_warned_ms; /* monotonic */
    uv_timer_t retry;
    int timer_closed;
    sf_redis_close_cb close_cb;
};

/* Checks o (a bad address is SF_EINVAL, with err saying so) and prepares rc
 * on loop; nothing is connected before sf_redis_conn_start().  o and what
 * it points to are borrowed. */
int sf_redis_conn_init(uv_loop_t *loop, sf_redis_conn_t *rc, const sf_redis_conn_opts_t *o, char *err, size_t n);

/* The first attempt, now; a failure is retried like a lost connection. */
void sf_redis_conn_start(sf_redis_conn_t *rc);

/* The context to send commands on while up, else NULL.  Borrowed: valid
 * until the next down (do not keep it across loop turns). */
redisAsyncContext *sf_redis_conn_ac(const sf_redis_conn_t *rc);

/* Disconnects an up connection the owner cannot use any more (Redis refused
 * its work): replies still due arrive, then down(SF_REDIS_DROPPED), then a
 * reconnect after the backoff, which keeps growing across reconnects until
 * sf_redis_conn_backoff_reset().  Safe inside a reply callback. */
void sf_redis_conn_drop(sf_redis_conn_t *rc);
/* The owner's work goes through again: the next wait starts from the
 * shortest. */
void sf_redis_conn_backoff_reset(sf_redis_conn_t *rc);

/* Stops reconnecting and disconnects (replies still due arrive first; no
 * down is reported).  cb (may be NULL) runs once the handle is unused. */
void sf_redis_conn_close(sf_redis_conn_t *rc, sf_redis_close_cb cb);

#endif
