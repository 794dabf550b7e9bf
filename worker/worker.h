/* worker.h: sf-worker's job contract and handler table.
 *
 * A worker runs jobs of the kinds it advertises.  Each kind has a handler;
 * how it runs is part of its table entry:
 *   SF_RUN_INLINE  on the loop thread, must return at once (noop, fail);
 *   SF_RUN_TIMER   the handler arms a timer and completes later (sleep);
 *   SF_RUN_THREAD  on libuv's thread pool (model work), never on the loop;
 *   SF_RUN_ASYNC   started on the loop, completed later by the handler with
 *                  sf_wk_complete (jobs that wait for the learner and run
 *                  model work in between); a nonzero return completes it now.
 * Before a handler of one of the method's kinds (embed, rollout, captions,
 * generate, filter, manifest, finetune) runs, the worker parses the job's
 * payload once with the contract (common/method/contract.h) into
 * job->params: defaults for what is absent, bounds checked, unknown keys
 * refused; a payload it refuses fails the job FATAL with the contract's
 * message and the handler never runs.  Handlers read the typed fields and
 * never parse the payload or write a default themselves.  The test kinds'
 * few settings are not the method's: kind_builtin.c reads them, with their
 * defaults, in one place.
 * A handler fills job->status, job->out (malloc'd, taken by the worker) and
 * job->error; a result object holds only the fields sf_job_result_fields
 * lists for its kind.  The protocol — hello, credit, heartbeats, reconnects,
 * drain — lives in worker.c so that handlers stay small (the Majordomo way);
 * the kinds are one file each (kind_*.c), listed in one table (kinds.c).
 */
#ifndef SF_WORKER_H
#define SF_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "common/method/contract.h"

typedef struct sf_wk_s sf_wk_t;
typedef struct sf_job_s sf_job_t;

enum { SF_RUN_INLINE = 0, SF_RUN_TIMER, SF_RUN_THREAD, SF_RUN_ASYNC };
/* Job status, as in sf.Result.Status. */
enum { SF_JOB_OK = 0, SF_JOB_FAILED = 1, SF_JOB_CANCELLED = 2, SF_JOB_FATAL = 3 };

struct sf_job_s {
    uint64_t id;
    uint32_t attempt, lease_ms, item_start, item_count, policy_version;
    char kind[32], run[16], wnid[16];
    char *payload;          /* NUL-terminated copy (owned by the worker) */
    size_t payload_len;
    sf_shift_params_t *params; /* a method kind's settings, parsed before its
                                  handler runs (owned by the worker); NULL
                                  for the test kinds */
    /* filled by the handler */
    int status;
    char *out;              /* result payload, malloc'd; the worker frees it */
    size_t out_len;
    char error[512];
    /* private to worker.c */
    sf_wk_t *wk;
    const struct sf_handler_s *h;
    int hi;                 /* h's index in the worker's handlers (busy time by kind) */
    uint64_t epoch;         /* the coordinator epoch that sent it (the ledger's, ledger.h) */
    uv_timer_t timer;
    uv_work_t work;
    volatile int cancelled;
    int64_t started_us;
    int64_t received_us;    /* when its JobBatch arrived (its wait before it started goes back as queued_us) */
    struct sf_job_s *next;
};

typedef int (*sf_handler_fn)(sf_wk_t *wk, sf_job_t *job);

typedef struct sf_handler_s {
    const char *kind;
    int mode;
    sf_handler_fn fn;
    const char *doc;
} sf_handler_t;

/* Every kind this build has (kinds.c: the test kinds, then the method's when
 * built with libtorch); NULL-terminated. */
extern const sf_handler_t sf_handlers[];

/* What model handlers need from the worker's settings. */
typedef struct {
    const char *learner;     /* the learner's endpoint */
    const char *models_dir;  /* world models and policies */
    const char *data_dir;    /* shared: reference statistics, run files, datasets */
    const char *gpt2_vocab;  /* folder with encoder.json and vocab.bpe */
    const char *device;
    const char *clip_dir;       /* "" = models_dir/clip-world */
    const char *diffusion_dir;  /* "" = no diffusion generator */
    const char *reference_root; /* "" = world references only */
    const char *dtype;          /* fp32, bf16, fp16 (inference) */
    int swap_models;
    int threads;
    void *zctx;
} sf_wk_env_t;
const sf_wk_env_t *sf_wk_env(sf_wk_t *wk);
/* What the kinds keep between jobs (the model cache, the learner client:
 * kinds.c), closed when the worker leaves. */
void sf_kinds_close(sf_wk_t *wk);

/* For SF_RUN_TIMER handlers: complete the job now (status etc. filled). */
void sf_wk_complete(sf_wk_t *wk, sf_job_t *job);
uv_loop_t *sf_wk_loop(sf_wk_t *wk);
/* The worker's own id, for handlers that record where they ran. */
const char *sf_wk_id(const sf_wk_t *wk);

#endif
