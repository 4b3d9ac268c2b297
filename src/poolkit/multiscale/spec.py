"""Pyramid settings: validation of ``pyramid()``'s arguments and the level shapes they give.

:class:`Spec` is the canonical, picklable form of a pyramid's settings (Dask tasks carry it);
:func:`level_shapes` tells the shapes of the levels without computing anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..core.args import is_int      # poolkit's one "an int but not a bool"

__all__ = ["Spec", "METHODS", "EDGES", "level_shapes", "normalize", "check_levels", "default_levels"]

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
    if axes is None:
        pooled = tuple(range(ndim))
    else:
        seq = (axes,) if is_int(axes) else axes
        if not isinstance(seq, (tuple, list)) or not seq or not all(is_int(a) for a in seq):
            raise TypeError(f"`axes` must be an int or a non-empty tuple of ints, but got axes={axes!r}.")
        if any(not -ndim <= a < ndim for a in seq):
            raise ValueError(f"`axes` must lie in [-{ndim}, {ndim}) for an array of {ndim} axes, "
                             f"but got axes={axes!r}.")
        pooled = tuple(int(a) % ndim for a in seq)
        if len(set(pooled)) != len(pooled):
            raise ValueError(f"`axes` must not repeat an axis, but got axes={axes!r}.")
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
    if int(np.prod(spec.kernel)) > 2**29:
        # Exact integer means need sums below 2**63 (see _integer_mean).
        raise ValueError(f"`factor` makes windows of {int(np.prod(spec.kernel))} elements; at most 2**29 "
                         f"are supported, but got factor={factor!r}.")
    if len(spec.axes) > 3:
        raise ValueError(f"at most 3 axes can be pooled at once, but factor > 1 on axes {spec.axes} of "
                         f"shape={tuple(shape)}; pass `axes` (e.g. axes={tuple(range(ndim))[-3:]} for "
                         f"the last three) or a factor of 1 for the others.")
    return spec


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
    >>> from poolkit.multiscale import level_shapes
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


