#!/usr/bin/python3
"""Writes tests/fixtures/stats.json: reference values for common/method/stats.c,
computed independently with numpy (Debian's python3-numpy; run with
/usr/bin/python3).  The data are drawn from numpy's seeded generator and
stored with the results, so the C test needs no numpy."""
import json
import numpy as np

rng = np.random.default_rng(20261129)
m, d, k = 40, 6, 3
x = rng.normal(size=(m, d)) @ rng.normal(size=(d, d))      # correlated columns
x = x.astype(np.float32).astype(np.float64)                # what the C side sees
mean = x.mean(0)
cov = np.cov(x, rowvar=False)                              # divisor m - 1
vals, vecs = np.linalg.eigh(cov)
order = np.argsort(vals)[::-1]
vals, vecs = vals[order], vecs[:, order].T
for i in range(d):                                         # sign: largest component positive
    if vecs[i][np.argmax(np.abs(vecs[i]))] < 0:
        vecs[i] = -vecs[i]
proj = (x - mean) @ vecs[:k].T
z = proj                                                   # Mahalanobis in the k-dim PCA space
zc = np.cov(z, rowvar=False)
zinv = np.linalg.inv(zc)
zm = z.mean(0)
maha = [float(np.sqrt((r - zm) @ zinv @ (r - zm))) for r in z[:5]]
# A Gaussian with its covariance shrunk towards a scaled identity,
# a = d / (d + m), on all rows and on the first four (fewer rows than
# dimensions): Mahalanobis of the first five rows to each.
def shrunk(rows):
    c = np.cov(rows, rowvar=False)
    a = rows.shape[1] / (rows.shape[1] + rows.shape[0])
    return rows.mean(0), (1 - a) * c + a * np.trace(c) / rows.shape[1] * np.eye(rows.shape[1])
shrunk_maha = {}
for name, rows in (("all", x), ("first4", x[:4])):
    mu, s = shrunk(rows)
    sinv = np.linalg.inv(s)
    shrunk_maha[name] = [float(np.sqrt((r - mu) @ sinv @ (r - mu))) for r in x[:5]]
json.dump({"shrunk_mahalanobis_all": shrunk_maha["all"], "shrunk_mahalanobis_first4": shrunk_maha["first4"],
           "m": m, "d": d, "k": k, "x": x.ravel().tolist(), "mean": mean.tolist(), "eigvals": vals.tolist(),
           "components": vecs[:k].ravel().tolist(), "projection0": proj[0].tolist(), "mahalanobis": maha},
          open("tests/fixtures/stats.json", "w"), indent=0)
print("tests/fixtures/stats.json written")
