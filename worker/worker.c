/* sf-worker: runs jobs for the coordinator.
 *
 *   sf-worker [--config FILE] [--key value …]
 *
 * A DEALER socket to the coordinator, joined to one libuv loop.  The worker
 * says hello with its kinds, device, slots and credit (slots × prefetch), runs
 * each job through the handler table (worker.h), and sends results in batches
 * from a before-sleep hook; each result gives the coordinator one credit back.
 * Heartbeats go both ways; a coordinator silent for its liveness window is
 * presumed gone and the worker reconnects with a fresh socket.  SIGTERM
 * drains: queued jobs go back, running ones finish, then goodbye.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/runtime/clock.h"
#include "common/runtime/config.h"
#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "worker/ledger.h"
#include "worker/jobq.h"
#include "worker/learner_client.h"
#include "common/runtime/log.h"
#include "common/runtime/metrics.h"
#include "common/net/wire.h"
#include "common/net/zsock.h"
#include "worker/worker.h"
#if SF_HAVE_TORCH
#include "ml/sf_ml.h"
#endif

#define SF_VERSION "0.1.0"
#define MAX_RESULTS 1024

typedef struct {
    char *coordinator;
    char *worker_id;
    char *kinds;
    char *device;
    char *learner, *models_dir, *data_dir, *gpt2_vocab;
    char *curve_key_file, *curve_server_key_file, *learner_server_key_file;
    char *clip_dir, *diffusion_dir, *reference_root, *dtype;
    char *ledger;
    int swap_models;
    long slots, prefetch, threads, recycle_after, heartbeat_ms, liveness;
    char *metrics_host;
    long metrics_port;
    char *log_level;
    int log_json;
} wk_config_t;

#define F(k, t, d, lo, hi, doc) {#k, t, offsetof(wk_config_t, k), d, lo, hi, doc}
static const sf_cfg_field_t wk_schema[] = {
    F(coordinator, SF_CFG_STRING, "tcp://127.0.0.1:5555", 1, 0,
      "the coordinator's worker endpoint, or a comma-separated list (a leader and its standbys: the worker "
      "moves to the next when the one it talks to is silent past its liveness)"),
    F(worker_id, SF_CFG_STRING, "", 1, 0, "this worker's name (default host/pid)"),
    F(kinds, SF_CFG_STRING, "", 1, 0, "comma-separated job kinds to take (default: all this build has)"),
    F(device, SF_CFG_STRING, "cpu", 1, 0, "device for model work: cpu or cuda:N"),
    F(learner, SF_CFG_STRING, "tcp://127.0.0.1:5557", 1, 0, "the learner's endpoint (rollout and captions jobs)"),
    F(curve_key_file, SF_CFG_STRING, "", 1, 0, "this worker's CURVE keypair (sfctl keygen; mode 0600); empty: CURVE off"),
    F(curve_server_key_file, SF_CFG_STRING, "", 1, 0, "the coordinator's CURVE public key (its .pub file)"),
    F(learner_server_key_file, SF_CFG_STRING, "", 1, 0,
      "the learner's CURVE public key (.pub; default: curve_server_key_file's)"),
    F(models_dir, SF_CFG_STRING, "models", 1, 0, "folder of the world models and policies (make models)"),
    F(data_dir, SF_CFG_STRING, "sf-data", 1, 0, "shared folder: reference statistics, run files, datasets"),
    F(gpt2_vocab, SF_CFG_STRING, "data/gpt2", 1, 0, "folder with GPT-2's encoder.json and vocab.bpe"),
    F(clip_dir, SF_CFG_STRING, "", 1, 0,
      "CLIP folder (HF config.json + model.safetensors + vocab.json + merges.txt; default models_dir/clip-world)"),
    F(diffusion_dir, SF_CFG_STRING, "", 1, 0,
      "TorchScript diffusion pipeline folder (sf-diffusion.json; docs/real-models.md) for generator \"diffusion\""),
    F(reference_root, SF_CFG_STRING, "", 1, 0,
      "folder of ImageNet-style reference sets: a run's reference_source names ROOT/<source>/<wnid>/"),
    F(dtype, SF_CFG_STRING, "fp32", 1, 0, "inference precision of CLIP, the policy's sampling and diffusion: fp32, bf16 or fp16"),
    F(swap_models, SF_CFG_BOOL, "false", 1, 0,
      "keep one large model (CLIP, policy, diffusion) in device memory at a time, freeing the others on a switch"),
    F(slots, SF_CFG_INT, "1", 1, 4096, "jobs run at once"),
    F(prefetch, SF_CFG_INT, "0", 0, 1024,
      "credit per slot: the worker holds slots x prefetch jobs; 0: adaptive (the coordinator sizes the backlog from "
      "measured job times: tiny jobs stream, seconds-long ones keep one ready job)"),
    F(threads, SF_CFG_INT, "1", 1, 256, "intra-op threads for model work"),
    F(recycle_after, SF_CFG_INT, "0", 0, 1e12, "drain and exit after this many jobs (0: never)"),
    F(heartbeat_ms, SF_CFG_INT, "1000", 50, 60000, "heartbeat interval until the coordinator sets it"),
    F(liveness, SF_CFG_INT, "3", 2, 100, "silent intervals before the coordinator is presumed gone"),
    F(ledger, SF_CFG_STRING, "", 1, 0,
      "test option (the fault drill): append 'run job attempt worker epoch hash' of each OK result sent to this file"),
    SF_CFG_DAEMON_FIELDS(wk_config_t),
    {NULL, 0, 0, NULL, 0, 0, NULL},
};
#undef F

struct sf_wk_s {
    wk_config_t cfg;
    uv_loop_t *loop;
    void *zctx, *sock;
    sf_zsock_t zs;
    int zs_open;
    uv_prepare_t flush;
    uv_timer_t hb;
    uv_signal_t sigterm, sigint;
    const sf_handler_t *handlers[SF_JOBQ_MAX_KINDS];
    int n_handlers;
    char id[128];
    sf_jobq_t q;            /* jobs received, running; busy time by kind */
    Sf__Result res[MAX_RESULTS];
    Sf__Result *resp[MAX_RESULTS];
    sf_job_t *res_jobs[MAX_RESULTS];
    int n_res;
    uint64_t done, failed;
    int64_t last_recv_ms, last_send_ms;
    uint32_t hb_ms, liveness;
    int draining, said_bye;
    int64_t hello_ms;       /* when the last hello went out */
    uint8_t *sbuf;
    size_t sbuf_cap;
    uint64_t epoch;
    uint64_t reconnects;
    sf_metrics_t *metrics;
    sf_wk_env_t env;
    sf_curve_client_t curve;  /* CURVE to the coordinator (curve.on = 0: off) */
    int welcomed;             /* a Welcome came since start */
    int64_t first_job_us;   /* when the first job started */
    int exit_rc;            /* the process's exit code: 1 once the coordinator refused us */
    int ledger_fd;          /* the test ledger (ledger.h), or -1 */
};


uv_loop_t *sf_wk_loop(sf_wk_t *wk) { return wk->loop; }
const char *sf_wk_id(const sf_wk_t *wk) { return wk->id; }
const sf_wk_env_t *sf_wk_env(sf_wk_t *wk) { return &wk->env; }

static void send_env(sf_wk_t *wk, Sf__Envelope *env) {
    if (!wk->sock) return;
    static int64_t warned_ms;
    if (sf_wire_send(wk->sock, NULL, 0, env, &wk->sbuf, &wk->sbuf_cap) != 0) {
        /* With no coordinator to talk to (down, or refusing our CURVE key)
         * every heartbeat fails: say so every 5 s, not ten times a second. */
        if (sf_clock_mono_ms() - warned_ms >= 5000) {
            warned_ms = sf_clock_mono_ms();
            sf_warn("send to coordinator failed: %s", zmq_strerror(zmq_errno()));
        }
    } else {
        wk->last_send_ms = sf_clock_mono_ms();
    }
}

static uint32_t capacity(const sf_wk_t *wk) {
    return sf_jobq_credit(&wk->q, wk->cfg.slots, wk->cfg.prefetch, wk->n_res, wk->draining);
}

static void say_hello(sf_wk_t *wk) {
    Sf__Hello h = SF__HELLO__INIT;
    char *kinds[64], host[128];
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    for (int i = 0; i < wk->n_handlers; i++) kinds[i] = (char *)wk->handlers[i]->kind;
    h.worker_id = wk->id;
    h.n_kinds = (size_t)wk->n_handlers;
    h.kinds = kinds;
    h.device = wk->cfg.device;
    h.slots = (uint32_t)wk->cfg.slots;
    h.version = SF_VERSION;
    h.pid = (uint32_t)getpid();
    h.host = host;
    h.credit = capacity(wk);
    h.max_credit = sf_jobq_max_credit(wk->cfg.slots, wk->cfg.prefetch);
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    send_env(wk, &env);
    wk->hello_ms = sf_clock_mono_ms();
}

/* ---- results -------------------------------------------------------------- */

static void flush_results(sf_wk_t *wk) {
    if (wk->n_res == 0) return;
    Sf__ResultBatch b = SF__RESULT_BATCH__INIT;
    b.n_results = (size_t)wk->n_res;
    b.results = wk->resp;
    /* Ledger lines go first, so that no result Redis accepts lacks one. */
    for (int i = 0; wk->ledger_fd >= 0 && i < wk->n_res; i++)
        if (wk->res_jobs[i]->status == SF_JOB_OK) sf_ledger_append(wk->ledger_fd, wk->res_jobs[i], wk->id);
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_RESULTS;
    env.results = &b;
    send_env(wk, &env);
    for (int i = 0; i < wk->n_res; i++) {
        sf_job_t *j = wk->res_jobs[i];
        free(j->out);
        free(j->payload);
        free(j->params);
        free(j);
    }
    wk->n_res = 0;
}

static void start_next(sf_wk_t *wk);

/* Queues the job's result for the next batch and frees a slot. */
static void push_result(sf_job_t *job) {
    sf_wk_t *wk = job->wk;
    if (wk->n_res == MAX_RESULTS) flush_results(wk);
    if (wk->ledger_fd >= 0) sf_ledger_stamp(job, wk->id);
    Sf__Result *r = &wk->res[wk->n_res];
    sf__result__init(r);
    r->id = job->id;
    r->attempt = job->attempt;
    r->status = (Sf__Result__Status)job->status;
    r->payload.data = (uint8_t *)job->out;
    r->payload.len = job->out_len;
    r->error = job->error;
    /* A job cancelled or drained while queued never started: it ran for no
     * time (its started_us is 0, not a time, and would count the clock's
     * whole epoch as busy). */
    int64_t now_us = sf_clock_mono_us();
    r->elapsed_us = sf_jobq_account(&wk->q, job->h ? job->hi : -1, job->started_us, now_us);
    int64_t waited = (job->started_us ? job->started_us : now_us) - job->received_us;
    r->queued_us = waited > 0 && waited < UINT32_MAX ? (uint32_t)waited : 0;
    wk->resp[wk->n_res] = r;
    wk->res_jobs[wk->n_res] = job;
    wk->n_res++;
    if (job->status == SF_JOB_OK) wk->done++;
    else wk->failed++;
    start_next(wk);
}

static void on_timer_closed(uv_handle_t *h) { push_result(h->data); }

static int64_t busy_us(const sf_wk_t *wk) { return sf_jobq_busy_us(&wk->q, wk->n_handlers); }

void sf_wk_complete(sf_wk_t *wk, sf_job_t *job) {
    wk->q.running--;
    /* A timer handler's job owns a timer only once it was started (a job
     * cancelled in the queue never was). */
    if (job->timer.type == UV_TIMER && !uv_is_closing((uv_handle_t *)&job->timer)) {
        /* The timer's memory is the job's: free it only after the close. */
        job->timer.data = job;
        uv_close((uv_handle_t *)&job->timer, on_timer_closed);
        return;
    }
    push_result(job);
}

static void work_cb(uv_work_t *w) {
    sf_job_t *job = w->data;
    job->h->fn(job->wk, job);
}

static void after_work_cb(uv_work_t *w, int status) {
    sf_job_t *job = w->data;
    if (status == UV_ECANCELED) job->status = SF_JOB_CANCELLED;
    sf_wk_complete(job->wk, job);
}

/* A method kind's payload, parsed once before its handler runs (worker.h):
 * 0, or -1 with the job failed (FATAL when the contract refuses it). */
static int parse_params(sf_job_t *job) {
    if (!sf_job_kind_bit(job->kind)) return 0;
    if (!(job->params = malloc(sizeof *job->params))) {
        job->status = SF_JOB_FAILED;
        snprintf(job->error, sizeof job->error, "out of memory");
        return -1;
    }
    if (sf_job_params_parse(job->kind, job->payload, job->payload_len, job->params, job->error, sizeof job->error)) {
        sf_warn("job %llu of run %s refused: %s", (unsigned long long)job->id, job->run, job->error);
        job->status = SF_JOB_FATAL;
        return -1;
    }
    return 0;
}

/* The job is counted as running already (sf_jobq_take). */
static void run_job(sf_wk_t *wk, sf_job_t *job) {
    job->started_us = sf_clock_mono_us();
    if (!wk->first_job_us) wk->first_job_us = job->started_us;
    if (!job->h) {
        job->status = SF_JOB_FATAL;
        snprintf(job->error, sizeof job->error, "this worker has no handler for kind '%s'", job->kind);
        sf_wk_complete(wk, job);
        return;
    }
    if (!job->payload) {
        int over = job->payload_len > SF_WIRE_MAX_PAYLOAD;
        job->status = over ? SF_JOB_FATAL : SF_JOB_FAILED;
        if (over)
            snprintf(job->error, sizeof job->error, "job payload of %zu bytes is over the %u-byte cap",
                     (size_t)job->payload_len, SF_WIRE_MAX_PAYLOAD);
        else
            snprintf(job->error, sizeof job->error, "out of memory for a payload of %zu bytes", (size_t)job->payload_len);
        sf_warn("job %llu of run %s refused: %s", (unsigned long long)job->id, job->run, job->error);
        sf_wk_complete(wk, job);
        return;
    }
    if (parse_params(job) != 0) {
        sf_wk_complete(wk, job);
        return;
    }
    switch (job->h->mode) {
    case SF_RUN_THREAD:
        job->work.data = job;
        uv_queue_work(wk->loop, &job->work, work_cb, after_work_cb);
        break;
    case SF_RUN_TIMER:
    case SF_RUN_ASYNC:
        if (job->h->fn(wk, job) != 0) {
            job->h = NULL; /* no timer was armed */
            wk->q.running--;
            push_result(job);
        }
        break;
    default:
        job->h->fn(wk, job);
        sf_wk_complete(wk, job);
    }
}

static void start_next(sf_wk_t *wk) {
    sf_job_t *j;
    while ((j = sf_jobq_take(&wk->q, wk->cfg.slots))) {
        const char *why = sf_jobq_refusal(j, wk->draining);
        if (why) {
            j->status = SF_JOB_CANCELLED;
            snprintf(j->error, sizeof j->error, "%s", why);
            sf_wk_complete(wk, j);
            continue;
        }
        run_job(wk, j);
    }
}

/* ---- messages from the coordinator -------------------------------------------- */

/* The index of the handler of a kind in wk->handlers, or -1. */
static int handler_for(sf_wk_t *wk, const char *kind) {
    for (int i = 0; i < wk->n_handlers; i++)
        if (strcmp(wk->handlers[i]->kind, kind) == 0) return i;
    return -1;
}

static void on_jobs(sf_wk_t *wk, const Sf__JobBatch *b) {
    int64_t now_us = sf_clock_mono_us();
    for (size_t i = 0; i < b->n_jobs; i++) {
        const Sf__Job *m = b->jobs[i];
        sf_job_t *j = calloc(1, sizeof *j);
        if (!j) continue; /* its lease will expire and it will be given to another */
        j->wk = wk;
        j->received_us = now_us;
        j->id = m->id;
        j->attempt = m->attempt;
        j->lease_ms = m->lease_ms;
        j->item_start = m->item_start;
        j->item_count = m->item_count;
        j->policy_version = m->policy_version;
        j->epoch = wk->epoch;
        snprintf(j->kind, sizeof j->kind, "%s", m->kind);
        snprintf(j->run, sizeof j->run, "%s", m->run ? m->run : "");
        snprintf(j->wnid, sizeof j->wnid, "%s", m->wnid ? m->wnid : "");
        /* A payload over the cap (a coordinator of another build) or one we
         * cannot hold fails its job at once in run_job(), naming why, instead
         * of waiting out its lease. */
        j->payload = m->payload.len <= SF_WIRE_MAX_PAYLOAD ? malloc(m->payload.len + 1) : NULL;
        j->payload_len = m->payload.len;
        if (j->payload) {
            if (m->payload.len) memcpy(j->payload, m->payload.data, m->payload.len);
            j->payload[m->payload.len] = 0;
            j->payload_len = m->payload.len;
        }
        j->hi = handler_for(wk, j->kind);
        j->h = j->hi >= 0 ? wk->handlers[j->hi] : NULL;
        sf_jobq_push(&wk->q, j);
    }
    start_next(wk);
}

static void on_cancel(sf_wk_t *wk, const Sf__Cancel *c) {
    sf_jobq_cancel(&wk->q, c->ids, c->n_ids);
    start_next(wk);
}

static void begin_drain(sf_wk_t *wk, const char *why);
static void finish(sf_wk_t *wk);

/* The coordinator refused a frame of ours.  Another protocol version, or a
 * refused hello (fatal): saying it again cannot help, so the worker stops
 * and exits non-zero, saying why; anything else is logged. */
static void on_refused(sf_wk_t *wk, const Sf__Error *e) {
    const char *msg = e->message && *e->message ? e->message : sf_strerror(e->code);
    if (!e->fatal && e->version == SF_PROTO_VERSION) {
        sf_warn("the coordinator refused a frame of ours: %s", msg);
        return;
    }
    sf_error("the coordinator at %s refused this worker: %s (it speaks protocol version %u, this worker %u)",
             wk->cfg.coordinator, msg, e->version, SF_PROTO_VERSION);
    wk->exit_rc = 1;
    wk->draining = 1;
    wk->q.running = wk->q.queued = 0;
    finish(wk); /* no reconnect after it: it would refuse us again */
    uv_stop(wk->loop);
}

static void on_message(sf_wk_t *wk, const void *buf, size_t len) {
    char err[256];
    Sf__Envelope *env;
    if (sf_wire_decode(buf, len, &env, err, sizeof err) != 0) {
        sf_warn("dropped a bad frame from the coordinator: %s", err);
        return;
    }
    wk->last_recv_ms = sf_clock_mono_ms();
    switch (env->body_case) {
    case SF__ENVELOPE__BODY_ERROR: on_refused(wk, env->error); break;
    case SF__ENVELOPE__BODY_WELCOME:
        if (env->welcome->epoch != wk->epoch)
            sf_info("coordinator epoch %llu: heartbeat %u ms, liveness %u", (unsigned long long)env->welcome->epoch,
                    env->welcome->heartbeat_ms, env->welcome->liveness);
        wk->epoch = env->welcome->epoch;
        wk->welcomed = 1;
        if (env->welcome->heartbeat_ms) wk->hb_ms = env->welcome->heartbeat_ms;
        if (env->welcome->liveness) wk->liveness = env->welcome->liveness;
        break;
    case SF__ENVELOPE__BODY_JOBS: on_jobs(wk, env->jobs); break;
    case SF__ENVELOPE__BODY_CANCEL: on_cancel(wk, env->cancel); break;
    case SF__ENVELOPE__BODY_HEARTBEAT: break;
    case SF__ENVELOPE__BODY_RECONNECT:
        /* Every message we sent before our hello arrived is answered so:
         * one hello per heartbeat interval is enough. */
        if (sf_clock_mono_ms() - wk->hello_ms < (int64_t)wk->hb_ms) break;
        sf_info("the coordinator does not know us (it restarted?): saying hello again");
        say_hello(wk);
        break;
    case SF__ENVELOPE__BODY_SHUTDOWN:
        begin_drain(wk, env->shutdown->drain ? "coordinator asked to drain" : "coordinator asked to stop");
        break;
    default:
        sf_warn("unexpected message from the coordinator (body %d)", (int)env->body_case);
    }
    sf_wire_free(env);
}

static void on_readable(sf_zsock_t *zs) {
    sf_wk_t *wk = zs->data;
    zmq_msg_t m;
    zmq_msg_init(&m);
    int n = 0;
    for (; n < 4096; n++) {
        if (zmq_msg_recv(&m, wk->sock, ZMQ_DONTWAIT) < 0) break;
        if (zmq_msg_more(&m)) { /* a DEALER gets one frame per message from us */
            while (zmq_msg_more(&m) && zmq_msg_recv(&m, wk->sock, ZMQ_DONTWAIT) >= 0) {}
            continue;
        }
        on_message(wk, zmq_msg_data(&m), zmq_msg_size(&m));
    }
    zmq_msg_close(&m);
    if (n == 4096) sf_zsock_backlog(zs);
    flush_results(wk);
}

/* ---- connection ------------------------------------------------------------------- */

static int open_socket(sf_wk_t *wk) {
    wk->sock = zmq_socket(wk->zctx, ZMQ_DEALER);
    if (!wk->sock || sf_wire_sockopts(wk->sock) != 0) return SF_EIO;
    int linger = 2000; /* results and goodbye get out on exit */
    zmq_setsockopt(wk->sock, ZMQ_LINGER, &linger, sizeof linger);
    char err[300];
    if (sf_curve_client(wk->sock, &wk->curve, err, sizeof err) != 0) {
        sf_error("%s", err);
        return SF_EIO;
    }
    /* One endpoint of the list at a time, the next after each silence. */
    char ep[512];
    const int n_eps = sf_endpoints_count(wk->cfg.coordinator), at = (int)(wk->reconnects % (uint64_t)n_eps);
    sf_endpoint_at(wk->cfg.coordinator, at, ep, sizeof ep);
    if (zmq_connect(wk->sock, ep) != 0) {
        sf_error("cannot connect to %s: %s", ep, zmq_strerror(zmq_errno()));
        return SF_EIO;
    }
    if (n_eps > 1) sf_info("talking to the coordinator at %s (%d of %d)", ep, at + 1, n_eps);
    wk->zs.data = wk;
    if (sf_zsock_init(wk->loop, &wk->zs, wk->sock, on_readable) != 0) return SF_EIO;
    wk->zs_open = 1;
    wk->last_recv_ms = sf_clock_mono_ms();
    say_hello(wk);
    return 0;
}

static void on_zs_closed(sf_zsock_t *zs) {
    sf_wk_t *wk = zs->data;
    zmq_close(wk->sock);
    wk->sock = NULL;
    if (!wk->said_bye) open_socket(wk);
}

static void reconnect(sf_wk_t *wk) {
    if (!wk->zs_open) return;
    if (wk->curve.on && !wk->welcomed)
        sf_warn("coordinator silent for %lld ms: reconnecting (CURVE: is this worker's public key %s in the "
                "coordinator's curve_allowed_dir, and curve_server_key_file its key?)",
                (long long)(sf_clock_mono_ms() - wk->last_recv_ms), wk->curve.kp.public_key);
    else
        sf_warn("coordinator silent for %lld ms: reconnecting", (long long)(sf_clock_mono_ms() - wk->last_recv_ms));
    wk->zs_open = 0;
    wk->reconnects++;
    /* What this socket still queues (a hello, heartbeats) must not reach a
     * coordinator that comes up later: each would be a connection of its
     * own there, joined and then replaced by the next one's hello, and the
     * jobs handed to it given back as failed attempts.  (A result from it
     * would be dropped as from an unknown peer in any case.) */
    int linger = 0;
    zmq_setsockopt(wk->sock, ZMQ_LINGER, &linger, sizeof linger);
    sf_zsock_close(&wk->zs, on_zs_closed);
}

/* GET /metrics */
static void render_metrics(void *arg, sf_mbuf_t *m) {
    sf_wk_t *wk = arg;
    sf_metric_head(m, "sf_worker_jobs_total", "counter", "jobs finished, by outcome");
    sf_metric_value(m, "sf_worker_jobs_total", "outcome=\"ok\"", (double)wk->done);
    sf_metric_value(m, "sf_worker_jobs_total", "outcome=\"failed\"", (double)wk->failed);
    sf_metric_head(m, "sf_worker_jobs_running", "gauge", "jobs running now");
    sf_metric_value(m, "sf_worker_jobs_running", NULL, wk->q.running);
    sf_metric_head(m, "sf_worker_jobs_queued", "gauge", "jobs received, not started");
    sf_metric_value(m, "sf_worker_jobs_queued", NULL, wk->q.queued);
    sf_metric_head(m, "sf_worker_slots", "gauge", "jobs this worker runs at once");
    sf_metric_value(m, "sf_worker_slots", NULL, (double)wk->cfg.slots);
    sf_metric_head(m, "sf_worker_reconnects_total", "counter", "times the coordinator was presumed gone");
    sf_metric_value(m, "sf_worker_reconnects_total", NULL, (double)wk->reconnects);
    sf_metric_head(m, "sf_worker_busy_seconds_total", "counter", "time jobs ran, summed over slots");
    sf_metric_value(m, "sf_worker_busy_seconds_total", NULL, busy_us(wk) / 1e6);
    sf_metric_head(m, "sf_worker_kind_busy_seconds_total", "counter", "time jobs ran, by kind");
    for (int i = 0; i < wk->n_handlers; i++) {
        char label[64];
        snprintf(label, sizeof label, "kind=\"%s\"", wk->handlers[i]->kind);
        sf_metric_value(m, "sf_worker_kind_busy_seconds_total", label, wk->q.kind_busy_us[i] / 1e6);
    }
}

static void finish(sf_wk_t *wk) {
    if (wk->said_bye) return;
    flush_results(wk);
    Sf__Shutdown s = SF__SHUTDOWN__INIT;
    s.drain = 1;
    s.reason = wk->draining ? "worker drained" : "worker stopping";
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_SHUTDOWN;
    env.shutdown = &s;
    send_env(wk, &env);
    wk->said_bye = 1;
    sf_kinds_close(wk);
    double span = wk->first_job_us ? (sf_clock_mono_us() - wk->first_job_us) / 1e6 : 0;
    sf_info("leaving after %llu jobs done, %llu failed; busy %.1f%% of the %.1f s since the first job (%ld slots)",
            (unsigned long long)wk->done, (unsigned long long)wk->failed,
            span > 0 ? 100.0 * busy_us(wk) / 1e6 / (span * (double)wk->cfg.slots) : 0.0, span, wk->cfg.slots);
    /* By kind, so that a phase's share can be told from the run's
     * (tools/bench_method.sh): "busy by kind: generate 3.214 s / 40 jobs, …". */
    char by[1024];
    size_t o = 0;
    for (int i = 0; i < wk->n_handlers && o < sizeof by; i++)
        if (wk->q.kind_jobs[i])
            o += (size_t)snprintf(by + o, sizeof by - o, "%s%s %.3f s / %llu jobs", o ? ", " : "",
                                  wk->handlers[i]->kind, wk->q.kind_busy_us[i] / 1e6,
                                  (unsigned long long)wk->q.kind_jobs[i]);
    if (o) sf_info("busy by kind: %s", by);
    if (wk->zs_open) {
        wk->zs_open = 0;
        sf_zsock_close(&wk->zs, on_zs_closed);
    }
    uv_close((uv_handle_t *)&wk->flush, NULL);
    uv_close((uv_handle_t *)&wk->hb, NULL);
    uv_close((uv_handle_t *)&wk->sigterm, NULL);
    uv_close((uv_handle_t *)&wk->sigint, NULL);
    sf_metrics_stop(wk->metrics);
    wk->metrics = NULL;
}

static void begin_drain(sf_wk_t *wk, const char *why) {
    if (wk->draining) return;
    wk->draining = 1;
    sf_info("draining (%s): %d queued jobs go back, %d running finish", why, wk->q.queued, wk->q.running);
    start_next(wk); /* queued jobs come back as cancelled */
}

/* Before the loop sleeps: send results; finish a drain. */
static void on_flush(uv_prepare_t *h) {
    sf_wk_t *wk = h->data;
    flush_results(wk);
    if (!wk->draining && wk->cfg.recycle_after && wk->done + wk->failed >= (uint64_t)wk->cfg.recycle_after)
        begin_drain(wk, "recycle_after reached");
    if (wk->draining && wk->q.running == 0 && wk->q.queued == 0) finish(wk);
}

/* Every heartbeat interval: a heartbeat if we have been quiet, and the
 * coordinator's liveness check. */
static void on_heartbeat(uv_timer_t *t) {
    sf_wk_t *wk = t->data;
    int64_t now = sf_clock_mono_ms();
    if (now - wk->last_recv_ms > (int64_t)wk->hb_ms * wk->liveness) {
        reconnect(wk);
        return;
    }
    Sf__Heartbeat hb = SF__HEARTBEAT__INIT;
    hb.busy = (uint32_t)wk->q.running;
    hb.jobs_done = wk->done;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HEARTBEAT;
    env.heartbeat = &hb;
    send_env(wk, &env);
}

static void on_signal(uv_signal_t *s, int signum) {
    sf_wk_t *wk = s->data;
    if (wk->draining) {
        sf_warn("second signal %d: leaving now", signum);
        wk->q.running = wk->q.queued = 0;
        finish(wk);
        uv_stop(wk->loop);
        return;
    }
    begin_drain(wk, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static int pick_handlers(sf_wk_t *wk, char *err, size_t n) {
    if (!*wk->cfg.kinds) {
        for (const sf_handler_t *h = sf_handlers; h->kind; h++) wk->handlers[wk->n_handlers++] = h;
        return 0;
    }
    char *list = strdup(wk->cfg.kinds), *save = NULL;
    for (char *k = strtok_r(list, ", ", &save); k; k = strtok_r(NULL, ", ", &save)) {
        const sf_handler_t *found = NULL;
        for (const sf_handler_t *h = sf_handlers; h->kind && !found; h++)
            if (strcmp(h->kind, k) == 0) found = h;
        if (!found) {
            sf_errf(SF_EINVAL, err, n, "config key 'kinds': this worker has no kind '%s'", k);
            free(list);
            return SF_EINVAL;
        }
        if (wk->n_handlers < SF_JOBQ_MAX_KINDS) wk->handlers[wk->n_handlers++] = found;
    }
    free(list);
    return wk->n_handlers ? 0 : sf_errf(SF_EINVAL, err, n, "config key 'kinds' names no kind");
}

static void usage(void) {
    fprintf(stderr, "usage: sf-worker [--config FILE] [--key value …]\n\nsettings:\n");
    sf_config_usage(wk_schema, stderr);
    fprintf(stderr, "\njob kinds in this build:\n");
    for (const sf_handler_t *h = sf_handlers; h->kind; h++) fprintf(stderr, "  %-10s %s\n", h->kind, h->doc);
}

int main(int argc, char **argv) {
    static sf_wk_t worker;
    sf_wk_t *wk = &worker;
    char err[512];
    int nrest, help;
    sf_config_defaults(wk_schema, &wk->cfg);
    if (sf_config_args(wk_schema, &wk->cfg, argc, argv, &nrest, &help, err, sizeof err) != 0) {
        fprintf(stderr, "sf-worker: %s\n", err);
        return 2;
    }
    if (help) { usage(); return 0; }
    if (nrest) { fprintf(stderr, "sf-worker: unexpected argument '%s'\n", argv[1]); return 2; }
    if (sf_log_level_parse(wk->cfg.log_level) < 0) {
        fprintf(stderr, "sf-worker: config key 'log_level': unknown level '%s'\n", wk->cfg.log_level);
        return 2;
    }
    if (strlen(wk->cfg.worker_id) > SF_WIRE_MAX_ID) {
        fprintf(stderr, "sf-worker: config key 'worker_id' is %zu bytes, over the %u-byte limit on worker ids\n",
                strlen(wk->cfg.worker_id), SF_WIRE_MAX_ID);
        return 2;
    }
    if (*wk->cfg.worker_id) snprintf(wk->id, sizeof wk->id, "%s", wk->cfg.worker_id);
    else {
        /* host/pid, the host cut so that the id keeps within SF_WIRE_MAX_ID. */
        char host[64], pid[16];
        gethostname(host, sizeof host);
        host[sizeof host - 1] = 0;
        int np = snprintf(pid, sizeof pid, "/%d", (int)getpid());
        snprintf(wk->id, sizeof wk->id, "%.*s%s", (int)SF_WIRE_MAX_ID - np, host, pid);
    }
    char prog[160];
    snprintf(prog, sizeof prog, "sf-worker %.140s", wk->id);
    sf_log_init(prog, wk->cfg.log_level, wk->cfg.log_json);
    if (pick_handlers(wk, err, sizeof err) != 0) {
        fprintf(stderr, "sf-worker: %s\n", err);
        return 2;
    }
    if (strcmp(wk->cfg.dtype, "fp32") && strcmp(wk->cfg.dtype, "bf16") && strcmp(wk->cfg.dtype, "fp16")) {
        fprintf(stderr, "sf-worker: dtype = '%s': must be fp32, bf16 or fp16\n", wk->cfg.dtype);
        return 2;
    }
    /* The folder jobs write and the device they run on are checked now: a
     * worker that started anyway would take jobs and fail every one. */
    if (sf_config_check_dir("data_dir", wk->cfg.data_dir, err, sizeof err) != 0) {
        fprintf(stderr, "sf-worker: %s\n", err);
        return 2;
    }
#if SF_HAVE_TORCH
    if (sf_ml_device_check(wk->cfg.device) != 0) {
        fprintf(stderr, "sf-worker: config key 'device': %s\n", sf_ml_errstr());
        return 2;
    }
#endif
    if (sf_curve_client_load(wk->cfg.curve_key_file, wk->cfg.curve_server_key_file, "curve_key_file",
                             "curve_server_key_file", &wk->curve, err, sizeof err) != 0) {
        fprintf(stderr, "sf-worker: config key %s\n", err);
        return 2;
    }
    if (*wk->cfg.learner_server_key_file && !wk->curve.on) {
        fprintf(stderr, "sf-worker: config key learner_server_key_file needs curve_key_file and curve_server_key_file\n");
        return 2;
    }
    if (wk->curve.on) {
        /* The learner client (rollout and captions jobs) speaks CURVE too,
         * with this worker's keypair and the learner's public key. */
        sf_curve_client_t lcc = wk->curve;
        if (*wk->cfg.learner_server_key_file &&
            sf_curve_load_public(wk->cfg.learner_server_key_file, lcc.server, err, sizeof err) != 0) {
            fprintf(stderr, "sf-worker: config key learner_server_key_file: %s\n", err);
            return 2;
        }
        sf_lc_set_curve(&lcc);
        sf_curve_wipe(&lcc.kp);
    }
    wk->ledger_fd = -1;
    if (*wk->cfg.ledger && (wk->ledger_fd = sf_ledger_open(wk->cfg.ledger, wk->id, err, sizeof err)) < 0) {
        fprintf(stderr, "sf-worker: %s\n", err);
        return 2;
    }
    wk->hb_ms = (uint32_t)wk->cfg.heartbeat_ms;
    wk->liveness = (uint32_t)wk->cfg.liveness;
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error on the write, not the end */
    wk->loop = uv_default_loop();
    wk->zctx = zmq_ctx_new();
    wk->env = (sf_wk_env_t){.learner = wk->cfg.learner, .models_dir = wk->cfg.models_dir, .data_dir = wk->cfg.data_dir,
                            .gpt2_vocab = wk->cfg.gpt2_vocab, .device = wk->cfg.device,
                            .clip_dir = wk->cfg.clip_dir, .diffusion_dir = wk->cfg.diffusion_dir,
                            .reference_root = wk->cfg.reference_root, .dtype = wk->cfg.dtype,
                            .swap_models = wk->cfg.swap_models,
                            .threads = (int)wk->cfg.threads, .zctx = wk->zctx};
    if (open_socket(wk) != 0) return 1;
    if (sf_metrics_start(wk->loop, wk->cfg.metrics_host, (int)wk->cfg.metrics_port, render_metrics, wk, &wk->metrics,
                         err, sizeof err) != 0) {
        sf_error("%s", err);
        return 1;
    }
    uv_prepare_init(wk->loop, &wk->flush);
    wk->flush.data = wk;
    uv_prepare_start(&wk->flush, on_flush);
    uv_timer_init(wk->loop, &wk->hb);
    wk->hb.data = wk;
    uv_timer_start(&wk->hb, on_heartbeat, wk->hb_ms / 2 ? wk->hb_ms / 2 : 1, wk->hb_ms / 2 ? wk->hb_ms / 2 : 1);
    uv_signal_init(wk->loop, &wk->sigterm);
    uv_signal_init(wk->loop, &wk->sigint);
    wk->sigterm.data = wk->sigint.data = wk;
    uv_signal_start(&wk->sigterm, on_signal, SIGTERM);
    uv_signal_start(&wk->sigint, on_signal, SIGINT);
    if (wk->cfg.prefetch)
        sf_info("connecting to %s: %d kinds, %ld slots, credit %u", wk->cfg.coordinator, wk->n_handlers,
                wk->cfg.slots, capacity(wk));
    else
        sf_info("connecting to %s: %d kinds, %ld slots, credit adaptive (at most %u held)", wk->cfg.coordinator,
                wk->n_handlers, wk->cfg.slots, sf_jobq_max_credit(wk->cfg.slots, wk->cfg.prefetch));
    uv_run(wk->loop, UV_RUN_DEFAULT);
    if (wk->sock) zmq_close(wk->sock);
    zmq_ctx_term(wk->zctx);
    free(wk->sbuf);
    sf_curve_wipe(&wk->curve.kp);
    sf_config_free(wk_schema, &wk->cfg);
    return wk->exit_rc;
}
