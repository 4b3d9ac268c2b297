"""The specialised numba kernels (``backends/_fast.py``, ``backends/_simd.py``) against slower paths.

Every specialised window shape ``(KH, KW, SW)`` runs on rows whose interior has
from 1 to 40 windows, so that each way a row is cut is taken: the virtual row
(fewer than NARROW windows), narrow and wide vector blocks, a last block moved
back (forward, exact tilings) or one that skips windows already added
(overlapping backward), and the scalar border windows around them.  Results
must be bit-identical to

* the generic numba kernels, reached with the same data in channels-last
  layout (the fast kernels take channels-first only) -- for max and average;
* the reference backend -- max values, indices and gradients;

at 1 and 2 threads (inputs above ``PARALLEL_MIN_ELEMENTS`` take the parallel kernels).
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import poolkit
from poolkit.backends import _fast, _simd
from poolkit.backends import numba_loops
from helpers import assert_identical, make_input

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})

# Interior windows per row: virtual rows (< NARROW), a block exactly, one more, below and at
# WIDE, and rows that need a moved-back or skipping last block.
COUNTS = (1, 3, _simd.NARROW - 1, _simd.NARROW, _simd.NARROW + 1, _simd.WIDE - 1, _simd.WIDE,
          _simd.WIDE + 1, _simd.WIDE + _simd.NARROW + 3, 40)


def _configs():
    for kh, kw, sw in _fast.SPECIALISED:
        for pad in (0, 1):
            if pad and (kw < 2 or kh < 2):
                continue                       # padding must be at most half the kernel
            for count in COUNTS:
                # W so that the row has `count` windows inside the input (plus border ones
                # when padded), and one column left over for some counts (no exact tiling)
                width = (count - 1) * sw + kw + (count % 2)
                yield kh, kw, sw, pad, count, width


CONFIGS = list(_configs())


def _id(c):
    kh, kw, sw, pad, count, width = c
    return f"k{kh}x{kw}s{sw}p{pad}-n{count}-w{width}"


def _pool(op, x, g, kh, kw, sw, pad, last, backend):
    """Forward (values, indices) and backward of NCHW ``x`` and gradient ``g``; fed as NHWC if ``last``."""
    kw_ = dict(kernel_size=(kh, kw), stride=(2 if kh > 1 else 1, sw), padding=(pad if kh > 1 else 0, pad),
               data_format="NHWC" if last else "NCHW", backend=backend)
    layer = poolkit.MaxPool2d(**kw_, return_indices=True) if op == "max" else poolkit.AvgPool2d(**kw_)
    def to_user(a):
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if last else a
    def from_user(a):
        return None if a is None else np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if last else a
    out = layer(to_user(x))
    y, idx = out if op == "max" else (out, None)
    if backend == "numba":       # the specialised kernels take channels-first data only
        assert (_fast._setup(layer._ctx.prepared.plan) is not None) == (not last)
    return from_user(y), from_user(idx), from_user(layer.backward(to_user(g)))


def _grad(rng, x, kh, kw, sw, pad):
    oh = (x.shape[2] + 2 * (pad if kh > 1 else 0) - kh) // (2 if kh > 1 else 1) + 1
    ow = (x.shape[3] + 2 * pad - kw) // sw + 1
    g = make_input(rng, x.shape[:2] + (oh, ow), np.float64 if x.dtype.kind in "iu" else x.dtype, "normal")
    g.ravel()[::7] = -0.0
    return g


def _shape(width, kh, big):
    h = 2 * 3 + kh                                          # a few output rows
    planes = 3 if not big else -(-numba_loops.PARALLEL_MIN_ELEMENTS // (h * width)) + 1
    return (1, planes, h, width) if not big else (2, -(-planes // 2), h, width)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("cfg", CONFIGS, ids=_id)
@pytest.mark.parametrize("op, dtype, values", [("max", np.float64, "nan"), ("max", np.float32, "ties"),
                                               ("avg", np.float32, "ties")],
                         ids=["max-f64-nan", "max-f32-ties", "avg-f32"])
def test_fast_kernels_match_generic_and_reference(cfg, op, dtype, values, threads):
    kh, kw, sw, pad, count, width = cfg
    big = threads > 1
    rng = np.random.default_rng([count, width, kh, kw, sw, pad, big])
    x = make_input(rng, _shape(width, kh, big), dtype, values)
    if big:
        assert x.size >= numba_loops.PARALLEL_MIN_ELEMENTS
    g = _grad(rng, x, kh, kw, sw, pad)
    with poolkit.threads(threads):
        fast = _pool(op, x, g, kh, kw, sw, pad, False, "numba")
        generic = _pool(op, x, g, kh, kw, sw, pad, True, "numba")
    what = f"{_id(cfg)} {op} {np.dtype(dtype).name} at {threads} threads"
    names = ("y", "indices", "gradient")
    for name, a, b in zip(names, fast, generic):
        if a is not None:
            assert_identical(a, b, f"{what}: fast vs generic {name}")
    if op == "max":
        for name, a, b in zip(names, fast, _pool(op, x, g, kh, kw, sw, pad, False, "reference")):
            assert_identical(a, b, f"{what}: fast vs reference {name}")


def test_configs_take_every_fast_path():
    """The table above reaches each way of cutting a row (else the test would prove less than it says)."""
    counts = {c[4] for c in CONFIGS}
    assert min(counts) < _simd.NARROW <= max(counts)
    assert any(_simd.NARROW <= n < _simd.WIDE and n % _simd.NARROW for n in counts)   # moved-back narrow block
    assert any(n > _simd.WIDE and (n - _simd.WIDE) % _simd.NARROW for n in counts)   # wide, then a partial block
    # exact tilings (the write-once backward) and overlapping windows (the adding one) both occur
    assert any(kw == sw and w == (n - 1) * sw + kw for kh, kw, sw, p, n, w in CONFIGS)
    assert any(kw > sw for kh, kw, sw, p, n, w in CONFIGS)
