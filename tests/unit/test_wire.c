/* Unit tests for common/wire: round trips, every kind of bad frame is
 * rejected with a reason rather than accepted or crashing, the version peek
 * and the Error that every version reads. */
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
    /* a job payload over the cap still decodes (the frame is within its
     * cap): the worker fails that one job naming the cap, at once */
    n = pack_jobs(&buf, &cap, 1, SF_WIRE_MAX_PAYLOAD + 1, 1);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), 0);
    CHECK(e && e->jobs->n_jobs == 1 && e->jobs->jobs[0]->payload.len == SF_WIRE_MAX_PAYLOAD + 1);
    sf_wire_free(e);
    e = NULL;
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

/* sf_wire_peek on frames written by hand from the protobuf encoding rules
 * (tag = field << 3 | wire type; varints little-endian base 128), not by
 * protobuf-c. */
TEST(peek) {
    uint32_t v, b;
    /* version 2 (field 1, varint), then an empty Hello (field 10, bytes) */
    const uint8_t hello_v2[] = {0x08, 0x02, 0x52, 0x00};
    CHECK_EQ_INT(sf_wire_peek(hello_v2, sizeof hello_v2, &v, &b), 0);
    CHECK_EQ_INT(v, 2);
    CHECK_EQ_INT(b, 10);
    /* version 150 (0x96 0x01), an Error body (field 2) holding code = 1 */
    const uint8_t error_v150[] = {0x08, 0x96, 0x01, 0x12, 0x02, 0x08, 0x01};
    CHECK_EQ_INT(sf_wire_peek(error_v150, sizeof error_v150, &v, &b), 0);
    CHECK_EQ_INT(v, 150);
    CHECK_EQ_INT(b, 2);
    /* fields in any order; unknown ones (fixed64 field 7, fixed32 field 9) skipped */
    const uint8_t shuffled[] = {0x39, 1, 2, 3, 4, 5, 6, 7, 8, 0x5a, 0x00, 0x4d, 1, 2, 3, 4, 0x08, 0x05};
    CHECK_EQ_INT(sf_wire_peek(shuffled, sizeof shuffled, &v, &b), 0);
    CHECK_EQ_INT(v, 5);
    CHECK_EQ_INT(b, 11);
    /* empty: no version, no body */
    CHECK_EQ_INT(sf_wire_peek(shuffled, 0, &v, &b), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(b, 0);
    /* not protobuf: a varint cut short, a length past the end, a group, field 0 */
    const uint8_t cut[] = {0x08, 0x96}, past[] = {0x52, 0x05, 0x00}, group[] = {0x0b}, zero[] = {0x00, 0x01};
    CHECK_EQ_INT(sf_wire_peek(cut, sizeof cut, &v, &b), SF_EPROTO);
    CHECK_EQ_INT(sf_wire_peek(past, sizeof past, &v, &b), SF_EPROTO);
    CHECK_EQ_INT(sf_wire_peek(group, sizeof group, &v, &b), SF_EPROTO);
    CHECK_EQ_INT(sf_wire_peek(zero, sizeof zero, &v, &b), SF_EPROTO);
}

/* An Error is read whatever version it carries; any other body is not. */
TEST(error_any_version) {
    Sf__Envelope *e = NULL;
    char err[256];
    /* version 2; Error{code = -4 (10 bytes of varint), message "no", fatal} */
    const uint8_t error_v2[] = {0x08, 0x02, 0x12, 0x11, 0x08, 0xfc, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                0x01, 0x12, 0x02, 'n', 'o', 0x28, 0x01};
    CHECK_EQ_INT(sf_wire_decode(error_v2, sizeof error_v2, &e, err, sizeof err), 0);
    CHECK_EQ_INT(e->version, 2);
    CHECK_EQ_INT(e->body_case, SF__ENVELOPE__BODY_ERROR);
    CHECK_EQ_INT(e->error->code, -4);
    CHECK_EQ_STR(e->error->message, "no");
    CHECK_EQ_INT(e->error->fatal, 1);
    sf_wire_free(e);
    /* version 2, Credit{credit = 4}: refused */
    const uint8_t credit_v2[] = {0x08, 0x02, 0x5a, 0x02, 0x08, 0x04};
    CHECK_EQ_INT(sf_wire_decode(credit_v2, sizeof credit_v2, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "protocol version 2"));
    /* what sf_wire_send_error packs reads back the same */
    uint8_t *buf = NULL;
    size_t cap = 0;
    Sf__Error er = SF__ERROR__INIT;
    er.code = SF_ERANGE;
    er.message = "frame too big";
    er.peer_version = 3;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_ERROR;
    env.error = &er;
    long n = sf_wire_pack(&env, &buf, &cap);
    uint32_t v, b;
    CHECK_EQ_INT(sf_wire_peek(buf, (size_t)n, &v, &b), 0);
    CHECK_EQ_INT(v, SF_PROTO_VERSION);
    CHECK_EQ_INT(b, SF__ENVELOPE__BODY_ERROR);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), 0);
    CHECK_EQ_INT(e->error->peer_version, 3);
    sf_wire_free(e);
    free(buf);
}

/* Worker ids are at most 64 bytes (docs/protocol.md). */
TEST(worker_id_limit) {
    uint8_t *buf = NULL;
    size_t cap = 0;
    char err[256], id[66];
    char *kinds[] = {"noop"};
    Sf__Envelope *e = NULL;
    Sf__Hello h = SF__HELLO__INIT;
    h.worker_id = id;
    h.n_kinds = 1;
    h.kinds = kinds;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    memset(id, 'a', 64);
    id[64] = 0;
    long n = sf_wire_pack(&env, &buf, &cap);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), 0);
    sf_wire_free(e);
    id[64] = 'a';
    id[65] = 0;
    n = sf_wire_pack(&env, &buf, &cap);
    CHECK_EQ_INT(sf_wire_decode(buf, (size_t)n, &e, err, sizeof err), SF_EPROTO);
    CHECK(strstr(err, "65 bytes, over the 64-byte limit"));
    free(buf);
}

int main(void) {
    SF_RUN(round_trip);
    SF_RUN(rejects_bad_frames);
    SF_RUN(peek);
    SF_RUN(error_any_version);
    SF_RUN(worker_id_limit);
    SF_DONE();
}
