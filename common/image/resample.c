/* resample.c: Pillow's two-pass convolution resize (see resample.h for the
 * arithmetic it must reproduce), restricted to an output window. */
#include "common/image/resample.h"

#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

/* Pillow's PRECISION_BITS: 32 - 8 - 2, leaving room for the 8-bit value and
 * for sums of weights a little over 1 (bicubic's negative lobes). */
#define PREC 22

/* The weights of one axis for outputs o0 .. o0+n-1: output i reads the
 * inputs lo[i] .. lo[i]+cnt[i]-1 with weights k[i*ksize ..]. */
typedef struct {
    int ksize;
    int *lo, *cnt;
    int32_t *k;
} axis_t;

static double filter_at(int filter, double x) {
    if (x < 0.0) x = -x;
    if (filter == SF_RESAMPLE_BILINEAR) return x < 1.0 ? 1.0 - x : 0.0;
    /* Keys' cubic convolution kernel, a = -0.5, written as Pillow evaluates
     * it so that the doubles round alike. */
    const double a = -0.5;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

static void axis_free(axis_t *ax) {
    free(ax->lo);
    free(ax->cnt);
    free(ax->k);
}

static int axis_make(axis_t *ax, int in, int out, int o0, int n, int filter) {
    memset(ax, 0, sizeof *ax);
    const double scale = (double)in / out;
    const double fscale = scale < 1.0 ? 1.0 : scale;
    const double support = (filter == SF_RESAMPLE_BICUBIC ? 2.0 : 1.0) * fscale;
    const double ss = 1.0 / fscale;
    ax->ksize = (int)ceil(support) * 2 + 1;
    ax->lo = malloc(sizeof *ax->lo * (size_t)n);
    ax->cnt = malloc(sizeof *ax->cnt * (size_t)n);
    ax->k = malloc(sizeof *ax->k * (size_t)n * (size_t)ax->ksize);
    double *w = malloc(sizeof *w * (size_t)ax->ksize);
    if (!ax->lo || !ax->cnt || !ax->k || !w) {
        free(w);
        axis_free(ax);
        return SF_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        const double center = (o0 + i + 0.5) * scale;
        /* Truncation toward zero, then clamping, as Pillow rounds its
         * bounds. */
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0) xmin = 0;
        if (xmax > in) xmax = in;
        xmax -= xmin;
        double sum = 0.0;
        for (int x = 0; x < xmax; x++) {
            w[x] = filter_at(filter, (x + xmin - center + 0.5) * ss);
            sum += w[x];
        }
        int32_t *k = ax->k + (size_t)i * ax->ksize;
        for (int x = 0; x < xmax; x++) {
            double v = sum != 0.0 ? w[x] / sum : w[x];
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PREC)) : (int32_t)(0.5 + v * (1 << PREC));
        }
        ax->lo[i] = xmin;
        ax->cnt[i] = xmax;
    }
    free(w);
    return 0;
}

/* The sum starts at one half for rounding; a negative sum clips to 0.  It
 * is kept in 64 bits: for these two filters Pillow's 32-bit sum cannot
 * overflow, so the results agree. */
static inline uint8_t clip8(int64_t s) {
    if (s < 0) return 0;
    s >>= PREC;
    return s > 255 ? 255 : (uint8_t)s;
}

int sf_image_resize_pil(const uint8_t *src, int w, int h, int channels, int ow, int oh, int filter,
                        const sf_image_rect_t *win, uint8_t *dst) {
    if (!src || !dst || w < 1 || h < 1 || ow < 1 || oh < 1 || channels < 1 || channels > 4 ||
        (filter != SF_RESAMPLE_BILINEAR && filter != SF_RESAMPLE_BICUBIC))
        return SF_EINVAL;
    if (w > SF_RESAMPLE_MAX_DIM || h > SF_RESAMPLE_MAX_DIM || ow > SF_RESAMPLE_MAX_DIM ||
        oh > SF_RESAMPLE_MAX_DIM)
        return SF_ERANGE;
    sf_image_rect_t r = win ? *win : (sf_image_rect_t){0, 0, ow, oh};
    if (r.x < 0 || r.y < 0 || r.w < 1 || r.h < 1 || r.x > ow - r.w || r.y > oh - r.h) return SF_EINVAL;
    const int C = channels;
    /* Pillow resamples an axis only when its size changes; unresampled,
     * the window's columns (rows) are the input's. */
    const int need_h = ow != w, need_v = oh != h;
    axis_t ax = {0}, ay = {0};
    uint8_t *tmp = NULL;
    int rc = 0, r0, r1;
    if (need_h && (rc = axis_make(&ax, w, ow, r.x, r.w, filter))) goto out;
    if (need_v) {
        if ((rc = axis_make(&ay, h, oh, r.y, r.h, filter))) goto out;
        /* The input rows the vertical pass reads: the bounds grow with the
         * output row. */
        r0 = ay.lo[0];
        r1 = ay.lo[r.h - 1] + ay.cnt[r.h - 1];
    } else {
        r0 = r.y;
        r1 = r.y + r.h;
    }
    /* Horizontal pass: input rows r0 .. r1-1, window columns, as 8 bits. */
    const size_t tstride = (size_t)r.w * C;
    tmp = malloc(tstride * (size_t)(r1 - r0 > 0 ? r1 - r0 : 1));
    if (!tmp) {
        rc = SF_ENOMEM;
        goto out;
    }
    for (int y = r0; y < r1; y++) {
        const uint8_t *row = src + (size_t)y * w * C;
        uint8_t *t = tmp + (size_t)(y - r0) * tstride;
        if (!need_h) {
            memcpy(t, row + (size_t)r.x * C, tstride);
            continue;
        }
        for (int i = 0; i < r.w; i++) {
            const int32_t *k = ax.k + (size_t)i * ax.ksize;
            const uint8_t *p = row + (size_t)ax.lo[i] * C;
            for (int c = 0; c < C; c++) {
                int64_t s = 1 << (PREC - 1);
                for (int x = 0; x < ax.cnt[i]; x++) s += (int64_t)p[(size_t)x * C + c] * k[x];
                t[(size_t)i * C + c] = clip8(s);
            }
        }
    }
    /* Vertical pass over the 8-bit rows. */
    for (int j = 0; j < r.h; j++) {
        uint8_t *d = dst + (size_t)j * tstride;
        if (!need_v) {
            memcpy(d, tmp + (size_t)j * tstride, tstride);
            continue;
        }
        const int32_t *k = ay.k + (size_t)j * ay.ksize;
        const uint8_t *t = tmp + (size_t)(ay.lo[j] - r0) * tstride;
        for (size_t i = 0; i < tstride; i++) {
            int64_t s = 1 << (PREC - 1);
            for (int y = 0; y < ay.cnt[j]; y++) s += (int64_t)t[(size_t)y * tstride + i] * k[y];
            d[i] = clip8(s);
        }
    }
out:
    free(tmp);
    axis_free(&ax);
    axis_free(&ay);
    return rc;
}
