/* libFuzzer target: a run spec as a client submits it — JSON text through
 * sf_run_create() (coordinator/runs.c: the method's planner, shift.c for
 * "shift"; its class list; every limit), as clients.c calls it on a submit.
 *
 * A refused spec must leave no run and say why.  An accepted one must be
 * laid out soundly (phases end to end, every job's class and items inside
 * the run), and its normalised spec — what Redis keeps — must plan the very
 * same run again, as store.c does when a restarted coordinator reloads it:
 * the job indices of done bits and leases depend on it.  A run of method
 * "shift" must hand every job a payload its worker accepts
 * (sf_job_params_parse of the job contract).
 *
 * The fuzz binary links runs.c and shift.c only; the few functions of
 * store.c and broker.c they name are defined here.  max_jobs_per_run
 * is small, so a spec asking for a huge run is refused by the planner's own
 * limit, never allocated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/method/contract.h"
#include "common/runtime/error.h"
#include "coordinator/coord.h"

#define FUZZ_MAX_JOBS (1 << 16)

/* Dispatch and progress (never reached from a submit) write through these. */
void sf_store_event(sf_coord_t *c, sf_run_t *r, const char *type, const char *detail) { (void)c, (void)r, (void)type, (void)detail; }
void sf_store_run_saved(sf_coord_t *c, sf_run_t *r, int with_spec) { (void)c, (void)r, (void)with_spec; }
void sf_store_job_skipped(sf_coord_t *c, sf_run_t *r, uint32_t idx) { (void)c, (void)r, (void)idx; }
void sf_broker_cancel_run(sf_coord_t *c, sf_run_t *r) { (void)c, (void)r; }

static sf_coord_t coord;

/* The layout every accepted run must have; aborts where it does not. */
static void check_layout(const sf_run_t *r) {
    if (r->n_phases < 1 || r->n_phases > SF_MAX_PHASES || !r->classes || r->classes->n < 1 || !r->jobs ||
        r->n_jobs > FUZZ_MAX_JOBS || !r->spec_json || !r->name)
        abort();
    uint32_t next = 0;
    for (int i = 0; i < r->n_phases; i++) {
        const sf_phase_t *p = &r->phases[i];
        if (p->first != next || p->n < 1 || p->kind_id < 0 || p->kind_id >= coord.n_kinds || !p->kind[0]) abort();
        if (p->payload && strlen(p->payload) != p->payload_len) abort();
        next += p->n;
        const uint32_t ends[2] = {p->first, p->first + p->n - 1};
        for (int k = 0; k < 2; k++) {
            const char *wnid;
            uint32_t start, count;
            int cls;
            sf_run_job_shard(r, ends[k], &wnid, &start, &count, &cls);
            if (sf_run_phase_of(r, ends[k]) != i || cls < 0 || cls >= r->classes->n || !wnid || count < 1 ||
                start + count > p->items_per_class || start + count < start)
                abort();
        }
    }
    if (next != r->n_jobs) abort();
}

/* A planned shift run's payloads, read as each kind's worker reads them. */
static void check_payloads(const sf_run_t *r) {
    cJSON *spec = cJSON_Parse(r->spec_json);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(spec, "method");
    const int shift = cJSON_IsString(m) && !strcmp(m->valuestring, "shift");
    cJSON_Delete(spec);
    for (int i = 0; shift && i < r->n_phases; i++) {
        const sf_phase_t *p = &r->phases[i];
        sf_shift_params_t params;
        char err[256];
        if (!sf_job_kind_bit(p->kind) ||
            sf_job_params_parse(p->kind, p->payload, p->payload_len, &params, err, sizeof err) != 0)
            abort();
    }
}

static int same_phase(const sf_phase_t *a, const sf_phase_t *b) {
    return !strcmp(a->name, b->name) && !strcmp(a->kind, b->kind) && a->kind_id == b->kind_id &&
           a->first == b->first && a->n == b->n && a->until_learner == b->until_learner &&
           a->interleave == b->interleave && a->single == b->single && a->per_update == b->per_update &&
           a->items_per_class == b->items_per_class && a->shard_size == b->shard_size &&
           a->shards_per_class == b->shards_per_class && !a->payload == !b->payload &&
           (!a->payload || !strcmp(a->payload, b->payload));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!coord.cfg.max_jobs_per_run) {
        /* main.c's defaults, but for the job limit. */
        coord.cfg.max_attempts = 3;
        coord.cfg.lease_ms = 600000;
        coord.cfg.retry_base_ms = 500;
        coord.cfg.retry_max_ms = 60000;
        coord.cfg.max_jobs_per_run = FUZZ_MAX_JOBS;
    }
    coord.n_kinds = 0; /* each input starts a fresh coordinator's kind table */
    char *spec = malloc(size + 1);
    if (!spec) return 0;
    memcpy(spec, data, size);
    spec[size] = 0;
    sf_run_t *r = (sf_run_t *)1;
    char err[512] = "";
    int rc = sf_run_create(&coord, spec, 7, &r, err, sizeof err);
    free(spec);
    if (rc) {
        if (r || rc >= 0 || (rc != SF_ENOMEM && !err[0])) abort(); /* no run, and a reason */
        return 0;
    }
    check_layout(r);
    check_payloads(r);
    cJSON *status = sf_run_json(&coord, r, 1);
    char *text = cJSON_PrintUnformatted(status);
    cJSON_Delete(status);
    free(text);

    /* What a restarted coordinator makes of the stored spec. */
    sf_run_t *again = NULL;
    if (sf_run_create(&coord, r->spec_json, 7, &again, err, sizeof err) != 0) abort();
    if (strcmp(again->spec_json, r->spec_json) || strcmp(again->name, r->name) || again->n_jobs != r->n_jobs ||
        again->n_phases != r->n_phases || again->classes->n != r->classes->n || again->priority != r->priority ||
        again->max_attempts != r->max_attempts || again->lease_ms != r->lease_ms ||
        again->retry_base_ms != r->retry_base_ms || again->retry_max_ms != r->retry_max_ms)
        abort();
    for (int i = 0; i < r->n_phases; i++)
        if (!same_phase(&r->phases[i], &again->phases[i])) abort();
    for (int i = 0; i < r->classes->n; i++)
        if (strcmp(r->classes->v[i].wnid, again->classes->v[i].wnid)) abort();
    sf_run_free(again);
    sf_run_free(r);
    return 0;
}
