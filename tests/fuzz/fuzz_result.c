/* libFuzzer target: a worker's result payload as the coordinator reads it,
 * sf_run_count_result() (coordinator/runs.c): the per-class counters
 * "generated", "kept" and "dropped" (the generate and filter kinds report
 * them) summed into the run's class_stat, as broker.c does with every OK
 * result it accepts.
 *
 * One run is planned once, from a small spec of method "shift" with
 * strategy ppo (so that it has sharded phases, the rollout phase whose
 * classes interleave, and the run-wide manifest and finetune jobs).  The
 * input's first 4 bytes (little-endian, modulo the run's jobs) pick the job;
 * the rest is its payload, copied into a buffer of exactly its length (a
 * payload off the wire is not NUL-terminated), so that ASan sees any read
 * past it.  The counters are zeroed before each input.  abort() where:
 *  - a counter of another class than the job's own (sf_run_job_shard) moves;
 *  - a counter moves, or 1 is returned, for a payload that is empty, does not
 *    start with '{', or is not a JSON object (read by cJSON, the reader
 *    every JSON payload of the project has), or whose fields are not numbers
 *    in [0, 1e9);
 *  - a counter of a field that is such a number moves by other than its
 *    value (truncated), or 0 is returned when there is one.
 *
 * The fuzz binary links runs.c and shift.c only; the few functions of
 * store.c and broker.c they name are defined here (as in fuzz_spec.c). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "coordinator/coord.h"

void sf_store_event(sf_coord_t *c, sf_run_t *r, const char *type, const char *detail) { (void)c, (void)r, (void)type, (void)detail; }
void sf_store_run_saved(sf_coord_t *c, sf_run_t *r, int with_spec) { (void)c, (void)r, (void)with_spec; }
void sf_store_job_skipped(sf_coord_t *c, sf_run_t *r, uint32_t idx) { (void)c, (void)r, (void)idx; }
void sf_broker_cancel_run(sf_coord_t *c, sf_run_t *r) { (void)c, (void)r; }

static const char SPEC[] =
    "{\"method\":\"shift\",\"name\":\"fuzz result\",\"classes\":[\"n01498041\",\"goldfinch\",\"junco\"],"
    "\"strategy\":\"ppo\",\"ppo\":{\"updates\":2,\"batch_size\":8},\"reference_images\":8,\"rollouts_per_job\":4,"
    "\"captions_per_class\":4,\"images_per_caption\":2,\"shard_size\":3,\"finetune_images_per_class\":4}";

static sf_coord_t coord;
static sf_run_t *run;

static void setup(void) {
    /* main.c's defaults. */
    coord.cfg.max_attempts = 3;
    coord.cfg.lease_ms = 600000;
    coord.cfg.retry_base_ms = 500;
    coord.cfg.retry_max_ms = 60000;
    coord.cfg.max_jobs_per_run = 1 << 16;
    char err[512];
    if (sf_run_create(&coord, SPEC, 1, &run, err, sizeof err) != 0 || !run->class_stat) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!run) setup();
    if (size < 4) return 0;
    uint32_t idx = (data[0] | data[1] << 8 | data[2] << 16 | (uint32_t)data[3] << 24) % run->n_jobs;
    size_t len = size - 4;
    char *payload = malloc(len ? len : 1);
    if (!payload) return 0;
    memcpy(payload, data + 4, len);

    const int nc = run->classes->n;
    memset(run->class_stat, 0, (size_t)nc * sizeof *run->class_stat);
    const char *wnid;
    uint32_t start, count;
    int cls;
    sf_run_job_shard(run, idx, &wnid, &start, &count, &cls);
    if (cls < 0 || cls >= nc) abort();

    int any = sf_run_count_result(run, idx, payload, len);

    /* What the payload says, read independently of the code under test. */
    uint32_t want[SF_CLASS_STATS] = {0};
    int want_any = 0;
    cJSON *o = len && payload[0] == '{' ? cJSON_ParseWithLength(payload, len) : NULL;
    for (int k = 0; cJSON_IsObject(o) && k < SF_CLASS_STATS; k++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, sf_class_stat_names[k]);
        if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0 && v->valuedouble < 1e9)) continue;
        want[k] = (uint32_t)floor(v->valuedouble);
        want_any = 1;
    }
    cJSON_Delete(o);
    free(payload);

    if (any != want_any) abort();
    for (int i = 0; i < nc; i++)
        for (int k = 0; k < SF_CLASS_STATS; k++)
            if (run->class_stat[i][k] != (i == cls ? want[k] : 0)) abort();
    return 0;
}
