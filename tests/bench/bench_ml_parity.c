/* bench_ml_parity.c: the shim's half of tools/bench_parity.py — training and
 * inference steps timed through the public C API, so that the script can
 * time the same computations in eager PyTorch (the same libtorch 1.13) and
 * compare.
 *
 *   build/bench/bench_ml_parity [--threads N] [--reps N] [--small] [--only NAME,...]
 *                               [--models DIR] [--malloc-default] [--json] [--list]
 *
 * This program is where the workloads are defined: each prints, with --json,
 * one line holding its full specification (configuration, batch, lengths,
 * optimiser settings), which the script reads to build its own inputs, so
 * the two sides cannot drift apart in shape.  Random weights throughout
 * (only time means anything here); every step runs once as a warm-up (which
 * also makes the optimiser's state), then reps times; the best time counts
 * (best_s: elapsed, monotonic clock; best_cpu_s: the process' CPU time, which
 * a busy shared machine disturbs less; minor_faults per repetition too).
 * --list prints the workloads' names.
 *
 *   lm-step       GPT-2 124M, next-token loss on 4 rows of 64 tokens (an
 *                 end-of-text token, then 63 to predict), backward, gradient
 *                 clipping at 1, Adam: sf_gpt2_sft_step with prompt length 1,
 *                 the path sf-train's pretraining takes (trainer/sft.c).
 *   sft-step      sf-train's SFT step of the world policy (the shipped
 *                 models/policy-sft.safetensors' configuration, 3 layers of
 *                 64): 16 rows of prompt 6-10 and response 6-21 tokens (the
 *                 world corpus' rows measure 6-10 and 5-21), Adam, lr 3e-3.
 *   ppo-step      the demo's PPO step of that policy: tools/demo.sh's run
 *                 settings read through the run-spec parser (batch 32,
 *                 mini-batch 8, 4 epochs, lr 2e-4, KL 0.03, prompt baseline,
 *                 the rollouts' own log-probs since max_staleness is 2), 4
 *                 prompts of 8 rollouts, responses of 6-21 tokens.  Before
 *                 each step (untimed) the rollouts are sampled afresh from the
 *                 current policy, so that the ratio guard never skips a
 *                 mini-batch.  The learner's path (ml/ppo.cpp: the fused
 *                 vocabulary head, packed positions, one-pass Adam).
 *   ppo-step-ref  the same step on the trainer's straightforward path
 *                 (log_softmax and gather on the padded logits,
 *                 torch::optim::Adam): the algorithm the PyTorch side
 *                 writes, so the like-for-like ratio.
 *   convnext-step, vit-step
 *                 sf_classifier_train_step of ConvNeXt-Atto, of ViT-Tiny:
 *                 16 images of 224x224, 1000 classes, AdamW (decay 0.05 on
 *                 matrices), label smoothing 0.1.
 *   gpt2-sample   KV-cache sampling from GPT-2 124M: 8 prompts of 8 tokens,
 *                 32 new tokens each (no early stop).
 *   clip-image, clip-text
 *                 CLIP ViT-B/32 embeddings of 16 images of 224x224, of 16
 *                 texts of 77 tokens (end token at 10-76).
 * --small shrinks the GPT-2 124M, CLIP and classifier shapes to seconds (the
 * policy's rows stay the demo's, which are small already): what running it
 * with no arguments does, for a quick look.  One thread unless told.
 */
#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/method/contract.h"
#include "common/method/run_spec.h"
#include "common/runtime/clock.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"

#define MAX_REPS 100

typedef struct {
    int threads, reps, small, json, malloc_default;
    const char *only;
    const char *models;
} opts_t;

/* One measured workload: what the JSON line and the table show. */
typedef struct {
    const char *name;
    char shape[96];
    cJSON *spec;        /* the workload's definition, for the script */
    cJSON *check;       /* values of the last step, to see that both sides did the work */
    double times[MAX_REPS], cpu[MAX_REPS];   /* elapsed (monotonic) and process CPU seconds of each rep */
    double faults[MAX_REPS];                 /* minor page faults of each rep */
    int n_times;
} result_t;

/* A step to time: prep (may be NULL) runs untimed before each call of step. */
typedef int (*step_fn)(void *state, result_t *r);

/* Process CPU seconds: on a shared machine, the work done whatever the
 * scheduler did meanwhile (with one thread; with more it sums them). */
static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double minor_faults(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_minflt;
}

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

static void die(const char *what, const char *why) {
    fprintf(stderr, "bench_ml_parity: %s: %s\n", what, why);
    exit(1);
}

/* Warm-up, then o->reps timed calls of step, each after an untimed prep. */
static void run_steps(const opts_t *o, result_t *r, void *state, step_fn prep, step_fn step) {
    if ((prep && prep(state, r)) || step(state, r)) die(r->name, sf_ml_errstr());
    for (int i = 0; i < o->reps; i++) {
        if (prep && prep(state, r)) die(r->name, sf_ml_errstr());
        double t0 = sf_clock_mono_s(), c0 = cpu_s(), f0 = minor_faults();
        if (step(state, r)) die(r->name, sf_ml_errstr());
        r->faults[r->n_times] = minor_faults() - f0;
        r->cpu[r->n_times] = cpu_s() - c0;
        r->times[r->n_times++] = sf_clock_mono_s() - t0;
    }
}

static cJSON *int_array(const int *v, int n) { return cJSON_CreateIntArray(v, n); }

static cJSON *gpt2_json(const sf_gpt2_config_t *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(j, "n_head", c->n_head);
    cJSON_AddNumberToObject(j, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(j, "n_ctx", c->n_ctx);
    cJSON_AddNumberToObject(j, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(j, "eos_id", c->eos_id);
    cJSON_AddNumberToObject(j, "ln_eps", c->ln_eps);
    return j;
}

/* The GPT-2 of the large rows: 124M, or with --small 2 layers of 128 (the
 * vocabulary stays GPT-2's: its projection is what these steps cost). */
static void gpt2_big(const opts_t *o, sf_gpt2_config_t *c) {
    sf_gpt2_config_124m(c);
    if (o->small) c->n_layer = 2, c->n_head = 4, c->n_embd = 128, c->n_ctx = 128;
}

static sf_gpt2_t *gpt2_make(const sf_gpt2_config_t *c, const char *what) {
    sf_gpt2_t *m;
    char err[256];
    if (sf_gpt2_new(c, "cpu", 1, &m, err, sizeof err)) die(what, err);
    return m;
}

/* The world policy's configuration, from the shipped checkpoint. */
static void policy_config(const opts_t *o, sf_gpt2_config_t *c) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/%s", o->models, SF_POLICY_SFT_FILE);
    sf_gpt2_t *m;
    if (sf_gpt2_load(path, "cpu", &m, err, sizeof err)) die("the world policy", err);
    *c = *sf_gpt2_config(m);
    sf_gpt2_free(&m);
}

/* Prompt and response lengths of row i: 6-10 and 6-21 tokens, spread as the
 * world's SFT rows are (their means 7 and 12; these 8 and 13). */
static int row_prompt(int i) { return 6 + (i * 3) % 5; }
static int row_response(int i) { return 6 + (i * 5) % 16; }

/* ---- SFT steps (the LM step is one with prompts of one token) ---- */

typedef struct {
    sf_gpt2_t *m;
    int32_t *seqs;
    int *plen, *slen;
    int n, stride;
    float lr, clip;
} sft_t;

static int sft_step(void *state, result_t *r) {
    sft_t *s = state;
    float loss = 0;
    int rc = sf_gpt2_sft_step(s->m, s->seqs, s->plen, s->slen, s->n, s->stride, s->lr, s->clip, &loss);
    if (rc) return rc;
    cJSON_DeleteItemFromObject(r->check, "loss");
    cJSON_AddNumberToObject(r->check, "loss", loss);
    return 0;
}

static void bench_sft(const opts_t *o, result_t *r, const sf_gpt2_config_t *c, int n, int stride, int lm,
                      float lr, float clip) {
    sft_t s = {gpt2_make(c, r->name), malloc(sizeof(int32_t) * n * stride), malloc(sizeof(int) * n),
               malloc(sizeof(int) * n), n, stride, lr, clip};
    uint32_t seed = 7;
    for (int i = 0; i < n; i++) {
        s.plen[i] = lm ? 1 : row_prompt(i);
        s.slen[i] = lm ? stride : s.plen[i] + row_response(i);
        for (int t = 0; t < stride; t++)
            s.seqs[i * stride + t] = t < s.slen[i] ? (int32_t)(lcg(&seed) % (uint32_t)(c->vocab_size - 1)) : 0;
        if (lm) s.seqs[i * stride] = c->eos_id;   /* plain text rows start with end-of-text */
    }
    int tokens = 0;
    for (int i = 0; i < n; i++) tokens += s.slen[i] - s.plen[i];
    if (lm) snprintf(r->shape, sizeof r->shape, "GPT-2 %dLx%d, %d x %d tokens", c->n_layer, c->n_embd, n, stride);
    else snprintf(r->shape, sizeof r->shape, "GPT-2 %dLx%d, %d rows, %d loss tokens", c->n_layer, c->n_embd, n, tokens);
    cJSON_AddStringToObject(r->spec, "kind", "sft_step");
    cJSON_AddItemToObject(r->spec, "config", gpt2_json(c));
    cJSON_AddNumberToObject(r->spec, "n", n);
    cJSON_AddNumberToObject(r->spec, "stride", stride);
    cJSON_AddItemToObject(r->spec, "prompt_lens", int_array(s.plen, n));
    cJSON_AddItemToObject(r->spec, "seq_lens", int_array(s.slen, n));
    cJSON_AddNumberToObject(r->spec, "lr", lr);
    cJSON_AddNumberToObject(r->spec, "max_grad_norm", clip);
    cJSON_AddStringToObject(r->spec, "optimizer", "Adam (torch defaults, no weight decay)");
    run_steps(o, r, &s, NULL, sft_step);
    sf_gpt2_free(&s.m);
    free(s.seqs);
    free(s.plen);
    free(s.slen);
}

static void bench_lm(const opts_t *o, result_t *r) {
    sf_gpt2_config_t c;
    gpt2_big(o, &c);
    /* sf-train's pretraining settings: gradient clipping at 1 (PRE_CLIP). */
    bench_sft(o, r, &c, 4, 64, 1, 1e-4f, 1.0f);
}

static void bench_sft_policy(const opts_t *o, result_t *r) {
    sf_gpt2_config_t c;
    policy_config(o, &c);
    /* sf-train's SFT: batch 16, rows of 64, lr up to 3e-3, no clipping. */
    bench_sft(o, r, &c, 16, 64, 0, 3e-3f, 0.0f);
}

/* ---- the demo's PPO step ---- */

typedef struct {
    sf_gpt2_t *m;
    sf_ppo_t *ppo;
    sf_ppo_batch_t b;
    int32_t *query;
    int *qlen, *rlen;
    float *scores;
    sf_samples_t rollouts;
    int max_new, qstride;
    uint64_t round;
} ppo_t;

/* The demo's PPO settings as the learner makes them (learner/runs.c): the
 * run spec tools/demo.sh submits, through the run-spec parser for every
 * default it leaves out, onto the trainer's defaults. */
static int demo_ppo(sf_ppo_config_t *pc, int *batch) {
    static const char demo[] = "{\"ppo\": {\"batch_size\": 32, \"mini_batch_size\": 8, \"learning_rate\": 0.0002, "
                               "\"init_kl_coef\": 0.03, \"prompt_baseline\": 1}}";
    cJSON *spec = cJSON_Parse(demo);
    sf_ppo_spec_t ps;
    char err[256];
    sf_ppo_spec_init(&ps);
    int rc = sf_ppo_spec_parse(spec, &ps, err, sizeof err);
    cJSON_Delete(spec);
    if (rc) die("the demo's PPO settings", err);
    sf_ppo_config_default(pc);
    *batch = (int)ps.batch_size;
    pc->mini_batch_size = (int)ps.mini_batch_size;
    pc->ppo_epochs = (int)ps.ppo_epochs;
    pc->prompt_baseline = (int)ps.prompt_baseline;
    pc->use_rollout_logprobs = (int)ps.use_rollout_logprobs;
    pc->learning_rate = (float)ps.learning_rate;
    pc->init_kl_coef = (float)ps.init_kl_coef;
    return 0;
}

/* Fresh rollouts from the current policy: the responses and their log-probs
 * and values, cut to the fixed lengths. */
static int ppo_prep(void *state, result_t *r) {
    (void)r;
    ppo_t *p = state;
    sf_samples_free(&p->rollouts);
    sf_sample_opts_t so;
    sf_sample_opts_default(&so);
    so.max_new_tokens = p->max_new;
    so.eos_id = -2;
    so.seed = p->round++;
    int rc = sf_gpt2_sample(p->m, p->query, p->qlen, p->b.n, p->qstride, &so, &p->rollouts);
    if (rc) return rc;
    p->b.response = p->rollouts.tokens;
    p->b.logprobs = p->rollouts.logprobs;
    p->b.values = p->rollouts.values;
    return 0;
}

static int ppo_step(void *state, result_t *r) {
    ppo_t *p = state;
    sf_ppo_stats_t st;
    int rc = sf_ppo_step(p->ppo, &p->b, &st);
    if (rc) {
        fprintf(stderr, "ppo: %s\n", sf_ppo_errstr(p->ppo));
        return rc;
    }
    cJSON_Delete(r->check);
    r->check = cJSON_CreateObject();
    cJSON_AddNumberToObject(r->check, "minibatches", st.minibatches);
    cJSON_AddNumberToObject(r->check, "skipped", st.skipped);
    cJSON_AddNumberToObject(r->check, "ratio_mean", st.ratio_mean);
    return 0;
}

/* ml/ppo.cpp's hook (test_ml_ppo.c holds the two paths equal): on, the
 * trainer takes the straightforward path -- log_softmax and gather on the
 * padded batch's logits, torch::optim::Adam -- the same algorithm as the
 * eager PyTorch side, instead of the fused head and packed positions the
 * learner runs. */
void sf__ppo_reference(sf_ppo_t *p, int on);

static void bench_ppo_path(const opts_t *o, result_t *r, int reference) {
    sf_gpt2_config_t c;
    policy_config(o, &c);
    sf_ppo_config_t pc;
    int n;
    demo_ppo(&pc, &n);
    sf_shift_params_t run;
    sf_shift_params_init(&run);
    const int group = (int)run.rollouts_per_job, max_new = (int)run.max_new_tokens;
    ppo_t p = {.m = gpt2_make(&c, r->name), .max_new = max_new, .qstride = 10};
    char err[256];
    if (sf_ppo_new(p.m, NULL, &pc, &p.ppo, err, sizeof err)) die(r->name, err);
    sf__ppo_reference(p.ppo, reference);
    p.query = calloc((size_t)n * p.qstride, sizeof *p.query);
    p.qlen = malloc(sizeof(int) * n);
    p.rlen = malloc(sizeof(int) * n);
    p.scores = malloc(sizeof(float) * n);
    /* A rollout job samples `group` captions of one prompt: rows of a group
     * share their query (what the prompt baseline groups by). */
    int groups[n];
    uint32_t seed = 11;
    for (int i = 0; i < n; i++) {
        int g = i / group;
        groups[i] = g;
        p.qlen[i] = row_prompt(g);
        p.rlen[i] = row_response(i);
        int32_t *row = p.query + i * p.qstride;
        if (i % group == 0)
            for (int t = 0; t < p.qlen[i]; t++) row[t] = (int32_t)(lcg(&seed) % (uint32_t)(c.vocab_size - 1));
        else memcpy(row, row - p.qstride, sizeof(int32_t) * p.qstride);
        p.scores[i] = (float)((i * 7) % 5) * 0.25f - 0.5f;
    }
    p.b = (sf_ppo_batch_t){n, p.qstride, max_new, p.query, p.qlen, NULL, p.rlen, NULL, NULL, p.scores};
    int resp = 0;
    for (int i = 0; i < n; i++) resp += p.rlen[i];
    snprintf(r->shape, sizeof r->shape, "GPT-2 %dLx%d, %d rollouts, %d resp. tokens", c.n_layer, c.n_embd, n, resp);
    cJSON_AddStringToObject(r->spec, "kind", "ppo_step");
    cJSON_AddItemToObject(r->spec, "config", gpt2_json(&c));
    cJSON_AddNumberToObject(r->spec, "n", n);
    cJSON_AddItemToObject(r->spec, "query_lens", int_array(p.qlen, n));
    cJSON_AddItemToObject(r->spec, "response_lens", int_array(p.rlen, n));
    cJSON_AddItemToObject(r->spec, "query_group", int_array(groups, n));
    cJSON_AddNumberToObject(r->spec, "max_new", max_new);
    cJSON *ppo = cJSON_AddObjectToObject(r->spec, "ppo");
    cJSON_AddNumberToObject(ppo, "learning_rate", pc.learning_rate);
    cJSON_AddNumberToObject(ppo, "mini_batch_size", pc.mini_batch_size);
    cJSON_AddNumberToObject(ppo, "ppo_epochs", pc.ppo_epochs);
    cJSON_AddNumberToObject(ppo, "gamma", pc.gamma);
    cJSON_AddNumberToObject(ppo, "lam", pc.lam);
    cJSON_AddNumberToObject(ppo, "cliprange", pc.cliprange);
    cJSON_AddNumberToObject(ppo, "cliprange_value", pc.cliprange_value);
    cJSON_AddNumberToObject(ppo, "vf_coef", pc.vf_coef);
    cJSON_AddNumberToObject(ppo, "init_kl_coef", pc.init_kl_coef);
    cJSON_AddNumberToObject(ppo, "target", pc.target);
    cJSON_AddNumberToObject(ppo, "horizon", pc.horizon);
    cJSON_AddNumberToObject(ppo, "max_grad_norm", pc.max_grad_norm);
    cJSON_AddNumberToObject(ppo, "ratio_threshold", pc.ratio_threshold);
    cJSON_AddNumberToObject(ppo, "prompt_baseline", pc.prompt_baseline);
    cJSON_AddNumberToObject(ppo, "use_rollout_logprobs", pc.use_rollout_logprobs);
    cJSON_AddNumberToObject(ppo, "adap_kl_ctrl", pc.adap_kl_ctrl);
    cJSON_AddNumberToObject(ppo, "use_score_scaling", pc.use_score_scaling);
    cJSON_AddNumberToObject(ppo, "whiten_rewards", pc.whiten_rewards);
    cJSON_AddNumberToObject(ppo, "score_clip", pc.score_clip);
    cJSON_AddNumberToObject(ppo, "kl_penalty", pc.kl_penalty);
    cJSON_AddNumberToObject(ppo, "early_stopping", pc.early_stopping);
    if (pc.use_score_scaling || pc.whiten_rewards || pc.score_clip > 0 || pc.kl_penalty != SF_KL_KL ||
        pc.early_stopping || !pc.use_rollout_logprobs)
        die(r->name, "the demo's PPO settings changed: tools/bench_parity.py mirrors only the path they took");
    run_steps(o, r, &p, ppo_prep, ppo_step);
    sf_samples_free(&p.rollouts);
    sf_ppo_free(&p.ppo);
    sf_gpt2_free(&p.m);
    free(p.query);
    free(p.qlen);
    free(p.rlen);
    free(p.scores);
}

/* ppo-step: the learner's path; ppo-step-ref: the same step on the path
 * written as eager PyTorch writes it, the like-for-like comparison. */
static void bench_ppo(const opts_t *o, result_t *r) { bench_ppo_path(o, r, 0); }
static void bench_ppo_ref(const opts_t *o, result_t *r) { bench_ppo_path(o, r, 1); }

/* ---- classifiers ---- */

typedef struct {
    sf_classifier_t *m;
    float *pixels;
    int *labels;
    int B;
} cls_t;

static int cls_step(void *state, result_t *r) {
    cls_t *s = state;
    float loss = 0;
    int rc = sf_classifier_train_step(s->m, s->pixels, s->labels, s->B, 1e-3f, &loss, NULL);
    if (rc) {
        fprintf(stderr, "classifier: %s\n", sf_classifier_errstr(s->m));
        return rc;
    }
    cJSON_DeleteItemFromObject(r->check, "loss");
    cJSON_AddNumberToObject(r->check, "loss", loss);
    return 0;
}

static cJSON *cls_json(const sf_classifier_config_t *c) {
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "arch", c->arch == SF_CLS_CONVNEXT ? "convnext" : "vit");
    cJSON_AddNumberToObject(j, "n_classes", c->n_classes);
    cJSON_AddNumberToObject(j, "image_size", c->image_size);
    cJSON_AddItemToObject(j, "depths", int_array(c->depths, c->n_stages));
    cJSON_AddItemToObject(j, "dims", int_array(c->dims, c->n_stages));
    cJSON_AddNumberToObject(j, "conv_mlp", c->conv_mlp);
    cJSON_AddNumberToObject(j, "stem_patch", c->stem_patch);
    cJSON_AddNumberToObject(j, "ls_init", c->ls_init);
    cJSON_AddNumberToObject(j, "patch_size", c->patch_size);
    cJSON_AddNumberToObject(j, "width", c->width);
    cJSON_AddNumberToObject(j, "depth", c->depth);
    cJSON_AddNumberToObject(j, "heads", c->heads);
    cJSON_AddNumberToObject(j, "mlp_ratio", c->mlp_ratio);
    cJSON_AddNumberToObject(j, "ln_eps", c->ln_eps);
    return j;
}

static void bench_cls(const opts_t *o, result_t *r, sf_cls_arch_t arch) {
    sf_classifier_config_t c;
    const int B = 16;
    if (arch == SF_CLS_CONVNEXT) sf_classifier_config_convnext_atto(&c, 1000);
    else sf_classifier_config_vit_tiny(&c, 1000);
    if (o->small) c.image_size = 64, c.n_classes = 100;
    cls_t s = {NULL, malloc(sizeof(float) * B * 3 * c.image_size * c.image_size), malloc(sizeof(int) * B), B};
    char err[256];
    if (sf_classifier_new(&c, "cpu", 1, &s.m, err, sizeof err)) die(r->name, err);
    uint32_t seed = 3;
    for (int i = 0; i < B * 3 * c.image_size * c.image_size; i++)
        s.pixels[i] = (float)(lcg(&seed) >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
    for (int i = 0; i < B; i++) s.labels[i] = (int)(lcg(&seed) % (uint32_t)c.n_classes);
    snprintf(r->shape, sizeof r->shape, "%d x %dx%d, %d classes", B, c.image_size, c.image_size, c.n_classes);
    cJSON_AddStringToObject(r->spec, "kind", "cls_step");
    cJSON_AddItemToObject(r->spec, "config", cls_json(&c));
    cJSON_AddNumberToObject(r->spec, "B", B);
    cJSON_AddNumberToObject(r->spec, "lr", 1e-3);
    cJSON_AddNumberToObject(r->spec, "weight_decay", 0.05);
    cJSON_AddNumberToObject(r->spec, "label_smoothing", 0.1);
    run_steps(o, r, &s, NULL, cls_step);
    sf_classifier_free(&s.m);
    free(s.pixels);
    free(s.labels);
}

static void bench_convnext(const opts_t *o, result_t *r) { bench_cls(o, r, SF_CLS_CONVNEXT); }
static void bench_vit(const opts_t *o, result_t *r) { bench_cls(o, r, SF_CLS_VIT); }

/* ---- inference ---- */

typedef struct {
    sf_gpt2_t *m;
    int32_t *prompts;
    int *plen;
    int B, P, N;
} sample_t;

static int sample_step(void *state, result_t *r) {
    sample_t *s = state;
    sf_sample_opts_t so;
    sf_sample_opts_default(&so);
    so.max_new_tokens = s->N;
    so.eos_id = -2;   /* always N tokens */
    sf_samples_t out;
    int rc = sf_gpt2_sample(s->m, s->prompts, s->plen, s->B, s->P, &so, &out);
    if (rc) return rc;
    long total = 0;
    for (int i = 0; i < s->B; i++) total += out.lengths[i];
    cJSON_DeleteItemFromObject(r->check, "tokens");
    cJSON_AddNumberToObject(r->check, "tokens", (double)total);
    sf_samples_free(&out);
    return 0;
}

static void bench_sample(const opts_t *o, result_t *r) {
    sf_gpt2_config_t c;
    gpt2_big(o, &c);
    sample_t s = {gpt2_make(&c, r->name), NULL, NULL, 8, 8, 32};
    s.prompts = malloc(sizeof(int32_t) * s.B * s.P);
    s.plen = malloc(sizeof(int) * s.B);
    uint32_t seed = 5;
    for (int i = 0; i < s.B * s.P; i++) s.prompts[i] = (int32_t)(lcg(&seed) % (uint32_t)(c.vocab_size - 1));
    for (int i = 0; i < s.B; i++) s.plen[i] = s.P;
    snprintf(r->shape, sizeof r->shape, "GPT-2 %dLx%d, %d x (%d + %d new)", c.n_layer, c.n_embd, s.B, s.P, s.N);
    cJSON_AddStringToObject(r->spec, "kind", "sample");
    cJSON_AddItemToObject(r->spec, "config", gpt2_json(&c));
    cJSON_AddNumberToObject(r->spec, "B", s.B);
    cJSON_AddNumberToObject(r->spec, "prompt", s.P);
    cJSON_AddNumberToObject(r->spec, "new", s.N);
    run_steps(o, r, &s, NULL, sample_step);
    sf_gpt2_free(&s.m);
    free(s.prompts);
    free(s.plen);
}

typedef struct {
    sf_clip_t *m;
    float *pixels, *out;
    int32_t *tokens;
    int B, T;
} clip_t;

static void clip_norm_check(result_t *r, const float *e, int E) {
    double s = 0;
    for (int i = 0; i < E; i++) s += (double)e[i] * e[i];
    cJSON_DeleteItemFromObject(r->check, "norm0");
    cJSON_AddNumberToObject(r->check, "norm0", s);
}

static int clip_image_step(void *state, result_t *r) {
    clip_t *s = state;
    int rc = sf_clip_encode_image(s->m, s->pixels, s->B, s->out);
    if (rc == 0) clip_norm_check(r, s->out, sf_clip_config(s->m)->embed_dim);
    return rc;
}

static int clip_text_step(void *state, result_t *r) {
    clip_t *s = state;
    int rc = sf_clip_encode_text(s->m, s->tokens, s->B, s->T, s->out);
    if (rc == 0) clip_norm_check(r, s->out, sf_clip_config(s->m)->embed_dim);
    return rc;
}

static cJSON *clip_json(const sf_clip_config_t *c) {
    cJSON *j = cJSON_CreateObject();
    const struct { const char *k; int v; } f[] = {
        {"image_size", c->image_size}, {"patch_size", c->patch_size}, {"vision_width", c->vision_width},
        {"vision_layers", c->vision_layers}, {"vision_heads", c->vision_heads}, {"vision_mlp", c->vision_mlp},
        {"vocab_size", c->vocab_size}, {"context_length", c->context_length}, {"text_width", c->text_width},
        {"text_layers", c->text_layers}, {"text_heads", c->text_heads}, {"text_mlp", c->text_mlp},
        {"eot_id", c->eot_id}, {"embed_dim", c->embed_dim}, {"quick_gelu", c->quick_gelu},
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) cJSON_AddNumberToObject(j, f[i].k, f[i].v);
    cJSON_AddNumberToObject(j, "ln_eps", c->ln_eps);
    return j;
}

static void bench_clip(const opts_t *o, result_t *r, int text) {
    sf_clip_config_t c;
    const char *model = o->small ? "world CLIP" : "ViT-B/32";
    if (o->small) {
        sf_clip_config_world(&c);
        c.vocab_size = 49408;   /* the world's is its tokenizer's; any works for speed */
    } else {
        sf_clip_config_vit_b32(&c);
    }
    clip_t s = {NULL, NULL, malloc(sizeof(float) * 16 * c.embed_dim), NULL, 16, c.context_length};
    char err[256];
    if (sf_clip_new(&c, "cpu", 1, &s.m, err, sizeof err)) die(r->name, err);
    uint32_t seed = 9;
    cJSON_AddStringToObject(r->spec, "kind", text ? "clip_text" : "clip_image");
    cJSON_AddItemToObject(r->spec, "config", clip_json(&c));
    cJSON_AddNumberToObject(r->spec, "B", s.B);
    if (text) {
        /* start token, words, the end token at 10..T-1, then zeros (as CLIP's tokenizer pads) */
        int eot[16];
        s.tokens = calloc((size_t)s.B * s.T, sizeof *s.tokens);
        for (int i = 0; i < s.B; i++) {
            eot[i] = 10 + (i * 13) % (s.T - 10);
            s.tokens[i * s.T] = c.eot_id - 1;
            for (int t = 1; t < eot[i]; t++)
                s.tokens[i * s.T + t] = (int32_t)(lcg(&seed) % (uint32_t)(c.vocab_size - 2));
            s.tokens[i * s.T + eot[i]] = c.eot_id;
        }
        snprintf(r->shape, sizeof r->shape, "%s, %d x %d tokens", model, s.B, s.T);
        cJSON_AddNumberToObject(r->spec, "T", s.T);
        cJSON_AddItemToObject(r->spec, "eot_pos", int_array(eot, s.B));
        run_steps(o, r, &s, NULL, clip_text_step);
    } else {
        const int n = s.B * 3 * c.image_size * c.image_size;
        s.pixels = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++) s.pixels[i] = (float)(lcg(&seed) >> 8) / (float)(1u << 24) * 4.0f - 2.0f;
        snprintf(r->shape, sizeof r->shape, "%s, %d x %dx%d", model, s.B, c.image_size, c.image_size);
        run_steps(o, r, &s, NULL, clip_image_step);
    }
    sf_clip_free(&s.m);
    free(s.pixels);
    free(s.tokens);
    free(s.out);
}

static void bench_clip_image(const opts_t *o, result_t *r) { bench_clip(o, r, 0); }
static void bench_clip_text(const opts_t *o, result_t *r) { bench_clip(o, r, 1); }

/* ---- main ---- */

static const struct {
    const char *name;
    void (*fn)(const opts_t *, result_t *);
} workloads[] = {
    {"lm-step", bench_lm},           {"sft-step", bench_sft_policy}, {"ppo-step", bench_ppo},
    {"ppo-step-ref", bench_ppo_ref}, {"convnext-step", bench_convnext}, {"vit-step", bench_vit},     {"gpt2-sample", bench_sample},
    {"clip-image", bench_clip_image}, {"clip-text", bench_clip_text},
};

/* name is in the comma-separated list (NULL: every name). */
static int selected(const char *list, const char *name) {
    if (!list) return 1;
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [--threads N] [--reps N] [--small] [--only NAME,...] [--models DIR] "
                    "[--malloc-default] [--json] [--list]\nworkloads:", argv0);
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++) fprintf(stderr, " %s", workloads[i].name);
    fprintf(stderr, "\n");
    return 2;
}

int main(int argc, char **argv) {
    opts_t o = {.threads = 1, .reps = 3, .models = "models"};
    /* No arguments (make bench's way of calling every bench): the quick set. */
    if (argc == 1) o.small = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) o.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) o.only = argv[++i];
        else if (!strcmp(argv[i], "--models") && i + 1 < argc) o.models = argv[++i];
        else if (!strcmp(argv[i], "--small")) o.small = 1;
        else if (!strcmp(argv[i], "--json")) o.json = 1;
        else if (!strcmp(argv[i], "--malloc-default")) o.malloc_default = 1;
        else if (!strcmp(argv[i], "--list")) {
            for (size_t k = 0; k < sizeof workloads / sizeof workloads[0]; k++) printf("%s\n", workloads[k].name);
            return 0;
        }
        else return usage(argv[0]);
    }
    if (o.threads < 1 || o.reps < 1 || o.reps > MAX_REPS) return usage(argv[0]);
    sf_ml_opts_t mo = {.threads = o.threads, .malloc_default = o.malloc_default};
    if (sf_ml_init(&mo)) die("sf_ml_init", sf_ml_errstr());
    if (o.json) {
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "side", "shim");
        cJSON_AddNumberToObject(h, "threads", o.threads);
        cJSON_AddNumberToObject(h, "reps", o.reps);
        cJSON_AddStringToObject(h, "blas", sf_ml_blas_name());
        cJSON_AddStringToObject(h, "malloc", o.malloc_default ? "default" : "shim");
        char *s = cJSON_PrintUnformatted(h);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(h);
    } else {
        printf("threads %d, BLAS %s, best of %d after a warm-up%s\n", o.threads, sf_ml_blas_name(), o.reps,
               o.small ? " (small shapes)" : "");
        printf("%-14s %-44s %10s\n", "workload", "shape", "seconds");
    }
    fflush(stdout);
    for (size_t k = 0; k < sizeof workloads / sizeof workloads[0]; k++) {
        if (!selected(o.only, workloads[k].name)) continue;
        result_t r = {.name = workloads[k].name, .spec = cJSON_CreateObject(), .check = cJSON_CreateObject()};
        workloads[k].fn(&o, &r);
        double best = r.times[0], best_cpu = r.cpu[0];
        for (int i = 1; i < r.n_times; i++) {
            best = r.times[i] < best ? r.times[i] : best;
            best_cpu = r.cpu[i] < best_cpu ? r.cpu[i] : best_cpu;
        }
        if (o.json) {
            cJSON *j = cJSON_CreateObject();
            cJSON_AddStringToObject(j, "name", r.name);
            cJSON_AddStringToObject(j, "shape", r.shape);
            cJSON_AddNumberToObject(j, "best_s", best);
            cJSON_AddNumberToObject(j, "best_cpu_s", best_cpu);
            cJSON_AddItemToObject(j, "times_s", cJSON_CreateDoubleArray(r.times, r.n_times));
            cJSON_AddItemToObject(j, "cpu_s", cJSON_CreateDoubleArray(r.cpu, r.n_times));
            cJSON_AddItemToObject(j, "minor_faults", cJSON_CreateDoubleArray(r.faults, r.n_times));
            cJSON_AddItemToObject(j, "check", r.check);
            cJSON_AddItemToObject(j, "spec", r.spec);
            char *s = cJSON_PrintUnformatted(j);
            printf("%s\n", s);
            free(s);
            cJSON_Delete(j);
        } else {
            printf("%-14s %-44s %10.4f\n", r.name, r.shape, best);
            cJSON_Delete(r.spec);
            cJSON_Delete(r.check);
        }
        fflush(stdout);
    }
    return 0;
}
