"""The ``poolkit`` command line: ``bench``, ``explain``, ``info``, ``pyramid`` and ``warmup``.

``main``     the entry point and the small subcommands
``pyramid``  ``poolkit pyramid``
"""
from .main import main

__all__ = ["main"]
