/* broker.c: the worker side of the coordinator — hello, credit, heartbeats
 * and liveness (Paranoid Pirate), leases, results, retries with backoff,
 * dead-lettering, cancellation, and dispatch with credit-based flow control.
 *
 * Invariants:
 *  - a job slot is LEASED to exactly one live worker, with the attempt number
 *    the worker was given; only a result with that (job, attempt) from that
 *    worker counts, and only once (the slot leaves LEASED on the first);
 *  - a worker's credit is what it said it can take minus what it holds;
 *    a worker with adaptive credit (Hello.max_credit) holds at most
 *    sf_credit_hold() jobs of the phase being dispatched, counting all it
 *    holds;
 *  - a worker that dies gives every job it holds back to the queue, with the
 *    attempt counted, so a job that kills its workers is dead-lettered.
 */
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "coordinator/coord.h"

#define MAX_BATCH 1024
/* Payload bytes in one job batch: the frame cap less room for the rest. */
#define BATCH_PAYLOAD_BYTES (SF_WIRE_MAX_FRAME - SF_WIRE_MAX_PAYLOAD)

/* ---- backoff queue: a binary min-heap on ready time ----------------------- */

typedef struct { int64_t ready_ms; uint32_t run, idx; } bo_item_t;
static bo_item_t *bo_heap;
static size_t bo_len, bo_cap;

void sf_backoff_add(sf_coord_t *c, sf_run_t *r, uint32_t idx, int64_t ready_ms) {
    (void)c;
    if (bo_len == bo_cap) {
        size_t nc = bo_cap ? bo_cap * 2 : 256;
        bo_item_t *nh = realloc(bo_heap, nc * sizeof *nh);
        if (!nh) { sf_run_requeue(r, idx); return; } /* retry now rather than lose it */
        bo_heap = nh;
        bo_cap = nc;
    }
    size_t i = bo_len++;
    bo_heap[i] = (bo_item_t){ready_ms, r->num, idx};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (bo_heap[p].ready_ms <= bo_heap[i].ready_ms) break;
        bo_item_t t = bo_heap[p]; bo_heap[p] = bo_heap[i]; bo_heap[i] = t;
        i = p;
    }
    r->jobs[idx].state = JS_BACKOFF;
}

static void backoff_due(sf_coord_t *c, int64_t now) {
    while (bo_len > 0 && bo_heap[0].ready_ms <= now) {
        bo_item_t it = bo_heap[0];
        bo_heap[0] = bo_heap[--bo_len];
        for (size_t i = 0;;) {
            size_t l = 2 * i + 1, r = l + 1, m = i;
            if (l < bo_len && bo_heap[l].ready_ms < bo_heap[m].ready_ms) m = l;
            if (r < bo_len && bo_heap[r].ready_ms < bo_heap[m].ready_ms) m = r;
            if (m == i) break;
            bo_item_t t = bo_heap[m]; bo_heap[m] = bo_heap[i]; bo_heap[i] = t;
            i = m;
        }
        sf_run_t *run = sf_runs_find_num(c, it.run);
        if (run && run->jobs && it.idx < run->n_jobs && run->jobs[it.idx].state == JS_BACKOFF) {
            sf_run_requeue(run, it.idx);
            c->dispatch_dirty = 1;
        }
    }
}

/* ---- workers ---------------------------------------------------------------- */

#define RID_MASK (2 * SF_MAX_WORKERS - 1)

static uint32_t rid_hash(const void *rid, size_t len) {
    const uint8_t *p = rid;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

/* Every frame looked its worker up by a scan of all slots: with 4,000
 * workers that was most of the coordinator's time for their heartbeats. */
static void rid_index_rebuild(sf_coord_t *c) {
    memset(c->rid_index, 0, sizeof c->rid_index);
    for (int i = 0; i < c->n_worker_slots; i++) {
        const sf_worker_t *w = &c->workers[i];
        if (!w->used) continue;
        uint32_t h = rid_hash(w->rid, w->rid_len) & RID_MASK;
        while (c->rid_index[h]) h = (h + 1) & RID_MASK;
        c->rid_index[h] = (uint16_t)(i + 1);
    }
}

static sf_worker_t *worker_by_rid(sf_coord_t *c, const void *rid, size_t len) {
    for (uint32_t h = rid_hash(rid, len) & RID_MASK; c->rid_index[h]; h = (h + 1) & RID_MASK) {
        sf_worker_t *w = &c->workers[c->rid_index[h] - 1];
        if (w->used && w->rid_len == len && memcmp(w->rid, rid, len) == 0) return w;
    }
    return NULL;
}

static void send_to(sf_coord_t *c, sf_worker_t *w, Sf__Envelope *env) {
    if (sf_wire_send(c->wsock, w->rid, w->rid_len, env, &c->sbuf, &c->sbuf_cap) != 0) {
        c->st.send_errors++;
        sf_debug("send to worker %s failed: %s", w->id, zmq_strerror(zmq_errno()));
    } else {
        c->st.frames_out++;
    }
}

static void send_rid(sf_coord_t *c, const void *rid, size_t len, Sf__Envelope *env) {
    if (sf_wire_send(c->wsock, rid, len, env, &c->sbuf, &c->sbuf_cap) != 0) c->st.send_errors++;
    else c->st.frames_out++;
}

static void dead_letter(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *error, const char *worker) {
    sf_jobslot_t *j = &r->jobs[idx];
    j->state = JS_ACKING;
    j->worker = SF_NO_WORKER;
    c->st.dead_lettered++;
    snprintf(r->last_error, sizeof r->last_error, "job %u: %s", idx, error);
    if (r->n_dead_list < SF_DEAD_LIST) {
        sf_dead_t *d = &r->dead_list[r->n_dead_list++];
        d->idx = idx;
        d->attempts = j->attempt;
        snprintf(d->error, sizeof d->error, "%s", error);
    }
    sf_warn("run %s job %u dead after %u attempts: %s", r->id, idx, j->attempt, error);
    sf_run_count_queued(r, idx, 1, NULL, 0);
    sf_store_job_dead(c, r, idx, error, worker);
}

/* A job comes back from a worker that will not finish it (death, expiry). */
static void give_back(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *why, const char *worker) {
    sf_jobslot_t *j = &r->jobs[idx];
    if (r->leased) r->leased--;
    if (!sf_run_active(r)) { j->state = JS_PENDING; j->worker = SF_NO_WORKER; return; }
    if (j->attempt >= r->max_attempts) {
        char e[256];
        snprintf(e, sizeof e, "%s (attempt %u of %d)", why, j->attempt, r->max_attempts);
        dead_letter(c, r, idx, e, worker);
        return;
    }
    c->st.requeued++;
    r->retries++;
    sf_run_requeue(r, idx);
    sf_store_job_requeued(c, r, idx);
    c->dispatch_dirty = 1;
}

/* Why a worker is removed: only silence past its liveness is a death. */
enum { GONE_DIED, GONE_LEFT, GONE_REPLACED };

static void worker_remove(sf_coord_t *c, sf_worker_t *w, int how, const char *why) {
    if (!w->used) return;
    sf_info("worker %s (%s) removed: %s; %u jobs go back to the queue", w->id, w->host, why, w->leased);
    if (w->leased) {
        char e[256];
        snprintf(e, sizeof e, "worker %s lost: %s", w->id, why);
        for (sf_run_t *r = c->runs; r && w->leased; r = r->next) {
            if (!r->leased) continue;
            for (uint32_t i = 0; sf_run_next_leased(r, i, &i); i++) {
                if (r->jobs[i].worker != w->slot) continue;
                give_back(c, r, i, e, w->id);
                if (w->leased) w->leased--;
            }
        }
    }
    if (how == GONE_DIED) c->st.workers_died++;
    else if (how == GONE_LEFT) c->st.workers_left++;
    else c->st.workers_replaced++;
    sf_store_worker(c, w, 1);
    w->used = 0;
    w->dead = 1;
    rid_index_rebuild(c);
    c->dispatch_dirty = 1;
}

static void on_hello(sf_coord_t *c, const void *rid, size_t rid_len, const Sf__Hello *h) {
    /* Fenced, this coordinator may not lead any more: a worker that finds
     * no welcome here moves on to the next endpoint it was given. */
    if (c->fenced) return;
    sf_worker_t *w = worker_by_rid(c, rid, rid_len);
    if (w && strcmp(w->id, h->worker_id) == 0) {
        /* The same connection says hello again (it was told to): it still
         * holds its leased jobs, and its credit already leaves them out. */
        w->credit = h->credit;
        w->max_held = h->max_credit;
        w->last_seen_ms = sf_coord_mono_ms(c);
        c->dispatch_dirty = 1;
        return;
    }
    if (w) worker_remove(c, w, GONE_REPLACED, "its connection now says it is another worker");
    for (int i = 0; i < c->n_worker_slots; i++)
        if (c->workers[i].used && strcmp(c->workers[i].id, h->worker_id) == 0)
            worker_remove(c, &c->workers[i], GONE_REPLACED, "replaced by a new connection with the same id");
    int slot = -1;
    for (int i = 0; i < SF_MAX_WORKERS && slot < 0; i++)
        if (!c->workers[i].used) slot = i;
    if (slot < 0) {
        sf_warn("worker %s refused: %d workers already", h->worker_id, SF_MAX_WORKERS);
        return;
    }
    if (slot >= c->n_worker_slots) c->n_worker_slots = slot + 1;
    w = &c->workers[slot];
    memset(w, 0, sizeof *w);
    w->used = 1;
    w->slot = (uint16_t)slot;
    memcpy(w->rid, rid, rid_len);
    w->rid_len = rid_len;
    uint32_t hx = rid_hash(rid, rid_len) & RID_MASK;
    while (c->rid_index[hx]) hx = (hx + 1) & RID_MASK;
    c->rid_index[hx] = (uint16_t)(slot + 1);
    snprintf(w->id, sizeof w->id, "%s", h->worker_id);
    snprintf(w->host, sizeof w->host, "%s", h->host ? h->host : "");
    snprintf(w->device, sizeof w->device, "%s", h->device ? h->device : "");
    snprintf(w->version, sizeof w->version, "%s", h->version ? h->version : "");
    w->pid = h->pid;
    w->slots = h->slots ? h->slots : 1;
    w->credit = h->credit;
    w->max_held = h->max_credit;
    size_t off = 0;
    for (size_t i = 0; i < h->n_kinds; i++) {
        int k = sf_coord_kind_id(c, h->kinds[i]);
        if (k >= 0) w->kinds |= 1ull << k;
        off += (size_t)snprintf(w->kinds_text + off, off < sizeof w->kinds_text ? sizeof w->kinds_text - off : 0,
                                "%s%s", i ? "," : "", h->kinds[i]);
        if (off >= sizeof w->kinds_text) off = sizeof w->kinds_text - 1;
    }
    w->last_seen_ms = w->joined_ms = sf_coord_mono_ms(c);
    w->dirty = 1;
    if (w->max_held)
        sf_info("worker %s joined: host %s pid %u device %s kinds %s slots %u credit adaptive, at most %u", w->id,
                w->host, w->pid, w->device, w->kinds_text, w->slots, w->max_held);
    else
        sf_info("worker %s joined: host %s pid %u device %s kinds %s slots %u credit %u", w->id, w->host, w->pid,
                w->device, w->kinds_text, w->slots, w->credit);
    Sf__Welcome wel = SF__WELCOME__INIT;
    wel.epoch = c->epoch;
    wel.heartbeat_ms = (uint32_t)c->cfg.heartbeat_ms;
    wel.liveness = (uint32_t)c->cfg.liveness;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_WELCOME;
    env.welcome = &wel;
    send_to(c, w, &env);
    sf_store_worker(c, w, 0);
    c->dispatch_dirty = 1;
}

/* ---- adaptive credit ---------------------------------------------------------- */

uint32_t sf_credit_hold(uint32_t slots, uint32_t max_held, uint32_t srtt_us, uint32_t job_us) {
    if (slots == 0) slots = 1;
    uint64_t backlog = 1;
    if (job_us && job_us < SF_CREDIT_LONG_US) {
        /* ceil(2 × slots × srtt / job_us): the jobs the slots finish in two
         * round trips, so the next batch is there before the queue runs dry. */
        backlog = (2ull * slots * srtt_us + job_us - 1) / job_us;
        if (backlog < 1) backlog = 1;
    }
    uint64_t hold = slots + backlog;
    if (max_held && hold > max_held) hold = max_held;
    return (uint32_t)hold;
}

/* One result of an adaptive worker: its round trip (dispatch to result,
 * less the time the job ran and waited in the worker) into the worker's
 * smoothed round trip, and the time it ran into its phase's mean; both
 * running means weigh a new sample 1/8 (as TCP's SRTT), the first sample
 * alone. */
static void measure(sf_worker_t *w, sf_run_t *r, uint32_t idx, int64_t lat_us, const Sf__Result *res) {
    int64_t rtt = lat_us - (int64_t)res->elapsed_us - (int64_t)res->queued_us;
    if (rtt < 1) rtt = 1;
    if (rtt > 60000000) rtt = 60000000;
    w->srtt_us = w->srtt_us ? (uint32_t)((7 * (int64_t)w->srtt_us + rtt) / 8) : (uint32_t)rtt;
    if (r->phase >= r->n_phases) return;
    sf_phase_t *p = &r->phases[r->phase];
    if (idx < p->first || idx >= p->first + p->n) return; /* a job of an earlier phase */
    uint64_t el = res->elapsed_us ? res->elapsed_us : 1;
    p->job_us = p->job_us ? (uint32_t)((7 * (uint64_t)p->job_us + el) / 8) : (uint32_t)el;
}

static void on_result(sf_coord_t *c, sf_worker_t *w, const Sf__Result *res, int64_t now_us) {
    sf_run_t *r = sf_runs_find_num(c, sf_job_run(res->id));
    uint32_t idx = sf_job_index(res->id);
    if (w->credit < 65536) w->credit++;
    if (!r || !r->jobs || idx >= r->n_jobs) { c->st.results_unknown++; return; }
    sf_jobslot_t *j = &r->jobs[idx];
    if (j->state != JS_LEASED || j->attempt != res->attempt || j->worker != w->slot) {
        if (j->state == JS_DONE || j->state == JS_ACKING) c->st.results_dup++;
        else c->st.results_stale++;
        return;
    }
    if (w->leased) w->leased--;
    if (r->leased) r->leased--;
    j->worker = SF_NO_WORKER;
    if (!sf_run_active(r)) { j->state = JS_PENDING; return; }
    int64_t lat = now_us - j->dispatched_us;
    if (w->max_held) measure(w, r, idx, lat, res);
    j->dispatched_us = lat > 0 ? lat : 0; /* kept until the ack for the latency histogram */
    switch (res->status) {
    case SF__RESULT__STATUS__OK:
        c->st.results_ok++;
        w->done++;
        j->state = JS_ACKING;
        sf_run_count_queued(r, idx, 0, res->payload.data, res->payload.len);
        sf_store_job_done(c, r, idx, res->payload.data, res->payload.len);
        break;
    case SF__RESULT__STATUS__CANCELLED:
        sf_run_requeue(r, idx);
        sf_store_job_requeued(c, r, idx);
        c->dispatch_dirty = 1;
        break;
    case SF__RESULT__STATUS__FATAL:
        c->st.results_failed++;
        w->failed++;
        dead_letter(c, r, idx, res->error && *res->error ? res->error : "fatal error", w->id);
        break;
    default: {
        c->st.results_failed++;
        w->failed++;
        const char *e = res->error && *res->error ? res->error : "failed";
        if (j->attempt >= r->max_attempts) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s (attempt %u of %d)", e, j->attempt, r->max_attempts);
            dead_letter(c, r, idx, msg, w->id);
            break;
        }
        r->retries++;
        snprintf(r->last_error, sizeof r->last_error, "job %u attempt %u: %s", idx, j->attempt, e);
        uint64_t delay = (uint64_t)r->retry_base_ms << (j->attempt > 20 ? 20 : j->attempt - 1);
        if (delay > r->retry_max_ms) delay = r->retry_max_ms;
        sf_store_job_requeued(c, r, idx);
        if (delay == 0) { sf_run_requeue(r, idx); c->dispatch_dirty = 1; }
        else sf_backoff_add(c, r, idx, sf_coord_mono_ms(c) + (int64_t)delay);
    }
    }
}

/* ---- frames ------------------------------------------------------------------- */

Sf__Envelope *sf_coord_decode(sf_coord_t *c, void *sock, const void *rid, size_t rid_len, const void *buf, size_t len,
                              const char *from) {
    char err[256];
    Sf__Envelope *env = NULL;
    uint32_t version = 0, body = 0;
    int peeked = sf_wire_peek(buf, len, &version, &body) == 0, code = SF_EPROTO, fatal = 0;
    if (len > SF_WIRE_MAX_FRAME) {
        /* libzmq reads up to SF_WIRE_MAX_RECV so that this can be said. */
        c->st.frames_oversize++;
        code = SF_ERANGE;
        snprintf(err, sizeof err, "frame of %zu bytes over the %u-byte cap", len, SF_WIRE_MAX_FRAME);
    } else if (peeked && version && version != SF_PROTO_VERSION && body != SF__ENVELOPE__BODY_ERROR) {
        /* Not decoded with our schema: another version's may differ. */
        c->st.frames_version++;
        fatal = 1;
        snprintf(err, sizeof err, "protocol version %u is not spoken here: this coordinator speaks version %u",
                 version, SF_PROTO_VERSION);
    } else if (sf_wire_decode(buf, len, &env, err, sizeof err) == 0) {
        return env;
    } else {
        fatal = peeked && body == SF__ENVELOPE__BODY_HELLO; /* the same hello is refused the same way */
    }
    c->st.frames_bad++;
    if ((c->st.frames_bad & (c->st.frames_bad - 1)) == 0)
        sf_warn("dropped bad frame from %s (%llu so far): %s", from, (unsigned long long)c->st.frames_bad, err);
    if (peeked && body == SF__ENVELOPE__BODY_ERROR) return NULL; /* an Error is never answered: no ping-pong */
    if (sf_wire_send_error(sock, rid, rid_len, code, err, version, fatal, &c->sbuf, &c->sbuf_cap) != 0)
        c->st.send_errors++;
    else
        c->st.frames_out++;
    return NULL;
}

void sf_broker_on_frame(sf_coord_t *c, const void *rid, size_t rid_len, const void *buf, size_t len) {
    c->st.frames_in++;
    Sf__Envelope *env = sf_coord_decode(c, c->wsock, rid, rid_len, buf, len, "a worker peer");
    if (!env) return;
    if (env->body_case == SF__ENVELOPE__BODY_HELLO) {
        on_hello(c, rid, rid_len, env->hello);
        sf_wire_free(env);
        return;
    }
    sf_worker_t *w = worker_by_rid(c, rid, rid_len);
    if (!w) {
        /* Probably a worker of the coordinator we replaced: ask it to say hello. */
        if (env->body_case != SF__ENVELOPE__BODY_SHUTDOWN) {
            Sf__Reconnect rc = SF__RECONNECT__INIT;
            Sf__Envelope out = SF__ENVELOPE__INIT;
            out.body_case = SF__ENVELOPE__BODY_RECONNECT;
            out.reconnect = &rc;
            send_rid(c, rid, rid_len, &out);
        }
        sf_wire_free(env);
        return;
    }
    w->last_seen_ms = sf_coord_mono_ms(c);
    switch (env->body_case) {
    case SF__ENVELOPE__BODY_CREDIT:
        w->credit += env->credit->credit;
        if (w->credit > 65536) w->credit = 65536;
        c->dispatch_dirty = 1;
        break;
    case SF__ENVELOPE__BODY_HEARTBEAT:
        if (w->busy != env->heartbeat->busy) w->dirty = 1;
        w->busy = env->heartbeat->busy;
        break;
    case SF__ENVELOPE__BODY_RESULTS: {
        int64_t now = sf_clock_mono_us();
        for (size_t i = 0; i < env->results->n_results; i++) on_result(c, w, env->results->results[i], now);
        c->dispatch_dirty = 1;
        w->dirty = 1;
        break;
    }
    case SF__ENVELOPE__BODY_SHUTDOWN:
        worker_remove(c, w, GONE_LEFT,
                      env->shutdown->reason && *env->shutdown->reason ? env->shutdown->reason : "worker left");
        break;
    default:
        c->st.frames_bad++;
        sf_warn("worker %s sent an unexpected message (body %d)", w->id, (int)env->body_case);
    }
    sf_wire_free(env);
}

/* ---- dispatch ---------------------------------------------------------------- */

static Sf__Job job_msgs[MAX_BATCH];
static Sf__Job *job_ptrs[MAX_BATCH];

static uint32_t fill_batch(sf_coord_t *c, sf_worker_t *w, uint32_t want, int64_t now_us) {
    uint32_t n = 0;
    /* A lease ends lease_ms after now, rounded up to the whole second the
     * slot holds: expire_leases() may be up to a second late, never early. */
    int64_t up_ms = sf_coord_mono_ms(c) - c->start_mono_ms;
    /* The payloads of one batch stay under the frame cap (each is at most
     * SF_WIRE_MAX_PAYLOAD): a frame over it could not be sent, and its jobs
     * would wait out their leases. */
    size_t bytes = 0;
    /* Adaptive credit: a run's jobs fill the worker up to the hold of its
     * phase, counting every job the worker holds, and never past the hold
     * of a run before it (higher priority) that still has work for it: tiny
     * jobs of a later run cannot keep a run of long ones waiting. */
    uint32_t cap = UINT32_MAX;
    for (sf_run_t *r = c->runs; r && n < want; r = r->next) {
        if (w->leased >= cap) break; /* no later run may add to it */
        if (!sf_run_active(r) || r->phase >= r->n_phases) continue;
        uint32_t hold = UINT32_MAX;
        if (w->max_held) {
            hold = sf_credit_hold(w->slots, w->max_held, w->srtt_us, r->phases[r->phase].job_us);
            if (hold > cap) hold = cap;
        }
        while (n < want && w->leased < hold) {
            if (n && bytes + r->phases[r->phase].payload_len > BATCH_PAYLOAD_BYTES) return n;
            int64_t t = sf_run_take(c, r, w->kinds);
            if (t < 0) break;
            uint32_t idx = (uint32_t)t;
            sf_jobslot_t *j = &r->jobs[idx];
            if (r->state == RUN_QUEUED) {
                r->state = RUN_RUNNING;
                r->started_ms = sf_clock_wall_ms();
                sf_store_run_saved(c, r, 0);
                sf_store_event(c, r, "running", NULL);
            }
            j->state = JS_LEASED;
            if (j->attempt < 255) j->attempt++;
            j->worker = w->slot;
            j->deadline_s = (uint32_t)((up_ms + r->lease_ms + 999) / 1000);
            j->dispatched_us = now_us;
            r->leased++;
            w->leased++;
            c->st.dispatched++;
            /* Redis keeps the deadline in wall time, for whoever reads the
             * hash; the decision uses deadline_s above. */
            sf_store_job_leased(c, r, idx, w->id, sf_clock_wall_ms() + r->lease_ms);
            const sf_phase_t *p = &r->phases[r->phase];
            Sf__Job *m = &job_msgs[n];
            sf__job__init(m);
            m->id = sf_job_id(r->num, idx);
            m->attempt = j->attempt;
            m->kind = (char *)p->kind;
            m->lease_ms = r->lease_ms;
            m->run = r->id;
            int cls;
            const char *wnid;
            sf_run_job_shard(r, idx, &wnid, &m->item_start, &m->item_count, &cls);
            m->wnid = (char *)wnid;
            m->payload.data = (uint8_t *)p->payload;
            m->payload.len = p->payload_len;
            bytes += p->payload_len;
            m->policy_version = r->learner_version;
            job_ptrs[n] = m;
            n++;
        }
        if (w->max_held && w->leased >= hold && hold < cap && sf_run_has_work(c, r, w->kinds)) cap = hold;
    }
    return n;
}

void sf_broker_pump(sf_coord_t *c) {
    /* Fenced: the lease may be another's now; its jobs are not ours to give. */
    if (!c->dispatch_dirty || c->stopping || c->fenced) return;
    /* Redis is behind: dispatch again once its acknowledgements (each one
     * an event that runs this again) bring the queue of writes down. */
    if (sf_store_pending_bytes(c) > SF_STORE_PENDING_MAX) {
        c->st.dispatch_held++;
        return;
    }
    c->dispatch_dirty = 0;
    if (!c->runs || c->n_worker_slots == 0) return;
    int64_t now_us = sf_clock_mono_us();
    int nw = c->n_worker_slots;
    for (int k = 0; k < nw; k++) {
        sf_worker_t *w = &c->workers[(c->rr + k) % nw];
        if (!w->used || w->draining) continue;
        /* A fixed credit counts down; an adaptive worker's room is its
         * limit less what it holds (fill_batch applies each phase's hold). */
        uint32_t room = w->max_held ? (w->leased < w->max_held ? w->max_held - w->leased : 0) : w->credit;
        if (room == 0) continue;
        uint32_t want = room < MAX_BATCH ? room : MAX_BATCH;
        uint32_t n = fill_batch(c, w, want, now_us);
        if (n == 0) continue;
        w->credit = w->credit > n ? w->credit - n : 0;
        Sf__JobBatch b = SF__JOB_BATCH__INIT;
        b.n_jobs = n;
        b.jobs = job_ptrs;
        Sf__Envelope env = SF__ENVELOPE__INIT;
        env.body_case = SF__ENVELOPE__BODY_JOBS;
        env.jobs = &b;
        send_to(c, w, &env);
        /* More may come from other runs/phases next turn. */
        if (w->max_held ? w->leased < w->max_held : w->credit > 0) c->dispatch_dirty = 1;
    }
    c->rr = (c->rr + 1) % (nw ? nw : 1);
}

void sf_broker_cancel_run(sf_coord_t *c, sf_run_t *r) {
    for (int wi = 0; wi < c->n_worker_slots; wi++) {
        sf_worker_t *w = &c->workers[wi];
        if (!w->used || !w->leased || !r->jobs) continue;
        uint64_t *ids = NULL;
        size_t n = 0, cap = 0;
        for (uint32_t i = 0; sf_run_next_leased(r, i, &i); i++) {
            if (r->jobs[i].worker != w->slot) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                uint64_t *ni = realloc(ids, cap * sizeof *ni);
                if (!ni) break;
                ids = ni;
            }
            ids[n++] = sf_job_id(r->num, i);
        }
        if (n) {
            Sf__Cancel cm = SF__CANCEL__INIT;
            cm.n_ids = n;
            cm.ids = ids;
            Sf__Envelope env = SF__ENVELOPE__INIT;
            env.body_case = SF__ENVELOPE__BODY_CANCEL;
            env.cancel = &cm;
            send_to(c, w, &env);
        }
        free(ids);
    }
    /* Their leases end with the run (store.c empties its leases hash in
     * Redis): what the workers still send for them is stale. */
    for (uint32_t i = 0; r->jobs && sf_run_next_leased(r, i, &i); i++) {
        sf_jobslot_t *j = &r->jobs[i];
        sf_worker_t *w = j->worker < SF_MAX_WORKERS ? &c->workers[j->worker] : NULL;
        if (w && w->used && w->leased) w->leased--;
        j->state = JS_PENDING;
        j->worker = SF_NO_WORKER;
    }
    r->leased = 0;
}

/* ---- cron part ------------------------------------------------------------------ */

static void expire_leases(sf_coord_t *c) {
    uint32_t secs = sf_coord_secs(c);
    for (sf_run_t *r = c->runs; r; r = r->next) {
        if (!r->leased) continue;
        for (uint32_t i = 0; sf_run_next_leased(r, i, &i); i++) {
            sf_jobslot_t *j = &r->jobs[i];
            if (j->deadline_s > secs) continue;
            sf_worker_t *w = j->worker < SF_MAX_WORKERS ? &c->workers[j->worker] : NULL;
            if (w && w->leased) w->leased--;
            c->st.expired++;
            char e[160];
            snprintf(e, sizeof e, "lease of %u ms expired on worker %s", r->lease_ms, w ? w->id : "?");
            give_back(c, r, i, e, w ? w->id : "");
        }
    }
}

void sf_broker_cron(sf_coord_t *c) {
    int64_t now = sf_coord_mono_ms(c);
    int64_t window = c->cfg.heartbeat_ms * c->cfg.liveness;
    for (int i = 0; i < c->n_worker_slots; i++) {
        sf_worker_t *w = &c->workers[i];
        if (w->used && now - w->last_seen_ms > window) {
            char why[96];
            snprintf(why, sizeof why, "silent for %lld ms (liveness %lld ms)", (long long)(now - w->last_seen_ms),
                     (long long)window);
            worker_remove(c, w, GONE_DIED, why);
        }
    }
    /* Fenced: no heartbeats, so that the workers go to whichever leads now
     * (they come back here if this one keeps its lease). */
    if (now - c->last_hb_ms >= c->cfg.heartbeat_ms && !c->fenced) {
        c->last_hb_ms = now;
        Sf__Heartbeat hb = SF__HEARTBEAT__INIT;
        Sf__Envelope env = SF__ENVELOPE__INIT;
        env.body_case = SF__ENVELOPE__BODY_HEARTBEAT;
        env.heartbeat = &hb;
        for (int i = 0; i < c->n_worker_slots; i++) {
            sf_worker_t *w = &c->workers[i];
            if (!w->used) continue;
            send_to(c, w, &env);
            sf_store_worker(c, w, 0);
        }
        expire_leases(c);
    }
    backoff_due(c, now);
    sf_runs_check_kinds(c);
    sf_runs_release(c);
}

cJSON *sf_workers_json(const sf_coord_t *c) {
    cJSON *a = cJSON_CreateArray();
    int64_t now = sf_coord_mono_ms(c);
    for (int i = 0; i < c->n_worker_slots; i++) {
        const sf_worker_t *w = &c->workers[i];
        if (!w->used) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", w->id);
        cJSON_AddStringToObject(o, "host", w->host);
        cJSON_AddNumberToObject(o, "pid", w->pid);
        cJSON_AddStringToObject(o, "device", w->device);
        cJSON_AddStringToObject(o, "kinds", w->kinds_text);
        cJSON_AddNumberToObject(o, "slots", w->slots);
        /* Adaptive: the room left under its limit (each phase's hold is lower). */
        cJSON_AddNumberToObject(o, "credit", w->max_held ? (w->leased < w->max_held ? w->max_held - w->leased : 0)
                                                         : w->credit);
        cJSON_AddStringToObject(o, "credit_mode", w->max_held ? "adaptive" : "fixed");
        if (w->max_held) {
            cJSON_AddNumberToObject(o, "max_held", w->max_held);
            cJSON_AddNumberToObject(o, "srtt_us", w->srtt_us);
        }
        cJSON_AddNumberToObject(o, "leased", w->leased);
        cJSON_AddNumberToObject(o, "busy", w->busy);
        cJSON_AddNumberToObject(o, "done", (double)w->done);
        cJSON_AddNumberToObject(o, "failed", (double)w->failed);
        cJSON_AddNumberToObject(o, "last_seen_ms_ago", (double)(now - w->last_seen_ms));
        cJSON_AddItemToArray(a, o);
    }
    return a;
}
