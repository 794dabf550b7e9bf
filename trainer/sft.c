/* sft.c: sf-train's SFT'd world caption policy: a small GPT-2 fine-tuned on
 * the world's SFT corpus (16 captions per class), prompt "Caption of a
 * {class}:" and the caption plus end-of-text as the response — the
 * starting point PPO needs.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bpe.h"
#include "common/error.h"
#include "ml/sf_ml.h"
#include "trainer/data.h"

#define SFT_VERSION 1
#define SFT_EPOCHS 3
#define SFT_BATCH 16
#define SFT_LR 1e-3f
#define SFT_STRIDE 64

int sf_train_sft(sf_train_ctx_t *c) {
    const sf_world_t *w = c->world;
    sf_bpe_t *bpe;
    char err[256];
    int rc = sf_bpe_load_gpt2(NULL, &bpe, err, sizeof err);
    if (rc) {
        fprintf(stderr, "sft: no GPT-2 vocabulary (%s); run make deps\n", err);
        return rc;
    }
    sf_gpt2_config_t cfg;
    sf_gpt2_config_124m(&cfg);
    cfg.n_layer = 2, cfg.n_head = 2, cfg.n_embd = 64, cfg.n_ctx = SFT_STRIDE;
    const int K = sf_world_n_classes(w), N = K * 16;
    const int steps = (int)((double)SFT_EPOCHS * N / SFT_BATCH * c->scale) + 1;
    char settings[256];
    snprintf(settings, sizeof settings, "sft v%d steps %d batch %d lr %g", SFT_VERSION, steps, SFT_BATCH, SFT_LR);
    uint64_t key = sf_train_hash(sf_train_world_fingerprint(w), settings, strlen(settings));
    key = sf_train_hash(key, &cfg, sizeof cfg);
    if (!c->force && sf_train_stamp_ok(c, "sft", key)) {
        fprintf(stderr, "sft: up to date\n");
        sf_bpe_free(&bpe);
        return 0;
    }
    /* The corpus as token rows: prompt, caption, end-of-text. */
    int32_t *seqs = calloc((size_t)N * SFT_STRIDE, sizeof *seqs);
    int *plen = calloc(N, sizeof *plen), *slen = calloc(N, sizeof *slen);
    if (!seqs || !plen || !slen) rc = SF_ENOMEM;
    for (int i = 0; rc == 0 && i < N; i++) {
        char prompt[256], cap[512];
        snprintf(prompt, sizeof prompt, "Caption of a %s:", sf_world_class(w, i / 16)->name);
        sf_world_corpus_caption(w, i / 16, i % 16, 1, cap + 1, sizeof cap - 1);
        cap[0] = ' ';
        int32_t *a, *b;
        size_t na, nb;
        if (sf_bpe_encode(bpe, prompt, strlen(prompt), &a, &na) || sf_bpe_encode(bpe, cap, strlen(cap), &b, &nb)) {
            rc = SF_EINVAL;
            break;
        }
        if (na + 2 > SFT_STRIDE) na = SFT_STRIDE - 2;
        if (na + nb + 1 > SFT_STRIDE) nb = SFT_STRIDE - 1 - na;
        memcpy(seqs + (size_t)i * SFT_STRIDE, a, na * sizeof *a);
        memcpy(seqs + (size_t)i * SFT_STRIDE + na, b, nb * sizeof *b);
        seqs[(size_t)i * SFT_STRIDE + na + nb] = sf_bpe_eot(bpe);
        plen[i] = (int)na, slen[i] = (int)(na + nb + 1);
        free(a);
        free(b);
    }
    sf_gpt2_t *m = NULL;
    if (rc == 0 && (rc = sf_gpt2_new(&cfg, "cpu", 2024, &m, err, sizeof err))) fprintf(stderr, "sft: %s\n", err);
    if (rc == 0)
        fprintf(stderr, "sft: %" PRId64 " parameters, %d captions, %d steps of %d\n", sf_gpt2_num_params(m), N, steps,
                SFT_BATCH);
    int32_t *bs = malloc(sizeof *bs * SFT_BATCH * SFT_STRIDE);
    int bp[SFT_BATCH], bl[SFT_BATCH];
    uint64_t r = 5;
    double t0 = sf_train_now(), lsum = 0, first = 0, last = 0;
    int cnt = 0;
    for (int step = 0; rc == 0 && step < steps; step++) {
        for (int j = 0; j < SFT_BATCH; j++) {
            int i = (int)(sf_train_rng(&r) % (uint64_t)N);
            memcpy(bs + (size_t)j * SFT_STRIDE, seqs + (size_t)i * SFT_STRIDE, sizeof *bs * SFT_STRIDE);
            bp[j] = plen[i], bl[j] = slen[i];
        }
        float loss = 0;
        if ((rc = sf_gpt2_sft_step(m, bs, bp, bl, SFT_BATCH, SFT_STRIDE, SFT_LR, 1.0f, &loss))) {
            fprintf(stderr, "sft: %s\n", sf_gpt2_errstr(m));
            break;
        }
        if (step == 0) first = loss;
        lsum += loss, cnt++;
        if ((step + 1) % 25 == 0 || step + 1 == steps) {
            char extra[64];
            last = lsum / cnt;
            snprintf(extra, sizeof extra, "loss %.3f", last);
            sf_train_progress("sft", step + 1, steps, t0, extra);
            lsum = 0, cnt = 0;
        }
    }
    if (rc == 0) {
        char path[1024], json[256];
        snprintf(path, sizeof path, "%s/policy-sft.safetensors", c->out);
        if ((rc = sf_gpt2_save(m, path))) fprintf(stderr, "sft: %s\n", sf_gpt2_errstr(m));
        snprintf(json, sizeof json, "{\"first_loss\": %.4f, \"final_loss\": %.4f, \"captions\": %d, \"steps\": %d}",
                 first, last, N, steps);
        if (rc == 0) rc = sf_train_quality_write(c, "sft", json);
        if (rc == 0) fprintf(stderr, "sft: %s\n", json);
    }
    if (rc == 0) rc = sf_train_stamp_write(c, "sft", key);
    free(bs);
    free(seqs);
    free(plen);
    free(slen);
    sf_gpt2_free(&m);
    sf_bpe_free(&bpe);
    return rc;
}
