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

The backward pass is the sum of the levels' adaptive-pooling backward passes;
for max pooling it needs the indices of the forward call
(``return_indices=True``), which have the output's shape and order.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union, cast

import numpy as np
from numpy.typing import ArrayLike

from ._core import check_backend, check_float_grad, check_grad
from ._geometry import as_bool
from ._layout import as_input_array, dtype_policy, resolve_axes
from .functional import (_input_shape, adaptive_avg_pool2d, adaptive_avg_pool_backward, adaptive_max_pool2d,
                         max_pool_backward)
from .layers import missing_context

__all__ = ["spatial_pyramid_pool2d", "spatial_pyramid_pool2d_backward", "SpatialPyramidPool2d"]

Pooled = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]     # with return_indices: (out, indices)
MODES = ("max", "avg")


def check_levels(levels) -> Tuple[int, ...]:
    """``levels`` as a non-empty tuple of positive ints, or a clear error."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))

    if not isinstance(levels, (tuple, list)) or not levels or not all(is_int(v) for v in levels):
        raise TypeError(f"`levels` must be a non-empty sequence of positive ints (window grid sizes, "
                        f"e.g. (1, 2, 4)), but got levels={levels!r}.")
    if any(v < 1 for v in levels):
        raise ValueError(f"`levels` must be positive, but got levels={levels!r}.")
    return tuple(int(v) for v in levels)


def check_mode(mode) -> str:
    if mode not in MODES:
        raise ValueError(f"`mode` must be 'max' or 'avg', but got mode={mode!r}.")
    return mode


def output_features(channels: int, levels: Sequence[int]) -> int:
    """Length of the pooled vector: ``channels * sum(l * l for l in levels)``."""
    return channels * sum(l * l for l in levels)


@dataclass(frozen=True)
class _Geometry:
    """Where the channel axis is, for an input of ``shape`` (the NCHW or NHWC name of its layout)."""

    shape: Tuple[int, ...]
    data_format: str            # "NCHW" or "NHWC": the rank-2 name, right for unbatched input too
    channels: int

    @classmethod
    def of(cls, shape: Tuple[int, ...], data_format, name: str = "x") -> "_Geometry":
        _, channel_axis = resolve_axes(shape, 2, data_format, None, name=name)
        c = cast(int, channel_axis)                  # always an axis when `axes` is None
        return cls(tuple(shape), "NHWC" if c == len(shape) - 1 else "NCHW", shape[c])

    @property
    def last(self) -> bool:
        return self.data_format == "NHWC"

    @property
    def batch(self) -> Tuple[int, ...]:
        return self.shape[:-3]                     # (N,) or () for unbatched input

    @property
    def sizes(self) -> Tuple[int, int]:
        """(H, W) of the input."""
        return (self.shape[-3], self.shape[-2]) if self.last else (self.shape[-2], self.shape[-1])

    @property
    def merged_axis(self) -> int:
        """Where the pooled axis is once H and W (or a level's windows) are merged into one: from the end."""
        return -2 if self.last else -1

    def merged_shape(self, n: int) -> Tuple[int, ...]:
        """(batch..., C, n) or (batch..., n, C): the layout with its pooled axes merged into one of size ``n``."""
        return self.batch + ((n, self.channels) if self.last else (self.channels, n))

    def flatten(self, y: np.ndarray, level: int) -> np.ndarray:
        """One level's pooled array (batch..., C, l, l) or (batch..., l, l, C) -> (batch..., C*l*l), C-major."""
        if self.last:
            y = np.moveaxis(y, -1, -3)             # (..., l, l, C) -> (..., C, l, l)
        return y.reshape(self.batch + (self.channels * level * level,))

    def unflatten(self, v: np.ndarray, level: int) -> np.ndarray:
        """Inverse of :meth:`flatten`: (batch..., C*l*l) -> the level's pooled layout."""
        y = v.reshape(self.batch + (self.channels, level, level))
        return np.moveaxis(y, -3, -1) if self.last else y

    def split(self, v: np.ndarray, levels: Sequence[int]) -> List[np.ndarray]:
        """A pooled vector (batch..., features) cut into its levels, each in the level's pooled layout."""
        ends = np.cumsum([self.channels * l * l for l in levels])[:-1]
        return [self.unflatten(part, l) for part, l in zip(np.split(v, ends, axis=-1), levels)]


def _forward(x: np.ndarray, levels, mode: str, want_indices: bool, geo: _Geometry, backend: str):
    outs, idxs = [], []
    for lv in levels:
        if mode == "max":
            y, idx = adaptive_max_pool2d(x, lv, True, data_format=geo.data_format, backend=backend)
            idxs.append(geo.flatten(idx, lv))
        else:
            y = adaptive_avg_pool2d(x, lv, data_format=geo.data_format, backend=backend)
        outs.append(geo.flatten(y, lv))
    out = np.concatenate(outs, axis=-1)
    return out, (np.concatenate(idxs, axis=-1) if want_indices else None)


def spatial_pyramid_pool2d(x: ArrayLike, levels: Sequence[int] = (1, 2, 4), mode: str = "max",
                           return_indices: bool = False, *, data_format: str = "NCHW",
                           backend: str = "auto") -> Pooled:
    """Spatial pyramid pooling: a fixed-length vector per sample for any input height and width.

    For each level ``l`` the plane is pooled to ``l x l`` adaptive windows
    (window ``i`` of ``O`` along an axis of size ``S`` covers
    ``[floor(i*S/O), ceil((i+1)*S/O))``, PyTorch's rule) and the levels are
    concatenated; see :mod:`poolkit.spp` for the order of the features.

    Parameters
    ----------
    x : array_like, shape (N, C, H, W) or (C, H, W)
        ``data_format="NHWC"``: (N, H, W, C) or (H, W, C). Any H and W
        (levels larger than H or W repeat elements, as adaptive pooling does).
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
    backend : {"auto", "numba", "img2col", "reference"}

    Returns
    -------
    out : ndarray, shape (N, C * sum(l * l for l in levels)) or (C * sum(...),)
        Dtype of ``x`` (max pooling takes integers too; averaging does not).
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
    """
    x = as_input_array(x, lazy=True)             # a Dask array: lazy adaptive pools, concatenated
    lv = check_levels(levels)
    md = check_mode(mode)
    ri = as_bool(return_indices, "return_indices")
    if ri and md != "max":
        raise ValueError(f"`return_indices=True` needs mode='max' (averages have no winners), but got mode={mode!r}.")
    geo = _Geometry.of(tuple(x.shape), data_format)
    check_backend(backend)
    out, idx = _forward(x, lv, md, ri, geo, backend)
    return (out, idx) if ri else out


def _backward(g: np.ndarray, indices, levels, mode: str, geo: _Geometry, backend: str) -> np.ndarray:
    pol = dtype_policy(g.dtype, "avg")                   # float16/bfloat16: summed in float32
    gc = g.astype(pol.compute) if pol.converts else g
    if mode == "max":
        # One scatter for every level: each level's (flat plane index, gradient) pairs side by side
        # along one pooled axis, sent into the input with its H and W merged into that axis.
        def windows_as_one_axis(v):
            # each level (batch..., C, l, l) -> (batch..., C, l*l), or (..., l, l, C) -> (..., l*l, C);
            # then the levels side by side along that axis
            parts = [p.reshape(geo.merged_shape(lv * lv)) for p, lv in zip(geo.split(v, levels), levels)]
            return np.concatenate(parts, axis=geo.merged_axis)

        h, w = geo.sizes
        merged = geo.merged_shape(h * w)                    # the input with H and W merged into one axis
        gx = max_pool_backward(windows_as_one_axis(gc), windows_as_one_axis(indices), merged,
                               axes=(len(merged) + geo.merged_axis,), backend=backend).reshape(geo.shape)
    else:
        gx = None
        for part in geo.split(gc, levels):
            gl = adaptive_avg_pool_backward(part, geo.shape, data_format=geo.data_format, backend=backend)
            gx = gl if gx is None else gx + gl             # levels added in order
    return gx.astype(pol.result) if pol.converts else gx


def spatial_pyramid_pool2d_backward(grad_output: ArrayLike, input_shape: Sequence[int],
                                    levels: Sequence[int] = (1, 2, 4), mode: str = "max", *,
                                    indices: Optional[ArrayLike] = None, data_format: str = "NCHW",
                                    backend: str = "auto") -> np.ndarray:
    """Gradient of :func:`spatial_pyramid_pool2d` with respect to its input.

    The sum over levels of each level's adaptive-pooling gradient: for
    ``mode="avg"`` every window spreads its value evenly over its elements;
    for ``mode="max"`` each value goes to its window's winner, given by the
    forward call's ``indices``.

    Parameters
    ----------
    grad_output : array_like, shape (N, C * sum(l * l)) or (C * sum(l * l),)
        Gradient with respect to the pooled vector; floating point.
    input_shape : tuple of ints
        Shape of the forward input.
    levels, mode, data_format, backend
        As in the forward call.
    indices : array_like of int, shape of ``grad_output``
        From the forward call with ``return_indices=True``; required for
        ``mode="max"`` and refused for ``mode="avg"``.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``, dtype of ``grad_output``

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
    shape = _input_shape(input_shape)
    lv = check_levels(levels)
    md = check_mode(mode)
    geo = _Geometry.of(shape, data_format, name="input_shape")
    check_backend(backend)
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    expected = geo.batch + (output_features(geo.channels, lv),)
    if g.shape != expected:
        raise ValueError(f"`grad_output` must have shape {expected} for `input_shape`={shape} and "
                         f"levels={lv}, but got shape {g.shape}.")
    if md == "max":
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
    else:
        idx = None
    return _backward(g, idx, lv, md, geo, backend)


class SpatialPyramidPool2d:
    """Spatial pyramid pooling layer; see :func:`spatial_pyramid_pool2d` for the arguments.

    A training forward keeps what backward needs: the indices of the maxima
    (``mode="max"``, int64 per output) or nothing but shapes (``mode="avg"``).
    ``data_format=None`` means 'NCHW'. Layers can be pickled and copied.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> spp = poolkit.SpatialPyramidPool2d((1, 2, 4))
    >>> x = np.random.default_rng(0).random((2, 3, 11, 7))
    >>> y = spp(x)
    >>> y.shape
    (2, 63)
    >>> spp.backward(np.ones_like(y)).shape == x.shape
    True
    """

    def __init__(self, levels: Sequence[int] = (1, 2, 4), mode: str = "max", *, data_format: Optional[str] = None,
                 backend: str = "auto"):
        self.levels = check_levels(levels)
        self.mode = check_mode(mode)
        self.data_format = "NCHW" if data_format is None else data_format
        resolve_axes((1, 1, 1, 1), 2, self.data_format, None)      # a valid name?
        check_backend(backend)
        self.backend = backend
        self._ctx: Optional[tuple] = None           # (indices or None, input shape, output shape, output dtype)
        self._forwarded = False

    def forward(self, x: ArrayLike, train: bool = True) -> np.ndarray:
        """Pool ``x``; with ``train=True`` keep what :meth:`backward` needs (``train=False``: keep nothing)."""
        keep = as_bool(train, "train")
        x = as_input_array(x)
        geo = _Geometry.of(tuple(x.shape), self.data_format)
        y, idx = _forward(x, self.levels, self.mode, keep and self.mode == "max", geo, self.backend)
        self._ctx = (idx, geo, y.shape, y.dtype) if keep else None
        self._forwarded = True
        return y

    __call__ = forward

    def backward(self, grad_output: ArrayLike) -> np.ndarray:
        """Gradient with respect to the input of the last forward, which must have had ``train=True``.

        Raises
        ------
        RuntimeError
            If no forward ran yet, or the last one had ``train=False``.
        """
        if self._ctx is None:
            raise missing_context(self)
        idx, geo, out_shape, out_dtype = self._ctx
        g = check_grad(grad_output, out_shape, out_dtype)
        return _backward(g, idx, self.levels, self.mode, geo, self.backend)

    @property
    def saved_nbytes(self) -> int:
        """Bytes kept from the last training forward for backward (0 if none)."""
        return 0 if self._ctx is None or self._ctx[0] is None else self._ctx[0].nbytes

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(levels={self.levels!r}, mode={self.mode!r}, "
                f"data_format={self.data_format!r}, backend={self.backend!r})")
