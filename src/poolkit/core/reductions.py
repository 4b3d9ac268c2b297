"""The op table: each reduction's rules, written once.

A :class:`Reduction` says everything about an op that is not window geometry:
who wins a window (or that its taps are summed), whether the sum is divided,
what padding holds and what a window with nothing in it gives, which dtypes it
takes and how it computes them, what forward keeps for backward, and which
function of the backend contract runs it.  The dtype policy
(:func:`poolkit.core.layout.dtype_policy`), the plan, the engine and every
backend read these fields; nothing below the public API compares op names.

=========  =====  =======  =========  ===========  =========  ==============
reduction  wins   divides  padding    empty        integers   keeps
=========  =====  =======  =========  ===========  =========  ==============
max        max    --       -inf/min   NaN/min      exact      winning taps
min        min    --       +inf/max   NaN/max      exact      winning taps
avg        --     yes      0          NaN          refused    divisors [#]_
sum        --     no       0          0            int64      divisors [#]_
lp         (composed on avg; ``norm_type=inf`` on max/min)    the input, sums, outputs
mode       most   --       not        dtype min    exact      nothing
           often           counted                 (floats refused)
=========  =====  =======  =========  ===========  =========  ==============

.. [#] Only when elements are left out (``nan_policy="ignore"`` or a mask):
   the divisor of each output and the mask of left-out elements.

*padding* is also what a window wholly in padding gives (integers: the dtype's
minimum or maximum); *empty* is what a window whose elements are all left out
gives.  bool computes as uint8 wherever integers are exact.  *mode* (label
images) gives each window's most frequent value, ties to the smallest; padding
takes no part, and a window with no element in it gives the dtype's minimum, as
integer max pooling does.

Adding a reduction
------------------
A reduction with kernels of its own adds one record here (with ``forward`` the
name of its contract function and ``kernels`` the module that holds its
``reference``, ``img2col`` and ``numba`` objects), its public functions in
:mod:`poolkit.functional` (whose ``__all__`` the package re-exports) and its
layers in :mod:`poolkit.layers`; :data:`MODE` below is one (its kernels are
:mod:`poolkit.backends.mode`).

Examples
--------
>>> import numpy as np
>>> MAX.padding(np.dtype(np.int8)), MIN.padding(np.dtype(np.float32)), SUM.empty(np.dtype(np.float64))
(np.int8(-128), np.float32(inf), np.float64(0.0))
>>> by_name("avg") is AVG, AVG.title
(True, 'average')
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np

__all__ = ["Reduction", "MAX", "MIN", "AVG", "SUM", "LP", "MODE", "REDUCTIONS", "by_name", "register", "lowest",
           "highest", "EXACT", "WIDENED", "REFUSED", "WINNERS", "DIVISORS", "NOTHING", "COMPOSED",
           "KERNEL_MAX", "KERNEL_AVG", "KERNEL_MIN"]

#: Compile-time variants of the Numba kernels (``OP`` in :mod:`poolkit.backends.numba`).
KERNEL_MAX, KERNEL_AVG, KERNEL_MIN = 0, 1, 2

#: How a reduction takes integer (and bool) input: computed as they are (bool as uint8), summed
#: exactly in int64, or refused (a mean of integers would have to round).
EXACT, WIDENED, REFUSED = "exact", "widened", "refused"

#: What forward keeps for backward: the offset of each window's winning tap; the divisors and the
#: mask of left-out elements (only when elements are left out); nothing; the composed ops' own state.
WINNERS, DIVISORS, NOTHING, COMPOSED = "winners", "divisors", "nothing", "composed"


@functools.lru_cache(maxsize=None)
def lowest(dtype: np.dtype):
    """What padding holds for max, and what a max over no element gives: -inf, or the integer minimum."""
    dtype = np.dtype(dtype)
    return dtype.type(-np.inf) if dtype.kind == "f" else dtype.type(np.iinfo(dtype).min)


@functools.lru_cache(maxsize=None)
def highest(dtype: np.dtype):
    """What padding holds for min, and what a min over no element gives: +inf, or the integer maximum."""
    dtype = np.dtype(dtype)
    return dtype.type(np.inf) if dtype.kind == "f" else dtype.type(np.iinfo(dtype).max)


@dataclass(frozen=True, eq=False)
class Reduction:
    """One op's rules (see the module's table).

    Attributes
    ----------
    name : str
        As users spell it (``warmup`` configs, ``explain --mode``) and as messages quote it.
    title : str
        For messages: "max", "average", "Lp", ...
    order : {1, -1, 0}
        1: the greatest tap wins (ties to the first in scan order, NaN wins); -1: the
        smallest wins, by the same rule; 0: no tap wins (the taps are summed, or the
        reduction has a rule of its own).
    divides : bool
        The window sum is divided by a divisor (a mean).
    empty_nan : bool
        A window whose elements are all left out gives NaN (integers: :meth:`padding`);
        False: it gives 0, as ``np.nansum`` does.
    floats, integers
        Which dtypes it takes: floats (float16 and bfloat16 compute in float32), and
        integers and bool as :data:`EXACT`, :data:`WIDENED` or :data:`REFUSED`.
    saved : str
        What forward keeps for backward: :data:`WINNERS`, :data:`DIVISORS`, :data:`NOTHING`
        or :data:`COMPOSED`.
    forward, backward : str
        The backend-contract functions that run it (:mod:`poolkit.backends`); "": it has
        none (composed of others, or no gradient).
    kernel : int or None
        The compile-time variant of the shared Numba kernels (:data:`KERNEL_MAX`, ...);
        None for a reduction with kernels of its own.
    kernels : str or None
        The module holding a reduction's own backends (``reference``, ``img2col`` and
        ``numba`` objects with its ``forward`` function); None: the shared backends.
    torch3d_rule : bool
        Under PyTorch's fixed-rank names, 3-D inputs smaller than the kernel are refused
        (``avg_pool3d``'s own rule).
    empty_lowest : bool
        A window with no element gives the dtype's minimum (:func:`lowest`) whatever ``order`` says.
    """

    name: str
    title: str
    order: int = 0
    divides: bool = False
    empty_nan: bool = True
    floats: bool = True
    integers: str = REFUSED
    saved: str = NOTHING
    forward: str = ""
    backward: str = ""
    kernel: Optional[int] = None
    kernels: Optional[str] = None
    torch3d_rule: bool = False
    empty_lowest: bool = False

    def __reduce__(self):
        # Pickled by name: an unpickled plan or context holds this process's own record.
        return by_name, (self.name,)

    def __repr__(self) -> str:
        return f"<poolkit reduction {self.name!r}>"

    @property
    def variant(self) -> int:
        """:attr:`kernel`, for the shared Numba kernels that run this reduction."""
        if self.kernel is None:
            raise TypeError(f"{self.title} pooling runs no variant of the shared kernels")
        return self.kernel

    @property
    def winners(self) -> bool:
        """Forward keeps the winning tap of each window (and can return indices)."""
        return self.saved == WINNERS

    def padding(self, dtype: np.dtype):
        """The value padding holds, and what a window wholly in padding gives."""
        if self.order > 0:
            return lowest(dtype)
        if self.order < 0:
            return highest(dtype)
        return np.dtype(dtype).type(0)

    def empty(self, dtype: np.dtype):
        """What a window whose elements are all left out gives: NaN (integers have none: :meth:`padding`),
        or 0 when ``empty_nan`` is False."""
        dtype = np.dtype(dtype)
        if self.empty_lowest:
            return lowest(dtype)
        if not self.empty_nan:
            return dtype.type(0)
        return dtype.type(np.nan) if dtype.kind == "f" else self.padding(dtype)

    @property
    def better(self) -> np.ufunc:
        """``better(v, best)``: does tap ``v`` beat the running winner (NaN aside)?"""
        return np.less if self.order < 0 else np.greater

    def scan(self, nan_ignore: bool) -> np.ufunc:
        """The ufunc whose ``reduce`` gives every window's winning value (``fmax`` skips NaN)."""
        if self.order < 0:
            return np.fmin if nan_ignore else np.minimum
        return np.fmax if nan_ignore else np.maximum


REDUCTIONS: Dict[str, Reduction] = {}


def register(reduction: Reduction) -> Reduction:
    """Add ``reduction`` to :data:`REDUCTIONS` (its name must be new) and return it."""
    if reduction.name in REDUCTIONS:
        raise ValueError(f"a reduction named {reduction.name!r} is registered already")
    REDUCTIONS[reduction.name] = reduction
    return reduction


def by_name(name: str) -> Reduction:
    """The registered reduction called ``name``."""
    try:
        return REDUCTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"no reduction is called {name!r}; there are {', '.join(map(repr, REDUCTIONS))}.") \
            from None


MAX = register(Reduction("max", "max", order=1, integers=EXACT, saved=WINNERS, forward="max_forward",
                         backward="max_backward", kernel=KERNEL_MAX))
MIN = register(Reduction("min", "min", order=-1, integers=EXACT, saved=WINNERS, forward="max_forward",
                         backward="max_backward", kernel=KERNEL_MIN))
AVG = register(Reduction("avg", "average", divides=True, saved=DIVISORS, forward="avg_forward",
                         backward="avg_backward", kernel=KERNEL_AVG, torch3d_rule=True))
SUM = register(Reduction("sum", "sum", empty_nan=False, integers=WIDENED, saved=DIVISORS, forward="avg_forward",
                         backward="avg_backward", kernel=KERNEL_AVG))
# Composed in poolkit.functional.lp on AVG (MAX and MIN of |x| for norm_type=+-inf): its own rules
# are the dtypes it takes and what its layers keep.
LP = register(Reduction("lp", "Lp", saved=COMPOSED))
# Label images: the most frequent value of each window (ties to the smallest), by kernels of its own.
MODE = register(Reduction("mode", "mode", floats=False, integers=EXACT, saved=NOTHING, forward="mode_forward",
                          kernels="poolkit.backends.mode", empty_lowest=True))
