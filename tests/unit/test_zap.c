/* Unit tests for common/zap: on a libuv loop, a CURVE server lets in the
 * client whose public key is in the allowed folder, refuses (and counts)
 * the other, and lets it in after the folder is reloaded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>
#include <zmq.h>

#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "common/net/zap.h"
#include "sf_test.h"

static char dir[64], allowed[96];
static void *srv;
static int got[2];           /* messages the server received from client 0 / 1 */
static sf_zap_t *zap;
static uint64_t want_refused;
static int want_msgs;
static int timed_out;

static void on_tick(uv_timer_t *t) {
    char rid[256], buf[16];
    for (;;) {
        int n = zmq_recv(srv, rid, sizeof rid, ZMQ_DONTWAIT);
        if (n < 0) break;
        n = zmq_recv(srv, buf, sizeof buf, 0);
        if (n == 1 && (buf[0] == '0' || buf[0] == '1')) got[buf[0] - '0']++;
    }
    uint64_t *ticks = t->data;
    if ((got[0] + got[1] >= want_msgs && sf_zap_refused(zap) >= want_refused) || ++*ticks > 500) {
        timed_out = *ticks > 500;
        uv_timer_stop(t);
        uv_stop(t->loop);
    }
}

/* Runs the loop until want_msgs messages and want_refused refusals, or 5 s. */
static void run_until(uv_loop_t *loop, int msgs, uint64_t refused) {
    uv_timer_t t;
    uint64_t ticks = 0;
    want_msgs = msgs;
    want_refused = refused;
    uv_timer_init(loop, &t);
    t.data = &ticks;
    uv_timer_start(&t, on_tick, 10, 10);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static void *client(void *ctx, const char *name, const char *ep) {
    char k[160], s[160], err[600];
    snprintf(k, sizeof k, "%s/%s.key", dir, name);
    snprintf(s, sizeof s, "%s/srv.pub", dir);
    sf_curve_client_t cc;
    if (sf_curve_client_load(k, s, "k", "s", &cc, err, sizeof err) != 0) {
        fprintf(stderr, "%s\n", err);
        return NULL;
    }
    void *c = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(c, ZMQ_LINGER, &linger, sizeof linger);
    if (sf_curve_client(c, &cc, err, sizeof err) != 0 || zmq_connect(c, ep) != 0) {
        zmq_close(c);
        return NULL;
    }
    return c;
}

TEST(allowed_refused_reloaded) {
    char err[600], pre[160], pub[SF_CURVE_KEYLEN + 1];
    snprintf(pre, sizeof pre, "%s/srv", dir);
    CHECK_EQ_INT(sf_curve_keygen(pre, pub, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/good", dir);
    CHECK_EQ_INT(sf_curve_keygen(pre, pub, err, sizeof err), 0);
    snprintf(pre, sizeof pre, "%s/bad", dir);
    char badpub[SF_CURVE_KEYLEN + 1];
    CHECK_EQ_INT(sf_curve_keygen(pre, badpub, err, sizeof err), 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "cp %s/good.pub %s/", dir, allowed);
    CHECK_EQ_INT(system(cmd), 0);

    uv_loop_t *loop = uv_default_loop();
    void *ctx = zmq_ctx_new();
    const char *domains[] = {"workers", NULL};
    CHECK_EQ_INT(sf_zap_start(loop, ctx, "/nonexistent-folder", domains, &zap, err, sizeof err) != 0, 1);
    CHECK(strstr(err, "/nonexistent-folder"));
    CHECK_EQ_INT(sf_zap_start(loop, ctx, allowed, domains, &zap, err, sizeof err), 0);
    CHECK_EQ_INT(sf_zap_allowed(zap), 1);
    sf_curve_keypair_t skp;
    snprintf(pre, sizeof pre, "%s/srv.key", dir);
    CHECK_EQ_INT(sf_curve_load_keypair(pre, &skp, err, sizeof err), 0);
    srv = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 0;
    zmq_setsockopt(srv, ZMQ_LINGER, &linger, sizeof linger);
    CHECK_EQ_INT(sf_curve_server(srv, &skp, "workers", err, sizeof err), 0);
    char ep[128];
    snprintf(ep, sizeof ep, "ipc://%s/zap.ipc", dir);
    CHECK_EQ_INT(zmq_bind(srv, ep), 0);

    void *good = client(ctx, "good", ep), *bad = client(ctx, "bad", ep);
    CHECK(good && bad);
    zmq_send(good, "0", 1, ZMQ_DONTWAIT);
    zmq_send(bad, "1", 1, ZMQ_DONTWAIT);
    run_until(loop, 1, 1);
    CHECK_EQ_INT(timed_out, 0);
    CHECK_EQ_INT(got[0], 1);
    CHECK_EQ_INT(got[1], 0);
    CHECK(sf_zap_refused(zap) >= 1);
    sf_mbuf_t m = {0};
    sf_zap_metrics(zap, &m, "sf_test");
    CHECK(m.buf && strstr(m.buf, "sf_test_curve_refused_total{domain=\"workers\"} "));
    CHECK(strstr(m.buf, "sf_test_curve_accepted_total{domain=\"workers\"} 1\n"));
    CHECK(strstr(m.buf, "sf_test_curve_allowed_keys 1\n"));
    free(m.buf);

    /* A broken .pub makes the reload fail and keeps the keys in force. */
    snprintf(cmd, sizeof cmd, "echo 'public = nope' > %s/broken.pub", allowed);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK(sf_zap_reload(zap) != 0);
    CHECK_EQ_INT(sf_zap_allowed(zap), 1);
    snprintf(cmd, sizeof cmd, "rm %s/broken.pub && cp %s/bad.pub %s/", allowed, dir, allowed);
    CHECK_EQ_INT(system(cmd), 0);
    CHECK_EQ_INT(sf_zap_reload(zap), 0);
    CHECK_EQ_INT(sf_zap_allowed(zap), 2);
    /* A new connection with the key allowed now gets through. */
    zmq_close(bad);
    bad = client(ctx, "bad", ep);
    zmq_send(bad, "1", 1, ZMQ_DONTWAIT);
    run_until(loop, 2, 0);
    CHECK_EQ_INT(got[1], 1);

    zmq_close(good);
    zmq_close(bad);
    zmq_close(srv);
    sf_zap_close(zap);
    uv_run(loop, UV_RUN_DEFAULT);
    zmq_ctx_term(ctx);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/sf-test-zap-%d", (int)getpid());
    snprintf(allowed, sizeof allowed, "%s/allowed", dir);
    mkdir(dir, 0700);
    mkdir(allowed, 0700);
    SF_RUN(allowed_refused_reloaded);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
    SF_DONE();
}
