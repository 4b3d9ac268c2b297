"""Pyramid settings: validation of ``pyramid()``'s arguments and the level shapes they give.

:class:`Spec` is the canonical, picklable form of a pyramid's settings (Dask tasks carry it);
:func:`level_shapes` tells the shapes of the levels without computing anything.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..core.args import is_int, is_real     # poolkit's one "an int but not a bool"

__all__ = ["Spec", "METHODS", "EDGES", "level_shapes", "normalize", "check_levels", "default_levels", "schedule"]

METHODS = ("mean", "max", "min", "mode", "nearest")
EDGES = ("partial", "trim")


@dataclass(frozen=True)
class Spec:
    """Validated, canonical pyramid settings (picklable: Dask tasks carry it)."""

    factors: Tuple[int, ...]      # one per array axis; 1 for axes left alone
    method: str
    edge: str

    @property
    def axes(self) -> Tuple[int, ...]:
        """The pooled axes (factor > 1), ascending: the only axes the kernels see."""
        return tuple(i for i, f in enumerate(self.factors) if f > 1)

    @property
    def kernel(self) -> Tuple[int, ...]:
        return tuple(self.factors[i] for i in self.axes)

    def next_length(self, n: int, axis: int, k: int = 1) -> int:
        """Length along ``axis`` after ``k`` more levels, from length ``n``."""
        f = self.factors[axis] ** k
        # ceil and floor compose: ceil(ceil(n/a)/b) == ceil(n/(a*b)), likewise floor.
        return -(-n // f) if self.edge == "partial" else n // f

    def shape_after(self, shape: Tuple[int, ...], k: int) -> Tuple[int, ...]:
        return tuple(self.next_length(n, i, k) for i, n in enumerate(shape))


# --------------------------------------------------------------------------- #
# validation
# --------------------------------------------------------------------------- #
def _check_dtype(dtype: np.dtype, method: str) -> None:
    name = str(dtype)
    if dtype.kind not in "biuf" and name != "bfloat16":
        raise TypeError(f"`x` must hold booleans, integers or floats, but got dtype={name}.")
    if method == "mode" and dtype.kind not in "biu":
        raise TypeError(f"`method='mode'` is for label images: it needs integer or bool input, but got "
                        f"dtype={name}. Use method='mean' (or 'nearest') for intensities.")


def normalize(shape: Tuple[int, ...], dtype, factor, method, axes, edge) -> Spec:
    """Check every argument (naming it and echoing its value) and build the canonical spec."""
    ndim = len(shape)
    if ndim == 0:
        raise ValueError("`x` must have at least one axis, but got a 0-d array.")
    if 0 in shape:
        raise ValueError(f"`x` must not be empty, but got shape={tuple(shape)}.")
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}, but got method={method!r}.")
    if not isinstance(edge, str) or edge not in EDGES:
        raise ValueError(f"`edge` must be one of {EDGES}, but got edge={edge!r}.")
    _check_dtype(np.dtype(dtype), method)
    pooled = check_axes(axes, ndim)
    if is_int(factor):
        per_axis = (int(factor),) * len(pooled)
    elif isinstance(factor, (tuple, list)) and all(is_int(f) for f in factor):
        if len(factor) != len(pooled):
            raise ValueError(f"`factor` needs one entry per pooled axis ({len(pooled)}: axes={pooled}), "
                             f"but got factor={factor!r}.")
        per_axis = tuple(int(f) for f in factor)
    else:
        raise TypeError(f"`factor` must be an int or a tuple of ints, but got factor={factor!r}.")
    if any(f < 1 for f in per_axis) or all(f == 1 for f in per_axis):
        raise ValueError(f"`factor` must be >= 1 on every pooled axis and > 1 on at least one, "
                         f"but got factor={factor!r}.")
    factors = [1] * ndim
    for a, f in zip(pooled, per_axis):
        factors[a] = f
    spec = Spec(tuple(factors), method, edge)
    check_window(spec, shape, "factor", factor)
    return spec


def check_axes(axes, ndim: int) -> Tuple[int, ...]:
    """The pooled axes, non-negative and ascending as given; None means all."""
    if axes is None:
        return tuple(range(ndim))
    seq = (axes,) if is_int(axes) else axes
    if not isinstance(seq, (tuple, list)) or not seq or not all(is_int(a) for a in seq):
        raise TypeError(f"`axes` must be an int or a non-empty tuple of ints, but got axes={axes!r}.")
    if any(not -ndim <= a < ndim for a in seq):
        raise ValueError(f"`axes` must lie in [-{ndim}, {ndim}) for an array of {ndim} axes, "
                         f"but got axes={axes!r}.")
    pooled = tuple(int(a) % ndim for a in seq)
    if len(set(pooled)) != len(pooled):
        raise ValueError(f"`axes` must not repeat an axis, but got axes={axes!r}.")
    return pooled


def check_window(spec: Spec, shape, name: str, value) -> None:
    """Limits of one level's windows: at most 2**29 elements, at most 3 pooled axes."""
    ndim = len(shape)
    if int(np.prod(spec.kernel)) > 2**29:
        # Exact integer means need sums below 2**63 (see _integer_mean).
        raise ValueError(f"`{name}` makes windows of {int(np.prod(spec.kernel))} elements; at most 2**29 "
                         f"are supported, but got {name}={value!r}.")
    if len(spec.axes) > 3:
        raise ValueError(f"at most 3 axes can be pooled at once, but factor > 1 on axes {spec.axes} of "
                         f"shape={tuple(shape)}; pass `axes` (e.g. axes={tuple(range(ndim))[-3:]} for "
                         f"the last three) or a factor of 1 for the others.")


def check_levels(levels, shape: Tuple[int, ...], spec: Spec) -> Optional[int]:
    if levels is None:
        return None
    if not is_int(levels) or levels < 0:
        raise ValueError(f"`levels` must be None or an int >= 0, but got levels={levels!r}.")
    if spec.edge == "trim":
        for a in spec.axes:
            if spec.next_length(shape[a], a, int(levels)) == 0:
                most = max_trim_levels(shape, spec)
                raise ValueError(f"`levels`={levels} with edge='trim' would leave axis {a} (length "
                                 f"{shape[a]}, factor {spec.factors[a]}) empty; at most {most} levels.")
    return int(levels)


def max_trim_levels(shape, spec: Spec) -> int:
    k = 0
    while all(spec.next_length(shape[a], a, k + 1) > 0 for a in spec.axes):
        k += 1
    return k


def default_levels(shape: Tuple[int, ...], spec: Spec, fit: Sequence[int]) -> int:
    """Levels until every pooled axis is at most ``fit[axis]`` long (one chunk), capped for trim."""
    k = 0
    while any(spec.next_length(shape[a], a, k) > fit[a] for a in spec.axes):
        if spec.edge == "trim" and any(spec.next_length(shape[a], a, k + 1) == 0 for a in spec.axes):
            break
        k += 1
    return k


# --------------------------------------------------------------------------- #
# per-level factors: schedules, the isotropic rule and per-axis stops
# --------------------------------------------------------------------------- #
def check_scale(scale, ndim: int, name: str = "scale") -> Optional[Tuple[float, ...]]:
    """Pixel sizes, one per axis of ``x`` (or one for all): positive finite numbers."""
    if scale is None:
        return None
    seq = (scale,) * ndim if is_real(scale) else scale
    ok = isinstance(seq, (tuple, list)) and len(seq) == ndim and all(
        is_real(v) and math.isfinite(float(v)) and float(v) > 0
        for v in seq)
    if not ok:
        raise ValueError(f"`{name}` must be a positive number or one per axis ({ndim}), but got {name}={scale!r}.")
    return tuple(float(v) for v in seq)


def check_stop(stop, ndim: int) -> Optional[Tuple[int, ...]]:
    """Per-axis stop lengths: an axis is pooled only while it is longer than its stop."""
    if stop is None:
        return None
    seq = (stop,) * ndim if is_int(stop) else stop
    if not isinstance(seq, (tuple, list)) or len(seq) != ndim or not all(is_int(v) and v >= 1 for v in seq):
        raise ValueError(f"`stop` must be an int >= 1 or one per axis ({ndim}), but got stop={stop!r}.")
    return tuple(int(v) for v in seq)


def check_factors(factors, base: Spec, pooled: Tuple[int, ...], shape):
    """``factors``: None, ``"auto"`` or a per-level schedule; returns None, "auto" or one Spec per level.

    A schedule's entries are an int or one factor per pooled axis (``pooled``, from ``axes``).
    """
    if factors is None or (isinstance(factors, str) and factors == "auto"):
        return factors
    if isinstance(factors, str) or not isinstance(factors, (tuple, list)) or not factors:
        raise TypeError(f"`factors` must be None, 'auto' or a non-empty list of per-level factors (an int or "
                        f"one per pooled axis each), but got factors={factors!r}.")
    steps = []
    for k, entry in enumerate(factors):
        per = (entry,) * len(pooled) if is_int(entry) else entry
        if (not isinstance(per, (tuple, list)) or len(per) != len(pooled)
                or not all(is_int(f) and f >= 1 for f in per)):
            raise ValueError(f"`factors` entry {k} must be an int >= 1 or {len(pooled)} of them (one per pooled "
                             f"axis {pooled}), but got {entry!r} in factors={factors!r}.")
        if all(f == 1 for f in per):
            raise ValueError(f"`factors` entry {k} pools no axis (all factors 1) in factors={factors!r}: "
                             f"end the schedule there instead.")
        full = [1] * len(base.factors)
        for a, f in zip(pooled, per):
            full[a] = int(f)
        step = Spec(tuple(full), base.method, base.edge)
        check_window(step, shape, "factors", factors)
        steps.append(step)
    return steps


def _isotropic(factors: Tuple[int, ...], active, sizes) -> Tuple[int, ...]:
    """The "auto" rule: pool an active axis unless that makes its pixel more than sqrt(2) x the coarsest."""
    coarsest = max(sizes[a] for a in active)
    keep = [a for a in active if sizes[a] * factors[a] <= coarsest * 2 ** 0.5 * (1 + 1e-9)]
    keep = keep or list(active)           # nearly isotropic already: pool them all
    return tuple(f if a in keep else 1 for a, f in enumerate(factors))


def schedule(shape: Tuple[int, ...], base: Spec, levels: Optional[int], factors=None, scale=None,
             stop=None, fit: Optional[Sequence[int]] = None) -> List[Spec]:
    """The steps of a pyramid: one :class:`Spec` per level (level ``k + 1`` = ``steps[k]`` of level ``k``).

    Parameters
    ----------
    shape : tuple of ints
        Level 0's shape.
    base : Spec
        The validated ``factor``/``axes``/``method``/``edge`` (:func:`normalize`).
    levels : int or None
        Checked levels (:func:`check_levels`); None: the stop rules end the pyramid.
    factors : None, "auto" or list of Spec
        As returned by :func:`check_factors`. A list is the schedule itself; "auto" pools, at each
        level, the pooled axes whose pixel (``scale`` times the factors so far) stays within
        sqrt(2) of the coarsest pixel once pooled (all of them when none would).
    scale : tuple of floats, optional
        Level 0's pixel size per axis (for "auto"; default 1).
    stop : tuple of ints, optional
        Per axis: the axis is pooled only while it is longer than ``stop[axis]``; with ``levels``
        None the pyramid ends when no pooled axis is. None: every pooled axis every level, and
        ``levels=None`` ends once every pooled axis is at most ``fit[axis]`` long.
    fit : tuple of ints, optional
        For ``stop=None, levels=None``: lengths to fit (chunks); default 1.

    Returns
    -------
    list of Spec
        One per level (``levels`` of them when given).

    Examples
    --------
    >>> base = normalize((64, 1024, 1024), "uint16", 2, "mean", None, "partial")
    >>> [s.factors for s in schedule((64, 1024, 1024), base, 3, "auto", scale=(4.0, 1.0, 1.0))]
    [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    >>> [s.factors for s in schedule((64, 1024, 1024), base, None, stop=(64, 256, 256))]
    [(1, 2, 2), (1, 2, 2)]
    """
    ndim = len(shape)
    if isinstance(factors, list):
        if levels is not None and levels != len(factors):
            raise ValueError(f"`levels`={levels} disagrees with the {len(factors)} levels of `factors`; "
                             f"pass one of them.")
        _check_not_emptied(shape, factors)
        return factors
    sizes = list(scale or (1.0,) * ndim)
    n = list(shape)
    steps: List[Spec] = []
    if stop is None and factors is None:
        k = levels if levels is not None else default_levels(tuple(shape), base, fit or (1,) * ndim)
        return [base] * k
    while levels is None or len(steps) < levels:
        active = [a for a in base.axes if stop is None or n[a] > stop[a]]
        if base.edge == "trim":
            active = [a for a in active if n[a] // base.factors[a] > 0]
        if not active:
            if levels is None:
                break
            raise ValueError(f"`levels`={levels} but no axis is left to pool after {len(steps)} levels "
                             f"(stop={stop}, shape={tuple(shape)}); pass levels <= {len(steps)} or a smaller stop.")
        if stop is None and levels is None and all(n[a] <= (fit or (1,) * ndim)[a] for a in base.axes):
            break
        f = tuple(base.factors[a] if a in active else 1 for a in range(ndim))
        if factors == "auto":
            f = _isotropic(f, active, sizes)
        step = Spec(f, base.method, base.edge)
        steps.append(step)
        n = [step.next_length(v, a) for a, v in enumerate(n)]
        sizes = [s * fa for s, fa in zip(sizes, f)]
    return steps


def _check_not_emptied(shape, steps: Sequence[Spec]) -> None:
    n = tuple(shape)
    for k, step in enumerate(steps):
        n = step.shape_after(n, 1)
        if 0 in n:
            raise ValueError(f"`factors` level {k + 1} with edge='trim' leaves axis {n.index(0)} empty "
                             f"(shape={tuple(shape)}); shorten the schedule.")


def shapes_of(shape: Tuple[int, ...], steps: Sequence[Spec]) -> List[Tuple[int, ...]]:
    """Level shapes for a schedule: ``len(steps) + 1`` of them, level 0 first."""
    out = [tuple(int(v) for v in shape)]
    for step in steps:
        out.append(step.shape_after(out[-1], 1))
    return out


def level_shapes(shape, levels=None, factor=2, axes=None, *, edge="partial", chunks=None):
    """Shapes of the levels :func:`pyramid` would return, without computing anything.

    Parameters
    ----------
    shape : tuple of ints
        Shape of level 0.
    levels, factor, axes, edge
        As for :func:`pyramid`.
    chunks : tuple of ints, optional
        Chunk lengths of level 0 (its Dask chunks), for the ``levels=None`` rule;
        None means a NumPy array (levels until every pooled axis has length 1).

    Returns
    -------
    list of tuples
        ``levels + 1`` shapes, level 0 first.

    Examples
    --------
    >>> from poolkit.multiscale.spec import level_shapes
    >>> level_shapes((5, 7))
    [(5, 7), (3, 4), (2, 2), (1, 1)]
    >>> level_shapes((5, 7), edge="trim")
    [(5, 7), (2, 3), (1, 1)]
    """
    shape = tuple(int(n) for n in shape)
    spec = normalize(shape, np.float64, factor, "mean", axes, edge)
    n = check_levels(levels, shape, spec)
    if n is None:
        n = default_levels(shape, spec, chunks if chunks is not None else (1,) * len(shape))
    return [spec.shape_after(shape, k) for k in range(n + 1)]


