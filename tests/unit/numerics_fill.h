/* numerics_fill.h: the deterministic weights of the numerics fixtures — the
 * C twin of tools/numerics/fill.py (see there for why and the formula):
 * w_i = offset + scale * (2 u_i - 1), u_i = (splitmix64(fnv1a64(name) + i)
 * >> 11) * 2^-53, computed in double and rounded once to float. */
#ifndef SF_NUMERICS_FILL_H
#define SF_NUMERICS_FILL_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t nf_fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001B3ull;
    return h;
}

static inline uint64_t nf_splitmix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline void nf_fill(const char *name, float *out, size_t n, double scale, double offset) {
    const uint64_t h = nf_fnv1a64(name);
    for (size_t i = 0; i < n; i++) {
        double u = (double)(nf_splitmix64(h + (uint64_t)i) >> 11) * (1.0 / 9007199254740992.0);
        out[i] = (float)(offset + scale * (2.0 * u - 1.0));
    }
}

#endif
