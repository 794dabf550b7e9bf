/* json_strict.c: one JSON value, nothing after it, no key twice (see
 * json_strict.h). */
#include "common/runtime/json_strict.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

/* The line and column (both from 1) of byte `at` of text. */
static void line_col(const char *text, size_t at, int *line, int *col) {
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            ++*line;
            *col = 1;
        } else {
            ++*col;
        }
    }
}

/* JSON's own whitespace (RFC 8259), not cJSON's "any byte up to 32". */
static int json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static int cmp_key(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Appends ".key" (or "key" at the top) or "[i]" to path[0..at), cut to cap;
 * returns the new length. */
static size_t path_push(char *path, size_t at, size_t cap, const char *key, int index) {
    int w = key ? snprintf(path + at, cap - at, "%s%s", at ? "." : "", key)
                : snprintf(path + at, cap - at, "[%d]", index);
    size_t end = at + (w > 0 ? (size_t)w : 0);
    return end < cap ? end : cap - 1;
}

/* 0 when no object under o has a key twice; 1 when one has (path then
 * holds that key's path); SF_ENOMEM. */
static int walk(const cJSON *o, char *path, size_t at, size_t cap) {
    if (cJSON_IsObject(o)) {
        int k = 0;
        for (const cJSON *it = o->child; it; it = it->next) k++;
        if (k >= 2) {
            /* Sorted, so that an object of many keys costs k log k. */
            const char *small[32], **keys = k <= 32 ? small : malloc(sizeof *keys * (size_t)k);
            if (!keys) return SF_ENOMEM;
            int i = 0;
            for (const cJSON *it = o->child; it; it = it->next) keys[i++] = it->string ? it->string : "";
            qsort(keys, (size_t)k, sizeof *keys, cmp_key);
            const char *dup = NULL;
            for (i = 1; i < k && !dup; i++)
                if (!strcmp(keys[i - 1], keys[i])) dup = keys[i];
            if (dup) path_push(path, at, cap, dup, 0);
            if (keys != small) free(keys);
            if (dup) return 1;
        }
    }
    int i = 0;
    for (const cJSON *it = o->child; it; it = it->next, i++) {
        if (!cJSON_IsObject(it) && !cJSON_IsArray(it)) continue;
        size_t end = path_push(path, at, cap, cJSON_IsObject(o) ? (it->string ? it->string : "") : NULL, i);
        int rc = walk(it, path, end, cap);
        if (rc) return rc;
        path[at] = 0;
    }
    return 0;
}

int sf_json_unique_keys(const cJSON *root, const char *what, char *err, size_t n) {
    char path[256] = "";
    int rc = root ? walk(root, path, 0, sizeof path) : 0;
    if (rc == 1) return sf_errf(SF_EINVAL, err, n, "%s: key '%s' is given twice", what, path);
    if (rc) return sf_errf(rc, err, n, "%s: %s", what, sf_strerror(rc));
    return 0;
}

int sf_json_parse_strict(const char *text, size_t len, const char *what, cJSON **out, char *err, size_t n) {
    *out = NULL;
    size_t first = 0;
    while (first < len && json_space(text[first])) first++;
    if (first == len) return sf_errf(SF_EINVAL, err, n, "%s: empty, not JSON", what);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    int line, col;
    if (!root) {
        /* cJSON points end at the byte where it gave up. */
        size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : 0;
        line_col(text, at, &line, &col);
        return sf_errf(SF_EINVAL, err, n, "%s: invalid JSON near line %d, column %d", what, line, col);
    }
    size_t at = end && end >= text && end <= text + len ? (size_t)(end - text) : len;
    while (at < len && json_space(text[at])) at++;
    if (at < len) {
        cJSON_Delete(root);
        line_col(text, at, &line, &col);
        return sf_errf(SF_EINVAL, err, n, "%s: unexpected text after the JSON value at line %d, column %d", what,
                       line, col);
    }
    int rc = sf_json_unique_keys(root, what, err, n);
    if (rc) {
        cJSON_Delete(root);
        return rc;
    }
    *out = root;
    return 0;
}
