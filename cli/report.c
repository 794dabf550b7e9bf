/* report.c: `sfctl report RUN [RUN…] --out DIR [--data DIR] [--redis ADDR]`
 * — the paper's tables and figures for runs of method "shift", one row
 * per run (each run is one strategy: ppo, sft, d3s, low-density, base, …;
 * a strategy may have several runs, which one table puts together as mean
 * and spread), as a self-contained HTML page (inline SVG plots, PNG images
 * as data URIs) and the same tables as Markdown and JSON.
 * docs/evaluation.md defines every figure.
 *
 * Inputs are the files the workers wrote under the data folder (manifests,
 * the filter's CLIP embeddings, the reference statistics, finetune.json)
 * and, for the PPO curve, the learner's stream in Redis.  Everything is
 * computed here, in C, except what the captions name: the world's parser
 * reads that, through sf-world (sfctl links no world).
 */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <limits.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/sfctl.h"
#include "cli/term.h"
#include "common/runtime/fileio.h"
#include "common/redis/keys.h"
#include "common/redis/redis_auth.h"
#include "common/formats/safetensors.h"
#include "common/method/stats.h"

/* Classifiers and test sets of one finetune.json the report shows. */
#define SF_REPORT_FT_MAX 8
/* What Fig. 6's note says of real classifiers. */
#define SF_REPORT_FT_REAL                                                                                            \
    "With real classifiers (timm folders) the base images are the run's reference photos, the test sets folders "    \
    "such as ImageNet-R and -A, read for the run's classes only (every image up to eval_images_per_class) with the " \
    "logits restricted to each set's classes, as Hendrycks et al. evaluate them; their whole-set columns are —."

#define MAX_RUNS 32
#define MAX_CLASSES 1000
#define PCA_DIMS 64

typedef struct {
    char wnid[16], name[64];
    float *base;        /* reference embeddings (nb x E) */
    int nb;
    float mean[1024];   /* the class mean from the statistics file */
} rclass_t;

/* An attribute value captions name, in the world parser's words
 * ("scene: sand"), and how many captions name it. */
typedef struct {
    char value[64];
    int n;
} named_t;

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
    cJSON *ft;          /* the run's finetune.json, NULL without one */
    /* Caption diversity: the run's captions (one per class and caption
     * index), their distinct texts, and how often each attribute value is
     * named in them (NULL when the world's parser could not be run). */
    int ncap, ndistinct;
    named_t *named;
    int nnamed;
} rrun_t;

/* Whether the generator drew the target class in a manifest entry: 1, 0
 * (another class or none), or -1 when the manifest has no ground truth (a
 * generator other than the world's).  The drawn class where the manifest
 * records it (an "ok" outcome alone is no proof: a caption naming another
 * class is drawn "ok"), else the outcome, as manifests before it say. */
static int drew_target(const cJSON *e) {
    const cJSON *d = cJSON_GetObjectItem(e, "drawn_class"), *c = cJSON_GetObjectItem(e, "class");
    if (cJSON_IsNull(d)) return 0;
    if (cJSON_IsString(d) && cJSON_IsString(c)) return strcmp(d->valuestring, c->valuestring) == 0;
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

/* Reference statistics of a class for embedder `emb_tag` and reference set
 * `source` (the manifest's reference_source; "world" before it said). */
static int load_class(const char *data, const char *emb_tag, const char *source, rclass_t *c, char *err, size_t en) {
    char path[PATH_MAX * 2], er[200];
    snprintf(path, sizeof path, "%s/stats/%s/%s/%s.safetensors", data, emb_tag, source, c->wnid);
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

void sfctl_html_text(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

/* A strategy as the report names it.  low-density-oracle reads the world's
 * ground truth (the inverse of the class's prior, and a rejection of
 * captions the generator would fail on): an oracle, so a ceiling, never a
 * baseline (docs/evaluation.md). */
static const char *label(const char *strategy) {
    return !strcmp(strategy, "low-density-oracle") ? "low-density-oracle (a ceiling)" : strategy;
}

/* One row of a table written to both the Markdown and the HTML page
 * (header: th cells and, in Markdown, the rule under them). */
static void table_row(FILE *md, FILE *html, int header, int n, char cells[][64]) {
    fputs("<tr>", html);
    for (int i = 0; i < n; i++) {
        fprintf(md, "| %s ", cells[i]);
        fputs(header ? "<th>" : "<td>", html);
        sfctl_html_text(html, cells[i]);
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

/* The PPO curve of a run from Redis, as an SVG (nothing when absent).  The
 * mean score's plot also draws the image score of the rollouts checked on
 * the image side, on the same axis: reward gaming shows as the two lines
 * parting (docs/method.md, "The image-side check").  An update none of
 * whose rollouts were checked has no image score (empty in the stream): no
 * point, null in the JSON. */
static void ppo_svg(FILE *f, redisContext *rc, const char *run, cJSON *js) {
    if (!rc) return;
    redisReply *rep = redisCommand(rc, "XRANGE " SF_KEY_RUN_PPO " - +", SF_KEY_PREFIX, run);
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements == 0) { freeReplyObject(rep); return; }
    int n = (int)rep->elements;
    double *score = calloc((size_t)n, sizeof *score), *kl = calloc((size_t)n, sizeof *kl),
           *beta = calloc((size_t)n, sizeof *beta), *bad = calloc((size_t)n, sizeof *bad),
           *img = calloc((size_t)n, sizeof *img), *faith = calloc((size_t)n, sizeof *faith);
    for (int i = 0; i < n; i++) {
        redisReply *fv = rep->element[i]->element[1];
        img[i] = faith[i] = NAN;
        for (size_t j = 0; j + 1 < fv->elements; j += 2) {
            const char *k = fv->element[j]->str, *sv = fv->element[j + 1]->str;
            double v = atof(sv);
            if (!strcmp(k, "mean_score")) score[i] = v;
            else if (!strcmp(k, "kl")) kl[i] = v;
            else if (!strcmp(k, "kl_coef")) beta[i] = v;
            else if (!strcmp(k, "nonsense")) bad[i] = v;
            else if (!strcmp(k, "image_score") && *sv) img[i] = v;
            else if (!strcmp(k, "faithful") && *sv) faith[i] = v;
        }
    }
    cJSON *c = cJSON_AddObjectToObject(js, "ppo_curve");
    cJSON_AddItemToObject(c, "mean_score", cJSON_CreateDoubleArray(score, n));
    cJSON_AddItemToObject(c, "kl", cJSON_CreateDoubleArray(kl, n));
    cJSON_AddItemToObject(c, "kl_coef", cJSON_CreateDoubleArray(beta, n));
    cJSON_AddItemToObject(c, "nonsense", cJSON_CreateDoubleArray(bad, n));
    cJSON_AddItemToObject(c, "image_score", cJSON_CreateDoubleArray(img, n)); /* NaN prints as null */
    cJSON_AddItemToObject(c, "faithful", cJSON_CreateDoubleArray(faith, n));
    const double *series[4] = {score, bad, kl, beta};
    const char *names[4] = {"mean score", "nonsense share", "KL", "β (KL coefficient)"};
    fprintf(f, "<h2>PPO curve of %s</h2>\n<div class=\"plots\">", run);
    for (int s = 0; s < 4; s++) {
        double lo = series[s][0], hi = series[s][0];
        for (int i = 0; i < n; i++) lo = fmin(lo, series[s][i]), hi = fmax(hi, series[s][i]);
        int with_img = 0; /* the mean score's plot, with image scores: both lines and a legend */
        for (int i = 0; s == 0 && i < n; i++)
            if (!isnan(img[i])) lo = fmin(lo, img[i]), hi = fmax(hi, img[i]), with_img = 1;
        if (hi - lo < 1e-9) hi = lo + 1;
        const double top = with_img ? 135 : 160;
        fprintf(f, "<svg class=\"plot\" width=\"300\" height=\"200\"><text x=\"10\" y=\"15\">%s (%.3g … %.3g)</text>",
                names[s], lo, hi);
        for (int pass = 0; pass < 1 + with_img; pass++) {
            const double *v = pass ? img : series[s];
            fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"",
                    pass ? colors[4] : colors[s], pass ? " stroke-dasharray=\"5,3\"" : "");
            for (int i = 0; i < n; i++)
                if (!isnan(v[i]))
                    fprintf(f, "%.1f,%.1f ", 20 + 270.0 * i / (n > 1 ? n - 1 : 1), 185 - top * (v[i] - lo) / (hi - lo));
            fputs("\"/>", f);
        }
        if (with_img)
            fprintf(f, "<text x=\"10\" y=\"29\" font-size=\"10\" fill=\"%s\">— mean score (−cos caption text to "
                       "class mean)</text><text x=\"10\" y=\"41\" font-size=\"10\" fill=\"%s\">- - image score "
                       "(−cos image to class mean)</text>", colors[0], colors[4]);
        fprintf(f, "<text x=\"20\" y=\"198\">update 1</text><text x=\"230\" y=\"198\">%d</text></svg>", n);
    }
    fputs("</div>\n", f);
    free(score), free(kl), free(beta), free(bad), free(img), free(faith);
    freeReplyObject(rep);
}

/* The reference row of Table 1, held out: each reference image's cosine
 * similarity to the mean of the other reference images of its class
 * (leave-one-out), and its Mahalanobis distance to the mean of their
 * projections under the pooled covariance fitted without it, so that
 * reference images are measured as generated ones are, against statistics
 * they are no part of; in sample they would look closer than they are (in
 * 64 dimensions with a few hundred images, much closer for Mahalanobis).
 * Per class (the mean over its images) into sim[c] and maha[c], NaN for a
 * class with one reference image; the in-sample figures into in_sim[c] and
 * in_maha[c].  Only the PCA axes stay fitted on every reference image.
 *
 * Without image z of a class of n, its class's scatter loses k u uᵀ (u =
 * z − μ̂_C, k = n / (n − 1)), the divisor N − C loses one, and z lies k u
 * from the others' mean; by Sherman–Morrison its distance is k √(q / (1 − c q))
 * with q = uᵀ A⁻¹ u, A = S / (N − C − 1) + ridge I and c = k / (N − C − 1):
 * one more Cholesky factor, not one per image.  zall: the projections
 * (total x K) in class order; cmu: the classes' projected means (nc x K);
 * L: the Cholesky factor of the covariance of Table 1; S: the pooled
 * within-class scatter (K x K) it was made from; ridge: what its diagonal
 * got on top. */
static void reference_row(const rclass_t *cls, int nc, int total, const double *zall, const double *cmu,
                          const double *L, const double *S, double ridge, int K, double *sim, double *maha,
                          double *in_sim, double *in_maha) {
    const int dof = total - nc - 1;
    double *sum = malloc(sizeof(double) * E), *A = malloc(sizeof(double) * K * K);
    float *loo = malloc(sizeof(float) * E);
    for (int a = 0; a < K * K; a++) A[a] = S[a] / (dof > 0 ? dof : 1);
    for (int a = 0; a < K; a++) A[(size_t)a * K + a] += ridge;
    const int held = dof > 0 && sf_cholesky(A, K) == 0;
    for (int c = 0, o = 0; c < nc; o += cls[c].nb, c++) {
        const int nb = cls[c].nb;
        const double *m = cmu + (size_t)c * K, k = nb > 1 ? (double)nb / (nb - 1) : NAN;
        sim[c] = nb > 1 ? 0 : NAN, maha[c] = nb > 1 && held ? 0 : NAN, in_sim[c] = in_maha[c] = 0;
        memset(sum, 0, sizeof(double) * E);
        for (int i = 0; i < nb; i++)
            for (int a = 0; a < E; a++) sum[a] += cls[c].base[(size_t)i * E + a];
        for (int i = 0; i < nb; i++) {
            const float *x = cls[c].base + (size_t)i * E;
            const double *z = zall + (size_t)(o + i) * K;
            in_sim[c] += cosine(x, cls[c].mean, E) / nb;
            in_maha[c] += sf_mahalanobis(L, K, z, m) / nb;
            if (nb < 2) continue;
            /* The others' mean, up to a factor the cosine ignores. */
            for (int a = 0; a < E; a++) loo[a] = (float)(sum[a] - x[a]);
            sim[c] += cosine(x, loo, E) / nb;
            if (!held) continue;
            double q = pow(sf_mahalanobis(A, K, z, m), 2), cq = k / dof * q;
            maha[c] += (cq < 1 ? k * sqrt(q / (1 - cq)) : NAN) / nb;
        }
    }
    free(sum);
    free(A);
    free(loo);
}

/* The mean of the finite x[0..n-1], NaN without one. */
static double finite_mean(const double *x, int n) {
    double s = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(x[i])) s += x[i], k++;
    return k ? s / k : NAN;
}

/* ---- figures over the runs of a strategy ---- */

/* The runs' strategies in order of first appearance: of[r] is run r's
 * strategy, first[s] the first run of strategy s.  Returns how many. */
static int group_strategies(const rrun_t *runs, int nr, int *of, int *first) {
    int ns = 0;
    for (int r = 0; r < nr; r++) {
        of[r] = -1;
        for (int s = 0; s < ns && of[r] < 0; s++)
            if (!strcmp(runs[first[s]].strategy, runs[r].strategy)) of[r] = s;
        if (of[r] < 0) first[ns] = r, of[r] = ns++;
    }
    return ns;
}

/* One figure over the runs of a strategy: how many runs have it (a finite
 * value), its mean and sample standard deviation (divisor n − 1, NaN for
 * fewer than two runs). */
typedef struct {
    int n;
    double mean, sd;
} spread_t;

/* The spread of x[r] over the runs r of strategy s (of[r] == s). */
static spread_t spread_of(const double *x, const int *of, int nr, int s) {
    double v[MAX_RUNS], var = NAN;
    spread_t o = {0, NAN, NAN};
    for (int r = 0; r < nr; r++)
        if (of[r] == s && isfinite(x[r])) v[o.n++] = x[r];
    if (o.n == 1) o.mean = v[0];
    if (o.n >= 2) sf_covariance(v, o.n, 1, &o.mean, &var), o.sd = sqrt(var);
    return o;
}

/* "mean ± s.d." (or ± the standard error s.d./√n when se) with prec
 * decimals, the mean signed when sign; "—" without a value, "± —" without a
 * spread. */
static void fmt_spread(char *out, size_t n, spread_t s, int se, int prec, int sign) {
    if (!s.n) { snprintf(out, n, "—"); return; }
    double d = se ? s.sd / sqrt(s.n) : s.sd;
    int k = snprintf(out, n, sign ? "%+.*f ± " : "%.*f ± ", prec, s.mean);
    if (k < 0 || (size_t)k >= n) return;
    if (isnan(d)) snprintf(out + k, n - (size_t)k, "—");
    else snprintf(out + k, n - (size_t)k, "%.*f", prec, d);
}

/* {"n", "mean", "sd"} (null where there is none), and "se" when se. */
static void json_spread(cJSON *o, const char *key, spread_t s, int se) {
    cJSON *x = cJSON_AddObjectToObject(o, key);
    cJSON_AddNumberToObject(x, "n", s.n);
    if (s.n) cJSON_AddNumberToObject(x, "mean", s.mean);
    else cJSON_AddNullToObject(x, "mean");
    if (isnan(s.sd)) cJSON_AddNullToObject(x, "sd");
    else cJSON_AddNumberToObject(x, "sd", s.sd);
    if (!se) return;
    if (isnan(s.sd)) cJSON_AddNullToObject(x, "se");
    else cJSON_AddNumberToObject(x, "se", s.sd / sqrt(s.n));
}

/* A run's fine-tuning gain on its own classes (finetune.json: with
 * generated images minus the control, averaged over the fine-tuning seeds),
 * in points; NaN without one. */
static double run_gain(const rrun_t *R, const char *arch, const char *set) {
    const cJSON *so = cJSON_GetObjectItem(cJSON_GetObjectItem(R->ft, arch), set);
    const cJSON *wg = cJSON_GetObjectItem(so, "with_generated_run_classes"),
                *bo = cJSON_GetObjectItem(so, "base_only_run_classes");
    return cJSON_IsNumber(wg) && cJSON_IsNumber(bo) ? wg->valuedouble - bo->valuedouble : NAN;
}

/* The table "Strategies over runs": every figure of Tables 1 and 2, the
 * filter's class fidelity and the Fig. 6 gains on the run's classes, as the
 * mean over each strategy's runs ± the sample s.d. (the gains ± the
 * standard error).  base_acc: the base runs' mean accuracies (-1: none). */
static void write_strategies(FILE *md, FILE *f, cJSON *js, const rrun_t *runs, int nr, const double base_acc[2]) {
    enum { F_SIM, F_MAHA, F_KEPT, F_FID, F_ACC_C, F_DROP_C, F_ACC_V, F_DROP_V, F_GAIN, NF = F_GAIN + 4 };
    static const char *const gain_arch[4] = {"convnext", "convnext", "vit", "vit"},
                             *gain_set[4] = {"world_R", "world_A", "world_R", "world_A"};
    static const char *const head[2 + NF] = {
        "strategy", "runs", "CLIP similarity ×100", "Mahalanobis", "kept by the filter (%)",
        "class fidelity of the kept (%)", "ConvNeXt accuracy (%)", "ConvNeXt drop (points)", "ViT accuracy (%)",
        "ViT drop (points)", "gain ConvNeXt world-R (points)", "gain ConvNeXt world-A (points)",
        "gain ViT world-R (points)", "gain ViT world-A (points)"};
    static const char *const key[NF] = {
        "similarity_x100", "mahalanobis", "kept_share", "class_fidelity", "convnext_accuracy", "convnext_drop",
        "vit_accuracy", "vit_drop", "convnext_world_R_gain_run_classes", "convnext_world_A_gain_run_classes",
        "vit_world_R_gain_run_classes", "vit_world_A_gain_run_classes"};
    /* Decimals, and whether the mean is signed, per figure. */
    static const int prec[NF] = {2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, sign[NF] = {0, 0, 0, 0, 0, 1, 0, 1, 1, 1, 1, 1};
    double x[NF][MAX_RUNS];
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        x[F_SIM][r] = R->sim100, x[F_MAHA][r] = R->maha, x[F_KEPT][r] = 100 * R->keep_rate;
        x[F_FID][r] = R->known && R->kept ? 100.0 * R->faithful_kept / R->kept : NAN;
        for (int m = 0; m < 2; m++) {
            x[F_ACC_C + 2 * m][r] = R->cls_acc[m] >= 0 ? R->cls_acc[m] : NAN;
            x[F_DROP_C + 2 * m][r] = R->cls_acc[m] >= 0 && base_acc[m] >= 0 ? base_acc[m] - R->cls_acc[m] : NAN;
        }
        for (int g = 0; g < 4; g++) x[F_GAIN + g][r] = run_gain(R, gain_arch[g], gain_set[g]);
    }
    int of[MAX_RUNS], first[MAX_RUNS], ns = group_strategies(runs, nr, of, first);
    fputs("<h2>Strategies over runs</h2>\n<div class=\"wide\"><table id=\"strategies\">", f);
    fputs("\n### Strategies over runs\n\n", md);
    char cell[2 + NF][64];
    for (int i = 0; i < 2 + NF; i++) snprintf(cell[i], 64, "%s", head[i]);
    table_row(md, f, 1, 2 + NF, cell);
    cJSON *st = cJSON_AddArrayToObject(js, "strategies");
    for (int s = 0; s < ns; s++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", runs[first[s]].strategy);
        cJSON *ids = cJSON_AddArrayToObject(o, "runs");
        int n = 0;
        for (int r = 0; r < nr; r++)
            if (of[r] == s) cJSON_AddItemToArray(ids, cJSON_CreateString(runs[r].id)), n++;
        cJSON_AddNumberToObject(o, "n_runs", n);
        snprintf(cell[0], 64, "%s", label(runs[first[s]].strategy));
        snprintf(cell[1], 64, "%d", n);
        for (int k = 0; k < NF; k++) {
            spread_t sp = spread_of(x[k], of, nr, s);
            fmt_spread(cell[2 + k], 64, sp, k >= F_GAIN, prec[k], sign[k]);
            /* The JSON keeps shares as fractions, as Table 1 and the filter's table do. */
            if (k == F_KEPT || k == F_FID) sp.mean /= 100, sp.sd /= 100;
            json_spread(o, key[k], sp, k >= F_GAIN);
        }
        table_row(md, f, 0, 2 + NF, cell);
        cJSON_AddItemToArray(st, o);
    }
    static const char note[] =
        "Each strategy's runs together (Tables 1 and 2, the filter's table and Fig. 6 give each run). ± is the "
        "sample standard deviation over the strategy's runs (divisor n − 1; — with one run), except for the gains, "
        "where it is the standard error of the mean over runs (s.d. / √n). A gain is the Fig. 6 gain on the run's "
        "classes; each run's is already the mean over its fine-tuning seeds (finetune.json keeps only that mean), "
        "so the spread between seeds is inside each run's figure and not separated here. Drops are from the mean "
        "accuracy of the base runs.";
    fprintf(md, "\n%s\n", note);
    fprintf(f, "</table></div><p>%s</p>\n", note);
}

/* ---- caption diversity ---- */

#define MAX_NAMED 256

/* A caption of a run: one per class and caption index (an image made from
 * a caption already counted adds nothing), and what the world's parser read
 * in it. */
typedef struct {
    const char *wnid, *caption;   /* borrowed from the manifest */
    int index;
    const char *named;            /* "attribute: value" lines; NULL: unread */
} capref_t;

static int cap_by_slot(const void *a, const void *b) {
    const capref_t *x = a, *y = b;
    int c = strcmp(x->wnid, y->wnid);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

static int cap_by_text(const void *a, const void *b) {
    const capref_t *x = a, *y = b;
    int c = strcmp(x->caption, y->caption);
    return c ? c : strcmp(x->wnid, y->wnid);
}

/* The attribute values `caption` names as the world's parser reads it, one
 * "attribute: value" line each (sf-world parse's output without its class
 * and word counts), malloc'ed; NULL when sf-world cannot be run or fails.
 * sfctl links no world (docs/architecture.md), so, like `sfctl world`, this
 * runs sf-world from sfctl's own folder, with a world of the caption's class
 * alone: the class's name is found and blanked out, not read as attributes
 * ("snow leopard"). */
static char *world_parse(const char *exe, const char *wnid, const char *caption) {
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) return NULL;
    if (pipe2(out, O_CLOEXEC) != 0) {
        close(in[0]), close(in[1]);
        return NULL;
    }
    /* The class list goes into the pipe before the child starts, so that a
     * child that fails at once cannot make this write raise SIGPIPE. */
    char cls[32], buf[4096], sink[512];
    int len = snprintf(cls, sizeof cls, "%s\n", wnid), ok = write(in[1], cls, (size_t)len) == len;
    close(in[1]);
    /* A caption starting with '-' would read as an option; the parser
     * ignores the space put before it. */
    char *arg = malloc(strlen(caption) + 2);
    sprintf(arg, "%s%s", caption[0] == '-' ? " " : "", caption);
    char *argv[] = {"sf-world", "parse", "--classes", "-", arg, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, out[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    pid_t pid = -1;
    ok = ok && posix_spawn(&pid, exe, &fa, NULL, argv, environ) == 0;
    posix_spawn_file_actions_destroy(&fa);
    free(arg);
    close(in[0]), close(out[1]);
    /* Read to the end (past what fits, so the child never blocks). */
    size_t n = 0;
    for (ssize_t k = 1; ok && k != 0;) {
        k = n + 1 < sizeof buf ? read(out[0], buf + n, sizeof buf - 1 - n) : read(out[0], sink, sizeof sink);
        if (k < 0 && errno != EINTR) break;
        if (k > 0 && n + 1 < sizeof buf) n += (size_t)k;
    }
    buf[n] = 0;
    close(out[0]);
    int st = 0;
    while (ok && waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (!ok || !WIFEXITED(st) || WEXITSTATUS(st) != 0 || strncmp(buf, "class: ", 7)) return NULL;
    /* The attribute lines: after "class: …", before "words: …". */
    char *first = strchr(buf, '\n'), *end = first ? strstr(first, "\nwords: ") : NULL;
    if (!end) return NULL;
    end[1] = 0;
    return strdup(first + 1);
}

/* Adds n to the count of `value` in v[0..*k-1] (appended if new). */
static void named_add(named_t *v, int *k, const char *value, int n) {
    for (int i = 0; i < *k; i++)
        if (!strcmp(v[i].value, value)) { v[i].n += n; return; }
    if (*k == MAX_NAMED) return;
    snprintf(v[*k].value, sizeof v[*k].value, "%s", value);
    v[(*k)++].n = n;
}

/* Shannon entropy, in bits, of the distribution the counts v[0..k-1] make:
 * H = −Σ p log2 p with p = n / Σ n; 0 without counts. */
static double entropy_bits(const named_t *v, int k) {
    double total = 0, h = 0;
    for (int i = 0; i < k; i++) total += v[i].n;
    for (int i = 0; i < k; i++)
        if (v[i].n > 0) h -= v[i].n / total * log2(v[i].n / total);
    return h;
}

/* Caption diversity of every run: its captions, their distinct texts, and
 * how many of them name each attribute value, by the world's parser, run
 * once for each distinct caption of a class.  0, or -1 with `why` when the
 * parser could not be run at all (each run's named is then NULL). */
static int caption_diversity(rrun_t *runs, int nr, char *why, size_t wn) {
    capref_t *unit[MAX_RUNS] = {NULL};
    int total = 0;
    for (int r = 0; r < nr; r++) {
        rrun_t *R = &runs[r];
        capref_t *u = unit[r] = malloc(sizeof *u * (size_t)R->n);
        int m = 0;
        for (int j = 0; j < R->n; j++) {
            const cJSON *w = cJSON_GetObjectItem(R->entries[j], "class"),
                        *c = cJSON_GetObjectItem(R->entries[j], "caption"),
                        *ci = cJSON_GetObjectItem(R->entries[j], "caption_index");
            if (!cJSON_IsString(w) || !cJSON_IsString(c)) continue;
            u[m++] = (capref_t){w->valuestring, c->valuestring, cJSON_IsNumber(ci) ? ci->valueint : -1 - j, NULL};
        }
        qsort(u, (size_t)m, sizeof *u, cap_by_slot);
        R->ncap = 0;
        for (int i = 0; i < m; i++)
            if (!R->ncap || cap_by_slot(&u[i], &u[R->ncap - 1])) u[R->ncap++] = u[i];
        /* Distinct texts (a text is its class's: it names the class). */
        qsort(u, (size_t)R->ncap, sizeof *u, cap_by_text);
        R->ndistinct = 0;
        for (int i = 0; i < R->ncap; i++) R->ndistinct += !i || strcmp(u[i].caption, u[i - 1].caption);
        total += R->ncap;
    }
    /* Each distinct caption of a class, once, through the parser. */
    capref_t *all = malloc(sizeof *all * (size_t)(total ? total : 1));
    int na = 0, unread = 0;
    for (int r = 0; r < nr; r++)
        for (int i = 0; i < runs[r].ncap; i++) all[na++] = unit[r][i];
    qsort(all, (size_t)na, sizeof *all, cap_by_text);
    int nd = 0;
    for (int i = 0; i < na; i++)
        if (!nd || cap_by_text(&all[i], &all[nd - 1])) all[nd++] = all[i];
    char dir[PATH_MAX], exe[PATH_MAX + 16];
    sfctl_bin_dir(dir, sizeof dir);
    snprintf(exe, sizeof exe, "%s/sf-world", dir);
    for (int i = 0; i < nd; i++) unread += !(all[i].named = world_parse(exe, all[i].wnid, all[i].caption));
    int rc = 0;
    if (nd && unread == nd) {
        snprintf(why, wn, "%s could not read the captions (it is built beside sfctl by make)", exe);
        rc = -1;
    } else if (unread) {
        sfctl_term_printf(stderr, "sfctl report: %s could not read %d of %d captions; they count as naming nothing\n",
                          exe, unread, nd);
    }
    for (int r = 0; rc == 0 && r < nr; r++) {
        rrun_t *R = &runs[r];
        R->named = calloc(MAX_NAMED, sizeof *R->named);
        for (int i = 0; i < R->ncap; i++) {
            const capref_t *p = bsearch(&unit[r][i], all, (size_t)nd, sizeof *all, cap_by_text);
            for (const char *l = p && p->named ? p->named : ""; *l;) {
                size_t len = strcspn(l, "\n");
                char v[64];
                snprintf(v, sizeof v, "%.*s", (int)len, l);
                named_add(R->named, &R->nnamed, v, 1);
                l += len + (l[len] == '\n');
            }
        }
    }
    for (int i = 0; i < nd; i++) free((char *)all[i].named);
    free(all);
    for (int r = 0; r < nr; r++) free(unit[r]);
    return rc;
}

/* The smallest of 1, 2, 2.5 and 5 times a power of ten that is at least
 * v (> 0): the top of a chart's axis, so that its ticks read as round numbers. */
static double nice_ceiling(double v) {
    double p = pow(10, floor(log10(v))), m[4] = {1, 2, 2.5, 5};
    for (int i = 0; i < 4; i++)
        if (m[i] * p >= v) return m[i] * p;
    return 10 * p;
}

/* A bar chart of one figure per strategy (x[r] for run r, NaN: none): a bar
 * for the mean over the strategy's runs, a whisker ± one sample s.d. where
 * it has two or more, and a dot for each run. */
static void bars_svg(FILE *f, const char *id, const char *title, const char *unit, const rrun_t *runs, int nr,
                     const double *x) {
    int of[MAX_RUNS], first[MAX_RUNS], ns = group_strategies(runs, nr, of, first);
    double top = 0;
    for (int s = 0; s < ns; s++) {
        spread_t sp = spread_of(x, of, nr, s);
        if (sp.n) top = fmax(top, sp.mean + (isnan(sp.sd) ? 0 : sp.sd));
    }
    for (int r = 0; r < nr; r++)
        if (isfinite(x[r])) top = fmax(top, x[r]);
    top = top > 0 ? nice_ceiling(top) : 1;
    const int W = 90 + 70 * ns, y0 = 40, y1 = 200; /* plot from y0 (top) to y1 (zero) */
    fprintf(f, "<svg class=\"plot\" id=\"%s\" width=\"%d\" height=\"290\"><text x=\"10\" y=\"16\" font-size=\"12\">",
            id, W);
    sfctl_html_text(f, title);
    fprintf(f, "</text><line x1=\"60\" y1=\"%d\" x2=\"60\" y2=\"%d\" stroke=\"black\"/>"
               "<line x1=\"60\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>", y0, y1, y1, W - 10, y1);
    for (int t = 0; t <= 2; t++) {
        double v = top * t / 2, y = y1 - (y1 - y0) * t / 2.0;
        fprintf(f, "<line x1=\"56\" y1=\"%.1f\" x2=\"60\" y2=\"%.1f\" stroke=\"black\"/>"
                   "<text x=\"52\" y=\"%.1f\" font-size=\"10\" text-anchor=\"end\">%.3g</text>", y, y, y + 3, v);
    }
    fprintf(f, "<text x=\"14\" y=\"%d\" font-size=\"10\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">",
            (y0 + y1) / 2, (y0 + y1) / 2);
    sfctl_html_text(f, unit);
    fputs("</text>", f);
    for (int s = 0; s < ns; s++) {
        spread_t sp = spread_of(x, of, nr, s);
        const int bx = 75 + 70 * s;
        const char *col = colors[first[s] % 8];
        if (sp.n) {
            double h = (y1 - y0) * sp.mean / top;
            fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"40\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"0.6\">"
                       "<title>%s: %.3g (%d runs)</title></rect>", bx, y1 - h, h, col, runs[first[s]].strategy,
                    sp.mean, sp.n);
            if (!isnan(sp.sd)) {
                double ya = y1 - (y1 - y0) * (sp.mean + sp.sd) / top, yb = y1 - (y1 - y0) * fmax(0, sp.mean - sp.sd) / top;
                fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"black\"/>", bx + 20, ya, bx + 20, yb);
            }
        }
        for (int r = 0, k = 0; r < nr; r++)
            if (of[r] == s && isfinite(x[r]))
                fprintf(f, "<circle cx=\"%d\" cy=\"%.1f\" r=\"3\" fill=\"black\"><title>%s: %.3g</title></circle>",
                        bx + 8 + 8 * (k++ % 4), y1 - (y1 - y0) * x[r] / top, runs[r].id, x[r]);
        fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"10\" transform=\"rotate(30 %d %d)\">", bx, y1 + 14, bx, y1 + 14);
        sfctl_html_text(f, label(runs[first[s]].strategy));
        fputs("</text>", f);
    }
    fputs("</svg>", f);
}

/* The table and figure "Caption diversity": each run's captions, the share
 * of distinct ones, the attribute values they name and the entropy of those
 * values; per strategy with several runs, the mean ± s.d. and the entropy
 * of all its runs' captions pooled.  parsed: whether the world's parser
 * read the captions (without it, no attribute figures). */
static void write_diversity(FILE *md, FILE *f, cJSON *js, const rrun_t *runs, int nr, int parsed, const char *why) {
    double share[MAX_RUNS], per_cap[MAX_RUNS], h[MAX_RUNS];
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        int named = 0;
        for (int i = 0; i < R->nnamed; i++) named += R->named[i].n;
        share[r] = R->ncap ? 100.0 * R->ndistinct / R->ncap : NAN;
        per_cap[r] = parsed && R->ncap ? (double)named / R->ncap : NAN;
        h[r] = parsed && R->ncap ? entropy_bits(R->named, R->nnamed) : NAN;
    }
    fputs("<h2>Caption diversity</h2>\n<table id=\"diversity\">", f);
    fputs("\n### Caption diversity\n\n", md);
    char cell[6][64];
    static const char *const head[6] = {"strategy", "run", "captions", "distinct captions (%)",
                                        "attribute values named per caption", "entropy of the named values (bits)"};
    for (int i = 0; i < 6; i++) snprintf(cell[i], 64, "%s", head[i]);
    table_row(md, f, 1, 6, cell);
    cJSON *dj = cJSON_AddObjectToObject(js, "diversity"), *jr = cJSON_AddArrayToObject(dj, "runs"),
          *sj = cJSON_AddArrayToObject(dj, "strategies");
    int of[MAX_RUNS], first[MAX_RUNS], ns = group_strategies(runs, nr, of, first);
    for (int s = 0; s < ns; s++) {
        int n = 0, caps = 0, nv = 0;
        named_t *pool = calloc(MAX_NAMED, sizeof *pool);
        for (int r = 0; r < nr; r++) {
            if (of[r] != s) continue;
            const rrun_t *R = &runs[r];
            n++, caps += R->ncap;
            for (int i = 0; parsed && i < R->nnamed; i++) named_add(pool, &nv, R->named[i].value, R->named[i].n);
            snprintf(cell[0], 64, "%s", label(R->strategy)), snprintf(cell[1], 64, "%.*s", (int)sizeof R->id, R->id);
            snprintf(cell[2], 64, "%d", R->ncap);
            pct_or_dash(cell[3], 64, R->ndistinct, R->ncap);
            if (isnan(h[r])) snprintf(cell[4], 64, "—"), snprintf(cell[5], 64, "—");
            else snprintf(cell[4], 64, "%.2f", per_cap[r]), snprintf(cell[5], 64, "%.2f", h[r]);
            table_row(md, f, 0, 6, cell);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "strategy", R->strategy);
            cJSON_AddStringToObject(o, "run", R->id);
            cJSON_AddNumberToObject(o, "captions", R->ncap);
            cJSON_AddNumberToObject(o, "distinct_captions", R->ndistinct);
            if (R->ncap) cJSON_AddNumberToObject(o, "distinct_share", (double)R->ndistinct / R->ncap);
            if (!isnan(h[r])) {
                cJSON_AddNumberToObject(o, "named_per_caption", per_cap[r]);
                cJSON_AddNumberToObject(o, "entropy_bits", h[r]);
                cJSON *nj = cJSON_AddObjectToObject(o, "named");
                for (int i = 0; i < R->nnamed; i++) cJSON_AddNumberToObject(nj, R->named[i].value, R->named[i].n);
            }
            cJSON_AddItemToArray(jr, o);
        }
        spread_t sh = spread_of(share, of, nr, s), pc = spread_of(per_cap, of, nr, s), en = spread_of(h, of, nr, s);
        double pooled = parsed ? entropy_bits(pool, nv) : NAN;
        free(pool);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", runs[first[s]].strategy);
        cJSON_AddNumberToObject(o, "n_runs", n);
        cJSON_AddNumberToObject(o, "captions", caps);
        sh.mean /= 100, sh.sd /= 100;
        json_spread(o, "distinct_share", sh, 0);
        sh.mean *= 100, sh.sd *= 100;
        json_spread(o, "named_per_caption", pc, 0);
        json_spread(o, "entropy_bits", en, 0);
        if (!isnan(pooled)) cJSON_AddNumberToObject(o, "entropy_bits_pooled", pooled);
        cJSON_AddItemToArray(sj, o);
        if (n < 2) continue;
        snprintf(cell[0], 64, "%s", label(runs[first[s]].strategy));
        snprintf(cell[1], 64, "%d runs: mean ± s.d.", n);
        snprintf(cell[2], 64, "%d", caps);
        fmt_spread(cell[3], 64, sh, 0, 1, 0);
        fmt_spread(cell[4], 64, pc, 0, 2, 0);
        fmt_spread(cell[5], 64, en, 0, 2, 0);
        if (!isnan(pooled)) {
            size_t l = strlen(cell[5]);
            snprintf(cell[5] + l, 64 - l, " (pooled %.2f)", pooled);
        }
        table_row(md, f, 0, 6, cell);
    }
    static const char note[] =
        "A run's captions: one per class and caption index (an image made from a caption already counted adds "
        "none). Distinct: how many different texts they have, over their number. Named values: the attribute "
        "values (style, scene, light, colour, size, position, rotation, count, occlusion, clutter) the world's "
        "caption parser reads in each caption (sfctl world parse); the entropy is that of their distribution, each "
        "value counted once per caption naming it, H = −Σ p log2 p: low when captions keep to a few values (mode "
        "collapse). With several runs: the mean ± sample s.d. over the runs, and the entropy of all their captions "
        "pooled.";
    const char *unread = parsed ? "" : " Not read here: ";
    fprintf(md, "\n%s%s%s\n", note, unread, parsed ? "" : why);
    fputs("</table><p>", f);
    sfctl_html_text(f, note);
    sfctl_html_text(f, unread);
    sfctl_html_text(f, parsed ? "" : why);
    fputs("</p>\n", f);
    if (!parsed) return;
    fputs("<div class=\"plots\">", f);
    bars_svg(f, "fig-entropy", "Entropy of the attribute values captions name", "bits", runs, nr, h);
    bars_svg(f, "fig-distinct", "Distinct captions", "% of the run's captions", runs, nr, share);
    fputs("</div><p>Bars: the mean over each strategy's runs; whiskers: ± one sample s.d. (two or more runs); "
          "dots: each run.</p>\n", f);
}

/* Table 2 with real classifiers (timm folders): the classify jobs' counts,
 * datasets/<run>/classify/<wnid>.json, summed over the run's classes into
 * {classifier: {reference_images, reference_correct, …}}; NULL for a run
 * without them (the world's classifiers, or no classify phase). */
static cJSON *real_counts(const char *data, const char *run) {
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s/datasets/%s/classify", data, run);
    struct dirent **names = NULL;
    int nn = scandir(dir, &names, NULL, alphasort);
    cJSON *sum = NULL;
    static const char *const keys[4] = {"generated_correct", "generated_correct_run_classes", "reference_correct",
                                        "reference_correct_run_classes"};
    for (int i = 0; i < nn; i++) {
        const char *nm = names[i]->d_name;
        size_t l = strlen(nm);
        char path[PATH_MAX * 2];
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        char *t = l > 5 && !strcmp(nm + l - 5, ".json") ? sf_file_text(path, NULL) : NULL;
        cJSON *o = t ? cJSON_Parse(t) : NULL;
        free(t);
        const double ng = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "generated_images")),
                     nref = cJSON_GetNumberValue(cJSON_GetObjectItem(o, "reference_images"));
        for (const cJSON *c = cJSON_GetObjectItem(o, "classifiers") ? cJSON_GetObjectItem(o, "classifiers")->child : NULL;
             c; c = c->next) {
            if (!sum) sum = cJSON_CreateObject();
            cJSON *a = cJSON_GetObjectItem(sum, c->string);
            if (!a) {
                a = cJSON_AddObjectToObject(sum, c->string);
                cJSON_AddNumberToObject(a, "generated_images", 0), cJSON_AddNumberToObject(a, "reference_images", 0);
                for (int k = 0; k < 4; k++) cJSON_AddNumberToObject(a, keys[k], 0);
            }
            cJSON_SetNumberValue(cJSON_GetObjectItem(a, "generated_images"),
                                 cJSON_GetNumberValue(cJSON_GetObjectItem(a, "generated_images")) + ng);
            cJSON_SetNumberValue(cJSON_GetObjectItem(a, "reference_images"),
                                 cJSON_GetNumberValue(cJSON_GetObjectItem(a, "reference_images")) + nref);
            for (int k = 0; k < 4; k++)
                cJSON_SetNumberValue(cJSON_GetObjectItem(a, keys[k]), cJSON_GetNumberValue(cJSON_GetObjectItem(a, keys[k])) +
                                                                          cJSON_GetNumberValue(cJSON_GetObjectItem(c, keys[k])));
        }
        cJSON_Delete(o);
        free(names[i]);
    }
    free(names);
    return sum;
}

/* Table 2 with real classifiers: accuracy on the reference images of the
 * run's classes and on its kept images, 1000-way (the headline) and
 * restricted to the run's classes, and the drop between them. */
static void write_real_table2(FILE *md, FILE *f, cJSON *js, rrun_t *runs, int nr, const char *data) {
    cJSON *counts[MAX_RUNS] = {0};
    int any = 0;
    for (int r = 0; r < nr; r++) any |= (counts[r] = real_counts(data, runs[r].id)) != NULL;
    if (!any) return;
    fputs("<h2>Table 2: real classifiers on the kept images</h2>\n<table id=\"table2real\">", f);
    fputs("\n### Table 2: real classifiers on the kept images\n\n", md);
    char cell[9][64];
    const char *h[9] = {"strategy", "run", "classifier", "reference images", "kept images", "drop (points)",
                        "reference, run's classes only", "kept, run's classes only", "drop (points)"};
    for (int i = 0; i < 9; i++) snprintf(cell[i], 64, "%s", h[i]);
    table_row(md, f, 1, 9, cell);
    cJSON *t = cJSON_AddArrayToObject(js, "table2_real");
    for (int r = 0; r < nr; r++) {
        for (const cJSON *c = counts[r] ? counts[r]->child : NULL; c; c = c->next) {
            const double ng = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "generated_images")),
                         nref = cJSON_GetNumberValue(cJSON_GetObjectItem(c, "reference_images"));
            double a[4];
            static const char *const k[4] = {"reference_correct", "generated_correct", "reference_correct_run_classes",
                                              "generated_correct_run_classes"};
            for (int i = 0; i < 4; i++) {
                const double den = i % 2 ? ng : nref;
                a[i] = den > 0 ? 100 * cJSON_GetNumberValue(cJSON_GetObjectItem(c, k[i])) / den : NAN;
            }
            snprintf(cell[0], 64, "%s", label(runs[r].strategy));
            snprintf(cell[1], 64, "%.*s", (int)sizeof runs[r].id, runs[r].id);
            snprintf(cell[2], 64, "%.63s", c->string);
            for (int i = 0; i < 2; i++) {
                const double x = a[2 * i], y = a[2 * i + 1];
                if (isnan(x)) snprintf(cell[3 + 3 * i], 64, "—");
                else snprintf(cell[3 + 3 * i], 64, "%.1f%% (%.0f)", x, nref);
                if (isnan(y)) snprintf(cell[4 + 3 * i], 64, "—");
                else snprintf(cell[4 + 3 * i], 64, "%.1f%% (%.0f)", y, ng);
                if (isnan(x) || isnan(y)) snprintf(cell[5 + 3 * i], 64, "—");
                else snprintf(cell[5 + 3 * i], 64, "%+.1f", x - y);
            }
            table_row(md, f, 0, 9, cell);
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "strategy", runs[r].strategy);
            cJSON_AddStringToObject(o, "run", runs[r].id);
            cJSON_AddStringToObject(o, "classifier", c->string);
            cJSON_AddNumberToObject(o, "reference_images", nref);
            cJSON_AddNumberToObject(o, "kept_images", ng);
            static const char *const out[4] = {"reference_accuracy", "kept_accuracy", "reference_accuracy_run_classes",
                                                "kept_accuracy_run_classes"};
            for (int i = 0; i < 4; i++)
                if (!isnan(a[i])) cJSON_AddNumberToObject(o, out[i], a[i]);
            if (!isnan(a[0]) && !isnan(a[1])) cJSON_AddNumberToObject(o, "drop", a[0] - a[1]);
            if (!isnan(a[2]) && !isnan(a[3])) cJSON_AddNumberToObject(o, "drop_run_classes", a[2] - a[3]);
            cJSON_AddItemToArray(t, o);
        }
        cJSON_Delete(counts[r]);
    }
    static const char note[] =
        "ImageNet-trained classifiers (timm folders, their 1000 outputs in sorted-wnid order) on the reference images "
        "of the run's classes and on the kept images; the drop is reference minus kept accuracy (positive: the kept "
        "images are harder). The headline is 1000-way top-1, the classifiers' own task, which is how we read the "
        "paper's Table 2 (it restricts logits only for ImageNet-R and -A, after Hendrycks et al.); restricted to the "
        "run's classes is shown beside it. Image counts in brackets.";
    fprintf(md, "\n%s\n", note);
    fprintf(f, "</table><p>%s</p>\n", note);
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
        else if (argv[i][0] != '-' && nr == MAX_RUNS) {
            fprintf(stderr, "sfctl report: at most %d runs in one report ('%s' is one more)\n", MAX_RUNS, argv[i]);
            return SFCTL_EXIT_USAGE;
        } else if (argv[i][0] != '-' && strlen(argv[i]) < 16) snprintf(runs[nr++].id, 16, "%s", argv[i]);
        else { sfctl_term_printf(stderr, "sfctl report: unknown argument '%s'\n", argv[i]); return SFCTL_EXIT_USAGE; }
    }
    if (!nr || !out) {
        fprintf(stderr, "sfctl report: usage: sfctl report RUN [--compare RUN…] --out DIR [--data DIR] [--redis ADDR]\n");
        return SFCTL_EXIT_USAGE;
    }
    if (!data || !*data) data = "sf-data";
    static char err[PATH_MAX * 4];
    for (int i = 0; i < nr; i++) {
        if (load_run(data, &runs[i], err, sizeof err) != 0) { sfctl_term_printf(stderr, "sfctl report: %s\n", err); return SFCTL_EXIT_FAIL; }
        /* Fig. 6's figures, when the run fine-tuned. */
        char fp[PATH_MAX * 2];
        snprintf(fp, sizeof fp, "%s/datasets/%s/finetune.json", data, runs[i].id);
        char *ft = sf_file_text(fp, NULL);
        runs[i].ft = ft ? cJSON_Parse(ft) : NULL;
        free(ft);
    }
    /* Classes: those of the runs, with their reference statistics. */
    static rclass_t cls[MAX_CLASSES];
    int nc = 0;
    const cJSON *tag = cJSON_GetObjectItem(runs[0].entries[0], "embedder");
    if (!cJSON_IsString(tag)) { fprintf(stderr, "sfctl report: the manifest does not name its embedder\n"); return SFCTL_EXIT_FAIL; }
    /* One reference set for every run: Table 1 measures against its means. */
    const cJSON *srcj = cJSON_GetObjectItem(runs[0].entries[0], "reference_source");
    const char *source = cJSON_IsString(srcj) ? srcj->valuestring : "world";
    if (!*source || strchr(source, '/') || source[0] == '.') {
        sfctl_term_printf(stderr, "sfctl report: the manifest's reference_source '%s' is not a folder name\n", source);
        return SFCTL_EXIT_FAIL;
    }
    for (int r = 1; r < nr; r++) {
        const cJSON *o = cJSON_GetObjectItem(runs[r].entries[0], "reference_source");
        if (strcmp(cJSON_IsString(o) ? o->valuestring : "world", source)) {
            sfctl_term_printf(stderr, "sfctl report: runs %s and %s compare with different reference sets (%s, %s); "
                              "report them apart\n", runs[0].id, runs[r].id, source,
                              cJSON_IsString(o) ? o->valuestring : "world");
            return SFCTL_EXIT_FAIL;
        }
    }
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < runs[r].n; j++) {
            const cJSON *w = cJSON_GetObjectItem(runs[r].entries[j], "class"), *nm = cJSON_GetObjectItem(runs[r].entries[j], "name");
            if (!cJSON_IsString(w) || class_index(cls, nc, w->valuestring) >= 0 || nc == MAX_CLASSES) continue;
            snprintf(cls[nc].wnid, sizeof cls[nc].wnid, "%s", w->valuestring);
            snprintf(cls[nc].name, sizeof cls[nc].name, "%s", cJSON_IsString(nm) ? nm->valuestring : w->valuestring);
            if (load_class(data, tag->valuestring, source, &cls[nc], err, sizeof err) != 0) {
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
    /* The scatter itself, for the held-out reference row. */
    double *scatter = malloc(sizeof(double) * K * K), ridge = 1e-6 * (pvar[0] > 0 ? pvar[0] : 1);
    memcpy(scatter, W, sizeof(double) * K * K);
    for (int a = 0; a < K * K; a++) W[a] /= (total - nc > 0 ? total - nc : 1);
    for (int a = 0; a < K; a++) W[(size_t)a * K + a] += ridge; /* keeps it invertible */
    if (sf_cholesky(W, K) != 0) { fprintf(stderr, "sfctl report: the base covariance is singular\n"); return SFCTL_EXIT_FAIL; }
    /* The reference row, held out, per class: base_sim[c] is s_ref of the
     * reductions. */
    double *base_sim = malloc(sizeof(double) * nc), *base_mahas = malloc(sizeof(double) * nc),
           *in_sim = malloc(sizeof(double) * nc), *in_maha = malloc(sizeof(double) * nc);
    reference_row(cls, nc, total, zall, cmu, W, scatter, ridge, K, base_sim, base_mahas, in_sim, in_maha);
    const double base_all = finite_mean(base_sim, nc), base_maha = finite_mean(base_mahas, nc);
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

    /* Caption diversity, before any output file is open: it runs the
     * world's parser as child processes. */
    char why[PATH_MAX + 100] = "";
    const int parsed = caption_diversity(runs, nr, why, sizeof why) == 0;
    if (!parsed) sfctl_term_printf(stderr, "sfctl report: %s; the attribute entropy is left out\n", why);

    /* ---- write ---- */
    mkdir(out, 0755);
    char path[PATH_MAX * 2];
    cJSON *js = cJSON_CreateObject();
    cJSON_AddNumberToObject(js, "pca_dims", K);
    cJSON_AddNumberToObject(js, "classes", nc);
    cJSON *t1 = cJSON_AddArrayToObject(js, "table1");
    cJSON *b = cJSON_CreateObject();
    /* Held out (reference_row); NaN, with one reference image a class, prints as null. */
    cJSON_AddStringToObject(b, "strategy", "reference images (held out)");
    cJSON_AddNumberToObject(b, "similarity_x100", 100 * base_all);
    cJSON_AddNumberToObject(b, "mahalanobis", base_maha);
    cJSON_AddNumberToObject(b, "in_sample_similarity_x100", 100 * finite_mean(in_sim, nc));
    cJSON_AddNumberToObject(b, "in_sample_mahalanobis", finite_mean(in_maha, nc));
    cJSON *bc = cJSON_AddArrayToObject(b, "per_class_similarity_x100");
    for (int c = 0; c < nc; c++) cJSON_AddItemToArray(bc, cJSON_CreateNumber(100 * base_sim[c]));
    cJSON_AddItemToArray(t1, b);
    snprintf(path, sizeof path, "%s/report.md", out);
    FILE *md = fopen(path, "w");
    snprintf(path, sizeof path, "%s/report.html", out);
    FILE *f = fopen(path, "w");
    if (!md || !f) { sfctl_term_printf(stderr, "sfctl report: cannot write to %s: %s\n", out, strerror(errno)); return SFCTL_EXIT_FAIL; }
    /* The base runs' mean accuracies, for the drops of Table 2 and of the
     * strategies over runs. */
    double base_acc[2] = {-1, -1};
    for (int m = 0; m < 2; m++) {
        double acc[MAX_RUNS];
        for (int r = 0; r < nr; r++)
            acc[r] = !strcmp(runs[r].strategy, "base") && runs[r].cls_acc[m] >= 0 ? runs[r].cls_acc[m] : NAN;
        double a = finite_mean(acc, nr);
        if (!isnan(a)) base_acc[m] = a;
    }
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
               ".bad{color:#b00}.wide{overflow-x:auto}#strategies td{white-space:nowrap}</style></head><body>\n<h1>shiftforge report</h1>\n<p>Runs:", runs[0].id);
    for (int r = 0; r < nr; r++) fprintf(f, " %s (%s)", runs[r].id, label(runs[r].strategy));
    fprintf(f, "; %d classes; embedder ", nc);
    sfctl_html_text(f, tag->valuestring);
    fputs(".</p>\n<h2>Table 1: distance from the base distribution</h2>\n<table id=\"table1\">", f);
    fputs("### Table 1: distance from the base distribution\n\n", md);
    char cell[8][64];
    const char *h1[8] = {"strategy", "run", "CLIP similarity ×100 to class mean ↓", "reduction vs reference",
                         "Mahalanobis (PCA) ↑", "kept by the filter", "similarity ×100, target class only",
                         "Mahalanobis, target class only"};
    for (int i = 0; i < 8; i++) snprintf(cell[i], 64, "%s", h1[i]);
    table_row(md, f, 1, 8, cell);
    snprintf(cell[0], 64, "reference images (held out)"), snprintf(cell[1], 64, "—");
    if (isnan(base_all)) snprintf(cell[2], 64, "—"), snprintf(cell[4], 64, "—");
    else snprintf(cell[2], 64, "%.2f", 100 * base_all), snprintf(cell[4], 64, "%.2f", base_maha);
    snprintf(cell[3], 64, "—");
    for (int i = 5; i < 8; i++) snprintf(cell[i], 64, "—");
    table_row(md, f, 0, 8, cell);
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        snprintf(cell[0], 64, "%s", label(R->strategy)), snprintf(cell[1], 64, "%s", R->id);
        snprintf(cell[2], 64, "%.2f", R->sim100);
        if (isnan(base_all)) snprintf(cell[3], 64, "—");
        else snprintf(cell[3], 64, "%.1f%%", 100 * (100 * base_all - R->sim100) / (100 * base_all));
        snprintf(cell[4], 64, "%.2f", R->maha), snprintf(cell[5], 64, "%.0f%%", 100 * R->keep_rate);
        if (isnan(R->f_sim100)) snprintf(cell[6], 64, "—"), snprintf(cell[7], 64, "—");
        else snprintf(cell[6], 64, "%.2f", R->f_sim100), snprintf(cell[7], 64, "%.2f", R->f_maha);
        table_row(md, f, 0, 8, cell);
    }
    char t1note[1200];
    snprintf(t1note, sizeof t1note,
             "Mahalanobis distance in CLIP space reduced to %d dimensions by PCA. Reference images (held out): each "
             "reference image against the mean of the other reference images of its class (and, for Mahalanobis, "
             "the covariance fitted without it; the PCA axes are fitted on all), as generated images are measured "
             "against statistics they are no part of; in sample they would read %.2f and %.2f. The reduction is "
             "relative to the held-out row. \"Target class only\": kept images in which the world's "
             "generator drew the class the caption was written for. Paper, for orientation (ImageNet, DeepFloyd "
             "IF, CLIP ViT-B/32): similarity ×100 83.50 for ImageNet images, 73.93 for the method's images.",
             K, 100 * finite_mean(in_sim, nc), finite_mean(in_maha, nc));
    fprintf(md, "\n%s\n", t1note);
    fprintf(f, "</table><p>%s</p>\n", t1note);

    /* Table 2 with each classifier's drop from the base runs' accuracy. */
    fputs("<h2>Table 2: classifiers on the kept images</h2>\n<table id=\"table2\">", f);
    fputs("\n### Table 2: classifiers on the kept images\n\n", md);
    const char *h2[8] = {"strategy", "run", "ConvNeXt accuracy", "ConvNeXt drop from base (points)", "ViT accuracy",
                         "ViT drop from base (points)", "ConvNeXt, target class only", "ViT, target class only"};
    for (int i = 0; i < 8; i++) snprintf(cell[i], 64, "%s", h2[i]);
    table_row(md, f, 1, 8, cell);
    cJSON *t2 = cJSON_AddArrayToObject(js, "table2");
    for (int r = 0; r < nr; r++) {
        const rrun_t *R = &runs[r];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "strategy", R->strategy);
        cJSON_AddStringToObject(o, "run", R->id);
        snprintf(cell[0], 64, "%s", label(R->strategy)), snprintf(cell[1], 64, "%.*s", (int)sizeof R->id, R->id);
        for (int m = 0; m < 2; m++) {
            static const char *const key[2][3] = {{"convnext_accuracy", "convnext_drop", "convnext_target_class_accuracy"},
                                                  {"vit_accuracy", "vit_drop", "vit_target_class_accuracy"}};
            if (R->cls_acc[m] >= 0) snprintf(cell[2 + 2 * m], 64, "%.1f%%", R->cls_acc[m]);
            else snprintf(cell[2 + 2 * m], 64, "—");
            if (R->cls_acc[m] >= 0 && base_acc[m] >= 0) {
                snprintf(cell[3 + 2 * m], 64, "%+.1f", base_acc[m] - R->cls_acc[m]);
                cJSON_AddNumberToObject(o, key[m][1], base_acc[m] - R->cls_acc[m]);
            } else snprintf(cell[3 + 2 * m], 64, "—");
            if (R->f_acc[m] >= 0) snprintf(cell[6 + m], 64, "%.1f%%", R->f_acc[m]);
            else snprintf(cell[6 + m], 64, "—");
            if (R->cls_acc[m] >= 0) cJSON_AddNumberToObject(o, key[m][0], R->cls_acc[m]);
            if (R->f_acc[m] >= 0) cJSON_AddNumberToObject(o, key[m][2], R->f_acc[m]);
        }
        table_row(md, f, 0, 8, cell);
        cJSON_AddItemToArray(t2, o);
    }
    static const char t2note[] =
        "Accuracy of the world's classifiers (trained on base images only) on each strategy's kept images; the drop is "
        "the base run's accuracy (the mean of the base runs') minus this one (positive: the strategy's images are "
        "harder), — without a base run. "
        "The paper's Table 2 (ConvNeXt-Atto and ViT-Tiny on ImageNet-trained weights, DeepFloyd IF images) is not "
        "quoted here: its figures are not part of this repository, and a world's drops are not comparable with "
        "ImageNet's in size.";
    fprintf(md, "\n%s\n", t2note);
    fprintf(f, "</table><p>%s</p>\n", t2note);
    write_real_table2(md, f, js, runs, nr, data);

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
        "Ground truth from the world's generator (each image's drawn_class, the class it drew): a failure is an "
        "image of another class or of no object. Recall: the share of failures the filter dropped; precision: the share of dropped "
        "images that were failures; class fidelity: the share of kept images that show the target class. The "
        "threshold is the embedder's (docs/models.md, \"The filter's threshold\") unless the run set one.";
    fprintf(md, "\n%s\n", t3note);
    fprintf(f, "</table><p>%s</p>\n", t3note);
    /* Fig. 6: fine-tuning gains (finetune.json of each run, when it has one). */
    fputs("<h2>Fine-tuning on base + generated images (Fig. 6)</h2>\n<table id=\"fig6\"><tr><th>strategy</th>"
          "<th>run</th><th>classifier</th><th>test set</th><th>original</th><th>base only</th><th>base + generated</th>"
          "<th>gain</th><th>run's classes: base only</th><th>base + generated</th><th>gain ± s.e.</th></tr>\n", f);
    cJSON *ftj = cJSON_AddArrayToObject(js, "finetune");
    FILE *md2 = md;
    if (md2) fputs("\n### Fig. 6: fine-tuning on base + generated images\n\n| strategy | run | classifier | test set | original | base only | base + generated | gain "
                   "| run's classes: base only | base + generated | gain ± s.e. |\n"
                   "|---|---|---|---|---|---|---|---|---|---|---|\n", md2);
    for (int r = 0; r < nr; r++) {
        const cJSON *o = runs[r].ft;
        if (!o) continue;
        /* The world's finetune.json has convnext and vit on world_R and
         * world_A; a real one lists its classifiers and test sets, and
         * measures the run's classes only (its whole-set columns are —). */
        const char *archs[SF_REPORT_FT_MAX] = {"convnext", "vit"}, *sets[SF_REPORT_FT_MAX] = {"world_R", "world_A"};
        int na = 2, nt = 2;
        const cJSON *ca = cJSON_GetObjectItem(o, "classifiers"), *ta = cJSON_GetObjectItem(o, "test_sets");
        if (cJSON_IsArray(ca) && cJSON_IsArray(ta)) {
            na = nt = 0;
            for (const cJSON *x = ca->child; x && na < SF_REPORT_FT_MAX; x = x->next)
                if (cJSON_IsString(x)) archs[na++] = x->valuestring;
            for (const cJSON *x = ta->child; x && nt < SF_REPORT_FT_MAX; x = x->next)
                if (cJSON_IsString(x)) sets[nt++] = x->valuestring;
        }
        for (const cJSON *sk = cJSON_GetObjectItem(o, "skipped_test_sets") ? cJSON_GetObjectItem(o, "skipped_test_sets")->child : NULL;
             sk; sk = sk->next) {
            fprintf(f, "<tr><td>%s</td><td>%s</td><td colspan=\"9\">test set %s left out: %s</td></tr>\n",
                    runs[r].strategy, runs[r].id, sk->string, cJSON_GetStringValue(sk));
            if (md2) fprintf(md2, "| %s | %s | test set %s left out: %s | | | | | | | | |\n", runs[r].strategy, runs[r].id,
                             sk->string, cJSON_GetStringValue(sk));
        }
        for (int a = 0; a < na; a++)
            for (int t = 0; t < nt; t++) {
                const cJSON *so = cJSON_GetObjectItem(cJSON_GetObjectItem(o, archs[a]), sets[t]);
                if (!so) continue;
                const cJSON *oj = cJSON_GetObjectItem(so, "original");
                double orig = cJSON_IsNumber(oj) ? oj->valuedouble : cJSON_GetNumberValue(cJSON_GetObjectItem(so, "original_run_classes"));
                double bo = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "base_only"));
                double wg = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "with_generated"));
                double bos = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "base_only_run_classes"));
                double wgs = cJSON_GetNumberValue(cJSON_GetObjectItem(so, "with_generated_run_classes"));
                /* Older finetune.json files have no standard error. */
                const cJSON *sej = cJSON_GetObjectItem(so, "gain_run_classes_se");
                char se[32] = "", c_bo[32], c_wg[32], c_g[32];
                if (cJSON_IsNumber(sej)) snprintf(se, sizeof se, " ± %.1f", sej->valuedouble);
                if (isnan(bo) || isnan(wg)) snprintf(c_bo, 32, "—"), snprintf(c_wg, 32, "—"), snprintf(c_g, 32, "—");
                else snprintf(c_bo, 32, "%.1f%%", bo), snprintf(c_wg, 32, "%.1f%%", wg), snprintf(c_g, 32, "%+.1f", wg - bo);
                fprintf(f, "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%.1f%%</td><td>%s</td><td>%s</td>"
                           "<td>%s</td><td>%.1f%%</td><td>%.1f%%</td><td>%+.1f%s</td></tr>\n", runs[r].strategy,
                        runs[r].id, archs[a], sets[t], orig, c_bo, c_wg, c_g, bos, wgs, wgs - bos, se);
                if (md2) fprintf(md2, "| %s | %s | %s | %s | %.1f%% | %s | %s | %s | %.1f%% | %.1f%% | %+.1f%s |\n",
                                 runs[r].strategy, runs[r].id, archs[a], sets[t], orig, c_bo, c_wg, c_g, bos, wgs,
                                 wgs - bos, se);
                cJSON *row = cJSON_CreateObject();
                cJSON_AddStringToObject(row, "strategy", runs[r].strategy);
                cJSON_AddStringToObject(row, "run", runs[r].id);
                cJSON_AddStringToObject(row, "classifier", archs[a]);
                cJSON_AddStringToObject(row, "test_set", sets[t]);
                cJSON_AddNumberToObject(row, "original", orig);
                if (!isnan(bo)) cJSON_AddNumberToObject(row, "base_only", bo);
                if (!isnan(wg)) cJSON_AddNumberToObject(row, "with_generated", wg);
                cJSON_AddNumberToObject(row, "base_only_run_classes", bos);
                cJSON_AddNumberToObject(row, "with_generated_run_classes", wgs);
                if (cJSON_IsNumber(sej)) cJSON_AddNumberToObject(row, "gain_run_classes_se", sej->valuedouble);
                cJSON_AddItemToArray(ftj, row);
            }
    }
    if (md2)
        fputs("\nGain = accuracy after fine-tuning on base + generated images minus after as many steps on base "
              "images alone, averaged over the fine-tuning seeds; the whole-set columns use 10 test images per "
              "class, the run's classes 100 each, with the standard error of the paired per-image gain. "
              SF_REPORT_FT_REAL "\n", md2);
    fputs("</table><p>Gain: fine-tuned on base + generated images, minus the control fine-tuned as long on base "
          "images alone, averaged over the fine-tuning seeds. Whole sets: 10 test images per class; the run's "
          "classes: 100 each, ± the standard error of the paired per-image gain. " SF_REPORT_FT_REAL "</p>\n", f);
    /* The strategies over their runs, and their captions' diversity. */
    write_strategies(md, f, js, runs, nr, base_acc);
    write_diversity(md, f, js, runs, nr, parsed, why);
    /* Where the SFT's captions came from, for runs with a corpus phase. */
    const char *ids[MAX_RUNS];
    for (int r = 0; r < nr; r++) ids[r] = runs[r].id;
    sfctl_report_corpus(md, f, js, data, ids, nr);
    fclose(md);
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
        sfctl_html_text(f, cls[c].name);
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
        sfctl_html_text(f, cls[c].name);
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
            sfctl_html_text(f, cls[c].name);
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
                const cJSON *cap = cJSON_GetObjectItem(e, "caption"), *oc = cJSON_GetObjectItem(e, "generator_outcome"),
                            *dc = cJSON_GetObjectItem(e, "drawn_class");
                const char *ctext = cJSON_IsString(cap) ? cap->valuestring : "";
                fputs("<figure><img title=\"", f);
                sfctl_html_text(f, ctext);
                fputs("\" alt=\"generated image\" src=\"data:image/png;base64,", f);
                b64(f, (const unsigned char *)png, len);
                fputs("\"><figcaption>", f);
                sfctl_html_text(f, ctext);
                /* What the world's generator drew, where it is known. */
                int d = drew_target(e);
                if (d == 1) fputs("<br><b>drew the class</b>", f);
                else if (d == 0) {
                    const int none = cJSON_IsNull(dc) || (!dc && cJSON_IsString(oc) && !strcmp(oc->valuestring, "no-object"));
                    fputs("<br><b class=\"bad\">drew ", f);
                    if (none) fputs("no object", f);
                    else if (cJSON_IsString(dc)) fputs("another class, ", f), sfctl_html_text(f, dc->valuestring);
                    else fputs("another class", f);
                    fputs("</b>", f);
                }
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
        cJSON_Delete(runs[r].ft);
        free(runs[r].named);
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
    free(base_mahas);
    free(scatter);
    free(in_sim);
    free(in_maha);
    return SFCTL_EXIT_OK;
}
