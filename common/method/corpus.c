/* corpus.c: the corpus phase's prompt (corpus.h). */
#include "common/method/corpus.h"

#include <stdio.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/runtime/hash.h"

/* s with every `from` replaced by `to`, into out (n bytes). */
static int replace_all(const char *s, const char *from, const char *to, char *out, size_t n) {
    size_t o = 0, fl = strlen(from), tl = strlen(to);
    while (*s) {
        const char *hit = strstr(s, from);
        size_t keep = hit ? (size_t)(hit - s) : strlen(s);
        if (o + keep + (hit ? tl : 0) >= n) return SF_ERANGE;
        memcpy(out + o, s, keep);
        o += keep;
        if (!hit) break;
        memcpy(out + o, to, tl);
        o += tl;
        s = hit + fl;
    }
    if (o >= n) return SF_ERANGE;
    out[o] = 0;
    return 0;
}

int sf_corpus_prompt(const char *tmpl, const char *instruction, const char *class_name, char *out, size_t n) {
    if (!tmpl) tmpl = SF_CORPUS_TEMPLATE_ALPACA;
    if (!instruction) instruction = SF_CORPUS_INSTRUCTION;
    if (!strstr(tmpl, "{instruction}")) return SF_EINVAL;
    if (!strstr(tmpl, "{class}") && !strstr(instruction, "{class}")) return SF_EINVAL;
    char mid[4096];
    int rc = replace_all(tmpl, "{instruction}", instruction, mid, sizeof mid);
    if (rc) return rc;
    return replace_all(mid, "{class}", class_name, out, n);
}

const char *sf_corpus_template(const sf_shift_params_t *p) {
    return strcmp(p->corpus_template, "alpaca") ? p->corpus_template : SF_CORPUS_TEMPLATE_ALPACA;
}

void sf_corpus_key(const sf_shift_params_t *p, char out[17]) {
    char settings[160];
    snprintf(settings, sizeof settings, "v1 captions=%ld attempts=%ld temperature=%.9g top_p=%.9g max_new_tokens=%ld",
             p->corpus_captions, p->corpus_attempts, p->corpus_temperature, p->corpus_top_p,
             p->corpus_max_new_tokens);
    /* Each part with its terminating NUL, so no two splits of the same
     * bytes hash alike. */
    const char *parts[4] = {p->corpus_model, sf_corpus_template(p), p->corpus_instruction, settings};
    uint64_t h = SF_HASH_BASIS;
    for (int i = 0; i < 4; i++) h = sf_fnv1a(h, parts[i], strlen(parts[i]) + 1);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void sf_corpus_paths(const char *data_dir, const char *key, const char *wnid, char *dir, size_t dn, char *jsonl,
                     size_t jn, char *meta, size_t mn) {
    if (dir) snprintf(dir, dn, "%s/corpus/%s", data_dir, key);
    if (jsonl) snprintf(jsonl, jn, "%s/corpus/%s/%s.jsonl", data_dir, key, wnid);
    if (meta) snprintf(meta, mn, "%s/corpus/%s/%s.json", data_dir, key, wnid);
}

uint64_t sf_corpus_seed(const char *key, const char *wnid, int round) {
    return sf_mix2(sf_mix2(sf_fnv1a_str(key), sf_fnv1a_str(wnid)), (uint64_t)round);
}
