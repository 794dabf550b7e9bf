/* test_ml_t5: the T5 v1.1 encoder (ml/sf_t5.h, TorchScript) against a
 * torch.nn reference written from the published architecture.
 *
 * A small encoder with random weights (d_model 64, 4 heads of 16, d_ff 96,
 * 2 layers, vocab 300, T5's 32 relative-position buckets up to distance
 * 128) is saved with sf_t5_save into a temporary folder;
 * tools/numerics/t5_ref.py (/usr/bin/python3, Debian's python3-torch) reads
 * the file and runs the same batch in float64.  The batch has rows of 140,
 * 77 and 5 real tokens padded with 0 to 140 positions, so that offsets past
 * max_distance (the last bucket) and padded keys are both exercised.
 *
 *   err = max |got - want| / max |want|   over every position
 *
 *   fp32 against the float64 reference: TOL_FP32 = 1e-5.  Float32 sums of
 *        64 and 96 terms over two layers differ from float64 by about 1e-7
 *        of the scale; any mistake of the architecture (a bucket off by
 *        one, a missing norm, a scaled attention, the wrong gate) moves the
 *        output by 1e-2 and more.
 *   bf16 (weights rounded from the same fp32 ones, the seed being the
 *        same) against the same reference: TOL_BF16 = 6e-2.  bf16 keeps 8
 *        significant bits (relative step 4e-3); weights, activations and
 *        the residual stream are rounded at every step of two layers.
 *
 * Then: a row's real positions come out the same alone as inside a padded
 * batch; the same seed gives the same weights and another seed others; and
 * bad input (an id outside the vocabulary, sizes that do not fit, an unknown
 * dtype) is refused with a message.  Without python's torch the test is
 * skipped (exit 77). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "ml/sf_ml.h"
#include "ml/sf_t5.h"
#include "sf_test.h"
#include "sf_test_dirs.h"

#define PY "/usr/bin/python3"
#define TOL_FP32 1e-5
#define TOL_BF16 6e-2

enum { B = 3, T = 140, D = 64 };
static const int kLengths[B] = {140, 77, 5};

static int32_t tokens[B * T];
static float want[B * T * D];

static const char *src_root(void) { return getenv("SF_ROOT") ? getenv("SF_ROOT") : "."; }

static void small_config(sf_t5_config_t *c) {
    sf_t5_config_v1_1_xxl(c);
    c->d_model = D, c->d_kv = 16, c->num_heads = 4, c->d_ff = 96, c->num_layers = 2, c->vocab_size = 300;
}

/* max |a - b| / max |b| over n values. */
static double rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        md = fmax(md, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs((double)b[i]));
    }
    return mx > 0 ? md / mx : md;
}

/* Saves the seed-1 model, writes the batch as JSON and runs the reference
 * into want. */
static int make_reference(void) {
    sf_t5_config_t c;
    small_config(&c);
    char err[512], p[512], cmd[2048];
    sf_t5_t *m = NULL;
    if (sf_t5_create_random(&c, 1, "cpu", "fp32", &m, err, sizeof err)) {
        fprintf(stderr, "create: %s\n", err);
        return -1;
    }
    const char *enc = folder("enc");
    int rc = sf_t5_save(m, enc);
    if (rc) fprintf(stderr, "save: %s\n", sf_t5_errstr(m));
    sf_t5_free(&m);
    if (rc) return -1;
    uint64_t s = 3;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            tokens[b * T + t] = t < kLengths[b] - 1 ? 3 + (int32_t)(sf_splitmix64(&s) % 297) : t < kLengths[b] ? 1 : 0;
    static char json[B * T * 6 + 64];
    size_t n = (size_t)snprintf(json, sizeof json, "{\"tokens\": [");
    for (int b = 0; b < B; b++) {
        n += (size_t)snprintf(json + n, sizeof json - n, "%s[", b ? ", " : "");
        for (int t = 0; t < T; t++) n += (size_t)snprintf(json + n, sizeof json - n, "%s%d", t ? ", " : "", tokens[b * T + t]);
        n += (size_t)snprintf(json + n, sizeof json - n, "]");
    }
    snprintf(json + n, sizeof json - n, "]}\n");
    if (write_text(root, "in.json", json)) return -1;
    snprintf(cmd, sizeof cmd, PY " '%s/tools/numerics/t5_ref.py' '%s/enc' '%s/in.json' '%s/want.f32' >'%s/ref.log' 2>&1",
             src_root(), root, root, root, root);
    if (system(cmd) != 0) {
        snprintf(p, sizeof p, "%s/ref.log", root);
        char *log = sf_file_text(p, NULL);
        fprintf(stderr, "tools/numerics/t5_ref.py failed:\n%s\n", log ? log : "(no log)");
        free(log);
        return -1;
    }
    snprintf(p, sizeof p, "%s/want.f32", root);
    size_t len = 0;
    char *data = NULL;
    if (sf_read_file(p, sizeof want + 1, &data, &len, err, sizeof err) || len != sizeof want) {
        fprintf(stderr, "%s: %zu bytes, want %zu (%s)\n", p, len, sizeof want, err);
        free(data);
        return -1;
    }
    memcpy(want, data, sizeof want);
    free(data);
    return 0;
}

static double encode_err(const char *dtype, uint64_t seed) {
    sf_t5_config_t c;
    small_config(&c);
    char err[512];
    sf_t5_t *m = NULL;
    if (sf_t5_create_random(&c, seed, "cpu", dtype, &m, err, sizeof err)) {
        fprintf(stderr, "create %s: %s\n", dtype, err);
        return INFINITY;
    }
    float *got = malloc(sizeof want);
    double e = INFINITY;
    if (sf_t5_encode(m, tokens, B, T, got) == 0) e = rel_err(got, want, (size_t)B * T * D);
    else fprintf(stderr, "encode %s: %s\n", dtype, sf_t5_errstr(m));
    free(got);
    sf_t5_free(&m);
    return e;
}

TEST(fp32_matches_reference) {
    double e = encode_err("fp32", 1);
    printf("  fp32 against the float64 reference: %.2e (tolerance %.0e)\n", e, TOL_FP32);
    CHECK(e <= TOL_FP32);
}

TEST(bf16_matches_reference) {
    double e = encode_err("bf16", 1);
    printf("  bf16 against the float64 reference: %.2e (tolerance %.0e)\n", e, TOL_BF16);
    CHECK(e <= TOL_BF16);
}

TEST(seed_decides_the_weights) {
    double e = encode_err("fp32", 2);
    printf("  seed 2 against seed 1's reference: %.2e\n", e);
    CHECK(e > 0.1);
}

TEST(row_alone_equals_row_in_padded_batch) {
    sf_t5_config_t c;
    small_config(&c);
    char err[512];
    sf_t5_t *m = NULL;
    CHECK_EQ_INT(sf_t5_create_random(&c, 1, "cpu", NULL, &m, err, sizeof err), 0);
    const int L = kLengths[2];
    float *got = malloc(sizeof(float) * L * D);
    CHECK_EQ_INT(sf_t5_encode(m, tokens + 2 * T, 1, L, got), 0);
    double e = rel_err(got, want + (size_t)2 * T * D, (size_t)L * D);
    printf("  row of %d tokens alone against the padded batch's reference: %.2e\n", L, e);
    CHECK(e <= TOL_FP32);
    free(got);
    CHECK_EQ_INT(sf_t5_config(m)->d_model, D);
    CHECK_EQ_INT(sf_t5_num_params(m), 300 * 64 + 32 * 4 + 2 * (2 * 64 + 4 * 64 * 64 + 3 * 64 * 96) + 64);
    CHECK_EQ_STR(sf_t5_dtype(m), "fp32");
    sf_t5_free(&m);
    CHECK(m == NULL);
}

TEST(bad_input_is_refused) {
    sf_t5_config_t c;
    small_config(&c);
    char err[512] = "";
    sf_t5_t *m = NULL;
    CHECK_EQ_INT(sf_t5_create_random(&c, 1, "cpu", "fp64", &m, err, sizeof err), SF_EINVAL);
    CHECK(m == NULL);
    c.d_model = 0;
    CHECK_EQ_INT(sf_t5_create_random(&c, 1, "cpu", NULL, &m, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "d_model 0"));
    small_config(&c);
    c.relative_attention_num_buckets = 2;
    CHECK_EQ_INT(sf_t5_create_random(&c, 1, "cpu", NULL, &m, err, sizeof err), SF_EINVAL);
    CHECK(contains(err, "2 buckets"));
    small_config(&c);
    CHECK_EQ_INT(sf_t5_create_random(&c, 1, "cpu", NULL, &m, err, sizeof err), 0);
    int32_t bad[4] = {5, 6, 300, 1};
    float out[4 * D];
    CHECK_EQ_INT(sf_t5_encode(m, bad, 2, 2, out), SF_EINVAL);
    CHECK(contains(sf_t5_errstr(m), "row 1: token id 300 at 0"));
    bad[2] = -1;
    CHECK_EQ_INT(sf_t5_encode(m, bad, 2, 2, out), SF_EINVAL);
    CHECK_EQ_INT(sf_t5_encode(m, bad, 0, 2, out), SF_EINVAL);
    sf_t5_free(&m);
}

static void cleanup(void) {
    if (root[0] && !getenv("SF_KEEP")) rm_rf(root);
}

int main(void) {
    if (system(PY " -c 'import torch' >/dev/null 2>&1") != 0) {
        printf("skipped: " PY " cannot import torch (Debian's python3-torch; make deps installs it)\n");
        return 77;
    }
    sf_ml_opts_t mo = {.threads = 0, .quiet = 1};
    sf_ml_init(&mo);
    snprintf(root, sizeof root, "/tmp/sf_t5_XXXXXX");
    if (!mkdtemp(root)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(cleanup);
    if (make_reference()) return 1;
    SF_RUN(fp32_matches_reference);
    SF_RUN(bf16_matches_reference);
    SF_RUN(seed_decides_the_weights);
    SF_RUN(row_alone_equals_row_in_padded_batch);
    SF_RUN(bad_input_is_refused);
    SF_DONE();
}
