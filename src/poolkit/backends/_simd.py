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
stride, block width and operation are compile-time constants (literal integer
arguments), so each call is straight-line code.

Every load and store touches only window taps of the block, so a block whose
windows lie inside the input stays inside the arrays.

Arguments shared by the intrinsics: 1-D contiguous arrays; ``x0`` the element
of the first tap of the block's first window, ``rs`` the distance between
window rows, ``o0`` the block's first output; ``off`` the winning taps (read
by max only) and ``dv`` the divisor (read by average only): the operation
``OP`` (:data:`MAX` or :data:`AVG`) picks.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.errors import RequireLiteralValue, TypingError
from numba.extending import intrinsic

__all__ = ["MAX", "AVG", "WIDE", "NARROW", "pool_block", "grad_tile_block", "grad_add_block"]

MAX, AVG = 0, 1

# Block widths: 16 lanes fill an AVX-512 register of float32; rows of 8 to 15 outputs
# (a 28x28 map pooled 2x2 has 14) take the narrow blocks.
WIDE, NARROW = 16, 8

_I32 = ir.IntType(32)


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
    if op not in (MAX, AVG):
        raise TypingError(f"vector blocks: unknown OP {op}")


class _Gen:
    """IR helpers for one intrinsic call: its context, builder, signature and arguments."""

    def __init__(self, context, builder, sig, args, nb: int):
        self.context, self.builder, self.sig, self.args, self.nb = context, builder, sig, args, nb

    def intp(self, i: int):
        return self.context.cast(self.builder, self.args[i], self.sig.args[i], types.intp)

    def vtype(self, dtype, count=None):
        return ir.VectorType(self.context.get_data_type(dtype), self.nb if count is None else count)

    def ptr(self, a: int, start, count=None):
        """Pointer to ``<count x T>`` at element ``start`` (intp) of array argument ``a``."""
        aty = self.sig.args[a]
        data = self.context.make_array(aty)(self.context, self.builder, self.args[a]).data
        return self.builder.bitcast(self.builder.gep(data, [start]), self.vtype(aty.dtype, count).as_pointer())

    def row(self, x0: int, rs: int, jh: int):
        """Start of window row ``jh``: ``x0 + jh * rs`` (argument positions ``x0``, ``rs``)."""
        return self.builder.add(self.intp(x0), self.builder.mul(self.intp(rs), ir.Constant(ir.IntType(64), jh)))

    def load(self, a: int, start, count=None):
        return self.builder.load(self.ptr(a, start, count), align=1)

    def store(self, value, a: int, start):
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

    def taps(self, a: int, start, KW: int, SW: int):
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

        Reads the backward intrinsics' arguments ``g`` (0), ``off`` (1), ``o0`` (2), ``dv`` (6).
        """
        o0 = self.intp(2)
        g = self.load(0, o0)
        if op == AVG:
            g = self.builder.fdiv(g, self.splat(self.args[6], g.type))
        return g, (self.load(1, o0) if op == MAX else None)

    def tap_gradients(self, op: int, g, k, jh: int, KW: int):
        """What each tap ``jw`` of window row ``jh`` receives: max, ``g`` where it won, else 0; average, ``g``."""
        if op == AVG:
            return [g] * KW
        zero = self.const(g.type, 0.0)
        return [self.builder.select(self.builder.icmp_unsigned("==", k, self.const(k.type, jh * KW + jw)), g, zero)
                for jw in range(KW)]


@intrinsic(prefer_literal=True)
def pool_block(typingctx, x, x0, rs, out, off, o0, dv, KH, KW, SW, NB, OP):
    """Pool NB windows SW apart: taps ``x[x0 + jh*rs + t*SW + jw]`` -> ``out[o0 + t]`` (and ``off[o0 + t]``)."""
    kh, kw, sw, nb, op = _literals(KH=KH, KW=KW, SW=SW, NB=NB, OP=OP)
    _check((x, out), (x0, rs, o0), dv, op, off)
    if op == AVG and not isinstance(x.dtype, types.Float):
        raise TypingError("pool_block: average pooling needs a floating-point dtype")

    def codegen(context, builder, sig, args):
        gen = _Gen(context, builder, sig, args, nb)
        kty = gen.vtype(off.dtype)
        acc = k = None
        for jh in range(kh):
            for jw, v in enumerate(gen.taps(0, gen.row(1, 2, jh), kw, sw)):
                if op == AVG:
                    acc = builder.fadd(gen.const(v.type, 0.0) if acc is None else acc, v)
                elif acc is None:
                    acc, k = v, gen.const(kty, 0)
                else:
                    if isinstance(x.dtype, types.Float):
                        c = builder.or_(builder.fcmp_ordered(">", v, acc), builder.fcmp_unordered("uno", v, v))
                    elif x.dtype.signed:
                        c = builder.icmp_signed(">", v, acc)
                    else:
                        c = builder.icmp_unsigned(">", v, acc)
                    acc = builder.select(c, v, acc)
                    k = builder.select(c, gen.const(kty, jh * kw + jw), k)
        if op == AVG:
            acc = builder.fdiv(acc, gen.splat(args[6], acc.type))
        else:
            gen.store(k, 4, gen.intp(5))
        gen.store(acc, 3, gen.intp(5))
        return context.get_dummy_value()

    return types.void(x, x0, rs, out, off, o0, dv, KH, KW, SW, NB, OP), codegen


@intrinsic(prefer_literal=True)
def grad_tile_block(typingctx, g, off, o0, gx, x0, rs, dv, KH, KW, NB, OP):
    """Backward of NB windows that tile the input (stride = kernel along W): each tap written once.

    Max: a tap gets ``0 + g[o0 + t]`` if it won (``off``), else 0. Average: ``0 + g / dv``.
    Rows ``jh`` of the block are ``KW * NB`` contiguous elements from ``x0 + jh * rs``.
    """
    kh, kw, nb, op = _literals(KH=KH, KW=KW, NB=NB, OP=OP)
    _check((g, gx), (o0, x0, rs), dv, op, off)
    if not isinstance(g.dtype, types.Float):
        raise TypingError("grad_tile_block: gradients must be floating point")

    def codegen(context, builder, sig, args):
        gen = _Gen(context, builder, sig, args, nb)
        gvec, kvec = gen.gradient(op)
        gvec = builder.fadd(gen.const(gvec.type, 0.0), gvec)   # 0 + g, as an accumulation gives (-0 -> +0)
        for jh in range(kh):
            gen.store(gen.interleave(gen.tap_gradients(op, gvec, kvec, jh, kw)), 3, gen.row(4, 5, jh))
        return context.get_dummy_value()

    return types.void(g, off, o0, gx, x0, rs, dv, KH, KW, NB, OP), codegen


@intrinsic(prefer_literal=True)
def grad_add_block(typingctx, g, off, o0, gx, x0, rs, dv, skip, KH, KW, SW, NB, OP):
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
    kh, kw, sw, nb, op = _literals(KH=KH, KW=KW, SW=SW, NB=NB, OP=OP)
    _check((g, gx), (o0, x0, rs, skip), dv, op, off)
    if not isinstance(g.dtype, types.Float):
        raise TypingError("grad_add_block: gradients must be floating point")

    def codegen(context, builder, sig, args):
        gen = _Gen(context, builder, sig, args, nb)
        gvec, kvec = gen.gradient(op)
        zero = gen.const(gvec.type, 0.0)
        lane = ir.Constant(ir.VectorType(ir.IntType(64), nb), list(range(nb)))
        live = builder.icmp_signed(">=", lane, gen.splat(gen.intp(7), lane.type))
        gvec = builder.select(live, gvec, zero)                  # the first `skip` windows add nothing
        length = (nb - 1) * sw + kw                     # elements of one gradient row the block adds to
        # in two parts: whole registers [0, nb*SW) and the KW - SW elements after them
        parts = [(0, nb * sw)] + ([(nb * sw, length)] if length > nb * sw else [])
        for jh in range(kh):
            start = gen.row(4, 5, jh)
            taps = gen.tap_gradients(op, gvec, kvec, jh, kw)
            for lo, hi in parts:
                at = builder.add(start, ir.Constant(start.type, lo))
                acc = gen.load(3, at, hi - lo)
                for jw in reversed(range(kw)):
                    lanes = [nb] * (hi - lo)                # lane nb of (v, zero) is a zero
                    for t in range(nb):
                        if lo <= t * sw + jw < hi:
                            lanes[t * sw + jw - lo] = t
                    if any(i != nb for i in lanes):
                        acc = builder.fadd(acc, gen.shuffle(taps[jw], zero, lanes))
                gen.store(acc, 3, at)
        return context.get_dummy_value()

    return types.void(g, off, o0, gx, x0, rs, dv, skip, KH, KW, SW, NB, OP), codegen
