/* bench_ml_gpt2.c: GPT-2 sampling and PPO step speed on this machine.
 *
 *   build/bench/bench_ml_gpt2 [--threads N] [--config tiny|124m|all] [--device cpu]
 *
 * (make bench runs it with no arguments: one thread, or $SF_THREADS; both
 * configurations, about 4 minutes on a 2-core machine.)
 *
 * For each configuration (random weights): tokens/s of KV-cache sampling and
 * of full recomputation for 32 new tokens after an 8-token prompt (batch 8),
 * the speed-up of the cache, and seconds per PPO step (4 epochs) at a stated
 * batch.  Figures go to docs/performance.md.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "ml/sf_ml.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    sf_gpt2_config_t cfg;
    int sample_batch, reps;
    int ppo_batch, ppo_mini, ppo_steps;
} bench_t;

enum { PROMPT = 8, NEW = 32 };

static double sample_rate(sf_gpt2_t *m, int B, int use_cache, int reps, double *secs) {
    int32_t *p = malloc(sizeof(int32_t) * B * PROMPT);
    int *pl = malloc(sizeof(int) * B);
    int V = sf_gpt2_config(m)->vocab_size;
    for (int i = 0; i < B * PROMPT; i++) p[i] = (i * 7919) % V;
    for (int i = 0; i < B; i++) pl[i] = PROMPT;
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = NEW;
    o.eos_id = -2;   /* always 32 tokens: the rate is per generated token */
    o.use_cache = use_cache;
    sf_samples_t s;
    sf_gpt2_sample(m, p, pl, B, PROMPT, &o, &s);   /* warm-up */
    sf_samples_free(&s);
    double t0 = now();
    for (int r = 0; r < reps; r++) {
        o.seed = (uint64_t)r;
        if (sf_gpt2_sample(m, p, pl, B, PROMPT, &o, &s)) {
            fprintf(stderr, "sample: %s\n", sf_gpt2_errstr(m));
            exit(1);
        }
        sf_samples_free(&s);
    }
    *secs = (now() - t0) / reps;
    free(p);
    free(pl);
    return B * NEW / *secs;
}

/* varied: responses of 8..32 tokens, as captions of different lengths in
 * one batch (the batch is padded to its longest); else all 32. */
static double ppo_step_secs(sf_gpt2_t *m, const bench_t *b, int varied) {
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    c.mini_batch_size = b->ppo_mini;
    sf_ppo_t *p;
    char err[256];
    if (sf_ppo_new(m, NULL, &c, &p, err, sizeof err)) {
        fprintf(stderr, "ppo: %s\n", err);
        exit(1);
    }
    int B = b->ppo_batch, V = b->cfg.vocab_size;
    int32_t *q = malloc(sizeof(int32_t) * B * PROMPT);
    int *ql = malloc(sizeof(int) * B);
    float *scores = malloc(sizeof(float) * B);
    for (int i = 0; i < B * PROMPT; i++) q[i] = (i * 104729) % V;
    for (int i = 0; i < B; i++) ql[i] = PROMPT;
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = NEW;
    o.eos_id = -2;
    sf_samples_t s;
    if (sf_gpt2_sample(m, q, ql, B, PROMPT, &o, &s)) exit(1);
    for (int i = 0; i < B; i++) scores[i] = (float)(i % 3) - 1.0f;
    if (varied)
        for (int i = 0; i < B; i++) s.lengths[i] = i == 0 ? NEW : 8 + (i * 7) % (NEW - 8);
    sf_ppo_batch_t batch = {B, PROMPT, NEW, q, ql, s.tokens, s.lengths, s.logprobs, s.values, scores};
    double total = 0;
    for (int r = 0; r < b->ppo_steps; r++) {
        sf_ppo_stats_t st;
        double t0 = now();
        if (sf_ppo_step(p, &batch, &st)) {
            fprintf(stderr, "ppo step: %s\n", sf_ppo_errstr(p));
            exit(1);
        }
        total += now() - t0;
    }
    sf_samples_free(&s);
    free(q);
    free(ql);
    free(scores);
    sf_ppo_free(&p);
    return total / b->ppo_steps;
}

int main(int argc, char **argv) {
    /* One thread unless told: the figures in docs/performance.md are
     * single-threaded because more threads than free cores cost 4-10x. */
    int threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    const char *which = "all", *device = "cpu";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) which = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--config tiny|124m|all] [--device D]\n", argv[0]);
            return 2;
        }
    }
    sf_ml_opts_t mo = {.threads = threads};
    sf_ml_init(&mo);
    printf("threads %d, device %s, BLAS %s\n", threads, device, sf_ml_blas_name());
    bench_t benches[2] = {
        {"tiny (2 layers, 2 heads, width 64, vocab 50257)", {2, 2, 64, 128, 50257, 50256, 1e-5f},
         8, 10, 32, 8, 3},
        {"124M (12 layers, 12 heads, width 768, vocab 50257)", {0}, 8, 2, 8, 4, 1},
    };
    sf_gpt2_config_124m(&benches[1].cfg);
    for (int k = 0; k < 2; k++) {
        bench_t *b = &benches[k];
        if (strcmp(which, "all") && strncasecmp(b->name, which, strlen(which))) continue;
        sf_gpt2_t *m;
        char err[256];
        if (sf_gpt2_new(&b->cfg, device, 1, &m, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        printf("\n%s, %lld parameters\n", b->name, (long long)sf_gpt2_num_params(m));
        double sc, sf;
        double rc = sample_rate(m, b->sample_batch, 1, b->reps, &sc);
        double rf = sample_rate(m, b->sample_batch, 0, b->reps, &sf);
        printf("  sampling, batch %d, prompt %d, %d new tokens:\n", b->sample_batch, PROMPT, NEW);
        printf("    KV cache          %8.1f tokens/s  (%.3f s per batch)\n", rc, sc);
        printf("    full recompute    %8.1f tokens/s  (%.3f s per batch)\n", rf, sf);
        printf("    cache speed-up    %8.1fx\n", sf / sc);
        double ps = ppo_step_secs(m, b, 0), pv = ppo_step_secs(m, b, 1);
        printf("  PPO step, batch %d (mini-batch %d, 4 epochs, query %d + response %d): %.3f s\n",
               b->ppo_batch, b->ppo_mini, PROMPT, NEW, ps);
        printf("  PPO step, the same with responses of 8-%d tokens (padded to %d): %.3f s\n", NEW, NEW, pv);
        sf_gpt2_free(&m);
    }
    return 0;
}
