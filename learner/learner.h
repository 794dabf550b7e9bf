/* learner.h: what the parts of sf-learner share — its settings, its runs
 * and the functions each part offers the others.
 *
 *   main.c   settings, sockets, the Redis connection, signals, the cron, main()
 *   runs.c   a run's state: found or made on first use, configured from its
 *            spec in Redis; the workers' messages (rollouts in, policy
 *            images out, requests waiting for a version)
 *   train.c  the model jobs on libuv's thread pool (loading with the SFT a
 *            run may need first, PPO updates, checkpoints) and their
 *            adoption back on the loop
 *   stats.c  a run's statistics: its Redis hash and PPO stream, /metrics
 *   batch.c  the rules for rollouts: stale or kept, when they make a PPO
 *            batch (batch.h)
 *
 * Threads.  Everything runs on the one libuv loop except the model jobs,
 * which libuv's thread pool runs (uv_queue_work): load_work() and
 * update_work() in train.c and what they call.  A run has at most
 * one such job at a time — it is queued only in L_LOADING_MODEL or
 * L_UPDATING, and the state moves on only in after_work(), on the loop —
 * and while it runs the job alone touches the run's models (policy, ref,
 * trainer), its batch and the w_* fields; the loop reads none of them until
 * after_work() has taken them over.  The job also writes sft_step and
 * sft_loss_x1e6 (atomics, read by the statistics), and reads the run's
 * settings (written by configure() before the first job, never after), the
 * daemon's in L.cfg (never changed after start) and L.sft_stop (atomic).
 * Nothing else is touched off the loop.
 *
 * Ownership.  L owns every run (never freed: a run lives as long as the
 * learner); a run owns its rollouts, waiters, models and policy image.
 */
#ifndef SF_LEARNER_H
#define SF_LEARNER_H

#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/net/zsock.h"
#include "common/redis/conn.h"
#include "common/redis/redis_auth.h"
#include "common/runtime/metrics.h"
#include "learner/batch.h"
#include "ml/sf_ml.h"

typedef struct {
    char *redis, *redis_prefix, *redis_user, *redis_password_file, *endpoint, *curve_key_file, *curve_allowed_dir;
    char *checkpoint_dir, *models_dir, *data_dir, *device, *gpt2_vocab;
    long threads;
    long run_lease_ms;
    char *metrics_host;
    long metrics_port;
    char *log_level;
    int log_json;
} lconfig_t;


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
    int spec_asked;      /* L_LOADING_SPEC: the claim and HGET of the spec is out */
    /* One learner per run: this one holds the run's lease (SF_KEY_RUN_LEARNER_OWNER)
     * since its spec was read; `lost` once another took it (this one then
     * serves and writes nothing more of the run). */
    int owned, lost, renewing;
    char held_by[160];   /* L_LOADING_SPEC: the learner that holds it, last seen */
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
    char corpus_dir[PATH_MAX]; /* the corpus phase's: data_dir/corpus/<key>/<wnid>.jsonl; "" for none */
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
    learner_image_check_t image, w_image; /* the batch's image-side check (checked 0: none) */
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
    float w_kl_coef;           /* loading: the KL controller's beta to start from (a checkpoint's) */
    uint32_t w_version;
    uint64_t w_updates;
    struct lrun_s *next;
} lrun_t;

typedef struct {
    lconfig_t cfg;
    uv_loop_t *loop;
    void *zctx, *sock;
    sf_zsock_t zs;
    sf_redis_conn_t redis;   /* statistics and specs; sf_redis_conn_ac() is NULL while it is down */
    uv_timer_t cron;
    uv_signal_t sigterm, sigint, sighup;
    sf_redis_auth_t redis_auth;
    uint64_t redis_auth_failures;
    struct sf_zap_s *zap;    /* CURVE client authentication; NULL when off */
    lrun_t *runs;
    /* PPO updates running: one at a time (learner_maybe_update), since each
     * already uses cfg.threads threads and more would only share the cores. */
    int updating;
    char holder[160];        /* this learner's name in the runs' leases: host:pid:started_ms */
    uint8_t *sbuf;
    size_t sbuf_cap;
    uint64_t frames_bad;
    int stopping;
    /* Set by a signal; a running SFT stops at its next step (the loop waits
     * for thread-pool jobs before it exits). */
    atomic_int sft_stop;
    sf_metrics_t *metrics;
} learner_t;

/* The learner (main.c). */
extern learner_t L;

/* runs.c (loop) */
/* The run with this id, made on first use (its spec is then read from
 * Redis); NULL only when out of memory. */
lrun_t *learner_run_get(const char *id);
/* Asks Redis for the spec of a run in L_LOADING_SPEC, unless the question
 * is out or Redis is down (the cron and the next up ask again). */
void learner_ask_spec(lrun_t *r);
/* From the cron: renews the lease of every run this learner holds. */
void learner_renew_runs(void);

/* runs.c: the workers' messages (loop) */
void learner_on_readable(sf_zsock_t *zs);
/* Sends the policy to every waiting request it now satisfies (or the
 * run's error, once it failed). */
void learner_answer_waiters(lrun_t *r);

/* train.c (called on the loop; the jobs they queue run on the pool) */
/* Queues the loading job of a configured run (L_LOADING_MODEL). */
void learner_load(lrun_t *r);
/* Queues a PPO update when the run is ready and has a batch. */
void learner_maybe_update(lrun_t *r);

/* stats.c (loop) */
/* Writes the run's learner hash and, with_curve, an entry of its PPO
 * stream (fire and forget, in order; nothing while Redis is down). */
void learner_stats_write(lrun_t *r, int with_curve);
/* GET /metrics: per run, labelled run="rN". */
void learner_metrics(void *arg, sf_mbuf_t *m);

#endif
