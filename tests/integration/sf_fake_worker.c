/* sf_fake_worker: talks to sf-learner as a worker does — through the
 * worker's own learner client (worker/learner_client.h) on a libuv loop —
 * without a model: it fetches policy images (chunked, CRC-checked, and
 * checked here to be safetensors) and sends rollouts of random tokens.
 * Used by test_learner.sh.
 *   sf_fake_worker ENDPOINT RUN get MIN_VERSION
 *       prints: version V done D bytes N tensors T
 *   sf_fake_worker ENDPOINT RUN send POLICY_VERSION COUNT SEED VOCAB
 *       prints: accepted A stale S version V [error E]; each rollout has
 *       log-probs of a uniform policy (-ln VOCAB) and values 0, as a worker
 *       sends its behaviour policy's; send-bare sends none (a third-party
 *       worker that leaves them out)
 * With SF_CURVE_KEY and SF_CURVE_SERVER_KEY set it speaks CURVE. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <zmq.h>

#include "common/net/curve.h"
#include "worker/learner_client.h"
#include "common/formats/safetensors.h"

static int rc = 1;
static sf_lc_t *lc;

static void done(void) { uv_stop(uv_default_loop()); }

static void on_policy(void *arg, int status, const char *err, uint32_t version, const uint8_t *blob, size_t len,
                      int is_done) {
    (void)arg;
    if (status != 0) {
        printf("error %s\n", err);
        rc = 3;
    } else {
        char e2[256];
        sf_st_t *st = NULL;
        if (sf_st_parse(blob, len, 1, &st, e2, sizeof e2) != 0) {
            fprintf(stderr, "the policy image is not safetensors: %s\n", e2);
        } else {
            printf("version %u done %d bytes %zu tensors %d\n", version, is_done, len,
                   sf_st_count(st));
            rc = 0;
        }
        sf_st_free(&st);
    }
    sf_lc_close(lc, done);
}

static void on_ack(void *arg, int status, uint32_t accepted, uint32_t stale, uint32_t version, const char *err) {
    (void)arg;
    printf("accepted %u stale %u version %u%s%s\n", accepted, stale, version, status ? " error " : "",
           status && err ? err : "");
    rc = 0;
    sf_lc_close(lc, done);
}

int main(int argc, char **argv) {
    if (argc < 5) { fprintf(stderr, "usage: see the file's comment\n"); return 2; }
    /* CURVE as sfctl takes it: SF_CURVE_KEY (own .key), SF_CURVE_SERVER_KEY (the learner's .pub). */
    sf_curve_client_t cc;
    char cerr[700];
    if (sf_curve_client_load(getenv("SF_CURVE_KEY"), getenv("SF_CURVE_SERVER_KEY"), "SF_CURVE_KEY",
                             "SF_CURVE_SERVER_KEY", &cc, cerr, sizeof cerr) != 0) {
        fprintf(stderr, "%s\n", cerr);
        return 2;
    }
    sf_lc_set_curve(&cc);
    uv_loop_t *loop = uv_default_loop();
    void *ctx = zmq_ctx_new();
    if (sf_lc_init(loop, ctx, argv[1], &lc) != 0) { fprintf(stderr, "cannot connect\n"); return 1; }
    const char *run = argv[2];
    Sf__Rollout *ro = NULL, **rp = NULL;
    int32_t (*q)[4] = NULL, (*resp)[6] = NULL;
    float lp[6], val[6] = {0};
    if (!strcmp(argv[3], "get")) {
        sf_lc_get_policy(lc, run, (uint32_t)atoi(argv[4]), on_policy, NULL);
    } else if ((!strcmp(argv[3], "send") || !strcmp(argv[3], "send-bare")) && argc == 8) {
        int count = atoi(argv[5]), vocab = atoi(argv[7]), bare = !strcmp(argv[3], "send-bare");
        for (int k = 0; k < 6; k++) lp[k] = -logf((float)vocab);
        srand((unsigned)atoi(argv[6]));
        ro = calloc((size_t)count, sizeof *ro);
        rp = calloc((size_t)count, sizeof *rp);
        q = calloc((size_t)count, sizeof *q);
        resp = calloc((size_t)count, sizeof *resp);
        for (int i = 0; i < count; i++) {
            sf__rollout__init(&ro[i]);
            for (int k = 0; k < 4; k++) q[i][k] = rand() % vocab;
            for (int k = 0; k < 6; k++) resp[i][k] = rand() % vocab;
            ro[i].n_query = 4;
            ro[i].query = q[i];
            ro[i].n_response = 6;
            ro[i].response = resp[i];
            if (!bare) ro[i].n_logprobs = ro[i].n_values = 6, ro[i].logprobs = lp, ro[i].values = val;
            ro[i].score = (float)(rand() % 100) / 100.0f - 0.5f;
            rp[i] = &ro[i];
        }
        Sf__RolloutBatch b = SF__ROLLOUT_BATCH__INIT;
        b.run = (char *)run;
        b.policy_version = (uint32_t)atoi(argv[4]);
        b.n_rollouts = (size_t)count;
        b.rollouts = rp;
        sf_lc_send_rollouts(lc, &b, on_ack, NULL);
    } else {
        fprintf(stderr, "unknown command\n");
        return 2;
    }
    uv_run(loop, UV_RUN_DEFAULT);
    uv_run(loop, UV_RUN_NOWAIT);
    free(ro); free(rp); free(q); free(resp);
    zmq_ctx_term(ctx);
    return rc;
}
