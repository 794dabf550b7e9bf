/* hash.h: the tree's one string hash and one pseudo-random generator.
 *
 * Both are pinned: world shapes, seeds of generated images and cache keys of
 * trained models are derived from them, so changing either changes every
 * figure the project has published.  Nothing here is for security.
 *
 *   FNV-1a 64     hashes of names and bytes (class shapes, seeds, caches,
 *                 tokenizer tables), started from SF_HASH_BASIS:
 *                 1469598103934665603, which is FNV's published offset
 *                 basis 14695981039346656037 with its last digit lost.  The
 *                 slip is kept on purpose (every shape and seed derives from
 *                 it); sf_fnv1a from the published basis is standard FNV-1a,
 *                 which tests/unit/test_hash.c checks on published vectors;
 *   splitmix64    a counter-based generator (Steele, Lea and Flood 2014):
 *                 sf_splitmix64 steps a state, sf_mix64 is its finaliser on
 *                 one value, sf_mix2 combines two values into one seed.
 */
#ifndef SF_HASH_H
#define SF_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SF_HASH_BASIS 1469598103934665603ull /* see above: not FNV's basis */

/* FNV-1a 64 of n bytes, continuing from h (SF_HASH_BASIS to start). */
static inline uint64_t sf_fnv1a(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = (const uint8_t *)p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* FNV-1a 64 of a NUL-terminated string, from SF_HASH_BASIS. */
static inline uint64_t sf_fnv1a_str(const char *s) {
    uint64_t h = SF_HASH_BASIS;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* splitmix64's output function on z. */
static inline uint64_t sf_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* One splitmix64 step: advances *s and returns the next value. */
static inline uint64_t sf_splitmix64(uint64_t *s) { return sf_mix64(*s += 0x9e3779b97f4a7c15ull); }

/* A seed from two values (a run's seed and an item, a seed and an attempt). */
static inline uint64_t sf_mix2(uint64_t a, uint64_t b) {
    return sf_mix64(a * 0x9e3779b97f4a7c15ull + b + 0x632be59bd9b4e019ull);
}

#endif
