/* Unit tests for common/wire: round trips, and every kind of bad frame is
 * rejected with a reason rather than accepted or crashing. */
#include <stdlib.h>

#include "common/runtime/error.h"
#include "common/net/wire.h"
#include "sf_test.h"

static long pack_jobs(uint8_t **buf, size_t *cap, size_t n, size_t payload_len, uint32_t attempt) {
    Sf__Job jobs[4], *jp[4];
    static uint8_t big[SF_WIRE_MAX_PAYLOAD + 16];
    for (size_t i = 0; i < n; i++) {
        sf__job__init(&jobs[i]);
        jobs[i].id = sf_job_id(7, (uint32_t)i);
        jobs[i].attempt = attempt;
        jobs[i].kind = "noop";
        jobs[i].run = "r7";
        jobs[i].payload.data = big;
        jobs[i].payload.len = payload_len;
        jp[i] = &jobs[i];
    }
    Sf__JobBatch b = SF__JOB_BATCH__INIT;
    b.n_jobs = n;
    b.jobs = jp;
    Sf__Envelope e = SF__ENVELOPE__INIT;
    e.body_case = SF__ENVELOPE__BODY_JOBS;
    e.jobs = &b;
    return sf_wire_pack(&e, buf, cap);
}

TEST(round_trip) {
    uint8_t *buf = NULL;
    size_t cap = 0;
    long n = pack_jobs(&buf, &cap, 3, 10, 2);
    CHECK(n > 0);
    Sf__Envelope *e = NULL;
    char err[256];
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), 0);
    CHECK_EQ_INT(e->version, SF_PROTO_VERSION);
    CHECK_EQ_INT(e->body_case, SF__ENVELOPE__BODY_JOBS);
    CHECK_EQ_INT(e->jobs->n_jobs, 3);
    CHECK_EQ_INT(sf_job_run(e->jobs->jobs[2]->id), 7);
    CHECK_EQ_INT(sf_job_index(e->jobs->jobs[2]->id), 2);
    CHECK_EQ_STR(e->jobs->jobs[0]->kind, "noop");
    sf_wire_free(e);
    free(buf);
}

TEST(rejects_bad_frames) {
    uint8_t *buf = NULL;
    size_t cap = 0;
    char err[256];
    Sf__Envelope *e = NULL;
    /* garbage */
    uint8_t junk[64];
    for (int i = 0; i < 64; i++) junk[i] = (uint8_t)(i * 37 + 11);
    CHECK_EQ_INT(sf_wire_decode(junk, sizeof junk, &e, err, sizeof err), SF_EPROTO);
    CHECK(e == NULL);
    /* empty frame: decodes, but has no version and no body */
    CHECK_EQ_INT(sf_wire_decode(junk, 0, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "version") != NULL);
    /* every truncation of a valid frame is rejected */
    long n = pack_jobs(&buf, &cap, 2, 5, 1);
    for (long cut = 1; cut < n; cut++) {
        CHECK_EQ_INT(sf_wire_decode(buf, (size_t)cut, &e, err, sizeof err), SF_EPROTO);
        CHECK(e == NULL);
    }
    /* a job with attempt 0 */
    n = pack_jobs(&buf, &cap, 1, 0, 0);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "attempt 0"));
    /* a payload over the cap */
    n = pack_jobs(&buf, &cap, 1, SF_WIRE_MAX_PAYLOAD + 1, 1);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "payload"));
    /* an oversized frame is refused before decoding */
    CHECK_EQ_INT(sf_wire_decode(buf, SF_WIRE_MAX_FRAME + 1, &e, err, sizeof err), SF_EPROTO);
    /* another protocol version */
    Sf__Credit cr = SF__CREDIT__INIT;
    cr.credit = 4;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_CREDIT;
    env.credit = &cr;
    n = sf_wire_pack(&env, &buf, &cap);
    buf[1] = 9; /* field 1 (version) is the first byte pair: 0x08, value */
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "protocol version 9"));
    /* a hello without kinds */
    Sf__Hello h = SF__HELLO__INIT;
    h.worker_id = "w";
    env.body_case = SF__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    n = sf_wire_pack(&env, &buf, &cap);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "kinds"));
    free(buf);
}

int main(void) {
    SF_RUN(round_trip);
    SF_RUN(rejects_bad_frames);
    SF_DONE();
}
