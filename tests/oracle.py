"""PyTorch as the tests' oracle, loaded on first use: a missing torch skips only the tests that call it.

``torch`` and ``F`` (``torch.nn.functional``) stand for the modules until an attribute is read;
reading one without torch installed skips the test that reads it (``pytest.importorskip``).  Test
modules therefore touch them inside tests only, never while being imported.  :func:`t` and
:func:`n` move arrays between NumPy and torch (torch never sees poolkit's memory).
"""
from __future__ import annotations

import importlib

import numpy as np
import pytest

__all__ = ["torch", "F", "t", "n", "available"]


def available() -> bool:
    """Whether torch can be imported (for ``skipif`` marks that must not import it)."""
    return importlib.util.find_spec("torch") is not None


class _Lazy:
    """A module, imported with ``pytest.importorskip`` when first used."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr):
        if attr.startswith("__"):                   # copy/pickle/introspection probes: not the module's
            raise AttributeError(attr)
        return getattr(pytest.importorskip(self._name), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


torch = _Lazy("torch")
F = _Lazy("torch.nn.functional")


def t(x: np.ndarray):
    """A torch tensor holding a contiguous copy of ``x`` (torch must never see poolkit's memory)."""
    return torch.from_numpy(np.ascontiguousarray(x).copy())


def n(tensor) -> np.ndarray:
    return tensor.detach().numpy()
