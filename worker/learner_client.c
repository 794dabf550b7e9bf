/* learner_client.c: the worker's side of the learner protocol — fetch a
 * run's policy image (chunks reassembled and CRC-checked) and send rollouts,
 * on the worker's loop, never blocking it.
 *
 * One DEALER socket to sf-learner.  Replies of two kinds come back on it:
 * policy chunks (matched to the outstanding request of their run) and
 * rollout acks (answered in the order the batches were sent, since the
 * learner handles one socket in order).  A request unanswered within the
 * timeout fails its callbacks with SF_ETIMEDOUT; the job then fails and is
 * retried by the coordinator.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/net/blob.h"
#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "common/net/wire.h"
#include "common/net/zsock.h"
#include "worker/learner_client.h"

#define TIMEOUT_MS 120000     /* a policy version the learner has not reached by then */
#define ACK_TIMEOUT_MS 30000  /* rollouts the learner has not acknowledged */
#define RESEND_MS 5000        /* a PolicyGet without a chunk back: ask again (a restarted
                               * learner never saw it; asking twice is harmless) */

typedef struct pol_wait_s {
    uint32_t min_version;
    sf_lc_policy_cb cb;
    void *arg;
    struct pol_wait_s *next;
} pol_wait_t;

typedef struct pol_s {
    char run[16];
    sf_blob_asm_t asm_;
    uint8_t *blob;           /* the latest complete image */
    size_t blob_len;
    uint32_t version;
    uint64_t updates;
    int done;
    int requested;           /* a PolicyGet is out */
    uint32_t requested_min;
    uint64_t sent_ms, first_ms;  /* last request or chunk; first request */
    pol_wait_t *waiters;
    struct pol_s *next;
} pol_t;

typedef struct ack_wait_s {
    sf_lc_ack_cb cb;
    void *arg;
    uint64_t sent_ms;
    struct ack_wait_s *next;
} ack_wait_t;

struct sf_lc_s {
    uv_loop_t *loop;
    void *sock;
    sf_zsock_t zs;
    uv_timer_t timer;
    pol_t *pols;
    ack_wait_t *acks_head, *acks_tail;
    uint8_t *sbuf;
    size_t sbuf_cap;
    sf_lc_close_cb close_cb;
    int closing, pending_closes;
};

static uint64_t now_ms(sf_lc_t *lc) { return uv_now(lc->loop); }

static pol_t *pol_for(sf_lc_t *lc, const char *run) {
    for (pol_t *p = lc->pols; p; p = p->next)
        if (!strcmp(p->run, run)) return p;
    pol_t *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->run, sizeof p->run, "%s", run);
    p->next = lc->pols;
    lc->pols = p;
    return p;
}

static void send_env(sf_lc_t *lc, Sf__Envelope *e) {
    if (sf_wire_send(lc->sock, NULL, 0, e, &lc->sbuf, &lc->sbuf_cap) != 0)
        sf_warn("learner: send failed: %s", zmq_strerror(zmq_errno()));
}

static void request(sf_lc_t *lc, pol_t *p, uint32_t min_version) {
    Sf__PolicyGet g = SF__POLICY_GET__INIT;
    g.run = p->run;
    g.min_version = min_version;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_POLICY_GET;
    e.policy_get = &g;
    send_env(lc, &e);
    if (!p->requested) p->first_ms = now_ms(lc);
    p->requested = 1;
    p->requested_min = min_version;
    p->sent_ms = now_ms(lc);
}

/* Calls back every waiter the current image satisfies (or all, on error). */
static void settle(sf_lc_t *lc, pol_t *p, int status, const char *err) {
    pol_wait_t **pp = &p->waiters;
    uint32_t still = 0;
    int any_left = 0;
    while (*pp) {
        pol_wait_t *w = *pp;
        if (status != 0 || (p->blob && p->version >= w->min_version)) {
            *pp = w->next;
            w->cb(w->arg, status, err, p->version, p->blob, p->blob_len, p->done);
            free(w);
        } else {
            if (!any_left || w->min_version < still) still = w->min_version;
            any_left = 1;
            pp = &w->next;
        }
    }
    p->requested = 0;
    if (any_left) request(lc, p, still);
}

void sf_lc_get_policy(sf_lc_t *lc, const char *run, uint32_t min_version, sf_lc_policy_cb cb, void *arg) {
    pol_t *p = pol_for(lc, run);
    if (!p) { cb(arg, SF_ENOMEM, "out of memory", 0, NULL, 0, 0); return; }
    if (p->blob && p->version >= min_version) {
        cb(arg, 0, NULL, p->version, p->blob, p->blob_len, p->done);
        return;
    }
    pol_wait_t *w = calloc(1, sizeof *w);
    if (!w) { cb(arg, SF_ENOMEM, "out of memory", 0, NULL, 0, 0); return; }
    w->min_version = min_version;
    w->cb = cb;
    w->arg = arg;
    w->next = p->waiters;
    p->waiters = w;
    if (!p->requested || p->requested_min > min_version) request(lc, p, min_version);
}

void sf_lc_send_rollouts(sf_lc_t *lc, Sf__RolloutBatch *b, sf_lc_ack_cb cb, void *arg) {
    ack_wait_t *w = calloc(1, sizeof *w);
    if (!w) { cb(arg, SF_ENOMEM, 0, 0, 0, "out of memory"); return; }
    w->cb = cb;
    w->arg = arg;
    w->sent_ms = now_ms(lc);
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_ROLLOUTS;
    e.rollouts = b;
    send_env(lc, &e);
    if (lc->acks_tail) lc->acks_tail->next = w;
    else lc->acks_head = w;
    lc->acks_tail = w;
}

static void on_chunk(sf_lc_t *lc, const Sf__PolicyChunk *c) {
    pol_t *p = pol_for(lc, c->run);
    if (!p) return;
    if (c->count == 0) {
        settle(lc, p, SF_ENOTFOUND, c->error && *c->error ? c->error : "the learner has no policy");
        return;
    }
    char err[256];
    int k = sf_blob_asm_add(&p->asm_, c->version, c->index, c->count, c->total_len, c->crc32, c->data.data,
                            c->data.len, err, sizeof err);
    if (k < 0) {
        sf_warn("learner: policy %s v%u: %s", c->run, c->version, err);
        settle(lc, p, SF_EFORMAT, err);
        return;
    }
    p->sent_ms = now_ms(lc);
    if (k == 0) return;
    if (p->blob && c->version < p->version) {
        /* A second stream of an older version (after a resent request). */
        uint8_t *old;
        size_t ol;
        sf_blob_asm_take(&p->asm_, &old, &ol);
        free(old);
        return;
    }
    free(p->blob);
    sf_blob_asm_take(&p->asm_, &p->blob, &p->blob_len);
    p->version = c->version;
    p->updates = c->updates;
    p->done = c->done;
    sf_debug("learner: policy %s v%u (%zu bytes)", p->run, p->version, p->blob_len);
    settle(lc, p, 0, NULL);
}

static void on_ack(sf_lc_t *lc, const Sf__RolloutAck *a) {
    ack_wait_t *w = lc->acks_head;
    if (!w) return;
    lc->acks_head = w->next;
    if (!lc->acks_head) lc->acks_tail = NULL;
    w->cb(w->arg, *a->error ? SF_ESTATE : 0, a->accepted, a->dropped_stale, a->version, *a->error ? a->error : NULL);
    free(w);
}

static void on_readable(sf_zsock_t *zs) {
    sf_lc_t *lc = zs->data;
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n = 0;
    for (; n < 1024; n++) {
        if (zmq_msg_recv(&m, lc->sock, ZMQ_DONTWAIT) < 0) break;
        char err[256];
        Sf__Envelope *e = NULL;
        if (sf_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &e, err, sizeof err) != 0) {
            sf_warn("learner: dropped a bad frame: %s", err);
            continue;
        }
        if (e->body_case == SF__ENVELOPE__BODY_POLICY_CHUNK) on_chunk(lc, e->policy_chunk);
        else if (e->body_case == SF__ENVELOPE__BODY_ROLLOUT_ACK) on_ack(lc, e->rollout_ack);
        sf_wire_free(e);
    }
    zmq_msg_close(&m);
    if (n == 1024) sf_zsock_backlog(zs);
}

/* Every second: fail what the learner left unanswered too long. */
static void on_timer(uv_timer_t *t) {
    sf_lc_t *lc = t->data;
    uint64_t now = now_ms(lc);
    while (lc->acks_head && now - lc->acks_head->sent_ms > ACK_TIMEOUT_MS) {
        ack_wait_t *w = lc->acks_head;
        lc->acks_head = w->next;
        if (!lc->acks_head) lc->acks_tail = NULL;
        w->cb(w->arg, SF_ETIMEDOUT, 0, 0, 0, "the learner did not acknowledge the rollouts");
        free(w);
    }
    for (pol_t *p = lc->pols; p; p = p->next) {
        if (!p->requested) continue;
        if (now - p->first_ms > TIMEOUT_MS) settle(lc, p, SF_ETIMEDOUT, "the learner did not send the policy");
        else if (now - p->sent_ms > RESEND_MS) {
            sf_blob_asm_reset(&p->asm_);
            request(lc, p, p->requested_min);
        }
    }
}

/* Process-wide, like the worker's config it comes from; read on the loop
 * thread only. */
static sf_curve_client_t g_curve;

void sf_lc_set_curve(const sf_curve_client_t *cc) {
    sf_curve_wipe(&g_curve.kp);
    memset(&g_curve, 0, sizeof g_curve);
    if (cc && cc->on) g_curve = *cc;
}

int sf_lc_init(uv_loop_t *loop, void *zctx, const char *endpoint, sf_lc_t **out) {
    *out = NULL;
    sf_lc_t *lc = calloc(1, sizeof *lc);
    if (!lc) return SF_ENOMEM;
    lc->loop = loop;
    lc->sock = zmq_socket(zctx, ZMQ_DEALER);
    char err[300] = "";
    if (!lc->sock || sf_curve_client(lc->sock, &g_curve, err, sizeof err) != 0 || sf_wire_sockopts(lc->sock) != 0 ||
        zmq_connect(lc->sock, endpoint) != 0) {
        if (*err) sf_error("learner: %s", err);
        if (lc->sock) zmq_close(lc->sock);
        free(lc);
        return SF_EIO;
    }
    lc->zs.data = lc;
    sf_zsock_init(loop, &lc->zs, lc->sock, on_readable);
    uv_timer_init(loop, &lc->timer);
    lc->timer.data = lc;
    uv_timer_start(&lc->timer, on_timer, 1000, 1000);
    *out = lc;
    return 0;
}

static void maybe_free(sf_lc_t *lc) {
    if (--lc->pending_closes > 0) return;
    zmq_close(lc->sock);
    while (lc->pols) {
        pol_t *p = lc->pols;
        lc->pols = p->next;
        settle(lc, p, SF_ECANCELED, "worker stopping");
        sf_blob_asm_reset(&p->asm_);
        free(p->blob);
        free(p);
    }
    while (lc->acks_head) {
        ack_wait_t *w = lc->acks_head;
        lc->acks_head = w->next;
        w->cb(w->arg, SF_ECANCELED, 0, 0, 0, "worker stopping");
        free(w);
    }
    free(lc->sbuf);
    sf_lc_close_cb cb = lc->close_cb;
    free(lc);
    if (cb) cb();
}

static void on_zs_closed(sf_zsock_t *zs) { maybe_free(zs->data); }
static void on_timer_closed(uv_handle_t *h) { maybe_free(h->data); }

void sf_lc_close(sf_lc_t *lc, sf_lc_close_cb cb) {
    if (!lc || lc->closing) return;
    lc->closing = 1;
    lc->close_cb = cb;
    lc->pending_closes = 2;
    sf_zsock_close(&lc->zs, on_zs_closed);
    uv_close((uv_handle_t *)&lc->timer, on_timer_closed);
}
