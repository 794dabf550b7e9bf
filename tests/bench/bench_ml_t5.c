/* bench_ml_t5.c: DeepFloyd IF's text encoder — T5-v1.1-XXL's encoder shapes
 * — in prompts per second, tokenisation included (ml/sf_t5.h, ml/sf_spm.h).
 *
 *   build/bench/bench_ml_t5 [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all]
 *                           [--layers N | --full] [--small] [--threads N] [--reps N]
 *                           [--batch N] [--len 77]
 *
 * Shapes: "t5-xxl-enc" has T5-v1.1-XXL's encoder widths (d_model 4096, d_ff
 * 10240, 64 heads of d_kv 64, gated-GELU, 32 relative-position buckets up
 * to distance 128, vocab 32128) on --layers layers (default 2; --full is
 * the real 24); --small is a tiny T5 (d_model 64, 2 layers: seconds, what
 * tools/gpu_check.sh SMALL=1 runs to check itself).  Rows are `len` tokens
 * (IF pads its prompts to 77) with pad 0 masked out of attention.  With no
 * arguments (make bench): the XXL shapes on 2 layers on the CPU, batch 8.
 *
 * Tokens come from a SentencePiece unigram model of T5's layout (pad 0,
 * eos 1, unk 2) that `spm_train` trains at start on a generated caption
 * corpus (a few seconds), loaded with sf_spm's T5 rules: each prompt is
 * its pieces then </s>, cut to `len`, then padded.  Where spm_train is not
 * on PATH or libsfspm.so cannot be loaded, the encoder runs on the same
 * number of random ids per prompt and the output says the tokeniser was
 * skipped.  A real spiece.model has 32,000 pieces rather than about a hundred:
 * the tokeniser's cost per prompt barely depends on it, and the encoder's
 * not at all.
 *
 * Random weights (sf_t5_create_random: T5's initialisation), built in each
 * dtype.  Per dtype, one line each: creation time; embeddings/s (prompts
 * per second) through tokenisation and encoder, best of reps after a
 * warm-up, with the tokeniser's share; for the XXL shapes on fewer than 24
 * layers, one layer's time (the embedding is a lookup and every matrix
 * product is in a layer, so the time divides by the layer count) and the
 * 24-layer figure from it, labelled as an estimate (--full measures it).
 * Everything is synchronous (results are copied to host memory).
 * Benchmarks measure speed; nothing is asserted.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "ml/sf_ml.h"
#include "ml/sf_spm.h"
#include "ml/sf_t5.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

enum { FULL_LAYERS = 24, CORPUS_LINES = 2000 };

typedef struct {
    const char *device;
    const char *dtypes[3];
    int n_dtypes;
    int reps, batch, len;
} opts_t;

/* Words of IF-style prompts: a picture of an object in a context. */
static const char *const kWords[] = {
    "a", "an", "the", "photo", "of", "painting", "sketch", "close-up", "blurry", "bright", "dark", "small",
    "large", "red", "green", "blue", "golden", "old", "new", "cat", "dog", "bird", "goldfish", "shark",
    "truck", "bicycle", "teapot", "violin", "mushroom", "volcano", "lighthouse", "castle", "bridge", "in",
    "on", "at", "with", "near", "under", "beach", "forest", "snow", "city", "street", "kitchen", "studio",
    "night", "morning", "sunset", "rain", "fog", "field", "river", "mountain", "desert", "garden", "museum",
    "and", "its", "two", "three", "many", "wooden", "metal", "glass", "tiny", "giant", "flying", "sleeping",
};
#define N_WORDS ((int)(sizeof kWords / sizeof kWords[0]))

/* A prompt of 4 to 15 words into buf. */
static void make_prompt(uint64_t *rng, char *buf, size_t n) {
    const int words = 4 + (int)(sf_splitmix64(rng) % 12);
    size_t used = 0;
    buf[0] = 0;
    for (int w = 0; w < words && used + 32 < n; w++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", w ? " " : "", kWords[sf_splitmix64(rng) % N_WORDS]);
}

/* Trains a T5-layout unigram model in dir with spm_train and loads it; NULL
 * with the reason in why when it cannot. */
static sf_spm_t *train_tokenizer(const char *dir, char *why, size_t n) {
    if (system("command -v spm_train >/dev/null 2>&1") != 0) {
        snprintf(why, n, "spm_train is not on PATH (Debian's sentencepiece)");
        return NULL;
    }
    char path[600], cmd[2048];
    snprintf(path, sizeof path, "%s/corpus.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(why, n, "%s: %s", path, strerror(errno));
        return NULL;
    }
    uint64_t rng = 5;
    char line[512];
    for (int i = 0; i < CORPUS_LINES; i++) {
        make_prompt(&rng, line, sizeof line);
        fprintf(f, "%s\n", line);
    }
    if (fclose(f)) {
        snprintf(why, n, "%s: %s", path, strerror(errno));
        return NULL;
    }
    snprintf(cmd, sizeof cmd,
             "spm_train --input='%s' --model_prefix='%s/spiece' --model_type=unigram --vocab_size=200 --hard_vocab_limit=false "
             "--pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 --character_coverage=1.0 --num_threads=1 "
             "--minloglevel=2 >'%s/spm_train.log' 2>&1", path, dir, dir);
    if (system(cmd) != 0) {
        snprintf(why, n, "spm_train failed (its log: %s/spm_train.log)", dir);
        return NULL;
    }
    snprintf(path, sizeof path, "%s/spiece.model", dir);
    sf_spm_opts_t so = {.family = SF_SPM_T5};
    sf_spm_t *t = NULL;
    char err[512];
    if (sf_spm_load(path, &so, &t, err, sizeof err)) {
        snprintf(why, n, "%s", err);
        return NULL;
    }
    return t;
}

/* Fills tok (B, T) for B prompts: their ids then pad 0; without a
 * tokenizer, as many random ids as the prompt has words, then </s> (1). */
static int tokenize(sf_spm_t *t, char **prompts, int B, int T, int V, int32_t *tok) {
    memset(tok, 0, sizeof(int32_t) * (size_t)B * T);
    for (int b = 0; b < B; b++) {
        int32_t *row = tok + (size_t)b * T;
        if (t) {
            if (sf_spm_encode(t, prompts[b], T, row, T) < 0) {
                fprintf(stderr, "tokenizer: %s\n", sf_spm_errstr(t));
                return 1;
            }
            continue;
        }
        uint64_t rng = (uint64_t)b;
        int n = 1;
        for (const char *p = prompts[b]; *p; p++) n += *p == ' ';
        if (n > T - 1) n = T - 1;
        for (int i = 0; i < n; i++) row[i] = 3 + (int32_t)(sf_splitmix64(&rng) % (uint64_t)(V - 3));
        row[n] = 1;
    }
    return 0;
}

static int bench_dtype(const char *name, const sf_t5_config_t *c, const char *dt, const opts_t *o, sf_spm_t *tk,
                       char **prompts) {
    char err[768];
    sf_t5_t *m = NULL;
    double t0 = now();
    int rc = sf_t5_create_random(c, 1, o->device, dt, &m, err, sizeof err);
    if (rc == SF_EUNSUPPORTED) {
        printf("%-11s %-4s %-7s unsupported: %s\n", name, dt, o->device, err);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "%s %s: %s\n", name, dt, err);
        return 1;
    }
    printf("%-11s %-4s %-7s create  %lld params (random) in %.1f s\n", name, dt, o->device,
           (long long)sf_t5_num_params(m), now() - t0);
    fflush(stdout);
    const int B = o->batch, T = o->len, D = c->d_model;
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)B * T);
    float *emb = malloc(sizeof(float) * (size_t)B * T * D);
    if (!tok || !emb) {
        fprintf(stderr, "out of memory\n");
        rc = 1;
        goto done;
    }
    /* Warm-up: TorchScript's profiling executor optimises the graph over the
     * first runs. */
    for (int w = 0; w < 2 && rc == 0; w++)
        if ((rc = tokenize(tk, prompts, B, T, c->vocab_size, tok)) == 0) rc = sf_t5_encode(m, tok, B, T, emb);
    if (rc) {
        fprintf(stderr, "%s %s: warm-up: %s\n", name, dt, sf_t5_errstr(m));
        goto done;
    }
    double best = 1e30, tok_s = 0;
    for (int r = 0; r < o->reps; r++) {
        double a = now();
        if ((rc = tokenize(tk, prompts, B, T, c->vocab_size, tok)) != 0) goto done;
        double b = now();
        if ((rc = sf_t5_encode(m, tok, B, T, emb)) != 0) {
            fprintf(stderr, "%s %s: encode: %s\n", name, dt, sf_t5_errstr(m));
            goto done;
        }
        double e = now();
        if (e - a < best) best = e - a, tok_s = b - a;
    }
    int real = 0;
    for (int i = 0; i < B * T; i++) real += tok[i] != 0;
    printf("%-11s %-4s %-7s encode  %d prompts of %d tokens (%.1f real on average): %8.2f embeddings/s  "
           "(%.3f s per batch, tokeniser %.2f ms of it, best of %d)\n", name, dt, o->device, B, T,
           (double)real / B, B / best, best, 1e3 * tok_s, o->reps);
    if (c->d_model == 4096 && c->num_layers < FULL_LAYERS) {
        const double layer = (best - tok_s) / c->num_layers;
        printf("%-11s %-4s %-7s estimate: one layer %.3f s per batch of %d; %d layers ~%.2f embeddings/s "
               "(--full measures it)\n", name, dt, o->device, layer, B, FULL_LAYERS,
               B / (tok_s + FULL_LAYERS * layer));
    }
done:
    fflush(stdout);
    free(tok);
    free(emb);
    sf_t5_free(&m);
    sf_ml_empty_cache();
    return rc != 0;
}

static int usage(const char *argv0) {
    fprintf(stderr,
            "usage: %s [--device cpu|cuda|cuda:N] [--dtype fp32|bf16|fp16|all] [--layers N | --full]\n"
            "          [--small] [--threads N] [--reps N] [--batch N] [--len N]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    opts_t o = {.device = "cpu", .dtypes = {"fp32", "bf16"}, .n_dtypes = 2, .reps = 2, .batch = 8, .len = 77};
    int threads = getenv("SF_THREADS") ? atoi(getenv("SF_THREADS")) : 1;
    int layers = 2, small = 0;
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
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--reps")) o.reps = atoi(v);
        else if (!strcmp(a, "--batch")) o.batch = atoi(v);
        else if (!strcmp(a, "--len")) o.len = atoi(v);
        else return usage(argv[0]);
    }
    if (o.reps < 1 || o.batch < 1 || o.len < 2 || o.len > 4096 || layers < 1 || layers > 1024)
        return usage(argv[0]);
    sf_ml_opts_t mo = {.threads = threads, .quiet = 1};
    sf_ml_init(&mo);
    if (sf_ml_device_check(o.device)) {
        fprintf(stderr, "device %s: %s\n", o.device, sf_ml_errstr());
        return 1;
    }
    sf_t5_config_t c;
    sf_t5_config_v1_1_xxl(&c);
    c.num_layers = layers;
    const char *name = "t5-xxl-enc";
    if (small) {
        c.d_model = 64, c.d_kv = 16, c.num_heads = 4, c.d_ff = 128, c.num_layers = 2, c.vocab_size = 512;
        name = "t5-small";
    }
    printf("# bench_ml_t5: device %s (%d CUDA device(s) seen), %d thread(s), BLAS %s; %s: d_model %d, d_ff %d, "
           "%d heads of %d, %d of %d layers\n", o.device, sf_ml_cuda_count(), threads, sf_ml_blas_name(), name,
           c.d_model, c.d_ff, c.num_heads, c.d_kv, c.num_layers, small ? c.num_layers : FULL_LAYERS);

    /* The tokenizer, in a temporary folder removed at the end. */
    const char *tmp = getenv("TMPDIR");
    char dir[512], why[700] = "";
    snprintf(dir, sizeof dir, "%s/sf_bench_t5_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    sf_spm_t *tk = NULL;
    if (!mkdtemp(dir)) {
        snprintf(why, sizeof why, "mkdtemp %s: %s", dir, strerror(errno));
        dir[0] = 0;
    } else {
        double a = now();
        tk = train_tokenizer(dir, why, sizeof why);
        if (tk)
            printf("# tokeniser: SentencePiece unigram, %d pieces, trained by spm_train in %.1f s, T5 rules "
                   "(pieces, </s>, cut to %d, pad 0)\n", sf_spm_vocab_size(tk), now() - a, o.len);
    }
    if (!tk) printf("# tokeniser skipped: %s; the encoder runs on random ids, one per word\n", why);
    fflush(stdout);

    char **prompts = calloc((size_t)o.batch, sizeof(char *));
    uint64_t rng = 11;
    int rc = prompts == NULL;
    for (int b = 0; b < o.batch && !rc; b++) {
        prompts[b] = malloc(512);
        if (!prompts[b]) rc = 1;
        else make_prompt(&rng, prompts[b], 512);
    }
    for (int d = 0; d < o.n_dtypes && !rc; d++) rc |= bench_dtype(name, &c, o.dtypes[d], &o, tk, prompts);
    for (int b = 0; prompts && b < o.batch; b++) free(prompts[b]);
    free(prompts);
    sf_spm_free(&tk);
    if (dir[0]) {
        const char *files[] = {"corpus.txt", "spiece.model", "spiece.vocab", "spm_train.log"};
        char p[700];
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            snprintf(p, sizeof p, "%s/%s", dir, files[i]);
            unlink(p);
        }
        rmdir(dir);
    }
    return rc;
}
