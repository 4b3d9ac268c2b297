"""The N-d core's description of one pooling: what every backend receives.

A :class:`Plan` says how to pool a canonical ``(B, D, H, W, C)`` array: the
windows along D, H and W (1-D and 2-D pooling use trivial leading axes), the
reduction (a record of :mod:`poolkit.core.reductions`, whose rules the backends
read) and its options.  Backends never see user arguments, only plans.

Max and min pooling record, for every output, the *offset* of the winning tap inside
its window, ``(jd * KH + jh) * KW + jw``, in one byte when the window has fewer
than 255 taps (four or eight bytes for wider windows, see :attr:`Plan.off_dtype`).  That is all backward needs; PyTorch-style flat indices are
derived from it on request (:func:`offsets_to_indices`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Optional, Tuple

import numpy as np

from .geometry import Axis, trivial_axis
from .reductions import Reduction

__all__ = ["Plan", "make_plan", "off_dtype_for", "offsets_to_indices", "sentinel_for", "check_offsets",
           "invalid_offsets", "divs_dtype", "ignored_mask"]


@dataclass(frozen=True, eq=False)
class Plan:
    """How to pool one canonical array.

    Attributes
    ----------
    reduction : Reduction
        The op and its rules: who wins (and so keeps offsets), whether sums are divided,
        padding and empty-window values.
    axes : tuple of three Axis
        Windows along D, H, W.
    in_shape, out_shape : tuple of five ints
        ``(B, D, H, W, C)`` and ``(B, OD, OH, OW, C)``.
    nan_ignore : bool
        ``nan_policy="ignore"``: NaN elements are left out of their windows.
    count_include_pad : bool
    divisor_override : int or None
    """

    reduction: Reduction
    axes: Tuple[Axis, Axis, Axis]
    in_shape: Tuple[int, int, int, int, int]
    out_shape: Tuple[int, int, int, int, int]
    nan_ignore: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    # Per-plan values a backend derives once (kernel tables and the like), keyed by backend.
    scratch: dict = field(default_factory=dict, repr=False, compare=False)

    def __getstate__(self) -> dict:
        # Pickle and deepcopy (of a layer's saved context) without the backends' scratch: it may
        # hold compiled kernels, and each backend rebuilds its entries on demand.
        state = dict(self.__dict__)
        state["scratch"] = {}
        return state

    @property
    def op(self) -> str:
        """The reduction's name (for messages and kernel names; backends read :attr:`reduction`)."""
        return self.reduction.name

    @property
    def divide(self) -> bool:
        """False for sums: the window sums stand (the divisor is 1)."""
        return self.reduction.divides

    @functools.cached_property
    def taps(self) -> Tuple[int, int, int]:
        d, h, w = self.axes
        return d.taps, h.taps, w.taps

    @functools.cached_property
    def window_volume(self) -> int:
        kd, kh, kw = self.taps
        return kd * kh * kw

    @functools.cached_property
    def off_dtype(self) -> np.dtype:
        """The narrowest offset type that holds every tap and the sentinel.

        One byte per output for windows under 255 taps (the common case), four
        under ``2**31 - 1`` taps, eight beyond (offsets of a wider window would
        wrap in 32 bits).
        """
        return off_dtype_for(self.window_volume)

    @functools.cached_property
    def sentinel(self) -> int:
        """Offset of a window with no winner (wholly in padding, or all-NaN when ignored)."""
        return sentinel_for(self.off_dtype)

    @functools.cached_property
    def in_size(self) -> int:
        return int(np.prod(self.in_shape, dtype=np.int64))

    @functools.cached_property
    def out_size(self) -> int:
        return int(np.prod(self.out_shape, dtype=np.int64))

    @functools.cached_property
    def table(self) -> np.ndarray:
        """``int64 (3, 5, max_out)``: start, lo, hi, padded count, step per axis (for kernels)."""
        n = max(a.out for a in self.axes)
        t = np.zeros((3, 5, n), dtype=np.int64)
        for i, a in enumerate(self.axes):
            t[i, 0, : a.out] = a.start
            t[i, 1, : a.out] = a.lo
            t[i, 2, : a.out] = a.hi
            t[i, 3, : a.out] = a.padded
            t[i, 4, :] = a.step
        t.setflags(write=False)
        return t

    @functools.cached_property
    def base_divisor(self) -> np.ndarray:
        """Average pooling divisor per output position, ``float64 (OD, OH, OW)``, before NaN-ignore.

        1 for sums, ``divisor_override`` if given, else the product over axes of the taps
        inside the padded extent (``count_include_pad``) or inside the input.
        With ``nan_ignore`` backends take each window's NaN count off it
        (unless overridden).
        """
        fixed = 1 if not self.divide else self.divisor_override
        if fixed is not None:
            return np.full(tuple(self.out_shape[1:4]), float(fixed))
        f = [(a.padded if self.count_include_pad else a.valid).astype(np.float64) for a in self.axes]
        d = f[0][:, None, None] * f[1][None, :, None] * f[2][None, None, :]   # (OD, OH, OW)
        d.setflags(write=False)
        return d


def off_dtype_for(window_volume: int) -> np.dtype:
    """Offset dtype for windows of ``window_volume`` taps: uint8, int32 or int64."""
    if window_volume < 255:
        return np.dtype(np.uint8)
    if window_volume < 2**31 - 1:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def sentinel_for(off_dtype: np.dtype) -> int:
    """The no-winner offset: 255 in uint8 (taps stop at 254), -1 in the signed types."""
    return 255 if off_dtype == np.uint8 else -1


@functools.lru_cache(maxsize=512)
def make_plan(reduction: Reduction, axes: Tuple[Axis, ...], batch: int, channels: int, nan_ignore: bool = False,
              count_include_pad: bool = True, divisor_override: Optional[int] = None) -> Plan:
    """Build (and cache) the plan for ``axes`` (1 to 3 of them, padded up to D, H, W)."""
    d, h, w = (trivial_axis(),) * (3 - len(axes)) + tuple(axes)
    return Plan(reduction, (d, h, w), (batch, d.size, h.size, w.size, channels),
                (batch, d.out, h.out, w.out, channels), nan_ignore, count_include_pad, divisor_override)


def _tap_of(off: np.ndarray, plan: Plan):
    """``(o, jd, jh, jw)``: the offsets as int64 and the tap they name along D, H and W."""
    _, kh, kw = plan.taps
    o = off.astype(np.int64)
    jd, rem = np.divmod(o, kh * kw)
    jh, jw = np.divmod(rem, kw)
    return o, jd, jh, jw


def offsets_to_indices(off: np.ndarray, plan: Plan) -> np.ndarray:
    """Turn window offsets into PyTorch's flat indices into each input plane (int64, -1 for none)."""
    ad, ah, aw = plan.axes
    _, jd, jh, jw = _tap_of(off, plan)
    # positions: (B, OD, OH, OW, C) via broadcasting of the per-axis starts
    pd = ad.start[None, :, None, None, None] + jd * ad.step
    ph = ah.start[None, None, :, None, None] + jh * ah.step
    pw = aw.start[None, None, None, :, None] + jw * aw.step
    idx = (pd * ah.size + ph) * aw.size + pw
    idx[off == plan.sentinel] = -1
    return idx


def divs_dtype(dtype: np.dtype) -> np.dtype:
    """dtype of the per-output divisors kept when elements are ignored: the data's float type, float64
    for integer sums (a window with no element left gets a NaN divisor: no gradient)."""
    dtype = np.dtype(dtype)
    return dtype if dtype.kind == "f" else np.dtype(np.float64)


def ignored_mask(x: np.ndarray, plan: Plan, skip: Optional[np.ndarray]) -> np.ndarray:
    """``bool`` of x's shape: the elements left out of their windows (NaN under ``nan_ignore``, masked)."""
    nan = np.isnan(x) if plan.nan_ignore and x.dtype.kind == "f" else None
    if skip is None:
        return nan if nan is not None else np.zeros(x.shape, dtype=bool)
    return skip if nan is None else nan | skip


def invalid_offsets(off: np.ndarray, plan: Plan) -> int:
    """How many offsets in ``off`` are neither ``plan.sentinel`` nor a tap of their window inside the input.

    Forward only ever writes such taps; anything else means the saved state was altered.
    """
    o, jd, jh, jw = _tap_of(off, plan)
    ok = (o >= 0) & (o < plan.window_volume)
    for i, (axis, j) in enumerate(zip(plan.axes, (jd, jh, jw))):
        at: list = [None] * 5
        at[i + 1] = slice(None)                  # the per-output bounds of this axis, broadcast
        ok &= (axis.lo[tuple(at)] <= j) & (j < axis.hi[tuple(at)])
    return int(np.count_nonzero((o != plan.sentinel) & ~ok))


def check_offsets(bad: int) -> None:
    """Raise when a backward pass met offsets that are not window taps (``bad`` > 0; see :func:`invalid_offsets`).

    The message quotes no count: the kernels may meet one bad offset twice (a scan, then
    the window that reads it).
    """
    if bad:
        raise ValueError("the saved state of max pooling holds offsets that are not taps of their window "
                         "inside the input: the layer's state or the indices were altered after forward. "
                         "Run forward again.")
