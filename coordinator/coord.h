/* coord.h: sf-coordinator's objects and the functions its modules share.
 *
 * The coordinator is split the Majordomo way:
 *   runs.c    runs, their phases and job slots; the planner; dispatch choice;
 *             the accounting of jobs done and dead
 *   broker.c  workers: hello, credit, liveness, leases, results, dispatch
 *   store.c   Redis: coalesced MULTI/EXEC batches, acknowledgements, reload
 *             (it serialises the runs' state; it counts nothing itself)
 *   clients.c sfctl requests: submit, status, cancel, lists, stats
 *   main.c    configuration, sockets, the loop, the cron timer, signals
 *
 * Ownership: the coordinator (sf_coord_t) owns every run and worker; nothing
 * is freed inside a callback chain that may still use it (workers that die
 * are marked and reaped by the cron).
 */
#ifndef SF_COORD_H
#define SF_COORD_H

#include <cjson/cJSON.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <uv.h>

#include "common/method/classes.h"
#include "common/runtime/clock.h"
#include "common/runtime/config.h"
#include "common/redis/redis_auth.h"
#include "common/net/wire.h"
#include "common/net/zsock.h"
#include "common/runtime/hist.h"

#define SF_MAX_PHASES 16
#define SF_MAX_KINDS 64
#define SF_MAX_WORKERS 4096
#define SF_NO_WORKER 0xffffu
#define SF_DEAD_LIST 50

typedef struct sf_dead_s {
    uint32_t idx;
    uint8_t attempts;
    char error[200];
} sf_dead_t;

/* Job slot states. */
enum {
    JS_PENDING = 0, /* not handed out yet (or phase not open) */
    JS_READY,       /* back in the queue (retry or requeue) */
    JS_BACKOFF,     /* waiting for its retry time */
    JS_LEASED,      /* on a worker */
    JS_ACKING,      /* result accepted, Redis not yet acknowledged */
    JS_DONE,
    JS_DEAD,
    JS_SKIPPED,     /* never run: its phase ended early (the learner was done) */
};

/* Run states, as written to Redis. */
enum { RUN_QUEUED = 0, RUN_RUNNING, RUN_DONE, RUN_FAILED, RUN_CANCELLED };
const char *sf_run_state_name(int s);
/* Still to run: queued or running (not done, failed or cancelled). */
#define sf_run_active(r) ((r)->state == RUN_QUEUED || (r)->state == RUN_RUNNING)
int sf_run_state_parse(const char *s);

typedef struct sf_jobslot_s {
    uint8_t state;
    uint8_t attempt;        /* attempts made so far */
    uint16_t worker;        /* worker slot while leased */
    uint32_t deadline_s;    /* lease deadline, whole seconds of sf_coord_secs() (rounded up) */
    int64_t dispatched_us;  /* for latency */
} sf_jobslot_t;

/* Per-class counters taken from job results (see sf_run_t.class_stat). */
enum { SF_STAT_GENERATED = 0, SF_STAT_KEPT, SF_STAT_DROPPED, SF_CLASS_STATS };
extern const char *const sf_class_stat_names[SF_CLASS_STATS];

typedef struct sf_phase_s {
    char name[32];
    char kind[32];
    int kind_id;
    uint32_t first, n;      /* job index range in the run */
    uint32_t next;          /* next never-dispatched job */
    uint32_t done, dead;    /* acknowledged by Redis */
    uint32_t skipped;       /* JS_SKIPPED */
    int until_learner;      /* the phase ends when the run's learner says done */
    int interleave;         /* job i is class i % n_classes (rollouts: every class early) */
    int single;             /* one job for the whole run (an evaluation over all classes) */
    int required;           /* a later phase reads every job's output: one dead job fails the run at once */
    uint32_t per_update;    /* until_learner: new jobs only up to (version + 2 + reopened) x
                             * this, so rollouts keep pace with the learner instead of going stale */
    uint32_t reopened;      /* until_learner: times the window was opened for lost rollouts */
    uint32_t items_per_class, shard_size, shards_per_class;
    char *payload;          /* JSON handed to every job of the phase (owned) */
    uint32_t payload_len;
    uint32_t job_us;        /* adaptive credit: running mean of its jobs' handler time (µs; 0: none yet) */
} sf_phase_t;

/* A ring of job indices waiting to be dispatched again. */
typedef struct sf_ring_s {
    uint32_t *v;
    uint32_t cap, head, len;
} sf_ring_t;

typedef struct sf_run_s {
    uint32_t num;
    char id[16];
    int state;
    int priority;
    int64_t created_ms, started_ms, finished_ms; /* wall time: stored in the run's hash, shown */
    char *spec_json;        /* as submitted, normalised (owned) */
    char *name;             /* operator's label (owned) */
    sf_classlist_t *classes;
    int n_phases, phase;
    sf_phase_t phases[SF_MAX_PHASES];
    uint32_t n_jobs;
    sf_jobslot_t *jobs;     /* (n_jobs); NULL once an ended run dropped them (sf_run_drop_slots): a summary */
    uint32_t *class_done, *class_dead; /* (classes->n) acknowledged */
    uint64_t done, dead, retries, leased;
    uint32_t learner_version;  /* last seen in sf:run:<id>:learner */
    int learner_done, learner_polling;
    int learner_idle;          /* it waits for rollouts, or no learner holds the run (store.c) */
    /* Its hash's updated_ms (the learner's wall time, only compared for a
     * change), and when that last moved (sf_coord_mono_ms). */
    int64_t learner_updated_ms, learner_fresh_ms;
    int64_t learner_idle_ms;   /* since when idle at learner_version (sf_coord_mono_ms); 0 when not */
    int shortfall;             /* a learner phase ran out of jobs first */
    /* Since when (sf_coord_mono_ms) its phase's kind is offered by no
     * connected worker; 0 while one offers it.  After no_worker_timeout_ms
     * the run fails (sf_runs_check_kinds). */
    int64_t kind_wait_ms;
    int max_attempts;
    uint32_t lease_ms, retry_base_ms, retry_max_ms;
    sf_ring_t ready;
    int64_t ended_mono_ms;   /* when its slots became droppable (sf_runs_release); 0 before */
    sf_hist_t *latency;     /* dispatch -> result acknowledged, µs; NULL once the slots are dropped */
    uint64_t lat_count, lat_p50, lat_p99, lat_max; /* what status shows of it after that */
    char last_error[256];
    /* What has been written to Redis (in flight included); the fields above
     * count only what Redis acknowledged. */
    uint64_t done_w, dead_w;
    uint32_t *class_done_w, *class_dead_w;
    /* Per class: images generated, kept and dropped, summed from the job
     * results that report them (generate, filter); written to Redis as
     * absolute values. */
    uint32_t (*class_stat)[SF_CLASS_STATS];
    struct sf_dead_s *dead_list; /* first SF_DEAD_LIST dead jobs, for status */
    int n_dead_list;
    struct sf_run_s *next;  /* in priority order */
} sf_run_t;

typedef struct sf_worker_s {
    int used, dead;
    uint16_t slot;
    uint8_t rid[256];
    size_t rid_len;
    char id[128], host[128], device[32], version[32];
    uint32_t pid;
    uint64_t kinds;         /* bitmask of kind ids */
    char kinds_text[512];
    uint32_t slots, credit, leased, busy;
    uint32_t max_held;      /* adaptive credit (Hello.max_credit): at most this many jobs held; 0: fixed credit */
    uint32_t srtt_us;       /* adaptive credit: smoothed round trip, dispatch to result less the job's own time */
    uint64_t done, failed;
    int64_t last_seen_ms, joined_ms; /* sf_coord_mono_ms: liveness never follows the wall clock */
    int draining;
    int dirty;              /* its Redis hash needs a write */
} sf_worker_t;

typedef struct sf_coord_config_s {
    char *redis;            /* "unix:/path" or "host:port" */
    char *redis_prefix;
    char *redis_user, *redis_password_file;
    char *worker_endpoint;
    char *client_endpoint;
    char *curve_key_file, *curve_allowed_dir;
    long heartbeat_ms, liveness;
    long lease_ms, max_attempts, retry_base_ms, retry_max_ms;
    long drain_timeout_ms;
    long max_jobs_per_run, max_runs;
    long flush_max_ops;
    long worker_ttl_s;
    long no_worker_timeout_ms;
    long finished_hold_ms, max_jobs_held, max_finished_runs;
    long leader_lease_ms;
    char *metrics_host;
    long metrics_port;
    char *log_level;
    int log_json;
} sf_coord_config_t;

extern const sf_cfg_field_t sf_coord_schema[];

/* What to do when a store batch is acknowledged by Redis. */
enum { ACK_JOB_DONE = 1, ACK_JOB_DEAD, ACK_REPLY, ACK_RUN_SAVED };
typedef struct sf_ack_s {
    uint8_t type;
    uint32_t run, idx;
    uint64_t tag;           /* ACK_REPLY: request tag */
    char *rid;              /* ACK_REPLY: client routing id (owned) */
    uint32_t rid_len;
} sf_ack_t;

typedef struct sf_store_s sf_store_t;

typedef struct sf_stats_s {
    uint64_t frames_in, frames_bad, frames_out;
    uint64_t frames_oversize, frames_version; /* of frames_bad: over the cap, another protocol version */
    uint64_t results_ok, results_failed, results_dup, results_stale, results_unknown;
    uint64_t dispatched, requeued, expired, dead_lettered;
    /* Workers removed: silent past their liveness (died), said goodbye
     * (left), or superseded by a new connection under their id (replaced). */
    uint64_t workers_died, workers_left, workers_replaced;
    uint64_t redis_batches, redis_errors, redis_reconnects, redis_auth_failures;
    uint64_t send_errors;
    uint64_t dispatch_held; /* loop turns that dispatched nothing while Redis was behind (SF_STORE_PENDING_MAX) */
} sf_stats_t;

typedef struct sf_coord_s {
    uv_loop_t *loop;
    sf_coord_config_t cfg;
    void *zctx, *wsock, *csock;
    sf_zsock_t wz, cz;
    uv_prepare_t pump;
    uv_timer_t cron;
    uv_signal_t sigterm, sigint, sighup;
    sf_redis_auth_t redis_auth;  /* AUTH on every Redis connection (no password: none) */
    struct sf_zap_s *zap;        /* CURVE client authentication; NULL when CURVE is off */
    sf_store_t *store;
    uint64_t epoch;
    /* The clock of every time decision — liveness, leases, retry backoff,
     * the drain deadline, the cron's intervals — in monotonic ms: an NTP
     * step of the wall clock must not kill workers or expire leases.  Tests
     * inject their own; NULL means sf_clock_mono_ms.  Read it through
     * sf_coord_mono_ms(). */
    int64_t (*mono_ms)(void);
    int64_t start_mono_ms;  /* uptime and lease deadlines count from here */
    int64_t start_wall_ms;  /* shown: the coordinator hash's started_ms */
    int stopping;
    int64_t stop_deadline_ms; /* sf_coord_mono_ms */
    /* The leader lease (store.c): this coordinator's name in it, and when a
     * renewal last succeeded (sf_coord_mono_ms, the time it was sent).
     * Past leader_lease_ms without one, `fenced`: nothing is handed out
     * until Redis confirms the lease again. */
    char holder[160];
    int64_t lease_ok_ms;
    int fenced;
    sf_run_t *runs;         /* priority order: higher first, FIFO within */
    uint32_t next_run_num;
    sf_worker_t *workers;   /* (SF_MAX_WORKERS) by slot */
    /* Routing id -> worker: open addressing, slot + 1 (0: empty), rebuilt
     * when a worker joins or leaves (broker.c), so a frame finds its worker
     * without a scan of every slot. */
    uint16_t rid_index[2 * SF_MAX_WORKERS];
    int n_worker_slots;
    int rr;                 /* round-robin start for dispatch */
    char kinds[SF_MAX_KINDS][32];
    int n_kinds;
    int dispatch_dirty;
    sf_stats_t st;
    sf_hist_t latency;      /* all runs */
    sf_hist_t redis_latency; /* batch sent -> EXEC acknowledged, µs */
    struct sf_metrics_s *metrics;
    uint8_t *sbuf;          /* send buffer, reused */
    size_t sbuf_cap;
    int64_t last_hb_ms;     /* sf_coord_mono_ms */
} sf_coord_t;

/* time: the coordinator's monotonic clock (see sf_coord_t.mono_ms), and
 * whole seconds since start on it (lease deadlines). */
static inline int64_t sf_coord_mono_ms(const sf_coord_t *c) { return c->mono_ms ? c->mono_ms() : sf_clock_mono_ms(); }
static inline uint32_t sf_coord_secs(const sf_coord_t *c) { return (uint32_t)((sf_coord_mono_ms(c) - c->start_mono_ms) / 1000); }

/* kinds */
int sf_coord_kind_id(sf_coord_t *c, const char *kind); /* interns; -1 if full */

/* runs.c */
/* Planner helpers (runs.c) for the planners in other files (shift.c). */
int sf_plan_add_phase(sf_run_t *r, const char *name, const char *kind, uint32_t items, uint32_t shard,
                      const cJSON *payload, char *err, size_t n);
/* A run-wide phase: its items in shards of `shard`, one job each, not tied
 * to a class (job class 0, counted in no class's progress): independent
 * pieces of one computation over every class, such as the fine-tuning runs
 * of Fig. 6. */
int sf_plan_add_runwide(sf_run_t *r, const char *name, const char *kind, uint32_t items, uint32_t shard,
                        const cJSON *payload, char *err, size_t n);
/* A run-wide phase of one job (all items), e.g. an evaluation over every
 * class. */
int sf_plan_add_single(sf_run_t *r, const char *name, const char *kind, uint32_t items, const cJSON *payload,
                       char *err, size_t n);
/* method "shift": the paper's method (shift.c). */
int sf_plan_shift(sf_run_t *r, cJSON *spec, long max_jobs, char *err, size_t n);

/* Accounting: done, dead, class_done and class_dead (and each phase's done
 * and dead) count what Redis has acknowledged; done_w, dead_w and
 * class_*_w what has been queued for it, in flight included; class_stat
 * sums the job results. */
/* Adds the per-class counters of job idx's result (JSON fields
 * "generated", "kept", "dropped") to r->class_stat; 1 if it had any. */
int sf_run_count_result(sf_run_t *r, uint32_t idx, const void *payload, size_t len);
/* Job idx finished — dead, or done with this result (borrowed) — and its
 * fact is queued for Redis: the written counters and the result's counts. */
void sf_run_count_queued(sf_run_t *r, uint32_t idx, int dead, const void *payload, size_t len);
/* Redis acknowledged that fact: the slot becomes JS_DONE or JS_DEAD, the
 * acknowledged counters move, a done job's latency is recorded. */
void sf_run_count_acked(sf_coord_t *c, sf_run_t *r, uint32_t idx, int dead);
/* A run rebuilt from Redis at start, its slots set: every counter from the
 * slots (written = acknowledged), and the first unfinished phase. */
void sf_run_count_loaded(sf_run_t *r);

int sf_run_create(sf_coord_t *c, const char *spec_json, uint32_t num, sf_run_t **out, char *err, size_t n);
void sf_run_free(sf_run_t *r);
/* An ended run keeps only what status and listings show: its job slots,
 * ready ring, phase payloads and spec leave memory (Redis keeps them). */
void sf_run_drop_slots(sf_run_t *r);
/* From the cron: ended runs whose writes Redis has acknowledged drop their
 * slots after finished_hold_ms; past max_finished_runs ended runs, the
 * oldest leave memory altogether. */
void sf_runs_release(sf_coord_t *c);
/* What runs hold in memory: runs with slots, and their jobs. */
void sf_runs_held(const sf_coord_t *c, int *runs, uint64_t *jobs);
void sf_runs_insert(sf_coord_t *c, sf_run_t *r);
sf_run_t *sf_runs_find(sf_coord_t *c, const char *id);
sf_run_t *sf_runs_find_num(sf_coord_t *c, uint32_t num);
/* Takes the next job of the run for a worker with these kinds, or -1. */
int64_t sf_run_take(sf_coord_t *c, sf_run_t *r, uint64_t kinds);
/* Whether sf_run_take may find a job for a worker of these kinds, without
 * taking it (it may still find none: the ready ring keeps stale entries). */
int sf_run_has_work(const sf_coord_t *c, sf_run_t *r, uint64_t kinds);
void sf_run_requeue(sf_run_t *r, uint32_t idx);
int sf_run_phase_of(const sf_run_t *r, uint32_t idx);
/* The first leased job at index >= from, into *idx; 0 when there is none.
 *   for (uint32_t i = 0; sf_run_next_leased(r, i, &i); i++) … */
int sf_run_next_leased(const sf_run_t *r, uint32_t from, uint32_t *idx);
/* The class and item range of job idx; returns 1 if the job counts toward
 * its class's progress, 0 for the one job of a run-wide phase (class 0). */
int sf_run_job_shard(const sf_run_t *r, uint32_t idx, const char **wnid, uint32_t *start, uint32_t *count, int *cls);
/* Called after acks change counters: advances phases, finishes the run. */
void sf_run_progress(sf_coord_t *c, sf_run_t *r);
/* Ends an active run as failed, saying why (last_error, the log, an event):
 * its leased jobs are cancelled on their workers. */
void sf_run_fail(sf_coord_t *c, sf_run_t *r, const char *why);
/* From the cron: flags each active run whose phase's kind no connected
 * worker offers (status, the log, an event) and fails it once that has
 * lasted no_worker_timeout_ms (0: never). */
void sf_runs_check_kinds(sf_coord_t *c);
/* The learner's version and done flag (and error, if it failed) arrived. */
void sf_run_learner_state(sf_coord_t *c, sf_run_t *r, uint32_t version, int done, const char *failed);
cJSON *sf_run_json(const sf_coord_t *c, const sf_run_t *r, int detail);
int sf_ring_push(sf_ring_t *q, uint32_t v);
int sf_ring_pop(sf_ring_t *q, uint32_t *v);

/* broker.c */
/* A frame from a peer of either socket (sock), decoded; or NULL, the frame
 * refused: counted (frames_bad, and frames_oversize or frames_version),
 * logged once per power of two naming `from`, and answered with an Error
 * saying why — one a peer of any protocol version can read — unless it is an
 * Error itself, which is never answered. */
Sf__Envelope *sf_coord_decode(sf_coord_t *c, void *sock, const void *rid, size_t rid_len, const void *buf, size_t len,
                              const char *from);
void sf_broker_on_frame(sf_coord_t *c, const void *rid, size_t rid_len, const void *buf, size_t len);
void sf_broker_pump(sf_coord_t *c);
/* Adaptive credit: how many jobs of a phase whose jobs take job_us (0: not
 * measured yet) a worker with `slots` slots, a round trip of srtt_us and a
 * limit of max_held may hold — its slots plus a backlog that covers twice
 * the jobs its slots finish in one round trip, at least one; exactly one
 * while the phase's job time is unknown or at least SF_CREDIT_LONG_US, so
 * seconds-long work is never hoarded; never above max_held. */
#define SF_CREDIT_LONG_US 1000000u
uint32_t sf_credit_hold(uint32_t slots, uint32_t max_held, uint32_t srtt_us, uint32_t job_us);
void sf_broker_cron(sf_coord_t *c);
/* The run ends early (cancelled, or failed by its learner): jobs out on
 * workers are cancelled there and their leases released here, so results
 * that still come are dropped as stale. */
void sf_broker_cancel_run(sf_coord_t *c, sf_run_t *r);
cJSON *sf_workers_json(const sf_coord_t *c);
/* Backoff queue for failed attempts. */
void sf_backoff_add(sf_coord_t *c, sf_run_t *r, uint32_t idx, int64_t ready_ms);

/* store.c */
int sf_store_open(sf_coord_t *c, char *err, size_t n);
/* Blocking, at start only: waits as a standby while another coordinator
 * holds the leader lease, takes it (a new epoch), cuts the connections of
 * any coordinator before it, then loads every run. */
int sf_store_load(sf_coord_t *c, char *err, size_t n);
/* From the cron: renews the leader lease; a coordinator that finds it lost
 * exits (its writes are fenced off in any case). */
void sf_store_lease_tick(sf_coord_t *c);
/* On a clean stop: gives the lease up so that a standby or a restart takes
 * over at once. */
void sf_store_lease_release(sf_coord_t *c);
void sf_store_close(sf_coord_t *c);
int sf_store_idle(const sf_coord_t *c);                  /* nothing pending or in flight */
/* Bytes of sealed batches Redis has not acknowledged.  Above
 * SF_STORE_PENDING_MAX the broker dispatches nothing until Redis catches
 * up: the coordinator would otherwise run ahead of a slower Redis and hold
 * an ever longer queue of writes (1.3 GB in a 10 M-job run). */
#define SF_STORE_PENDING_MAX (32u << 20)
size_t sf_store_pending_bytes(const sf_coord_t *c);
void sf_store_flush(sf_coord_t *c);
/* Queue writes (coalesced into the next batch). */
void sf_store_run_saved(sf_coord_t *c, sf_run_t *r, int with_spec);
void sf_store_job_leased(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *worker, int64_t deadline_ms);
void sf_store_job_requeued(sf_coord_t *c, sf_run_t *r, uint32_t idx);
void sf_store_job_skipped(sf_coord_t *c, sf_run_t *r, uint32_t idx);  /* drops its lease entry */
void sf_store_job_done(sf_coord_t *c, sf_run_t *r, uint32_t idx, const void *payload, size_t len);
void sf_store_job_dead(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *error, const char *worker);
void sf_store_event(sf_coord_t *c, sf_run_t *r, const char *type, const char *detail);
void sf_store_worker(sf_coord_t *c, sf_worker_t *w, int gone);
void sf_store_ack_reply(sf_coord_t *c, const void *rid, size_t rid_len, uint64_t tag, uint32_t run);
void sf_store_coordinator(sf_coord_t *c);
/* Reads the run's learner hash; sf_run_learner_state() gets the answer. */
void sf_store_poll_learner(sf_coord_t *c, sf_run_t *r);
void sf_store_info(const sf_coord_t *c, cJSON *out);

/* clients.c */
void sf_clients_on_frame(sf_coord_t *c, const void *rid, size_t rid_len, const void *buf, size_t len);
void sf_clients_reply(sf_coord_t *c, const void *rid, size_t rid_len, uint64_t tag, int code,
                      const char *error, const char *run, const char *json);

/* main.c */
void sf_coord_on_acked(sf_coord_t *c, const sf_ack_t *acks, size_t n);

#endif
