/* sf_frames: sends random and truncated frames to a ROUTER endpoint, as a
 * hostile or broken peer would.  Used by test_bad_frames.sh.
 *   sf_frames ENDPOINT COUNT SEED */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "common/net/wire.h"

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: sf_frames ENDPOINT COUNT SEED\n"); return 2; }
    int count = atoi(argv[2]);
    srand((unsigned)atoi(argv[3]));
    void *ctx = zmq_ctx_new(), *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 5000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, argv[1]) != 0) { perror("connect"); return 1; }
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
    zmq_close(s);
    zmq_ctx_term(ctx);
    printf("%d\n", sent);
    return 0;
}
