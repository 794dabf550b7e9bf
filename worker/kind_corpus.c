/* kind_corpus.c: corpus — the SFT corpus of one class, written by the
 * run's instruction model (corpus_model, an HF LLaMA folder) before the
 * learner fine-tunes the policy on it (docs/method.md, "The corpus phase").
 *
 * The prompt is the template with the instruction and the class's name put
 * in (common/method/corpus.h); each caption is the model's answer up to its
 * </s> or first line break.  An answer that is not a sentence naming the
 * class (sf_reward_check, the reward's own test, without the other-class
 * part: the corpus must not depend on which classes a run has) is drawn
 * again, all pending captions of the class in one batch per round, up to
 * corpus_attempts draws; a caption whose every draw failed is dropped and
 * counted.  A class with no caption at all fails the job: SFT on nothing
 * would teach the policy nothing about it.
 *
 * The corpus is stored once per (model, prompt, settings, class) under the
 * shared data_dir (sf_corpus_paths) and reused by every later job that asks
 * for the same; the run's own record, runs/<run>/corpus/<wnid>.json, says
 * which corpus it used and whether it was made or reused (the report reads
 * it).
 */
#if SF_HAVE_TORCH
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/method/corpus.h"
#include "common/method/reward.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "common/runtime/log.h"
#include "worker/kind_util.h"
#include "worker/kinds.h"
#include "worker/model_cache.h"

/* The first line of an answer, without surrounding blanks, in place. */
static char *first_line(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r') s++;
    s[strcspn(s, "\r\n")] = 0;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) s[--n] = 0;
    return s;
}

/* A stored corpus's meta object (new), or NULL when the corpus is not there
 * whole: no readable meta file (a job that died between the two writes)
 * or no lines file. */
static cJSON *stored(const char *jsonl, const char *meta) {
    char *t = access(jsonl, R_OK) == 0 ? sf_file_text(meta, NULL) : NULL;
    cJSON *m = t ? cJSON_Parse(t) : NULL;
    free(t);
    return m;
}

typedef struct {
    char **text;    /* accepted caption i, or NULL */
    uint64_t *seed; /* the seed of the round that drew it */
    int *row;       /* its row in that round */
    int *attempt;   /* 0-based round */
    int kept, rejected, resampled;
    char last_bad[200];
} draws_t;

/* Samples the class's n captions in rounds (see the top).  0, or -1 with
 * the job failed. */
static int draw(sf_job_t *job, const sf_shift_params_t *p, const char *key, const sf_class_t *cls,
                const int32_t *prompt, int plen, int n, draws_t *d) {
    const int V = sf_llama_config(sf_mc.llama)->vocab_size, T = (int)p->corpus_max_new_tokens,
              eos = sf_spm_eos_id(sf_mc.spm);
    int32_t *out = malloc(sizeof(int32_t) * (size_t)n * T);
    int *lengths = malloc(sizeof(int) * (size_t)n), *pending = malloc(sizeof(int) * (size_t)n), np = n, rc = 0;
    if (!out || !lengths || !pending) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    for (int i = 0; i < n; i++) pending[i] = i;
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = T;
    o.temperature = (float)p->corpus_temperature;
    o.top_p = (float)p->corpus_top_p;
    o.top_k = 0;
    o.eos_id = eos >= 0 && eos < V ? eos : -1;
    for (int a = 0; rc == 0 && np > 0 && a < (int)p->corpus_attempts; a++) {
        o.seed = sf_corpus_seed(key, job->wnid, a);
        if (sf_llama_sample(sf_mc.llama, prompt, plen, np, &o, out, lengths) != 0) {
            rc = sf_kind_fail(job, SF_JOB_FAILED, "corpus: sampling the instruction model: %s",
                              sf_llama_errstr(sf_mc.llama));
            break;
        }
        if (a > 0) d->resampled += np;
        int still = 0;
        for (int j = 0; j < np; j++) {
            /* A model whose vocabulary outgrew its tokenizer (an added pad
             * token) may draw an id the tokenizer lacks: a failed draw. */
            char *txt = NULL, none[1] = "";
            if (sf_spm_decode(sf_mc.spm, out + (size_t)j * T, lengths[j], &txt) < 0) txt = NULL;
            char *line = first_line(txt ? txt : none);
            const int i = pending[j];
            if (*line && sf_reward_check(cls, NULL, line) == SF_REWARD_OK) {
                d->text[i] = strdup(line);
                d->seed[i] = o.seed, d->row[i] = j, d->attempt[i] = a;
                d->kept++;
                if (!d->text[i]) rc = sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
            } else {
                snprintf(d->last_bad, sizeof d->last_bad, "%s", txt ? line : "(an id the tokenizer does not have)");
                pending[still++] = i;
            }
            free(txt);
        }
        np = still;
    }
    d->rejected = rc == 0 ? np : 0;
    free(out), free(lengths), free(pending);
    return rc;
}

/* The class's corpus lines (JSONL), then the meta file that says they are
 * whole; *meta_out (new) is that file's object.  0, or -1 with the job
 * failed. */
static int write_corpus(sf_job_t *job, const sf_shift_params_t *p, const sf_class_t *cls, const char *prompt,
                        const draws_t *d, int n, const char *dir, const char *jsonl, const char *meta,
                        cJSON **meta_out) {
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = 0;
    for (int i = 0; rc == 0 && i < n; i++) {
        if (!d->text[i]) continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "class", cls->wnid);
        cJSON_AddStringToObject(o, "name", cls->name);
        cJSON_AddStringToObject(o, "caption", d->text[i]);
        char hex[17];
        snprintf(hex, sizeof hex, "%016llx", (unsigned long long)d->seed[i]);
        cJSON_AddStringToObject(o, "seed", hex);
        cJSON_AddNumberToObject(o, "row", d->row[i]);
        cJSON_AddNumberToObject(o, "attempt", d->attempt[i]);
        cJSON_AddStringToObject(o, "model", p->corpus_model);
        cJSON_AddStringToObject(o, "prompt", prompt);
        rc = sf_kind_jsonl_add(&buf, &len, &cap, o);
        cJSON_Delete(o);
    }
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "class", cls->wnid);
    cJSON_AddStringToObject(m, "name", cls->name);
    cJSON_AddNumberToObject(m, "captions", d->kept);
    cJSON_AddNumberToObject(m, "rejected", d->rejected);
    cJSON_AddNumberToObject(m, "resampled", d->resampled);
    cJSON_AddStringToObject(m, "model", p->corpus_model);
    cJSON_AddStringToObject(m, "template", sf_corpus_template(p));
    cJSON_AddStringToObject(m, "instruction", p->corpus_instruction);
    cJSON_AddStringToObject(m, "prompt", prompt);
    cJSON_AddNumberToObject(m, "requested", n);
    cJSON_AddNumberToObject(m, "attempts", (double)p->corpus_attempts);
    cJSON_AddNumberToObject(m, "temperature", p->corpus_temperature);
    cJSON_AddNumberToObject(m, "top_p", p->corpus_top_p);
    cJSON_AddNumberToObject(m, "max_new_tokens", (double)p->corpus_max_new_tokens);
    cJSON_AddStringToObject(m, "made_by_run", job->run);
    char *mt = cJSON_PrintUnformatted(m);
    if (rc || !mt || sf_mkdir_p(dir, 0775) != 0 || sf_write_file_atomic(jsonl, buf ? buf : "", len) != 0 ||
        sf_write_file_atomic(meta, mt, strlen(mt)) != 0)
        rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s: %s", jsonl, strerror(errno));
    free(buf);
    cJSON_free(mt);
    if (rc) cJSON_Delete(m);
    else *meta_out = m;
    return rc;
}

/* Samples and stores the class's corpus (*meta_out: its meta object, new).
 * 0, or -1 with the job failed. */
static int make_corpus(const sf_wk_env_t *env, sf_job_t *job, const char *key, const sf_class_t *cls,
                       const char *dir, const char *jsonl, const char *meta, int *resampled, cJSON **meta_out) {
    const sf_shift_params_t *p = job->params;
    const int n = (int)job->item_count;
    char prompt[4096];
    int prc = sf_corpus_prompt(sf_corpus_template(p), p->corpus_instruction, cls->name, prompt, sizeof prompt);
    if (prc)
        return sf_kind_fail(job, SF_JOB_FATAL, "corpus: the prompt of %s: %s", job->wnid,
                            prc == SF_ERANGE ? "longer than 4095 bytes" : "the template needs {instruction} and "
                                                                          "one of them {class}");
    if (sf_mc_ensure_instruct(env, job, p->corpus_model)) return -1;
    const sf_llama_config_t *c = sf_llama_config(sf_mc.llama);
    int32_t ids[4096];
    int plen = sf_spm_encode(sf_mc.spm, prompt, 0, ids, 4096);
    if (plen < 0) return sf_kind_fail(job, SF_JOB_FATAL, "corpus: tokenizing the prompt: %s", sf_spm_errstr(sf_mc.spm));
    if (plen + p->corpus_max_new_tokens > c->max_position_embeddings)
        return sf_kind_fail(job, SF_JOB_FATAL, "corpus: the prompt of %s is %d tokens; with corpus_max_new_tokens "
                            "%ld that is more than the model's %d positions", job->wnid, plen,
                            p->corpus_max_new_tokens, c->max_position_embeddings);
    draws_t d = {0};
    d.text = calloc((size_t)n, sizeof *d.text);
    d.seed = calloc((size_t)n, sizeof *d.seed);
    d.row = calloc((size_t)n, sizeof *d.row);
    d.attempt = calloc((size_t)n, sizeof *d.attempt);
    int rc = !d.text || !d.seed || !d.row || !d.attempt ? sf_kind_fail(job, SF_JOB_FAILED, "out of memory") : 0;
    if (rc == 0) rc = draw(job, p, key, cls, ids, plen, n, &d);
    if (rc == 0 && d.rejected == n)
        rc = sf_kind_fail(job, SF_JOB_FATAL, "corpus: the instruction model %s wrote no caption of %s (%s) that is "
                          "a sentence naming the class, in %ld draws each; the last: \"%s\"", p->corpus_model,
                          job->wnid, cls->name, p->corpus_attempts, d.last_bad);
    if (rc == 0) rc = write_corpus(job, p, cls, prompt, &d, n, dir, jsonl, meta, meta_out);
    if (rc == 0 && d.rejected)
        sf_warn("corpus of %s: %d of %d captions dropped after %ld draws each failed the check; the last: \"%s\"",
                job->wnid, d.rejected, n, p->corpus_attempts, d.last_bad);
    *resampled = d.resampled;
    sf_kind_free_texts(d.text, n);
    free(d.seed), free(d.row), free(d.attempt);
    return rc;
}

/* runs/<run>/corpus/<wnid>.json: which corpus the run used, and how. */
static int write_run_record(const sf_wk_env_t *env, sf_job_t *job, const char *key_dir, const cJSON *meta,
                            int cached) {
    char dir[1400], path[1500];
    sf_kind_run_dir(env, job->run, "corpus", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/%s.json", dir, job->wnid);
    cJSON *o = cJSON_Duplicate(meta, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(o, "made_by_run");
    cJSON_AddStringToObject(o, "corpus", key_dir);
    cJSON_AddBoolToObject(o, "cached", cached);
    char *t = cJSON_PrintUnformatted(o);
    int rc = 0;
    if (!t || sf_mkdir_p(dir, 0775) != 0 || sf_write_file_atomic(path, t, strlen(t)) != 0)
        rc = sf_kind_fail(job, SF_JOB_FAILED, "cannot write %s: %s", path, strerror(errno));
    cJSON_free(t);
    cJSON_Delete(o);
    return rc;
}

static int corpus_locked(const sf_wk_env_t *env, sf_job_t *job) {
    const sf_shift_params_t *p = job->params;
    sf_world_t *w;
    int k;
    if (!strcmp(p->corpus_model, "none"))
        return sf_kind_fail(job, SF_JOB_FATAL, "corpus: the run names no corpus_model");
    if (!(w = sf_mc_world(p->world, job)) || (k = sf_kind_class(w, job)) < 0) return -1;
    char dir[1400], jsonl[1500], meta[1500], key_dir[64], key[17];
    sf_corpus_key(p, key);
    snprintf(key_dir, sizeof key_dir, "corpus/%s", key);
    sf_corpus_paths(env->data_dir, key, job->wnid, dir, sizeof dir, jsonl, sizeof jsonl, meta, sizeof meta);
    /* Reused as stored, or made now; either way its meta object says how. */
    cJSON *m = NULL;
    int resampled = 0;
    const int cached = (m = stored(jsonl, meta)) != NULL;
    if (!cached && make_corpus(env, job, key, sf_world_class(w, k), dir, jsonl, meta, &resampled, &m)) return -1;
    int rc = write_run_record(env, job, key_dir, m, cached);
    cJSON *o = rc ? NULL : cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "captions", cJSON_GetNumberValue(cJSON_GetObjectItem(m, "captions")));
        cJSON_AddNumberToObject(o, "rejected", cJSON_GetNumberValue(cJSON_GetObjectItem(m, "rejected")));
        cJSON_AddNumberToObject(o, "resampled", resampled);
        cJSON_AddBoolToObject(o, "cached", cached);
        cJSON_AddStringToObject(o, "corpus", key_dir);
        rc = sf_kind_result(job, o);
    }
    cJSON_Delete(m);
    return rc;
}

int sf_corpus_job(sf_wk_t *wk, sf_job_t *job) {
    sf_mc_lock();
    int rc = corpus_locked(sf_wk_env(wk), job);
    sf_mc_unlock();
    return rc;
}

#endif
