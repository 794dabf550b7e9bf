/* learner_client.h: a worker's link to sf-learner (see learner_client.c).
 * Everything here runs on the worker's loop thread; callbacks too. */
#ifndef SF_LEARNER_CLIENT_H
#define SF_LEARNER_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/net/curve.h"
#include "proto/shiftforge.pb-c.h"

typedef struct sf_lc_s sf_lc_t;

/* status 0: `blob` (len bytes, a safetensors image of policy `version`) is
 * valid only during the callback — copy or load it there.  `done` says the
 * learner reached the run's target number of updates.  Otherwise status is a
 * negative SF_E… code and err says why. */
typedef void (*sf_lc_policy_cb)(void *arg, int status, const char *err, uint32_t version, const uint8_t *blob,
                                size_t len, int done);
typedef void (*sf_lc_ack_cb)(void *arg, int status, uint32_t accepted, uint32_t stale, uint32_t version,
                             const char *err);
typedef void (*sf_lc_close_cb)(void);

/* CURVE keys for every learner client made after this call (copied; the
 * worker sets them once at start from its config).  NULL or cc->on == 0:
 * plain connections. */
void sf_lc_set_curve(const sf_curve_client_t *cc);

/* Connects a DEALER to `endpoint` on zctx (borrowed), with the keys of
 * sf_lc_set_curve() if any. */
int sf_lc_init(uv_loop_t *loop, void *zctx, const char *endpoint, sf_lc_t **out);

/* Calls cb once policy `run` at a version >= min_version is here (at once if
 * it already is).  Requests for one run share one transfer. */
void sf_lc_get_policy(sf_lc_t *lc, const char *run, uint32_t min_version, sf_lc_policy_cb cb, void *arg);

/* Sends a batch (borrowed: it is packed before this returns); cb gets the
 * learner's acknowledgement. */
void sf_lc_send_rollouts(sf_lc_t *lc, Sf__RolloutBatch *b, sf_lc_ack_cb cb, void *arg);

/* Fails whatever is pending with SF_ECANCELED, closes, frees; cb (may be
 * NULL) runs once the memory is gone. */
void sf_lc_close(sf_lc_t *lc, sf_lc_close_cb cb);

#endif
