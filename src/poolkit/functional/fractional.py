"""Fractional max pooling (Graham, 2014): max pooling over pseudo-randomly placed windows.

PyTorch's ``fractional_max_pool2d``/``3d``, window for window: given the same
samples (PyTorch's ``_random_samples``), results and indices are identical to
PyTorch's.  The windows are :class:`~poolkit.core.windows.FractionalWindows`
(placement rule there); each (batch, channel) plane draws its own.  The
arithmetic runs in the samples' dtype, with its rounding, as PyTorch's kernels
do; pass float32 samples for float32 input to match it.

Gradients go through :func:`poolkit.max_pool_backward` with the forward
indices: the windows need not be known again.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..core.args import as_bool, is_int
from ..core.layout import as_input_array, dtype_policy, is_dask_array
from ..core.reductions import MAX
from ..core.windows import FractionalWindows
from ..engine import lazy
from ..engine.eager import run_fractional
from ..engine.prepare import prepare
from .backward import _max_backward
from .fixed import fields, fixed_ranks

__all__ = [
    "fractional_max_pool2d",
    "fractional_max_pool3d",
    "fractional_max_pool2d_backward",
    "fractional_max_pool3d_backward",
]

Ratios = Union[float, Sequence[float]]
RngLike = Union[None, int, np.random.Generator]
_COLUMN_NAMES = {2: "(W, H)", 3: "(D, H, W)"}


def check_rng(rng) -> np.random.Generator:
    """A NumPy Generator from ``rng``: None (fresh entropy), a non-negative int seed, or a Generator."""
    if rng is None or isinstance(rng, np.random.Generator):
        return np.random.default_rng(rng) if rng is None else rng
    if is_int(rng) and int(rng) >= 0:
        return np.random.default_rng(int(rng))
    raise TypeError(f"`rng` must be None, a non-negative int seed or a numpy.random.Generator, "
                    f"but got rng={rng!r}.")


def sample_dtype(x_dtype: np.dtype) -> np.dtype:
    """The dtype of samples drawn for input of ``x_dtype``: its compute dtype, float64 for integers."""
    compute = dtype_policy(np.dtype(x_dtype), MAX).compute
    return compute if compute.kind == "f" else np.dtype(np.float64)


def _samples_shape(shape: Tuple[int, ...], pooled: Tuple[int, ...], rank: int, axes):
    """``(shape, also, label)`` of the samples of one call: PyTorch's ``(N, C, rank)`` with ``data_format``
    (``(1, C, rank)`` for unbatched input, which also takes ``also = (C, rank)``), and
    ``(every other axis..., rank)`` with ``axes``."""
    planes = tuple(n for a, n in enumerate(shape) if a not in pooled)
    if axes is None:
        also = planes + (rank,) if len(shape) == rank + 1 else None    # unbatched: PyTorch's (1, C, rank)
        return (1,) * (also is not None) + planes + (rank,), also, f"(N, C, {rank})"
    return planes + (rank,), None, f"(the other axes of `x`..., {rank})"


def _check_samples(samples, shape: Tuple[int, ...], also: Optional[Tuple[int, ...]], label: str) -> np.ndarray:
    """``samples`` as a float array of ``shape`` (or of ``also``, reshaped) in [0, 1), or a clear error.

    Stricter than PyTorch, which also takes samples outside [0, 1) and, for unbatched
    input, a larger array whose first rows it uses: either is far more often a mistake
    than a choice, and poolkit says so (README, "Where poolkit differs from PyTorch").
    """
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


def fractional_pool(windows: FractionalWindows, x, samples, rng, data_format, axes, nan_policy, backend):
    """Validate one call and pool. Returns ``(out, indices, samples)``, the samples as the call takes them."""
    x = as_input_array(x, lazy=True)
    p = prepare(MAX, x, windows.rank, windows, data_format=data_format, axes=axes, backend=backend,
                nan_policy=nan_policy)
    shape, also, label = _samples_shape(tuple(x.shape), p.layout.axes, windows.rank, axes)
    if samples is not None:
        u = _check_samples(samples, shape, also, label)
    else:
        u = check_rng(rng).random(shape, dtype=sample_dtype(x.dtype).type)
    if is_dask_array(x):
        # Each plane whole in one chunk (its windows are its own), pooled with its own samples.
        def block(xb, ub, _):
            return fractional_pool(windows, xb, ub, None, data_format, axes, nan_policy, backend)[:2]
        per_plane = u.reshape(also) if also is not None else u              # (non-pooled axes..., rank)
        y, idx = lazy.per_plane(block, (x,), p.layout.axes, p.out_sizes, (x.dtype, np.dtype(np.int64)),
                                side=per_plane)
        return y, idx, u
    # The non-pooled axes before the pooled ones make the canonical B, those after them C (all in B
    # when the pooled axes are moved last): the samples' order either way.
    y, idx = run_fractional(p, x, u.reshape(p.layout.batch, p.layout.channels, windows.rank))
    return y, idx, u


def _fractional(rank, x, kernel_size, output_size=None, output_ratio=None, return_indices=False, *,
                samples=None, rng=None, data_format=None, axes=None, nan_policy="propagate", backend="auto"):
    ri = as_bool(return_indices, "return_indices")
    windows = FractionalWindows.from_args(rank, kernel_size, output_size, output_ratio)
    y, idx, _ = fractional_pool(windows, x, samples, rng, data_format, axes, nan_policy, backend)
    return (y, idx) if ri else y


_DOC = """{rank}-D fractional max pooling over {dims} of (N, C, {dims}) or (C, {dims}).

    Each output is the maximum of a ``kernel_size`` window; the windows of
    each (batch, channel) plane are placed pseudo-randomly by that plane's
    samples, so that ``output_size`` (or ``int(input_size * output_ratio)``)
    outputs cover the input; see :class:`poolkit.core.windows.FractionalWindows`
    for the rule.  As PyTorch's ``fractional_max_pool{rank}d``: with the same
    samples, the same values and indices.

    Parameters
    ----------
    x : array_like, shape (N, C, {dims}) or (C, {dims})
        ``data_format="{last}"``: (N, {dims}, C) or ({dims}, C). Float16,
        float32, float64, bfloat16, integer or bool; never modified.
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
        {columns}. Unbatched input: (1, C, {rank}) or (C, {rank}), exactly
        (PyTorch also takes a larger array and uses its first rows, and
        numbers outside [0, 1); poolkit refuses both). With ``axes``: (every
        other axis of ``x``, in order..., {rank}), the columns in the same
        order over the pooled axes as given (so ``axes={axes_first}`` is
        ``data_format="{first}"``). The window arithmetic runs in their dtype
        (PyTorch uses the input's). Default: drawn from ``rng``.
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
    out : ndarray, shape (N, C, *output_size)
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
    >>> x = np.arange({size}.).reshape({shape})
    >>> y, idx = poolkit.fractional_max_pool{rank}d(x, 2, output_size={osize}, return_indices=True,
    ...                                        samples=np.full((1, 1, {rank}), 0.5))
    >>> {show}
    {y}
    >>> poolkit.fractional_max_pool{rank}d(x, 2, output_ratio=0.5, rng=0).shape
    {ratio_shape}
    """


def _doc(rank: int) -> str:
    if rank == 2:
        extra = dict(size=25, shape="1, 1, 5, 5", osize=3, ratio_shape="(1, 1, 2, 2)", show="y[0, 0]",
                     y="array([[ 6.,  8.,  9.],\n           [16., 18., 19.],\n           [21., 23., 24.]])")
    else:
        extra = dict(size=27, shape="1, 1, 3, 3, 3", osize=2, ratio_shape="(1, 1, 1, 1, 1)", show="y.ravel()",
                     y="array([13., 14., 16., 17., 22., 23., 25., 26.])")
    return _DOC.format(columns=_COLUMN_NAMES[rank], axes_first=tuple(range(2, rank + 2)), **fields(rank), **extra)


_BACKWARD_DOC = """Gradient of :func:`fractional_max_pool{rank}d` from its indices.

    Each upstream value goes to the input element that won its window;
    elements that won several windows sum their values (in output order).
    This is :func:`poolkit.max_pool{rank}d_backward`: the indices say everything.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, {outs}) or (C, {outs})
        Gradient with respect to the pooled output; floating point.
    indices : array_like of int, same shape
        From the forward call with ``return_indices=True``.
    input_shape : tuple of ints
        Shape of the forward input.
    data_format, axes, backend
        As in the forward call.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``
        The upstream values summed at their windows' winners, in ``grad_output``'s dtype.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.arange({size}.).reshape({ones4})
    >>> y, idx = poolkit.fractional_max_pool{rank}d(x, 2, output_size=2, return_indices=True, rng=0)
    >>> g = poolkit.fractional_max_pool{rank}d_backward(np.ones_like(y), idx, x.shape)
    >>> g.shape == x.shape and float(g.sum()) == y.size
    True
    """


def _backward_doc(rank: int) -> str:
    outs = ", ".join("O" + d for d in fields(rank)["dims"].split(", "))
    return _BACKWARD_DOC.format(outs=outs, size=4 ** rank, ones4=(1, 1) + (4,) * rank, **fields(rank))


fractional_max_pool2d, fractional_max_pool3d = fixed_ranks(_fractional, "fractional_max_pool{rank}d", _doc,
                                                           ranks=(2, 3), module=__name__)
fractional_max_pool2d_backward, fractional_max_pool3d_backward = fixed_ranks(
    _max_backward, "fractional_max_pool{rank}d_backward", _backward_doc, ranks=(2, 3), module=__name__)
