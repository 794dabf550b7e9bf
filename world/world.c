/* world.c: the world context, its distributions and the generator.
 *
 * The distributions are what make the paper's effects real here:
 *   - base: each class's skewed prior (usual scenes and colours, photos, day);
 *   - world-R: the same classes in their usual scenes, in every other style;
 *   - world-A: photos in scenes the class is never usually seen in, with
 *     one hard factor (small, occluded, dark or foggy, cluttered, odd
 *     colour, turned over);
 *   - the generator: what a caption names, the rest from the class's prior,
 *     and failures whose probability grows with the caption's length, the
 *     attributes it names and its contradictions.
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/runtime/error.h"
#include "world/internal.h"

static const char *const attr_names[SF_N_ATTRS] = {
    "style", "scene", "light", "color", "size", "position", "rotation", "count", "occlusion", "clutter"};

static const char *const value_names[SF_N_ATTRS][SF_N_SCENES] = {
    {"photo", "sketch", "cartoon", "painting", "pixel art", "embroidery", "tattoo", "origami"},
    {"grass", "sand", "water", "snow", "forest", "road", "sky", "indoors", "cave", "desert", "space", "city"},
    {"day", "night", "sunset", "fog", "rain"},
    {"red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray", "gold"},
    {"small", "medium", "large"},
    {"center", "left", "right", "top", "bottom"},
    {"upright", "tilted", "sideways", "upside down"},
    {"one", "two", "three", "many"},
    {"none", "partial", "heavy"},
    {"none", "cluttered"},
};

static const int n_values[SF_N_ATTRS] = {SF_N_STYLES,    SF_N_SCENES,    SF_N_LIGHTS, SF_N_COLORS,
                                         SF_N_SIZES,     SF_N_POSITIONS, SF_N_ROTATIONS, SF_N_COUNTS,
                                         SF_N_OCCLUSIONS, SF_N_CLUTTERS};

int sf_world_attr_nvalues(int attr) {
    return attr >= 0 && attr < SF_N_ATTRS ? n_values[attr] : 0;
}

const char *sf_world_attr_name(int attr) {
    return attr >= 0 && attr < SF_N_ATTRS ? attr_names[attr] : NULL;
}

const char *sf_world_value_name(int attr, int value) {
    if (attr < 0 || attr >= SF_N_ATTRS || value < 0 || value >= n_values[attr]) return NULL;
    return value_names[attr][value];
}

int sf_world_value_lookup(int attr, const char *name) {
    if (!name) return -1;
    for (int v = 0; v < sf_world_attr_nvalues(attr); v++)
        if (!strcasecmp(value_names[attr][v], name)) return v;
    return -1;
}

/* ---- context ---------------------------------------------------------------- */

static int lemma_cmp(const void *a, const void *b) {
    const sf_world_lemma_t *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? 1 : -1;
    if (x->is_name != y->is_name) return y->is_name - x->is_name;
    return x->cls - y->cls;
}

static int add_lemma(sf_world_t *w, int *cap, const char *text, int cls, int is_name) {
    char buf[256];
    size_t len = sf_world__normalise(text, buf, sizeof buf);
    if (len == 0) return 0;
    for (int i = w->n_lemmas - 1; i >= 0 && w->lemmas[i].cls == cls; i--)
        if (!strcmp(w->lemmas[i].text, buf)) return 0;
    if (w->n_lemmas == *cap) {
        int nc = *cap ? *cap * 2 : 64;
        sf_world_lemma_t *nl = realloc(w->lemmas, (size_t)nc * sizeof *nl);
        if (!nl) return SF_ENOMEM;
        w->lemmas = nl;
        *cap = nc;
    }
    char *t = strdup(buf);
    if (!t) return SF_ENOMEM;
    w->lemmas[w->n_lemmas++] = (sf_world_lemma_t){t, len, cls, is_name};
    return 0;
}

int sf_world_create(const sf_classlist_t *classes, int size, sf_world_t **out) {
    if (!out || !classes || classes->n <= 0) return SF_EINVAL;
    if (size < SF_WORLD_MIN_SIZE || size > SF_WORLD_MAX_SIZE) return SF_EINVAL;
    *out = NULL;
    sf_world_t *w = calloc(1, sizeof *w);
    if (!w) return SF_ENOMEM;
    w->size = size;
    int rc = sf_classes_dup(classes, &w->classes);
    if (rc) goto fail;
    rc = SF_ENOMEM;
    w->cls = calloc((size_t)classes->n, sizeof *w->cls);
    if (!w->cls) goto fail;
    int cap = 0;
    for (int i = 0; i < classes->n; i++) {
        const sf_class_t *c = &w->classes->v[i];
        if ((rc = sf_world__class_init(&w->cls[i], c))) goto fail;
        if (c->name && (rc = add_lemma(w, &cap, c->name, i, 1))) goto fail;
        for (int j = 0; j < c->n_lemmas; j++)
            if ((rc = add_lemma(w, &cap, c->lemmas[j], i, 0))) goto fail;
    }
    /* Longest first, so "great white shark" wins over "white shark"; at equal
     * text a display name first ("crayfish" the class over "crayfish" the
     * lemma of "spiny lobster"). */
    qsort(w->lemmas, (size_t)w->n_lemmas, sizeof *w->lemmas, lemma_cmp);
    /* The parser tries lemmas at every word; bucketing by first letter keeps
     * that cheap with 1,000 classes. */
    for (int i = 0; i < w->n_lemmas; i++) w->n_by_first[(unsigned char)w->lemmas[i].text[0]]++;
    for (int b = 0; b < 256; b++) {
        if (!w->n_by_first[b]) continue;
        w->by_first[b] = malloc((size_t)w->n_by_first[b] * sizeof(int));
        if (!w->by_first[b]) goto fail;
        w->n_by_first[b] = 0;
    }
    for (int i = 0; i < w->n_lemmas; i++) {
        unsigned char b = (unsigned char)w->lemmas[i].text[0];
        w->by_first[b][w->n_by_first[b]++] = i;
    }
    *out = w;
    return 0;
fail:
    sf_world_destroy(&w);
    return rc;
}

void sf_world_destroy(sf_world_t **pw) {
    if (!pw || !*pw) return;
    sf_world_t *w = *pw;
    if (w->cls)
        for (int i = 0; i < w->classes->n; i++) sf_world__class_free(&w->cls[i]);
    free(w->cls);
    for (int i = 0; i < w->n_lemmas; i++) free(w->lemmas[i].text);
    free(w->lemmas);
    for (int b = 0; b < 256; b++) free(w->by_first[b]);
    sf_classes_free(&w->classes);
    free(w);
    *pw = NULL;
}

int sf_world_size(const sf_world_t *w) { return w ? w->size : 0; }
int sf_world_n_classes(const sf_world_t *w) { return w ? w->classes->n : 0; }
size_t sf_world_image_bytes(const sf_world_t *w) { return w ? (size_t)w->size * (size_t)w->size * 3 : 0; }

const sf_class_t *sf_world_class(const sf_world_t *w, int cls) {
    if (!w || cls < 0 || cls >= w->classes->n) return NULL;
    return &w->classes->v[cls];
}

int sf_world_class_find(const sf_world_t *w, const char *key) {
    if (!w || !key) return -1;
    for (int i = 0; i < w->classes->n; i++)
        if (!strcasecmp(w->classes->v[i].wnid, key) ||
            (w->classes->v[i].name && !strcasecmp(w->classes->v[i].name, key)))
            return i;
    return -1;
}

/* ---- priors ------------------------------------------------------------------ */

int sf_world_prior(const sf_world_t *w, int cls, int attr, double *probs) {
    if (!w || cls < 0 || cls >= w->classes->n || attr < 0 || attr >= SF_N_ATTRS || !probs)
        return SF_EINVAL;
    memcpy(probs, w->cls[cls].prior[attr], (size_t)n_values[attr] * sizeof *probs);
    return 0;
}

int sf_world_usual(const sf_world_t *w, int cls, int attr, int *vals, int max) {
    if (!w || cls < 0 || cls >= w->classes->n || attr < 0 || attr >= SF_N_ATTRS || !vals)
        return SF_EINVAL;
    int n = w->cls[cls].n_usual[attr];
    if (n > max) n = max;
    memcpy(vals, w->cls[cls].usual[attr], (size_t)n * sizeof *vals);
    return n;
}

static int is_usual(const sf_world_class_t *k, int attr, int v) {
    for (int i = 0; i < k->n_usual[attr]; i++)
        if (k->usual[attr][i] == v) return 1;
    return 0;
}

void sf_world_prior_sample(const sf_world_t *w, int cls, uint64_t seed, sf_world_attrs_t *out) {
    sf_rng_t r = {sf_world__mix(seed ^ 0xa77e5ull)};
    const sf_world_class_t *k = &w->cls[cls < 0 ? 0 : cls];
    out->cls = cls;
    for (int a = 0; a < SF_N_ATTRS; a++) out->v[a] = sf_world__draw(&r, k->prior[a], n_values[a]);
    out->seed = sf_rng_next(&r);
}

void sf_world_tempered_sample(const sf_world_t *w, int cls, uint64_t seed, double beta,
                              sf_world_attrs_t *out) {
    sf_rng_t r = {sf_world__mix(seed ^ 0x7e3e7ull)};
    const sf_world_class_t *k = &w->cls[cls < 0 ? 0 : cls];
    out->cls = cls;
    for (int a = 0; a < SF_N_ATTRS; a++) {
        double p[16], sum = 0;
        for (int v = 0; v < n_values[a]; v++) sum += p[v] = pow(k->prior[a][v], beta);
        for (int v = 0; v < n_values[a]; v++) p[v] /= sum;
        out->v[a] = sf_world__draw(&r, p, n_values[a]);
    }
    out->seed = sf_rng_next(&r);
}

/* ---- samples and test sets ------------------------------------------------------ */

static uint64_t item_seed(const sf_world_t *w, int cls, uint64_t item, uint64_t salt) {
    return sf_world__mix(sf_world__hash_str(w->classes->v[cls].wnid) ^ sf_world__mix(item ^ salt));
}

int sf_world_base_sample(const sf_world_t *w, int cls, uint64_t item, uint8_t *rgb,
                         sf_world_attrs_t *attrs) {
    if (!w || cls < 0 || cls >= w->classes->n) return SF_EINVAL;
    sf_world_attrs_t a;
    sf_world_prior_sample(w, cls, item_seed(w, cls, item, 0xba5eull), &a);
    if (attrs) *attrs = a;
    return rgb ? sf_world_render(w, &a, rgb) : 0;
}

static const char *const set_names[SF_WORLD_N_SETS] = {"base", "world-R", "world-A"};

int sf_world_set_lookup(const char *name) {
    for (int i = 0; name && i < SF_WORLD_N_SETS; i++)
        if (!strcasecmp(name, set_names[i])) return i;
    return -1;
}

const char *sf_world_set_name(int set) {
    return set >= 0 && set < SF_WORLD_N_SETS ? set_names[set] : NULL;
}

/* Renditions: the class's usual scene and colours, every non-photo style in
 * turn, mostly daylight: only the style moves. */
static void set_r(const sf_world_t *w, int cls, uint64_t item, sf_world_attrs_t *a) {
    const sf_world_class_t *k = &w->cls[cls];
    sf_world_prior_sample(w, cls, item_seed(w, cls, item, 0x2e2e2eull), a);
    sf_rng_t r = {a->seed};
    a->v[SF_ATTR_STYLE] = 1 + (int)((item + (uint64_t)cls) % (SF_N_STYLES - 1));
    if (!is_usual(k, SF_ATTR_SCENE, a->v[SF_ATTR_SCENE]))
        a->v[SF_ATTR_SCENE] = k->usual[SF_ATTR_SCENE][sf_rng_int(&r, 3) == 0];
    if (!is_usual(k, SF_ATTR_COLOR, a->v[SF_ATTR_COLOR]))
        a->v[SF_ATTR_COLOR] = k->usual[SF_ATTR_COLOR][sf_rng_int(&r, 3) == 0];
}

/* Hard photos: an unusual scene plus one hard factor, each factor for a
 * sixth of the images.  (Two or more factors left the base-trained world
 * classifiers at chance, 2%, where no fine-tuning gain could show; with one,
 * a ConvNeXt at 80% on base scores about 16% — per factor 3% small, 8-10%
 * occluded / off-colour / turned, 31-32% dark / cluttered; docs/models.md.) */
static void set_a(const sf_world_t *w, int cls, uint64_t item, sf_world_attrs_t *a) {
    const sf_world_class_t *k = &w->cls[cls];
    sf_world_prior_sample(w, cls, item_seed(w, cls, item, 0xaaaaull), a);
    sf_rng_t r = {a->seed ^ 0x1234ull};
    a->v[SF_ATTR_STYLE] = SF_STYLE_PHOTO;
    do a->v[SF_ATTR_SCENE] = sf_rng_int(&r, SF_N_SCENES);
    while (is_usual(k, SF_ATTR_SCENE, a->v[SF_ATTR_SCENE]));
    /* Undo what the prior drew of the other factors, then set one. */
    if (a->v[SF_ATTR_SIZE] == SF_SIZE_SMALL) a->v[SF_ATTR_SIZE] = SF_SIZE_MEDIUM;
    a->v[SF_ATTR_OCCL] = SF_OCCL_NONE;
    a->v[SF_ATTR_LIGHT] = SF_LIGHT_DAY;
    a->v[SF_ATTR_CLUTTER] = SF_CLUTTER_NONE;
    if (!is_usual(k, SF_ATTR_COLOR, a->v[SF_ATTR_COLOR])) a->v[SF_ATTR_COLOR] = k->usual[SF_ATTR_COLOR][0];
    if (a->v[SF_ATTR_ROT] >= SF_ROT_SIDEWAYS) a->v[SF_ATTR_ROT] = SF_ROT_UPRIGHT;
    switch ((item + (uint64_t)cls) % 6) {
    case 0: a->v[SF_ATTR_SIZE] = SF_SIZE_SMALL; break;
    case 1: a->v[SF_ATTR_OCCL] = 1 + sf_rng_int(&r, 2); break;
    case 2: a->v[SF_ATTR_LIGHT] = 1 + sf_rng_int(&r, SF_N_LIGHTS - 1); break;
    case 3: a->v[SF_ATTR_CLUTTER] = SF_CLUTTER_SOME; break;
    case 4:
        do a->v[SF_ATTR_COLOR] = sf_rng_int(&r, SF_N_COLORS);
        while (is_usual(k, SF_ATTR_COLOR, a->v[SF_ATTR_COLOR]));
        break;
    default: a->v[SF_ATTR_ROT] = SF_ROT_SIDEWAYS + sf_rng_int(&r, 2); break;
    }
}

int sf_world_testset_get(const sf_world_t *w, int set, uint64_t index, uint8_t *rgb, int *label,
                         sf_world_attrs_t *attrs) {
    if (!w || set < 0 || set >= SF_WORLD_N_SETS) return SF_EINVAL;
    int n = w->classes->n, cls = (int)(index % (uint64_t)n);
    uint64_t item = index / (uint64_t)n;
    sf_world_attrs_t a;
    switch (set) {
    case SF_WORLD_SET_BASE:
        /* Items from 2^40 up: far from any index a trainer draws. */
        sf_world_prior_sample(w, cls, item_seed(w, cls, item + (1ull << 40), 0xba5eull), &a);
        break;
    case SF_WORLD_SET_R: set_r(w, cls, item, &a); break;
    default: set_a(w, cls, item, &a); break;
    }
    if (label) *label = cls;
    if (attrs) *attrs = a;
    return rgb ? sf_world_render(w, &a, rgb) : 0;
}

int sf_world_to_input(const uint8_t *rgb, int s, int S, const float mean[3], const float std[3], int flip,
                      float *out) {
    if (!rgb || !out || s <= 0 || (S != s && S * 2 != s)) return SF_EINVAL;
    const int k = s / S; /* 1 or 2 */
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < S; x++) {
                int sx = flip ? S - 1 - x : x;
                const uint8_t *p = rgb + ((size_t)(k * y) * s + k * sx) * 3 + c;
                float v = k == 1 ? p[0] / 255.0f : (p[0] + p[3] + p[s * 3] + p[s * 3 + 3]) / (4 * 255.0f);
                out[(size_t)c * S * S + (size_t)y * S + x] = (v - mean[c]) / std[c];
            }
    return 0;
}

int sf_world_to_chw(const uint8_t *rgb, int w, int h, const float mean[3], const float std[3],
                    float *out) {
    if (!rgb || !out || w <= 0 || h <= 0) return SF_EINVAL;
    size_t plane = (size_t)w * (size_t)h;
    for (int c = 0; c < 3; c++) {
        float m = mean ? mean[c] : 0, s = std ? std[c] : 1;
        if (s == 0) return SF_EINVAL;
        float k = 1.0f / (255.0f * s), b = -m / s;
        for (size_t i = 0; i < plane; i++) out[c * plane + i] = (float)rgb[3 * i + c] * k + b;
    }
    return 0;
}

/* ---- generator ------------------------------------------------------------------ */

static const char *const outcome_names[SF_GEN_N_OUTCOMES] = {"ok", "dropped", "swapped",
                                                             "wrong-object", "no-object"};

const char *sf_world_outcome_name(int o) {
    return o >= 0 && o < SF_GEN_N_OUTCOMES ? outcome_names[o] : NULL;
}

double sf_world_failure_prob(const sf_world_parse_t *p) {
    int named = __builtin_popcount(p->named);
    double f = 0.02;
    if (p->n_words > 6) f += 0.012 * (p->n_words - 6);
    if (named > 2) f += 0.035 * (named - 2);
    f += 0.2 * p->contradictions;
    return f > 0.95 ? 0.95 : f;
}

/* Another value of `attr` than v, drawn from the prior where it can be. */
static int other_value(const sf_world_class_t *k, int attr, int v, sf_rng_t *r, int from_prior) {
    for (int t = 0; from_prior && t < 8; t++) {
        int x = sf_world__draw(r, k->prior[attr], n_values[attr]);
        if (x != v) return x;
    }
    return (v + 1 + sf_rng_int(r, n_values[attr] - 1)) % n_values[attr];
}

int sf_world_generate(const sf_world_t *w, const char *caption, uint64_t seed, uint8_t *rgb,
                      sf_world_gen_t *info) {
    if (!w || !caption) return SF_EINVAL;
    sf_world_gen_t g;
    memset(&g, 0, sizeof g);
    int rc = sf_world_parse(w, caption, &g.parse);
    if (rc) return rc;
    /* The stream depends on what the caption says, not on how: words the
     * parser ignores leave the picture alone (they only lengthen the caption
     * and so raise the failure probability). */
    uint64_t s = sf_world__mix(seed ^ 0x6e6e6eull) ^ sf_world__mix((uint64_t)(g.parse.cls + 2));
    for (int a = 0; a < SF_N_ATTRS; a++)
        s = sf_world__mix(s ^ (uint64_t)(g.parse.named & (1u << a) ? g.parse.v[a] + 1 : 0));
    sf_rng_t r = {s};
    int cls = g.parse.cls;
    sf_world_prior_sample(w, cls, sf_rng_next(&r), &g.attrs);
    if (cls < 0) g.attrs.v[SF_ATTR_SCENE] = sf_rng_int(&r, SF_N_SCENES);
    for (int a = 0; a < SF_N_ATTRS; a++)
        if (g.parse.named & (1u << a)) g.attrs.v[a] = g.parse.v[a];
    g.p_fail = sf_world_failure_prob(&g.parse);
    g.outcome = SF_GEN_OK;
    g.failed_attr = -1;
    if (sf_rng_unif(&r) < g.p_fail) {
        const sf_world_class_t *k = &w->cls[cls < 0 ? 0 : cls];
        int named = __builtin_popcount(g.parse.named);
        double u = sf_rng_unif(&r);
        int mode = u < 0.4 ? SF_GEN_DROPPED : u < 0.7 ? SF_GEN_SWAPPED : u < 0.9 ? SF_GEN_WRONG_OBJECT
                                                                                 : SF_GEN_NO_OBJECT;
        if ((mode == SF_GEN_DROPPED || mode == SF_GEN_SWAPPED) && named == 0)
            mode = cls >= 0 ? SF_GEN_WRONG_OBJECT : SF_GEN_OK;
        if (cls < 0 && mode != SF_GEN_DROPPED && mode != SF_GEN_SWAPPED) mode = SF_GEN_OK;
        if (mode == SF_GEN_WRONG_OBJECT && w->classes->n < 2) mode = SF_GEN_NO_OBJECT;
        g.outcome = mode;
        if (mode == SF_GEN_DROPPED || mode == SF_GEN_SWAPPED) {
            int pick = sf_rng_int(&r, named), a = 0;
            for (; a < SF_N_ATTRS; a++)
                if ((g.parse.named & (1u << a)) && pick-- == 0) break;
            g.failed_attr = a;
            g.attrs.v[a] = other_value(k, a, g.attrs.v[a], &r, mode == SF_GEN_DROPPED);
        } else if (mode == SF_GEN_WRONG_OBJECT) {
            g.attrs.cls = (cls + 1 + sf_rng_int(&r, w->classes->n - 1)) % w->classes->n;
        } else if (mode == SF_GEN_NO_OBJECT) {
            g.attrs.cls = -1;
        }
    }
    g.attrs.seed = sf_rng_next(&r);
    if (info) *info = g;
    return rgb ? sf_world_render(w, &g.attrs, rgb) : 0;
}
