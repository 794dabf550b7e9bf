/* hist.c: log-linear histogram (see hist.h). */
#include "common/runtime/hist.h"

static int bucket_of(uint64_t v) {
    if (v < 8) return (int)v;
    int e = 63 - __builtin_clzll(v);            /* v in [2^e, 2^(e+1)) */
    int sub = (int)((v >> (e - 3)) & 7);        /* next three bits */
    int b = (e - 2) * 8 + sub;
    return b < SF_HIST_BUCKETS ? b : SF_HIST_BUCKETS - 1;
}

static uint64_t bucket_upper(int b) {
    if (b < 8) return (uint64_t)b;
    int e = b / 8 + 2, sub = b % 8;
    return ((uint64_t)(8 + sub + 1) << (e - 3)) - 1;
}

void sf_hist_add(sf_hist_t *h, uint64_t v) {
    h->b[bucket_of(v)]++;
    h->count++;
    h->sum += v;
    if (v > h->max) h->max = v;
}

uint64_t sf_hist_quantile(const sf_hist_t *h, double q) {
    if (h->count == 0) return 0;
    uint64_t rank = (uint64_t)(q * (double)(h->count - 1)) + 1, seen = 0;
    for (int b = 0; b < SF_HIST_BUCKETS; b++) {
        seen += h->b[b];
        if (seen >= rank) {
            uint64_t u = bucket_upper(b);
            return u < h->max ? u : h->max;
        }
    }
    return h->max;
}

void sf_hist_merge(sf_hist_t *into, const sf_hist_t *from) {
    for (int b = 0; b < SF_HIST_BUCKETS; b++) into->b[b] += from->b[b];
    into->count += from->count;
    into->sum += from->sum;
    if (from->max > into->max) into->max = from->max;
}
