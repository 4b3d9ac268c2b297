"""An input with more than 2**31 elements in one plane: indices and offsets need 64-bit arithmetic.

A (1, 1, 46341, 46341) uint8 image (2,147,488,281 elements, 2.15 GB) is max-pooled
with an 8x8 window, stride 8 and padding "same" (1 before, 2 after), so the last
windows are partial and their maximum sits at a flat index above 2**31.  Outputs
and indices near both ends are checked against a direct computation.  Backward
is not run here: its gradient alone would take 4 to 9 GB.

Marked slow: run with ``pytest --runslow tests/test_large.py -s`` (needs about 5 GB of memory).
"""
from __future__ import annotations

import resource
import time

import numpy as np
import pytest

import poolkit

SIDE = 46341                        # SIDE**2 = 2_147_488_281 > 2**31
K = 8


def _window_max(x, i, j, pad_before=1):
    """The maximum of output (i, j)'s window and its flat index in the plane (first maximum in scan order)."""
    r0, c0 = i * K - pad_before, j * K - pad_before
    r1, c1 = max(r0, 0), max(c0, 0)
    win = x[0, 0, r1:r0 + K, c1:c0 + K]
    a = int(np.argmax(win))                               # row-major: the scan order
    r, c = divmod(a, win.shape[1])
    return win.flat[a], (r1 + r) * SIDE + (c1 + c)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numba", "img2col"])
def test_max_pool_beyond_2_to_the_31(backend):
    x = np.zeros((1, 1, SIDE, SIDE), dtype=np.uint8)
    assert x.size > 2**31
    rng = np.random.default_rng(0)
    band = 24
    x[0, 0, :band] = rng.integers(0, 255, size=(band, SIDE), dtype=np.uint8)
    x[0, 0, -band:] = rng.integers(0, 255, size=(band, SIDE), dtype=np.uint8)
    x[0, 0, :, -band:] = rng.integers(0, 255, size=(SIDE, band), dtype=np.uint8)
    # Flat indices pass 2**31 only in the last row, from column 41709 on: put the maxima there.
    first_big = 2**31 - (SIDE - 1) * SIDE                 # 41708: its flat index is 2**31
    x[0, 0, -1, first_big:] = 255

    t0 = time.perf_counter()
    y, idx = poolkit.max_pool2d(x, K, K, "same", return_indices=True, backend=backend)
    elapsed = time.perf_counter() - t0
    out = -(-SIDE // K)                                   # "same": ceil(46341 / 8) = 5793
    assert y.shape == (1, 1, out, out) and y.dtype == np.uint8
    assert idx.dtype == np.int64
    # the last window starts at column 8*5792 - 1 and its first maximum is in the last row
    assert idx[0, 0, -1, -1] == (SIDE - 1) * SIDE + (out - 1) * K - 1 > 2**31

    check = [(i, j) for i in (0, 1, 2, out - 3, out - 2, out - 1) for j in (0, 1, out // 2, out - 2, out - 1)]
    check += [(int(i), out - 1) for i in rng.integers(0, out, size=10)]
    for i, j in check:
        value, flat = _window_max(x, i, j)
        assert y[0, 0, i, j] == value, (i, j)
        assert idx[0, 0, i, j] == flat, (i, j)
    big = idx[0, 0, -1, -(-(first_big + 1) // K):]       # windows starting at column 41708 or later
    assert (big >= 2**31).all() and big.size > 500
    # the flat indices really point at the maxima (2**31 and beyond included)
    assert np.array_equal(x.reshape(-1)[idx[0, 0, -1]], y[0, 0, -1])
    assert np.array_equal(x.reshape(-1)[idx[0, 0, :, -1]], y[0, 0, :, -1])
    # int8 too: the same positions win (values shifted by 128 keep their order)
    if backend == "numba":
        x8 = x.view(np.int8)
        x8 ^= np.int8(-128)                               # uint8 v -> int8 v - 128, in place
        y8, idx8 = poolkit.max_pool2d(x8, K, K, "same", return_indices=True, backend=backend)
        assert np.array_equal(idx8[0, 0, -1], idx[0, 0, -1])
        assert np.array_equal((y8[0, 0, -1].astype(np.int16) + 128).astype(np.uint8), y[0, 0, -1])
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"\n{backend}: max_pool2d of {x.size:,} uint8 elements took {elapsed:.1f} s; "
          f"peak RSS of the test process so far {peak_gb:.2f} GB")
