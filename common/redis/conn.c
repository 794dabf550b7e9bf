/* conn.c: one asynchronous Redis connection with AUTH and reconnects (see
 * conn.h). */
#include "common/redis/conn.h"

#include <string.h>

#include "common/redis/redis_uv.h"
#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/log.h"

#define LOG_EVERY_MS 60000 /* a failure that repeats is logged at most once a minute */

static void attempt(sf_redis_conn_t *rc);

static void on_retry(uv_timer_t *t) { attempt(t->data); }

static void schedule_retry(sf_redis_conn_t *rc) {
    if (rc->closing) return;
    rc->retry_ms = rc->retry_ms ? rc->retry_ms * 2 : rc->o.retry_min_ms;
    if (rc->retry_ms > rc->o.retry_max_ms) rc->retry_ms = rc->o.retry_max_ms;
    uv_timer_start(&rc->retry, on_retry, (uint64_t)rc->retry_ms, 0);
}

static void maybe_closed(sf_redis_conn_t *rc) {
    if (!rc->closing || !rc->timer_closed || rc->ac) return;
    sf_redis_close_cb cb = rc->close_cb;
    rc->close_cb = NULL;
    if (cb) cb(rc);
}

static void on_timer_closed(uv_handle_t *h) {
    sf_redis_conn_t *rc = h->data;
    rc->timer_closed = 1;
    maybe_closed(rc);
}

/* The connection is usable: connected, and AUTH accepted if one was sent. */
static void on_ready(sf_redis_conn_t *rc) {
    rc->up = 1;
    if (!rc->keep_backoff) rc->retry_ms = 0;
    sf_info("redis: connected");
    if (rc->o.on_up) rc->o.on_up(rc);
}

static void on_ready_timer(uv_timer_t *t) {
    sf_redis_conn_t *rc = t->data;
    if (rc->ac && !rc->up) on_ready(rc);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv) {
    (void)priv;
    sf_redis_conn_t *rc = ac->data;
    redisReply *r = reply;
    if (!r) return; /* lost before the reply: the disconnect callback retries */
    rc->authing = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        int64_t now = sf_clock_mono_ms();
        if (!rc->auth_logged_ms || now - rc->auth_logged_ms >= LOG_EVERY_MS) {
            char who[160];
            sf_error("redis: %s refused AUTH as %s: %s%s; %s%sretrying", rc->o.addr,
                     sf_redis_auth_who(rc->o.auth, who, sizeof who), r->str, sf_redis_auth_hint(r->str),
                     rc->o.held ? rc->o.held : "", rc->o.held ? " until it accepts, " : "");
            rc->auth_logged_ms = now;
        }
        rc->refused = 1;
        redisAsyncDisconnect(ac);
        return;
    }
    if (rc->auth_logged_ms) sf_info("redis: AUTH accepted");
    rc->auth_logged_ms = 0;
    on_ready(rc);
}

static void on_connect(const redisAsyncContext *ac, int status) {
    sf_redis_conn_t *rc = ac->data;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback. */
        sf_warn("redis: connect failed: %s; retrying", ac->errstr);
        rc->ac = NULL;
        schedule_retry(rc);
        return;
    }
    /* AUTH goes first; nothing else is sent until it is accepted.  A
     * context that cannot take it any more disconnects, and is retried.
     * Without AUTH the connection is up on the next loop turn, not inside
     * hiredis' connect callback: an owner that drops or closes it from its
     * up callback would free the context under hiredis' feet. */
    int k = sf_redis_auth_async(rc->ac, rc->o.auth, on_auth, NULL);
    if (k == 1) rc->authing = 1;
    else if (k == 0) uv_timer_start(&rc->retry, on_ready_timer, 0, 0);
    else redisAsyncDisconnect(rc->ac);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
    sf_redis_conn_t *rc = ac->data;
    int was_up = rc->up, dropped = rc->dropped, refused = rc->refused;
    rc->ac = NULL;
    rc->up = rc->authing = rc->refused = rc->dropped = 0;
    if (rc->closing) {
        maybe_closed(rc);
        return;
    }
    if (refused) {
        if (rc->o.on_down) rc->o.on_down(rc, SF_REDIS_AUTH_REFUSED);
    } else if (was_up) {
        if (!dropped && status != REDIS_OK)
            sf_warn("redis: connection lost (%s); %s%s", ac->errstr, rc->o.held ? rc->o.held : "retrying",
                    rc->o.held ? " until it is back" : "");
        if (rc->o.on_down) rc->o.on_down(rc, dropped ? SF_REDIS_DROPPED : SF_REDIS_LOST);
    }
    schedule_retry(rc);
}

static void attempt(sf_redis_conn_t *rc) {
    if (rc->ac || rc->closing) return;
    /* A password corrected or rotated in its file takes effect on the next
     * connection; the first one uses what the owner just loaded. */
    char err[600];
    if (rc->attempts++ && rc->o.auth &&
        sf_redis_auth_refresh(rc->o.auth, rc->o.user, rc->o.password_file, err, sizeof err) != 0) {
        int64_t now = sf_clock_mono_ms();
        if (!rc->refresh_warned_ms || now - rc->refresh_warned_ms >= LOG_EVERY_MS) {
            rc->refresh_warned_ms = now;
            sf_warn("redis: %s; trying the password read before", err);
        }
    }
    redisAsyncContext *ac = rc->is_unix ? redisAsyncConnectUnix(rc->host) : redisAsyncConnect(rc->host, rc->port);
    if (!ac || ac->err || sf_redis_uv_attach(ac, rc->loop) != REDIS_OK) {
        sf_warn("redis: %s", !ac ? "out of memory" : ac->err ? ac->errstr : "cannot watch the socket");
        if (ac) redisAsyncFree(ac);
        schedule_retry(rc);
        return;
    }
    ac->data = rc;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rc->ac = ac;
}

int sf_redis_conn_init(uv_loop_t *loop, sf_redis_conn_t *rc, const sf_redis_conn_opts_t *o, char *err, size_t n) {
    memset(rc, 0, sizeof *rc);
    if (!o->addr || sf_redis_addr_parse(o->addr, rc->host, sizeof rc->host, &rc->port, &rc->is_unix) != 0)
        return sf_errf(SF_EINVAL, err, n, "bad redis address '%s' (host:port or unix:/path)", o->addr ? o->addr : "");
    rc->o = *o;
    if (rc->o.retry_min_ms <= 0) rc->o.retry_min_ms = SF_REDIS_RETRY_MIN_MS;
    if (rc->o.retry_max_ms <= 0) rc->o.retry_max_ms = SF_REDIS_RETRY_MAX_MS;
    if (rc->o.retry_max_ms < rc->o.retry_min_ms) rc->o.retry_max_ms = rc->o.retry_min_ms;
    rc->data = o->data;
    rc->loop = loop;
    int k = uv_timer_init(loop, &rc->retry);
    if (k != 0) return sf_errf(SF_EIO, err, n, "redis: cannot make a timer: %s", uv_strerror(k));
    rc->retry.data = rc;
    return 0;
}

void sf_redis_conn_start(sf_redis_conn_t *rc) { attempt(rc); }

redisAsyncContext *sf_redis_conn_ac(const sf_redis_conn_t *rc) { return rc->up ? rc->ac : NULL; }

void sf_redis_conn_drop(sf_redis_conn_t *rc) {
    if (!rc->up || rc->dropped) return;
    rc->dropped = rc->keep_backoff = 1;
    redisAsyncDisconnect(rc->ac);
}

void sf_redis_conn_backoff_reset(sf_redis_conn_t *rc) {
    rc->keep_backoff = 0;
    rc->retry_ms = 0;
}

void sf_redis_conn_close(sf_redis_conn_t *rc, sf_redis_close_cb cb) {
    if (rc->closing) return;
    rc->closing = 1;
    rc->close_cb = cb;
    uv_timer_stop(&rc->retry);
    uv_close((uv_handle_t *)&rc->retry, on_timer_closed);
    if (rc->ac) {
        /* A context still connecting is freed by hiredis without a
         * disconnect callback; one that is connected calls it. */
        int connected = (rc->ac->c.flags & REDIS_CONNECTED) != 0;
        redisAsyncDisconnect(rc->ac);
        if (!connected) rc->ac = NULL;
    }
}
