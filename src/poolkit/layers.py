"""Pooling layers that keep what backward needs.

A layer holds its configuration; ``forward(x, train=True)`` (or ``layer(x)``)
pools and, when training, keeps a small context; ``backward(grad_output)``
returns the gradient with respect to the last training input.  What is kept:
for max pooling the winning tap of each window (one byte per output for
windows under 255 taps), for average pooling nothing but the shapes (plus, with
``nan_policy="ignore"``, a divisor per output and a NaN mask of the input).
``saved_nbytes`` reports it.  Validation happens once per input shape.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from ._core import Context, Prepared, check_divisor_override, check_nan_policy, prepare, run_backward, run_forward
from ._geometry import PoolSpec, as_bool, normalize_output_size
from ._layout import as_input_array
from . import backends as _backends
from .functional import _adaptive_windows, _FIRST

__all__ = [
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
]


class _PoolLayer:
    """Shared machinery: prepared-call cache, forward/backward, saved state."""

    _op = "max"
    _rank = 2

    def __init__(self, *, data_format, axes, backend, nan_policy="propagate", return_indices=False,
                 count_include_pad=True, divisor_override=None):
        _backends.get_backend(backend)                 # validate now, not at the first forward
        check_nan_policy(nan_policy)
        self.data_format = data_format
        self.axes = axes
        self.backend = backend
        self.nan_policy = nan_policy
        self.return_indices = as_bool(return_indices, "return_indices")
        self.count_include_pad = as_bool(count_include_pad, "count_include_pad")
        self.divisor_override = check_divisor_override(divisor_override)
        self._prepared: dict = {}
        self._ctx: Optional[Context] = None

    # subclasses: the windows for given pooled sizes
    def _windows(self, sizes):  # pragma: no cover - abstract
        raise NotImplementedError

    def _prepare(self, x: np.ndarray) -> Prepared:
        key = (x.shape, x.dtype)
        p = self._prepared.get(key)
        if p is None:
            p = prepare(self._op, x, self._rank, self._windows, data_format=self.data_format, axes=self.axes,
                        backend=self.backend, nan_policy=self.nan_policy,
                        count_include_pad=self.count_include_pad, divisor_override=self.divisor_override)
            if len(self._prepared) > 32:                # a layer normally sees few shapes
                self._prepared.clear()
            self._prepared[key] = p
        return p

    def forward(self, x, train: bool = True):
        """Pool ``x``; with ``train=True`` keep what :meth:`backward` needs.

        Returns the pooled array (and the indices for max layers built with
        ``return_indices=True``).
        """
        x = as_input_array(x)
        p = self._prepare(x)
        y, idx, ctx = run_forward(p, x, return_indices=self.return_indices, keep=bool(train))
        self._ctx = ctx
        return (y, idx) if self.return_indices else y

    __call__ = forward

    def backward(self, grad_output):
        """Gradient with respect to the input of the last ``forward(x, train=True)``.

        Parameters
        ----------
        grad_output : array_like
            Gradient with respect to that forward's output: same shape and dtype.

        Returns
        -------
        grad_input : ndarray, shape and dtype of that input
        """
        if self._ctx is None:
            raise RuntimeError(f"{type(self).__name__}.backward() called before forward(x, train=True): "
                               f"there is nothing to differentiate.")
        return run_backward(self._ctx, grad_output)

    @property
    def saved_nbytes(self) -> int:
        """Bytes of state kept from the last training forward for backward (0 if none)."""
        return 0 if self._ctx is None else self._ctx.nbytes

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_items())
        return f"{type(self).__name__}({args})"


class _StridedPool(_PoolLayer):
    def __init__(self, kernel_size, stride, padding, dilation, ceil_mode, **kw):
        self._spec = PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        super().__init__(**kw)

    def _windows(self, sizes):
        if self._op == "avg" and self._rank == 3:
            return self._spec.torch_avg3d_axes(sizes)
        return self._spec.axes(sizes)


def _strided_max(rank):
    class MaxPool(_StridedPool):
        _op, _rank = "max", rank

        def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                     return_indices=False, data_format=_FIRST[rank], axes=None, nan_policy="propagate",
                     backend="auto"):
            super().__init__(kernel_size, stride, padding, dilation, ceil_mode, data_format=data_format,
                             axes=axes, backend=backend, nan_policy=nan_policy, return_indices=return_indices)

        def _repr_items(self):
            return [("kernel_size", self.kernel_size), ("stride", self.stride), ("padding", self.padding),
                    ("dilation", self.dilation), ("ceil_mode", self.ceil_mode),
                    ("data_format", self.data_format), ("backend", self.backend)]

    MaxPool.__name__ = MaxPool.__qualname__ = f"MaxPool{rank}d"
    MaxPool.__doc__ = f"""{rank}-D max pooling layer; see :func:`poolkit.max_pool{rank}d` for the arguments.

    Keeps the winning tap of each window (one byte per output) for backward.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.MaxPool{rank}d(2)
    >>> x = np.random.default_rng(0).random({(1, 3) + (4,) * rank})
    >>> y = pool(x)
    >>> pool.backward(np.ones_like(y)).shape == x.shape
    True
    """
    return MaxPool


def _strided_avg(rank):
    if rank == 1:
        def init(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, *,
                 data_format="NCL", axes=None, nan_policy="propagate", backend="auto"):
            _StridedPool.__init__(self, kernel_size, stride, padding, 1, ceil_mode, data_format=data_format,
                                  axes=axes, backend=backend, nan_policy=nan_policy,
                                  count_include_pad=count_include_pad)
    else:
        def init(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None, *, data_format=_FIRST[rank], axes=None, nan_policy="propagate",
                 backend="auto"):
            _StridedPool.__init__(self, kernel_size, stride, padding, 1, ceil_mode, data_format=data_format,
                                  axes=axes, backend=backend, nan_policy=nan_policy,
                                  count_include_pad=count_include_pad, divisor_override=divisor_override)

    def repr_items(self):
        return [("kernel_size", self.kernel_size), ("stride", self.stride), ("padding", self.padding),
                ("ceil_mode", self.ceil_mode), ("count_include_pad", self.count_include_pad),
                ("divisor_override", self.divisor_override), ("data_format", self.data_format),
                ("backend", self.backend)]

    cls = type(f"AvgPool{rank}d", (_StridedPool,), {"_op": "avg", "_rank": rank, "__init__": init,
                                                    "_repr_items": repr_items})
    cls.__module__ = __name__
    cls.__doc__ = f"""{rank}-D average pooling layer; see :func:`poolkit.avg_pool{rank}d` for the arguments.

    Keeps only shapes for backward (plus divisors and a NaN mask with ``nan_policy="ignore"``).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.AvgPool{rank}d(2)
    >>> y = pool(np.ones({(1, 1) + (4,) * rank}))
    >>> float(pool.backward(np.ones_like(y)).sum()) == y.size
    True
    """
    return cls


def _adaptive_layer(op, rank):
    def init(self, output_size, *, return_indices=False, data_format=_FIRST[rank], axes=None,
             nan_policy="propagate", backend="auto"):
        # validate output_size now (against a placeholder input of the right rank)
        normalize_output_size(output_size, (1,) * rank)
        self.output_size = output_size
        _PoolLayer.__init__(self, data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy,
                            return_indices=return_indices if op == "max" else False)

    def windows(self, sizes):
        return _adaptive_windows(self.output_size)(sizes)

    def repr_items(self):
        return [("output_size", self.output_size), ("data_format", self.data_format), ("backend", self.backend)]

    kind = "Max" if op == "max" else "Avg"
    cls = type(f"Adaptive{kind}Pool{rank}d", (_PoolLayer,),
               {"_op": op, "_rank": rank, "__init__": init, "_windows": windows, "_repr_items": repr_items})
    cls.__module__ = __name__
    cls.__doc__ = f"""Adaptive {rank}-D {op} pooling layer; see :func:`poolkit.adaptive_{op}_pool{rank}d`.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.Adaptive{kind}Pool{rank}d(1)
    >>> pool(np.ones({(2, 3) + (5,) * rank})).shape
    {(2, 3) + (1,) * rank}
    """
    return cls


MaxPool1d, MaxPool2d, MaxPool3d = (_strided_max(r) for r in (1, 2, 3))
AvgPool1d, AvgPool2d, AvgPool3d = (_strided_avg(r) for r in (1, 2, 3))
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = (_adaptive_layer("max", r) for r in (1, 2, 3))
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = (_adaptive_layer("avg", r) for r in (1, 2, 3))
for _cls in (MaxPool1d, MaxPool2d, MaxPool3d):
    _cls.__module__ = __name__
