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

__all__ = ["CHANNELS_FIRST", "CHANNELS_LAST", "Layout", "DtypePolicy", "as_input_array", "dtype_policy",
           "check_axes", "format_rank", "merge_pooled", "resolve_axes"]

_FORMATS = {
    1: {"NCL": "first", "NLC": "last"},
    2: {"NCHW": "first", "NHWC": "last"},
    3: {"NCDHW": "first", "NDHWC": "last"},
}
_GENERIC = {"CHANNELS_FIRST": "first", "CHANNELS_LAST": "last"}
#: PyTorch's channels-first name per rank: the default ``data_format`` of the fixed-rank API.
CHANNELS_FIRST = {rank: next(k for k, v in names.items() if v == "first") for rank, names in _FORMATS.items()}
#: The channels-last name per rank.
CHANNELS_LAST = {rank: next(k for k, v in names.items() if v == "last") for rank, names in _FORMATS.items()}


def format_rank(data_format) -> Optional[int]:
    """The rank a rank-specific ``data_format`` name ("NCHW", "NLC", ...) fixes; None for others."""
    if isinstance(data_format, str):
        for rank, names in _FORMATS.items():
            if data_format.upper() in names:
                return rank
    return None


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


@functools.lru_cache(maxsize=64)
def dtype_policy(dtype: np.dtype, op: str) -> DtypePolicy:
    """Check ``dtype`` for pooling ``op`` ("max", "min", "avg" or "sum") and pick the compute dtype.

    float32/float64 compute as themselves; float16 and bfloat16 compute in
    float32 and come back in their own dtype. Integers and bool are exact under
    max and min pooling (bool computes as uint8); sums of integers and bool run
    and return in int64; average pooling of integers raises, as it would have to round.
    """
    dt = np.dtype(dtype)
    if dt in (np.float32, np.float64):
        return DtypePolicy(dt, dt)
    if dt == np.float16 or _is_bfloat16(dt):
        return DtypePolicy(np.dtype(np.float32), dt)
    if dt.kind in "iub" and op == "sum":
        return DtypePolicy(np.dtype(np.int64), np.dtype(np.int64))
    if dt.kind == "b" and op in ("max", "min"):
        return DtypePolicy(np.dtype(np.uint8), dt)
    if dt.kind in "iu":
        if op in ("max", "min"):
            return DtypePolicy(dt, dt)
        raise TypeError(
            f"{_OP_NAMES.get(op, op)} pooling of integer input (dtype={dt}) would have to round; "
            f"cast it first, e.g. x.astype(np.float32).")
    if dt.kind == "f":
        raise TypeError(f"dtype={dt} is not supported: use float16, float32, float64 or bfloat16.")
    raise TypeError(
        f"pooling needs real numbers, but got an array of dtype={dt}; "
        f"supported: float16, float32, float64, bfloat16, and integers and bool for max, min and sum pooling.")


_OP_NAMES = {"avg": "average", "lp": "Lp"}


# --------------------------------------------------------------------------- #
# layout
# --------------------------------------------------------------------------- #
def _format_kind(data_format: str, rank: int) -> str:
    if not isinstance(data_format, str):
        raise TypeError(f"`data_format` must be a string, but got data_format={data_format!r}.")
    key = data_format.upper()
    kinds = dict(_FORMATS.get(rank, {}), **_GENERIC)
    if key not in kinds:
        allowed = ", ".join(repr(k) for k in list(_FORMATS.get(rank, {})) + ["channels_first", "channels_last"])
        raise ValueError(f"`data_format` must be one of {allowed} for {rank}-D pooling, "
                         f"but got data_format={data_format!r}.")
    return kinds[key]


def check_axes(axes, rank: int) -> Tuple[int, ...]:
    """``axes`` as a tuple of ``rank`` ints (an int for rank 1), or a clear error; ranges are checked against
    an array's dimensions by :func:`resolve_axes`."""
    if isinstance(axes, (int, np.integer)) and not isinstance(axes, bool):
        axes = (axes,)
    if not isinstance(axes, (tuple, list)) or not all(
            isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in axes):
        raise TypeError(f"`axes` must be an int or a tuple of ints, but got axes={axes!r}.")
    if len(axes) != rank:
        raise ValueError(f"`axes` must name {rank} axes for {rank}-D pooling, but got axes={tuple(axes)!r}.")
    return tuple(int(a) for a in axes)


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
    kind = _format_kind(data_format, rank)
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
