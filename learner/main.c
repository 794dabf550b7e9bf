/* sf-learner: the PPO learner.  Holds, for each run in its PPO phase, the
 * policy and its frozen reference; takes rollouts from workers; runs PPO
 * updates; publishes numbered policy versions; checkpoints; reports its
 * statistics to Redis.
 *
 *   sf-learner [--config FILE] [--key value …]
 *
 * One libuv loop with a ROUTER socket for workers (rollouts in, policy
 * images out) and hiredis for Redis.  Model work — loading, PPO steps,
 * serialising and checkpointing — runs on libuv's thread pool, one job per
 * run at a time, never on the loop (learner.h has the parts and the rules).
 *
 * A run's learner settings come from its spec in Redis (runs.c).  A
 * restarted learner resumes from its last checkpoint in checkpoint_dir, and
 * does not repeat a finished SFT.
 */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <zmq.h>

#include "common/net/curve.h"
#include "common/net/wire.h"
#include "common/net/zap.h"
#include "common/runtime/clock.h"
#include "common/runtime/config.h"
#include "common/runtime/log.h"
#include "learner/learner.h"

learner_t L;

#define F(k, t, d, lo, hi, doc) {#k, t, offsetof(lconfig_t, k), d, lo, hi, doc}
static const sf_cfg_field_t l_schema[] = {
    SF_REDIS_CFG_FIELDS(lconfig_t),
    F(endpoint, SF_CFG_STRING, "tcp://*:5557", 1, 0, "ZeroMQ endpoint the workers' ROUTER binds"),
    F(curve_key_file, SF_CFG_STRING, "", 1, 0, "this learner's CURVE keypair (sfctl keygen; mode 0600); empty: CURVE off"),
    F(curve_allowed_dir, SF_CFG_STRING, "", 1, 0,
      "folder of the *.pub files of allowed workers (reread on SIGHUP); needs curve_key_file"),
    F(checkpoint_dir, SF_CFG_STRING, "checkpoints", 1, 0, "where each run's policy checkpoints go"),
    F(models_dir, SF_CFG_STRING, "models", 1, 0, "where a run spec's relative \"policy\" path is looked up"),
    F(data_dir, SF_CFG_STRING, "sf-data", 1, 0,
      "the workers' shared data_dir: where the SFT reads the corpus of runs with a corpus phase"),
    F(device, SF_CFG_STRING, "cpu", 1, 0, "device for PPO: cpu or cuda:N"),
    F(gpt2_vocab, SF_CFG_STRING, "data/gpt2", 1, 0,
      "folder with GPT-2's encoder.json and vocab.bpe (tokenises the SFT corpus of runs with \"sft\")"),
    F(threads, SF_CFG_INT, "2", 1, 256, "intra-op threads for PPO"),
    F(run_lease_ms, SF_CFG_INT, "3000", 300, 600000,
      "one learner per run: another learner may take a run this long after this one stopped renewing its lease, ms"),
    SF_CFG_DAEMON_FIELDS(lconfig_t),
    {NULL, 0, 0, NULL, 0, 0, NULL},
};
#undef F

/* Redis is back: ask for the specs the runs still wait for (the statistics
 * follow with the cron). */
static void on_redis_up(sf_redis_conn_t *rc) {
    (void)rc;
    for (lrun_t *r = L.runs; r; r = r->next)
        if (r->state == L_LOADING_SPEC) learner_ask_spec(r);
}

static void on_redis_down(sf_redis_conn_t *rc, int why) {
    (void)rc;
    if (why == SF_REDIS_AUTH_REFUSED) L.redis_auth_failures++;
}

/* The cron, every second: ask again for the specs Redis could not give;
 * refresh every run's statistics; when stopping, exit once no model job
 * is running.  (Reconnecting to Redis is the connection's own job.) */
static void cron(uv_timer_t *t) {
    (void)t;
    int busy = 0;
    learner_renew_runs();
    for (lrun_t *r = L.runs; r; r = r->next) {
        if (r->state == L_LOADING_SPEC) learner_ask_spec(r);
        learner_stats_write(r, 0);
        busy |= r->state == L_LOADING_MODEL || r->state == L_UPDATING;
    }
    if (L.stopping && !busy) {
        sf_zsock_close(&L.zs, NULL);
        uv_close((uv_handle_t *)&L.cron, NULL);
        uv_close((uv_handle_t *)&L.sigterm, NULL);
        uv_close((uv_handle_t *)&L.sigint, NULL);
        uv_close((uv_handle_t *)&L.sighup, NULL);
        sf_zap_close(L.zap);
        L.zap = NULL;
        sf_redis_conn_close(&L.redis, NULL);
        sf_metrics_stop(L.metrics);
    }
}

static void on_signal(uv_signal_t *s, int signum) {
    (void)s;
    sf_info("signal %d: finishing the running update, then stopping", signum);
    L.stopping = 1;
    atomic_store(&L.sft_stop, 1);
}

/* SIGHUP: read the allowed CURVE keys again. */
static void on_hup(uv_signal_t *s, int signum) {
    (void)s;
    (void)signum;
    if (L.zap) sf_zap_reload(L.zap);
    else sf_info("SIGHUP: CURVE is off, nothing to reload");
}

int main(int argc, char **argv) {
    char err[512];
    int nrest, help;
    sf_config_defaults(l_schema, &L.cfg);
    if (sf_config_args(l_schema, &L.cfg, argc, argv, &nrest, &help, err, sizeof err) != 0) {
        fprintf(stderr, "sf-learner: %s\n", err);
        return 2;
    }
    if (help) {
        fprintf(stderr, "usage: sf-learner [--config FILE] [--key value …]\n\nsettings:\n");
        sf_config_usage(l_schema, stderr);
        return 0;
    }
    if (nrest) { fprintf(stderr, "sf-learner: unexpected argument '%s'\n", argv[1]); return 2; }
    if (sf_log_level_parse(L.cfg.log_level) < 0) {
        fprintf(stderr, "sf-learner: config key 'log_level': unknown level '%s'\n", L.cfg.log_level);
        return 2;
    }
    sf_log_init("sf-learner", L.cfg.log_level, L.cfg.log_json);
    /* Checked now, not when a run first writes there (checkpoint_dir/<run>/,
     * train.c), by which time its SFT or PPO work would be lost. */
    if (sf_config_check_dir("checkpoint_dir", L.cfg.checkpoint_dir, err, sizeof err) != 0) {
        fprintf(stderr, "sf-learner: %s\n", err);
        return 2;
    }
    sf_curve_keypair_t curve;
    int curve_on = *L.cfg.curve_key_file || *L.cfg.curve_allowed_dir;
    if (curve_on && (!*L.cfg.curve_key_file || !*L.cfg.curve_allowed_dir)) {
        fprintf(stderr, "sf-learner: config keys 'curve_key_file' and 'curve_allowed_dir' go together: CURVE needs "
                        "this server's keypair and the folder of allowed workers' .pub files\n");
        return 2;
    }
    if (curve_on && sf_curve_load_keypair(L.cfg.curve_key_file, &curve, err, sizeof err) != 0) {
        fprintf(stderr, "sf-learner: config key 'curve_key_file': %s\n", err);
        return 2;
    }
    if (sf_redis_auth_load(L.cfg.redis_user, L.cfg.redis_password_file, &L.redis_auth, err, sizeof err) != 0) {
        fprintf(stderr, "sf-learner: %s\n", err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a peer that went away is an error on the write, not the end */
    L.loop = uv_default_loop();
    {
        char host[64] = "?";
        gethostname(host, sizeof host - 1);
        snprintf(L.holder, sizeof L.holder, "%s:%d:%lld", host, (int)getpid(), (long long)sf_clock_wall_ms());
    }
    /* Reconnects at the pace of the cron that made them before: once a
     * second. */
    const sf_redis_conn_opts_t ro = {.addr = L.cfg.redis, .auth = &L.redis_auth, .user = L.cfg.redis_user,
                                     .password_file = L.cfg.redis_password_file, .retry_min_ms = 1000,
                                     .retry_max_ms = 1000, .held = "statistics are held back",
                                     .on_up = on_redis_up, .on_down = on_redis_down};
    if (sf_redis_conn_init(L.loop, &L.redis, &ro, err, sizeof err) != 0) {
        fprintf(stderr, "sf-learner: config key 'redis': %s\n", err);
        return 2;
    }
    sf_ml_opts_t mo = {(int)L.cfg.threads, 0};
    if (sf_ml_init(&mo) != 0) {
        fprintf(stderr, "sf-learner: libtorch: %s\n", sf_ml_errstr());
        return 2;
    }
    if (sf_ml_device_check(L.cfg.device) != 0) {
        fprintf(stderr, "sf-learner: config key 'device': %s\n", sf_ml_errstr());
        return 2;
    }
    L.zctx = zmq_ctx_new();
    if (curve_on) {
        static const char *const domains[] = {"workers", NULL};
        if (sf_zap_start(L.loop, L.zctx, L.cfg.curve_allowed_dir, domains, &L.zap, err, sizeof err) != 0) {
            sf_error("config key 'curve_allowed_dir': %s", err);
            return 2;
        }
        sf_info("CURVE on: server public key %s; %d allowed worker keys in %s", curve.public_key,
                sf_zap_allowed(L.zap), L.cfg.curve_allowed_dir);
    }
    L.sock = zmq_socket(L.zctx, ZMQ_ROUTER);
    int one = 1;
    if (L.sock && curve_on && sf_curve_server(L.sock, &curve, "workers", err, sizeof err) != 0) {
        sf_error("%s", err);
        return 1;
    }
    if (curve_on) sf_curve_wipe(&curve);
    if (!L.sock || sf_wire_sockopts(L.sock) || zmq_setsockopt(L.sock, ZMQ_ROUTER_MANDATORY, &one, sizeof one) ||
        zmq_bind(L.sock, L.cfg.endpoint) != 0) {
        sf_error("cannot bind %s: %s", L.cfg.endpoint, zmq_strerror(zmq_errno()));
        return 1;
    }
    if (sf_metrics_start(L.loop, L.cfg.metrics_host, (int)L.cfg.metrics_port, learner_metrics, NULL, &L.metrics, err,
                         sizeof err) != 0) {
        sf_error("%s", err);
        return 1;
    }
    sf_redis_conn_start(&L.redis);
    sf_zsock_init(L.loop, &L.zs, L.sock, learner_on_readable);
    uv_timer_init(L.loop, &L.cron);
    uv_timer_start(&L.cron, cron, 1000, 1000);
    uv_signal_init(L.loop, &L.sigterm);
    uv_signal_init(L.loop, &L.sigint);
    uv_signal_start(&L.sigterm, on_signal, SIGTERM);
    uv_signal_start(&L.sigint, on_signal, SIGINT);
    uv_signal_init(L.loop, &L.sighup);
    uv_signal_start(&L.sighup, on_hup, SIGHUP);
    sf_info("serving workers on %s; checkpoints in %s; device %s, %ld threads, BLAS %s", L.cfg.endpoint,
            L.cfg.checkpoint_dir, L.cfg.device, L.cfg.threads, sf_ml_blas_name());
    uv_run(L.loop, UV_RUN_DEFAULT);
    zmq_close(L.sock);
    zmq_ctx_term(L.zctx);
    sf_redis_auth_free(&L.redis_auth);
    sf_info("stopped");
    return 0;
}
