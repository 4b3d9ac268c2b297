"""The NumPy engine: run a prepared call on in-memory arrays, forward and backward.

``run_forward`` pools an array with a :class:`~poolkit.engine.prepare.Prepared`
and ``run_backward`` pushes a gradient back through the :class:`Context` it
kept; ``run_fractional`` and ``run_scatter`` run the two families whose windows
are not a plan's (fractional windows, flat indices).  What a reduction keeps
and which backend function runs it come from its record
(:mod:`poolkit.core.reductions`).  Dask arrays are :mod:`.lazy`'s.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Tuple

import numpy as np

from ..backends import img2col
from ..backends.fractional import window_argmax
from ..core.layout import dtype_policy
from ..core.plan import divs_dtype, make_plan, offsets_to_indices
from ..core.reductions import AVG, DIVISORS, MAX, NOTHING, WINNERS
from .prepare import Prepared, Scatter, check_grad

__all__ = ["Context", "run_forward", "run_backward", "finish_forward", "empty_windows", "run_fractional",
           "run_scatter"]


@dataclass(eq=False)
class Context:
    """What backward needs from a forward call: the prepared call and the saved state.

    ``saved`` is what the reduction's record says it keeps: the winning-tap offsets
    (max and min; one byte per output for windows under 255 taps), None, or the
    divisors and the mask of left-out elements (average and sum pooling with
    ``nan_policy="ignore"`` or a mask).
    """

    prepared: Prepared
    saved: Any
    # Forward left elements out (nan_policy="ignore" or a mask): sums keep (divisors, ignored).
    ignoring: bool = False
    # The offsets array forward made and sealed (read-only): while ``saved`` is still that
    # object, unaltered, backward may skip checking each offset against its window.
    sealed: Any = None

    @property
    def offsets_sealed(self) -> bool:
        s = self.saved
        return s is self.sealed and isinstance(s, np.ndarray) and not s.flags.writeable

    @property
    def nbytes(self) -> int:
        """Bytes of saved state (what a layer keeps between forward and backward)."""
        s = self.saved
        if s is None:
            return 0
        if isinstance(s, np.ndarray):
            return s.nbytes
        return sum(a.nbytes for a in s)

    def check_saved(self) -> None:
        """Raise ValueError unless ``saved`` has the shapes and dtypes its forward call made (what the
        reduction's record says it keeps).

        Runs before any backward kernel (the kernels index with the saved values);
        the values themselves are checked by the kernels.
        """
        if self.offsets_sealed:
            return                  # the very array forward made, read-only: its shape and dtype are forward's
        p = self.prepared
        plan = p.plan
        kind, name = plan.reduction.saved, plan.reduction.name
        if kind == WINNERS:
            expected = [("winning-tap offsets", plan.out_shape, plan.off_dtype)]
        elif kind == DIVISORS and self.ignoring:
            expected = [("divisors", plan.out_shape, divs_dtype(p.policy.compute)),
                        ("mask of ignored elements", plan.in_shape, np.dtype(bool))]
        else:
            expected = []
        arrays = [] if self.saved is None else [self.saved] if isinstance(self.saved, np.ndarray) \
            else list(self.saved) if isinstance(self.saved, tuple) else [self.saved]
        if len(arrays) != len(expected):
            raise ValueError(f"the saved state of this {name}-pooling forward call is corrupt: expected "
                             f"{' and '.join(e[0] for e in expected) or 'nothing'}, but got {type(self.saved).__name__}.")
        for a, (what, shape, dtype) in zip(arrays, expected):
            if not isinstance(a, np.ndarray) or a.shape != tuple(shape) or a.dtype != dtype:
                got = (f"{type(a).__name__}" if not isinstance(a, np.ndarray)
                       else f"dtype={a.dtype} of shape {a.shape}")
                raise ValueError(f"the saved state of this {name}-pooling forward call is corrupt: its {what} "
                                 f"must be {dtype} of shape {tuple(shape)}, but got {got}.")


def _empty_saved(p: Prepared, dtype: np.dtype, ignoring: bool):
    """What forward keeps when there is nothing to pool (an empty batch): zeros of the kept shapes."""
    plan = p.plan
    if p.reduction.saved == WINNERS:
        return np.zeros(plan.out_shape, dtype=plan.off_dtype)
    if p.reduction.saved == DIVISORS and ignoring:
        return np.zeros(plan.out_shape, divs_dtype(dtype)), np.zeros(plan.in_shape, bool)
    return None


def run_forward(p: Prepared, x: np.ndarray, *, mask: Optional[np.ndarray] = None, return_indices: bool = False,
                keep: bool = True):
    """Pool ``x``. Returns ``(y, indices or None, Context or None)``.

    ``mask`` (from :func:`~poolkit.engine.prepare.check_mask`, or None): False elements are left
    out of their windows.
    """
    plan = p.plan
    red = plan.reduction
    x5 = p.layout.to_canonical(x)
    saved: Any                        # offsets (max, min), None or (divisors, ignored) (sums)
    if x5.dtype != p.policy.compute:    # float16/bfloat16 -> float32, bool -> uint8, integer sums -> exact type
        x5 = x5.astype(p.policy.compute)
    skip = None
    if mask is not None:
        skip = np.ascontiguousarray(~p.layout.to_canonical(mask))
    ignoring = plan.nan_ignore or skip is not None
    if x5.size == 0 or plan.out_shape[0] * plan.out_shape[4] == 0:
        out5 = np.zeros(plan.out_shape, dtype=x5.dtype)
        saved = _empty_saved(p, x5.dtype, ignoring)
    elif red.saved == NOTHING:                     # a reduction that keeps nothing returns its output alone
        out5, saved = getattr(p.backend, red.forward)(x5, plan, skip), None
    else:
        out5, saved = getattr(p.backend, red.forward)(x5, plan, skip)
    y = p.out_layout.from_canonical(out5, p.out_sizes)
    if p.policy.converts:
        y = y.astype(p.policy.result)
    indices = None
    if return_indices:
        indices = p.out_layout.from_canonical(offsets_to_indices(saved, plan), p.out_sizes)
    if not keep:
        return y, indices, None
    if red.saved == WINNERS and saved.base is None:
        saved.setflags(write=False)            # sealed: see Context.offsets_sealed
        return y, indices, Context(p, saved, ignoring, sealed=saved)
    return y, indices, Context(p, saved, ignoring)


def finish_forward(p: Prepared, x, mask, masked_input: bool, return_indices: bool, keep: bool):
    """:func:`run_forward`, with the result a masked array for a masked input: masked where a window
    has no element taking part."""
    y, idx, ctx = run_forward(p, x, mask=mask, return_indices=return_indices, keep=keep or masked_input)
    if masked_input:
        y = np.ma.MaskedArray(y, mask=empty_windows(ctx, mask))
        if not keep:
            ctx = None
    return y, idx, ctx


def empty_windows(ctx: Context, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """``bool`` of the output's shape: windows with no element taking part (all masked, ignored or padding).

    ``valid`` (bool of the input's shape, True: takes part) is read by the reductions that keep
    nothing for backward, whose saved state cannot tell.
    """
    p, plan = ctx.prepared, ctx.prepared.plan
    if p.reduction.saved == WINNERS:
        e5 = ctx.saved == plan.sentinel
    elif p.reduction.saved == NOTHING and valid is not None:
        # the windows whose taking-part flags are all 0: their max is 0 (padding counts as 0 too)
        flags = np.ascontiguousarray(p.layout.to_canonical(valid), dtype=np.uint8)
        most, _ = img2col.max_forward(flags, make_plan(MAX, plan.axes, plan.in_shape[0], plan.in_shape[4]))
        e5 = most == 0
    else:
        v = [a.valid > 0 for a in plan.axes]
        e5 = ~(v[0][:, None, None] & v[1][None, :, None] & v[2][None, None, :])[None, ..., None]
        if ctx.ignoring:
            e5 = e5 | np.isnan(ctx.saved[0])
        e5 = np.broadcast_to(e5, plan.out_shape)
    return p.out_layout.from_canonical(np.ascontiguousarray(e5), p.out_sizes)


def run_backward(ctx: Context, grad_output, name: str = "grad_output") -> np.ndarray:
    """Gradient with respect to the input of the forward call that made ``ctx``."""
    p = ctx.prepared
    red = p.plan.reduction
    g = check_grad(grad_output, p.out_shape, p.policy.result, name)
    backward = red.backward
    if not backward:
        raise TypeError(f"{red.title} pooling has no gradient.")
    ctx.check_saved()
    gpol = dtype_policy(g.dtype, AVG)            # float16/bfloat16 gradients compute in float32 (float_policy)
    g5 = p.out_layout.to_canonical(g)
    if gpol.converts:
        g5 = g5.astype(gpol.compute)
    if g5.size == 0 or p.plan.in_size == 0:
        gx5 = np.zeros(p.plan.in_shape, dtype=g5.dtype)
    elif red.saved == WINNERS:                   # the gradient goes to the winners
        gx5 = getattr(p.backend, backward)(g5, ctx.saved, p.plan, ctx.offsets_sealed)
    else:
        gx5 = getattr(p.backend, backward)(g5, ctx.saved, p.plan)
    gx = p.layout.from_canonical(gx5, p.in_sizes)
    return gx.astype(gpol.result) if gpol.converts else gx


def run_fractional(p: Prepared, x: np.ndarray, samples: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Fractional max pooling of ``x`` (``p.windows`` a :class:`~poolkit.core.windows.FractionalWindows`):
    ``(y, indices)``, with ``samples`` of shape ``(B, C, rank)`` in the canonical planes' order."""
    windows = p.windows
    x5 = p.layout.to_canonical(x)                                 # (B, D, H, W, C)
    out5_shape = p.out_layout.canonical
    if x5.size == 0:
        idx5 = np.zeros(out5_shape, dtype=np.int64)
        y5 = np.zeros(out5_shape, dtype=x5.dtype)
    else:
        xc = x5.astype(p.policy.compute) if p.policy.converts else x5
        starts = windows.starts(samples, p.in_sizes)
        idx5, y5 = window_argmax(xc, starts, windows.kernel3, p.backend_name, p.plan.nan_ignore)
        # the maxima are input elements: back in x's dtype (float16, bool) they are exact
        y5 = y5.astype(x5.dtype, copy=False)
    y = p.out_layout.from_canonical(y5.reshape(out5_shape), p.out_sizes)
    return y, p.out_layout.from_canonical(idx5, p.out_sizes)


def run_scatter(s: Scatter, v: np.ndarray, idx: np.ndarray, accumulate: bool) -> np.ndarray:
    """Send ``v`` to the flat in-plane indices ``idx`` (checked here: they are values) of the target."""
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= s.plane:
            bad = lo if lo < -1 else hi
            raise ValueError(f"`indices` must lie in [0, {s.plane}) (the size of a pooled plane; -1 means "
                             f"none), but found {bad}.")
    v5 = s.src.to_canonical(v)
    i5 = s.src.to_canonical(idx).astype(np.int64, copy=False)
    B, C = v5.shape[0], v5.shape[4]
    if s.policy.converts:
        v5 = v5.astype(s.policy.compute)
    P = v5.shape[1] * v5.shape[2] * v5.shape[3]        # explicit: reshape(B, -1, C) fails for B == 0
    out = s.backend.scatter(v5.reshape(B, P, C), i5.reshape(B, P, C), s.plane, accumulate)
    res = s.dst.from_canonical(out.reshape(s.dst.canonical_shape(s.dst.sizes)), s.dst.sizes)
    return res.astype(s.policy.result) if s.policy.converts else res
