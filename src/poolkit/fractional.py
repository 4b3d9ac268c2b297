"""Fractional max pooling (Graham, 2014): max pooling over pseudo-randomly placed windows.

PyTorch's ``fractional_max_pool2d``/``3d`` and ``FractionalMaxPool2d``/``3d``,
window for window: given the same samples (PyTorch's ``_random_samples``),
results and indices are identical to PyTorch's.

Window placement (PyTorch's ``generate_intervals``), per (batch, channel)
plane and pooled axis, for input size ``S``, kernel ``k``, output size ``O``
and that plane's sample ``u`` in ``[0, 1)``::

    alpha    = (S - k) / (O - 1)                          (in the samples' dtype)
    start[i] = int((i + u) * alpha) - int(u * alpha)      for i < O - 1
    start[O - 1] = S - k

Window ``i`` covers ``[start[i], start[i] + k)``: windows overlap or leave
gaps as ``alpha`` dictates, the first starts at 0 and the last ends at the
input's edge.  The arithmetic runs in the samples' dtype, with its rounding,
as PyTorch's kernels do; pass float32 samples for float32 input to match it.

Gradients go through :func:`poolkit.max_pool_backward` with the forward
indices: the windows need not be known again.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple, Union, cast

import numpy as np
from numpy.typing import ArrayLike

from .engine.eager import _check_sizes, check_backend, check_grad, check_nan_policy
from .core.geometry import as_bool, dim_names, normalize_ints
from .core.layout import (CHANNELS_FIRST, CHANNELS_LAST, Layout, as_input_array, check_axes, dtype_policy,
    is_dask_array, resolve_axes)
from .backends.fractional import window_argmax
from .functional import max_pool2d_backward, max_pool3d_backward
from .layers import missing_context

__all__ = [
    "fractional_max_pool2d", "fractional_max_pool3d",
    "fractional_max_pool2d_backward", "fractional_max_pool3d_backward",
    "FractionalMaxPool2d", "FractionalMaxPool3d",
]

Ints = Union[int, Sequence[int]]
Ratios = Union[float, Sequence[float]]
Pooled = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]     # with return_indices: (out, indices)
RngLike = Union[None, int, np.random.Generator]

#: For each pooled axis (D, H, W order), the column of ``samples[n, c, :]`` that places its windows.
#: PyTorch's order: (W, H) for 2-D but (T, H, W) for 3-D.
SAMPLE_COLUMN = {2: (1, 0), 3: (0, 1, 2)}
_COLUMN_NAMES = {2: "(W, H)", 3: "(D, H, W)"}


# --------------------------------------------------------------------------- #
# arguments
# --------------------------------------------------------------------------- #
def _check_ratios(output_ratio, rank: int) -> Tuple[float, ...]:
    """``output_ratio`` as ``rank`` floats, each strictly between 0 and 1."""
    def real(v):
        return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

    if real(output_ratio):
        values = (float(output_ratio),) * rank
    elif isinstance(output_ratio, (tuple, list)) and all(real(v) for v in output_ratio):
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


@dataclass(frozen=True)
class FractionalSpec:
    """The validated window arguments of one fractional pooling: kernel and target size or ratio."""

    rank: int
    kernel: Tuple[int, ...]
    output_size: Optional[Tuple[int, ...]]
    output_ratio: Optional[Tuple[float, ...]]

    @classmethod
    def from_args(cls, rank: int, kernel_size, output_size, output_ratio) -> "FractionalSpec":
        kernel = normalize_ints(kernel_size, rank, "kernel_size", 1)
        if output_size is None and output_ratio is None:
            raise ValueError("fractional max pooling needs `output_size` or `output_ratio`, but both are None.")
        if output_size is not None and output_ratio is not None:
            raise ValueError(f"give `output_size` or `output_ratio`, not both, but got output_size={output_size!r} "
                             f"and output_ratio={output_ratio!r}.")
        size = None if output_size is None else normalize_ints(output_size, rank, "output_size", 1)
        ratio = None if output_ratio is None else _check_ratios(output_ratio, rank)
        return cls(rank, kernel, size, ratio)

    def output_sizes(self, sizes: Sequence[int], shape: Tuple[int, ...]) -> Tuple[int, ...]:
        """Output size per pooled axis for pooled input ``sizes`` (of an array of ``shape``), or a ValueError."""
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
                                     f"int({sizes[d]} * {ratio[d]}) = 0 for `x` of shape {shape}.")
        for d, (n, o, k) in enumerate(zip(sizes, out, self.kernel)):
            if o + k - 1 > n:
                raise ValueError(f"`{arg}`={value!r} with `kernel_size`={self.kernel!r} needs at least "
                                 f"{o} + {k} - 1 = {o + k - 1} input elements along {names[d]}, but `x` of "
                                 f"shape {shape} has {n}: use a smaller kernel or output.")
        return tuple(out)


def check_rng(rng) -> np.random.Generator:
    """A NumPy Generator from ``rng``: None (fresh entropy), a non-negative int seed, or a Generator."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng) if rng is None else rng
    if isinstance(rng, numbers.Integral) and not isinstance(rng, (bool, np.bool_)) and int(rng) >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"`rng` must be None, a non-negative int seed or a numpy.random.Generator, "
                    f"but got rng={rng!r}.")


def sample_dtype(x_dtype: np.dtype) -> np.dtype:
    """The dtype of samples drawn for input of ``x_dtype``: its compute dtype, float64 for integers."""
    compute = dtype_policy(np.dtype(x_dtype), "max").compute
    return compute if compute.kind == "f" else np.dtype(np.float64)


def _check_samples(samples, shape: Tuple[int, ...], also: Optional[Tuple[int, ...]], label: str) -> np.ndarray:
    """``samples`` as a float array of ``shape`` (or of ``also``, reshaped) in [0, 1), or a clear error."""
    u = as_input_array(samples, "samples")
    if u.dtype.kind != "f" and u.dtype.name != "bfloat16":
        raise TypeError(f"`samples` must be floating point (PyTorch's `_random_samples`), but got dtype={u.dtype}.")
    if also is not None and u.shape == also:
        u = u.reshape(shape)                       # unbatched input: (C, rank) is accepted for (1, C, rank)
    if u.shape != shape:
        alt = f" (or {also} for this unbatched input)" if also is not None else ""
        raise ValueError(f"`samples` must have shape {label} = {shape}{alt}, one sample per plane and "
                         f"pooled axis, but got shape {tuple(u.shape)}.")
    bad = ~((u >= 0) & (u < 1))                    # also catches NaN
    if bad.any():
        raise ValueError(f"`samples` must lie in [0, 1), but got {float(u[bad].flat[0])!r} at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}.")
    return u


@dataclass(frozen=True)
class _Planes:
    """The planes of one call: which axes are pooled, and the shape of the samples (one per plane and axis).

    ``samples_shape`` is PyTorch's ``(N, C, rank)`` with ``data_format`` (``(1, C, rank)`` for unbatched input,
    which also takes ``(C, rank)``), and ``(every other axis..., rank)`` with ``axes``.
    """

    pooled: Tuple[int, ...]
    samples_shape: Tuple[int, ...]
    also: Optional[Tuple[int, ...]]              # the accepted alternative shape, or None
    others: Tuple[int, ...]                      # the non-pooled axes, in order
    label: str                                   # the shape in words, for errors

    @classmethod
    def of(cls, shape: Tuple[int, ...], rank: int, data_format, axes) -> "_Planes":
        pooled, channel_axis = resolve_axes(shape, rank, data_format, axes)
        _check_sizes(shape, pooled, channel_axis)
        others = tuple(a for a in range(len(shape)) if a not in pooled)
        planes = tuple(shape[a] for a in others)
        if axes is None:
            also = planes + (rank,) if len(shape) == rank + 1 else None    # unbatched: PyTorch's (1, C, rank)
            return cls(pooled, (1,) * (also is not None) + planes + (rank,), also, others, f"(N, C, {rank})")
        return cls(pooled, planes + (rank,), None, others, f"(the other axes of `x`..., {rank})")

    def samples(self, samples, rng, x_dtype) -> np.ndarray:
        """The given samples, checked, or new ones drawn from ``rng``; of :attr:`samples_shape`."""
        if samples is not None:
            return _check_samples(samples, self.samples_shape, self.also, self.label)
        return check_rng(rng).random(self.samples_shape, dtype=sample_dtype(x_dtype).type)

    def per_plane(self, u: np.ndarray) -> np.ndarray:
        """``u`` as (planes along the non-pooled axes..., rank), dropping an unbatched input's leading 1."""
        return u.reshape(self.also) if self.also is not None else u


def window_starts(u: np.ndarray, size: int, out: int, k: int, axis_name: str) -> np.ndarray:
    """Window starts along one axis: int64 of shape ``u.shape + (out,)`` (PyTorch's ``generate_intervals``).

    ``u`` holds one sample per plane; the arithmetic runs in ``u``'s dtype.
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


# --------------------------------------------------------------------------- #
# the pooling
# --------------------------------------------------------------------------- #
def _pool(spec: FractionalSpec, x, samples, rng, data_format, axes, nan_policy, backend):
    """Validate one call and pool. Returns ``(out, indices, samples)``, samples of ``_Planes.samples_shape``."""
    x = as_input_array(x, lazy=True)
    rank = spec.rank
    policy = dtype_policy(x.dtype, "max")
    planes = _Planes.of(tuple(x.shape), rank, data_format, axes)
    ignore = check_nan_policy(nan_policy)
    backend_name = check_backend(backend)
    layout = Layout.make(tuple(x.shape), planes.pooled)
    out_sizes = spec.output_sizes(layout.sizes, tuple(x.shape))
    u = planes.samples(samples, rng, x.dtype)
    if is_dask_array(x):
        return _pool_dask(spec, x, u, planes, layout.user_shape(out_sizes), data_format, axes, nan_policy, backend)

    # Starts per axis as (B, C) of the canonical layout: the non-pooled axes before the pooled ones make B,
    # those after them C (all in B when the pooled axes are moved last): the samples' order either way.
    B, Cl = layout.batch, layout.channels
    up = u.reshape(B, Cl, rank)
    names = dim_names(rank)
    starts: List[np.ndarray] = [np.zeros((B, Cl, 1), dtype=np.int64)] * (3 - rank)      # 2-D: D is 1
    for a, col in enumerate(SAMPLE_COLUMN[rank]):
        starts.append(window_starts(up[:, :, col], layout.sizes[a], out_sizes[a], spec.kernel[a], names[a]))
    kernel3 = (1,) * (3 - rank) + spec.kernel

    x5 = layout.to_canonical(x)                                  # (B, D, H, W, Cl)
    out_layout = Layout.make(layout.user_shape(out_sizes), planes.pooled)
    out5_shape = out_layout.canonical
    if x5.size == 0:
        idx5 = np.zeros(out5_shape, dtype=np.int64)
        y5 = np.zeros(out5_shape, dtype=x5.dtype)
    else:
        xc = x5.astype(policy.compute) if policy.converts else x5
        idx5, y5 = window_argmax(xc, (starts[0], starts[1], starts[2]), kernel3, backend_name, ignore)
        # the maxima are input elements: back in x's dtype (float16, bool) they are exact
        y5 = y5.astype(x5.dtype, copy=False)
    y = out_layout.from_canonical(y5.reshape(out5_shape), out_sizes)
    indices = out_layout.from_canonical(idx5, out_sizes)
    return y, indices, u


def _pool_dask(spec: FractionalSpec, x, u: np.ndarray, planes: _Planes, out_shape: Tuple[int, ...], data_format,
               axes, nan_policy, backend):
    """:func:`_pool` of a Dask array (checked there, with its samples ``u`` drawn up front), lazily: each plane
    whole in one chunk (its windows are its own), each block pooled with its planes' samples, on one thread
    per task."""
    import dask.array as da

    from .core.threads import threads

    per_plane = planes.per_plane(u)                           # (non-pooled axes..., rank)
    x = x.rechunk({a: -1 for a in planes.pooled})
    chunks = tuple((n,) if a in planes.pooled else c for a, (n, c) in enumerate(zip(out_shape, x.chunks)))
    offsets = [np.cumsum((0,) + c) for c in x.chunks]

    def block(xb, block_id=None, want=0):
        where = tuple(slice(offsets[a][block_id[a]], offsets[a][block_id[a] + 1]) for a in planes.others)
        with threads(1):
            res = _pool(spec, xb, per_plane[where], None, data_format, axes, nan_policy, backend)
        return res[want]

    y = da.map_blocks(block, x, chunks=chunks, dtype=x.dtype, want=0)
    idx = da.map_blocks(block, x, chunks=chunks, dtype=np.int64, want=1)
    return y, idx, u


_DOC = """{rank}-D fractional max pooling over {dims} of ({batch}, C, {dims}) or (C, {dims}).

    Each output is the maximum of a ``kernel_size`` window; the windows of
    each (batch, channel) plane are placed pseudo-randomly by that plane's
    samples, so that ``output_size`` (or ``int(input_size * output_ratio)``)
    outputs cover the input; see :mod:`poolkit.fractional` for the rule.  As
    PyTorch's ``fractional_max_pool{rank}d``: with the same samples, the same
    values and indices.

    Parameters
    ----------
    x : array_like, shape ({batch}, C, {dims}) or (C, {dims})
        ``data_format="{last}"``: ({batch}, {dims}, C) or ({dims}, C). Float16,
        float32, float64, bfloat16 or integer; never modified.
    kernel_size : int or tuple of {rank} ints
        Window size per pooled axis.
    output_size : int or tuple of {rank} ints, optional
        Output size per pooled axis; each needs ``output + kernel - 1 <= input``.
    output_ratio : float or tuple of {rank} floats, optional
        Output size as a fraction of the input size, in (0, 1):
        ``int(input * ratio)``. Exactly one of ``output_size`` and
        ``output_ratio`` must be given.
    return_indices : bool
        Also return the flat index of each maximum within its input plane
        (``int64``), for :func:`fractional_max_pool{rank}d_backward` or
        :func:`poolkit.max_unpool{rank}d`.
    samples : array_like of float, shape (N, C, {rank}), optional
        One number in [0, 1) per plane and pooled axis, in PyTorch's
        ``_random_samples`` layout: ``samples[n, c]`` is ordered
        {columns}. Unbatched input: (1, C, {rank}) or (C, {rank}). With
        ``axes``: (every other axis of ``x``, in order..., {rank}), the
        columns in the same order over the pooled axes as given (so
        ``axes={axes_first}`` is ``data_format="{first}"``). The window
        arithmetic runs in their dtype (PyTorch uses the input's).
        Default: drawn from ``rng``.
    rng : None, int or numpy.random.Generator
        Where samples come from when ``samples`` is None (a seed gives
        reproducible windows; None: fresh entropy). Drawn samples have the
        compute dtype: float32 for float16, bfloat16 and float32 input,
        float64 for float64 and integer input.
    data_format : {{"{first}", "{last}", "channels_first", "channels_last"}}
    axes : tuple of {rank} ints, optional
        Pool over these axes ({dims}, in this order) instead of those
        ``data_format`` names; every other axis is a batch axis, and each
        plane (each position along them) has its own windows.
    nan_policy : {{"propagate", "ignore"}}
        "propagate" (PyTorch's rule): a window holding NaN gives NaN and the
        index of its last NaN. "ignore": NaN elements never win (as
        ``np.nanmax``); a window of NaN only gives NaN and index -1 (no
        gradient).
    backend : {{"auto", "numba", "img2col", "reference"}}
        All give the same bits.

    Returns
    -------
    out : ndarray, shape ({batch}, C, *output_size)
        With ``axes``: ``x.shape`` with the pooled axes resized. Dtype of ``x``.
    indices : ndarray of int64, same shape
        Only if ``return_indices``.

    Notes
    -----
    Ties go to the first maximum in scan order; a NaN wins and a window
    holding NaN reports its last NaN (PyTorch's rule). PyTorch's 3-D version
    demands ``output + kernel - 1 < input``; poolkit allows ``<=`` in 2-D
    and 3-D alike.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange({n}.).reshape({shape})
    >>> y, idx = poolkit.fractional_max_pool{rank}d(x, 2, output_size={osize}, return_indices=True,
    ...                                        samples=np.full((1, 1, {rank}), 0.5))
    >>> {show}
    {y}
    >>> poolkit.fractional_max_pool{rank}d(x, 2, output_ratio=0.5, rng=0).shape
    {ratio_shape}
    """


def _doc(rank: int) -> str:
    if rank == 2:
        extra = dict(n=25, shape="1, 1, 5, 5", osize=3, ratio_shape="(1, 1, 2, 2)", show="y[0, 0]",
                     y="array([[ 6.,  8.,  9.],\n           [16., 18., 19.],\n           [21., 23., 24.]])")
    else:
        extra = dict(n=27, shape="1, 1, 3, 3, 3", osize=2, ratio_shape="(1, 1, 1, 1, 1)", show="y.ravel()",
                     y="array([13., 14., 16., 17., 22., 23., 25., 26.])")
    return _DOC.format(rank=rank, dims=", ".join(dim_names(rank)), batch="N", first=CHANNELS_FIRST[rank],
                       last=CHANNELS_LAST[rank], columns=_COLUMN_NAMES[rank],
                       axes_first=tuple(range(2, rank + 2)), **extra)


def _fractional(rank, x, kernel_size, output_size, output_ratio, return_indices, samples, rng, data_format,
                axes, nan_policy, backend) -> Pooled:
    ri = as_bool(return_indices, "return_indices")
    spec = FractionalSpec.from_args(rank, kernel_size, output_size, output_ratio)
    y, idx, _ = _pool(spec, x, samples, rng, data_format, axes, nan_policy, backend)
    return (y, idx) if ri else y


def fractional_max_pool2d(x: ArrayLike, kernel_size: Ints, output_size: Optional[Ints] = None,
                          output_ratio: Optional[Ratios] = None, return_indices: bool = False, *,
                          samples: Optional[ArrayLike] = None, rng: RngLike = None, data_format: str = "NCHW",
                          axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto") -> Pooled:
    return _fractional(2, x, kernel_size, output_size, output_ratio, return_indices, samples, rng, data_format,
                       axes, nan_policy, backend)


def fractional_max_pool3d(x: ArrayLike, kernel_size: Ints, output_size: Optional[Ints] = None,
                          output_ratio: Optional[Ratios] = None, return_indices: bool = False, *,
                          samples: Optional[ArrayLike] = None, rng: RngLike = None, data_format: str = "NCDHW",
                          axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto") -> Pooled:
    return _fractional(3, x, kernel_size, output_size, output_ratio, return_indices, samples, rng, data_format,
                       axes, nan_policy, backend)


fractional_max_pool2d.__doc__ = _doc(2)
fractional_max_pool3d.__doc__ = _doc(3)


def fractional_max_pool2d_backward(grad_output: ArrayLike, indices: ArrayLike, input_shape: Sequence[int], *,
                                   data_format: str = "NCHW", axes: Optional[Ints] = None,
                                   backend: str = "auto") -> np.ndarray:
    """Gradient of :func:`fractional_max_pool2d` from its indices.

    Each upstream value goes to the input element that won its window;
    elements that won several windows sum their values (in output order).
    This is :func:`poolkit.max_pool2d_backward`: the indices say everything.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, OH, OW) or (C, OH, OW)
        Gradient with respect to the pooled output; floating point.
    indices : array_like of int, same shape
        From the forward call with ``return_indices=True``.
    input_shape : tuple of ints
        Shape of the forward input.
    data_format, axes, backend
        As in the forward call.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``, dtype of ``grad_output``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(25.).reshape(1, 1, 5, 5)
    >>> y, idx = poolkit.fractional_max_pool2d(x, 2, output_size=3, return_indices=True, rng=0)
    >>> g = poolkit.fractional_max_pool2d_backward(np.ones_like(y), idx, x.shape)
    >>> float(g.sum()) == y.size
    True
    """
    return max_pool2d_backward(grad_output, indices, input_shape, data_format=data_format, axes=axes,
                               backend=backend)


def fractional_max_pool3d_backward(grad_output: ArrayLike, indices: ArrayLike, input_shape: Sequence[int], *,
                                   data_format: str = "NCDHW", axes: Optional[Ints] = None,
                                   backend: str = "auto") -> np.ndarray:
    """Gradient of :func:`fractional_max_pool3d` from its indices (:func:`poolkit.max_pool3d_backward`).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange(64.).reshape(1, 1, 4, 4, 4)
    >>> y, idx = poolkit.fractional_max_pool3d(x, 2, output_size=2, return_indices=True, rng=0)
    >>> poolkit.fractional_max_pool3d_backward(np.ones_like(y), idx, x.shape).shape
    (1, 1, 4, 4, 4)
    """
    return max_pool3d_backward(grad_output, indices, input_shape, data_format=data_format, axes=axes,
                               backend=backend)


# --------------------------------------------------------------------------- #
# layers
# --------------------------------------------------------------------------- #
@dataclass(eq=False)
class _Saved:
    """What backward needs from a training forward: the winners, and the shapes to check against."""

    indices: np.ndarray
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    out_dtype: np.dtype
    samples: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.indices.nbytes + self.samples.nbytes


class _FractionalMaxPoolNd:
    _rank = 2

    def __init__(self, kernel_size: Ints, output_size: Optional[Ints] = None, output_ratio: Optional[Ratios] = None,
                 return_indices: bool = False, *, rng: RngLike = None, data_format: Optional[str] = None,
                 axes: Optional[Ints] = None, nan_policy: str = "propagate", backend: str = "auto"):
        # Everything is checked now, not at the first forward.
        self._spec = FractionalSpec.from_args(self._rank, kernel_size, output_size, output_ratio)
        self.kernel_size, self.output_size, self.output_ratio = kernel_size, output_size, output_ratio
        self.return_indices = as_bool(return_indices, "return_indices")
        self.data_format = CHANNELS_FIRST[self._rank] if data_format is None else data_format
        resolve_axes((1,) * (self._rank + 2), self._rank, self.data_format, None)      # a valid name?
        self.axes = None if axes is None else check_axes(axes, self._rank)
        check_nan_policy(nan_policy)
        self.nan_policy = nan_policy
        check_backend(backend)
        self.backend = backend
        self._rng = check_rng(rng)                 # the layer's own stream of samples
        self._ctx: Optional[_Saved] = None
        self._forwarded = False

    def forward(self, x: ArrayLike, train: bool = True, *, samples: Optional[ArrayLike] = None) -> Pooled:
        """Pool ``x`` with fresh windows; with ``train=True`` keep what :meth:`backward` needs.

        Parameters
        ----------
        x : array_like
            Input, as for the functional form.
        train : bool
            True: keep the indices (and samples) for :meth:`backward`,
            replacing the previous ones. False (evaluation): keep nothing and
            drop the previous context. Either way new samples are drawn, as
            PyTorch's layer does in both modes.
        samples : array_like, optional
            Use these samples (shape (N, C, rank), or (other axes..., rank)
            with ``axes``; see the functional form) instead of drawing from
            the layer's generator.

        Returns
        -------
        out : ndarray
            And the indices as a second value with ``return_indices=True``.
        """
        keep = as_bool(train, "train")
        y, idx, u = _pool(self._spec, x, samples, self._rng, self.data_format, self.axes, self.nan_policy,
                          self.backend)
        self._ctx = _Saved(idx, tuple(np.shape(x)), y.shape, y.dtype, u) if keep else None
        self._forwarded = True
        return (y, idx) if self.return_indices else y

    __call__ = forward

    def backward(self, grad_output: ArrayLike) -> np.ndarray:
        """Gradient with respect to the input of the last forward, which must have had ``train=True``.

        Uses that forward's windows (its indices): nothing is drawn again.

        Parameters
        ----------
        grad_output : array_like
            Gradient with respect to that forward's output: same shape; same
            dtype (any float dtype for integer input).

        Returns
        -------
        grad_input : ndarray, shape of that input

        Raises
        ------
        RuntimeError
            If no forward ran yet, or the last one had ``train=False``.
        """
        if self._ctx is None:
            raise missing_context(self)
        ctx = self._ctx
        g = check_grad(grad_output, ctx.out_shape, ctx.out_dtype)
        back = max_pool2d_backward if self._rank == 2 else max_pool3d_backward
        return back(g, ctx.indices, ctx.in_shape, data_format=self.data_format, axes=self.axes, backend=self.backend)

    @property
    def samples(self) -> Optional[np.ndarray]:
        """The samples that placed the windows of the last training forward (None if none is kept)."""
        return None if self._ctx is None else self._ctx.samples

    @property
    def saved_nbytes(self) -> int:
        """Bytes kept from the last training forward for backward (indices and samples; 0 if none)."""
        return 0 if self._ctx is None else self._ctx.nbytes

    def __repr__(self) -> str:
        items = [("kernel_size", self.kernel_size), ("output_size", self.output_size),
                 ("output_ratio", self.output_ratio), ("return_indices", self.return_indices),
                 ("data_format", self.data_format)]
        items += [("axes", self.axes)] if self.axes is not None else []
        items += [("nan_policy", self.nan_policy)] if self.nan_policy != "propagate" else []
        items += [("backend", self.backend)]
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in items)})"


def _layer_doc(rank: int) -> str:
    shape = (2, 3) + (9,) * rank
    return f"""{rank}-D fractional max pooling layer; see :func:`fractional_max_pool{rank}d` for the arguments.

    Each forward draws new samples (new windows) from the layer's own
    generator, seeded by ``rng``; a training forward keeps the indices so that
    :meth:`backward` sends the gradient through the same windows.
    ``data_format=None`` means {CHANNELS_FIRST[rank]!r}. Layers can be pickled and
    copied, generator state included.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> pool = poolkit.FractionalMaxPool{rank}d(2, output_ratio=0.5, rng=0)
    >>> x = np.random.default_rng(1).random({shape})
    >>> y = pool(x)
    >>> y.shape
    {shape[:2] + (4,) * rank}
    >>> pool.backward(np.ones_like(y)).shape == x.shape
    True
    """


class FractionalMaxPool2d(_FractionalMaxPoolNd):
    __doc__ = _layer_doc(2)
    _rank = 2


class FractionalMaxPool3d(_FractionalMaxPoolNd):
    __doc__ = _layer_doc(3)
    _rank = 3
