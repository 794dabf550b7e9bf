/* coord_harness.c: see coord_harness.h.  The sf_store_* functions here stand
 * in for coordinator/store.c: each records its fact; none talks to Redis. */
#include "tests/unit/coord_harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/runtime/log.h"

int64_t th_now_ms;
th_fact_t th_facts[TH_MAX_FACTS];
int th_n_facts;

static int64_t th_clock(void) { return th_now_ms; }

/* ---- the store, recorded ---------------------------------------------------- */

static void fact(int type, const sf_run_t *r, uint32_t idx, const char *what) {
    if (th_n_facts == TH_MAX_FACTS) {
        fprintf(stderr, "coord_harness: more than %d facts; raise TH_MAX_FACTS\n", TH_MAX_FACTS);
        abort();
    }
    th_fact_t *f = &th_facts[th_n_facts++];
    f->type = type;
    f->run = r ? r->num : 0;
    f->idx = idx;
    snprintf(f->what, sizeof f->what, "%s", what ? what : "");
}

int th_count(int type, uint32_t run) {
    int n = 0;
    for (int i = 0; i < th_n_facts; i++) n += th_facts[i].type == type && (!run || th_facts[i].run == run);
    return n;
}

int th_has_event(uint32_t run, const char *type) {
    for (int i = 0; i < th_n_facts; i++)
        if (th_facts[i].type == TH_EVENT && th_facts[i].run == run && !strcmp(th_facts[i].what, type)) return 1;
    return 0;
}

void sf_store_run_saved(sf_coord_t *c, sf_run_t *r, int with_spec) { (void)c, (void)with_spec; fact(TH_SAVED, r, 0, NULL); }
void sf_store_job_leased(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *worker, int64_t deadline_ms) {
    (void)c, (void)deadline_ms;
    fact(TH_LEASED, r, idx, worker);
}
void sf_store_job_requeued(sf_coord_t *c, sf_run_t *r, uint32_t idx) { (void)c; fact(TH_REQUEUED, r, idx, NULL); }
void sf_store_job_skipped(sf_coord_t *c, sf_run_t *r, uint32_t idx) { (void)c; fact(TH_SKIPPED, r, idx, NULL); }
void sf_store_job_done(sf_coord_t *c, sf_run_t *r, uint32_t idx, const void *payload, size_t len) {
    (void)c, (void)payload, (void)len;
    fact(TH_DONE, r, idx, NULL);
}
void sf_store_job_dead(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *error, const char *worker) {
    (void)c, (void)error, (void)worker;
    fact(TH_DEAD, r, idx, NULL);
    fact(TH_EVENT, r, idx, "dead_letter"); /* store.c records the event with the dead job */
}
void sf_store_event(sf_coord_t *c, sf_run_t *r, const char *type, const char *detail) {
    (void)c, (void)detail;
    fact(TH_EVENT, r, 0, type);
}
void sf_store_worker(sf_coord_t *c, sf_worker_t *w, int gone) {
    (void)c;
    if (gone) fact(TH_WORKER_GONE, NULL, 0, w->id);
    w->dirty = 0;
}
void sf_store_ack_reply(sf_coord_t *c, const void *rid, size_t rid_len, uint64_t tag, uint32_t run) {
    (void)c, (void)rid, (void)rid_len, (void)tag, (void)run;
}
void sf_store_info(const sf_coord_t *c, cJSON *out) { (void)c, (void)out; }
size_t sf_store_pending_bytes(const sf_coord_t *c) { (void)c; return 0; }

/* Every done and dead job recorded since the last call, handed to the runs
 * as main.c's sf_coord_on_acked() does: counted, then the run's progress. */
static int acked_upto;
void th_ack(sf_coord_t *c) {
    for (; acked_upto < th_n_facts; acked_upto++) {
        const th_fact_t *f = &th_facts[acked_upto];
        if (f->type != TH_DONE && f->type != TH_DEAD) continue;
        sf_run_t *r = sf_runs_find_num(c, f->run);
        if (!r || !r->jobs || f->idx >= r->n_jobs) continue;
        sf_run_count_acked(c, r, f->idx, f->type == TH_DEAD);
        sf_run_progress(c, r);
    }
}

/* ---- the coordinator -------------------------------------------------------- */

static void *bind_router(void *ctx, const char *ep) {
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int one = 1;
    if (!s || sf_wire_sockopts(s) || zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one) || zmq_bind(s, ep)) {
        fprintf(stderr, "coord_harness: cannot bind %s: %s\n", ep, zmq_strerror(zmq_errno()));
        if (s) zmq_close(s);
        return NULL;
    }
    int ms = 10000;
    zmq_setsockopt(s, ZMQ_RCVTIMEO, &ms, sizeof ms);
    return s;
}

static char worker_ep[64];

int th_coord_init(sf_coord_t *c, int64_t t0_ms) {
    static int n;
    memset(c, 0, sizeof *c);
    sf_log_init("test", "error", 0);
    th_n_facts = 0;
    acked_upto = 0;
    th_now_ms = t0_ms;
    c->mono_ms = th_clock;
    c->start_mono_ms = th_now_ms;
    c->epoch = 1;
    /* main.c's defaults (docs/configuration.md). */
    c->cfg.heartbeat_ms = 1000;
    c->cfg.liveness = 3;
    c->cfg.lease_ms = 600000;
    c->cfg.max_attempts = 3;
    c->cfg.retry_base_ms = 500;
    c->cfg.retry_max_ms = 60000;
    c->cfg.drain_timeout_ms = 10000;
    c->cfg.max_jobs_per_run = 50000000;
    c->cfg.max_runs = 1000;
    c->cfg.no_worker_timeout_ms = 600000;
    c->cfg.max_jobs_held = 200000000;
    c->cfg.finished_hold_ms = 2000;
    c->cfg.max_finished_runs = 1000;
    c->workers = calloc(SF_MAX_WORKERS, sizeof *c->workers);
    c->zctx = zmq_ctx_new();
    if (!c->workers || !c->zctx) return -1;
    char cep[64];
    n++;
    snprintf(worker_ep, sizeof worker_ep, "inproc://coord-workers-%d", n);
    snprintf(cep, sizeof cep, "inproc://coord-clients-%d", n);
    c->wsock = bind_router(c->zctx, worker_ep);
    c->csock = bind_router(c->zctx, cep);
    return c->wsock && c->csock ? 0 : -1;
}

void th_coord_free(sf_coord_t *c) {
    while (c->runs) {
        sf_run_t *r = c->runs;
        c->runs = r->next;
        sf_run_free(r);
    }
    if (c->wsock) zmq_close(c->wsock);
    if (c->csock) zmq_close(c->csock);
    if (c->zctx) zmq_ctx_term(c->zctx);
    free(c->workers);
    free(c->sbuf);
    memset(c, 0, sizeof *c);
}

sf_run_t *th_submit(sf_coord_t *c, const char *spec_json, uint32_t num) {
    sf_run_t *r = NULL;
    char err[512];
    if (sf_run_create(c, spec_json, num, &r, err, sizeof err) != 0) {
        fprintf(stderr, "coord_harness: spec refused: %s\n", err);
        return NULL;
    }
    sf_runs_insert(c, r);
    sf_store_run_saved(c, r, 1);
    sf_store_event(c, r, "submitted", r->name);
    c->dispatch_dirty = 1;
    sf_broker_pump(c);
    return r;
}

void th_tick(sf_coord_t *c, int64_t to_ms) {
    while (th_now_ms < to_ms) {
        th_now_ms = to_ms - th_now_ms > 100 ? th_now_ms + 100 : to_ms;
        sf_broker_cron(c);
        c->dispatch_dirty = 1;
        sf_broker_pump(c);
    }
}

/* ---- fake workers ----------------------------------------------------------- */

/* One frame from the worker ROUTER into the broker, as main.c's drain(). */
static int drain_one(sf_coord_t *c) {
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    int ok = zmq_msg_recv(&rid, c->wsock, 0) >= 0 && zmq_msg_more(&rid) && zmq_msg_recv(&body, c->wsock, 0) >= 0;
    if (ok) sf_broker_on_frame(c, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body), zmq_msg_size(&body));
    else fprintf(stderr, "coord_harness: no frame reached the coordinator: %s\n", zmq_strerror(zmq_errno()));
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
    sf_broker_pump(c);
    return ok ? 0 : -1;
}

int th_worker_send(sf_coord_t *c, th_worker_t *w, Sf__Envelope *env) {
    uint8_t *buf = NULL;
    size_t cap = 0;
    int rc = sf_wire_send(w->sock, NULL, 0, env, &buf, &cap);
    free(buf);
    if (rc != 0) {
        fprintf(stderr, "coord_harness: worker %s cannot send: %s\n", w->id, zmq_strerror(zmq_errno()));
        return -1;
    }
    return drain_one(c);
}

Sf__Envelope *th_worker_recv(th_worker_t *w, Sf__Envelope__BodyCase body) {
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, w->sock, 0) < 0) {
            zmq_msg_close(&m);
            fprintf(stderr, "coord_harness: worker %s heard no message of body %d\n", w->id, (int)body);
            return NULL;
        }
        Sf__Envelope *env = NULL;
        char err[256];
        int rc = sf_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &env, err, sizeof err);
        zmq_msg_close(&m);
        if (rc != 0) {
            fprintf(stderr, "coord_harness: worker %s got a bad frame: %s\n", w->id, err);
            return NULL;
        }
        if (env->body_case == body) return env;
        sf_wire_free(env);
    }
}

int th_worker_hello(sf_coord_t *c, th_worker_t *w, const char *id, const char *kinds, uint32_t credit) {
    return th_worker_hello_ex(c, w, id, kinds, 1, credit, 0);
}

int th_worker_hello_ex(sf_coord_t *c, th_worker_t *w, const char *id, const char *kinds, uint32_t slots,
                       uint32_t credit, uint32_t max_credit) {
    memset(w, 0, sizeof *w);
    snprintf(w->id, sizeof w->id, "%s", id);
    w->sock = zmq_socket(c->zctx, ZMQ_DEALER);
    int ms = 10000;
    if (!w->sock || sf_wire_sockopts(w->sock) || zmq_setsockopt(w->sock, ZMQ_RCVTIMEO, &ms, sizeof ms) ||
        zmq_setsockopt(w->sock, ZMQ_ROUTING_ID, id, strlen(id)) || zmq_connect(w->sock, worker_ep))
        return -1;
    char *list = strdup(kinds), *k[16], *save = NULL;
    size_t nk = 0;
    for (char *t = strtok_r(list, ",", &save); t && nk < 16; t = strtok_r(NULL, ",", &save)) k[nk++] = t;
    Sf__Hello h = SF__HELLO__INIT;
    h.worker_id = (char *)id;
    h.kinds = k;
    h.n_kinds = nk;
    h.device = "cpu";
    h.host = "test";
    h.slots = slots;
    h.credit = credit;
    h.max_credit = max_credit;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    int rc = th_worker_send(c, w, &env);
    free(list);
    if (rc) return -1;
    Sf__Envelope *wel = th_worker_recv(w, SF__ENVELOPE__BODY_WELCOME);
    sf_wire_free(wel);
    return wel ? 0 : -1;
}

void th_worker_close(th_worker_t *w) {
    if (w->sock) zmq_close(w->sock);
    w->sock = NULL;
}

int th_worker_result(sf_coord_t *c, th_worker_t *w, uint64_t id, uint32_t attempt, Sf__Result__Status status) {
    return th_worker_result_ex(c, w, id, attempt, status, 0, 0);
}

int th_worker_result_ex(sf_coord_t *c, th_worker_t *w, uint64_t id, uint32_t attempt, Sf__Result__Status status,
                        uint32_t elapsed_us, uint32_t queued_us) {
    Sf__Result res = SF__RESULT__INIT;
    res.id = id;
    res.attempt = attempt;
    res.status = status;
    res.elapsed_us = elapsed_us;
    res.queued_us = queued_us;
    res.error = status == SF__RESULT__STATUS__OK ? "" : "it failed on purpose";
    Sf__Result *rp = &res;
    Sf__ResultBatch b = SF__RESULT_BATCH__INIT;
    b.n_results = 1;
    b.results = &rp;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_RESULTS;
    env.results = &b;
    return th_worker_send(c, w, &env);
}

int th_worker_heartbeat(sf_coord_t *c, th_worker_t *w) {
    Sf__Heartbeat hb = SF__HEARTBEAT__INIT;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    return th_worker_send(c, w, &env);
}

int th_worker_jobs(th_worker_t *w, uint64_t *ids, uint32_t *attempts, int max) {
    Sf__Envelope *env = th_worker_recv(w, SF__ENVELOPE__BODY_JOBS);
    if (!env) return -1;
    int n = 0;
    for (size_t i = 0; i < env->jobs->n_jobs && n < max; i++, n++) {
        ids[n] = env->jobs->jobs[i]->id;
        attempts[n] = env->jobs->jobs[i]->attempt;
    }
    sf_wire_free(env);
    return n;
}
