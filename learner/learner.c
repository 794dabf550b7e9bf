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
 * run at a time, never on the loop.
 *
 * A run's learner settings come from its spec in Redis (`sf:run:<id>`
 * field `spec`): "policy" (a checkpoint path) or "policy_config" (a random
 * policy of that shape, from "seed"), "ppo", and "sft" when the policy
 * still needs its supervised fine-tuning on a caption corpus before PPO
 * (docs/configuration.md).  A restarted learner resumes from its last
 * checkpoint in checkpoint_dir, and does not repeat a finished SFT.
 */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdatomic.h>
#include "common/redis/redis_uv.h"
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "common/net/blob.h"
#include "common/text/bpe.h"
#include "common/method/classes.h"
#include "common/runtime/config.h"
#include "common/net/curve.h"
#include "common/runtime/error.h"
#include "common/redis/keys.h"
#include "common/runtime/log.h"
#include "common/runtime/metrics.h"
#include "common/redis/redis_auth.h"
#include "common/method/run_spec.h"
#include "common/text/sft_rows.h"
#include "common/net/wire.h"
#include "common/net/zap.h"
#include "common/net/zsock.h"
#include "ml/sf_ml.h"
#include "world/world.h"

typedef struct {
    char *redis, *redis_prefix, *redis_user, *redis_password_file, *endpoint, *curve_key_file, *curve_allowed_dir;
    char *checkpoint_dir, *models_dir, *device, *gpt2_vocab;
    long threads;
    char *metrics_host;
    long metrics_port;
    char *log_level;
    int log_json;
} lconfig_t;

#define F(k, t, d, lo, hi, doc) {#k, t, offsetof(lconfig_t, k), d, lo, hi, doc}
static const sf_cfg_field_t l_schema[] = {
    F(redis, SF_CFG_STRING, "127.0.0.1:6379", 1, 0, "Redis address: host:port or unix:/path"),
    F(redis_prefix, SF_CFG_STRING, "sf", 1, 0, "prefix of every Redis key"),
    F(redis_user, SF_CFG_STRING, "", 1, 0, "Redis ACL user for AUTH (default $SF_REDIS_USER, else the default user)"),
    F(redis_password_file, SF_CFG_STRING, "", 1, 0,
      "file holding the Redis password (default $SF_REDIS_PASSWORD; empty: no AUTH)"),
    F(endpoint, SF_CFG_STRING, "tcp://*:5557", 1, 0, "ZeroMQ endpoint the workers' ROUTER binds"),
    F(curve_key_file, SF_CFG_STRING, "", 1, 0, "this learner's CURVE keypair (sfctl keygen; mode 0600); empty: CURVE off"),
    F(curve_allowed_dir, SF_CFG_STRING, "", 1, 0,
      "folder of the *.pub files of allowed workers (reread on SIGHUP); needs curve_key_file"),
    F(checkpoint_dir, SF_CFG_STRING, "checkpoints", 1, 0, "where each run's policy checkpoints go"),
    F(models_dir, SF_CFG_STRING, "models", 1, 0, "where a run spec's relative \"policy\" path is looked up"),
    F(device, SF_CFG_STRING, "cpu", 1, 0, "device for PPO: cpu or cuda:N"),
    F(gpt2_vocab, SF_CFG_STRING, "data/gpt2", 1, 0,
      "folder with GPT-2's encoder.json and vocab.bpe (tokenises the SFT corpus of runs with \"sft\")"),
    F(threads, SF_CFG_INT, "2", 1, 256, "intra-op threads for PPO"),
    SF_CFG_DAEMON_FIELDS(lconfig_t),
    {NULL, 0, 0, NULL, 0, 0, NULL},
};
#undef F

/* One rollout as kept until it is used. */
typedef struct {
    int32_t *query, *response;
    int qn, rn;
    float score;
    uint32_t version;
} roll_t;

typedef struct waiter_s {
    uint8_t rid[256];
    size_t rid_len;
    uint32_t min_version;
    struct waiter_s *next;
} waiter_t;

enum { L_LOADING_SPEC, L_LOADING_MODEL, L_READY, L_UPDATING, L_FAILED };

typedef struct lrun_s {
    char id[16];
    int state;
    int spec_asked;      /* L_LOADING_SPEC: the HGET of the spec is out */
    char error[512];
    /* settings */
    char policy_path[PATH_MAX];
    sf_gpt2_config_t pcfg;
    int random_policy;
    uint64_t seed;
    sf_ppo_config_t ppo;
    int batch_size, max_staleness;
    uint64_t target_updates;
    /* SFT before PPO ("sft" in the spec; sft_steps 0: none) */
    int sft_steps, sft_batch, sft_warmup, sft_per_class;
    float sft_lr, sft_lr_min;
    char sft_corpus[PATH_MAX]; /* "" for the world's corpus */
    char world[64];
    char **classes;            /* the run's classes (wnids or names) */
    int n_classes;
    _Atomic int sft_step;      /* progress, written by the thread-pool job */
    _Atomic int sft_loss_x1e6;
    float sft_first, sft_last;
    /* models (touched only by the thread-pool job while one runs) */
    sf_gpt2_t *policy, *ref;
    sf_ppo_t *trainer;
    uint32_t version;
    uint64_t updates;
    float kl_coef_resume;
    /* the published image of `version` */
    uint8_t *blob;
    size_t blob_len;
    uint32_t blob_crc;
    /* rollouts waiting for an update, and the batch of the running one */
    roll_t *buf;
    int n_buf, cap_buf;
    roll_t *batch;
    int n_batch;
    sf_ppo_stats_t last;
    double nonsense, w_nonsense; /* share of the batch scored as nonsense (reward -1) */
    uint64_t received, dropped_stale;
    waiter_t *waiters;
    uv_work_t work;
    /* Written by the thread-pool job, taken over by after_work() on the
     * loop: the loop never sees a half-made version. */
    int w_failed;
    char w_error[512];
    uint8_t *w_blob;
    size_t w_blob_len;
    sf_ppo_stats_t w_stats;
    uint32_t w_version;
    uint64_t w_updates;
    struct lrun_s *next;
} lrun_t;

typedef struct {
    lconfig_t cfg;
    uv_loop_t *loop;
    void *zctx, *sock;
    sf_zsock_t zs;
    redisAsyncContext *ac;
    uv_timer_t cron;
    uv_signal_t sigterm, sigint, sighup;
    sf_redis_auth_t redis_auth;
    int64_t auth_logged_ms;  /* a refused AUTH is logged at most once a minute */
    uint64_t redis_auth_failures;
    sf_zap_t *zap;           /* CURVE client authentication; NULL when off */
    lrun_t *runs;
    uint8_t *sbuf;
    size_t sbuf_cap;
    uint64_t frames_bad;
    int stopping;
    sf_metrics_t *metrics;
} learner_t;

static learner_t L;
/* Set by a signal; a running SFT stops at its next step (the loop waits
 * for thread-pool jobs before it exits). */
static atomic_int sft_stop;

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- Redis (statistics; fire and forget, in order) -------------------------- */

static void redis_connect(void);

static void on_redis_auth(redisAsyncContext *ac, void *reply, void *priv) {
    (void)priv;
    redisReply *r = reply;
    if (!r) return;
    if (r->type != REDIS_REPLY_ERROR) {
        sf_info("redis: connected%s", L.auth_logged_ms ? "; AUTH accepted" : "");
        L.auth_logged_ms = 0;
        return;
    }
    L.redis_auth_failures++;
    int64_t now = now_ms();
    if (!L.auth_logged_ms || now - L.auth_logged_ms >= 60000) {
        char who[160];
        sf_error("redis: %s refused AUTH as %s: %s%s; retrying", L.cfg.redis,
                 sf_redis_auth_who(&L.redis_auth, who, sizeof who), r->str, sf_redis_auth_hint(r->str));
        L.auth_logged_ms = now;
    }
    /* The cron connects again; whatever was queued behind AUTH fails now. */
    redisAsyncDisconnect(ac);
}

static void on_redis_connect(const redisAsyncContext *ac, int status) {
    if (status != REDIS_OK) {
        sf_warn("redis: connect failed: %s", ac->errstr);
        L.ac = NULL;
    } else if (!L.redis_auth.password) {
        sf_info("redis: connected");
    }
}

static void on_redis_disconnect(const redisAsyncContext *ac, int status) {
    (void)ac;
    L.ac = NULL;
    if (status != REDIS_OK && !L.stopping) sf_warn("redis: connection lost; statistics are held back until it is back");
}

static void redis_connect(void) {
    if (L.ac) return;
    char err[600];
    static int64_t warned_ms; /* at most once a minute */
    if (sf_redis_auth_refresh(&L.redis_auth, L.cfg.redis_user, L.cfg.redis_password_file, err, sizeof err) != 0 &&
        now_ms() - warned_ms >= 60000) {
        warned_ms = now_ms();
        sf_warn("redis: %s; trying the password read before", err);
    }
    const char *a = L.cfg.redis;
    redisAsyncContext *ac;
    if (!strncmp(a, "unix:", 5)) ac = redisAsyncConnectUnix(a + 5);
    else {
        char host[256];
        const char *colon = strrchr(a, ':');
        int port = colon ? atoi(colon + 1) : 6379;
        snprintf(host, sizeof host, "%.*s", colon ? (int)(colon - a) : (int)strlen(a), a);
        ac = redisAsyncConnect(host, port);
    }
    if (!ac || ac->err) {
        sf_warn("redis: %s", ac ? ac->errstr : "out of memory");
        if (ac) redisAsyncFree(ac);
        return;
    }
    sf_redis_uv_attach(ac, L.loop);
    redisAsyncSetConnectCallback(ac, on_redis_connect);
    redisAsyncSetDisconnectCallback(ac, on_redis_disconnect);
    L.ac = ac;
    /* AUTH first: hiredis sends commands in order, so every command queued
     * after this one runs as the authenticated user. */
    sf_redis_auth_async(ac, &L.redis_auth, on_redis_auth, NULL);
}

static void write_stats(lrun_t *r, int with_curve) {
    /* Nothing to say before the spec is read (and target_updates 0 would
     * read as done). */
    if (!L.ac || r->state == L_LOADING_SPEC) return;
    char key[128], f[64][32];
    const char *argv[80];
    size_t n = 0;
    snprintf(key, sizeof key, "%s:run:%s:learner", L.cfg.redis_prefix, r->id);
    argv[n++] = "HSET";
    argv[n++] = key;
    int k = 0;
#define PUT(name, fmt, val) do { argv[n++] = name; snprintf(f[k], sizeof f[k], fmt, val); argv[n++] = f[k++]; } while (0)
    PUT("version", "%u", r->version);
    PUT("updates", "%llu", (unsigned long long)r->updates);
    PUT("target_updates", "%llu", (unsigned long long)r->target_updates);
    PUT("done", "%d", r->updates >= r->target_updates);
    int sft_step = atomic_load(&r->sft_step);
    PUT("state", "%s", r->state == L_FAILED ? "failed" : r->state == L_UPDATING ? "updating" : r->state == L_READY ? "ready"
                       : r->sft_steps && sft_step < r->sft_steps ? "sft" : "loading");
    PUT("sft_step", "%d", sft_step);
    PUT("sft_steps", "%d", r->sft_steps);
    PUT("sft_loss", "%.6f", atomic_load(&r->sft_loss_x1e6) / 1e6);
    PUT("buffered", "%d", r->n_buf);
    PUT("received", "%llu", (unsigned long long)r->received);
    PUT("dropped_stale", "%llu", (unsigned long long)r->dropped_stale);
    PUT("mean_score", "%.6f", r->last.mean_score);
    PUT("kl", "%.6f", r->last.kl);
    PUT("kl_coef", "%.6f", r->updates ? r->last.next_kl_coef : r->ppo.init_kl_coef);
    PUT("entropy", "%.6f", r->last.entropy);
    PUT("nonsense", "%.4f", r->nonsense);
    PUT("pg_loss", "%.6f", r->last.pg_loss);
    PUT("vf_loss", "%.6f", r->last.vf_loss);
    PUT("clipfrac", "%.6f", r->last.clipfrac);
    PUT("approxkl", "%.6f", r->last.approxkl);
    PUT("updated_ms", "%lld", (long long)now_ms());
#undef PUT
    argv[n++] = "error";
    argv[n++] = r->error;
    redisAsyncCommandArgv(L.ac, NULL, NULL, (int)n, argv, NULL);
    if (!with_curve) return;
    char skey[128], v[16][32];
    snprintf(skey, sizeof skey, "%s:run:%s:ppo", L.cfg.redis_prefix, r->id);
    const char *xa[40] = {"XADD", skey, "MAXLEN", "~", "100000", "*"};
    size_t m = 6;
    int j = 0;
#define PUTX(name, fmt, val) do { xa[m++] = name; snprintf(v[j], sizeof v[j], fmt, val); xa[m++] = v[j++]; } while (0)
    PUTX("update", "%llu", (unsigned long long)r->updates);
    PUTX("version", "%u", r->version);
    PUTX("mean_score", "%.6f", r->last.mean_score);
    PUTX("kl", "%.6f", r->last.kl);
    PUTX("kl_coef", "%.6f", r->last.kl_coef);
    PUTX("entropy", "%.6f", r->last.entropy);
    PUTX("nonsense", "%.4f", r->nonsense);
    PUTX("pg_loss", "%.6f", r->last.pg_loss);
    PUTX("vf_loss", "%.6f", r->last.vf_loss);
    PUTX("clipfrac", "%.6f", r->last.clipfrac);
    PUTX("approxkl", "%.6f", r->last.approxkl);
    PUTX("at_ms", "%lld", (long long)now_ms());
#undef PUTX
    redisAsyncCommandArgv(L.ac, NULL, NULL, (int)m, xa, NULL);
}

/* ---- policy images -------------------------------------------------------------- */

static void send_env(const void *rid, size_t rid_len, Sf__Envelope *env) {
    if (sf_wire_send(L.sock, rid, rid_len, env, &L.sbuf, &L.sbuf_cap) != 0)
        sf_debug("send failed: %s", zmq_strerror(zmq_errno()));
}

static void send_policy(lrun_t *r, const void *rid, size_t rid_len) {
    Sf__PolicyChunk c = SF__POLICY_CHUNK__INIT;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_POLICY_CHUNK;
    env.policy_chunk = &c;
    c.run = r->id;
    c.version = r->version;
    c.updates = r->updates;
    c.done = r->updates >= r->target_updates;
    if (r->state == L_FAILED || !r->blob) {
        c.error = r->error[0] ? r->error : "the learner has no policy for this run";
        send_env(rid, rid_len, &env);
        return;
    }
    c.count = (uint32_t)((r->blob_len + SF_WIRE_CHUNK - 1) / SF_WIRE_CHUNK);
    if (c.count == 0) c.count = 1;
    c.total_len = r->blob_len;
    c.crc32 = r->blob_crc;
    for (uint32_t i = 0; i < c.count; i++) {
        size_t off = (size_t)i * SF_WIRE_CHUNK;
        c.index = i;
        c.data.data = r->blob + off;
        c.data.len = r->blob_len - off < SF_WIRE_CHUNK ? r->blob_len - off : SF_WIRE_CHUNK;
        send_env(rid, rid_len, &env);
    }
}

static void answer_waiters(lrun_t *r) {
    waiter_t **pp = &r->waiters;
    while (*pp) {
        waiter_t *w = *pp;
        if (r->state == L_FAILED || (r->blob && r->version >= w->min_version)) {
            send_policy(r, w->rid, w->rid_len);
            *pp = w->next;
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

/* ---- thread-pool jobs ------------------------------------------------------------- */

static void ckpt_paths(const lrun_t *r, char *model, size_t n1, char *state, size_t n2) {
    snprintf(model, n1, "%s/%s/policy.safetensors", L.cfg.checkpoint_dir, r->id);
    snprintf(state, n2, "%s/%s/state.json", L.cfg.checkpoint_dir, r->id);
}

/* Serialises the policy into the job's result (the loop publishes it). */
static int serialise(lrun_t *r) {
    free(r->w_blob);
    r->w_blob = NULL;
    return sf_gpt2_to_bytes(r->policy, &r->w_blob, &r->w_blob_len);
}

static int checkpoint(lrun_t *r, uint32_t version, uint64_t updates) {
    char model[PATH_MAX + 64], state[PATH_MAX + 64], tmp[PATH_MAX + 80], dir[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/%s", L.cfg.checkpoint_dir, r->id);
    mkdir(L.cfg.checkpoint_dir, 0755);
    mkdir(dir, 0755);
    ckpt_paths(r, model, sizeof model, state, sizeof state);
    snprintf(tmp, sizeof tmp, "%s.tmp", model);
    int rc = sf_gpt2_save(r->policy, tmp);
    if (rc) return rc;
    if (rename(tmp, model) != 0) return SF_EIO;
    snprintf(tmp, sizeof tmp, "%s.tmp", state);
    FILE *f = fopen(tmp, "w");
    if (!f) return SF_EIO;
    fprintf(f, "{\"version\": %u, \"updates\": %llu, \"kl_coef\": %.9g}\n", version,
            (unsigned long long)updates, r->trainer ? sf_ppo_kl_coef(r->trainer) : r->ppo.init_kl_coef);
    int bad = fclose(f) != 0;
    if (bad || rename(tmp, state) != 0) return SF_EIO;
    return 0;
}

/* ---- SFT before PPO (thread pool) ------------------------------------------------ */

static int sft_progress(void *arg, int step, int steps, float loss) {
    lrun_t *r = arg;
    atomic_store(&r->sft_step, step);
    atomic_store(&r->sft_loss_x1e6, (int)fminf(loss * 1e6f, 2e9f));
    if (step == 1 || step % 200 == 0 || step == steps) sf_info("run %s: SFT step %d/%d loss %.4f", r->id, step, steps, loss);
    return atomic_load(&sft_stop);
}

/* The SFT corpus of run r as token rows: the world's corpus captions of
 * the run's classes, or the lines {"class", "caption"} of a JSONL file. */
static int sft_rows(lrun_t *r, sf_sft_rows_t *rows, int stride, char *err, size_t n) {
    char e[256];
    sf_bpe_t *bpe = NULL;
    sf_classlist_t *cl = NULL;
    sf_world_t *w = NULL;
    int rc = sf_bpe_load_dir(L.cfg.gpt2_vocab, &bpe, e, sizeof e);
    if (rc) { sf_errf(rc, err, n, "SFT: GPT-2 vocabulary (gpt2_vocab %s): %s", L.cfg.gpt2_vocab, e); goto out; }
    if ((rc = sf_classes_load(r->world, &cl, e, sizeof e)) != 0 ||
        (rc = sf_world_create(cl, SF_WORLD_DEFAULT_SIZE, &w)) != 0) {
        sf_errf(rc, err, n, "SFT: cannot make the world %s: %s", r->world, e);
        goto out;
    }
    if ((rc = sf_sft_rows_init(rows, stride)) != 0) goto out;
    if (!r->sft_corpus[0]) {
        for (int i = 0; rc == 0 && i < r->n_classes; i++) {
            int k = sf_world_class_find(w, r->classes[i]);
            if (k < 0) { rc = sf_errf(SF_EINVAL, err, n, "SFT: class '%s' is not in %s", r->classes[i], r->world); break; }
            for (int j = 0; rc == 0 && j < r->sft_per_class; j++) {
                char cap[512];
                if (sf_world_corpus_caption(w, k, j, 1, cap, sizeof cap) != 0) break; /* the class has no more */
                rc = sf_sft_rows_add(rows, bpe, sf_world_class(w, k)->name, cap);
            }
        }
    } else {
        FILE *f = fopen(r->sft_corpus, "r");
        if (!f) { rc = sf_errf(SF_EIO, err, n, "SFT: cannot open the corpus %s: %s", r->sft_corpus, strerror(errno)); goto out; }
        char *line = NULL;
        size_t cap = 0;
        int lineno = 0;
        while (rc == 0 && getline(&line, &cap, f) > 0) {
            lineno++;
            if (strspn(line, " \t\r\n") == strlen(line)) continue;
            cJSON *o = cJSON_Parse(line);
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "class"), *t = cJSON_GetObjectItemCaseSensitive(o, "caption");
            int k = cJSON_IsString(c) ? sf_world_class_find(w, c->valuestring) : -1;
            if (!cJSON_IsString(c) || !cJSON_IsString(t))
                rc = sf_errf(SF_EINVAL, err, n, "SFT: corpus %s line %d: want {\"class\": ..., \"caption\": ...}",
                             r->sft_corpus, lineno);
            else if (k < 0)
                rc = sf_errf(SF_EINVAL, err, n, "SFT: corpus %s line %d: unknown class '%.64s'", r->sft_corpus, lineno,
                             c->valuestring);
            else if (sf_sft_rows_add(rows, bpe, sf_world_class(w, k)->name, t->valuestring) != 0)
                rc = sf_errf(SF_EINVAL, err, n, "SFT: corpus %s line %d: the caption is empty or has control characters",
                             r->sft_corpus, lineno);
            cJSON_Delete(o);
        }
        free(line);
        fclose(f);
    }
    if (rc == 0 && rows->n == 0) rc = sf_errf(SF_EINVAL, err, n, "SFT: the corpus has no captions");
out:
    if (rc) sf_sft_rows_free(rows);
    sf_world_destroy(&w);
    sf_classes_free(&cl);
    sf_bpe_free(&bpe);
    return rc;
}

/* Fine-tunes r->ref on the run's corpus and saves it as the run's
 * sft.safetensors; or, when an earlier learner finished that, loads it. */
static int sft_work(lrun_t *r, char *err, size_t n) {
    char dir[PATH_MAX + 32], path[PATH_MAX + 64], tmp[PATH_MAX + 80], e[512] = "";
    snprintf(dir, sizeof dir, "%s/%s", L.cfg.checkpoint_dir, r->id);
    snprintf(path, sizeof path, "%s/sft.safetensors", dir);
    sf_gpt2_t *m = NULL;
    if (access(path, R_OK) == 0) {
        if (sf_gpt2_load(path, L.cfg.device, &m, e, sizeof e) == 0) {
            sf_gpt2_free(&r->ref);
            r->ref = m;
            atomic_store(&r->sft_step, r->sft_steps);
            sf_info("run %s: SFT was done before; policy from %s", r->id, path);
            return 0;
        }
        sf_warn("run %s: %s unusable (%s); fine-tuning again", r->id, path, e);
    }
    sf_sft_rows_t rows;
    const int ctx = sf_gpt2_config(r->ref)->n_ctx, stride = ctx < 128 ? ctx : 128;
    int rc = sft_rows(r, &rows, stride, err, n);
    if (rc) return rc;
    sf_info("run %s: SFT of the policy: %d steps of %d over %d captions", r->id, r->sft_steps, r->sft_batch, rows.n);
    sf_sft_opts_t o;
    sf_sft_opts_default(&o);
    o.steps = r->sft_steps, o.batch = r->sft_batch, o.warmup = r->sft_warmup;
    o.lr = r->sft_lr, o.lr_min = r->sft_lr_min, o.seed = r->seed ^ 0x5f7ull;
    rc = sf_gpt2_sft(r->ref, rows.seqs, rows.plen, rows.slen, rows.n, rows.stride, &o, sft_progress, r, &r->sft_first,
                     &r->sft_last);
    sf_sft_rows_free(&rows);
    if (rc == SF_ECANCELED) return sf_errf(rc, err, n, "SFT stopped by a signal");
    if (rc) return sf_errf(rc, err, n, "SFT failed: %s", sf_gpt2_errstr(r->ref));
    /* A copy without the SFT optimiser's moments is what PPO keeps. */
    if ((rc = sf_gpt2_clone(r->ref, &m)) != 0) return sf_errf(rc, err, n, "cannot copy the policy: %s", sf_ml_errstr());
    sf_gpt2_free(&r->ref);
    r->ref = m;
    mkdir(L.cfg.checkpoint_dir, 0755);
    mkdir(dir, 0755);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (sf_gpt2_save(r->ref, tmp) != 0 || rename(tmp, path) != 0)
        sf_warn("run %s: cannot save %s (a restarted learner will fine-tune again)", r->id, path);
    sf_info("run %s: SFT done: loss %.4f -> %.4f", r->id, r->sft_first, r->sft_last);
    return 0;
}

static void load_work(uv_work_t *w) {
    lrun_t *r = w->data;
    char model[PATH_MAX + 64], state[PATH_MAX + 64], err[512] = "";
    int rc = 0;
    r->w_failed = 0;
    r->w_version = 0;
    r->w_updates = 0;
    if (r->random_policy) rc = sf_gpt2_new(&r->pcfg, L.cfg.device, r->seed, &r->ref, err, sizeof err);
    else rc = sf_gpt2_load(r->policy_path, L.cfg.device, &r->ref, err, sizeof err);
    if (rc) { snprintf(r->w_error, sizeof r->w_error, "cannot load the policy: %s", err); r->w_failed = 1; return; }
    if (r->sft_steps && (rc = sft_work(r, err, sizeof err)) != 0) {
        snprintf(r->w_error, sizeof r->w_error, "%s", err);
        r->w_failed = 1;
        return;
    }
    /* Resume from a checkpoint if this run has one. */
    ckpt_paths(r, model, sizeof model, state, sizeof state);
    FILE *f = fopen(state, "r");
    if (f) {
        char buf[512];
        size_t k = fread(buf, 1, sizeof buf - 1, f);
        buf[k] = 0;
        fclose(f);
        cJSON *o = cJSON_Parse(buf);
        cJSON *v = cJSON_GetObjectItem(o, "version"), *u = cJSON_GetObjectItem(o, "updates"),
              *kc = cJSON_GetObjectItem(o, "kl_coef");
        if (cJSON_IsNumber(v) && cJSON_IsNumber(u) && sf_gpt2_load(model, L.cfg.device, &r->policy, err, sizeof err) == 0) {
            r->w_version = (uint32_t)v->valuedouble;
            r->w_updates = (uint64_t)u->valuedouble;
            if (cJSON_IsNumber(kc)) r->ppo.init_kl_coef = (float)kc->valuedouble;
            sf_info("run %s: resumed from checkpoint at version %u (%llu updates)", r->id, r->w_version,
                    (unsigned long long)r->w_updates);
        } else {
            sf_warn("run %s: checkpoint %s unusable (%s); starting from the initial policy", r->id, state,
                    err[0] ? err : "bad state file");
        }
        cJSON_Delete(o);
    }
    if (!r->policy && (rc = sf_gpt2_clone(r->ref, &r->policy)) != 0) {
        snprintf(r->w_error, sizeof r->w_error, "cannot copy the policy: %s", sf_ml_errstr());
        r->w_failed = 1;
        return;
    }
    if ((rc = sf_ppo_new(r->policy, r->ref, &r->ppo, &r->trainer, err, sizeof err)) != 0 || (rc = serialise(r)) != 0) {
        snprintf(r->w_error, sizeof r->w_error, "cannot set up PPO: %s", err[0] ? err : sf_ml_errstr());
        r->w_failed = 1;
        return;
    }
}

static void update_work(uv_work_t *w) {
    lrun_t *r = w->data;
    int n = r->n_batch, qs = 1, rs = 1;
    for (int i = 0; i < n; i++) {
        if (r->batch[i].qn > qs) qs = r->batch[i].qn;
        if (r->batch[i].rn > rs) rs = r->batch[i].rn;
    }
    int32_t *q = calloc((size_t)n * qs, sizeof *q), *resp = calloc((size_t)n * rs, sizeof *resp);
    int *ql = calloc((size_t)n, sizeof *ql), *rl = calloc((size_t)n, sizeof *rl);
    float *sc = calloc((size_t)n, sizeof *sc);
    r->w_failed = 0;
    if (!q || !resp || !ql || !rl || !sc) {
        snprintf(r->w_error, sizeof r->w_error, "out of memory for a PPO batch of %d", n);
        r->w_failed = 1;
    } else {
        for (int i = 0; i < n; i++) {
            memcpy(q + (size_t)i * qs, r->batch[i].query, (size_t)r->batch[i].qn * sizeof *q);
            memcpy(resp + (size_t)i * rs, r->batch[i].response, (size_t)r->batch[i].rn * sizeof *resp);
            ql[i] = r->batch[i].qn;
            rl[i] = r->batch[i].rn;
            sc[i] = r->batch[i].score;
        }
        sf_ppo_batch_t b = {n, qs, rs, q, ql, resp, rl, NULL, NULL, sc};
        sf_ppo_stats_t st;
        int rc = sf_ppo_step(r->trainer, &b, &st);
        if (rc) {
            snprintf(r->w_error, sizeof r->w_error, "PPO step failed: %s", sf_ppo_errstr(r->trainer));
            r->w_failed = 1;
        } else if (serialise(r) != 0) {
            snprintf(r->w_error, sizeof r->w_error, "cannot serialise the policy: %s", sf_ml_errstr());
            r->w_failed = 1;
        } else {
            r->w_stats = st;
            r->w_version = r->version + 1;
            r->w_updates = r->updates + 1;
            if (checkpoint(r, r->w_version, r->w_updates) != 0)
                sf_warn("run %s: checkpoint failed: %s", r->id, sf_ml_errstr());
        }
    }
    free(q); free(resp); free(ql); free(rl); free(sc);
}

static void maybe_update(lrun_t *r);

/* Back on the loop: take over what the job made. */
static void adopt(lrun_t *r) {
    free(r->blob);
    r->blob = r->w_blob;
    r->blob_len = r->w_blob_len;
    r->blob_crc = sf_crc32(0, r->blob, r->blob_len);
    r->w_blob = NULL;
    r->version = r->w_version;
    r->updates = r->w_updates;
}

static void after_work(uv_work_t *w, int status) {
    lrun_t *r = w->data;
    (void)status;
    if (r->state == L_LOADING_MODEL) {
        if (r->w_failed) {
            snprintf(r->error, sizeof r->error, "%s", r->w_error);
            r->state = L_FAILED;
            sf_error("run %s: %s", r->id, r->error);
        } else {
            adopt(r);
            r->state = L_READY;
            sf_info("run %s: policy ready at version %u (%lld parameters); %llu of %llu updates done", r->id,
                    r->version, (long long)sf_gpt2_num_params(r->policy), (unsigned long long)r->updates,
                    (unsigned long long)r->target_updates);
        }
        write_stats(r, 0);
    } else if (r->state == L_UPDATING) {
        for (int i = 0; i < r->n_batch; i++) { free(r->batch[i].query); free(r->batch[i].response); }
        free(r->batch);
        r->batch = NULL;
        r->n_batch = 0;
        r->state = L_READY;
        if (r->w_failed) {
            /* The batch is lost, the policy is as it was: keep serving. */
            snprintf(r->error, sizeof r->error, "%s", r->w_error);
            sf_error("run %s: %s", r->id, r->error);
            write_stats(r, 0);
        } else {
            adopt(r);
            r->last = r->w_stats;
            r->nonsense = r->w_nonsense;
            r->error[0] = 0;
            sf_info("run %s: update %llu -> version %u: score %.4f kl %.4f beta %.4f entropy %.3f", r->id,
                    (unsigned long long)r->updates, r->version, r->last.mean_score, r->last.kl, r->last.kl_coef,
                    r->last.entropy);
            write_stats(r, 1);
        }
    }
    answer_waiters(r);
    maybe_update(r);
}

static void maybe_update(lrun_t *r) {
    if (r->state != L_READY || r->n_buf < r->batch_size || r->updates >= r->target_updates) return;
    r->batch = malloc((size_t)r->batch_size * sizeof *r->batch);
    if (!r->batch) return;
    memcpy(r->batch, r->buf, (size_t)r->batch_size * sizeof *r->batch);
    memmove(r->buf, r->buf + r->batch_size, (size_t)(r->n_buf - r->batch_size) * sizeof *r->buf);
    r->n_batch = r->batch_size;
    r->n_buf -= r->batch_size;
    int bad = 0;
    for (int i = 0; i < r->n_batch; i++) bad += r->batch[i].score <= -1.0f + 1e-6f;
    r->w_nonsense = (double)bad / r->n_batch;
    r->state = L_UPDATING;
    r->work.data = r;
    uv_queue_work(L.loop, &r->work, update_work, after_work);
}

/* ---- runs -------------------------------------------------------------------------- */

static lrun_t *find_run(const char *id) {
    for (lrun_t *r = L.runs; r; r = r->next)
        if (!strcmp(r->id, id)) return r;
    return NULL;
}

static double jnum(const cJSON *o, const char *k, double def) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : def;
}

/* Reads the learner's settings from the run spec: "ppo", "sft" and the
 * policy, with the coordinator's rules (common/method/run_spec.c), since a spec
 * may also have been written to Redis directly. */
static int configure(lrun_t *r, const char *spec_json) {
    char *e = r->error;
    const size_t n = sizeof r->error;
    cJSON *spec = cJSON_Parse(spec_json);
    if (!spec) return sf_errf(SF_EINVAL, e, n, "the run spec in Redis is not JSON");
    sf_ppo_spec_t ps;
    sf_sft_spec_t ss;
    sf_ppo_spec_init(&ps);
    int rc = sf_ppo_spec_parse(spec, &ps, e, n);
    if (!rc) rc = sf_sft_spec_parse(spec, &ss, e, n);
    if (rc) goto out;
    sf_ppo_config_default(&r->ppo);
    r->batch_size = (int)ps.batch_size;
    r->max_staleness = (int)ps.max_staleness;
    r->target_updates = (uint64_t)ps.updates;
    r->ppo.mini_batch_size = (int)ps.mini_batch_size;
    r->ppo.ppo_epochs = (int)ps.ppo_epochs;
    r->ppo.prompt_baseline = (int)ps.prompt_baseline;
#define GIVEN(f) if (!isnan(ps.f)) r->ppo.f = (float)ps.f
    GIVEN(learning_rate); GIVEN(init_kl_coef); GIVEN(target); GIVEN(horizon); GIVEN(cliprange);
    GIVEN(cliprange_value); GIVEN(vf_coef); GIVEN(gamma); GIVEN(lam); GIVEN(max_grad_norm);
#undef GIVEN
    r->seed = (uint64_t)jnum(spec, "seed", 0);
    r->ppo.seed = r->seed;
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(spec, "policy");
    const cJSON *pc = cJSON_GetObjectItemCaseSensitive(spec, "policy_config");
    if (cJSON_IsString(pol)) {
        if (!sf_spec_models_path_ok(pol->valuestring)) {
            rc = sf_errf(SF_EINVAL, e, n, "run spec: 'policy' = \"%.100s\" must be a path inside the learner's "
                                          "models_dir (not absolute, no '..')", pol->valuestring);
            goto out;
        }
        snprintf(r->policy_path, sizeof r->policy_path, "%s/%s", L.cfg.models_dir, pol->valuestring);
    } else if (cJSON_IsObject(pc)) {
        r->random_policy = 1;
        sf_gpt2_config_124m(&r->pcfg);
        r->pcfg.n_layer = (int)jnum(pc, "n_layer", r->pcfg.n_layer);
        r->pcfg.n_head = (int)jnum(pc, "n_head", r->pcfg.n_head);
        r->pcfg.n_embd = (int)jnum(pc, "n_embd", r->pcfg.n_embd);
        r->pcfg.n_ctx = (int)jnum(pc, "n_ctx", r->pcfg.n_ctx);
        r->pcfg.vocab_size = (int)jnum(pc, "vocab_size", r->pcfg.vocab_size);
        r->pcfg.eos_id = (int)jnum(pc, "eos_id", r->pcfg.vocab_size - 1);
        if ((rc = sf_gpt2_config_check(&r->pcfg, e, n))) goto out;
    } else {
        rc = sf_errf(SF_EINVAL, e, n, "the run spec names no \"policy\" or \"policy_config\"");
        goto out;
    }
    if (ss.on) {
        r->sft_steps = (int)ss.steps;
        r->sft_batch = (int)ss.batch_size;
        r->sft_lr = (float)ss.learning_rate;
        r->sft_lr_min = (float)ss.min_learning_rate;
        r->sft_warmup = (int)ss.warmup;
        r->sft_per_class = (int)ss.captions_per_class;
        if (ss.corpus[0]) snprintf(r->sft_corpus, sizeof r->sft_corpus, "%s/%s", L.cfg.models_dir, ss.corpus);
        const cJSON *wl = cJSON_GetObjectItemCaseSensitive(spec, "world");
        snprintf(r->world, sizeof r->world, "%s", cJSON_IsString(wl) ? wl->valuestring : "builtin:imagenet-a-r-86");
        const cJSON *cl = cJSON_GetObjectItemCaseSensitive(spec, "classes");
        int nc = cJSON_GetArraySize(cl);
        if (!cJSON_IsArray(cl) || nc < 1) {
            rc = sf_errf(SF_EINVAL, e, n, "sft: the run spec has no classes");
            goto out;
        }
        if (!(r->classes = calloc((size_t)nc, sizeof *r->classes))) {
            rc = SF_ENOMEM;
            goto out;
        }
        for (const cJSON *it = cl->child; it; it = it->next)
            if (cJSON_IsString(it)) r->classes[r->n_classes++] = strdup(it->valuestring);
    }
out:
    cJSON_Delete(spec);
    return rc;
}

static void on_spec(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    lrun_t *r = priv;
    redisReply *rep = reply;
    r->spec_asked = 0;
    if (!rep || rep->type == REDIS_REPLY_ERROR) {
        /* Redis went away or is still loading its AOF after a restart: not
         * the run's fault; the cron asks again. */
        sf_warn("run %s: cannot read its spec yet (%s); asking again", r->id,
                rep ? rep->str : "connection lost");
        return;
    }
    if (rep->type != REDIS_REPLY_STRING) {
        snprintf(r->error, sizeof r->error, "no run %s in Redis", r->id);
        r->state = L_FAILED;
    } else if (configure(r, rep->str) != 0) {
        r->state = L_FAILED;
    } else {
        r->state = L_LOADING_MODEL;
        r->work.data = r;
        uv_queue_work(L.loop, &r->work, load_work, after_work);
        return;
    }
    sf_error("run %s: %s", r->id, r->error);
    write_stats(r, 0);
    answer_waiters(r);
}

/* Reads the run's spec; while Redis is unreachable the run waits in
 * L_LOADING_SPEC and the cron asks again. */
static void ask_spec(lrun_t *r) {
    if (!L.ac || r->spec_asked) return;
    char key[128];
    snprintf(key, sizeof key, SF_KEY_RUN, L.cfg.redis_prefix, r->id);
    if (redisAsyncCommand(L.ac, on_spec, r, "HGET %s spec", key) == REDIS_OK) r->spec_asked = 1;
}

static lrun_t *get_run(const char *id) {
    lrun_t *r = find_run(id);
    if (r) return r;
    r = calloc(1, sizeof *r);
    if (!r) return NULL;
    snprintf(r->id, sizeof r->id, "%s", id);
    r->state = L_LOADING_SPEC;
    r->next = L.runs;
    L.runs = r;
    sf_info("run %s: loading its learner settings", id);
    if (!L.ac) redis_connect();
    ask_spec(r);
    return r;
}

/* ---- messages ------------------------------------------------------------------------- */

static void on_rollouts(const void *rid, size_t rid_len, const Sf__RolloutBatch *b) {
    lrun_t *r = get_run(b->run);
    Sf__RolloutAck ack = SF__ROLLOUT_ACK__INIT;
    ack.run = b->run;
    if (!r) return;
    if (r->state == L_FAILED) {
        ack.error = r->error;
    } else if (r->version > b->policy_version + (uint32_t)r->max_staleness && r->state != L_LOADING_SPEC) {
        ack.dropped_stale = (uint32_t)b->n_rollouts;
        r->dropped_stale += b->n_rollouts;
    } else {
        for (size_t i = 0; i < b->n_rollouts; i++) {
            const Sf__Rollout *ro = b->rollouts[i];
            if (r->n_buf == r->cap_buf) {
                int nc = r->cap_buf ? r->cap_buf * 2 : 256;
                roll_t *nb = realloc(r->buf, (size_t)nc * sizeof *nb);
                if (!nb) break;
                r->buf = nb;
                r->cap_buf = nc;
            }
            roll_t *x = &r->buf[r->n_buf];
            x->qn = (int)ro->n_query;
            x->rn = (int)ro->n_response;
            x->query = malloc((size_t)x->qn * sizeof(int32_t));
            x->response = malloc((size_t)x->rn * sizeof(int32_t));
            if (!x->query || !x->response) { free(x->query); free(x->response); break; }
            memcpy(x->query, ro->query, (size_t)x->qn * sizeof(int32_t));
            memcpy(x->response, ro->response, (size_t)x->rn * sizeof(int32_t));
            x->score = ro->score;
            x->version = b->policy_version;
            r->n_buf++;
            ack.accepted++;
        }
        r->received += ack.accepted;
    }
    ack.version = r->version;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_ROLLOUT_ACK;
    env.rollout_ack = &ack;
    send_env(rid, rid_len, &env);
    maybe_update(r);
}

static void on_policy_get(const void *rid, size_t rid_len, const Sf__PolicyGet *g) {
    lrun_t *r = get_run(g->run);
    if (!r) return;
    if (r->state == L_FAILED || (r->blob && r->version >= g->min_version)) {
        send_policy(r, rid, rid_len);
        return;
    }
    /* A worker asking again (its client resends unanswered requests) keeps
     * one place in the queue. */
    for (waiter_t *o = r->waiters; o; o = o->next)
        if (o->rid_len == rid_len && memcmp(o->rid, rid, rid_len) == 0) {
            if (g->min_version < o->min_version) o->min_version = g->min_version;
            return;
        }
    waiter_t *w = calloc(1, sizeof *w);
    if (!w) return;
    memcpy(w->rid, rid, rid_len);
    w->rid_len = rid_len;
    w->min_version = g->min_version;
    w->next = r->waiters;
    r->waiters = w;
}

static void on_readable(sf_zsock_t *zs) {
    zmq_msg_t rid, body;
    zmq_msg_init(&rid);
    zmq_msg_init(&body);
    int n = 0;
    for (; n < 1024; n++) {
        if (zmq_msg_recv(&rid, zs->sock, ZMQ_DONTWAIT) < 0) break;
        if (!zmq_msg_more(&rid) || zmq_msg_recv(&body, zs->sock, ZMQ_DONTWAIT) < 0) { L.frames_bad++; continue; }
        if (zmq_msg_more(&body)) {
            L.frames_bad++;
            while (zmq_msg_more(&body) && zmq_msg_recv(&body, zs->sock, ZMQ_DONTWAIT) >= 0) {}
            continue;
        }
        Sf__Envelope *env = sf_wire_decode_counted(zmq_msg_data(&body), zmq_msg_size(&body), &L.frames_bad, "a worker");
        if (!env) continue;
        if (env->body_case == SF__ENVELOPE__BODY_ROLLOUTS)
            on_rollouts(zmq_msg_data(&rid), zmq_msg_size(&rid), env->rollouts);
        else if (env->body_case == SF__ENVELOPE__BODY_POLICY_GET)
            on_policy_get(zmq_msg_data(&rid), zmq_msg_size(&rid), env->policy_get);
        else {
            L.frames_bad++;
            sf_warn("unexpected message (body %d)", (int)env->body_case);
        }
        sf_wire_free(env);
    }
    zmq_msg_close(&rid);
    zmq_msg_close(&body);
    if (n == 1024) sf_zsock_backlog(zs);
}

/* GET /metrics: per run, labelled run="rN". */
static void render_metrics(void *arg, sf_mbuf_t *m) {
    (void)arg;
    static const struct { const char *name, *type, *help; } defs[] = {
        {"sf_learner_policy_version", "gauge", "published policy version"},
        {"sf_learner_updates_total", "counter", "PPO updates made"},
        {"sf_learner_rollouts_total", "counter", "rollouts accepted"},
        {"sf_learner_rollouts_stale_total", "counter", "rollouts dropped as too old"},
        {"sf_learner_rollouts_buffered", "gauge", "rollouts waiting for an update"},
        {"sf_learner_mean_score", "gauge", "mean reward of the last update's batch"},
        {"sf_learner_kl", "gauge", "KL to the reference of the last update"},
        {"sf_learner_kl_coef", "gauge", "the KL controller's beta"},
    };
    for (size_t d = 0; d < sizeof defs / sizeof defs[0]; d++) {
        sf_metric_head(m, defs[d].name, defs[d].type, defs[d].help);
        for (lrun_t *r = L.runs; r; r = r->next) {
            char l[48];
            snprintf(l, sizeof l, "run=\"%s\"", r->id);
            double v[] = {r->version, (double)r->updates, (double)r->received, (double)r->dropped_stale, r->n_buf,
                          r->last.mean_score, r->last.kl, r->updates ? r->last.next_kl_coef : r->ppo.init_kl_coef};
            sf_metric_value(m, defs[d].name, l, v[d]);
        }
    }
    sf_metric_head(m, "sf_learner_frames_bad_total", "counter", "malformed frames dropped");
    sf_metric_value(m, "sf_learner_frames_bad_total", NULL, (double)L.frames_bad);
    sf_metric_head(m, "sf_learner_redis_auth_failures_total", "counter", "Redis connections whose AUTH was refused");
    sf_metric_value(m, "sf_learner_redis_auth_failures_total", NULL, (double)L.redis_auth_failures);
    sf_zap_metrics(L.zap, m, "sf_learner");
}

/* The cron, every second: reconnect to Redis if the connection was lost;
 * refresh every run's statistics; when stopping, exit once no model job
 * is running. */
static void cron(uv_timer_t *t) {
    (void)t;
    if (!L.ac) redis_connect();
    int busy = 0;
    for (lrun_t *r = L.runs; r; r = r->next) {
        if (r->state == L_LOADING_SPEC) ask_spec(r);
        write_stats(r, 0);
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
        if (L.ac) redisAsyncDisconnect(L.ac);
        sf_metrics_stop(L.metrics);
    }
}

static void on_signal(uv_signal_t *s, int signum) {
    (void)s;
    sf_info("signal %d: finishing the running update, then stopping", signum);
    L.stopping = 1;
    atomic_store(&sft_stop, 1);
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
    sf_ml_opts_t mo = {(int)L.cfg.threads, 0};
    if (sf_ml_init(&mo) != 0 || sf_ml_device_check(L.cfg.device) != 0) {
        sf_error("device %s: %s", L.cfg.device, sf_ml_errstr());
        return 2;
    }
    L.loop = uv_default_loop();
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
    if (sf_metrics_start(L.loop, L.cfg.metrics_host, (int)L.cfg.metrics_port, render_metrics, NULL, &L.metrics, err,
                         sizeof err) != 0) {
        sf_error("%s", err);
        return 1;
    }
    redis_connect();
    sf_zsock_init(L.loop, &L.zs, L.sock, on_readable);
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
