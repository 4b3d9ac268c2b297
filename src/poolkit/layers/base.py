"""One base for every pooling layer: settings checked at construction, forward, backward, saved state, repr.

A layer holds its configuration; ``forward(x, train=True)`` (or ``layer(x)``)
pools and, when training, keeps what backward needs -- an instance of the
small dataclass the class declares as :attr:`Layer.Saved` -- and
``backward(grad_output)`` returns the gradient with respect to the input of the
last forward, which must have been a training one.  ``saved_nbytes`` reports
what is kept.  Every constructor setting is an attribute of the same name, and
the ``repr`` shows them all, in the constructor's order.  Layers can be pickled
and deep-copied before and after forward.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, ClassVar, Optional, Tuple, Type

import numpy as np
from numpy.typing import ArrayLike

from ..core.args import CHANNELS_FIRST, as_bool, check_axes, check_data_format, check_nan_policy
from ..engine.prepare import check_backend

__all__ = ["Layer", "missing_context"]


def missing_context(layer) -> RuntimeError:
    """The error of ``layer.backward()`` when the last forward kept nothing (or none ran)."""
    why = ("the last forward had train=False, which keeps nothing and drops the earlier context"
           if layer._forwarded else "no forward has run yet")
    return RuntimeError(f"{type(layer).__name__}.backward() needs the last forward to be "
                        f"forward(x, train=True), but {why}: there is nothing to differentiate.")


class Layer:
    """The machinery every layer shares; a family implements :meth:`_run` and :meth:`_grad`.

    Class attributes
    ----------------
    _rank : int
        The pooling rank (the fixed-rank classes set it).
    Saved : type
        The dataclass a training forward keeps (it has ``nbytes``).
    _hidden : tuple of str
        Constructor settings left out of the ``repr`` (a random stream is no setting to echo).
    _caches : tuple of str
        Attributes rebuilt on demand, left out of pickles and copies.
    """

    _rank: ClassVar[int] = 2
    Saved: ClassVar[Type] = object
    _hidden: ClassVar[Tuple[str, ...]] = ()
    _caches: ClassVar[Tuple[str, ...]] = ()

    def __init__(self, *, data_format: Optional[str], axes, backend: str, nan_policy: str = "propagate"):
        # Checked now, not at the first forward.
        self.data_format = check_data_format(CHANNELS_FIRST[self._rank] if data_format is None else data_format,
                                             self._rank)
        self.axes = None if axes is None else check_axes(axes, self._rank)
        check_backend(backend)
        self.backend = backend
        check_nan_policy(nan_policy)
        self.nan_policy = nan_policy
        self._ctx: Any = None
        self._forwarded = False                        # has any forward run (for backward's message)

    # What a family implements: ``_run(x, keep, **its options) -> (result, saved state or None)`` for one
    # forward call (``keep``: a training one), and ``_grad(saved, grad_output) -> gradient``.
    _run: Callable[..., Tuple[Any, Any]]
    _grad: Callable[..., np.ndarray]

    # -- the shared interface ---------------------------------------------------------------------
    def forward(self, x: ArrayLike, train: bool = True, **options):
        """Pool ``x``; with ``train=True`` keep what :meth:`backward` needs.

        Parameters
        ----------
        x : array_like
            Input, as for the functional form.
        train : bool
            True: keep the context for :meth:`backward`, replacing the previous
            one. ``train=False`` (evaluation): keep nothing and drop the
            previous context. So :meth:`backward` always belongs to the last
            forward and never silently uses an older one.
        **options
            The family's per-call options: ``mask=`` for the strided layers (bool,
            broadcastable to ``x``: False elements are left out of their windows and
            get no gradient; an ``np.ma.MaskedArray`` ``x`` is honoured the same way
            and gives a masked result), ``samples=`` for the fractional ones.

        Returns
        -------
        out : ndarray
            The pooled array, and the indices as a second value for layers built
            with ``return_indices=True``.
        """
        keep = as_bool(train, "train")
        y, saved = self._run(x, keep, **options)
        self._ctx = saved if keep else None
        self._forwarded = True
        return y

    __call__ = forward

    def backward(self, grad_output: ArrayLike) -> np.ndarray:
        """Gradient with respect to the input of the last forward, which must have had ``train=True``.

        Parameters
        ----------
        grad_output : array_like
            Gradient with respect to that forward's output: same shape; same dtype
            (any float dtype for integer input).

        Returns
        -------
        grad_input : ndarray, shape and dtype of that input

        Raises
        ------
        RuntimeError
            If no forward ran yet, or the last one had ``train=False`` (it drops the context).
        """
        if self._ctx is None:
            raise missing_context(self)
        return self._grad(self._ctx, grad_output)

    @property
    def saved_nbytes(self) -> int:
        """Bytes of state kept from the last training forward for backward (0 if none)."""
        return 0 if self._ctx is None else self._ctx.nbytes

    def __getstate__(self) -> dict:
        # Caches are rebuilt on demand; the saved context travels (backward works after).
        state = dict(self.__dict__)
        for name in self._caches:
            state[name] = type(state[name])()
        return state

    def __repr__(self) -> str:
        names = [n for n in inspect.signature(type(self).__init__).parameters if n != "self" and n not in self._hidden]
        return f"{type(self).__name__}({', '.join(f'{n}={getattr(self, n)!r}' for n in names)})"
