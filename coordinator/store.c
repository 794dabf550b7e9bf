/* store.c: the coordinator's Redis writer and loader.
 *
 * Writes are coalesced: the broker queues facts (job leased, done, dead, run
 * saved, worker seen) into the open batch; once per loop turn (and whenever
 * the batch grows past flush_max_ops) the batch is sent as one MULTI … EXEC
 * with variadic commands (one BITFIELD for all done bits of a run, one HSET
 * for all its leases, …), so the hot path costs no round trip per job.
 * Every write is idempotent — bits set, absolute counters, fields set or
 * deleted — so a batch whose fate is unknown after a lost connection is
 * simply sent again.  What a batch acknowledges (jobs done, replies to
 * clients) happens only when its EXEC reply arrives.
 *
 * At start, sf_store_load() rebuilds every unfinished run from Redis with a
 * blocking connection, before the loop runs.
 *
 * The asynchronous connection — AUTH first, reconnects with backoff — is
 * common/redis/conn's; the store hears when it is up (everything not
 * acknowledged goes out again) and down, and drops it when Redis refuses
 * a batch.  The counters it writes are the runs' (runs.c counts them).
 */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/redis/conn.h"
#include "common/redis/keys.h"
#include "common/runtime/error.h"
#include "common/runtime/log.h"
#include "coordinator/coord.h"

/* A growing list of Redis command arguments. */
typedef struct {
    char **v;
    size_t *l;
    int n, cap;
} args_t;

/* One run's share of the open batch. */
typedef struct {
    uint32_t run;
    args_t done_bits;   /* BITFIELD key SET u1 i 1 … */
    args_t lease_set;   /* HSET leases i v … */
    args_t lease_del;   /* HDEL leases i … */
    args_t results;     /* HSET results i payload … */
    args_t dead;        /* HSET dead i json … */
    int saved, with_spec, classes_dirty;
    args_t events;      /* XADD … one per event, as whole commands */
} runpend_t;

typedef struct batch_s {
    char **cmds;        /* formatted commands, MULTI … EXEC */
    size_t *lens;
    int n, cap;
    sf_ack_t *acks;
    size_t n_acks, cap_acks;
    int sent;           /* in flight on the current connection */
    int resync;         /* made by resync(): superseded by the next one */
    int64_t sent_us;
    struct batch_s *next;
} batch_t;

struct sf_store_s {
    sf_redis_conn_t conn; /* AUTH, reconnects with backoff; sf_redis_conn_ac() is NULL while down */
    char *prefix;
    runpend_t *rp;
    int n_rp, cap_rp;
    args_t misc;        /* whole commands (worker hashes, coordinator) as NUL-separated arg lists */
    batch_t *open;      /* being built */
    batch_t *head, *tail; /* sent or waiting to be sent, oldest first */
    int inflight;
    size_t ops;         /* operations in the open batch */
    int was_connected;  /* a reconnect, not the first connect */
    int batch_refused;  /* Redis refused an EXEC on this connection: reconnect and send again */
    int refused_streak; /* batches refused in a row: the reconnects back off, the log stays short */
    int leading;        /* this connection confirmed the lease: batches may go out on it */
    int lease_inflight; /* a renewal awaits its reply */
    int64_t lease_sent_ms, lease_last_ms;
};

/* ---- the leader lease -------------------------------------------------------------
 *
 * One coordinator leads per Redis (per prefix).  It holds KEYS[1], "<epoch>
 * <holder>", with a TTL of leader_lease_ms, renewed every third of it.  One
 * script takes, renews and resumes it, atomically:
 *   - held by us: renewed; returns our epoch;
 *   - held by another: the error "HELD <value>";
 *   - free, and we held it before (ARGV[3] is our epoch): taken again with
 *     the same epoch unless another took it since (the epoch counter, KEYS[2],
 *     is past ours): then 0, lost for good.  A counter behind ours or gone
 *     is a Redis that lost its data: memory is the newer truth there (the
 *     resync writes every run again), and the counter is set back to ours;
 *   - free, at start (ARGV[3] "0"): a new epoch, INCR of KEYS[2].
 * Fencing: a coordinator that takes the lease kills every Redis connection
 * named "sf-coordinator" (CLIENT KILL), so nothing an old leader sends
 * after that point is applied, and a coordinator sends no batch on a new
 * connection before the script has confirmed its lease on it.  Redis runs
 * commands one at a time, so every write of the old leader was applied
 * before the new one loads the runs, or never. */
static const char LEASE_LUA[] =
    "local cur = redis.call('GET', KEYS[1]) "
    "if cur then "
    "  if ARGV[3] ~= '0' and cur == ARGV[3] .. ' ' .. ARGV[1] then "
    "    redis.call('PEXPIRE', KEYS[1], ARGV[2]) return tonumber(ARGV[3]) end "
    "  return redis.error_reply('HELD ' .. cur) end "
    "if ARGV[3] ~= '0' then "
    "  local e = tonumber(redis.call('GET', KEYS[2]) or '0') "
    "  if e > tonumber(ARGV[3]) then return 0 end "
    "  if e < tonumber(ARGV[3]) then redis.call('SET', KEYS[2], ARGV[3]) end "
    "  redis.call('SET', KEYS[1], ARGV[3] .. ' ' .. ARGV[1], 'PX', ARGV[2]) return tonumber(ARGV[3]) end "
    "local e = redis.call('INCR', KEYS[2]) "
    "redis.call('SET', KEYS[1], e .. ' ' .. ARGV[1], 'PX', ARGV[2]) return e";
/* Gives the lease up if it is still ours. */
static const char RELEASE_LUA[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
#define SF_COORD_CONN_NAME "sf-coordinator"

static void lease_lost(const char *why) {
    /* Its state may be older than the new leader's: nothing it holds may be
     * written or handed out again.  A supervisor restarts it as a standby. */
    sf_error("lost the leader lease: %s; exiting (a restart waits as a standby)", why);
    fflush(NULL);
    _exit(3);
}

/* The context to send on, NULL while Redis is down. */
static redisAsyncContext *ac_of(const sf_store_t *s) { return sf_redis_conn_ac(&s->conn); }

/* ---- argument lists ------------------------------------------------------------ */

static int args_push(args_t *a, const void *s, size_t len) {
    if (a->n == a->cap) {
        int nc = a->cap ? a->cap * 2 : 16;
        char **nv = realloc(a->v, (size_t)nc * sizeof *nv);
        if (!nv) return SF_ENOMEM;
        a->v = nv;
        size_t *nl = realloc(a->l, (size_t)nc * sizeof *nl);
        if (!nl) return SF_ENOMEM;
        a->l = nl;
        a->cap = nc;
    }
    char *d = malloc(len + 1);
    if (!d) return SF_ENOMEM;
    memcpy(d, s, len);
    d[len] = 0;
    a->v[a->n] = d;
    a->l[a->n] = len;
    a->n++;
    return 0;
}

static int args_str(args_t *a, const char *s) { return args_push(a, s, strlen(s)); }

static int args_fmt(args_t *a, const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0) return SF_EINVAL;
    return args_push(a, buf, (size_t)k < sizeof buf ? (size_t)k : sizeof buf - 1);
}

static void args_clear(args_t *a) {
    for (int i = 0; i < a->n; i++) free(a->v[i]);
    a->n = 0;
}

static void args_free(args_t *a) {
    args_clear(a);
    free(a->v);
    free(a->l);
    memset(a, 0, sizeof *a);
}

/* ---- batches ---------------------------------------------------------------------- */

static batch_t *open_batch(sf_store_t *s) {
    if (!s->open) s->open = calloc(1, sizeof(batch_t));
    return s->open;
}

/* The formatted bytes of every batch alive (sf_store_pending_bytes); the
 * store is one per process. */
static size_t pending_bytes;

size_t sf_store_pending_bytes(const sf_coord_t *c) {
    (void)c;
    return pending_bytes;
}

static void batch_free(batch_t *b) {
    for (int i = 0; i < b->n; i++) pending_bytes -= b->lens[i];
    for (int i = 0; i < b->n; i++) free(b->cmds[i]);
    free(b->cmds);
    free(b->lens);
    for (size_t i = 0; i < b->n_acks; i++) free(b->acks[i].rid);
    free(b->acks);
    free(b);
}

static int batch_cmd(batch_t *b, int argc, const char **argv, const size_t *lens) {
    if (b->n == b->cap) {
        int nc = b->cap ? b->cap * 2 : 16;
        char **nv = realloc(b->cmds, (size_t)nc * sizeof *nv);
        if (!nv) return SF_ENOMEM;
        b->cmds = nv;
        size_t *nl = realloc(b->lens, (size_t)nc * sizeof *nl);
        if (!nl) return SF_ENOMEM;
        b->lens = nl;
        b->cap = nc;
    }
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    if (len < 0) return SF_ENOMEM;
    b->cmds[b->n] = cmd;
    b->lens[b->n] = (size_t)len;
    b->n++;
    pending_bytes += (size_t)len;
    return 0;
}

static int batch_args(batch_t *b, const args_t *a) {
    return batch_cmd(b, a->n, (const char **)a->v, a->l);
}

static void add_ack(sf_store_t *s, sf_ack_t ack) {
    batch_t *b = open_batch(s);
    if (!b) return;
    if (b->n_acks == b->cap_acks) {
        size_t nc = b->cap_acks ? b->cap_acks * 2 : 256;
        sf_ack_t *na = realloc(b->acks, nc * sizeof *na);
        if (!na) return;
        b->acks = na;
        b->cap_acks = nc;
    }
    b->acks[b->n_acks++] = ack;
}

static runpend_t *pend(sf_store_t *s, uint32_t run) {
    for (int i = 0; i < s->n_rp; i++)
        if (s->rp[i].run == run) return &s->rp[i];
    if (s->n_rp == s->cap_rp) {
        int nc = s->cap_rp ? s->cap_rp * 2 : 8;
        runpend_t *nr = realloc(s->rp, (size_t)nc * sizeof *nr);
        if (!nr) return NULL;
        s->rp = nr;
        s->cap_rp = nc;
    }
    runpend_t *p = &s->rp[s->n_rp++];
    memset(p, 0, sizeof *p);
    p->run = run;
    return p;
}

static sf_coord_t *g_coord; /* the store's callbacks reach the coordinator through this */

/* ---- queueing facts ---------------------------------------------------------------- */

static char *key(const sf_coord_t *c, const char *fmt, const char *arg, char *buf, size_t n) {
    snprintf(buf, n, fmt, c->store->prefix, arg);
    return buf;
}

void sf_store_run_saved(sf_coord_t *c, sf_run_t *r, int with_spec) {
    runpend_t *p = pend(c->store, r->num);
    if (!p) return;
    p->saved = 1;
    p->with_spec |= with_spec;
    c->store->ops++;
}

void sf_store_job_leased(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *worker, int64_t deadline_ms) {
    runpend_t *p = pend(c->store, r->num);
    if (!p) return;
    args_fmt(&p->lease_set, "%u", idx);
    args_fmt(&p->lease_set, "%s %u %lld", worker, r->jobs[idx].attempt, (long long)deadline_ms);
    c->store->ops++;
}

void sf_store_job_skipped(sf_coord_t *c, sf_run_t *r, uint32_t idx) {
    runpend_t *p = pend(c->store, r->num);
    if (!p) return;
    args_fmt(&p->lease_del, "%u", idx);
    c->store->ops++;
}

void sf_store_job_requeued(sf_coord_t *c, sf_run_t *r, uint32_t idx) {
    runpend_t *p = pend(c->store, r->num);
    if (!p) return;
    args_fmt(&p->lease_set, "%u", idx);
    args_fmt(&p->lease_set, "- %u 0", r->jobs[idx].attempt);
    c->store->ops++;
}

void sf_store_job_done(sf_coord_t *c, sf_run_t *r, uint32_t idx, const void *payload, size_t len) {
    sf_store_t *s = c->store;
    runpend_t *p = pend(s, r->num);
    if (!p) return;
    args_str(&p->done_bits, "SET");
    args_str(&p->done_bits, "u1");
    args_fmt(&p->done_bits, "%u", idx);
    args_str(&p->done_bits, "1");
    args_fmt(&p->lease_del, "%u", idx);
    if (len) {
        args_fmt(&p->results, "%u", idx);
        args_push(&p->results, payload, len);
    }
    p->saved = p->classes_dirty = 1;
    add_ack(s, (sf_ack_t){.type = ACK_JOB_DONE, .run = r->num, .idx = idx});
    s->ops += 3;
}

void sf_store_job_dead(sf_coord_t *c, sf_run_t *r, uint32_t idx, const char *error, const char *worker) {
    sf_store_t *s = c->store;
    runpend_t *p = pend(s, r->num);
    if (!p) return;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "attempts", r->jobs[idx].attempt);
    cJSON_AddStringToObject(o, "error", error);
    cJSON_AddStringToObject(o, "worker", worker ? worker : "");
    cJSON_AddNumberToObject(o, "at_ms", (double)sf_clock_wall_ms());
    char *js = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    args_fmt(&p->dead, "%u", idx);
    args_str(&p->dead, js ? js : "{}");
    free(js);
    args_fmt(&p->lease_del, "%u", idx);
    p->saved = p->classes_dirty = 1;
    char detail[300];
    snprintf(detail, sizeof detail, "job %u: %s", idx, error);
    sf_store_event(c, r, "dead_letter", detail);
    add_ack(s, (sf_ack_t){.type = ACK_JOB_DEAD, .run = r->num, .idx = idx});
    s->ops += 3;
}

void sf_store_event(sf_coord_t *c, sf_run_t *r, const char *type, const char *detail) {
    runpend_t *p = pend(c->store, r->num);
    if (!p) return;
    char k[128];
    /* Events are whole commands separated by a NULL marker (length SIZE_MAX). */
    args_str(&p->events, "XADD");
    args_str(&p->events, key(c, SF_KEY_RUN_EVENTS, r->id, k, sizeof k));
    args_str(&p->events, "MAXLEN");
    args_str(&p->events, "~");
    args_fmt(&p->events, "%d", SF_EVENTS_MAXLEN);
    args_str(&p->events, "*");
    args_str(&p->events, "type");
    args_str(&p->events, type);
    args_str(&p->events, "detail");
    args_str(&p->events, detail ? detail : "");
    args_str(&p->events, "at_ms");
    args_fmt(&p->events, "%lld", (long long)sf_clock_wall_ms());
    c->store->ops++;
}

/* misc holds whole commands; each is introduced by its argument count. */
static void misc_cmd(sf_store_t *s, int argc, ...) {
    va_list ap;
    va_start(ap, argc);
    args_fmt(&s->misc, "#%d", argc);
    for (int i = 0; i < argc; i++) args_str(&s->misc, va_arg(ap, const char *));
    va_end(ap);
    s->ops++;
}

void sf_store_worker(sf_coord_t *c, sf_worker_t *w, int gone) {
    sf_store_t *s = c->store;
    char k[300], ks[64], now[32], slots[16], busy[16], done[24], failed[24], pid[16], ttl[16], leased[16];
    snprintf(k, sizeof k, SF_KEY_WORKER, s->prefix, w->id);
    snprintf(ks, sizeof ks, SF_KEY_WORKERS, s->prefix);
    snprintf(now, sizeof now, "%lld", (long long)sf_clock_wall_ms());
    snprintf(slots, sizeof slots, "%u", w->slots);
    snprintf(busy, sizeof busy, "%u", w->busy);
    snprintf(leased, sizeof leased, "%u", w->leased);
    snprintf(done, sizeof done, "%llu", (unsigned long long)w->done);
    snprintf(failed, sizeof failed, "%llu", (unsigned long long)w->failed);
    snprintf(pid, sizeof pid, "%u", w->pid);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg.worker_ttl_s);
    misc_cmd(s, 24, "HSET", k, "id", w->id, "host", w->host, "pid", pid, "device", w->device, "kinds",
             w->kinds_text, "slots", slots, "busy", busy, "leased", leased, "done", done, "failed", failed,
             "state", gone ? "gone" : "alive");
    misc_cmd(s, 4, "HSET", k, "last_seen_ms", now);
    misc_cmd(s, 3, "EXPIRE", k, ttl);
    if (gone) misc_cmd(s, 3, "ZREM", ks, w->id);
    else misc_cmd(s, 4, "ZADD", ks, now, w->id);
    w->dirty = 0;
}

void sf_store_coordinator(sf_coord_t *c) {
    sf_store_t *s = c->store;
    char k[128], pid[16], ep[24], st[24], hb[24], disp[24], bad[24], dup[24], stale[24];
    snprintf(k, sizeof k, SF_KEY_COORDINATOR, s->prefix);
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)c->epoch);
    snprintf(st, sizeof st, "%lld", (long long)c->start_wall_ms);
    snprintf(hb, sizeof hb, "%lld", (long long)sf_clock_wall_ms());
    snprintf(disp, sizeof disp, "%llu", (unsigned long long)c->st.dispatched);
    snprintf(bad, sizeof bad, "%llu", (unsigned long long)c->st.frames_bad);
    snprintf(dup, sizeof dup, "%llu", (unsigned long long)c->st.results_dup);
    snprintf(stale, sizeof stale, "%llu", (unsigned long long)c->st.results_stale);
    misc_cmd(s, 18, "HSET", k, "pid", pid, "epoch", ep, "started_ms", st, "heartbeat_ms", hb, "dispatched", disp,
             "frames_bad", bad, "results_dup", dup, "results_stale", stale);
}

void sf_store_ack_reply(sf_coord_t *c, const void *rid, size_t rid_len, uint64_t tag, uint32_t run) {
    sf_ack_t a = {.type = ACK_REPLY, .run = run, .tag = tag};
    a.rid = malloc(rid_len ? rid_len : 1);
    if (!a.rid) return;
    memcpy(a.rid, rid, rid_len);
    a.rid_len = (uint32_t)rid_len;
    add_ack(c->store, a);
    c->store->ops++;
}

static void on_learner(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    sf_coord_t *c = g_coord;
    uint32_t num = (uint32_t)(uintptr_t)priv;
    sf_run_t *r = sf_runs_find_num(c, num);
    redisReply *rep = reply;
    if (!r) return;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 5) { r->learner_polling = 0; return; }
    const char *v = rep->element[0]->str, *d = rep->element[1]->str, *st = rep->element[2]->str,
               *e = rep->element[3]->str, *u = rep->element[4]->str;
    /* Idle: the learner waits for rollouts ("ready"), or no learner holds the
     * run any more — the one that does rewrites the hash every second, and a
     * restarted learner takes a run up only when a rollout or a policy
     * request for it comes — so its updated_ms has not moved for 5 s (on
     * this coordinator's monotonic clock: the stamp, the learner's wall
     * time, is only compared for a change). */
    int64_t now = sf_coord_mono_ms(c), upd = u ? atoll(u) : 0;
    if (upd != r->learner_updated_ms) r->learner_updated_ms = upd, r->learner_fresh_ms = now;
    r->learner_idle = (st && !strcmp(st, "ready")) || now - r->learner_fresh_ms > 5000;
    sf_run_learner_state(c, r, v ? (uint32_t)strtoul(v, NULL, 10) : 0, d && atoi(d) == 1,
                         st && !strcmp(st, "failed") ? (e && *e ? e : "unknown error") : NULL);
}

void sf_store_poll_learner(sf_coord_t *c, sf_run_t *r) {
    sf_store_t *s = c->store;
    redisAsyncContext *ac = ac_of(s);
    if (!ac || r->learner_polling) return;
    char k[160];
    snprintf(k, sizeof k, SF_KEY_RUN_LEARNER, s->prefix, r->id);
    if (redisAsyncCommand(ac, on_learner, (void *)(uintptr_t)r->num, "HMGET %s version done state error updated_ms", k) == REDIS_OK)
        r->learner_polling = 1;
}

/* ---- building and sending a batch ----------------------------------------------- */

/* The counters a write of a run carries: what has been queued for Redis
 * (the *_w ones, the usual case), or only what Redis acknowledged (a
 * resync: the batches resent after it bring the rest). */
typedef struct {
    uint64_t done, dead;
    const uint32_t *class_done, *class_dead;
} counts_t;

static counts_t written(const sf_run_t *r) { return (counts_t){r->done_w, r->dead_w, r->class_done_w, r->class_dead_w}; }
static counts_t acked(const sf_run_t *r) { return (counts_t){r->done, r->dead, r->class_done, r->class_dead}; }

static void run_hash_cmd(sf_coord_t *c, batch_t *b, sf_run_t *r, int with_spec, counts_t n) {
    args_t a = {0};
    char k[128];
    args_str(&a, "HSET");
    args_str(&a, key(c, SF_KEY_RUN, r->id, k, sizeof k));
    args_str(&a, "id"); args_str(&a, r->id);
    args_str(&a, "name"); args_str(&a, r->name ? r->name : "");
    args_str(&a, "state"); args_str(&a, sf_run_state_name(r->state));
    args_str(&a, "phase"); args_str(&a, r->phase < r->n_phases ? r->phases[r->phase].name : "");
    args_str(&a, "phase_index"); args_fmt(&a, "%d", r->phase);
    args_str(&a, "phases"); args_fmt(&a, "%d", r->n_phases);
    args_str(&a, "priority"); args_fmt(&a, "%d", r->priority);
    args_str(&a, "total"); args_fmt(&a, "%u", r->n_jobs);
    args_str(&a, "done"); args_fmt(&a, "%llu", (unsigned long long)n.done);
    args_str(&a, "dead"); args_fmt(&a, "%llu", (unsigned long long)n.dead);
    args_str(&a, "retries"); args_fmt(&a, "%llu", (unsigned long long)r->retries);
    uint32_t skipped = 0;
    for (int i = 0; i < r->n_phases; i++) skipped += r->phases[i].skipped;
    args_str(&a, "skipped"); args_fmt(&a, "%u", skipped);
    args_str(&a, "classes"); args_fmt(&a, "%d", r->classes->n);
    args_str(&a, "created_ms"); args_fmt(&a, "%lld", (long long)r->created_ms);
    args_str(&a, "started_ms"); args_fmt(&a, "%lld", (long long)r->started_ms);
    args_str(&a, "finished_ms"); args_fmt(&a, "%lld", (long long)r->finished_ms);
    args_str(&a, "updated_ms"); args_fmt(&a, "%lld", (long long)sf_clock_wall_ms());
    args_str(&a, "last_error"); args_str(&a, r->last_error);
    if (with_spec) { args_str(&a, "spec"); args_str(&a, r->spec_json); }
    batch_args(b, &a);
    args_free(&a);
}

static void classes_cmd(sf_coord_t *c, batch_t *b, sf_run_t *r, int with_totals, counts_t n) {
    args_t a = {0};
    char k[128];
    args_str(&a, "HSET");
    args_str(&a, key(c, SF_KEY_RUN_CLASSES, r->id, k, sizeof k));
    uint32_t per = 0;
    for (int i = 0; i < r->n_phases; i++) per += r->phases[i].single ? 0 : r->phases[i].shards_per_class;
    for (int i = 0; i < r->classes->n; i++) {
        const char *w = r->classes->v[i].wnid;
        if (with_totals) { args_fmt(&a, "%s:total", w); args_fmt(&a, "%u", per); }
        if (with_totals || n.class_done[i]) { args_fmt(&a, "%s:done", w); args_fmt(&a, "%u", n.class_done[i]); }
        if (with_totals || n.class_dead[i]) { args_fmt(&a, "%s:dead", w); args_fmt(&a, "%u", n.class_dead[i]); }
        for (int k = 0; r->class_stat && k < SF_CLASS_STATS; k++)
            if (r->class_stat[i][k]) {
                args_fmt(&a, "%s:%s", w, sf_class_stat_names[k]);
                args_fmt(&a, "%u", r->class_stat[i][k]);
            }
    }
    if (a.n > 2) batch_args(b, &a);
    args_free(&a);
}

static void with_key(args_t *a, const char *cmd, const char *k) {
    /* Commands are built with the command and key in front of the fields. */
    args_t t = {0};
    args_str(&t, cmd);
    args_str(&t, k);
    for (int i = 0; i < a->n; i++) args_push(&t, a->v[i], a->l[i]);
    args_clear(a);
    for (int i = 0; i < t.n; i++) args_push(a, t.v[i], t.l[i]);
    args_free(&t);
}

static void seal(sf_coord_t *c) {
    sf_store_t *s = c->store;
    if (s->ops == 0 && !s->open) return;
    batch_t *b = open_batch(s);
    if (!b) return;
    const char *multi[] = {"MULTI"};
    batch_cmd(b, 1, multi, NULL);
    char k[160];
    for (int i = 0; i < s->n_rp; i++) {
        runpend_t *p = &s->rp[i];
        sf_run_t *r = sf_runs_find_num(c, p->run);
        if (!r) continue;
        if (p->with_spec) {
            char ks[128], score[32];
            snprintf(ks, sizeof ks, SF_KEY_RUNS, s->prefix);
            snprintf(score, sizeof score, "%lld", (long long)r->created_ms);
            const char *za[] = {"ZADD", ks, score, r->id};
            batch_cmd(b, 4, za, NULL);
            snprintf(ks, sizeof ks, SF_KEY_RUN_NEXT, s->prefix);
            char nn[16];
            snprintf(nn, sizeof nn, "%u", c->next_run_num - 1);
            /* Never move the counter back: SET only if greater is done by the loader. */
            const char *sa[] = {"SET", ks, nn};
            batch_cmd(b, 3, sa, NULL);
        }
        if (p->done_bits.n) { with_key(&p->done_bits, "BITFIELD", key(c, SF_KEY_RUN_DONE, r->id, k, sizeof k)); batch_args(b, &p->done_bits); }
        /* Sets before deletes: a job leased and finished within one batch
         * must leave no lease behind. */
        if (p->lease_set.n) { with_key(&p->lease_set, "HSET", key(c, SF_KEY_RUN_LEASES, r->id, k, sizeof k)); batch_args(b, &p->lease_set); }
        if (p->lease_del.n) { with_key(&p->lease_del, "HDEL", key(c, SF_KEY_RUN_LEASES, r->id, k, sizeof k)); batch_args(b, &p->lease_del); }
        if (!sf_run_active(r)) {
            /* An ended run holds no lease (docs/redis-keys.md): the jobs still
             * out when it was cancelled or failed were released, and "- <attempt>
             * 0" entries of retries wait for nothing now.  Every batch that
             * writes an ended run says so, the first being the one that saves
             * its end: both land together. */
            const char *dl[] = {"DEL", key(c, SF_KEY_RUN_LEASES, r->id, k, sizeof k)};
            batch_cmd(b, 2, dl, NULL);
        }
        if (p->results.n) { with_key(&p->results, "HSET", key(c, SF_KEY_RUN_RESULTS, r->id, k, sizeof k)); batch_args(b, &p->results); }
        if (p->dead.n) { with_key(&p->dead, "HSET", key(c, SF_KEY_RUN_DEAD, r->id, k, sizeof k)); batch_args(b, &p->dead); }
        if (p->saved || p->with_spec) run_hash_cmd(c, b, r, p->with_spec, written(r));
        if (p->classes_dirty || p->with_spec) classes_cmd(c, b, r, p->with_spec, written(r));
        for (int e = 0; e + 12 <= p->events.n; e += 12)
            batch_cmd(b, 12, (const char **)p->events.v + e, p->events.l + e);
        args_free(&p->done_bits);
        args_free(&p->lease_set);
        args_free(&p->lease_del);
        args_free(&p->results);
        args_free(&p->dead);
        args_free(&p->events);
    }
    s->n_rp = 0;
    for (int i = 0; i < s->misc.n;) {
        int argc = atoi(s->misc.v[i] + 1);
        if (argc <= 0 || i + 1 + argc > s->misc.n) break;
        batch_cmd(b, argc, (const char **)s->misc.v + i + 1, s->misc.l + i + 1);
        i += 1 + argc;
    }
    args_clear(&s->misc);
    const char *exec[] = {"EXEC"};
    batch_cmd(b, 1, exec, NULL);
    s->open = NULL;
    s->ops = 0;
    if (s->tail) s->tail->next = b;
    else s->head = b;
    s->tail = b;
}

static void on_exec(redisAsyncContext *ac, void *reply, void *priv);

static void send_batch(sf_coord_t *c, batch_t *b) {
    sf_store_t *s = c->store;
    redisAsyncContext *ac = ac_of(s);
    for (int i = 0; i < b->n; i++) {
        int last = i == b->n - 1;
        if (redisAsyncFormattedCommand(ac, last ? on_exec : NULL, last ? b : NULL, b->cmds[i], b->lens[i]) != REDIS_OK) {
            sf_warn("redis: cannot queue a command: %s", ac->errstr);
            return;
        }
    }
    b->sent = 1;
    b->sent_us = sf_clock_mono_us();
    s->inflight++;
    c->st.redis_batches++;
}


static void on_exec(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    sf_coord_t *c = g_coord;
    sf_store_t *s = c->store;
    batch_t *b = priv;
    redisReply *r = reply;
    if (!r) return; /* connection lost: the batch stays queued and is sent again */
    if (s->batch_refused) return; /* behind a refused batch: sent again after the reconnect */
    s->inflight--;
    if (r->type == REDIS_REPLY_ERROR) {
        /* EXEC refused (EXECABORT: Redis rejected a queued command, e.g.
         * LOADING while it reads its AOF after a restart): nothing of the
         * batch was applied, so nothing of it may be acknowledged.  Drop the
         * connection; the reconnect (with backoff) rewrites the active runs
         * and sends this batch and the ones behind it again. */
        c->st.redis_errors++;
        if (s->refused_streak++ % 20 == 0)
            sf_warn("redis: a batch was refused (%s); it is sent again after a reconnect (%d in a row)", r->str,
                    s->refused_streak);
        s->batch_refused = 1;
        sf_redis_conn_drop(&s->conn);
        return;
    } else if (r->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < r->elements; i++) {
            if (r->element[i]->type == REDIS_REPLY_ERROR) {
                c->st.redis_errors++;
                sf_error("redis: command %zu of a batch failed: %s", i, r->element[i]->str);
            }
        }
    }
    if (s->refused_streak) {
        s->refused_streak = 0;
        sf_redis_conn_backoff_reset(&s->conn);
    }
    /* Batches are acknowledged in order: b is the head. */
    if (s->head != b) sf_error("redis: acknowledgement out of order");
    s->head = b->next;
    if (!s->head) s->tail = NULL;
    sf_hist_add(&c->redis_latency, (uint64_t)(sf_clock_mono_us() - b->sent_us));
    sf_coord_on_acked(c, b->acks, b->n_acks);
    batch_free(b);
}

int sf_store_idle(const sf_coord_t *c) {
    const sf_store_t *s = c->store;
    return s->ops == 0 && !s->open && !s->head && s->n_rp == 0;
}

/* Bytes hiredis holds for Redis above which no further batch is handed to
 * it.  hiredis moves what is left of its output buffer to the front after
 * every write (sdsrange), so a buffer of many batches costs time quadratic
 * in its size when Redis reads slower than batches are sealed: with 1,000
 * workers it was 58% of the coordinator's time.  Sealed batches wait in our
 * queue instead, where they cost nothing; the next loop turn hands them
 * over as the buffer drains. */
#define OBUF_MAX (256u << 10)

void sf_store_flush(sf_coord_t *c) {
    sf_store_t *s = c->store;
    if (s->ops || s->open || s->n_rp) {
        /* Up to four batches in flight; beyond that, keep coalescing. */
        if (s->inflight < 4 || s->ops > (size_t)c->cfg.flush_max_ops) seal(c);
    }
    redisAsyncContext *ac = ac_of(s);
    if (!ac || s->batch_refused || !s->leading) return;
    for (batch_t *b = s->head; b; b = b->next) {
        if (b->sent) continue;
        if (ac->c.obuf && sdslen(ac->c.obuf) > OBUF_MAX) break;
        send_batch(c, b);
    }
}

/* ---- connection -------------------------------------------------------------------- */

/* After a lost connection Redis may have lost what it acknowledged (a crash
 * within its fsync second, a restart without AOF, a failover).  Memory is
 * the newer truth, so the whole state of every active run — done bitmap,
 * run hash with spec, per-class counters, run index — is written again,
 * ahead of the batches waiting to be resent. */
static void resync(sf_coord_t *c) {
    sf_store_t *s = c->store;
    batch_t *b = calloc(1, sizeof *b);
    if (!b) return;
    b->resync = 1;
    /* One from an earlier connection that Redis never acknowledged (it
     * refused it, or went away again) is superseded by this one. */
    s->tail = NULL;
    for (batch_t **pp = &s->head; *pp;) {
        batch_t *o = *pp;
        if (o->resync) { *pp = o->next; batch_free(o); }
        else { s->tail = o; pp = &o->next; }
    }
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    batch_cmd(b, 1, multi, NULL);
    char k[160], score[32], nn[16];
    snprintf(k, sizeof k, SF_KEY_RUN_NEXT, s->prefix);
    snprintf(nn, sizeof nn, "%u", c->next_run_num - 1);
    const char *sa[] = {"SET", k, nn};
    batch_cmd(b, 3, sa, NULL);
    int runs = 0;
    for (sf_run_t *r = c->runs; r; r = r->next) {
        char ks[128];
        snprintf(ks, sizeof ks, SF_KEY_RUNS, s->prefix);
        snprintf(score, sizeof score, "%lld", (long long)r->created_ms);
        const char *za[] = {"ZADD", ks, score, r->id};
        batch_cmd(b, 4, za, NULL);
        if (!r->jobs) continue; /* finished before this coordinator started: Redis had it then */
        size_t nb = ((size_t)r->n_jobs + 7) / 8;
        char *bits = calloc(nb ? nb : 1, 1);
        if (!bits) continue;
        for (uint32_t i = 0; i < r->n_jobs; i++)
            if (r->jobs[i].state == JS_DONE) bits[i / 8] |= (char)(0x80 >> (i % 8));
        const char *bs[] = {"SET", key(c, SF_KEY_RUN_DONE, r->id, k, sizeof k), bits};
        size_t bl[] = {3, strlen(k), nb};
        batch_cmd(b, 3, bs, bl);
        free(bits);
        /* Only what Redis acknowledged before; the batches resent after
         * this one bring the rest. */
        run_hash_cmd(c, b, r, 1, acked(r));
        classes_cmd(c, b, r, 1, acked(r));
        runs++;
    }
    batch_cmd(b, 1, exec, NULL);
    b->next = s->head;
    s->head = b;
    if (!s->tail) s->tail = b;
    sf_info("redis: rewriting the state of %d active runs after the reconnect", runs);
}

/* The connection is usable (connected, and AUTH accepted if we sent one):
 * everything not acknowledged is sent again, behind a rewrite of the active
 * runs after a reconnect. */
/* A reply of LEASE_LUA: our epoch, or the lease is another's. */
static void on_lease(redisAsyncContext *ac, void *reply, void *priv) {
    (void)ac;
    sf_coord_t *c = g_coord;
    sf_store_t *s = c->store;
    redisReply *r = reply;
    int first = priv != NULL; /* the check on a new connection */
    s->lease_inflight = 0;
    if (!r) return; /* connection lost: the next one checks again */
    if (r->type == REDIS_REPLY_ERROR && !strncmp(r->str, "HELD ", 5)) lease_lost(r->str);
    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0)
        lease_lost("it expired while Redis could not be reached and another coordinator led since");
    if (r->type != REDIS_REPLY_INTEGER || (uint64_t)r->integer != c->epoch) {
        /* LOADING after a Redis restart, say: the tick sends it again (the
         * first check of a connection too: nothing goes out before it). */
        sf_warn("redis: the lease check failed (%s); trying again", r->type == REDIS_REPLY_ERROR ? r->str : "?");
        return;
    }
    c->lease_ok_ms = s->lease_sent_ms;
    if (c->fenced) sf_info("the leader lease is confirmed again: handing out jobs");
    c->fenced = 0;
    c->dispatch_dirty = 1;
    if (!first) return;
    s->leading = 1;
    for (batch_t *b = s->head; b; b = b->next) b->sent = 0;
    s->inflight = 0;
    if (s->was_connected) resync(c);
    s->was_connected = 1;
    sf_store_flush(c);
}

static void send_lease(sf_coord_t *c, int first) {
    sf_store_t *s = c->store;
    redisAsyncContext *ac = ac_of(s);
    if (!ac) return;
    char k1[160], k2[160], ttl[24], ep[24];
    snprintf(k1, sizeof k1, SF_KEY_LEADER, s->prefix);
    snprintf(k2, sizeof k2, SF_KEY_EPOCH, s->prefix);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg.leader_lease_ms);
    snprintf(ep, sizeof ep, "%llu", (unsigned long long)c->epoch);
    const char *argv[] = {"EVAL", LEASE_LUA, "2", k1, k2, c->holder, ttl, ep};
    s->lease_sent_ms = sf_coord_mono_ms(c);
    if (redisAsyncCommandArgv(ac, on_lease, first ? (void *)1 : NULL, 8, argv, NULL) == REDIS_OK) s->lease_inflight = 1;
}

void sf_store_lease_tick(sf_coord_t *c) {
    sf_store_t *s = c->store;
    int64_t now = sf_coord_mono_ms(c);
    if (!c->fenced && now - c->lease_ok_ms >= c->cfg.leader_lease_ms) {
        /* Another may hold it by now: hand nothing out until Redis says. */
        c->fenced = 1;
        sf_warn("the leader lease was not renewed for %ld ms (Redis unreachable?): handing out no jobs until it is",
                c->cfg.leader_lease_ms);
    }
    if (!ac_of(s) || s->lease_inflight) return;
    if (!s->leading) {
        /* The first check of this connection failed: again, a little later. */
        if (now - s->lease_last_ms < c->cfg.leader_lease_ms / 6) return;
        s->lease_last_ms = now;
        send_lease(c, 1);
        return;
    }
    if (now - s->lease_last_ms < c->cfg.leader_lease_ms / 3) return;
    s->lease_last_ms = now;
    send_lease(c, 0);
}

void sf_store_lease_release(sf_coord_t *c) {
    sf_store_t *s = c->store;
    redisAsyncContext *ac = ac_of(s);
    if (!ac || !s->leading) return;
    char k1[160], val[200];
    snprintf(k1, sizeof k1, SF_KEY_LEADER, s->prefix);
    snprintf(val, sizeof val, "%llu %s", (unsigned long long)c->epoch, c->holder);
    const char *argv[] = {"EVAL", RELEASE_LUA, "1", k1, val};
    redisAsyncCommandArgv(ac, NULL, NULL, 5, argv, NULL);
}

/* A new connection: named (so that a later leader can cut it), then no
 * batch goes out on it before the lease is confirmed (on_lease). */
static void on_up(sf_redis_conn_t *rc) {
    sf_coord_t *c = rc->data;
    sf_store_t *s = c->store;
    s->leading = 0;
    s->lease_last_ms = sf_coord_mono_ms(c);
    redisAsyncCommand(ac_of(s), NULL, NULL, "CLIENT SETNAME " SF_COORD_CONN_NAME);
    send_lease(c, 1);
}

/* Lost, dropped after a refused batch, or AUTH refused: what was in flight
 * had NULL replies and waits to be sent again; the connection retries. */
static void on_down(sf_redis_conn_t *rc, int why) {
    sf_coord_t *c = rc->data;
    sf_store_t *s = c->store;
    if (why == SF_REDIS_LOST) c->st.redis_reconnects++;
    else if (why == SF_REDIS_AUTH_REFUSED) c->st.redis_auth_failures++;
    s->batch_refused = 0;
    s->inflight = 0;
    s->leading = 0;
    s->lease_inflight = 0;
    for (sf_run_t *r = c->runs; r; r = r->next) r->learner_polling = 0;
    for (batch_t *b = s->head; b; b = b->next) b->sent = 0;
}

static redisContext *connect_sync(const sf_coord_t *c, char *err, size_t n) {
    struct timeval tv = {5, 0};
    return sf_redis_connect(c->cfg.redis, &c->redis_auth, tv, err, n);
}

int sf_store_open(sf_coord_t *c, char *err, size_t n) {
    g_coord = c;
    sf_store_t *s = calloc(1, sizeof *s);
    if (!s) return SF_ENOMEM;
    c->store = s;
    s->prefix = strdup(c->cfg.redis_prefix);
    if (!s->prefix) return SF_ENOMEM;
    const sf_redis_conn_opts_t o = {.addr = c->cfg.redis, .auth = &c->redis_auth, .user = c->cfg.redis_user,
                                    .password_file = c->cfg.redis_password_file, .held = "writes are held",
                                    .on_up = on_up, .on_down = on_down, .data = c};
    int rc = sf_redis_conn_init(c->loop, &s->conn, &o, err, n);
    if (rc) return rc;
    sf_redis_conn_start(&s->conn);
    return 0;
}

void sf_store_close(sf_coord_t *c) {
    sf_store_t *s = c->store;
    if (!s) return;
    sf_redis_conn_close(&s->conn, NULL);
}

void sf_store_info(const sf_coord_t *c, cJSON *out) {
    const sf_store_t *s = c->store;
    int queued = 0;
    for (batch_t *b = s->head; b; b = b->next) queued++;
    cJSON_AddBoolToObject(out, "redis_connected", ac_of(s) != NULL);
    cJSON_AddNumberToObject(out, "redis_batches_queued", queued);
    cJSON_AddNumberToObject(out, "redis_inflight", s->inflight);
}

/* ---- loading at start ------------------------------------------------------------------ */

static redisReply *cmd(redisContext *rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    return r;
}

/* The start-up load reads every run before anything is served; a Redis that
 * goes away or is still loading its AOF in the middle must not leave runs
 * out (a run skipped here would not resume, and run ids would be reused), so
 * such a failure abandons the whole load and the caller tries again. */
typedef struct {
    redisContext *rc;
    int failed;
    char why[200];
} load_ctx_t;

static redisReply *lcmd(load_ctx_t *ld, const char *fmt, ...) {
    if (ld->failed) return NULL;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ld->rc, fmt, ap);
    va_end(ap);
    const char *e = !r ? (ld->rc->errstr[0] ? ld->rc->errstr : "no reply")
                       : (r->type == REDIS_REPLY_ERROR && r->str &&
                          (!strncmp(r->str, "LOADING", 7) || !strncmp(r->str, "BUSY", 4) ||
                           !strncmp(r->str, "NOAUTH", 6) || !strncmp(r->str, "TRYAGAIN", 8) ||
                           !strncmp(r->str, "MASTERDOWN", 10)))
                             ? r->str
                             : NULL;
    if (e) {
        ld->failed = 1;
        snprintf(ld->why, sizeof ld->why, "%s", e);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

static void check_persistence(redisContext *rc) {
    redisReply *r = cmd(rc, "CONFIG GET appendonly");
    if (r && r->type == REDIS_REPLY_ERROR)
        sf_warn("cannot check Redis's persistence settings (CONFIG GET: %s): make sure it runs with appendonly yes "
                "and maxmemory-policy noeviction", r->str);
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && strcmp(r->element[1]->str, "yes") != 0)
        sf_warn("REDIS HAS NO AOF PERSISTENCE (appendonly no): a Redis restart can lose accepted runs and results");
    freeReplyObject(r);
    r = cmd(rc, "CONFIG GET maxmemory-policy");
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements == 2 && strcmp(r->element[1]->str, "noeviction") != 0)
        sf_warn("REDIS EVICTS KEYS (maxmemory-policy %s): jobs and results can vanish; set noeviction",
                r->element[1]->str);
    freeReplyObject(r);
}

/* One run rebuilt from Redis, not yet inserted (NULL if it cannot be
 * loaded, or if ld failed). */
static sf_run_t *load_run(sf_coord_t *c, load_ctx_t *ld, const char *id) {
    const char *p = c->cfg.redis_prefix;
    redisReply *h = lcmd(ld, "HGETALL " SF_KEY_RUN, p, id);
    if (!h || h->type != REDIS_REPLY_ARRAY) { freeReplyObject(h); return NULL; }
    const char *spec = NULL, *state = NULL, *created = NULL, *started = NULL, *finished = NULL, *retries = NULL,
               *last_error = NULL;
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *f = h->element[i]->str, *v = h->element[i + 1]->str;
        if (!strcmp(f, "spec")) spec = v;
        else if (!strcmp(f, "state")) state = v;
        else if (!strcmp(f, "created_ms")) created = v;
        else if (!strcmp(f, "started_ms")) started = v;
        else if (!strcmp(f, "finished_ms")) finished = v;
        else if (!strcmp(f, "retries")) retries = v;
        else if (!strcmp(f, "last_error")) last_error = v;
    }
    uint32_t num = (uint32_t)strtoul(id + 1, NULL, 10);
    char err[300];
    sf_run_t *r = NULL;
    if (!spec || sf_run_create(c, spec, num, &r, err, sizeof err) != 0) {
        sf_error("run %s in redis cannot be loaded: %s", id, spec ? err : "no spec");
        freeReplyObject(h);
        return NULL;
    }
    int st = sf_run_state_parse(state);
    r->state = st < 0 ? RUN_QUEUED : st;
    r->created_ms = created ? atoll(created) : 0;
    r->started_ms = started ? atoll(started) : 0;
    r->finished_ms = finished ? atoll(finished) : 0;
    r->retries = retries ? strtoull(retries, NULL, 10) : 0;
    if (last_error) snprintf(r->last_error, sizeof r->last_error, "%s", last_error);
    freeReplyObject(h);

    /* Done bits, dead jobs and the attempts of leased ones. */
    redisReply *bits = lcmd(ld, "GET " SF_KEY_RUN_DONE, p, id);
    if (bits && bits->type == REDIS_REPLY_STRING) {
        for (uint32_t i = 0; i < r->n_jobs && i / 8 < bits->len; i++)
            if ((unsigned char)bits->str[i / 8] & (0x80 >> (i % 8))) r->jobs[i].state = JS_DONE;
    }
    freeReplyObject(bits);
    redisReply *dead = lcmd(ld, "HGETALL " SF_KEY_RUN_DEAD, p, id);
    for (size_t i = 0; dead && dead->type == REDIS_REPLY_ARRAY && i + 1 < dead->elements; i += 2) {
        uint32_t idx = (uint32_t)strtoul(dead->element[i]->str, NULL, 10);
        if (idx >= r->n_jobs || r->jobs[idx].state == JS_DONE) continue;
        r->jobs[idx].state = JS_DEAD;
        if (r->n_dead_list < SF_DEAD_LIST) {
            sf_dead_t *d = &r->dead_list[r->n_dead_list++];
            d->idx = idx;
            cJSON *o = cJSON_Parse(dead->element[i + 1]->str);
            cJSON *e = cJSON_GetObjectItem(o, "error"), *a = cJSON_GetObjectItem(o, "attempts");
            snprintf(d->error, sizeof d->error, "%s", cJSON_IsString(e) ? e->valuestring : "");
            d->attempts = cJSON_IsNumber(a) ? (uint8_t)a->valueint : 0;
            cJSON_Delete(o);
        }
    }
    freeReplyObject(dead);
    /* A lease does not outlive the coordinator that gave it (its worker's
     * connection went with it): a job leased at the crash goes out again,
     * with its attempt counted.  So only the attempt is read back, never the
     * deadline — wall time, for whoever reads the hash — and no wall-clock
     * deadline ever becomes a monotonic one here. */
    redisReply *leases = lcmd(ld, "HGETALL " SF_KEY_RUN_LEASES, p, id);
    int requeued = 0;
    for (size_t i = 0; leases && leases->type == REDIS_REPLY_ARRAY && i + 1 < leases->elements; i += 2) {
        uint32_t idx = (uint32_t)strtoul(leases->element[i]->str, NULL, 10);
        if (idx >= r->n_jobs || r->jobs[idx].state != JS_PENDING) continue;
        const char *e = leases->element[i + 1]->str, *v = strchr(e, ' ');
        int a = v ? atoi(v + 1) : 0;
        /* "worker attempt deadline": an execution the coordinator before us
         * handed out and never heard the end of — cut short by the change of
         * coordinator, not by the job — is not counted against the job's
         * attempts ("- attempt 0": a failed one waiting for its retry is). */
        if (e[0] != '-' && a > 0) a--;
        r->jobs[idx].attempt = (uint8_t)a;
        requeued++;
    }
    if (!sf_run_active(r) && leases && leases->type == REDIS_REPLY_ARRAY && leases->elements) {
        /* Left by a coordinator that did not empty an ended run's leases. */
        sf_info("run %s is %s: removing the %zu leases Redis still holds for it", r->id, sf_run_state_name(r->state),
                leases->elements / 2);
        freeReplyObject(lcmd(ld, "DEL " SF_KEY_RUN_LEASES, p, id));
    }
    freeReplyObject(leases);
    /* Per-class image counts follow from the stored results of done jobs. */
    redisReply *res = lcmd(ld, "HGETALL " SF_KEY_RUN_RESULTS, p, id);
    for (size_t i = 0; res && res->type == REDIS_REPLY_ARRAY && i + 1 < res->elements; i += 2) {
        uint32_t idx = (uint32_t)strtoul(res->element[i]->str, NULL, 10);
        if (idx >= r->n_jobs || r->jobs[idx].state != JS_DONE) continue;
        sf_run_count_result(r, idx, res->element[i + 1]->str, res->element[i + 1]->len);
    }
    freeReplyObject(res);
    sf_run_count_loaded(r);
    if (!sf_run_active(r)) {
        /* Finished: keep the summary for listings, drop the slots. */
        sf_run_drop_slots(r);
    } else {
        sf_info("run %s resumed: %llu of %u done, %llu dead, %d were leased", r->id, (unsigned long long)r->done,
                r->n_jobs, (unsigned long long)r->dead, requeued);
    }
    if (ld->failed) {
        sf_run_free(r);
        return NULL;
    }
    return r;
}

/* Waits as a standby until the leader lease is free, then takes it: the
 * new epoch, or 0 with err set (Redis refused or went away).
 * A lease seen free is taken only once it has stayed free for half a lease:
 * after Redis itself was paused or cut off past the TTL, the leader, alive
 * all along, renews first (it tries at once on its new connection, then
 * every third of a lease) instead of losing the lease to a standby. */
static long long take_lease(sf_coord_t *c, redisContext *rc, char *err, size_t n) {
    const char *p = c->cfg.redis_prefix;
    char k1[160], k2[160], ttl[24], held[256] = "";
    snprintf(k1, sizeof k1, SF_KEY_LEADER, p);
    snprintf(k2, sizeof k2, SF_KEY_EPOCH, p);
    snprintf(ttl, sizeof ttl, "%ld", c->cfg.leader_lease_ms);
    freeReplyObject(redisCommand(rc, "CLIENT SETNAME " SF_COORD_CONN_NAME "-standby"));
    const useconds_t poll_us = (useconds_t)(c->cfg.leader_lease_ms * 1000 / 6);
    int64_t free_since = 0;
    for (;;) {
        redisReply *r = redisCommand(rc, "EXISTS %s", k1);
        if (!r || r->type != REDIS_REPLY_INTEGER) {
            const char *e = r && r->str ? r->str : rc->errstr;
            sf_errf(SF_EREDIS, err, n, "redis: reading the leader lease failed: %s%s", e, sf_redis_auth_hint(e));
            freeReplyObject(r);
            return 0;
        }
        int is_free = r->integer == 0;
        freeReplyObject(r);
        int64_t now = sf_clock_mono_ms();
        if (!is_free) free_since = 0;
        else if (held[0] && !free_since) free_since = now;
        if (is_free && held[0] && now - free_since < c->cfg.leader_lease_ms / 2) {
            usleep(poll_us);
            continue;
        }
        const char *argv[] = {"EVAL", LEASE_LUA, "2", k1, k2, c->holder, ttl, "0"};
        r = redisCommandArgv(rc, 8, argv, NULL);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer > 0) {
            long long epoch = r->integer;
            freeReplyObject(r);
            return epoch;
        }
        if (!r || r->type != REDIS_REPLY_ERROR || strncmp(r->str, "HELD ", 5)) {
            const char *e = r && r->str ? r->str : rc->errstr;
            sf_errf(SF_EREDIS, err, n, "redis: taking the leader lease failed: %s%s", e, sf_redis_auth_hint(e));
            freeReplyObject(r);
            return 0;
        }
        if (strcmp(held, r->str + 5)) {
            snprintf(held, sizeof held, "%s", r->str + 5);
            sf_info("standby: the coordinator %s leads (epoch, holder); taking over when its lease of %ld ms lapses",
                    held, c->cfg.leader_lease_ms);
        }
        freeReplyObject(r);
        usleep(poll_us);
    }
}

int sf_store_load(sf_coord_t *c, char *err, size_t n) {
    char host[512];
    int port, is_unix;
    if (sf_redis_addr_parse(c->cfg.redis, host, sizeof host, &port, &is_unix))
        return sf_errf(SF_EINVAL, err, n, "config key 'redis': bad address '%s' (host:port or unix:/path)", c->cfg.redis);
    redisContext *rc = connect_sync(c, err, n);
    if (!rc) return SF_EREDIS;
    const char *p = c->cfg.redis_prefix;
    check_persistence(rc);
    redisReply *r;
    if (!c->holder[0]) {
        char host[64] = "?";
        gethostname(host, sizeof host - 1);
        snprintf(c->holder, sizeof c->holder, "%s:%d:%lld", host, (int)getpid(), (long long)sf_clock_wall_ms());
    }
    /* A standby until the lease is free. */
    long long epoch = take_lease(c, rc, err, n);
    if (epoch <= 0) {
        redisFree(rc);
        return SF_EREDIS;
    }
    c->epoch = (uint64_t)epoch;
    /* Uptime, lease deadlines and the first liveness window count from
     * here, not from the wait as a standby. */
    c->start_mono_ms = c->lease_ok_ms = sf_coord_mono_ms(c);
    /* Fence off every coordinator before us: what it sends from now on is
     * never applied (its connections are cut; a new one checks the lease). */
    freeReplyObject(redisCommand(rc, "CLIENT SETNAME " SF_COORD_CONN_NAME));
    r = redisCommand(rc, "CLIENT ID");
    long long self = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    freeReplyObject(r);
    r = redisCommand(rc, "CLIENT LIST TYPE normal");
    int cut = 0;
    for (char *line = r && r->type == REDIS_REPLY_STRING ? r->str : NULL; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        const char *id = strstr(line, "id="), *name = strstr(line, " name=");
        if (id && name && !strncmp(name + 6, SF_COORD_CONN_NAME " ", strlen(SF_COORD_CONN_NAME) + 1)) {
            long long cid = atoll(id + 3);
            if (cid != self) {
                freeReplyObject(redisCommand(rc, "CLIENT KILL ID %lld", cid));
                cut++;
            }
        }
        line = nl ? nl + 1 : NULL;
    }
    freeReplyObject(r);
    sf_info("leader: epoch %llu%s", (unsigned long long)c->epoch,
            cut ? "; the connections of the coordinator before were cut" : "");
    load_ctx_t ld = {.rc = rc};
    r = lcmd(&ld, "GET " SF_KEY_RUN_NEXT, p);
    uint32_t next = (r && r->type == REDIS_REPLY_STRING) ? (uint32_t)strtoul(r->str, NULL, 10) + 1 : 1;
    freeReplyObject(r);
    r = lcmd(&ld, "ZRANGE " SF_KEY_RUNS " 0 -1", p);
    size_t nr = r && r->type == REDIS_REPLY_ARRAY ? r->elements : 0, got = 0;
    sf_run_t **runs = calloc(nr ? nr : 1, sizeof *runs);
    if (!runs) ld.failed = 1, snprintf(ld.why, sizeof ld.why, "out of memory");
    for (size_t i = 0; runs && !ld.failed && i < nr; i++) {
        const char *id = r->element[i]->str;
        uint32_t num = (uint32_t)strtoul(id + 1, NULL, 10);
        if (num >= next) next = num + 1;
        sf_run_t *run = load_run(c, &ld, id);
        if (run) runs[got++] = run;
    }
    freeReplyObject(r);
    redisFree(rc);
    if (ld.failed) {
        /* Nothing of this attempt is kept: the next one reads it all again. */
        for (size_t i = 0; i < got; i++) sf_run_free(runs[i]);
        free(runs);
        return sf_errf(SF_EREDIS, err, n, "redis: loading the runs failed (%s)", ld.why);
    }
    c->next_run_num = next;
    for (size_t i = 0; i < got; i++) {
        sf_runs_insert(c, runs[i]);
        if (runs[i]->jobs) sf_run_progress(c, runs[i]); /* an ended run loads as a summary, without slots */
    }
    free(runs);
    return 0;
}
