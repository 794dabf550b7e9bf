/* filter.c: the world CLIP's filter threshold, calibrated on held-out
 * generations whose outcome the world knows (docs/models.md, "The filter's
 * threshold").
 *
 * The filter keeps an image when the cosine of its CLIP embedding with
 * "a photo of a {class}" is at least a threshold.  The paper's 0.2 belongs to
 * CLIP ViT-B/32; the world CLIP's cosines are on another scale, so its
 * threshold is chosen here, on generations of every class from captions of
 * many lengths (so that the generator fails often enough to measure), and
 * written beside the model as clip-world/filter.json, which the workers read.
 *
 * A generation is faithful when the generator drew the target class (its
 * outcome is ok, dropped or swapped: an attribute may be wrong, the object is
 * right) and a failure when it drew another class or none.  The captions name
 * each attribute with probability one half (as the CLIP's training pairs do):
 * from the class alone to a scene, a style and a handful of others, the range
 * the strategies' captions span.  Even-numbered generations choose the
 * threshold: the highest that keeps at least FILTER_KEEP of the faithful
 * ones (the filter is there to drop failures, not shifted images: a higher
 * threshold would also drop the far images the method is after); odd-numbered
 * ones measure it, so the figures written are held-out.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/reward.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "common/text/clip_bpe.h"
#include "ml/sf_vision.h"
#include "trainer/data.h"

#define FILTER_VERSION 1
#define FILTER_PER_CLASS 128     /* generations per class (half choose, half measure) */
#define FILTER_KEEP 0.95         /* share of faithful generations the threshold keeps */
#define FILTER_SEED0 (1ull << 44) /* far from training pairs and test sets */

typedef struct {
    float cos;   /* image . "a photo of a {class}" */
    int faithful;
    int first;   /* the target's prompt is the closest of the K */
    int named;   /* attributes the caption names */
} gen_t;

/* Over the measuring half (odd-numbered generations) at threshold t: the
 * share of faithful ones kept, of failures rejected, and of rejections that
 * were failures (1 when nothing is rejected). */
typedef struct {
    double keep_ok, reject_bad, precision;
    int n_ok, n_bad;
} rates_t;

static rates_t rates(const gen_t *g, int n, float t) {
    int ok = 0, bad = 0, kept = 0, rej = 0, rej_ok = 0;
    for (int i = 1; i < n; i += 2) {
        if (g[i].faithful) ok++, kept += g[i].cos >= t, rej_ok += g[i].cos < t;
        else bad++, rej += g[i].cos < t;
    }
    return (rates_t){.keep_ok = ok ? (double)kept / ok : 0, .reject_bad = bad ? (double)rej / bad : 0,
                     .precision = rej + rej_ok ? (double)rej / (rej + rej_ok) : 1.0, .n_ok = ok, .n_bad = bad};
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

int sf_train_filter(sf_train_ctx_t *c) {
    const sf_world_t *w = c->world;
    const int K = sf_world_n_classes(w), n = K * FILTER_PER_CLASS;
    char dir[1024], p1[1200], p2[1200], err[512], settings[256];
    snprintf(dir, sizeof dir, "%s/clip-world", c->out);
    snprintf(p1, sizeof p1, "%s/model.safetensors", dir);
    size_t mlen = 0;
    char *mbytes = sf_file_text(p1, &mlen);
    if (!mbytes) {
        fprintf(stderr, "filter: no %s (train the CLIP first: sf-train clip)\n", p1);
        return SF_EIO;
    }
    snprintf(settings, sizeof settings, "filter v%d per class %d keep %g", FILTER_VERSION, FILTER_PER_CLASS, FILTER_KEEP);
    /* The key covers the CLIP's bytes: a new CLIP means a new threshold. */
    const uint64_t key = sf_train_key(w, settings, mbytes, mlen);
    free(mbytes);
    if (sf_train_up_to_date(c, "filter", key)) return 0;
    sf_clip_t *m = NULL;
    sf_clip_bpe_t *tok = NULL;
    snprintf(p1, sizeof p1, "%s/vocab.json", dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", dir);
    if (sf_clip_load_dir(dir, "cpu", &m, err, sizeof err) != 0 || sf_clip_bpe_load(p1, p2, &tok, err, sizeof err) != 0) {
        fprintf(stderr, "filter: %s\n", err);
        sf_clip_free(&m);
        return SF_EIO;
    }
    const sf_clip_config_t *cfg = sf_clip_config(m);
    const int E = cfg->embed_dim, S = cfg->image_size, T = cfg->context_length, ws = sf_world_size(w);
    gen_t *g = calloc((size_t)n, sizeof *g);
    float *cls_emb = malloc(sizeof(float) * (size_t)K * E), *img = malloc(sizeof(float) * E);
    float *px = malloc(sizeof(float) * 3 * S * S);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)T);
    uint8_t *rgb = malloc(sf_world_image_bytes(w));
    int rc = g && cls_emb && img && px && ids && rgb ? 0 : SF_ENOMEM;
    int outcomes[SF_GEN_N_OUTCOMES] = {0};
    /* The class prompts, through the tokenizer the workers load. */
    for (int k = 0; rc == 0 && k < K; k++) {
        char text[300];
        snprintf(text, sizeof text, "a photo of a %s", sf_world_class(w, k)->name);
        int L = sf_clip_bpe_encode(tok, text, ids, T);
        rc = sf_clip_encode_text(m, ids, 1, L, cls_emb + (size_t)k * E);
    }
    uint64_t r = 0xf11737ull;
    for (int i = 0; rc == 0 && i < n; i++) {
        const int k = i % K;
        sf_world_attrs_t a;
        char cap[512];
        sf_world_uniform_sample(w, k, FILTER_SEED0 + (uint64_t)i, &a);
        unsigned mask = (unsigned)(sf_splitmix64(&r) & SF_ATTR_ALL);
        if (sf_world_caption(w, &a, mask, (int)(sf_splitmix64(&r) % (uint64_t)sf_world_n_templates()), cap,
                             sizeof cap) < 0) {
            rc = SF_EINVAL;
            break;
        }
        sf_world_gen_t info;
        if ((rc = sf_world_generate(w, cap, FILTER_SEED0 + (uint64_t)i, rgb, &info))) break;
        outcomes[info.outcome]++;
        g[i].faithful = info.outcome != SF_GEN_WRONG_OBJECT && info.outcome != SF_GEN_NO_OBJECT;
        if ((rc = sf_clip_preprocess(cfg, rgb, ws, ws, px)) || (rc = sf_clip_encode_image(m, px, 1, img))) break;
        g[i].cos = sf_dot_f32(img, cls_emb + (size_t)k * E, E);
        g[i].named = __builtin_popcount(info.parse.named);
        g[i].first = 1;
        for (int j = 0; j < K; j++)
            if (j != k && sf_dot_f32(img, cls_emb + (size_t)j * E, E) > g[i].cos) g[i].first = 0;
    }
    /* The threshold: the highest cosine of the choosing half's faithful
     * generations that keeps FILTER_KEEP of them. */
    float best_t = 0.2f;
    int nf = 0;
    float *fc = malloc(sizeof(float) * (size_t)(n / 2 + 1));
    if (rc == 0 && !fc) rc = SF_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i += 2)
        if (g[i].faithful) fc[nf++] = g[i].cos;
    if (rc == 0 && nf == 0) rc = SF_EINVAL;
    if (rc == 0) {
        qsort(fc, (size_t)nf, sizeof *fc, cmp_float);
        best_t = fc[(int)floor((1 - FILTER_KEEP) * nf)];
    }
    free(fc);
    /* For the docs: the best trade-off any threshold gives on the measuring
     * half (keep + reject maximal), the median cosines, and how often the
     * target's prompt is the closest for faithful generations by the number
     * of attributes named. */
    float tt = 0.2f;
    double tk = 0, tr = 0;
    for (int i = 1; rc == 0 && i < n; i += 2) {
        rates_t q = rates(g, n, g[i].cos);
        if (q.keep_ok + q.reject_bad > tk + tr) tk = q.keep_ok, tr = q.reject_bad, tt = g[i].cos;
    }
    double med[2] = {0, 0};
    for (int f = 0; rc == 0 && f < 2; f++) {
        float *v = malloc(sizeof(float) * (size_t)n);
        int m = 0;
        if (!v) { rc = SF_ENOMEM; break; }
        for (int i = 0; i < n; i++)
            if (g[i].faithful == f) v[m++] = g[i].cos;
        qsort(v, (size_t)m, sizeof *v, cmp_float);
        med[f] = m ? v[m / 2] : 0;
        free(v);
    }
    char firsts[400] = "";
    for (int a = 0, at = 0; a <= SF_N_ATTRS; a++) {
        int nf = 0, first = 0;
        for (int i = 0; i < n; i++)
            if (g[i].faithful && g[i].named == a) nf++, first += g[i].first;
        at += snprintf(firsts + at, sizeof firsts - (size_t)at, "%s%.4f", a ? ", " : "", nf ? (double)first / nf : 0);
    }
    char json[2000] = "";
    if (rc == 0) {
        const rates_t at = rates(g, n, best_t), paper = rates(g, n, 0.2f);
        snprintf(json, sizeof json,
                 "{\"threshold\": %.4f, \"embedder\": \"world CLIP (clip-world)\", \"prompt\": \"a photo of a {class}\", "
                 "\"chosen_on\": %d, \"measured_on\": %d, \"measured_faithful\": %d, \"measured_failures\": %d, "
                 "\"keeps_faithful\": %.4f, \"rejects_failures\": %.4f, \"rejection_precision\": %.4f, "
                 "\"at_0.2_keeps_faithful\": %.4f, \"at_0.2_rejects_failures\": %.4f, "
                 "\"outcomes\": {\"ok\": %d, \"dropped\": %d, \"swapped\": %d, \"wrong-object\": %d, \"no-object\": %d}, "
                 "\"best_tradeoff\": {\"threshold\": %.4f, \"keeps_faithful\": %.4f, \"rejects_failures\": %.4f}, "
                 "\"median_cos_faithful\": %.4f, \"median_cos_failures\": %.4f, "
                 "\"faithful_target_prompt_first_by_attributes_named\": [%s], "
                 "\"command\": \"sf-train filter --out DIR\", \"settings\": \"%s\"}",
                 best_t, (n + 1) / 2, n / 2, at.n_ok, at.n_bad, at.keep_ok, at.reject_bad, at.precision,
                 paper.keep_ok, paper.reject_bad,
                 outcomes[0], outcomes[1], outcomes[2], outcomes[3], outcomes[4], tt, tk, tr, med[1], med[0], firsts,
                 settings);
        fprintf(stderr, "filter: %s\n", json);
        snprintf(p1, sizeof p1, "%s/filter.json", dir);
        char text[2100];
        int tl = snprintf(text, sizeof text, "%s\n", json);
        if (sf_write_file_atomic(p1, text, (size_t)tl) != 0) {
            fprintf(stderr, "filter: cannot write %s: %s\n", p1, strerror(errno));
            rc = SF_EIO;
        }
    }
    if (rc == 0) rc = sf_train_quality_write(c, "filter", json);
    if (rc == 0) rc = sf_train_stamp_write(c, "filter", key, settings);
    free(g), free(cls_emb), free(img), free(px), free(ids), free(rgb);
    sf_clip_free(&m);
    sf_clip_bpe_free(&tok);
    return rc;
}
