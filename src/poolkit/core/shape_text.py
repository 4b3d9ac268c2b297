"""Why an output has the size it has, in words: the account of ``poolkit.output_shape(..., explain=True)``.

This module's job is the per-axis account below the public functions (so that
``output_shape`` never reaches up into the tooling): :func:`count_axis` lays the
windows of one axis out -- every length is :func:`~poolkit.core.geometry.output_size`'s
and every window :func:`~poolkit.core.geometry.regular_axis`'s, the functions the
kernels use, so an account cannot disagree with the shape poolkit returns --
and :func:`describe_axis` and :func:`describe_shape` put it in the phrases of
:data:`AXIS` (English and Chinese).  ``poolkit explain`` speaks the same
sentences (:mod:`poolkit.explain.words`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from .geometry import Axis, PoolSpec, dim_names, output_size, regular_axis

__all__ = ["AXIS", "AxisCount", "count_axis", "describe_axis", "describe_shape"]

#: How each axis's output length comes out (``output_shape(..., explain=True)``).
AXIS = {
    "en": {
        "head": "{name}: input {size}, padding {pb}+{pa} -> {padded} positions; window spans {span}.",
        "reject": "{name}: the window ({span}) is longer than the padded input ({padded}): "
                  "no window fits, so this configuration is rejected.",
        "floor": "{name}: out = floor(({padded} - {span}) / {stride}) + 1 = {out}.",
        "ceil": "{name}: out = ceil(({padded} - {span}) / {stride}) + 1 = {out}.",
        "lost": "{name}: the last {left} position(s) fit no whole window, so input {what} never read",
        "lost_one": "position {a} is",
        "lost_many": "positions {a}..{b} are",
        "lost_ceil": "; ceil_mode=True would add a partial window starting at {start}.",
        "lost_ceil_no": "; ceil_mode=True would not help: its extra window would start at {start}, "
                        "past the input.",
        "pad_only": "{name}: the last {left} position(s) fit no whole window, but they are all "
                    "padding: no input is lost.",
        "gap": "{name}: stride {stride} is longer than the window span {span}: {gap} position(s) "
               "between neighbouring windows are never read.",
        "dropped": "{name}: ceil_mode's last window would start at {start}, past the input and its "
                   "left padding, so it is dropped: out = {out}.",
        "added": "{name}: ceil_mode added a partial window starting at {start} (it runs past the end; "
                 "its missing taps count as padding).",
        "adaptive": "{name}: adaptive {size} -> {out}: window o spans "
                    "[floor(o*{size}/{out}), ceil((o+1)*{size}/{out})): {spans}.",
    },
    "zh": {
        "head": "{name}：输入 {size}，填充 {pb}+{pa}，共 {padded} 个位置；窗口跨度 {span}。",
        "reject": "{name}：窗口（{span}）比填充后的输入（{padded}）还长，放不下任何一个窗口，"
                  "所以这个配置无效。",
        "floor": "{name}：out = floor(({padded} - {span}) / {stride}) + 1 = {out}。",
        "ceil": "{name}：out = ceil(({padded} - {span}) / {stride}) + 1 = {out}。",
        "lost": "{name}：最后 {left} 个位置凑不满一个窗口，输入的{what}不会被读到",
        "lost_one": "第 {a} 个位置",
        "lost_many": "第 {a}..{b} 个位置",
        "lost_ceil": "；ceil_mode=True 会从 {start} 开始补一个不完整的窗口。",
        "lost_ceil_no": "；ceil_mode=True 也无济于事：多出的窗口将从 {start} 开始，已在输入之外。",
        "pad_only": "{name}：最后 {left} 个位置凑不满一个窗口，但这些位置都是填充，没有丢失输入。",
        "gap": "{name}：步长 {stride} 大于窗口跨度 {span}，相邻窗口之间有 {gap} 个位置不会被读到。",
        "dropped": "{name}：ceil_mode 的最后一个窗口将从 {start} 开始，已超出输入及其左侧填充，"
                   "因此被舍弃：out = {out}。",
        "added": "{name}：ceil_mode 增加了一个从 {start} 开始的不完整窗口（它超出了末端，"
                 "缺少的位置按填充处理）。",
        "adaptive": "{name}：自适应 {size} -> {out}：第 o 个窗口覆盖 "
                    "[floor(o*{size}/{out}), ceil((o+1)*{size}/{out}))：{spans}。",
    },
}


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


def describe_axis(words: Mapping[str, str], name: str, size: int, kernel: int, stride: int, dilation: int,
                  pad_before: int, pad_after: int, ceil_mode: bool) -> str:
    """How the output length along one axis comes out, in words and numbers.

    Says which input positions no window reads, which window ``ceil_mode``
    added or dropped, and why a configuration is rejected.  Every count is
    :func:`poolkit.core.geometry.output_size`'s (through :func:`count_axis`),
    so the account always agrees with the shape poolkit computes.

    Parameters
    ----------
    words : mapping
        The phrases, :data:`AXIS` in one language (``AXIS["en"]``, ``AXIS["zh"]``).
    name : str
        The axis's name in the sentences ("H", "W", "L", ...).
    size, kernel, stride, dilation, pad_before, pad_after : int
        The axis's input length and window parameters.
    ceil_mode : bool

    Returns
    -------
    text : str
        Two to four lines, each starting with ``name``.

    Examples
    --------
    >>> print(describe_axis(AXIS["en"], "W", 5, 2, 2, 1, 0, 0, False))
    W: input 5, padding 0+0 -> 5 positions; window spans 2.
    W: out = floor((5 - 2) / 2) + 1 = 2.
    W: the last 1 position(s) fit no whole window, so input position 4 is never read; ceil_mode=True would add a partial window starting at 4.
    """
    c = count_axis(size, kernel, stride, dilation, pad_before, pad_after, ceil_mode)
    span_txt = f"{c.span}" if dilation == 1 else f"{dilation}*({kernel}-1)+1 = {c.span}"
    lines = [words["head"].format(name=name, size=size, pb=pad_before, pa=pad_after, padded=c.padded,
                                  span=span_txt)]
    if c.rejected:
        lines.append(words["reject"].format(name=name, span=c.span, padded=c.padded))
        return "\n".join(lines)
    if stride > c.span and c.floor_out > 1:
        lines.append(words["gap"].format(name=name, stride=stride, span=c.span, gap=stride - c.span))
    if not ceil_mode:
        lines.append(words["floor"].format(name=name, padded=c.padded, span=c.span, stride=stride, out=c.out))
        left = c.unread_tail
        if left:
            if c.floor_end >= size:
                lines.append(words["pad_only"].format(name=name, left=left))
            else:
                a, b = max(c.floor_end, 0), size - 1
                what = (words["lost_one"] if a == b else words["lost_many"]).format(a=a, b=b)
                helps = c.ceil_out > c.floor_out
                tail = words["lost_ceil" if helps else "lost_ceil_no"].format(start=c.next_start)
                lines.append(words["lost"].format(name=name, left=left, what=what) + tail)
        return "\n".join(lines)
    lines.append(words["ceil"].format(name=name, padded=c.padded, span=c.span, stride=stride, out=c.formula_out))
    if c.dropped:
        # Possible even when floor and ceil agree: with large right padding
        # (per-side pairs) ceil_mode can return one window fewer than floor mode.
        lines.append(words["dropped"].format(name=name, start=c.next_start, out=c.out))
    elif c.out > c.floor_out:
        lines.append(words["added"].format(name=name, start=c.last_start))
    return "\n".join(lines)


def describe_shape(words: Mapping[str, str], spec: PoolSpec, sizes: Sequence[int]) -> str:
    """:func:`describe_axis` for every axis: the text of ``poolkit.output_shape(..., explain=True)``.

    Parameters
    ----------
    words : mapping
        The phrases, :data:`AXIS` in one language.
    spec : PoolSpec
        The normalised pooling arguments.
    sizes : sequence of int
        The pooled (spatial) input sizes, one per axis of ``spec``.

    Returns
    -------
    text : str
        The axes' accounts, one after another; axes named as in error messages.

    Examples
    --------
    >>> print(describe_shape(AXIS["en"], PoolSpec.from_args(2, 2), (4, 5)))
    H: input 4, padding 0+0 -> 4 positions; window spans 2.
    H: out = floor((4 - 2) / 2) + 1 = 2.
    W: input 5, padding 0+0 -> 5 positions; window spans 2.
    W: out = floor((5 - 2) / 2) + 1 = 2.
    W: the last 1 position(s) fit no whole window, so input position 4 is never read; ceil_mode=True would add a partial window starting at 4.
    """
    pads = spec.pads(sizes)
    return "\n".join(describe_axis(words, name, n, k, s, d, pb, pa, spec.ceil_mode)
                     for name, n, k, s, d, (pb, pa) in zip(dim_names(spec.rank), sizes, spec.kernel, spec.stride,
                                                           spec.dilation, pads))
