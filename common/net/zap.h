/* zap.h: a server's CURVE client authentication — a ZAP handler (ZeroMQ
 * RFC 27) on the daemon's libuv loop.
 *
 * libzmq asks the handler bound to inproc://zeromq.zap.01 in the socket's
 * context about every CURVE handshake on a server socket; it answers "200"
 * when the client's public key is one of the allowed keys (the *.pub files
 * of one folder) and "400" otherwise.  The handler is a REP socket watched
 * like every other socket (sf_zsock), so a handshake never blocks the
 * loop and the loop never blocks on a handshake.  Each refused key is
 * logged with its Z85 public key at most once a minute and counted by
 * domain (the server socket's ZMQ_ZAP_DOMAIN) for the metrics.
 *
 * Start it before binding any CURVE server socket of the context: until a
 * handler is bound, libzmq lets every CURVE client in.
 */
#ifndef SF_ZAP_H
#define SF_ZAP_H

#include <stdint.h>
#include <uv.h>

#include "common/runtime/metrics.h"

typedef struct sf_zap_s sf_zap_t;

/* Loads the allowed keys of allowed_dir (an error fails the call), binds
 * the handler in zctx (borrowed; outlives the handler) and serves it on
 * loop.  `domains` (NULL-terminated) are the ZAP domains of the daemon's
 * server sockets: each gets its counters in the metrics from the start. */
int sf_zap_start(uv_loop_t *loop, void *zctx, const char *allowed_dir, const char *const *domains, sf_zap_t **out,
                 char *err, size_t n);

/* Reads the allowed keys again (SIGHUP).  On an error the keys loaded
 * before stay in force; either way the outcome is logged. */
int sf_zap_reload(sf_zap_t *z);

/* Keys allowed now. */
int sf_zap_allowed(const sf_zap_t *z);

/* Handshakes refused so far, all domains. */
uint64_t sf_zap_refused(const sf_zap_t *z);

/* Writes PREFIX_curve_refused_total{domain}, PREFIX_curve_accepted_total{domain}
 * and PREFIX_curve_allowed_keys; nothing when z is NULL. */
void sf_zap_metrics(const sf_zap_t *z, sf_mbuf_t *m, const char *prefix);

/* Stops serving; the socket is closed and the memory freed once the loop
 * has closed the handles (run the loop before zmq_ctx_term). */
void sf_zap_close(sf_zap_t *z);

#endif
