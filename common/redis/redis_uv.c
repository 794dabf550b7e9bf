/* redis_uv.c: hiredis on libuv (see redis_uv.h for why it is ours). */
#include "common/redis/redis_uv.h"

#include <stdlib.h>

typedef struct {
    redisAsyncContext *ac;
    uv_poll_t poll;
    int events;
} ev_t;

static void on_poll(uv_poll_t *h, int status, int events) {
    ev_t *e = h->data;
    /* On an error, let hiredis try what it was waiting for: the read or
     * write fails and hiredis disconnects with the reason. */
    int ev = status < 0 ? e->events : events;
    if (e->ac && (ev & UV_READABLE)) redisAsyncHandleRead(e->ac);
    if (e->ac && (ev & UV_WRITABLE)) redisAsyncHandleWrite(e->ac);
}

static void update(ev_t *e) {
    if (e->events) uv_poll_start(&e->poll, e->events, on_poll);
    else uv_poll_stop(&e->poll);
}

static void add_read(void *p) { ev_t *e = p; e->events |= UV_READABLE; update(e); }
static void del_read(void *p) { ev_t *e = p; e->events &= ~UV_READABLE; update(e); }
static void add_write(void *p) { ev_t *e = p; e->events |= UV_WRITABLE; update(e); }
static void del_write(void *p) { ev_t *e = p; e->events &= ~UV_WRITABLE; update(e); }

static void on_closed(uv_handle_t *h) { free(h->data); }

static void cleanup(void *p) {
    ev_t *e = p;
    e->ac = NULL;
    uv_close((uv_handle_t *)&e->poll, on_closed);
}

int sf_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
    if (ac->ev.data) return REDIS_ERR;
    ev_t *e = calloc(1, sizeof *e);
    if (!e) return REDIS_ERR;
    if (uv_poll_init_socket(loop, &e->poll, ac->c.fd) != 0) {
        free(e);
        return REDIS_ERR;
    }
    e->ac = ac;
    e->poll.data = e;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = e;
    return REDIS_OK;
}
