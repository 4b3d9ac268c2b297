"""The fixed-rank names (``max_pool2d``, ``AdaptiveAvgPool3d``, ...): one generator, one docstring template.

Every family is written once, N-d, as an implementation whose first parameter is
the rank.  :func:`fixed_rank` makes its 1-D, 2-D and 3-D functions: real Python
functions with the implementation's parameters (``data_format`` defaulting to
PyTorch's channels-first name of the rank), so that signatures, ``help`` and
error messages for wrong arguments are those of an ordinary function, and a
call costs one extra frame.  :func:`fixed_layer` does the same for layer
classes.  Their docstrings come from one template, :data:`FIXED_DOC`, or from a
family's own text with the same fields (:func:`fields`).
"""
from __future__ import annotations

import functools
import inspect
import sys
import types
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Type, TypeVar

from ..core.args import CHANNELS_FIRST, CHANNELS_LAST
from ..core.geometry import dim_names

__all__ = ["FIXED_DOC", "LAYER_DOC", "fields", "fixed_docs", "layer_docs", "nd_function", "fixed_rank",
           "fixed_ranks", "fixed_layer", "fixed_layers", "make_function"]

T = TypeVar("T")

#: The docstring of a fixed-rank name of a family with an N-d function (``max_pool2d`` of ``max_pool``).
FIXED_DOC = """{rank}-D {what}: :func:`poolkit.{nd}` over {dims} of (N, C, {dims}) or (C, {dims}).

    The same arguments, with the rank fixed: ``data_format`` is "{first}" (the
    default) or "{last}" for channels-last arrays, and ``axes=`` pools any
    {rank} axes of any array.{note}

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> {call}
    {result}
    """


#: The docstring of a fixed-rank layer class (``MaxPool2d``, ``FractionalMaxPool3d``, ...).
LAYER_DOC = """{rank}-D {what} layer: :func:`poolkit.{fn}` that keeps what backward needs.

    The arguments are :func:`poolkit.{fn}`'s, checked at construction;
    ``data_format=None`` means "{first}": input (N, C, {dims}) or (C, {dims}).
    A training forward keeps {keeps} (``saved_nbytes``).{note}

    Examples
    --------
    >>> import numpy as np, poolkit
    >>> layer = poolkit.{name}({args})
    >>> x = np.random.default_rng(0).random({shape})
    >>> y = layer(x)
    >>> layer.backward(np.ones_like(y)).shape == x.shape
    True
    """


def fields(rank: int) -> Dict[str, Any]:
    """The fields every fixed-rank docstring may use: ``rank``, ``dims`` ("H, W"), ``first`` ("NCHW"),
    ``last`` ("NHWC"), ``ones`` (the example input's shape, ``(1, 1, 2, 2)``), ``n`` (its size) and
    ``unit`` (the shape of one window's output, ``(1, 1, 1, 1)``)."""
    return {"rank": rank, "dims": ", ".join(dim_names(rank)), "first": CHANNELS_FIRST[rank],
            "last": CHANNELS_LAST[rank], "ones": (1, 1) + (2,) * rank, "n": 2 ** rank, "unit": (1, 1) + (1,) * rank}


def fixed_docs(what: str, nd: str, call: str, result: Callable[[int], str],
               note: Callable[[int], str] = lambda rank: "") -> Callable[[int], str]:
    """``doc(rank)``: :data:`FIXED_DOC` for the fixed-rank names of ``poolkit.<nd>``; ``call`` is the example
    (a format string over :func:`fields` and ``rank``), ``result(rank)`` its printed value (worked out by
    hand, not by running poolkit), ``note(rank)`` text after the paragraph on arguments."""
    def doc(rank: int) -> str:
        f = fields(rank)
        return FIXED_DOC.format(what=what, nd=nd, note=note(rank), call=call.format(**f), result=result(rank), **f)
    return doc


def layer_docs(what: str, fn: str, keeps: str, args: str, note: Callable[[int], str] = lambda rank: "",
               shape: Callable[[int], Tuple[int, ...]] = lambda rank: (2, 3) + (6,) * rank,
               pattern: str = "") -> Callable[[int], str]:
    """``doc(rank)``: :data:`LAYER_DOC` for the layer classes ``pattern.format(rank=...)`` of ``poolkit.<fn>``
    (``fn`` and ``args``, the example's constructor arguments, may use :func:`fields`)."""
    def doc(rank: int) -> str:
        f = fields(rank)
        return LAYER_DOC.format(what=what, fn=fn.format(**f), keeps=keeps, name=pattern.format(rank=rank),
                                args=args.format(**f), note=note(rank), shape=shape(rank), **f)
    return doc


@functools.lru_cache(maxsize=None)
def _factory(head: Tuple[str, ...], pos: Tuple[str, ...], kwonly: Tuple[str, ...], n_bound: int) -> Callable:
    """``_factory(impl, *bound)`` -> a function of ``head, *pos, *, *kwonly`` calling ``impl``; compiled once per
    parameter list (most fixed-rank names share theirs).  A factory, so that the implementation and the bound
    values are closure cells: the function can then live in its module's own globals (doctest finds a
    module's functions by their globals)."""
    free = ["_impl"] + [f"_bound{i}" for i in range(n_bound)]
    names = list(head) + list(pos) + (["*"] + list(kwonly) if kwonly else [])
    call = list(head) + free[1:] + list(pos) + [f"{k}={k}" for k in kwonly]
    src = (f"def _factory({', '.join(free)}):\n    def _made({', '.join(names)}):\n"
           f"        return _impl({', '.join(call)})\n    return _made\n")
    scope: Dict[str, Any] = {}
    exec(src, scope)                                                                    # noqa: S102
    return scope["_factory"]


def make_function(name: str, impl: Callable, params: Sequence[inspect.Parameter], *, head: Sequence[str] = (),
                  bound: Sequence[Any] = (), defaults: Optional[Dict[str, Any]] = None, module: str = __name__,
                  doc: Optional[str] = None) -> Callable:
    """``def name(*head, *params): return impl(*head, *bound, *params)``, a real function.

    ``params`` keep their kinds and defaults (``defaults`` replaces some); positional-or-keyword
    ones are passed on positionally, keyword-only ones by name.
    """
    defaults = defaults or {}
    pos = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    kwonly = [p for p in params if p.kind is p.KEYWORD_ONLY]
    factory = _factory(tuple(head), tuple(p.name for p in pos), tuple(p.name for p in kwonly), len(bound))
    made = factory(impl, *bound)
    code = made.__code__.replace(co_name=name, co_qualname=name)     # tracebacks name the function
    fn = types.FunctionType(code, sys.modules[module].__dict__, name, None, made.__closure__)

    def default(p):
        return defaults.get(p.name, p.default)
    fn.__defaults__ = tuple(default(p) for p in pos if p.default is not p.empty) or None
    fn.__kwdefaults__ = {p.name: default(p) for p in kwonly if p.default is not p.empty} or None
    fn.__annotations__ = {p.name: p.annotation for p in params if p.annotation is not p.empty}
    fn.__module__, fn.__qualname__, fn.__doc__ = module, name, doc
    return fn


def nd_function(impl: Callable, name: str, doc: str, *, bound: Sequence[Any] = (None, False),
                module: str = __name__) -> Callable:
    """The N-d public function ``name`` of ``impl(rank, pytorch_name, ...)``: ``bound`` fills those first
    parameters (rank None: the call's own rule; no PyTorch name)."""
    params = list(inspect.signature(impl).parameters.values())[len(bound):]
    return make_function(name, impl, params, bound=bound, module=module, doc=doc)


def fixed_rank(impl: Callable, rank: int, name: str, doc: str, *, bound: Sequence[Any] = (),
               drop: Sequence[str] = (), module: str = __name__,
               signature: Optional[inspect.Signature] = None) -> Callable:
    """``name``, the ``rank``-D function of ``impl(rank, *bound, ...)``, with ``doc`` as its docstring.

    ``drop``: parameters PyTorch's fixed-rank name does not have (``avg_pool1d`` has no
    ``divisor_override``); the implementation's default is used for them.
    """
    params = list((signature or inspect.signature(impl)).parameters.values())[1 + len(bound):]
    params = [p for p in params if p.name not in drop]
    return make_function(name, impl, params, bound=(rank,) + tuple(bound),
                         defaults={"data_format": CHANNELS_FIRST[rank]}, module=module, doc=doc)


def fixed_ranks(impl: Callable, pattern: str, doc: Callable[[int], str], *, bound: Sequence[Any] = (),
                drop: Callable[[int], Sequence[str]] = lambda rank: (), ranks: Sequence[int] = (1, 2, 3),
                module: str = __name__) -> Tuple[Callable, ...]:
    """:func:`fixed_rank` for each of ``ranks``: names ``pattern.format(rank=...)``, docstrings ``doc(rank)``."""
    sig = inspect.signature(impl)                  # read once for the ranks
    return tuple(fixed_rank(impl, r, pattern.format(rank=r), doc(r), bound=bound, drop=drop(r), module=module,
                            signature=sig) for r in ranks)


def fixed_layers(base: Type[T], pattern: str, doc: Callable[[int], str], *,
                 drop: Callable[[int], Sequence[str]] = lambda rank: (), ranks: Sequence[int] = (1, 2, 3),
                 module: str = __name__) -> Tuple[Type[T], ...]:
    """:func:`fixed_layer` for each of ``ranks``: names ``pattern.format(rank=...)``, docstrings ``doc(rank)``."""
    return tuple(fixed_layer(base, r, pattern.format(rank=r), doc(r), drop=drop(r), module=module) for r in ranks)


def fixed_layer(base: Type[T], rank: int, name: str, doc: str, *, drop: Sequence[str] = (),
                module: str = __name__) -> Type[T]:
    """The ``rank``-D layer class ``name`` of the N-d layer ``base`` (which reads its rank from ``_rank``).

    ``drop``: constructor parameters PyTorch's class does not have; the class then gets an
    ``__init__`` without them (and the base's default for them).
    """
    namespace: Dict[str, Any] = {"_rank": rank, "__doc__": doc, "__module__": module, "__qualname__": name}
    if drop:
        init = base.__init__                                          # type: ignore[misc]
        params = [p for p in list(inspect.signature(init).parameters.values())[1:] if p.name not in drop]
        namespace["__init__"] = make_function("__init__", init, params, head=("self",), module=module,
                                              doc=init.__doc__)
        namespace["__init__"].__qualname__ = f"{name}.__init__"
    return type(name, (base,), namespace)
