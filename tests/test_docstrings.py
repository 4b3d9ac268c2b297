"""Every library module's docstring examples run and print what they say (the generated ones included).

The fixed-rank names and layers get their docstrings from one template each
(:mod:`poolkit.functional.fixed`), filled per rank: running them checks every
filled-in example, whose results were worked out by hand in the template.
"""
from __future__ import annotations

import doctest
import importlib
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "poolkit"
# Tooling has its own doctest runs (tests/test_explain.py); warmup's example compiles kernels; the
# pyramid modules are tests/test_pyramid.py's.
SKIP = ("poolkit.explain", "poolkit.bench", "poolkit.cli", "poolkit.__main__", "poolkit.backends.numba.warmup",
        "poolkit.multiscale")
MODULES = sorted(
    ".".join(("poolkit",) + (p.relative_to(SRC).with_suffix("").parts[:-1] if p.name == "__init__.py"
                             else p.relative_to(SRC).with_suffix("").parts))
    for p in SRC.rglob("*.py"))
MODULES = [m for m in MODULES if not m.startswith(SKIP)]


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, name


def test_the_generated_names_have_examples():
    import poolkit

    finder = doctest.DocTestFinder()
    for name in ("max_pool3d", "avg_pool1d", "min_pool2d", "sum_pool3d", "lp_pool1d", "adaptive_max_pool3d",
                 "max_unpool2d", "fractional_max_pool3d", "adaptive_avg_pool2d_backward", "MaxPool1d", "AvgPool3d",
                 "LPPool2d", "FractionalMaxPool2d"):
        tests = finder.find(getattr(poolkit, name), name)
        assert tests and tests[0].examples, name
