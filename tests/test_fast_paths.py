"""The specialised numba kernels (``backends/_fast.py``, ``backends/_simd.py``) against slower paths.

Every specialised window shape ``(KH, KW, SW)`` runs on rows whose interior has
from 1 to 40 windows, so that each way a row is cut is taken: the virtual row
(fewer windows than a narrow block), narrow and wide vector blocks, a last block
moved back (forward, exact tilings) or one that skips windows already added
(overlapping backward), and the scalar border windows around them.  Block widths
depend on the dtype and the CPU (``_simd.widths``), so the row lengths are
derived per dtype: those of the values (forward) and of the gradients
(backward; float64 for integer inputs).  Results must be bit-identical to

* the generic numba kernels, reached with the same data in channels-last
  layout (the fast kernels take channels-first only) -- for max and average;
* the reference backend -- max values, indices and gradients;

at 1 and 2 threads (inputs above ``PARALLEL_MIN_ELEMENTS`` take the parallel kernels).
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import poolkit
from poolkit.backends.numba import fast as _fast, simd as _simd
from poolkit.backends.numba.simd import NARROW, WIDE   # as globals, Numba sees them as constants
from poolkit.backends.numba import loops as numba_loops
from helpers import assert_identical, make_input

THREADS = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})

# (op, values dtype, values, test id); integer max pooling has float64 gradients.
ROWS = [("max", np.float64, "nan", "max-f64-nan"), ("max", np.float32, "ties", "max-f32-ties"),
        ("avg", np.float32, "ties", "avg-f32"), ("max", np.int8, "ties", "max-i8-ties")]


def _grad_dtype(dtype):
    return np.dtype(np.float64 if np.dtype(dtype).kind in "iu" else dtype)


def _counts(dtype):
    """Interior windows per row for data of ``dtype``: for the block widths of its values and of
    its gradients, virtual rows (below narrow), a block exactly, one more, below and at wide,
    and rows that need a moved-back or skipping last block."""
    counts = {1, 3, 40}
    for narrow, wide in {_simd.widths(dtype), _simd.widths(_grad_dtype(dtype))}:
        counts |= {narrow - 1, narrow, narrow + 1, wide - 1, wide, wide + 1, wide + narrow + 3}
    return tuple(sorted(counts))


def _configs(dtype):
    for kh, kw, sw in _fast.SPECIALISED:
        for pad in (0, 1):
            if pad and (kw < 2 or kh < 2):
                continue                       # padding must be at most half the kernel
            for count in _counts(dtype):
                # W so that the row has `count` windows inside the input (plus border ones
                # when padded), and one column left over for some counts (no exact tiling)
                width = (count - 1) * sw + kw + (count % 2)
                yield kh, kw, sw, pad, count, width


def _id(c):
    kh, kw, sw, pad, count, width = c
    return f"k{kh}x{kw}s{sw}p{pad}-n{count}-w{width}"


CASES = [pytest.param(op, dtype, values, cfg, id=f"{rid}-{_id(cfg)}")
         for op, dtype, values, rid in ROWS for cfg in _configs(dtype)]


def _pool(op, x, g, kh, kw, sw, pad, last, backend):
    """Forward (values, indices) and backward of NCHW ``x`` and gradient ``g``; fed as NHWC if ``last``."""
    kw_ = dict(kernel_size=(kh, kw), stride=(2 if kh > 1 else 1, sw), padding=(pad if kh > 1 else 0, pad),
               data_format="NHWC" if last else "NCHW", backend=backend)
    layer = poolkit.MaxPool2d(**kw_, return_indices=True) if op == "max" else poolkit.AvgPool2d(**kw_)
    def to_user(a):
        return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if last else a
    def from_user(a):
        return None if a is None else np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if last else a
    out = layer(to_user(x))
    y, idx = out if op == "max" else (out, None)
    if backend == "numba":       # the specialised kernels take channels-first data only
        assert (_fast._setup(layer._ctx.prepared.plan) is not None) == (not last)
    return from_user(y), from_user(idx), from_user(layer.backward(to_user(g)))


def _grad(rng, x, kh, kw, sw, pad):
    oh = (x.shape[2] + 2 * (pad if kh > 1 else 0) - kh) // (2 if kh > 1 else 1) + 1
    ow = (x.shape[3] + 2 * pad - kw) // sw + 1
    g = make_input(rng, x.shape[:2] + (oh, ow), np.float64 if x.dtype.kind in "iu" else x.dtype, "normal")
    g.ravel()[::7] = -0.0
    return g


def _shape(width, kh, big):
    h = 2 * 3 + kh                                          # a few output rows
    planes = 3 if not big else -(-numba_loops.PARALLEL_MIN_ELEMENTS // (h * width)) + 1
    return (1, planes, h, width) if not big else (2, -(-planes // 2), h, width)


@pytest.mark.parametrize("threads", THREADS)
@pytest.mark.parametrize("op, dtype, values, cfg", CASES)
def test_fast_kernels_match_generic_and_reference(op, dtype, values, cfg, threads):
    kh, kw, sw, pad, count, width = cfg
    big = threads > 1
    rng = np.random.default_rng([count, width, kh, kw, sw, pad, big])
    x = make_input(rng, _shape(width, kh, big), dtype, values)
    if big:
        assert x.size >= numba_loops.PARALLEL_MIN_ELEMENTS
    g = _grad(rng, x, kh, kw, sw, pad)
    with poolkit.threads(threads):
        fast = _pool(op, x, g, kh, kw, sw, pad, False, "numba")
        generic = _pool(op, x, g, kh, kw, sw, pad, True, "numba")
    what = f"{_id(cfg)} {op} {np.dtype(dtype).name} at {threads} threads"
    names = ("y", "indices", "gradient")
    for name, a, b in zip(names, fast, generic):
        if a is not None:
            assert_identical(a, b, f"{what}: fast vs generic {name}")
    if op == "max":
        for name, a, b in zip(names, fast, _pool(op, x, g, kh, kw, sw, pad, False, "reference")):
            assert_identical(a, b, f"{what}: fast vs reference {name}")


@pytest.mark.parametrize("dtype", sorted({np.dtype(d) for _, d, _, _ in ROWS}, key=str), ids=str)
def test_configs_take_every_fast_path(dtype):
    """The table above reaches each way of cutting a row (else the test would prove less than it says)."""
    configs = list(_configs(dtype))
    counts = {c[4] for c in configs}
    for what in {dtype, _grad_dtype(dtype)}:                # forward cuts, then backward cuts
        narrow, wide = _simd.widths(what)
        assert narrow < wide
        assert min(counts) < narrow <= max(counts)                                 # virtual rows, blocks
        assert narrow in counts and wide in counts                                 # a block exactly
        assert any(narrow < n < wide and n % narrow for n in counts)               # moved-back narrow block
        assert any(n > wide and n % wide for n in counts)                          # moved-back wide block
        assert any(n > wide and n % wide % narrow for n in counts)                 # wide, then a skipping block
    # exact tilings (the write-once backward) and overlapping windows (the adding one) both occur
    assert any(kw == sw and w == (n - 1) * sw + kw for kh, kw, sw, p, n, w in configs)
    assert any(kw > sw for kh, kw, sw, p, n, w in configs)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64, np.int32, np.int16, np.int8, np.uint8],
                         ids=lambda d: np.dtype(d).name)
def test_block_widths_agree_in_python_and_numba(dtype):
    """``block_width`` (in kernels) gives what ``widths`` (in Python) says, for every kernel dtype."""
    @numba.njit
    def kernel_widths(a):
        return _simd.block_width(a, NARROW), _simd.block_width(a, WIDE)

    assert kernel_widths(np.zeros(1, dtype=dtype)) == _simd.widths(dtype)
    narrow, wide = _simd.widths(dtype)
    assert 4 <= narrow <= 8 and wide == 2 * narrow   # rows of 8 to 15 windows take vector blocks


@pytest.mark.parametrize("features, bits", [("+sse2,+avx,+avx2,+avx512f", 512), ("+sse2,+avx,+avx2,-avx512f", 256),
                                            ("+sse2,+avx,-avx2", 128), ("+neon", 128), ("", 128)])
def test_register_bits_from_llvm_features(features, bits):
    assert _simd._register_bits(features) == bits


@pytest.mark.parametrize("bits", [128, 256, 512])
@pytest.mark.parametrize("itemsize", [1, 2, 4, 8])
def test_narrow_block_is_one_register_within_4_to_8_lanes(itemsize, bits):
    narrow, wide = _simd._widths(itemsize, bits)
    assert narrow == min(max(bits // (8 * itemsize), 4), 8) and wide == 2 * narrow


# A vector block written for the test: its parameters are in another order than any of
# poolkit's, and code generation finds them by name.
@_simd._block
def _copy_row_block(typingctx, out, o0, x, x0, rs, KIND):
    """Copy ``x[x0 + rs : x0 + rs + NB]`` (window row 1 of a block) to ``out[o0 : o0 + NB]``."""
    kind, = _simd._literals(KIND=KIND)

    def emit(gen):
        gen.store(gen.load("x", gen.row("x0", 1)), "out", gen.intp("o0"))

    return _simd._kind_width(x, kind), emit


@_simd._block
def _misnamed_block(typingctx, out, o0, x, x0, rs, KIND):
    kind, = _simd._literals(KIND=KIND)

    def emit(gen):
        gen.store(gen.load("y", gen.intp("x0")), "out", gen.intp("o0"))   # no argument is named "y"

    return _simd._kind_width(x, kind), emit


def test_vector_blocks_read_arguments_by_name():
    @numba.njit
    def copy(out, o0, x, x0, rs):
        _copy_row_block(out, o0, x, x0, rs, WIDE)

    x = np.arange(100, dtype=np.float32)
    out = np.zeros(40, dtype=np.float32)
    copy(out, 3, x, 5, 20)
    nb = _simd.widths(np.float32)[WIDE]
    expected = np.zeros(40, dtype=np.float32)
    expected[3:3 + nb] = x[25:25 + nb]
    np.testing.assert_array_equal(out, expected)


def test_vector_block_reading_an_unknown_argument_fails_to_compile():
    @numba.njit
    def copy(out, o0, x, x0, rs):
        _misnamed_block(out, o0, x, x0, rs, NARROW)

    x = np.arange(100, dtype=np.float32)
    # code generation runs when the caller compiles, before anything runs
    with pytest.raises(KeyError, match=r"no argument 'y'.*'out', 'o0', 'x', 'x0', 'rs', 'KIND'"):
        copy(np.zeros(40, dtype=np.float32), 3, x, 5, 20)


def test_block_kind_must_be_narrow_or_wide():
    @numba.njit
    def copy(out, x):
        _copy_row_block(out, 0, x, 0, 1, 2)

    with pytest.raises(numba.core.errors.TypingError, match="`KIND` must be NARROW"):
        copy(np.zeros(40), np.zeros(40))
