/* contract.c: the job contract's table and its readers and writers (see
 * contract.h). */
#include "common/method/contract.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/json_strict.h"

#define SF__SET_ROW_UINT(name, def) SF_SET_UINT, (double)(def), NULL
#define SF__SET_ROW_NUM(name, def) SF_SET_NUM, (double)(def), NULL
#define SF__SET_ROW_STR(name, def) SF_SET_STR, 0, def
#define SF__SET_ROW(name, type, def, mn, mx, kinds, flag, doc) \
    {#name, SF__SET_ROW_##type(name, def), mn, mx, kinds, flag, doc, offsetof(sf_shift_params_t, name)},

static const sf_setting_t table[] = {SF_SHIFT_SETTINGS(SF__SET_ROW)};
#define N_ROWS ((int)(sizeof table / sizeof table[0]))

const sf_setting_t *sf_shift_settings(int *n) {
    if (n) *n = N_ROWS;
    return table;
}

const sf_setting_t *sf_setting_find(const char *key) {
    int n;
    const sf_setting_t *t = sf_shift_settings(&n);
    for (int i = 0; key && i < n; i++)
        if (!strcmp(t[i].key, key)) return &t[i];
    return NULL;
}

const sf_setting_t *sf_setting_by_flag(const char *flag) {
    int n;
    const sf_setting_t *t = sf_shift_settings(&n);
    for (int i = 0; flag && i < n; i++)
        if (t[i].flag && !strcmp(t[i].flag, flag)) return &t[i];
    return NULL;
}

static const struct { const char *name; unsigned bit; } kinds[] = {
    {"embed", SF_K_EMBED},       {"rollout", SF_K_ROLLOUT}, {"captions", SF_K_CAPTIONS}, {"generate", SF_K_GENERATE},
    {"filter", SF_K_FILTER},     {"manifest", SF_K_MANIFEST}, {"finetune", SF_K_FINETUNE},
    {"classify", SF_K_CLASSIFY}, {"evaluate", SF_K_EVALUATE}, {"summarize", SF_K_SUMMARIZE},
    {"corpus", SF_K_CORPUS},
};

unsigned sf_job_kind_bit(const char *kind) {
    for (size_t i = 0; kind && i < sizeof kinds / sizeof kinds[0]; i++)
        if (!strcmp(kinds[i].name, kind)) return kinds[i].bit;
    return 0;
}

int sf_setting_planner_set(const sf_setting_t *s) { return s && strstr(s->doc, "(planner: ") != NULL; }

#define SF__SET_KEY(name, type, def, mn, mx, kinds, flag, doc) #name,
const char *const *sf_shift_spec_keys(void) {
    static const char *const keys[] = {"method", "name", "classes", "priority", "max_attempts", "lease_ms",
                                       "retry_base_ms", "retry_max_ms", "ppo", "sft",
                                       SF_SHIFT_SETTINGS(SF__SET_KEY) NULL};
    return keys;
}
#undef SF__SET_KEY

static void set_default(const sf_setting_t *s, sf_shift_params_t *p) {
    char *f = (char *)p + s->off;
    if (s->type == SF_SET_UINT) *(long *)f = (long)s->def;
    else if (s->type == SF_SET_NUM) *(double *)f = s->def;
    else snprintf(f, SF_SET_STR_MAX, "%s", s->sdef);
}

void sf_shift_params_init(sf_shift_params_t *p) {
    int n;
    const sf_setting_t *t = sf_shift_settings(&n);
    memset(p, 0, sizeof *p);
    for (int i = 0; i < n; i++) set_default(&t[i], p);
}

/* Reads one setting's value from it into p; what names it in errors is
 * `where` ("run spec", "payload of filter"). */
static int read_one(const sf_setting_t *s, const cJSON *it, sf_shift_params_t *p, const char *where, char *err,
                    size_t n) {
    char *f = (char *)p + s->off;
    if (s->type == SF_SET_STR) {
        if (!cJSON_IsString(it) || !*it->valuestring || strlen(it->valuestring) >= SF_SET_STR_MAX)
            return sf_errf(SF_EINVAL, err, n, "%s: '%s' must be a non-empty string of at most %d bytes", where, s->key,
                           SF_SET_STR_MAX - 1);
        snprintf(f, SF_SET_STR_MAX, "%s", it->valuestring);
        return 0;
    }
    double v = cJSON_IsNumber(it) ? it->valuedouble : NAN;
    if (s->type == SF_SET_UINT) {
        if (!(v >= s->min && v <= s->max) || v != floor(v))
            return sf_errf(SF_EINVAL, err, n, "%s: '%s' must be a whole number in [%.0f, %.0f]", where, s->key, s->min,
                           s->max);
        *(long *)f = (long)v;
        return 0;
    }
    if (!(v >= s->min && v <= s->max))
        return sf_errf(SF_EINVAL, err, n, "%s: '%s' must be a number in [%g, %g]", where, s->key, s->min, s->max);
    *(double *)f = v;
    return 0;
}

int sf_shift_params_from_spec(const cJSON *spec, sf_shift_params_t *p, char *err, size_t n) {
    int nt;
    const sf_setting_t *t = sf_shift_settings(&nt);
    sf_shift_params_init(p);
    for (int i = 0; i < nt; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(spec, t[i].key);
        int rc = it ? read_one(&t[i], it, p, "run spec", err, n) : 0;
        if (rc) return rc;
    }
    return 0;
}

cJSON *sf_job_payload(const char *kind, const sf_shift_params_t *p) {
    int nt;
    const sf_setting_t *t = sf_shift_settings(&nt);
    const unsigned bit = sf_job_kind_bit(kind);
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; o && bit && i < nt; i++) {
        if (!(t[i].kinds & bit)) continue;
        const char *f = (const char *)p + t[i].off;
        if (t[i].type == SF_SET_UINT) cJSON_AddNumberToObject(o, t[i].key, (double)*(const long *)f);
        else if (t[i].type == SF_SET_NUM) {
            /* Unset (NAN): the worker's default applies. */
            if (!isnan(*(const double *)f)) cJSON_AddNumberToObject(o, t[i].key, *(const double *)f);
        }
        else cJSON_AddStringToObject(o, t[i].key, f);
    }
    return o;
}

int sf_job_params_parse(const char *kind, const char *payload, size_t len, sf_shift_params_t *p, char *err,
                        size_t n) {
    char where[64];
    snprintf(where, sizeof where, "payload of %s", kind);
    sf_shift_params_init(p);
    if (!payload || !len) return 0;
    /* Strict: a key twice would be read once and looped over twice, and
     * text after the object would be ignored (json_strict.h). */
    cJSON *o;
    int prc = sf_json_parse_strict(payload, len, where, &o, err, n);
    if (prc) return prc;
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return sf_errf(SF_EINVAL, err, n, "%s: not a JSON object", where);
    }
    const unsigned bit = sf_job_kind_bit(kind);
    int rc = 0;
    for (const cJSON *it = o->child; !rc && it; it = it->next) {
        const sf_setting_t *s = sf_setting_find(it->string);
        if (!s || !(s->kinds & bit)) rc = sf_errf(SF_EINVAL, err, n, "%s: unknown key '%s'", where, it->string);
        else rc = read_one(s, it, p, where, err, n);
    }
    cJSON_Delete(o);
    return rc;
}

int sf_setting_list(const char *s, char out[][SF_SET_STR_MAX], int max) {
    int n = 0;
    for (const char *a = s;; n++) {
        const char *b = strchr(a, ',');
        size_t l = b ? (size_t)(b - a) : strlen(a);
        if (l == 0 || l >= SF_SET_STR_MAX || n == max) return -1;
        memcpy(out[n], a, l);
        out[n][l] = 0;
        if (!b) return n + 1;
        a = b + 1;
    }
}

int sf_real_classifiers(const sf_shift_params_t *p) { return strcmp(p->classifiers, "world") != 0; }

const char *const *sf_job_result_fields(const char *kind) {
    static const char *const embed[] = {"n", "cached", "unreadable", "embedder", NULL};
    static const char *const rollout[] = {"n", "accepted", "stale", "policy_version", "learner_version",
                                          "mean_score", "nonsense", "example", NULL};
    static const char *const captions[] = {"captions", "nonsense", "resampled", "policy_version", NULL};
    static const char *const generate[] = {"generated", "generator_failures", NULL};
    static const char *const filter[] = {"kept", "dropped", "filter_threshold", NULL};
    /* finetune.json: the settings used and, per classifier and test set,
     * the accuracies (docs/evaluation.md, Fig. 6). */
    static const char *const finetune[] = {"images_per_class", "generated_images", "steps", "batch",
                                           "learning_rate", "seeds", "test_images_per_class",
                                           "test_images_per_run_class", "convnext", "vit", "classifier", "seed",
                                           "variant", "base_images", "resumed_from_step", NULL};
    /* Real classifiers (docs/evaluation.md): Table 2's labels per class, the
     * test sets' labels per class, and finetune.json. */
    static const char *const classify[] = {"generated_images", "reference_images", "unreadable", "accuracy", NULL};
    static const char *const evaluate[] = {"images", "unreadable", "absent_sets", NULL};
    static const char *const summarize[] = {"classifiers", "test_sets", "images_per_class", "steps", "batch",
                                            "learning_rate", "seeds", NULL};
    /* The corpus phase: a class's captions, those dropped after every
     * attempt failed the check, the redraws, and whether an earlier run's
     * corpus was reused (docs/method.md). */
    static const char *const corpus[] = {"captions", "rejected", "resampled", "cached", "corpus", NULL};
    switch (sf_job_kind_bit(kind)) {
    case SF_K_CORPUS: return corpus;
    case SF_K_EMBED: return embed;
    case SF_K_ROLLOUT: return rollout;
    case SF_K_CAPTIONS: return captions;
    case SF_K_GENERATE: return generate;
    case SF_K_FILTER: return filter;
    case SF_K_FINETUNE: return finetune;
    case SF_K_CLASSIFY: return classify;
    case SF_K_EVALUATE: return evaluate;
    case SF_K_SUMMARIZE: return summarize;
    default: return NULL;
    }
}
