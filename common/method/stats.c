/* stats.c: see stats.h. */
#include "common/method/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"

int sf_eig_sym(double *a, int n, double *vals, double *vecs) {
    if (n < 1) return SF_EINVAL;
    double *v = calloc((size_t)n * n, sizeof *v);
    if (!v) return SF_ENOMEM;
    for (int i = 0; i < n; i++) v[(size_t)i * n + i] = 1;
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0, tot = 0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                double x = a[(size_t)i * n + j] * a[(size_t)i * n + j];
                tot += x;
                if (i != j) off += x;
            }
        if (off <= 1e-22 * (tot > 0 ? tot : 1)) break;
        for (int p = 0; p < n - 1; p++)
            for (int q = p + 1; q < n; q++) {
                double apq = a[(size_t)p * n + q];
                if (fabs(apq) < 1e-300) continue;
                double app = a[(size_t)p * n + p], aqq = a[(size_t)q * n + q];
                double theta = (aqq - app) / (2 * apq);
                double t = (theta >= 0 ? 1 : -1) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < n; k++) {  /* columns p, q */
                    double akp = a[(size_t)k * n + p], akq = a[(size_t)k * n + q];
                    a[(size_t)k * n + p] = c * akp - s * akq;
                    a[(size_t)k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) {  /* rows p, q */
                    double apk = a[(size_t)p * n + k], aqk = a[(size_t)q * n + k];
                    a[(size_t)p * n + k] = c * apk - s * aqk;
                    a[(size_t)q * n + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < n; k++) {  /* eigenvectors as columns of v */
                    double vkp = v[(size_t)k * n + p], vkq = v[(size_t)k * n + q];
                    v[(size_t)k * n + p] = c * vkp - s * vkq;
                    v[(size_t)k * n + q] = s * vkp + c * vkq;
                }
            }
    }
    /* Sort by eigenvalue, descending; vectors to rows with a fixed sign. */
    int *ord = malloc(sizeof *ord * (size_t)n);
    if (!ord) { free(v); return SF_ENOMEM; }
    for (int i = 0; i < n; i++) ord[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && a[(size_t)ord[j] * n + ord[j]] > a[(size_t)ord[j - 1] * n + ord[j - 1]]; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    for (int i = 0; i < n; i++) {
        int c = ord[i];
        vals[i] = a[(size_t)c * n + c];
        int big = 0;
        for (int k = 1; k < n; k++)
            if (fabs(v[(size_t)k * n + c]) > fabs(v[(size_t)big * n + c])) big = k;
        double sg = v[(size_t)big * n + c] < 0 ? -1 : 1;
        for (int k = 0; k < n; k++) vecs[(size_t)i * n + k] = sg * v[(size_t)k * n + c];
    }
    free(ord);
    free(v);
    return 0;
}

void sf_covariance(const double *x, int m, int n, double *mean, double *cov) {
    memset(mean, 0, sizeof *mean * (size_t)n);
    memset(cov, 0, sizeof *cov * (size_t)n * n);
    for (int r = 0; r < m; r++)
        for (int i = 0; i < n; i++) mean[i] += x[(size_t)r * n + i] / m;
    for (int r = 0; r < m; r++)
        for (int i = 0; i < n; i++) {
            double di = x[(size_t)r * n + i] - mean[i];
            for (int j = i; j < n; j++) cov[(size_t)i * n + j] += di * (x[(size_t)r * n + j] - mean[j]);
        }
    for (int i = 0; i < n; i++)
        for (int j = i; j < n; j++) {
            cov[(size_t)i * n + j] /= (m > 1 ? m - 1 : 1);
            cov[(size_t)j * n + i] = cov[(size_t)i * n + j];
        }
}

int sf_gauss_fit_shrunk(const double *x, int m, int n, double *mean, double *L) {
    if (m < 2 || n < 1) return SF_EINVAL;
    sf_covariance(x, m, n, mean, L);
    double tr = 0;
    for (int i = 0; i < n; i++) tr += L[(size_t)i * n + i];
    if (!(tr > 0)) return SF_ERANGE;
    const double a = (double)n / (n + m);
    for (size_t i = 0; i < (size_t)n * n; i++) L[i] *= 1 - a;
    for (int i = 0; i < n; i++) L[(size_t)i * n + i] += a * tr / n;
    return sf_cholesky(L, n);
}

int sf_pca_fit(const float *x, int m, int d, int k, double *mean, double *comps, double *var) {
    if (m < 2 || d < 1 || k < 1 || k > d) return SF_EINVAL;
    double *xd = malloc(sizeof *xd * (size_t)m * d), *cov = malloc(sizeof *cov * (size_t)d * d);
    double *vals = malloc(sizeof *vals * (size_t)d), *vecs = malloc(sizeof *vecs * (size_t)d * d);
    int rc = xd && cov && vals && vecs ? 0 : SF_ENOMEM;
    if (rc == 0) {
        for (size_t i = 0; i < (size_t)m * d; i++) xd[i] = x[i];
        sf_covariance(xd, m, d, mean, cov);
        rc = sf_eig_sym(cov, d, vals, vecs);
    }
    if (rc == 0) {
        memcpy(comps, vecs, sizeof *comps * (size_t)k * d);
        memcpy(var, vals, sizeof *var * (size_t)k);
    }
    free(xd);
    free(cov);
    free(vals);
    free(vecs);
    return rc;
}

void sf_pca_project(const double *mean, const double *comps, int d, int k, const float *x, double *out) {
    for (int i = 0; i < k; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += comps[(size_t)i * d + j] * (x[j] - mean[j]);
        out[i] = s;
    }
}

int sf_cholesky(double *a, int n) {
    for (int j = 0; j < n; j++) {
        double s = a[(size_t)j * n + j];
        for (int k = 0; k < j; k++) s -= a[(size_t)j * n + k] * a[(size_t)j * n + k];
        if (!(s > 0)) return SF_ERANGE;
        double d = sqrt(s);
        a[(size_t)j * n + j] = d;
        for (int i = j + 1; i < n; i++) {
            double t = a[(size_t)i * n + j];
            for (int k = 0; k < j; k++) t -= a[(size_t)i * n + k] * a[(size_t)j * n + k];
            a[(size_t)i * n + j] = t / d;
        }
        for (int i = 0; i < j; i++) a[(size_t)i * n + j] = 0;
    }
    return 0;
}

double sf_mahalanobis(const double *L, int n, const double *x, const double *mu) {
    /* Solve L y = x - mu; the distance is |y|. */
    double s = 0, y[1024];
    double *yy = n <= 1024 ? y : malloc(sizeof *yy * (size_t)n);
    if (!yy) return NAN;
    for (int i = 0; i < n; i++) {
        double t = x[i] - mu[i];
        for (int k = 0; k < i; k++) t -= L[(size_t)i * n + k] * yy[k];
        yy[i] = t / L[(size_t)i * n + i];
        s += yy[i] * yy[i];
    }
    if (yy != y) free(yy);
    return sqrt(s);
}
