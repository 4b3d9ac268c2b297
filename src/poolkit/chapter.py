"""The chapter's own interface (section 17.5), so its code runs as written.

``PoolingLayer(input_shape, pool_shape, stride, pooling_type)`` with the
chapter's two methods by name: ``forward_numba``/``backward_numba`` (method 1,
Numba loop kernels) and ``forward_img2col``/``backward_col2img`` (method 2,
vectorised NumPy).  ``forward``/``backward`` use the fastest backend.  Unlike
the chapter's original code, MEAN pooling works too.
"""
from __future__ import annotations

import enum

from typing import Optional, Tuple, Union, cast

import numpy as np
from numpy.typing import ArrayLike

from .core.geometry import normalize_ints
from .core.layout import as_input_array
from .functional import output_shape
from .layers import AvgPool2d, MaxPool2d

__all__ = ["PoolingLayer", "PoolingTypes"]


class PoolingTypes(enum.Enum):
    """The chapter's pooling kinds."""

    MAX = "MAX"
    MEAN = "MEAN"


def _pooling_type(value) -> PoolingTypes:
    if isinstance(value, PoolingTypes):
        return value
    if isinstance(value, str) and value.strip().upper() in ("MAX", "MEAN", "AVG", "AVERAGE"):
        word = value.strip().upper()
        return PoolingTypes.MAX if word == "MAX" else PoolingTypes.MEAN
    raise ValueError(f"`pooling_type` must be 'MAX' or 'MEAN' (any case) or a PoolingTypes member, "
                     f"but got pooling_type={value!r}.")


class PoolingLayer:
    """The chapter's pooling layer for (N, C, H, W) batches.

    Parameters
    ----------
    input_shape : tuple of 3 ints
        ``(C, H, W)`` of one sample.
    pool_shape : tuple of 2 ints
        ``(pool_height, pool_width)``.
    stride : int or pair of ints
    pooling_type : "MAX", "MEAN" or PoolingTypes

    Attributes
    ----------
    output_shape : tuple of 3 ints
        ``(C, H2, W2)`` with ``W2 = (W - pool_width) // stride + 1`` (the chapter's formula).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> layer = poolkit.PoolingLayer((3, 28, 28), (2, 2), 2, "MAX")
    >>> x = np.random.default_rng(0).random((64, 3, 28, 28))
    >>> z = layer.forward(x)
    >>> z.shape, layer.output_shape
    ((64, 3, 14, 14), (3, 14, 14))
    >>> layer.backward(np.ones_like(z), 1).shape
    (64, 3, 28, 28)
    """

    def __init__(self, input_shape: Tuple[int, int, int], pool_shape: Union[int, Tuple[int, int]],
                 stride: Union[int, Tuple[int, int]], pooling_type: Union[str, PoolingTypes] = PoolingTypes.MAX):
        shape = normalize_ints(tuple(input_shape) if isinstance(input_shape, (list, tuple)) else input_shape,
                               3, "input_shape", 1)
        self.input_shape = shape
        self.num_input_channel, self.input_height, self.input_width = shape
        self.pool_height, self.pool_width = normalize_ints(pool_shape, 2, "pool_shape", 1)
        self.stride = stride
        self.pooling_type = _pooling_type(pooling_type)
        cls = MaxPool2d if self.pooling_type is PoolingTypes.MAX else AvgPool2d
        window = (self.pool_height, self.pool_width)
        self._numba, self._img2col = cls(window, stride, backend="numba"), cls(window, stride, backend="img2col")
        oh, ow = output_shape((self.input_height, self.input_width), window, stride)
        self.output_height, self.output_width = oh, ow
        self.output_shape = (self.num_input_channel, oh, ow)
        self._last = self._numba

    def _check(self, x: ArrayLike) -> np.ndarray:
        x = as_input_array(x)
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(f"`x` must have shape (N, {', '.join(map(str, self.input_shape))}) for this layer "
                             f"(input_shape={self.input_shape}), but got shape {tuple(x.shape)}.")
        return x

    def forward(self, x: ArrayLike, train: bool = True) -> np.ndarray:
        """Pool a batch with the fastest method (the Numba kernels)."""
        return self.forward_numba(x, train)

    def backward(self, delta_in: ArrayLike, layer_idx: Optional[int] = None) -> np.ndarray:
        """Gradient for the method that ran the last forward. ``layer_idx`` is accepted and unused."""
        return self._last.backward(delta_in)

    def forward_numba(self, x: ArrayLike, train: bool = True) -> np.ndarray:
        """Method 1: loop kernels compiled with Numba."""
        self._last = self._numba
        return cast(np.ndarray, self._numba.forward(self._check(x), train))   # built without indices

    def backward_numba(self, delta_in: ArrayLike, layer_idx: Optional[int] = None) -> np.ndarray:
        """Backward of method 1 (needs a preceding ``forward_numba``)."""
        return self._numba.backward(delta_in)

    def forward_img2col(self, x: ArrayLike, train: bool = True) -> np.ndarray:
        """Method 2: windows as strided views, reduced with vectorised NumPy."""
        self._last = self._img2col
        return cast(np.ndarray, self._img2col.forward(self._check(x), train))

    def backward_col2img(self, delta_in: ArrayLike, layer_idx: Optional[int] = None) -> np.ndarray:
        """Backward of method 2 (needs a preceding ``forward_img2col``)."""
        return self._img2col.backward(delta_in)

    def __repr__(self) -> str:
        return (f"PoolingLayer(input_shape={self.input_shape}, pool_shape=({self.pool_height}, "
                f"{self.pool_width}), stride={self.stride!r}, pooling_type='{self.pooling_type.value}')")

