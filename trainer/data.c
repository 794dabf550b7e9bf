/* data.c: what sf-train's model trainers share — world images as model
 * inputs, the world's fingerprint and the cache stamps, progress lines, and
 * the quality files.
 *
 * The fingerprint and the stamp format are every trained model's cache key:
 * a change to either retrains every user's models, so both stay as they
 * are unless the models must change.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/clock.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/hash.h"
#include "trainer/data.h"

void sf_train_input(const uint8_t *rgb, int s, int S, const float mean[3], const float std[3], int flip,
                    float *out) {
    sf_world_to_input(rgb, s, S, mean, std, flip, out);
}

uint64_t sf_train_world_fingerprint(const sf_world_t *w) {
    size_t nb = sf_world_image_bytes(w);
    uint8_t *rgb = malloc(nb);
    char cap[512];
    uint64_t h = SF_HASH_BASIS;
    for (int i = 0; rgb && i < 16; i++) {
        int label;
        if (sf_world_base_sample(w, i % sf_world_n_classes(w), (uint64_t)i, rgb, NULL) == 0)
            h = sf_fnv1a(h, rgb, nb);
        for (int set = 0; set < SF_WORLD_N_SETS; set++)
            if (sf_world_testset_get(w, set, (uint64_t)i * 7, rgb, &label, NULL) == 0)
                h = sf_fnv1a(h, rgb, nb);
        if (sf_world_clip_pair(w, (uint64_t)i, rgb, cap, sizeof cap, NULL) == 0) {
            h = sf_fnv1a(h, rgb, nb);
            h = sf_fnv1a(h, cap, strlen(cap));
        }
        if (sf_world_corpus_caption(w, i % sf_world_n_classes(w), i % 16, 1, cap, sizeof cap) >= 0)
            h = sf_fnv1a(h, cap, strlen(cap));
    }
    free(rgb);
    return h;
}

static void path_of(const sf_train_ctx_t *c, const char *name, const char *ext, char *buf, size_t n) {
    snprintf(buf, n, "%s/%s%s", c->out, name, ext);
}

/* sf_write_atomic's writer of one line of text. */
static int write_line(FILE *f, void *arg) {
    return fprintf(f, "%s\n", (const char *)arg) < 0 ? SF_EIO : 0;
}

uint64_t sf_train_key(const sf_world_t *w, const char *settings, const void *cfg, size_t cfg_size) {
    uint64_t key = sf_fnv1a(sf_train_world_fingerprint(w), settings, strlen(settings));
    return sf_fnv1a(key, cfg, cfg_size);
}

/* 1 if out/<name>.stamp holds this key. */
static int stamp_ok(const sf_train_ctx_t *c, const char *name, uint64_t key) {
    char p[1024], want[32], got[64] = "";
    path_of(c, name, ".stamp", p, sizeof p);
    FILE *f = fopen(p, "r");
    if (!f) return 0;
    if (!fgets(got, sizeof got, f)) got[0] = 0;
    fclose(f);
    snprintf(want, sizeof want, "%016" PRIx64 "\n", key);
    return strcmp(got, want) == 0;
}

int sf_train_up_to_date(const sf_train_ctx_t *c, const char *name, uint64_t key) {
    if (c->force || !stamp_ok(c, name, key)) return 0;
    fprintf(stderr, "%s: up to date\n", name);
    return 1;
}

int sf_train_stamp_write(const sf_train_ctx_t *c, const char *name, uint64_t key, const char *settings) {
    char p[1024], text[1200];
    path_of(c, name, ".stamp", p, sizeof p);
    snprintf(text, sizeof text, "%016" PRIx64 "\n%s", key, settings);
    return sf_write_atomic(p, write_line, text);
}

int sf_train_quality_write(const sf_train_ctx_t *c, const char *name, const char *json) {
    char p[1024];
    path_of(c, name, ".quality.json", p, sizeof p);
    return sf_write_atomic(p, write_line, (void *)json);
}

typedef struct {
    const sf_train_ctx_t *c;
    const char *const *names;
    int n;
} join_t;

/* The per-model quality files as one JSON object; a model without one is
 * left out. */
static int write_join(FILE *o, void *arg) {
    const join_t *j = arg;
    fprintf(o, "{");
    int first = 1;
    for (int i = 0; i < j->n; i++) {
        char q[1024];
        path_of(j->c, j->names[i], ".quality.json", q, sizeof q);
        size_t r;
        char *buf = sf_file_text(q, &r);
        if (!buf) continue;
        while (r && (buf[r - 1] == '\n' || buf[r - 1] == ' ')) buf[--r] = 0;
        fprintf(o, "%s\n  \"%s\": %s", first ? "" : ",", j->names[i], buf);
        free(buf);
        first = 0;
    }
    return fprintf(o, "\n}\n") < 0 ? SF_EIO : 0;
}

int sf_train_quality_join(const sf_train_ctx_t *c, const char *const *names, int n) {
    char p[1024];
    path_of(c, "quality", ".json", p, sizeof p);
    join_t j = {c, names, n};
    return sf_write_atomic(p, write_join, &j);
}

static void progress(const char *name, int step, int steps, double t0, const char *extra) {
    double el = sf_clock_mono_s() - t0;
    double eta = step > 0 ? el * (steps - step) / step : 0;
    fprintf(stderr, "%s: step %d/%d  %s  %.0f s, eta %.0f s\n", name, step, steps, extra ? extra : "", el, eta);
}

void sf_train_meter_start(sf_train_meter_t *m, const char *name, int every, int with_acc) {
    memset(m, 0, sizeof *m);
    m->name = name;
    m->every = every;
    m->with_acc = with_acc;
    m->t0 = sf_clock_mono_s();
}

void sf_train_meter_step(sf_train_meter_t *m, int step, int steps, float loss, float acc) {
    m->lsum += loss, m->asum += acc, m->cnt++;
    if (step % m->every != 0 && step != steps) return;
    char extra[128];
    if (m->with_acc) snprintf(extra, sizeof extra, "loss %.3f  batch acc %.2f", m->lsum / m->cnt, m->asum / m->cnt);
    else snprintf(extra, sizeof extra, "loss %.3f", m->lsum / m->cnt);
    progress(m->name, step, steps, m->t0, extra);
    m->lsum = m->asum = 0, m->cnt = 0;
}
