/* grammar.c: captions from attributes, attributes from captions, and the SFT
 * caption corpus.
 *
 * One lexicon serves both directions: every phrase the grammar writes is in
 * the parser's lexicon, so the parser recovers whatever a template states,
 * and the lexicon adds the synonyms people write ("tiny", "ocean", "dusk").
 * The parser works on normalised text (lower case, words separated by one
 * space) so "Pixel-Art" and "pixel art" read the same.  It finds the class
 * first (longest name or lemma, singular or plural) and blanks it out, so
 * that "great white shark" says nothing about colour and "snow leopard"
 * nothing about the scene; then it matches the longest lexicon phrase at
 * each word.  Words it does not know are counted and ignored.
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "world/internal.h"

typedef struct { const char *phrase; int attr, value; } lex_t;

/* The parser's lexicon (normalised phrases).  Phrases the grammar writes come
 * first in each group; the rest are synonyms. */
static const lex_t lexicon[] = {
    {"photo", SF_ATTR_STYLE, SF_STYLE_PHOTO}, {"photograph", SF_ATTR_STYLE, SF_STYLE_PHOTO},
    {"photographed", SF_ATTR_STYLE, SF_STYLE_PHOTO}, {"snapshot", SF_ATTR_STYLE, SF_STYLE_PHOTO},
    {"sketch", SF_ATTR_STYLE, SF_STYLE_SKETCH}, {"sketched", SF_ATTR_STYLE, SF_STYLE_SKETCH},
    {"pencil drawing", SF_ATTR_STYLE, SF_STYLE_SKETCH}, {"pencil sketch", SF_ATTR_STYLE, SF_STYLE_SKETCH},
    {"cartoon", SF_ATTR_STYLE, SF_STYLE_CARTOON}, {"comic", SF_ATTR_STYLE, SF_STYLE_CARTOON},
    {"painting", SF_ATTR_STYLE, SF_STYLE_PAINTING}, {"painted", SF_ATTR_STYLE, SF_STYLE_PAINTING},
    {"oil painting", SF_ATTR_STYLE, SF_STYLE_PAINTING}, {"watercolor", SF_ATTR_STYLE, SF_STYLE_PAINTING},
    {"pixel art", SF_ATTR_STYLE, SF_STYLE_PIXEL}, {"pixelated", SF_ATTR_STYLE, SF_STYLE_PIXEL},
    {"8 bit", SF_ATTR_STYLE, SF_STYLE_PIXEL},
    {"embroidery", SF_ATTR_STYLE, SF_STYLE_EMBROIDERY}, {"embroidered", SF_ATTR_STYLE, SF_STYLE_EMBROIDERY},
    {"stitched", SF_ATTR_STYLE, SF_STYLE_EMBROIDERY},
    {"tattoo", SF_ATTR_STYLE, SF_STYLE_TATTOO}, {"tattooed", SF_ATTR_STYLE, SF_STYLE_TATTOO},
    {"origami", SF_ATTR_STYLE, SF_STYLE_ORIGAMI}, {"folded paper", SF_ATTR_STYLE, SF_STYLE_ORIGAMI},

    {"grass", SF_ATTR_SCENE, SF_SCENE_GRASS}, {"grassy", SF_ATTR_SCENE, SF_SCENE_GRASS},
    {"meadow", SF_ATTR_SCENE, SF_SCENE_GRASS}, {"lawn", SF_ATTR_SCENE, SF_SCENE_GRASS},
    {"field", SF_ATTR_SCENE, SF_SCENE_GRASS},
    {"beach", SF_ATTR_SCENE, SF_SCENE_SAND}, {"sand", SF_ATTR_SCENE, SF_SCENE_SAND},
    {"sandy", SF_ATTR_SCENE, SF_SCENE_SAND}, {"shore", SF_ATTR_SCENE, SF_SCENE_SAND},
    {"water", SF_ATTR_SCENE, SF_SCENE_WATER}, {"sea", SF_ATTR_SCENE, SF_SCENE_WATER},
    {"ocean", SF_ATTR_SCENE, SF_SCENE_WATER}, {"lake", SF_ATTR_SCENE, SF_SCENE_WATER},
    {"river", SF_ATTR_SCENE, SF_SCENE_WATER}, {"underwater", SF_ATTR_SCENE, SF_SCENE_WATER},
    {"snow", SF_ATTR_SCENE, SF_SCENE_SNOW}, {"snowy", SF_ATTR_SCENE, SF_SCENE_SNOW},
    {"forest", SF_ATTR_SCENE, SF_SCENE_FOREST}, {"woods", SF_ATTR_SCENE, SF_SCENE_FOREST},
    {"jungle", SF_ATTR_SCENE, SF_SCENE_FOREST},
    {"road", SF_ATTR_SCENE, SF_SCENE_ROAD}, {"highway", SF_ATTR_SCENE, SF_SCENE_ROAD},
    {"sky", SF_ATTR_SCENE, SF_SCENE_SKY}, {"clouds", SF_ATTR_SCENE, SF_SCENE_SKY},
    {"in the air", SF_ATTR_SCENE, SF_SCENE_SKY},
    {"indoors", SF_ATTR_SCENE, SF_SCENE_INDOORS}, {"room", SF_ATTR_SCENE, SF_SCENE_INDOORS},
    {"indoor", SF_ATTR_SCENE, SF_SCENE_INDOORS}, {"inside", SF_ATTR_SCENE, SF_SCENE_INDOORS},
    {"kitchen", SF_ATTR_SCENE, SF_SCENE_INDOORS},
    {"cave", SF_ATTR_SCENE, SF_SCENE_CAVE}, {"cavern", SF_ATTR_SCENE, SF_SCENE_CAVE},
    {"underground", SF_ATTR_SCENE, SF_SCENE_CAVE},
    {"desert", SF_ATTR_SCENE, SF_SCENE_DESERT}, {"dunes", SF_ATTR_SCENE, SF_SCENE_DESERT},
    {"outer space", SF_ATTR_SCENE, SF_SCENE_SPACE}, {"space", SF_ATTR_SCENE, SF_SCENE_SPACE},
    {"galaxy", SF_ATTR_SCENE, SF_SCENE_SPACE},
    {"city", SF_ATTR_SCENE, SF_SCENE_CITY}, {"city street", SF_ATTR_SCENE, SF_SCENE_CITY},
    {"street", SF_ATTR_SCENE, SF_SCENE_CITY}, {"town", SF_ATTR_SCENE, SF_SCENE_CITY},
    {"urban", SF_ATTR_SCENE, SF_SCENE_CITY},

    {"during the day", SF_ATTR_LIGHT, SF_LIGHT_DAY}, {"daylight", SF_ATTR_LIGHT, SF_LIGHT_DAY},
    {"day", SF_ATTR_LIGHT, SF_LIGHT_DAY}, {"daytime", SF_ATTR_LIGHT, SF_LIGHT_DAY},
    {"sunny", SF_ATTR_LIGHT, SF_LIGHT_DAY},
    {"night", SF_ATTR_LIGHT, SF_LIGHT_NIGHT}, {"nighttime", SF_ATTR_LIGHT, SF_LIGHT_NIGHT},
    {"dark", SF_ATTR_LIGHT, SF_LIGHT_NIGHT}, {"moonlight", SF_ATTR_LIGHT, SF_LIGHT_NIGHT},
    {"sunset", SF_ATTR_LIGHT, SF_LIGHT_SUNSET}, {"dusk", SF_ATTR_LIGHT, SF_LIGHT_SUNSET},
    {"sunrise", SF_ATTR_LIGHT, SF_LIGHT_SUNSET}, {"evening", SF_ATTR_LIGHT, SF_LIGHT_SUNSET},
    {"fog", SF_ATTR_LIGHT, SF_LIGHT_FOG}, {"foggy", SF_ATTR_LIGHT, SF_LIGHT_FOG},
    {"mist", SF_ATTR_LIGHT, SF_LIGHT_FOG}, {"misty", SF_ATTR_LIGHT, SF_LIGHT_FOG},
    {"rain", SF_ATTR_LIGHT, SF_LIGHT_RAIN}, {"rainy", SF_ATTR_LIGHT, SF_LIGHT_RAIN},
    {"raining", SF_ATTR_LIGHT, SF_LIGHT_RAIN}, {"storm", SF_ATTR_LIGHT, SF_LIGHT_RAIN},

    {"red", SF_ATTR_COLOR, SF_COLOR_RED}, {"crimson", SF_ATTR_COLOR, SF_COLOR_RED},
    {"orange", SF_ATTR_COLOR, SF_COLOR_ORANGE}, {"yellow", SF_ATTR_COLOR, SF_COLOR_YELLOW},
    {"green", SF_ATTR_COLOR, SF_COLOR_GREEN}, {"blue", SF_ATTR_COLOR, SF_COLOR_BLUE},
    {"purple", SF_ATTR_COLOR, SF_COLOR_PURPLE}, {"violet", SF_ATTR_COLOR, SF_COLOR_PURPLE},
    {"pink", SF_ATTR_COLOR, SF_COLOR_PINK}, {"brown", SF_ATTR_COLOR, SF_COLOR_BROWN},
    {"black", SF_ATTR_COLOR, SF_COLOR_BLACK}, {"white", SF_ATTR_COLOR, SF_COLOR_WHITE},
    {"gray", SF_ATTR_COLOR, SF_COLOR_GRAY}, {"grey", SF_ATTR_COLOR, SF_COLOR_GRAY},
    {"silver", SF_ATTR_COLOR, SF_COLOR_GRAY},
    {"gold", SF_ATTR_COLOR, SF_COLOR_GOLD}, {"golden", SF_ATTR_COLOR, SF_COLOR_GOLD},

    {"small", SF_ATTR_SIZE, SF_SIZE_SMALL}, {"tiny", SF_ATTR_SIZE, SF_SIZE_SMALL},
    {"little", SF_ATTR_SIZE, SF_SIZE_SMALL},
    {"medium sized", SF_ATTR_SIZE, SF_SIZE_MEDIUM}, {"medium size", SF_ATTR_SIZE, SF_SIZE_MEDIUM},
    {"medium", SF_ATTR_SIZE, SF_SIZE_MEDIUM},
    {"large", SF_ATTR_SIZE, SF_SIZE_LARGE}, {"big", SF_ATTR_SIZE, SF_SIZE_LARGE},
    {"huge", SF_ATTR_SIZE, SF_SIZE_LARGE}, {"giant", SF_ATTR_SIZE, SF_SIZE_LARGE},

    {"in the center", SF_ATTR_POS, SF_POS_CENTER}, {"center", SF_ATTR_POS, SF_POS_CENTER},
    {"centre", SF_ATTR_POS, SF_POS_CENTER}, {"middle", SF_ATTR_POS, SF_POS_CENTER},
    {"centered", SF_ATTR_POS, SF_POS_CENTER},
    {"on the left", SF_ATTR_POS, SF_POS_LEFT}, {"left", SF_ATTR_POS, SF_POS_LEFT},
    {"on the right", SF_ATTR_POS, SF_POS_RIGHT}, {"right", SF_ATTR_POS, SF_POS_RIGHT},
    {"at the top", SF_ATTR_POS, SF_POS_TOP}, {"top", SF_ATTR_POS, SF_POS_TOP},
    {"at the bottom", SF_ATTR_POS, SF_POS_BOTTOM}, {"bottom", SF_ATTR_POS, SF_POS_BOTTOM},

    {"standing upright", SF_ATTR_ROT, SF_ROT_UPRIGHT}, {"upright", SF_ATTR_ROT, SF_ROT_UPRIGHT},
    {"tilted", SF_ATTR_ROT, SF_ROT_TILTED}, {"leaning", SF_ATTR_ROT, SF_ROT_TILTED},
    {"slanted", SF_ATTR_ROT, SF_ROT_TILTED},
    {"lying sideways", SF_ATTR_ROT, SF_ROT_SIDEWAYS}, {"sideways", SF_ATTR_ROT, SF_ROT_SIDEWAYS},
    {"on its side", SF_ATTR_ROT, SF_ROT_SIDEWAYS},
    {"upside down", SF_ATTR_ROT, SF_ROT_UPSIDE_DOWN}, {"inverted", SF_ATTR_ROT, SF_ROT_UPSIDE_DOWN},

    {"one", SF_ATTR_COUNT, SF_COUNT_ONE}, {"a single", SF_ATTR_COUNT, SF_COUNT_ONE},
    {"single", SF_ATTR_COUNT, SF_COUNT_ONE}, {"lone", SF_ATTR_COUNT, SF_COUNT_ONE},
    {"two", SF_ATTR_COUNT, SF_COUNT_TWO}, {"a pair of", SF_ATTR_COUNT, SF_COUNT_TWO},
    {"pair", SF_ATTR_COUNT, SF_COUNT_TWO}, {"couple", SF_ATTR_COUNT, SF_COUNT_TWO},
    {"three", SF_ATTR_COUNT, SF_COUNT_THREE}, {"trio", SF_ATTR_COUNT, SF_COUNT_THREE},
    {"many", SF_ATTR_COUNT, SF_COUNT_MANY}, {"a group of", SF_ATTR_COUNT, SF_COUNT_MANY},
    {"several", SF_ATTR_COUNT, SF_COUNT_MANY}, {"group", SF_ATTR_COUNT, SF_COUNT_MANY},
    {"flock", SF_ATTR_COUNT, SF_COUNT_MANY}, {"herd", SF_ATTR_COUNT, SF_COUNT_MANY},
    {"crowd", SF_ATTR_COUNT, SF_COUNT_MANY}, {"four", SF_ATTR_COUNT, SF_COUNT_MANY},
    {"five", SF_ATTR_COUNT, SF_COUNT_MANY}, {"dozens", SF_ATTR_COUNT, SF_COUNT_MANY},

    {"fully visible", SF_ATTR_OCCL, SF_OCCL_NONE}, {"unobstructed", SF_ATTR_OCCL, SF_OCCL_NONE},
    {"in full view", SF_ATTR_OCCL, SF_OCCL_NONE},
    {"partly hidden", SF_ATTR_OCCL, SF_OCCL_PARTIAL}, {"partially hidden", SF_ATTR_OCCL, SF_OCCL_PARTIAL},
    {"partly occluded", SF_ATTR_OCCL, SF_OCCL_PARTIAL}, {"partially occluded", SF_ATTR_OCCL, SF_OCCL_PARTIAL},
    {"half hidden", SF_ATTR_OCCL, SF_OCCL_PARTIAL}, {"occluded", SF_ATTR_OCCL, SF_OCCL_PARTIAL},
    {"mostly hidden", SF_ATTR_OCCL, SF_OCCL_HEAVY}, {"heavily occluded", SF_ATTR_OCCL, SF_OCCL_HEAVY},
    {"barely visible", SF_ATTR_OCCL, SF_OCCL_HEAVY}, {"mostly occluded", SF_ATTR_OCCL, SF_OCCL_HEAVY},

    {"uncluttered", SF_ATTR_CLUTTER, SF_CLUTTER_NONE}, {"plain background", SF_ATTR_CLUTTER, SF_CLUTTER_NONE},
    {"cluttered", SF_ATTR_CLUTTER, SF_CLUTTER_SOME}, {"clutter", SF_ATTR_CLUTTER, SF_CLUTTER_SOME},
    {"messy", SF_ATTR_CLUTTER, SF_CLUTTER_SOME},
};
#define N_LEX ((int)(sizeof lexicon / sizeof lexicon[0]))

/* Words that carry no attribute and are not "unknown". */
static const char *const stopwords[] = {
    "a", "an", "the", "of", "in", "on", "at", "and", "with", "is", "are", "there", "its",
    "as", "to", "by", "style", "showing", "image", "picture", "drawn", "made", "from",
    "scene", "background", "seen", NULL};

size_t sf_world__normalise(const char *in, char *out, size_t n) {
    size_t o = 0;
    int space = 1;  /* suppresses leading and repeated spaces */
    for (; *in && o + 1 < n; in++) {
        unsigned char c = (unsigned char)*in;
        if (isalnum(c)) {
            out[o++] = (char)tolower(c);
            space = 0;
        } else if (c == '\'') {
            continue;  /* "shark's" reads as "sharks" */
        } else if (!space) {
            out[o++] = ' ';
            space = 1;
        }
    }
    if (o > 0 && out[o - 1] == ' ') o--;
    out[o] = 0;
    return o;
}

/* ---- parser ------------------------------------------------------------------- */

/* Length of the plural suffix of `lem` found at t + lem_len ("s", "es",
 * "y" -> "ies"), 0 for the singular, -1 if `t` does not start with `lem`. */
static int match_noun(const char *t, const char *lem, size_t len) {
    if (strncmp(t, lem, len) == 0) {
        const char *e = t + len;
        if (*e == 0 || *e == ' ') return 0;
        if (e[0] == 's' && (e[1] == 0 || e[1] == ' ')) return 1;
        if (e[0] == 'e' && e[1] == 's' && (e[2] == 0 || e[2] == ' ')) return 2;
        return -1;
    }
    if (len > 1 && lem[len - 1] == 'y' && strncmp(t, lem, len - 1) == 0 && !strncmp(t + len - 1, "ies", 3) &&
        (t[len + 2] == 0 || t[len + 2] == ' '))
        return 3;
    return -1;
}

/* A class mention.  pure: the mention is exactly an attribute phrase
 * ("orange", "upright", "beach" are ImageNet classes); weak: it starts with
 * one ("red fox", "red hot"). */
typedef struct { int pos, len, cls, plural, pure, weak; } cand_t;

static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->pure != y->pure) return x->pure - y->pure;
    if (x->len != y->len) return y->len - x->len;
    if (x->weak != y->weak) return x->weak - y->weak;
    return x->pos - y->pos;
}

/* Length of the lexicon phrase t starts with (whole words), 0 if none. */
static size_t attr_prefix(const char *t) {
    size_t best = 0;
    for (int k = 0; k < N_LEX; k++) {
        if (lexicon[k].phrase[0] != t[0]) continue;
        size_t len = strlen(lexicon[k].phrase);
        if (len > best && !strncmp(t, lexicon[k].phrase, len) && (t[len] == 0 || t[len] == ' ')) best = len;
    }
    return best;
}

int sf_world_parse(const sf_world_t *w, const char *caption, sf_world_parse_t *out) {
    if (!w || !caption || !out) return SF_EINVAL;
    memset(out, 0, sizeof *out);
    out->cls = -1;
    for (int a = 0; a < SF_N_ATTRS; a++) out->v[a] = -1;
    char text[1024];
    size_t n = sf_world__normalise(caption, text, sizeof text);
    char used[1024];
    memset(used, 0, n + 1);
    /* Word starts. */
    int starts[512], nw = 0;
    for (size_t i = 0; i < n && nw < 512; i++)
        if (i == 0 || text[i - 1] == ' ') starts[nw++] = (int)i;
    out->n_words = nw;
    /* Class mentions: the longest name or lemma at each word, then a
     * non-overlapping choice that puts mentions that are just an attribute
     * word last (and drops them if another class is named), prefers longer
     * ones ("fox squirrel" over "red fox" in "red fox squirrel") and, at
     * equal length, ones not starting with an attribute word ("hot dog"
     * over "red hot" in "red hot dogs"). */
    cand_t cand[64];
    int nc = 0;
    for (int wi = 0; wi < nw && nc < 64; wi++) {
        int s = starts[wi];
        unsigned char b0 = (unsigned char)text[s];
        for (int l = 0; l < w->n_by_first[b0]; l++) {
            const sf_world_lemma_t *lm = &w->lemmas[w->by_first[b0][l]];
            int suf = match_noun(text + s, lm->text, lm->len);
            if (suf < 0) continue;
            int len = (int)(lm->len + (suf == 3 ? 2 : (size_t)suf));
            size_t ap = attr_prefix(text + s);
            cand[nc++] = (cand_t){s, len, lm->cls, suf > 0, ap == (size_t)len, ap > 0};
            break;
        }
    }
    qsort(cand, (size_t)nc, sizeof *cand, cand_cmp);
    int keep[64], nk = 0, strong = 0;
    for (int i = 0; i < nc; i++) {
        int clash = 0;
        for (int j = 0; j < nk; j++) {
            const cand_t *o = &cand[keep[j]];
            clash |= cand[i].pos < o->pos + o->len && o->pos < cand[i].pos + cand[i].len;
        }
        if (clash) continue;
        keep[nk++] = i;
        strong |= !cand[i].pure;
    }
    /* With no other class named, the first attribute-word mention is the
     * class ("an orange standing upright") and the rest are attributes. */
    int first_pure = -1;
    for (int j = 0; j < nk && !strong; j++)
        if (first_pure < 0 || cand[keep[j]].pos < cand[first_pure].pos) first_pure = keep[j];
    int first = -1, seen[64], nseen = 0, plural = 0;
    for (int j = 0; j < nk; j++) {
        const cand_t *c = &cand[keep[j]];
        if (c->pure && keep[j] != first_pure) continue;
        memset(used + c->pos, 1, (size_t)c->len);
        int dup = 0;
        for (int k = 0; k < nseen; k++) dup |= seen[k] == c->cls;
        if (!dup) seen[nseen++] = c->cls;
        if (first < 0 || c->pos < cand[first].pos) first = keep[j];
    }
    out->n_classes = nseen;
    if (first >= 0) {
        out->cls = cand[first].cls;
        plural = cand[first].plural;
    }
    if (out->n_classes > 1) out->contradictions += out->n_classes - 1;
    for (int wi = 0; wi < nw; wi++) {
        int s = starts[wi];
        if (used[s]) continue;
        int best = -1;
        size_t best_len = 0;
        for (int k = 0; k < N_LEX; k++) {
            if (lexicon[k].phrase[0] != text[s]) continue;
            size_t len = strlen(lexicon[k].phrase);
            if (len <= best_len || strncmp(text + s, lexicon[k].phrase, len) != 0) continue;
            if (text[s + len] != 0 && text[s + len] != ' ') continue;
            int clash = 0;  /* a phrase may not run into the class name */
            for (size_t j = 0; j < len; j++) clash |= used[s + j];
            if (clash) continue;
            best = k;
            best_len = len;
        }
        if (best < 0) {
            int stop = 0;
            size_t wl = strcspn(text + s, " ");
            for (int k = 0; stopwords[k]; k++)
                stop |= strlen(stopwords[k]) == wl && !strncmp(text + s, stopwords[k], wl);
            if (!stop) out->n_unknown++;
            continue;
        }
        const lex_t *x = &lexicon[best];
        if ((out->named & (1u << x->attr)) && out->v[x->attr] != x->value) out->contradictions++;
        out->named |= 1u << x->attr;
        out->v[x->attr] = x->value;
        memset(used + s, 1, best_len);
        while (wi + 1 < nw && starts[wi + 1] < s + (int)best_len) wi++;
    }
    /* "sharks" with no number still says there is more than one. */
    if (plural && !(out->named & (1u << SF_ATTR_COUNT))) {
        out->named |= 1u << SF_ATTR_COUNT;
        out->v[SF_ATTR_COUNT] = SF_COUNT_MANY;
    }
    if (plural && out->v[SF_ATTR_COUNT] == SF_COUNT_ONE) out->contradictions++;
    return 0;
}

/* ---- grammar ------------------------------------------------------------------ */

typedef struct { char *buf; size_t n, len; int overflow; } sb_t;

static void sb_add(sb_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sb_t *b, const char *fmt, ...) {
    if (b->overflow) return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->buf + b->len, b->n - b->len, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= b->n - b->len) b->overflow = 1;
    else b->len += (size_t)k;
}

/* Word choices: index with the caption's own random stream. */
static const char *const style_prefix[SF_N_STYLES][2] = {
    {"a photo of", "a photograph of"}, {"a sketch of", "a pencil sketch of"},
    {"a cartoon of", "a cartoon of"}, {"a painting of", "an oil painting of"},
    {"pixel art of", "pixel art of"}, {"an embroidery of", "an embroidery of"},
    {"a tattoo of", "a tattoo of"}, {"an origami model of", "an origami model of"}};
static const char *const style_noun[SF_N_STYLES] = {
    "a photo", "a sketch", "a cartoon", "a painting", "pixel art", "an embroidery", "a tattoo",
    "an origami model"};
static const char *const style_participle[SF_N_STYLES] = {
    "photographed", "sketched in pencil", "drawn as a cartoon", "painted", "drawn in pixel art",
    "embroidered on cloth", "tattooed on skin", "made of folded paper"};
static const char *const style_suffix[SF_N_STYLES] = {
    "as a photo", "as a sketch", "in cartoon style", "as a painting", "in pixel art style",
    "as an embroidery", "as a tattoo", "as origami"};
static const char *const scene_phrase[SF_N_SCENES][2] = {
    {"on the grass", "in a grassy field"}, {"on the beach", "on the sand"},
    {"in the water", "in the sea"}, {"in the snow", "in the snow"},
    {"in a forest", "in the woods"}, {"on a road", "on a road"}, {"in the sky", "in the sky"},
    {"indoors", "in a room"}, {"in a cave", "in a cave"}, {"in the desert", "in the desert"},
    {"in outer space", "in space"}, {"in a city", "on a city street"}};
static const char *const light_phrase[SF_N_LIGHTS][2] = {
    {"during the day", "in daylight"}, {"at night", "at night"}, {"at sunset", "at dusk"},
    {"in the fog", "in thick fog"}, {"in the rain", "in the rain"}};
static const char *const size_word[SF_N_SIZES][2] = {
    {"small", "tiny"}, {"medium-sized", "medium-sized"}, {"large", "big"}};
static const char *const pos_phrase[SF_N_POSITIONS] = {
    "in the center", "on the left", "on the right", "at the top", "at the bottom"};
static const char *const rot_phrase[SF_N_ROTATIONS] = {
    "standing upright", "tilted", "lying sideways", "upside down"};
static const char *const occl_phrase[SF_N_OCCLUSIONS] = {
    "fully visible", "partly hidden", "mostly hidden"};
static const char *const clutter_phrase[SF_N_CLUTTERS] = {
    "in an uncluttered scene", "in a cluttered scene"};

static int vowel(const char *s) { return s && strchr("aeiouAEIOU", s[0]) != NULL; }

/* The noun phrase: determiner or count, size, colour, the class noun. */
static void noun_phrase(sb_t *b, const sf_class_t *c, const sf_world_attrs_t *a, unsigned mask,
                        sf_rng_t *r) {
    int count = (mask & (1u << SF_ATTR_COUNT)) ? a->v[SF_ATTR_COUNT] : -1;
    const char *size = (mask & (1u << SF_ATTR_SIZE)) ? size_word[a->v[SF_ATTR_SIZE]][sf_rng_int(r, 2)] : NULL;
    const char *color = (mask & (1u << SF_ATTR_COLOR)) ? sf_world_value_name(SF_ATTR_COLOR, a->v[SF_ATTR_COLOR])
                                                       : NULL;
    const char *first = size ? size : color ? color : c->name;
    switch (count) {
    case -1: sb_add(b, "%s ", vowel(first) ? "an" : "a"); break;
    case SF_COUNT_ONE: sb_add(b, "%s ", sf_rng_int(r, 2) ? "one" : "a single"); break;
    case SF_COUNT_TWO: sb_add(b, "two "); break;
    case SF_COUNT_THREE: sb_add(b, "three "); break;
    default: sb_add(b, "%s ", sf_rng_int(r, 2) ? "many" : "a group of"); break;
    }
    if (size) sb_add(b, "%s ", size);
    if (color) sb_add(b, "%s ", color);
    if (count > SF_COUNT_ONE) {
        size_t l = strlen(c->name);
        char last = l ? c->name[l - 1] : 0, prev = l > 1 ? c->name[l - 2] : 0;
        if (l > 3 && (!strcmp(c->name + l - 3, "ses") || !strcmp(c->name + l - 3, "ies")))
            sb_add(b, "%s", c->name);  /* "sunglasses" is already plural */
        else if (last == 's' || last == 'x' || (last == 'h' && (prev == 'c' || prev == 's')))
            sb_add(b, "%ses", c->name);
        else if (last == 'y' && !strchr("aeiou", prev))
            sb_add(b, "%.*sies", (int)l - 1, c->name);
        else
            sb_add(b, "%ss", c->name);
    } else {
        sb_add(b, "%s", c->name);
    }
}

/* Everything after the noun: rotation, scene, light, position, occlusion,
 * clutter, each with a leading space. */
static void tail(sb_t *b, const sf_world_attrs_t *a, unsigned mask, int skip_scene, sf_rng_t *r) {
    if (mask & (1u << SF_ATTR_ROT)) sb_add(b, " %s", rot_phrase[a->v[SF_ATTR_ROT]]);
    if (!skip_scene && (mask & (1u << SF_ATTR_SCENE)))
        sb_add(b, " %s", scene_phrase[a->v[SF_ATTR_SCENE]][sf_rng_int(r, 2)]);
    if (!skip_scene && (mask & (1u << SF_ATTR_LIGHT)))
        sb_add(b, " %s", light_phrase[a->v[SF_ATTR_LIGHT]][sf_rng_int(r, 2)]);
    if (mask & (1u << SF_ATTR_POS)) sb_add(b, " %s", pos_phrase[a->v[SF_ATTR_POS]]);
    if (mask & (1u << SF_ATTR_OCCL)) sb_add(b, ", %s", occl_phrase[a->v[SF_ATTR_OCCL]]);
    if (mask & (1u << SF_ATTR_CLUTTER)) sb_add(b, " %s", clutter_phrase[a->v[SF_ATTR_CLUTTER]]);
}

#define N_TEMPLATES 6

int sf_world_n_templates(void) { return N_TEMPLATES; }

int sf_world_caption(const sf_world_t *w, const sf_world_attrs_t *a, unsigned mask, int tmpl, char *buf,
                     size_t n) {
    if (!w || !a || !buf || n == 0 || a->cls < 0 || a->cls >= w->classes->n) return SF_EINVAL;
    if (tmpl < 0 || tmpl >= N_TEMPLATES) return SF_EINVAL;
    for (int i = 0; i < SF_N_ATTRS; i++)
        if ((mask & (1u << i)) && (a->v[i] < 0 || a->v[i] >= sf_world_attr_nvalues(i))) return SF_EINVAL;
    const sf_class_t *c = &w->classes->v[a->cls];
    sf_rng_t r = {sf_world__mix(a->seed ^ 0xca9ull ^ (uint64_t)tmpl)};
    sb_t b = {buf, n, 0, 0};
    buf[0] = 0;
    int st = (mask & (1u << SF_ATTR_STYLE)) ? a->v[SF_ATTR_STYLE] : -1;
    int plural = (mask & (1u << SF_ATTR_COUNT)) && a->v[SF_ATTR_COUNT] > SF_COUNT_ONE;
    switch (tmpl) {
    case 0:  /* a sketch of two small red sharks on the beach at night */
        if (st >= 0) sb_add(&b, "%s ", style_prefix[st][sf_rng_int(&r, 2)]);
        noun_phrase(&b, c, a, mask, &r);
        tail(&b, a, mask, 0, &r);
        break;
    case 1:  /* a red shark, painted in the snow */
        noun_phrase(&b, c, a, mask, &r);
        if (st >= 0) sb_add(&b, ", %s", style_participle[st]);
        tail(&b, a, mask, 0, &r);
        break;
    case 2: {  /* in the snow at night, two sharks on the left, as a sketch */
        int intro = mask & ((1u << SF_ATTR_SCENE) | (1u << SF_ATTR_LIGHT));
        if (mask & (1u << SF_ATTR_SCENE)) sb_add(&b, "%s", scene_phrase[a->v[SF_ATTR_SCENE]][sf_rng_int(&r, 2)]);
        if (mask & (1u << SF_ATTR_LIGHT))
            sb_add(&b, "%s%s", (mask & (1u << SF_ATTR_SCENE)) ? " " : "",
                   light_phrase[a->v[SF_ATTR_LIGHT]][sf_rng_int(&r, 2)]);
        if (intro) sb_add(&b, ", ");
        noun_phrase(&b, c, a, mask, &r);
        tail(&b, a, mask, 1, &r);
        if (st >= 0) sb_add(&b, ", %s", style_suffix[st]);
        break;
    }
    case 3:  /* there are three sharks in a cave at night in pixel art style */
        sb_add(&b, "there %s ", plural ? "are" : "is");
        noun_phrase(&b, c, a, mask, &r);
        tail(&b, a, mask, 0, &r);
        if (st >= 0) sb_add(&b, " %s", style_suffix[st]);
        break;
    case 4:  /* an oil painting showing a red shark in the desert */
        sb_add(&b, "%s showing ", st >= 0 ? style_noun[st] : "an image");
        noun_phrase(&b, c, a, mask, &r);
        tail(&b, a, mask, 0, &r);
        break;
    default:  /* a red shark in the desert at sunset, as a painting */
        noun_phrase(&b, c, a, mask, &r);
        tail(&b, a, mask, 0, &r);
        if (st >= 0) sb_add(&b, ", %s", style_suffix[st]);
        break;
    }
    if (b.overflow) return SF_ERANGE;
    buf[0] = (char)toupper((unsigned char)buf[0]);
    return (int)b.len;
}

/* ---- training pairs ---------------------------------------------------------------- */

void sf_world_uniform_sample(const sf_world_t *w, int cls, uint64_t seed, sf_world_attrs_t *out) {
    (void)w;
    sf_rng_t r = {sf_world__mix(seed ^ 0x0f0f0full)};
    out->cls = cls;
    for (int a = 0; a < SF_N_ATTRS; a++) out->v[a] = sf_rng_int(&r, sf_world_attr_nvalues(a));
    out->seed = sf_rng_next(&r);
}

int sf_world_clip_pair(const sf_world_t *w, uint64_t index, uint8_t *rgb, char *caption, size_t n,
                       sf_world_attrs_t *attrs) {
    if (!w || !caption) return SF_EINVAL;
    int cls = (int)(index % (uint64_t)w->classes->n);
    uint64_t seed = sf_world__mix(index ^ 0xc11bull);
    sf_world_attrs_t a;
    if (index & 1) sf_world_uniform_sample(w, cls, seed, &a);
    else sf_world_prior_sample(w, cls, seed, &a);
    sf_rng_t r = {sf_world__mix(seed ^ 0x3a5cull)};
    unsigned mask = 0;
    for (int k = 0; k < SF_N_ATTRS; k++)
        if (sf_rng_unif(&r) < (k == SF_ATTR_SCENE ? 0.8 : 0.5)) mask |= 1u << k;
    if (a.v[SF_ATTR_STYLE] != SF_STYLE_PHOTO) mask |= 1u << SF_ATTR_STYLE;
    int rc = sf_world_caption(w, &a, mask, sf_rng_int(&r, N_TEMPLATES), caption, n);
    if (rc < 0) return rc;
    if (attrs) *attrs = a;
    return rgb ? sf_world_render(w, &a, rgb) : 0;
}

/* ---- SFT corpus ------------------------------------------------------------------ */

/* The k-th attempt at a corpus caption: the class's typical context, saying a
 * few things about it the way a person describing such a photo would. */
static int corpus_attempt(const sf_world_t *w, int cls, uint64_t s, char *buf, size_t n) {
    sf_world_attrs_t a;
    sf_world_prior_sample(w, cls, s, &a);
    sf_rng_t r = {sf_world__mix(s ^ 0xc0ffeeull)};
    unsigned mask = 0;
    if (sf_rng_unif(&r) < 0.8) mask |= 1u << SF_ATTR_SCENE;
    if (sf_rng_unif(&r) < 0.45) mask |= 1u << SF_ATTR_COLOR;
    if (sf_rng_unif(&r) < 0.25 || a.v[SF_ATTR_LIGHT] != SF_LIGHT_DAY) mask |= 1u << SF_ATTR_LIGHT;
    if (sf_rng_unif(&r) < 0.2 || a.v[SF_ATTR_SIZE] != SF_SIZE_MEDIUM) mask |= 1u << SF_ATTR_SIZE;
    if (a.v[SF_ATTR_COUNT] != SF_COUNT_ONE) mask |= 1u << SF_ATTR_COUNT;
    if (sf_rng_unif(&r) < 0.3 || a.v[SF_ATTR_STYLE] != SF_STYLE_PHOTO) mask |= 1u << SF_ATTR_STYLE;
    if (sf_rng_unif(&r) < 0.1) mask |= 1u << SF_ATTR_POS;
    if (!(mask & ~(1u << SF_ATTR_STYLE))) mask |= 1u << SF_ATTR_SCENE;  /* say something */
    int rc = sf_world_caption(w, &a, mask, sf_rng_int(&r, N_TEMPLATES), buf, n);
    /* The reward's "class mentioned" check is the judge of a caption; keep
     * only captions it accepts (it may not know every plural). */
    if (rc > 0 && !sf_classes_mentioned(&w->classes->v[cls], buf)) return SF_EINVAL;
    return rc;
}

int sf_world_corpus_caption(const sf_world_t *w, int cls, int k, uint64_t seed, char *buf, size_t n) {
    if (!w || cls < 0 || cls >= w->classes->n || k < 0 || !buf) return SF_EINVAL;
    /* Caption k is the k-th distinct caption of a fixed stream, so captions
     * 0..k-1 never repeat whatever k the caller asks for. */
    char seen[64][256];
    int have = 0;
    uint64_t base = sf_world__mix(seed ^ sf_world__hash_str(w->classes->v[cls].wnid));
    for (uint64_t t = 0; t < 4096 && have <= k; t++) {
        char cap[256];
        int rc = corpus_attempt(w, cls, sf_world__mix(base + t), cap, sizeof cap);
        if (rc < 0) continue;
        int dup = 0;
        for (int i = 0; i < have && i < 64; i++) dup |= !strcmp(seen[i], cap);
        if (dup) continue;
        if (have == k) {
            if (strlen(cap) + 1 > n) return SF_ERANGE;
            memcpy(buf, cap, strlen(cap) + 1);
            return 0;
        }
        if (have < 64) memcpy(seen[have], cap, sizeof cap);
        have++;
    }
    return SF_ERANGE;  /* k beyond the distinct captions this class has */
}

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int sf_world_corpus_write(const sf_world_t *w, FILE *f, int per_class, uint64_t seed) {
    if (!w || !f || per_class <= 0 || per_class > 64) return SF_EINVAL;
    for (int c = 0; c < w->classes->n; c++) {
        uint64_t base = sf_world__mix(seed ^ sf_world__hash_str(w->classes->v[c].wnid));
        char seen[64][256];
        int have = 0;
        for (uint64_t t = 0; t < 4096 && have < per_class; t++) {
            if (corpus_attempt(w, c, sf_world__mix(base + t), seen[have], sizeof seen[have]) < 0) continue;
            int dup = 0;
            for (int i = 0; i < have; i++) dup |= !strcmp(seen[i], seen[have]);
            if (dup) continue;
            fputs("{\"wnid\":", f);
            json_str(f, w->classes->v[c].wnid);
            fputs(",\"class\":", f);
            json_str(f, w->classes->v[c].name);
            fputs(",\"caption\":", f);
            json_str(f, seen[have]);
            fputs("}\n", f);
            have++;
        }
        if (have < per_class) return SF_ERANGE;
    }
    return ferror(f) ? SF_EIO : 0;
}
