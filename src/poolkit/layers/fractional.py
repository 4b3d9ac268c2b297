"""Fractional max pooling layers: each forward draws new windows; backward sends the gradient through them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from numpy.typing import ArrayLike

from ..core.args import as_bool
from ..core.windows import FractionalWindows
from ..engine.prepare import check_grad
from ..functional.backward import _max_backward
from ..functional.common import Ints
from ..functional.fixed import fixed_layers, layer_docs
from ..functional.fractional import Ratios, RngLike, check_rng, fractional_pool
from .base import Layer

__all__ = ["FractionalMaxPool2d", "FractionalMaxPool3d"]


@dataclass(eq=False)
class FractionalSaved:
    """What backward needs from a training forward: the winners, and the shapes to check against."""

    indices: np.ndarray
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    out_dtype: np.dtype
    samples: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.indices.nbytes + self.samples.nbytes


class _FractionalMaxPoolNd(Layer):
    Saved = FractionalSaved
    _hidden = ("rng",)                   # the layer's own stream of samples, not a setting to echo

    def __init__(self, kernel_size: Ints, output_size: Optional[Ints] = None, output_ratio: Optional[Ratios] = None,
                 return_indices: bool = False, *, rng: RngLike = None, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        self._windows = FractionalWindows.from_args(self._rank, kernel_size, output_size, output_ratio)
        self.kernel_size, self.output_size, self.output_ratio = kernel_size, output_size, output_ratio
        self.return_indices = as_bool(return_indices, "return_indices")
        super().__init__(data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy)
        self._rng = check_rng(rng)

    def _run(self, x, keep: bool, *, samples: Optional[ArrayLike] = None):
        # New samples (new windows) every call, training or not, as PyTorch's layer draws them.
        y, idx, u = fractional_pool(self._windows, x, samples, self._rng, self.data_format, self.axes,
                                    self.nan_policy, self.backend)
        saved = FractionalSaved(idx, tuple(np.shape(x)), y.shape, y.dtype, u) if keep else None
        return ((y, idx) if self.return_indices else y), saved

    def _grad(self, saved: FractionalSaved, grad_output) -> np.ndarray:
        g = check_grad(grad_output, saved.out_shape, saved.out_dtype)
        return _max_backward(self._rank, g, saved.indices, saved.in_shape, data_format=self.data_format,
                             axes=self.axes, backend=self.backend)

    @property
    def samples(self) -> Optional[np.ndarray]:
        """The samples that placed the windows of the last training forward (None if none is kept)."""
        return None if self._ctx is None else self._ctx.samples


FractionalMaxPool2d, FractionalMaxPool3d = fixed_layers(
    _FractionalMaxPoolNd, "FractionalMaxPool{rank}d",
    layer_docs("fractional max pooling", "fractional_max_pool{rank}d", "the indices of the maxima and the samples",
               "2, output_ratio=0.5, rng=0", pattern="FractionalMaxPool{rank}d",
               note=lambda r: "\n\n    Each forward draws new samples (new windows) from the layer's own generator, "
                              "seeded by\n    ``rng``; backward sends the gradient through the windows of the last "
                              "training\n    forward (:attr:`samples`). Copies and pickles keep the generator's state."),
    ranks=(2, 3), module=__name__)
