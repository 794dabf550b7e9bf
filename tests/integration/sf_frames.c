/* sf_frames: sends hand-made frames to a ROUTER endpoint, as a hostile or
 * broken peer (or a peer of another protocol version) would, and plays a
 * coordinator of another protocol version.  Used by test_bad_frames.sh.
 *   sf_frames ENDPOINT COUNT SEED         random and truncated frames
 *   sf_frames ENDPOINT hello ID_LEN [VERSION]
 *                                         one Hello with a worker id of ID_LEN
 *                                         bytes in an envelope of VERSION (1)
 *   sf_frames ENDPOINT request VERSION    one STATS request of VERSION
 *   sf_frames ENDPOINT oversize BYTES     one frame of BYTES bytes
 *       each of these three prints the answer: "error code C fatal F
 *       version V peer_version P: MESSAGE", "welcome", "reply code C", or
 *       "no answer" after 20 s
 *   sf_frames ENDPOINT serve VERSION SECONDS
 *       binds a ROUTER that answers every frame as a coordinator of protocol
 *       VERSION answers one of another version (an Error, fatal), for
 *       SECONDS; prints "answered N"
 *   sf_frames ENDPOINT job BYTES SECONDS
 *       binds a ROUTER, welcomes the first worker that says hello and hands
 *       it one noop job whose payload is BYTES bytes; prints the job's
 *       result, "result status S: ERROR", or "no result" after SECONDS */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/net/wire.h"
#include "common/runtime/error.h"

#define ANSWER_MS 20000

/* Packs env with the version given (sf_wire_pack would set ours). */
static size_t pack_as(Sf__Envelope *env, uint32_t version, uint8_t **buf) {
    env->version = version;
    size_t n = sf__envelope__get_packed_size(env);
    *buf = malloc(n ? n : 1);
    if (!*buf) exit(1);
    return sf__envelope__pack(env, *buf);
}

static int flood(void *s, int count) {
    /* A valid envelope to truncate: a result batch of three results. */
    Sf__Result r[3], *rp[3];
    for (int i = 0; i < 3; i++) {
        sf__result__init(&r[i]);
        r[i].id = ((uint64_t)1 << 32) | (uint64_t)i;
        r[i].attempt = 1;
        r[i].error = "x";
        rp[i] = &r[i];
    }
    Sf__ResultBatch b = SF__RESULT_BATCH__INIT;
    b.n_results = 3;
    b.results = rp;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_RESULTS;
    env.results = &b;
    uint8_t *valid = NULL;
    size_t cap = 0;
    long vlen = sf_wire_pack(&env, &valid, &cap);
    uint8_t buf[512];
    int sent = 0;
    for (int i = 0; i < count; i++) {
        size_t len;
        if (i % 2 == 0) {
            len = (size_t)(rand() % 300);
            for (size_t k = 0; k < len; k++) buf[k] = (uint8_t)rand();
        } else {
            len = (size_t)(rand() % (vlen - 1)) + 1; /* 1 .. vlen-1: always truncated */
            memcpy(buf, valid, len);
        }
        if (i % 50 == 0) {
            /* A multi-part message, which no peer of ours sends. */
            zmq_send(s, buf, len, ZMQ_SNDMORE);
            zmq_send(s, buf, len, 0);
        } else {
            zmq_send(s, buf, len, 0);
        }
        sent++;
    }
    free(valid);
    printf("%d\n", sent);
    return 0;
}

/* Waits for one answer and prints it; returns its body case, or -1. */
static int answer(void *s) {
    zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&pi, 1, ANSWER_MS) <= 0) {
        printf("no answer\n");
        return -1;
    }
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, s, 0);
    Sf__Envelope *e = sf__envelope__unpack(NULL, zmq_msg_size(&m), zmq_msg_data(&m));
    zmq_msg_close(&m);
    if (!e) {
        printf("undecodable answer\n");
        return -1;
    }
    int body = (int)e->body_case;
    if (e->body_case == SF__ENVELOPE__BODY_ERROR)
        printf("error code %d fatal %d version %u peer_version %u: %s\n", e->error->code, (int)e->error->fatal,
               e->error->version, e->error->peer_version, e->error->message);
    else if (e->body_case == SF__ENVELOPE__BODY_WELCOME)
        printf("welcome\n");
    else if (e->body_case == SF__ENVELOPE__BODY_REPLY)
        printf("reply code %d\n", e->reply->code);
    else
        printf("body %d\n", (int)e->body_case);
    sf__envelope__free_unpacked(e, NULL);
    return body;
}

static int send_hello(void *s, size_t id_len, uint32_t version) {
    char *id = malloc(id_len + 1);
    memset(id, 'w', id_len);
    id[id_len] = 0;
    char *kinds[] = {"noop"};
    Sf__Hello h = SF__HELLO__INIT;
    h.worker_id = id;
    h.n_kinds = 1;
    h.kinds = kinds;
    h.slots = 1;
    h.credit = 1;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_HELLO;
    env.hello = &h;
    uint8_t *buf;
    size_t n = pack_as(&env, version, &buf);
    zmq_send(s, buf, n, 0);
    free(buf);
    free(id);
    int got = answer(s);
    if (got == SF__ENVELOPE__BODY_WELCOME) {
        /* Joined: leave at once, so the coordinator gives it no job. */
        Sf__Shutdown bye = SF__SHUTDOWN__INIT;
        bye.reason = "sf_frames leaves";
        env.body_case = SF__ENVELOPE__BODY_SHUTDOWN;
        env.shutdown = &bye;
        n = pack_as(&env, version, &buf);
        zmq_send(s, buf, n, 0);
        free(buf);
    }
    return got < 0;
}

static int send_request(void *s, uint32_t version) {
    Sf__Request q = SF__REQUEST__INIT;
    q.tag = 7;
    q.op = SF__REQUEST__OP__STATS;
    Sf__Envelope env = SF__ENVELOPE__INIT;
    env.body_case = SF__ENVELOPE__BODY_REQUEST;
    env.request = &q;
    uint8_t *buf;
    size_t n = pack_as(&env, version, &buf);
    zmq_send(s, buf, n, 0);
    free(buf);
    return answer(s) < 0;
}

static int send_oversize(void *s, size_t bytes) {
    uint8_t *buf = calloc(bytes ? bytes : 1, 1);
    if (!buf) return 1;
    zmq_send(s, buf, bytes, 0);
    free(buf);
    return answer(s) < 0;
}

/* One [routing id][body] message off a ROUTER (close both after use). */
static void recv_frame(void *s, zmq_msg_t *rid, zmq_msg_t *body) {
    zmq_msg_init(rid);
    zmq_msg_init(body);
    zmq_msg_recv(rid, s, 0);
    zmq_msg_recv(body, s, 0);
}

/* A coordinator of protocol `version`: every frame is of another version
 * to it, and is refused so. */
static int serve(void *ctx, const char *ep, uint32_t version, int seconds) {
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s, ep) != 0) { perror("bind"); return 1; }
    int answered = 0;
    zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
    for (int left = seconds * 10; left > 0; left--) {
        if (zmq_poll(&pi, 1, 100) <= 0) continue;
        zmq_msg_t rid, body;
        recv_frame(s, &rid, &body);
        uint32_t theirs = 0, b = 0;
        sf_wire_peek(zmq_msg_data(&body), zmq_msg_size(&body), &theirs, &b);
        if (b != SF__ENVELOPE__BODY_ERROR) {
            char msg[200];
            snprintf(msg, sizeof msg, "protocol version %u is not spoken here: this coordinator speaks version %u",
                     theirs, version);
            Sf__Error e = SF__ERROR__INIT;
            e.code = SF_EPROTO;
            e.message = msg;
            e.version = version;
            e.peer_version = theirs;
            e.fatal = 1;
            Sf__Envelope env = SF__ENVELOPE__INIT;
            env.body_case = SF__ENVELOPE__BODY_ERROR;
            env.error = &e;
            uint8_t *buf;
            size_t n = pack_as(&env, version, &buf);
            zmq_send(s, zmq_msg_data(&rid), zmq_msg_size(&rid), ZMQ_SNDMORE);
            zmq_send(s, buf, n, 0);
            free(buf);
            answered++;
        }
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
    }
    zmq_close(s);
    printf("answered %d\n", answered);
    return 0;
}

static int send_env(void *s, zmq_msg_t *rid, Sf__Envelope *env) {
    uint8_t *buf;
    size_t n = pack_as(env, SF_PROTO_VERSION, &buf);
    zmq_send(s, zmq_msg_data(rid), zmq_msg_size(rid), ZMQ_SNDMORE);
    int rc = zmq_send(s, buf, n, 0);
    free(buf);
    return rc < 0 ? -1 : 0;
}

/* A coordinator of our version that hands one job of `bytes` payload bytes
 * to the first worker and reports what came back. */
static int serve_job(void *ctx, const char *ep, size_t bytes, int seconds) {
    void *s = zmq_socket(ctx, ZMQ_ROUTER);
    int linger = 1000;
    int64_t maxmsg = SF_WIRE_MAX_RECV;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    if (zmq_bind(s, ep) != 0) { perror("bind"); return 1; }
    uint8_t *payload = malloc(bytes ? bytes : 1);
    if (!payload) return 1;
    memset(payload, ' ', bytes);
    int sent = 0, rc = 1;
    zmq_pollitem_t pi = {s, 0, ZMQ_POLLIN, 0};
    for (int left = seconds * 10; left > 0 && rc; left--) {
        if (zmq_poll(&pi, 1, 100) <= 0) continue;
        zmq_msg_t rid, body;
        recv_frame(s, &rid, &body);
        Sf__Envelope *in = sf__envelope__unpack(NULL, zmq_msg_size(&body), zmq_msg_data(&body));
        if (in && in->body_case == SF__ENVELOPE__BODY_HELLO && !sent) {
            Sf__Welcome wel = SF__WELCOME__INIT;
            wel.epoch = 1;
            wel.heartbeat_ms = 1000;
            wel.liveness = 3;
            Sf__Envelope env = SF__ENVELOPE__INIT;
            env.body_case = SF__ENVELOPE__BODY_WELCOME;
            env.welcome = &wel;
            send_env(s, &rid, &env);
            Sf__Job job = SF__JOB__INIT, *jp = &job;
            job.id = ((uint64_t)1 << 32) | 0;
            job.attempt = 1;
            job.kind = "noop";
            job.run = "r1";
            job.wnid = "n01440764";
            job.item_count = 1;
            job.lease_ms = 600000;
            job.payload.data = payload;
            job.payload.len = bytes;
            Sf__JobBatch b = SF__JOB_BATCH__INIT;
            b.n_jobs = 1;
            b.jobs = &jp;
            env.body_case = SF__ENVELOPE__BODY_JOBS;
            env.jobs = &b;
            sent = send_env(s, &rid, &env) == 0;
        } else if (in && in->body_case == SF__ENVELOPE__BODY_RESULTS) {
            for (size_t i = 0; i < in->results->n_results; i++) {
                const Sf__Result *r = in->results->results[i];
                printf("result status %d: %s\n", (int)r->status, r->error ? r->error : "");
                rc = 0;
            }
        }
        if (in) sf__envelope__free_unpacked(in, NULL);
        zmq_msg_close(&rid);
        zmq_msg_close(&body);
    }
    if (rc) printf("no result\n");
    free(payload);
    zmq_close(s);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: see the file's comment\n"); return 2; }
    void *ctx = zmq_ctx_new();
    if (!strcmp(argv[2], "serve")) {
        int rc = argc == 5 ? serve(ctx, argv[1], (uint32_t)atoi(argv[3]), atoi(argv[4])) : 2;
        zmq_ctx_term(ctx);
        return rc;
    }
    if (!strcmp(argv[2], "job")) {
        int rc = argc == 5 ? serve_job(ctx, argv[1], (size_t)atol(argv[3]), atoi(argv[4])) : 2;
        zmq_ctx_term(ctx);
        return rc;
    }
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, argv[1]) != 0) { perror("connect"); return 1; }
    int rc;
    if (!strcmp(argv[2], "hello"))
        rc = send_hello(s, (size_t)atol(argv[3]), argc > 4 ? (uint32_t)atoi(argv[4]) : SF_PROTO_VERSION);
    else if (!strcmp(argv[2], "request"))
        rc = send_request(s, (uint32_t)atoi(argv[3]));
    else if (!strcmp(argv[2], "oversize"))
        rc = send_oversize(s, (size_t)atol(argv[3]));
    else {
        srand((unsigned)atoi(argv[3]));
        rc = flood(s, atoi(argv[2]));
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return rc;
}
