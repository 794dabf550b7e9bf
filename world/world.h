/* world.h: the embedded procedural world — a stand-in for ImageNet, for a
 * text-to-image model and for ImageNet-R/A, with known ground truth.
 *
 * A world is made for a class list and an image size.  Every class gets a
 * procedural object shape and a "typical context" (its base prior), both
 * derived from its wnid, so any class list works and the same class always
 * looks the same.  Images are 8-bit RGB, row-major HWC, size x size pixels
 * (32..256, 64 by default).
 *
 * What a world offers:
 *   - base samples (class, item -> image + attributes): the train-set analogue,
 *     strongly skewed towards each class's usual scenes, colours and photos;
 *   - a caption grammar (attributes -> English caption, several templates) and
 *     a parser (caption -> attributes it names + the class it names);
 *   - a generator (caption, seed -> image) that fills what a caption leaves
 *     out from the class's typical context and fails like real models do;
 *   - shifted test sets world-R (renditions) and world-A (hard photos);
 *   - the SFT caption corpus (16 captions per class, JSONL).
 *
 * A world is immutable once created: every function taking a const world is
 * safe to call from several threads at once.
 */
#ifndef SF_WORLD_H
#define SF_WORLD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/method/classes.h"

#define SF_WORLD_MIN_SIZE 32
#define SF_WORLD_MAX_SIZE 256
#define SF_WORLD_DEFAULT_SIZE 64

/* Attributes.  Each is a small enum; sf_world_value_name() gives the word the
 * grammar uses for a value. */
enum { SF_STYLE_PHOTO, SF_STYLE_SKETCH, SF_STYLE_CARTOON, SF_STYLE_PAINTING,
       SF_STYLE_PIXEL, SF_STYLE_EMBROIDERY, SF_STYLE_TATTOO, SF_STYLE_ORIGAMI,
       SF_N_STYLES };
enum { SF_SCENE_GRASS, SF_SCENE_SAND, SF_SCENE_WATER, SF_SCENE_SNOW,
       SF_SCENE_FOREST, SF_SCENE_ROAD, SF_SCENE_SKY, SF_SCENE_INDOORS,
       SF_SCENE_CAVE, SF_SCENE_DESERT, SF_SCENE_SPACE, SF_SCENE_CITY,
       SF_N_SCENES };
enum { SF_LIGHT_DAY, SF_LIGHT_NIGHT, SF_LIGHT_SUNSET, SF_LIGHT_FOG,
       SF_LIGHT_RAIN, SF_N_LIGHTS };
enum { SF_COLOR_RED, SF_COLOR_ORANGE, SF_COLOR_YELLOW, SF_COLOR_GREEN,
       SF_COLOR_BLUE, SF_COLOR_PURPLE, SF_COLOR_PINK, SF_COLOR_BROWN,
       SF_COLOR_BLACK, SF_COLOR_WHITE, SF_COLOR_GRAY, SF_COLOR_GOLD,
       SF_N_COLORS };
enum { SF_SIZE_SMALL, SF_SIZE_MEDIUM, SF_SIZE_LARGE, SF_N_SIZES };
enum { SF_POS_CENTER, SF_POS_LEFT, SF_POS_RIGHT, SF_POS_TOP, SF_POS_BOTTOM,
       SF_N_POSITIONS };
enum { SF_ROT_UPRIGHT, SF_ROT_TILTED, SF_ROT_SIDEWAYS, SF_ROT_UPSIDE_DOWN,
       SF_N_ROTATIONS };
enum { SF_COUNT_ONE, SF_COUNT_TWO, SF_COUNT_THREE, SF_COUNT_MANY,
       SF_N_COUNTS };
enum { SF_OCCL_NONE, SF_OCCL_PARTIAL, SF_OCCL_HEAVY, SF_N_OCCLUSIONS };
enum { SF_CLUTTER_NONE, SF_CLUTTER_SOME, SF_N_CLUTTERS };

/* Attribute ids: index into sf_world_attrs_t.v and bits of "named" masks. */
enum { SF_ATTR_STYLE, SF_ATTR_SCENE, SF_ATTR_LIGHT, SF_ATTR_COLOR,
       SF_ATTR_SIZE, SF_ATTR_POS, SF_ATTR_ROT, SF_ATTR_COUNT, SF_ATTR_OCCL,
       SF_ATTR_CLUTTER, SF_N_ATTRS };
#define SF_ATTR_ALL ((1u << SF_N_ATTRS) - 1)

/* What one image shows.  cls is an index into the world's class list, or -1
 * for "no class object" (the scene alone).  seed drives the small jitter
 * that the attributes do not fix (exact position, angle, texture). */
typedef struct sf_world_attrs_s {
    int cls;
    int v[SF_N_ATTRS];
    uint64_t seed;
} sf_world_attrs_t;

typedef struct sf_world_s sf_world_t;

/* ---- attributes ---------------------------------------------------------- */

int sf_world_attr_nvalues(int attr);          /* values of an attribute, 0 if bad */
const char *sf_world_attr_name(int attr);     /* "style", "scene", ... */
const char *sf_world_value_name(int attr, int value); /* "sketch", "beach", ... */
/* The value of `attr` called `name` (canonical word, as above), or -1. */
int sf_world_value_lookup(int attr, const char *name);

/* ---- the world ------------------------------------------------------------ */

/* Makes a world for `classes` (copied; the caller keeps its list) and images
 * of size x size.  SF_EINVAL for an empty list or a size outside 32..256. */
int sf_world_create(const sf_classlist_t *classes, int size, sf_world_t **out);
/* Frees *w and sets it to NULL; NULL is fine. */
void sf_world_destroy(sf_world_t **w);

int sf_world_size(const sf_world_t *w);
int sf_world_n_classes(const sf_world_t *w);
size_t sf_world_image_bytes(const sf_world_t *w);   /* size * size * 3 */
const sf_class_t *sf_world_class(const sf_world_t *w, int cls); /* borrowed */
/* Index of the class with this wnid or display name (case-insensitive), -1. */
int sf_world_class_find(const sf_world_t *w, const char *wnid_or_name);

/* The class's base prior over one attribute: probs[0..nvalues-1], summing to
 * 1.  This is the "typical context" a generator falls back on. */
int sf_world_prior(const sf_world_t *w, int cls, int attr, double *probs);
/* The class's usual values of an attribute (most likely first): the one or two
 * scenes / colours that hold most of the prior mass.  Returns how many. */
int sf_world_usual(const sf_world_t *w, int cls, int attr, int *vals, int max);

/* Draws one value for every attribute from the class's base prior. */
void sf_world_prior_sample(const sf_world_t *w, int cls, uint64_t seed,
                           sf_world_attrs_t *out);

/* Draws every attribute from the class's prior raised to the power beta and
 * renormalised: beta 1 is the base prior, 0 uniform, below 0 favours what is
 * rare for the class.  The object stays the class's own, so this samples low-
 * density regions of the class while staying on its manifold — the world's
 * stand-in for the low-density sampling baseline (Sehwag et al. 2022). */
void sf_world_tempered_sample(const sf_world_t *w, int cls, uint64_t seed, double beta,
                              sf_world_attrs_t *out);

/* ---- images --------------------------------------------------------------- */

/* Renders `a` into rgb (sf_world_image_bytes(w) bytes, caller-allocated). */
int sf_world_render(const sf_world_t *w, const sf_world_attrs_t *a, uint8_t *rgb);

/* Base distribution (ImageNet train-set analogue): item `item` of class
 * `cls`.  Either output may be NULL (attrs alone are cheap). */
int sf_world_base_sample(const sf_world_t *w, int cls, uint64_t item,
                         uint8_t *rgb, sf_world_attrs_t *attrs);

/* Test sets, fixed seeds.  Index i shows class i % n_classes. */
enum { SF_WORLD_SET_BASE,   /* held-out base images (items no trainer uses) */
       SF_WORLD_SET_R,      /* renditions: every non-photo style, usual scenes */
       SF_WORLD_SET_A,      /* hard photos: an unusual scene and one hard factor (small, occluded, dark, ...) */
       SF_WORLD_N_SETS };
/* "base", "world-R", "world-A" (case-insensitive) -> set id, or -1. */
int sf_world_set_lookup(const char *name);
const char *sf_world_set_name(int set);
/* Item `index` of `set`: image (may be NULL), label (may be NULL), attributes
 * (may be NULL). */
int sf_world_testset_get(const sf_world_t *w, int set, uint64_t index,
                         uint8_t *rgb, int *label, sf_world_attrs_t *attrs);

/* Image as float CHW for models: out[c*h*w + y*w + x] =
 * (rgb/255 - mean[c]) / std[c].  mean/std NULL means 0 and 1. */
int sf_world_to_chw(const uint8_t *rgb, int w, int h, const float mean[3],
                    const float std[3], float *out);

/* A world image of s x s as a classifier input of S x S, normalised (out
 * (3, S, S) = (v/255 - mean) / std) and mirrored when flip: S = s as it is,
 * S = s/2 by 2x2 box averages.  SF_EINVAL for any other S. */
int sf_world_to_input(const uint8_t *rgb, int s, int S, const float mean[3], const float std[3], int flip,
                      float *out);

/* ---- captions ------------------------------------------------------------- */

/* Number of caption templates. */
int sf_world_n_templates(void);

/* Writes a caption for `a` naming the attributes in `mask` (bits
 * 1 << SF_ATTR_*) with template `tmpl` (0..n-1; word choices vary with
 * a->seed).  The class is named by its display name (plural when count > 1).
 * Returns the length, or SF_ERANGE if buf is too small, SF_EINVAL if a->cls
 * is not a class. */
int sf_world_caption(const sf_world_t *w, const sf_world_attrs_t *a,
                     unsigned mask, int tmpl, char *buf, size_t n);

/* What a caption says, as the parser reads it. */
typedef struct sf_world_parse_s {
    int cls;              /* recognised class, -1 if none */
    int n_classes;        /* distinct classes named (2+ is a contradiction) */
    unsigned named;       /* bit per attribute the caption names */
    int v[SF_N_ATTRS];    /* the named value (last one wins); -1 if unnamed */
    int contradictions;   /* attributes named twice with different values, extra classes */
    int n_words;          /* words in the caption */
    int n_unknown;        /* words the parser did not use */
} sf_world_parse_t;

/* Parses a free-form caption (any case, punctuation, unknown words).  The
 * class is found by display name or WordNet lemma, singular or plural. */
int sf_world_parse(const sf_world_t *w, const char *caption, sf_world_parse_t *out);

/* ---- the generator --------------------------------------------------------- */

enum { SF_GEN_OK,            /* rendered what the caption asked */
       SF_GEN_DROPPED,       /* a named attribute was ignored */
       SF_GEN_SWAPPED,       /* a named attribute got another value */
       SF_GEN_WRONG_OBJECT,  /* another class was drawn */
       SF_GEN_NO_OBJECT,     /* no object was drawn */
       SF_GEN_N_OUTCOMES };
const char *sf_world_outcome_name(int outcome);

typedef struct sf_world_gen_s {
    sf_world_parse_t parse;  /* what the caption said */
    sf_world_attrs_t attrs;  /* what was drawn (cls -1: no object) */
    double p_fail;           /* the failure probability this caption had */
    int outcome;             /* SF_GEN_* */
    int failed_attr;         /* attribute dropped/swapped, else -1 */
} sf_world_gen_t;

/* The failure probability of a parsed caption: grows with its length, the
 * number of attributes it names and its contradictions. */
double sf_world_failure_prob(const sf_world_parse_t *p);

/* Text-to-image: renders `caption` with `seed` into rgb (may be NULL to get
 * only the report).  Deterministic for (world classes, size, caption, seed).
 * info may be NULL. */
int sf_world_generate(const sf_world_t *w, const char *caption, uint64_t seed,
                      uint8_t *rgb, sf_world_gen_t *info);

/* ---- training pairs ----------------------------------------------------------- */

/* Draws every attribute uniformly over its values (the whole attribute
 * space, not the class's prior). */
void sf_world_uniform_sample(const sf_world_t *w, int cls, uint64_t seed, sf_world_attrs_t *out);

/* Image-caption pair `index` for contrastive (CLIP) training: class
 * index % n_classes; attributes from the class's base prior for even
 * indices and uniform over the attribute space for odd ones, so the text
 * encoder learns every attribute word and the image encoder sees both typical
 * and shifted images; the caption names the class, the style whenever it is
 * not a photo, the scene most of the time and each other attribute half the
 * time, with a random template.  rgb and attrs may be NULL. */
int sf_world_clip_pair(const sf_world_t *w, uint64_t index, uint8_t *rgb, char *caption, size_t n,
                       sf_world_attrs_t *attrs);

/* ---- SFT corpus ------------------------------------------------------------ */

/* Caption k of class cls in the SFT corpus (k < per_class), distinct for
 * distinct k, in the style of the class's typical context. */
int sf_world_corpus_caption(const sf_world_t *w, int cls, int k, uint64_t seed,
                            char *buf, size_t n);
/* Writes per_class captions per class, one JSON object a line:
 * {"wnid":"n01498041","class":"stingray","caption":"..."}. */
int sf_world_corpus_write(const sf_world_t *w, FILE *f, int per_class, uint64_t seed);

/* ---- command line ----------------------------------------------------------- */

/* `sfctl world ...`: argv[0] is "world".  Returns a process exit status
 * (0 ok, 1 failure, 2 usage). */
int sf_world_cli_main(int argc, char **argv);

#endif
