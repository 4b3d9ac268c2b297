"""Window geometry: argument normalisation, output size and the windows themselves.

This is the one place that knows how a pooling window is laid over an input axis.
Every public function normalises its arguments here, every backend reads the
windows it must reduce from an :class:`Axis`, and the tests use the same
:func:`output_size` that the kernels use.

Conventions (PyTorch's, see ``torch.nn.functional.max_pool2d``):

* Window ``o`` along an axis starts at ``o * stride - pad_before`` and has
  ``kernel`` taps spaced ``dilation`` apart.  Taps outside ``[0, size)`` lie in
  the padding: they never win a max and add 0 to a sum.
* ``out = floor((size + pad_before + pad_after - dilation*(kernel-1) - 1) / stride) + 1``;
  with ``ceil_mode`` the division rounds up, but a window that would start past
  the input and its left padding is dropped.
* Adaptive windows: ``start = floor(o*size/out)``, ``end = ceil((o+1)*size/out)``.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

# Argument helpers live in .args; the window arguments are normalised with them here.
from .args import INT64_MAX, as_bool, check_int64_product, is_int, normalize_ints

__all__ = [
    "Axis",
    "PoolSpec",
    "adaptive_axis",
    "dim_names",
    "output_size",
    "regular_axis",
    "restrict_axis",
    "trivial_axis",
]

IntOrTuple = Union[int, Sequence[int]]


def dim_names(rank: int) -> Tuple[str, ...]:
    """Names of the spatial dimensions, as used in error messages."""
    return {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}.get(rank, tuple(f"S{i}" for i in range(rank)))


# --------------------------------------------------------------------------- #
# one axis
# --------------------------------------------------------------------------- #
def output_size(size: int, kernel: int, stride: int, dilation: int,
                pad_before: int, pad_after: int, ceil_mode: bool) -> int:
    """Number of windows along one axis (PyTorch's ``pooling_output_shape``).

    May return a value below 1; callers turn that into an error.

    Examples
    --------
    >>> output_size(28, 2, 2, 1, 0, 0, False)
    14
    >>> output_size(5, 2, 2, 1, 0, 0, True)   # the third window starts at 4, inside
    3
    """
    span = dilation * (kernel - 1) + 1
    total = size + pad_before + pad_after - span
    if ceil_mode:
        out = -((-total) // stride) + 1          # ceil division
        # The last window must start inside the input or its left padding.
        if (out - 1) * stride >= size + pad_before:
            out -= 1
    else:
        out = total // stride + 1                 # floor division (rounds toward -inf)
    return out


@dataclass(frozen=True, eq=False)
class Axis:
    """The windows laid over one spatial axis.

    Window ``o`` has taps ``j = 0 .. taps-1`` at input positions
    ``start[o] + j * step``; taps ``lo[o] <= j < hi[o]`` are inside the input.

    Attributes
    ----------
    size, out : int
        Input and output length.
    taps : int
        Taps per window (the kernel size; the longest window when adaptive).
    step : int
        Distance between taps (the dilation; 1 when adaptive).
    start, lo, hi : ndarray of int64, shape (out,)
        Position of tap 0 and the range of taps inside the input.
    padded : ndarray of int64, shape (out,)
        Taps inside the padded extent ``[-pad_before, size + pad_after)``: the
        divisor factor of ``count_include_pad=True``.
    kernel, stride, pad_before, pad_after : int or None
        The regular window parameters; None for adaptive windows.
    """

    size: int
    out: int
    taps: int
    step: int
    start: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    padded: np.ndarray
    kernel: Optional[int] = None
    stride: Optional[int] = None
    pad_before: Optional[int] = None
    pad_after: Optional[int] = None

    @property
    def regular(self) -> bool:
        return self.kernel is not None

    @property
    def window(self) -> Tuple[int, int, int, int]:
        """``(kernel, stride, pad_before, pad_after)`` of regular windows (a TypeError for adaptive ones)."""
        if self.kernel is None or self.stride is None or self.pad_before is None or self.pad_after is None:
            raise TypeError("adaptive windows have no kernel, stride or padding")
        return self.kernel, self.stride, self.pad_before, self.pad_after

    @functools.cached_property
    def interior(self) -> Tuple[int, int]:
        """``(a, b)``: windows ``a <= o < b`` have all their taps inside the input (contiguous)."""
        full = np.flatnonzero((self.lo == 0) & (self.hi == self.taps))
        if full.size == 0:
            return 0, 0
        return int(full[0]), int(full[-1]) + 1

    @property
    def valid(self) -> np.ndarray:
        """Taps inside the input, per window (the ``count_include_pad=False`` factor)."""
        return np.maximum(self.hi - self.lo, 0)

    def positions(self, o: int):
        """Input positions of the taps of window ``o`` that lie inside the input."""
        return [int(self.start[o] + j * self.step) for j in range(int(self.lo[o]), int(self.hi[o]))]


def _freeze(*arrays):
    for a in arrays:
        a.setflags(write=False)


@functools.lru_cache(maxsize=1024)
def regular_axis(size: int, kernel: int, stride: int, dilation: int,
                 pad_before: int, pad_after: int, ceil_mode: bool) -> Axis:
    """Windows of a strided pooling along one axis (output size must be >= 1)."""
    out = output_size(size, kernel, stride, dilation, pad_before, pad_after, ceil_mode)
    start = np.arange(out, dtype=np.int64) * stride - pad_before
    # First tap at or after position 0 and first tap at or after position `size`.
    lo = np.clip(-(start // dilation), 0, kernel)                     # ceil(-start / d)
    hi = np.clip(-((start - size) // dilation), 0, kernel)            # ceil((size - start) / d)
    lo = np.minimum(lo, hi)
    # Taps inside [-pad_before, size + pad_after); start >= -pad_before always.
    padded = np.clip(-((start - size - pad_after) // dilation), 0, kernel)
    _freeze(start, lo, hi, padded)
    return Axis(size, out, kernel, dilation, start, lo, hi, padded,
                kernel, stride, pad_before, pad_after)


@functools.lru_cache(maxsize=1024)
def adaptive_axis(size: int, out: int) -> Axis:
    """Adaptive windows: ``start = floor(o*size/out)``, ``end = ceil((o+1)*size/out)``."""
    o = np.arange(out, dtype=np.int64)
    start = (o * size) // out
    end = -((-(o + 1) * size) // out)
    length = end - start
    taps = int(length.max())
    lo = np.zeros(out, dtype=np.int64)
    _freeze(start, lo, length)
    return Axis(size, out, taps, 1, start, lo, length, length)


@functools.lru_cache(maxsize=64)
def trivial_axis(size: int = 1) -> Axis:
    """A size-1 axis with one window of one tap: pads 1-D and 2-D up to 3-D."""
    return regular_axis(size, 1, 1, 1, 0, 0, False)


def restrict_axis(axis: Axis, o1: int, o2: int, a: int, b: int) -> Axis:
    """Windows ``o1 <= o < o2`` of ``axis`` as the windows of the input stretch ``[a, b)`` alone.

    ``[a, b)`` must hold every tap of those windows that lies inside the input,
    with ``0 <= a <= max(start[o1], 0)`` (a Dask block's view of the input,
    :mod:`poolkit.engine.lazy`).  Positions shift by ``-a``; the tap ranges ``lo``,
    ``hi`` and ``padded`` carry over, so divisors, ``ceil_mode`` windows and
    padding come out as on the whole axis.  A regular axis stays regular and
    consistent: its windows start at ``o * stride - pad_before`` with
    ``pad_before = a - start[o1]``, and ``pad_after = size + pad_after - b``
    leaves the padded extent's end where it was.
    """
    start = axis.start[o1:o2] - a
    lo, hi, padded = axis.lo[o1:o2], axis.hi[o1:o2], axis.padded[o1:o2]
    _freeze(start)
    if not axis.regular:
        return Axis(b - a, o2 - o1, axis.taps, axis.step, start, lo, hi, padded)
    kernel, stride, _, pad_after = axis.window
    return Axis(b - a, o2 - o1, axis.taps, axis.step, start, lo, hi, padded,
                kernel, stride, a - int(axis.start[o1]), axis.size + pad_after - b)


# --------------------------------------------------------------------------- #
# a full pooling configuration
# --------------------------------------------------------------------------- #
_PAD_WORDS = ("same", "valid")


@dataclass(frozen=True)
class PoolSpec:
    """Normalised arguments of a strided pooling of a given spatial rank.

    ``padding`` is either ``"same"`` (resolved per input size, TensorFlow's rule)
    or a tuple of ``(before, after)`` pairs, one per spatial dimension.
    """

    rank: int
    kernel: Tuple[int, ...]
    stride: Tuple[int, ...]
    dilation: Tuple[int, ...]
    padding: Union[str, Tuple[Tuple[int, int], ...]]
    ceil_mode: bool
    symmetric: bool = True       # padding given PyTorch's way (an int or one int per axis)

    @classmethod
    def from_args(cls, rank: int, kernel_size, stride=None, padding=0, dilation=1,
                  ceil_mode=False) -> "PoolSpec":
        """Validate and normalise PyTorch-style pooling arguments.

        ``padding`` may be an int or a tuple of ints (symmetric; PyTorch's rule:
        at most half the kernel), a tuple of ``(before, after)`` pairs (any
        non-negative sizes), ``"valid"`` (no padding) or ``"same"``.
        """
        kernel = normalize_ints(kernel_size, rank, "kernel_size", 1)
        stride_t = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
            else normalize_ints(stride, rank, "stride", 1)
        dil = normalize_ints(dilation, rank, "dilation", 1)
        ceil = as_bool(ceil_mode, "ceil_mode")
        pad = cls._normalize_padding(padding, rank, kernel)
        if pad == "same" and ceil:
            raise ValueError("`ceil_mode=True` cannot be combined with padding='same': "
                             "'same' already fixes the output size to ceil(input / stride).")
        symmetric = not isinstance(padding, str) and not (
            isinstance(padding, (tuple, list)) and any(isinstance(p, (tuple, list)) for p in padding))
        return cls(rank, kernel, stride_t, dil, pad, ceil, symmetric)

    @staticmethod
    def _normalize_padding(padding, rank, kernel):
        if isinstance(padding, str):
            word = padding.lower()
            if word not in _PAD_WORDS:
                raise ValueError(f"`padding` must be an int, a tuple, 'same' or 'valid', "
                                 f"but got padding={padding!r}.")
            return "same" if word == "same" else ((0, 0),) * rank
        is_pairs = (isinstance(padding, (tuple, list)) and len(padding) > 0
                    and all(isinstance(p, (tuple, list)) for p in padding))
        if is_pairs:
            if len(padding) != rank or not all(len(p) == 2 and all(is_int(v) for v in p) for p in padding):
                raise ValueError(
                    f"`padding` given per side must be {rank} (before, after) pairs of ints, "
                    f"but got padding={padding!r}.")
            pairs = tuple((int(a), int(b)) for a, b in padding)
            if any(v < 0 for p in pairs for v in p):
                raise ValueError(f"`padding` must be non-negative, but got padding={padding!r}.")
            if any(v > INT64_MAX for p in pairs for v in p):
                raise ValueError(f"`padding` must be at most 2**63 - 1 per side (sizes are int64), "
                                 f"but got padding={padding!r}.")
            return pairs
        if rank == 1 and isinstance(padding, (tuple, list)) and len(padding) == 2 \
                and all(is_int(v) for v in padding):
            raise ValueError(f"`padding` for 1-D pooling is an int or one (before, after) pair per axis: "
                             f"write padding=(({padding[0]}, {padding[1]}),) to pad {padding[0]} before "
                             f"and {padding[1]} after, but got padding={tuple(padding)!r}.")
        sym = normalize_ints(padding, rank, "padding", 0)
        for p, k in zip(sym, kernel):
            # PyTorch's limit for symmetric padding; per-side pairs lift it.
            if p > k // 2:
                raise ValueError(
                    f"`padding` must be at most half of `kernel_size`, but got padding={padding!r} "
                    f"with kernel_size={kernel!r}. Pass per-side pairs such as "
                    f"padding={tuple((q, q) for q in sym)!r} to pad further.")
        return tuple((p, p) for p in sym)

    def pads(self, sizes: Sequence[int]) -> Tuple[Tuple[int, int], ...]:
        """The (before, after) padding per dimension for an input of spatial ``sizes``."""
        if not isinstance(self.padding, str):
            return self.padding
        pairs = []
        for n, k, s, d in zip(sizes, self.kernel, self.stride, self.dilation):
            out = -(-n // s)
            total = max(0, (out - 1) * s + d * (k - 1) + 1 - n)
            pairs.append((total // 2, total - total // 2))   # the odd pixel goes after
        return tuple(pairs)

    def axes(self, sizes: Sequence[int]) -> Tuple[Axis, ...]:
        """The windows along each spatial dimension; raises if a dimension has no window."""
        pads = self.pads(sizes)
        result = []
        for i, (n, k, s, d, (pb, pa)) in enumerate(zip(sizes, self.kernel, self.stride, self.dilation, pads)):
            # Positions up to the padded extent and the window's span are int64 in the kernels.
            if d * (k - 1) + 1 > INT64_MAX:
                raise ValueError(f"`kernel_size`={self.kernel!r} with `dilation`={self.dilation!r} makes a "
                                 f"window span past int64 (at most 2**63 - 1) along {dim_names(self.rank)[i]}.")
            if n + pb + pa > INT64_MAX:
                raise ValueError(f"`padding`={self.padding if self.padding != 'same' else pads!r} makes the "
                                 f"padded {dim_names(self.rank)[i]} axis {n + pb + pa} long, more than int64 "
                                 f"holds (at most 2**63 - 1).")
            out = output_size(n, k, s, d, pb, pa, self.ceil_mode)
            if out < 1:
                name = dim_names(self.rank)[i]
                span = d * (k - 1) + 1
                raise ValueError(
                    f"Output size is too small: along {name} the window spans {span} "
                    f"(kernel_size={k}, dilation={d}) but the padded input is only "
                    f"{n + pb + pa} long (input {n}, padding {pb}+{pa}). Use a smaller "
                    f"`kernel_size` or `dilation`, or more `padding`.")
            result.append((int(n), k, s, d, pb, pa, out))
        # Only padding makes an output longer than its input; 8 bytes per output position.
        check_int64_product([r[-1] for r in result] + [8], "padding",
                            self.padding if self.padding != "same" else pads, "an output plane (bytes)")
        return tuple(regular_axis(*r[:-1], self.ceil_mode) for r in result)

    def output_shape(self, sizes: Sequence[int]) -> Tuple[int, ...]:
        return tuple(a.out for a in self.axes(sizes))

    def torch_avg3d_axes(self, sizes: Sequence[int]) -> Tuple[Axis, ...]:
        """:meth:`axes` plus PyTorch's extra rule for ``avg_pool3d``: no input size below the kernel.

        (Only ``avg_pool3d`` has it in PyTorch; it applies to PyTorch-style
        padding only -- per-side pairs and "same" are poolkit's own.)
        """
        if self.symmetric:
            for name, n, k in zip(dim_names(self.rank), sizes, self.kernel):
                if n < k:
                    raise ValueError(
                        f"avg_pool3d needs every input size to be at least `kernel_size` (PyTorch's rule), "
                        f"but {name}={n} < {k}. Pad with per-side pairs, e.g. padding=((1, 1),)*3, or use "
                        f"poolkit.avg_pool(..., axes=...), which has no such limit.")
        return self.axes(sizes)


def normalize_output_size(output_size, sizes: Sequence[int], name: str = "output_size") -> Tuple[int, ...]:
    """Adaptive pooling target: an int or a sequence with ints or None (keep that size)."""
    rank = len(sizes)
    if output_size is None or is_int(output_size):
        values = (output_size,) * rank
    elif isinstance(output_size, (tuple, list)):
        if len(output_size) != rank:
            raise ValueError(f"`{name}` must be an int or a sequence of {rank} values, "
                             f"but got {name}={output_size!r} ({len(output_size)} values).")
        values = tuple(output_size)
    else:
        raise TypeError(f"`{name}` must be an int or a sequence of {rank} ints or None, "
                        f"but got {name}={output_size!r}.")
    result = []
    for v, n in zip(values, sizes):
        if v is None:
            result.append(int(n))
        elif not is_int(v):
            raise TypeError(f"`{name}` entries must be ints or None, but got {name}={output_size!r}.")
        elif v < 1:
            raise ValueError(f"`{name}` must be positive, but got {name}={output_size!r}.")
        else:
            result.append(int(v))
    return tuple(result)
