"""The kernels of a reduction that is not poolkit's own (tests/test_op_table.py): a window median.

Laid out as a reduction with kernels of its own lays its module out: ``reference``, ``img2col`` and
``numba`` objects, each with the record's contract function on canonical ``(B, D, H, W, C)`` arrays.
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np


def median_forward(x5, plan, skip=None):
    """The median of each window's elements inside the input (padding never counted)."""
    out = np.zeros(plan.out_shape, dtype=x5.dtype)
    for o in itertools.product(*(range(a.out) for a in plan.axes)):
        spans = [a.positions(oi) for a, oi in zip(plan.axes, o)]
        taps = [x5[:, d, h, w, :] for d, h, w in itertools.product(*spans)]
        if taps:
            out[(slice(None),) + o] = np.median(np.stack(taps), axis=0).astype(x5.dtype)
    return out


reference = SimpleNamespace(median_forward=median_forward)
img2col = SimpleNamespace(median_forward=median_forward)
numba = SimpleNamespace(median_forward=median_forward)       # a real one would be Numba kernels (jit.kernel)
