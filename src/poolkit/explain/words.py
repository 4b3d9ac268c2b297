"""Every sentence ``poolkit explain`` prints or draws, in English and Chinese.

This module's job is the words: the four tables of phrases (:data:`AXIS` for
the per-axis account that ``poolkit.output_shape(..., explain=True)`` gives,
:data:`TEXT` for the terminal walk-through, :data:`FIGURE` for the labels of
the PNG figures, :data:`PAGE` for the interactive HTML page), the one look-up that picks a language, and the two
functions that fill the per-axis phrases with numbers.  The numbers come from
:mod:`.axis`; no sentence here computes anything.
"""
from __future__ import annotations

from typing import Sequence

from ..core.geometry import PoolSpec, adaptive_axis
# The per-axis account of output sizes lives below the library (output_shape(..., explain=True) uses it).
from ..core.shape_text import AXIS, describe_axis, describe_shape
from .parse import ExplainError

__all__ = ["AXIS", "TEXT", "FIGURE", "PAGE", "LANGS", "words_for", "explain_axis", "explain_shape", "explain_adaptive"]

#: The languages every table speaks, in the order of each phrase's translations below.
LANGS = ("en", "zh")


def _by_language(terms: dict) -> dict:
    """One table per language, from a glossary that writes each phrase beside its translation.

    Parameters
    ----------
    terms : dict
        ``{term: (en, zh)}``, in the order of :data:`LANGS`; a plain string (a formula such as
        ``max({vals}) = {res}``) reads the same in every language.

    Returns
    -------
    table : dict
        ``{lang: {term: phrase}}``, as :func:`words_for` reads it.  (The tables below write each
        term's English over its Chinese.)

    Examples
    --------
    >>> _by_language({"max": ("max pooling", "最大值池化"), "ex_max": "max({vals})"})["zh"]
    {'max': '最大值池化', 'ex_max': 'max({vals})'}
    """
    return {lang: {term: text if isinstance(text, str) else text[k] for term, text in terms.items()}
            for k, lang in enumerate(LANGS)}


# The poolings' names, as the walk-through and the figures both title them.
_POOLINGS = {
    "max": ("max pooling",
            "最大值池化"),
    "avg": ("mean pooling",
            "平均值池化"),
    "min": ("min pooling",
            "最小值池化"),
    "sum": ("sum pooling",
            "求和池化"),
    "lp": ("L{p} pooling",
           "L{p} 池化"),
}

#: The terminal walk-through (:func:`.text.render_text`).
TEXT = _by_language({
    "title": ("poolkit explain: pooling forward and backward (textbook section 17.5)",
              "poolkit explain：池化层的正向计算与反向传播（教材 17.5 节）"),
    "sp": (" ",
           ""),
    "sep": (";  ",
            "；"),
    "end": (".",
            "。"),
    **_POOLINGS,
    "max_short": ("max",
                  "最大值"),
    "avg_short": ("mean",
                  "平均值"),
    "min_short": ("min",
                  "最小值"),
    "sum_short": ("sum",
                  "和"),
    "lp_short": "L{p}",
    "and": (" and ",
            "与"),
    "config": ("{modes}: window (F) {k}, stride (S) {s}, padding {p}",
               "{modes}：池化尺寸（F）{k}，步长（S）{s}，填充 {p}"),
    "dilation": (", dilation {d}",
                 "，膨胀 {d}"),
    "ceil": (", ceil_mode",
             "，ceil_mode（向上取整）"),
    "nopad": (", count_include_pad=False",
              "，count_include_pad=False"),
    "input": ("Input x ({h}x{w}):",
              "输入 x（{h}×{w}）："),
    "pad_note": ("(. = outside the input, as padding: {rules})",
                 "（. 表示输入之外的填充位置：{rules}）"),
    "pad_sep": (" and ",
                "，"),
    "pad_max": ("it never wins a max",
                "取最大值时它不会胜出"),
    "pad_min": ("it never wins a min",
                "取最小值时它不会胜出"),
    "pad_avg": ("it adds 0 to a mean",
                "求平均值时按 0 计入"),
    "pad_sum": ("it adds 0 to a sum",
                "求和时按 0 计入"),
    "pad_lp": ("it adds 0 to the sum of powers",
               "求幂和时按 0 计入"),
    "pad_linf": ("it never wins a max of |x|",
                 "取 |x| 的最大值时它不会胜出"),
    "pad_linf_min": ("it never wins a min of |x|",
                     "取 |x| 的最小值时它不会胜出"),
    "forward": ("Forward: each window [in brackets] gives one output y[i,j].",
                "正向计算：每个池化窗口（方括号内）得出一个输出 y[i,j]。"),
    "example": ("For example y[0,0]:",
                "例如 y[0,0]："),
    "ex_max": "max({vals}) = {res}",
    "ex_avg": ("mean = ({vals})/{div} = {res}",
               "平均值 = ({vals})/{div} = {res}"),
    "ex_avg_pad": ("(padding counts as 0 and in the divisor)",
                   "（填充按 0 计入，也计入除数）"),
    "ex_max_pad": ("(padding never wins)",
                   "（填充不会胜出）"),
    "ex_avg_nopad": ("(divisor {div}: taps inside the input only)",
                     "（除数 {div}：只计输入内的位置）"),
    "ex_min": "min({vals}) = {res}",
    "ex_linf": "max(|x|) = max({vals}) = {res}",
    "ex_linf_min": "min(|x|) = min({vals}) = {res}",
    "ex_sum": ("sum = {vals} = {res}",
               "和 = {vals} = {res}"),
    "ex_pad_zero": ("(padding adds 0)",
                    "（填充按 0 计入）"),
    "ex_lp": "({terms})^(1/{p}) = {res}",
    "ex_lp_scaled": "(({terms})·{k}/{n})^(1/{p}) = {res}",
    "ex_lp_scale": ("(the window runs past the padding: the sum is scaled by K/n = {k}/{n}, as in PyTorch)",
                    "（窗口超出了填充范围：和乘以 K/n = {k}/{n}，与 PyTorch 相同）"),
    "size": ("Output size (17.5.2):",
             "输出尺寸（17.5.2 节）："),
    "depth": ("D2 = D1: pooling keeps the depth (the number of channels).",
              "D2 = D1：池化层不会改变图片的深度（通道数）。"),
    "detail": ("Per axis, as poolkit.output_shape(..., explain=True) tells it:",
               "逐轴说明（poolkit.output_shape(..., explain=True) 的解释）："),
    "output": ("Output y ({oh}x{ow}):",
               "输出 y（{oh}×{ow}）："),
    "compare": ("The same with stride 1 (17.5.2): the {k} windows now overlap.",
                "同样的输入，步长为 1（17.5.2 节）：{k} 的窗口相互重叠。"),
    "repeats_max": ("Overlapping windows repeat the same maxima:",
                    "窗口重叠，同一个最大值被重复输出："),
    "repeats_min": ("Overlapping windows repeat the same minima:",
                    "窗口重叠，同一个最小值被重复输出："),
    "repeat_max": ("{v} at x[{r},{c}] wins {n} windows",
                   "x[{r},{c}] 处的 {v} 在 {n} 个窗口中都是最大值"),
    "repeat_min": ("{v} at x[{r},{c}] wins {n} windows",
                   "x[{r},{c}] 处的 {v} 在 {n} 个窗口中都是最小值"),
    "repeats_linf": ("Overlapping windows repeat the same maxima of |x|:",
                     "窗口重叠，同一个 |x| 的最大值被重复输出："),
    "repeat_linf": ("{v} at x[{r},{c}] wins {n} windows",
                    "x[{r},{c}] 处的 {v} 在 {n} 个窗口中都是 |x| 的最大值"),
    "repeats_linf_min": ("Overlapping windows repeat the same minima of |x|:",
                         "窗口重叠，同一个 |x| 的最小值被重复输出："),
    "repeat_linf_min": ("{v} at x[{r},{c}] wins {n} windows",
                        "x[{r},{c}] 处的 {v} 在 {n} 个窗口中都是 |x| 的最小值"),
    "repeat_tail": ("The output is bigger but says less; that is why stride = window size is the usual choice.",
                    "输出变大了，却满是重复的值，基本分不开了，所以一般让步长与池化尺寸相同。"),
    "backward": ("Backward (17.5.3): δ, the gradient (residual) from the next layer, {oh}x{ow}:",
                 "反向传播（17.5.3 节）：δ 是上一层网络回传的残差（梯度），{oh}×{ow}："),
    "grad_chapter": ("(not given: the chapter's example, 1..4)",
                     "（未给出 --grad：使用教材中的例子 1..4）"),
    "grad_ramp": ("(not given: 1..{n} in row-major order)",
                  "（未给出 --grad：按行依次取 1..{n}）"),
    "max_rule": ("Max pooling: δ goes back to where its window's maximum was; the rest get 0.",
                 "最大值池化：残差回传到当初最大值所在的位置，窗口中其它位置的残差都是 0。"),
    "max_route": ("δ[{i},{j}] = {g} → x[{r},{c}] (the max, {v})",
                  "δ[{i},{j}] = {g} → x[{r},{c}]（最大值 {v} 所在位置）"),
    "none": ("δ[{i},{j}] = {g} → nowhere (no input in this window)",
             "δ[{i},{j}] = {g} → 无处回传（窗口中没有输入元素）"),
    "min_rule": ("Min pooling: δ goes back to where its window's minimum was; the rest get 0.",
                 "最小值池化：残差回传到当初最小值所在的位置，窗口中其它位置的残差都是 0。"),
    "min_route": ("δ[{i},{j}] = {g} → x[{r},{c}] (the min, {v})",
                  "δ[{i},{j}] = {g} → x[{r},{c}]（最小值 {v} 所在位置）"),
    "linf_rule": ("L∞ pooling (max of |x|): δ goes back to the tap of largest |x|, times the sign of x "
                  "there; the rest get 0.",
                  "L∞ 池化（取 |x| 的最大值）：残差回传到 |x| 最大的位置，并乘以该处 x 的符号；"
                  "其它位置的残差都是 0。"),
    "linf_route": ("δ[{i},{j}] = {g} → {gs} to x[{r},{c}] (largest |x|: {v})",
                   "δ[{i},{j}] = {g} → x[{r},{c}] 得到 {gs}（|x| 最大：{v}）"),
    "linf_min_rule": ("L-∞ pooling (min of |x|): δ goes back to the tap of smallest |x|, times the sign of x "
                      "there; the rest get 0.",
                      "L-∞ 池化（取 |x| 的最小值）：残差回传到 |x| 最小的位置，并乘以该处 x 的符号；"
                      "其它位置的残差都是 0。"),
    "linf_min_route": ("δ[{i},{j}] = {g} → {gs} to x[{r},{c}] (smallest |x|: {v})",
                       "δ[{i},{j}] = {g} → x[{r},{c}] 得到 {gs}（|x| 最小：{v}）"),
    "sum_rule": ("Sum pooling: ∂y/∂x = 1, so every tap of the window gets the whole δ.",
                 "求和池化：∂y/∂x = 1，窗口的每个位置都得到完整的残差 δ。"),
    "sum_route": ("δ[{i},{j}] = {g} → {g} to each of x[{rs}, {cs}]",
                  "δ[{i},{j}] = {g} → x[{rs}, {cs}] 的每个位置各得 {g}"),
    "sum_route_one": ("δ[{i},{j}] = {g} → {g} to x[{rs},{cs}]",
                      "δ[{i},{j}] = {g} → x[{rs},{cs}] 得到 {g}"),
    "lp_rule": ("L{p} pooling: ∂y/∂x = (x/y)^{q}, so each tap x of a window gets δ·(x/y)^{q}",
                "L{p} 池化：∂y/∂x = (x/y)^{q}，窗口中的每个位置 x 得到 δ·(x/y)^{q}"),
    "lp_rule_larger": (": the larger the tap, the larger its share.",
                       "，值越大分得越多。"),
    "lp_rule_smaller": (": the smaller the tap, the larger its share.",
                        "，值越小分得越多。"),
    "lp_rule_equal": (": every tap gets the whole δ.",
                      "，每个位置都得到完整的 δ。"),
    "lp_rule_zero": ("A window with y = 0 sends nothing back (0, not 0/0).",
                     "y = 0 的窗口不回传残差（取 0，而不是 0/0）。"),
    "lp_rule_inf": ("Nor does a window whose powers sum to 0 (y = ∞).",
                    "幂的和为 0（y = ∞）的窗口也不回传残差。"),
    "lp_rule_scaled": ("A window that runs past the padding also scales by K/n, as in forward.",
                       "超出填充范围的窗口还要乘以 K/n，与正向计算相同。"),
    "lp_route": ("δ[{i},{j}] = {g}, y = {y} → {g}{scale}·(x/{y})^{q} to each of x[{rs}, {cs}]",
                 "δ[{i},{j}] = {g}，y = {y} → x[{rs}, {cs}] 的每个位置各得 {g}{scale}·(x/{y})^{q}"),
    "lp_route_one": ("δ[{i},{j}] = {g}, y = {y} → {g}{scale}·(x/{y})^{q} to x[{rs},{cs}]",
                     "δ[{i},{j}] = {g}，y = {y} → x[{rs},{cs}] 得到 {g}{scale}·(x/{y})^{q}"),
    "lp_zero": ("δ[{i},{j}] = {g} → nowhere (y = 0: the gradient is taken as 0)",
                "δ[{i},{j}] = {g} → 无处回传（y = 0：梯度取 0）"),
    "lp_nan": ("δ[{i},{j}] = {g} → nan (y is nan: a negative value under a fractional power)",
               "δ[{i},{j}] = {g} → nan（y 是 nan：负数的分数次幂）"),
    "lp_inf": ("δ[{i},{j}] = {g} → nowhere (the powers sum to 0, so y = ∞: the gradient is taken as 0)",
               "δ[{i},{j}] = {g} → 无处回传（幂的和为 0，y = ∞：梯度取 0）"),
    "avg_rule": ("Mean pooling: δ is shared out equally, δ/{div} to every tap of its window.",
                 "平均值池化：残差平均分配到窗口的每个位置，每个位置得到 δ/{div}。"),
    "avg_rule_var": ("Mean pooling: δ is shared out equally, δ/divisor to every tap of its window.",
                     "平均值池化：残差平均分配到窗口的每个位置，每个位置得到 δ/除数。"),
    "avg_route": ("δ[{i},{j}] = {g} → {g}/{div} = {share} to each of x[{rs}, {cs}]",
                  "δ[{i},{j}] = {g} → x[{rs}, {cs}] 的每个位置各得 {g}/{div} = {share}"),
    "avg_route_one": ("δ[{i},{j}] = {g} → {g}/{div} = {share} to x[{rs},{cs}]",
                      "δ[{i},{j}] = {g} → x[{rs},{cs}] 得到 {g}/{div} = {share}"),
    "pad_lost": ("; {n} share(s) fall on padding",
                 "；落在填充上的 {n} 份被丢弃"),
    "more": ("... and {n} more",
             "……另有 {n} 个"),
    "grad_x": ("Gradient for x ({mode}):",
               "x 的梯度（{mode}）："),
    "adds": ("Where windows overlap the gradients add up, e.g. x[{r},{c}] gets {terms} = {total}.",
             "窗口重叠处的梯度相加，例如 x[{r},{c}] 得到 {terms} = {total}。"),
    "sigma": ("Σ grad x = {a}   (Σ δ = {b})",
              "Σ x 的梯度 = {a}   （Σ δ = {b}）"),
    "no_params": ("Pooling has no parameters to learn: backward only passes the error on.",
                  "池化层没有要学习的参数，反向传播时只需把误差项向后传递。"),
    "too_many": ("({n} windows: too many to draw one by one; try --png or --format json)",
                 "（共 {n} 个窗口，无法逐一画出；可用 --png 或 --format json 查看）"),
    "too_wide": ("({h}x{w}: too wide to draw at {width} columns; try --png or --format json)",
                 "（{h}×{w}：超出 {width} 列，无法画出；可用 --png 或 --format json 查看）"),
    "figures": ("Figures written:",
                "已生成图片："),
    "figure_font": ("note: no font with Chinese characters was found; figure labels are in English.",
                    "提示：没有找到含中文字符的字体，图中的文字使用英文。"),
    "page": ("Page written: {path}",
             "已生成网页：{path}"),
    "page_hint": ("Open it in a browser (it needs no network); {url}#selftest checks it.",
                  "用浏览器打开即可（无需联网）；打开 {url}#selftest 可让网页自检。"),
})

#: The labels of the figures (:func:`.figures.save_figures`).
FIGURE = _by_language({
    "input": ("input x",
              "输入 x"),
    "output": ("output y",
               "输出 y"),
    "grad_out": ("upstream gradient δ",
                 "回传的残差 δ"),
    "grad_in": ("gradient for x",
                "x 的梯度"),
    **_POOLINGS,
    "window": ("window {k}, stride {s}, padding {p}",
               "池化尺寸 {k}，步长 {s}，填充 {p}"),
    "forward": ("{mode}: forward",
                "{mode}：正向计算"),
    "backward": ("{mode}: backward",
                 "{mode}：反向传播"),
    "max_rule": ("each δ goes back to where its window's maximum was; the other taps get 0",
                 "残差回传到当初最大值的位置，其它位置为 0"),
    "avg_rule": ("each δ is shared out equally: δ/divisor to every tap of its window",
                 "残差平均分配到窗口的每个位置：δ/除数"),
    "min_rule": ("each δ goes back to where its window's minimum was; the other taps get 0",
                 "残差回传到当初最小值的位置，其它位置为 0"),
    "sum_rule": ("every tap of a window gets its whole δ",
                 "窗口的每个位置都得到完整的残差 δ"),
    "lp_rule": ("each tap x gets δ·(x/y)^(p−1) with p = {p}; a window with y = 0 sends nothing",
                "每个位置 x 得到 δ·(x/y)^(p−1)，p = {p}；y = 0 的窗口不回传"),
    "linf_rule": ("each δ goes back to the tap of largest |x|, times the sign of x there",
                  "残差回传到 |x| 最大的位置，并乘以该处 x 的符号"),
    "linf_min_rule": ("each δ goes back to the tap of smallest |x|, times the sign of x there",
                      "残差回传到 |x| 最小的位置，并乘以该处 x 的符号"),
    "max_op": ("max",
               "取最大值"),
    "avg_op": ("mean",
               "取平均值"),
    "min_op": ("min",
               "取最小值"),
    "sum_op": ("sum",
               "求和"),
    "lp_op": "L{p}",
    "avg_op_back": ("δ ÷ divisor",
                    "δ ÷ 除数"),
    "sum_op_back": ("δ to every tap",
                    "δ 传给每个位置"),
    "lp_op_back": "δ·(x/y)^(p−1)",
})

#: The interactive page (:func:`.html.render_html`): its headings, controls and legend.
PAGE = _by_language({
    "title": ("poolkit explain: pooling, forward and backward",
              "poolkit explain：池化层的正向计算与反向传播"),
    "intro": ("Section 17.5 of the textbook, live. Hover over or click an output cell to see its window "
              "and its formula; step through backward to watch each δ go back to the input.",
              "教材 17.5 节的互动版。把鼠标移到输出的格子上（或点击），即可看到它的窗口和算式；逐步执行反向传播，"
              "观察每个 δ 如何回传到输入。"),
    "configs": ("Configuration:",
                "配置："),
    "yours": ("your options",
              "你的参数"),
    "chapter": ("chapter: 2×2 windows, stride 2",
                "教材：2×2 窗口，步长 2"),
    "stride1": ("chapter: stride 1",
                "教材：步长 1"),
    "padding1": ("chapter: padding 1",
                 "教材：填充 1"),
    "lang_switch": ("中文 (Chinese)",
                    "English（英文）"),
    "lang_label": ("Language: switch to Chinese",
                   "语言：切换为英文"),
    "forward": ("Forward (17.5.1)",
                "正向计算（17.5.1 节）"),
    "input": ("input x ({h}×{w})",
              "输入 x（{h}×{w}）"),
    "output": ("{mode}: output y ({oh}×{ow})",
               "{mode}：输出 y（{oh}×{ow}）"),
    "hint": ("Hover over, click or Tab to an output cell; the arrow keys move between cells.",
             "把鼠标移到输出的格子上、点击，或用 Tab 键选中；方向键在格子之间移动。"),
    "window": ("Window y[{i},{j}]:",
               "窗口 y[{i},{j}]："),
    "size": ("Output size (17.5.2)",
             "输出尺寸（17.5.2 节）"),
    "backward": ("Backward (17.5.3)",
                 "反向传播（17.5.3 节）"),
    "grad_out": ("δ from the next layer ({oh}×{ow})",
                 "上一层回传的残差 δ（{oh}×{ow}）"),
    "grad_acc": ("{mode}: gradient for x so far",
                 "{mode}：目前累积的 x 的梯度"),
    "grad_final": ("when every δ is back",
                   "全部回传之后"),
    "step": ("Step {t} of {n}: δ[{i},{j}] goes back.",
             "第 {t} 步，共 {n} 步：δ[{i},{j}] 回传。"),
    "step0": ("Step 0 of {n}: nothing sent back yet; press “next”.",
              "第 0 步，共 {n} 步：尚未回传；请按“下一步”。"),
    "first": ("|◀ start",
              "|◀ 开始"),
    "prev": ("◀ back",
             "◀ 上一步"),
    "next": ("next ▶",
             "下一步 ▶"),
    "last": ("end ▶|",
             "结束 ▶|"),
    "play": ("▶ play",
             "▶ 播放"),
    "pause": ("‖ pause",
              "‖ 暂停"),
    "backward_keys": ("Keys here: ← and → step, Home and End jump to the start and the end, Space plays.",
                      "此处的按键：← 和 → 前后一步，Home 和 End 回到开始、跳到结束，空格键播放。"),
    "legend": ("Legend:",
               "图例："),
    "legend_window": ("the window",
                      "窗口"),
    "legend_winner": ("its maximum (minimum)",
                      "窗口的最大值（最小值）"),
    "legend_receive": ("gets gradient in this step",
                       "本步得到梯度"),
    "legend_current": ("the δ being sent",
                       "正在回传的 δ"),
    "legend_pad": ("padding (outside the input)",
                   "填充（输入之外）"),
    "keys": ("Keys: Tab moves between the buttons and the grids, the arrow keys inside a grid, "
             "Enter or Space presses a button.",
             "按键：Tab 在按钮与表格之间移动，表格内用方向键，Enter 或空格键按下按钮。"),
    "noscript": ("This page draws its grids with JavaScript; its numbers are in the JSON inside it "
                 "(script#poolkit-data).",
                 "本页用 JavaScript 绘制表格；所有数字都在页面内的 JSON 中（script#poolkit-data）。"),
    "footer": ("Written by poolkit {version} (poolkit explain --html). Every number on this page comes from "
               "poolkit.explain_pooling.",
               "由 poolkit {version} 生成（poolkit explain --html）。本页的每个数字都来自 "
               "poolkit.explain_pooling。"),
})


def words_for(table: dict, lang, option: str = "lang") -> dict:
    """The phrases of ``table`` in ``lang``.

    Parameters
    ----------
    table : dict
        :data:`AXIS`, :data:`TEXT`, :data:`FIGURE` or :data:`PAGE`.
    lang : str
        "en" or "zh".
    option : str
        How the caller names the language in an error ("lang" or "--lang").

    Returns
    -------
    words : dict of str

    Raises
    ------
    ExplainError
        If ``lang`` is not one of :data:`LANGS`; the message names ``option``.

    Examples
    --------
    >>> words_for(FIGURE, "zh")["max"]
    '最大值池化'
    """
    if not isinstance(lang, str) or lang not in table:
        raise ExplainError(f"{option}: expected {' or '.join(LANGS)}, but got {lang!r}.")
    return table[lang]


def explain_axis(name: str, size: int, kernel: int, stride: int, dilation: int,
                 pad_before: int, pad_after: int, ceil_mode: bool, lang: str = "en") -> str:
    """How the output length along one axis comes out, in words and numbers, in ``lang``.

    :func:`poolkit.core.shape_text.describe_axis` (the sentences ``output_shape(..., explain=True)``
    prints) with the phrases of ``lang`` ("en" or "zh"); raises :class:`ExplainError`
    (a ValueError) for another language.

    Examples
    --------
    >>> print(explain_axis("W", 5, 2, 2, 1, 0, 0, False))
    W: input 5, padding 0+0 -> 5 positions; window spans 2.
    W: out = floor((5 - 2) / 2) + 1 = 2.
    W: the last 1 position(s) fit no whole window, so input position 4 is never read; ceil_mode=True would add a partial window starting at 4.
    """
    return describe_axis(words_for(AXIS, lang), name, size, kernel, stride, dilation, pad_before, pad_after,
                         ceil_mode)


def explain_shape(spec: PoolSpec, sizes: Sequence[int], lang: str = "en") -> str:
    """:func:`explain_axis` for every axis (:func:`poolkit.core.shape_text.describe_shape` in ``lang``).

    Examples
    --------
    >>> print(explain_shape(PoolSpec.from_args(1, 2), (4,)))
    L: input 4, padding 0+0 -> 4 positions; window spans 2.
    L: out = floor((4 - 2) / 2) + 1 = 2.
    """
    return describe_shape(words_for(AXIS, lang), spec, sizes)


def explain_adaptive(name: str, size: int, out: int, lang: str = "en") -> str:
    """Where each adaptive window lies along one axis, in words.

    Parameters
    ----------
    name : str
        The axis's name in the sentence.
    size, out : int
        Input and output length.
    lang : {"en", "zh"}

    Returns
    -------
    text : str
        One line; the windows are :func:`poolkit.core.geometry.adaptive_axis`'s.

    Examples
    --------
    >>> print(explain_adaptive("L", 5, 3))
    L: adaptive 5 -> 3: window o spans [floor(o*5/3), ceil((o+1)*5/3)): [0, 2), [1, 4), [3, 5).
    """
    words = words_for(AXIS, lang)
    ax = adaptive_axis(size, out)
    spans = ", ".join(f"[{s}, {s + n})" for s, n in zip(ax.start.tolist(), ax.hi.tolist()))
    return words["adaptive"].format(name=name, size=size, out=out, spans=spans)
