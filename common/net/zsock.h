/* zsock.h: a ZeroMQ socket joined to a libuv loop.
 *
 * ZMQ_FD is edge-triggered: it signals that ZMQ_EVENTS may have changed, not
 * that a message is waiting, and a send can consume the edge.  So the socket
 * is watched with uv_poll on ZMQ_FD *and* re-checked in a uv_prepare hook
 * before the loop sleeps; whenever ZMQ_EVENTS has ZMQ_POLLIN the readable
 * callback runs.  The callback must receive with ZMQ_DONTWAIT; it may stop
 * early (fairness) and will be called again in the same loop turn's prepare.
 *
 * Handles are caller-allocated; memory of the sf_zsock_t may be freed only
 * in the close callback (libuv rules).
 */
#ifndef SF_ZSOCK_H
#define SF_ZSOCK_H

#include <uv.h>

typedef struct sf_zsock_s sf_zsock_t;
typedef void (*sf_zsock_cb)(sf_zsock_t *zs);
typedef void (*sf_zsock_close_cb)(sf_zsock_t *zs);

struct sf_zsock_s {
    void *data;              /* user data */
    void *sock;              /* the ZeroMQ socket (borrowed) */
    sf_zsock_cb on_readable;
    /* private */
    uv_poll_t poll_;
    uv_prepare_t prepare_;
    uv_idle_t idle_;         /* keeps the loop from blocking while backlogged */
    int closing_, pending_closes_;
    sf_zsock_close_cb close_cb_;
};

/* Starts watching `sock` (borrowed; close it after the close callback). */
int sf_zsock_init(uv_loop_t *loop, sf_zsock_t *zs, void *sock, sf_zsock_cb on_readable);

/* 1 if ZMQ_EVENTS says a message can be read now. */
int sf_zsock_readable(sf_zsock_t *zs);

/* The callback stopped before the socket was empty: run it again soon
 * without letting the loop block. */
void sf_zsock_backlog(sf_zsock_t *zs);

/* Stops watching; cb runs once all libuv handles are closed. */
void sf_zsock_close(sf_zsock_t *zs, sf_zsock_close_cb cb);

/* Endpoint lists: "ep1,ep2,…" (a leader coordinator and its standbys).
 * The number of endpoints in the list (1 for a plain endpoint), and the
 * i-th one (0-based, i taken modulo that number) copied into out, cut to
 * n - 1 bytes. */
int sf_endpoints_count(const char *list);
void sf_endpoint_at(const char *list, int i, char *out, size_t n);

#endif
