"""The front door: every pooling call is validated here, once, before any kernel runs.

:func:`prepare` checks a windowed call -- strided, adaptive, global, fractional,
spatial pyramid and Lp pooling all come through it, with one of the three kinds
of :mod:`poolkit.core.windows` -- and fixes everything about it except the data
(a :class:`Prepared`).  :func:`prepare_scatter` does the same for the calls that
send values to flat indices (``max_unpool*`` and the max backward functions).
Both read the op's rules from its :class:`~poolkit.core.reductions.Reduction`
and resolve the axes the same way.  Layers keep their :class:`Prepared` per
input shape, so that a training loop pays for the validation once.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any, NamedTuple, Optional, Protocol, Sequence, Tuple

import numpy as np

from .. import backends as _backends
from ..core.args import as_bool, check_divisor_override, check_int64_product, check_nan_policy
from ..core.geometry import Axis
from ..core.layout import DtypePolicy, Layout, as_input_array, dtype_policy, is_dask_array, resolve_axes
from ..core.plan import Plan, make_plan
from ..core.reductions import MAX, WIDENED, Reduction

__all__ = ["Windows", "Prepared", "Scatter", "prepare", "prepare_scatter", "check_backend", "check_float_grad",
           "check_grad", "check_mask", "split_masked", "check_sizes"]


class Windows(Protocol):
    """What :func:`prepare` needs from a call's window arguments (see :mod:`poolkit.core.windows`)."""

    def __call__(self, sizes: Sequence[int]) -> Tuple[Axis, ...]: ...

    @property
    def sizing_argument(self) -> Tuple[str, object]: ...


def check_backend(backend) -> str:
    """The backend's own name for ``backend`` ("auto" resolves here), or a ValueError naming it."""
    return _backends.get_backend(backend).name


def check_float_grad(g: np.ndarray, name: str = "grad_output") -> np.ndarray:
    """``g`` if its dtype is floating point (bfloat16 included), else a TypeError naming it."""
    if g.dtype.kind != "f" and g.dtype.name != "bfloat16":
        raise TypeError(f"`{name}` must be floating point, but got dtype={g.dtype}.")
    return g


def check_grad(grad_output, shape, dtype, name="grad_output") -> np.ndarray:
    """The upstream gradient as an array of the expected shape and dtype, or a clear error."""
    g = as_input_array(grad_output, name)
    if tuple(g.shape) != tuple(shape):
        raise ValueError(f"`{name}` must have the shape of the pooled output, {tuple(shape)}, "
                         f"but got shape {tuple(g.shape)}.")
    if dtype.kind in "iub":
        # Integer max pooling: the gradient is real-valued; it keeps its own float dtype.
        check_float_grad(g, name)
    elif g.dtype != dtype:
        raise TypeError(f"`{name}` must have the output's dtype, {dtype}, but got dtype={g.dtype}.")
    return g


def check_sizes(shape, axes, channel_axis, name="x") -> None:
    """Pooled axes and the channel axis must be non-empty (only batch axes may be)."""
    for a in axes:
        if shape[a] < 1:
            raise ValueError(f"`{name}` must have non-empty pooled dimensions, but got shape {tuple(shape)} "
                             f"(axis {a} has size 0).")
    if channel_axis is not None and shape[channel_axis] < 1:
        raise ValueError(f"`{name}` has an empty channel axis (shape {tuple(shape)}); only the batch "
                         f"axis may be empty.")


@dataclass(frozen=True, eq=False)
class Prepared:
    """A validated pooling call, minus the data."""

    plan: Plan
    layout: Layout
    out_layout: Layout
    policy: DtypePolicy
    backend_name: str                # by name: a module cannot be pickled or deep-copied
    in_shape: Tuple[int, ...]
    out_shape: Tuple[int, ...]
    windows: Any = None              # the Windows the plan came from (fractional calls read their starts)

    @property
    def reduction(self) -> Reduction:
        return self.plan.reduction

    @property
    def backend(self) -> Any:
        """The object whose contract functions run this call's reduction on its backend (found once)."""
        impl = self.__dict__.get("_impl")
        if impl is None:
            impl = self.__dict__["_impl"] = _backends.implementation(self.backend_name, self.plan.reduction)
        return impl

    def __getstate__(self) -> dict:
        # Pickled and copied with the backend by name (a module cannot be pickled); found again on demand.
        state = dict(self.__dict__)
        state.pop("_impl", None)
        return state

    @property
    def in_sizes(self):
        return self.layout.sizes

    @property
    def out_sizes(self):
        return self.out_layout.sizes


def prepare(reduction: Reduction, x: np.ndarray, rank: int, windows: Windows, *, data_format, axes, backend,
            nan_policy="propagate", count_include_pad=True, divisor_override=None) -> Prepared:
    """Validate one call (everything but the values in ``x``) and build its plan."""
    policy = dtype_policy(x.dtype, reduction)
    pooled, channel_axis = resolve_axes(x.shape, rank, data_format, axes)
    check_sizes(x.shape, pooled, channel_axis)
    backend_name = check_backend(backend)
    nan_ignore = check_nan_policy(nan_policy)
    cip = as_bool(count_include_pad, "count_include_pad")
    override = check_divisor_override(divisor_override)
    layout = Layout.make(tuple(x.shape), pooled)
    win = windows(layout.sizes)
    # Offsets of the winning taps (and flat positions) are int64: the window and the result must fit.
    taps = check_int64_product([a.taps for a in win], "kernel_size", tuple(a.taps for a in win), "a window of taps")
    if reduction.integers == WIDENED:                        # integer sums: the exact type for these windows
        policy = dtype_policy(x.dtype, reduction, taps)
    out_shape = layout.user_shape(tuple(a.out for a in win))
    # A bare callable of sizes (tests pass PoolSpec.axes) has no sizing argument: name the input then.
    name, value = getattr(windows, "sizing_argument", ("x", f"array of shape {tuple(x.shape)}"))
    check_int64_product(out_shape + (policy.compute.itemsize,), name, value, "an output (bytes)")
    plan = make_plan(reduction, tuple(win), layout.batch, layout.channels, nan_ignore and policy.compute.kind == "f",
                     cip, override)
    out_layout = Layout.make(out_shape, pooled)
    return Prepared(plan, layout, out_layout, policy, backend_name, tuple(x.shape), out_shape, windows)


# --------------------------------------------------------------------------- #
# values sent to flat indices: max_unpool and the max backward functions
# --------------------------------------------------------------------------- #
class Scatter(NamedTuple):
    """A validated scatter: ``values`` (of ``src``'s shape) sent to flat in-plane indices of an array of
    ``dst``'s shape (the two differ only along the pooled axes).  A tuple: made on every call."""

    src: Layout
    dst: Layout
    policy: DtypePolicy
    backend_name: str
    plane: int                       # elements of one pooled plane of the target: the index range

    @property
    def backend(self) -> ModuleType:
        return _backends.get_backend(self.backend_name)


def prepare_scatter(v, idx, shape: Tuple[int, ...], rank: int, *, data_format, axes, backend,
                    values_name: str) -> Scatter:
    """Validate a scatter of ``v`` at ``idx`` (arrays, NumPy or Dask) into an array of ``shape``."""
    pooled, _ = resolve_axes(shape, rank, data_format, axes, name="input_shape")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"`indices` must be an integer array, but got dtype={idx.dtype}.")
    if idx.shape != v.shape:
        raise ValueError(f"`indices` must have the shape of `{values_name}`, {v.shape}, but got {idx.shape}.")
    if v.ndim != len(shape) or any(v.shape[a] != shape[a] for a in range(len(shape)) if a not in pooled):
        raise ValueError(f"`{values_name}` of shape {v.shape} does not match `input_shape`={shape} "
                         f"outside the pooled axes {pooled}.")
    plane = int(np.prod([shape[a] for a in pooled], dtype=np.int64))
    return Scatter(Layout.make(tuple(v.shape), pooled), Layout.make(tuple(shape), pooled),
                   dtype_policy(v.dtype, MAX), check_backend(backend), plane)


# --------------------------------------------------------------------------- #
# masks
# --------------------------------------------------------------------------- #
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
