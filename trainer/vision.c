/* vision.c: sf-train's world CLIP and world classifiers, and their quality
 * figures (measured on held-out world images over the 86-class list).
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/reward.h"
#include "common/text/clip_bpe.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "ml/sf_vision.h"
#include "trainer/data.h"

/* ---- settings (part of every model's cache key) ---- */

#define TRAINER_VERSION 6 /* 6: world models v2 (CLIP of 128, caption variants, world-A of one factor) */

#define CLIP_STEPS 15000
#define CLIP_BATCH 86                /* one pair of every class per batch (86 classes) */
#define CLIP_LR 1e-3f
#define CLIP_WARMUP 100
#define CLIP_PROMPT_SHARE 0.5        /* pairs that are a base image and "a photo of a {class}" */
#define CLIP_TOK_CAPTIONS 20000     /* captions the tokenizer's words come from */
#define CLIP_VARIANT_SHARE 0.5      /* captions trained as a variant (unknown words, punctuation) */
#define CLIP_TIED_WEIGHT 1.0f       /* weight of 1 - cos(caption, another variant of it) */
#define VARIANT_CAPTIONS 1000       /* held-out captions of the variant-shift figure (<= RETRIEVAL_PAIRS) */
#define EVAL_PER_CLASS 10           /* test images per class and set */
#define RETRIEVAL_PAIRS 1000
_Static_assert(VARIANT_CAPTIONS <= RETRIEVAL_PAIRS, "the variant figure reuses the retrieval captions");
#define HELDOUT_PAIR0 (1ull << 40)  /* far from any training pair index */

/* The classifiers are still learning when they stop; with the policy they
 * fill the time the CLIP child takes anyway (docs/models.md).  For the
 * ConvNeXt, more steps of fewer images on a narrower net learnt more in the
 * same time (83.1% base against 80.9%); the ViT gained nothing from the same
 * change. */
#define CLS_STEPS_CONVNEXT 12000
#define CLS_STEPS_VIT 7200
#define CLS_BATCH_CONVNEXT 48
#define CLS_BATCH_VIT 96
#define CLS_LR 1.5e-3f
#define CLS_WARMUP 50

static float lr_at(int step, int steps, int warmup, float lr) {
    if (step < warmup) return lr * (step + 1) / warmup;
    double p = (double)(step - warmup) / (steps - warmup > 0 ? steps - warmup : 1);
    return (float)(lr * 0.5 * (1 + cos(M_PI * p)));
}

static int scaled(const sf_train_ctx_t *c, int steps) {
    int s = (int)lround(steps * c->scale);
    return s < 2 ? 2 : s;
}

/* ---- the world CLIP ---- */

typedef struct {
    char **v;
    int n, cap;
} words_t;

static void add_word(const char *w, size_t len, void *arg) {
    words_t *ws = arg;
    if (len == 0) return;
    if (ws->n == ws->cap) {
        ws->cap = ws->cap ? ws->cap * 2 : 4096;
        ws->v = realloc(ws->v, sizeof *ws->v * ws->cap);
    }
    ws->v[ws->n++] = strndup(w, len);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The world CLIP's tokenizer: every word of the captions it will read
 * (training pairs, class prompts, the SFT corpus) is one token. */
static int world_tokenizer(const sf_world_t *w, sf_clip_bpe_t **out) {
    words_t ws = {0};
    char cap[512];
    for (int i = 0; i < CLIP_TOK_CAPTIONS; i++)
        if (sf_world_clip_pair(w, (uint64_t)i, NULL, cap, sizeof cap, NULL) >= 0)
            sf_clip_bpe_words(cap, add_word, &ws);
    for (int k = 0; k < sf_world_n_classes(w); k++) {
        snprintf(cap, sizeof cap, "a photo of a %s", sf_world_class(w, k)->name);
        sf_clip_bpe_words(cap, add_word, &ws);
        for (int j = 0; j < 16; j++)
            if (sf_world_corpus_caption(w, k, j, 1, cap, sizeof cap) >= 0) sf_clip_bpe_words(cap, add_word, &ws);
    }
    qsort(ws.v, ws.n, sizeof *ws.v, cmp_str);
    int rc = sf_clip_bpe_from_words((const char *const *)ws.v, ws.n, out);
    for (int i = 0; i < ws.n; i++) free(ws.v[i]);
    free(ws.v);
    return rc;
}

/* Repacks n rows of ids from stride T to the longest row's length, so that
 * short captions do not pay for the whole context. Returns the new stride. */
static int pack_ids(int32_t *ids, const int *lens, int n, int T) {
    int L = 1;
    for (int i = 0; i < n; i++) L = lens[i] > L ? lens[i] : L;
    for (int i = 0; i < n; i++) memmove(ids + (size_t)i * L, ids + (size_t)i * T, sizeof(int32_t) * L);
    return L;
}

/* Embeds n images produced by get(i) in batches; out (n, E). */
typedef int (*img_fn)(const sf_world_t *w, int i, uint8_t *rgb, void *arg);

static int embed_images(sf_clip_t *m, const sf_world_t *w, int n, img_fn get, void *arg, float *out) {
    const sf_clip_config_t *cfg = sf_clip_config(m);
    const int S = cfg->image_size, B = 128, E = cfg->embed_dim;
    float *px = malloc(sizeof(float) * B * 3 * S * S);
    uint8_t *rgb = malloc(sf_world_image_bytes(w));
    int rc = px && rgb ? 0 : SF_ENOMEM;
    for (int i0 = 0; rc == 0 && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int j = 0; rc == 0 && j < b; j++) {
            rc = get(w, i0 + j, rgb, arg);
            if (rc == 0) rc = sf_clip_preprocess(cfg, rgb, sf_world_size(w), sf_world_size(w), px + (size_t)j * 3 * S * S);
        }
        if (rc == 0) rc = sf_clip_encode_image(m, px, b, out + (size_t)i0 * E);
    }
    free(px);
    free(rgb);
    return rc;
}

static int embed_texts(sf_clip_t *m, const sf_clip_bpe_t *tok, char **texts, int n, float *out) {
    const sf_clip_config_t *cfg = sf_clip_config(m);
    const int T = cfg->context_length, B = 256, E = cfg->embed_dim;
    int32_t *ids = malloc(sizeof(int32_t) * B * T);
    int rc = ids ? 0 : SF_ENOMEM;
    for (int i0 = 0; rc == 0 && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        int lens[256];
        for (int j = 0; j < b; j++) lens[j] = sf_clip_bpe_encode(tok, texts[i0 + j], ids + (size_t)j * T, T);
        rc = sf_clip_encode_text(m, ids, b, pack_ids(ids, lens, b, T), out + (size_t)i0 * E);
    }
    free(ids);
    return rc;
}

static int get_test(const sf_world_t *w, int i, uint8_t *rgb, void *arg) {
    return sf_world_testset_get(w, *(int *)arg, (uint64_t)i, rgb, NULL, NULL);
}

static int get_pair(const sf_world_t *w, int i, uint8_t *rgb, void *arg) {
    char cap[512];
    (void)arg;
    int rc = sf_world_clip_pair(w, HELDOUT_PAIR0 + (uint64_t)i, rgb, cap, sizeof cap, NULL);
    return rc < 0 ? rc : 0;
}

/* Zero-shot accuracy on a test set with "a photo of a {class}". */
static int zero_shot(sf_clip_t *m, const sf_world_t *w, const float *cls_emb, int set, double *acc) {
    const int K = sf_world_n_classes(w), n = K * EVAL_PER_CLASS, E = sf_clip_config(m)->embed_dim;
    float *emb = malloc(sizeof(float) * n * E);
    if (!emb) return SF_ENOMEM;
    int rc = embed_images(m, w, n, get_test, &set, emb), right = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        int best = 0;
        float bs = -2;
        for (int k = 0; k < K; k++) {
            float s = sf_dot_f32(emb + (size_t)i * E, cls_emb + (size_t)k * E, E);
            if (s > bs) bs = s, best = k;
        }
        right += best == i % K;
    }
    *acc = (double)right / n;
    free(emb);
    return rc;
}

static int clip_quality(sf_clip_t *m, const sf_clip_bpe_t *tok, const sf_world_t *w, char *json, size_t jn) {
    const int K = sf_world_n_classes(w), E = sf_clip_config(m)->embed_dim;
    char **texts = calloc(RETRIEVAL_PAIRS > K * EVAL_PER_CLASS ? RETRIEVAL_PAIRS : K * EVAL_PER_CLASS, sizeof *texts);
    float *cls_emb = malloc(sizeof(float) * K * E);
    float *img = malloc(sizeof(float) * RETRIEVAL_PAIRS * E), *txt = malloc(sizeof(float) * RETRIEVAL_PAIRS * E);
    int rc = texts && cls_emb && img && txt ? 0 : SF_ENOMEM;
    char buf[512];
    for (int k = 0; rc == 0 && k < K; k++) {
        snprintf(buf, sizeof buf, "a photo of a %s", sf_world_class(w, k)->name);
        texts[k] = strdup(buf);
    }
    if (rc == 0) rc = embed_texts(m, tok, texts, K, cls_emb);
    double acc[SF_WORLD_N_SETS] = {0};
    for (int s = 0; rc == 0 && s < SF_WORLD_N_SETS; s++) rc = zero_shot(m, w, cls_emb, s, &acc[s]);
    for (int k = 0; k < K; k++) free(texts[k]);

    /* Caption -> image recall@5 over held-out pairs. */
    for (int i = 0; rc == 0 && i < RETRIEVAL_PAIRS; i++) {
        sf_world_clip_pair(w, HELDOUT_PAIR0 + (uint64_t)i, NULL, buf, sizeof buf, NULL);
        texts[i] = strdup(buf);
    }
    if (rc == 0) rc = embed_texts(m, tok, texts, RETRIEVAL_PAIRS, txt);
    if (rc == 0) rc = embed_images(m, w, RETRIEVAL_PAIRS, get_pair, NULL, img);
    int hits = 0;
    for (int i = 0; rc == 0 && i < RETRIEVAL_PAIRS; i++) {
        float own = sf_dot_f32(txt + (size_t)i * E, img + (size_t)i * E, E);
        int better = 0;
        for (int j = 0; j < RETRIEVAL_PAIRS; j++)
            better += j != i && sf_dot_f32(txt + (size_t)i * E, img + (size_t)j * E, E) > own;
        hits += better < 5;
    }

    /* How far words the world ignores move a caption: 1 - cosine between the
     * first VARIANT_CAPTIONS of those held-out captions (embedded above) and
     * their variants with up to three unknown words from the pool training
     * never drew, and final punctuation. */
    double shift_sum = 0, shift_max = 0;
    char **vars = calloc(VARIANT_CAPTIONS, sizeof *vars);
    float *vt = malloc(sizeof(float) * VARIANT_CAPTIONS * E);
    if (rc == 0 && (!vars || !vt)) rc = SF_ENOMEM;
    for (int i = 0; rc == 0 && i < VARIANT_CAPTIONS; i++) {
        char v[640];
        if (sf_train_caption_variant(w, texts[i], (uint64_t)i, 1, v, sizeof v) < 0) rc = SF_EINVAL;
        else if (!(vars[i] = strdup(v))) rc = SF_ENOMEM;
        else if (i < 3) fprintf(stderr, "clip: variant \"%s\" -> \"%s\"\n", texts[i], v);
    }
    if (rc == 0) rc = embed_texts(m, tok, vars, VARIANT_CAPTIONS, vt);
    for (int i = 0; rc == 0 && i < VARIANT_CAPTIONS; i++) {
        double d = 1 - sf_dot_f32(txt + (size_t)i * E, vt + (size_t)i * E, E);
        shift_sum += d;
        shift_max = d > shift_max ? d : shift_max;
    }
    for (int i = 0; vars && i < VARIANT_CAPTIONS; i++) free(vars[i]);
    free(vars);
    free(vt);
    for (int i = 0; i < RETRIEVAL_PAIRS; i++) free(texts[i]), texts[i] = NULL;

    /* Own-caption cosine on held-out base images: a caption of what each
     * image shows, naming the class, its scene and style and some others. */
    const int n = K * EVAL_PER_CLASS;
    int above = 0;
    double cos_sum = 0;
    float *bimg = malloc(sizeof(float) * n * E), *btxt = malloc(sizeof(float) * n * E);
    int base = SF_WORLD_SET_BASE;
    if (rc == 0 && (!bimg || !btxt)) rc = SF_ENOMEM;
    uint64_t r = 77;
    for (int i = 0; rc == 0 && i < n; i++) {
        sf_world_attrs_t a;
        sf_world_testset_get(w, SF_WORLD_SET_BASE, (uint64_t)i, NULL, NULL, &a);
        unsigned mask = (1u << SF_ATTR_SCENE) | (1u << SF_ATTR_STYLE) | (unsigned)(sf_splitmix64(&r) & SF_ATTR_ALL);
        int len = sf_world_caption(w, &a, mask, (int)(sf_splitmix64(&r) % (uint64_t)sf_world_n_templates()), buf, sizeof buf);
        texts[i] = strdup(len > 0 ? buf : "");
    }
    if (rc == 0) rc = embed_texts(m, tok, texts, n, btxt);
    if (rc == 0) rc = embed_images(m, w, n, get_test, &base, bimg);
    for (int i = 0; rc == 0 && i < n; i++) {
        float cs = sf_dot_f32(bimg + (size_t)i * E, btxt + (size_t)i * E, E);
        cos_sum += cs;
        above += cs > 0.2f;
    }
    for (int i = 0; i < n; i++) free(texts[i]);
    if (rc == 0)
        snprintf(json, jn,
                 "{\"zero_shot_base\": %.4f, \"zero_shot_world_R\": %.4f, \"zero_shot_world_A\": %.4f, "
                 "\"recall_at_5\": %.4f, \"retrieval_pairs\": %d, \"own_caption_cos_above_0.2\": %.4f, "
                 "\"own_caption_cos_mean\": %.4f, \"variant_shift_mean\": %.4f, \"variant_shift_max\": %.4f, "
                 "\"variant_captions\": %d, \"embed_dim\": %d, \"test_images_per_set\": %d, \"logit_scale\": %.2f}",
                 acc[0], acc[1], acc[2], (double)hits / RETRIEVAL_PAIRS, RETRIEVAL_PAIRS, (double)above / n,
                 cos_sum / n, shift_sum / VARIANT_CAPTIONS, shift_max, VARIANT_CAPTIONS, E, n,
                 sf_clip_logit_scale(m));
    free(bimg);
    free(btxt);
    free(texts);
    free(cls_emb);
    free(img);
    free(txt);
    return rc;
}

int sf_train_clip(sf_train_ctx_t *c) {
    const sf_world_t *w = c->world;
    sf_clip_bpe_t *tok;
    int rc = world_tokenizer(w, &tok);
    if (rc) return rc;
    sf_clip_config_t cfg;
    sf_clip_config_world(&cfg);
    cfg.vocab_size = sf_clip_bpe_vocab_size(tok);
    cfg.eot_id = sf_clip_bpe_eot(tok);
    const int K = sf_world_n_classes(w);
    const int steps = scaled(c, CLIP_STEPS), B = CLIP_BATCH, S = cfg.image_size, T = cfg.context_length;
    char settings[512];
    snprintf(settings, sizeof settings,
             "clip v%d steps %d batch %d lr %g warmup %d prompts %g variants %g tied %g threads %d", TRAINER_VERSION,
             steps, B, CLIP_LR, CLIP_WARMUP, CLIP_PROMPT_SHARE, CLIP_VARIANT_SHARE, CLIP_TIED_WEIGHT, c->threads);
    const uint64_t key = sf_train_key(w, settings, &cfg, sizeof cfg);
    if (sf_train_up_to_date(c, "clip", key)) {
        sf_clip_bpe_free(&tok);
        return 0;
    }
    char dir[1024], p1[1200], p2[1200];
    snprintf(dir, sizeof dir, "%s/clip-world", c->out);
    if ((rc = sf_mkdir_p(dir, 0777))) {
        fprintf(stderr, "clip: cannot create %s: %s\n", dir, strerror(errno));
        sf_clip_bpe_free(&tok);
        return rc;
    }
    snprintf(p1, sizeof p1, "%s/vocab.json", dir);
    snprintf(p2, sizeof p2, "%s/merges.txt", dir);
    if ((rc = sf_clip_bpe_save(tok, p1, p2))) {
        sf_clip_bpe_free(&tok);
        return rc;
    }
    sf_clip_t *m;
    char err[256];
    if ((rc = sf_clip_new(&cfg, "cpu", 1234, &m, err, sizeof err))) {
        fprintf(stderr, "clip: %s\n", err);
        sf_clip_bpe_free(&tok);
        return rc;
    }
    fprintf(stderr, "clip: %" PRId64 " parameters, vocabulary %d, %d steps of %d pairs\n", sf_clip_num_params(m),
            cfg.vocab_size, steps, B);
    float *px = malloc(sizeof(float) * B * 3 * S * S);
    int32_t *ids = malloc(sizeof(int32_t) * 2 * B * T);
    uint8_t *rgb = malloc(sf_world_image_bytes(w));
    char cap[512], var[640];
    int lens[2 * CLIP_BATCH];
    uint64_t r = 5;
    sf_train_meter_t meter;
    sf_train_meter_start(&meter, "clip", 50, 1);
    for (int step = 0; rc == 0 && step < steps; step++) {
        for (int j = 0; rc == 0 && j < B; j++) {
            uint64_t idx = (uint64_t)step * B + j;
            int k = (int)(idx % (uint64_t)K), got;
            /* The world's pairs name many attributes, so their class word is a
             * small part of what the loss rewards; half the pairs are the
             * zero-shot prompt with a base image (docs/models.md has the
             * measurements).  With B = K every class is in each batch once,
             * so no prompt is ever a false negative of another. */
            if ((double)(sf_splitmix64(&r) >> 11) / 9007199254740992.0 < CLIP_PROMPT_SHARE) {
                got = sf_world_base_sample(w, k, idx / (uint64_t)K, rgb, NULL);
                snprintf(cap, sizeof cap, "a photo of a %s", sf_world_class(w, k)->name);
            } else got = sf_world_clip_pair(w, idx, rgb, cap, sizeof cap, NULL);
            if (got < 0) rc = got;
            else rc = sf_clip_preprocess(&cfg, rgb, sf_world_size(w), sf_world_size(w), px + (size_t)j * 3 * S * S);
            /* Words the world ignores must not move the text embedding: the
             * pair's caption is a variant (unknown words, punctuation) part
             * of the time, and a second variant of it is tied to it. */
            const char *row = cap;
            if (rc == 0 && (double)(sf_splitmix64(&r) >> 11) / 9007199254740992.0 < CLIP_VARIANT_SHARE) {
                if ((got = sf_train_caption_variant(w, cap, idx, 0, var, sizeof var)) < 0) rc = got;
                row = var;
            }
            lens[j] = sf_clip_bpe_encode(tok, row, ids + (size_t)j * T, T);
            if (rc == 0 && (got = sf_train_caption_variant(w, cap, idx ^ 0x5eedull, 0, var, sizeof var)) < 0) rc = got;
            lens[B + j] = sf_clip_bpe_encode(tok, var, ids + (size_t)(B + j) * T, T);
        }
        float loss = 0, acc = 0;
        int L = pack_ids(ids, lens, 2 * B, T);
        if (rc == 0 && (rc = sf_clip_train_step_tied(m, px, ids, B, L, B, CLIP_TIED_WEIGHT,
                                                     lr_at(step, steps, CLIP_WARMUP, CLIP_LR), &loss, &acc)))
            fprintf(stderr, "clip: %s\n", sf_clip_errstr(m));
        sf_train_meter_step(&meter, step + 1, steps, loss, acc);
    }
    free(px);
    free(ids);
    free(rgb);
    char json[1400];
    if (rc == 0) {
        snprintf(p1, sizeof p1, "%s/model.safetensors", dir);
        if ((rc = sf_clip_save(m, p1))) fprintf(stderr, "clip: %s\n", sf_clip_errstr(m));
    }
    if (rc == 0) {
        fprintf(stderr, "clip: measuring quality\n");
        rc = clip_quality(m, tok, w, json, sizeof json);
    }
    if (rc == 0) {
        fprintf(stderr, "clip: %s\n", json);
        rc = sf_train_quality_write(c, "clip", json);
    }
    if (rc == 0) rc = sf_train_stamp_write(c, "clip", key, settings);
    sf_clip_free(&m);
    sf_clip_bpe_free(&tok);
    return rc;
}

/* ---- the world classifiers ---- */

static void classifier_world_config(int arch, int n_classes, sf_classifier_config_t *c) {
    if (arch == 0) {
        sf_classifier_config_convnext_atto(c, n_classes);
        c->image_size = 32;  /* measured: more steps at 32x32 beat fewer at 64x64 */
        c->stem_patch = 4;   /* 8x8 maps: depthwise convolutions are slow on CPU */
        c->n_stages = 3;
        const int depths[4] = {1, 1, 2, 0}, dims[4] = {32, 64, 128, 0};
        memcpy(c->depths, depths, sizeof depths);
        memcpy(c->dims, dims, sizeof dims);
        c->conv_mlp = 0;
        c->ls_init = 0.1f;   /* short training: timm's 1e-6 would keep the blocks idle */
    } else {
        sf_classifier_config_vit_tiny(c, n_classes);
        c->image_size = 32;  /* measured: 16 tokens and 2 blocks learn faster per CPU second */
        c->patch_size = 8;   /* than 64 tokens and 3 (55% base after 650 steps vs 49% after 500, in less time) */
        c->width = 96;
        c->depth = 2;
        c->heads = 4;
    }
}

/* world-A's hard factor of an image (it has exactly one): 0 small,
 * 1 occluded, 2 dark, 3 cluttered, 4 off-colour, 5 turned. */
#define N_HARD 6
static const char *const hard_names[N_HARD] = {"small", "occluded", "dark", "cluttered", "off_colour", "turned"};

static int hard_factor(const sf_world_attrs_t *a) {
    if (a->v[SF_ATTR_SIZE] == SF_SIZE_SMALL) return 0;
    if (a->v[SF_ATTR_OCCL] != SF_OCCL_NONE) return 1;
    if (a->v[SF_ATTR_LIGHT] != SF_LIGHT_DAY) return 2;
    if (a->v[SF_ATTR_CLUTTER] != SF_CLUTTER_NONE) return 3;
    if (a->v[SF_ATTR_ROT] >= SF_ROT_SIDEWAYS) return 5;
    return 4;
}

/* Accuracy on a test set; for world-A also by hard factor (by_factor may be
 * NULL). */
static int cls_eval(sf_classifier_t *m, const sf_world_t *w, int set, double *acc, double *by_factor) {
    const sf_classifier_config_t *cfg = sf_classifier_config(m);
    const int K = sf_world_n_classes(w), n = K * EVAL_PER_CLASS, S = cfg->image_size, B = 128;
    float *px = malloc(sizeof(float) * B * 3 * S * S);
    uint8_t *rgb = malloc(sf_world_image_bytes(w));
    int pred[128], lab[128], fac[128], right = 0, rc = px && rgb ? 0 : SF_ENOMEM;
    int f_right[N_HARD] = {0}, f_n[N_HARD] = {0};
    for (int i0 = 0; rc == 0 && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int j = 0; rc == 0 && j < b; j++) {
            sf_world_attrs_t a;
            rc = sf_world_testset_get(w, set, (uint64_t)(i0 + j), rgb, &lab[j], &a);
            fac[j] = hard_factor(&a);
            sf_train_input(rgb, sf_world_size(w), S, cfg->mean, cfg->std, 0, px + (size_t)j * 3 * S * S);
        }
        if (rc == 0) rc = sf_classifier_forward(m, px, b, NULL, pred);
        for (int j = 0; rc == 0 && j < b; j++) {
            right += pred[j] == lab[j];
            f_right[fac[j]] += pred[j] == lab[j], f_n[fac[j]]++;
        }
    }
    *acc = (double)right / n;
    for (int f = 0; by_factor && f < N_HARD; f++) by_factor[f] = f_n[f] ? (double)f_right[f] / f_n[f] : 0;
    free(px);
    free(rgb);
    return rc;
}

int sf_train_classifier(sf_train_ctx_t *c, int arch) {
    const sf_world_t *w = c->world;
    const char *name = arch == 0 ? "convnext" : "vit";
    const int K = sf_world_n_classes(w);
    sf_classifier_config_t cfg;
    classifier_world_config(arch, K, &cfg);
    const int steps = scaled(c, arch == 0 ? CLS_STEPS_CONVNEXT : CLS_STEPS_VIT),
              B = arch == 0 ? CLS_BATCH_CONVNEXT : CLS_BATCH_VIT, S = cfg.image_size;
    char settings[512];
    snprintf(settings, sizeof settings, "%s v%d steps %d batch %d lr %g warmup %d threads %d", name,
             TRAINER_VERSION, steps, B, CLS_LR, CLS_WARMUP, c->threads);
    /* The key covers the fields training reads: the world's images go through
     * sf_world_to_input, never timm's evaluation transform (crop_pct on). */
    const uint64_t key = sf_train_key(w, settings, &cfg, offsetof(sf_classifier_config_t, crop_pct));
    if (sf_train_up_to_date(c, name, key)) return 0;
    sf_classifier_t *m;
    char err[256];
    int rc = sf_classifier_new(&cfg, "cpu", 4321 + arch, &m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", name, err);
        return rc;
    }
    fprintf(stderr, "%s: %" PRId64 " parameters, %d steps of %d base images\n", name, sf_classifier_num_params(m),
            steps, B);
    float *px = malloc(sizeof(float) * B * 3 * S * S);
    uint8_t *rgb = malloc(sf_world_image_bytes(w));
    int *labels = malloc(sizeof(int) * B);
    if (!px || !rgb || !labels) rc = SF_ENOMEM;
    uint64_t r = 99 + arch;
    sf_train_meter_t meter;
    sf_train_meter_start(&meter, name, 50, 1);
    for (int step = 0; rc == 0 && step < steps; step++) {
        for (int j = 0; rc == 0 && j < B; j++) {
            uint64_t i = (uint64_t)step * B + j;
            labels[j] = (int)(i % K);
            rc = sf_world_base_sample(w, labels[j], i / K, rgb, NULL);
            sf_train_input(rgb, sf_world_size(w), S, cfg.mean, cfg.std, (int)(sf_splitmix64(&r) & 1),
                                px + (size_t)j * 3 * S * S);
        }
        float loss = 0, acc = 0;
        if (rc == 0 && (rc = sf_classifier_train_step(m, px, labels, B, lr_at(step, steps, CLS_WARMUP, CLS_LR),
                                                      &loss, &acc)))
            fprintf(stderr, "%s: %s\n", name, sf_classifier_errstr(m));
        sf_train_meter_step(&meter, step + 1, steps, loss, acc);
    }
    free(px);
    free(rgb);
    free(labels);
    char path[1024], json[768];
    if (rc == 0) {
        snprintf(path, sizeof path, "%s/%s-world.safetensors", c->out, name);
        if ((rc = sf_classifier_save(m, path))) fprintf(stderr, "%s: %s\n", name, sf_classifier_errstr(m));
    }
    double acc[SF_WORLD_N_SETS] = {0}, fa[N_HARD] = {0};
    for (int s = 0; rc == 0 && s < SF_WORLD_N_SETS; s++)
        rc = cls_eval(m, w, s, &acc[s], s == SF_WORLD_SET_A ? fa : NULL);
    if (rc == 0) {
        char f[256];
        size_t o = 0;
        for (int i = 0; i < N_HARD; i++)
            o += (size_t)snprintf(f + o, sizeof f - o, "%s\"%s\": %.4f", i ? ", " : "", hard_names[i], fa[i]);
        snprintf(json, sizeof json,
                 "{\"base\": %.4f, \"world_R\": %.4f, \"world_A\": %.4f, \"drop_R\": %.4f, \"drop_A\": %.4f, "
                 "\"world_A_by_factor\": {%s}, \"train_steps\": %d, \"test_images_per_set\": %d}",
                 acc[0], acc[1], acc[2], acc[0] - acc[1], acc[0] - acc[2], f, steps, K * EVAL_PER_CLASS);
        fprintf(stderr, "%s: %s\n", name, json);
        rc = sf_train_quality_write(c, name, json);
    }
    if (rc == 0) rc = sf_train_stamp_write(c, name, key, settings);
    sf_classifier_free(&m);
    return rc;
}
