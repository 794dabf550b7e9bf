/* data.h: what sf-train's model trainers share — the world they train on,
 * batches of world images as model inputs, the cache stamps, progress
 * lines and the quality figures.
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

/* 1 if out/<name>.stamp holds this key (the model is up to date). */
int sf_train_stamp_ok(const sf_train_ctx_t *c, const char *name, uint64_t key);
int sf_train_stamp_write(const sf_train_ctx_t *c, const char *name, uint64_t key);

/* A progress line on stderr: "name: step i/n  <extra>  12 s, eta 30 s". */
void sf_train_progress(const char *name, int step, int steps, double t0, const char *extra);

/* Writes out/<name>.quality.json from a JSON object text. */
int sf_train_quality_write(const sf_train_ctx_t *c, const char *name, const char *json);

int sf_train_clip(sf_train_ctx_t *c);
int sf_train_classifier(sf_train_ctx_t *c, int arch);
int sf_train_sft(sf_train_ctx_t *c);

#endif
