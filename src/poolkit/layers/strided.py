"""Strided and adaptive pooling layers: max, min, average, sum, Lp; adaptive max and average.

Each family is one N-d class; ``MaxPool1d``/``2d``/``3d`` and the others only fix
its rank (:func:`poolkit.functional.fixed.fixed_layers`).  The strided and adaptive
layers keep the :class:`~poolkit.engine.eager.Context` of their last training
forward -- for max and min pooling the winning tap of each window (one byte per
output for windows under 255 taps), for average and sum pooling nothing but the
shapes (plus, when elements are left out, a divisor per output and a mask of the
input) -- and validate a call once per input shape.  Lp layers keep an
:class:`~poolkit.functional.lp.LpState`.
"""
from __future__ import annotations

from typing import Any, ClassVar, Optional, Tuple

import numpy as np

from ..core.args import as_bool, check_divisor_override
from ..core.geometry import PoolSpec, normalize_output_size
from ..core.reductions import AVG, MAX, MIN, MODE, SUM, Reduction
from ..core.windows import AdaptiveWindows, StridedWindows
from ..core.layout import is_dask_array
from ..engine import eager, lazy
from ..engine.eager import Context, run_backward
from ..engine.prepare import Prepared, Windows, prepare, split_masked
from ..functional.common import Ints
from ..functional.fixed import fields, fixed_layers, layer_docs
from ..functional.lp import LpState, check_norm_type, lp_backward, lp_forward
from .base import Layer

__all__ = [
    "MaxPool1d", "MaxPool2d", "MaxPool3d", "AvgPool1d", "AvgPool2d", "AvgPool3d",
    "MinPool1d", "MinPool2d", "MinPool3d", "SumPool1d", "SumPool2d", "SumPool3d",
    "ModePool1d", "ModePool2d", "ModePool3d",
    "LPPool1d", "LPPool2d", "LPPool3d",
    "AdaptiveMaxPool1d", "AdaptiveMaxPool2d", "AdaptiveMaxPool3d",
    "AdaptiveAvgPool1d", "AdaptiveAvgPool2d", "AdaptiveAvgPool3d",
]


class _Prepared(Layer):
    """Layers whose calls go through :func:`~poolkit.engine.prepare.prepare` (strided and adaptive): the
    prepared call is kept per input shape and dtype, and backward is the engine's."""

    Saved = Context
    _caches = ("_prepared",)
    _reduction: ClassVar[Reduction] = MAX

    def _setup(self, windows: Windows, *, data_format, axes, backend, nan_policy, return_indices=False,
               count_include_pad=True, divisor_override=None) -> None:
        super().__init__(data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy)
        self._windows = windows
        self._options = dict(nan_policy=nan_policy, count_include_pad=as_bool(count_include_pad, "count_include_pad"),
                             divisor_override=check_divisor_override(divisor_override))
        self._ri = as_bool(return_indices, "return_indices")
        self._prepared: dict = {}

    def _prepare(self, x: np.ndarray) -> Prepared:
        key = (x.shape, x.dtype)
        p = self._prepared.get(key)
        if p is None:
            p = prepare(self._reduction, x, self._rank, self._windows, data_format=self.data_format, axes=self.axes,
                        backend=self.backend, **self._options)
            if len(self._prepared) > 32:                # a layer normally sees few shapes
                self._prepared.clear()
            self._prepared[key] = p
        return p

    def _run(self, x, keep: bool, *, mask=None) -> Tuple[Any, Any]:
        data, valid, masked = split_masked(x, mask)
        p = self._prepare(data)
        if is_dask_array(data):          # as poolkit.functional.common.pool (one frame less: layers run hot)
            y, idx, ctx = lazy.run_forward(p, data, mask=valid, return_indices=self._ri, keep=keep)
        else:
            y, idx, ctx = eager.finish_forward(p, data, valid, masked, self._ri, keep)
        return ((y, idx) if self._ri else y), ctx

    _grad = staticmethod(run_backward)          # run_backward(context, grad_output): no frame of its own

    def backward(self, grad_output: Any) -> np.ndarray:
        if not self._reduction.backward:            # e.g. mode pooling: piecewise constant
            raise TypeError(f"{self._reduction.title} pooling has no gradient: {type(self).__name__} has no "
                            f"backward.")
        return super().backward(grad_output)

    backward.__doc__ = Layer.backward.__doc__


class _StridedNd(_Prepared):
    """What the strided layers set up from their window arguments."""

    def _strided(self, kernel_size, stride, padding, dilation, ceil_mode, **options) -> None:
        spec = PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.dilation, self.ceil_mode = dilation, ceil_mode
        self._setup(StridedWindows(spec, self._reduction, pytorch_name=True), **options)


class _MaxPoolNd(_StridedNd):
    _reduction = MAX

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, dilation: Ints = 1,
                 ceil_mode: bool = False, *, return_indices: bool = False, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        self._strided(kernel_size, stride, padding, dilation, ceil_mode, return_indices=return_indices,
                      data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend)
        self.return_indices = self._ri


class _MinPoolNd(_MaxPoolNd):
    _reduction = MIN


class _AvgPoolNd(_StridedNd):
    _reduction = AVG

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override: Optional[int] = None, *, dilation: Ints = 1,
                 data_format: Optional[str] = None, axes: Optional[Ints] = None, nan_policy: str = "propagate",
                 backend: str = "auto"):
        self._strided(kernel_size, stride, padding, dilation, ceil_mode, count_include_pad=count_include_pad,
                      divisor_override=divisor_override, data_format=data_format, axes=axes, nan_policy=nan_policy,
                      backend=backend)
        self.count_include_pad = self._options["count_include_pad"]
        self.divisor_override = self._options["divisor_override"]


class _SumPoolNd(_StridedNd):
    _reduction = SUM

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, dilation: Ints = 1,
                 ceil_mode: bool = False, *, data_format: Optional[str] = None, axes: Optional[Ints] = None,
                 nan_policy: str = "propagate", backend: str = "auto"):
        self._strided(kernel_size, stride, padding, dilation, ceil_mode, data_format=data_format, axes=axes,
                      nan_policy=nan_policy, backend=backend)


class _ModePoolNd(_StridedNd):
    _reduction = MODE

    def __init__(self, kernel_size: Ints, stride: Optional[Ints] = None, padding: Any = 0, dilation: Ints = 1,
                 ceil_mode: bool = False, *, data_format: Optional[str] = None, axes: Optional[Ints] = None,
                 backend: str = "auto"):
        self._strided(kernel_size, stride, padding, dilation, ceil_mode, data_format=data_format, axes=axes,
                      nan_policy="propagate", backend=backend)


class _AdaptiveNd(_Prepared):
    def _adaptive(self, output_size, **options) -> None:
        normalize_output_size(output_size, (1,) * self._rank)     # validate now, against any input
        self.output_size = output_size
        self._setup(AdaptiveWindows(output_size), **options)


class _AdaptiveMaxPoolNd(_AdaptiveNd):
    _reduction = MAX

    def __init__(self, output_size: Any, *, return_indices: bool = False, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        self._adaptive(output_size, return_indices=return_indices, data_format=data_format, axes=axes,
                       nan_policy=nan_policy, backend=backend)
        self.return_indices = self._ri


class _AdaptiveAvgPoolNd(_AdaptiveNd):
    _reduction = AVG

    def __init__(self, output_size: Any, *, data_format: Optional[str] = None, axes: Optional[Ints] = None,
                 nan_policy: str = "propagate", backend: str = "auto"):
        self._adaptive(output_size, data_format=data_format, axes=axes, nan_policy=nan_policy, backend=backend)


class _LPPoolNd(Layer):
    """Lp pooling layer (PyTorch's ``LPPool``): keeps what :func:`poolkit.lp_pool_backward` would recompute."""

    Saved = LpState

    def __init__(self, norm_type: float, kernel_size: Ints, stride: Optional[Ints] = None, ceil_mode: bool = False,
                 *, padding: Any = 0, dilation: Ints = 1, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, backend: str = "auto"):
        check_norm_type(norm_type)
        PoolSpec.from_args(self._rank, kernel_size, stride, padding, dilation, ceil_mode)    # validate now
        super().__init__(data_format=data_format, axes=axes, backend=backend)
        self.norm_type, self.kernel_size, self.stride, self.ceil_mode = norm_type, kernel_size, stride, ceil_mode
        self.padding, self.dilation = padding, dilation

    def _run(self, x, keep: bool, *, mask=None):
        return lp_forward(self._rank, True, x, self.norm_type, self.kernel_size, self.stride, self.ceil_mode,
                          self.padding, self.dilation, mask=mask, keep=keep, data_format=self.data_format,
                          axes=self.axes, backend=self.backend)

    def _grad(self, saved: LpState, grad_output) -> np.ndarray:
        return lp_backward(saved, grad_output)


# --------------------------------------------------------------------------- #
# the fixed-rank names: rank and docstring only
# --------------------------------------------------------------------------- #
_WINNERS = "the winning tap of each window (one byte per output under 255 taps)"
_SHAPES = ("nothing but shapes (with ``nan_policy='ignore'`` or a mask, a divisor per output and a "
           "mask of the input)")

MaxPool1d, MaxPool2d, MaxPool3d = fixed_layers(
    _MaxPoolNd, "MaxPool{rank}d", layer_docs("max pooling", "max_pool{rank}d", _WINNERS, "2", pattern="MaxPool{rank}d"),
    module=__name__)
MinPool1d, MinPool2d, MinPool3d = fixed_layers(
    _MinPoolNd, "MinPool{rank}d", layer_docs("min pooling", "min_pool{rank}d", _WINNERS, "2", pattern="MinPool{rank}d"),
    module=__name__)
AvgPool1d, AvgPool2d, AvgPool3d = fixed_layers(
    _AvgPoolNd, "AvgPool{rank}d",
    layer_docs("average pooling", "avg_pool{rank}d", _SHAPES, "2", pattern="AvgPool{rank}d",
               note=lambda r: " PyTorch's ``AvgPool1d`` has no ``divisor_override``; neither has this one."
               if r == 1 else ""),
    drop=lambda r: ("divisor_override",) if r == 1 else (), module=__name__)
SumPool1d, SumPool2d, SumPool3d = fixed_layers(
    _SumPoolNd, "SumPool{rank}d", layer_docs("sum pooling", "sum_pool{rank}d", _SHAPES, "2", pattern="SumPool{rank}d"),
    module=__name__)
_MODE_LAYER_DOC = """{rank}-D mode pooling layer: :func:`poolkit.mode_pool{rank}d` as a layer (label images).

    The arguments are :func:`poolkit.mode_pool{rank}d`'s, checked at construction;
    ``data_format=None`` means "{first}": input (N, C, {dims}) or (C, {dims}).
    Mode pooling has no gradient: a training forward keeps nothing and
    ``backward`` raises TypeError.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> layer = poolkit.ModePool{rank}d(2)
    >>> labels = np.random.default_rng(0).integers(0, 4, {shape})
    >>> layer(labels).shape
    {out}
    """
ModePool1d, ModePool2d, ModePool3d = fixed_layers(
    _ModePoolNd, "ModePool{rank}d",
    lambda r: _MODE_LAYER_DOC.format(shape=(2, 3) + (6,) * r, out=(2, 3) + (3,) * r, **fields(r)),
    module=__name__)
LPPool1d, LPPool2d, LPPool3d = fixed_layers(
    _LPPoolNd, "LPPool{rank}d",
    layer_docs("Lp pooling (PyTorch's ``LPPool{rank}d``)", "lp_pool{rank}d",
               "the input (in the compute dtype), the window sums and the outputs", "2, 2", pattern="LPPool{rank}d"),
    module=__name__)
AdaptiveMaxPool1d, AdaptiveMaxPool2d, AdaptiveMaxPool3d = fixed_layers(
    _AdaptiveMaxPoolNd, "AdaptiveMaxPool{rank}d",
    layer_docs("adaptive max pooling", "adaptive_max_pool{rank}d", _WINNERS, "3", pattern="AdaptiveMaxPool{rank}d"),
    module=__name__)
AdaptiveAvgPool1d, AdaptiveAvgPool2d, AdaptiveAvgPool3d = fixed_layers(
    _AdaptiveAvgPoolNd, "AdaptiveAvgPool{rank}d",
    layer_docs("adaptive average pooling", "adaptive_avg_pool{rank}d", _SHAPES, "3",
               pattern="AdaptiveAvgPool{rank}d"),
    module=__name__)
