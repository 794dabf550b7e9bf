/* Unit tests for common/zsock: a ZeroMQ socket on a libuv loop sees every
 * message, including those that arrive while the callback stops early and
 * those queued behind a send (the edge-triggered ZMQ_FD cases). */
#include <uv.h>
#include <zmq.h>

#include "common/net/zsock.h"
#include "sf_test.h"

typedef struct {
    int received, budget, target;
    void *peer;
    uv_timer_t stop;
} state_t;

static void on_readable(sf_zsock_t *zs) {
    state_t *st = zs->data;
    char buf[64];
    int n = 0;
    /* Take at most `budget` per call, as the daemons do for fairness. */
    while (n < st->budget && zmq_recv(zs->sock, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) {
        n++;
        st->received++;
        /* Reply, which consumes the socket's edge on some transports. */
        zmq_send(zs->sock, "ack", 3, ZMQ_DONTWAIT);
    }
    if (n == st->budget) sf_zsock_backlog(zs);
    if (st->received == st->target) uv_stop(uv_default_loop());
}

static void on_timeout(uv_timer_t *t) { (void)t; uv_stop(uv_default_loop()); }
static void on_closed(sf_zsock_t *zs) { (void)zs; }

TEST(drains_everything_with_a_budget) {
    void *ctx = zmq_ctx_new();
    void *a = zmq_socket(ctx, ZMQ_PAIR), *b = zmq_socket(ctx, ZMQ_PAIR);
    CHECK(zmq_bind(a, "inproc://zsock-test") == 0);
    CHECK(zmq_connect(b, "inproc://zsock-test") == 0);
    /* Queue everything before the loop runs: no further edge will come. */
    for (int i = 0; i < 1000; i++) zmq_send(b, "hello", 5, 0);
    uv_loop_t *loop = uv_default_loop();
    static sf_zsock_t zs;
    state_t st = {0, 7, 1000, b, {0}};
    zs.data = &st;
    CHECK(sf_zsock_init(loop, &zs, a, on_readable) == 0);
    uv_timer_init(loop, &st.stop);
    uv_timer_start(&st.stop, on_timeout, 5000, 0);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(st.received, 1000);
    /* The replies all came back through the peer. */
    char buf[8];
    int acks = 0;
    while (zmq_recv(b, buf, sizeof buf, ZMQ_DONTWAIT) >= 0) acks++;
    CHECK_EQ_INT(acks, 1000);
    sf_zsock_close(&zs, on_closed);
    uv_close((uv_handle_t *)&st.stop, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    CHECK_EQ_INT(uv_loop_close(loop), 0);
    zmq_close(a);
    zmq_close(b);
    zmq_ctx_term(ctx);
}

TEST(endpoint_lists_are_split_and_taken_in_turn) {
    char ep[16];
    CHECK_EQ_INT(sf_endpoints_count("ipc:///a"), 1);
    CHECK_EQ_INT(sf_endpoints_count("tcp://a:1,tcp://b:2,ipc:///c"), 3);
    sf_endpoint_at("ipc:///a", 5, ep, sizeof ep);
    CHECK(!strcmp(ep, "ipc:///a"));
    sf_endpoint_at("tcp://a:1,tcp://b:2,ipc:///c", 1, ep, sizeof ep);
    CHECK(!strcmp(ep, "tcp://b:2"));
    sf_endpoint_at("tcp://a:1,tcp://b:2,ipc:///c", 2, ep, sizeof ep);
    CHECK(!strcmp(ep, "ipc:///c"));
    sf_endpoint_at("tcp://a:1,tcp://b:2,ipc:///c", 3, ep, sizeof ep); /* modulo: the first again */
    CHECK(!strcmp(ep, "tcp://a:1"));
    sf_endpoint_at("tcp://a-very-long-host:5555,x", 0, ep, sizeof ep); /* cut to the buffer */
    CHECK(!strcmp(ep, "tcp://a-very-lo"));
}

int main(void) {
    SF_RUN(endpoint_lists_are_split_and_taken_in_turn);
    SF_RUN(drains_everything_with_a_budget);
    SF_DONE();
}
