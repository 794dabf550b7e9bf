/* gen_handlers_seeds: writes the seed corpus of fuzz_handlers.c — real
 * protocol traffic, each frame packed with the project's codec
 * (common/net/wire.h, sf_wire_pack), in that target's record format:
 *   [sel u8][len u16 little-endian][frame]
 * where sel's bits 0-2 pick one of the target's eight routing ids, bit 3 the
 * client socket, bits 4-6 what follows (see fuzz_handlers.c; the values are
 * repeated below).  The scenarios follow the run the target submits (run 1:
 * 8 noop/sleep jobs in two phases of 4, 2 attempts, 1 s leases).
 *
 * Not built by the Makefile (it is not a fuzz target); after `make build`:
 *   cc -std=gnu11 -D_GNU_SOURCE -I. -Ibuild tests/fuzz/gen_handlers_seeds.c \
 *      build/lib/libsfnet.a build/lib/libsfruntime.a -lprotobuf-c -lzmq -o build/gen_handlers_seeds
 *   build/gen_handlers_seeds tests/fuzz/corpus/handlers
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/net/wire.h"

/* fuzz_handlers.c's routing ids (by index) and follow-ups. */
enum { RID_ZMQ_A = 0, RID_ZMQ_B, RID_W1, RID_W2, RID_NAMED, RID_ONE_BYTE, RID_LONG, RID_CLIENT };
enum { THEN_NONE = 0, THEN_ACK, THEN_100MS, THEN_1S, THEN_3500MS, THEN_ACK_1S, THEN_61S };
#define CLIENT 8

static FILE *out;
static uint8_t *buf;
static size_t cap;

static void raw(int rid, int flags, int then, const void *frame, size_t len) {
    uint8_t h[3] = {(uint8_t)(rid | flags | then << 4), (uint8_t)(len & 0xff), (uint8_t)(len >> 8)};
    if (len > 0xffff || fwrite(h, 1, 3, out) != 3 || fwrite(frame, 1, len, out) != len) {
        fprintf(stderr, "gen_handlers_seeds: cannot write a record\n");
        exit(1);
    }
}

static void rec(int rid, int flags, int then, Sf__Envelope *env) {
    long n = sf_wire_pack(env, &buf, &cap);
    if (n < 0) {
        fprintf(stderr, "gen_handlers_seeds: cannot pack a frame\n");
        exit(1);
    }
    raw(rid, flags, then, buf, (size_t)n);
}

static void hello(int rid, const char *id, uint32_t credit, int then) {
    char *kinds[] = {"noop", "sleep", "fail"};
    Sf__Hello h = SF__HELLO__INIT;
    h.worker_id = (char *)id;
    h.kinds = kinds;
    h.n_kinds = 3;
    h.device = "cpu";
    h.slots = 2;
    h.version = "0.9.0";
    h.pid = 4242;
    h.host = "node-1";
    h.credit = credit;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_HELLO;
    e.hello = &h;
    rec(rid, 0, then, &e);
}

static void credit(int rid, uint32_t n, int then) {
    Sf__Credit c = SF__CREDIT__INIT;
    c.credit = n;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_CREDIT;
    e.credit = &c;
    rec(rid, 0, then, &e);
}

static void heartbeat(int rid, uint32_t busy, int then) {
    Sf__Heartbeat hb = SF__HEARTBEAT__INIT;
    hb.busy = busy;
    hb.jobs_done = 3;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_HEARTBEAT;
    e.heartbeat = &hb;
    rec(rid, 0, then, &e);
}

/* Results for jobs [first, first + n) of run `run`, all with one status. */
static void results(int rid, uint32_t run, uint32_t first, uint32_t n, uint32_t attempt, Sf__Result__Status st,
                    int then) {
    Sf__Result r[8], *rp[8];
    for (uint32_t i = 0; i < n && i < 8; i++) {
        sf__result__init(&r[i]);
        r[i].id = sf_job_id(run, first + i);
        r[i].attempt = attempt;
        r[i].status = st;
        r[i].payload.data = (uint8_t *)(st == SF__RESULT__STATUS__OK ? "{\"n\":2}" : "");
        r[i].payload.len = strlen((char *)r[i].payload.data);
        r[i].error = st == SF__RESULT__STATUS__OK ? "" : st == SF__RESULT__STATUS__FATAL ? "bad job: no such class" : "it failed";
        r[i].elapsed_us = 1500;
        rp[i] = &r[i];
    }
    Sf__ResultBatch b = SF__RESULT_BATCH__INIT;
    b.n_results = n < 8 ? n : 8;
    b.results = rp;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_RESULTS;
    e.results = &b;
    rec(rid, 0, then, &e);
}

static void shutdown_(int rid, const char *reason, int then) {
    Sf__Shutdown s = SF__SHUTDOWN__INIT;
    s.drain = 1;
    s.reason = (char *)reason;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_SHUTDOWN;
    e.shutdown = &s;
    rec(rid, 0, then, &e);
}

static void request(Sf__Request__Op op, const char *run, const char *spec, uint64_t tag, int then) {
    Sf__Request q = SF__REQUEST__INIT;
    q.tag = tag;
    q.op = op;
    q.run = (char *)(run ? run : "");
    q.spec_json = (char *)(spec ? spec : "");
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_REQUEST;
    e.request = &q;
    rec(RID_CLIENT, CLIENT, then, &e);
}

static void open_seed(const char *dir, const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (out) fclose(out);
    out = fopen(path, "wb");
    if (!out) {
        perror(path);
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: gen_handlers_seeds DIR\n");
        return 2;
    }
    const char *d = argv[1];
    const Sf__Result__Status OK = SF__RESULT__STATUS__OK, FAILED = SF__RESULT__STATUS__FAILED,
                             CANCELLED = SF__RESULT__STATUS__CANCELLED, FATAL = SF__RESULT__STATUS__FATAL;

    /* The whole run on one worker: phase one, acknowledged, then phase two. */
    open_seed(d, "run_to_done");
    hello(RID_W1, "w1", 4, THEN_NONE);
    heartbeat(RID_W1, 4, THEN_NONE);
    results(RID_W1, 1, 0, 4, 1, OK, THEN_ACK);
    credit(RID_W1, 4, THEN_NONE);
    results(RID_W1, 1, 4, 4, 1, OK, THEN_ACK);
    heartbeat(RID_W1, 0, THEN_NONE);

    open_seed(d, "hello_only");
    hello(RID_ZMQ_A, "gpu-node-3/0", 2, THEN_NONE);

    /* Credit-based flow: no credit at hello, then a little at a time. */
    open_seed(d, "credit_flow");
    hello(RID_NAMED, "gpu-node-07/worker-3", 0, THEN_NONE);
    credit(RID_NAMED, 1, THEN_NONE);
    results(RID_NAMED, 1, 0, 1, 1, OK, THEN_NONE);
    credit(RID_NAMED, 2, THEN_NONE);
    heartbeat(RID_NAMED, 2, THEN_100MS);
    results(RID_NAMED, 1, 1, 2, 1, OK, THEN_ACK);

    /* A failure retried after its backoff (once job 1 has given the credit
     * back), failing again: dead-lettered. */
    open_seed(d, "retry_then_dead");
    hello(RID_W1, "w1", 1, THEN_NONE);
    results(RID_W1, 1, 0, 1, 1, FAILED, THEN_100MS);
    results(RID_W1, 1, 1, 1, 1, OK, THEN_NONE);
    results(RID_W1, 1, 0, 1, 2, FAILED, THEN_ACK);
    heartbeat(RID_W1, 0, THEN_NONE);

    open_seed(d, "fatal_and_cancelled");
    hello(RID_W2, "w2", 3, THEN_NONE);
    results(RID_W2, 1, 0, 1, 1, FATAL, THEN_NONE);
    results(RID_W2, 1, 1, 1, 1, CANCELLED, THEN_NONE);
    results(RID_W2, 1, 2, 1, 1, OK, THEN_ACK_1S);

    /* A worker leaves: its jobs go to the next. */
    open_seed(d, "shutdown_handover");
    hello(RID_W1, "w1", 4, THEN_NONE);
    hello(RID_W2, "w2", 0, THEN_NONE);
    shutdown_(RID_W1, "SIGTERM: draining", THEN_NONE);
    credit(RID_W2, 4, THEN_NONE);
    results(RID_W2, 1, 0, 4, 2, OK, THEN_ACK);

    /* Same id on a new connection replaces the old one; a connection that
     * says it is another worker replaces itself. */
    open_seed(d, "replaced");
    hello(RID_ZMQ_A, "w1", 2, THEN_NONE);
    hello(RID_ZMQ_B, "w1", 2, THEN_NONE);
    hello(RID_ZMQ_B, "w9", 2, THEN_NONE);
    hello(RID_ZMQ_B, "w9", 1, THEN_NONE);
    results(RID_ZMQ_A, 1, 0, 2, 1, OK, THEN_NONE);

    /* Silent past its liveness: dies, its jobs requeued. */
    open_seed(d, "liveness");
    hello(RID_ONE_BYTE, "w1", 2, THEN_3500MS);
    hello(RID_W2, "w2", 2, THEN_NONE);
    results(RID_W2, 1, 0, 2, 2, OK, THEN_ACK);

    /* Leases that expire while the worker keeps beating. */
    open_seed(d, "lease_expiry");
    hello(RID_LONG, "long-rid-worker", 2, THEN_NONE);
    heartbeat(RID_LONG, 2, THEN_1S);
    heartbeat(RID_LONG, 2, THEN_1S);
    heartbeat(RID_LONG, 2, THEN_1S);
    results(RID_LONG, 1, 0, 2, 1, OK, THEN_NONE);
    heartbeat(RID_LONG, 0, THEN_61S);

    /* Results that must not count: twice, a wrong attempt, an unknown run,
     * from a peer that never said hello. */
    open_seed(d, "stale_results");
    hello(RID_W1, "w1", 2, THEN_NONE);
    results(RID_W1, 1, 0, 1, 1, OK, THEN_NONE);
    results(RID_W1, 1, 0, 1, 1, OK, THEN_NONE);
    results(RID_W1, 1, 1, 1, 7, OK, THEN_NONE);
    results(RID_W1, 99, 0, 1, 1, OK, THEN_NONE);
    results(RID_W2, 1, 1, 1, 1, OK, THEN_ACK);
    shutdown_(RID_W2, "never said hello", THEN_NONE);

    /* sfctl: submit, status, list, stats, cancel, and a run that is not. */
    open_seed(d, "client_requests");
    request(SF__REQUEST__OP__SUBMIT, NULL,
            "{\"kind\":\"noop\",\"items_per_class\":4,\"shard_size\":2,\"classes\":[\"n01440764\",\"goldfish\"],"
            "\"name\":\"smoke\",\"priority\":5}", 1, THEN_NONE);
    request(SF__REQUEST__OP__STATUS, "r1", NULL, 2, THEN_NONE);
    request(SF__REQUEST__OP__LIST_RUNS, NULL, NULL, 3, THEN_NONE);
    request(SF__REQUEST__OP__LIST_WORKERS, NULL, NULL, 4, THEN_NONE);
    request(SF__REQUEST__OP__STATS, NULL, NULL, 5, THEN_NONE);
    request(SF__REQUEST__OP__CANCEL, "r2", NULL, 6, THEN_NONE);
    request(SF__REQUEST__OP__STATUS, "r404", NULL, 7, THEN_NONE);

    /* A run cancelled while a worker holds its jobs; its results are stale. */
    open_seed(d, "cancel_while_leased");
    hello(RID_W1, "w1", 4, THEN_NONE);
    request(SF__REQUEST__OP__CANCEL, "r1", NULL, 1, THEN_NONE);
    results(RID_W1, 1, 0, 4, 1, OK, THEN_ACK);
    request(SF__REQUEST__OP__CANCEL, "r1", NULL, 2, THEN_NONE);

    /* A second run of higher priority, submitted while the first runs. */
    open_seed(d, "two_runs");
    hello(RID_W1, "w1", 2, THEN_NONE);
    request(SF__REQUEST__OP__SUBMIT, NULL,
            "{\"method\":\"phases\",\"classes\":[\"n01498041\"],\"priority\":9,\"max_attempts\":1,"
            "\"phases\":[{\"kind\":\"sleep\",\"items_per_class\":2,\"shard_size\":1,\"payload\":{\"ms\":5}}]}",
            1, THEN_NONE);
    credit(RID_W1, 8, THEN_NONE);
    results(RID_W1, 2, 0, 2, 1, FAILED, THEN_ACK_1S);
    results(RID_W1, 1, 0, 2, 1, OK, THEN_ACK);

    /* Frames the coordinator refuses or does not expect. */
    open_seed(d, "bad_frames");
    {
        static const uint8_t garbage[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
        raw(RID_W1, 0, THEN_NONE, garbage, sizeof garbage);
        raw(RID_W1, 0, THEN_NONE, "", 0);
        Sf__Envelope e = SF__ENVELOPE__INIT;
        Sf__Heartbeat hb = SF__HEARTBEAT__INIT;
        e.body_case = SF__ENVELOPE__BODY_HEARTBEAT;
        e.heartbeat = &hb;
        long n = sf_wire_pack(&e, &buf, &cap);
        /* Another protocol version: field 1 (version) rewritten to 2. */
        if (n >= 2 && buf[0] == 0x08) buf[1] = 2;
        raw(RID_W1, 0, THEN_NONE, buf, (size_t)n);
        Sf__Error er = SF__ERROR__INIT;
        er.code = -4;
        er.message = "you sent garbage";
        e.body_case = SF__ENVELOPE__BODY_ERROR;
        e.error = &er;
        rec(RID_W1, 0, THEN_NONE, &e);
        rec(RID_CLIENT, CLIENT, THEN_NONE, &e);
        hello(RID_W1, "w1", 1, THEN_NONE);
        Sf__PolicyGet pg = SF__POLICY_GET__INIT;
        pg.run = "r1";
        pg.min_version = 1;
        e.body_case = SF__ENVELOPE__BODY_POLICY_GET;
        e.policy_get = &pg;
        rec(RID_W1, 0, THEN_NONE, &e);
        rec(RID_CLIENT, CLIENT, THEN_NONE, &e);
    }
    fclose(out);
    free(buf);
    return 0;
}
