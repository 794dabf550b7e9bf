"""fill.py: the deterministic weights of the numerics fixtures.

The fixtures compare the C++ forward passes with independent Python
implementations on the same weights.  Committing those weights would take
hundreds of megabytes for the real shapes (GPT-2 124M, CLIP ViT-B/32), so both
sides make them from this formula instead, and a fixture commits only each
tensor's name, shape, scale and offset, the input and the expected outputs:

    h    = FNV-1a 64 of the tensor's name (UTF-8 bytes)
    x_i  = splitmix64(h + i)            (i: the element's row-major index)
    u_i  = (x_i >> 11) * 2**-53         (uniform in [0, 1))
    w_i  = offset + scale * (2 u_i - 1)

The C side is tests/unit/numerics_fill.h; the two must stay identical, which
the fixtures themselves check (a wrong weight changes every output).
"""
import numpy as np

M64 = (1 << 64) - 1


def fnv1a64(name):
    h = 0xCBF29CE484222325
    for b in name.encode():
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def splitmix64(x):
    """x: a numpy uint64 array; arithmetic wraps modulo 2**64."""
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def fill(name, shape, scale, offset=0.0):
    """The float32 tensor (numpy) of `name` with `shape`."""
    n = int(np.prod(shape)) if len(shape) else 1
    with np.errstate(over="ignore"):
        x = np.arange(n, dtype=np.uint64) + np.uint64(fnv1a64(name))
    u = (splitmix64(x) >> np.uint64(11)).astype(np.float64) * (2.0 ** -53)
    w = offset + scale * (2.0 * u - 1.0)
    return w.astype(np.float32).reshape(shape)
