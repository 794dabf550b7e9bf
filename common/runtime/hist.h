/* hist.h: a log-linear histogram of non-negative integers (latencies in µs).
 * Eight sub-buckets per power of two: any quantile is within 12.5%. */
#ifndef SF_HIST_H
#define SF_HIST_H

#include <stdint.h>

#define SF_HIST_BUCKETS (64 * 8)

typedef struct sf_hist_s {
    uint64_t count, sum, max;
    uint64_t b[SF_HIST_BUCKETS];
} sf_hist_t;

void sf_hist_add(sf_hist_t *h, uint64_t v);
/* q in [0, 1]; returns the upper bound of the bucket holding that rank. */
uint64_t sf_hist_quantile(const sf_hist_t *h, double q);
void sf_hist_merge(sf_hist_t *into, const sf_hist_t *from);

#endif
