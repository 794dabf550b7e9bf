/* data.h: what sf-train's model trainers share (data.c) — the world they
 * train on, world images as model inputs, the cache stamps, progress lines
 * and the quality figures — and the trainers that sf-train's command line
 * (main.c) runs.
 */
#ifndef SF_TRAIN_DATA_H
#define SF_TRAIN_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "world/world.h"

/* Settings shared by every trainer (from the command line). */
typedef struct {
    const char *out;       /* models folder */
    int threads;           /* torch threads */
    int force;             /* retrain even when the stamp matches */
    double scale;          /* multiplies step counts (tests and quick looks) */
    sf_world_t *world;     /* the 86-class world, 64x64 */
} sf_train_ctx_t;

/* A world image (size s) as a classifier input of S x S (S = s or s/2),
 * normalised, mirrored when flip: sf_world_to_input. */
void sf_train_input(const uint8_t *rgb, int s, int S, const float mean[3], const float std[3], int flip,
                    float *out);

/* A fingerprint of what the world renders and writes (a few images and
 * captions of every kind the trainers use), so that a change to the world
 * retrains the models that learnt from it. */
uint64_t sf_train_world_fingerprint(const sf_world_t *w);

/* A model's cache key: FNV-1a over the world's fingerprint, then its
 * settings line (every constant that shapes the training), then the bytes
 * of its config struct (cfg_size of them). */
uint64_t sf_train_key(const sf_world_t *w, const char *settings, const void *cfg, size_t cfg_size);

/* 1 when out/<name>.stamp holds this key and c->force is off: the model is
 * up to date, and "name: up to date" is on stderr. */
int sf_train_up_to_date(const sf_train_ctx_t *c, const char *name, uint64_t key);
/* Writes the key into out/<name>.stamp (atomically), and the settings line
 * after it (what the models manifest records): 0 or SF_EIO. */
int sf_train_stamp_write(const sf_train_ctx_t *c, const char *name, uint64_t key, const char *settings);

/* Running means of a training loop's loss (and batch accuracy, with_acc),
 * shown every `every` steps and at the last one as a progress line on
 * stderr: "name: step i/n  loss 1.234  batch acc 0.56  12 s, eta 30 s". */
typedef struct {
    const char *name;
    int every, with_acc;
    double t0, lsum, asum;
    int cnt;
} sf_train_meter_t;

/* Starts a meter now (name borrowed). */
void sf_train_meter_start(sf_train_meter_t *m, const char *name, int every, int with_acc);
/* Adds step `step` (1-based) of `steps`. */
void sf_train_meter_step(sf_train_meter_t *m, int step, int steps, float loss, float acc);

/* Writes out/<name>.quality.json from a JSON object text. */
int sf_train_quality_write(const sf_train_ctx_t *c, const char *name, const char *json);

/* Joins the quality files of the n models named into out/quality.json; a
 * model without one is left out. */
int sf_train_quality_join(const sf_train_ctx_t *c, const char *const *names, int n);

/* A variant of a world caption that the world's parser reads alike: up to
 * three words the grammar does not know at random places, final punctuation,
 * casing (variants.c).  pool 0 draws the unknown words CLIP training uses,
 * pool 1 disjoint ones for the quality figure.  Deterministic in (caption,
 * seed, pool).  Returns the length, or SF_EINVAL / SF_ERANGE. */
int sf_train_caption_variant(const sf_world_t *w, const char *caption, uint64_t seed, int pool, char *out,
                             size_t n);

/* The trainers (vision.c, sft.c): each trains its model into c->out unless
 * its stamp is up to date. */
int sf_train_clip(sf_train_ctx_t *c);
int sf_train_classifier(sf_train_ctx_t *c, int arch);
int sf_train_sft(sf_train_ctx_t *c, int from_scratch);
/* The world CLIP's filter threshold (filter.c), from c->out/clip-world into
 * c->out/clip-world/filter.json. */
int sf_train_filter(sf_train_ctx_t *c);

#endif
