"""Specialised Numba kernels for common channels-first strided windows (work in progress)."""
from __future__ import annotations


def max_forward(x, plan, parallel):
    return None


def max_backward(grad, off, plan, parallel):
    return None


def avg_forward(x, plan, parallel):
    return None


def avg_backward(grad, plan, parallel):
    return None
