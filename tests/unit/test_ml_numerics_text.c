/* test_ml_numerics_text: CLIP and GPT-2 against independent float64
 * references.
 *
 * Each fixture in tests/fixtures/numerics/ (clip_world, clip_vit_b32,
 * gpt2_small, gpt2_124m; written by tools/numerics/clip_gpt2.py, whose
 * torch.nn forward passes follow the published architectures, not the C++)
 * lists HF-named tensors with the scale and offset of a deterministic
 * formula, the inputs and the expected outputs.  Here the same formula
 * (numerics_fill.h) fills the weights, they are written as an HF folder
 * (config.json + model.safetensors) in a temp dir, loaded through the real
 * loader (sf_clip_load_dir, sf_gpt2_load), run, and compared:
 *
 *   err = max |got - want| / max |want|   over each output
 *         (CLIP: all image or all text embeddings; GPT-2: the kept logits,
 *          and for 124M each position's log-sum-exp over the whole
 *          vocabulary, measured against the logits' scale)
 *
 * with the fixture's tolerance, for fp32 and then for bf16 (cast after
 * loading; CLIP's on one image and one caption).  Then one weight per tower
 * is changed in the file (an element of an MLP deep in the network, by its
 * tensor's range), the model reloaded, and the comparison must fail, by
 * about the change the reference computed for it.  Every measured error is
 * printed.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "common/formats/safetensors.h"
#include "common/runtime/fileio.h"
#include "ml/sf_ml.h"
#include "ml/sf_vision.h"
#include "numerics_fill.h"
#include "sf_test.h"

/* A fixture's folder on disk and what the case allocated, freed by the
 * test whatever way the case ended. */
typedef struct {
    cJSON *fx;
    char dir[64], config[96], weights[96];
    sf_clip_t *clip;
    sf_gpt2_t *gpt2;
    float *a, *b;
} case_t;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static cJSON *load_fixture(const char *name) {
    const char *root = getenv("SF_ROOT") ? getenv("SF_ROOT") : ".";
    char p[512];
    snprintf(p, sizeof p, "%s/tests/fixtures/numerics/%s.json", root, name);
    char *text = sf_file_text(p, NULL);
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!j) fprintf(stderr, "cannot read %s\n", p);
    return j;
}

static const cJSON *get(const cJSON *o, const char *path) {
    char key[64];
    while (o && *path) {
        size_t n = strcspn(path, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, path);
        o = cJSON_GetObjectItemCaseSensitive(o, key);
        path += n + (path[n] == '.');
    }
    return o;
}

static double num(const cJSON *o, const char *path) { return cJSON_GetNumberValue(get(o, path)); }

static size_t shape_numel(const cJSON *shape, int64_t *dims, int *ndim) {
    size_t n = 1;
    const cJSON *d;
    *ndim = 0;
    cJSON_ArrayForEach(d, shape) {
        dims[(*ndim)++] = (int64_t)d->valuedouble;
        n *= (size_t)d->valuedouble;
    }
    return n;
}

/* The weights nf_fill makes from the fixture's tensor list, written to path
 * as F32 safetensors. */
static int write_weights(const cJSON *fx, const char *path) {
    const cJSON *tensors = cJSON_GetObjectItem(fx, "tensors"), *t;
    int n = cJSON_GetArraySize(tensors), i = 0, rc = 0;
    float **data = calloc(n, sizeof *data);
    sf_st_writer_t *w = NULL;
    if (!data || sf_st_writer_new(&w)) rc = -1;
    cJSON_ArrayForEach(t, tensors) {
        if (rc) break;
        int64_t dims[8];
        int ndim;
        size_t numel = shape_numel(get(t, "shape"), dims, &ndim);
        if (!(data[i] = malloc(numel * sizeof(float)))) {
            rc = -1;
            break;
        }
        nf_fill(get(t, "name")->valuestring, data[i], numel, num(t, "scale"), num(t, "offset"));
        rc = sf_st_writer_add(w, get(t, "name")->valuestring, SF_ST_F32, ndim, dims, data[i], numel * sizeof(float));
        i++;
    }
    if (rc == 0) rc = sf_st_writer_save(w, path);
    sf_st_writer_free(&w);
    for (int k = 0; k < i; k++) free(data[k]);
    free(data);
    return rc;
}

/* Adds delta to element `index` of an F32 tensor in a safetensors file, in
 * place (rewriting half a gigabyte for one float would dominate the test). */
static int perturb_file(const char *path, const char *tensor, long index, float delta) {
    FILE *f = fopen(path, "r+b");
    if (!f) return -1;
    uint8_t len8[8];
    uint64_t hlen = 0;
    char *hdr = NULL;
    int rc = -1;
    if (fread(len8, 1, 8, f) == 8) {
        for (int k = 7; k >= 0; k--) hlen = hlen << 8 | len8[k];
        if (hlen < (1u << 24) && (hdr = malloc(hlen + 1)) && fread(hdr, 1, hlen, f) == hlen) {
            hdr[hlen] = 0;
            cJSON *h = cJSON_Parse(hdr);
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, tensor);
            const cJSON *off = cJSON_GetArrayItem(cJSON_GetObjectItem(t, "data_offsets"), 0);
            float v;
            long at = off ? (long)(8 + hlen + (uint64_t)off->valuedouble) + 4 * index : -1;
            if (off && !strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(t, "dtype")), "F32") &&
                fseek(f, at, SEEK_SET) == 0 && fread(&v, 4, 1, f) == 1) {
                v += delta;
                if (fseek(f, at, SEEK_SET) == 0 && fwrite(&v, 4, 1, f) == 1) rc = 0;
            }
            cJSON_Delete(h);
        }
    }
    free(hdr);
    return fclose(f) == 0 ? rc : -1;
}

/* The folder of a fixture: config.json and model.safetensors in a new temp
 * dir. */
static int make_folder(case_t *c, const char *name) {
    if (!(c->fx = load_fixture(name))) return -1;
    snprintf(c->dir, sizeof c->dir, "/tmp/sf_numerics_XXXXXX");
    if (!mkdtemp(c->dir)) return -1;
    snprintf(c->config, sizeof c->config, "%s/config.json", c->dir);
    snprintf(c->weights, sizeof c->weights, "%s/model.safetensors", c->dir);
    char *js = cJSON_Print(cJSON_GetObjectItem(c->fx, "config"));
    FILE *f = js ? fopen(c->config, "w") : NULL;
    int ok = f && fputs(js, f) >= 0;
    if (f) ok = fclose(f) == 0 && ok;
    free(js);
    double t0 = now_s();
    if (!ok || write_weights(c->fx, c->weights)) return -1;
    fprintf(stderr, "%s: weights written in %.1f s\n", name, now_s() - t0);
    return 0;
}

static void case_free(case_t *c) {
    sf_clip_free(&c->clip);
    sf_gpt2_free(&c->gpt2);
    free(c->a);
    free(c->b);
    if (c->dir[0]) {
        unlink(c->config);
        unlink(c->weights);
        rmdir(c->dir);
    }
    cJSON_Delete(c->fx);
    memset(c, 0, sizeof *c);
}

/* max |got - want| / max |want| over the first nrows rows of a JSON array of
 * arrays against got (rows, got_stride), reading columns at `cols` (NULL:
 * 0..n). */
static double rel_err_rows(const float *got, int got_stride, const cJSON *want, int nrows, const int *cols) {
    double d = 0, m = 0;
    int r = 0;
    const cJSON *row, *x;
    cJSON_ArrayForEach(row, want) {
        if (r == nrows) break;
        int k = 0;
        cJSON_ArrayForEach(x, row) {
            double g = got[(size_t)r * got_stride + (cols ? cols[k] : k)];
            d = fmax(d, fabs(g - x->valuedouble));
            m = fmax(m, fabs(x->valuedouble));
            k++;
        }
        r++;
    }
    return d / m;
}

/* ---- CLIP ---- */

/* Image and text embeddings of the loaded model into c->a, c->b; their
 * errors against the fixture.  all 0: only the first image and the first
 * caption, cut after its end token (the causal mask makes the rest
 * irrelevant to its feature), for bf16, whose matmuls run at about a GMAC/s
 * on this CPU. */
static int clip_run(case_t *c, int all, double *img_err, double *txt_err) {
    const cJSON *pix = get(c->fx, "inputs.pixels"), *tok = get(c->fx, "inputs.tokens");
    int64_t dims[8];
    int nd, B = 0, T = 0, Tf;
    size_t np = shape_numel(get(pix, "shape"), dims, &nd);
    const int E = (int)num(c->fx, "config.projection_dim"), eot = (int)num(c->fx, "config.text_config.vocab_size") - 1;
    int Bi = (int)dims[0];
    B = cJSON_GetArraySize(tok);
    T = Tf = cJSON_GetArraySize(cJSON_GetArrayItem(tok, 0));
    if (!all) {
        Bi = B = 1;
        for (T = 1; T < Tf && cJSON_GetArrayItem(cJSON_GetArrayItem(tok, 0), T - 1)->valueint != eot;) T++;
    }
    float *px = malloc(np * sizeof *px);
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    free(c->a);
    free(c->b);
    c->a = malloc((size_t)Bi * E * sizeof(float));
    c->b = malloc((size_t)B * E * sizeof(float));
    int rc = -1;
    if (px && ids && c->a && c->b) {
        nf_fill(get(pix, "name")->valuestring, px, np, num(pix, "scale"), num(pix, "offset"));
        for (int i = 0; i < B; i++)
            for (int t = 0; t < T; t++)
                ids[i * T + t] = cJSON_GetArrayItem(cJSON_GetArrayItem(tok, i), t)->valueint;
        rc = sf_clip_encode_image(c->clip, px, Bi, c->a);
        if (rc == 0) rc = sf_clip_encode_text(c->clip, ids, B, T, c->b);
        if (rc) fprintf(stderr, "encode: %s\n", sf_clip_errstr(c->clip));
    }
    if (rc == 0) {
        *img_err = rel_err_rows(c->a, E, get(c->fx, "expected.image_embeds"), Bi, NULL);
        *txt_err = rel_err_rows(c->b, E, get(c->fx, "expected.text_embeds"), B, NULL);
    }
    free(px);
    free(ids);
    return rc;
}

static void clip_case(case_t *c, const char *name) {
    char err[512];
    double t0 = now_s(), ie, te;
    CHECK_EQ_INT(make_folder(c, name), 0);
    CHECK_EQ_INT(sf_clip_load_dir(c->dir, "cpu", &c->clip, err, sizeof err), 0);
    CHECK_EQ_INT(sf_clip_num_params(c->clip), (int64_t)num(c->fx, "num_params"));
    const double tol = num(c->fx, "tolerance.fp32"), tol16 = num(c->fx, "tolerance.bf16");

    double t1 = now_s();
    CHECK_EQ_INT(clip_run(c, 1, &ie, &te), 0);
    fprintf(stderr, "%s fp32: image err %.3g, text err %.3g (tolerance %g; write + load %.1f s, forward %.1f s)\n",
            name, ie, te, tol, t1 - t0, now_s() - t1);
    CHECK(ie <= tol);
    CHECK(te <= tol);
    CHECK_NEAR(sf_clip_logit_scale(c->clip), num(c->fx, "expected.logit_scale"),
               1e-6 * num(c->fx, "expected.logit_scale"));

    t1 = now_s();
    CHECK_EQ_INT(sf_clip_set_dtype(c->clip, "bf16"), 0);
    CHECK_EQ_INT(clip_run(c, 0, &ie, &te), 0);
    fprintf(stderr, "%s bf16 (image 0, caption 0): image err %.3g, text err %.3g (tolerance %g; %.1f s)\n", name,
            ie, te, tol16, now_s() - t1);
    CHECK(ie <= tol16);
    CHECK(te <= tol16);
    sf_clip_free(&c->clip);

    /* One weight wrong in each tower: each tower's comparison must fail by
     * about what the reference says that weight changes. */
    const cJSON *p;
    double want[2];
    int k = 0;
    cJSON_ArrayForEach(p, get(c->fx, "perturb")) {
        CHECK_EQ_INT(perturb_file(c->weights, get(p, "name")->valuestring, (long)num(p, "index"),
                                  (float)num(p, "delta")), 0);
        want[k++] = num(p, "rel_change");
    }
    CHECK_EQ_INT(k, 2);
    CHECK_EQ_INT(sf_clip_load_dir(c->dir, "cpu", &c->clip, err, sizeof err), 0);
    CHECK_EQ_INT(clip_run(c, 1, &ie, &te), 0);
    fprintf(stderr, "%s one weight changed per tower: text err %.3g (reference %.3g), image err %.3g (%.3g)\n",
            name, te, want[0], ie, want[1]);
    CHECK(te > tol && fabs(te - want[0]) <= 0.2 * want[0]);
    CHECK(ie > tol && fabs(ie - want[1]) <= 0.2 * want[1]);
    fprintf(stderr, "%s: %.1f s\n", name, now_s() - t0);
}

TEST(clip_world_matches_reference) {
    case_t c = {0};
    clip_case(&c, "clip_world");
    case_free(&c);
}

TEST(clip_vit_b32_matches_reference) {
    case_t c = {0};
    clip_case(&c, "clip_vit_b32");
    case_free(&c);
}

/* ---- GPT-2 ---- */

/* Logits of the loaded model into c->a; err over the kept ones and, where
 * the fixture has them, lse_err over the log-sum-exps (against the kept
 * logits' scale). */
static int gpt2_run(case_t *c, double *err, double *lse_err) {
    const cJSON *tok = get(c->fx, "inputs.tokens"), *cols_j = get(c->fx, "expected.vocab_ids");
    const int B = cJSON_GetArraySize(tok), T = cJSON_GetArraySize(cJSON_GetArrayItem(tok, 0));
    const int V = (int)num(c->fx, "config.vocab_size"), nc = cJSON_GetArraySize(cols_j);
    int32_t *ids = malloc((size_t)B * T * sizeof *ids);
    int *cols = malloc(nc * sizeof *cols);
    free(c->a);
    c->a = malloc((size_t)B * T * V * sizeof(float));
    int rc = -1;
    if (ids && cols && c->a) {
        for (int i = 0; i < B; i++)
            for (int t = 0; t < T; t++)
                ids[i * T + t] = cJSON_GetArrayItem(cJSON_GetArrayItem(tok, i), t)->valueint;
        for (int k = 0; k < nc; k++) cols[k] = cJSON_GetArrayItem(cols_j, k)->valueint;
        rc = sf_gpt2_forward(c->gpt2, ids, NULL, B, T, c->a, NULL);
        if (rc) fprintf(stderr, "forward: %s\n", sf_gpt2_errstr(c->gpt2));
    }
    if (rc == 0) {
        /* The logits as rows of (position, kept id): B*T rows of V. */
        cJSON *rows = cJSON_CreateArray();
        const cJSON *r, *x;
        cJSON_ArrayForEach(r, get(c->fx, "expected.logits")) cJSON_ArrayForEach(x, r)
            cJSON_AddItemReferenceToArray(rows, (cJSON *)x);
        *err = rel_err_rows(c->a, V, rows, B * T, cols);
        double scale = 0;
        cJSON_ArrayForEach(r, rows) cJSON_ArrayForEach(x, r) scale = fmax(scale, fabs(x->valuedouble));
        cJSON_Delete(rows);
        *lse_err = 0;
        const cJSON *lse = get(c->fx, "expected.logsumexp");
        for (int i = 0; lse && i < B; i++)
            for (int t = 0; t < T; t++) {
                const float *l = c->a + ((size_t)i * T + t) * V;
                double mx = l[0], s = 0;
                for (int v = 1; v < V; v++) mx = fmax(mx, l[v]);
                for (int v = 0; v < V; v++) s += exp(l[v] - mx);
                double want = cJSON_GetArrayItem(cJSON_GetArrayItem(lse, i), t)->valuedouble;
                *lse_err = fmax(*lse_err, fabs(mx + log(s) - want) / scale);
            }
    }
    free(ids);
    free(cols);
    return rc;
}

static void gpt2_case(case_t *c, const char *name) {
    char err[512];
    double t0 = now_s(), e, le;
    CHECK_EQ_INT(make_folder(c, name), 0);
    CHECK_EQ_INT(sf_gpt2_load(c->dir, "cpu", &c->gpt2, err, sizeof err), 0);
    const int C = (int)num(c->fx, "config.n_embd");
    /* The shim's count includes the value head (n_embd + 1). */
    CHECK_EQ_INT(sf_gpt2_num_params(c->gpt2), (int64_t)num(c->fx, "num_params") + C + 1);
    const double tol = num(c->fx, "tolerance.fp32"), tol16 = num(c->fx, "tolerance.bf16");

    double t1 = now_s();
    CHECK_EQ_INT(gpt2_run(c, &e, &le), 0);
    fprintf(stderr, "%s fp32: logits err %.3g, log-sum-exp err %.3g (tolerance %g; write + load %.1f s, "
            "forward %.1f s)\n", name, e, le, tol, t1 - t0, now_s() - t1);
    CHECK(e <= tol);
    CHECK(le <= tol);

    t1 = now_s();
    CHECK_EQ_INT(sf_gpt2_set_dtype(c->gpt2, "bf16"), 0);
    CHECK_EQ_INT(gpt2_run(c, &e, &le), 0);
    fprintf(stderr, "%s bf16: logits err %.3g, log-sum-exp err %.3g (tolerance %g; %.1f s)\n", name, e, le, tol16,
            now_s() - t1);
    CHECK(e <= tol16);
    CHECK(le <= tol16);
    sf_gpt2_free(&c->gpt2);

    const cJSON *p = cJSON_GetArrayItem(get(c->fx, "perturb"), 0);
    CHECK(p);
    CHECK_EQ_INT(perturb_file(c->weights, get(p, "name")->valuestring, (long)num(p, "index"),
                              (float)num(p, "delta")), 0);
    CHECK_EQ_INT(sf_gpt2_load(c->dir, "cpu", &c->gpt2, err, sizeof err), 0);
    CHECK_EQ_INT(gpt2_run(c, &e, &le), 0);
    const double want = num(p, "rel_change");
    fprintf(stderr, "%s one weight changed: logits err %.3g (reference %.3g)\n", name, e, want);
    CHECK(e > tol && fabs(e - want) <= 0.2 * want);
    fprintf(stderr, "%s: %.1f s\n", name, now_s() - t0);
}

TEST(gpt2_small_matches_reference) {
    case_t c = {0};
    gpt2_case(&c, "gpt2_small");
    case_free(&c);
}

TEST(gpt2_124m_matches_reference) {
    case_t c = {0};
    gpt2_case(&c, "gpt2_124m");
    case_free(&c);
}

int main(void) {
    sf_ml_opts_t o = {.threads = 1, .quiet = 1};
    sf_ml_init(&o);
    SF_RUN(clip_world_matches_reference);
    SF_RUN(gpt2_small_matches_reference);
    SF_RUN(clip_vit_b32_matches_reference);
    SF_RUN(gpt2_124m_matches_reference);
    SF_DONE();
}
