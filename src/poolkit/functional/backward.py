"""Backward functions of the strided and adaptive families: max, min, average, sum, adaptive average.

Max and min pooling's gradients go back through the forward call's indices (a
scatter, :func:`.unpool.index_scatter`); average and sum pooling's are
recomputed from the windows, which the arguments fix (rerunning forward only
when elements were left out, whose divisors depend on which).  Every function
takes unbatched input as its forward does: the fixed-rank names fix the rank,
and the N-d ones read it from ``axes`` or a rank-specific ``data_format``
("NCHW", ...), else from ``input_shape``'s length less batch and channels.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..core.args import check_input_shape, check_nan_policy
from ..core.geometry import PoolSpec
from ..core.layout import as_input_array, resolve_axes
from ..core.reductions import AVG, SUM
from ..core.windows import AdaptiveWindows, StridedWindows
from ..engine.eager import Context, run_backward, run_forward
from ..engine.prepare import check_float_grad, check_mask, prepare
from .common import rank_of
from .fixed import fixed_docs, fixed_ranks, nd_function
from .unpool import index_scatter

__all__ = [
    "max_pool_backward", "max_pool1d_backward", "max_pool2d_backward", "max_pool3d_backward",
    "min_pool_backward",
    "avg_pool_backward", "avg_pool1d_backward", "avg_pool2d_backward", "avg_pool3d_backward",
    "sum_pool_backward",
    "adaptive_avg_pool_backward", "adaptive_avg_pool1d_backward", "adaptive_avg_pool2d_backward",
    "adaptive_avg_pool3d_backward",
]


def _max_backward(rank, grad_output, indices, input_shape, *, axes=None, data_format="channels_first",
                  backend="auto"):
    shape = check_input_shape(input_shape)
    rank = rank or rank_of(len(shape), None, axes, data_format)
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    return index_scatter(rank, g, indices, shape, data_format=data_format, axes=axes, backend=backend,
                         accumulate=True, values_name="grad_output")


def mean_backward(reduction, rank, grad_output, shape, windows, count_include_pad=True, divisor_override=None, *,
                  data_format, axes, backend, nan_policy="propagate", x=None, mask=None):
    """The gradient of an average (``reduction`` AVG) or sum (SUM) pooling whose windows are ``windows``."""
    g = check_float_grad(as_input_array(grad_output, "grad_output"))
    if check_nan_policy(nan_policy):
        # Which elements were NaN decides who gets a share: the forward input is needed.
        if x is None:
            raise ValueError("nan_policy='ignore' needs the forward input: pass it as `x=`.")
        x = as_input_array(x)
        if tuple(x.shape) != shape:
            raise ValueError(f"`x` must have shape `input_shape`={shape}, but got shape {tuple(x.shape)}.")
    else:
        # Prepare against a stand-in of the input's shape and the gradient's dtype: no data is read.
        x = np.lib.stride_tricks.as_strided(np.zeros(1, g.dtype), shape=shape, strides=(0,) * len(shape))
    p = prepare(reduction, x, rank, windows, data_format=data_format, axes=axes, backend=backend,
                nan_policy=nan_policy, count_include_pad=count_include_pad, divisor_override=divisor_override)
    if mask is None and not p.plan.nan_ignore:
        return run_backward(Context(p, None), g)
    # The divisors depend on which elements were left out: rerun forward (on the stand-in if only a mask).
    m = None if mask is None else check_mask(mask, shape)
    return run_backward(run_forward(p, x, mask=m)[2], g)


def _avg_backward(rank, pytorch_name, grad_output, input_shape, kernel_size, stride=None, padding=0,
                  ceil_mode=False, count_include_pad=True, divisor_override=None, *, dilation=1, axes=None,
                  data_format="channels_first", nan_policy="propagate", x=None, mask=None, backend="auto"):
    shape = check_input_shape(input_shape)
    rank = rank or rank_of(len(shape), kernel_size, axes, data_format)
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    return mean_backward(AVG, rank, grad_output, shape, StridedWindows(spec, AVG, pytorch_name),
                         count_include_pad, divisor_override, data_format=data_format, axes=axes, backend=backend,
                         nan_policy=nan_policy, x=x, mask=mask)


def _sum_backward(rank, grad_output, input_shape, kernel_size, stride=None, padding=0, dilation=1,
                  ceil_mode=False, *, axes=None, data_format="channels_first", nan_policy="propagate", x=None,
                  mask=None, backend="auto"):
    shape = check_input_shape(input_shape)
    rank = rank or rank_of(len(shape), kernel_size, axes, data_format)
    spec = PoolSpec.from_args(rank, kernel_size, stride, padding, dilation, ceil_mode)
    return mean_backward(SUM, rank, grad_output, shape, StridedWindows(spec, SUM, False), data_format=data_format,
                         axes=axes, backend=backend, nan_policy=nan_policy, x=x, mask=mask)


def _adaptive_avg_backward(rank, grad_output, input_shape, *, axes=None, data_format="channels_first",
                           nan_policy="propagate", x=None, backend="auto"):
    shape = check_input_shape(input_shape)
    g = as_input_array(grad_output, "grad_output")
    rank = rank or rank_of(len(shape), None, axes, data_format)
    pooled, _ = resolve_axes(shape, rank, data_format, axes, name="input_shape")
    if g.ndim != len(shape):
        raise ValueError(f"`grad_output` must have {len(shape)} dimensions like `input_shape`, got shape {g.shape}.")
    out_size = tuple(g.shape[a] for a in pooled)
    return mean_backward(AVG, rank, g, shape, AdaptiveWindows(out_size), data_format=data_format, axes=axes,
                         backend=backend, nan_policy=nan_policy, x=x)


_MAX_BACKWARD_DOC = """Gradient of max pooling with respect to its input, from the forward pass's indices.

    Every upstream value goes to the input element that won its window;
    elements reached by several windows sum their values (in output order).
    The indices say everything, so this is also the gradient of adaptive,
    global and fractional max pooling.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *O)
        Gradient with respect to the pooled output; floating point.
    indices : array_like of int, shape (N, C, *O)
        From the forward call with ``return_indices=True`` (-1: no winner).
    input_shape : tuple of ints
        Shape of the forward input, e.g. ``x.shape``; unbatched ``(C, *S)`` with
        ``axes`` or a rank-specific ``data_format`` ("NCHW"), or through the
        fixed-rank functions (``max_pool2d_backward``).
    axes, data_format, backend
        As in the forward call.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``
        Same dtype as ``grad_output``.

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[[[1., 3], [4, 2]]]])
    >>> y, idx = poolkit.max_pool2d(x, 2, return_indices=True)
    >>> poolkit.max_pool_backward(np.ones_like(y), idx, x.shape)
    array([[[[0., 0.],
             [1., 0.]]]])
    """

_MIN_BACKWARD_DOC = """Gradient of min pooling: each upstream value goes to its window's minimum (``indices``).

    The same scatter as :func:`poolkit.max_pool_backward` (min pooling records
    its winners the same way).

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> x = np.array([[[3., 1, 2, 5]]])
    >>> y, idx = poolkit.min_pool1d(x, 2, return_indices=True)
    >>> poolkit.min_pool_backward(np.ones_like(y), idx, x.shape)
    array([[[0., 1., 1., 0.]]])
    """

_AVG_BACKWARD_DOC = """Gradient of average pooling with respect to its input.

    Each upstream value is divided by its window's divisor and added to every
    element of the window inside the input. Arguments after ``input_shape``
    must be those of the forward call.

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *O)
    input_shape : tuple of ints
        Shape of the forward input.
    nan_policy : {"propagate", "ignore"}
        As in the forward call. "ignore" needs the forward input ``x``: its NaN
        elements get no gradient and shrink their windows' divisors.
    x : array_like, optional
        The forward input (only read with ``nan_policy="ignore"``).
    mask : array_like of bool, optional
        The forward call's mask: masked elements get no gradient and shrink their
        windows' divisors.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``, dtype of ``grad_output``

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.avg_pool_backward(np.array([[[[1., 2], [3, 4]]]]), (1, 1, 4, 4), 2)[0, 0]
    array([[0.25, 0.25, 0.5 , 0.5 ],
           [0.25, 0.25, 0.5 , 0.5 ],
           [0.75, 0.75, 1.  , 1.  ],
           [0.75, 0.75, 1.  , 1.  ]])
    """

_SUM_BACKWARD_DOC = """Gradient of :func:`sum_pool`: each upstream value is added to every element of its window.

    Arguments after ``input_shape`` must be those of the forward call. Elements
    left out (NaN with ``nan_policy="ignore"``, which needs the forward input
    ``x``; False in ``mask``) get nothing.

    Returns
    -------
    grad_input : ndarray, shape ``input_shape``, dtype of ``grad_output`` (floating point)

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.sum_pool_backward(np.array([[[1., 2, 3]]]), (1, 1, 5), 2, stride=2, padding=1)
    array([[[1., 2., 2., 3., 3.]]])
    """

_ADAPTIVE_BACKWARD_DOC = """Gradient of adaptive average pooling; the output size is read off ``grad_output``.

    (Adaptive max pooling's gradient is :func:`max_pool_backward` with the
    forward call's indices.)  For unbatched ``input_shape`` (``(C, *S)``) pass
    ``axes``, a rank-specific ``data_format`` ("NCHW", ...), or use the fixed-rank
    functions (``adaptive_avg_pool2d_backward``).

    Parameters
    ----------
    grad_output : array_like, shape (N, C, *O)
        Gradient with respect to the pooled output; floating point.
    input_shape : tuple of ints
        Shape of the forward input.
    axes, data_format, nan_policy, backend
        As in the forward call; ``nan_policy="ignore"`` needs the forward input ``x``.

    Returns
    -------
    grad_input : ndarray of ``input_shape`` and ``grad_output``'s dtype: each window's value shared out

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> poolkit.adaptive_avg_pool_backward(np.ones((1, 1, 1)), (1, 1, 4))
    array([[[0.25, 0.25, 0.25, 0.25]]])
    """


def _spread(rank: int) -> str:
    """The printed gradient of one upstream 1 averaged over ``2**rank`` elements (worked out by hand)."""
    n = 2 ** rank
    return f"array([{', '.join([str(1 / n)] * n)}])"


def _one_hot(rank: int) -> str:
    n = 2 ** rank
    return f"array([{', '.join(['1.'] + ['0.'] * (n - 1))}])"


_ONE = "np.ones({unit})"
max_pool_backward: Any = nd_function(_max_backward, "max_pool_backward", _MAX_BACKWARD_DOC, bound=(None,),
                                     module=__name__)
min_pool_backward: Any = nd_function(_max_backward, "min_pool_backward", _MIN_BACKWARD_DOC, bound=(None,),
                                     module=__name__)
avg_pool_backward: Any = nd_function(_avg_backward, "avg_pool_backward", _AVG_BACKWARD_DOC, module=__name__)
sum_pool_backward: Any = nd_function(_sum_backward, "sum_pool_backward", _SUM_BACKWARD_DOC, bound=(None,),
                                     module=__name__)
adaptive_avg_pool_backward: Any = nd_function(_adaptive_avg_backward, "adaptive_avg_pool_backward",
                                              _ADAPTIVE_BACKWARD_DOC, bound=(None,), module=__name__)
max_pool1d_backward, max_pool2d_backward, max_pool3d_backward = fixed_ranks(
    _max_backward, "max_pool{rank}d_backward",
    fixed_docs("max pooling's gradient (also adaptive and fractional max pooling's)", "max_pool_backward",
               "poolkit.max_pool{rank}d_backward(" + _ONE + ", np.zeros({unit}, np.int64), "
               "{ones}).ravel()", _one_hot),
    module=__name__)
avg_pool1d_backward, avg_pool2d_backward, avg_pool3d_backward = fixed_ranks(
    _avg_backward, "avg_pool{rank}d_backward",
    fixed_docs("average pooling's gradient", "avg_pool_backward",
               "poolkit.avg_pool{rank}d_backward(" + _ONE + ", {ones}, 2).ravel()", _spread),
    bound=(True,), drop=lambda r: ("divisor_override",) if r == 1 else (), module=__name__)
adaptive_avg_pool1d_backward, adaptive_avg_pool2d_backward, adaptive_avg_pool3d_backward = fixed_ranks(
    _adaptive_avg_backward, "adaptive_avg_pool{rank}d_backward",
    fixed_docs("adaptive average pooling's gradient", "adaptive_avg_pool_backward",
               "poolkit.adaptive_avg_pool{rank}d_backward(" + _ONE + ", {ones}).ravel()", _spread),
    module=__name__)
