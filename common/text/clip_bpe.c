/* clip_bpe.c: CLIP's BPE tokenizer; see clip_bpe.h. */
#include "common/text/clip_bpe.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "common/runtime/error.h"
#include "common/runtime/hash.h"
#include "common/runtime/fileio.h"

#define SOT_STR "<|startoftext|>"
#define EOT_STR "<|endoftext|>"
#define EOW "</w>"

/* A string -> int table, open addressing (keys owned). */
typedef struct {
    char **keys;
    int *vals;
    size_t cap, n;
} strmap_t;


static int map_grow(strmap_t *m) {
    size_t cap = m->cap ? m->cap * 2 : 1024;
    char **keys = calloc(cap, sizeof *keys);
    int *vals = calloc(cap, sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return SF_ENOMEM;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->keys[i]) continue;
        size_t j = sf_fnv1a_str(m->keys[i]) & (cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = m->keys[i];
        vals[j] = m->vals[i];
    }
    free(m->keys);
    free(m->vals);
    m->keys = keys;
    m->vals = vals;
    m->cap = cap;
    return 0;
}

static int map_get(const strmap_t *m, const char *k) {
    if (!m->cap) return -1;
    for (size_t j = sf_fnv1a_str(k) & (m->cap - 1); m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (strcmp(m->keys[j], k) == 0) return m->vals[j];
    return -1;
}

/* Inserts k -> v unless present; returns 0, 1 if it was there, or an error. */
static int map_put(strmap_t *m, const char *k, int v) {
    if ((m->n + 1) * 2 > m->cap && map_grow(m)) return SF_ENOMEM;
    size_t j = sf_fnv1a_str(k) & (m->cap - 1);
    for (; m->keys[j]; j = (j + 1) & (m->cap - 1))
        if (strcmp(m->keys[j], k) == 0) return 1;
    if (!(m->keys[j] = strdup(k))) return SF_ENOMEM;
    m->vals[j] = v;
    m->n++;
    return 0;
}

static void map_free(strmap_t *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

struct sf_clip_bpe_s {
    strmap_t vocab;        /* token -> id */
    strmap_t ranks;        /* "a b" -> merge rank */
    char **tokens;         /* id -> token */
    int n_tokens, cap_tokens;
    char **merges;         /* rank -> "a b" (for saving) */
    int n_merges, cap_merges;
    int sot, eot;
    char byte_str[256][3]; /* GPT-2's byte -> unicode table, UTF-8 */
    uint8_t byte_order[256];
};

/* GPT-2's bytes_to_unicode: printable bytes map to themselves, the rest to
 * U+0100 onwards; byte_order is the order the table lists them (CLIP's first
 * 256 ids). */
static void byte_table(sf_clip_bpe_t *b) {
    int n = 0, k = 0;
    int cp[256];
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        if (printable) {
            cp[c] = c;
            b->byte_order[k++] = (uint8_t)c;
        }
    }
    for (int c = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        if (!printable) {
            cp[c] = 256 + n++;
            b->byte_order[k++] = (uint8_t)c;
        }
    }
    for (int c = 0; c < 256; c++) {
        if (cp[c] < 0x80) {
            b->byte_str[c][0] = (char)cp[c];
            b->byte_str[c][1] = 0;
        } else {
            b->byte_str[c][0] = (char)(0xC0 | (cp[c] >> 6));
            b->byte_str[c][1] = (char)(0x80 | (cp[c] & 0x3F));
            b->byte_str[c][2] = 0;
        }
    }
}

static int add_token(sf_clip_bpe_t *b, const char *tok, int id) {
    if (id >= b->cap_tokens) {
        int cap = b->cap_tokens ? b->cap_tokens * 2 : 1024;
        while (cap <= id) cap *= 2;
        char **t = realloc(b->tokens, sizeof *t * cap);
        if (!t) return SF_ENOMEM;
        memset(t + b->cap_tokens, 0, sizeof *t * (cap - b->cap_tokens));
        b->tokens = t;
        b->cap_tokens = cap;
    }
    if (b->tokens[id]) return SF_EEXIST;
    int rc = map_put(&b->vocab, tok, id);
    if (rc) return rc < 0 ? rc : SF_EEXIST;
    if (!(b->tokens[id] = strdup(tok))) return SF_ENOMEM;
    if (id >= b->n_tokens) b->n_tokens = id + 1;
    return 0;
}

static int add_merge(sf_clip_bpe_t *b, const char *pair) {
    if (b->n_merges == b->cap_merges) {
        int cap = b->cap_merges ? b->cap_merges * 2 : 1024;
        char **m = realloc(b->merges, sizeof *m * cap);
        if (!m) return SF_ENOMEM;
        b->merges = m;
        b->cap_merges = cap;
    }
    int rc = map_put(&b->ranks, pair, b->n_merges);
    if (rc) return rc < 0 ? rc : 0;   /* a repeated merge keeps its first rank */
    if (!(b->merges[b->n_merges] = strdup(pair))) return SF_ENOMEM;
    b->n_merges++;
    return 0;
}

static sf_clip_bpe_t *bpe_alloc(void) {
    sf_clip_bpe_t *b = calloc(1, sizeof *b);
    if (b) byte_table(b);
    return b;
}

void sf_clip_bpe_free(sf_clip_bpe_t **bp) {
    if (!bp || !*bp) return;
    sf_clip_bpe_t *b = *bp;
    map_free(&b->vocab);
    map_free(&b->ranks);
    for (int i = 0; i < b->cap_tokens; i++) free(b->tokens[i]);
    free(b->tokens);
    for (int i = 0; i < b->n_merges; i++) free(b->merges[i]);
    free(b->merges);
    free(b);
    *bp = NULL;
}

/* vocab.json's text (len bytes, borrowed; name in messages). */
static int load_vocab(sf_clip_bpe_t *b, const char *text, size_t len, const char *name, char *err, size_t errlen) {
    cJSON *j = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return sf_errf(SF_EFORMAT, err, errlen, "%s: not a JSON object", name);
    }
    /* Ids are 0 .. n-1 for n entries: a larger one is refused before the id
     * table grows to hold it. */
    const int n = cJSON_GetArraySize(j);
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, j) {
        if (!cJSON_IsNumber(it) || !(it->valuedouble >= 0 && it->valuedouble < n) ||
            it->valuedouble != (int)it->valuedouble) {
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s: id of '%s' is not a valid id (0 to %d)", name, it->string,
                         n - 1);
            break;
        }
        if ((rc = add_token(b, it->string, (int)it->valuedouble))) {
            rc = sf_errf(rc == SF_EEXIST ? SF_EFORMAT : rc, err, errlen, "%s: token '%s' or id %d twice", name,
                         it->string, (int)it->valuedouble);
            break;
        }
    }
    cJSON_Delete(j);
    for (int i = 0; rc == 0 && i < b->n_tokens; i++)
        if (!b->tokens[i]) rc = sf_errf(SF_EFORMAT, err, errlen, "%s: no token has id %d", name, i);
    b->sot = map_get(&b->vocab, SOT_STR);
    b->eot = map_get(&b->vocab, EOT_STR);
    if (rc == 0 && (b->sot < 0 || b->eot < 0))
        rc = sf_errf(SF_EFORMAT, err, errlen, "%s: no %s or %s token", name, SOT_STR, EOT_STR);
    return rc;
}

/* merges.txt's text, NUL-terminated (it ends at the first NUL), cut into
 * lines in place; vocab names vocab.json in messages. */
static int load_merges(sf_clip_bpe_t *b, char *text, const char *name, const char *vocab, char *err, size_t errlen) {
    int rc = 0, line_no = 0;
    for (char *line = text, *next; rc == 0 && line && *line; line = next) {
        next = strchr(line, '\n');
        if (next) *next++ = 0;
        line_no++;
        size_t l = strlen(line);
        if (l && line[l - 1] == '\r') line[--l] = 0;
        if (l == 0 || (line_no == 1 && strncmp(line, "#version", 8) == 0)) continue;
        char *sp = strchr(line, ' ');
        if (!sp || sp == line || !sp[1] || strchr(sp + 1, ' ')) {
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s:%d: not a merge 'a b'", name, line_no);
            break;
        }
        *sp = 0;
        char merged[512];
        int ok = map_get(&b->vocab, line) >= 0 && map_get(&b->vocab, sp + 1) >= 0 &&
                 snprintf(merged, sizeof merged, "%s%s", line, sp + 1) < (int)sizeof merged &&
                 map_get(&b->vocab, merged) >= 0;
        *sp = ' ';
        if (!ok) {
            rc = sf_errf(SF_EFORMAT, err, errlen, "%s:%d: merge '%s' uses or makes a token not in %s", name, line_no,
                         line, vocab);
            break;
        }
        rc = add_merge(b, line);
    }
    return rc;
}

int sf_clip_bpe_load(const char *vocab_json, const char *merges_txt, sf_clip_bpe_t **out,
                     char *err, size_t errlen) {
    *out = NULL;
    size_t len;
    char *text;
    int rc = sf_read_file(vocab_json, SF_READ_ANY_SIZE, &text, &len, err, errlen);
    if (rc) return rc;
    sf_clip_bpe_t *b = bpe_alloc();
    rc = b ? load_vocab(b, text, len, vocab_json, err, errlen) : SF_ENOMEM;
    free(text);
    if (rc == 0) rc = sf_read_file(merges_txt, SF_READ_ANY_SIZE, &text, &len, err, errlen);
    if (rc == 0) {
        rc = load_merges(b, text, merges_txt, vocab_json, err, errlen);
        free(text);
    }
    if (rc) {
        sf_clip_bpe_free(&b);
        return rc;
    }
    *out = b;
    return 0;
}

int sf_clip_bpe_load_mem(const char *vocab_json, size_t vocab_len, const char *merges_txt, size_t merges_len,
                         sf_clip_bpe_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!vocab_json || !merges_txt) return sf_errf(SF_EINVAL, err, errlen, "no vocabulary text");
    sf_clip_bpe_t *b = bpe_alloc();
    int rc = b ? load_vocab(b, vocab_json, vocab_len, "vocab.json", err, errlen) : SF_ENOMEM;
    char *text = NULL;
    if (rc == 0 && !(text = malloc(merges_len + 1))) rc = SF_ENOMEM;
    if (rc == 0) {
        memcpy(text, merges_txt, merges_len);
        text[merges_len] = 0;
        rc = load_merges(b, text, "merges.txt", "vocab.json", err, errlen);
    }
    free(text);
    if (rc) {
        sf_clip_bpe_free(&b);
        return rc;
    }
    *out = b;
    return 0;
}

int sf_clip_bpe_vocab_size(const sf_clip_bpe_t *b) { return b->n_tokens; }
int sf_clip_bpe_sot(const sf_clip_bpe_t *b) { return b->sot; }
int sf_clip_bpe_eot(const sf_clip_bpe_t *b) { return b->eot; }
const char *sf_clip_bpe_token(const sf_clip_bpe_t *b, int id) {
    return id >= 0 && id < b->n_tokens ? b->tokens[id] : NULL;
}

/* ---- pre-tokenisation ---- */

static int is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }
static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

void sf_clip_bpe_words(const char *text, void (*cb)(const char *word, size_t len, void *arg), void *arg) {
    char buf[256];
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        if (isspace(*s)) {
            s++;
            continue;
        }
        size_t n = 0;
        if (*s == '\'') {
            static const char *con[] = {"s", "t", "re", "ve", "m", "ll", "d"};
            for (int i = 0; i < 7 && !n; i++) {
                size_t l = strlen(con[i]);
                if (strncasecmp((const char *)s + 1, con[i], l) == 0) n = l + 1;
            }
        }
        if (!n) {
            if (is_letter(*s)) while (is_letter(s[n])) n++;
            else if (is_digit(*s)) n = 1;
            else while (s[n] && !isspace(s[n]) && !is_letter(s[n]) && !is_digit(s[n])) n++;
        }
        /* A word longer than the buffer gets its own: cutting it would end
         * its first piece with "</w>", which CLIP's tokenizer does not do.
         * Only when that allocation fails is it cut. */
        char *w = n < sizeof buf ? buf : malloc(n + 1);
        size_t take = w ? n : sizeof buf - 1;
        if (!w) w = buf;
        for (size_t i = 0; i < take; i++) w[i] = (char)tolower(s[i]);
        w[take] = 0;
        cb(w, take, arg);
        if (w != buf) free(w);
        s += take;
    }
}

/* ---- BPE ---- */

/* Merges a word's symbols by rank, as CLIP's bpe() does.  syms holds
 * malloc'd strings; returns the new count. */
static int bpe_merge(const sf_clip_bpe_t *b, char **syms, int n) {
    char pair[1024];
    while (n > 1) {
        int best = -1, best_rank = 0;
        for (int i = 0; i + 1 < n; i++) {
            if (snprintf(pair, sizeof pair, "%s %s", syms[i], syms[i + 1]) >= (int)sizeof pair) continue;
            int r = map_get(&b->ranks, pair);
            if (r >= 0 && (best < 0 || r < best_rank)) {
                best = i;
                best_rank = r;
            }
        }
        if (best < 0) break;
        /* Merge every occurrence of that pair, left to right. */
        const char *m = b->merges[best_rank];
        size_t la = strchr(m, ' ') - m;
        int k = 0;
        for (int i = 0; i < n;) {
            if (i + 1 < n && strlen(syms[i]) == la && strncmp(syms[i], m, la) == 0 &&
                strcmp(syms[i + 1], m + la + 1) == 0) {
                size_t l1 = strlen(syms[i]), l2 = strlen(syms[i + 1]);
                char *j = malloc(l1 + l2 + 1);
                if (!j) break;
                memcpy(j, syms[i], l1);
                memcpy(j + l1, syms[i + 1], l2 + 1);
                free(syms[i]);
                free(syms[i + 1]);
                syms[k++] = j;
                i += 2;
            } else {
                syms[k++] = syms[i++];
            }
        }
        n = k;
    }
    return n;
}

/* The symbols of a word before merging: its bytes through the byte table,
 * "</w>" on the last. */
static int word_symbols(const sf_clip_bpe_t *b, const char *w, size_t len, char **syms) {
    int n = 0;
    for (size_t i = 0; i < len; i++) {
        const char *bs = b->byte_str[(uint8_t)w[i]];
        size_t l = strlen(bs);
        char *s = malloc(l + sizeof EOW);
        if (!s) break;
        memcpy(s, bs, l + 1);
        if (i + 1 == len) strcat(s, EOW);
        syms[n++] = s;
    }
    return n;
}

typedef struct {
    const sf_clip_bpe_t *b;
    int32_t *ids;
    int ctx, n;
} enc_t;

static void enc_word(const char *w, size_t len, void *arg) {
    enc_t *e = arg;
    char *stack[256], **syms = len <= 256 ? stack : malloc(len * sizeof *syms);
    if (!syms) return;
    int n = word_symbols(e->b, w, len, syms);
    n = bpe_merge(e->b, syms, n);
    for (int i = 0; i < n; i++) {
        int id = map_get(&e->b->vocab, syms[i]);
        /* A symbol outside the vocabulary cannot come from a consistent
         * vocab/merges pair; skip it rather than emit a bad id. */
        if (id >= 0 && e->n < e->ctx - 1) e->ids[e->n++] = id;
        free(syms[i]);
    }
    if (syms != stack) free(syms);
}

int sf_clip_bpe_encode(const sf_clip_bpe_t *b, const char *text, int32_t *ids, int ctx) {
    if (!b || !text || !ids || ctx < 2) return SF_EINVAL;
    enc_t e = {b, ids, ctx, 0};
    ids[e.n++] = b->sot;
    sf_clip_bpe_words(text, enc_word, &e);
    ids[e.n++] = b->eot;
    for (int i = e.n; i < ctx; i++) ids[i] = 0;
    return e.n;
}

/* ---- tokenizers from word lists ---- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int sf_clip_bpe_from_words(const char *const *words, int n, sf_clip_bpe_t **out) {
    *out = NULL;
    sf_clip_bpe_t *b = bpe_alloc();
    if (!b) return SF_ENOMEM;
    int rc = 0, id = 0;
    char tok[16];
    for (int i = 0; rc == 0 && i < 256; i++) rc = add_token(b, b->byte_str[b->byte_order[i]], id++);
    for (int i = 0; rc == 0 && i < 256; i++) {
        snprintf(tok, sizeof tok, "%s" EOW, b->byte_str[b->byte_order[i]]);
        rc = add_token(b, tok, id++);
    }
    /* Sorted, so that the vocabulary depends on the set of words only. */
    char **sorted = calloc(n > 0 ? n : 1, sizeof *sorted);
    int m = 0;
    if (!sorted) rc = SF_ENOMEM;
    for (int i = 0; rc == 0 && i < n; i++) {
        const char *w = words[i];
        size_t l = strlen(w);
        int ok = l > 0 && l < 64;
        for (size_t k = 0; ok && k < l; k++) ok = w[k] >= 'a' && w[k] <= 'z';
        if (ok) sorted[m++] = (char *)w;
    }
    if (rc == 0) qsort(sorted, m, sizeof *sorted, cmp_str);
    /* Each word: add the merge of its first two symbols until the tokenizer
     * spells it as one token.  Later merges rank after it, so they cannot
     * split a word that is already whole. */
    for (int i = 0; rc == 0 && i < m; i++) {
        if (i && strcmp(sorted[i], sorted[i - 1]) == 0) continue;
        for (;;) {
            char *syms[64];
            int k = word_symbols(b, sorted[i], strlen(sorted[i]), syms);
            k = bpe_merge(b, syms, k);
            if (k > 1) {
                char pair[512], joined[512];
                snprintf(pair, sizeof pair, "%s %s", syms[0], syms[1]);
                snprintf(joined, sizeof joined, "%s%s", syms[0], syms[1]);
                if (map_get(&b->vocab, joined) < 0) rc = add_token(b, joined, id++);
                if (rc == 0) rc = add_merge(b, pair);
            }
            for (int j = 0; j < k; j++) free(syms[j]);
            if (k <= 1 || rc) break;
        }
    }
    free(sorted);
    if (rc == 0) rc = add_token(b, SOT_STR, id++);
    if (rc == 0) rc = add_token(b, EOT_STR, id++);
    if (rc) {
        sf_clip_bpe_free(&b);
        return rc;
    }
    b->sot = id - 2;
    b->eot = id - 1;
    *out = b;
    return 0;
}

int sf_clip_bpe_save(const sf_clip_bpe_t *b, const char *vocab_json, const char *merges_txt) {
    cJSON *j = cJSON_CreateObject();
    if (!j) return SF_ENOMEM;
    for (int i = 0; i < b->n_tokens; i++) cJSON_AddNumberToObject(j, b->tokens[i], i);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return SF_ENOMEM;
    FILE *f = fopen(vocab_json, "wb");
    int rc = f && fputs(s, f) >= 0 ? 0 : SF_EIO;
    free(s);
    if (f && fclose(f)) rc = SF_EIO;
    if (rc) return rc;
    if (!(f = fopen(merges_txt, "wb"))) return SF_EIO;
    fputs("#version: 0.2\n", f);
    for (int i = 0; i < b->n_merges; i++) fprintf(f, "%s\n", b->merges[i]);
    return fclose(f) ? SF_EIO : 0;
}
