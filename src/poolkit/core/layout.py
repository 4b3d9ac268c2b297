"""Input checks, dtype policy and the canonical kernel layout.

Every backend works on one layout: a C-contiguous array of shape
``(B, D, H, W, C)``: ``B`` the axes before the pooled ones (batch, and channels
for channels-first data), ``D, H, W`` the pooled axes (1-D and 2-D pooling get
leading size-1 axes), ``C`` the axes after them (channels for channels-last
data, 1 otherwise).  :class:`Layout` maps a user's array to that view and back
without copying when the array already has that memory order.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

import numpy as np

from .args import CHANNELS_FIRST, CHANNELS_LAST, check_axes, format_kind, format_rank
from .reductions import AVG, EXACT, WIDENED, Reduction

__all__ = ["CHANNELS_FIRST", "CHANNELS_LAST", "Layout", "DtypePolicy", "as_input_array", "dtype_policy",
           "float_policy", "check_axes", "format_rank", "merge_pooled", "resolve_axes"]


def is_dask_array(x) -> bool:
    """True for a ``dask.array.Array`` (checked without importing Dask)."""
    return type(x).__module__.startswith("dask.") and hasattr(x, "__dask_graph__")


def as_input_array(x, name: str = "x", lazy: bool = False) -> np.ndarray:
    """``np.asarray`` with a clear error for things that are not arrays of numbers.

    The single entry point of every array argument. Masked arrays are refused
    (their mask would be dropped). A Dask array comes back as it is when
    ``lazy`` (the forward functions pool it chunk by chunk, :mod:`poolkit.engine.lazy`);
    elsewhere it is refused rather than computed whole.

    Arrays in non-native byte order (e.g. ``'>f8'`` read from a file) come back
    as a native-order copy: the kernels only know native dtypes.
    """
    if isinstance(x, np.ma.MaskedArray):
        # np.asarray would silently drop the mask and pool the hidden values.
        raise TypeError(
            f"`{name}` is a masked array (np.ma.MaskedArray), whose mask this function cannot honour: "
            f"masks are honoured by the strided max, min, avg, sum and Lp functions and layers (a masked "
            f"input, or mask=). Pass {name}.filled(value) with a value that suits the pooling (e.g. "
            f"{name}.filled(-np.inf) for max pooling), or {name}.filled(np.nan) with nan_policy='ignore' "
            f"to leave the masked elements out of their windows.")
    if is_dask_array(x):
        if lazy:
            if any(n != n for n in x.shape):                  # NaN: chunk sizes unknown
                raise ValueError(f"`{name}` is a Dask array of unknown shape {x.shape} (chunk sizes unknown, "
                                 f"e.g. after boolean indexing): call {name}.compute_chunk_sizes() first.")
            return x if x.dtype.isnative else x.astype(x.dtype.newbyteorder("="))
        raise TypeError(f"`{name}` is a Dask array, but this function works on NumPy arrays only (backward "
                        f"passes and layers in training are not lazy): pass np.asarray({name}) to compute it.")
    if not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"`{name}` must be an array of numbers, but np.asarray({name}) failed: {exc}") from None
    if not x.dtype.isnative:
        x = x.astype(x.dtype.newbyteorder("="))
    return x


# --------------------------------------------------------------------------- #
# dtypes
# --------------------------------------------------------------------------- #
@dataclass(frozen=True)
class DtypePolicy:
    """How an input dtype is computed: ``compute`` inside the kernels, ``result`` returned."""

    compute: np.dtype
    result: np.dtype
    converts: bool = field(init=False)             # computed once: read on every call

    def __post_init__(self):
        object.__setattr__(self, "converts", self.compute != self.result)


def _is_bfloat16(dt: np.dtype) -> bool:
    return dt.name == "bfloat16"


@functools.lru_cache(maxsize=256)
def dtype_policy(dtype: np.dtype, reduction: Reduction, taps: Optional[int] = None) -> DtypePolicy:
    """Check ``dtype`` for ``reduction`` and pick the compute dtype (the record's dtype rule).

    float32/float64 compute as themselves; float16 and bfloat16 compute in
    float32 and come back in their own dtype.  Integers and bool: computed as
    they are (bool as uint8) by :data:`~poolkit.core.reductions.EXACT`
    reductions, summed and returned in int64 by
    :data:`~poolkit.core.reductions.WIDENED` ones (with ``taps``, the taps of a
    window, in float32 or float64 when that type holds every sum exactly), and
    refused otherwise, as they would have to round.
    """
    dt = np.dtype(dtype)
    is_float = dt.kind == "f" or _is_bfloat16(dt)
    if is_float and not reduction.floats:
        raise TypeError(f"{reduction.title} pooling takes integers and bool only, but got dtype={dt}.")
    if dt in (np.float32, np.float64):
        return DtypePolicy(dt, dt)
    if dt == np.float16 or _is_bfloat16(dt):
        return DtypePolicy(np.dtype(np.float32), dt)
    if dt.kind in "iub" and reduction.integers == WIDENED:
        return DtypePolicy(_exact_sum_type(dt, taps), np.dtype(np.int64))
    if dt.kind in "iub" and reduction.integers == EXACT:
        return DtypePolicy(np.dtype(np.uint8) if dt.kind == "b" else dt, dt)
    if dt.kind in "iu":
        raise TypeError(
            f"{reduction.title} pooling of integer input (dtype={dt}) would have to round; "
            f"cast it first, e.g. x.astype(np.float32).")
    if dt.kind == "f":
        raise TypeError(f"dtype={dt} is not supported: use float16, float32, float64 or bfloat16.")
    raise TypeError(
        f"pooling needs real numbers, but got an array of dtype={dt}; "
        f"supported: float16, float32, float64, bfloat16, and integers and bool for max, min and sum pooling.")


def _exact_sum_type(dt: np.dtype, taps: Optional[int]) -> np.dtype:
    """Where integer sums over windows of ``taps`` run: a float type that holds every sum exactly, on the
    vectorised kernels -- integers of up to 16 bits over up to 256 taps stay below 2**24 (float32, half the
    memory traffic), of up to 32 bits over up to 2**20 taps below 2**53 (float64) -- else int64."""
    if taps is not None and dt.itemsize <= 4 and taps <= 2**20:
        return np.dtype(np.float32 if dt.itemsize <= 2 and taps <= 256 else np.float64)
    return np.dtype(np.int64)


def float_policy(dtype: np.dtype) -> DtypePolicy:
    """The policy of gradients (and other float-only data): floats only, float16 and bfloat16 in float32."""
    return dtype_policy(dtype, AVG)


# --------------------------------------------------------------------------- #
# layout
# --------------------------------------------------------------------------- #
def resolve_axes(shape: Tuple[int, ...], rank: int, data_format: str, axes,
                 name: str = "x") -> Tuple[Tuple[int, ...], Optional[int]]:
    """Which axes of an array of ``shape`` are pooled, and which (if any) is the channel axis.

    ``axes`` (explicit) wins over ``data_format``. With ``data_format`` the
    input must be batched (rank+2 dims) or unbatched (rank+1 dims).
    """
    ndim = len(shape)
    if axes is not None:
        axes = check_axes(axes, rank)
        norm = []
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(f"`axes`={tuple(axes)!r} is out of range for `{name}` with {ndim} dimensions.")
            norm.append(int(a) % ndim)
        if len(set(norm)) != len(norm):
            raise ValueError(f"`axes` must not repeat an axis, but got axes={tuple(axes)!r}.")
        return tuple(norm), None
    kind = format_kind(data_format, rank)
    if ndim not in (rank + 1, rank + 2):
        raise ValueError(
            f"`{name}` must have {rank + 2} dimensions (batched) or {rank + 1} (unbatched) for "
            f"{rank}-D pooling with data_format={data_format!r}, but got shape {tuple(shape)}.")
    if kind == "first":
        return tuple(range(ndim - rank, ndim)), ndim - rank - 1
    return tuple(range(ndim - rank - 1, ndim - 1)), ndim - 1


def merge_pooled(shape: Tuple[int, ...], axes: Sequence[int]):
    """``shape`` with the pooled ``axes`` merged into one, and how to get there.

    Returns ``(perm, merged, axis)``: ``perm`` is None when the pooled axes are
    adjacent and in order (a reshape suffices), else the transpose that moves
    them last in the order given, ``(others..., pooled...)``; ``merged`` is the
    shape after it with the pooled axes as one axis, at index ``axis``.
    """
    lo, r = min(axes), len(axes)
    if tuple(axes) == tuple(range(lo, lo + r)):
        perm, moved, axis = None, tuple(shape), lo
    else:
        others = tuple(i for i in range(len(shape)) if i not in axes)
        perm = others + tuple(axes)
        moved, axis = tuple(shape[i] for i in perm), len(others)
    size = int(np.prod(moved[axis: axis + r], dtype=np.int64))
    return perm, moved[:axis] + (size,) + moved[axis + r:], axis


@dataclass(frozen=True)
class Layout:
    """Maps an array of ``shape`` pooled over ``axes`` to ``(B, D, H, W, C)`` and back."""

    shape: Tuple[int, ...]
    axes: Tuple[int, ...]
    perm: Optional[Tuple[int, ...]]      # transpose applied before the reshape, or None
    batch: int
    channels: int

    @classmethod
    @functools.lru_cache(maxsize=256)
    def make(cls, shape: Tuple[int, ...], axes: Tuple[int, ...]) -> "Layout":
        # B is everything before the pooled axes, C everything after (nothing once they are moved last).
        perm, merged, axis = merge_pooled(shape, axes)
        return cls(shape, axes, perm, int(np.prod(merged[:axis], dtype=np.int64)),
                   int(np.prod(merged[axis + 1:], dtype=np.int64)))

    @functools.cached_property
    def sizes(self) -> Tuple[int, ...]:
        return tuple(self.shape[a] for a in self.axes)

    def canonical_shape(self, sizes: Sequence[int]) -> Tuple[int, int, int, int, int]:
        d, h, w = (1,) * (3 - len(sizes)) + tuple(sizes)
        return (self.batch, d, h, w, self.channels)

    @functools.cached_property
    def canonical(self) -> Tuple[int, int, int, int, int]:
        """``(B, D, H, W, C)`` of an array of this layout's own shape."""
        return self.canonical_shape(self.sizes)

    def to_canonical(self, x: np.ndarray) -> np.ndarray:
        """A C-contiguous ``(B, D, H, W, C)`` view of ``x`` (a copy only when needed)."""
        if self.perm is not None:
            x = x.transpose(self.perm)                       # (others..., pooled...)
        return np.ascontiguousarray(x.reshape(self.canonical))

    def user_shape(self, sizes: Sequence[int]) -> Tuple[int, ...]:
        """Shape of a result whose pooled axes have ``sizes``, in the user's layout."""
        shape = list(self.shape)
        for a, n in zip(self.axes, sizes):
            shape[a] = n
        return tuple(shape)

    def from_canonical(self, y5: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
        """Undo :meth:`to_canonical` for a result whose pooled axes have ``sizes``."""
        if self.perm is None:
            return y5.reshape(self.shape if tuple(sizes) == self.sizes else self.user_shape(sizes))
        # (B, D, H, W, 1) -> (others..., pooled...) -> user's axis order
        others = tuple(self.shape[i] for i in self.perm[: len(self.perm) - len(self.axes)])
        y = y5.reshape(others + tuple(sizes))
        return y.transpose(np.argsort(self.perm))
