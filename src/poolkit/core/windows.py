"""The windows of one call, as :func:`poolkit.engine.eager.prepare` asks for them.

Functions and layers describe their windows with one of two small objects:
called with the input's pooled sizes they return one :class:`~poolkit.core.geometry.Axis`
per pooled axis; ``sizing_argument`` is the ``(name, value)`` of the argument that sets the
output size (echoed when that size is too big).  PyTorch's extra ``avg_pool3d`` rule
lives here and nowhere else.
"""
from __future__ import annotations

from typing import Sequence, Tuple

from .geometry import Axis, PoolSpec, adaptive_axis, check_int64_product, normalize_output_size

__all__ = ["AdaptiveWindows", "StridedWindows"]


class StridedWindows:
    """Windows of a strided pooling (``spec``) for pooling ``op`` ("max" or "avg").

    ``pytorch_name``: the call came through a fixed-rank PyTorch name
    (``avg_pool3d``, ``AvgPool3d``, ...).  Average pooling under the 3-D name
    then also has PyTorch's rule that no input size is below the kernel; the
    N-d ``avg_pool`` has no such limit.
    """

    def __init__(self, spec: PoolSpec, op: str, pytorch_name: bool):
        self.spec = spec
        self.avg3d_rule = op == "avg" and spec.rank == 3 and pytorch_name

    def __call__(self, sizes: Sequence[int]) -> Tuple[Axis, ...]:
        return self.spec.torch_avg3d_axes(sizes) if self.avg3d_rule else self.spec.axes(sizes)

    @property
    def sizing_argument(self) -> Tuple[str, object]:
        # Only padding makes a strided output longer than its input.
        return "padding", self.spec.padding


class AdaptiveWindows:
    """Adaptive windows for a target ``output_size`` (PyTorch's rule, see :func:`adaptive_axis`)."""

    def __init__(self, output_size):
        self.output_size = output_size

    def __call__(self, sizes: Sequence[int]) -> Tuple[Axis, ...]:
        target = normalize_output_size(self.output_size, sizes)
        # 8 bytes per output position in the window tables
        check_int64_product(tuple(target) + (8,), "output_size", self.output_size, "an output plane (bytes)")
        return tuple(adaptive_axis(int(n), o) for n, o in zip(sizes, target))

    @property
    def sizing_argument(self) -> Tuple[str, object]:
        return "output_size", self.output_size
