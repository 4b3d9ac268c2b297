"""The N-d core every public function and layer goes through.

``prepare`` validates a call and fixes everything about it except the data (a
:class:`Prepared`); ``run_forward`` pools an array with it and ``run_backward``
pushes a gradient back.  Layers cache the :class:`Prepared` per input shape so
that a training loop pays for the validation once.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, Optional, Protocol, Sequence, Tuple

import numpy as np

from .. import backends as _backends
from ..core.geometry import Axis, as_bool, check_int64_product
from ..core.layout import DtypePolicy, Layout, as_input_array, dtype_policy, is_dask_array, resolve_axes
from ..core.plan import Plan, divs_dtype, make_plan, offsets_to_indices

__all__ = ["Prepared", "Context", "Windows", "prepare", "run_forward", "run_backward", "check_backend",
           "backend_module", "check_float_grad", "check_nan_policy", "check_divisor_override", "check_mask",
           "empty_windows", "split_masked", "finish_forward"]


class Windows(Protocol):
    """What :func:`prepare` needs from a call's window arguments (see :mod:`poolkit.core.windows`)."""

    def __call__(self, sizes: Sequence[int]) -> Tuple[Axis, ...]: ...

    @property
    def sizing_argument(self) -> Tuple[str, object]: ...


def check_backend(backend) -> str:
    """The backend's own name for ``backend`` ("auto" resolves here), or a ValueError naming it."""
    return backend_module(backend).name


def backend_module(name) -> ModuleType:
    """The backend module for a name from :func:`check_backend` (or any accepted name)."""
    return _backends.get_backend(name)


def check_float_grad(g: np.ndarray, name: str = "grad_output") -> np.ndarray:
    """``g`` if its dtype is floating point (bfloat16 included), else a TypeError naming it."""
    if g.dtype.kind != "f" and g.dtype.name != "bfloat16":
        raise TypeError(f"`{name}` must be floating point, but got dtype={g.dtype}.")
    return g


def check_nan_policy(nan_policy) -> bool:
    """True for ``"ignore"``, False for ``"propagate"``."""
    if nan_policy not in ("propagate", "ignore"):
        raise ValueError(f"`nan_policy` must be 'propagate' or 'ignore', but got nan_policy={nan_policy!r}.")
    return nan_policy == "ignore"


def check_divisor_override(divisor_override) -> Optional[int]:
    if divisor_override is None:
        return None
    if isinstance(divisor_override, (bool, np.bool_)) or not isinstance(divisor_override, (int, np.integer)):
        raise TypeError(f"`divisor_override` must be None or a non-zero int, "
                        f"but got divisor_override={divisor_override!r}.")
    if divisor_override == 0:
        raise ValueError("`divisor_override` must be non-zero (it divides every window sum), "
                         "but got divisor_override=0.")
    return int(divisor_override)


@dataclass(frozen=True, eq=False)
class Prepared:
    """A validated pooling call, minus the data."""

    op: str
    plan: Plan
    layout: Layout
    out_layout: Layout
    policy: DtypePolicy
    backend_name: str                # by name: a module cannot be pickled or deep-copied
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]

    @property
    def backend(self) -> ModuleType:
        return backend_module(self.backend_name)

    @property
    def in_sizes(self):
        return self.layout.sizes

    @property
    def out_sizes(self):
        return self.out_layout.sizes


@dataclass(eq=False)
class Context:
    """What backward needs from a forward call: the prepared call and the saved state.

    ``saved`` is the winning-tap offsets for max pooling (one byte per output
    for windows under 255 taps), None for average pooling, or the divisors and
    NaN mask for average pooling with ``nan_policy="ignore"``.
    """

    prepared: Prepared
    saved: Any
    # Forward left elements out (nan_policy="ignore" or a mask): sums keep (divisors, ignored).
    ignoring: bool = False
    # The offsets array forward made and sealed (read-only): while ``saved`` is still that
    # object, unaltered, backward may skip checking each offset against its window.
    sealed: Any = None

    @property
    def offsets_sealed(self) -> bool:
        s = self.saved
        return s is self.sealed and isinstance(s, np.ndarray) and not s.flags.writeable

    @property
    def nbytes(self) -> int:
        """Bytes of saved state (what a layer keeps between forward and backward)."""
        s = self.saved
        if s is None:
            return 0
        if isinstance(s, np.ndarray):
            return s.nbytes
        return sum(a.nbytes for a in s)

    def check_saved(self) -> None:
        """Raise ValueError unless ``saved`` has the shapes and dtypes its forward call made.

        Runs before any backward kernel (the kernels index with the saved values);
        the values themselves are checked by the kernels.
        """
        p = self.prepared
        plan = p.plan
        if plan.op in _WINNERS:
            expected = [("winning-tap offsets", plan.out_shape, plan.off_dtype)]
        elif self.ignoring:
            expected = [("divisors", plan.out_shape, divs_dtype(p.policy.compute)),
                        ("mask of ignored elements", plan.in_shape, np.dtype(bool))]
        else:
            expected = []
        arrays = [] if self.saved is None else [self.saved] if isinstance(self.saved, np.ndarray) \
            else list(self.saved) if isinstance(self.saved, tuple) else [self.saved]
        if len(arrays) != len(expected):
            raise ValueError(f"the saved state of this {p.op}-pooling forward call is corrupt: expected "
                             f"{' and '.join(e[0] for e in expected) or 'nothing'}, but got {type(self.saved).__name__}.")
        for a, (what, shape, dtype) in zip(arrays, expected):
            if not isinstance(a, np.ndarray) or a.shape != tuple(shape) or a.dtype != dtype:
                got = (f"{type(a).__name__}" if not isinstance(a, np.ndarray)
                       else f"dtype={a.dtype} of shape {a.shape}")
                raise ValueError(f"the saved state of this {p.op}-pooling forward call is corrupt: its {what} "
                                 f"must be {dtype} of shape {tuple(shape)}, but got {got}.")


def _check_sizes(shape, axes, channel_axis, name="x"):
    for a in axes:
        if shape[a] < 1:
            raise ValueError(f"`{name}` must have non-empty pooled dimensions, but got shape {tuple(shape)} "
                             f"(axis {a} has size 0).")
    if channel_axis is not None and shape[channel_axis] < 1:
        raise ValueError(f"`{name}` has an empty channel axis (shape {tuple(shape)}); only the batch "
                         f"axis may be empty.")


# The plan's reduction per op: a sum is a mean that does not divide.
_PLAN_OP = {"max": "max", "min": "min", "avg": "avg", "sum": "avg"}
_WINNERS = ("max", "min")                 # reductions that keep the offset of a winning tap


def prepare(op: str, x: np.ndarray, rank: int, windows: Windows, *, data_format, axes, backend,
            nan_policy="propagate", count_include_pad=True, divisor_override=None) -> Prepared:
    """Validate one call (everything but the values in ``x``) and build its plan.

    ``op``: "max", "min", "avg" or "sum".
    """
    policy = dtype_policy(x.dtype, op)
    pooled, channel_axis = resolve_axes(x.shape, rank, data_format, axes)
    _check_sizes(x.shape, pooled, channel_axis)
    backend_name = check_backend(backend)
    nan_ignore = check_nan_policy(nan_policy)
    cip = as_bool(count_include_pad, "count_include_pad")
    override = check_divisor_override(divisor_override)
    layout = Layout.make(tuple(x.shape), pooled)
    win = windows(layout.sizes)
    # Offsets of the winning taps (and flat positions) are int64: the window and the result must fit.
    taps = check_int64_product([a.taps for a in win], "kernel_size", tuple(a.taps for a in win), "a window of taps")
    if op == "sum" and policy.compute.kind == "i" and x.dtype.itemsize <= 4 and taps <= 2**20:
        # Sums that a float type holds exactly run in it, on the vectorised kernels: integers of up
        # to 16 bits over windows of up to 256 taps stay below 2**24 (float32, half the memory
        # traffic), of up to 32 bits over up to 2**20 taps below 2**53 (float64).
        exact32 = x.dtype.itemsize <= 2 and taps <= 256
        policy = DtypePolicy(np.dtype(np.float32 if exact32 else np.float64), policy.result)
    out_shape = layout.user_shape(tuple(a.out for a in win))
    # A bare callable of sizes (tests pass PoolSpec.axes) has no sizing argument: name the input then.
    name, value = getattr(windows, "sizing_argument", ("x", f"array of shape {tuple(x.shape)}"))
    check_int64_product(out_shape + (policy.compute.itemsize,), name, value, "an output (bytes)")
    plan = make_plan(_PLAN_OP[op], tuple(win), layout.batch, layout.channels,
                     nan_ignore and policy.compute.kind == "f", cip, override, op != "sum")
    out_layout = Layout.make(out_shape, pooled)
    return Prepared(op, plan, layout, out_layout, policy, backend_name, tuple(x.shape), out_shape)


def check_mask(mask, x_shape, name: str = "mask", lazy: bool = False) -> np.ndarray:
    """``mask`` as a bool array broadcast to ``x_shape`` (True: the element takes part), or an error.

    ``lazy``: the input is a Dask array, and the mask may be one too.
    """
    m = as_input_array(mask, name, lazy=lazy)
    if m.dtype != np.bool_:
        raise TypeError(f"`{name}` must be a bool array (True where an element takes part), "
                        f"but got dtype={m.dtype}.")
    try:
        return np.broadcast_to(m, x_shape)
    except ValueError:
        raise ValueError(f"`{name}` must be broadcastable to the input's shape {tuple(x_shape)}, "
                         f"but got shape {m.shape}.") from None


def split_masked(x, mask, name: str = "x") -> Tuple[Any, Optional[np.ndarray], bool]:
    """``(x, mask, masked_input)``: the data, the validity mask to pool with (or None), and whether
    ``x`` was a ``np.ma.MaskedArray`` (then the result is one too).

    A masked array's hidden elements are left out (``~getmaskarray(x)``), and so are the
    False elements of ``mask`` (bool, broadcastable to ``x``; True: the element takes part).
    """
    masked_input = isinstance(x, np.ma.MaskedArray)
    valid = None
    if masked_input:
        valid = ~np.ma.getmaskarray(x)
        x = x.data
    x = as_input_array(x, name, lazy=True)
    if mask is not None:
        m = check_mask(mask, x.shape, lazy=is_dask_array(x))
        valid = m if valid is None else valid & m
    return x, valid, masked_input


def finish_forward(p: Prepared, x, mask, masked_input: bool, return_indices: bool, keep: bool):
    """:func:`run_forward`, with the result a masked array for a masked input: masked where a window
    has no element taking part."""
    y, idx, ctx = run_forward(p, x, mask=mask, return_indices=return_indices, keep=keep or masked_input)
    if masked_input:
        y = np.ma.MaskedArray(y, mask=empty_windows(ctx))
        if not keep:
            ctx = None
    return y, idx, ctx


def run_forward(p: Prepared, x: np.ndarray, *, mask: Optional[np.ndarray] = None, return_indices: bool = False,
                keep: bool = True):
    """Pool ``x``. Returns ``(y, indices or None, Context or None)``.

    ``mask`` (from :func:`check_mask`, or None): False elements are left out of their
    windows. A Dask array is pooled lazily, chunk by chunk (:mod:`poolkit.engine.lazy`), with no context.
    """
    if is_dask_array(x):
        from . import lazy as _dask
        return _dask.run_forward(p, x, mask=mask, return_indices=return_indices, keep=keep)
    plan = p.plan
    x5 = p.layout.to_canonical(x)
    saved: Any                        # offsets (max), None or (divisors, ignored) (sums)
    if x5.dtype != p.policy.compute:    # float16/bfloat16 -> float32, bool -> uint8, integer sums -> exact type
        x5 = x5.astype(p.policy.compute)
    skip = None
    if mask is not None:
        skip = np.ascontiguousarray(~p.layout.to_canonical(mask))
    ignoring = plan.nan_ignore or skip is not None
    if x5.size == 0 or plan.out_shape[0] * plan.out_shape[4] == 0:
        out5 = np.zeros(plan.out_shape, dtype=x5.dtype)
        if plan.op in _WINNERS:
            saved = np.zeros(plan.out_shape, dtype=plan.off_dtype)
        elif ignoring:
            saved = (np.zeros(plan.out_shape, divs_dtype(x5.dtype)), np.zeros(plan.in_shape, bool))
        else:
            saved = None
    elif plan.op in _WINNERS:
        out5, saved = p.backend.max_forward(x5, plan, skip)          # max or min
    else:
        out5, saved = p.backend.avg_forward(x5, plan, skip)
    y = p.out_layout.from_canonical(out5, p.out_sizes)
    if p.policy.converts:
        y = y.astype(p.policy.result)
    indices = None
    if return_indices:
        indices = p.out_layout.from_canonical(offsets_to_indices(saved, plan), p.out_sizes)
    if not keep:
        return y, indices, None
    if plan.op in _WINNERS and saved.base is None:
        saved.setflags(write=False)            # sealed: see Context.offsets_sealed
        return y, indices, Context(p, saved, ignoring, sealed=saved)
    return y, indices, Context(p, saved, ignoring)


def empty_windows(ctx: Context) -> np.ndarray:
    """``bool`` of the output's shape: windows with no element taking part (all masked, ignored or padding)."""
    p, plan = ctx.prepared, ctx.prepared.plan
    if plan.op in _WINNERS:
        e5 = ctx.saved == plan.sentinel
    else:
        v = [a.valid > 0 for a in plan.axes]
        e5 = ~(v[0][:, None, None] & v[1][None, :, None] & v[2][None, None, :])[None, ..., None]
        if ctx.ignoring:
            e5 = e5 | np.isnan(ctx.saved[0])
        e5 = np.broadcast_to(e5, plan.out_shape)
    return p.out_layout.from_canonical(np.ascontiguousarray(e5), p.out_sizes)


def check_grad(grad_output, shape, dtype, name="grad_output") -> np.ndarray:
    """The upstream gradient as an array of the expected shape and dtype, or a clear error."""
    g = as_input_array(grad_output, name)
    if tuple(g.shape) != tuple(shape):
        raise ValueError(f"`{name}` must have the shape of the pooled output, {tuple(shape)}, "
                         f"but got shape {tuple(g.shape)}.")
    if dtype.kind in "iu":
        # Integer max pooling: the gradient is real-valued; it keeps its own float dtype.
        check_float_grad(g, name)
    elif g.dtype != dtype:
        raise TypeError(f"`{name}` must have the output's dtype, {dtype}, but got dtype={g.dtype}.")
    return g


def run_backward(ctx: Context, grad_output, name: str = "grad_output") -> np.ndarray:
    """Gradient with respect to the input of the forward call that made ``ctx``."""
    p = ctx.prepared
    g = check_grad(grad_output, p.out_shape, p.policy.result, name)
    ctx.check_saved()
    gpol = dtype_policy(g.dtype, "avg")          # float16/bfloat16 gradients compute in float32
    g5 = p.out_layout.to_canonical(g)
    if gpol.converts:
        g5 = g5.astype(gpol.compute)
    if g5.size == 0 or p.plan.in_size == 0:
        gx5 = np.zeros(p.plan.in_shape, dtype=g5.dtype)
    elif p.plan.op in _WINNERS:             # max or min: the gradient goes to the winners
        gx5 = p.backend.max_backward(g5, ctx.saved, p.plan, ctx.offsets_sealed)
    else:
        gx5 = p.backend.avg_backward(g5, ctx.saved, p.plan)
    gx = p.layout.from_canonical(gx5, p.in_sizes)
    return gx.astype(gpol.result) if gpol.converts else gx
