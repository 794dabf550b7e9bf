/* term.c: escaping others' text for the terminal (see term.h). */
#include "cli/term.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

/* The length (1–4) of the UTF-8 character s starts with, or 0 when s does
 * not start a well-formed one (RFC 3629: no overlong forms, no surrogates,
 * nothing past U+10FFFF).  s is NUL-terminated, and a NUL is never a
 * continuation byte, so no byte past the end is read. */
static int utf8_len(const unsigned char *s) {
    const unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c >= 0xc2 && c <= 0xdf) return (s[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        const unsigned lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        const unsigned lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xc0) == 0x80 && (s[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* What the character at s prints as: *out points at it (as it is) or at
 * esc (an escape); *len is the bytes to print.  Returns the bytes of s it
 * stands for (0 at the end), and sets *escaped. */
static size_t unit(const char *s, char esc[8], const char **out, size_t *len, int *escaped) {
    const unsigned char *u = (const unsigned char *)s;
    const unsigned c = u[0];
    *escaped = 1;
    *out = esc;
    if (c == 0) return *len = 0, 0;
    if (c == '\n' || c == '\t' || c == '\r') {
        esc[0] = '\\';
        esc[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        esc[2] = 0;
        *len = 2;
        return 1;
    }
    if (c < 0x20 || c == 0x7f) {
        *len = (size_t)snprintf(esc, 8, "\\x%02x", c);
        return 1;
    }
    const int l = utf8_len(u);
    if (l == 0) {
        *len = (size_t)snprintf(esc, 8, "\\x%02x", c);
        return 1;
    }
    if (l == 2 && c == 0xc2 && u[1] < 0xa0) { /* U+0080–U+009F: the C1 controls */
        *len = (size_t)snprintf(esc, 8, "\\u%04x", u[1]);
        return 2;
    }
    *escaped = 0;
    *out = s;
    *len = (size_t)l;
    return (size_t)l;
}

char *sfctl_term_escape(const char *s, char *out, size_t n) {
    size_t o = 0;
    char esc[8];
    for (const char *p = s ? s : ""; *p;) {
        const char *text;
        size_t len;
        int escaped;
        size_t used = unit(p, esc, &text, &len, &escaped);
        if (o + len >= n) break;
        memcpy(out + o, text, len);
        o += len;
        p += used;
    }
    out[o] = 0;
    return out;
}

int sfctl_term_clean(const char *s) {
    char esc[8];
    for (const char *p = s ? s : ""; *p;) {
        const char *text;
        size_t len;
        int escaped;
        p += unit(p, esc, &text, &len, &escaped);
        if (escaped) return 0;
    }
    return 1;
}

/* *sp escaped into a new string of cJSON's allocator (the old one freed). */
static int escape_owned(char **sp) {
    if (!*sp || sfctl_term_clean(*sp)) return 0;
    size_t n = strlen(*sp) * SFCTL_TERM_GROWTH + 1;
    char *e = cJSON_malloc(n);
    if (!e) return SF_ENOMEM;
    sfctl_term_escape(*sp, e, n);
    cJSON_free(*sp);
    *sp = e;
    return 0;
}

/* One node and what is under it.  A reference's strings and children are
 * another tree's, a constant key is not the tree's to free; a parsed tree
 * has neither. */
static int escape_tree(cJSON *it) {
    if (it->type & cJSON_IsReference) return 0;
    int rc = it->type & cJSON_StringIsConst ? 0 : escape_owned(&it->string);
    if (!rc && cJSON_IsString(it)) rc = escape_owned(&it->valuestring);
    for (cJSON *c = it->child; c && !rc; c = c->next) rc = escape_tree(c);
    return rc;
}

int sfctl_term_escape_json(cJSON *root) { return root ? escape_tree(root) : 0; }

int sfctl_term_printf(FILE *f, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *msg = NULL;
    int k = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (k < 0) return -1;
    size_t l = (size_t)k;
    const int nl = l > 0 && msg[l - 1] == '\n';
    if (nl) msg[--l] = 0;
    size_t n = l * SFCTL_TERM_GROWTH + 1;
    char *e = malloc(n);
    if (!e) {
        free(msg);
        return -1;
    }
    sfctl_term_escape(msg, e, n);
    int w = fprintf(f, "%s%s", e, nl ? "\n" : "");
    free(e);
    free(msg);
    return w;
}
