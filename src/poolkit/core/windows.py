"""The windows of one call, as :func:`poolkit.engine.prepare.prepare` asks for them.

Every family describes its windows with one of three small objects.  Called
with the input's pooled sizes, each returns one :class:`~poolkit.core.geometry.Axis`
per pooled axis; ``sizing_argument`` is the ``(name, value)`` of the argument
that sets the output size (echoed when that size is too big).

``StridedWindows``
    ``kernel_size``, ``stride``, ``padding``, ``dilation``, ``ceil_mode`` (PyTorch's
    ``avg_pool3d`` size rule lives here and nowhere else);
``AdaptiveWindows``
    a target ``output_size`` (PyTorch's adaptive rule);
``FractionalWindows``
    ``kernel_size`` windows whose starts each plane draws (fractional max pooling,
    PyTorch's rule).  Its axes give the output sizes and the taps; the starts
    come per call from the samples (:meth:`FractionalWindows.starts`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, cast

import numpy as np

from .args import is_real, normalize_ints
from .geometry import Axis, PoolSpec, adaptive_axis, check_int64_product, dim_names, normalize_output_size
from .reductions import Reduction

__all__ = ["AdaptiveWindows", "FractionalWindows", "StridedWindows", "SAMPLE_COLUMN", "window_starts"]


class StridedWindows:
    """Windows of a strided pooling (``spec``) for ``reduction``.

    ``pytorch_name``: the call came through a fixed-rank PyTorch name
    (``avg_pool3d``, ``AvgPool3d``, ...).  A reduction with PyTorch's 3-D rule
    (average pooling, :attr:`~poolkit.core.reductions.Reduction.torch3d_rule`)
    then also refuses an input size below the kernel; the N-d ``avg_pool`` has no
    such limit.
    """

    def __init__(self, spec: PoolSpec, reduction: Reduction, pytorch_name: bool):
        self.spec = spec
        self.avg3d_rule = reduction.torch3d_rule and spec.rank == 3 and pytorch_name

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


# --------------------------------------------------------------------------- #
# fractional windows
# --------------------------------------------------------------------------- #
#: For each pooled axis (D, H, W order), the column of ``samples[n, c, :]`` that places its windows.
#: PyTorch's order: (W, H) for 2-D but (T, H, W) for 3-D.
SAMPLE_COLUMN = {2: (1, 0), 3: (0, 1, 2)}


def _check_ratios(output_ratio, rank: int) -> Tuple[float, ...]:
    """``output_ratio`` as ``rank`` floats, each strictly between 0 and 1."""
    if is_real(output_ratio):
        values = (float(output_ratio),) * rank
    elif isinstance(output_ratio, (tuple, list)) and all(is_real(v) for v in output_ratio):
        if len(output_ratio) != rank:
            raise ValueError(f"`output_ratio` must be a number or a sequence of {rank} numbers, but got "
                             f"output_ratio={output_ratio!r} ({len(output_ratio)} values).")
        values = tuple(float(v) for v in output_ratio)
    else:
        raise TypeError(f"`output_ratio` must be a number or a sequence of {rank} numbers in (0, 1), "
                        f"but got output_ratio={output_ratio!r}.")
    if not all(0.0 < v < 1.0 for v in values):
        raise ValueError(f"`output_ratio` must lie strictly between 0 and 1, but got output_ratio={output_ratio!r}.")
    return values


@functools.lru_cache(maxsize=256)
def _nominal_axis(size: int, out: int, kernel: int) -> Axis:
    """``out`` windows of ``kernel`` taps along an axis of ``size``, each wholly inside: the sizes and taps of
    fractional windows (their starts differ per plane and come with the samples)."""
    zeros = np.zeros(out, dtype=np.int64)
    full = np.full(out, kernel, dtype=np.int64)
    for a in (zeros, full):
        a.setflags(write=False)
    return Axis(size, out, kernel, 1, zeros, zeros, full, full)


@dataclass(frozen=True)
class FractionalWindows:
    """Fractional max pooling's windows: ``kernel`` taps, ``output_size`` (or ``output_ratio``) of them per axis.

    Placement (PyTorch's ``generate_intervals``) per plane and pooled axis, for input
    size ``S``, kernel ``k``, output size ``O`` and that plane's sample ``u`` in ``[0, 1)``::

        alpha    = (S - k) / (O - 1)                          (in the samples' dtype)
        start[i] = int((i + u) * alpha) - int(u * alpha)      for i < O - 1
        start[O - 1] = S - k
    """

    rank: int
    kernel: Tuple[int, ...]
    output_size: Optional[Tuple[int, ...]]
    output_ratio: Optional[Tuple[float, ...]]

    @classmethod
    def from_args(cls, rank: int, kernel_size, output_size, output_ratio) -> "FractionalWindows":
        kernel = normalize_ints(kernel_size, rank, "kernel_size", 1)
        if output_size is None and output_ratio is None:
            raise ValueError("fractional max pooling needs `output_size` or `output_ratio`, but both are None.")
        if output_size is not None and output_ratio is not None:
            raise ValueError(f"give `output_size` or `output_ratio`, not both, but got output_size={output_size!r} "
                             f"and output_ratio={output_ratio!r}.")
        size = None if output_size is None else normalize_ints(output_size, rank, "output_size", 1)
        ratio = None if output_ratio is None else _check_ratios(output_ratio, rank)
        return cls(rank, kernel, size, ratio)

    def output_sizes(self, sizes: Sequence[int]) -> Tuple[int, ...]:
        """Output size per pooled axis for pooled input ``sizes``, or a ValueError."""
        names = dim_names(self.rank)
        value: object
        if self.output_size is not None:
            out, arg, value = self.output_size, "output_size", self.output_size
        else:
            ratio = cast(Tuple[float, ...], self.output_ratio)           # from_args set one of the two
            # PyTorch's rule: int(size * ratio), in Python floats.
            out = tuple(int(n * r) for n, r in zip(sizes, ratio))
            arg, value = "output_ratio", ratio
            for d, o in enumerate(out):
                if o < 1:
                    raise ValueError(f"`output_ratio`={value!r} gives an empty output along {names[d]}: "
                                     f"int({sizes[d]} * {ratio[d]}) = 0 for `x` with {sizes[d]} there.")
        for d, (n, o, k) in enumerate(zip(sizes, out, self.kernel)):
            if o + k - 1 > n:
                raise ValueError(f"`{arg}`={value!r} with `kernel_size`={self.kernel!r} needs at least "
                                 f"{o} + {k} - 1 = {o + k - 1} input elements along {names[d]}, but `x` has "
                                 f"{n} there: use a smaller kernel or output.")
        return tuple(out)

    def __call__(self, sizes: Sequence[int]) -> Tuple[Axis, ...]:
        return tuple(_nominal_axis(int(n), o, k) for n, o, k in zip(sizes, self.output_sizes(sizes), self.kernel))

    @property
    def sizing_argument(self) -> Tuple[str, object]:
        if self.output_size is not None:
            return "output_size", self.output_size
        return "output_ratio", self.output_ratio

    def starts(self, u: np.ndarray, sizes: Sequence[int]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Window starts along D, H and W: int64 ``(B, C, O)`` each, from samples ``u`` of shape ``(B, C, rank)``
        (the planes of the canonical layout, columns in PyTorch's order, :data:`SAMPLE_COLUMN`)."""
        B, C = u.shape[:2]
        out = self.output_sizes(sizes)
        names = dim_names(self.rank)
        per_axis = [np.zeros((B, C, 1), dtype=np.int64)] * (3 - self.rank)      # 2-D: D is one window of 1
        for a, col in enumerate(SAMPLE_COLUMN[self.rank]):
            per_axis.append(window_starts(u[:, :, col], sizes[a], out[a], self.kernel[a], names[a]))
        return per_axis[0], per_axis[1], per_axis[2]

    @property
    def kernel3(self) -> Tuple[int, int, int]:
        """``(KD, KH, KW)``: the kernel with 2-D pooling's D axis of 1."""
        k = (1,) * (3 - self.rank) + self.kernel
        return k[0], k[1], k[2]


def window_starts(u: np.ndarray, size: int, out: int, k: int, axis_name: str) -> np.ndarray:
    """Window starts along one axis: int64 of shape ``u.shape + (out,)`` (PyTorch's ``generate_intervals``).

    ``u`` holds one sample per plane; the arithmetic runs in ``u``'s dtype, with its
    rounding, as PyTorch's kernels do.
    """
    dt = u.dtype.type
    starts = np.empty(u.shape + (out,), dtype=np.int64)
    starts[..., out - 1] = size - k
    if out > 1:
        alpha = dt(size - k) / dt(out - 1)
        i = np.arange(out - 1).astype(u.dtype)
        # int() of a non-negative float: truncation (through float64, exact for every float dtype)
        hi = ((i + u[..., None]) * alpha).astype(np.float64).astype(np.int64)
        lo = (u * alpha).astype(np.float64).astype(np.int64)
        starts[..., : out - 1] = hi - lo[..., None]
        top = int(starts.max(initial=0))
        if top > size - k:
            # Only a coarse dtype's rounding gets here (float16 and bfloat16 with large sizes).
            raise ValueError(f"`samples` of dtype {u.dtype} are too coarse for {out} windows of {k} along "
                             f"{axis_name} (input size {size}): rounding places a window at {top}, past the "
                             f"last start {size - k}. Pass float32 or float64 samples.")
    return starts
