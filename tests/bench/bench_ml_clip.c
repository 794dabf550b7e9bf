/* bench_ml_clip.c: CLIP embedding speed on this machine.
 *
 *   build/bench/bench_ml_clip [--threads N] [--config world|b32|all]
 *
 * (make bench runs it with no arguments: one thread, or $SF_THREADS; both
 * configurations.)  Random weights; image embeddings/s at the config's image
 * size and text embeddings/s of 77-token texts (the world config: its
 * 32-token context), each in batches, best of a few repetitions.  Figures go
 * to docs/performance.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ml/sf_ml.h"
#include "ml/sf_vision.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int run(const char *name, const sf_clip_config_t *c, int img_batch, int txt_batch, int reps) {
    sf_clip_t *m;
    char err[256];
    if (sf_clip_new(c, "cpu", 1, &m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    const int S = c->image_size, T = c->context_length, E = c->embed_dim;
    float *px = malloc(sizeof(float) * img_batch * 3 * S * S);
    int32_t *tok = malloc(sizeof(int32_t) * txt_batch * T);
    float *out = malloc(sizeof(float) * (img_batch > txt_batch ? img_batch : txt_batch) * E);
    for (int i = 0; i < img_batch * 3 * S * S; i++) px[i] = (float)((i * 2654435761u) >> 24) / 128.0f - 1;
    for (int i = 0; i < txt_batch * T; i++) tok[i] = (int32_t)((i * 40503u) % (unsigned)(c->vocab_size - 2));
    for (int b = 0; b < txt_batch; b++) tok[b * T + T - 1] = c->eot_id;
    double best_i = 1e9, best_t = 1e9;
    sf_clip_encode_image(m, px, img_batch, out);   /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        if (sf_clip_encode_image(m, px, img_batch, out)) break;
        double t1 = now();
        if (sf_clip_encode_text(m, tok, txt_batch, T, out)) break;
        double t2 = now();
        if (t1 - t0 < best_i) best_i = t1 - t0;
        if (t2 - t1 < best_t) best_t = t2 - t1;
    }
    printf("%-6s %10lld params  image %dx%d: %8.1f embeddings/s (batch %d)  text %d tokens: %8.1f embeddings/s (batch %d)\n",
           name, (long long)sf_clip_num_params(m), S, S, img_batch / best_i, img_batch, T, txt_batch / best_t,
           txt_batch);
    free(px);
    free(tok);
    free(out);
    sf_clip_free(&m);
    return 0;
}

int main(int argc, char **argv) {
    int threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    const char *which = "all";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) which = argv[++i];
        else {
            fprintf(stderr, "usage: bench_ml_clip [--threads N] [--config world|b32|all]\n");
            return 2;
        }
    }
    sf_ml_opts_t o = {.threads = threads > 0 ? threads : 1};
    sf_ml_init(&o);
    printf("CLIP embeddings on CPU, %d thread(s), BLAS %s\n", o.threads, sf_ml_blas_name());
    int rc = 0;
    sf_clip_config_t c;
    if (!strcmp(which, "world") || !strcmp(which, "all")) {
        sf_clip_config_world(&c);
        c.vocab_size = 1445;   /* the world tokenizer's size */
        c.eot_id = 1444;
        rc |= run("world", &c, 256, 256, 5);
    }
    if (!strcmp(which, "b32") || !strcmp(which, "all")) {
        sf_clip_config_vit_b32(&c);
        rc |= run("b32", &c, 16, 32, 3);
    }
    return rc;
}
