/* Unit tests for common/redis/conn: addresses and options checked at init;
 * against a fake Redis on a unix socket in the test's own loop: AUTH first
 * on every connection, a refused AUTH reported and retried with the
 * password file read again, a lost connection reported and reconnected,
 * the backoff of dropped connections growing until reset, and a clean
 * close; with nothing listening, retries that back off and report
 * nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "common/redis/conn.h"
#include "common/runtime/error.h"
#include "sf_test.h"

static char sock_path[96], pw_file[96];

/* ---- a fake Redis: RESP commands in, simple replies out ------------------------- */

typedef struct {
    uv_pipe_t h;
    char buf[4096];
    size_t len;
    int ncmd;
} client_t;

static struct {
    uv_pipe_t server;
    int conns;                 /* connections accepted */
    char first[16][16];        /* the first command of each */
    const char *password;      /* AUTH is accepted with this password only */
    client_t *last;            /* the newest client */
    int pings;
} S;

/* One command at p (NUL-terminated after n bytes): its arguments into argv
 * and lens; the bytes it takes, or 0 while incomplete. */
static size_t parse_cmd(const char *p, size_t n, int *argc, const char **argv, size_t *lens, int max) {
    const char *q = p, *end = p + n;
    if (q >= end || *q != '*') return 0;
    char *e;
    long na = strtol(q + 1, &e, 10);
    if (e + 2 > end || e[0] != '\r' || na < 1 || na > max) return 0;
    q = e + 2;
    for (long i = 0; i < na; i++) {
        if (q >= end || *q != '$') return 0;
        long l = strtol(q + 1, &e, 10);
        if (e + 2 + l + 2 > end || l < 0) return 0;
        argv[i] = e + 2;
        lens[i] = (size_t)l;
        q = e + 2 + l + 2;
    }
    *argc = (int)na;
    return (size_t)(q - p);
}

static void reply(client_t *c, const char *text) {
    uv_buf_t b = uv_buf_init((char *)text, (unsigned)strlen(text));
    uv_try_write((uv_stream_t *)&c->h, &b, 1);
}

static void on_client_closed(uv_handle_t *h) {
    if (S.last == h->data) S.last = NULL;
    free(h->data);
}

static void kill_client(client_t *c) {
    if (!uv_is_closing((uv_handle_t *)&c->h)) uv_close((uv_handle_t *)&c->h, on_client_closed);
}

static void on_alloc(uv_handle_t *h, size_t want, uv_buf_t *b) {
    (void)want;
    client_t *c = h->data;
    *b = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - 1 - c->len));
}

static void on_client_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *b) {
    (void)b;
    client_t *c = st->data;
    if (nread < 0) { kill_client(c); return; }
    c->len += (size_t)nread;
    c->buf[c->len] = 0;
    int argc;
    const char *argv[8];
    size_t lens[8], used;
    while ((used = parse_cmd(c->buf, c->len, &argc, argv, lens, 8)) > 0) {
        if (c->ncmd++ == 0 && S.conns <= 16)
            snprintf(S.first[S.conns - 1], sizeof S.first[0], "%.*s", (int)lens[0], argv[0]);
        if (lens[0] == 4 && !memcmp(argv[0], "AUTH", 4)) {
            int ok = strlen(S.password) == lens[argc - 1] && !memcmp(argv[argc - 1], S.password, lens[argc - 1]);
            reply(c, ok ? "+OK\r\n" : "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
        } else if (lens[0] == 4 && !memcmp(argv[0], "PING", 4)) {
            S.pings++;
            reply(c, "+PONG\r\n");
        } else {
            reply(c, "+OK\r\n");
        }
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
    }
}

static void on_connection(uv_stream_t *server, int status) {
    if (status < 0) return;
    client_t *c = calloc(1, sizeof *c);
    uv_pipe_init(server->loop, &c->h, 0);
    c->h.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->h) != 0) { kill_client(c); return; }
    S.conns++;
    S.last = c;
    uv_read_start((uv_stream_t *)&c->h, on_alloc, on_client_read);
}

static int server_start(uv_loop_t *loop, const char *password) {
    memset(&S, 0, sizeof S);
    S.password = password;
    unlink(sock_path);
    uv_pipe_init(loop, &S.server, 0);
    if (uv_pipe_bind(&S.server, sock_path) != 0) return -1;
    return uv_listen((uv_stream_t *)&S.server, 16, on_connection);
}

/* After a failed test: whatever is left open is closed (clients with their
 * memory). */
static void close_walk(uv_handle_t *h, void *arg) {
    (void)arg;
    if (uv_is_closing(h)) return;
    int client = h->type == UV_NAMED_PIPE && h != (uv_handle_t *)&S.server;
    uv_close(h, client ? on_client_closed : NULL);
}

static void count_walk(uv_handle_t *h, void *arg) {
    (void)h;
    ++*(int *)arg;
}

/* ---- the test's side of the connection --------------------------------------------- */

static struct {
    int ups, lost, dropped, refused, closed, pongs;
    int64_t drop_ms[8], up_ms[8]; /* uv_now() */
    int64_t wait_ms[8];        /* the backoff each reconnect waited */
    int64_t end_ms;
    sf_redis_conn_t *rc;
    int scenario;
} T;

static void on_closed(sf_redis_conn_t *rc) {
    (void)rc;
    T.closed++;
    uv_close((uv_handle_t *)&S.server, NULL);
    if (S.last) kill_client(S.last);
}

static void on_pong(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    (void)priv;
    redisReply *r = reply;
    if (r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG")) T.pongs++;
    /* Redis goes away: the client's connection is cut from the server's end. */
    if (S.last) kill_client(S.last);
}

static void on_up(sf_redis_conn_t *rc) {
    redisAsyncContext *ac = sf_redis_conn_ac(rc);
    int k = T.ups++;
    if (k < 8) T.up_ms[k] = (int64_t)uv_now(rc->loop), T.wait_ms[k] = rc->retry_ms;
    if (!ac) return;
    if (T.scenario == 1) {
        if (k == 0) redisAsyncCommand(ac, on_pong, NULL, "PING");
        else sf_redis_conn_close(rc, on_closed);
    } else if (T.scenario == 2) {
        if (k == 3) sf_redis_conn_backoff_reset(rc);
        if (k < 4) {
            T.drop_ms[k] = (int64_t)uv_now(rc->loop);
            sf_redis_conn_drop(rc);
        } else {
            sf_redis_conn_close(rc, on_closed);
        }
    }
}

static void on_down(sf_redis_conn_t *rc, int why) {
    CHECK(sf_redis_conn_ac(rc) == NULL);
    if (why == SF_REDIS_LOST) T.lost++;
    else if (why == SF_REDIS_DROPPED) T.dropped++;
    else if (why == SF_REDIS_AUTH_REFUSED) {
        /* The operator fixes the password file: the next attempt reads it. */
        if (T.refused++ == 0) {
            FILE *f = fopen(pw_file, "w");
            fputs("new-pass\n", f);
            fclose(f);
        }
    }
}

static void on_guard(uv_timer_t *t) {
    fprintf(stderr, "the test did not finish in time\n");
    uv_stop(t->loop);
}

/* Runs loop to its end, with a guard against hanging; returns 0 when the
 * loop could be closed (every handle gone). */
static int run(uv_loop_t *loop) {
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, on_guard, 10000, 0);
    uv_unref((uv_handle_t *)&guard);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_walk(loop, close_walk, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    return uv_loop_close(loop);
}

/* ---- tests ---------------------------------------------------------------------------- */

TEST(addresses_and_options) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    sf_redis_conn_t rc;
    char err[200] = "";
    sf_redis_conn_opts_t o = {.addr = "h:99999"};
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), SF_EINVAL);
    CHECK(strstr(err, "'h:99999'") && strstr(err, "unix:/path"));
    o.addr = "unix:";
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), SF_EINVAL);
    o.addr = NULL;
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), SF_EINVAL);
    /* Nothing was made for a bad address: the loop has no handle. */
    int handles = 0;
    uv_walk(&loop, count_walk, &handles);
    CHECK_EQ_INT(handles, 0);
    o.addr = "redis.local";
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), 0);
    CHECK_EQ_STR(rc.host, "redis.local");
    CHECK_EQ_INT(rc.port, 6379);
    CHECK_EQ_INT(rc.o.retry_min_ms, SF_REDIS_RETRY_MIN_MS);
    CHECK_EQ_INT(rc.o.retry_max_ms, SF_REDIS_RETRY_MAX_MS);
    CHECK(sf_redis_conn_ac(&rc) == NULL);
    sf_redis_conn_close(&rc, NULL);
    sf_redis_conn_opts_t o2 = {.addr = "unix:/tmp/x.sock", .retry_min_ms = 500, .retry_max_ms = 50, .data = &loop};
    sf_redis_conn_t rc2;
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc2, &o2, err, sizeof err), 0);
    CHECK_EQ_INT(rc2.is_unix, 1);
    CHECK_EQ_STR(rc2.host, "/tmp/x.sock");
    CHECK_EQ_INT(rc2.o.retry_max_ms, 500); /* never below the shortest wait */
    CHECK(rc2.data == &loop);
    sf_redis_conn_close(&rc2, NULL);
    CHECK_EQ_INT(run(&loop), 0);
}

TEST(auth_first_refused_reread_lost_reconnected) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&T, 0, sizeof T);
    T.scenario = 1;
    CHECK_EQ_INT(server_start(&loop, "new-pass"), 0);
    FILE *f = fopen(pw_file, "w");
    fputs("old-pass\n", f);
    fclose(f);
    chmod(pw_file, 0600);
    sf_redis_auth_t auth;
    char err[600], addr[128];
    CHECK_EQ_INT(sf_redis_auth_load(NULL, pw_file, &auth, err, sizeof err), 0);
    snprintf(addr, sizeof addr, "unix:%s", sock_path);
    sf_redis_conn_opts_t o = {.addr = addr, .auth = &auth, .password_file = pw_file, .retry_min_ms = 10,
                              .retry_max_ms = 40, .held = "writes are held", .on_up = on_up, .on_down = on_down};
    sf_redis_conn_t rc;
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), 0);
    sf_redis_conn_start(&rc);
    CHECK(sf_redis_conn_ac(&rc) == NULL); /* not before AUTH is accepted */
    CHECK_EQ_INT(run(&loop), 0);
    CHECK_EQ_INT(T.refused, 1);
    CHECK_EQ_INT(T.ups, 2);
    CHECK_EQ_INT(T.pongs, 1);
    CHECK_EQ_INT(S.pings, 1);
    CHECK_EQ_INT(T.lost, 1);
    CHECK_EQ_INT(T.dropped, 0);
    CHECK_EQ_INT(T.closed, 1);
    CHECK_EQ_INT(S.conns, 3); /* refused, accepted, accepted again after the loss */
    for (int i = 0; i < S.conns; i++) CHECK_EQ_STR(S.first[i], "AUTH");
    CHECK_EQ_STR(auth.password, "new-pass");
    CHECK(sf_redis_conn_ac(&rc) == NULL);
    sf_redis_auth_free(&auth);
}

TEST(dropped_connections_back_off_until_reset) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&T, 0, sizeof T);
    T.scenario = 2;
    CHECK_EQ_INT(server_start(&loop, ""), 0);
    char err[200], addr[128];
    snprintf(addr, sizeof addr, "unix:%s", sock_path);
    sf_redis_conn_opts_t o = {.addr = addr, .retry_min_ms = 10, .retry_max_ms = 400, .on_up = on_up,
                              .on_down = on_down};
    sf_redis_conn_t rc;
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), 0);
    sf_redis_conn_start(&rc);
    CHECK_EQ_INT(run(&loop), 0);
    CHECK_EQ_INT(T.ups, 5);
    CHECK_EQ_INT(T.dropped, 4);
    CHECK_EQ_INT(T.lost + T.refused, 0);
    /* Without AUTH the first command is the test's own: none was sent. */
    CHECK_EQ_INT(S.conns, 5);
    const int64_t want[] = {0, 10, 20, 40, 10};
    for (int k = 0; k < 5; k++) {
        CHECK_EQ_INT(T.wait_ms[k], want[k]);
        /* The wait really passed, by the loop's clock (the timers'). */
        if (k) CHECK(T.up_ms[k] - T.drop_ms[k - 1] >= want[k]);
    }
}

static void on_check(uv_timer_t *t) {
    sf_redis_conn_t *rc = t->data;
    if (rc->attempts < 5) return;
    T.end_ms = (int64_t)uv_now(t->loop);
    uv_close((uv_handle_t *)t, NULL);
    sf_redis_conn_close(rc, on_closed);
}

TEST(nothing_listening_backs_off_silently) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    memset(&T, 0, sizeof T);
    CHECK_EQ_INT(server_start(&loop, ""), 0); /* only so that on_closed has a server to close */
    char err[200], addr[128];
    snprintf(addr, sizeof addr, "unix:%s.none", sock_path);
    sf_redis_conn_opts_t o = {.addr = addr, .retry_min_ms = 5, .retry_max_ms = 20, .on_up = on_up, .on_down = on_down};
    sf_redis_conn_t rc;
    CHECK_EQ_INT(sf_redis_conn_init(&loop, &rc, &o, err, sizeof err), 0);
    sf_redis_conn_start(&rc);
    uv_timer_t check;
    uv_timer_init(&loop, &check);
    check.data = &rc;
    uv_timer_start(&check, on_check, 1, 1);
    int64_t t0 = (int64_t)uv_now(&loop); /* what the first wait is counted from */
    CHECK_EQ_INT(run(&loop), 0);
    CHECK(rc.attempts >= 5);
    CHECK_EQ_INT(rc.retry_ms, 20);
    CHECK(T.end_ms - t0 >= 5 + 10 + 20 + 20);
    CHECK_EQ_INT(T.ups + T.lost + T.dropped + T.refused, 0);
    CHECK_EQ_INT(T.closed, 1);
}

int main(void) {
    snprintf(sock_path, sizeof sock_path, "/tmp/sf-test-redis-conn-%d.sock", (int)getpid());
    snprintf(pw_file, sizeof pw_file, "/tmp/sf-test-redis-conn-%d.pw", (int)getpid());
    SF_RUN(addresses_and_options);
    SF_RUN(auth_first_refused_reread_lost_reconnected);
    SF_RUN(dropped_connections_back_off_until_reset);
    SF_RUN(nothing_listening_backs_off_silently);
    unlink(sock_path);
    unlink(pw_file);
    SF_DONE();
}
