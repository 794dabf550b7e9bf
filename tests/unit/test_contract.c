/* test_contract.c: the job contract of method "shift"
 * (common/method/contract.h) against its documentation and its promises.
 *
 *   docs       docs/configuration.md's table of the method's keys has a row
 *              "| `key` | type | default | meaning |" for every setting, with
 *              the contract's type and default, and no key the method lacks
 *              (the rule for defaults is written above that table); and
 *              every key of its table of the learner's settings is one a
 *              submitted spec may carry (run_spec.c's "ppo" and "sft");
 *   spec       sf_shift_params_from_spec: defaults, values, bounds errors;
 *   payload    sf_job_payload: the keys of each kind;
 *   parse      sf_job_params_parse: unknown keys, wrong types, out of range;
 *   round trip spec -> params -> payload -> params, kind by kind.
 *
 * Expected values are docs/configuration.md's or written here by hand. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/method/contract.h"
#include "common/method/run_spec.h"
#include "common/runtime/error.h"
#include "common/runtime/fileio.h"
#include "tests/unit/sf_test.h"

/* ---- the docs table ----------------------------------------------------- */

#define MAX_ROWS 64

typedef struct {
    char key[64], type[32], def[256];
} doc_row_t;

/* Trims spaces at both ends of s, in place. */
static char *trim(char *s) {
    while (*s == ' ') s++;
    size_t l = strlen(s);
    while (l && s[l - 1] == ' ') s[--l] = 0;
    return s;
}

static const char method_section[] = "\n### Method `shift`";
static const char learner_section[] = "\n### Learner settings in a run spec";

/* The rows of the table under `section` (up to the next heading), one for
 * each `key` in a row's first cell ("`sft.learning_rate`,
 * `sft.min_learning_rate`" is two); -1 when the file or the section is
 * missing. */
static int read_doc_rows(const char *section, doc_row_t *rows, int max) {
    const char *root = getenv("SF_ROOT");
    char path[4096];
    snprintf(path, sizeof path, "%s/docs/configuration.md", root && *root ? root : ".");
    char *txt, err[256];
    if (sf_read_file(path, SF_READ_ANY_SIZE, &txt, NULL, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    char *sec = strstr(txt, section);
    if (!sec) { free(txt); return -1; }
    sec++;
    char *end = strstr(sec + 1, "\n#");
    if (end) *end = 0;
    int n = 0;
    for (char *line = sec, *next; line && n < max; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (strncmp(line, "| `", 3)) continue;
        /* "| `key` | type | default | meaning |": cells 1, 2, 3. */
        char *cell[4] = {0};
        char *c = line + 1;
        for (int k = 0; k < 4 && c; k++) {
            char *bar = strchr(c, '|');
            if (bar) *bar = 0;
            cell[k] = trim(c);
            c = bar ? bar + 1 : NULL;
        }
        if (!cell[2]) continue;
        for (char *k = strchr(cell[0], '`'); k && n < max;) {
            char *ke = strchr(k + 1, '`');
            if (!ke) break;
            snprintf(rows[n].key, sizeof rows[n].key, "%.*s", (int)(ke - k - 1), k + 1);
            snprintf(rows[n].type, sizeof rows[n].type, "%s", cell[1]);
            snprintf(rows[n].def, sizeof rows[n].def, "%s", cell[2]);
            n++;
            k = strchr(ke + 1, '`');
        }
    }
    free(txt);
    return n;
}

/* 1 if the whole of s is one number equal to v (integers: digits only). */
static int cell_is_number(const char *s, double v, int integer) {
    if (integer && s[strspn(s, "-0123456789")]) return 0;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    return *s && !*end && !errno && d == v;
}

/* 1 if some token of s (a run of number characters) is the number v. */
static int cell_has_number(const char *s, double v) {
    for (const char *p = s; *p;) {
        size_t l = strspn(p, "-+.0123456789eE");
        if (l) {
            char tok[64];
            snprintf(tok, sizeof tok, "%.*s", (int)(l < 63 ? l : 63), p);
            if (cell_is_number(tok, v, 0)) return 1;
            p += l;
        } else {
            p++;
        }
    }
    return 0;
}

/* Whether a docs default cell says what the contract's default is; the rule
 * written above the table in docs/configuration.md. */
static int default_matches(const sf_setting_t *s, const char *cell) {
    static const char planner[] = "set by the coordinator";
    char quoted[SF_SET_STR_MAX + 2];
    if (s->type == SF_SET_STR) snprintf(quoted, sizeof quoted, "`%s`", s->sdef);
    /* Unset (NAN) defaults: the worker chooses; the cell says "unset". */
    if (s->type == SF_SET_NUM && isnan(s->def)) return !strncmp(cell, "unset", 5);
    if (!sf_setting_planner_set(s)) {
        if (s->type == SF_SET_STR) return !strcmp(cell, quoted);
        return cell_is_number(cell, s->def, s->type == SF_SET_UINT);
    }
    if (strncmp(cell, planner, sizeof planner - 1)) return 0;
    if (s->type == SF_SET_STR) return strstr(cell, quoted) != NULL;
    return cell_has_number(cell + sizeof planner - 1, s->def);
}

TEST(test_docs_list_every_setting_with_its_type_and_default) {
    doc_row_t rows[MAX_ROWS];
    int nr = read_doc_rows(method_section, rows, MAX_ROWS);
    CHECK(nr > 0);
    int n;
    const sf_setting_t *t = sf_shift_settings(&n);
    CHECK(n >= 20);
    static const char *const type_names[] = {[SF_SET_UINT] = "integer", [SF_SET_NUM] = "number",
                                             [SF_SET_STR] = "string"};
    int bad = 0;
    for (int i = 0; i < n; i++) {
        const doc_row_t *row = NULL;
        for (int j = 0; j < nr && !row; j++)
            if (!strcmp(rows[j].key, t[i].key)) row = &rows[j];
        if (!row) {
            fprintf(stderr, "docs/configuration.md: no row for setting '%s'\n", t[i].key);
            bad++;
        } else if (strcmp(row->type, type_names[t[i].type])) {
            fprintf(stderr, "docs: '%s' has type '%s', the contract '%s'\n", t[i].key, row->type,
                    type_names[t[i].type]);
            bad++;
        } else if (!default_matches(&t[i], row->def)) {
            char def[SF_SET_STR_MAX + 8];
            if (t[i].type == SF_SET_STR) snprintf(def, sizeof def, "\"%s\"", t[i].sdef);
            else snprintf(def, sizeof def, "%.15g", t[i].def);
            fprintf(stderr, "docs: '%s' has default '%s', the contract %s%s\n", t[i].key, row->def, def,
                    sf_setting_planner_set(&t[i]) ? " (set by the coordinator)" : "");
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
}

TEST(test_docs_list_no_key_the_method_lacks) {
    doc_row_t rows[MAX_ROWS];
    int nr = read_doc_rows(method_section, rows, MAX_ROWS);
    CHECK(nr > 0);
    const char *const *keys = sf_shift_spec_keys();
    int bad = 0;
    for (int j = 0; j < nr; j++) {
        int found = 0;
        for (const char *const *k = keys; *k && !found; k++) found = !strcmp(*k, rows[j].key);
        if (!found) {
            fprintf(stderr, "docs: row '%s' is no key of method shift\n", rows[j].key);
            bad++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* The two keys of the table that are the learner's, not settings. */
    int seen = 0;
    for (int j = 0; j < nr; j++) seen += !strcmp(rows[j].key, "ppo") || !strcmp(rows[j].key, "sft");
    CHECK_EQ_INT(seen, 2);
}

/* 1 if the spec key `key` ("seed", "ppo.updates", "sft.corpus") is one the
 * coordinator accepts in a spec of method shift, else 0 (with why on
 * stderr when `say`).
 * A sub-key of "ppo" or "sft" is tried on run_spec.c's reader, which the
 * coordinator and the learner share: what it calls unknown is no key. */
static int spec_may_carry(const char *key, int say) {
    const char *dot = strchr(key, '.');
    char top[64];
    snprintf(top, sizeof top, "%.*s", dot ? (int)(dot - key) : (int)strlen(key), key);
    int found = 0;
    for (const char *const *k = sf_shift_spec_keys(); *k && !found; k++) found = !strcmp(*k, top);
    if (!found || !dot) {
        if (!found && say) fprintf(stderr, "docs: '%s' is no key of a run spec of method shift\n", key);
        return found;
    }
    char json[256], err[256] = "";
    int rc;
    if (!strcmp(top, "ppo")) {
        snprintf(json, sizeof json, "{\"ppo\":{\"%s\":1}}", dot + 1);
        cJSON *spec = cJSON_Parse(json);
        sf_ppo_spec_t p;
        sf_ppo_spec_init(&p);
        rc = sf_ppo_spec_parse(spec, &p, err, sizeof err);
        cJSON_Delete(spec);
    } else if (!strcmp(top, "sft")) {
        snprintf(json, sizeof json, "{\"sft\":{\"steps\":10,\"%s\":1}}", dot + 1);
        cJSON *spec = cJSON_Parse(json);
        sf_sft_spec_t s;
        rc = sf_sft_spec_parse(spec, &s, err, sizeof err);
        cJSON_Delete(spec);
    } else {
        if (say) fprintf(stderr, "docs: '%s': '%s' has no sub-keys\n", key, top);
        return 0;
    }
    if (rc && strstr(err, "unknown key")) {
        if (say) fprintf(stderr, "docs: '%s' is no key of a run spec: %s\n", key, err);
        return 0;
    }
    return 1;
}

/* The learner's table documents keys of the same spec that a client submits:
 * one the coordinator refuses (as it did "policy_config", a learner-only key
 * no submitted spec could carry) must not be on it. */
TEST(test_docs_learner_keys_are_keys_a_spec_may_carry) {
    doc_row_t rows[MAX_ROWS];
    int nr = read_doc_rows(learner_section, rows, MAX_ROWS);
    CHECK(nr >= 10);
    int bad = 0, split = 0;
    for (int j = 0; j < nr; j++) {
        bad += !spec_may_carry(rows[j].key, 1);
        split += !strcmp(rows[j].key, "sft.min_learning_rate") || !strcmp(rows[j].key, "ppo.max_grad_norm");
    }
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(split, 2); /* the rows that name several keys were read key by key */
    /* The check itself: a key the coordinator refuses, at either level, fails it. */
    CHECK(!spec_may_carry("policy_config", 0));
    CHECK(!spec_may_carry("ppo.learnig_rate", 0));
    CHECK(!spec_may_carry("sft.stepz", 0));
    CHECK(spec_may_carry("ppo.cliprange", 1) && spec_may_carry("sft.corpus", 1) && spec_may_carry("seed", 1));
}

/* ---- lookups and the spec's keys --------------------------------------- */

TEST(test_lookups) {
    const sf_setting_t *s = sf_setting_by_flag("--reference");
    CHECK(s != NULL);
    CHECK_EQ_STR(s->key, "reference_source");
    CHECK(sf_setting_by_flag("--seed") == sf_setting_find("seed"));
    CHECK(sf_setting_by_flag("--shard-size") == sf_setting_find("shard_size"));
    CHECK(sf_setting_by_flag("--seeed") == NULL);
    CHECK(sf_setting_by_flag("--items-per-class") == NULL);
    CHECK(sf_setting_by_flag(NULL) == NULL);
    CHECK(sf_setting_find("world") != NULL && sf_setting_find("world")->flag == NULL);
    CHECK(sf_setting_find("threshold") == NULL);
    CHECK(sf_setting_planner_set(sf_setting_find("world")));
    CHECK(sf_setting_planner_set(sf_setting_find("hook_scale")));
    CHECK(!sf_setting_planner_set(sf_setting_find("seed")));
    CHECK_EQ_INT(sf_job_kind_bit("filter"), SF_K_FILTER);
    CHECK_EQ_INT(sf_job_kind_bit("noop"), 0);

    static const char *const want[] = {"method", "name", "classes", "priority", "max_attempts", "lease_ms",
                                       "retry_base_ms", "retry_max_ms", "ppo", "sft", "strategy", "world",
                                       "finetune_learning_rate", "filter_threshold"};
    const char *const *keys = sf_shift_spec_keys();
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int found = 0;
        for (const char *const *k = keys; *k && !found; k++) found = !strcmp(*k, want[i]);
        CHECK(found);
    }
    for (const char *const *k = keys; *k; k++) CHECK(strcmp(*k, "kind") && strcmp(*k, "items_per_class"));
}

/* ---- the spec ----------------------------------------------------------- */

/* 1 if rc is SF_EINVAL with an error saying `want`; else says what came
 * of `input`. */
static int refused(int rc, const char *err, const char *want, const char *input) {
    if (rc == SF_EINVAL && strstr(err, want)) return 1;
    fprintf(stderr, "%s: rc %d, '%s', want '%s'\n", input, rc, err, want);
    return 0;
}

static int from_spec(const char *json, sf_shift_params_t *p, char *err, size_t n) {
    cJSON *s = cJSON_Parse(json);
    int rc = s ? sf_shift_params_from_spec(s, p, err, n) : -100;
    cJSON_Delete(s);
    return rc;
}

TEST(test_spec_defaults_and_values) {
    sf_shift_params_t p;
    char err[256];
    /* Keys that are no setting are the caller's. */
    CHECK_EQ_INT(from_spec("{\"method\":\"shift\",\"ppo\":{\"updates\":3},\"bogus\":1}", &p, err, sizeof err), 0);
    CHECK_EQ_STR(p.strategy, "ppo");
    CHECK_EQ_STR(p.policy, "policy-sft.safetensors");
    CHECK_EQ_STR(p.reference_source, "world");
    CHECK_EQ_STR(p.generator, "world");
    CHECK_EQ_INT(p.seed, 1);
    CHECK_EQ_INT(p.reference_images, 128);
    CHECK_EQ_INT(p.rollouts_per_job, 8);
    CHECK_EQ_INT(p.captions_per_class, 16);
    CHECK_EQ_INT(p.max_new_tokens, 32);
    CHECK_EQ_INT(p.shard_size, 64);
    CHECK_EQ_INT(p.diffusion_steps, 0);
    CHECK_EQ_INT(p.finetune_images_per_class, 8);
    CHECK_EQ_INT(p.finetune_steps, 60);
    CHECK_EQ_INT(p.finetune_seeds, 3);
    CHECK(isnan(p.filter_threshold)); /* unset: the embedder's threshold */
    CHECK(p.temperature == 1.0);
    CHECK(p.finetune_learning_rate == 2e-4);
    CHECK(p.hook_scale == 0);

    CHECK_EQ_INT(from_spec("{\"strategy\":\"sft\",\"policy\":\"p/q.safetensors\",\"seed\":2147483647,"
                           "\"max_new_tokens\":4,\"filter_threshold\":-1,\"temperature\":0.05,"
                           "\"finetune_images_per_class\":0,\"hook_scale\":-100,\"finetune_learning_rate\":1}",
                           &p, err, sizeof err), 0);
    CHECK_EQ_STR(p.strategy, "sft");
    CHECK_EQ_STR(p.policy, "p/q.safetensors");
    CHECK_EQ_INT(p.seed, 2147483647);
    CHECK_EQ_INT(p.max_new_tokens, 4);
    CHECK_EQ_INT(p.finetune_images_per_class, 0);
    CHECK(p.filter_threshold == -1 && p.temperature == 0.05 && p.hook_scale == -100);
    CHECK(p.finetune_learning_rate == 1);
    CHECK_EQ_INT(p.captions_per_class, 16); /* untouched ones stay at their defaults */
}

TEST(test_spec_bounds_errors_name_the_key) {
    static const struct { const char *json, *want; } bad[] = {
        {"{\"seed\":-1}", "run spec: 'seed' must be a whole number in [0, 2147483647]"},
        {"{\"seed\":2147483648}", "'seed' must be a whole number in [0, 2147483647]"},
        {"{\"max_new_tokens\":3}", "'max_new_tokens' must be a whole number in [4, 256]"},
        {"{\"max_new_tokens\":257}", "'max_new_tokens' must be a whole number in [4, 256]"},
        {"{\"reference_images\":2.5}", "'reference_images' must be a whole number in [1, 100000]"},
        {"{\"captions_per_class\":\"16\"}", "'captions_per_class' must be a whole number"},
        {"{\"shard_size\":0}", "'shard_size' must be a whole number in [1, 1000000]"},
        {"{\"finetune_seeds\":17}", "'finetune_seeds' must be a whole number in [1, 16]"},
        {"{\"rollouts_per_job\":1e300}", "'rollouts_per_job' must be a whole number"},
        {"{\"image_check\":65}", "'image_check' must be a whole number in [0, 64]"},
        {"{\"filter_threshold\":1.01}", "run spec: 'filter_threshold' must be a number in [-1, 1]"},
        {"{\"temperature\":0.01}", "'temperature' must be a number in [0.05, 10]"},
        {"{\"temperature\":\"hot\"}", "'temperature' must be a number"},
        {"{\"eta\":1.5}", "'eta' must be a number in [0, 1]"},
        {"{\"guidance_scale\":-1}", "'guidance_scale' must be a number in [0, 100]"},
        {"{\"hook_scale\":101}", "'hook_scale' must be a number in [-100, 100]"},
        {"{\"finetune_learning_rate\":0}", "'finetune_learning_rate' must be a number in [1e-07, 1]"},
        {"{\"diffusion_steps\":1001}", "'diffusion_steps' must be a whole number in [0, 1000]"},
        {"{\"strategy\":\"\"}", "'strategy' must be a non-empty string"},
        {"{\"policy\":3}", "'policy' must be a non-empty string"},
        {"{\"generator\":null}", "'generator' must be a non-empty string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sf_shift_params_t p;
        char err[256] = "";
        CHECK(refused(from_spec(bad[i].json, &p, err, sizeof err), err, bad[i].want, bad[i].json));
    }
    /* A string as long as the buffer holds is refused, one byte less is not. */
    char json[600], err[256];
    sf_shift_params_t p;
    snprintf(json, sizeof json, "{\"policy\":\"%0*d\"}", SF_SET_STR_MAX, 0);
    CHECK_EQ_INT(from_spec(json, &p, err, sizeof err), SF_EINVAL);
    snprintf(json, sizeof json, "{\"policy\":\"%0*d\"}", SF_SET_STR_MAX - 1, 0);
    CHECK_EQ_INT(from_spec(json, &p, err, sizeof err), 0);
    CHECK_EQ_INT(strlen(p.policy), SF_SET_STR_MAX - 1);
}

/* The coordinator checks a shift spec's keys with sf_spec_keys and the
 * contract's list; a key twice is refused at any depth, naming its path,
 * since the spec text may come from any client or straight from Redis. */
TEST(test_spec_keys_repeated_at_any_depth) {
    static const struct { const char *json, *want; } bad[] = {
        {"{\"seed\":1,\"seed\":2}", "run spec: key 'seed' is given twice"},
        {"{\"ppo\":{\"updates\":3,\"updates\":4}}", "run spec: key 'ppo.updates' is given twice"},
        {"{\"sft\":{\"steps\":3,\"corpus\":\"world\",\"corpus\":\"x.jsonl\"}}",
         "run spec: key 'sft.corpus' is given twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cJSON *spec = cJSON_Parse(bad[i].json); /* cJSON keeps both copies */
        CHECK(spec != NULL);
        char err[256] = "";
        int rc = sf_spec_keys(spec, sf_shift_spec_keys(), err, sizeof err);
        cJSON_Delete(spec);
        CHECK(refused(rc, err, bad[i].want, bad[i].json));
    }
    cJSON *spec = cJSON_Parse("{\"ppo\":{\"updates\":3},\"sft\":{\"steps\":3},\"seed\":2}");
    char err[256];
    CHECK_EQ_INT(sf_spec_keys(spec, sf_shift_spec_keys(), err, sizeof err), 0);
    cJSON_Delete(spec);
}

/* ---- payloads ----------------------------------------------------------- */

/* The keys of o, sorted, comma-separated. */
static void keys_of(const cJSON *o, char *out, size_t n) {
    const char *k[64];
    int nk = 0;
    for (const cJSON *it = o ? o->child : NULL; it && nk < 64; it = it->next) k[nk++] = it->string;
    for (int i = 1; i < nk; i++)
        for (int j = i; j > 0 && strcmp(k[j - 1], k[j]) > 0; j--) {
            const char *x = k[j];
            k[j] = k[j - 1];
            k[j - 1] = x;
        }
    size_t at = 0;
    out[0] = 0;
    for (int i = 0; i < nk && at < n; i++) at += (size_t)snprintf(out + at, n - at, "%s%s", i ? "," : "", k[i]);
}

/* What each kind reads, sorted: the workers' handlers depend on it. */
static const struct { const char *kind, *keys; } kind_keys[] = {
    {"corpus", "corpus_attempts,corpus_captions,corpus_instruction,corpus_max_new_tokens,corpus_model,"
               "corpus_temperature,corpus_template,corpus_top_p,world"},
    {"embed", "reference_source,world"},
    {"rollout", "generator,image_check,max_new_tokens,reference_images,reference_source,run_classes,seed,temperature,"
                "world"},
    {"captions", "best_of_n,images_per_caption,max_new_tokens,policy,reference_images,reference_source,run_classes,"
                 "seed,strategy,temperature,world"},
    {"generate", "best_of_n,diffusion_steps,eta,filter_threshold,generator,guidance_scale,hook_scale,images_per_caption,"
                 "seed,strategy,world"},
    {"filter", "filter_threshold,generator,images_per_caption,reference_images,reference_source,strategy,world"},
    {"manifest", ""},
    {"finetune", "classifiers,finetune_batch,finetune_images_per_class,finetune_learning_rate,finetune_seeds,"
                 "finetune_steps,reference_images,reference_source,run_classes,seed,world"},
    {"classify", "classifiers,reference_images,reference_source,run_classes,world"},
    {"evaluate", "classifiers,eval_images_per_class,eval_sets,finetune_seeds,run_classes,world"},
    {"summarize", "classifiers,eval_sets,finetune_batch,finetune_images_per_class,finetune_learning_rate,"
                  "finetune_seeds,finetune_steps,run_classes,world"},
    {"noop", ""},
};

TEST(test_payload_keys_per_kind) {
    sf_shift_params_t p;
    sf_shift_params_init(&p);
    p.filter_threshold = 0.3; /* set: an unset one is left out (test_payload_values) */
    for (size_t i = 0; i < sizeof kind_keys / sizeof kind_keys[0]; i++) {
        cJSON *o = sf_job_payload(kind_keys[i].kind, &p);
        CHECK(cJSON_IsObject(o));
        char got[1024];
        keys_of(o, got, sizeof got);
        cJSON_Delete(o);
        if (strcmp(got, kind_keys[i].keys)) fprintf(stderr, "payload of %s: %s\n", kind_keys[i].kind, got);
        CHECK_EQ_STR(got, kind_keys[i].keys);
    }
}

TEST(test_payload_values) {
    sf_shift_params_t p;
    sf_shift_params_init(&p);
    snprintf(p.reference_source, sizeof p.reference_source, "imagenet-r");
    p.filter_threshold = 0.25;
    p.diffusion_steps = 20;
    cJSON *o = sf_job_payload("filter", &p);
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    CHECK_EQ_STR(txt, "{\"strategy\":\"ppo\",\"world\":\"builtin:imagenet-a-r-86\",\"reference_source\":"
                      "\"imagenet-r\",\"generator\":\"world\",\"reference_images\":128,\"images_per_caption\":1,"
                      "\"filter_threshold\":0.25}");
    free(txt);
    o = sf_job_payload("generate", &p);
    CHECK(cJSON_GetObjectItemCaseSensitive(o, "diffusion_steps")->valuedouble == 20);
    cJSON_Delete(o);
    /* An unset threshold is left out, so the worker uses its embedder's
     * (a NAN would print as null, which no worker accepts). */
    sf_shift_params_init(&p);
    o = sf_job_payload("filter", &p);
    CHECK(o && !cJSON_GetObjectItemCaseSensitive(o, "filter_threshold"));
    cJSON_Delete(o);
}

/* ---- parsing a payload -------------------------------------------------- */

static int parse(const char *kind, const char *json, sf_shift_params_t *p, char *err, size_t n) {
    return sf_job_params_parse(kind, json, json ? strlen(json) : 0, p, err, n);
}

TEST(test_parse_defaults) {
    sf_shift_params_t p;
    char err[256];
    CHECK_EQ_INT(parse("filter", NULL, &p, err, sizeof err), 0);
    CHECK(isnan(p.filter_threshold));
    CHECK_EQ_INT(parse("filter", "", &p, err, sizeof err), 0);
    CHECK_EQ_INT(parse("filter", "{}", &p, err, sizeof err), 0);
    CHECK(isnan(p.filter_threshold));
    CHECK_EQ_STR(p.reference_source, "world");
    CHECK_EQ_INT(parse("finetune", "{\"finetune_steps\":2}", &p, err, sizeof err), 0);
    CHECK_EQ_INT(p.finetune_steps, 2);
    CHECK_EQ_INT(p.finetune_seeds, 3);
    CHECK(p.finetune_learning_rate == 2e-4);
}

TEST(test_parse_errors_name_the_key) {
    static const struct { const char *kind, *json, *want; } bad[] = {
        /* the payload keys before the contract, and keys of another kind */
        {"filter", "{\"threshold\":0.2}", "payload of filter: unknown key 'threshold'"},
        {"embed", "{\"source\":\"world\"}", "payload of embed: unknown key 'source'"},
        {"generate", "{\"steps\":20}", "payload of generate: unknown key 'steps'"},
        {"finetune", "{\"images_per_class\":8}", "payload of finetune: unknown key 'images_per_class'"},
        {"embed", "{\"seed\":1}", "payload of embed: unknown key 'seed'"},
        {"manifest", "{\"world\":\"builtin:imagenet-1k\"}", "payload of manifest: unknown key 'world'"},
        {"noop", "{\"seed\":1}", "payload of noop: unknown key 'seed'"},
        {"filter", "{\"filter_threshold\":2}", "payload of filter: 'filter_threshold' must be a number in [-1, 1]"},
        {"rollout", "{\"max_new_tokens\":300}", "payload of rollout: 'max_new_tokens' must be a whole number in [4, 256]"},
        {"captions", "{\"temperature\":0}", "payload of captions: 'temperature' must be a number in [0.05, 10]"},
        {"finetune", "{\"finetune_seeds\":0.5}", "payload of finetune: 'finetune_seeds' must be a whole number"},
        {"finetune", "{\"finetune_learning_rate\":2}", "'finetune_learning_rate' must be a number in [1e-07, 1]"},
        {"generate", "{\"world\":3}", "payload of generate: 'world' must be a non-empty string"},
        {"filter", "[1,2]", "payload of filter: not a JSON object"},
        {"filter", "{\"filter_threshold\":", "payload of filter: invalid JSON near line 1"},
        /* what cJSON alone lets through: a key twice, text after the object */
        {"filter", "{\"filter_threshold\":0.5,\"filter_threshold\":0.1}",
         "payload of filter: key 'filter_threshold' is given twice"},
        {"generate", "{\"seed\":3} {\"seed\":4}", "payload of generate: unexpected text after the JSON value"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sf_shift_params_t p;
        char err[256] = "";
        CHECK(refused(parse(bad[i].kind, bad[i].json, &p, err, sizeof err), err, bad[i].want, bad[i].json));
    }
}

/* ---- round trips -------------------------------------------------------- */

/* A spec with every setting away from its default. */
static const char every_setting[] =
    "{\"strategy\":\"low-density\",\"policy\":\"sub/p.safetensors\",\"world\":\"builtin:imagenet-1k\",\"run_classes\":\"0f\","
    "\"reference_source\":\"imagenet-r\",\"generator\":\"diffusion\",\"seed\":77,\"reference_images\":33,"
    "\"rollouts_per_job\":5,\"image_check\":3,\"captions_per_class\":7,\"best_of_n\":5,\"images_per_caption\":3,"
    "\"max_new_tokens\":40,"
    "\"temperature\":0.7,\"shard_size\":9,\"filter_threshold\":0.31,\"diffusion_steps\":25,"
    "\"guidance_scale\":7.5,\"eta\":0.3,\"hook_scale\":-2.5,\"finetune_images_per_class\":4,"
    "\"finetune_steps\":11,\"finetune_seeds\":2,\"finetune_learning_rate\":3e-5,\"finetune_batch\":16,"
    "\"classifiers\":\"timm/a,timm/b\",\"eval_sets\":\"imagenet-a\",\"eval_images_per_class\":50,"
    "\"corpus_model\":\"llama/alpaca\",\"corpus_template\":\"{instruction}\",\"corpus_instruction\":\"A {class}.\","
    "\"corpus_captions\":8,\"corpus_attempts\":2,\"corpus_temperature\":0.6,\"corpus_top_p\":0.9,"
    "\"corpus_max_new_tokens\":40}";

/* The comma-separated settings (classifiers, eval_sets). */
TEST(test_setting_list) {
    char out[4][SF_SET_STR_MAX];
    CHECK_EQ_INT(sf_setting_list("timm/a,b", out, 4), 2);
    CHECK_EQ_STR(out[0], "timm/a");
    CHECK_EQ_STR(out[1], "b");
    CHECK_EQ_INT(sf_setting_list("one", out, 4), 1);
    CHECK_EQ_INT(sf_setting_list("", out, 4), -1);
    CHECK_EQ_INT(sf_setting_list("a,,b", out, 4), -1);
    CHECK_EQ_INT(sf_setting_list("a,", out, 4), -1);
    CHECK_EQ_INT(sf_setting_list("a,b,c,d,e", out, 4), -1);
    CHECK_EQ_INT(sf_setting_list("a,b,c,d", out, 4), 4);
}

TEST(test_round_trip_spec_payload_params) {
    sf_shift_params_t p, q, dflt;
    char err[256];
    CHECK_EQ_INT(from_spec(every_setting, &p, err, sizeof err), 0);
    sf_shift_params_init(&dflt);
    /* Every setting of the spec was read (the spec names them all). */
    int n;
    const sf_setting_t *t = sf_shift_settings(&n);
    cJSON *spec = cJSON_Parse(every_setting);
    CHECK_EQ_INT(cJSON_GetArraySize(spec), n);
    cJSON_Delete(spec);
    CHECK_EQ_STR(p.world, "builtin:imagenet-1k");
    CHECK_EQ_INT(p.seed, 77);
    CHECK(p.filter_threshold == 0.31 && p.finetune_learning_rate == 3e-5 && p.hook_scale == -2.5);

    for (size_t k = 0; k < sizeof kind_keys / sizeof kind_keys[0]; k++) {
        const char *kind = kind_keys[k].kind;
        cJSON *o = sf_job_payload(kind, &p);
        char *txt = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        CHECK(txt != NULL);
        int rc = sf_job_params_parse(kind, txt, strlen(txt), &q, err, sizeof err);
        free(txt);
        if (rc) fprintf(stderr, "%s: %s\n", kind, err);
        CHECK_EQ_INT(rc, 0);
        /* What the kind reads comes back as sent; the rest at defaults. */
        for (int i = 0; i < n; i++) {
            char want[80];
            snprintf(want, sizeof want, "%s", t[i].key);
            const char *ks = kind_keys[k].keys;
            size_t wl = strlen(want);
            int carried = 0;
            for (const char *c = ks; (c = strstr(c, want)); c += wl)
                if ((c == ks || c[-1] == ',') && (c[wl] == ',' || !c[wl])) carried = 1;
            const sf_shift_params_t *src = carried ? &p : &dflt;
            const size_t off = t[i].off;
            int same = t[i].type == SF_SET_STR ? !strcmp((const char *)&q + off, (const char *)src + off)
                       : t[i].type == SF_SET_UINT
                           ? *(const long *)((const char *)&q + off) == *(const long *)((const char *)src + off)
                           : *(const double *)((const char *)&q + off) == *(const double *)((const char *)src + off) ||
                                 (isnan(*(const double *)((const char *)&q + off)) &&
                                  isnan(*(const double *)((const char *)src + off)));
            if (!same) fprintf(stderr, "%s: '%s' did not come back (%s)\n", kind, t[i].key, carried ? "sent" : "default");
            CHECK(same);
        }
    }
}

int main(void) {
    SF_RUN(test_docs_list_every_setting_with_its_type_and_default);
    SF_RUN(test_docs_list_no_key_the_method_lacks);
    SF_RUN(test_docs_learner_keys_are_keys_a_spec_may_carry);
    SF_RUN(test_lookups);
    SF_RUN(test_spec_defaults_and_values);
    SF_RUN(test_spec_bounds_errors_name_the_key);
    SF_RUN(test_spec_keys_repeated_at_any_depth);
    SF_RUN(test_payload_keys_per_kind);
    SF_RUN(test_payload_values);
    SF_RUN(test_parse_defaults);
    SF_RUN(test_parse_errors_name_the_key);
    SF_RUN(test_setting_list);
    SF_RUN(test_round_trip_spec_payload_params);
    SF_DONE();
}
