"""One test per error path: the exception type, and a message that names the argument and echoes the value.

Each row of :data:`ERRORS` is one mistake a user can make.  The message must
contain every listed fragment -- the argument's name and the bad value as the
user wrote it -- so that the user can find the mistake without reading our code.
A last group checks that a failed call leaves nothing half-done.
"""
from __future__ import annotations

import numpy as np
import pytest

import poolkit

X1 = np.zeros((1, 2, 6))
X2 = np.zeros((1, 2, 6, 6))
X3 = np.zeros((1, 2, 4, 4, 4))
X4 = np.zeros((1, 1, 4, 4))


def _trained(cls, *args, **kw):
    layer = cls(*args, **kw)
    layer(X2)
    return layer


def _indices():
    return poolkit.max_pool2d(X2, 2, return_indices=True)


def _max_bwd(indices, grad=None):
    g = np.ones(np.shape(indices)) if grad is None else grad
    return poolkit.max_pool2d_backward(g, indices, X2.shape)


def _unpool(indices=None, output_size=None, values=None):
    y, idx = _indices()
    return poolkit.max_unpool2d(y if values is None else values, idx if indices is None else indices, 2,
                                output_size=output_size)


# (id, call, exception type, fragments the message must contain)
ERRORS = [
    # wrong number of dimensions
    ("ndim-2d", lambda: poolkit.max_pool2d(np.zeros((4, 4)), 2), ValueError, ["`x`", "(4, 4)", "4 dimensions"]),
    ("ndim-1d", lambda: poolkit.avg_pool1d(X2, 2), ValueError, ["`x`", "(1, 2, 6, 6)"]),
    ("ndim-3d", lambda: poolkit.max_pool3d(X1, 2), ValueError, ["`x`", "(1, 2, 6)", "5 dimensions"]),
    ("ndim-adaptive", lambda: poolkit.adaptive_avg_pool2d(np.zeros(5), 2), ValueError, ["`x`", "(5,)"]),
    ("ndim-layer", lambda: poolkit.MaxPool2d(2)(np.zeros((2, 3, 4, 5, 6))), ValueError, ["(2, 3, 4, 5, 6)"]),
    ("ndim-global", lambda: poolkit.global_max_pool(np.zeros((3, 4))), ValueError, ["2 dimensions", "axes"]),
    ("empty-spatial", lambda: poolkit.max_pool2d(np.zeros((1, 2, 0, 4)), 2), ValueError, ["(1, 2, 0, 4)"]),
    # kernel_size, stride, dilation: zero, negative, wrong length, not an int
    ("kernel-0", lambda: poolkit.max_pool2d(X2, 0), ValueError, ["`kernel_size`", "kernel_size=0", "positive"]),
    ("kernel-neg", lambda: poolkit.avg_pool2d(X2, (2, -1)), ValueError, ["kernel_size=(2, -1)"]),
    ("kernel-len", lambda: poolkit.max_pool2d(X2, (2, 2, 2)), ValueError, ["kernel_size=(2, 2, 2)", "3 values"]),
    ("kernel-float", lambda: poolkit.max_pool2d(X2, 2.0), TypeError, ["`kernel_size`", "kernel_size=2.0"]),
    ("kernel-bool", lambda: poolkit.max_pool1d(X1, True), TypeError, ["kernel_size=True"]),
    ("kernel-str", lambda: poolkit.avg_pool3d(X3, "2"), TypeError, ["kernel_size='2'"]),
    ("kernel-float-in-tuple", lambda: poolkit.max_pool2d(X2, (2, 1.5)), TypeError, ["kernel_size=(2, 1.5)"]),
    ("stride-0", lambda: poolkit.max_pool2d(X2, 2, 0), ValueError, ["`stride`", "stride=0"]),
    ("stride-neg", lambda: poolkit.avg_pool1d(X1, 2, -1), ValueError, ["stride=-1"]),
    ("stride-float", lambda: poolkit.max_pool3d(X3, 2, 1.0), TypeError, ["stride=1.0"]),
    ("stride-bool", lambda: poolkit.avg_pool2d(X2, 2, False), TypeError, ["stride=False"]),
    ("stride-str", lambda: poolkit.max_pool2d(X2, 2, "1"), TypeError, ["stride='1'"]),
    ("dilation-0", lambda: poolkit.max_pool2d(X2, 2, dilation=0), ValueError, ["`dilation`", "dilation=0"]),
    ("dilation-neg", lambda: poolkit.max_pool1d(X1, 2, dilation=(-2,)), ValueError, ["dilation=(-2,)"]),
    ("dilation-float", lambda: poolkit.max_pool2d(X2, 2, dilation=1.5), TypeError, ["dilation=1.5"]),
    ("dilation-bool", lambda: poolkit.max_pool2d(X2, 2, dilation=True), TypeError, ["dilation=True"]),
    ("dilation-str", lambda: poolkit.max_pool3d(X3, 2, dilation="2"), TypeError, ["dilation='2'"]),
    # padding
    ("padding-neg", lambda: poolkit.max_pool2d(X2, 2, padding=-1), ValueError, ["`padding`", "padding=-1"]),
    ("padding-over-half", lambda: poolkit.max_pool2d(X2, 3, padding=2), ValueError,
     ["`padding`", "padding=2", "kernel_size=(3, 3)", "half"]),
    ("padding-over-half-tuple", lambda: poolkit.avg_pool2d(X2, (2, 4), padding=(1, 3)), ValueError,
     ["padding=(1, 3)"]),
    ("padding-float", lambda: poolkit.max_pool1d(X1, 2, padding=0.5), TypeError, ["padding=0.5"]),
    # window longer than the padded input
    ("window-too-big", lambda: poolkit.max_pool2d(np.zeros((1, 1, 2, 5)), 3), ValueError,
     ["kernel_size=3", "along H", "2"]),
    ("window-too-big-dilated", lambda: poolkit.max_pool1d(X1, 3, dilation=3), ValueError,
     ["dilation=3", "spans 7", "6"]),
    ("avg3d-input-smaller-than-kernel", lambda: poolkit.avg_pool3d(np.zeros((1, 1, 4, 4, 1)), 2, padding=1),
     ValueError, ["avg_pool3d", "W=1", "kernel_size"]),
    ("avg3d-layer-smaller-than-kernel", lambda: poolkit.AvgPool3d(2, padding=1)(np.zeros((1, 1, 1, 4, 4))),
     ValueError, ["D=1"]),
    # booleans
    ("ceil-mode-int", lambda: poolkit.max_pool2d(X2, 2, ceil_mode=1), TypeError, ["`ceil_mode`", "ceil_mode=1"]),
    ("return-indices-str", lambda: poolkit.max_pool2d(X2, 2, return_indices="yes"), TypeError,
     ["return_indices='yes'"]),
    ("count-include-pad-none", lambda: poolkit.avg_pool2d(X2, 2, count_include_pad=None), TypeError,
     ["count_include_pad=None"]),
    # backend, data_format
    ("backend-unknown", lambda: poolkit.max_pool2d(X2, 2, backend="cuda"), ValueError,
     ["`backend`", "backend='cuda'", "'numba'"]),
    ("backend-unknown-layer", lambda: poolkit.AvgPool2d(2, backend="torch"), ValueError, ["backend='torch'"]),
    ("backend-unhashable", lambda: poolkit.max_pool2d(X2, 2, backend=["numba"]), ValueError,
     ["backend=['numba']"]),
    ("data-format-unknown", lambda: poolkit.max_pool2d(X2, 2, data_format="NCWH"), ValueError,
     ["`data_format`", "data_format='NCWH'", "'NHWC'"]),
    ("data-format-other-rank", lambda: poolkit.avg_pool1d(X1, 2, data_format="NHWC"), ValueError,
     ["data_format='NHWC'", "'NLC'"]),
    ("data-format-type", lambda: poolkit.max_pool2d(X2, 2, data_format=1), TypeError, ["data_format=1"]),
    ("data-format-global", lambda: poolkit.global_avg_pool(X2, data_format="NHCW"), ValueError,
     ["data_format='NHCW'"]),
    # dtypes
    ("dtype-bool", lambda: poolkit.avg_pool2d(X2.astype(bool), 2), TypeError, ["dtype=bool"]),
    ("dtype-complex", lambda: poolkit.max_pool2d(X2.astype(complex), 2), TypeError, ["dtype=complex128"]),
    ("dtype-object", lambda: poolkit.avg_pool2d(X2.astype(object), 2), TypeError, ["dtype=object"]),
    ("dtype-str", lambda: poolkit.max_pool1d(np.full((1, 1, 4), "a"), 2), TypeError, ["dtype=<U1"]),
    ("dtype-ragged-list", lambda: poolkit.max_pool1d([[[1.0, 2.0], [3.0]]], 2), TypeError, ["`x`"]),
    ("avg-of-int", lambda: poolkit.avg_pool2d(X2.astype(np.int32), 2), TypeError, ["dtype=int32", "astype"]),
    ("avg-of-uint8-adaptive", lambda: poolkit.adaptive_avg_pool2d(X2.astype(np.uint8), 2), TypeError,
     ["dtype=uint8"]),
    ("avg-of-int-layer", lambda: poolkit.AvgPool1d(2)(X1.astype(np.int64)), TypeError, ["dtype=int64"]),
    # divisor_override
    ("divisor-0", lambda: poolkit.avg_pool2d(X2, 2, divisor_override=0), ValueError,
     ["`divisor_override`", "divisor_override=0"]),
    ("divisor-float", lambda: poolkit.avg_pool3d(X3, 2, divisor_override=1.5), TypeError,
     ["divisor_override=1.5"]),
    ("divisor-bool", lambda: poolkit.avg_pool2d(X2, 2, divisor_override=True), TypeError,
     ["divisor_override=True"]),
    ("divisor-0-layer", lambda: poolkit.AvgPool2d(2, divisor_override=0), ValueError, ["divisor_override=0"]),
    # layers: backward without a training forward; gradients of the wrong shape or dtype
    ("backward-before-forward", lambda: poolkit.MaxPool2d(2).backward(np.ones((1, 2, 3, 3))), RuntimeError,
     ["MaxPool2d", "backward", "forward"]),
    ("backward-after-eval-forward", lambda: _eval_then_backward(poolkit.AvgPool2d(2)), RuntimeError,
     ["AvgPool2d", "train=True"]),
    ("backward-adaptive-before-forward",
     lambda: poolkit.AdaptiveMaxPool2d(2).backward(np.ones((1, 2, 2, 2))), RuntimeError, ["AdaptiveMaxPool2d"]),
    ("grad-shape", lambda: _trained(poolkit.MaxPool2d, 2).backward(np.ones((1, 2, 4, 4))), ValueError,
     ["`grad_output`", "(1, 2, 3, 3)", "(1, 2, 4, 4)"]),
    ("grad-dtype", lambda: _trained(poolkit.AvgPool2d, 2).backward(np.ones((1, 2, 3, 3), np.float32)), TypeError,
     ["`grad_output`", "dtype=float32", "float64"]),
    ("grad-int", lambda: _trained(poolkit.MaxPool2d, 2).backward(np.ones((1, 2, 3, 3), np.int64)), TypeError,
     ["dtype=int64"]),
    ("grad-shape-functional", lambda: poolkit.avg_pool2d_backward(np.ones((1, 2, 2, 2)), X2.shape, 2),
     ValueError, ["`grad_output`", "(1, 2, 3, 3)", "(1, 2, 2, 2)"]),
    ("grad-int-functional", lambda: poolkit.avg_pool2d_backward(np.ones((1, 2, 3, 3), int), X2.shape, 2),
     TypeError, ["`grad_output`", "dtype=int64"]),
    ("input-shape-type", lambda: poolkit.avg_pool2d_backward(np.ones((1, 2, 3, 3)), "1,2,6,6", 2), TypeError,
     ["`input_shape`", "input_shape='1,2,6,6'"]),
    # adaptive output_size
    ("output-size-0", lambda: poolkit.adaptive_max_pool2d(X2, 0), ValueError, ["`output_size`", "output_size=0"]),
    ("output-size-neg", lambda: poolkit.adaptive_avg_pool1d(X1, -2), ValueError, ["output_size=-2"]),
    ("output-size-neg-in-tuple", lambda: poolkit.adaptive_avg_pool2d(X2, (2, -1)), ValueError,
     ["output_size=(2, -1)"]),
    ("output-size-len", lambda: poolkit.adaptive_avg_pool2d(X2, (2, 2, 2)), ValueError,
     ["output_size=(2, 2, 2)", "3 values"]),
    ("output-size-float", lambda: poolkit.adaptive_max_pool3d(X3, 1.5), TypeError, ["output_size=1.5"]),
    ("output-size-float-in-tuple", lambda: poolkit.adaptive_max_pool2d(X2, (2, 2.0)), TypeError,
     ["output_size=(2, 2.0)"]),
    ("output-size-str", lambda: poolkit.adaptive_avg_pool2d(X2, "2"), TypeError, ["output_size='2'"]),
    ("output-size-bool", lambda: poolkit.adaptive_avg_pool2d(X2, True), TypeError, ["output_size=True"]),
    ("output-size-layer", lambda: poolkit.AdaptiveAvgPool2d(0), ValueError, ["output_size=0"]),
    # indices for max_poolNd_backward
    ("indices-too-big", lambda: _max_bwd(np.full((1, 2, 3, 3), 36)), ValueError, ["`indices`", "36", "[0, 36)"]),
    ("indices-below-minus-one", lambda: _max_bwd(np.full((1, 2, 3, 3), -5)), ValueError, ["`indices`", "-5"]),
    ("indices-float", lambda: _max_bwd(np.zeros((1, 2, 3, 3))), TypeError, ["`indices`", "dtype=float64"]),
    ("indices-shape", lambda: _max_bwd(np.zeros((1, 2, 3, 2), np.int64), np.ones((1, 2, 3, 3))), ValueError,
     ["`indices`", "(1, 2, 3, 3)", "(1, 2, 3, 2)"]),
    ("indices-channels", lambda: _max_bwd(np.zeros((1, 3, 3, 3), np.int64)), ValueError,
     ["(1, 3, 3, 3)", "(1, 2, 6, 6)"]),
    ("grad-int-index-backward", lambda: _max_bwd(_indices()[1], np.ones((1, 2, 3, 3), np.int32)), TypeError,
     ["`grad_output`", "dtype=int32"]),
    # max_unpool
    ("unpool-indices-too-big", lambda: _unpool(indices=np.full((1, 2, 3, 3), 40)), ValueError,
     ["`indices`", "40", "[0, 36)"]),
    ("unpool-indices-float", lambda: _unpool(indices=np.zeros((1, 2, 3, 3), np.float32)), TypeError,
     ["`indices`", "dtype=float32"]),
    ("unpool-indices-shape", lambda: _unpool(indices=np.zeros((1, 2, 3), np.int64)), ValueError,
     ["`indices`", "(1, 2, 3)"]),
    ("unpool-output-size-too-big", lambda: _unpool(output_size=(8, 6)), ValueError,
     ["`output_size`", "(8, 6)", "between 4 and 8"]),
    ("unpool-output-size-too-small", lambda: _unpool(output_size=(6, 4)), ValueError, ["(6, 4)"]),
    ("unpool-output-size-len", lambda: _unpool(output_size=(6,)), ValueError, ["output_size=(6,)"]),
    ("unpool-output-size-float", lambda: _unpool(output_size=(6.0, 6)), TypeError, ["output_size=(6.0, 6)"]),
    ("unpool-values-dtype", lambda: _unpool(values=np.zeros((1, 2, 3, 3), bool)), TypeError, ["dtype=bool"]),
    ("unpool-backward-indices-too-big",
     lambda: poolkit.max_unpool_backward(np.ones((1, 2, 6, 6)), np.full((1, 2, 3, 3), 99)), ValueError,
     ["`indices`", "99"]),
    ("unpool-backward-indices-float",
     lambda: poolkit.max_unpool_backward(np.ones((1, 2, 6, 6)), np.zeros((1, 2, 3, 3))), TypeError,
     ["`indices`", "dtype=float64"]),
    ("unpool-backward-shape",
     lambda: poolkit.max_unpool_backward(np.ones((1, 3, 6, 6)), np.zeros((1, 2, 3, 3), np.int64)), ValueError,
     ["(1, 3, 6, 6)", "(1, 2, 3, 3)"]),
    # global pooling gradient
    ("global-grad-shape", lambda: poolkit.global_avg_pool_backward(np.ones((1, 3)), X2.shape), ValueError,
     ["`grad_output`", "(1, 2)", "(1, 3)"]),
    # the chapter's interface
    ("chapter-pooling-type", lambda: poolkit.PoolingLayer((2, 6, 6), (2, 2), 2, "MIN"), ValueError,
     ["`pooling_type`", "pooling_type='MIN'"]),
    ("chapter-input-shape", lambda: poolkit.PoolingLayer((2, 6, 6), (2, 2), 2).forward(np.zeros((1, 3, 6, 6))),
     ValueError, ["(1, 3, 6, 6)", "(2, 6, 6)"]),
    ("chapter-pool-shape", lambda: poolkit.PoolingLayer((2, 6, 6), (0, 2), 2), ValueError,
     ["`pool_shape`", "pool_shape=(0, 2)"]),
    ("output-shape-input", lambda: poolkit.output_shape((0, 4), 2), ValueError, ["`input_size`", "(0, 4)"]),
    # min, sum and Lp pooling, masks (were tests/test_reductions.py::test_errors)
    ("p-zero", lambda: poolkit.lp_pool2d(X4, 0, 2), ValueError, ["norm_type=0"]),
    ("p-nan", lambda: poolkit.lp_pool2d(X4, float("nan"), 2), ValueError, ["norm_type=nan"]),
    ("p-str", lambda: poolkit.lp_pool2d(X4, "2", 2), TypeError, ["norm_type='2'"]),
    ("p-bool", lambda: poolkit.lp_pool2d(X4, True, 2), TypeError, ["norm_type=True"]),
    ("lp-int", lambda: poolkit.lp_pool2d(X4.astype(np.int32), 2, 2), TypeError, ["dtype=int32"]),
    ("layer-p", lambda: poolkit.LPPool2d(-0.0, 2), ValueError, ["norm_type"]),
    ("global-neg", lambda: poolkit.global_lp_pool(X4, -2), ValueError, ["norm_type=-2"]),
    ("mask-dtype", lambda: poolkit.max_pool2d(X4, 2, mask=np.ones((1, 1, 4, 4), dtype=np.int8)), TypeError,
     ["dtype=int8"]),
    ("mask-shape", lambda: poolkit.sum_pool2d(X4, 2, mask=np.ones((3, 4), dtype=bool)), ValueError, ["shape (3, 4)"]),
    ("mask-ragged", lambda: poolkit.avg_pool2d(X4, 2, mask=[[True, "x"]]), TypeError, ["`mask`"]),
    ("avg-dilation", lambda: poolkit.avg_pool2d(X4, 2, dilation=0), ValueError, ["dilation=0"]),
    ("sum-complex", lambda: poolkit.sum_pool2d(X4.astype(np.complex64), 2), TypeError, ["dtype=complex64"]),
    ("avg-bool", lambda: poolkit.avg_pool2d(X4.astype(bool), 2), TypeError, ["dtype=bool"]),
    ("lp-grad-int", lambda: poolkit.lp_pool_backward(np.ones((1, 1, 2, 2), np.int64), X4, 2, 2), TypeError,
     ["grad_output"]),
    # every other op: one row at least (test_every_op_has_an_error_row)
    ("max-nd-axes", lambda: poolkit.max_pool(X2, 2, axes=(2, 2)), ValueError, ["`axes`", "axes=(2, 2)", "repeat"]),
    ("avg-nd-kernel", lambda: poolkit.avg_pool(X2, (2, 0)), ValueError, ["`kernel_size`", "kernel_size=(2, 0)"]),
    ("min-nd-return-indices", lambda: poolkit.min_pool(X2, 2, return_indices=2), TypeError, ["return_indices=2"]),
    ("min-1d-stride", lambda: poolkit.min_pool1d(X1, 2, 0), ValueError, ["`stride`", "stride=0"]),
    ("min-2d-nan-policy", lambda: poolkit.min_pool2d(X2, 2, nan_policy="omit"), ValueError,
     ["`nan_policy`", "nan_policy='omit'"]),
    ("min-3d-ndim", lambda: poolkit.min_pool3d(X1, 2), ValueError, ["`x`", "(1, 2, 6)", "5 dimensions"]),
    ("sum-nd-padding", lambda: poolkit.sum_pool(X2, 2, padding=2), ValueError, ["`padding`", "padding=2"]),
    ("sum-1d-dilation", lambda: poolkit.sum_pool1d(X1, 2, dilation=-1), ValueError, ["dilation=-1"]),
    ("sum-3d-ceil-mode", lambda: poolkit.sum_pool3d(X3, 2, ceil_mode="yes"), TypeError, ["ceil_mode='yes'"]),
    ("lp-nd-kernel", lambda: poolkit.lp_pool(X2, 2, 0), ValueError, ["`kernel_size`", "kernel_size=0"]),
    ("lp-1d-data-format", lambda: poolkit.lp_pool1d(X1, 2, 2, data_format="NCHW"), ValueError,
     ["`data_format`", "data_format='NCHW'"]),
    ("lp-3d-backend", lambda: poolkit.lp_pool3d(X3, 2, 2, backend="gpu"), ValueError, ["backend='gpu'"]),
    ("lp-backward-norm", lambda: poolkit.lp_pool_backward(np.ones((1, 2, 3, 3)), X2, 0, 2), ValueError,
     ["norm_type=0"]),
    ("global-lp-backward-shape", lambda: poolkit.global_lp_pool_backward(np.ones((1, 3)), X2), ValueError,
     ["`grad_output`", "(1, 2)", "(1, 3)"]),
    ("global-max-keepdims", lambda: poolkit.global_max_pool(X2, keepdims=1), TypeError, ["keepdims=1"]),
    ("global-avg-axes", lambda: poolkit.global_avg_pool(X2, axes=(1, 7)), ValueError, ["`axes`", "(1, 7)"]),
    ("min-backward-indices", lambda: poolkit.min_pool_backward(np.ones((1, 2, 3, 3)), np.full((1, 2, 3, 3), 99),
                                                               X2.shape), ValueError, ["`indices`", "99"]),
    ("sum-backward-grad", lambda: poolkit.sum_pool_backward(np.ones((1, 2, 2, 2)), X2.shape, 2), ValueError,
     ["`grad_output`", "(1, 2, 3, 3)"]),
    ("max-nd-backward-shape", lambda: poolkit.max_pool_backward(np.ones((1, 2, 3, 3)), _indices()[1], (1, -2, 6, 6)),
     TypeError, ["`input_shape`", "(1, -2, 6, 6)"]),
    ("max1d-backward-indices", lambda: poolkit.max_pool1d_backward(np.ones((1, 2, 3)), np.zeros((1, 2, 3)),
                                                                   X1.shape), TypeError, ["`indices`"]),
    ("max3d-backward-grad", lambda: poolkit.max_pool3d_backward(np.ones((1, 2, 2, 2, 2), int),
                                                                np.zeros((1, 2, 2, 2, 2), int), X3.shape),
     TypeError, ["`grad_output`", "dtype=int64"]),
    ("avg-nd-backward-nan", lambda: poolkit.avg_pool_backward(np.ones((1, 2, 3, 3)), X2.shape, 2, nan_policy="ignore"),
     ValueError, ["nan_policy='ignore'", "`x=`"]),
    ("avg1d-backward-kernel", lambda: poolkit.avg_pool1d_backward(np.ones((1, 2, 3)), X1.shape, 0), ValueError,
     ["kernel_size=0"]),
    ("avg3d-backward-x", lambda: poolkit.avg_pool3d_backward(np.ones((1, 2, 2, 2, 2)), X3.shape, 2,
                                                             nan_policy="ignore", x=X2), ValueError,
     ["`x`", "(1, 2, 6, 6)"]),
    ("adaptive-backward-ndim", lambda: poolkit.adaptive_avg_pool_backward(np.ones((1, 2, 2)), X2.shape), ValueError,
     ["`grad_output`", "(1, 2, 2)"]),
    ("adaptive1d-backward-grad", lambda: poolkit.adaptive_avg_pool1d_backward(np.ones((1, 2, 2), int), X1.shape),
     TypeError, ["`grad_output`", "dtype=int64"]),
    ("adaptive2d-backward-input-shape", lambda: poolkit.adaptive_avg_pool2d_backward(np.ones((1, 2, 2, 2)), "x"),
     TypeError, ["`input_shape`", "input_shape='x'"]),
    ("adaptive3d-backward-ndim", lambda: poolkit.adaptive_avg_pool3d_backward(np.ones((1, 2, 2)), X1.shape),
     ValueError, ["`input_shape`", "(1, 2, 6)"]),
    ("adaptive-max-1d-output-size", lambda: poolkit.adaptive_max_pool1d(X1, (2, 2)), ValueError,
     ["output_size=(2, 2)"]),
    ("adaptive-avg-3d-return", lambda: poolkit.adaptive_avg_pool3d(X3, 1, nan_policy=None), ValueError,
     ["nan_policy=None"]),
    ("unpool1d-kernel", lambda: poolkit.max_unpool1d(np.zeros((1, 2, 3)), np.zeros((1, 2, 3), int), 0), ValueError,
     ["`kernel_size`", "kernel_size=0"]),
    ("unpool3d-stride", lambda: poolkit.max_unpool3d(np.zeros((1, 2, 2, 2, 2)), np.zeros((1, 2, 2, 2, 2), int), 2,
                                                     1.5), TypeError, ["stride=1.5"]),
    ("unpool-output-size-bool", lambda: _unpool(output_size=(True, 6)), TypeError, ["`output_size`", "(True, 6)"]),
    ("fractional2d-ratio", lambda: poolkit.fractional_max_pool2d(X2, 2, output_ratio=1.5), ValueError,
     ["`output_ratio`", "output_ratio=1.5"]),
    ("fractional3d-samples", lambda: poolkit.fractional_max_pool3d(X3, 2, 2, samples=np.full((1, 2, 3), 2.0)),
     ValueError, ["`samples`", "[0, 1)", "2.0"]),
    ("fractional2d-backward-indices", lambda: poolkit.fractional_max_pool2d_backward(
        np.ones((1, 2, 3, 3)), np.full((1, 2, 3, 3), 36), X2.shape), ValueError, ["`indices`", "36"]),
    ("fractional3d-backward-grad", lambda: poolkit.fractional_max_pool3d_backward(
        np.ones((1, 2, 2, 2, 2), np.int32), np.zeros((1, 2, 2, 2, 2), int), X3.shape), TypeError,
     ["`grad_output`", "dtype=int32"]),
    ("spp-levels", lambda: poolkit.spatial_pyramid_pool2d(X2, levels=(0, 1)), ValueError, ["`levels`", "(0, 1)"]),
    ("spp-mode", lambda: poolkit.spatial_pyramid_pool2d(X2, mode="sum"), ValueError, ["`mode`", "mode='sum'"]),
    ("spp-backward-indices", lambda: poolkit.spatial_pyramid_pool2d_backward(np.ones((1, 42)), X2.shape), ValueError,
     ["`indices`", "mode='max'"]),
    # layers: every setting is checked at construction (issue 24: axes and data_format too)
    ("layer-max-axes", lambda: poolkit.MaxPool2d(2, axes=(0, 1, 2)), ValueError, ["`axes`", "(0, 1, 2)"]),
    ("layer-max-data-format", lambda: poolkit.MaxPool1d(2, data_format="NHWC"), ValueError,
     ["`data_format`", "data_format='NHWC'"]),
    ("layer-avg-axes-type", lambda: poolkit.AvgPool3d(2, axes=(1.0, 2, 3)), TypeError, ["`axes`", "(1.0, 2, 3)"]),
    ("layer-min-data-format-type", lambda: poolkit.MinPool2d(2, data_format=2), TypeError, ["data_format=2"]),
    ("layer-min1d-kernel", lambda: poolkit.MinPool1d(0), ValueError, ["kernel_size=0"]),
    ("layer-min3d-nan-policy", lambda: poolkit.MinPool3d(2, nan_policy="omit"), ValueError, ["nan_policy='omit'"]),
    ("layer-sum-axes", lambda: poolkit.SumPool2d(2, axes=2), ValueError, ["`axes`", "axes=(2,)"]),
    ("layer-sum1d-backend", lambda: poolkit.SumPool1d(2, backend="gpu"), ValueError, ["backend='gpu'"]),
    ("layer-sum3d-stride", lambda: poolkit.SumPool3d(2, 0), ValueError, ["stride=0"]),
    ("layer-lp1d-data-format", lambda: poolkit.LPPool1d(2, 2, data_format="NCHW"), ValueError,
     ["`data_format`", "data_format='NCHW'"]),
    ("layer-lp3d-axes", lambda: poolkit.LPPool3d(2, 2, axes=(0, 1)), ValueError, ["`axes`", "(0, 1)"]),
    ("layer-max1d-return-indices", lambda: poolkit.MaxPool1d(2, return_indices=1), TypeError, ["return_indices=1"]),
    ("layer-avg1d-divisor", lambda: poolkit.AvgPool1d(2, divisor_override=2), TypeError, ["divisor_override"]),
    ("layer-adaptive-max1d-output-size", lambda: poolkit.AdaptiveMaxPool1d(-1), ValueError, ["output_size=-1"]),
    ("layer-adaptive-max3d-data-format", lambda: poolkit.AdaptiveMaxPool3d(1, data_format="NCHW"), ValueError,
     ["data_format='NCHW'"]),
    ("layer-adaptive-avg1d-axes", lambda: poolkit.AdaptiveAvgPool1d(1, axes=(0, 1)), ValueError, ["`axes`"]),
    ("layer-adaptive-avg3d-backend", lambda: poolkit.AdaptiveAvgPool3d(1, backend=None), ValueError,
     ["backend=None"]),
    ("layer-fractional2d-kernel", lambda: poolkit.FractionalMaxPool2d(0, 2), ValueError, ["kernel_size=0"]),
    ("layer-fractional3d-rng", lambda: poolkit.FractionalMaxPool3d(2, 2, rng=-1), TypeError, ["rng=-1"]),
    ("layer-spp-data-format", lambda: poolkit.SpatialPyramidPool2d(data_format="NCL"), ValueError,
     ["data_format='NCL'"]),
    ("layer-max3d-backward", lambda: poolkit.MaxPool3d(2).backward(np.ones((1, 2, 2, 2, 2))), RuntimeError,
     ["MaxPool3d", "no forward has run yet"]),
    # mode pooling: labels only, no gradient, and the strided arguments of every op
    ("mode-float", lambda: poolkit.mode_pool2d(X2, 2), TypeError, ["mode pooling", "dtype=float64"]),
    ("mode-float16-nd", lambda: poolkit.mode_pool(X2.astype(np.float16), 2), TypeError, ["dtype=float16"]),
    ("mode-complex", lambda: poolkit.mode_pool1d(np.zeros((1, 2, 6), complex), 2), TypeError, ["complex128"]),
    ("mode-kernel", lambda: poolkit.mode_pool3d(X3.astype(np.int8), 0), ValueError, ["kernel_size=0"]),
    ("mode-padding", lambda: poolkit.mode_pool1d(X1.astype(np.uint8), 2, padding=2), ValueError,
     ["padding=2", "half"]),
    ("mode-mask-dtype", lambda: poolkit.mode_pool2d(X2.astype(np.int32), 2, mask=np.ones((6, 6))), TypeError,
     ["`mask`", "dtype=float64"]),
    ("mode-layer-dilation", lambda: poolkit.ModePool2d(2, dilation=0), ValueError, ["dilation=0"]),
    ("mode-layer1d-data-format", lambda: poolkit.ModePool1d(2, data_format="NHWC"), ValueError,
     ["data_format='NHWC'"]),
    ("mode-layer3d-float", lambda: poolkit.ModePool3d(2)(X3), TypeError, ["dtype=float64"]),
    ("mode-layer-backward", lambda: poolkit.ModePool2d(2).backward(np.ones((1, 2, 3, 3))), TypeError,
     ["mode pooling", "no gradient"]),
]


def _eval_then_backward(layer):
    y = layer.forward(X2, train=False)
    return layer.backward(np.ones_like(y))


@pytest.mark.parametrize("call, exc, fragments", [r[1:] for r in ERRORS], ids=[r[0] for r in ERRORS])
def test_error_names_argument_and_value(call, exc, fragments):
    with pytest.raises(exc) as info:
        call()
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in message: {msg}"


def test_error_ids_are_unique():
    ids = [r[0] for r in ERRORS]
    assert len(ids) == len(set(ids))


# Public names without an error row here, and where their errors are tested.
NOT_OPS = {
    "get_num_threads": "no arguments", "set_num_threads": "test_hardening.py::test_thread_counts_reject_the_rest",
    "threads": "test_hardening.py::test_thread_counts_reject_the_rest", "info": "no arguments",
    "wait_for_kernels": "a timeout only", "warmup": "test_warmup.py::test_errors",
    "pyramid": "test_pyramid.py", "write_pyramid": "test_ome_zarr.py", "explain_pooling": "test_explain.py",
    "PoolingTypes": "an enum", "__version__": "a string",
}


def test_every_op_has_an_error_row():
    """One table for every op: each public function and layer is called by at least one row."""
    called = set()
    for _, call, _, _ in ERRORS:
        called |= set(call.__code__.co_names)
        for const in call.__code__.co_consts:             # names inside nested lambdas
            if hasattr(const, "co_names"):
                called |= set(const.co_names)
    called |= {"max_pool2d", "max_pool2d_backward", "max_unpool2d"}       # through _indices, _max_bwd, _unpool
    missing = sorted(n for n in poolkit.__all__ if n not in called and n not in NOT_OPS)
    assert not missing, missing


# --------------------------------------------------------------------------- #
# nothing left half-done
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("cls, args", [(poolkit.MaxPool2d, (2,)), (poolkit.AvgPool2d, (3, 2, 1)),
                                       (poolkit.AdaptiveMaxPool2d, ((4, 3),))],
                         ids=["max", "avg", "adaptive"])
def test_layer_survives_failed_calls(cls, args):
    rng = np.random.default_rng(31)
    x = rng.standard_normal((2, 3, 7, 6))
    fresh = cls(*args, backend="reference")
    y_ref = fresh(x)
    g = rng.standard_normal(y_ref.shape)
    expected = fresh.backward(g)

    layer = cls(*args)
    y = layer(x)
    # a wrong gradient is refused ...
    with pytest.raises(ValueError):
        layer.backward(np.ones(y.shape[:-1] + (y.shape[-1] + 1,)))
    with pytest.raises(TypeError):
        layer.backward(g.astype(np.float32))
    # ... a bad input is refused before anything is overwritten ...
    with pytest.raises(ValueError):
        layer(np.zeros((5, 5)))
    with pytest.raises(TypeError):
        layer(x.astype(complex))
    # ... and the context of the last good forward still gives the right gradient
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-12, atol=1e-12)
    # backward may be called again: the context is not consumed
    np.testing.assert_allclose(layer.backward(g), expected, rtol=1e-12, atol=1e-12)
    # and the layer keeps working for a new input afterwards
    x2 = rng.standard_normal((1, 3, 7, 6))
    fresh2 = cls(*args, backend="reference")
    g2 = rng.standard_normal(fresh2(x2).shape)
    layer(x2)
    np.testing.assert_allclose(layer.backward(g2), fresh2.backward(g2), rtol=1e-12, atol=1e-12)


def test_eval_forward_drops_previous_context():
    """forward(train=False) forgets the earlier training forward: a later backward must not use stale state."""
    layer = poolkit.MaxPool2d(2)
    layer(X2)
    assert layer.saved_nbytes > 0
    layer.forward(X2, train=False)
    assert layer.saved_nbytes == 0
    with pytest.raises(RuntimeError):
        layer.backward(np.ones((1, 2, 3, 3)))


def test_validation_happens_before_work():
    """An invalid argument is reported even when the input would also be rejected later (no partial result)."""
    with pytest.raises(ValueError, match="kernel_size=0"):
        poolkit.max_pool2d(np.zeros((1, 1, 4, 4)), 0, backend="cuda")
