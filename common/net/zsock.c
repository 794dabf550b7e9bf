/* zsock.c: ZeroMQ sockets on a libuv loop (see zsock.h for the edge rules). */
#include "common/net/zsock.h"

#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "common/runtime/error.h"

int sf_zsock_readable(sf_zsock_t *zs) {
    int ev = 0;
    size_t sz = sizeof ev;
    if (zmq_getsockopt(zs->sock, ZMQ_EVENTS, &ev, &sz) != 0) return 0;
    return (ev & ZMQ_POLLIN) != 0;
}

static void dispatch(sf_zsock_t *zs) {
    if (zs->closing_) return;
    uv_idle_stop(&zs->idle_);
    if (sf_zsock_readable(zs)) zs->on_readable(zs);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    (void)status;
    (void)events;
    dispatch(h->data);
}

static void on_prepare(uv_prepare_t *h) { dispatch(h->data); }

static void on_idle(uv_idle_t *h) { (void)h; /* its presence alone makes the poll not block */ }

void sf_zsock_backlog(sf_zsock_t *zs) {
    if (!zs->closing_) uv_idle_start(&zs->idle_, on_idle);
}

int sf_zsock_init(uv_loop_t *loop, sf_zsock_t *zs, void *sock, sf_zsock_cb on_readable) {
    int fd;
    size_t sz = sizeof fd;
    if (zmq_getsockopt(sock, ZMQ_FD, &fd, &sz) != 0) return SF_EIO;
    zs->sock = sock;
    zs->on_readable = on_readable;
    zs->closing_ = 0;
    if (uv_poll_init(loop, &zs->poll_, fd) != 0) return SF_EIO;
    uv_prepare_init(loop, &zs->prepare_);
    uv_idle_init(loop, &zs->idle_);
    zs->poll_.data = zs->prepare_.data = zs->idle_.data = zs;
    uv_poll_start(&zs->poll_, UV_READABLE, on_poll);
    uv_prepare_start(&zs->prepare_, on_prepare);
    return 0;
}

static void on_handle_closed(uv_handle_t *h) {
    sf_zsock_t *zs = h->data;
    if (--zs->pending_closes_ == 0 && zs->close_cb_) zs->close_cb_(zs);
}

void sf_zsock_close(sf_zsock_t *zs, sf_zsock_close_cb cb) {
    if (zs->closing_) return;
    zs->closing_ = 1;
    zs->close_cb_ = cb;
    zs->pending_closes_ = 3;
    uv_close((uv_handle_t *)&zs->poll_, on_handle_closed);
    uv_close((uv_handle_t *)&zs->prepare_, on_handle_closed);
    uv_close((uv_handle_t *)&zs->idle_, on_handle_closed);
}

int sf_endpoints_count(const char *list) {
    int n = 1;
    for (; *list; list++) n += *list == ',';
    return n;
}

void sf_endpoint_at(const char *list, int i, char *out, size_t n) {
    for (i %= sf_endpoints_count(list); i > 0; i--) list = strchr(list, ',') + 1;
    size_t len = strcspn(list, ",");
    snprintf(out, n, "%.*s", (int)(len < n ? len : n - 1), list);
}
