/* kind_policy.c: a job that samples captions with a policy (kind_policy.h). */
#if SF_HAVE_TORCH
#include "worker/kind_policy.h"

#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/text/sft_rows.h"
#include "worker/kind_util.h"
#include "worker/model_cache.h"

static void pjob_free(sf_pjob_t *pj) {
    free(pj->blob);
    if (pj->destroy) pj->destroy(pj);
    free(pj);
}

void sf_policy_done(sf_pjob_t *pj) {
    sf_job_t *job = pj->job;
    sf_wk_t *wk = pj->wk;
    pjob_free(pj);
    sf_wk_complete(wk, job);
}

static void policy_work(uv_work_t *wq) {
    sf_pjob_t *pj = wq->data;
    sf_mc_lock();
    pj->failed = pj->locked(pj) != 0;
    sf_mc_unlock();
}

static void policy_after(uv_work_t *wq, int status) {
    sf_pjob_t *pj = wq->data;
    if (status == UV_ECANCELED) sf_kind_fail(pj->job, SF_JOB_CANCELLED, "cancelled");
    if (status == UV_ECANCELED || pj->failed || !pj->after) sf_policy_done(pj);
    else pj->after(pj);
}

static void on_policy(void *arg, int status, const char *err, uint32_t version, const uint8_t *blob, size_t len,
                      int done) {
    sf_pjob_t *pj = arg;
    (void)done;
    if (status != 0) {
        sf_kind_fail(pj->job, SF_JOB_FAILED, "learner: %s", err && *err ? err : sf_strerror(status));
        sf_policy_done(pj);
        return;
    }
    pj->version = version;
    pj->blob = malloc(len ? len : 1);
    if (!pj->blob) {
        sf_kind_fail(pj->job, SF_JOB_FAILED, "out of memory");
        sf_policy_done(pj);
        return;
    }
    memcpy(pj->blob, blob, len);
    pj->blob_len = len;
    uv_queue_work(sf_wk_loop(pj->wk), &pj->work, policy_work, policy_after);
}

int sf_policy_start(sf_wk_t *wk, sf_job_t *job, sf_pjob_t *pj, int need_learner) {
    pj->job = job;
    pj->wk = wk;
    pj->env = sf_wk_env(wk);
    pj->p = job->params;
    pj->work.data = pj;
    if (!sf_kind_safe_name(job->run) || !sf_kind_safe_name(job->wnid)) {
        sf_kind_fail(job, SF_JOB_FATAL, "%s: bad run id or class", job->kind);
        goto refused;
    }
    if (!need_learner) {
        uv_queue_work(sf_wk_loop(wk), &pj->work, policy_work, policy_after);
        return 0;
    }
    sf_lc_t *lc = sf_mc_learner(wk);
    if (!lc) {
        sf_kind_fail(job, SF_JOB_FAILED, "cannot connect to the learner at %s", pj->env->learner);
        goto refused;
    }
    sf_lc_get_policy(lc, job->run, job->policy_version, on_policy, pj);
    return 0;
refused:
    pjob_free(pj);
    return -1;
}

int sf_policy_ensure(sf_pjob_t *pj, const char *file) {
    return sf_mc_ensure_policy(pj->env, pj->job, file, pj->version, pj->blob, pj->blob_len);
}

int sf_policy_sample(sf_pjob_t *pj, const sf_world_t *w, int k, int n, uint64_t seed, int32_t **prompt, int *plen,
                     sf_samples_t *out, char ***texts) {
    sf_job_t *job = pj->job;
    char buf[300];
    size_t np;
    if (sf_policy_prompt(sf_world_class(w, k)->name, buf, sizeof buf) != 0 ||
        sf_bpe_encode(sf_mc.bpe, buf, strlen(buf), prompt, &np) != 0)
        return sf_kind_fail(job, SF_JOB_FAILED, "cannot tokenise the prompt");
    *plen = (int)np;
    int32_t *prompts = malloc(sizeof(int32_t) * (size_t)n * np);
    int *lens = malloc(sizeof(int) * (size_t)n);
    *texts = calloc((size_t)n, sizeof **texts);
    if (!prompts || !lens || !*texts) {
        free(prompts);
        free(lens);
        return sf_kind_fail(job, SF_JOB_FAILED, "out of memory");
    }
    for (int i = 0; i < n; i++) memcpy(prompts + (size_t)i * np, *prompt, sizeof(int32_t) * np), lens[i] = (int)np;
    sf_sample_opts_t o;
    sf_sample_opts_default(&o);
    o.max_new_tokens = (int)pj->p->max_new_tokens;
    o.temperature = (float)pj->p->temperature;
    o.seed = seed;
    int rc = sf_gpt2_sample(sf_mc.policy, prompts, lens, n, (int)np, &o, out);
    free(prompts);
    free(lens);
    if (rc) return sf_kind_fail(job, SF_JOB_FAILED, "sampling: %s", sf_gpt2_errstr(sf_mc.policy));
    const int eos = sf_gpt2_config(sf_mc.policy)->eos_id;
    for (int i = 0; i < n; i++) {
        int L = out->lengths[i];
        const int32_t *t = out->tokens + (size_t)i * out->max_new;
        if (L > 0 && t[L - 1] == eos) L--;
        char *s = NULL;
        size_t sl;
        if (sf_bpe_decode(sf_mc.bpe, t, (size_t)L, &s, &sl) != 0) s = strdup(""), sl = 0;
        char *a = s;
        while (*a == ' ') a++;
        (*texts)[i] = sf_kind_utf8_clean(a, sl - (size_t)(a - s));
        free(s);
    }
    return 0;
}

#endif
