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
} rrun_t;

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
        R->cls_sim = calloc((size_t)nc, sizeof(double));
        R->cls_red = calloc((size_t)nc, sizeof(double));
        R->cls_n = calloc((size_t)nc, sizeof(int));
        double *cls_maha = calloc((size_t)nc, sizeof(double));
        int kept = 0, acc_n[2] = {0, 0}, acc_ok[2] = {0, 0};
        for (int j = 0; j < R->n; j++) {
            const cJSON *e = R->entries[j];
            if (!cJSON_IsTrue(cJSON_GetObjectItem(e, "kept"))) continue;
            kept++;
            int c = class_index(cls, nc, cJSON_GetObjectItem(e, "class")->valuestring);
            const float *x = R->emb + (size_t)j * E;
            if (c < 0 || isnan(x[0])) continue;
            R->cls_sim[c] += cosine(x, cls[c].mean, E);
            sf_pca_project(pmean, comps, E, K, x, z);
            cls_maha[c] += sf_mahalanobis(W, K, z, cmu + (size_t)c * K);
            R->cls_n[c]++;
            const char *keys[2] = {"convnext_correct", "vit_correct"};
            for (int m = 0; m < 2; m++) {
                const cJSON *ok = cJSON_GetObjectItem(e, keys[m]);
                if (cJSON_IsBool(ok)) acc_n[m]++, acc_ok[m] += cJSON_IsTrue(ok);
            }
        }
        int used = 0;
        for (int c = 0; c < nc; c++) {
            if (!R->cls_n[c]) continue;
            R->cls_sim[c] /= R->cls_n[c];
            R->cls_red[c] = 100 * (base_sim[c] - R->cls_sim[c]) / base_sim[c];
            R->sim100 += 100 * R->cls_sim[c];
            R->maha += cls_maha[c] / R->cls_n[c];
            used++;
        }
        R->sim100 /= used ? used : 1;
        R->maha /= used ? used : 1;
        R->keep_rate = (double)kept / R->n;
        for (int m = 0; m < 2; m++) R->cls_acc[m] = acc_n[m] ? 100.0 * acc_ok[m] / acc_n[m] : -1;
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
    fprintf(md, "| strategy | run | CLIP similarity ×100 to class mean ↓ | reduction vs reference | Mahalanobis (%d-d PCA) ↑ | kept by the filter | ConvNeXt acc. | ViT acc. |\n"
                "|---|---|---|---|---|---|---|---|\n", K);
    fprintf(md, "| reference images | — | %.2f | — | %.2f | — | — | — |\n", 100 * base_all, base_maha);
    for (int r = 0; r < nr; r++) {
        rrun_t *R = &runs[r];
        char a0[16] = "—", a1[16] = "—";
        if (R->cls_acc[0] >= 0) snprintf(a0, sizeof a0, "%.1f%%", R->cls_acc[0]);
        if (R->cls_acc[1] >= 0) snprintf(a1, sizeof a1, "%.1f%%", R->cls_acc[1]);
        fprintf(md, "| %s | %s | %.2f | %.1f%% | %.2f | %.0f%% | %s | %s |\n", R->strategy, R->id, R->sim100,
                100 * (100 * base_all - R->sim100) / (100 * base_all), R->maha, 100 * R->keep_rate, a0, a1);
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
        cJSON_AddItemToArray(t1, o);
    }
    fprintf(md, "\nPaper, for orientation (ImageNet, DeepFloyd IF, CLIP ViT-B/32): similarity ×100 83.50 for ImageNet "
                "images, 73.93 for the method's images.\n");
    fclose(md);

    fprintf(f, "<!doctype html><html><head><meta charset=\"utf-8\"><title>shiftforge report: %s</title><style>"
               "body{font-family:sans-serif;margin:2em;max-width:1200px}table{border-collapse:collapse}"
               "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f4f4f4}"
               ".plots{display:flex;flex-wrap:wrap;gap:12px}.plot{border:1px solid #ddd}"
               ".grid img{width:96px;height:96px;image-rendering:pixelated;margin:2px}.grid td{text-align:left;vertical-align:top}"
               "</style></head><body>\n<h1>shiftforge report</h1>\n<p>Runs:", runs[0].id);
    for (int r = 0; r < nr; r++) fprintf(f, " %s (%s)", runs[r].id, runs[r].strategy);
    fprintf(f, "; %d classes; embedder %s.</p>\n<h2>Table 1: distance from the base distribution</h2>\n"
               "<table id=\"table1\"><tr><th>strategy</th><th>run</th><th>CLIP similarity ×100 to class mean ↓</th>"
               "<th>reduction</th><th>Mahalanobis (%d-d PCA) ↑</th><th>kept by filter</th></tr>\n"
               "<tr><td>reference images</td><td>—</td><td>%.2f</td><td>—</td><td>%.2f</td><td>—</td></tr>\n",
            nc, tag->valuestring, K, 100 * base_all, base_maha);
    for (int r = 0; r < nr; r++)
        fprintf(f, "<tr><td>%s</td><td>%s</td><td>%.2f</td><td>%.1f%%</td><td>%.2f</td><td>%.0f%%</td></tr>\n",
                runs[r].strategy, runs[r].id, runs[r].sim100, 100 * (100 * base_all - runs[r].sim100) / (100 * base_all),
                runs[r].maha, 100 * runs[r].keep_rate);
    fprintf(f, "</table><p>Paper (ImageNet, DeepFloyd IF): similarity ×100 83.50 → 73.93 with the method.</p>\n"
               "<h2>Table 2: classifiers on the generated data</h2>\n<table id=\"table2\"><tr><th>strategy</th>"
               "<th>ConvNeXt accuracy</th><th>ViT accuracy</th></tr>\n");
    for (int r = 0; r < nr; r++) {
        fprintf(f, "<tr><td>%s</td>", runs[r].strategy);
        for (int m = 0; m < 2; m++)
            if (runs[r].cls_acc[m] >= 0) fprintf(f, "<td>%.1f%%</td>", runs[r].cls_acc[m]);
            else fputs("<td>—</td>", f);
        fputs("</tr>\n", f);
    }
    fputs("</table>\n", f);
    /* Fig. 6: fine-tuning gains (finetune.json of each run, when it has one). */
    fputs("<h2>Fine-tuning on base + generated images (Fig. 6)</h2>\n<table id=\"fig6\"><tr><th>strategy</th>"
          "<th>classifier</th><th>test set</th><th>original</th><th>base only</th><th>base + generated</th>"
          "<th>gain</th><th>run's classes: base only</th><th>base + generated</th><th>gain ± s.e.</th></tr>\n", f);
    cJSON *ftj = cJSON_AddArrayToObject(js, "finetune");
    snprintf(path, sizeof path, "%s/report.md", out);
    FILE *md2 = fopen(path, "a");
    if (md2) fputs("\n| strategy | classifier | test set | original | base only | base + generated | gain "
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
    fprintf(f, "<h2>Per-class reduction of similarity (Fig. 4)</h2>\n<svg class=\"plot\" id=\"fig4\" width=\"%d\" height=\"260\">",
            60 + nc * (12 * nr + 8));
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
    fputs("</svg><p>", f);
    for (int r = 0; r < nr; r++) fprintf(f, "<span style=\"color:%s\">■ %s</span> ", colors[r % 8], runs[r].strategy);
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
        fputs("</text>", f);
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
            fprintf(f, "<tr><td>%s<br>%s</td><td>", cls[c].name, runs[r].strategy);
            int shown = 0;
            for (int j = 0; j < runs[r].n && shown < 6; j++) {
                const cJSON *e = runs[r].entries[j], *file = cJSON_GetObjectItem(e, "file");
                if (strcmp(cJSON_GetObjectItem(e, "class")->valuestring, cls[c].wnid) || !cJSON_IsString(file)) continue;
                char ip[PATH_MAX * 2];
                snprintf(ip, sizeof ip, "%s/datasets/%s/%s", data, runs[r].id, file->valuestring);
                size_t len;
                char *png = sf_file_text(ip, &len);
                if (!png) continue;
                fputs("<img title=\"", f);
                html_text(f, cJSON_GetObjectItem(e, "caption")->valuestring);
                fputs("\" alt=\"generated image\" src=\"data:image/png;base64,", f);
                b64(f, (const unsigned char *)png, len);
                fputs("\">", f);
                free(png);
                shown++;
            }
            fputs("</td></tr>\n", f);
        }
    fputs("</table>\n<p>Hover over an image for its caption. docs/evaluation.md defines each figure.</p></body></html>\n", f);
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
