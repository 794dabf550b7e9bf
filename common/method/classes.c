/* classes.c: ImageNet class lists, parsed from the TSV tables that the build
 * embeds (data/imagenet1k.tsv, data/imagenet_a_r_86.tsv). */
#include "common/method/classes.h"

#include <ctype.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/runtime/error.h"
#include "common/runtime/fileio.h"

extern const unsigned char sf_data_imagenet1k_tsv[];
extern const size_t sf_data_imagenet1k_tsv_len;
extern const unsigned char sf_data_imagenet1k_glosses_tsv[];
extern const size_t sf_data_imagenet1k_glosses_tsv_len;
extern const unsigned char sf_data_imagenet_a_r_86_tsv[];
extern const size_t sf_data_imagenet_a_r_86_tsv_len;

static sf_classlist_t g_1k;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static char *trim(char *s) {
    while (*s && isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static void class_clear(sf_class_t *c) {
    free(c->name);
    for (int i = 0; i < c->n_lemmas; i++) free(c->lemmas[i]);
    free(c->lemmas);
    memset(c, 0, sizeof *c);
}

static int class_copy(sf_class_t *dst, const sf_class_t *src) {
    memset(dst, 0, sizeof *dst);
    memcpy(dst->wnid, src->wnid, sizeof dst->wnid);
    dst->index = src->index;
    dst->name = strdup(src->name);
    dst->lemmas = calloc((size_t)(src->n_lemmas ? src->n_lemmas : 1), sizeof(char *));
    if (!dst->name || !dst->lemmas) { class_clear(dst); return SF_ENOMEM; }
    for (int i = 0; i < src->n_lemmas; i++) {
        dst->lemmas[i] = strdup(src->lemmas[i]);
        if (!dst->lemmas[i]) { class_clear(dst); return SF_ENOMEM; }
        dst->n_lemmas = i + 1;
    }
    return 0;
}

/* Parses "index\twnid\tname\tlemma, lemma, …" lines. */
static int parse_table(const char *text, size_t len, sf_classlist_t *out) {
    char *buf = strndup(text, len);
    if (!buf) return SF_ENOMEM;
    int cap = 1024, n = 0;
    sf_class_t *v = calloc((size_t)cap, sizeof *v);
    if (!v) { free(buf); return SF_ENOMEM; }
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#' || !line[0]) continue;
        char *f[4] = {0};
        char *p = line;
        for (int i = 0; i < 4 && p; i++) {
            f[i] = p;
            p = strchr(p, '\t');
            if (p) *p++ = 0;
        }
        if (!f[3] || n >= cap) continue;
        sf_class_t *c = &v[n];
        c->index = atoi(f[0]);
        snprintf(c->wnid, sizeof c->wnid, "%s", trim(f[1]));
        c->name = strdup(trim(f[2]));
        int nl = 1;
        for (char *q = f[3]; *q; q++) nl += *q == ',';
        c->lemmas = calloc((size_t)nl, sizeof(char *));
        char *s2 = NULL;
        for (char *lem = strtok_r(f[3], ",", &s2); lem; lem = strtok_r(NULL, ",", &s2)) {
            char *t = trim(lem);
            if (*t) c->lemmas[c->n_lemmas++] = strdup(t);
        }
        n++;
    }
    free(buf);
    out->v = v;
    out->n = n;
    return 0;
}

static void load_1k(void) {
    if (parse_table((const char *)sf_data_imagenet1k_tsv, sf_data_imagenet1k_tsv_len, &g_1k) != 0)
        g_1k.n = 0;
}

const sf_classlist_t *sf_classes_imagenet1k(void) {
    pthread_once(&g_once, load_1k);
    return &g_1k;
}

/* Looks up by wnid, then by name; *ambiguous is set when two classes share
 * the name (ImageNet has two "missile" and two "sunglasses"). */
static const sf_class_t *lookup(const char *key, int *ambiguous) {
    const sf_classlist_t *all = sf_classes_imagenet1k();
    *ambiguous = 0;
    for (int i = 0; i < all->n; i++)
        if (strcmp(all->v[i].wnid, key) == 0) return &all->v[i];
    const sf_class_t *hit = NULL;
    for (int i = 0; i < all->n; i++) {
        if (strcasecmp(all->v[i].name, key) == 0) {
            if (hit) { *ambiguous = 1; return NULL; }
            hit = &all->v[i];
        }
    }
    return hit;
}

int sf_class_gloss(const char *wnid, char *out, size_t n) {
    /* The embedded table is "wnid<TAB>gloss" lines after a comment; a
     * linear scan is fine for the few lookups a run makes. */
    const char *p = (const char *)sf_data_imagenet1k_glosses_tsv, *end = p + sf_data_imagenet1k_glosses_tsv_len;
    size_t wl = wnid ? strlen(wnid) : 0;
    while (wl && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        if ((size_t)(nl - p) > wl + 1 && memcmp(p, wnid, wl) == 0 && p[wl] == '\t') {
            snprintf(out, n, "%.*s", (int)(nl - p - (ptrdiff_t)wl - 1), p + wl + 1);
            return 0;
        }
        p = nl + 1;
    }
    if (n) out[0] = 0;
    return SF_ENOTFOUND;
}

const sf_class_t *sf_classes_lookup(const char *key) {
    int amb;
    return key ? lookup(key, &amb) : NULL;
}

void sf_classes_free(sf_classlist_t **cl) {
    if (!cl || !*cl) return;
    for (int i = 0; i < (*cl)->n; i++) class_clear(&(*cl)->v[i]);
    free((*cl)->v);
    free(*cl);
    *cl = NULL;
}

int sf_classes_parse(const char *text, size_t len, sf_classlist_t **out, char *err, size_t errlen) {
    *out = NULL;
    sf_classlist_t *cl = calloc(1, sizeof *cl);
    if (!cl) return SF_ENOMEM;
    int cap = 16, rc = 0, lineno = 0;
    cl->v = calloc((size_t)cap, sizeof *cl->v);
    if (!cl->v) { free(cl); return SF_ENOMEM; }
    const char *p = text, *end = text + len;
    while (p < end && rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t ll = nl ? (size_t)(nl - p) : (size_t)(end - p);
        lineno++;
        char line[512];
        if (ll >= sizeof line) {
            rc = sf_errf(SF_EINVAL, err, errlen, "line %d: longer than %zu characters", lineno, sizeof line - 1);
            break;
        }
        memcpy(line, p, ll);
        line[ll] = 0;
        p = nl ? nl + 1 : end;
        /* Control characters (but a TSV row's tabs and a CRLF file's CR)
         * have no place in a class name or a comment, and echoed back in an
         * error or a table they would be commands to the reader's terminal:
         * refused, by code, without echoing the line. */
        for (size_t i = 0; i < ll && rc == 0; i++) {
            const unsigned char c = (unsigned char)line[i];
            if ((c < 0x20 && c != '\t' && !(c == '\r' && i + 1 == ll)) || c == 0x7f)
                rc = sf_errf(SF_EINVAL, err, errlen, "line %d: control character 0x%02x (column %zu)", lineno, c,
                             i + 1);
        }
        if (rc) break;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *key = trim(line);
        /* A TSV row (as in our own tables) names the class by its wnid. */
        char *tab = strchr(key, '\t');
        if (tab) {
            char *w = strstr(key, "\tn");
            if (w) {
                key = w + 1;
                char *t2 = strchr(key, '\t');
                if (t2) *t2 = 0;
            } else {
                *tab = 0;
            }
            key = trim(key);
        }
        if (!*key) continue;
        int amb;
        const sf_class_t *c = lookup(key, &amb);
        if (!c) {
            rc = amb ? sf_errf(SF_EINVAL, err, errlen,
                               "line %d: class name '%s' is ambiguous in ImageNet-1k; give its wnid", lineno, key)
                     : sf_errf(SF_EINVAL, err, errlen,
                               "line %d: unknown class '%s' (not an ImageNet-1k wnid or name)", lineno, key);
            break;
        }
        for (int i = 0; i < cl->n; i++) {
            if (strcmp(cl->v[i].wnid, c->wnid) == 0) {
                rc = sf_errf(SF_EINVAL, err, errlen, "line %d: duplicate class '%s' (%s)", lineno, key, c->wnid);
                break;
            }
        }
        if (rc) break;
        if (cl->n == cap) {
            cap *= 2;
            sf_class_t *nv = realloc(cl->v, (size_t)cap * sizeof *nv);
            if (!nv) { rc = SF_ENOMEM; break; }
            cl->v = nv;
        }
        rc = class_copy(&cl->v[cl->n], c);
        if (rc == 0) cl->n++;
    }
    if (rc == 0 && cl->n == 0) rc = sf_errf(SF_EINVAL, err, errlen, "the class list is empty");
    if (rc) { sf_classes_free(&cl); return rc; }
    *out = cl;
    return 0;
}

int sf_classes_load(const char *spec, sf_classlist_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!spec || !*spec) return sf_errf(SF_EINVAL, err, errlen, "no class list given");
    if (strncmp(spec, "builtin:", 8) == 0) {
        const char *name = spec + 8;
        const unsigned char *d;
        size_t n;
        if (strcmp(name, "imagenet-1k") == 0) { d = sf_data_imagenet1k_tsv; n = sf_data_imagenet1k_tsv_len; }
        else if (strcmp(name, "imagenet-a-r-86") == 0) { d = sf_data_imagenet_a_r_86_tsv; n = sf_data_imagenet_a_r_86_tsv_len; }
        else return sf_errf(SF_EINVAL, err, errlen,
                            "unknown built-in list '%s' (have builtin:imagenet-1k, builtin:imagenet-a-r-86)", name);
        return sf_classes_parse((const char *)d, n, out, err, errlen);
    }
    FILE *f = strcmp(spec, "-") == 0 ? stdin : fopen(spec, "rb");
    if (!f) return sf_errf(SF_EIO, err, errlen, "cannot open class list '%s'", spec);
    char *buf = NULL;
    size_t len = 0;
    int rc = sf_read_stream(f, 64u << 20, &buf, &len);
    if (f != stdin) fclose(f);
    if (rc) return sf_errf(rc, err, errlen, "cannot read class list '%s': %s", spec, sf_strerror(rc));
    char e2[400];
    rc = sf_classes_parse(buf, len, out, e2, sizeof e2);
    free(buf);
    if (rc) return sf_errf(rc, err, errlen, "%s: %s", strcmp(spec, "-") == 0 ? "<stdin>" : spec, e2);
    return 0;
}

int sf_classes_dup(const sf_classlist_t *in, sf_classlist_t **out) {
    *out = NULL;
    sf_classlist_t *cl = calloc(1, sizeof *cl);
    if (!cl) return SF_ENOMEM;
    cl->v = calloc((size_t)(in->n ? in->n : 1), sizeof *cl->v);
    if (!cl->v) { free(cl); return SF_ENOMEM; }
    for (int i = 0; i < in->n; i++) {
        int rc = class_copy(&cl->v[i], &in->v[i]);
        if (rc) { sf_classes_free(&cl); return rc; }
        cl->n = i + 1;
    }
    *out = cl;
    return 0;
}

/* The first whole-word, case-insensitive match of `needle` (which may hold
 * spaces and hyphens) in text at or after p, with its length in *len (a
 * plural "s"/"es" included); NULL when there is none. */
static const char *find_phrase(const char *text, const char *p, const char *needle, size_t *len) {
    size_t nl = strlen(needle);
    if (nl == 0) return NULL;
    for (; *p; p++) {
        if (strncasecmp(p, needle, nl) != 0) continue;
        int before_ok = p == text || !isalnum((unsigned char)p[-1]);
        unsigned char after = (unsigned char)p[nl];
        /* A plural "s"/"es" still mentions the class ("two goldfinches"). */
        size_t l = !isalnum(after) ? nl
                 : (after == 's' || after == 'S') && !isalnum((unsigned char)p[nl + 1]) ? nl + 1
                 : (after == 'e' || after == 'E') && (p[nl + 1] == 's' || p[nl + 1] == 'S') &&
                           !isalnum((unsigned char)p[nl + 2]) ? nl + 2
                 : 0;
        if (before_ok && l) {
            *len = l;
            return p;
        }
    }
    return NULL;
}

/* The "-ies" plural of a phrase that ends in a consonant and "y"
 * ("dragonfly" -> "dragonflies") into buf; 0 when it has none. */
static int ies_plural(const char *needle, char *buf, size_t n) {
    size_t l = strlen(needle);
    if (l < 2 || (needle[l - 1] != 'y' && needle[l - 1] != 'Y') || strchr("aeiouAEIOU", needle[l - 2]) ||
        l + 2 >= n)
        return 0;
    memcpy(buf, needle, l - 1);
    memcpy(buf + l - 1, "ies", 4);
    return 1;
}

/* Calls fn(arg, start, end) for every mention of c in text (display name and
 * lemmas, plurals included) until fn returns nonzero; that value, or 0. */
static int each_mention(const sf_class_t *c, const char *text, int (*fn)(void *, size_t, size_t), void *arg) {
    for (int i = -1; i < c->n_lemmas; i++) {
        const char *phrase = i < 0 ? c->name : c->lemmas[i];
        if (!phrase) continue;
        char buf[256];
        for (int v = 0; v < 2; v++) {
            const char *needle = v == 0 ? phrase : ies_plural(phrase, buf, sizeof buf) ? buf : NULL;
            size_t l;
            for (const char *p = needle ? find_phrase(text, text, needle, &l) : NULL; p;
                 p = find_phrase(text, p + 1, needle, &l)) {
                int r = fn(arg, (size_t)(p - text), (size_t)(p - text) + l);
                if (r) return r;
            }
        }
    }
    return 0;
}

static int found(void *arg, size_t a, size_t b) {
    (void)arg, (void)a, (void)b;
    return 1;
}

typedef struct {
    size_t span[64][2];
    int n;
} spans_t;

static int add_span(void *arg, size_t a, size_t b) {
    spans_t *s = arg;
    if (s->n < 64) s->span[s->n][0] = a, s->span[s->n][1] = b, s->n++;
    return 0;
}

/* 1 (stop) when [a, b) lies inside none of the target's mentions. */
static int outside_spans(void *arg, size_t a, size_t b) {
    const spans_t *s = arg;
    for (int i = 0; i < s->n; i++)
        if (s->span[i][0] <= a && b <= s->span[i][1]) return 0;
    return 1;
}

int sf_classes_mentioned_apart(const sf_class_t *other, const sf_class_t *target, const char *text) {
    if (!other || !target || !text) return 0;
    spans_t t = {.n = 0};
    each_mention(target, text, add_span, &t);
    return each_mention(other, text, outside_spans, &t);
}

int sf_classes_mentioned(const sf_class_t *c, const char *text) {
    return c && text && each_mention(c, text, found, NULL);
}
