/* run_spec.c: see run_spec.h. */
#include "common/method/run_spec.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/json_strict.h"

int sf_spec_keys(const cJSON *obj, const char *const *allowed, char *err, size_t n) {
    for (const cJSON *it = obj ? obj->child : NULL; it; it = it->next) {
        int ok = 0;
        for (const char *const *a = allowed; *a && !ok; a++) ok = strcmp(*a, it->string) == 0;
        if (!ok) return sf_errf(SF_EINVAL, err, n, "run spec: unknown key '%s'", it->string);
        /* A key given twice: readers see the first, the planner rewrites
         * one, and the stored spec would not plan the same run again. */
        for (const cJSON *p = obj->child; p != it; p = p->next)
            if (strcmp(p->string, it->string) == 0)
                return sf_errf(SF_EINVAL, err, n, "run spec: key '%s' is given twice", it->string);
    }
    /* And at any depth below (a phase's payload, an object of "ppo"): the
     * spec text may come from any client, or straight from Redis. */
    return obj ? sf_json_unique_keys(obj, "run spec", err, n) : 0;
}

int sf_spec_uint(const cJSON *obj, const char *key, long def, long min, long max, long *out, char *err, size_t n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) { *out = def; return 0; }
    /* Checked as a double before the conversion: one outside long's range
     * (1e300) converted to long is undefined behaviour. */
    if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble))
        return sf_errf(SF_EINVAL, err, n, "run spec: '%s' must be a whole number", key);
    if (!(it->valuedouble >= (double)min && it->valuedouble <= (double)max))
        return sf_errf(SF_EINVAL, err, n, "run spec: '%s' = %.15g is outside [%ld, %ld]", key, it->valuedouble, min,
                       max);
    *out = (long)it->valuedouble;
    return 0;
}

int sf_spec_num(const cJSON *obj, const char *key, double def, double min, double max, double *out, char *err,
                size_t n) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) { *out = def; return 0; }
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= min && it->valuedouble <= max))
        return sf_errf(SF_EINVAL, err, n, "run spec: '%s' must be a number in [%g, %g]", key, min, max);
    *out = it->valuedouble;
    return 0;
}

int sf_spec_models_path_ok(const char *s) {
    size_t l = strlen(s);
    if (l == 0 || l > 255 || s[0] == '/') return 0;
    for (const char *c = s; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == '.' ||
              *c == '_' || *c == '-' || *c == '/'))
            return 0;
    for (const char *c = s; c; c = strchr(c, '/')) {
        if (*c == '/') c++;
        if (*c == '/' || *c == 0 || (c[0] == '.' && (c[1] == '/' || c[1] == 0)) ||
            (c[0] == '.' && c[1] == '.' && (c[2] == '/' || c[2] == 0)))
            return 0;
    }
    return 1;
}

/* An error of a nested object: "run spec: in 'ppo', 'x' …". */
static int nested(int rc, const char *obj, const char *e, char *err, size_t n) {
    const char *m = strncmp(e, "run spec: ", 10) ? e : e + 10;
    return sf_errf(rc, err, n, "run spec: in '%s', %s", obj, m);
}

void sf_ppo_spec_init(sf_ppo_spec_t *p) {
    p->updates = 100;
    p->batch_size = 64;
    p->mini_batch_size = 8;
    p->ppo_epochs = 4;
    p->max_staleness = 2;
    p->prompt_baseline = 1;
    p->use_rollout_logprobs = -1;
    p->learning_rate = p->init_kl_coef = p->target = p->horizon = p->cliprange = p->cliprange_value = p->vf_coef =
        p->gamma = p->lam = p->max_grad_norm = NAN;
}

int sf_ppo_spec_parse(const cJSON *spec, sf_ppo_spec_t *p, char *err, size_t n) {
    const cJSON *ppo = cJSON_GetObjectItemCaseSensitive(spec, "ppo");
    if (ppo && !cJSON_IsObject(ppo)) return sf_errf(SF_EINVAL, err, n, "run spec: 'ppo' must be an object");
    static const char *const allowed[] = {
        "updates", "batch_size", "mini_batch_size", "ppo_epochs", "max_staleness", "learning_rate", "init_kl_coef",
        "target", "horizon", "cliprange", "cliprange_value", "vf_coef", "gamma", "lam", "max_grad_norm",
        "prompt_baseline", "use_rollout_logprobs", NULL};
    char e[256] = "";
    int rc;
    if ((rc = sf_spec_keys(ppo, allowed, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "updates", p->updates, 1, 10000000, &p->updates, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "batch_size", p->batch_size, 1, 65536, &p->batch_size, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "mini_batch_size", p->mini_batch_size, 1, 65536, &p->mini_batch_size, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "ppo_epochs", p->ppo_epochs, 1, 100, &p->ppo_epochs, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "max_staleness", p->max_staleness, 0, 1000, &p->max_staleness, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "prompt_baseline", p->prompt_baseline, 0, 1, &p->prompt_baseline, e, sizeof e)) ||
        (rc = sf_spec_uint(ppo, "use_rollout_logprobs", p->use_rollout_logprobs, 0, 1, &p->use_rollout_logprobs, e,
                           sizeof e)) ||
        (rc = sf_spec_num(ppo, "learning_rate", p->learning_rate, 1e-12, 1, &p->learning_rate, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "init_kl_coef", p->init_kl_coef, 0, 100, &p->init_kl_coef, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "target", p->target, 1e-6, 1e6, &p->target, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "horizon", p->horizon, 1, 1e9, &p->horizon, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "cliprange", p->cliprange, 0, 10, &p->cliprange, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "cliprange_value", p->cliprange_value, 0, 1e6, &p->cliprange_value, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "vf_coef", p->vf_coef, 0, 100, &p->vf_coef, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "gamma", p->gamma, 0, 1, &p->gamma, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "lam", p->lam, 0, 1, &p->lam, e, sizeof e)) ||
        (rc = sf_spec_num(ppo, "max_grad_norm", p->max_grad_norm, 0, 1e6, &p->max_grad_norm, e, sizeof e)))
        return nested(rc, "ppo", e, err, n);
    /* Unset: the rollouts' own log-probs whenever a rollout may be older than
     * the policy it trains (docs/method.md, "Stale rollouts"). */
    if (p->use_rollout_logprobs < 0) p->use_rollout_logprobs = p->max_staleness > 0;
    if (p->batch_size % p->mini_batch_size != 0)
        return sf_errf(SF_EINVAL, err, n, "run spec: in 'ppo', 'batch_size' %ld must be a multiple of "
                                          "'mini_batch_size' %ld", p->batch_size, p->mini_batch_size);
    return 0;
}

int sf_sft_spec_parse(const cJSON *spec, sf_sft_spec_t *s, char *err, size_t n) {
    memset(s, 0, sizeof *s);
    const cJSON *sft = cJSON_GetObjectItemCaseSensitive(spec, "sft");
    if (!sft) return 0;
    if (!cJSON_IsObject(sft)) return sf_errf(SF_EINVAL, err, n, "run spec: 'sft' must be an object");
    s->on = 1;
    static const char *const allowed[] = {"steps", "batch_size", "learning_rate", "min_learning_rate", "warmup",
                                          "captions_per_class", "corpus", NULL};
    char e[256] = "";
    int rc;
    if (!cJSON_GetObjectItemCaseSensitive(sft, "steps"))
        return sf_errf(SF_EINVAL, err, n, "run spec: in 'sft', 'steps' is required");
    if ((rc = sf_spec_keys(sft, allowed, e, sizeof e)) ||
        (rc = sf_spec_uint(sft, "steps", 0, 1, 10000000, &s->steps, e, sizeof e)) ||
        (rc = sf_spec_uint(sft, "batch_size", 16, 1, 4096, &s->batch_size, e, sizeof e)) ||
        (rc = sf_spec_uint(sft, "warmup", s->steps / 10 < 100 ? s->steps / 10 : 100, 0, 10000000, &s->warmup, e,
                           sizeof e)) ||
        (rc = sf_spec_uint(sft, "captions_per_class", 16, 1, 64, &s->captions_per_class, e, sizeof e)) ||
        (rc = sf_spec_num(sft, "learning_rate", 3e-3, 1e-9, 10, &s->learning_rate, e, sizeof e)) ||
        (rc = sf_spec_num(sft, "min_learning_rate", s->learning_rate / 10, 0, 10, &s->min_learning_rate, e,
                          sizeof e)))
        return nested(rc, "sft", e, err, n);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(sft, "corpus");
    if (c && (!cJSON_IsString(c) || (strcmp(c->valuestring, "world") && !sf_spec_models_path_ok(c->valuestring))))
        return sf_errf(SF_EINVAL, err, n,
                       "run spec: in 'sft', 'corpus' must be \"world\" or a JSONL file's path inside the learner's "
                       "models_dir (letters, digits, '.', '_', '-', '/'; not absolute, no '..')");
    if (c && strcmp(c->valuestring, "world")) snprintf(s->corpus, sizeof s->corpus, "%s", c->valuestring);
    return 0;
}
