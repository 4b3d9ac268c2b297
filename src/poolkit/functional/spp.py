"""Spatial pyramid pooling (He et al., 2014; Chainer's ``spatial_pyramid_pooling_2d``).

Pools each plane to ``l x l`` windows for every pyramid level ``l`` with
adaptive max or average pooling (PyTorch's adaptive-window rule, so any input
height and width works) and concatenates the results into one fixed-length
vector per sample: ``(N, C, H, W) -> (N, C * sum(l * l for l in levels))``.

Order of the features: level by level, in the order of ``levels``; within a
level, by channel, then window row, then window column (C-major, as Chainer
and the paper flatten), whatever the ``data_format``::

    out[n, offset(l) + (c * l + i) * l + j] = pool(x[n, c], level l)[i, j]
    offset(l) = C * (sum of k * k over the levels before l)

With ``axes=`` (any two axes of any array) there is no channel axis: every
other axis is kept, in order, and each plane's features lie on a new last
axis, ``out[..., offset(l) + i * l + j]`` with ``C = 1`` in ``offset``.

The backward pass is the sum of the levels' adaptive-pooling backward passes;
for max pooling it needs the indices of the forward call
(``return_indices=True``), which have the output's shape and order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, cast

import numpy as np
from numpy.typing import ArrayLike

from ..core.args import as_bool, check_input_shape, check_nan_policy, is_int
from ..core.layout import as_input_array, float_policy, resolve_axes
from ..core.reductions import AVG, MAX, Reduction
from ..engine.prepare import check_backend, check_float_grad
from .adaptive import adaptive
from .backward import adaptive_avg_pool_backward, max_pool_backward
from .common import Ints, Pooled

__all__ = [
    "spatial_pyramid_pool2d",
    "spatial_pyramid_pool2d_backward",
]

#: The reductions a pyramid level may use, by the name ``mode`` takes.
_BY_MODE = {r.name: r for r in (MAX, AVG)}
MODES = tuple(_BY_MODE)


def check_levels(levels) -> Tuple[int, ...]:
    """``levels`` as a non-empty tuple of positive ints, or a clear error."""
    if not isinstance(levels, (tuple, list)) or not levels or not all(is_int(v) for v in levels):
        raise TypeError(f"`levels` must be a non-empty sequence of positive ints (window grid sizes, "
                        f"e.g. (1, 2, 4)), but got levels={levels!r}.")
    if any(v < 1 for v in levels):
        raise ValueError(f"`levels` must be positive, but got levels={levels!r}.")
    return tuple(int(v) for v in levels)


def check_mode(mode) -> Reduction:
    """The reduction of ``mode`` ("max" or "avg"), or a ValueError naming it."""
    if not isinstance(mode, str) or mode not in _BY_MODE:
        raise ValueError(f"`mode` must be {' or '.join(map(repr, MODES))}, but got mode={mode!r}.")
    return _BY_MODE[mode]


def output_features(channels: int, levels: Sequence[int]) -> int:
    """Length of the pooled vector: ``channels * sum(l * l for l in levels)``."""
    return channels * sum(l * l for l in levels)


@dataclass(frozen=True)
class Geometry:
    """Which axes of an input of ``shape`` are pooled (H, W), which is the channel axis, and the feature order.

    With ``data_format`` the channel axis is the named one; with ``axes`` there
    is none (every other axis is a batch axis, as elsewhere in poolkit) and
    each plane gets its own ``sum(l * l)`` features, on a last axis.  Internally
    the work happens in the *planes-first* order ``(batch..., [C,] H, W)``: there
    a level's features are its pooled windows reshaped C-major.
    """

    shape: Tuple[int, ...]
    pooled: Tuple[int, int]                  # the H and W axes
    channel: Optional[int]                   # the channel axis; None with `axes`

    @classmethod
    def of(cls, shape: Tuple[int, ...], data_format, axes=None, name: str = "x") -> "Geometry":
        pooled, channel_axis = resolve_axes(shape, 2, data_format, axes, name=name)
        return cls(tuple(shape), cast(Tuple[int, int], pooled), channel_axis)

    @property
    def _channel(self) -> Tuple[int, ...]:
        return () if self.channel is None else (self.channel,)

    @property
    def order(self) -> Tuple[int, ...]:
        """The transpose from the user's layout to planes-first ``(batch..., [C,] H, W)``."""
        return self._batch_axes + self._channel + self.pooled

    @property
    def _batch_axes(self) -> Tuple[int, ...]:
        return tuple(a for a in range(len(self.shape)) if a not in self.pooled + self._channel)

    @property
    def channels(self) -> int:
        return 1 if self.channel is None else self.shape[self.channel]

    @property
    def batch(self) -> Tuple[int, ...]:
        """The output's leading shape: (N,) or () with ``data_format``; every other axis with ``axes``."""
        return tuple(self.shape[a] for a in self._batch_axes)

    def planes_first(self, shape_or_array):
        """An array (or a shape) in the user's layout, transposed planes-first."""
        if isinstance(shape_or_array, tuple):
            return tuple(shape_or_array[a] for a in self.order)
        return shape_or_array.transpose(self.order)

    def from_planes_first(self, a):
        """Undo :meth:`planes_first` for an array with this layout's number of axes."""
        return a.transpose(tuple(np.argsort(self.order).tolist()))

    def flatten(self, y, level: int):
        """One level's pooled array in the user's layout -> (batch..., C*l*l), C-major."""
        return self.planes_first(y).reshape(self.batch + (self.channels * level * level,))

    def split(self, v: np.ndarray, levels: Sequence[int]) -> List[np.ndarray]:
        """A pooled vector (batch..., features) cut into its levels, each planes-first (batch..., [C,] l, l)."""
        ends = np.cumsum([self.channels * l * l for l in levels])[:-1]
        chan = tuple(self.shape[a] for a in self._channel)
        return [part.reshape(self.batch + chan + (l, l)) for part, l in zip(np.split(v, ends, axis=-1), levels)]

    def output_shape(self, levels: Sequence[int]) -> Tuple[int, ...]:
        return self.batch + (output_features(self.channels, levels),)


def spp_forward(x, levels, reduction: Reduction, want_indices: bool, geo: Geometry, nan_policy: str, backend: str):
    """The pooled vectors (and with ``want_indices`` their winners' indices) of ``x``, level by level."""
    outs, idxs = [], []
    for lv in levels:
        res = adaptive(reduction, 2, x, lv, reduction.winners, data_format="channels_first", axes=geo.pooled,
                       backend=backend, nan_policy=nan_policy)
        y = res[0] if reduction.winners else res
        if reduction.winners:
            idxs.append(geo.flatten(res[1], lv))
        outs.append(geo.flatten(y, lv))
    out = np.concatenate(outs, axis=-1)
    return out, (np.concatenate(idxs, axis=-1) if want_indices else None)


def spatial_pyramid_pool2d(x: ArrayLike, levels: Sequence[int] = (1, 2, 4), mode: str = MAX.name,
                           return_indices: bool = False, *, data_format: str = "NCHW", axes: Optional[Ints] = None,
                           nan_policy: str = "propagate", backend: str = "auto") -> Pooled:
    """Spatial pyramid pooling: a fixed-length vector per sample for any input height and width.

    For each level ``l`` the plane is pooled to ``l x l`` adaptive windows
    (window ``i`` of ``O`` along an axis of size ``S`` covers
    ``[floor(i*S/O), ceil((i+1)*S/O))``, PyTorch's rule) and the levels are
    concatenated; see :mod:`poolkit.functional.spp` for the order of the features.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W) or (C, H, W)
        ``data_format="NHWC"``: (N, H, W, C) or (H, W, C). Any H and W
        (levels larger than H or W repeat elements, as adaptive pooling does).
        With ``axes``: any array with at least two axes.
    levels : sequence of positive ints
        Grid size of each pyramid level, e.g. (1, 2, 4) (He et al.'s
        (1, 2, 3, 6) works as well).
    mode : {"max", "avg"}
        Adaptive max or average pooling.
    return_indices : bool
        Also return, for ``mode="max"``, the flat index of each maximum within
        its (H, W) plane, in the output's shape and order: what
        :func:`spatial_pyramid_pool2d_backward` needs.
    data_format : {"NCHW", "NHWC", "channels_first", "channels_last"}
    axes : tuple of 2 ints, optional
        Pool over these two axes (H, W, in this order) instead of those
        ``data_format`` names. Every other axis is a batch axis: the output
        keeps them, in order, and adds one last axis of ``sum(l * l)``
        features per plane.
    nan_policy : {"propagate", "ignore"}
        "propagate" (PyTorch's behaviour): a window holding NaN gives NaN.
        "ignore": NaN elements are left out of their windows (as ``np.nanmax``
        and ``np.nanmean``); a window of NaN only gives NaN (and index -1).
    backend : {"auto", "numba", "img2col", "reference"}

    Returns
    -------
    out : ndarray, shape (N, C * sum(l * l for l in levels)) or (C * sum(...),)
        With ``axes``: ``x.shape`` without the two pooled axes, plus
        ``(sum(l * l),)``. Dtype of ``x`` (max pooling takes integers too;
        averaging does not).
    indices : ndarray of int64, same shape
        Only with ``return_indices``.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(32.).reshape(1, 2, 4, 4)
    >>> poolkit.spatial_pyramid_pool2d(x, levels=(1, 2))
    array([[15., 31.,  5.,  7., 13., 15., 21., 23., 29., 31.]])
    >>> poolkit.spatial_pyramid_pool2d(np.ones((2, 3, 7, 5)), mode="avg").shape
    (2, 63)
    >>> poolkit.spatial_pyramid_pool2d(np.ones((7, 5, 2, 3)), axes=(0, 1)).shape
    (2, 3, 21)
    """
    x = as_input_array(x, lazy=True)             # a Dask array: lazy adaptive pools, concatenated
    lv = check_levels(levels)
    red = check_mode(mode)
    ri = as_bool(return_indices, "return_indices")
    check_nan_policy(nan_policy)
    if ri and not red.winners:
        raise ValueError(f"`return_indices=True` needs mode='max' (averages have no winners), but got mode={mode!r}.")
    geo = Geometry.of(tuple(x.shape), data_format, axes)
    check_backend(backend)
    out, idx = spp_forward(x, lv, red, ri, geo, nan_policy, backend)
    return (out, idx) if ri else out


def spp_backward(g: np.ndarray, indices, levels, reduction: Reduction, geo: Geometry, backend: str,
                 nan_policy: str = "propagate", x: Optional[np.ndarray] = None) -> np.ndarray:
    """The gradient of a forward call with ``levels`` and ``reduction``: the sum of its levels' gradients."""
    pol = float_policy(g.dtype)                          # float16/bfloat16: summed in float32
    gc = g.astype(pol.compute) if pol.converts else g
    shape = geo.planes_first(geo.shape)                  # (batch..., [C,] H, W)
    if reduction.winners:
        # One scatter for every level: each level's (flat plane index, gradient) pairs side by side on
        # one axis, sent into the input with its H and W merged into that axis.
        def windows_as_one_axis(v):
            return np.concatenate([p.reshape(p.shape[:-2] + (lv * lv,)) for p, lv in zip(geo.split(v, levels), levels)],
                                  axis=-1)

        merged = shape[:-2] + (shape[-2] * shape[-1],)
        gt = max_pool_backward(windows_as_one_axis(gc), windows_as_one_axis(indices), merged,
                               axes=(len(merged) - 1,), backend=backend).reshape(shape)
    else:
        xt = None if x is None else geo.planes_first(x)
        gt = None
        for part in geo.split(gc, levels):
            gl = adaptive_avg_pool_backward(part, shape, axes=(-2, -1), nan_policy=nan_policy, x=xt, backend=backend)
            gt = gl if gt is None else gt + gl             # levels added in order
    gx = np.ascontiguousarray(geo.from_planes_first(gt))
    return gx.astype(pol.result) if pol.converts else gx


def spatial_pyramid_pool2d_backward(grad_output: ArrayLike, input_shape: Sequence[int],
                                    levels: Sequence[int] = (1, 2, 4), mode: str = MAX.name, *,
                                    indices: Optional[ArrayLike] = None, data_format: str = "NCHW",
                                    axes: Optional[Ints] = None, nan_policy: str = "propagate",
                                    x: Optional[ArrayLike] = None, backend: str = "auto") -> np.ndarray:
    """Gradient of :func:`spatial_pyramid_pool2d` with respect to its input.

    The sum over levels of each level's adaptive-pooling gradient: for
    ``mode="avg"`` every window spreads its value evenly over its elements;
    for ``mode="max"`` each value goes to its window's winner, given by the
    forward call's ``indices``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C * sum(l * l)) or (C * sum(l * l),)
        Gradient with respect to the pooled vector; floating point. With
        ``axes``: the forward output's shape.
    input_shape : tuple of ints
        Shape of the forward input.
    levels, mode, data_format, axes, backend
        As in the forward call.
    indices : array_like of int, shape of ``grad_output``
        From the forward call with ``return_indices=True``; required for
        ``mode="max"`` and refused for ``mode="avg"``.
    nan_policy : {"propagate", "ignore"}
        As in the forward call. With ``"ignore"``, ``mode="avg"`` needs the
        forward input ``x`` (its NaN elements get no share); ``mode="max"``
        reads everything off ``indices``.
    x : array_like, optional
        The forward input, for ``mode="avg"`` with ``nan_policy="ignore"``.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``
        The levels' gradients added in order, in ``grad_output``'s dtype.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(16.).reshape(1, 1, 4, 4)
    >>> y, idx = poolkit.spatial_pyramid_pool2d(x, levels=(1, 2), return_indices=True)
    >>> poolkit.spatial_pyramid_pool2d_backward(np.ones_like(y), x.shape, (1, 2), indices=idx)[0, 0]
    array([[0., 0., 0., 0.],
           [0., 1., 0., 1.],
           [0., 0., 0., 0.],
           [0., 1., 0., 2.]])
    """
    shape = check_input_shape(input_shape)
    lv = check_levels(levels)
    red = check_mode(mode)
    ignore = check_nan_policy(nan_policy)
    geo = Geometry.of(shape, data_format, axes, name="input_shape")
    check_backend(backend)
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    expected = geo.output_shape(lv)
    if g.shape != expected:
        raise ValueError(f"`grad_output` must have shape {expected} for `input_shape`={shape} and "
                         f"levels={lv}, but got shape {g.shape}.")
    idx = None
    if red.winners:
        if indices is None:
            raise ValueError("mode='max' needs the forward call's `indices` "
                             "(spatial_pyramid_pool2d(..., return_indices=True)).")
        idx = as_input_array(indices, "indices")
        if idx.dtype.kind not in "iu":
            raise TypeError(f"`indices` must be an integer array, but got dtype={idx.dtype}.")
        if idx.shape != g.shape:
            raise ValueError(f"`indices` must have the shape of `grad_output`, {g.shape}, but got {idx.shape}.")
    elif indices is not None:
        raise ValueError("`indices` are only for mode='max'; mode='avg' needs none.")
    xa = None
    if not red.winners and ignore:
        if x is None:
            raise ValueError("mode='avg' with nan_policy='ignore' needs the forward input: pass it as `x=`.")
        xa = as_input_array(x)
        if tuple(xa.shape) != shape:
            raise ValueError(f"`x` must have shape `input_shape`={shape}, but got shape {tuple(xa.shape)}.")
    return spp_backward(g, idx, lv, red, geo, backend, nan_policy, xa)
