/* sf_fake_worker: talks to sf-learner as a worker would, without a model —
 * fetches policy images (checking chunks and CRC, and that the image is a
 * safetensors file) and sends rollouts of random tokens.  Used by
 * test_learner.sh.
 *   sf_fake_worker ENDPOINT RUN get MIN_VERSION
 *       prints: version V updates U done D bytes N tensors T
 *   sf_fake_worker ENDPOINT RUN send POLICY_VERSION COUNT SEED VOCAB
 *       prints: accepted A stale S version V */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "common/blob.h"
#include "common/safetensors.h"
#include "common/wire.h"

static void *sock;

static Sf__Envelope *recv_env(int timeout_ms) {
    zmq_pollitem_t pi = {sock, 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&pi, 1, timeout_ms) <= 0) return NULL;
    zmq_msg_t m;
    zmq_msg_init(&m);
    zmq_msg_recv(&m, sock, 0);
    char err[256];
    Sf__Envelope *e = NULL;
    if (sf_wire_decode(zmq_msg_data(&m), zmq_msg_size(&m), &e, err, sizeof err) != 0) fprintf(stderr, "bad reply: %s\n", err);
    zmq_msg_close(&m);
    return e;
}

static void send_env(Sf__Envelope *e) {
    uint8_t *buf = NULL;
    size_t cap = 0;
    long n = sf_wire_pack(e, &buf, &cap);
    zmq_send(sock, buf, (size_t)n, 0);
    free(buf);
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: see the file's comment\n"); return 2; }
    void *ctx = zmq_ctx_new();
    sock = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 2000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect(sock, argv[1]);
    const char *run = argv[2];
    int rc = 1;
    if (!strcmp(argv[3], "get")) {
        Sf__PolicyGet g = SF__POLICY_GET__INIT;
        g.run = (char *)run;
        g.min_version = (uint32_t)atoi(argv[4]);
        Sf__Envelope e = SF__ENVELOPE__INIT;
        e.body_case = SF__ENVELOPE__BODY_POLICY_GET;
        e.policy_get = &g;
        send_env(&e);
        sf_blob_asm_t a = {0};
        for (;;) {
            Sf__Envelope *r = recv_env(60000);
            if (!r || r->body_case != SF__ENVELOPE__BODY_POLICY_CHUNK) { fprintf(stderr, "no policy chunk\n"); break; }
            Sf__PolicyChunk *c = r->policy_chunk;
            if (c->count == 0) {
                printf("error %s\n", c->error);
                sf_wire_free(r);
                rc = 3;
                break;
            }
            char err[256];
            int k = sf_blob_asm_add(&a, c->version, c->index, c->count, c->total_len, c->crc32, c->data.data,
                                    c->data.len, err, sizeof err);
            if (k < 0) { fprintf(stderr, "%s\n", err); sf_wire_free(r); break; }
            if (k == 1) {
                uint8_t *img;
                size_t len;
                sf_blob_asm_take(&a, &img, &len);
                sf_st_t *st = NULL;
                if (sf_st_parse(img, len, 1, &st, err, sizeof err) != 0) {
                    fprintf(stderr, "the policy image is not safetensors: %s\n", err);
                } else {
                    printf("version %u updates %llu done %d bytes %zu tensors %d\n", c->version,
                           (unsigned long long)c->updates, c->done, len, sf_st_count(st));
                    rc = 0;
                }
                sf_st_free(&st);
                free(img);
                sf_wire_free(r);
                break;
            }
            sf_wire_free(r);
        }
    } else if (!strcmp(argv[3], "send") && argc == 8) {
        int count = atoi(argv[5]), vocab = atoi(argv[7]);
        srand((unsigned)atoi(argv[6]));
        Sf__Rollout *ro = calloc((size_t)count, sizeof *ro), **rp = calloc((size_t)count, sizeof *rp);
        int32_t (*q)[4] = calloc((size_t)count, sizeof *q), (*resp)[6] = calloc((size_t)count, sizeof *resp);
        for (int i = 0; i < count; i++) {
            sf__rollout__init(&ro[i]);
            for (int k = 0; k < 4; k++) q[i][k] = rand() % vocab;
            for (int k = 0; k < 6; k++) resp[i][k] = rand() % vocab;
            ro[i].n_query = 4;
            ro[i].query = q[i];
            ro[i].n_response = 6;
            ro[i].response = resp[i];
            ro[i].score = (float)(rand() % 100) / 100.0f - 0.5f;
            rp[i] = &ro[i];
        }
        Sf__RolloutBatch b = SF__ROLLOUT_BATCH__INIT;
        b.run = (char *)run;
        b.policy_version = (uint32_t)atoi(argv[4]);
        b.n_rollouts = (size_t)count;
        b.rollouts = rp;
        Sf__Envelope e = SF__ENVELOPE__INIT;
        e.body_case = SF__ENVELOPE__BODY_ROLLOUTS;
        e.rollouts = &b;
        send_env(&e);
        Sf__Envelope *r = recv_env(30000);
        if (r && r->body_case == SF__ENVELOPE__BODY_ROLLOUT_ACK) {
            printf("accepted %u stale %u version %u%s%s\n", r->rollout_ack->accepted, r->rollout_ack->dropped_stale,
                   r->rollout_ack->version, *r->rollout_ack->error ? " error " : "", r->rollout_ack->error);
            rc = 0;
        } else {
            fprintf(stderr, "no ack\n");
        }
        sf_wire_free(r);
        free(ro); free(rp); free(q); free(resp);
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return rc;
}
