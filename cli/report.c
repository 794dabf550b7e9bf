/* report.c: `sfctl report RUN [RUN…] --out DIR [--data DIR] [--redis ADDR]`
 * — the paper's tables and figures for runs of method "shift", one column
 * per run (each run is one strategy: ppo, sft, d3s, low-density, base), as a
 * self-contained HTML page (inline SVG plots, PNG images as data URIs) and
 * the same tables as Markdown and JSON.  docs/evaluation.md defines every
 * figure.
 *
 * Inputs are the files the workers wrote under the data folder (manifests,
 * the filter's CLIP embeddings, the reference statistics) and, for the PPO
 * curve, the learner's stream in Redis.  Everything is computed here, in C.
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/sfctl.h"
#include "cli/term.h"
#include "common/runtime/fileio.h"
#include "common/redis/keys.h"
#include "common/redis/redis_auth.h"
#include "common/formats/safetensors.h"
#include "common/method/stats.h"

#define MAX_RUNS 8
#define MAX_CLASSES 1000
#define PCA_DIMS 64

typedef struct {
    char wnid[16], name[64];
    float *base;        /* reference embeddings (nb x E) */
    int nb;
    float mean[1024];   /* the class mean from the statistics file */
} rclass_t;

typedef struct {
    char id[16], strategy[32];
    cJSON **entries;    /* manifest lines */
    int n;
    float *emb;         /* (n x E), row i for entries[i]; NaN rows if missing */
    /* results */
    double sim100, maha, keep_rate;
    double *cls_sim, *cls_red; /* per class */
    int *cls_n;
    double cls_acc[2];  /* classifier accuracy on kept images, -1 if none */
    /* The same over kept images the generator drew the target class in
     * (world generator only: NaN / -1 without ground truth). */
    double f_sim100, f_maha, f_acc[2];
    /* The filter against the generator's ground truth (docs/evaluation.md):
     * failures are wrong-object and no-object generations. */
    int kept, known, failures, failures_rejected, rejected, faithful, faithful_kept;
    double threshold;   /* the filter's threshold (the manifest's), NaN if absent */
} rrun_t;

/* Whether the generator drew the target class in a manifest entry: 1, 0
 * (another class or none), or -1 when the manifest has no ground truth (a
 * generator other than the world's). */
static int drew_target(const cJSON *e) {
    const cJSON *o = cJSON_GetObjectItem(e, "generator_outcome");
    if (!cJSON_IsString(o)) return -1;
    return strcmp(o->valuestring, "wrong-object") != 0 && strcmp(o->valuestring, "no-object") != 0;
}

static int E = 0;

static int class_index(rclass_t *cls, int nc, const char *wnid) {
    for (int i = 0; i < nc; i++)
        if (!strcmp(cls[i].wnid, wnid)) return i;
    return -1;
}

static float cosine(const float *a, const float *b, int n) {
    double s = 0, na = 0, nb = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i], na += (double)a[i] * a[i], nb += (double)b[i] * b[i];
    return na > 0 && nb > 0 ? (float)(s / sqrt(na * nb)) : 0.f;
}

/* Loads the run's manifest and the filter's embeddings. */
static int load_run(const char *data, rrun_t *r, char *err, size_t en) {
    char path[PATH_MAX * 2];
    snprintf(path, sizeof path, "%s/datasets/%s/manifest.jsonl", data, r->id);
    char *text = sf_file_text(path, NULL);
    if (!text) return snprintf(err, en, "no manifest for run %s (%s): %s", r->id, path, strerror(errno)), -1;
    int cap = 256;
    r->entries = malloc(sizeof *r->entries * (size_t)cap);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        if (!o) continue;
        if (r->n == cap) r->entries = realloc(r->entries, sizeof *r->entries * (size_t)(cap *= 2));
        r->entries[r->n++] = o;
    }
    free(text);
    if (r->n == 0) return snprintf(err, en, "run %s: the manifest is empty", r->id), -1;
    const cJSON *s = cJSON_GetObjectItem(r->entries[0], "strategy");
    snprintf(r->strategy, sizeof r->strategy, "%s", cJSON_IsString(s) && *s->valuestring ? s->valuestring : "ppo");
    /* Embeddings: runs/<run>/embeddings/<wnid>-<start>.safetensors. */
    snprintf(path, sizeof path, "%s/runs/%s/embeddings", data, r->id);
    DIR *d = opendir(path);
    if (!d) return snprintf(err, en, "run %s: no embeddings in %s", r->id, path), -1;
    for (struct dirent *e; (e = readdir(d));) {
        char wnid[16];
        unsigned start;
        if (sscanf(e->d_name, "%15[^-]-%u.safetensors", wnid, &start) != 2) continue;
        char fp[PATH_MAX * 3], er[200];
        snprintf(fp, sizeof fp, "%s/%s", path, e->d_name);
        sf_st_t *st;
        if (sf_st_load(fp, &st, er, sizeof er) != 0) continue;
        const sf_st_tensor_t *t = sf_st_find(st, "embeddings");
        if (t && t->ndim == 2) {
            if (!E) E = (int)t->shape[1];
            if (!r->emb) {
                r->emb = malloc(sizeof(float) * (size_t)r->n * E);
                for (size_t i = 0; i < (size_t)r->n * E; i++) r->emb[i] = NAN;
            }
            float *rows = malloc(sizeof(float) * (size_t)t->numel);
            sf_st_to_f32(t, rows, (size_t)t->numel);
            for (int i = 0; i < (int)t->shape[0] && t->shape[1] == E; i++) {
                char id[64];
                snprintf(id, sizeof id, "%s-%u", wnid, start + (unsigned)i);
                for (int j = 0; j < r->n; j++) {
                    const cJSON *jid = cJSON_GetObjectItem(r->entries[j], "id");
                    if (cJSON_IsString(jid) && !strcmp(jid->valuestring, id)) {
                        memcpy(r->emb + (size_t)j * E, rows + (size_t)i * E, sizeof(float) * E);
                        break;
                    }
                }
            }
            free(rows);
        }
        sf_st_free(&st);
    }
    closedir(d);
    if (!r->emb) return snprintf(err, en, "run %s: no embeddings in %s", r->id, path), -1;
    return 0;
}

/* Reference statistics of a class for embedder `emb_tag`. */
static int load_class(const char *data, const char *emb_tag, rclass_t *c, char *err, size_t en) {
    char path[PATH_MAX * 2], er[200];
    snprintf(path, sizeof path, "%s/stats/%s/world/%s.safetensors", data, emb_tag, c->wnid);
    sf_st_t *st;
    if (sf_st_load(path, &st, er, sizeof er) != 0) return snprintf(err, en, "%s: %s", path, er), -1;
    const sf_st_tensor_t *t = sf_st_find(st, "embeddings"), *m = sf_st_find(st, "mean");
    if (!t || !m || t->ndim != 2 || t->shape[1] != E || m->numel != E) {
        sf_st_free(&st);
        return snprintf(err, en, "%s: embeddings of another size than the run's (%d)", path, E), -1;
    }
    c->nb = (int)t->shape[0];
    c->base = malloc(sizeof(float) * (size_t)t->numel);
    sf_st_to_f32(t, c->base, (size_t)t->numel);
    sf_st_to_f32(m, c->mean, (size_t)E);
    sf_st_free(&st);
    return 0;
}

/* ---- output helpers ---- */

static void b64(FILE *f, const unsigned char *p, size_t n) {
    static const char tb[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
        fputc(tb[v >> 18 & 63], f);
        fputc(tb[v >> 12 & 63], f);
        fputc(i + 1 < n ? tb[v >> 6 & 63] : '=', f);
        fputc(i + 2 < n ? tb[v & 63] : '=', f);
    }
}

static void html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* A strategy as the report names it.  low-density reads the world's ground
 * truth (the inverse of the class's prior, and a rejection of captions the
 * generator would fail on): an oracle, so a ceiling, never a baseline
 * (docs/evaluation.md). */
static const char *label(const char *strategy) {
    return !strcmp(strategy, "low-density") ? "low-density (oracle: a ceiling)" : strategy;
}

/* One row of a table written to both the Markdown and the HTML page
 * (header: th cells and, in Markdown, the rule under them). */
static void table_row(FILE *md, FILE *html, int header, int n, char cells[][64]) {
    fputs("<tr>", html);
    for (int i = 0; i < n; i++) {
        fprintf(md, "| %s ", cells[i]);
        fputs(header ? "<th>" : "<td>", html);
        html_text(html, cells[i]);
        fputs(header ? "</th>" : "</td>", html);
    }
    fputs("|\n", md);
    fputs("</tr>\n", html);
    if (header) {
        for (int i = 0; i < n; i++) fputs("|---", md);
        fputs("|\n", md);
    }
}

static void pct_or_dash(char *out, size_t n, int num, int den) {
    if (den > 0) snprintf(out, n, "%.1f%% (%d/%d)", 100.0 * num / den, num, den);
    else snprintf(out, n, "—");
}

static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};

/* The PPO curve of a run from Redis, as an SVG (nothing when absent). */
static void ppo_svg(FILE *f, redisContext *rc, const char *run, cJSON *js) {
    if (!rc) return;
    redisReply *rep = redisCommand(rc, "XRANGE " SF_KEY_RUN_PPO " - +", SF_KEY_PREFIX, run);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) { freeReplyObject(rep); return; }
    int n = (int)rep->elements;
    double *score = calloc((size_t)n, sizeof *score), *kl = calloc((size_t)n, sizeof *kl),
           *beta = calloc((size_t)n, sizeof *beta), *bad = calloc((size_t)n, sizeof *bad);
    for (int i = 0; i < n; i++) {
        redisReply *fv = rep->element[i]->element[1];
        for (size_t j = 0; j + 1 < fv->elements; j += 2) {
            double v = atof(fv->element[j + 1]->str);
            const char *k = fv->element[j]->str;
            if (!strcmp(k, "mean_score")) score[i] = v;
            else if (!strcmp(k, "kl")) kl[i] = v;
            else if (!strcmp(k, "kl_coef")) beta[i] = v;
            else if (!strcmp(k, "nonsense")) bad[i] = v;
        }
    }
    cJSON *c = cJSON_AddObjectToObject(js, "ppo_curve");
    cJSON_AddItemToObject(c, "mean_score", cJSON_CreateDoubleArray(score, n));
    cJSON_AddItemToObject(c, "kl", cJSON_CreateDoubleArray(kl, n));
    cJSON_AddItemToObject(c, "kl_coef", cJSON_CreateDoubleArray(beta, n));
    cJSON_AddItemToObject(c, "nonsense", cJSON_CreateDoubleArray(bad, n));
    const double *series[4] = {score, bad, kl, beta};
    const char *names[4] = {"mean score", "nonsense share", "KL", "β (KL coefficient)"};
    fprintf(f, "<h2>PPO curve of %s</h2>\n<div class=\"plots\">", run);
    for (int s = 0; s < 4; s++) {
        double lo = series[s][0], hi = series[s][0];
        for (int i = 0; i < n; i++) lo = fmin(lo, series[s][i]), hi = fmax(hi, series[s][i]);
        if (hi - lo < 1e-9) hi = lo + 1;
        fprintf(f, "<svg class=\"plot\" width=\"300\" height=\"200\"><text x=\"10\" y=\"15\">%s (%.3g … %.3g)</text>"
                   "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", names[s], lo, hi, colors[s]);
        for (int i = 0; i < n; i++)
            fprintf(f, "%.1f,%.1f ", 20 + 270.0 * i / (n > 1 ? n - 1 : 1), 185 - 160 * (series[s][i] - lo) / (hi - lo));
        fprintf(f, "\"/><text x=\"20\" y=\"198\">update 1</text><text x=\"230\" y=\"198\">%d</text></svg>", n);
    }
    fputs("</div>\n", f);
    free(score), free(kl), free(beta), free(bad);
    freeReplyObject(rep);
}

int sfctl_report(int argc, char **argv) {
    const char *out = NULL, *data = getenv("SF_DATA"), *redis = getenv("SF_REDIS");
    const char *redis_user = NULL, *redis_password_file = NULL;
    rrun_t runs[MAX_RUNS];
    int nr = 0;
    memset(runs, 0, sizeof runs);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--redis") && i + 1 < argc) redis = argv[++i];
        else if (!strcmp(argv[i], "--redis-user") && i + 1 < argc) redis_user = argv[++i];
        else if (!strcmp(argv[i], "--redis-password-file") && i + 1 < argc) redis_password_file = argv[++i];
        else if (!strcmp(argv[i], "--compare")) continue;
        else if (argv[i][0] != '-' && nr < MAX_RUNS && strlen(argv[i]) < 16) snprintf(runs[nr++].id, 16, "%s", argv[i]);
        else { sfctl_term_printf(stderr, "sfctl report: unknown argument '%s'\n", argv[i]); return SFCTL_EXIT_USAGE; }
    }
    if (!nr || !out) {
        fprintf(stderr, "sfctl report: usage: sfctl report RUN [--compare RUN…] --out DIR [--data DIR] [--redis ADDR]\n");
        return SFCTL_EXIT_USAGE;
    }
    if (!data || !*data) data = "sf-data";
    static char err[PATH_MAX * 4];
    for (int i = 0; i < nr; i++)
        if (load_run(data, &runs[i], err, sizeof err) != 0) { sfctl_term_printf(stderr, "sfctl report: %s\n", err); return SFCTL_EXIT_FAIL; }
    /* Classes: those of the runs, with their reference statistics. */
    static rclass_t cls[MAX_CLASSES];
    int nc = 0;
    const cJSON *tag = cJSON_GetObjectItem(runs[0].entries[0], "embedder");
    if (!cJSON_IsString(tag)) { fprintf(stderr, "sfctl report: the manifest does not name its embedder\n"); return SFCTL_EXIT_FAIL; }
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < runs[r].n; j++) {
            const cJSON *w = cJSON_GetObjectItem(runs[r].entries[j], "class"), *nm = cJSON_GetObjectItem(runs[r].entries[j], "name");
            if (!cJSON_IsString(w) || class_index(cls, nc, w->valuestring) >= 0 || nc == MAX_CLASSES) continue;
            snprintf(cls[nc].wnid, sizeof cls[nc].wnid, "%s", w->valuestring);
            snprintf(cls[nc].name, sizeof cls[nc].name, "%s", cJSON_IsString(nm) ? nm->valuestring : w->valuestring);
            if (load_class(data, tag->valuestring, &cls[nc], err, sizeof err) != 0) {
                sfctl_term_printf(stderr, "sfctl report: reference statistics: %s\n", err);
                return SFCTL_EXIT_FAIL;
            }
            nc++;
        }
    /* PCA on the pooled reference embeddings; pooled within-class covariance
     * of their projections (docs/evaluation.md). */
    int K = E < PCA_DIMS ? E : PCA_DIMS, total = 0;
    for (int c = 0; c < nc; c++) total += cls[c].nb;
    float *pool = malloc(sizeof(float) * (size_t)total * E);
    for (int c = 0, o = 0; c < nc; o += cls[c].nb, c++) memcpy(pool + (size_t)o * E, cls[c].base, sizeof(float) * (size_t)cls[c].nb * E);
    double *pmean = malloc(sizeof(double) * E), *comps = malloc(sizeof(double) * (size_t)K * E), *pvar = malloc(sizeof(double) * K);
    if (sf_pca_fit(pool, total, E, K, pmean, comps, pvar) != 0) { fprintf(stderr, "sfctl report: PCA failed\n"); return SFCTL_EXIT_FAIL; }
    double *cmu = calloc((size_t)nc * K, sizeof(double)), *W = calloc((size_t)K * K, sizeof(double)), z[PCA_DIMS];
    double *zall = malloc(sizeof(double) * (size_t)total * K);
    for (int c = 0, o = 0; c < nc; o += cls[c].nb, c++) {
        for (int i = 0; i < cls[c].nb; i++) {
            sf_pca_project(pmean, comps, E, K, cls[c].base + (size_t)i * E, zall + (size_t)(o + i) * K);
            for (int a = 0; a < K; a++) cmu[(size_t)c * K + a] += zall[(size_t)(o + i) * K + a] / cls[c].nb;
        }
        for (int i = 0; i < cls[c].nb; i++)
            for (int a = 0; a < K; a++)
                for (int b = 0; b < K; b++)
                    W[(size_t)a * K + b] += (zall[(size_t)(o + i) * K + a] - cmu[(size_t)c * K + a]) *
                                            (zall[(size_t)(o + i) * K + b] - cmu[(size_t)c * K + b]);
    }
    for (int a = 0; a < K * K; a++) W[a] /= (total - nc > 0 ? total - nc : 1);
    for (int a = 0; a < K; a++) W[(size_t)a * K + a] += 1e-6 * (pvar[0] > 0 ? pvar[0] : 1); /* keeps it invertible */
    if (sf_cholesky(W, K) != 0) { fprintf(stderr, "sfctl report: the base covariance is singular\n"); return SFCTL_EXIT_FAIL; }
    /* Base similarity per class: reference images to their own mean. */
    double *base_sim = calloc((size_t)nc, sizeof(double)), base_all = 0;
    for (int c = 0; c < nc; c++) {
        for (int i = 0; i < cls[c].nb; i++) base_sim[c] += cosine(cls[c].base + (size_t)i * E, cls[c].mean, E) / cls[c].nb;
        base_all += base_sim[c] / nc;
    }
    /* Per run: similarity, Mahalanobis, keep rate, per-class reductions,
     * classifier accuracy (when the filter recorded predictions). */
    for (int r = 0; r < nr; r++) {
        rrun_t *R = &runs[r];
        R->threshold = NAN;
        for (int j = 0; j < R->n; j++) {
            const cJSON *e = R->entries[j], *th = cJSON_GetObjectItem(e, "filter_threshold");
            int kept = cJSON_IsTrue(cJSON_GetObjectItem(e, "kept")), d = drew_target(e);
            if (cJSON_IsNumber(th) && isnan(R->threshold)) R->threshold = th->valuedouble;
            R->kept += kept;
            R->rejected += !kept;
            if (d < 0) continue;
            R->known++;
            R->faithful += d, R->faithful_kept += d && kept;
            R->failures += !d, R->failures_rejected += !d && !kept;
        }
    }
    /* Pass 0 over every kept image, pass 1 over the kept images the
     * generator drew the target class in. */
    for (int pass = 0; pass < 2; pass++)
    for (int r = 0; r < nr; r++) {
        rrun_t *R = &runs[r];
        if (pass == 1 && !R->known) {
            R->f_sim100 = R->f_maha = NAN, R->f_acc[0] = R->f_acc[1] = -1;
            continue;
        }
        double *cls_sim = calloc((size_t)nc, sizeof(double));
        int *cls_n = calloc((size_t)nc, sizeof(int));
        double *cls_maha = calloc((size_t)nc, sizeof(double));
        double sim100 = 0, maha = 0;
        int acc_n[2] = {0, 0}, acc_ok[2] = {0, 0};
        for (int j = 0; j < R->n; j++) {
            const cJSON *e = R->entries[j];
            if (!cJSON_IsTrue(cJSON_GetObjectItem(e, "kept"))) continue;
            if (pass == 1 && drew_target(e) != 1) continue;
            int c = class_index(cls, nc, cJSON_GetObjectItem(e, "class")->valuestring);
            const float *x = R->emb + (size_t)j * E;
            if (c < 0 || isnan(x[0])) continue;
            cls_sim[c] += cosine(x, cls[c].mean, E);
            sf_pca_project(pmean, comps, E, K, x, z);
            cls_maha[c] += sf_mahalanobis(W, K, z, cmu + (size_t)c * K);
            cls_n[c]++;
            const char *keys[2] = {"convnext_correct", "vit_correct"};
            for (int m = 0; m < 2; m++) {
                const cJSON *ok = cJSON_GetObjectItem(e, keys[m]);
                if (cJSON_IsBool(ok)) acc_n[m]++, acc_ok[m] += cJSON_IsTrue(ok);
            }
        }
        int used = 0;
        double *cls_red = calloc((size_t)nc, sizeof(double));
        for (int c = 0; c < nc; c++) {
            if (!cls_n[c]) continue;
            cls_sim[c] /= cls_n[c];
            cls_red[c] = 100 * (base_sim[c] - cls_sim[c]) / base_sim[c];
            sim100 += 100 * cls_sim[c];
            maha += cls_maha[c] / cls_n[c];
            used++;
        }
        sim100 /= used ? used : 1;
        maha /= used ? used : 1;
        double *acc = pass ? R->f_acc : R->cls_acc;
        for (int m = 0; m < 2; m++) acc[m] = acc_n[m] ? 100.0 * acc_ok[m] / acc_n[m] : -1;
        if (pass == 0) {
            R->sim100 = sim100, R->maha = maha, R->keep_rate = (double)R->kept / R->n;
            R->cls_sim = cls_sim, R->cls_red = cls_red, R->cls_n = cls_n;
        } else {
            R->f_sim100 = used ? sim100 : NAN, R->f_maha = used ? maha : NAN;
            free(cls_sim), free(cls_red), free(cls_n);
        }
        free(cls_maha);
    }
    /* Mahalanobis of the reference images themselves (the base row). */
    double base_maha = 0;
    for (int c = 0, o = 0; c < nc; o += cls[c].nb, c++) {
        double s = 0;
        for (int i = 0; i < cls[c].nb; i++) s += sf_mahalanobis(W, K, zall + (size_t)(o + i) * K, cmu + (size_t)c * K);
        base_maha += s / cls[c].nb / nc;
    }

    /* ---- write ---- */
    mkdir(out, 0755);
    char path[PATH_MAX * 2];
    cJSON *js = cJSON_CreateObject();
    cJSON_AddNumberToObject(js, "pca_dims", K);
    cJSON_AddNumberToObject(js, "classes", nc);
    cJSON *t1 = cJSON_AddArrayToObject(js, "table1");
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "strategy", "reference images");
    cJSON_AddNumberToObject(b, "similarity_x100", 100 * base_all);
    cJSON_AddNumberToObject(b, "mahalanobis", base_maha);
    cJSON_AddItemToArray(t1, b);
    snprintf(path, sizeof path, "%s/report.md", out);
    FILE *md = fopen(path, "w");
    snprintf(path, sizeof path, "%s/report.html", out);
    FILE *f = fopen(path, "w");
    if (!md || !f) { sfctl_term_printf(stderr, "sfctl report: cannot write to %s: %s\n", out, strerror(errno)); return SFCTL_EXIT_FAIL; }
    /* The base run's accuracies, for Table 2's drops. */
    double base_acc[2] = {-1, -1};
    for (int r = 0; r < nr; r++)
        if (!strcmp(runs[r].strategy, "base")) base_acc[0] = runs[r].cls_acc[0], base_acc[1] = runs[r].cls_acc[1];
    for (int r = 0; r < nr; r++) {
        rrun_t *R = &runs[r];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", R->strategy);
        cJSON_AddStringToObject(o, "run", R->id);
        cJSON_AddNumberToObject(o, "similarity_x100", R->sim100);
        cJSON_AddNumberToObject(o, "mahalanobis", R->maha);
        cJSON_AddNumberToObject(o, "kept_share", R->keep_rate);
        if (R->cls_acc[0] >= 0) cJSON_AddNumberToObject(o, "convnext_accuracy", R->cls_acc[0]);
        if (R->cls_acc[1] >= 0) cJSON_AddNumberToObject(o, "vit_accuracy", R->cls_acc[1]);
        cJSON *pc = cJSON_AddArrayToObject(o, "per_class_reduction_pct");
        for (int c = 0; c < nc; c++) cJSON_AddItemToArray(pc, cJSON_CreateNumber(R->cls_red[c]));
        if (!isnan(R->f_sim100)) {
            cJSON_AddNumberToObject(o, "target_class_kept_similarity_x100", R->f_sim100);
            cJSON_AddNumberToObject(o, "target_class_kept_mahalanobis", R->f_maha);
        }
        cJSON_AddItemToArray(t1, o);
    }
    fprintf(f, "<!doctype html><html><head><meta charset=\"utf-8\"><title>shiftforge report: %s</title><style>"
               "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
               ".plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #ddd}"
               ".grid figure{display:inline-block;width:120px;margin:2px;vertical-align:top;font-size:10px}"
               ".grid img{width:96px;height:96px;image-rendering:pixelated}.grid td{text-align:left;vertical-align:top}"
               ".bad{color:#b00}</style></head><body>\n<h1>shiftforge report</h1>\n<p>Runs:", runs[0].id);
    for (int r = 0; r < nr; r++) fprintf(f, " %s (%s)", runs[r].id, label(runs[r].strategy));
    fprintf(f, "; %d classes; embedder ", nc);
    html_text(f, tag->valuestring);
    fputs(".</p>\n<h2>Table 1: distance from the base distribution</h2>\n<table id=\"table1\">", f);
    fputs("### Table 1: distance from the base distribution\n\n", md);
    char cell[8][64];
    const char *h1[8] = {"strategy", "run", "CLIP similarity ×100 to class mean ↓", "reduction vs reference",
                         "Mahalanobis (PCA) ↑", "kept by the filter", "similarity ×100, target class only",
                         "Mahalanobis, target class only"};
    for (int i = 0; i < 8; i++) snprintf(cell[i], 64, "%s", h1[i]);
    table_row(md, f, 1, 8, cell);
    snprintf(cell[0], 64, "reference images"), snprintf(cell[1], 64, "—"), snprintf(cell[2], 64, "%.2f", 100 * base_all);
    snprintf(cell[3], 64, "—"), snprintf(cell[4], 64, "%.2f", base_maha);
    for (int i = 5; i < 8; i++) snprintf(cell[i], 64, "—");
    table_row(md, f, 0, 8, cell);
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        snprintf(cell[0], 64, "%s", label(R->strategy)), snprintf(cell[1], 64, "%s", R->id);
        snprintf(cell[2], 64, "%.2f", R->sim100);
        snprintf(cell[3], 64, "%.1f%%", 100 * (100 * base_all - R->sim100) / (100 * base_all));
        snprintf(cell[4], 64, "%.2f", R->maha), snprintf(cell[5], 64, "%.0f%%", 100 * R->keep_rate);
        if (isnan(R->f_sim100)) snprintf(cell[6], 64, "—"), snprintf(cell[7], 64, "—");
        else snprintf(cell[6], 64, "%.2f", R->f_sim100), snprintf(cell[7], 64, "%.2f", R->f_maha);
        table_row(md, f, 0, 8, cell);
    }
    char t1note[600];
    snprintf(t1note, sizeof t1note,
             "Mahalanobis distance in CLIP space reduced to %d dimensions by PCA. \"Target class only\": kept images "
             "in which the world's generator drew the class the caption was written for. Paper, for orientation "
             "(ImageNet, DeepFloyd IF, CLIP ViT-B/32): similarity ×100 83.50 for ImageNet images, 73.93 for the "
             "method's images.", K);
    fprintf(md, "\n%s\n", t1note);
    fprintf(f, "</table><p>%s</p>\n", t1note);

    /* Table 2 with each classifier's drop from the base run's accuracy. */
    fputs("<h2>Table 2: classifiers on the kept images</h2>\n<table id=\"table2\">", f);
    fputs("\n### Table 2: classifiers on the kept images\n\n", md);
    const char *h2[7] = {"strategy", "ConvNeXt accuracy", "ConvNeXt drop from base (points)", "ViT accuracy",
                         "ViT drop from base (points)", "ConvNeXt, target class only", "ViT, target class only"};
    for (int i = 0; i < 7; i++) snprintf(cell[i], 64, "%s", h2[i]);
    table_row(md, f, 1, 7, cell);
    cJSON *t2 = cJSON_AddArrayToObject(js, "table2");
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", R->strategy);
        snprintf(cell[0], 64, "%s", label(R->strategy));
        for (int m = 0; m < 2; m++) {
            static const char *const key[2][3] = {{"convnext_accuracy", "convnext_drop", "convnext_target_class_accuracy"},
                                                  {"vit_accuracy", "vit_drop", "vit_target_class_accuracy"}};
            if (R->cls_acc[m] >= 0) snprintf(cell[1 + 2 * m], 64, "%.1f%%", R->cls_acc[m]);
            else snprintf(cell[1 + 2 * m], 64, "—");
            if (R->cls_acc[m] >= 0 && base_acc[m] >= 0) {
                snprintf(cell[2 + 2 * m], 64, "%+.1f", base_acc[m] - R->cls_acc[m]);
                cJSON_AddNumberToObject(o, key[m][1], base_acc[m] - R->cls_acc[m]);
            } else snprintf(cell[2 + 2 * m], 64, "—");
            if (R->f_acc[m] >= 0) snprintf(cell[5 + m], 64, "%.1f%%", R->f_acc[m]);
            else snprintf(cell[5 + m], 64, "—");
            if (R->cls_acc[m] >= 0) cJSON_AddNumberToObject(o, key[m][0], R->cls_acc[m]);
            if (R->f_acc[m] >= 0) cJSON_AddNumberToObject(o, key[m][2], R->f_acc[m]);
        }
        table_row(md, f, 0, 7, cell);
        cJSON_AddItemToArray(t2, o);
    }
    static const char t2note[] =
        "Accuracy of the world's classifiers (trained on base images only) on each strategy's kept images; the drop is "
        "the base run's accuracy minus this one (positive: the strategy's images are harder), — without a base run. "
        "The paper's Table 2 (ConvNeXt-Atto and ViT-Tiny on ImageNet-trained weights, DeepFloyd IF images) is not "
        "quoted here: its figures are not part of this repository, and a world's drops are not comparable with "
        "ImageNet's in size.";
    fprintf(md, "\n%s\n", t2note);
    fprintf(f, "</table><p>%s</p>\n", t2note);

    /* The filter against the generator's ground truth, and class fidelity. */
    fputs("<h2>The filter and class fidelity</h2>\n<table id=\"filter\">", f);
    fputs("\n### The filter and class fidelity\n\n", md);
    const char *h3[8] = {"strategy", "threshold", "generated", "kept",
                         "failures (wrong or no object)", "failures rejected (recall)",
                         "rejections that were failures (precision)", "class fidelity of the kept images"};
    for (int i = 0; i < 8; i++) snprintf(cell[i], 64, "%s", h3[i]);
    table_row(md, f, 1, 8, cell);
    cJSON *ft = cJSON_AddArrayToObject(js, "filter");
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        snprintf(cell[0], 64, "%s", label(R->strategy));
        if (isnan(R->threshold)) snprintf(cell[1], 64, "—");
        else snprintf(cell[1], 64, "%.4f", R->threshold);
        snprintf(cell[2], 64, "%d", R->n), snprintf(cell[3], 64, "%d", R->kept);
        if (R->known) {
            snprintf(cell[4], 64, "%d", R->failures);
            pct_or_dash(cell[5], 64, R->failures_rejected, R->failures);
            pct_or_dash(cell[6], 64, R->failures_rejected, R->rejected);
            /* Kept images the generator drew the target class in, over kept. */
            pct_or_dash(cell[7], 64, R->faithful_kept, R->kept);
        } else {
            for (int i = 4; i < 8; i++) snprintf(cell[i], 64, "— (no ground truth)");
        }
        table_row(md, f, 0, 8, cell);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", R->strategy);
        cJSON_AddStringToObject(o, "run", R->id);
        if (!isnan(R->threshold)) cJSON_AddNumberToObject(o, "threshold", R->threshold);
        cJSON_AddNumberToObject(o, "generated", R->n);
        cJSON_AddNumberToObject(o, "kept", R->kept);
        if (R->known) {
            cJSON_AddNumberToObject(o, "failures", R->failures);
            cJSON_AddNumberToObject(o, "failures_rejected", R->failures_rejected);
            cJSON_AddNumberToObject(o, "rejected", R->rejected);
            cJSON_AddNumberToObject(o, "target_class_generated", R->faithful);
            cJSON_AddNumberToObject(o, "target_class_kept", R->faithful_kept);
            if (R->kept) cJSON_AddNumberToObject(o, "class_fidelity", (double)R->faithful_kept / R->kept);
        }
        cJSON_AddItemToArray(ft, o);
    }
    static const char t3note[] =
        "Ground truth from the world's generator (each image's generator_outcome): a failure is an image of another "
        "class or of no object. Recall: the share of failures the filter dropped; precision: the share of dropped "
        "images that were failures; class fidelity: the share of kept images that show the target class. The "
        "threshold is the embedder's (docs/models.md, \"The filter's threshold\") unless the run set one.";
    fprintf(md, "\n%s\n", t3note);
    fprintf(f, "</table><p>%s</p>\n", t3note);
    /* Fig. 6: fine-tuning gains (finetune.json of each run, when it has one). */
    fputs("<h2>Fine-tuning on base + generated images (Fig. 6)</h2>\n<table id=\"fig6\"><tr><th>strategy</th>"
          "<th>classifier</th><th>test set</th><th>original</th><th>base only</th><th>base + generated</th>"
          "<th>gain</th><th>run's classes: base only</th><th>base + generated</th><th>gain ± s.e.</th></tr>\n", f);
    cJSON *ftj = cJSON_AddArrayToObject(js, "finetune");
    FILE *md2 = md;
    if (md2) fputs("\n### Fig. 6: fine-tuning on base + generated images\n\n| strategy | classifier | test set | original | base only | base + generated | gain "
                   "| run's classes: base only | base + generated | gain ± s.e. |\n"
                   "|---|---|---|---|---|---|---|---|---|---|\n", md2);
    for (int r = 0; r < nr; r++) {
        char fp[PATH_MAX * 2];
        snprintf(fp, sizeof fp, "%s/datasets/%s/finetune.json", data, runs[r].id);
        char *ft = sf_file_text(fp, NULL);
        cJSON *o = ft ? cJSON_Parse(ft) : NULL;
        free(ft);
        if (!o) continue;
        const char *archs[2] = {"convnext", "vit"}, *sets[2] = {"world_R", "world_A"};
        for (int a = 0; a < 2; a++)
            for (int t = 0; t < 2; t++) {
                const cJSON *so = cJSON_GetObjectItem(cJSON_GetObjectItem(o, archs[a]), sets[t]);
                if (!so) continue;
                double orig = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "original"));
                double bo = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "base_only"));
                double wg = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "with_generated"));
                double bos = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "base_only_run_classes"));
                double wgs = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "with_generated_run_classes"));
                /* Older finetune.json files have no standard error. */
                const cJSON *sej = cJSON_GetObjectItem(so, "gain_run_classes_se");
                char se[32] = "";
                if (cJSON_IsNumber(sej)) snprintf(se, sizeof se, " ± %.1f", sej->valuedouble);
                fprintf(f, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td>"
                           "<td>%+.1f</td><td>%.1f%%</td><td>%.1f%%</td><td>%+.1f%s</td></tr>\n", runs[r].strategy,
                        archs[a], sets[t], orig, bo, wg, wg - bo, bos, wgs, wgs - bos, se);
                if (md2) fprintf(md2, "| %s | %s | %s | %.1f%% | %.1f%% | %.1f%% | %+.1f | %.1f%% | %.1f%% | %+.1f%s |\n",
                                 runs[r].strategy, archs[a], sets[t], orig, bo, wg, wg - bo, bos, wgs, wgs - bos, se);
                cJSON *row = cJSON_CreateObject();
                cJSON_AddStringToObject(row, "strategy", runs[r].strategy);
                cJSON_AddStringToObject(row, "classifier", archs[a]);
                cJSON_AddStringToObject(row, "test_set", sets[t]);
                cJSON_AddNumberToObject(row, "original", orig);
                cJSON_AddNumberToObject(row, "base_only", bo);
                cJSON_AddNumberToObject(row, "with_generated", wg);
                cJSON_AddNumberToObject(row, "base_only_run_classes", bos);
                cJSON_AddNumberToObject(row, "with_generated_run_classes", wgs);
                if (cJSON_IsNumber(sej)) cJSON_AddNumberToObject(row, "gain_run_classes_se", sej->valuedouble);
                cJSON_AddItemToArray(ftj, row);
            }
        cJSON_Delete(o);
    }
    if (md2) {
        fputs("\nGain = accuracy after fine-tuning on base + generated images minus after as many steps on base "
              "images alone, averaged over the fine-tuning seeds; the whole-set columns use 10 test images per "
              "class, the run's classes 100 each, with the standard error of the paired per-image gain.\n", md2);
        fclose(md2);
    }
    fputs("</table><p>Gain: fine-tuned on base + generated images, minus the control fine-tuned as long on base "
          "images alone, averaged over the fine-tuning seeds. Whole sets: 10 test images per class; the run's "
          "classes: 100 each, ± the standard error of the paired per-image gain.</p>\n", f);
    /* Fig. 4: per-class reduction bars. */
    fprintf(f, "<h2>Per-class reduction of similarity (Fig. 4)</h2>\n<svg class=\"plot\" id=\"fig4\" width=\"%d\" height=\"330\">"
               "<text x=\"60\" y=\"12\" font-size=\"12\">%% reduction of CLIP similarity to the class mean "
               "(up: farther from the base images)</text>",
            60 + nc * (12 * nr + 8) > 700 ? 60 + nc * (12 * nr + 8) : 700);
    double mx = 1;
    for (int r = 0; r < nr; r++)
        for (int c = 0; c < nc; c++) mx = fmax(mx, fabs(runs[r].cls_red[c]));
    fprintf(f, "<line x1=\"50\" y1=\"130\" x2=\"%d\" y2=\"130\" stroke=\"black\"/><text x=\"0\" y=\"20\">%.0f%%</text>"
               "<text x=\"0\" y=\"250\">-%.0f%%</text>", 60 + nc * (12 * nr + 8), mx, mx);
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < nr; r++) {
            double v = runs[r].cls_red[c], h = 110 * fabs(v) / mx;
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"10\" height=\"%.1f\" fill=\"%s\"><title>%s %s: %.1f%%</title></rect>",
                    60 + c * (12 * nr + 8) + r * 12, v >= 0 ? 130 - h : 130, h, colors[r % 8], cls[c].name, runs[r].strategy, v);
        }
    /* Each group of bars under its class name. */
    for (int c = 0; c < nc; c++) {
        int x = 60 + c * (12 * nr + 8) + 2;
        fprintf(f, "<text x=\"%d\" y=\"262\" font-size=\"10\" transform=\"rotate(35 %d 262)\">", x, x);
        html_text(f, cls[c].name);
        fputs("</text>", f);
    }
    fputs("</svg><p>", f);
    for (int r = 0; r < nr; r++) fprintf(f, "<span style=\"color:%s\">■ %s</span> ", colors[r % 8], label(runs[r].strategy));
    fputs("</p>\n", f);
    /* Fig. 3: PCA scatter (the first two axes), reference vs each run, for up to four classes. */
    fputs("<h2>PCA of CLIP embeddings: reference (grey) vs generated (Fig. 3)</h2>\n<div class=\"plots\">", f);
    for (int c = 0; c < nc && c < 4; c++) {
        double lo0 = 1e9, hi0 = -1e9, lo1 = 1e9, hi1 = -1e9, zz[PCA_DIMS];
        for (int i = 0; i < cls[c].nb; i++) {
            sf_pca_project(pmean, comps, E, 2, cls[c].base + (size_t)i * E, zz);
            lo0 = fmin(lo0, zz[0]), hi0 = fmax(hi0, zz[0]), lo1 = fmin(lo1, zz[1]), hi1 = fmax(hi1, zz[1]);
        }
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < runs[r].n; j++)
                if (!isnan(runs[r].emb[(size_t)j * E]) && !strcmp(cJSON_GetObjectItem(runs[r].entries[j], "class")->valuestring, cls[c].wnid)) {
                    sf_pca_project(pmean, comps, E, 2, runs[r].emb + (size_t)j * E, zz);
                    lo0 = fmin(lo0, zz[0]), hi0 = fmax(hi0, zz[0]), lo1 = fmin(lo1, zz[1]), hi1 = fmax(hi1, zz[1]);
                }
        double s0 = 260 / (hi0 - lo0 > 1e-9 ? hi0 - lo0 : 1), s1 = 260 / (hi1 - lo1 > 1e-9 ? hi1 - lo1 : 1);
        fprintf(f, "<svg class=\"plot\" width=\"300\" height=\"300\"><text x=\"10\" y=\"15\">");
        html_text(f, cls[c].name);
        fputs("</text><text x=\"200\" y=\"296\" font-size=\"10\">PC 1 →</text>"
              "<text x=\"4\" y=\"60\" font-size=\"10\" transform=\"rotate(-90 4 60)\">← PC 2</text>", f);
        for (int i = 0; i < cls[c].nb; i++) {
            sf_pca_project(pmean, comps, E, 2, cls[c].base + (size_t)i * E, zz);
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"#aaa\"/>", 20 + (zz[0] - lo0) * s0, 280 - (zz[1] - lo1) * s1);
        }
        for (int r = 0; r < nr; r++)
            for (int j = 0; j < runs[r].n; j++)
                if (!isnan(runs[r].emb[(size_t)j * E]) && !strcmp(cJSON_GetObjectItem(runs[r].entries[j], "class")->valuestring, cls[c].wnid)) {
                    sf_pca_project(pmean, comps, E, 2, runs[r].emb + (size_t)j * E, zz);
                    fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", 20 + (zz[0] - lo0) * s0,
                            280 - (zz[1] - lo1) * s1, colors[r % 8]);
                }
        fputs("</svg>", f);
    }
    fputs("</div>\n", f);
    /* PPO curves. */
    redisContext *rc = NULL;
    if (redis && *redis) {
        /* Only the PPO curves come from Redis: without it the report goes on without them. */
        struct timeval tv = {2, 0};
        sf_redis_auth_t auth;
        char rerr[700];
        if (sf_redis_auth_load(redis_user, redis_password_file, &auth, rerr, sizeof rerr) == 0)
            rc = sf_redis_connect(redis, &auth, tv, rerr, sizeof rerr);
        if (!rc) sfctl_term_printf(stderr, "sfctl report: %s; the PPO curves are left out\n", rerr);
        sf_redis_auth_free(&auth);
    }
    for (int r = 0; r < nr; r++)
        if (!strcmp(runs[r].strategy, "ppo")) ppo_svg(f, rc, runs[r].id, js);
    if (rc) redisFree(rc);
    /* Image grids (Fig. 2, 5): for up to four classes, six kept images of each run with their captions. */
    fputs("<h2>Images (kept by the filter), with their captions</h2>\n<table class=\"grid\" id=\"grid\">", f);
    for (int c = 0; c < nc && c < 4; c++)
        for (int r = 0; r < nr; r++) {
            fputs("<tr><td>", f);
            html_text(f, cls[c].name);
            fprintf(f, "<br>%s</td><td>", label(runs[r].strategy));
            int shown = 0;
            for (int j = 0; j < runs[r].n && shown < 6; j++) {
                const cJSON *e = runs[r].entries[j], *file = cJSON_GetObjectItem(e, "file");
                if (strcmp(cJSON_GetObjectItem(e, "class")->valuestring, cls[c].wnid) || !cJSON_IsString(file)) continue;
                char ip[PATH_MAX * 2];
                snprintf(ip, sizeof ip, "%s/datasets/%s/%s", data, runs[r].id, file->valuestring);
                size_t len;
                char *png = sf_file_text(ip, &len);
                if (!png) continue;
                const cJSON *cap = cJSON_GetObjectItem(e, "caption"), *oc = cJSON_GetObjectItem(e, "generator_outcome");
                const char *ctext = cJSON_IsString(cap) ? cap->valuestring : "";
                fputs("<figure><img title=\"", f);
                html_text(f, ctext);
                fputs("\" alt=\"generated image\" src=\"data:image/png;base64,", f);
                b64(f, (const unsigned char *)png, len);
                fputs("\"><figcaption>", f);
                html_text(f, ctext);
                /* What the world's generator drew, where it is known. */
                int d = drew_target(e);
                if (d == 1) fputs("<br><b>drew the class</b>", f);
                else if (d == 0) fprintf(f, "<br><b class=\"bad\">drew %s</b>",
                                         !strcmp(oc->valuestring, "no-object") ? "no object" : "another class");
                fputs("</figcaption></figure>", f);
                free(png);
                shown++;
            }
            fputs("</td></tr>\n", f);
        }
    fputs("</table>\n<p>Under each image: its caption and, with the world's generator, whether it drew the target "
          "class. docs/evaluation.md defines each figure.</p></body></html>\n", f);
    fclose(f);
    snprintf(path, sizeof path, "%s/report.json", out);
    char *txt = cJSON_Print(js);
    FILE *jf = fopen(path, "w");
    if (jf) { fputs(txt, jf); fputc('\n', jf); fclose(jf); }
    free(txt);
    cJSON_Delete(js);
    sfctl_term_printf(stdout, "report for %d runs over %d classes in %s/: report.html, report.md, report.json\n", nr, nc, out);
    for (int r = 0; r < nr; r++) {
        for (int j = 0; j < runs[r].n; j++) cJSON_Delete(runs[r].entries[j]);
        free(runs[r].entries);
        free(runs[r].emb);
        free(runs[r].cls_sim);
        free(runs[r].cls_red);
        free(runs[r].cls_n);
    }
    for (int c = 0; c < nc; c++) free(cls[c].base);
    free(pool);
    free(pmean);
    free(comps);
    free(pvar);
    free(cmu);
    free(W);
    free(zall);
    free(base_sim);
    return SFCTL_EXIT_OK;
}
