/* stats.c: a run's statistics — its learner hash and PPO stream in Redis
 * (docs/redis-keys.md), and the learner's /metrics. */
#include <hiredis/async.h>
#include <stdarg.h>
#include <stdio.h>

#include "common/net/zap.h"
#include "common/redis/keys.h"
#include "common/runtime/clock.h"
#include "learner/learner.h"

/* A command's arguments: fixed words, then name/value pairs whose values
 * are formatted into the list's own buffers. */
typedef struct {
    const char *argv[64];
    char val[28][32];
    int n, k;
} cmd_t;

static void put(cmd_t *c, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void put(cmd_t *c, const char *name, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->val[c->k], sizeof c->val[0], fmt, ap);
    va_end(ap);
    c->argv[c->n++] = name;
    c->argv[c->n++] = c->val[c->k++];
}

/* The last update's statistics, in the order both the hash and the stream
 * carry them; kl_coef is the caller's (the hash says the beta the next
 * update uses, the stream the one each update used). */
static void put_update(cmd_t *c, const lrun_t *r, double kl_coef) {
    put(c, "mean_score", "%.6f", r->last.mean_score);
    put(c, "kl", "%.6f", r->last.kl);
    put(c, "kl_coef", "%.6f", kl_coef);
    put(c, "entropy", "%.6f", r->last.entropy);
    put(c, "nonsense", "%.4f", r->nonsense);
    put(c, "pg_loss", "%.6f", r->last.pg_loss);
    put(c, "vf_loss", "%.6f", r->last.vf_loss);
    put(c, "clipfrac", "%.6f", r->last.clipfrac);
    put(c, "approxkl", "%.6f", r->last.approxkl);
    /* The image-side check: with none checked, empty values rather than a
     * 0 that would read as a score (and overwrite the hash's last ones). */
    put(c, "image_checked", "%d", r->image.checked);
    if (r->image.checked) {
        put(c, "image_score", "%.6f", r->image.image_score);
        put(c, "faithful", "%.4f", r->image.faithful);
    } else {
        put(c, "image_score", "%s", "");
        put(c, "faithful", "%s", "");
    }
}

/* The command c, applied only while this learner holds the run's lease
 * (one script: the check and the write cannot be split by another learner
 * taking the run). */
static const char WRITE_LUA[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('HELD') end "
    "return redis.call(unpack(ARGV, 2))";

static void fenced(redisAsyncContext *ac, const lrun_t *r, const cmd_t *c) {
    char owner[160];
    snprintf(owner, sizeof owner, SF_KEY_RUN_LEARNER_OWNER, L.cfg.redis_prefix, r->id);
    const char *argv[4 + 1 + 64] = {"EVAL", WRITE_LUA, "1", owner, L.holder};
    int n = 5;
    for (int i = 0; i < c->n; i++) argv[n++] = c->argv[i];
    redisAsyncCommandArgv(ac, NULL, NULL, n, argv, NULL);
}

void learner_stats_write(lrun_t *r, int with_curve) {
    redisAsyncContext *ac = sf_redis_conn_ac(&L.redis);
    /* Nothing to say before the spec is read (and target_updates 0 would
     * read as done), nor of a run another learner holds. */
    if (!ac || r->state == L_LOADING_SPEC || !r->owned) return;
    char key[128];
    snprintf(key, sizeof key, SF_KEY_RUN_LEARNER, L.cfg.redis_prefix, r->id);
    cmd_t h = {.argv = {"HSET", key}, .n = 2};
    put(&h, "version", "%u", r->version);
    put(&h, "updates", "%llu", (unsigned long long)r->updates);
    put(&h, "target_updates", "%llu", (unsigned long long)r->target_updates);
    put(&h, "done", "%d", r->updates >= r->target_updates);
    int sft_step = atomic_load(&r->sft_step);
    put(&h, "state", "%s", r->state == L_FAILED ? "failed" : r->state == L_UPDATING ? "updating" : r->state == L_READY ? "ready"
                           : r->sft_steps && sft_step < r->sft_steps ? "sft" : "loading");
    put(&h, "sft_step", "%d", sft_step);
    put(&h, "sft_steps", "%d", r->sft_steps);
    put(&h, "sft_loss", "%.6f", atomic_load(&r->sft_loss_x1e6) / 1e6);
    put(&h, "buffered", "%d", r->n_buf);
    put(&h, "received", "%llu", (unsigned long long)r->received);
    put(&h, "dropped_stale", "%llu", (unsigned long long)r->dropped_stale);
    put_update(&h, r, r->updates ? r->last.next_kl_coef : r->ppo.init_kl_coef);
    put(&h, "updated_ms", "%lld", (long long)sf_clock_wall_ms());
    h.argv[h.n++] = "error";
    h.argv[h.n++] = r->error;
    fenced(ac, r, &h);
    if (!with_curve) return;
    char skey[128], maxlen[16];
    snprintf(skey, sizeof skey, SF_KEY_RUN_PPO, L.cfg.redis_prefix, r->id);
    snprintf(maxlen, sizeof maxlen, "%d", SF_PPO_MAXLEN);
    cmd_t x = {.argv = {"XADD", skey, "MAXLEN", "~", maxlen, "*"}, .n = 6};
    put(&x, "update", "%llu", (unsigned long long)r->updates);
    put(&x, "version", "%u", r->version);
    put_update(&x, r, r->last.kl_coef);
    put(&x, "at_ms", "%lld", (long long)sf_clock_wall_ms());
    fenced(ac, r, &x);
}

void learner_metrics(void *arg, sf_mbuf_t *m) {
    (void)arg;
    /* checked: only for a run whose last batch had rollouts checked on the
     * image side (no sample, no value). */
    static const struct { const char *name, *type, *help; int checked; } defs[] = {
        {"sf_learner_policy_version", "gauge", "published policy version"},
        {"sf_learner_updates_total", "counter", "PPO updates made"},
        {"sf_learner_rollouts_total", "counter", "rollouts accepted"},
        {"sf_learner_rollouts_stale_total", "counter", "rollouts dropped as too old"},
        {"sf_learner_rollouts_buffered", "gauge", "rollouts waiting for an update"},
        {"sf_learner_mean_score", "gauge", "mean reward of the last update's batch"},
        {"sf_learner_kl", "gauge", "KL to the reference of the last update"},
        {"sf_learner_kl_coef", "gauge", "the KL controller's beta"},
        {"sf_learner_image_checked", "gauge", "rollouts of the last update's batch checked on the image side"},
        {"sf_learner_image_score", "gauge", "mean image score (-cos image to class mean) of the checked rollouts", 1},
        {"sf_learner_faithful", "gauge", "share of the checked rollouts whose image shows the target class", 1},
    };
    for (size_t d = 0; d < sizeof defs / sizeof defs[0]; d++) {
        sf_metric_head(m, defs[d].name, defs[d].type, defs[d].help);
        for (lrun_t *r = L.runs; r; r = r->next) {
            char l[48];
            snprintf(l, sizeof l, "run=\"%s\"", r->id);
            double v[] = {r->version, (double)r->updates, (double)r->received, (double)r->dropped_stale, r->n_buf,
                          r->last.mean_score, r->last.kl, r->updates ? r->last.next_kl_coef : r->ppo.init_kl_coef,
                          r->image.checked, r->image.image_score, r->image.faithful};
            if (defs[d].checked && !r->image.checked) continue;
            sf_metric_value(m, defs[d].name, l, v[d]);
        }
    }
    sf_metric_head(m, "sf_learner_frames_bad_total", "counter", "malformed frames dropped");
    sf_metric_value(m, "sf_learner_frames_bad_total", NULL, (double)L.frames_bad);
    sf_metric_head(m, "sf_learner_redis_auth_failures_total", "counter", "Redis connections whose AUTH was refused");
    sf_metric_value(m, "sf_learner_redis_auth_failures_total", NULL, (double)L.redis_auth_failures);
    sf_zap_metrics(L.zap, m, "sf_learner");
}
