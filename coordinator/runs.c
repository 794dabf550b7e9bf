/* runs.c: runs, phases and job slots; the planner that turns a run spec into
 * phases of sharded jobs; which job a worker gets next.
 *
 * A run spec is JSON (docs/configuration.md, "Run spec").  Its "method" picks
 * a planner from the table below; every planner checks its keys (unknown keys
 * are errors) and lays out phases.  Jobs of a phase are shards: a class and a
 * range of item indices.  Job i of a phase with S shards per class is class
 * i / S, items [(i % S) * shard_size, …).  Nothing per job is stored beyond a
 * 16-byte slot, so a run of millions of jobs is cheap to hold and to reload.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/runtime/error.h"
#include "common/runtime/json_strict.h"
#include "common/method/run_spec.h"
#include "common/runtime/log.h"
#include "coordinator/coord.h"

/* The coordinator's table of job kinds: here, beside the runs that use it,
 * so that what links runs.c (the daemon, the spec fuzzer) has it. */
int sf_coord_kind_id(sf_coord_t *c, const char *kind) {
    for (int i = 0; i < c->n_kinds; i++)
        if (strcmp(c->kinds[i], kind) == 0) return i;
    if (c->n_kinds == SF_MAX_KINDS || strlen(kind) >= sizeof c->kinds[0]) return -1;
    snprintf(c->kinds[c->n_kinds], sizeof c->kinds[0], "%s", kind);
    return c->n_kinds++;
}

const char *const sf_class_stat_names[SF_CLASS_STATS] = {"generated", "kept", "dropped"};

/* ---- accounting ------------------------------------------------------------ */

/* The class job idx belongs to (class 0 for the one job of a run-wide
 * phase); returns whether it counts toward that class's progress. */
static int job_class(const sf_run_t *r, uint32_t idx, int *cls) {
    const char *wnid;
    uint32_t start, count;
    return sf_run_job_shard(r, idx, &wnid, &start, &count, cls);
}

int sf_run_count_result(sf_run_t *r, uint32_t idx, const void *payload, size_t len) {
    int cls;
    job_class(r, idx, &cls);
    if (!len || !r->class_stat || cls < 0 || cls >= r->classes->n || ((const char *)payload)[0] != '{') return 0;
    cJSON *o = cJSON_ParseWithLength(payload, len);
    int any = 0;
    for (int k = 0; o && k < SF_CLASS_STATS; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, sf_class_stat_names[k]);
        if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 1e9) {
            r->class_stat[cls][k] += (uint32_t)v->valuedouble;
            any = 1;
        }
    }
    cJSON_Delete(o);
    return any;
}

void sf_run_count_queued(sf_run_t *r, uint32_t idx, int dead, const void *payload, size_t len) {
    int cls, per_class = job_class(r, idx, &cls);
    if (dead) {
        r->dead_w++;
        if (per_class) r->class_dead_w[cls]++;
        return;
    }
    r->done_w++;
    if (per_class) r->class_done_w[cls]++;
    sf_run_count_result(r, idx, payload, len);
}

void sf_run_count_acked(sf_coord_t *c, sf_run_t *r, uint32_t idx, int dead) {
    sf_jobslot_t *j = &r->jobs[idx];
    int pi = sf_run_phase_of(r, idx), cls, per_class = job_class(r, idx, &cls);
    if (dead) {
        j->state = JS_DEAD;
        r->dead++;
        r->phases[pi].dead++;
        r->class_dead[cls] += per_class;
        return;
    }
    j->state = JS_DONE;
    r->done++;
    r->phases[pi].done++;
    r->class_done[cls] += per_class;
    if (r->latency) sf_hist_add(r->latency, (uint64_t)j->dispatched_us);
    sf_hist_add(&c->latency, (uint64_t)j->dispatched_us);
}

void sf_run_count_loaded(sf_run_t *r) {
    /* Counters follow from the slots. */
    for (uint32_t i = 0; i < r->n_jobs; i++) {
        int s = r->jobs[i].state;
        if (s != JS_DONE && s != JS_DEAD) continue;
        int pi = sf_run_phase_of(r, i), cls, per_class = job_class(r, i, &cls);
        if (s == JS_DONE) { r->done++; r->phases[pi].done++; r->class_done[cls] += per_class; }
        else { r->dead++; r->phases[pi].dead++; r->class_dead[cls] += per_class; }
    }
    r->done_w = r->done;
    r->dead_w = r->dead;
    memcpy(r->class_done_w, r->class_done, (size_t)r->classes->n * sizeof *r->class_done);
    memcpy(r->class_dead_w, r->class_dead, (size_t)r->classes->n * sizeof *r->class_dead);
    r->phase = 0;
    while (r->phase < r->n_phases && r->phases[r->phase].done + r->phases[r->phase].dead >= r->phases[r->phase].n)
        r->phase++;
}

static const char *state_names[] = {"queued", "running", "done", "failed", "cancelled"};

const char *sf_run_state_name(int s) { return s >= 0 && s <= RUN_CANCELLED ? state_names[s] : "unknown"; }

int sf_run_state_parse(const char *s) {
    for (int i = 0; i <= RUN_CANCELLED; i++)
        if (s && strcmp(s, state_names[i]) == 0) return i;
    return -1;
}

int sf_ring_push(sf_ring_t *q, uint32_t v) {
    if (q->len == q->cap) {
        uint32_t nc = q->cap ? q->cap * 2 : 256;
        uint32_t *nv = malloc((size_t)nc * sizeof *nv);
        if (!nv) return SF_ENOMEM;
        for (uint32_t i = 0; i < q->len; i++) nv[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = nv;
        q->cap = nc;
        q->head = 0;
    }
    q->v[(q->head + q->len) % q->cap] = v;
    q->len++;
    return 0;
}

int sf_ring_pop(sf_ring_t *q, uint32_t *v) {
    if (q->len == 0) return 0;
    *v = q->v[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return 1;
}

/* ---- planner helpers --------------------------------------------------- */

int sf_plan_add_phase(sf_run_t *r, const char *name, const char *kind, uint32_t items, uint32_t shard,
                     const cJSON *payload, char *err, size_t n) {
    if (r->n_phases == SF_MAX_PHASES) return sf_errf(SF_ERANGE, err, n, "too many phases");
    sf_phase_t *p = &r->phases[r->n_phases];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->kind, sizeof p->kind, "%s", kind);
    p->items_per_class = items;
    p->shard_size = shard;
    p->shards_per_class = (items + shard - 1) / shard;
    uint64_t nj = (uint64_t)p->shards_per_class * (uint64_t)r->classes->n;
    if (nj + r->n_jobs > 0xffffffffull) return sf_errf(SF_ERANGE, err, n, "run has too many jobs");
    p->first = r->n_jobs;
    p->n = (uint32_t)nj;
    p->next = p->first;
    r->n_jobs += p->n;
    if (payload) {
        p->payload = cJSON_PrintUnformatted(payload);
        if (!p->payload) return SF_ENOMEM;
        size_t len = strlen(p->payload);
        /* One cap for both sides: a worker fails a job whose payload is over it. */
        if (len > SF_WIRE_MAX_PAYLOAD)
            return sf_errf(SF_ERANGE, err, n, "phase '%s': its payload of %zu bytes is over the %u-byte cap of a job payload",
                           name, len, SF_WIRE_MAX_PAYLOAD);
        p->payload_len = (uint32_t)len;
    }
    r->n_phases++;
    return 0;
}

int sf_plan_add_runwide(sf_run_t *r, const char *name, const char *kind, uint32_t items, uint32_t shard,
                        const cJSON *payload, char *err, size_t n) {
    int rc = sf_plan_add_phase(r, name, kind, items, shard, payload, err, n);
    if (rc) return rc;
    sf_phase_t *p = &r->phases[r->n_phases - 1];
    r->n_jobs -= p->n - p->shards_per_class;
    p->n = p->shards_per_class;
    p->single = 1;
    return 0;
}

int sf_plan_add_single(sf_run_t *r, const char *name, const char *kind, uint32_t items, const cJSON *payload,
                       char *err, size_t n) {
    return sf_plan_add_runwide(r, name, kind, items, items, payload, err, n);
}

/* method "jobs": one phase of a given kind.  Used by the built-in kinds
 * (noop, sleep, fail, crash) for tests, benchmarks and the first demo. */
static int plan_jobs(sf_run_t *r, cJSON *spec, long max_jobs, char *err, size_t n) {
    static const char *const allowed[] = {"method", "name", "classes", "priority", "max_attempts", "lease_ms",
                                          "retry_base_ms", "retry_max_ms", "kind", "items_per_class",
                                          "shard_size", "payload", NULL};
    int rc = sf_spec_keys(spec, allowed, err, n);
    if (rc) return rc;
    const cJSON *kind = cJSON_GetObjectItemCaseSensitive(spec, "kind");
    if (!cJSON_IsString(kind) || !*kind->valuestring || strlen(kind->valuestring) >= 32)
        return sf_errf(SF_EINVAL, err, n, "run spec: 'kind' must be a job kind name");
    long items, shard;
    if ((rc = sf_spec_uint(spec, "items_per_class", 1, 1, 100000000, &items, err, n))) return rc;
    if ((rc = sf_spec_uint(spec, "shard_size", 1, 1, 100000000, &shard, err, n))) return rc;
    const cJSON *payload = cJSON_GetObjectItemCaseSensitive(spec, "payload");
    if (payload && !cJSON_IsObject(payload)) return sf_errf(SF_EINVAL, err, n, "run spec: 'payload' must be an object");
    uint64_t nj = (uint64_t)((items + shard - 1) / shard) * (uint64_t)r->classes->n;
    if (nj > (uint64_t)max_jobs)
        return sf_errf(SF_ERANGE, err, n, "run spec: %llu jobs is over max_jobs_per_run (%ld)", (unsigned long long)nj, max_jobs);
    return sf_plan_add_phase(r, kind->valuestring, kind->valuestring, (uint32_t)items, (uint32_t)shard, payload, err, n);
}

/* method "phases": several phases run one after the other, each
 * {"kind", "name", "items_per_class", "shard_size", "payload"} — a pipeline
 * of built-in kinds, used to exercise phase ordering. */
static int plan_phases(sf_run_t *r, cJSON *spec, long max_jobs, char *err, size_t n) {
    static const char *const allowed[] = {"method", "name", "classes", "priority", "max_attempts", "lease_ms",
                                          "retry_base_ms", "retry_max_ms", "phases", NULL};
    static const char *const pallowed[] = {"kind", "name", "items_per_class", "shard_size", "payload", "until", NULL};
    int rc = sf_spec_keys(spec, allowed, err, n);
    if (rc) return rc;
    const cJSON *phases = cJSON_GetObjectItemCaseSensitive(spec, "phases");
    int np = cJSON_GetArraySize(phases);
    if (!cJSON_IsArray(phases) || np < 1 || np > SF_MAX_PHASES)
        return sf_errf(SF_EINVAL, err, n, "run spec: 'phases' must be an array of 1 to %d phases", SF_MAX_PHASES);
    uint64_t total = 0;
    int i = 0;
    for (const cJSON *ph = phases->child; ph; ph = ph->next, i++) {
        char e2[200];
        if (!cJSON_IsObject(ph)) return sf_errf(SF_EINVAL, err, n, "run spec: phases[%d] is not an object", i);
        if ((rc = sf_spec_keys(ph, pallowed, e2, sizeof e2))) return sf_errf(rc, err, n, "phases[%d]: %s", i, e2);
        const cJSON *kind = cJSON_GetObjectItemCaseSensitive(ph, "kind");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(ph, "name");
        if (!cJSON_IsString(kind) || !*kind->valuestring || strlen(kind->valuestring) >= 32)
            return sf_errf(SF_EINVAL, err, n, "run spec: phases[%d].kind must be a job kind name", i);
        if (name && (!cJSON_IsString(name) || strlen(name->valuestring) >= 32))
            return sf_errf(SF_EINVAL, err, n, "run spec: phases[%d].name must be a short string", i);
        long items, shard;
        if ((rc = sf_spec_uint(ph, "items_per_class", 1, 1, 100000000, &items, e2, sizeof e2)) ||
            (rc = sf_spec_uint(ph, "shard_size", 1, 1, 100000000, &shard, e2, sizeof e2)))
            return sf_errf(rc, err, n, "phases[%d]: %s", i, e2);
        const cJSON *payload = cJSON_GetObjectItemCaseSensitive(ph, "payload");
        if (payload && !cJSON_IsObject(payload))
            return sf_errf(SF_EINVAL, err, n, "run spec: phases[%d].payload must be an object", i);
        total += (uint64_t)((items + shard - 1) / shard) * (uint64_t)r->classes->n;
        if (total > (uint64_t)max_jobs)
            return sf_errf(SF_ERANGE, err, n, "run spec: over max_jobs_per_run (%ld) jobs", max_jobs);
        if ((rc = sf_plan_add_phase(r, name ? name->valuestring : kind->valuestring, kind->valuestring, (uint32_t)items,
                            (uint32_t)shard, payload, err, n)))
            return rc;
        const cJSON *until = cJSON_GetObjectItemCaseSensitive(ph, "until");
        if (until && !(cJSON_IsString(until) && !strcmp(until->valuestring, "learner_done")))
            return sf_errf(SF_EINVAL, err, n, "run spec: phases[%d].until can only be \"learner_done\"", i);
        r->phases[r->n_phases - 1].until_learner = until != NULL;
    }
    return 0;
}

typedef int (*plan_fn)(sf_run_t *r, cJSON *spec, long max_jobs, char *err, size_t n);
static const struct { const char *method; plan_fn fn; } planners[] = {
    {"jobs", plan_jobs},
    {"phases", plan_phases},
    {"shift", sf_plan_shift},
};

static int parse_classes(const cJSON *spec, sf_classlist_t **out, char *err, size_t n) {
    const cJSON *cl = cJSON_GetObjectItemCaseSensitive(spec, "classes");
    if (!cJSON_IsArray(cl)) return sf_errf(SF_EINVAL, err, n, "run spec: 'classes' must be an array of wnids or names");
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return SF_ENOMEM;
    int i = 0;
    for (const cJSON *it = cl->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || strchr(it->valuestring, '\n')) {
            free(buf);
            return sf_errf(SF_EINVAL, err, n, "run spec: classes[%d] is not a class name", i);
        }
        size_t l = strlen(it->valuestring);
        while (len + l + 2 > cap) {
            cap *= 2;
            char *nb = realloc(buf, cap);
            if (!nb) { free(buf); return SF_ENOMEM; }
            buf = nb;
        }
        memcpy(buf + len, it->valuestring, l);
        len += l;
        buf[len++] = '\n';
    }
    char e2[300];
    int rc = sf_classes_parse(buf, len, out, e2, sizeof e2);
    free(buf);
    if (rc) return sf_errf(rc, err, n, "run spec: classes: %s", e2);
    return 0;
}

int sf_run_create(sf_coord_t *c, const char *spec_json, uint32_t num, sf_run_t **out, char *err, size_t n) {
    *out = NULL;
    /* Strictly, as sfctl reads it: another client may send text after the
     * object, or a key twice. */
    cJSON *spec = NULL;
    int prc = sf_json_parse_strict(spec_json, strlen(spec_json), "run spec", &spec, err, n);
    if (prc) return prc;
    if (!cJSON_IsObject(spec)) {
        cJSON_Delete(spec);
        return sf_errf(SF_EINVAL, err, n, "run spec is not a JSON object");
    }
    sf_run_t *r = calloc(1, sizeof *r);
    int rc = 0;
    if (!r) { cJSON_Delete(spec); return SF_ENOMEM; }
    r->num = num;
    snprintf(r->id, sizeof r->id, "r%u", num);
    r->state = RUN_QUEUED;
    r->created_ms = sf_clock_wall_ms();
    const cJSON *method = cJSON_GetObjectItemCaseSensitive(spec, "method");
    const char *m = cJSON_IsString(method) ? method->valuestring : "jobs";
    plan_fn plan = NULL;
    for (size_t i = 0; i < sizeof planners / sizeof planners[0]; i++)
        if (strcmp(planners[i].method, m) == 0) plan = planners[i].fn;
    if (!plan) { rc = sf_errf(SF_EINVAL, err, n, "run spec: unknown method '%s'", m); goto fail; }
    if ((rc = parse_classes(spec, &r->classes, err, n))) goto fail;
    long prio, att, lease, rb, rm;
    if ((rc = sf_spec_uint(spec, "priority", 0, -1000, 1000, &prio, err, n))) goto fail;
    if ((rc = sf_spec_uint(spec, "max_attempts", c->cfg.max_attempts, 1, 100, &att, err, n))) goto fail;
    if ((rc = sf_spec_uint(spec, "lease_ms", c->cfg.lease_ms, 100, 7 * 86400000L, &lease, err, n))) goto fail;
    if ((rc = sf_spec_uint(spec, "retry_base_ms", c->cfg.retry_base_ms, 0, 3600000, &rb, err, n))) goto fail;
    if ((rc = sf_spec_uint(spec, "retry_max_ms", c->cfg.retry_max_ms, 0, 86400000, &rm, err, n))) goto fail;
    if (rb > rm) {
        rc = sf_errf(SF_EINVAL, err, n, "run spec: 'retry_base_ms' (%ld) is above 'retry_max_ms' (%ld)%s", rb, rm,
                     cJSON_GetObjectItemCaseSensitive(spec, "retry_max_ms") ? "" : ", the coordinator's default");
        goto fail;
    }
    r->priority = (int)prio;
    r->max_attempts = (int)att;
    r->lease_ms = (uint32_t)lease;
    r->retry_base_ms = (uint32_t)rb;
    r->retry_max_ms = (uint32_t)rm;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(spec, "name");
    if (name && (!cJSON_IsString(name) || strlen(name->valuestring) > 200)) {
        rc = sf_errf(SF_EINVAL, err, n, "run spec: 'name' must be a string of at most 200 characters");
        goto fail;
    }
    r->name = strdup(name ? name->valuestring : "");
    if ((rc = plan(r, spec, c->cfg.max_jobs_per_run, err, n))) goto fail;
    if (r->n_jobs > (uint64_t)c->cfg.max_jobs_per_run) {
        rc = sf_errf(SF_ERANGE, err, n, "run has %u jobs, over max_jobs_per_run (%ld)", r->n_jobs, c->cfg.max_jobs_per_run);
        goto fail;
    }
    for (int i = 0; i < r->n_phases; i++) {
        r->phases[i].kind_id = sf_coord_kind_id(c, r->phases[i].kind);
        if (r->phases[i].kind_id < 0) { rc = sf_errf(SF_ERANGE, err, n, "too many distinct job kinds"); goto fail; }
    }
    r->jobs = calloc(r->n_jobs ? r->n_jobs : 1, sizeof *r->jobs);
    r->class_done = calloc((size_t)r->classes->n, sizeof *r->class_done);
    r->class_dead = calloc((size_t)r->classes->n, sizeof *r->class_dead);
    r->class_done_w = calloc((size_t)r->classes->n, sizeof *r->class_done_w);
    r->class_dead_w = calloc((size_t)r->classes->n, sizeof *r->class_dead_w);
    r->class_stat = calloc((size_t)r->classes->n, sizeof *r->class_stat);
    r->dead_list = calloc(SF_DEAD_LIST, sizeof *r->dead_list);
    r->latency = calloc(1, sizeof *r->latency);
    r->spec_json = cJSON_PrintUnformatted(spec);
    if (!r->jobs || !r->class_done || !r->class_dead || !r->class_done_w || !r->class_dead_w ||
        !r->class_stat || !r->dead_list || !r->spec_json || !r->name || !r->latency) { rc = SF_ENOMEM; goto fail; }
    for (uint32_t i = 0; i < r->n_jobs; i++) r->jobs[i].worker = SF_NO_WORKER;
    cJSON_Delete(spec);
    *out = r;
    return 0;
fail:
    cJSON_Delete(spec);
    sf_run_free(r);
    return rc;
}

void sf_run_drop_slots(sf_run_t *r) {
    free(r->jobs);
    r->jobs = NULL;
    free(r->ready.v);
    memset(&r->ready, 0, sizeof r->ready);
    for (int i = 0; i < r->n_phases; i++) {
        free(r->phases[i].payload);
        r->phases[i].payload = NULL;
        r->phases[i].payload_len = 0;
    }
    free(r->spec_json);
    r->spec_json = NULL;
    if (r->latency) {
        /* 4 KiB of buckets; status shows these four numbers of it. */
        r->lat_count = r->latency->count;
        r->lat_p50 = sf_hist_quantile(r->latency, 0.50);
        r->lat_p99 = sf_hist_quantile(r->latency, 0.99);
        r->lat_max = r->latency->max;
        free(r->latency);
        r->latency = NULL;
    }
    if (!r->n_dead_list) {
        free(r->dead_list);
        r->dead_list = NULL;
    }
    r->leased = 0;
}

void sf_runs_held(const sf_coord_t *c, int *runs, uint64_t *jobs) {
    *runs = 0;
    *jobs = 0;
    for (const sf_run_t *r = c->runs; r; r = r->next)
        if (r->jobs) { (*runs)++; *jobs += r->n_jobs; }
}

void sf_runs_release(sf_coord_t *c) {
    int64_t now = sf_coord_mono_ms(c);
    int ended = 0;
    for (sf_run_t *r = c->runs; r; r = r->next) {
        if (sf_run_active(r)) continue;
        ended++;
        /* Not before Redis has every write of it: counting an ack needs the slots. */
        if (!r->jobs || r->done_w != r->done || r->dead_w != r->dead) continue;
        if (!r->ended_mono_ms) r->ended_mono_ms = now ? now : 1;
        if (now - r->ended_mono_ms < c->cfg.finished_hold_ms) continue;
        sf_debug("run %s (%s): its %u job slots leave memory", r->id, sf_run_state_name(r->state), r->n_jobs);
        sf_run_drop_slots(r);
    }
    /* The oldest ended summaries beyond max_finished_runs leave too. */
    while (ended > c->cfg.max_finished_runs) {
        sf_run_t **oldest = NULL;
        for (sf_run_t **pp = &c->runs; *pp; pp = &(*pp)->next)
            if (!sf_run_active(*pp) && !(*pp)->jobs && (!oldest || (*pp)->num < (*oldest)->num)) oldest = pp;
        if (!oldest) break;
        sf_run_t *r = *oldest;
        *oldest = r->next;
        sf_run_free(r);
        ended--;
    }
}

void sf_run_free(sf_run_t *r) {
    if (!r) return;
    for (int i = 0; i < r->n_phases; i++) free(r->phases[i].payload);
    free(r->jobs);
    free(r->class_done);
    free(r->class_dead);
    free(r->class_done_w);
    free(r->class_dead_w);
    free(r->class_stat);
    free(r->dead_list);
    free(r->spec_json);
    free(r->latency);
    free(r->name);
    free(r->ready.v);
    sf_classes_free(&r->classes);
    free(r);
}

void sf_runs_insert(sf_coord_t *c, sf_run_t *r) {
    sf_run_t **pp = &c->runs;
    while (*pp && ((*pp)->priority > r->priority ||
                   ((*pp)->priority == r->priority && (*pp)->num < r->num)))
        pp = &(*pp)->next;
    r->next = *pp;
    *pp = r;
}

sf_run_t *sf_runs_find(sf_coord_t *c, const char *id) {
    for (sf_run_t *r = c->runs; r; r = r->next)
        if (strcmp(r->id, id) == 0) return r;
    return NULL;
}

sf_run_t *sf_runs_find_num(sf_coord_t *c, uint32_t num) {
    for (sf_run_t *r = c->runs; r; r = r->next)
        if (r->num == num) return r;
    return NULL;
}

int sf_run_phase_of(const sf_run_t *r, uint32_t idx) {
    for (int i = 0; i < r->n_phases; i++)
        if (idx >= r->phases[i].first && idx < r->phases[i].first + r->phases[i].n) return i;
    return -1;
}

int sf_run_next_leased(const sf_run_t *r, uint32_t from, uint32_t *idx) {
    if (!r->jobs) return 0;
    /* Only handed-out jobs can be leased: [first, next) of each phase. */
    for (int pi = 0; pi < r->n_phases; pi++) {
        const sf_phase_t *p = &r->phases[pi];
        for (uint32_t i = from > p->first ? from : p->first; i < p->next; i++)
            if (r->jobs[i].state == JS_LEASED) { *idx = i; return 1; }
    }
    return 0;
}

int sf_run_job_shard(const sf_run_t *r, uint32_t idx, const char **wnid, uint32_t *start, uint32_t *count, int *cls) {
    int pi = sf_run_phase_of(r, idx);
    const sf_phase_t *p = &r->phases[pi < 0 ? 0 : pi];
    uint32_t local = idx - p->first, nc = (uint32_t)r->classes->n;
    uint32_t ci = local / p->shards_per_class, si = local % p->shards_per_class;
    if (p->interleave) ci = local % nc, si = local / nc;
    /* A run-wide phase's jobs are shards of its items, all on class 0. */
    if (p->single) ci = 0, si = local;
    *cls = (int)ci;
    *wnid = r->classes->v[ci].wnid;
    *start = si * p->shard_size;
    uint32_t left = p->items_per_class - *start;
    *count = left < p->shard_size ? left : p->shard_size;
    return !p->single;
}

/* How long a learner must sit idle at one version, with every job of its
 * phase handed out finished, before the window opens by another update's
 * worth.  Longer than the learner's one-second refresh of its state, so a
 * stale "ready" read while it has just begun an update does not count. */
#define LEARNER_IDLE_MS 3000

/* A learner phase hands out new jobs only up to (version + 2) updates'
 * worth.  Rollouts can be lost on the way — a restarted learner loses those
 * it held, stale ones are dropped — and then every job of the window is done
 * while the learner still waits, or no learner holds the run any more (a
 * restarted one takes a run up only when a request for it comes): the window
 * opens by one update's worth (and again after as long, if need be), or the
 * phase would wait forever. */
static int learner_window(const sf_coord_t *c, sf_run_t *r, sf_phase_t *p) {
    uint64_t handed = p->next - p->first;
    if (handed < ((uint64_t)r->learner_version + 2 + p->reopened) * p->per_update) return 1;
    int64_t now = sf_coord_mono_ms(c);
    if (handed > (uint64_t)p->done + p->dead || !r->learner_idle_ms || now - r->learner_idle_ms < LEARNER_IDLE_MS)
        return 0;
    p->reopened++;
    r->learner_idle_ms = now;
    sf_warn("run %s: the learner has waited at version %u for %d ms with every %s job handed out done "
            "(rollouts lost on the way); %u more jobs", r->id, r->learner_version, LEARNER_IDLE_MS, p->name,
            p->per_update);
    return 1;
}

int64_t sf_run_take(sf_coord_t *c, sf_run_t *r, uint64_t kinds) {
    if (!sf_run_active(r)) return -1;
    if (r->phase >= r->n_phases) return -1;
    sf_phase_t *p = &r->phases[r->phase];
    if (!(kinds & (1ull << p->kind_id))) return -1;
    uint32_t idx;
    while (sf_ring_pop(&r->ready, &idx))
        if (r->jobs[idx].state == JS_READY) return idx;
    if (p->until_learner && p->per_update && !learner_window(c, r, p)) return -1;
    while (p->next < p->first + p->n) {
        idx = p->next++;
        if (r->jobs[idx].state == JS_PENDING) return idx;
    }
    return -1;
}

int sf_run_has_work(const sf_coord_t *c, sf_run_t *r, uint64_t kinds) {
    if (!sf_run_active(r) || r->phase >= r->n_phases) return 0;
    sf_phase_t *p = &r->phases[r->phase];
    if (!(kinds & (1ull << p->kind_id))) return 0;
    if (r->ready.len) return 1;
    if (p->until_learner && p->per_update && !learner_window(c, r, p)) return 0;
    return p->next < p->first + p->n;
}

void sf_run_requeue(sf_run_t *r, uint32_t idx) {
    r->jobs[idx].state = JS_READY;
    r->jobs[idx].worker = SF_NO_WORKER;
    if (sf_ring_push(&r->ready, idx) != 0) {
        /* Out of memory: leave it READY; the cron's sweep will find it. */
        sf_error("run %s: cannot queue job %u again (out of memory)", r->id, idx);
    }
}

void sf_run_learner_state(sf_coord_t *c, sf_run_t *r, uint32_t version, int done, const char *failed) {
    r->learner_polling = 0;
    if (!sf_run_active(r)) return;
    if (version > r->learner_version) c->dispatch_dirty = 1;
    int64_t now = sf_coord_mono_ms(c);
    if (!r->learner_idle || version != r->learner_version) r->learner_idle_ms = r->learner_idle ? now : 0;
    else if (!r->learner_idle_ms) r->learner_idle_ms = now;
    else if (now - r->learner_idle_ms >= LEARNER_IDLE_MS) c->dispatch_dirty = 1; /* learner_window() may open */
    r->learner_version = version;
    if (r->phase >= r->n_phases || !r->phases[r->phase].until_learner) return;
    sf_phase_t *p = &r->phases[r->phase];
    if (failed && *failed) {
        /* Without a learner the phase cannot end: the run fails, saying why. */
        snprintf(r->last_error, sizeof r->last_error, "learner failed: %s", failed);
        sf_broker_cancel_run(c, r);
        r->state = RUN_FAILED;
        r->finished_ms = sf_clock_wall_ms();
        sf_error("run %s failed: %s", r->id, r->last_error);
        sf_store_event(c, r, "failed", r->last_error);
        sf_store_run_saved(c, r, 0);
        return;
    }
    if (!done || r->learner_done) return;
    r->learner_done = 1;
    uint32_t skipped = 0;
    for (uint32_t i = p->first; i < p->first + p->n; i++) {
        uint8_t st = r->jobs[i].state;
        if (st == JS_PENDING || st == JS_READY || st == JS_BACKOFF) {
            /* One that was out before waits with a lease entry "- <attempt> 0". */
            if (r->jobs[i].attempt) sf_store_job_skipped(c, r, i);
            r->jobs[i].state = JS_SKIPPED;
            skipped++;
        }
    }
    p->skipped += skipped;
    p->next = p->first + p->n;
    sf_info("run %s: the learner is done at version %u; %u %s jobs skipped", r->id, version, skipped, p->name);
    char d[96];
    snprintf(d, sizeof d, "learner done at version %u; %u jobs skipped", version, skipped);
    sf_store_event(c, r, "learner_done", d);
    sf_store_run_saved(c, r, 0);
    sf_run_progress(c, r);
}

void sf_run_fail(sf_coord_t *c, sf_run_t *r, const char *why) {
    if (!sf_run_active(r)) return;
    sf_broker_cancel_run(c, r);
    r->state = RUN_FAILED;
    r->finished_ms = sf_clock_wall_ms();
    r->kind_wait_ms = 0;
    snprintf(r->last_error, sizeof r->last_error, "%s", why);
    sf_warn("run %s failed: %s", r->id, why);
    sf_store_event(c, r, "failed", why);
    sf_store_run_saved(c, r, 0);
    c->dispatch_dirty = 1;
}

void sf_runs_check_kinds(sf_coord_t *c) {
    int64_t now = sf_coord_mono_ms(c);
    /* Right after a start the workers of the coordinator before are still
     * saying hello: give them one liveness window. */
    if (now - c->start_mono_ms < c->cfg.heartbeat_ms * c->cfg.liveness) return;
    uint64_t offered = 0;
    for (int i = 0; i < c->n_worker_slots; i++)
        if (c->workers[i].used && !c->workers[i].draining) offered |= c->workers[i].kinds;
    for (sf_run_t *r = c->runs; r; r = r->next) {
        if (!sf_run_active(r) || r->phase >= r->n_phases) continue;
        const sf_phase_t *p = &r->phases[r->phase];
        if (p->kind_id >= 0 && (offered >> p->kind_id & 1)) {
            if (r->kind_wait_ms) {
                sf_info("run %s: a worker offers kind '%s' now", r->id, p->kind);
                sf_store_event(c, r, "worker_found", p->kind);
            }
            r->kind_wait_ms = 0;
            continue;
        }
        if (!r->kind_wait_ms) {
            r->kind_wait_ms = now ? now : 1;
            sf_warn("run %s waits: no connected worker offers kind '%s' (phase %s)", r->id, p->kind, p->name);
            sf_store_event(c, r, "waiting_for_worker", p->kind);
            continue;
        }
        if (c->cfg.no_worker_timeout_ms > 0 && now - r->kind_wait_ms >= c->cfg.no_worker_timeout_ms) {
            char why[200];
            snprintf(why, sizeof why, "no connected worker offered kind '%s' (phase %s) for %lld s (no_worker_timeout_ms)",
                     p->kind, p->name, (long long)((now - r->kind_wait_ms) / 1000));
            sf_run_fail(c, r, why);
        }
    }
}

void sf_run_progress(sf_coord_t *c, sf_run_t *r) {
    if (!sf_run_active(r)) return;
    int changed = 0;
    while (r->phase < r->n_phases) {
        sf_phase_t *p = &r->phases[r->phase];
        if (p->required && p->dead) {
            /* Its successors would fail too, with a less useful error. */
            char why[sizeof r->last_error];
            snprintf(why, sizeof why, "phase %s: %u dead job%s, and the phases after it need every one (%.180s)",
                     p->name, p->dead, p->dead == 1 ? "" : "s", r->last_error);
            sf_run_fail(c, r, why);
            return;
        }
        if (p->done + p->dead + p->skipped < p->n) break;
        if (p->until_learner && !r->learner_done) {
            /* Every rollout job ran and the learner still wants more. */
            r->shortfall = 1;
            snprintf(r->last_error, sizeof r->last_error,
                     "phase %s used all %u jobs before the learner reached its target (at version %u)", p->name, p->n,
                     r->learner_version);
            sf_warn("run %s: %s", r->id, r->last_error);
        }
        sf_store_event(c, r, "phase_done", p->name);
        r->phase++;
        changed = 1;
        c->dispatch_dirty = 1;
    }
    if (r->phase >= r->n_phases) {
        r->state = r->dead || r->shortfall ? RUN_FAILED : RUN_DONE;
        r->finished_ms = sf_clock_wall_ms();
        sf_info("run %s %s: %llu done, %llu dead", r->id, sf_run_state_name(r->state),
                (unsigned long long)r->done, (unsigned long long)r->dead);
        sf_store_event(c, r, sf_run_state_name(r->state), NULL);
        changed = 1;
    }
    if (changed) sf_store_run_saved(c, r, 0);
}

cJSON *sf_run_json(const sf_coord_t *c, const sf_run_t *r, int detail) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "name", r->name ? r->name : "");
    cJSON_AddStringToObject(o, "state", sf_run_state_name(r->state));
    cJSON_AddNumberToObject(o, "priority", r->priority);
    cJSON_AddStringToObject(o, "phase", r->phase < r->n_phases ? r->phases[r->phase].name : "");
    cJSON_AddNumberToObject(o, "total", r->n_jobs);
    cJSON_AddNumberToObject(o, "done", (double)r->done);
    cJSON_AddNumberToObject(o, "dead", (double)r->dead);
    cJSON_AddNumberToObject(o, "retries", (double)r->retries);
    cJSON_AddNumberToObject(o, "leased", (double)r->leased);
    if (r->phase < r->n_phases && r->phases[r->phase].until_learner)
        cJSON_AddNumberToObject(o, "learner_version", r->learner_version);
    if (r->kind_wait_ms && sf_run_active(r) && r->phase < r->n_phases) {
        /* No connected worker offers this phase's kind. */
        cJSON_AddStringToObject(o, "waiting_for_kind", r->phases[r->phase].kind);
        cJSON_AddNumberToObject(o, "waiting_ms", (double)(sf_coord_mono_ms(c) - r->kind_wait_ms));
    }
    cJSON_AddNumberToObject(o, "created_ms", (double)r->created_ms);
    cJSON_AddNumberToObject(o, "started_ms", (double)r->started_ms);
    cJSON_AddNumberToObject(o, "finished_ms", (double)r->finished_ms);
    if (!detail) return o;
    cJSON *ph = cJSON_AddArrayToObject(o, "phases");
    for (int i = 0; i < r->n_phases; i++) {
        const sf_phase_t *p = &r->phases[i];
        cJSON *po = cJSON_CreateObject();
        cJSON_AddStringToObject(po, "name", p->name);
        cJSON_AddStringToObject(po, "kind", p->kind);
        cJSON_AddNumberToObject(po, "total", p->n);
        cJSON_AddNumberToObject(po, "done", p->done);
        cJSON_AddNumberToObject(po, "dead", p->dead);
        cJSON_AddNumberToObject(po, "skipped", p->skipped);
        cJSON_AddItemToArray(ph, po);
    }
    if (r->classes && r->class_done) {
        cJSON *cl = cJSON_AddArrayToObject(o, "classes");
        uint32_t per = 0;
        for (int i = 0; i < r->n_phases; i++) per += r->phases[i].single ? 0 : r->phases[i].shards_per_class;
        for (int i = 0; i < r->classes->n; i++) {
            cJSON *co = cJSON_CreateObject();
            cJSON_AddStringToObject(co, "wnid", r->classes->v[i].wnid);
            cJSON_AddStringToObject(co, "name", r->classes->v[i].name);
            cJSON_AddNumberToObject(co, "total", per);
            cJSON_AddNumberToObject(co, "done", r->class_done[i]);
            cJSON_AddNumberToObject(co, "dead", r->class_dead[i]);
            for (int k = 0; r->class_stat && k < SF_CLASS_STATS; k++)
                if (r->class_stat[i][k]) cJSON_AddNumberToObject(co, sf_class_stat_names[k], r->class_stat[i][k]);
            cJSON_AddItemToArray(cl, co);
        }
    }
    cJSON *lat = cJSON_AddObjectToObject(o, "latency_us");
    const sf_hist_t *h = r->latency;
    cJSON_AddNumberToObject(lat, "count", (double)(h ? h->count : r->lat_count));
    cJSON_AddNumberToObject(lat, "p50", (double)(h ? sf_hist_quantile(h, 0.50) : r->lat_p50));
    cJSON_AddNumberToObject(lat, "p99", (double)(h ? sf_hist_quantile(h, 0.99) : r->lat_p99));
    cJSON_AddNumberToObject(lat, "max", (double)(h ? h->max : r->lat_max));
    if (r->last_error[0]) cJSON_AddStringToObject(o, "last_error", r->last_error);
    cJSON *dl = cJSON_AddArrayToObject(o, "dead_jobs");
    for (int i = 0; i < r->n_dead_list; i++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "job", r->dead_list[i].idx);
        cJSON_AddNumberToObject(d, "attempts", r->dead_list[i].attempts);
        cJSON_AddStringToObject(d, "error", r->dead_list[i].error);
        cJSON_AddItemToArray(dl, d);
    }
    return o;
}
