"""Explicit vector code for blocks of :data:`BLOCK` strided windows in one output row.

LLVM's loop vectoriser only enters loops longer than its vector width times
its interleave count, and small feature maps have short rows (14 outputs on a
28x28 map), so :mod:`._fast` cannot rely on it there.  These Numba intrinsics
emit the vector code directly, as LLVM IR on ``<BLOCK x T>`` vectors that LLVM
lowers to whatever the CPU has (one AVX-512 register, two AVX2 registers,
four SSE2 registers): each input row of a block is one unaligned vector load,
the window taps are lanes picked out of it with a shuffle, and the block's
outputs are one vector store.  A row of ``n >= BLOCK`` outputs is covered by
blocks at ``0, BLOCK, ...`` and a last one moved back to ``n - BLOCK``; the
overlap recomputes a few outputs and writes the same values again.

The semantics are the scalar kernels', bit for bit: taps in order (H, then W);
a max tap wins when it is the first, greater, or NaN; a sum adds the taps in
that order and then divides.  Window shape and strides are compile-time
constants (literal integer arguments), so each intrinsic is straight-line code.

Every load and store touches only window taps of the block, so a block whose
windows lie inside the input reads and writes inside the arrays.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core.errors import RequireLiteralValue, TypingError
from numba.extending import intrinsic

__all__ = ["BLOCK", "max_block", "avg_block", "max_grad_block", "avg_grad_block"]

# Outputs per block: 8 lanes fill one AVX-512 register of float64 (two of AVX2).
BLOCK = 8

_I32 = ir.IntType(32)


def _literal(ty, name: str) -> int:
    if not isinstance(ty, types.IntegerLiteral):
        raise RequireLiteralValue(f"`{name}` must be a compile-time integer constant")
    return ty.literal_value


def _check(arrays, indices):
    for a in arrays:
        if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"):
            raise TypingError(f"vector blocks need 1-D contiguous arrays, got {a}")
    for i in indices:
        if not isinstance(i, types.Integer):
            raise TypingError(f"vector block offsets must be integers, got {i}")


def _vector_ptr(context, builder, aty, aval, start, sty, count: int):
    """Pointer to ``<count x T>`` at element ``start`` (an int of type ``sty``) of 1-D array ``aval``."""
    data = context.make_array(aty)(context, builder, aval).data
    start = context.cast(builder, start, sty, types.intp)
    vty = ir.VectorType(context.get_data_type(aty.dtype), count)
    return builder.bitcast(builder.gep(data, [start]), vty.as_pointer())


def _row_start(context, builder, x0, x0ty, rs, rsty, jh: int):
    x0 = context.cast(builder, x0, x0ty, types.intp)
    rs = context.cast(builder, rs, rsty, types.intp)
    return builder.add(x0, builder.mul(rs, ir.Constant(rs.type, jh)))


def _lanes(builder, row, first: int, step: int):
    """Lanes ``first, first + step, ...`` (BLOCK of them) of vector ``row``."""
    mask = ir.Constant(ir.VectorType(_I32, BLOCK), [first + t * step for t in range(BLOCK)])
    return builder.shuffle_vector(row, ir.Constant(row.type, ir.Undefined), mask)


def _taps(context, builder, sig, args, KH: int, KW: int, SW: int):
    """Yield ``(jh, jw, vector of that tap over the block)`` in scan order."""
    x, x0, rs = args[0], args[1], args[2]
    xty, x0ty, rsty = sig.args[0], sig.args[1], sig.args[2]
    length = (BLOCK - 1) * SW + KW                  # the elements of one input row the block reads
    for jh in range(KH):
        start = _row_start(context, builder, x0, x0ty, rs, rsty, jh)
        row = builder.load(_vector_ptr(context, builder, xty, x, start, types.intp, length), align=1)
        for jw in range(KW):
            yield jh, jw, _lanes(builder, row, jw, SW)


def _splat(builder, value, vty):
    v = builder.insert_element(ir.Constant(vty, ir.Undefined), value, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(vty, ir.Undefined), ir.Constant(ir.VectorType(_I32, BLOCK),
                                                                                   [0] * BLOCK))


def _interleave(builder, vectors):
    """``[v0, v1, ...]`` (each ``<BLOCK x T>``) -> ``<n*BLOCK x T>`` with ``v_j[t]`` at ``t*n + j``."""
    n = len(vectors)
    if n == 1:
        return vectors[0]
    # Concatenate pairwise up to one vector (an undefined partner pads an odd count), then permute.
    parts = list(vectors)
    while len(parts) > 1:
        if len(parts) % 2:
            parts.append(ir.Constant(parts[0].type, ir.Undefined))
        width = parts[0].type.count
        both = ir.Constant(ir.VectorType(_I32, 2 * width), list(range(2 * width)))
        parts = [builder.shuffle_vector(parts[i], parts[i + 1], both) for i in range(0, len(parts), 2)]
    order = ir.Constant(ir.VectorType(_I32, n * BLOCK), [j * BLOCK + t for t in range(BLOCK) for j in range(n)])
    return builder.shuffle_vector(parts[0], ir.Constant(parts[0].type, ir.Undefined), order)


@intrinsic(prefer_literal=True)
def max_block(typingctx, x, x0, rs, out, off, o0, KH, KW, SW):
    """Max of BLOCK windows: taps at ``x[x0 + jh*rs + t*SW + jw]``; ``out/off[o0 + t]`` get max and tap."""
    kh, kw, sw = _literal(KH, "KH"), _literal(KW, "KW"), _literal(SW, "SW")
    _check((x, out, off), (x0, rs, o0))
    if x.dtype != out.dtype or not isinstance(off.dtype, types.Integer):
        raise TypingError("max_block: `out` must have the dtype of `x`, `off` an integer dtype")

    def codegen(context, builder, sig, args):
        kty = ir.VectorType(context.get_data_type(off.dtype), BLOCK)
        m = k = None
        for jh, jw, v in _taps(context, builder, sig, args, kh, kw, sw):
            if m is None:
                m, k = v, ir.Constant(kty, [0] * BLOCK)
                continue
            if isinstance(x.dtype, types.Float):
                c = builder.or_(builder.fcmp_ordered(">", v, m), builder.fcmp_unordered("uno", v, v))
            elif x.dtype.signed:
                c = builder.icmp_signed(">", v, m)
            else:
                c = builder.icmp_unsigned(">", v, m)
            m = builder.select(c, v, m)
            k = builder.select(c, ir.Constant(kty, [jh * kw + jw] * BLOCK), k)
        o0ty = sig.args[5]
        builder.store(m, _vector_ptr(context, builder, out, args[3], args[5], o0ty, BLOCK), align=1)
        builder.store(k, _vector_ptr(context, builder, off, args[4], args[5], o0ty, BLOCK), align=1)
        return context.get_dummy_value()

    return types.void(x, x0, rs, out, off, o0, KH, KW, SW), codegen


@intrinsic(prefer_literal=True)
def avg_block(typingctx, x, x0, rs, out, o0, dv, KH, KW, SW):
    """Mean of BLOCK windows: ``out[o0 + t] = (0 + taps in scan order) / dv``."""
    kh, kw, sw = _literal(KH, "KH"), _literal(KW, "KW"), _literal(SW, "SW")
    _check((x, out), (x0, rs, o0))
    if not isinstance(x.dtype, types.Float) or out.dtype != x.dtype or dv != x.dtype:
        raise TypingError("avg_block: `x`, `out` and `dv` must share one floating-point dtype")

    def codegen(context, builder, sig, args):
        vty = ir.VectorType(context.get_data_type(x.dtype), BLOCK)
        s = ir.Constant(vty, [0.0] * BLOCK)
        for _, _, v in _taps(context, builder, sig, args, kh, kw, sw):
            s = builder.fadd(s, v)
        s = builder.fdiv(s, _splat(builder, args[5], vty))
        builder.store(s, _vector_ptr(context, builder, out, args[3], args[4], sig.args[4], BLOCK), align=1)
        return context.get_dummy_value()

    return types.void(x, x0, rs, out, o0, dv, KH, KW, SW), codegen


def _grad_rows(context, builder, gx, gxv, x0, x0ty, rs, rsty, KH, row_of):
    # Store row jh of the block's windows (KW * BLOCK contiguous elements) for each jh.
    for jh in range(KH):
        row = row_of(jh)
        start = _row_start(context, builder, x0, x0ty, rs, rsty, jh)
        builder.store(row, _vector_ptr(context, builder, gx, gxv, start, types.intp, row.type.count), align=1)


@intrinsic(prefer_literal=True)
def max_grad_block(typingctx, g, off, o0, gx, x0, rs, KH, KW):
    """Max backward of BLOCK windows that tile the input (stride = kernel along W).

    Each tap of window ``t`` gets ``0 + g[o0 + t]`` if it was the winner ``off[o0 + t]``, else 0.
    """
    kh, kw = _literal(KH, "KH"), _literal(KW, "KW")
    _check((g, off, gx), (o0, x0, rs))
    if not isinstance(g.dtype, types.Float) or gx.dtype != g.dtype or not isinstance(off.dtype, types.Integer):
        raise TypingError("max_grad_block: `g` and `gx` must share a float dtype, `off` be integer")

    def codegen(context, builder, sig, args):
        gv_, offv, o0v, gxv, x0v, rsv = args[:6]
        vty = ir.VectorType(context.get_data_type(g.dtype), BLOCK)
        kty = ir.VectorType(context.get_data_type(off.dtype), BLOCK)
        zero = ir.Constant(vty, [0.0] * BLOCK)
        gvec = builder.load(_vector_ptr(context, builder, g, gv_, o0v, sig.args[2], BLOCK), align=1)
        gvec = builder.fadd(zero, gvec)              # 0 + g, as an accumulation would give (-0 -> +0)
        kvec = builder.load(_vector_ptr(context, builder, off, offv, o0v, sig.args[2], BLOCK), align=1)

        def row_of(jh):
            return _interleave(builder, [
                builder.select(builder.icmp_unsigned("==", kvec, ir.Constant(kty, [jh * kw + jw] * BLOCK)),
                               gvec, zero)
                for jw in range(kw)])

        _grad_rows(context, builder, gx, gxv, x0v, sig.args[4], rsv, sig.args[5], kh, row_of)
        return context.get_dummy_value()

    return types.void(g, off, o0, gx, x0, rs, KH, KW), codegen


@intrinsic(prefer_literal=True)
def avg_grad_block(typingctx, g, o0, gx, x0, rs, dv, KH, KW):
    """Average backward of BLOCK windows that tile the input: every tap gets ``0 + g / dv``."""
    kh, kw = _literal(KH, "KH"), _literal(KW, "KW")
    _check((g, gx), (o0, x0, rs))
    if not isinstance(g.dtype, types.Float) or gx.dtype != g.dtype or dv != g.dtype:
        raise TypingError("avg_grad_block: `g`, `gx` and `dv` must share one floating-point dtype")

    def codegen(context, builder, sig, args):
        gv_, o0v, gxv, x0v, rsv, dvv = args[:6]
        vty = ir.VectorType(context.get_data_type(g.dtype), BLOCK)
        gvec = builder.load(_vector_ptr(context, builder, g, gv_, o0v, sig.args[1], BLOCK), align=1)
        share = builder.fadd(ir.Constant(vty, [0.0] * BLOCK), builder.fdiv(gvec, _splat(builder, dvv, vty)))
        row = _interleave(builder, [share] * kw)
        _grad_rows(context, builder, gx, gxv, x0v, sig.args[3], rsv, sig.args[4], kh, lambda jh: row)
        return context.get_dummy_value()

    return types.void(g, o0, gx, x0, rs, dv, KH, KW), codegen
