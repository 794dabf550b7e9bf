/* bench_ml_real.c: the real models' shapes — GPT-2 124M sampling and CLIP
 * ViT-B/32 embeddings — in fp32 and bf16 on one device.
 *
 *   build/bench/bench_ml_real [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all]
 *                             [--small] [--only gpt2|clip] [--threads N] [--reps N]
 *                             [--gen-batch 64] [--new 32] [--prompt 8]
 *                             [--img-batch 256] [--text-batch 256]
 *
 * Random weights (as HF initialises them), so only speed and the agreement
 * of each dtype with fp32 mean anything.  Per dtype, one line each:
 *   - sampling tokens/s: gen-batch prompts of `prompt` tokens, `new` new
 *     tokens each with the KV cache (no early stop), best of reps;
 *   - GPT-2 logits against fp32 on a (4, 16) batch: max |difference| and how
 *     often the argmax agrees;
 *   - image embeddings/s of img-batch 224x224 images (pixels uploaded from
 *     host memory, as the worker's are), and text embeddings/s of text-batch
 *     77-token texts;
 *   - CLIP image embeddings against fp32: smallest cosine over 16 images.
 * The fp32 model is measured first and cast down in place.  --small uses tiny
 * configurations (seconds on a CPU): what `make bench` runs, and what
 * tools/gpu_check.sh runs with DEVICE=cpu SMALL=1 to check itself.
 * Everything is synchronous (results are copied back to host memory), so
 * wall-clock times are the device's.
 */
#include <math.h>
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

typedef struct {
    const char *device;
    const char *dtypes[3];
    int n_dtypes;
    int small, reps;
    int gen_batch, new_tokens, prompt;
    int img_batch, text_batch;
} opts_t;

static uint32_t lcg(uint32_t *s) { return *s = *s * 1664525u + 1013904223u; }

/* ---- GPT-2 ---- */

enum { CMP_B = 4, CMP_T = 16 };

static int bench_gpt2(const opts_t *o) {
    sf_gpt2_config_t c;
    sf_gpt2_config_124m(&c);
    const char *name = "gpt2-124m";
    if (o->small) {
        c.n_layer = 2, c.n_head = 4, c.n_embd = 64, c.n_ctx = 128, c.vocab_size = 512;
        c.eos_id = 511;
        name = "gpt2-small";
    }
    char err[512];
    sf_gpt2_t *m;
    double t0 = now();
    if (sf_gpt2_new(&c, o->device, 1, &m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    printf("%-12s %-4s %-7s init  %lld params in %.1f s\n", name, "fp32", o->device,
           (long long)sf_gpt2_num_params(m), now() - t0);
    const int B = o->gen_batch, P = o->prompt, N = o->new_tokens, V = c.vocab_size;
    int32_t *prompts = malloc(sizeof(int32_t) * B * P);
    int *plen = malloc(sizeof(int) * B);
    uint32_t seed = 12345;
    for (int i = 0; i < B * P; i++) prompts[i] = (int32_t)(lcg(&seed) % (uint32_t)(V - 1));
    for (int i = 0; i < B; i++) plen[i] = P;
    int32_t cmp_tok[CMP_B * CMP_T];
    for (int i = 0; i < CMP_B * CMP_T; i++) cmp_tok[i] = (int32_t)(lcg(&seed) % (uint32_t)(V - 1));
    float *ref = malloc(sizeof(float) * CMP_B * CMP_T * V), *lg = malloc(sizeof(float) * CMP_B * CMP_T * V);
    int rc = 0;
    for (int d = 0; d < o->n_dtypes && rc == 0; d++) {
        const char *dt = o->dtypes[d];
        if (sf_gpt2_set_dtype(m, dt)) {
            printf("%-12s %-4s %-7s unsupported: %s\n", name, dt, o->device, sf_gpt2_errstr(m));
            continue;
        }
        sf_sample_opts_t so;
        sf_sample_opts_default(&so);
        so.max_new_tokens = N;
        so.eos_id = -2;   /* always N tokens: the rate is per generated token */
        sf_samples_t s;
        if (sf_gpt2_sample(m, prompts, plen, B, P, &so, &s)) {   /* warm-up */
            fprintf(stderr, "%s %s sample: %s\n", name, dt, sf_gpt2_errstr(m));
            rc = 1;
            break;
        }
        sf_samples_free(&s);
        double best = 1e30;
        for (int r = 0; r < o->reps; r++) {
            so.seed = (uint64_t)r + 1;
            double a = now();
            if (sf_gpt2_sample(m, prompts, plen, B, P, &so, &s)) {
                fprintf(stderr, "%s %s sample: %s\n", name, dt, sf_gpt2_errstr(m));
                rc = 1;
                break;
            }
            double t = now() - a;
            if (t < best) best = t;
            sf_samples_free(&s);
        }
        if (rc) break;
        printf("%-12s %-4s %-7s sample  %d x %d new tokens (prompt %d, KV cache): %10.1f tokens/s  "
               "(%.3f s per batch, best of %d)\n", name, dt, o->device, B, N, P, B * N / best, best,
               o->reps);
        float *out = d == 0 ? ref : lg;
        if (sf_gpt2_forward(m, cmp_tok, NULL, CMP_B, CMP_T, out, NULL)) {
            fprintf(stderr, "%s %s forward: %s\n", name, dt, sf_gpt2_errstr(m));
            rc = 1;
            break;
        }
        if (d > 0 && !strcmp(o->dtypes[0], "fp32")) {
            double md = 0, mx = 0;
            int agree = 0;
            for (int r = 0; r < CMP_B * CMP_T; r++) {
                const float *a = ref + (size_t)r * V, *b = lg + (size_t)r * V;
                int ia = 0, ib = 0;
                for (int v = 0; v < V; v++) {
                    md = fmax(md, fabs((double)a[v] - b[v]));
                    mx = fmax(mx, fabs((double)a[v]));
                    if (a[v] > a[ia]) ia = v;
                    if (b[v] > b[ib]) ib = v;
                }
                agree += ia == ib;
            }
            printf("%-12s %-4s %-7s logits vs fp32 on %d x %d tokens: max |diff| %.4f (|logits| up to "
                   "%.2f), argmax agrees %d/%d\n", name, dt, o->device, CMP_B, CMP_T, md, mx, agree,
                   CMP_B * CMP_T);
        }
    }
    free(prompts);
    free(plen);
    free(ref);
    free(lg);
    sf_gpt2_free(&m);
    sf_ml_empty_cache();
    return rc;
}

/* ---- CLIP ---- */

enum { CMP_IMG = 16 };

static int bench_clip(const opts_t *o) {
    sf_clip_config_t c;
    sf_clip_config_vit_b32(&c);
    const char *name = "clip-b32";
    if (o->small) {
        sf_clip_config_world(&c);
        c.vocab_size = 1024, c.eot_id = 1023;
        name = "clip-small";
    }
    char err[512];
    sf_clip_t *m;
    double t0 = now();
    if (sf_clip_new(&c, o->device, 1, &m, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", name, err);
        return 1;
    }
    printf("%-12s %-4s %-7s init  %lld params in %.1f s\n", name, "fp32", o->device,
           (long long)sf_clip_num_params(m), now() - t0);
    const int S = c.image_size, T = c.context_length, E = c.embed_dim;
    const int BI = o->img_batch, BT = o->text_batch;
    float *px = malloc(sizeof(float) * (size_t)BI * 3 * S * S);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)BT * T);
    float *emb = malloc(sizeof(float) * (size_t)(BI > BT ? BI : BT) * E);
    float *ref = malloc(sizeof(float) * CMP_IMG * E), *cmp = malloc(sizeof(float) * CMP_IMG * E);
    uint32_t seed = 777;
    for (size_t i = 0; i < (size_t)BI * 3 * S * S; i++) px[i] = (float)(lcg(&seed) >> 8) / (1 << 23) - 1.0f;
    for (int b = 0; b < BT; b++) {
        for (int t = 0; t < T; t++) tok[b * T + t] = (int32_t)(lcg(&seed) % (uint32_t)(c.vocab_size - 2));
        tok[b * T + T - 1] = c.eot_id;
    }
    const int ncmp = BI < CMP_IMG ? BI : CMP_IMG;
    int rc = 0;
    for (int d = 0; d < o->n_dtypes && rc == 0; d++) {
        const char *dt = o->dtypes[d];
        if (sf_clip_set_dtype(m, dt)) {
            printf("%-12s %-4s %-7s unsupported: %s\n", name, dt, o->device, sf_clip_errstr(m));
            continue;
        }
        if (sf_clip_encode_image(m, px, BI, emb) || sf_clip_encode_text(m, tok, BT, T, emb)) {
            fprintf(stderr, "%s %s: %s\n", name, dt, sf_clip_errstr(m));   /* warm-up failed */
            rc = 1;
            break;
        }
        double bi = 1e30, bt = 1e30;
        for (int r = 0; r < o->reps && rc == 0; r++) {
            double a = now();
            rc |= sf_clip_encode_image(m, px, BI, emb);
            double b = now();
            rc |= sf_clip_encode_text(m, tok, BT, T, emb);
            double e = now();
            if (b - a < bi) bi = b - a;
            if (e - b < bt) bt = e - b;
        }
        if (rc) {
            fprintf(stderr, "%s %s: %s\n", name, dt, sf_clip_errstr(m));
            break;
        }
        printf("%-12s %-4s %-7s image   batch %d of %dx%d: %10.1f embeddings/s  (%.3f s per batch, best of %d)\n",
               name, dt, o->device, BI, S, S, BI / bi, bi, o->reps);
        printf("%-12s %-4s %-7s text    batch %d of %d tokens: %10.1f embeddings/s  (%.3f s per batch)\n",
               name, dt, o->device, BT, T, BT / bt, bt);
        float *out = d == 0 ? ref : cmp;
        if ((rc = sf_clip_encode_image(m, px, ncmp, out)) != 0) break;
        if (d > 0 && !strcmp(o->dtypes[0], "fp32")) {
            double mincos = 1;
            for (int i = 0; i < ncmp; i++) {
                double dot = 0;
                for (int k = 0; k < E; k++) dot += (double)ref[i * E + k] * cmp[i * E + k];
                mincos = fmin(mincos, dot);
            }
            printf("%-12s %-4s %-7s image embeddings vs fp32: smallest cosine %.5f over %d images\n",
                   name, dt, o->device, mincos, ncmp);
        }
    }
    free(px);
    free(tok);
    free(emb);
    free(ref);
    free(cmp);
    sf_clip_free(&m);
    sf_ml_empty_cache();
    return rc;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all] [--small]\n"
            "          [--only gpt2|clip] [--threads N] [--reps N] [--gen-batch N] [--new N]\n"
            "          [--prompt N] [--img-batch N] [--text-batch N]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    opts_t o = {.device = "cpu", .dtypes = {"fp32", "bf16"}, .n_dtypes = 2, .reps = 3,
                .gen_batch = 64, .new_tokens = 32, .prompt = 8, .img_batch = 256, .text_batch = 256};
    /* One thread unless told, as the other benches: more threads than free
     * cores cost several times over on a shared machine. */
    int threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    const char *only = "";
    int sized = 0;
    /* With no arguments (make bench): the small shapes on the CPU. */
    if (argc == 1) o.small = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--small")) { o.small = 1; continue; }
        if (!v) return usage(argv[0]);
        i++;
        if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "all")) o.dtypes[0] = "fp32", o.dtypes[1] = "bf16", o.n_dtypes = 2;
            else if (!strcmp(v, "fp32") || !strcmp(v, "bf16") || !strcmp(v, "fp16")) {
                /* fp32 first, for the comparison lines. */
                o.dtypes[0] = "fp32", o.n_dtypes = 1;
                if (strcmp(v, "fp32")) o.dtypes[o.n_dtypes++] = v;
            } else return usage(argv[0]);
        }
        else if (!strcmp(a, "--only")) only = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) o.reps = atoi(v);
        else if (!strcmp(a, "--gen-batch")) o.gen_batch = atoi(v), sized |= 1;
        else if (!strcmp(a, "--new")) o.new_tokens = atoi(v);
        else if (!strcmp(a, "--prompt")) o.prompt = atoi(v);
        else if (!strcmp(a, "--img-batch")) o.img_batch = atoi(v), sized |= 2;
        else if (!strcmp(a, "--text-batch")) o.text_batch = atoi(v), sized |= 4;
        else return usage(argv[0]);
    }
    if (o.small) {   /* smaller batches too, unless given */
        if (!(sized & 1)) o.gen_batch = 16;
        if (!(sized & 2)) o.img_batch = 64;
        if (!(sized & 4)) o.text_batch = 64;
    }
    if (o.reps < 1 || o.gen_batch < 1 || o.new_tokens < 1 || o.prompt < 1 || o.img_batch < 1 ||
        o.text_batch < 1)
        return usage(argv[0]);
    sf_ml_opts_t mo = {.threads = threads, .quiet = 1};
    sf_ml_init(&mo);
    if (sf_ml_device_check(o.device)) {
        fprintf(stderr, "device %s: %s\n", o.device, sf_ml_errstr());
        return 1;
    }
    printf("# bench_ml_real: device %s (%d CUDA device(s) seen), %s shapes, BLAS %s\n", o.device,
           sf_ml_cuda_count(), o.small ? "small" : "real", sf_ml_blas_name());
    fflush(stdout);
    int rc = 0;
    if (strcmp(only, "clip")) rc |= bench_gpt2(&o);
    fflush(stdout);
    if (strcmp(only, "gpt2")) rc |= bench_clip(&o);
    return rc;
}
