/* bench_ml_gpt2.c: GPT-2 sampling and PPO step speed on this machine.
 *
 *   build/bench/bench_ml_gpt2 [--threads N] [--config tiny|124m|all] [--device cpu]
 *   build/bench/bench_ml_gpt2 --learner POLICY [--vocab DIR] [--updates N] [--threads N]
 *
 * (make bench runs it with no arguments: one thread, or $SF_THREADS; both
 * configurations, about 4 minutes on a 2-core machine.)
 *
 * For each configuration (random weights): tokens/s of KV-cache sampling and
 * of full recomputation for 32 new tokens after an 8-token prompt (batch 8),
 * the speed-up of the cache, and seconds per PPO step (4 epochs) at a stated
 * batch.  Figures go to docs/performance.md.
 *
 * --learner times the learner's PPO update on the demo's settings
 * (tools/demo.sh: batches of 32 rollouts, minibatches of 8, learning rate
 * 2e-4, initial beta 0.03, the prompt baseline, the rollouts' own log-probs
 * and values) with a real policy (models/policy-sft.safetensors): each
 * update's batch is four jobs of 8 rollouts on the prompt "Caption of a
 * {class}:" of the demo's classes, sampled as the workers do but by the
 * initial policy (rollouts of the policy being trained would make each
 * build time batches of its own: sampling amplifies the rounding of two
 * builds into different captions of different lengths) and scored by a
 * fixed function of the response; only sf_ppo_step() is timed.
 * tools/bench_learner.sh runs it for two builds side by side; with the same
 * batches their statistics after the last update agree up to rounding.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/runtime/hash.h"
#include "common/text/bpe.h"
#include "common/text/sft_rows.h"
#include "ml/sf_ml.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* The process's CPU time: on a machine whose cores other work shares, the
 * time the update computed rather than waited for a core. */
static double cpu_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
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

/* ---- the learner's update on the demo's settings ---- */

enum { DEMO_BATCH = 32, DEMO_PER_JOB = 8, DEMO_NEW = 32, DEMO_QMAX = 16 };

static const char *const demo_classes[] = {"stingray", "junco",     "bald eagle", "chameleon",  "scorpion",
                                           "jellyfish", "ladybug", "accordion",  "lighthouse", "pretzel"};

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A reward-like score in [-1, -0.5] that depends only on the response, so
 * that both builds see the same scores for the same tokens. */
static float demo_score(const int32_t *t, int n) {
    uint64_t h = sf_fnv1a(SF_HASH_BASIS, t, sizeof(int32_t) * (size_t)n);
    return -1.0f + 0.5f * (float)(h % 1000) / 1000.0f;
}

static int learner_bench(const char *policy_path, const char *vocab, int updates, int warmup) {
    char err[512];
    sf_bpe_t *bpe = NULL;
    sf_gpt2_t *ref = NULL, *pol = NULL;
    sf_ppo_t *p = NULL;
    if (sf_bpe_load_dir(vocab, &bpe, err, sizeof err) || sf_gpt2_load(policy_path, "cpu", &ref, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (sf_gpt2_clone(ref, &pol)) {
        fprintf(stderr, "clone: %s\n", sf_gpt2_errstr(ref));
        return 1;
    }
    sf_ppo_config_t c;
    sf_ppo_config_default(&c);
    c.mini_batch_size = 8;
    c.learning_rate = 2e-4f;
    c.init_kl_coef = 0.03f;
    c.prompt_baseline = 1;
    c.use_rollout_logprobs = 1;   /* the run spec's default: max_staleness 2 */
    c.seed = 1;
    if (sf_ppo_new(pol, ref, &c, &p, err, sizeof err)) {
        fprintf(stderr, "ppo: %s\n", err);
        return 1;
    }
    static int32_t q[DEMO_BATCH * DEMO_QMAX], resp[DEMO_BATCH * DEMO_NEW];
    static int ql[DEMO_BATCH], rl[DEMO_BATCH];
    static float lp[DEMO_BATCH * DEMO_NEW], val[DEMO_BATCH * DEMO_NEW], sc[DEMO_BATCH];
    double *secs = calloc((size_t)updates, sizeof *secs), *cpus = calloc((size_t)updates, sizeof *cpus);
    double total = 0, cpu_total = 0, toks = 0;
    sf_ppo_stats_t st = {0};
    for (int u = 0; u < warmup + updates; u++) {
        memset(q, 0, sizeof q);
        for (int j = 0; j < DEMO_BATCH / DEMO_PER_JOB; j++) {
            char prompt[128];
            int32_t *ids = NULL, *rows = NULL;
            size_t np = 0;
            sf_policy_prompt(demo_classes[(u * 4 + j) % 10], prompt, sizeof prompt);
            if (sf_bpe_encode(bpe, prompt, strlen(prompt), &ids, &np) || np > DEMO_QMAX) {
                fprintf(stderr, "cannot tokenise '%s' into %d ids\n", prompt, DEMO_QMAX);
                return 1;
            }
            int lens[DEMO_PER_JOB];
            rows = malloc(sizeof(int32_t) * np * DEMO_PER_JOB);
            for (int i = 0; i < DEMO_PER_JOB; i++) memcpy(rows + i * np, ids, sizeof(int32_t) * np), lens[i] = (int)np;
            sf_sample_opts_t o;
            sf_sample_opts_default(&o);
            o.max_new_tokens = DEMO_NEW;
            o.seed = 1000003ull * (uint64_t)u + (uint64_t)j;
            sf_samples_t s;
            if (sf_gpt2_sample(ref, rows, lens, DEMO_PER_JOB, (int)np, &o, &s)) {
                fprintf(stderr, "sample: %s\n", sf_gpt2_errstr(ref));
                return 1;
            }
            for (int i = 0; i < DEMO_PER_JOB; i++) {
                int r = j * DEMO_PER_JOB + i;
                memcpy(q + r * DEMO_QMAX, ids, sizeof(int32_t) * np);
                ql[r] = (int)np;
                rl[r] = s.lengths[i];
                memcpy(resp + r * DEMO_NEW, s.tokens + i * s.max_new, sizeof(int32_t) * DEMO_NEW);
                memcpy(lp + r * DEMO_NEW, s.logprobs + i * s.max_new, sizeof(float) * DEMO_NEW);
                memcpy(val + r * DEMO_NEW, s.values + i * s.max_new, sizeof(float) * DEMO_NEW);
                sc[r] = demo_score(resp + r * DEMO_NEW, rl[r]);
            }
            sf_samples_free(&s);
            free(rows);
            free(ids);
        }
        sf_ppo_batch_t b = {DEMO_BATCH, DEMO_QMAX, DEMO_NEW, q, ql, resp, rl, lp, val, sc};
        double t0 = now(), c0 = cpu_now();
        if (sf_ppo_step(p, &b, &st)) {
            fprintf(stderr, "ppo step: %s\n", sf_ppo_errstr(p));
            return 1;
        }
        double dt = now() - t0, dc = cpu_now() - c0;
        if (u < warmup) continue;
        secs[u - warmup] = dt;
        cpus[u - warmup] = dc;
        total += dt;
        cpu_total += dc;
        for (int i = 0; i < DEMO_BATCH; i++) toks += rl[i];
    }
    qsort(secs, (size_t)updates, sizeof *secs, cmp_double);
    qsort(cpus, (size_t)updates, sizeof *cpus, cmp_double);
    printf("learner PPO update, demo settings, %s: %d updates of %d rollouts (%.1f response tokens each)\n",
           policy_path, updates, DEMO_BATCH, toks / updates / DEMO_BATCH);
    printf("  last update: score %.4f kl %.4f entropy %.3f pg %.5f vf %.5f clipfrac %.4f approxkl %.5f\n",
           st.mean_score, st.kl, st.entropy, st.pg_loss, st.vf_loss, st.clipfrac, st.approxkl);
    printf("ppo_update_s mean %.4f median %.4f min %.4f\n", total / updates, secs[updates / 2], secs[0]);
    printf("ppo_update_cpu_s mean %.4f median %.4f min %.4f\n", cpu_total / updates, cpus[updates / 2], cpus[0]);
    free(secs);
    free(cpus);
    sf_ppo_free(&p);
    sf_gpt2_free(&pol);
    sf_gpt2_free(&ref);
    sf_bpe_free(&bpe);
    return 0;
}

int main(int argc, char **argv) {
    /* One thread unless told: the figures in docs/performance.md are
     * single-threaded because more threads than free cores cost 4-10x. */
    int threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    const char *which = "all", *device = "cpu", *learner = NULL, *vocab = "data/gpt2";
    int updates = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--learner") && i + 1 < argc) learner = argv[++i];
        else if (!strcmp(argv[i], "--vocab") && i + 1 < argc) vocab = argv[++i];
        else if (!strcmp(argv[i], "--updates") && i + 1 < argc) updates = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--config") && i + 1 < argc) which = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--threads N] [--config tiny|124m|all] [--device D]\n"
                            "       %s --learner POLICY [--vocab DIR] [--updates N] [--threads N]\n", argv[0], argv[0]);
            return 2;
        }
    }
    sf_ml_opts_t mo = {.threads = threads};
    sf_ml_init(&mo);
    printf("threads %d, device %s, BLAS %s\n", threads, device, sf_ml_blas_name());
    if (learner) return updates < 1 ? 2 : learner_bench(learner, vocab, updates, 2);
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
