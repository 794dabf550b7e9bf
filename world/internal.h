/* internal.h: what the world's own files share and nobody else uses.
 *
 * The world context, the per-class shape and prior, the small RNG every file
 * uses, and the entry points between the renderer, the priors and the
 * grammar.  Names are sf_world__*; nothing here is a public API.
 */
#ifndef SF_WORLD_INTERNAL_H
#define SF_WORLD_INTERNAL_H

#include <stdint.h>

#include "common/runtime/hash.h"

#include "world/world.h"

/* Canonical resolution of a class's shape mask; rendering samples it with an
 * affine map, so one mask serves every size and rotation. */
#define SF_SHAPE_RES 96

/* Labels of the mask and of the per-image label buffer. */
enum { SF_LAB_BG = 0, SF_LAB_BODY = 1, SF_LAB_PATTERN = 2, SF_LAB_DETAIL = 3,
       SF_LAB_CLUTTER = 4, SF_LAB_OCCLUDER = 5 };

typedef struct sf_world_class_s {
    uint8_t *mask;                 /* SF_SHAPE_RES^2 labels, rows top-down */
    uint8_t accent[3];             /* pattern colour: part of the class's identity */
    double prior[SF_N_ATTRS][16];  /* base prior, per attribute */
    int usual[SF_N_ATTRS][2];      /* usual values, most likely first */
    int n_usual[SF_N_ATTRS];
} sf_world_class_t;

/* A class name or lemma, normalised for the caption parser: lower case,
 * words separated by one space. */
typedef struct sf_world_lemma_s {
    char *text;
    size_t len;
    int cls;
    int is_name;   /* the display name, which wins over another class's lemma */
} sf_world_lemma_t;

struct sf_world_s {
    sf_classlist_t *classes;       /* owned copy */
    sf_world_class_t *cls;         /* one per class */
    sf_world_lemma_t *lemmas;      /* every name and lemma, longest first */
    int n_lemmas;
    int *by_first[256];            /* lemma indices by first byte, same order */
    int n_by_first[256];
    int size;
};

/* splitmix64 (common/runtime/hash.h): tiny, fast, good enough for
 * procedural jitter.  sf_world__mix is one step from state x. */
static inline uint64_t sf_world__mix(uint64_t x) { return sf_splitmix64(&x); }

typedef struct { uint64_t s; } sf_rng_t;

static inline uint64_t sf_rng_next(sf_rng_t *r) { return sf_splitmix64(&r->s); }
static inline double sf_rng_unif(sf_rng_t *r) {
    return (double)(sf_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}
static inline int sf_rng_int(sf_rng_t *r, int n) {
    return (int)((sf_rng_next(r) >> 33) % (uint64_t)n);
}

uint64_t sf_world__hash_str(const char *s);

/* Draws an index from probs[0..n-1] (summing to ~1). */
int sf_world__draw(sf_rng_t *r, const double *probs, int n);

/* shape.c: builds a class's mask, accent colour and base prior from its id. */
int sf_world__class_init(sf_world_class_t *c, const sf_class_t *cls);
void sf_world__class_free(sf_world_class_t *c);

/* render.c: the RGB value the renderer uses for a named colour. */
void sf_world__color_rgb(int color, uint8_t out[3]);

/* grammar.c: normalises text as the parser sees it (lower case, letters and
 * digits, one space between words) into out (n bytes).  Returns the length. */
size_t sf_world__normalise(const char *in, char *out, size_t n);

#endif
