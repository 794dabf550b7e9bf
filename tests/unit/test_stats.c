/* Unit tests for common/stats: hand-computed cases, then reference values
 * computed independently with numpy (tests/fixtures/stats.json, written by
 * tools/stats_fixture.py). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/runtime/error.h"
#include "common/method/stats.h"
#include "sf_test.h"

TEST(eig_of_a_2x2_by_hand) {
    /* [[2,1],[1,2]]: eigenvalues 3 and 1, vectors (1,1)/√2 and (1,-1)/√2. */
    double a[4] = {2, 1, 1, 2}, vals[2], vecs[4];
    CHECK_EQ_INT(sf_eig_sym(a, 2, vals, vecs), 0);
    CHECK_NEAR(vals[0], 3, 1e-12);
    CHECK_NEAR(vals[1], 1, 1e-12);
    CHECK_NEAR(vecs[0], M_SQRT1_2, 1e-12);
    CHECK_NEAR(vecs[1], M_SQRT1_2, 1e-12);
    CHECK_NEAR(fabs(vecs[2]), M_SQRT1_2, 1e-12);
    CHECK_NEAR(vecs[2] + vecs[3], 0, 1e-12);
}

TEST(pca_of_points_on_a_line) {
    /* Points t*(3,4)/5 + (1,1): all variance on the first axis (0.6, 0.8). */
    float x[10];
    for (int i = 0; i < 5; i++) x[2 * i] = 1 + 0.6f * (float)i, x[2 * i + 1] = 1 + 0.8f * (float)i;
    double mean[2], comps[4], var[2], p[2];
    CHECK_EQ_INT(sf_pca_fit(x, 5, 2, 2, mean, comps, var), 0);
    CHECK_NEAR(mean[0], 2.2, 1e-6);
    CHECK_NEAR(mean[1], 2.6, 1e-6);
    CHECK_NEAR(comps[0], 0.6, 1e-6);
    CHECK_NEAR(comps[1], 0.8, 1e-6);
    CHECK_NEAR(var[0], 2.5, 1e-5); /* var of 0..4 with divisor 4 */
    CHECK_NEAR(var[1], 0, 1e-9);
    sf_pca_project(mean, comps, 2, 1, x + 8, p);
    CHECK_NEAR(p[0], 2, 1e-5);
    CHECK_EQ_INT(sf_pca_fit(x, 1, 2, 1, mean, comps, var), SF_EINVAL);
}

TEST(mahalanobis_with_a_known_covariance) {
    /* S = diag(4, 1): x - mu = (2, 1) is one standard deviation on each axis. */
    double s[4] = {4, 0, 0, 1}, x[2] = {3, 2}, mu[2] = {1, 1};
    CHECK_EQ_INT(sf_cholesky(s, 2), 0);
    CHECK_NEAR(sf_mahalanobis(s, 2, x, mu), sqrt(2.0), 1e-12);
    /* A correlated one: S = [[2,1],[1,2]], d = (1,-1): d^T S^-1 d = 2. */
    double c[4] = {2, 1, 1, 2}, y[2] = {1, -1}, z[2] = {0, 0};
    CHECK_EQ_INT(sf_cholesky(c, 2), 0);
    CHECK_NEAR(sf_mahalanobis(c, 2, y, z), sqrt(2.0), 1e-12);
    double bad[4] = {1, 2, 2, 1};
    CHECK_EQ_INT(sf_cholesky(bad, 2), SF_ERANGE);
}

static double *jarr(const cJSON *o, const char *k, int *n) {
    const cJSON *a = cJSON_GetObjectItem(o, k);
    *n = cJSON_GetArraySize(a);
    double *v = malloc(sizeof *v * (size_t)(*n ? *n : 1));
    int i = 0;
    for (const cJSON *it = a ? a->child : NULL; it; it = it->next) v[i++] = it->valuedouble;
    return v;
}

TEST(matches_numpy) {
    const char *root = getenv("SF_ROOT") ? getenv("SF_ROOT") : ".";
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/stats.json", root);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    static char buf[1 << 16];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[len] = 0;
    cJSON *o = cJSON_Parse(buf);
    CHECK(o != NULL);
    int m = cJSON_GetObjectItem(o, "m")->valueint, d = cJSON_GetObjectItem(o, "d")->valueint,
        k = cJSON_GetObjectItem(o, "k")->valueint, n;
    double *xd = jarr(o, "x", &n), *emean = jarr(o, "mean", &n), *evals = jarr(o, "eigvals", &n),
           *ecomp = jarr(o, "components", &n), *eproj = jarr(o, "projection0", &n), *emaha = jarr(o, "mahalanobis", &n);
    float *x = malloc(sizeof *x * (size_t)m * d);
    for (int i = 0; i < m * d; i++) x[i] = (float)xd[i];
    double mean[16], comps[16 * 16], var[16];
    CHECK_EQ_INT(sf_pca_fit(x, m, d, k, mean, comps, var), 0);
    for (int i = 0; i < d; i++) CHECK_NEAR(mean[i], emean[i], 1e-9);
    for (int i = 0; i < k; i++) CHECK_NEAR(var[i], evals[i], 1e-9 * evals[0]);
    for (int i = 0; i < k * d; i++) CHECK_NEAR(comps[i], ecomp[i], 1e-8);
    /* Project every row, fit the covariance in PCA space, Mahalanobis of the
     * first five rows to the projected mean. */
    double *z = malloc(sizeof *z * (size_t)m * k), zm[16], zc[16 * 16];
    for (int r = 0; r < m; r++) sf_pca_project(mean, comps, d, k, x + (size_t)r * d, z + (size_t)r * k);
    for (int i = 0; i < k; i++) CHECK_NEAR(z[i], eproj[i], 1e-8);
    sf_covariance(z, m, k, zm, zc);
    CHECK_EQ_INT(sf_cholesky(zc, k), 0);
    for (int r = 0; r < 5; r++) CHECK_NEAR(sf_mahalanobis(zc, k, z + (size_t)r * k, zm), emaha[r], 1e-8);
    /* The shrunk Gaussian, on all rows and on four (fewer than d). */
    double *esa = jarr(o, "shrunk_mahalanobis_all", &n), *es4 = jarr(o, "shrunk_mahalanobis_first4", &n);
    double gm[16], gl[16 * 16];
    CHECK_EQ_INT(sf_gauss_fit_shrunk(xd, m, d, gm, gl), 0);
    for (int r = 0; r < 5; r++) CHECK_NEAR(sf_mahalanobis(gl, d, xd + (size_t)r * d, gm), esa[r], 1e-8);
    CHECK_EQ_INT(sf_gauss_fit_shrunk(xd, 4, d, gm, gl), 0);
    for (int r = 0; r < 5; r++) CHECK_NEAR(sf_mahalanobis(gl, d, xd + (size_t)r * d, gm), es4[r], 1e-8);
    CHECK_EQ_INT(sf_gauss_fit_shrunk(xd, 1, d, gm, gl), SF_EINVAL);
    free(esa), free(es4);
    free(z);
    free(x);
    free(xd), free(emean), free(evals), free(ecomp), free(eproj), free(emaha);
    cJSON_Delete(o);
}

int main(void) {
    SF_RUN(eig_of_a_2x2_by_hand);
    SF_RUN(pca_of_points_on_a_line);
    SF_RUN(mahalanobis_with_a_known_covariance);
    SF_RUN(matches_numpy);
    SF_DONE();
}
