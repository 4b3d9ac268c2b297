"""A compile worker rebuilds each kernel from its spec (``jit.spec_of``): the rebuilt function must
see the very globals the caller's does, or it compiles another function (or none: a kernel made
with a global of its own, as the pyramid kernels' row function, once failed to type in the worker
with ``NameError: name '_row' is not defined`` and every call stayed on NumPy)."""
from __future__ import annotations

import gc

import pytest

from poolkit.backends.numba import fast, jit, kernels, mode, pyramid  # noqa: F401 - their kernels

fast._make(2, 2, 2)          # the chapter path's kernels are made on first use


def _all_kernels():
    found = [k for k in gc.get_objects() if type(k) is jit.Kernel]   # not isinstance: it wakes lazy attributes of other modules' objects
    assert len(found) > len(pyramid.KERNELS)
    return sorted(found, key=lambda k: k.tag)


def _resolved(fn):
    """Every global name of ``fn``'s code with the object it names (absent names left out)."""
    return {n: fn.__globals__[n] for n in fn.__code__.co_names if n in fn.__globals__}


@pytest.mark.parametrize("k", _all_kernels(), ids=lambda k: k.tag[:80])
def test_a_rebuilt_kernel_sees_the_same_globals(k):
    rebuilt = jit._build(k.body._poolkit_spec).py_func
    original = k.body.py_func
    assert rebuilt.__code__ == original.__code__
    assert rebuilt.__qualname__ == original.__qualname__
    assert [c.cell_contents for c in rebuilt.__closure__ or ()] == \
        [c.cell_contents for c in original.__closure__ or ()]
    want, got = _resolved(original), _resolved(rebuilt)
    assert got.keys() == want.keys()
    assert all(got[n] is want[n] for n in want), [n for n in want if got[n] is not want[n]]


def test_each_pyramid_kernel_rebuilds_with_its_own_row_function():
    for op, k in pyramid.KERNELS.items():
        rebuilt = jit._build(k.body._poolkit_spec).py_func
        assert rebuilt.__globals__["_row"] is pyramid._ROWS[op]


def test_a_global_of_no_module_name_is_refused():
    import types

    def proto():
        return _helper()          # noqa: F821 - bound below, in a scope of its own

    fn = types.FunctionType(proto.__code__, dict(proto.__globals__, _helper=lambda: 1), "proto")
    with pytest.raises(TypeError, match="_helper.*could not rebuild"):
        jit.spec_of(fn)
