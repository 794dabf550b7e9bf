/* sft_rows.c: the policy's prompt and SFT rows (sft_rows.h). */
#include "common/text/sft_rows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

int sf_policy_prompt(const char *class_name, char *buf, size_t n) {
    if (!class_name || !buf) return SF_EINVAL;
    int k = snprintf(buf, n, "Caption of a %s:", class_name);
    return k < 0 || (size_t)k >= n ? SF_ERANGE : 0;
}

int sf_sft_rows_init(sf_sft_rows_t *r, int stride) {
    if (!r || stride < 4) return SF_EINVAL;
    memset(r, 0, sizeof *r);
    r->stride = stride;
    return 0;
}

/* A row of prompt (NULL: the end-of-text token alone, as plain text starts)
 * and caption. */
static int add_row(sf_sft_rows_t *r, const sf_bpe_t *bpe, const char *class_name, const char *caption);

int sf_sft_rows_add(sf_sft_rows_t *r, const sf_bpe_t *bpe, const char *class_name, const char *caption) {
    if (!class_name) return SF_EINVAL;
    return add_row(r, bpe, class_name, caption);
}

int sf_sft_rows_add_plain(sf_sft_rows_t *r, const sf_bpe_t *bpe, const char *caption) {
    return add_row(r, bpe, NULL, caption);
}

static int add_row(sf_sft_rows_t *r, const sf_bpe_t *bpe, const char *class_name, const char *caption) {
    if (!r || !bpe || !caption) return SF_EINVAL;
    while (*caption == ' ') caption++;
    size_t cl = strlen(caption);
    while (cl && caption[cl - 1] == ' ') cl--;
    if (cl == 0) return SF_EINVAL;
    for (size_t i = 0; i < cl; i++)
        if ((unsigned char)caption[i] < 0x20 || caption[i] == 0x7f) return SF_EINVAL;
    char prompt[512];
    int rc = class_name ? sf_policy_prompt(class_name, prompt, sizeof prompt) : 0;
    if (rc) return rc;
    char *resp = malloc(cl + 3);
    if (!resp) return SF_ENOMEM;
    resp[0] = ' ';
    memcpy(resp + 1, caption, cl);
    size_t rl = cl + 1;
    char last = caption[cl - 1];
    if (last != '.' && last != '!' && last != '?') resp[rl++] = '.';
    resp[rl] = 0;
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 256;
        int32_t *s = realloc(r->seqs, sizeof *s * (size_t)cap * r->stride);
        if (s) r->seqs = s;
        int *p = realloc(r->plen, sizeof *p * cap);
        if (p) r->plen = p;
        int *q = realloc(r->slen, sizeof *q * cap);
        if (q) r->slen = q;
        if (!s || !p || !q) { free(resp); return SF_ENOMEM; }
        r->cap = cap;
    }
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    if (!class_name && (a = malloc(sizeof *a))) a[0] = sf_bpe_eot(bpe), na = 1;
    if ((class_name ? (rc = sf_bpe_encode(bpe, prompt, strlen(prompt), &a, &na)) != 0 : (rc = a ? 0 : SF_ENOMEM)) ||
        (rc = sf_bpe_encode(bpe, resp, rl, &b, &nb)) != 0) {
        free(a);
        free(b);
        free(resp);
        return rc;
    }
    free(resp);
    const size_t S = (size_t)r->stride;
    if (na + 2 > S) na = S - 2;
    if (na + nb + 1 > S) nb = S - 1 - na;
    int32_t *row = r->seqs + (size_t)r->n * S;
    memset(row, 0, sizeof *row * S);
    memcpy(row, a, na * sizeof *a);
    memcpy(row + na, b, nb * sizeof *b);
    row[na + nb] = sf_bpe_eot(bpe);
    r->plen[r->n] = (int)na;
    r->slen[r->n] = (int)(na + nb + 1);
    r->n++;
    free(a);
    free(b);
    return 0;
}

void sf_sft_rows_free(sf_sft_rows_t *r) {
    if (!r) return;
    free(r->seqs);
    free(r->plen);
    free(r->slen);
    memset(r, 0, sizeof *r);
}
