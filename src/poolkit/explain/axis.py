"""Why one axis has the output length it has: the numbers behind the explanations.

This module's job is to lay the windows of one axis out and read off what an
explanation needs: the output length in floor and in ceil mode, where the last
window ends, whether ``ceil_mode`` dropped a window.  It computes nothing
itself: every length is :func:`poolkit.core.geometry.output_size`'s and every
window :func:`poolkit.core.geometry.regular_axis`'s -- the same two functions the
kernels use -- so an explanation cannot disagree with the shape poolkit
returns.  The sentences are in :mod:`.words`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..core.geometry import Axis, output_size, regular_axis

__all__ = ["AxisCount", "count_axis"]


@dataclass(frozen=True)
class AxisCount:
    """The windows along one axis, in floor and in ceil mode.

    Attributes
    ----------
    size, kernel, stride, dilation, pad_before, pad_after : int
        The axis's input length and window parameters.
    ceil_mode : bool
        The mode asked for; :attr:`out` and :attr:`windows` are that mode's.
    floor_out, ceil_out : int
        :func:`~poolkit.core.geometry.output_size` with ``ceil_mode`` False and
        True (below 1 when no window fits).
    windows : Axis or None
        The windows of the mode asked for; None when it has none.
    floor_windows : Axis or None
        The windows of floor mode; None when it has none.
    """

    size: int
    kernel: int
    stride: int
    dilation: int
    pad_before: int
    pad_after: int
    ceil_mode: bool
    floor_out: int
    ceil_out: int
    windows: Optional[Axis]
    floor_windows: Optional[Axis]

    @property
    def span(self) -> int:
        """Positions one window covers, first tap to last."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def padded(self) -> int:
        """Length of the padded input."""
        return self.size + self.pad_before + self.pad_after

    @property
    def out(self) -> int:
        """The output length of the mode asked for (below 1: rejected)."""
        return self.ceil_out if self.ceil_mode else self.floor_out

    @property
    def rejected(self) -> bool:
        """No window fits: poolkit rejects the configuration."""
        return self.out < 1

    @property
    def last_start(self) -> int:
        """Input position of the last window's first tap."""
        return _last_start(self.windows)

    @property
    def next_start(self) -> int:
        """Where one more window would start (the one ceil mode adds or drops)."""
        return self.last_start + self.stride

    @property
    def dropped(self) -> bool:
        """Ceil mode dropped its last window (it would start past the input and its left padding).

        Ceil mode's windows reach the end of the padded input unless that
        rule removed the last one.
        """
        return self.ceil_mode and not self.rejected and self.last_start + self.span < self.size + self.pad_after

    @property
    def formula_out(self) -> int:
        """The output-size formula's value, before ceil mode drops a window."""
        return self.out + int(self.dropped)

    @property
    def floor_end(self) -> int:
        """One past the last position floor mode's last window covers (input coordinates)."""
        return _last_start(self.floor_windows) + self.span

    @property
    def unread_tail(self) -> int:
        """Positions of the padded input after floor mode's last window: no window reads them."""
        return self.size + self.pad_after - self.floor_end

    @property
    def exact(self) -> bool:
        """Floor mode's windows end exactly at the end of the padded input (no rounding)."""
        return self.floor_windows is not None and self.unread_tail == 0


def _last_start(windows: Optional[Axis]) -> int:
    if windows is None:
        raise ValueError("no window fits along this axis, so there is no last window")
    return int(windows.start[-1])


def count_axis(size: int, kernel: int, stride: int, dilation: int,
               pad_before: int, pad_after: int, ceil_mode: bool) -> AxisCount:
    """Lay out the windows of one axis in floor and in ceil mode.

    Parameters
    ----------
    size, kernel, stride, dilation, pad_before, pad_after : int
        As for :func:`poolkit.core.geometry.output_size`.
    ceil_mode : bool

    Returns
    -------
    count : AxisCount

    Examples
    --------
    >>> c = count_axis(5, 2, 2, 1, 1, 1, True)     # PyTorch drops the 4th window: it starts at 5
    >>> c.formula_out, c.out, c.dropped, c.next_start
    (4, 3, True, 5)
    >>> count_axis(7, 2, 3, 1, 0, 0, False).unread_tail
    2
    """
    args = (size, kernel, stride, dilation, pad_before, pad_after)
    floor_out = output_size(*args, False)
    ceil_out = output_size(*args, True)
    out = ceil_out if ceil_mode else floor_out
    return AxisCount(*args, bool(ceil_mode), floor_out, ceil_out,
                     regular_axis(*args, bool(ceil_mode)) if out >= 1 else None,
                     regular_axis(*args, False) if floor_out >= 1 else None)
