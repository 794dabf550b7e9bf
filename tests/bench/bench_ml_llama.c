/* bench_ml_llama.c: the instruction model's speed — LLaMA-7B shapes and a
 * world-sized LLaMA — through the path the corpus phase uses (ml/sf_llama.h).
 *
 *   build/bench/bench_ml_llama [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all]
 *                              [--layers N | --full] [--small] [--only 7b|world]
 *                              [--threads N] [--reps N] [--rows 16] [--new 48] [--prompt 32]
 *                              [--fwd-batch 4] [--fwd-len 128]
 *
 * Shapes: "llama-7b" has LLaMA-7B's widths (hidden 4096, 32 heads, no GQA,
 * intermediate 11008, vocab 32000, untied lm_head) on --layers layers
 * (default 2; --full is the real 32); "llama-world" is a model of the
 * embedded world's size (hidden 160, 4 layers, 4 heads over 2 KV heads,
 * intermediate 480, vocab 1000).  --small runs the world model alone
 * (seconds: what tools/gpu_check.sh SMALL=1 runs to check itself).  With no
 * arguments (make bench) both run on the CPU, the 7B shapes on 2 layers.
 *
 * Random weights (uniform with HF's initializer_range 0.02, norms 1) are
 * written as an HF folder — config.json and a BF16 model.safetensors, as
 * LLaMA checkpoints ship in half precision — into a temporary folder and
 * loaded with sf_llama_load for each dtype, so the load (read, convert,
 * copy to the device) is measured too.  Per dtype, one line each:
 *   - load: seconds for sf_llama_load;
 *   - forward: prompt processing, fwd-batch rows of fwd-len tokens through
 *     sf_llama_forward (float32 logits copied back), tokens/s;
 *   - sample: `rows` continuations of one prompt of `prompt` tokens, `new`
 *     new tokens each with the KV cache and no early stop (the corpus
 *     phase's 16 captions per class), tokens/s; then the same with one row;
 *   - for the 7B shapes on fewer than 32 layers: the time one layer takes of
 *     a sampling step and the 32-layer figure, both estimated by splitting
 *     the measured step by the weights each part multiplies with (every
 *     step multiplies by each layer's matrices and the lm_head once; the
 *     embedding is a lookup).  An estimate, labelled as one: --full
 *     measures it.
 * Rates are best of reps (default 2 for the world model, 1 for the 7B
 * shapes, which take minutes a rep on one CPU thread) after a warm-up (a
 * short sample and a forward).
 * Everything is synchronous (results are copied to host memory), so wall
 * times are the device's.  Benchmarks measure speed; nothing is asserted.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/formats/safetensors.h"
#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "ml/sf_llama.h"
#include "ml/sf_ml.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct {
    const char *name;
    int layers, heads, kv_heads, hidden, inter, vocab;
} shape_t;

typedef struct {
    const char *device;
    const char *dtypes[3];
    int n_dtypes;
    int reps, rows, new_tokens, prompt, fwd_batch, fwd_len;
    int reps_7b;   /* the 7B shapes' reps: 1 unless --reps (minutes a rep on a CPU) */
} opts_t;

/* LLaMA-7B's layer count, for the estimate. */
enum { FULL_LAYERS = 32, POSITIONS = 2048 };

/* Parameters a layer multiplies with, and the lm_head's. */
static double layer_params(const shape_t *s) {
    const double C = s->hidden, D = (double)s->hidden / s->heads;
    return 2 * C * C + 2 * C * s->kv_heads * D + 3 * C * s->inter;
}

/* ---- the HF folder ---- */

typedef struct {
    char dir[512];
    char cfg[600], st[600];
    double gbytes;
} folder_t;

static void folder_remove(folder_t *f) {
    if (!f->dir[0]) return;
    unlink(f->st);
    unlink(f->cfg);
    rmdir(f->dir);
    f->dir[0] = 0;
}

/* Writes config.json and model.safetensors of shape s into a new temporary
 * folder.  Every tensor borrows a window of one pool of random BF16 values
 * at its own offset, so that the writer holds the largest tensor once
 * rather than the whole model (7B's 32 layers: 13 GB) while the file gets
 * different values in every tensor. */
static int folder_write(const shape_t *s, folder_t *f) {
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/sf_bench_llama_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", f->dir, strerror(errno));
        f->dir[0] = 0;
        return 1;
    }
    snprintf(f->cfg, sizeof f->cfg, "%s/config.json", f->dir);
    snprintf(f->st, sizeof f->st, "%s/model.safetensors", f->dir);
    FILE *c = fopen(f->cfg, "w");
    if (!c) {
        fprintf(stderr, "%s: %s\n", f->cfg, strerror(errno));
        return 1;
    }
    fprintf(c,
            "{\"architectures\": [\"LlamaForCausalLM\"], \"model_type\": \"llama\", \"hidden_act\": \"silu\",\n"
            " \"hidden_size\": %d, \"intermediate_size\": %d, \"num_attention_heads\": %d,\n"
            " \"num_key_value_heads\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d,\n"
            " \"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0,\n"
            " \"bos_token_id\": 1, \"eos_token_id\": 2, \"tie_word_embeddings\": false,\n"
            " \"torch_dtype\": \"bfloat16\"}\n",
            s->hidden, s->inter, s->heads, s->kv_heads, s->layers, s->vocab, POSITIONS);
    if (fclose(c)) {
        fprintf(stderr, "%s: %s\n", f->cfg, strerror(errno));
        return 1;
    }
    const int64_t C = s->hidden, I = s->inter, V = s->vocab, KD = (int64_t)s->kv_heads * (C / s->heads);
    const int64_t biggest = V * C > I * C ? V * C : I * C;
    enum { SPREAD = 4093 };
    uint16_t *pool = malloc(sizeof(uint16_t) * (size_t)(biggest + SPREAD));
    uint16_t *ones = malloc(sizeof(uint16_t) * (size_t)C);
    sf_st_writer_t *w = NULL;
    if (!pool || !ones || sf_st_writer_new(&w)) {
        fprintf(stderr, "out of memory for the weights' pool\n");
        free(pool);
        free(ones);
        return 1;
    }
    const float a = 0.02f * sqrtf(3.0f);   /* uniform on [-a, a] has std 0.02 */
    uint64_t rng = 7;
    for (int64_t i = 0; i < biggest + SPREAD; i++)
        pool[i] = sf_st_f32_to_bf16(a * (2.0f * (float)(sf_splitmix64(&rng) >> 40) / (float)(1 << 24) - 1.0f));
    for (int64_t i = 0; i < C; i++) ones[i] = sf_st_f32_to_bf16(1.0f);
    int rc = 0, k = 0;
    double bytes = 0;
#define ADD(NAME, R, COLS)                                                                                 \
    do {                                                                                                   \
        const int64_t shape_[2] = {(R), (COLS)};                                                           \
        const int nd_ = (COLS) > 0 ? 2 : 1;                                                                \
        const int64_t n_ = nd_ == 2 ? shape_[0] * shape_[1] : shape_[0];                                  \
        const uint16_t *d_ = nd_ == 2 ? pool + (int64_t)(k++ * 389) % SPREAD : ones;                       \
        rc |= sf_st_writer_add(w, (NAME), SF_ST_BF16, nd_, shape_, d_, (size_t)n_ * 2);                    \
        bytes += (double)n_ * 2;                                                                           \
    } while (0)
    char n[128];
    ADD("model.embed_tokens.weight", V, C);
    for (int l = 0; l < s->layers; l++) {
        const char *proj[] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        const int64_t rows[] = {C, KD, KD, C};
        for (int p = 0; p < 4; p++) {
            snprintf(n, sizeof n, "model.layers.%d.self_attn.%s.weight", l, proj[p]);
            ADD(n, rows[p], C);
        }
        snprintf(n, sizeof n, "model.layers.%d.mlp.gate_proj.weight", l);
        ADD(n, I, C);
        snprintf(n, sizeof n, "model.layers.%d.mlp.up_proj.weight", l);
        ADD(n, I, C);
        snprintf(n, sizeof n, "model.layers.%d.mlp.down_proj.weight", l);
        ADD(n, C, I);
        snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
        ADD(n, C, 0);
        snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
        ADD(n, C, 0);
    }
    ADD("model.norm.weight", C, 0);
    ADD("lm_head.weight", V, C);
#undef ADD
    if (rc == 0) rc = sf_st_writer_save(w, f->st);
    if (rc) fprintf(stderr, "writing %s: error %d (%s)\n", f->st, rc, strerror(errno));
    sf_st_writer_free(&w);
    free(pool);
    free(ones);
    f->gbytes = bytes / 1e9;
    return rc != 0;
}

/* ---- one model in one dtype ---- */

static int bench_dtype(const shape_t *s, const folder_t *f, const char *dt, const opts_t *o_in) {
    opts_t oo = *o_in;
    const opts_t *o = &oo;
    if (s->hidden == 4096) oo.reps = o_in->reps_7b;
    char err[768];
    sf_llama_t *m = NULL;
    double t0 = now();
    int rc = sf_llama_load(f->dir, o->device, dt, &m, err, sizeof err);
    if (rc == SF_EUNSUPPORTED) {
        printf("%-12s %-4s %-7s unsupported: %s\n", s->name, dt, o->device, err);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "%s %s: load: %s\n", s->name, dt, err);
        return 1;
    }
    const double load_s = now() - t0;
    printf("%-12s %-4s %-7s load    %.1f MB of BF16 safetensors, %lld params: %.2f s\n", s->name, dt, o->device,
           1e3 * f->gbytes, (long long)sf_llama_num_params(m), load_s);
    fflush(stdout);

    const int V = s->vocab, FB = o->fwd_batch, FT = o->fwd_len, R = o->rows, N = o->new_tokens, P = o->prompt;
    int32_t *fwd = malloc(sizeof(int32_t) * (size_t)FB * FT);
    float *logits = malloc(sizeof(float) * (size_t)FB * FT * V);
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)P);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)R * N);
    int *lens = malloc(sizeof(int) * (size_t)R);
    if (!fwd || !logits || !prompt || !out || !lens) {
        fprintf(stderr, "out of memory\n");
        rc = 1;
        goto done;
    }
    uint64_t seed = 99;
    for (int i = 0; i < FB * FT; i++) fwd[i] = 3 + (int32_t)(sf_splitmix64(&seed) % (uint64_t)(V - 3));
    prompt[0] = 1;   /* <s> */
    for (int i = 1; i < P; i++) prompt[i] = 3 + (int32_t)(sf_splitmix64(&seed) % (uint64_t)(V - 3));
    sf_sample_opts_t so;
    sf_sample_opts_default(&so);
    so.eos_id = -2;   /* always N tokens: the rate is per generated token */

    /* Warm-up: a short sample and one forward row. */
    so.max_new_tokens = 2;
    if ((rc = sf_llama_sample(m, prompt, P, 2, &so, out, lens)) != 0 ||
        (rc = sf_llama_forward(m, fwd, NULL, 1, FT, logits)) != 0) {
        fprintf(stderr, "%s %s: warm-up: %s\n", s->name, dt, sf_llama_errstr(m));
        goto done;
    }
    double fbest = 1e30;
    for (int r = 0; r < o->reps; r++) {
        double a = now();
        if ((rc = sf_llama_forward(m, fwd, NULL, FB, FT, logits)) != 0) {
            fprintf(stderr, "%s %s: forward: %s\n", s->name, dt, sf_llama_errstr(m));
            goto done;
        }
        fbest = fmin(fbest, now() - a);
    }
    printf("%-12s %-4s %-7s forward %d x %d tokens:                     %9.1f tokens/s  (%.3f s, best of %d)\n",
           s->name, dt, o->device, FB, FT, FB * FT / fbest, fbest, o->reps);
    fflush(stdout);
    so.max_new_tokens = N;
    const int batches[2] = {R, 1};
    double step16 = 0;
    for (int bi = 0; bi < 2; bi++) {
        const int rows = batches[bi];
        if (bi == 1 && R == 1) break;
        double best = 1e30;
        for (int r = 0; r < o->reps; r++) {
            so.seed = (uint64_t)r + 1;
            double a = now();
            if ((rc = sf_llama_sample(m, prompt, P, rows, &so, out, lens)) != 0) {
                fprintf(stderr, "%s %s: sample: %s\n", s->name, dt, sf_llama_errstr(m));
                goto done;
            }
            best = fmin(best, now() - a);
        }
        if (bi == 0) step16 = best / N;
        printf("%-12s %-4s %-7s sample  %2d x %d new (prompt %d, KV cache): %9.1f tokens/s  (%.3f s, %.1f ms "
               "per step, best of %d)\n", s->name, dt, o->device, rows, N, P, rows * N / best, best,
               1e3 * best / N, o->reps);
        fflush(stdout);
    }
    if (s->heads == 32 && s->hidden == 4096 && s->layers < FULL_LAYERS) {
        const double pl = layer_params(s), ph = (double)s->vocab * s->hidden;
        const double per_layer = step16 * pl / (s->layers * pl + ph);
        const double full = step16 * (FULL_LAYERS * pl + ph) / (s->layers * pl + ph);
        printf("%-12s %-4s %-7s estimate: one layer ~%.1f ms of a %d-row sampling step; %d layers ~%.1f "
               "tokens/s at %d rows (split by weights multiplied; --full measures it)\n", s->name, dt, o->device,
               1e3 * per_layer, R, FULL_LAYERS, R / full, R);
    }
done:
    free(fwd);
    free(logits);
    free(prompt);
    free(out);
    free(lens);
    sf_llama_free(&m);
    sf_ml_empty_cache();
    return rc != 0;
}

static int bench_shape(const shape_t *s, const opts_t *o) {
    folder_t f = {0};
    double t0 = now();
    if (folder_write(s, &f)) {
        folder_remove(&f);
        return 1;
    }
    printf("%-12s %d layers, hidden %d, %d heads (%d KV), intermediate %d, vocab %d: wrote %.1f MB in %.1f s\n",
           s->name, s->layers, s->hidden, s->heads, s->kv_heads, s->inter, s->vocab, 1e3 * f.gbytes, now() - t0);
    fflush(stdout);
    int rc = 0;
    for (int d = 0; d < o->n_dtypes; d++) rc |= bench_dtype(s, &f, o->dtypes[d], o);
    folder_remove(&f);
    return rc;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all] [--layers N | --full]\n"
            "          [--small] [--only 7b|world] [--threads N] [--reps N] [--rows N] [--new N]\n"
            "          [--prompt N] [--fwd-batch N] [--fwd-len N]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    opts_t o = {.device = "cpu", .dtypes = {"fp32", "bf16"}, .n_dtypes = 2, .reps = 2, .rows = 16,
                .new_tokens = 48, .prompt = 32, .fwd_batch = 4, .fwd_len = 128, .reps_7b = 1};
    /* One thread unless told, as the other benches: more threads than free
     * cores cost several times over on a shared machine. */
    int threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    int layers = 2, small = 0;
    const char *only = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--small")) { small = 1; continue; }
        if (!strcmp(a, "--full")) { layers = FULL_LAYERS; continue; }
        if (!v) return usage(argv[0]);
        i++;
        if (!strcmp(a, "--device")) o.device = v;
        else if (!strcmp(a, "--dtype")) {
            if (!strcmp(v, "all")) o.dtypes[0] = "fp32", o.dtypes[1] = "bf16", o.n_dtypes = 2;
            else if (!strcmp(v, "fp32") || !strcmp(v, "bf16") || !strcmp(v, "fp16")) o.dtypes[0] = v, o.n_dtypes = 1;
            else return usage(argv[0]);
        }
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--only")) only = v;
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) o.reps = o.reps_7b = atoi(v);
        else if (!strcmp(a, "--rows")) o.rows = atoi(v);
        else if (!strcmp(a, "--new")) o.new_tokens = atoi(v);
        else if (!strcmp(a, "--prompt")) o.prompt = atoi(v);
        else if (!strcmp(a, "--fwd-batch")) o.fwd_batch = atoi(v);
        else if (!strcmp(a, "--fwd-len")) o.fwd_len = atoi(v);
        else return usage(argv[0]);
    }
    if (o.reps < 1 || o.rows < 1 || o.new_tokens < 1 || o.prompt < 1 || o.fwd_batch < 1 || o.fwd_len < 1 ||
        layers < 1 || layers > 4096 || o.prompt + o.new_tokens > POSITIONS || o.fwd_len > POSITIONS ||
        (*only && strcmp(only, "7b") && strcmp(only, "world")))
        return usage(argv[0]);
    sf_ml_opts_t mo = {.threads = threads, .quiet = 1};
    sf_ml_init(&mo);
    if (sf_ml_device_check(o.device)) {
        fprintf(stderr, "device %s: %s\n", o.device, sf_ml_errstr());
        return 1;
    }
    const shape_t l7b = {"llama-7b", layers, 32, 32, 4096, 11008, 32000};
    const shape_t world = {"llama-world", 4, 4, 2, 160, 480, 1000};
    printf("# bench_ml_llama: device %s (%d CUDA device(s) seen), %d thread(s), BLAS %s; 7B shapes on %d of %d "
           "layers\n", o.device, sf_ml_cuda_count(), threads, sf_ml_blas_name(), layers, FULL_LAYERS);
    fflush(stdout);
    int rc = 0;
    if (strcmp(only, "7b")) rc |= bench_shape(&world, &o);
    if (!small && strcmp(only, "world")) rc |= bench_shape(&l7b, &o);
    return rc;
}
