"""What the families' functions share: the rank rule, running a prepared call on the right engine, types.

:func:`pool` is where a validated call meets its data: in-memory arrays go to
:mod:`poolkit.engine.eager`, Dask arrays to :mod:`poolkit.engine.lazy` (so the
two engines never import each other).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..core.args import format_rank
from ..core.layout import is_dask_array
from ..engine import eager, lazy
from ..engine.prepare import Prepared

__all__ = ["Ints", "OutputSize", "Padding", "Pooled", "rank_of", "pool"]

Ints = Union[int, Sequence[int]]
OutputSize = Union[int, None, Sequence[Optional[int]]]
Padding = Union[int, str, Sequence[int], Sequence[Tuple[int, int]]]
Pooled = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]     # with return_indices: (out, indices)


def rank_of(x_ndim: int, kernel_size, axes, data_format=None) -> int:
    """The pooling rank of an N-d call: ``axes``' length, the rank a ``data_format`` name fixes, the
    kernel's length, or the input's dimensions less batch and channels."""
    if axes is not None:
        return 1 if isinstance(axes, (int, np.integer)) else len(axes)
    # A rank-specific name ("NCHW", ...) fixes the rank; without it an unbatched
    # (C, H, W) shape would be taken for a batched 1-D one.
    fixed = format_rank(data_format)
    if fixed is not None:
        return fixed
    if isinstance(kernel_size, (tuple, list)):
        return len(kernel_size)
    return max(x_ndim - 2, 1)


def pool(p: Prepared, x, mask: Optional[np.ndarray], masked_input: bool, return_indices: bool, keep: bool):
    """``(y, indices or None, context or None)`` of a prepared call on ``x``: eager, or lazy for a Dask array
    (which keeps no context: :func:`poolkit.engine.lazy.run_forward` refuses ``keep``)."""
    if is_dask_array(x):
        return lazy.run_forward(p, x, mask=mask, return_indices=return_indices, keep=keep)
    return eager.finish_forward(p, x, mask, masked_input, return_indices, keep)
