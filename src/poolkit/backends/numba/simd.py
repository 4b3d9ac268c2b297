"""Explicit vector code for blocks of ``NB`` strided windows in one output row.

LLVM's loop vectoriser only enters loops longer than its vector width times
its interleave count, and small feature maps have short rows (14 outputs on a
28x28 map), so :mod:`._fast` cannot rely on it there.  These Numba intrinsics
emit the vector code directly, as LLVM IR on ``<NB x T>`` vectors that LLVM
lowers to whatever the CPU has (AVX-512, AVX2, SSE2 registers): each input row
of a block is one unaligned vector load, the window taps are lanes picked out
of it with shuffles, and the block's outputs are one vector store.

The semantics are the scalar kernels', bit for bit: taps in order (H, then W);
a max tap wins when it is the first, greater, or NaN; a sum adds the taps in
that order and then divides; gradients add in output order.  Window shape,
stride, block kind and operation are compile-time constants (literal integer
arguments), so each call is straight-line code.

Every load and store touches only window taps of the block, so a block whose
windows lie inside the input stays inside the arrays.

Arguments shared by the intrinsics: 1-D contiguous arrays; ``x0`` the element
of the first tap of the block's first window, ``rs`` the distance between
window rows, ``o0`` the block's first output; ``off`` the winning taps (read
by max only) and ``dv`` the divisor (read by average only): the operation
``OP`` (:data:`MAX`, :data:`MIN` or :data:`AVG`) picks.  Code generation reads them by
name (:class:`_Gen`), so the order of a signature is written in one place,
its ``def`` line.

Block widths depend on the dtype and the CPU (:func:`widths`): a block is
``KIND`` :data:`NARROW` or :data:`WIDE`, and its number of lanes is fixed when
Numba types the call, from the dtype of its first array.  :func:`block_width`
gives kernels the same number, so a row is cut to fit its blocks.
"""
from __future__ import annotations

import functools
import inspect
from typing import Tuple

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core.errors import RequireLiteralValue, TypingError
from numba.extending import intrinsic

from ...core.reductions import KERNEL_AVG as AVG, KERNEL_MAX as MAX, KERNEL_MIN as MIN   # the op table's variants

__all__ = ["MAX", "AVG", "MIN", "NARROW", "WIDE", "widths", "block_width", "pool_block", "grad_tile_block",
           "grad_add_block"]

#: Block kinds (the ``KIND`` argument): one vector register of lanes, and two.
NARROW, WIDE = 0, 1

_I32 = ir.IntType(32)


def _register_bits(features: str) -> int:
    """Bits of one vector register, from LLVM target features (``"+avx2,-avx512f,..."``)."""
    on = {f[1:] for f in features.split(",") if f.startswith("+")}
    if "avx512f" in on:
        return 512
    if "avx2" in on:             # 256-bit integer and float operations (AVX alone has float only)
        return 256
    return 128                   # SSE2, NEON: the floor of the targets LLVM vectorises for


@functools.lru_cache(maxsize=None)
def _host_register_bits() -> int:
    # The features Numba compiles for: NUMBA_CPU_FEATURES when set, else the host's.
    features = numba.config.CPU_FEATURES or llvm.get_host_cpu_features().flatten()
    return _register_bits(features)


def _widths(itemsize: int, bits: int) -> Tuple[int, int]:
    # Narrow: the lanes of one register, kept within 4..8.  At most 8, so that rows of 8 to
    # 15 windows (a 28x28 map pooled 2x2 has 14) take vector blocks whatever the dtype; at
    # least 4, as rows of 4 to 7 float64 windows measured faster in blocks of 4 than as
    # virtual rows or window by window.  Wide: two narrow blocks.
    narrow = min(max(bits // (8 * itemsize), 4), 8)
    return narrow, 2 * narrow


def widths(dtype) -> Tuple[int, int]:
    """``(narrow, wide)``: the lanes of the :data:`NARROW` and :data:`WIDE` blocks of ``dtype`` on this CPU.

    ``dtype`` is a NumPy dtype (or anything :class:`numpy.dtype` takes) or a Numba
    scalar type.  On an AVX2 CPU: float64 and int64 ``(4, 8)``, float32, int32 and
    narrower ``(8, 16)``.

    Examples
    --------
    >>> import numpy as np
    >>> narrow, wide = widths(np.float32)
    >>> 4 <= narrow <= 8 and wide == 2 * narrow
    True
    """
    if isinstance(dtype, types.Type):
        itemsize = dtype.bitwidth // 8
    else:
        itemsize = np.dtype(dtype).itemsize
    return _widths(itemsize, _host_register_bits())


def _literals(**named) -> list:
    values = []
    for name, ty in named.items():
        if not isinstance(ty, types.IntegerLiteral):
            raise RequireLiteralValue(f"`{name}` must be a compile-time integer constant")
        values.append(ty.literal_value)
    return values


def _check(arrays, indices, dv, op: int, off):
    for a in arrays:
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"):
            raise TypingError(f"vector blocks need 1-D contiguous arrays, got {a}")
    for i in indices:
        if not isinstance(i, types.Integer):
            raise TypingError(f"vector block offsets must be integers, got {i}")
    if dv != arrays[0].dtype or any(a.dtype != dv for a in arrays[1:]):
        raise TypingError("vector blocks: the value arrays and `dv` must share one dtype")
    if not isinstance(off.dtype, types.Integer):
        raise TypingError("vector blocks: `off` must have an integer dtype")
    if op not in (MAX, AVG, MIN):
        raise TypingError(f"vector blocks: unknown OP {op}")


def _kind_width(array, kind: int) -> int:
    """Lanes of a ``kind`` block over the dtype of ``array`` (a Numba array type)."""
    if kind not in (NARROW, WIDE):
        raise TypingError(f"vector blocks: `KIND` must be NARROW ({NARROW}) or WIDE ({WIDE}), got {kind}")
    return widths(array.dtype)[kind]


class _Gen:
    """IR helpers for one intrinsic call: its context, builder, signature and arguments.

    Arguments are named as in the intrinsic's ``def`` line (``names``): ``arg("x0")``,
    ``intp("rs")``, ``ptr("out", start)``.
    """

    def __init__(self, context, builder, sig, args, names: Tuple[str, ...], nb: int):
        self.context, self.builder, self.sig, self.args, self.nb = context, builder, sig, args, nb
        self.names = names

    def position(self, name: str) -> int:
        """Position of argument ``name`` in the call."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"vector block has no argument {name!r}; its arguments are {self.names}") from None

    def arg(self, name: str):
        return self.args[self.position(name)]

    def type(self, name: str):
        return self.sig.args[self.position(name)]

    def intp(self, name: str):
        return self.context.cast(self.builder, self.arg(name), self.type(name), types.intp)

    def vtype(self, dtype, count=None):
        return ir.VectorType(self.context.get_data_type(dtype), self.nb if count is None else count)

    def ptr(self, a: str, start, count=None):
        """Pointer to ``<count x T>`` at element ``start`` (intp) of the array argument named ``a``."""
        aty = self.type(a)
        data = self.context.make_array(aty)(self.context, self.builder, self.arg(a)).data
        return self.builder.bitcast(self.builder.gep(data, [start]), self.vtype(aty.dtype, count).as_pointer())

    def row(self, x0: str, jh: int):
        """Start of window row ``jh``: ``x0 + jh * rs`` (``x0`` names the start argument)."""
        return self.builder.add(self.intp(x0), self.builder.mul(self.intp("rs"), ir.Constant(ir.IntType(64), jh)))

    def load(self, a: str, start, count=None):
        return self.builder.load(self.ptr(a, start, count), align=1)

    def store(self, value, a: str, start):
        self.builder.store(value, self.ptr(a, start, value.type.count), align=1)

    def shuffle(self, v, w, lanes):
        return self.builder.shuffle_vector(v, w, ir.Constant(ir.VectorType(_I32, len(lanes)), lanes))

    def splat(self, value, vty):
        v = self.builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(_I32, 0))
        return self.shuffle(v, ir.Constant(vty, ir.Undefined), [0] * vty.count)

    def const(self, vty, value):
        return ir.Constant(vty, [value] * vty.count)

    def interleave(self, vectors):
        """``[v0, v1, ...]`` (each ``<nb x T>``) -> ``<n*nb x T>`` with ``v_j[t]`` at ``t*n + j``."""
        n, nb = len(vectors), self.nb
        parts = list(vectors)
        while len(parts) > 1:               # concatenate pairwise; an undefined partner pads odd counts
            if len(parts) % 2:
                parts.append(ir.Constant(parts[0].type, ir.Undefined))
            width = parts[0].type.count
            parts = [self.shuffle(parts[i], parts[i + 1], list(range(2 * width))) for i in range(0, len(parts), 2)]
        whole = parts[0]
        return self.shuffle(whole, ir.Constant(whole.type, ir.Undefined),
                            [j * nb + t for t in range(nb) for j in range(n)])

    def taps(self, a: str, start, KW: int, SW: int):
        """The KW tap vectors of one window row, tap ``jw`` being ``arr[start + t*SW + jw]`` for lane ``t``.

        Loads are ``nb * SW`` long (whole registers, not an odd length LLVM would assemble
        element by element), from offsets ``min(jw, KW - SW)``: one such load covers tap
        ``jw`` and ends at the block's last tap, never past it.
        """
        loads, out = {}, []
        for jw in range(KW):
            o = min(jw, KW - SW)
            if o not in loads:
                loads[o] = self.load(a, self.builder.add(start, ir.Constant(start.type, o)), self.nb * SW)
            row = loads[o]
            out.append(self.shuffle(row, ir.Constant(row.type, ir.Undefined),
                                    [t * SW + jw - o for t in range(self.nb)]))
        return out

    def gradient(self, op: int):
        """The block's gradients ``g[o0 + t]`` (divided by ``dv`` for average) and, for max, winners.

        Reads the backward intrinsics' arguments ``g``, ``off``, ``o0`` and ``dv``.
        """
        o0 = self.intp("o0")
        g = self.load("g", o0)
        if op == AVG:
            g = self.builder.fdiv(g, self.splat(self.arg("dv"), g.type))
        return g, (self.load("off", o0) if op == MAX else None)

    def tap_gradients(self, op: int, g, k, jh: int, KW: int):
        """What each tap ``jw`` of window row ``jh`` receives: max, ``g`` where it won, else 0; average, ``g``."""
        if op == AVG:
            return [g] * KW
        zero = self.const(g.type, 0.0)
        return [self.builder.select(self.builder.icmp_unsigned("==", k, self.const(k.type, jh * KW + jw)), g, zero)
                for jw in range(KW)]


def _block(defn):
    """Decorator: a vector block intrinsic whose code generation reads its arguments by name.

    ``defn(typingctx, <arguments>)`` checks the argument types and returns
    ``(nb, emit)``: the block's lanes and ``emit(gen)``, which writes the block's
    IR through a :class:`_Gen` that knows the arguments by the names of ``defn``'s
    parameters.  The intrinsic returns nothing.
    """
    names = tuple(inspect.signature(defn).parameters)[1:]

    @functools.wraps(defn)
    def typer(typingctx, *args):
        nb, emit = defn(typingctx, *args)

        def codegen(context, builder, sig, llargs):
            emit(_Gen(context, builder, sig, llargs, names, nb))
            return context.get_dummy_value()

        return types.void(*args), codegen

    return intrinsic(prefer_literal=True)(typer)


@intrinsic(prefer_literal=True)
def block_width(typingctx, a, KIND):
    """Lanes of a ``KIND`` block (:data:`NARROW` or :data:`WIDE`) over array ``a``'s dtype: a constant."""
    kind, = _literals(KIND=KIND)
    if not isinstance(a, types.Array):
        raise TypingError(f"block_width: `a` must be an array, got {a}")
    nb = _kind_width(a, kind)

    def codegen(context, builder, sig, args):
        return context.get_constant(types.intp, nb)

    return types.intp(a, KIND), codegen


@_block
def pool_block(typingctx, x, x0, rs, out, off, o0, dv, KH, KW, SW, KIND, OP):
    """Pool NB windows SW apart: taps ``x[x0 + jh*rs + t*SW + jw]`` -> ``out[o0 + t]`` (and ``off[o0 + t]``)."""
    kh, kw, sw, kind, op = _literals(KH=KH, KW=KW, SW=SW, KIND=KIND, OP=OP)
    _check((x, out), (x0, rs, o0), dv, op, off)
    if op == AVG and not isinstance(x.dtype, types.Float):
        raise TypingError("pool_block: average pooling needs a floating-point dtype")

    def emit(gen):
        builder = gen.builder
        kty = gen.vtype(off.dtype)
        acc = k = None
        for jh in range(kh):
            for jw, v in enumerate(gen.taps("x", gen.row("x0", jh), kw, sw)):
                if op == AVG:
                    acc = builder.fadd(gen.const(v.type, 0.0) if acc is None else acc, v)
                elif acc is None:
                    acc, k = v, gen.const(kty, 0)
                else:
                    better = "<" if op == MIN else ">"              # min: the order reversed
                    if isinstance(x.dtype, types.Float):
                        c = builder.or_(builder.fcmp_ordered(better, v, acc), builder.fcmp_unordered("uno", v, v))
                    elif x.dtype.signed:
                        c = builder.icmp_signed(better, v, acc)
                    else:
                        c = builder.icmp_unsigned(better, v, acc)
                    acc = builder.select(c, v, acc)
                    k = builder.select(c, gen.const(kty, jh * kw + jw), k)
        if op == AVG:
            acc = builder.fdiv(acc, gen.splat(gen.arg("dv"), acc.type))
        else:
            gen.store(k, "off", gen.intp("o0"))
        gen.store(acc, "out", gen.intp("o0"))

    return _kind_width(x, kind), emit


@_block
def grad_tile_block(typingctx, g, off, o0, gx, x0, rs, dv, KH, KW, KIND, OP):
    """Backward of NB windows that tile the input (stride = kernel along W): each tap written once.

    Max: a tap gets ``0 + g[o0 + t]`` if it won (``off``), else 0. Average: ``0 + g / dv``.
    Rows ``jh`` of the block are ``KW * NB`` contiguous elements from ``x0 + jh * rs``.
    """
    kh, kw, kind, op = _literals(KH=KH, KW=KW, KIND=KIND, OP=OP)
    _check((g, gx), (o0, x0, rs), dv, op, off)
    if not isinstance(g.dtype, types.Float):
        raise TypingError("grad_tile_block: gradients must be floating point")

    def emit(gen):
        gvec, kvec = gen.gradient(op)
        gvec = gen.builder.fadd(gen.const(gvec.type, 0.0), gvec)   # 0 + g, as an accumulation gives (-0 -> +0)
        for jh in range(kh):
            gen.store(gen.interleave(gen.tap_gradients(op, gvec, kvec, jh, kw)), "gx", gen.row("x0", jh))

    return _kind_width(g, kind), emit


@_block
def grad_add_block(typingctx, g, off, o0, gx, x0, rs, dv, skip, KH, KW, SW, KIND, OP):
    """Backward of NB windows that may overlap: ``gx`` taps ``+=`` gradients, in output order.

    Max adds ``g`` at each window's winner, average ``g / dv`` at every tap.  The blocks
    of one row must run left to right (a block adds to elements the previous one wrote);
    the first ``skip`` windows of the block add nothing (a last block moved back over
    windows already done).

    An element at ``t*SW + jw`` of a row gets window ``t``'s tap ``jw``; the windows
    reaching one element have ascending ``t`` exactly when ``jw`` descends, so adding
    one strided vector per ``jw``, from ``KW - 1`` down to 0, keeps the scalar order.
    Lanes that no window of that ``jw`` reaches add +0.0, which changes nothing: a
    gradient element is never -0.0 (it starts at +0.0 and only adds).
    """
    kh, kw, sw, kind, op = _literals(KH=KH, KW=KW, SW=SW, KIND=KIND, OP=OP)
    _check((g, gx), (o0, x0, rs, skip), dv, op, off)
    if not isinstance(g.dtype, types.Float):
        raise TypingError("grad_add_block: gradients must be floating point")
    nb = _kind_width(g, kind)

    def emit(gen):
        builder = gen.builder
        gvec, kvec = gen.gradient(op)
        zero = gen.const(gvec.type, 0.0)
        lane = ir.Constant(ir.VectorType(ir.IntType(64), nb), list(range(nb)))
        live = builder.icmp_signed(">=", lane, gen.splat(gen.intp("skip"), lane.type))
        gvec = builder.select(live, gvec, zero)                  # the first `skip` windows add nothing
        length = (nb - 1) * sw + kw                     # elements of one gradient row the block adds to
        # in two parts: whole registers [0, nb*SW) and the KW - SW elements after them
        parts = [(0, nb * sw)] + ([(nb * sw, length)] if length > nb * sw else [])
        for jh in range(kh):
            start = gen.row("x0", jh)
            taps = gen.tap_gradients(op, gvec, kvec, jh, kw)
            for lo, hi in parts:
                at = builder.add(start, ir.Constant(start.type, lo))
                acc = gen.load("gx", at, hi - lo)
                for jw in reversed(range(kw)):
                    lanes = [nb] * (hi - lo)                # lane nb of (v, zero) is a zero
                    for t in range(nb):
                        if lo <= t * sw + jw < hi:
                            lanes[t * sw + jw - lo] = t
                    if any(i != nb for i in lanes):
                        acc = builder.fadd(acc, gen.shuffle(taps[jw], zero, lanes))
                gen.store(acc, "gx", at)

    return nb, emit
