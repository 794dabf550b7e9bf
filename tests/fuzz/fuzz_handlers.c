/* libFuzzer target: the coordinator's handlers of decoded frames —
 * sf_broker_on_frame() (coordinator/broker.c: hello, credit, heartbeats,
 * results, shutdown; then leases, retries, backoff, dead-lettering,
 * dispatch) and sf_clients_on_frame() (coordinator/clients.c: submit,
 * status, cancel, lists, stats) — on the unit tests' coordinator
 * (tests/unit/coord_harness.h: no Redis, its facts recorded; real inproc
 * ROUTER sockets, to which nobody is connected, so every answer is a send
 * to an unreachable peer, counted and dropped).
 *
 * Each input gets a fresh coordinator (th_coord_init and th_coord_free, a
 * ZeroMQ context included: the target still runs about 400 inputs a second)
 * with one run submitted (th_submit: 8 jobs in two phases of two classes,
 * short lease and backoff so that the clock reaches them), and is a sequence
 * of records, each
 *   [sel u8][len u16 little-endian][frame: len bytes (what is left, if less)]
 * sel: bits 0-2 pick one of eight fixed routing ids (1 to 255 bytes, the
 *      sizes ZeroMQ gives: its own 5-byte ids, short names, the 255-byte
 *      limit); bit 3 the socket (0: workers, 1: clients); bits 4-6 what
 *      follows the frame: 0 nothing, 1 th_ack (Redis acknowledges every
 *      queued fact), 2-4 th_tick by 100 ms, 1 s or 3.5 s (a worker silent for
 *      3 s dies), 5 th_ack and 1 s, 6 th_tick by 61 s (the longest backoff,
 *      every lease of the run), 7 nothing.
 * Every frame goes to the handler in a buffer of exactly its length, and
 * sf_broker_pump() (dispatch) runs after it, as main.c's drain does.
 * tests/fuzz/gen_handlers_seeds.c writes the seed corpus from real frames.
 *
 * After every record, abort() where:
 *  - a job slot's state is not a JS_* value, or a slot that is not JS_LEASED
 *    names a worker;
 *  - a leased slot names a worker slot out of range or not in use;
 *  - a run's `leased` is not the number of its leased slots, or a worker's
 *    `leased` not the number of slots leased to it, in every run;
 *  - the acknowledged counters disagree with the slots (JS_DONE and JS_DEAD
 *    slots are done and dead; those and JS_ACKING ones are done_w + dead_w),
 *    a phase counts more jobs finished than it has, or a run's phase is past
 *    its last;
 *  - a ready ring holds a job index past the run;
 *  - a run without its slots (ended, dropped from memory) is active or
 *    still counts leases or queued jobs;
 *  - a worker slot index is out of range or not its own, a worker in use has
 *    a routing id of 0 or over 255 bytes, or credit over 65536.
 * The harness aborts past TH_MAX_FACTS recorded facts; an input stops at
 * FACT_BUDGET, far enough below that no one record can cross it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/coord_harness.h"

/* Small, so that a client's submit cannot plan a big run, and so that the
 * facts every job can make stay bounded. */
#define FUZZ_MAX_JOBS 32
#define FUZZ_MAX_RUNS 3
#define FACT_BUDGET (TH_MAX_FACTS / 2)

static const char SPEC[] =
    "{\"method\":\"phases\",\"name\":\"fuzz handlers\",\"classes\":[\"n01498041\",\"goldfinch\"],"
    "\"max_attempts\":2,\"lease_ms\":1000,\"retry_base_ms\":10,\"retry_max_ms\":100,\"phases\":["
    "{\"kind\":\"noop\",\"name\":\"first\",\"items_per_class\":4,\"shard_size\":2},"
    "{\"kind\":\"sleep\",\"name\":\"second\",\"items_per_class\":2,\"shard_size\":1,\"payload\":{\"ms\":1}}]}";

static const struct { uint8_t n; const char *b; } rids[8] = {
    {5, "\x00\x6b\x8b\x45\x67"},          /* ZeroMQ's own ids: 0, then 4 bytes */
    {5, "\x00\x6b\x8b\x45\x68"},
    {2, "w1"},
    {2, "w2"},
    {20, "gpu-node-07/worker-3"},
    {1, "\x01"},
    {255, NULL},                          /* 255 bytes, filled in below */
    {12, "sfctl-client"},
};
static char long_rid[255];

/* The clock only goes forward, from input to input: a day past the last
 * input's end, the backoff heap (static in broker.c) has nothing left of it. */
static int64_t next_t0 = 1000000000000LL;

static sf_coord_t coord;

static void check(const sf_coord_t *c) {
    static uint32_t per_worker[SF_MAX_WORKERS];
    if (c->n_worker_slots < 0 || c->n_worker_slots > SF_MAX_WORKERS) abort();
    memset(per_worker, 0, sizeof per_worker);
    for (const sf_run_t *r = c->runs; r; r = r->next) {
        if (r->phase < 0 || r->phase > r->n_phases) abort();
        if (!r->jobs) {
            /* An ended run that dropped its slots (sf_run_drop_slots) holds no lease. */
            if (sf_run_active(r) || r->leased || r->ready.len) abort();
            continue;
        }
        uint64_t leased = 0, done = 0, dead = 0, acking = 0;
        for (uint32_t i = 0; i < r->n_jobs; i++) {
            const sf_jobslot_t *j = &r->jobs[i];
            if (j->state > JS_SKIPPED) abort();
            if (j->state != JS_LEASED) {
                if (j->worker != SF_NO_WORKER) abort();
                done += j->state == JS_DONE, dead += j->state == JS_DEAD, acking += j->state == JS_ACKING;
                continue;
            }
            if (j->worker >= c->n_worker_slots || !c->workers[j->worker].used) abort();
            per_worker[j->worker]++;
            leased++;
        }
        if (leased != r->leased || done != r->done || dead != r->dead || done + dead + acking != r->done_w + r->dead_w)
            abort();
        for (int p = 0; p < r->n_phases; p++)
            if ((uint64_t)r->phases[p].done + r->phases[p].dead + r->phases[p].skipped > r->phases[p].n) abort();
        for (uint32_t k = 0; k < r->ready.len; k++)
            if (r->ready.v[(r->ready.head + k) % r->ready.cap] >= r->n_jobs) abort();
    }
    for (int i = 0; i < c->n_worker_slots; i++) {
        const sf_worker_t *w = &c->workers[i];
        if (!w->used) {
            if (per_worker[i]) abort();
            continue;
        }
        if (w->slot != i || w->rid_len < 1 || w->rid_len > 255 || w->credit > 65536 || w->leased != per_worker[i])
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!long_rid[0])
        for (size_t i = 0; i < sizeof long_rid; i++) long_rid[i] = (char)('a' + i % 26);
    if (th_coord_init(&coord, next_t0) != 0) abort();
    coord.cfg.max_jobs_per_run = FUZZ_MAX_JOBS;
    coord.cfg.max_runs = FUZZ_MAX_RUNS;
    sf_broker_cron(&coord); /* empties the backoff heap of earlier inputs (no run is theirs) */
    if (!th_submit(&coord, SPEC, 1)) abort();
    coord.next_run_num = 2; /* as store.c sets it past the runs it loaded */

    while (size >= 3 && th_n_facts < FACT_BUDGET) {
        const uint8_t sel = data[0];
        size_t len = data[1] | (size_t)data[2] << 8;
        data += 3, size -= 3;
        if (len > size) len = size;
        uint8_t *frame = malloc(len ? len : 1);
        if (!frame) abort();
        memcpy(frame, data, len);
        data += len, size -= len;
        const void *rid = rids[sel & 7].b ? (const void *)rids[sel & 7].b : (const void *)long_rid;
        if (sel & 8) sf_clients_on_frame(&coord, rid, rids[sel & 7].n, frame, len);
        else sf_broker_on_frame(&coord, rid, rids[sel & 7].n, frame, len);
        free(frame);
        sf_broker_pump(&coord);
        switch ((sel >> 4) & 7) {
        case 1: th_ack(&coord); break;
        case 2: th_tick(&coord, th_now_ms + 100); break;
        case 3: th_tick(&coord, th_now_ms + 1000); break;
        case 4: th_tick(&coord, th_now_ms + 3500); break;
        case 5: th_ack(&coord); th_tick(&coord, th_now_ms + 1000); break;
        case 6: th_tick(&coord, th_now_ms + 61000); break;
        default: break;
        }
        check(&coord);
    }
    th_ack(&coord);
    check(&coord);
    next_t0 = th_now_ms + 86400000LL + 1000;
    th_coord_free(&coord);
    return 0;
}
