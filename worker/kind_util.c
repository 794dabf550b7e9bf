/* kind_util.c: small helpers the method's job kinds share (kind_util.h). */
#if SF_HAVE_TORCH
#include "worker/kind_util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/formats/safetensors.h"
#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "worker/model_cache.h"

int sf_kind_fail(sf_job_t *job, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(job->error, sizeof job->error, fmt, ap);
    va_end(ap);
    job->status = status;
    return -1;
}

static int is_result_field(const char *kind, const char *key) {
    const char *const *f = sf_job_result_fields(kind);
    for (int i = 0; f && f[i]; i++)
        if (!strcmp(f[i], key)) return 1;
    return 0;
}

int sf_kind_result(sf_job_t *job, cJSON *o) {
    /* The coordinator and the report read these fields by name: a field the
     * contract does not list is a bug of this worker, not the caller's. */
    for (const cJSON *it = o ? o->child : NULL; it; it = it->next)
        if (!is_result_field(job->kind, it->string)) {
            sf_kind_fail(job, SF_JOB_FATAL, "%s: result field '%s' is not in the contract", job->kind, it->string);
            cJSON_Delete(o);
            return -1;
        }
    char *js = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    if (!js) return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    free(job->out);
    job->out = js;
    job->out_len = strlen(js);
    job->status = SF_JOB_OK;
    return 0;
}

int sf_kind_safe_name(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 64) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '-'))
            return 0;
    return 1;
}

int sf_kind_class(const sf_world_t *w, sf_job_t *job) {
    int k = sf_world_class_find(w, job->wnid);
    if (k < 0) sf_kind_fail(job, SF_JOB_FATAL, "class '%s' is not in the world", job->wnid);
    return k;
}

int sf_kind_run_classes(const sf_world_t *w, sf_job_t *job, const char *mask, sf_classlist_t *out) {
    const int K = sf_world_n_classes(w), digits = (K + 3) / 4;
    out->v = NULL, out->n = 0;
    if (!strcmp(mask, "none")) return 0;
    if ((int)strlen(mask) != digits || strspn(mask, "0123456789abcdef") != (size_t)digits) {
        sf_kind_fail(job, SF_JOB_FATAL, "'run_classes' must be %d lowercase hex digits (a mask over the world's %d "
                                        "classes), not \"%.40s\"", digits, K, mask);
        return -1;
    }
    if (!(out->v = malloc(sizeof *out->v * (size_t)K))) {
        sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
        return -1;
    }
    for (int k = 0; k < K; k++) {
        int d = mask[k / 4] <= '9' ? mask[k / 4] - '0' : mask[k / 4] - 'a' + 10;
        if (d >> (k % 4) & 1) out->v[out->n++] = *sf_world_class(w, k);
    }
    return 0;
}

void sf_kind_run_dir(const sf_wk_env_t *env, const char *run, const char *sub, char *out, size_t n) {
    snprintf(out, n, "%s/runs/%s/%s", env->data_dir, run, sub);
}

void sf_kind_images_dir(const sf_wk_env_t *env, const sf_job_t *job, char *out, size_t n) {
    snprintf(out, n, "%s/runs/%s/images/%s", env->data_dir, job->run, job->wnid);
}

void sf_kind_captions_path(const sf_wk_env_t *env, const sf_job_t *job, char *dir, size_t dn, char *path, size_t pn) {
    sf_kind_run_dir(env, job->run, "captions", dir, dn);
    if (path) snprintf(path, pn, "%s/%s.jsonl", dir, job->wnid);
}

void sf_kind_stats_path(const sf_wk_env_t *env, const char *source, const char *wnid, char *out, size_t n) {
    snprintf(out, n, "%s/stats/%s/%s/%s.safetensors", env->data_dir, sf_mc.clip_tag, source, wnid);
}

int sf_kind_load_stats(const sf_wk_env_t *env, sf_job_t *job, float *mean, int E, float **emb, int *m) {
    char path[1400], err[256];
    if (emb) *emb = NULL;
    sf_kind_stats_path(env, job->params->reference_source, job->wnid, path, sizeof path);
    sf_st_t *st;
    if (sf_st_load(path, &st, err, sizeof err) != 0)
        return sf_kind_fail(job, SF_JOB_FAILED, "no reference statistics for %s (the embed phase writes %s): %s",
                            job->wnid, path, err);
    const sf_st_tensor_t *t = sf_st_find(st, "mean"), *x = emb ? sf_st_find(st, "embeddings") : NULL;
    int rc = t && t->numel == E ? sf_st_to_f32(t, mean, (size_t)E) : SF_EFORMAT;
    if (rc == 0 && emb) {
        rc = x && x->ndim == 2 && x->shape[1] == E && x->shape[0] >= 1 ? 0 : SF_EFORMAT;
        if (rc == 0 && !(*emb = malloc(sizeof(float) * (size_t)x->numel))) rc = SF_ENOMEM;
        if (rc == 0) *m = (int)x->shape[0], rc = sf_st_to_f32(x, *emb, (size_t)x->numel);
    }
    sf_st_free(&st);
    return rc ? sf_kind_fail(job, SF_JOB_FAILED, "%s: no 'mean' of %d floats%s", path, E,
                             emb ? " or no 'embeddings' of that width" : "")
              : 0;
}

int sf_kind_load_mean(const sf_wk_env_t *env, sf_job_t *job, float *mean, int E) {
    return sf_kind_load_stats(env, job, mean, E, NULL, NULL);
}

int sf_kind_embed_texts(char **texts, int n, float *out, sf_job_t *job) {
    const sf_clip_config_t *cfg = sf_clip_config(sf_mc.clip);
    const int T = cfg->context_length;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)n * T);
    if (!ids) return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    int L = 1;
    for (int i = 0; i < n; i++) {
        int l = sf_clip_bpe_encode(sf_mc.ctok, texts[i], ids + (size_t)i * T, T);
        L = l > L ? l : L;
    }
    for (int i = 0; i < n; i++) memmove(ids + (size_t)i * L, ids + (size_t)i * T, sizeof(int32_t) * L);
    int rc = sf_clip_encode_text(sf_mc.clip, ids, n, L, out);
    free(ids);
    return rc ? sf_kind_fail(job, SF_JOB_FAILED, "CLIP text: %s", sf_clip_errstr(sf_mc.clip)) : 0;
}

int sf_kind_filter_text(const sf_world_t *w, int k, float *out, sf_job_t *job) {
    char text[300], *tp = text;
    snprintf(text, sizeof text, "a photo of a %s", sf_world_class(w, k)->name);
    return sf_kind_embed_texts(&tp, 1, out, job);
}

double sf_kind_filter_threshold(const sf_shift_params_t *p) {
    return isnan(p->filter_threshold) ? sf_mc.clip_threshold : p->filter_threshold;
}

int sf_kind_embed_images(const uint8_t *const *rgb, int size, const int *ws, const int *hs, int n, float *out,
                         sf_job_t *job) {
    const sf_clip_config_t *cfg = sf_clip_config(sf_mc.clip);
    const int S = cfg->image_size, B = 64, E = cfg->embed_dim;
    float *px = malloc(sizeof(float) * B * 3 * S * S);
    if (!px) return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    int rc = 0;
    for (int i0 = 0; rc == 0 && i0 < n; i0 += B) {
        int b = n - i0 < B ? n - i0 : B;
        for (int j = 0; rc == 0 && j < b; j++)
            rc = sf_clip_preprocess(cfg, rgb[i0 + j], ws ? ws[i0 + j] : size, hs ? hs[i0 + j] : size,
                                    px + (size_t)j * 3 * S * S);
        if (rc == 0) rc = sf_clip_encode_image(sf_mc.clip, px, b, out + (size_t)i0 * E);
    }
    free(px);
    return rc ? sf_kind_fail(job, SF_JOB_FAILED, "CLIP image: %s", sf_clip_errstr(sf_mc.clip)) : 0;
}

/* GPT-2's byte-level tokens can stop in the middle of a character, and the
 * manifest is JSON, so every byte that does not start a complete,
 * shortest-form sequence becomes U+FFFD.  A NUL ends the text. */
char *sf_kind_utf8_clean(const char *s, size_t n) {
    char *out = malloc(n * 3 + 1), *o = out;
    if (!out) return NULL;
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && u[i]) {
        unsigned c = u[i];
        int len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        int ok = len > 0 && i + (size_t)len <= n;
        uint32_t cp = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (int k = 1; ok && k < len; k++) {
            ok = (u[i + k] & 0xc0) == 0x80;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        if (ok && ((len == 2 && cp < 0x80) || (len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
                   (len == 4 && (cp < 0x10000 || cp > 0x10ffff))))
            ok = 0;
        if (ok) {
            memcpy(o, s + i, (size_t)len);
            o += len, i += (size_t)len;
        } else {
            memcpy(o, "\xef\xbf\xbd", 3);
            o += 3, i++;
        }
    }
    *o = 0;
    return out;
}

void sf_kind_free_texts(char **t, int n) {
    for (int i = 0; t && i < n; i++) free(t[i]);
    free(t);
}

int sf_kind_jsonl_add(char **buf, size_t *len, size_t *cap, const cJSON *o) {
    char *line = cJSON_PrintUnformatted(o);
    if (!line) return SF_ENOMEM;
    size_t l = strlen(line), c = *cap ? *cap : 4096;
    while (*len + l + 2 > c) c *= 2;
    char *b = c != *cap ? realloc(*buf, c) : *buf;
    if (!b) {
        free(line);
        return SF_ENOMEM;
    }
    memcpy(b + *len, line, l);
    *len += l;
    b[(*len)++] = '\n';
    *buf = b, *cap = c;
    free(line);
    return 0;
}

uint64_t sf_kind_gen_seed(const sf_shift_params_t *p, const char *wnid, uint32_t item) {
    return sf_mix2(sf_mix2((uint64_t)p->seed, sf_fnv1a_str(wnid)), item) & 0xffffffffffffull;
}

#endif
