"""Issue 11 (hardening): each test is written from the issue's repro.

Calls that used to crash the process (wrong offsets read by a kernel) run in a
subprocess, so that a crash fails the test instead of ending the run.
"""
from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import poolkit
from poolkit.core.plan import off_dtype_for, sentinel_for

BACKENDS = ["reference", "img2col", "numba"]
# reference and img2col loop over every tap of a window (2**31 here), inside the input or not

def _run(code: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with 8 GiB of address space (a runaway allocation fails fast)."""
    prelude = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))\n"
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, NUMBA_NUM_THREADS="2"))


# --------------------------------------------------------------------------- #
# 1. offsets as wide as the window
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("taps, dtype, sentinel", [(1, np.uint8, 255), (254, np.uint8, 255), (255, np.int32, -1),
                                                   (2**31 - 2, np.int32, -1), (2**31 - 1, np.int64, -1),
                                                   (2**62, np.int64, -1)])
def test_offset_dtype_holds_every_tap_and_the_sentinel(taps, dtype, sentinel):
    dt = off_dtype_for(taps)
    assert dt == dtype and sentinel_for(dt) == sentinel
    info = np.iinfo(dt)
    assert taps - 1 <= info.max and info.min <= sentinel <= info.max
    assert sentinel < 0 or sentinel > taps - 1                      # never a real tap


@pytest.mark.parametrize("backend", BACKENDS)
def test_window_of_more_than_2_31_taps(backend):
    run = _run(f"""
        import numpy as np, poolkit
        # 1-D: one window of 2**31 + 2 taps; the only element is its last tap but one
        layer = poolkit.MaxPool1d(2**31 + 2, padding=((2**31 + 1, 0),), return_indices=True, backend="{backend}")
        x = np.array([[[5.0]]])
        y, idx = layer(x)
        assert y.tolist() == [[[5.0]]] and idx.tolist() == [[[0]]], (y, idx)
        assert layer.backward(np.full_like(y, 2.5)).tolist() == [[[2.5]]]
        # 2-D: 3x1 input, windows of 3 x 2**31 taps: the maximum (row 2) is flat index 2 for both outputs
        x = np.arange(3.0).reshape(1, 1, 3, 1)
        y, idx = poolkit.max_pool2d(x, (3, 2**31), 1, ((0, 0), (2**30, 2**30)), return_indices=True,
                                    backend="{backend}")
        assert idx.ravel().tolist() == [2, 2] and y.ravel().tolist() == [2.0, 2.0], (y, idx)
        g = poolkit.max_pool2d_backward(np.ones_like(y), idx, x.shape, backend="{backend}")
        assert g.ravel().tolist() == [0.0, 0.0, 2.0], g
        print("ok")
    """)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]


def test_wide_offsets_agree_with_the_reference():
    """int32 offsets (255 taps and more) give the reference backend's results, forward and backward."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 20, 21))
    for b in ("img2col", "numba"):
        got = poolkit.MaxPool2d(16, 1, return_indices=True, backend=b)
        ref = poolkit.MaxPool2d(16, 1, return_indices=True, backend="reference")
        (y, i), (y_r, i_r) = got(x), ref(x)
        assert got._ctx is not None and got._ctx.saved.dtype == np.int32
        np.testing.assert_array_equal(y, y_r)
        np.testing.assert_array_equal(i, i_r)
        g = rng.standard_normal(y.shape)
        np.testing.assert_array_equal(got.backward(g), ref.backward(g))


# --------------------------------------------------------------------------- #
# 3. saved state checked before any kernel
# --------------------------------------------------------------------------- #
def _trained(layer, shape=(1, 2, 6, 6), nan=False):
    x = np.random.default_rng(3).standard_normal(shape)
    if nan:
        x[0, 0, 0, 0] = np.nan
    y = layer(x)
    return layer, np.ones_like(y)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("corrupt", ["shape", "dtype-int64", "dtype-float", "missing"])
def test_saved_offsets_of_wrong_shape_or_dtype(backend, corrupt):
    layer, g = _trained(poolkit.MaxPool2d(3, 2, 1, backend=backend))
    off = layer._ctx.saved
    layer._ctx.saved = {"shape": off[:, :, :, :1], "dtype-int64": off.astype(np.int64),
                        "dtype-float": off.astype(np.float64), "missing": None}[corrupt]
    with pytest.raises(ValueError, match="saved state"):
        layer.backward(g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("corrupt", ["divisors-shape", "divisors-dtype", "mask-dtype", "mask-shape", "not-a-pair"])
def test_saved_divisors_and_mask_of_wrong_shape_or_dtype(backend, corrupt):
    layer, g = _trained(poolkit.AvgPool2d(3, 2, 1, nan_policy="ignore", backend=backend), nan=True)
    divs, mask = layer._ctx.saved
    layer._ctx.saved = {"divisors-shape": (divs[:, :, :, :1], mask), "divisors-dtype": (divs.astype(np.float32), mask),
                        "mask-dtype": (divs, mask.astype(np.uint8)), "mask-shape": (divs, mask[:, :, :, :1]),
                        "not-a-pair": divs}[corrupt]
    with pytest.raises(ValueError, match="saved state"):
        layer.backward(g)


def test_average_layer_without_nan_ignore_saves_nothing_and_checks_it():
    layer, g = _trained(poolkit.AvgPool2d(2))
    layer._ctx.saved = np.zeros(3)
    with pytest.raises(ValueError, match="saved state"):
        layer.backward(g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", ["offset-200-of-9-taps", "negative-int32-offset"])
def test_saved_offsets_out_of_range(backend, case):
    """Offsets of the right dtype but outside the window: a ValueError naming the saved state, not a crash."""
    run = _run(f"""
        import numpy as np, poolkit
        if "{case}" == "offset-200-of-9-taps":
            layer, shape, bad = poolkit.MaxPool2d(3, 2, 1, backend="{backend}"), (1, 2, 6, 6), 200
        else:
            layer, shape, bad = poolkit.MaxPool1d(300, 1, backend="{backend}"), (1, 2, 305), -5   # int32 offsets
        y = layer(np.random.default_rng(3).standard_normal(shape))
        saved = layer._ctx.saved
        saved.setflags(write=True)           # forward sealed it read-only: unseal, then alter in place
        saved[...] = bad
        try:
            layer.backward(np.ones_like(y))
        except ValueError as e:
            assert "saved state" in str(e), e
            print("ok")
    """)
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]


# --------------------------------------------------------------------------- #
# 4. pickle and deepcopy
# --------------------------------------------------------------------------- #
LAYERS = [
    (poolkit.MaxPool1d, (3, 2, 1), (2, 3, 9)), (poolkit.MaxPool2d, (3, 2, 1), (2, 3, 7, 8)),
    (poolkit.MaxPool3d, (2,), (1, 2, 4, 4, 5)), (poolkit.AvgPool1d, (3, 2, 1), (2, 3, 9)),
    (poolkit.AvgPool2d, (3, 2, 1, False, False, 5), (2, 3, 7, 8)), (poolkit.AvgPool3d, (2,), (1, 2, 4, 4, 5)),
    (poolkit.AdaptiveMaxPool1d, (4,), (2, 3, 9)), (poolkit.AdaptiveMaxPool2d, ((3, None),), (2, 3, 7, 8)),
    (poolkit.AdaptiveMaxPool3d, (2,), (1, 2, 4, 4, 5)), (poolkit.AdaptiveAvgPool1d, (4,), (2, 3, 9)),
    (poolkit.AdaptiveAvgPool2d, (3,), (2, 3, 7, 8)), (poolkit.AdaptiveAvgPool3d, (2,), (1, 2, 4, 4, 5)),
]
COPIES = {"pickle": lambda o: pickle.loads(pickle.dumps(o)), "deepcopy": copy.deepcopy}


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cls, args, shape", LAYERS, ids=[c.__name__ for c, _, _ in LAYERS])
def test_layers_survive_pickle_and_deepcopy(cls, args, shape, backend, how):
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape)
    x[(0,) * len(shape)] = np.nan                       # exercises nan_policy="ignore"'s saved mask too
    layer = cls(*args, backend=backend, nan_policy="ignore")
    before = COPIES[how](layer)                          # never run
    assert repr(before) == repr(layer)
    y = layer(x)
    g = rng.standard_normal(y.shape)
    expected = layer.backward(g)
    after = COPIES[how](layer)                           # holds the training context
    assert after.saved_nbytes == layer.saved_nbytes
    np.testing.assert_array_equal(after.backward(g), expected)       # bit-identical, NaN in the same places
    np.testing.assert_array_equal(before(x), y)
    np.testing.assert_array_equal(before.backward(g), expected)
    np.testing.assert_array_equal(after(x), y)                        # and the copy keeps working


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("kind", ["MAX", "MEAN"])
def test_chapter_layer_survives_pickle_and_deepcopy(kind, how):
    layer = poolkit.PoolingLayer((3, 8, 8), (2, 2), 2, kind)
    x = np.random.default_rng(12).standard_normal((4, 3, 8, 8))
    before = COPIES[how](layer)
    y = layer.forward_img2col(x)
    g = np.random.default_rng(13).standard_normal(y.shape)
    expected = layer.backward(g, 1)
    after = COPIES[how](layer)
    np.testing.assert_array_equal(after.backward(g, 1), expected)   # the copy remembers which method ran last
    np.testing.assert_array_equal(before.forward(x), y)
    np.testing.assert_array_equal(before.backward(g), expected)


# --------------------------------------------------------------------------- #
# 5. masked arrays: honoured where masks are, refused (not silently unmasked) elsewhere
# --------------------------------------------------------------------------- #
MASKED = np.ma.masked_array(np.arange(16.0).reshape(1, 1, 4, 4), mask=np.eye(4, dtype=bool)[None, None])


@pytest.mark.parametrize("call, with_mask", [
    (lambda x: poolkit.max_pool2d(x, 2), lambda m: poolkit.max_pool2d(MASKED.data, 2, mask=m)),
    (lambda x: poolkit.avg_pool(x, 2, axes=(2, 3)), lambda m: poolkit.avg_pool(MASKED.data, 2, axes=(2, 3), mask=m)),
    (lambda x: poolkit.MaxPool2d(2)(x), lambda m: poolkit.max_pool2d(MASKED.data, 2, mask=m)),
], ids=["max_pool2d", "avg_pool", "layer"])
def test_masked_arrays_are_honoured(call, with_mask):
    y = call(MASKED)
    assert isinstance(y, np.ma.MaskedArray)
    np.testing.assert_array_equal(y.data, with_mask(~MASKED.mask))
    assert not y.mask.any()                    # every 2x2 window keeps an unmasked element


@pytest.mark.parametrize("call", [
    lambda: poolkit.adaptive_avg_pool2d(MASKED, 1),
    lambda: poolkit.global_max_pool(MASKED),
    lambda: poolkit.PoolingLayer((1, 4, 4), (2, 2), 2).forward(MASKED),
    lambda: poolkit.avg_pool2d_backward(np.ma.masked_array(np.ones((1, 1, 2, 2))), (1, 1, 4, 4), 2),
], ids=["adaptive", "global", "chapter", "grad_output"])
def test_masked_arrays_are_refused(call):
    with pytest.raises(TypeError) as info:
        call()
    msg = str(info.value)
    for fragment in ("masked", ".filled(", "nan_policy='ignore'", "mask="):
        assert fragment in msg, msg


# --------------------------------------------------------------------------- #
# 6. huge integers: the argument is named and echoed
# --------------------------------------------------------------------------- #
X2 = np.zeros((1, 2, 6, 6))


def _idx():
    return poolkit.max_pool2d(X2, 2, return_indices=True)


BIG = [
    ("stride-2**64", lambda: poolkit.max_pool2d(X2, 2, 2**64), ["`stride`", "stride=18446744073709551616"]),
    ("kernel-2**63", lambda: poolkit.avg_pool2d(X2, (2, 2**63)), ["`kernel_size`", str(2**63)]),
    ("dilation-2**63", lambda: poolkit.MaxPool1d(2, dilation=2**63), ["`dilation`", str(2**63)]),
    ("padding-pair-2**63", lambda: poolkit.max_pool2d(X2, 2, padding=((0, 2**63), (0, 0))),
     ["`padding`", str(2**63)]),
    ("padding-2**62", lambda: poolkit.max_pool2d(X2, 2, padding=((0, 2**62), (0, 0))),
     ["`padding`", str(2**62)]),
    ("span-past-int64", lambda: poolkit.max_pool1d(np.zeros((1, 1, 4)), 2**62, dilation=4,
                                                    padding=((2**62, 2**62),)),
     ["`kernel_size`", "`dilation`", str(2**62)]),
    ("adaptive-output-size", lambda: poolkit.adaptive_max_pool2d(X2, 2**62), ["`output_size`", str(2**62)]),
    ("unpool-stride-2**62", lambda: poolkit.max_unpool2d(*_idx(), 2, stride=2**62), ["`stride`", str(2**62)]),
    ("backward-input-shape", lambda: poolkit.max_pool2d_backward(np.ones((2, 3, 1, 1)), np.zeros((2, 3, 1, 1), int),
                                                                 (2, 3, 2**62 + 1, 4)),
     ["`input_shape`", str(2**62 + 1)]),
    ("avg-backward-input-shape", lambda: poolkit.avg_pool2d_backward(np.ones((2, 3, 1, 1)), (2, 3, 2**62, 2), 2),
     ["`input_shape`", str(2**62)]),
]


@pytest.mark.parametrize("call, fragments", [r[1:] for r in BIG], ids=[r[0] for r in BIG])
def test_huge_sizes_name_the_argument(call, fragments):
    with pytest.raises(ValueError) as info:
        call()
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("n", [np.int64(1), np.int32(1), np.uint8(1), 1])
def test_thread_counts_accept_numpy_integers(n):
    old = poolkit.get_num_threads()
    with poolkit.threads(n):
        assert poolkit.get_num_threads() == 1
    assert poolkit.get_num_threads() == old
    poolkit.set_num_threads(n)
    assert poolkit.get_num_threads() == 1
    poolkit.set_num_threads(old)


@pytest.mark.parametrize("n", [True, np.True_, 1.0, "1", 0, 10**20])
def test_thread_counts_reject_the_rest(n):
    with pytest.raises(ValueError, match=f"n={n!r}".replace("(", r"\(").replace(")", r"\)")):
        poolkit.set_num_threads(n)
    with pytest.raises(ValueError, match="`n`"):
        with poolkit.threads(n):
            pass


def test_threads_from_many_python_threads():
    """Each Python thread has its own count: 8 threads nesting threads() never see another's setting."""
    x = np.random.default_rng(5).standard_normal((4, 8, 32, 64))   # large: the parallel path
    expected = poolkit.max_pool2d(x, 3, 2, 1)
    seen, errors = [], []

    def work(i):
        try:
            for _ in range(20):
                with poolkit.threads(1 + i % 2):
                    seen.append(poolkit.get_num_threads() == 1 + i % 2)
                    assert np.array_equal(poolkit.max_pool2d(x, 3, 2, 1), expected)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors and all(seen) and len(seen) == 160


# --------------------------------------------------------------------------- #
# 7. train is a strict bool, and an evaluation forward drops the context
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("train", ["no", 0, 1, None])
def test_train_must_be_a_bool(train):
    layer = poolkit.MaxPool2d(2)
    with pytest.raises(TypeError, match=f"train={train!r}"):
        layer.forward(X2, train=train)
    with pytest.raises(TypeError, match="`train`"):
        poolkit.PoolingLayer((2, 6, 6), (2, 2), 2).forward(X2, train=train)


def test_eval_forward_after_training_forward():
    """The documented rule: backward belongs to the last forward, which must be a training one."""
    layer = poolkit.AvgPool2d(2)
    layer(X2)
    layer(np.ones((3, 2, 4, 4)), train=False)
    with pytest.raises(RuntimeError) as info:
        layer.backward(np.ones((1, 2, 3, 3)))
    assert "train=False" in str(info.value) and "drops" in str(info.value)
    assert "train=False" in poolkit.AvgPool2d.forward.__doc__ and "drop" in poolkit.AvgPool2d.forward.__doc__
    with pytest.raises(RuntimeError, match="no forward has run yet"):
        poolkit.AvgPool2d(2).backward(np.ones((1, 2, 3, 3)))
