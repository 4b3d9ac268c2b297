"""Shared test utilities: random cases, PyTorch calls, brute-force references, comparisons.

Nothing here needs an oracle: PyTorch lives in ``oracle.py`` (loaded when a test
first uses it), so a missing torch skips only the tests that call it.

Everything here is independent of poolkit's own geometry code on purpose: the
output-size formula, the windows and the max/mean rules are written again from
PyTorch's definitions, slowly and plainly, so that a bug in ``poolkit.core.geometry``
cannot hide itself by also being in the expectation.

Conventions
-----------
* Arrays are built channels-first, ``(N, C, *S)`` or unbatched ``(C, *S)``;
  :func:`to_last` / :func:`to_first` move the channel axis for channels-last runs.
* Random inputs come from :func:`make_input` with a ``values`` kind:
  ``"distinct"`` (tie-free, for gradients), ``"normal"``, ``"ties"`` (few
  distinct values, signed zeros), ``"nan"`` (ties plus NaN), ``"inf"`` (ties plus +-inf).
* Every random thing takes a ``numpy.random.Generator`` with a fixed seed.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

import poolkit

BACKENDS = ("reference", "img2col", "numba", "auto")
KERNEL_BACKENDS = ("reference", "img2col", "numba")      # "auto" is one of these
RANKS = (1, 2, 3)
FIRST = {1: "NCL", 2: "NCHW", 3: "NCDHW"}
LAST = {1: "NLC", 2: "NHWC", 3: "NDHWC"}
FLOATS = (np.float32, np.float64)
INTS = (np.int8, np.int16, np.int32, np.int64, np.uint8)
VALUE_KINDS = ("distinct", "normal", "ties", "nan", "inf")


# --------------------------------------------------------------------------- #
# inputs
# --------------------------------------------------------------------------- #
def make_input(rng: np.random.Generator, shape, dtype=np.float64, values: str = "normal") -> np.ndarray:
    """A C-contiguous array of ``shape`` and ``dtype`` with the kind of values named by ``values``."""
    shape = tuple(shape)
    n = int(np.prod(shape, dtype=np.int64))
    dt = np.dtype(dtype)
    if values == "distinct":
        # A permutation of integers: no two elements equal, every gap >= 1 (safe for finite
        # differences), exactly representable in float16 while n <= 2048.
        a = rng.permutation(n).astype(np.float64) - n // 2
    elif values == "normal":
        a = rng.standard_normal(n)
    elif values in ("ties", "nan", "inf"):
        # Few distinct values: many ties, including -0.0 against +0.0 (equal, different bits).
        a = rng.integers(-2, 3, size=n).astype(np.float64)
        a[a == 0] *= rng.choice([-1.0, 1.0], size=int((a == 0).sum()))
        if values == "nan":
            a[rng.random(n) < 0.2] = np.nan
        elif values == "inf":
            a[rng.random(n) < 0.15] = -np.inf
            a[rng.random(n) < 0.05] = np.inf
    else:
        raise ValueError(values)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        a = np.nan_to_num(a, nan=0, posinf=info.max, neginf=info.min)
        a = np.clip(a, info.min, info.max)
    return a.reshape(shape).astype(dt)


def to_last(x: np.ndarray, rank: int) -> np.ndarray:
    """Channels-first ``(N, C, *S)``/``(C, *S)`` -> channels-last, as a C-contiguous copy."""
    return np.ascontiguousarray(np.moveaxis(x, x.ndim - rank - 1, -1))


def to_first(y: np.ndarray, rank: int) -> np.ndarray:
    """Channels-last -> channels-first (a view)."""
    return np.moveaxis(y, -1, y.ndim - rank - 1)


# --------------------------------------------------------------------------- #
# PyTorch's rules, written out
# --------------------------------------------------------------------------- #
def as_tuple(v, rank):
    if v is None:
        return None
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * rank


def torch_out_size(size, k, s, p, d, ceil_mode) -> int:
    """PyTorch's ``pooling_output_shape`` (aten/src/ATen/native/Pool.h)."""
    num = size + 2 * p - d * (k - 1) - 1 + ((s - 1) if ceil_mode else 0)
    out = num // s + 1                                   # div_rtn: floor division
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def adaptive_bounds(size: int, out: int, o: int):
    """PyTorch's adaptive window ``[floor(o*size/out), ceil((o+1)*size/out))``."""
    return (o * size) // out, -((-(o + 1) * size) // out)


# --------------------------------------------------------------------------- #
# random strided cases
# --------------------------------------------------------------------------- #
class _Layouts:
    """Moving a case's data between poolkit's layout and channels-first (shared by the case kinds)."""

    def make_x(self, rng):
        """(x for poolkit in its layout, the same data channels-first)."""
        x_first = make_input(rng, self.shape, self.dtype, self.values)
        return (to_last(x_first, self.rank) if self.channels_last else x_first), x_first

    def to_first(self, y):
        return to_first(y, self.rank) if self.channels_last else y

    def to_user(self, y_first):
        return to_last(y_first, self.rank) if self.channels_last else np.ascontiguousarray(y_first)


@dataclass
class Case(_Layouts):
    """One strided pooling call: arguments, input description and how to run it."""

    op: str                                   # "max" or "avg"
    rank: int
    shape: tuple                              # channels-first
    kernel_size: object
    stride: object = None
    padding: object = 0
    dilation: object = 1
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: Optional[int] = None
    dtype: type = np.float64
    channels_last: bool = False
    backend: str = "auto"
    values: str = "normal"
    extra: dict = field(default_factory=dict)

    # per-dim tuples -------------------------------------------------------
    @property
    def k(self):
        return as_tuple(self.kernel_size, self.rank)

    @property
    def s(self):
        st = as_tuple(self.stride, self.rank)
        return self.k if st is None else st

    @property
    def p(self):
        return as_tuple(self.padding, self.rank)

    @property
    def d(self):
        return as_tuple(self.dilation, self.rank)

    @property
    def spatial(self):
        return tuple(self.shape[-self.rank:])

    def torch_valid(self) -> bool:
        """Whether PyTorch accepts this call (its shape checks, written out)."""
        k, s, p, d = self.k, self.s, self.p, self.d
        if min(k) < 1 or min(s) < 1 or min(d) < 1 or min(p) < 0:
            return False
        if any(pi > ki // 2 for pi, ki in zip(p, k)):
            return False
        if self.op == "avg" and self.rank == 3 and any(n < ki for n, ki in zip(self.spatial, k)):
            return False                      # avg_pool3d's own extra rule
        if self.divisor_override == 0:
            return False
        return all(torch_out_size(n, *a, self.ceil_mode) >= 1
                   for n, a in zip(self.spatial, zip(k, s, p, d)))

    def out_spatial(self):
        return tuple(torch_out_size(n, ki, si, pi, di, self.ceil_mode)
                     for n, ki, si, pi, di in zip(self.spatial, self.k, self.s, self.p, self.d))

    # calls ----------------------------------------------------------------
    def torch_kwargs(self):
        kw = dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding,
                  ceil_mode=self.ceil_mode)
        if self.stride is None:
            del kw["stride"]
        if self.op == "max":
            kw["dilation"] = self.dilation
        else:
            kw["count_include_pad"] = self.count_include_pad
            if self.rank > 1:
                kw["divisor_override"] = self.divisor_override
        return kw

    def pk_kwargs(self):
        kw = self.torch_kwargs()
        kw["backend"] = self.backend
        kw["data_format"] = LAST[self.rank] if self.channels_last else FIRST[self.rank]
        return kw

    def layer_kwargs(self):
        """Layers take the functional keywords (minus ``return_indices``, which is per layer)."""
        return self.pk_kwargs()

    def torch_fn(self):
        from oracle import F
        return getattr(F, f"{self.op}_pool{self.rank}d")

    def pk_fn(self):
        return getattr(poolkit, f"{self.op}_pool{self.rank}d")

    def layer_cls(self):
        return getattr(poolkit, f"{'Max' if self.op == 'max' else 'Avg'}Pool{self.rank}d")

    def __str__(self):
        f = {k: getattr(self, k) for k in ("op", "rank", "shape", "kernel_size", "stride", "padding",
                                            "dilation", "ceil_mode", "count_include_pad",
                                            "divisor_override", "channels_last", "backend", "values")}
        return f"Case({f}, dtype={np.dtype(self.dtype).name})"


def _per_dim(rng, rank, draw):
    """An int for all dims, or (sometimes) a tuple with one value per dim."""
    if rng.random() < 0.5:
        return draw()
    return tuple(draw() for _ in range(rank))


def sample_case(rng: np.random.Generator, op: str, rank: int, *, invalid: float = 0.0,
                dtypes=FLOATS, backends=BACKENDS, values=("normal", "ties", "nan", "distinct"),
                max_size=None) -> Case:
    """A random strided case that PyTorch accepts (or, with probability ``invalid``, maybe not).

    Valid cases are drawn until PyTorch's rules hold; an "invalid" draw breaks one
    argument on purpose (zero/negative kernel, stride or dilation, negative or too
    large padding, a window longer than the padded input, avg_pool3d's size rule).
    """
    max_size = max_size or {1: 9, 2: 7, 3: 5}[rank]
    while True:
        batched = rng.random() < 0.75
        spatial = tuple(int(v) for v in rng.integers(1, max_size + 1, size=rank))
        lead = ((int(rng.integers(1, 3)),) if batched else ()) + (int(rng.integers(1, 4)),)
        kernel = _per_dim(rng, rank, lambda: int(rng.integers(1, 4)))
        k = as_tuple(kernel, rank)
        stride = None if rng.random() < 0.25 else _per_dim(rng, rank, lambda: int(rng.integers(1, 4)))
        if rng.random() < 0.4:
            padding = 0
        elif isinstance(kernel, int):
            padding = int(rng.integers(0, kernel // 2 + 1))
        else:
            padding = tuple(int(rng.integers(0, ki // 2 + 1)) for ki in k)
        dilation = 1
        if op == "max" and rng.random() < 0.5:
            dilation = _per_dim(rng, rank, lambda: int(rng.integers(1, 4)))
        case = Case(op, rank, lead + spatial, kernel, stride, padding, dilation,
                    ceil_mode=bool(rng.random() < 0.4),
                    count_include_pad=bool(rng.random() < 0.5),
                    divisor_override=(int(rng.integers(1, 7)) if op == "avg" and rank > 1
                                      and rng.random() < 0.2 else None),
                    dtype=dtypes[int(rng.integers(len(dtypes)))],
                    channels_last=bool(rng.random() < 0.35),
                    backend=backends[int(rng.integers(len(backends)))],
                    values=values[int(rng.integers(len(values)))])
        if invalid and rng.random() < invalid:
            return _break(rng, case)
        if case.torch_valid():
            return case


def _break(rng, case: Case) -> Case:
    """``case`` with one argument pushed outside what PyTorch accepts (usually)."""
    rank = case.rank
    how = rng.choice(["kernel0", "kernel_neg", "stride0", "stride_neg", "dilation0", "pad_neg",
                      "pad_big", "too_small", "divisor0"])
    if how == "kernel0":
        return replace(case, kernel_size=0, padding=0)
    if how == "kernel_neg":
        return replace(case, kernel_size=-2, padding=0)
    if how == "stride0":
        return replace(case, stride=(1,) * (rank - 1) + (0,))
    if how == "stride_neg":
        return replace(case, stride=-1)
    if how == "dilation0" and case.op == "max":
        return replace(case, dilation=0)
    if how == "pad_neg":
        return replace(case, padding=-1)
    if how == "pad_big":
        k = case.k
        return replace(case, padding=tuple(ki // 2 + 1 for ki in k))
    if how == "divisor0" and case.op == "avg" and rank > 1:
        return replace(case, divisor_override=0)
    # a window longer than the padded input along the last axis
    size = case.shape[-1]
    return replace(case, kernel_size=(1,) * (rank - 1) + (size + 3,), padding=0, stride=1, dilation=1)


# --------------------------------------------------------------------------- #
# brute-force references (slow, float64 or the input's integer dtype)
# --------------------------------------------------------------------------- #
def _scan_max(values: np.ndarray, flat_index: np.ndarray):
    """PyTorch's max scan over taps (last axis): first tap starts, ``v > best or isnan(v)`` replaces.

    Returns (max, index) per row; ties keep the first maximum, NaN windows keep the last NaN.
    """
    best = values[:, 0].copy()
    best_i = np.full(values.shape[0], flat_index[0], dtype=np.int64)
    for j in range(1, values.shape[1]):
        v = values[:, j]
        take = (v > best) | (v != v)
        best = np.where(take, v, best)
        best_i = np.where(take, flat_index[j], best_i)
    return best, best_i


def naive_pool(x: np.ndarray, case: Case):
    """Brute-force strided pooling of a channels-first ``x`` by the textbook definition.

    Returns ``(out, indices)`` (indices None for avg). A max window with no tap
    inside the input gives the dtype's lowest value and index -1.
    """
    rank = case.rank
    spatial = x.shape[-rank:]
    lead = x.shape[:-rank]
    planes = x.reshape((-1,) + spatial)
    outs = case.out_spatial()
    is_float = x.dtype.kind == "f"
    res = np.empty((planes.shape[0],) + outs, dtype=x.dtype if case.op == "max" else np.float64)
    idx = np.empty((planes.shape[0],) + outs, dtype=np.int64)
    for o in itertools.product(*(range(m) for m in outs)):
        starts = [oi * si - pi for oi, si, pi in zip(o, case.s, case.p)]
        taps, inpad = [], 0
        for j in itertools.product(*(range(ki) for ki in case.k)):
            pos = tuple(st + ji * di for st, ji, di in zip(starts, j, case.d))
            # count_include_pad counts taps up to the end of the right padding only
            if all(-pi <= q < ni + pi for q, ni, pi in zip(pos, spatial, case.p)):
                inpad += 1
            if all(0 <= q < ni for q, ni in zip(pos, spatial)):
                taps.append(pos)
        sel = (slice(None),) + o
        if case.op == "max":
            if not taps:
                res[sel] = -np.inf if is_float else np.iinfo(x.dtype).min
                idx[sel] = -1
                continue
            vals = np.stack([planes[(slice(None),) + q] for q in taps], axis=1)
            flat = np.array([np.ravel_multi_index(q, spatial) for q in taps])
            res[sel], idx[sel] = _scan_max(vals, flat)
        else:
            vals = np.stack([planes[(slice(None),) + q].astype(np.float64) for q in taps], axis=1)
            if case.divisor_override:
                div = case.divisor_override
            else:
                div = inpad if case.count_include_pad else len(taps)
            res[sel] = vals.sum(axis=1) / div
    out = res.reshape(lead + outs)
    return out, (idx.reshape(lead + outs) if case.op == "max" else None)


def naive_adaptive(x: np.ndarray, op: str, out_sizes):
    """Brute-force adaptive pooling of channels-first ``x`` over its last ``len(out_sizes)`` axes."""
    rank = len(out_sizes)
    spatial = x.shape[-rank:]
    planes = x.reshape((-1,) + spatial)
    res = np.empty((planes.shape[0],) + tuple(out_sizes), dtype=x.dtype if op == "max" else np.float64)
    idx = np.empty(res.shape, dtype=np.int64)
    for o in itertools.product(*(range(m) for m in out_sizes)):
        ranges = [range(*adaptive_bounds(ni, mi, oi)) for ni, mi, oi in zip(spatial, out_sizes, o)]
        taps = list(itertools.product(*ranges))
        vals = np.stack([planes[(slice(None),) + q] for q in taps], axis=1)
        sel = (slice(None),) + o
        if op == "max":
            flat = np.array([np.ravel_multi_index(q, spatial) for q in taps])
            res[sel], idx[sel] = _scan_max(vals, flat)
        else:
            res[sel] = vals.astype(np.float64).mean(axis=1)
    shape = x.shape[:-rank] + tuple(out_sizes)
    return res.reshape(shape), idx.reshape(shape)


# --------------------------------------------------------------------------- #
# comparisons
# --------------------------------------------------------------------------- #
_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64, 1: np.uint8}


def bits(a: np.ndarray) -> np.ndarray:
    """The raw bits of ``a`` (distinguishes -0.0 from 0.0 and NaN payloads)."""
    a = np.ascontiguousarray(a)
    return a.view(_UINT[a.dtype.itemsize])


def assert_identical(a, b, what=""):
    """Same shape, dtype and bits."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{what}: values differ"
    assert np.array_equal(bits(a), bits(b)), f"{what}: bits differ (signed zero or NaN payload)"


def tol(dtype):
    """(rtol, atol) for results computed in ``dtype`` but summed in another order."""
    dt = np.dtype(dtype)
    return {np.dtype(np.float64): (1e-12, 1e-12), np.dtype(np.float32): (2e-6, 2e-6),
            np.dtype(np.float16): (2e-3, 2e-3)}[dt]


def assert_close(actual, expected, dtype=None, what="", scale=1.0):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    rtol, atol = tol(dtype or actual.dtype)
    np.testing.assert_allclose(actual.astype(np.float64), expected.astype(np.float64),
                               rtol=rtol * scale, atol=atol * scale, equal_nan=True, err_msg=what)


def empty_windows(indices: np.ndarray) -> bool:
    """Whether some max window lies wholly in padding (poolkit reports index -1 there).

    PyTorch reports a garbage index for such a window and its backward then writes
    outside the gradient buffer, so never run PyTorch's backward when this is True.
    """
    return bool((np.asarray(indices) < 0).any())


def finite_diff_grad(f, x: np.ndarray, eps: float) -> np.ndarray:
    """Central differences of the scalar function ``f`` at ``x`` (float64), one element at a time."""
    g = np.zeros_like(x, dtype=np.float64)
    xp = x.astype(np.float64).copy()
    for i in np.ndindex(x.shape):
        old = xp[i]
        xp[i] = old + eps
        fp = f(xp)
        xp[i] = old - eps
        fm = f(xp)
        xp[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def naive_max_backward(grad: np.ndarray, indices: np.ndarray, x_shape, rank: int) -> np.ndarray:
    """Scatter-add ``grad`` to the flat plane ``indices`` (channels-first), in output order; -1 skipped."""
    spatial = tuple(x_shape[-rank:])
    plane = int(np.prod(spatial))
    g2 = grad.reshape(-1, int(np.prod(grad.shape[-rank:])))
    i2 = indices.reshape(g2.shape)
    out = np.zeros((g2.shape[0], plane), dtype=grad.dtype)
    for b in range(g2.shape[0]):
        for p in range(g2.shape[1]):                 # output order, one add at a time
            if i2[b, p] >= 0:
                out[b, i2[b, p]] += g2[b, p]
    return out.reshape(tuple(x_shape))


@dataclass
class AdaptiveCase(_Layouts):
    """One adaptive pooling call."""

    op: str
    rank: int
    shape: tuple                  # channels-first
    output_size: object           # int or tuple with ints / None
    dtype: type = np.float64
    channels_last: bool = False
    backend: str = "auto"
    values: str = "normal"

    @property
    def out_spatial(self):
        sizes = self.shape[-self.rank:]
        o = as_tuple(self.output_size, self.rank)
        return tuple(ni if oi is None else oi for ni, oi in zip(sizes, o))

    @property
    def data_format(self):
        return LAST[self.rank] if self.channels_last else FIRST[self.rank]

    def pk_fn(self):
        return getattr(poolkit, f"adaptive_{self.op}_pool{self.rank}d")

    def torch_fn(self):
        from oracle import F
        return getattr(F, f"adaptive_{self.op}_pool{self.rank}d")

    def layer_cls(self):
        return getattr(poolkit, f"Adaptive{'Max' if self.op == 'max' else 'Avg'}Pool{self.rank}d")


def sample_adaptive_case(rng: np.random.Generator, op: str, rank: int, *, dtypes=FLOATS, backends=BACKENDS,
                         values=("normal", "ties", "nan", "distinct")) -> AdaptiveCase:
    """A random adaptive case: output sizes below, equal to and above the input size, None (rank > 1)."""
    max_size = {1: 12, 2: 8, 3: 5}[rank]
    spatial = tuple(int(v) for v in rng.integers(1, max_size + 1, size=rank))
    lead = ((int(rng.integers(1, 3)),) if rng.random() < 0.75 else ()) + (int(rng.integers(1, 4)),)

    def one(size):
        if rank > 1 and rng.random() < 0.15:
            return None                                   # keep this axis's size
        return int(rng.integers(1, size + 3))             # may exceed the input: windows repeat
    if rng.random() < 0.3:
        output_size = int(rng.integers(1, min(spatial) + 3))
    else:
        output_size = tuple(one(s_) for s_ in spatial)
    return AdaptiveCase(op, rank, lead + spatial, output_size,
                        dtype=dtypes[int(rng.integers(len(dtypes)))],
                        channels_last=bool(rng.random() < 0.35),
                        backend=backends[int(rng.integers(len(backends)))],
                        values=values[int(rng.integers(len(values)))])
