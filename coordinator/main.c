/* sf-coordinator: owns runs, shards them into jobs, dispatches them to
 * workers over ZeroMQ and records every state change in Redis.
 *
 *   sf-coordinator [--config FILE] [--key value …]
 *
 * One libuv loop.  Two ROUTER sockets (workers, clients) join it through
 * sf_zsock; Redis joins through hiredis' libuv adapter.  Periodic work lives in
 * one cron timer (see cron()).
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/runtime/config.h"
#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "common/runtime/metrics.h"
#include "common/net/zap.h"
#include "common/redis/conn.h"
#include "coordinator/coord.h"

#define CRON_MS 100
#define DRAIN_BUDGET 4096 /* frames handled per socket per loop turn */

#define F(k, t, d, lo, hi, doc) {#k, t, offsetof(sf_coord_config_t, k), d, lo, hi, doc}
const sf_cfg_field_t sf_coord_schema[] = {
    SF_REDIS_CFG_FIELDS(sf_coord_config_t),
    F(worker_endpoint, SF_CFG_STRING, "tcp://*:5555", 1, 0, "ZeroMQ endpoint the workers' ROUTER binds"),
    F(client_endpoint, SF_CFG_STRING, "tcp://*:5556", 1, 0, "ZeroMQ endpoint the clients' ROUTER binds"),
    F(curve_key_file, SF_CFG_STRING, "", 1, 0,
      "this coordinator's CURVE keypair (sfctl keygen; mode 0600); empty: CURVE off"),
    F(curve_allowed_dir, SF_CFG_STRING, "", 1, 0,
      "folder of the *.pub files of allowed workers and clients (reread on SIGHUP); needs curve_key_file"),
    F(heartbeat_ms, SF_CFG_INT, "1000", 50, 60000, "heartbeat interval to and from workers, ms"),
    F(liveness, SF_CFG_INT, "3", 2, 100, "heartbeat intervals of silence after which a worker is dead"),
    F(lease_ms, SF_CFG_INT, "600000", 100, 604800000, "default lease of a job, ms (a run spec may set its own)"),
    F(max_attempts, SF_CFG_INT, "3", 1, 100, "default attempts before a job is dead-lettered"),
    F(retry_base_ms, SF_CFG_INT, "500", 0, 3600000, "first retry delay; doubles with each attempt"),
    F(retry_max_ms, SF_CFG_INT, "60000", 0, 86400000, "cap of the retry delay, ms"),
    F(drain_timeout_ms, SF_CFG_INT, "10000", 0, 3600000, "on SIGTERM, how long to wait for leased jobs"),
    F(max_jobs_per_run, SF_CFG_INT, "50000000", 1, 4000000000.0, "largest run accepted, in jobs"),
    F(max_runs, SF_CFG_INT, "1000", 1, 1000000,
      "most runs holding job slots at once: queued, running, or ended less than finished_hold_ms ago"),
    F(max_jobs_held, SF_CFG_INT, "200000000", 1, 4000000000.0,
      "most job slots held in memory at once, over all runs (16 bytes each); a submit past it is refused"),
    F(finished_hold_ms, SF_CFG_INT, "2000", 0, 3600000,
      "an ended run drops its job slots this long after Redis acknowledged its last write, ms"),
    F(max_finished_runs, SF_CFG_INT, "1000", 0, 1000000,
      "ended runs kept in memory for status and listings; older ones stay in Redis only"),
    F(flush_max_ops, SF_CFG_INT, "20000", 100, 10000000, "Redis operations after which a batch is sent at once"),
    F(worker_ttl_s, SF_CFG_INT, "30", 2, 86400, "expiry of a worker's Redis hash without heartbeats, s"),
    F(leader_lease_ms, SF_CFG_INT, "3000", 300, 600000,
      "the leader lease in Redis: a standby takes over this long after the leader stops renewing it, ms"),
    F(no_worker_timeout_ms, SF_CFG_INT, "600000", 0, 604800000,
      "a run whose phase's kind no connected worker offers fails after this long, ms (0: waits)"),
    SF_CFG_DAEMON_FIELDS(sf_coord_config_t),
    {NULL, 0, 0, NULL, 0, 0, NULL},
};
#undef F

void sf_coord_on_acked(sf_coord_t *c, const sf_ack_t *acks, size_t n) {
    sf_run_t *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const sf_ack_t *a = &acks[i];
        if (a->type == ACK_REPLY) {
            char id[16];
            snprintf(id, sizeof id, "r%u", a->run);
            sf_clients_reply(c, a->rid, a->rid_len, a->tag, 0, NULL, id, NULL);
            continue;
        }
        sf_run_t *r = (last && last->num == a->run) ? last : sf_runs_find_num(c, a->run);
        if (!r || !r->jobs || a->idx >= r->n_jobs) continue;
        if (last && last != r) sf_run_progress(c, last);
        last = r;
        if (a->type == ACK_JOB_DONE || a->type == ACK_JOB_DEAD) sf_run_count_acked(c, r, a->idx, a->type == ACK_JOB_DEAD);
    }
    if (last) sf_run_progress(c, last);
}

/* ---- sockets --------------------------------------------------------------------- */

static void drain(sf_zsock_t *zs, int workers) {
    sf_coord_t *c = zs->data;
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    int n = 0;
    for (; n < DRAIN_BUDGET; n++) {
        if (zmq_msg_recv(&rid, zs->sock, ZMQ_DONTWAIT) < 0) break;
        int more = zmq_msg_more(&rid);
        if (!more) { c->st.frames_bad++; continue; } /* a ROUTER always gives [rid][body] */
        if (zmq_msg_recv(&body, zs->sock, ZMQ_DONTWAIT) < 0) break;
        if (zmq_msg_more(&body)) {
            /* Extra frames: count the message as bad and discard the rest. */
            c->st.frames_bad++;
            while (zmq_msg_more(&body) && zmq_msg_recv(&body, zs->sock, ZMQ_DONTWAIT) >= 0) {}
            continue;
        }
        if (workers) sf_broker_on_frame(c, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body), zmq_msg_size(&body));
        else sf_clients_on_frame(c, zmq_msg_data(&rid), zmq_msg_size(&rid), zmq_msg_data(&body), zmq_msg_size(&body));
    }
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
    if (n == DRAIN_BUDGET) sf_zsock_backlog(zs);
    sf_broker_pump(c);
    sf_store_flush(c);
}

static void on_workers(sf_zsock_t *zs) { drain(zs, 1); }
static void on_clients(sf_zsock_t *zs) { drain(zs, 0); }

/* Before the loop sleeps: hand out jobs and send what Redis must hear. */
static void on_pump(uv_prepare_t *h) {
    sf_coord_t *c = h->data;
    sf_broker_pump(c);
    sf_store_flush(c);
}

static void shutdown_loop(sf_coord_t *c);

static void counter(sf_mbuf_t *m, const char *name, const char *help, double v) {
    sf_metric_head(m, name, "counter", help);
    sf_metric_value(m, name, NULL, v);
}

static void gauge(sf_mbuf_t *m, const char *name, const char *help, double v) {
    sf_metric_head(m, name, "gauge", help);
    sf_metric_value(m, name, NULL, v);
}

static void quantiles(sf_mbuf_t *m, const char *name, const char *help, const sf_hist_t *h) {
    char l[32];
    sf_metric_head(m, name, "summary", help);
    const double qs[] = {0.5, 0.9, 0.99};
    for (int i = 0; i < 3; i++) {
        snprintf(l, sizeof l, "quantile=\"%g\"", qs[i]);
        sf_metric_value(m, name, l, (double)sf_hist_quantile(h, qs[i]) / 1e6);
    }
    sf_mbuf_printf(m, "%s_sum %.9g\n%s_count %llu\n", name, (double)h->sum / 1e6, name, (unsigned long long)h->count);
}

/* GET /metrics: counters since start, and gauges of the state now. */
static void render_metrics(void *arg, sf_mbuf_t *m) {
    sf_coord_t *c = arg;
    const sf_stats_t *s = &c->st;
    counter(m, "sf_coordinator_jobs_dispatched_total", "jobs handed to workers (attempts)", (double)s->dispatched);
    sf_metric_head(m, "sf_coordinator_results_total", "counter", "results received, by outcome");
    sf_metric_value(m, "sf_coordinator_results_total", "outcome=\"ok\"", (double)s->results_ok);
    sf_metric_value(m, "sf_coordinator_results_total", "outcome=\"failed\"", (double)s->results_failed);
    sf_metric_value(m, "sf_coordinator_results_total", "outcome=\"duplicate\"", (double)s->results_dup);
    sf_metric_value(m, "sf_coordinator_results_total", "outcome=\"stale\"", (double)s->results_stale);
    sf_metric_value(m, "sf_coordinator_results_total", "outcome=\"unknown\"", (double)s->results_unknown);
    counter(m, "sf_coordinator_jobs_retried_total", "jobs put back in the queue (failure, expiry, lost worker)", (double)s->requeued);
    counter(m, "sf_coordinator_leases_expired_total", "leases that ran out", (double)s->expired);
    counter(m, "sf_coordinator_jobs_dead_total", "jobs dead-lettered", (double)s->dead_lettered);
    counter(m, "sf_coordinator_workers_lost_total", "workers declared dead: silent past their liveness window",
            (double)s->workers_died);
    counter(m, "sf_coordinator_workers_left_total", "workers that said goodbye (Shutdown)", (double)s->workers_left);
    counter(m, "sf_coordinator_workers_replaced_total", "worker connections superseded by a new one with the same id",
            (double)s->workers_replaced);
    counter(m, "sf_coordinator_frames_bad_total", "frames refused (each answered with an Error)", (double)s->frames_bad);
    counter(m, "sf_coordinator_frames_oversize_total", "frames refused for being over the size cap",
            (double)s->frames_oversize);
    counter(m, "sf_coordinator_frames_wrong_version_total", "frames refused for another protocol version",
            (double)s->frames_version);
    counter(m, "sf_coordinator_redis_batches_total", "MULTI/EXEC batches sent to Redis", (double)s->redis_batches);
    counter(m, "sf_coordinator_redis_errors_total", "commands Redis refused", (double)s->redis_errors);
    counter(m, "sf_coordinator_redis_reconnects_total", "lost Redis connections", (double)s->redis_reconnects);
    counter(m, "sf_coordinator_redis_auth_failures_total", "Redis connections whose AUTH was refused",
            (double)s->redis_auth_failures);
    counter(m, "sf_coordinator_dispatch_held_total", "loop turns that dispatched nothing while Redis was behind",
            (double)s->dispatch_held);
    sf_zap_metrics(c->zap, m, "sf_coordinator");
    uint64_t jobs_done = 0, queued = 0, leased = 0;
    int states[RUN_CANCELLED + 1] = {0};
    for (sf_run_t *r = c->runs; r; r = r->next) {
        states[r->state]++;
        jobs_done += r->done;
        leased += r->leased;
        if (sf_run_active(r) && r->jobs)
            queued += r->n_jobs - r->done - r->dead - r->leased;
    }
    counter(m, "sf_coordinator_jobs_done_total", "jobs done and acknowledged by Redis (runs in memory)", (double)jobs_done);
    gauge(m, "sf_coordinator_jobs_queued", "jobs of active runs not yet done, dead or leased", (double)queued);
    gauge(m, "sf_coordinator_leases", "jobs leased to workers now", (double)leased);
    sf_metric_head(m, "sf_coordinator_runs", "gauge", "runs by state");
    for (int i = 0; i <= RUN_CANCELLED; i++) {
        char l[48];
        snprintf(l, sizeof l, "state=\"%s\"", sf_run_state_name(i));
        sf_metric_value(m, "sf_coordinator_runs", l, states[i]);
    }
    int workers = 0;
    for (int i = 0; i < c->n_worker_slots; i++) workers += c->workers[i].used;
    gauge(m, "sf_coordinator_workers", "workers connected", workers);
    quantiles(m, "sf_coordinator_job_latency_seconds", "dispatch to result acknowledged by Redis", &c->latency);
    quantiles(m, "sf_coordinator_redis_latency_seconds", "batch sent to EXEC acknowledged", &c->redis_latency);
}

/* The cron, every CRON_MS:
 *  - workers silent past their liveness window are removed, their jobs requeued;
 *  - heartbeats to every worker, and their Redis hashes refreshed (each interval);
 *  - leases past their deadline are expired (each heartbeat interval);
 *  - jobs whose retry backoff is over go back to the queue;
 *  - the coordinator's own Redis hash (each second);
 *  - the learner's state of runs in a learner phase (each tick, one read in
 *    flight at most): its policy version goes into new jobs and opens the
 *    next rollouts, its "done" ends the phase;
 *  - while stopping: exit once no job is leased (or the drain timeout passed)
 *    and Redis has acknowledged everything. */
static void cron(uv_timer_t *t) {
    sf_coord_t *c = t->data;
    static int64_t last_self;
    sf_store_lease_tick(c);
    sf_broker_cron(c);
    int64_t now = sf_coord_mono_ms(c);
    if (now - last_self >= 1000) {
        last_self = now;
        sf_store_coordinator(c);
    }
    for (sf_run_t *r = c->runs; r; r = r->next)
        if (sf_run_active(r) && r->phase < r->n_phases && r->phases[r->phase].until_learner)
            sf_store_poll_learner(c, r);
    if (c->stopping) {
        uint64_t leased = 0;
        for (sf_run_t *r = c->runs; r; r = r->next) leased += r->leased;
        if ((leased == 0 || now >= c->stop_deadline_ms) && sf_store_idle(c)) shutdown_loop(c);
        else if (now >= c->stop_deadline_ms + 5000) {
            sf_warn("stopping with Redis writes unacknowledged (is Redis down?)");
            shutdown_loop(c);
        }
    }
    c->dispatch_dirty = 1;
}

static void on_signal(uv_signal_t *s, int signum) {
    sf_coord_t *c = s->data;
    if (c->stopping) {
        sf_warn("second signal: stopping now");
        shutdown_loop(c);
        return;
    }
    sf_info("signal %d: no new work is handed out; waiting up to %ld ms for leased jobs", signum,
            c->cfg.drain_timeout_ms);
    c->stopping = 1;
    c->stop_deadline_ms = sf_coord_mono_ms(c) + c->cfg.drain_timeout_ms;
}

static int shut;
static void shutdown_loop(sf_coord_t *c) {
    if (shut) return;
    shut = 1;
    sf_zsock_close(&c->wz, NULL);
    sf_zsock_close(&c->cz, NULL);
    uv_close((uv_handle_t *)&c->pump, NULL);
    uv_close((uv_handle_t *)&c->cron, NULL);
    uv_close((uv_handle_t *)&c->sigterm, NULL);
    uv_close((uv_handle_t *)&c->sigint, NULL);
    uv_close((uv_handle_t *)&c->sighup, NULL);
    sf_zap_close(c->zap);
    c->zap = NULL;
    sf_store_lease_release(c);
    sf_store_close(c);
    sf_metrics_stop(c->metrics);
}

/* SIGHUP: read the allowed CURVE keys again. */
static void on_hup(uv_signal_t *s, int signum) {
    (void)signum;
    sf_coord_t *c = s->data;
    if (c->zap) sf_zap_reload(c->zap);
    else sf_info("SIGHUP: CURVE is off, nothing to reload");
}

/* kp: CURVE server keys, or NULL; domain names the socket to the ZAP handler. */
static void *bind_router(sf_coord_t *c, const char *ep, const sf_curve_keypair_t *kp, const char *domain, char *err,
                         size_t n) {
    void *s = zmq_socket(c->zctx, ZMQ_ROUTER);
    int one = 1;
    if (s && kp && sf_curve_server(s, kp, domain, err, n) != 0) {
        zmq_close(s);
        return NULL;
    }
    if (!s || sf_wire_sockopts(s) || zmq_setsockopt(s, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
        zmq_bind(s, ep) != 0) {
        sf_errf(SF_EIO, err, n, "cannot bind %s: %s", ep, zmq_strerror(zmq_errno()));
        if (s) zmq_close(s);
        return NULL;
    }
    return s;
}

/* The CURVE settings: both keys or neither. */
static int check_curve(const sf_coord_config_t *cfg, sf_curve_keypair_t *kp, char *err, size_t n) {
    if (!*cfg->curve_key_file && !*cfg->curve_allowed_dir) return 0;
    if (!*cfg->curve_allowed_dir)
        return sf_errf(SF_EINVAL, err, n,
                       "config key 'curve_key_file' needs 'curve_allowed_dir' (the folder of allowed clients' .pub "
                       "files)");
    if (!*cfg->curve_key_file)
        return sf_errf(SF_EINVAL, err, n, "config key 'curve_allowed_dir' needs 'curve_key_file' (this server's keypair)");
    char e2[600];
    if (sf_curve_load_keypair(cfg->curve_key_file, kp, e2, sizeof e2) != 0)
        return sf_errf(SF_EINVAL, err, n, "config key 'curve_key_file': %s", e2);
    return 1;
}

static void usage(void) {
    fprintf(stderr, "usage: sf-coordinator [--config FILE] [--key value …]\n\nsettings:\n");
    sf_config_usage(sf_coord_schema, stderr);
}

int main(int argc, char **argv) {
    static sf_coord_t coord;
    sf_coord_t *c = &coord;
    char err[512];
    int nrest, help;
    sf_config_defaults(sf_coord_schema, &c->cfg);
    if (sf_config_args(sf_coord_schema, &c->cfg, argc, argv, &nrest, &help, err, sizeof err) != 0) {
        fprintf(stderr, "sf-coordinator: %s\n", err);
        usage();
        return 2;
    }
    if (help) { usage(); return 0; }
    if (nrest) { fprintf(stderr, "sf-coordinator: unexpected argument '%s'\n", argv[1]); return 2; }
    if (c->cfg.retry_base_ms > c->cfg.retry_max_ms) {
        fprintf(stderr, "sf-coordinator: config keys 'retry_base_ms' (%ld) and 'retry_max_ms' (%ld) contradict each "
                        "other: the first retry delay is above the cap\n", c->cfg.retry_base_ms, c->cfg.retry_max_ms);
        return 2;
    }
    if (sf_log_level_parse(c->cfg.log_level) < 0) {
        fprintf(stderr, "sf-coordinator: config key 'log_level': unknown level '%s'\n", c->cfg.log_level);
        return 2;
    }
    sf_log_init("sf-coordinator", c->cfg.log_level, c->cfg.log_json);
    static sf_curve_keypair_t curve;
    int curve_on = check_curve(&c->cfg, &curve, err, sizeof err);
    if (curve_on < 0 ||
        sf_redis_auth_load(c->cfg.redis_user, c->cfg.redis_password_file, &c->redis_auth, err, sizeof err) != 0) {
        fprintf(stderr, "sf-coordinator: %s\n", err);
        return 2;
    }
    /* A peer that went away (a Redis connection cut by a new leader, say) is
     * an error on the write, not the end of the process. */
    signal(SIGPIPE, SIG_IGN);
    c->loop = uv_default_loop();
    c->mono_ms = sf_clock_mono_ms;
    c->start_mono_ms = sf_coord_mono_ms(c);
    c->start_wall_ms = sf_clock_wall_ms();
    c->workers = calloc(SF_MAX_WORKERS, sizeof *c->workers);
    if (!c->workers) return 1;
    /* Nothing is served before Redis has given us every run: while it is
     * unreachable or refuses our AUTH, wait and try again (the loop does
     * not run yet, so there is nothing to block). */
    for (int tries = 0;; tries++) {
        if (tries && sf_redis_auth_refresh(&c->redis_auth, c->cfg.redis_user, c->cfg.redis_password_file, err,
                                           sizeof err) != 0 && tries % 30 == 0)
            sf_error("%s", err);
        int rc = sf_store_load(c, err, sizeof err);
        if (rc == 0) break;
        if (rc != SF_EREDIS) {
            sf_error("%s", err);
            return 1;
        }
        if (tries % 30 == 0) sf_error("%s; retrying every second", err);
        sleep(1);
    }
    c->zctx = zmq_ctx_new();
    if (curve_on) {
        static const char *const domains[] = {"workers", "clients", NULL};
        if (sf_zap_start(c->loop, c->zctx, c->cfg.curve_allowed_dir, domains, &c->zap, err, sizeof err) != 0) {
            sf_error("config key 'curve_allowed_dir': %s", err);
            return 2;
        }
        sf_info("CURVE on: server public key %s; %d allowed client keys in %s", curve.public_key,
                sf_zap_allowed(c->zap), c->cfg.curve_allowed_dir);
    }
    c->wsock = bind_router(c, c->cfg.worker_endpoint, curve_on ? &curve : NULL, "workers", err, sizeof err);
    c->csock = c->wsock ? bind_router(c, c->cfg.client_endpoint, curve_on ? &curve : NULL, "clients", err, sizeof err)
                        : NULL;
    sf_curve_wipe(&curve);
    if (!c->wsock || !c->csock) {
        sf_error("%s", err);
        return 1;
    }
    if (sf_store_open(c, err, sizeof err) != 0) {
        sf_error("%s", err);
        return 1;
    }
    if (sf_metrics_start(c->loop, c->cfg.metrics_host, (int)c->cfg.metrics_port, render_metrics, c, &c->metrics, err,
                         sizeof err) != 0) {
        sf_error("%s", err);
        return 1;
    }
    c->wz.data = c->cz.data = c;
    sf_zsock_init(c->loop, &c->wz, c->wsock, on_workers);
    sf_zsock_init(c->loop, &c->cz, c->csock, on_clients);
    uv_prepare_init(c->loop, &c->pump);
    c->pump.data = c;
    uv_prepare_start(&c->pump, on_pump);
    uv_timer_init(c->loop, &c->cron);
    c->cron.data = c;
    uv_timer_start(&c->cron, cron, CRON_MS, CRON_MS);
    uv_signal_init(c->loop, &c->sigterm);
    uv_signal_init(c->loop, &c->sigint);
    c->sigterm.data = c->sigint.data = c;
    uv_signal_start(&c->sigterm, on_signal, SIGTERM);
    uv_signal_start(&c->sigint, on_signal, SIGINT);
    uv_signal_init(c->loop, &c->sighup);
    c->sighup.data = c;
    uv_signal_start(&c->sighup, on_hup, SIGHUP);
    sf_info("epoch %llu; workers on %s, clients on %s, redis %s; %d runs loaded",
            (unsigned long long)c->epoch, c->cfg.worker_endpoint, c->cfg.client_endpoint, c->cfg.redis,
            ({ int k = 0; for (sf_run_t *r = c->runs; r; r = r->next) k++; k; }));
    c->dispatch_dirty = 1;
    uv_run(c->loop, UV_RUN_DEFAULT);
    zmq_close(c->wsock);
    zmq_close(c->csock);
    zmq_ctx_term(c->zctx);
    int rc = uv_loop_close(c->loop);
    while (c->runs) {
        sf_run_t *r = c->runs;
        c->runs = r->next;
        sf_run_free(r);
    }
    free(c->workers);
    free(c->sbuf);
    sf_redis_auth_free(&c->redis_auth);
    sf_config_free(sf_coord_schema, &c->cfg);
    sf_info("stopped%s", rc ? " (loop not empty)" : "");
    return 0;
}
