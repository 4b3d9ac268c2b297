"""The spatial pyramid pooling layer."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np

from ..core.layout import as_input_array
from ..core.reductions import MAX
from ..engine.prepare import check_grad
from ..functional.common import Ints
from ..functional.spp import Geometry, check_levels, check_mode, spp_backward, spp_forward
from .base import Layer

__all__ = ["SpatialPyramidPool2d"]


@dataclass(eq=False)
class SppSaved:
    """What backward needs from a training forward: the maxima's indices (max mode), which elements were NaN
    (average mode with ``nan_policy="ignore"``), the geometry, and the output to check against."""

    indices: Optional[np.ndarray]
    nans: Optional[np.ndarray]
    geometry: Geometry
    out_shape: Tuple[int, ...]
    out_dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.indices, self.nans) if a is not None)


class SpatialPyramidPool2d(Layer):
    """Spatial pyramid pooling layer; see :func:`poolkit.spatial_pyramid_pool2d` for the arguments.

    A training forward keeps what backward needs: the indices of the maxima
    (max mode, int64 per output), nothing but shapes (average mode), or, in
    average mode with ``nan_policy="ignore"``, which elements were NaN (one
    byte per input element). ``data_format=None`` means 'NCHW'.
    Layers can be pickled and copied.

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

    Saved = SppSaved

    def __init__(self, levels: Sequence[int] = (1, 2, 4), mode: str = MAX.name, *, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        self.levels = check_levels(levels)
        self._reduction = check_mode(mode)
        self.mode = mode
        super().__init__(data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy)

    def _run(self, x, keep: bool):
        x = as_input_array(x)
        geo = Geometry.of(tuple(x.shape), self.data_format, self.axes)
        winners = self._reduction.winners
        y, idx = spp_forward(x, self.levels, self._reduction, keep and winners, geo, self.nan_policy, self.backend)
        nans = None
        if keep and not winners and self.nan_policy == "ignore":
            nans = np.isnan(x)                        # who was left out: backward gives them no share
        return y, (SppSaved(idx, nans, geo, y.shape, y.dtype) if keep else None)

    def _grad(self, saved: SppSaved, grad_output) -> np.ndarray:
        g = check_grad(grad_output, saved.out_shape, saved.out_dtype)
        # The NaN elements again, as a stand-in input: only where NaN was matters to backward.
        xs = None if saved.nans is None else np.where(saved.nans, np.nan, 0.0).astype(g.dtype)
        return spp_backward(g, saved.indices, self.levels, self._reduction, geo=saved.geometry, backend=self.backend,
                            nan_policy=self.nan_policy, x=xs)
