/* test_ml_gpt2.c: GPT-2 in the shim against a plain C implementation.
 *
 * Random weights are written as an HF-named safetensors file (with the
 * "transformer." prefix, an lm_head copy and attention-mask buffers, as HF
 * checkpoints have), loaded through sf_gpt2_load, and the logits and values
 * compared with a straightforward llm.c-style forward pass over the same
 * arrays, to 1e-4.  Then: padding invariance, weights as bytes, save/load,
 * the real 124M shapes, and bad input.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/runtime/error.h"
#include "common/formats/safetensors.h"
#include "ml/sf_ml.h"
#include "tests/unit/sf_test.h"

/* A small configuration that still has several heads and layers. */
enum { L = 2, H = 4, C = 32, TCTX = 24, V = 97 };

typedef struct {
    float wte[V * C], wpe[TCTX * C];
    float ln1w[L][C], ln1b[L][C], attnw[L][C * 3 * C], attnb[L][3 * C], projw[L][C * C],
        projb[L][C], ln2w[L][C], ln2b[L][C], fcw[L][C * 4 * C], fcb[L][4 * C],
        fcprojw[L][4 * C * C], fcprojb[L][C];
    float lnfw[C], lnfb[C], vw[C], vb[1];
} weights_t;

static uint64_t rng = 88172645463325252ULL;
static float frand(float scale) {   /* uniform in [-scale, scale] */
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return scale * (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}
static void fill(float *p, size_t n, float base, float scale) {
    for (size_t i = 0; i < n; i++) p[i] = base + frand(scale);
}

static void init_weights(weights_t *w) {
    fill(w->wte, V * C, 0, 0.5f);
    fill(w->wpe, TCTX * C, 0, 0.2f);
    for (int l = 0; l < L; l++) {
        fill(w->ln1w[l], C, 1, 0.2f);
        fill(w->ln1b[l], C, 0, 0.1f);
        fill(w->attnw[l], C * 3 * C, 0, 0.3f);
        fill(w->attnb[l], 3 * C, 0, 0.1f);
        fill(w->projw[l], C * C, 0, 0.2f);
        fill(w->projb[l], C, 0, 0.1f);
        fill(w->ln2w[l], C, 1, 0.2f);
        fill(w->ln2b[l], C, 0, 0.1f);
        fill(w->fcw[l], C * 4 * C, 0, 0.2f);
        fill(w->fcb[l], 4 * C, 0, 0.1f);
        fill(w->fcprojw[l], 4 * C * C, 0, 0.1f);
        fill(w->fcprojb[l], C, 0, 0.1f);
    }
    fill(w->lnfw, C, 1, 0.2f);
    fill(w->lnfb, C, 0, 0.1f);
    fill(w->vw, C, 0, 0.3f);
    fill(w->vb, 1, 0, 0.3f);
}

/* ---- the reference: plain loops, double accumulators ---- */

static void layernorm(const double *x, const float *g, const float *b, double *out) {
    double mean = 0, var = 0;
    for (int i = 0; i < C; i++) mean += x[i];
    mean /= C;
    for (int i = 0; i < C; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= C;
    double rs = 1.0 / sqrt(var + 1e-5);
    for (int i = 0; i < C; i++) out[i] = (x[i] - mean) * rs * g[i] + b[i];
}

/* out (n) = in (m) @ w (m, n) + b (n): HF Conv1D, weight stored (in, out). */
static void conv1d(const double *in, const float *w, const float *b, int m, int n, double *out) {
    for (int j = 0; j < n; j++) {
        double s = b[j];
        for (int i = 0; i < m; i++) s += in[i] * w[(size_t)i * n + j];
        out[j] = s;
    }
}

static double gelu_new(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* tokens (T) -> logits (T, V), values (T). */
static void ref_forward(const weights_t *w, const int32_t *tok, int T, double *logits,
                        double *values) {
    static double x[TCTX][C], a[TCTX][C], qkv[TCTX][3 * C], y[TCTX][C], h[4 * C], o[C];
    for (int t = 0; t < T; t++)
        for (int i = 0; i < C; i++) x[t][i] = w->wte[tok[t] * C + i] + w->wpe[t * C + i];
    const int D = C / H;
    for (int l = 0; l < L; l++) {
        for (int t = 0; t < T; t++) {
            layernorm(x[t], w->ln1w[l], w->ln1b[l], a[t]);
            conv1d(a[t], w->attnw[l], w->attnb[l], C, 3 * C, qkv[t]);
        }
        for (int t = 0; t < T; t++) {
            for (int hd = 0; hd < H; hd++) {
                double sc[TCTX], mx = -1e300, sum = 0;
                for (int s = 0; s <= t; s++) {
                    double d = 0;
                    for (int i = 0; i < D; i++) d += qkv[t][hd * D + i] * qkv[s][C + hd * D + i];
                    sc[s] = d / sqrt((double)D);
                    if (sc[s] > mx) mx = sc[s];
                }
                for (int s = 0; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
                for (int i = 0; i < D; i++) {
                    double acc = 0;
                    for (int s = 0; s <= t; s++) acc += sc[s] / sum * qkv[s][2 * C + hd * D + i];
                    y[t][hd * D + i] = acc;
                }
            }
        }
        for (int t = 0; t < T; t++) {
            conv1d(y[t], w->projw[l], w->projb[l], C, C, o);
            for (int i = 0; i < C; i++) x[t][i] += o[i];
            layernorm(x[t], w->ln2w[l], w->ln2b[l], a[t]);
            conv1d(a[t], w->fcw[l], w->fcb[l], C, 4 * C, h);
            for (int i = 0; i < 4 * C; i++) h[i] = gelu_new(h[i]);
            conv1d(h, w->fcprojw[l], w->fcprojb[l], 4 * C, C, o);
            for (int i = 0; i < C; i++) x[t][i] += o[i];
        }
    }
    for (int t = 0; t < T; t++) {
        layernorm(x[t], w->lnfw, w->lnfb, a[t]);
        for (int v = 0; v < V; v++) {
            double s = 0;
            for (int i = 0; i < C; i++) s += a[t][i] * w->wte[v * C + i];
            logits[(size_t)t * V + v] = s;
        }
        double s = w->vb[0];
        for (int i = 0; i < C; i++) s += a[t][i] * w->vw[i];
        values[t] = s;
    }
}

/* ---- the checkpoint ---- */

static weights_t W;
static char dir[64];
static sf_gpt2_t *model;
static sf_gpt2_config_t cfg = {L, H, C, TCTX, V, V - 1, 1e-5f};

static int add(sf_st_writer_t *wr, const char *name, const float *p, int ndim, int64_t d0,
               int64_t d1) {
    int64_t shape[2] = {d0, d1};
    size_t n = (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1);
    return sf_st_writer_add(wr, name, SF_ST_F32, ndim, shape, p, n * 4);
}

static int write_checkpoint(const char *path) {
    sf_st_writer_t *wr;
    if (sf_st_writer_new(&wr)) return -1;
    int rc = 0;
    char n[128];
    rc |= add(wr, "transformer.wte.weight", W.wte, 2, V, C);
    rc |= add(wr, "transformer.wpe.weight", W.wpe, 2, TCTX, C);
    rc |= add(wr, "lm_head.weight", W.wte, 2, V, C);   /* tied: must be ignored */
    static float mask_buf[TCTX * TCTX];                /* HF's old attn.bias buffer */
    for (int l = 0; l < L; l++) {
#define P(suffix, arr, nd, a, b) \
    (snprintf(n, sizeof n, "transformer.h.%d." suffix, l), add(wr, n, arr[l], nd, a, b))
        rc |= P("ln_1.weight", W.ln1w, 1, C, 0);
        rc |= P("ln_1.bias", W.ln1b, 1, C, 0);
        rc |= P("attn.c_attn.weight", W.attnw, 2, C, 3 * C);
        rc |= P("attn.c_attn.bias", W.attnb, 1, 3 * C, 0);
        rc |= P("attn.c_proj.weight", W.projw, 2, C, C);
        rc |= P("attn.c_proj.bias", W.projb, 1, C, 0);
        rc |= P("ln_2.weight", W.ln2w, 1, C, 0);
        rc |= P("ln_2.bias", W.ln2b, 1, C, 0);
        rc |= P("mlp.c_fc.weight", W.fcw, 2, C, 4 * C);
        rc |= P("mlp.c_fc.bias", W.fcb, 1, 4 * C, 0);
        rc |= P("mlp.c_proj.weight", W.fcprojw, 2, 4 * C, C);
        rc |= P("mlp.c_proj.bias", W.fcprojb, 1, C, 0);
#undef P
        snprintf(n, sizeof n, "transformer.h.%d.attn.bias", l);
        rc |= add(wr, n, mask_buf, 2, TCTX, TCTX);
    }
    rc |= add(wr, "transformer.ln_f.weight", W.lnfw, 1, C, 0);
    rc |= add(wr, "transformer.ln_f.bias", W.lnfb, 1, C, 0);
    rc |= add(wr, "v_head.summary.weight", W.vw, 2, 1, C);
    rc |= add(wr, "v_head.summary.bias", W.vb, 1, 1, 0);
    if (rc == 0) rc = sf_st_writer_save(wr, path);
    sf_st_writer_free(&wr);
    return rc;
}

TEST(test_load_hf_checkpoint) {
    init_weights(&W);
    snprintf(dir, sizeof dir, "/tmp/sf_gpt2_XXXXXX");
    CHECK(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    CHECK_EQ_INT(write_checkpoint(path), 0);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    CHECK(f);
    fprintf(f, "{\"model_type\": \"gpt2\", \"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, "
               "\"n_positions\": %d, \"vocab_size\": %d, \"eos_token_id\": %d, "
               "\"layer_norm_epsilon\": 1e-05}\n", L, H, C, TCTX, V, V - 1);
    fclose(f);
    char err[512];
    int rc = sf_gpt2_load(dir, "cpu", &model, err, sizeof err);
    if (rc) fprintf(stderr, "load: %s\n", err);
    CHECK_EQ_INT(rc, 0);
    const sf_gpt2_config_t *c = sf_gpt2_config(model);
    CHECK(c->n_layer == L && c->n_head == H && c->n_embd == C && c->n_ctx == TCTX && c->vocab_size == V);
    int64_t expect = (int64_t)V * C + TCTX * C + 2 * C + C + 1 +
                     L * (4 * C + C * 3 * C + 3 * C + C * C + C + C * 4 * C + 4 * C + 4 * C * C + C);
    CHECK_EQ_INT(sf_gpt2_num_params(model), expect);
}

TEST(test_forward_matches_reference) {
    CHECK(model);
    enum { T = TCTX };
    int32_t tok[T];
    for (int t = 0; t < T; t++) tok[t] = (int32_t)((t * 37 + 11) % V);
    static double rl[T * V], rv[T];
    static float lg[T * V], val[T];
    ref_forward(&W, tok, T, rl, rv);
    CHECK_EQ_INT(sf_gpt2_forward(model, tok, NULL, 1, T, lg, val), 0);
    double maxd = 0, maxabs = 0;
    for (int i = 0; i < T * V; i++) {
        maxd = fmax(maxd, fabs(lg[i] - rl[i]));
        maxabs = fmax(maxabs, fabs(rl[i]));
    }
    for (int t = 0; t < T; t++) maxd = fmax(maxd, fabs(val[t] - rv[t]));
    printf("# max |shim - reference| = %.3g (logits up to %.3g)\n", maxd, maxabs);
    CHECK(maxabs > 1.0);   /* the weights are not so small that anything matches */
    CHECK(maxd < 1e-4);
}

TEST(test_padding_invariance) {
    /* Row 0 left-padded and row 1 right-padded give the logits of the same
     * tokens unpadded: positions count real tokens only. */
    enum { T = 10, P = 3 };
    int32_t tok[2 * T], solo[T - P];
    uint8_t mask[2 * T];
    for (int t = 0; t < T - P; t++) solo[t] = (int32_t)((t * 13 + 5) % V);
    for (int t = 0; t < T; t++) {
        tok[t] = t < P ? 0 : solo[t - P];
        mask[t] = t >= P;
        tok[T + t] = t < T - P ? solo[t] : 1;
        mask[T + t] = t < T - P;
    }
    static float lg[2 * T * V], ls[(T - P) * V];
    CHECK_EQ_INT(sf_gpt2_forward(model, tok, mask, 2, T, lg, NULL), 0);
    CHECK_EQ_INT(sf_gpt2_forward(model, solo, NULL, 1, T - P, ls, NULL), 0);
    double maxd = 0;
    for (int t = 0; t < T - P; t++)
        for (int v = 0; v < V; v++) {
            maxd = fmax(maxd, fabs(lg[(size_t)(t + P) * V + v] - ls[(size_t)t * V + v]));
            maxd = fmax(maxd, fabs(lg[(size_t)(T + t) * V + v] - ls[(size_t)t * V + v]));
        }
    CHECK(maxd < 1e-4);
}

static int same_outputs(sf_gpt2_t *a, sf_gpt2_t *b) {
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    static float la[8 * V], lb[8 * V], va[8], vb[8];
    if (sf_gpt2_forward(a, tok, NULL, 1, 8, la, va) || sf_gpt2_forward(b, tok, NULL, 1, 8, lb, vb))
        return 0;
    return memcmp(la, lb, sizeof la) == 0 && memcmp(va, vb, sizeof va) == 0;
}

TEST(test_bytes_roundtrip) {
    uint8_t *buf;
    size_t len;
    CHECK_EQ_INT(sf_gpt2_to_bytes(model, &buf, &len), 0);
    CHECK(len > (size_t)sf_gpt2_num_params(model) * 4);
    sf_gpt2_t *copy = NULL;
    char err[256];
    CHECK_EQ_INT(sf_gpt2_from_bytes(buf, len, "cpu", &copy, err, sizeof err), 0);
    CHECK(same_outputs(model, copy));
    /* Into an existing model: a fresh random one takes the weights. */
    sf_gpt2_t *other;
    CHECK_EQ_INT(sf_gpt2_new(&cfg, "cpu", 7, &other, err, sizeof err), 0);
    CHECK(!same_outputs(model, other));
    CHECK_EQ_INT(sf_gpt2_load_bytes(other, buf, len), 0);
    CHECK(same_outputs(model, other));
    /* Bytes for another configuration are refused, and so is garbage. */
    sf_gpt2_config_t c2 = cfg;
    c2.n_layer = 1;
    sf_gpt2_t *small;
    CHECK_EQ_INT(sf_gpt2_new(&c2, "cpu", 7, &small, err, sizeof err), 0);
    CHECK_EQ_INT(sf_gpt2_load_bytes(small, buf, len), SF_EINVAL);
    CHECK(strlen(sf_gpt2_errstr(small)) > 0);
    CHECK_EQ_INT(sf_gpt2_load_bytes(other, buf, len / 2), SF_EFORMAT);
    sf_gpt2_free(&copy);
    CHECK(copy == NULL);
    CHECK_EQ_INT(sf_gpt2_from_bytes(buf, 5, "cpu", &copy, err, sizeof err), SF_EFORMAT);
    CHECK(copy == NULL);
    free(buf);
    sf_gpt2_free(&other);
    sf_gpt2_free(&small);
}

TEST(test_save_load_and_clone) {
    char path[128], err[256];
    snprintf(path, sizeof path, "%s/own.safetensors", dir);
    CHECK_EQ_INT(sf_gpt2_save(model, path), 0);
    sf_gpt2_t *back;
    CHECK_EQ_INT(sf_gpt2_load(path, "cpu", &back, err, sizeof err), 0);   /* config from metadata */
    CHECK(same_outputs(model, back));
    sf_gpt2_t *cl;
    CHECK_EQ_INT(sf_gpt2_clone(model, &cl), 0);
    CHECK(same_outputs(model, cl));
    sf_gpt2_free(&back);
    sf_gpt2_free(&cl);
    unlink(path);
}

TEST(test_f16_checkpoint) {
    /* The same weights stored as F16 (as many HF uploads are) load and give
     * the same logits to half precision. */
    char path[128], path16[128], err[256];
    snprintf(path, sizeof path, "%s/f32.safetensors", dir);
    snprintf(path16, sizeof path16, "%s/f16.safetensors", dir);
    CHECK_EQ_INT(sf_gpt2_save(model, path), 0);
    sf_st_t *st;
    CHECK_EQ_INT(sf_st_load(path, &st, err, sizeof err), 0);
    sf_st_writer_t *w;
    CHECK_EQ_INT(sf_st_writer_new(&w), 0);
    CHECK_EQ_INT(sf_st_writer_meta(w, "sf_gpt2_config", sf_st_meta(st, "sf_gpt2_config")), 0);
    uint16_t *halves[64];
    int n = sf_st_count(st);
    CHECK(n < 64);
    for (int i = 0; i < n; i++) {
        const sf_st_tensor_t *t = sf_st_get(st, i);
        halves[i] = malloc(2 * (size_t)t->numel + 1);
        for (int64_t k = 0; k < t->numel; k++) {
            float f;
            memcpy(&f, t->data + 4 * k, 4);
            halves[i][k] = sf_st_f32_to_f16(f);
        }
        CHECK_EQ_INT(sf_st_writer_add(w, t->name, SF_ST_F16, t->ndim, t->shape, halves[i],
                                      2 * (size_t)t->numel), 0);
    }
    CHECK_EQ_INT(sf_st_writer_save(w, path16), 0);
    sf_st_writer_free(&w);
    for (int i = 0; i < n; i++) free(halves[i]);
    sf_st_free(&st);
    sf_gpt2_t *m16;
    CHECK_EQ_INT(sf_gpt2_load(path16, "cpu", &m16, err, sizeof err), 0);
    int32_t tok[6] = {3, 1, 4, 1, 5, 9};
    static float a[6 * V], b[6 * V];
    CHECK_EQ_INT(sf_gpt2_forward(model, tok, NULL, 1, 6, a, NULL), 0);
    CHECK_EQ_INT(sf_gpt2_forward(m16, tok, NULL, 1, 6, b, NULL), 0);
    double maxd = 0;
    for (int i = 0; i < 6 * V; i++) maxd = fmax(maxd, fabs(a[i] - b[i]));
    CHECK(maxd > 0 && maxd < 0.05);
    sf_gpt2_free(&m16);
    unlink(path);
    unlink(path16);
}

TEST(test_bad_checkpoints) {
    char path[128], err[512];
    sf_gpt2_t *m;
    /* A config that disagrees with the tensors: a shape error naming the tensor. */
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fprintf(f, "{\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
               "\"vocab_size\": %d, \"eos_token_id\": 0}", L, H, C, TCTX, V + 1);
    fclose(f);
    CHECK_EQ_INT(sf_gpt2_load(dir, "cpu", &m, err, sizeof err), SF_EFORMAT);
    CHECK(strstr(err, "wte.weight") != NULL);
    /* One layer more than the file has: a missing tensor. */
    f = fopen(path, "w");
    fprintf(f, "{\"n_layer\": %d, \"n_head\": %d, \"n_embd\": %d, \"n_positions\": %d, "
               "\"vocab_size\": %d, \"eos_token_id\": 0}", L + 1, H, C, TCTX, V);
    fclose(f);
    CHECK_EQ_INT(sf_gpt2_load(dir, "cpu", &m, err, sizeof err), SF_ENOTFOUND);
    CHECK(strstr(err, "h.2.") != NULL);
    f = fopen(path, "w");
    fprintf(f, "{\"n_layer\": 2, \"n_head\": 5, \"n_embd\": 32}");
    fclose(f);
    CHECK_EQ_INT(sf_gpt2_load(dir, "cpu", &m, err, sizeof err), SF_EINVAL);
    unlink(path);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path);
    rmdir(dir);
    CHECK_EQ_INT(sf_gpt2_load(dir, "cpu", &m, err, sizeof err), SF_EIO);
}

TEST(test_bad_input) {
    int32_t tok[4] = {1, 2, V, 3};
    float lg[4 * V];
    CHECK_EQ_INT(sf_gpt2_forward(model, tok, NULL, 1, 4, lg, NULL), SF_EINVAL);
    CHECK(strstr(sf_gpt2_errstr(model), "vocabulary") != NULL);
    int32_t longseq[TCTX + 1] = {0};
    CHECK_EQ_INT(sf_gpt2_forward(model, longseq, NULL, 1, TCTX + 1, NULL, NULL), SF_ERANGE);
    char err[256];
    sf_gpt2_t *m;
    CHECK_EQ_INT(sf_gpt2_new(&cfg, "gpu", 1, &m, err, sizeof err), SF_EINVAL);
    if (sf_ml_cuda_count() == 0) {
        CHECK_EQ_INT(sf_gpt2_new(&cfg, "cuda:0", 1, &m, err, sizeof err), SF_EUNSUPPORTED);
        CHECK_EQ_INT(sf_ml_device_check("cuda"), SF_EUNSUPPORTED);
    }
    CHECK_EQ_INT(sf_ml_device_check("cpu"), 0);
}

TEST(test_runtime) {
    /* The probe finds which library serves sgemm_ (Debian: the alternatives
     * link libblas.so.3), so a slow reference BLAS can be reported. */
    CHECK(sf_ml_blas_fast() != -1);
    CHECK(strstr(sf_ml_blas_name(), "blas") != NULL);
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    CHECK_EQ_INT(sf_ml_init(&o), 0);   /* a second call only resets threads */
}

TEST(test_124m_shapes) {
    /* The real GPT-2 small: built, saved with HF names and loaded back. */
    sf_gpt2_config_t c;
    sf_gpt2_config_124m(&c);
    char err[256];
    sf_gpt2_t *m, *back;
    CHECK_EQ_INT(sf_gpt2_new(&c, "cpu", 1, &m, err, sizeof err), 0);
    CHECK_EQ_INT(sf_gpt2_num_params(m), 124439808 + 768 + 1);
    char path[] = "/tmp/sf_gpt2_124m_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    CHECK_EQ_INT(sf_gpt2_save(m, path), 0);
    sf_gpt2_free(&m);
    int rc = sf_gpt2_load(path, "cpu", &back, err, sizeof err);
    unlink(path);
    if (rc) fprintf(stderr, "%s\n", err);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(sf_gpt2_config(back)->n_ctx, 1024);
    int32_t tok[3] = {15496, 995, 50256};
    float val[3];
    CHECK_EQ_INT(sf_gpt2_forward(back, tok, NULL, 1, 3, NULL, val), 0);
    CHECK(isfinite(val[2]));
    sf_gpt2_free(&back);
}

int main(void) {
    sf_ml_opts_t o = {.threads = 1};
    sf_ml_init(&o);
    printf("# BLAS: %s\n", sf_ml_blas_name());
    SF_RUN(test_load_hf_checkpoint);
    SF_RUN(test_forward_matches_reference);
    SF_RUN(test_padding_invariance);
    SF_RUN(test_bytes_roundtrip);
    SF_RUN(test_save_load_and_clone);
    SF_RUN(test_f16_checkpoint);
    SF_RUN(test_bad_checkpoints);
    SF_RUN(test_bad_input);
    SF_RUN(test_runtime);
    SF_RUN(test_124m_shapes);
    sf_gpt2_free(&model);
    SF_DONE();
}
