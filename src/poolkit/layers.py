"""Pooling layers that keep what backward needs.

A layer holds its configuration; ``forward(x, train=True)`` (or ``layer(x)``)
pools and, when training, keeps a small context; ``backward(grad_output)``
returns the gradient with respect to the input of the last forward, which must
have been a training one.  What is kept: for max pooling the winning tap of
each window (one byte per output for windows under 255 taps), for average
pooling nothing but the shapes (plus, with ``nan_policy="ignore"``, a divisor
per output and a NaN mask of the input).  ``saved_nbytes`` reports it.
Validation happens once per input shape.  Layers can be pickled and deep-copied
before and after forward.

Each family (max, average, adaptive max, adaptive average) is one N-d class;
``MaxPool1d``/``2d``/``3d`` and the others only fix its rank.
"""
from __future__ import annotations

from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from numpy.typing import ArrayLike

from .engine.eager import (Context, Prepared, Windows, check_backend, check_divisor_override,
    check_nan_policy, prepare)
from .engine.eager import finish_forward, run_backward, split_masked
from .core.geometry import PoolSpec, as_bool, dim_names, normalize_output_size
from .core.layout import CHANNELS_FIRST
from .core.windows import AdaptiveWindows, StridedWindows

__all__ = [
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "MinPool1d", "MinPool2d", "MinPool3d", "SumPool1d", "SumPool2d", "SumPool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
]

Ints = Union[int, Sequence[int]]
Pooled = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]     # with return_indices: (out, indices)


def missing_context(layer) -> RuntimeError:
    """The error of ``layer.backward()`` when the last forward kept nothing (or none ran)."""
    why = ("the last forward had train=False, which keeps nothing and drops the earlier context"
           if layer._forwarded else "no forward has run yet")
    return RuntimeError(f"{type(layer).__name__}.backward() needs the last forward to be "
                        f"forward(x, train=True), but {why}: there is nothing to differentiate.")


class _PoolLayer:
    """Shared machinery: prepared-call cache, forward/backward, saved state."""

    _op = "max"
    _rank = 2

    def __init__(self, windows: Windows, *, data_format: Optional[str], axes, backend: str,
                 nan_policy: str = "propagate", return_indices: bool = False, count_include_pad: bool = True,
                 divisor_override: Optional[int] = None):
        check_backend(backend)                         # validate now, not at the first forward
        check_nan_policy(nan_policy)
        self._win = windows
        self.data_format = CHANNELS_FIRST[self._rank] if data_format is None else data_format
        self.axes = axes
        self.backend = backend
        self.nan_policy = nan_policy
        self.return_indices = as_bool(return_indices, "return_indices")
        self.count_include_pad = as_bool(count_include_pad, "count_include_pad")
        self.divisor_override = check_divisor_override(divisor_override)
        self._prepared: dict = {}
        self._ctx: Optional[Context] = None
        self._forwarded = False                        # has any forward run (for backward's message)

    def _prepare(self, x: np.ndarray) -> Prepared:
        key = (x.shape, x.dtype)
        p = self._prepared.get(key)
        if p is None:
            p = prepare(self._op, x, self._rank, self._win, data_format=self.data_format, axes=self.axes,
                        backend=self.backend, nan_policy=self.nan_policy,
                        count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)
            if len(self._prepared) > 32:                # a layer normally sees few shapes
                self._prepared.clear()
            self._prepared[key] = p
        return p

    def forward(self, x: ArrayLike, train: bool = True, *, mask: Optional[ArrayLike] = None) -> Pooled:
        """Pool ``x``; with ``train=True`` keep what :meth:`backward` needs.

        Parameters
        ----------
        x : array_like
            Input, as for the functional form.
        train : bool
            True: keep the context for :meth:`backward`, replacing the previous
            one. ``train=False`` (evaluation): keep nothing and drop the
            previous context. So :meth:`backward` always belongs to the last
            forward and never silently uses an older one.
        mask : array_like of bool, optional
            Broadcastable to ``x``: False elements are left out of their windows
            (and get no gradient). An ``np.ma.MaskedArray`` ``x`` is honoured the
            same way and gives a masked result.

        Returns
        -------
        out : ndarray
            The pooled array, and the indices as a second value for max
            layers built with ``return_indices=True``.
        """
        keep = as_bool(train, "train")
        data, valid, masked = split_masked(x, mask)
        p = self._prepare(data)
        y, idx, ctx = finish_forward(p, data, valid, masked, self.return_indices, keep)
        self._ctx = ctx
        self._forwarded = True
        return (y, idx) if self.return_indices else y

    __call__ = forward

    def backward(self, grad_output: ArrayLike) -> np.ndarray:
        """Gradient with respect to the input of the last forward, which must have had ``train=True``.

        Parameters
        ----------
        grad_output : array_like
            Gradient with respect to that forward's output: same shape and dtype.

        Returns
        -------
        grad_input : ndarray, shape and dtype of that input

        Raises
        ------
        RuntimeError
            If no forward ran yet, or the last one had ``train=False`` (it drops the context).
        """
        if self._ctx is None:
            raise missing_context(self)
        return run_backward(self._ctx, grad_output)

    @property
    def saved_nbytes(self) -> int:
        """Bytes of state kept from the last training forward for backward (0 if none)."""
        return 0 if self._ctx is None else self._ctx.nbytes

    def __getstate__(self) -> dict:
        # The per-shape cache is rebuilt on demand; the saved context travels (backward works after).
        state = dict(self.__dict__)
        state["_prepared"] = {}
        return state

    def _repr_items(self) -> List[Tuple[str, Any]]:  # pragma: no cover - every family overrides it
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_items())
        return f"{type(self).__name__}({args})"


# --------------------------------------------------------------------------- #
# the four N-d families
# --------------------------------------------------------------------------- #
class _MaxPoolNd(_PoolLayer):
    _op = "max"

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, dilation: Ints = 1,
                 ceil_mode: bool = False, *, return_indices: bool = False, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        spec = PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        super().__init__(StridedWindows(spec, "max", pytorch_name=True), data_format=data_format, axes=axes,
                         backend=backend, nan_policy=nan_policy, return_indices=return_indices)

    def _repr_items(self) -> List[Tuple[str, Any]]:
        return [("kernel_size", self.kernel_size), ("stride", self.stride), ("padding", self.padding),
                ("dilation", self.dilation), ("ceil_mode", self.ceil_mode),
                ("data_format", self.data_format), ("backend", self.backend)]


class _AvgPoolNd(_PoolLayer):
    _op = "avg"

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: Optional[int] = None, *, dilation: Ints = 1,
                 data_format: Optional[str] = None, axes: Optional[Ints] = None, nan_policy: str = "propagate",
                 backend: str = "auto"):
        spec = PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding, self.ceil_mode = kernel_size, stride, padding, ceil_mode
        self.dilation = dilation
        super().__init__(StridedWindows(spec, self._op, pytorch_name=True), data_format=data_format, axes=axes,
                         backend=backend, nan_policy=nan_policy, count_include_pad=count_include_pad,
                         divisor_override=divisor_override)

    def _repr_items(self) -> List[Tuple[str, Any]]:
        return [("kernel_size", self.kernel_size), ("stride", self.stride), ("padding", self.padding),
                ("ceil_mode", self.ceil_mode), ("count_include_pad", self.count_include_pad),
                ("divisor_override", self.divisor_override), ("dilation", self.dilation),
                ("data_format", self.data_format), ("backend", self.backend)]


class _MinPoolNd(_MaxPoolNd):
    _op = "min"


class _SumPoolNd(_PoolLayer):
    _op = "sum"

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, dilation: Ints = 1,
                 ceil_mode: bool = False, *, data_format: Optional[str] = None, axes: Optional[Ints] = None,
                 nan_policy: str = "propagate", backend: str = "auto"):
        spec = PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        super().__init__(StridedWindows(spec, "sum", pytorch_name=True), data_format=data_format, axes=axes,
                         backend=backend, nan_policy=nan_policy)

    def _repr_items(self) -> List[Tuple[str, Any]]:
        return [("kernel_size", self.kernel_size), ("stride", self.stride), ("padding", self.padding),
                ("dilation", self.dilation), ("ceil_mode", self.ceil_mode),
                ("data_format", self.data_format), ("backend", self.backend)]


class _LPPoolNd:
    """Lp pooling layer (PyTorch's ``LPPool``): keeps what :func:`poolkit.lp_pool_backward` would recompute."""

    _rank = 2

    def __init__(self, norm_type: float, kernel_size: Ints, stride: Optional[Ints] = None, ceil_mode: bool = False,
                 *, padding: Any = 0, dilation: Ints = 1, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, backend: str = "auto"):
        from .reductions import check_norm_type
        check_norm_type(norm_type)
        check_backend(backend)
        PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)    # validate now
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode
        self.padding, self.dilation, self.axes, self.backend = padding, dilation, axes, backend
        self.data_format = CHANNELS_FIRST[self._rank] if data_format is None else data_format
        self._state: Any = None
        self._forwarded = False

    def forward(self, x: ArrayLike, train: bool = True, *, mask: Optional[ArrayLike] = None) -> np.ndarray:
        """Pool ``x`` (see :meth:`MaxPool2d.forward` for ``train`` and ``mask``)."""
        from .reductions import _lp_forward
        keep = as_bool(train, "train")
        y, self._state = _lp_forward(self._rank, x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                                     self.padding, self.dilation, mask=mask, keep=keep, pytorch_name=True,
                                     data_format=self.data_format, axes=self.axes, backend=self.backend)
        self._forwarded = True
        return y

    __call__ = forward

    def backward(self, grad_output: ArrayLike) -> np.ndarray:
        """Gradient with respect to the input of the last forward, which must have had ``train=True``."""
        from .reductions import _lp_backward
        if self._state is None:
            raise missing_context(self)
        return _lp_backward(self._state, grad_output)

    @property
    def saved_nbytes(self) -> int:
        """Bytes kept from the last training forward: the input (as computed), the window sums and outputs."""
        return 0 if self._state is None else self._state.nbytes

    def __repr__(self) -> str:
        items = [("norm_type", self.norm_type), ("kernel_size", self.kernel_size), ("stride", self.stride),
                 ("ceil_mode", self.ceil_mode), ("padding", self.padding), ("dilation", self.dilation),
                 ("data_format", self.data_format), ("backend", self.backend)]
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in items)})"


class _AdaptiveNd(_PoolLayer):
    def __init__(self, output_size, *, data_format: Optional[str], axes, nan_policy: str, backend: str,
                 return_indices: bool = False):
        normalize_output_size(output_size, (1,) * self._rank)     # validate now, against any input
        self.output_size = output_size
        super().__init__(AdaptiveWindows(output_size), data_format=data_format, axes=axes, backend=backend,
                         nan_policy=nan_policy, return_indices=return_indices)

    def _repr_items(self) -> List[Tuple[str, Any]]:
        return [("output_size", self.output_size), ("data_format", self.data_format), ("backend", self.backend)]


class _AdaptiveMaxPoolNd(_AdaptiveNd):
    _op = "max"

    def __init__(self, output_size: Any, *, return_indices: bool = False, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        super().__init__(output_size, data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend,
                         return_indices=return_indices)


class _AdaptiveAvgPoolNd(_AdaptiveNd):
    _op = "avg"

    def __init__(self, output_size: Any, *, data_format: Optional[str] = None, axes: Optional[Ints] = None,
                 nan_policy: str = "propagate", backend: str = "auto"):
        super().__init__(output_size, data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend)


# --------------------------------------------------------------------------- #
# the fixed-rank names: rank and docstring only
# --------------------------------------------------------------------------- #
def _shape(rank: int, batch: Tuple[int, ...], n: int) -> Tuple[int, ...]:
    return batch + (n,) * rank


def _max_doc(rank: int) -> str:
    return f"""{rank}-D max pooling layer; see :func:`poolkit.max_pool{rank}d` for the arguments.

    ``data_format=None`` means {CHANNELS_FIRST[rank]!r}: input (N, C, {", ".join(dim_names(rank))}).
    Keeps the winning tap of each window (one byte per output) for backward.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.MaxPool{rank}d(2)
    >>> x = np.random.default_rng(0).random({_shape(rank, (1, 3), 4)})
    >>> y = pool(x)
    >>> pool.backward(np.ones_like(y)).shape == x.shape
    True
    """


def _avg_doc(rank: int) -> str:
    return f"""{rank}-D average pooling layer; see :func:`poolkit.avg_pool{rank}d` for the arguments.

    ``data_format=None`` means {CHANNELS_FIRST[rank]!r}: input (N, C, {", ".join(dim_names(rank))}).
    Keeps only shapes for backward (plus divisors and a NaN mask with ``nan_policy="ignore"``).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.AvgPool{rank}d(2)
    >>> y = pool(np.ones({_shape(rank, (1, 1), 4)}))
    >>> float(pool.backward(np.ones_like(y)).sum()) == y.size
    True
    """


def _adaptive_doc(op: str, rank: int) -> str:
    kind = "Max" if op == "max" else "Avg"
    return f"""Adaptive {rank}-D {op} pooling layer; see :func:`poolkit.adaptive_{op}_pool{rank}d`.

    ``data_format=None`` means {CHANNELS_FIRST[rank]!r}: input (N, C, {", ".join(dim_names(rank))}).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.Adaptive{kind}Pool{rank}d(1)
    >>> pool(np.ones({_shape(rank, (2, 3), 5)})).shape
    {_shape(rank, (2, 3), 1)}
    """


class MaxPool1d(_MaxPoolNd):
    __doc__ = _max_doc(1)
    _rank = 1


class MaxPool2d(_MaxPoolNd):
    __doc__ = _max_doc(2)
    _rank = 2


class MaxPool3d(_MaxPoolNd):
    __doc__ = _max_doc(3)
    _rank = 3


class AvgPool1d(_AvgPoolNd):
    __doc__ = _avg_doc(1)
    _rank = 1

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, *, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        # PyTorch's AvgPool1d has no divisor_override; neither has this one.
        super().__init__(kernel_size, stride, padding, ceil_mode, count_include_pad, None,
                         data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend)


class AvgPool2d(_AvgPoolNd):
    __doc__ = _avg_doc(2)
    _rank = 2


class AvgPool3d(_AvgPoolNd):
    __doc__ = _avg_doc(3)
    _rank = 3


class AdaptiveMaxPool1d(_AdaptiveMaxPoolNd):
    __doc__ = _adaptive_doc("max", 1)
    _rank = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolNd):
    __doc__ = _adaptive_doc("max", 2)
    _rank = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolNd):
    __doc__ = _adaptive_doc("max", 3)
    _rank = 3


class AdaptiveAvgPool1d(_AdaptiveAvgPoolNd):
    __doc__ = _adaptive_doc("avg", 1)
    _rank = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolNd):
    __doc__ = _adaptive_doc("avg", 2)
    _rank = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolNd):
    __doc__ = _adaptive_doc("avg", 3)
    _rank = 3


class MinPool1d(_MinPoolNd):
    """1-D min pooling layer: :func:`poolkit.min_pool1d` with what backward needs kept (as :class:`MaxPool1d`)."""
    _rank = 1


class MinPool2d(_MinPoolNd):
    """2-D min pooling layer: :func:`poolkit.min_pool2d` with what backward needs kept (as :class:`MaxPool2d`).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> layer = poolkit.MinPool2d(2)
    >>> y = layer(np.arange(16.).reshape(1, 1, 4, 4))
    >>> layer.backward(np.ones_like(y))[0, 0, 0]
    array([1., 0., 1., 0.])
    """
    _rank = 2


class MinPool3d(_MinPoolNd):
    """3-D min pooling layer: :func:`poolkit.min_pool3d` with what backward needs kept."""
    _rank = 3


class SumPool1d(_SumPoolNd):
    """1-D sum pooling layer: :func:`poolkit.sum_pool1d`; keeps only shapes (plus a mask when elements are left out)."""
    _rank = 1


class SumPool2d(_SumPoolNd):
    """2-D sum pooling layer: :func:`poolkit.sum_pool2d`.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.SumPool2d(2)(np.ones((1, 1, 4, 4)))[0, 0]
    array([[4., 4.],
           [4., 4.]])
    """
    _rank = 2


class SumPool3d(_SumPoolNd):
    """3-D sum pooling layer: :func:`poolkit.sum_pool3d`."""
    _rank = 3


class LPPool1d(_LPPoolNd):
    """1-D Lp pooling layer: PyTorch's ``LPPool1d``, :func:`poolkit.lp_pool1d` with backward."""
    _rank = 1


class LPPool2d(_LPPoolNd):
    """2-D Lp pooling layer: PyTorch's ``LPPool2d``, :func:`poolkit.lp_pool2d` with backward.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> layer = poolkit.LPPool2d(2, 2)
    >>> layer(np.full((1, 1, 2, 2), 3.0))
    array([[[[6.]]]])
    >>> layer.backward(np.ones((1, 1, 1, 1)))
    array([[[[0.5, 0.5],
             [0.5, 0.5]]]])
    """
    _rank = 2


class LPPool3d(_LPPoolNd):
    """3-D Lp pooling layer: PyTorch's ``LPPool3d``, :func:`poolkit.lp_pool3d` with backward."""
    _rank = 3
