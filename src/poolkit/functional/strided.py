"""Strided pooling: max, average, min, sum and mode, N-d and with fixed-rank names; and ``output_shape``.

Each family is one implementation (:func:`_winners` for the reductions that keep
a winner, :func:`_mean`, :func:`_sum` and :func:`_mode` for the others) from which its N-d
function and its ``1d``/``2d``/``3d`` names are made (:mod:`.fixed`).  The N-d
functions carry the full documentation.  Every function validates its arguments
before any kernel runs (:func:`poolkit.engine.prepare.prepare`) and never writes
to its input.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import numpy as np

from ..core.args import as_bool, is_int
from ..core.geometry import PoolSpec
from ..core.reductions import AVG, MAX, MIN, MODE, SUM, Reduction
from ..core.windows import StridedWindows
from ..engine.prepare import Prepared, prepare, split_masked
from .common import pool, rank_of
from .fixed import fixed_docs, fixed_ranks, nd_function

__all__ = [
    "max_pool", "max_pool1d", "max_pool2d", "max_pool3d",
    "avg_pool", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "min_pool", "min_pool1d", "min_pool2d", "min_pool3d",
    "sum_pool", "sum_pool1d", "sum_pool2d", "sum_pool3d",
    "mode_pool", "mode_pool1d", "mode_pool2d", "mode_pool3d",
    "output_shape",
]


def strided(reduction: Reduction, rank: int, pytorch_name: bool, x, kernel_size, stride, padding, dilation,
            ceil_mode, *, data_format, axes, backend, nan_policy="propagate", count_include_pad=True,
            divisor_override=None) -> Prepared:
    """The prepared strided call of ``reduction`` on ``x`` (an array or a Dask array)."""
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    return prepare(reduction, x, rank, StridedWindows(spec, reduction, pytorch_name), data_format=data_format,
                   axes=axes, backend=backend, nan_policy=nan_policy, count_include_pad=count_include_pad,
                   divisor_override=divisor_override)


def _winners(reduction, rank, pytorch_name, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
             return_indices=False, *, axes=None, data_format="channels_first", nan_policy="propagate", mask=None,
             backend="auto"):
    """Max or min pooling (``reduction``); ``rank`` None: the N-d function's rule (:func:`.common.rank_of`)."""
    rank = rank or rank_of(np.ndim(x), kernel_size, axes, data_format)
    ri = as_bool(return_indices, "return_indices")
    x, mask, masked = split_masked(x, mask)
    p = strided(reduction, rank, pytorch_name, x, kernel_size, stride, padding, dilation, ceil_mode,
                data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy)
    y, idx, _ = pool(p, x, mask, masked, ri, keep=False)
    return (y, idx) if ri else y


def _mean(rank, pytorch_name, x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
          divisor_override=None, *, dilation=1, axes=None, data_format="channels_first", nan_policy="propagate",
          mask=None, backend="auto"):
    """Average pooling (PyTorch's argument order)."""
    rank = rank or rank_of(np.ndim(x), kernel_size, axes, data_format)
    x, mask, masked = split_masked(x, mask)
    p = strided(AVG, rank, pytorch_name, x, kernel_size, stride, padding, dilation, ceil_mode,
                data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy,
                count_include_pad=count_include_pad, divisor_override=divisor_override)
    return pool(p, x, mask, masked, False, keep=False)[0]


def _sum(rank, pytorch_name, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, axes=None,
         data_format="channels_first", nan_policy="propagate", mask=None, backend="auto"):
    """Sum pooling (max pooling's argument order, no indices)."""
    rank = rank or rank_of(np.ndim(x), kernel_size, axes, data_format)
    x, mask, masked = split_masked(x, mask)
    p = strided(SUM, rank, pytorch_name, x, kernel_size, stride, padding, dilation, ceil_mode,
                data_format=data_format, axes=axes, backend=backend, nan_policy=nan_policy)
    return pool(p, x, mask, masked, False, keep=False)[0]


def _mode(rank, pytorch_name, x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *, axes=None,
          data_format="channels_first", mask=None, backend="auto"):
    """Mode pooling (sum pooling's argument order, no ``nan_policy``: labels are integers)."""
    rank = rank or rank_of(np.ndim(x), kernel_size, axes, data_format)
    x, mask, masked = split_masked(x, mask)
    p = strided(MODE, rank, pytorch_name, x, kernel_size, stride, padding, dilation, ceil_mode,
                data_format=data_format, axes=axes, backend=backend)
    return pool(p, x, mask, masked, False, keep=False)[0]


_MAX_DOC = r"""Max pooling over 1, 2 or 3 axes of an array.

    Each output is the maximum of a window of ``kernel_size`` input elements,
    taken every ``stride`` elements, with taps ``dilation`` apart, over the input
    padded by ``padding`` (padding never wins: it acts as :math:`-\infty`).

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        Input; ``*S`` are the pooled (spatial) axes. With
        ``data_format="channels_last"``: (N, *S, C) or (*S, C). With ``axes``:
        any shape, pooled over ``axes``. Any dtype of float16, float32,
        float64, bfloat16 (``ml_dtypes``), integer or bool; never modified.
    kernel_size : int or tuple of ints
        Window size per pooled axis.
    stride : int or tuple of ints, optional
        Step between windows. Default: ``kernel_size``.
    padding : int, tuple, tuple of (before, after) pairs, "valid" or "same"
        Implicit padding. An int or tuple of ints pads both sides and, as in
        PyTorch, must be at most half the kernel. Per-side pairs such as
        ``((0, 1), (1, 1))`` take any non-negative sizes. ``"same"`` follows
        TensorFlow: ``out = ceil(in / stride)``, the odd pixel of padding after.
    dilation : int or tuple of ints
        Spacing between the taps of a window.
    ceil_mode : bool
        Round the output size up instead of down; the extra window must start
        inside the input or its left padding.
    return_indices : bool
        Also return, for each output, the flat index of the winning element
        within its input plane (``int64``; PyTorch's ``return_indices``), -1
        for a window with no element inside the input.
    axes : int or tuple of ints, optional
        Pool over these axes (in this order) instead of those given by
        ``data_format``; all other axes are batch axes.
    data_format : {"channels_first", "channels_last"}
        Where the channel axis is (also "NCHW"/"NHWC" and friends, which fix
        the rank).
    nan_policy : {"propagate", "ignore"}
        "propagate" (PyTorch's behaviour): a window holding NaN gives NaN and
        its index points at the window's last NaN. "ignore": NaN elements are
        skipped (like ``np.nanmax``); a window of NaN only gives NaN and index -1.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out of their windows (a
        window with none left gives NaN, integers the minimum, and index -1).
        An ``np.ma.MaskedArray`` input is honoured the same way and gives a
        masked result.
    backend : {"auto", "numba", "img2col", "reference"}
        Implementation; all give identical results. "auto" is "numba".

    Returns
    -------
    out : ndarray, shape (N, C, *O)
        Same dtype as ``x``. Along each pooled axis
        ``O = floor((S + pad_before + pad_after - dilation*(kernel_size-1) - 1) / stride) + 1``
        (rounded up with ``ceil_mode``).
    indices : ndarray of int64, shape (N, C, *O)
        Only if ``return_indices``.

    Notes
    -----
    Ties go to the first maximum in scan order (row-major over the window); a
    NaN wins over any number, so a NaN window reports NaN with the index of its
    last NaN -- both exactly as PyTorch's CPU kernels. A window that lies wholly
    in padding gives ``-inf`` (integer input: the dtype's minimum) and index -1.
    Integer inputs are pooled exactly. float16 and bfloat16 are computed in
    float32 and returned in their own dtype.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]])
    >>> poolkit.max_pool(x, 2, axes=(0, 1))
    array([[4., 5.],
           [3., 4.]])
    >>> y, idx = poolkit.max_pool(x, 2, return_indices=True, axes=(0, 1))
    >>> idx
    array([[ 4,  7],
           [ 8, 15]])
    """

_MIN_DOC = r"""Min pooling over 1, 2 or 3 axes of an array: :func:`poolkit.max_pool` with the order reversed.

    Each output is the minimum of its window. Padding never wins (it acts as
    :math:`+\infty`); ties go to the first minimum in scan order; a NaN wins
    (the window's last NaN), as in max pooling. Integers and bool are exact (bool
    min pooling is erosion of a mask). A window wholly in padding gives ``+inf``
    (integers: the dtype's maximum) and index -1.

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        Any real dtype: floats, integers or bool.
    kernel_size, stride, padding, dilation, ceil_mode, return_indices, axes, data_format, nan_policy, backend
        As for :func:`poolkit.max_pool`.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out of their windows (a
        window with none left gives NaN, integers the maximum, and index -1).
        An ``np.ma.MaskedArray`` input is honoured the same way and gives a masked result.

    Returns
    -------
    out : ndarray, shape (N, C, *O), dtype of ``x``
    indices : ndarray of int64, shape (N, C, *O)
        Only if ``return_indices``: flat positions in each input plane, for
        :func:`min_pool_backward` and :func:`poolkit.max_unpool2d`.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.min_pool(np.array([True, True, False, True]), 2, stride=1, axes=0)      # erosion
    array([ True, False, False])
    >>> x = np.array([[5., 3, 2, 7], [4, 6, 1, 5], [3, 1, 8, 0], [9, 2, 2, 4]])
    >>> poolkit.min_pool(x, 2, axes=(0, 1))
    array([[3., 1.],
           [1., 0.]])
    """

_AVG_DOC = """Average pooling over 1, 2 or 3 axes of an array.

    Each output is the sum of a window's elements divided by the window size.
    Padding adds zeros.

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        Input, as for :func:`max_pool`: float16, float32, float64 or bfloat16.
        Integer input raises TypeError (cast it first: the mean of integers is
        not an integer).
    kernel_size, stride, padding, ceil_mode, axes, data_format, backend
        As for :func:`max_pool`.
    count_include_pad : bool
        Divide by the number of taps inside the padded input (True, PyTorch's
        default) or inside the input only (False, Keras/TensorFlow's rule).
    divisor_override : int, optional
        Divide every sum by this non-zero number instead.
    dilation : int or tuple of ints
        Spacing between the taps of a window; with ``count_include_pad`` the
        dilated taps in the padding are counted (ONNX's rule).
    nan_policy : {"propagate", "ignore"}
        "ignore" leaves NaN elements out of the sum and the count (like
        ``np.nanmean``); a window of NaN only gives NaN and passes back no gradient.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out of the sum and the
        count (a window with none left gives NaN). ``np.ma.MaskedArray`` input
        is honoured the same way and gives a masked result.

    Returns
    -------
    out : ndarray, shape (N, C, *O)
        Same dtype as ``x``; ``O`` as for :func:`max_pool`.

    Notes
    -----
    Divisor of the window at output ``o`` along an axis: taps inside
    ``[-pad_before, S + pad_after)`` with ``count_include_pad``, else taps inside
    ``[0, S)``; the product over the axes. A ``ceil_mode`` window that runs past
    the right padding counts only up to it (as PyTorch does). A window wholly in
    padding gives 0. Sums run in the input's precision (float32 for float16 and
    bfloat16), in scan order.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[1., 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]])
    >>> poolkit.avg_pool(x, 2, axes=(0, 1))
    array([[2.5 , 2.25],
           [1.75, 1.75]])
    """

_SUM_DOC = """Sum pooling over 1, 2 or 3 axes: the sum of each window's elements inside the input.

    Padding adds 0. Integers and bool are summed exactly in int64 (and returned
    as int64); floats are summed in their own dtype (float16 and bfloat16 in
    float32), in scan order. With ``nan_policy="ignore"`` or ``mask`` the left-out
    elements add nothing; a window with none left sums to 0 (as ``np.nansum``).

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
    kernel_size, stride, padding, dilation, ceil_mode, axes, data_format, nan_policy, backend
        As for :func:`poolkit.max_pool`.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out. ``np.ma.MaskedArray``
        input is honoured the same way (the result is masked where no element is left).

    Returns
    -------
    out : ndarray, shape (N, C, *O)

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.sum_pool(np.arange(8, dtype=np.uint8).reshape(2, 4), 2, axes=(0, 1))
    array([[10, 18]])
    """


_MODE_DOC = """Mode pooling over 1, 2 or 3 axes: the most frequent value of each window (label images).

    No framework has it; GIS tools call its stride-1 form a majority filter. Each
    output is the value that occurs most often among the window's elements inside
    the input, ties to the smallest value (in the dtype's order: -3 before 2, False
    before True). Padding takes no part (it only moves windows); a window with no
    element in it -- wholly in padding, or every element masked -- gives the dtype's
    minimum (0 for unsigned integers, False for bool), as integer max pooling does.
    Labels are never mixed: the result is always one of the window's own values.

    Parameters
    ----------
    x : array_like, shape (N, C, *S) or (C, *S)
        bool or integers of up to 64 bits (floats raise TypeError: pool
        intensities with :func:`avg_pool` or :func:`max_pool`).
    kernel_size, stride, padding, dilation, ceil_mode, axes, data_format, backend
        As for :func:`poolkit.max_pool`.
    mask : array_like of bool, optional
        Broadcastable to ``x``; False elements are left out of their windows.
        ``np.ma.MaskedArray`` input is honoured the same way (the result is masked
        where no element is left).

    Returns
    -------
    out : ndarray, shape (N, C, *O), dtype of ``x``
        ``O`` as for :func:`max_pool`.

    Notes
    -----
    Mode pooling has no gradient; its layers (``ModePool2d``, ...) refuse backward.
    With ``kernel_size == stride`` it is one level of :func:`poolkit.pyramid`'s
    ``method="mode"`` (whose kernels share this rule).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> labels = np.array([[1, 1, 2, 2], [3, 1, 2, 5], [4, 4, 0, 0], [4, 7, 0, 9]], dtype=np.uint8)
    >>> poolkit.mode_pool(labels, 2, axes=(0, 1))
    array([[1, 2],
           [4, 0]], dtype=uint8)
    >>> poolkit.mode_pool(np.array([3, 1, 3, 2, 2, 1]), 3, stride=1, padding=1, axes=0)   # a majority filter
    array([1, 3, 1, 2, 2, 1])
    """


def _doc(what: str, nd: str, result: Callable[[int], str], note: Callable[[int], str] = lambda rank: ""):
    """The fixed-rank docstrings of a family: its example pools ``arange(2**rank)`` with a kernel of 2."""
    return fixed_docs(what, nd, f"poolkit.{nd}{{rank}}d(np.arange({{n}}.).reshape({{ones}}), 2).ravel()", result,
                      note)


def _avg_note(rank: int) -> str:
    if rank == 1:
        return "\n\n    PyTorch's ``avg_pool1d`` has no ``divisor_override``; neither does this one."
    if rank == 3:
        return ("\n\n    As PyTorch's ``avg_pool3d``, an input smaller than the kernel is refused even when\n"
                "    padded (per-side padding pairs, or :func:`poolkit.avg_pool`, lift the rule).")
    return ""


_max = functools.partial(_winners, MAX)
_min = functools.partial(_winners, MIN)
max_pool: Any = nd_function(_max, "max_pool", _MAX_DOC, module=__name__)
min_pool: Any = nd_function(_min, "min_pool", _MIN_DOC, module=__name__)
avg_pool: Any = nd_function(_mean, "avg_pool", _AVG_DOC, module=__name__)
sum_pool: Any = nd_function(_sum, "sum_pool", _SUM_DOC, module=__name__)
mode_pool: Any = nd_function(_mode, "mode_pool", _MODE_DOC, module=__name__)
max_pool1d, max_pool2d, max_pool3d = fixed_ranks(
    _max, "max_pool{rank}d", _doc("max pooling", "max_pool", lambda r: f"array([{2 ** r - 1}.])"), bound=(True,),
    module=__name__)
min_pool1d, min_pool2d, min_pool3d = fixed_ranks(
    _min, "min_pool{rank}d", _doc("min pooling", "min_pool", lambda r: "array([0.])"), bound=(True,),
    module=__name__)
avg_pool1d, avg_pool2d, avg_pool3d = fixed_ranks(
    _mean, "avg_pool{rank}d", _doc("average pooling", "avg_pool", lambda r: f"array([{(2 ** r - 1) / 2}])",
                                   _avg_note),
    bound=(True,), drop=lambda r: ("divisor_override",) if r == 1 else (), module=__name__)
sum_pool1d, sum_pool2d, sum_pool3d = fixed_ranks(
    _sum, "sum_pool{rank}d", _doc("sum pooling", "sum_pool", lambda r: f"array([{2 ** r * (2 ** r - 1) // 2}.])"),
    bound=(True,), module=__name__)
mode_pool1d, mode_pool2d, mode_pool3d = fixed_ranks(
    _mode, "mode_pool{rank}d",
    fixed_docs("mode pooling", "mode_pool", "poolkit.mode_pool{rank}d(np.array([1, 2, 2, 2, 3, 3, 3, 3][:{n}])"
               ".reshape({ones}), 2).ravel()", lambda r: {1: "array([1])", 2: "array([2])", 3: "array([3])"}[r]),
    bound=(True,), module=__name__)


# --------------------------------------------------------------------------- #
# output size
# --------------------------------------------------------------------------- #
def output_shape(input_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, *,
                 explain=False):
    """Output size of a strided pooling, and on request how it comes out.

    Parameters
    ----------
    input_size : int or tuple of ints
        The pooled (spatial) sizes, e.g. ``(28, 28)``.
    kernel_size, stride, padding, dilation, ceil_mode
        As for :func:`max_pool` (``padding`` also "same", "valid" or per-side pairs).
    explain : bool
        Also return a plain-words account, one line or two per axis.

    Returns
    -------
    shape : tuple of ints
    text : str
        Only with ``explain=True``.

    Raises
    ------
    ValueError
        If the configuration is invalid; the message says why (with
        ``explain=True`` as well).

    Examples
    --------
    >>> import poolkit
    >>> poolkit.output_shape((28, 28), 2)
    (14, 14)
    >>> print(poolkit.output_shape(5, 2, ceil_mode=True, explain=True)[1])
    L: input 5, padding 0+0 -> 5 positions; window spans 2.
    L: out = ceil((5 - 2) / 2) + 1 = 3.
    L: ceil_mode added a partial window starting at 4 (it runs past the end; its missing taps count as padding).
    """
    sizes = (input_size,) if isinstance(input_size, (int, np.integer)) else tuple(input_size)
    if not sizes or not all(is_int(n) and n >= 1 for n in sizes):
        raise ValueError(f"`input_size` must be a positive int or a tuple of them, but got {input_size!r}.")
    rank = len(sizes)
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    shape = spec.output_shape(sizes)
    if not explain:
        return shape
    from ..core.shape_text import AXIS, describe_shape      # the words load only when asked for
    return shape, describe_shape(AXIS["en"], spec, sizes)
