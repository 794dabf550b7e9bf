/* redis_uv.h: hiredis' async context on a libuv loop.
 *
 * Debian's hiredis 0.14 ships a libuv adapter that ignores a poll callback
 * with an error status; libuv reports a socket error (a Redis that died with
 * our writes in flight: EPIPE, ECONNRESET) exactly that way and stops the
 * poll, so the connection would hang forever, never reported as lost.  This
 * adapter hands such an event to hiredis, which then sees the error and
 * disconnects; everything else is the usual hook set. */
#ifndef SF_REDIS_UV_H
#define SF_REDIS_UV_H

#include <hiredis/async.h>
#include <uv.h>

/* Attaches ac to loop.  Returns REDIS_OK or REDIS_ERR. */
int sf_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop);

#endif
