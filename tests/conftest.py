import os

import pytest

# The tests compare backends and thread counts call by call: they want the kernel they ask for,
# compiled before the call returns, not the NumPy stand-in that "auto" serves while a kernel
# compiles in the background (tests/test_served.py runs that mode in fresh processes).
os.environ.setdefault("POOLKIT_COMPILE", "foreground")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
