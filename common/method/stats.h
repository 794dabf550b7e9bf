/* stats.h: the linear algebra of the evaluation (plain C, doubles):
 * symmetric eigen-decomposition, PCA, Cholesky and Mahalanobis distance.
 * Matrices are row-major. */
#ifndef SF_STATS_H
#define SF_STATS_H

#include <stddef.h>

/* Eigen-decomposition of the symmetric n x n matrix a (destroyed) by cyclic
 * Jacobi rotations: vals (n) in descending order, vecs (n x n) with
 * eigenvector i in row i (unit length, sign fixed so that its largest
 * component is positive).  SF_EINVAL for n < 1, SF_ENOMEM. */
int sf_eig_sym(double *a, int n, double *vals, double *vecs);

/* PCA of x (m rows of d): mean (d), the k leading principal axes as rows of
 * comps (k x d) and their variances var (k) (covariance with divisor m - 1).
 * k <= d, m >= 2. */
int sf_pca_fit(const float *x, int m, int d, int k, double *mean, double *comps, double *var);
/* Projects one row x (d) onto the axes: out (k) = comps (x - mean). */
void sf_pca_project(const double *mean, const double *comps, int d, int k, const float *x, double *out);

/* Covariance (divisor m - 1) of m rows of n doubles around their mean. */
void sf_covariance(const double *x, int m, int n, double *mean, double *cov);

/* A Gaussian fitted to m rows of n doubles for a density in a space where m
 * may be smaller than n (a class's reference embeddings): its mean (n) and
 * the Cholesky factor L (n x n, lower triangle) of the covariance shrunk
 * towards a scaled identity, S = (1 - a) C + a (tr C / n) I with
 * a = n / (n + m) (the fewer rows per dimension, the more shrinkage), so
 * that S is positive definite whenever C is not zero.  SF_EINVAL for
 * m < 2, SF_ERANGE when every row is the same, SF_ENOMEM. */
int sf_gauss_fit_shrunk(const double *x, int m, int n, double *mean, double *L);

/* Cholesky factor of the symmetric positive definite n x n matrix a, in
 * place: its lower triangle becomes L with a = L L^T.  SF_ERANGE when a is
 * not positive definite. */
int sf_cholesky(double *a, int n);
/* sqrt((x - mu)^T S^-1 (x - mu)) with L the Cholesky factor of S. */
double sf_mahalanobis(const double *L, int n, const double *x, const double *mu);

#endif
