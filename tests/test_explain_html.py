"""`poolkit explain --html`: the page as a file, and in a real browser (headless Chromium).

The browser tests need Debian's ``chromium`` (``.ci/run`` installs it when missing); without it
they skip, with the reason in pytest's summary.  Chromium runs in a subprocess with a timeout,
on a fresh profile, with the flags that keep it from reaching for the (closed) network.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from poolkit import cli
from poolkit import explain as ex
from poolkit.explain import html as page_mod
from poolkit.explain.words import PAGE

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "1 3 2 1; 4 2 1 5; 3 1 1 0; 1 2 2 4"
GRID3 = "1 2 3; 4 5 6; 7 8 9"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BROWSER_TIMEOUT = 120


def run_cli(capsys, *argv):
    try:
        code = cli.main(["explain", *argv])
    except SystemExit as exc:             # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def write_page(capsys, tmp_path, *argv, name="page.html") -> Path:
    path = tmp_path / name
    code, out, err = run_cli(capsys, "--html", str(path), *argv)
    assert code == 0, err
    assert str(path) in out.splitlines()[-2] and path.exists()
    return path


def embedded(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="poolkit-data">(.*?)</script>', page, re.S)
    assert m, "the page embeds its data"
    return json.loads(m.group(1))


# --------------------------------------------------------------------------- #
# the file
# --------------------------------------------------------------------------- #
PAGE_ARGV = [
    [],
    ["--stride", "1", "--lang", "zh"],
    ["--mode", "lp", "--norm-type", "-1", "--input", GRID3, "--padding", "1"],
    ["--mode", "min", "--input", "1 2 3 4 5; 5 4 3 2 1; 9 9 9 9 9; 0 0 0 0 1; 1 0 0 0 0", "--dilation", "2",
     "--stride", "1"],
    ["--mode", "sum", "--kernel", "3", "--stride", "2", "--ceil-mode", "--input",
     "1 2 3 4 5; 5 4 3 2 1; 9 9 9 9 9; 0 0 0 0 1; 1 0 0 0 0"],
    ["--mode", "avg", "--exclude-pad", "--padding", "1", "--input", "1 nan 3; 4 5 6", "--grad", "1 2; 3 4"],
    ["--mode", "lp", "--norm-type=-inf", "--input", "1 -5 2; -0.5 3 0; 2 2 -1", "--stride", "1"],
]


@pytest.mark.parametrize("argv", PAGE_ARGV, ids=lambda a: " ".join(a) or "defaults")
def test_page_references_no_network_resource(capsys, tmp_path, argv):
    page = write_page(capsys, tmp_path, *argv).read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"https?:", page, re.I)                        # no address anywhere, not even text
    assert not re.search(r"""(src|href|action|data)\s*=\s*["']?\s*//""", page, re.I)   # nor scheme-relative
    assert not re.search(r"@import|@font-face|url\(|<link\b|<iframe|<img\b|<object|<embed", page, re.I)
    assert not re.search(r"\b(fetch|XMLHttpRequest|WebSocket|EventSource|importScripts)\b|import\(", page)
    assert not re.search(r"<script[^>]*\bsrc=", page, re.I)
    assert page.count("<script") == 2 and page.count("<style") == 1     # one data block, one script, inline
    # And the browser is told so: the page allows no source besides its inline code.
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


def test_page_embeds_explain_pooling_json(capsys, tmp_path):
    page = write_page(capsys, tmp_path, "--input", GRID3, "--padding", "1", "--grad", "1 2; 3 4").read_text("utf-8")
    data = embedded(page)
    assert data["lang"] == "en" and set(data["words"]) == {"en", "zh"}
    keys = [c["key"] for c in data["configs"]]
    assert keys == ["yours", "chapter", "stride1", "padding1"]
    # The numbers are explain_pooling's, as it returns them (steps included) -- nothing else.
    assert data["configs"][0]["results"] == ex.explain_pooling(GRID3, padding=1, grad="1 2; 3 4", steps=True)
    for config, (key, kwargs) in zip(data["configs"][1:], page_mod.PRESETS):
        assert config["key"] == key
        assert config["results"] == ex.explain_pooling(ex.CHAPTER_INPUT, steps=True, **kwargs)
    # What is shown is those numbers as the terminal writes them.
    from poolkit.explain.view import fmt
    for config in data["configs"]:
        for r, shown in zip(config["results"], config["shown"]):
            assert shown["output"] == [[fmt(v) for v in row] for row in r["output"]]
            assert shown["grad_input"] == [[fmt(v) for v in row] for row in r["grad_input"]]
            assert [[t for _, t in st] for st in shown["steps"]] == \
                [[fmt(e[3]) for e in st["to"]] for st in r["backward_steps"]]


def test_user_options_equal_to_a_preset_are_not_repeated(capsys, tmp_path):
    data = embedded(write_page(capsys, tmp_path, "--stride", "1").read_text("utf-8"))
    assert [c["key"] for c in data["configs"]] == ["stride1", "chapter", "padding1"]


def test_backward_steps_add_up_to_grad_input():
    for kwargs in (dict(), dict(stride=1), dict(padding=1, mode="avg", count_include_pad=False),
                   dict(mode="lp", norm_type=3, stride=1), dict(mode="lp", norm_type=-2, padding=1),
                   dict(mode="lp", norm_type="-inf", stride=1), dict(mode="min", dilation=2, stride=1)):
        x = np.random.default_rng(4).normal(size=(5, 6)).round(2)
        for r in ex.explain_pooling(x, steps=True, **kwargs):
            running = np.zeros(x.shape)
            assert [s["window"] for s in r["backward_steps"]] == \
                [[i, j] for i in range(r["output_shape"][0]) for j in range(r["output_shape"][1])]
            for s in r["backward_steps"]:
                i, j = s["window"]
                assert s["grad"] == r["grad_output"][i][j]
                for a, b, share, total in s["to"]:
                    assert a in r["window_rows"][i] and b in r["window_cols"][j]        # only its own window
                    running[a, b] += np.nan if share is None else share
                    np.testing.assert_allclose(running[a, b], np.nan if total is None else total, rtol=1e-15)
                if "argmax" in r or "argmin" in r:                                    # max, min: the winner only
                    won = (r.get("argmax") or r.get("argmin"))[i][j]
                    assert [e[:2] for e in s["to"]] == ([won] if won else [])
            np.testing.assert_allclose(running, np.array(r["grad_input"], dtype=float), rtol=1e-13, atol=1e-15,
                                       err_msg=str(kwargs))
    # Without steps=True the results are as before.
    assert "backward_steps" not in ex.explain_pooling()[0]


@pytest.mark.parametrize("argv", [
    ["--input", "1 2; 3"],
    ["--grad", "1 2 3"],
    ["--kernel", "0"],
    ["--stride", "a,b"],
    ["--padding", "2"],
    ["--kernel", "5"],
    ["--dilation", "0"],
    ["--mode", "median"],
    ["--mode", "lp", "--norm-type", "0"],
    ["--mode", "max", "--norm-type", "3"],
    ["--input", "missing.npy"],
], ids=lambda a: " ".join(a))
def test_bad_options_give_the_explain_errors(capsys, tmp_path, argv):
    path = tmp_path / "page.html"
    code, out, err = run_cli(capsys, *argv)
    code_html, out_html, err_html = run_cli(capsys, "--html", str(path), *argv)
    assert code == code_html == 2 and out == out_html == ""
    # The same one-line error as `poolkit explain` (after the usage line, which now lists --html too).
    error = [line for line in err.splitlines() if line.startswith("poolkit explain: error:")]
    error_html = [line for line in err_html.splitlines() if line.startswith("poolkit explain: error:")]
    assert error and error == error_html
    assert not path.exists()


def test_argparse_errors_with_html(capsys, tmp_path):
    code, _, err = run_cli(capsys, "--html", str(tmp_path / "p.html"), "--lang", "fr")
    assert code == 2 and "--lang" in err and not (tmp_path / "p.html").exists()
    code, _, err = run_cli(capsys, "--html")
    assert code == 2 and "--html: expected one argument" in err


def test_html_file_errors(capsys, tmp_path):
    code, out, err = run_cli(capsys, "--html", str(tmp_path / "no" / "such" / "dir" / "p.html"))
    assert code == 2 and out == ""
    assert f"poolkit explain: error: --html: cannot write '{tmp_path / 'no' / 'such' / 'dir' / 'p.html'}'" in err
    big = "; ".join(" ".join("1" for _ in range(60)) for _ in range(60))
    code, out, err = run_cli(capsys, "--html", str(tmp_path / "p.html"), "--input", big)
    assert code == 2 and "poolkit explain: error: --html: the page draws at most 2500 cells per grid, but this " \
                         "input with its padding is 60x60 = 3600" in err
    assert not (tmp_path / "p.html").exists()
    # The text and JSON take that input.
    code, _, _ = run_cli(capsys, "--input", big, "--format", "json")
    assert code == 0


def test_html_to_stdout_and_with_json(capsys, tmp_path):
    code, out, err = run_cli(capsys, "--html", "-", "--mode", "max")
    assert code == 0 and out.startswith("<!DOCTYPE html>") and out.rstrip().endswith("</html>")
    assert embedded(out)["configs"][0]["results"] == ex.explain_pooling(mode="max", steps=True)
    path = tmp_path / "p.html"
    code, out, err = run_cli(capsys, "--html", str(path), "--format", "json", "--mode", "avg")
    assert code == 0 and json.loads(out)["mode"] == "avg"            # stdout stays JSON
    assert f"Page written: {path}" in err and path.exists()
    code, out, err = run_cli(capsys, "--html", str(path), "--format", "text")
    assert code == 0 and "Page written" in out and "Backward (17.5.3)" in out
    code, out, err = run_cli(capsys, "--html", str(path), "--lang", "zh")
    assert code == 0 and "已生成网页" in out and embedded(path.read_text("utf-8"))["lang"] == "zh"
    assert 'lang="zh-Hans"' in path.read_text("utf-8")


def test_python_api():
    results = ex.explain_pooling(mode="max", steps=True)
    page = ex.render_html(results, presets=False)
    assert [c["key"] for c in embedded(page)["configs"]] == ["yours"]
    with pytest.raises(ValueError, match=r"steps=True"):
        ex.render_html(ex.explain_pooling())
    with pytest.raises(ex.ExplainError, match=r"^lang: expected en or zh, but got 'fr'\.$"):
        ex.render_html(results, lang="fr")


def test_template_is_package_data():
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^poolkit = \[.*"explain/page\.html".*\]$', section, re.M), section
    assert (Path(page_mod.__file__).parent / "page.html").is_file()


def test_readme_shows_the_page_and_the_tutorial_says_how_to_make_it():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## `poolkit explain`", 1)[1].split("\n## ", 1)[0]
    assert "poolkit explain --html pooling.html" in section and "#selftest" in section
    assert "](docs/figures/explain-html.png)" in section
    png = (ROOT / "docs" / "figures" / "explain-html.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) < 100_000          # small, like the other figures
    tutorial = (ROOT / "docs" / "tutorial.md").read_text(encoding="utf-8")
    assert "$ poolkit explain --html pooling.html" in tutorial and "](figures/explain-html.png)" in tutorial


# --------------------------------------------------------------------------- #
# in the browser
# --------------------------------------------------------------------------- #
def _chromium_binary():
    for name in (os.environ.get("POOLKIT_CHROMIUM"), "chromium", "chromium-browser"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _browse(binary, url: str, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium on ``url`` in its own process group; kill the whole group on timeout."""
    with tempfile.TemporaryDirectory(prefix="poolkit-chromium-") as profile:
        proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            out, err = proc.communicate(timeout=BROWSER_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"chromium did not finish {url} within {BROWSER_TIMEOUT} s") from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    binary = _chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed, so the page is not tested in a browser "
                    "(apt-get install chromium; .ci/run installs it when it can)")
    probe = tmp_path_factory.mktemp("probe") / "probe.html"
    probe.write_text("<!DOCTYPE html><p id=x>no script</p><script>x.textContent = 'script ran'</script>")
    try:
        done = _browse(binary, probe.as_uri(), "--dump-dom")
    except (AssertionError, OSError) as exc:
        pytest.skip(f"Chromium ({binary}) is installed but could not load a page: {exc}")
    if "script ran" not in done.stdout:
        pytest.skip(f"Chromium ({binary}) is installed but could not load a page: rc {done.returncode}, "
                    f"{done.stderr.strip()[-300:]}")
    return binary


_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Grids(HTMLParser):
    """A DOM dump read back: every ``table[data-grid]`` as {name: {(r, c): text}}, each cell's classes,
    and the text of every element with an id."""

    def __init__(self):
        super().__init__()
        self.grids: dict = {}
        self.classes: dict = {}
        self.ids: dict = {}
        self._open: list = []           # (tag, attrs, text parts) of the elements open now
        self._table = None

    def handle_starttag(self, tag, attrs):
        if tag in _VOID:
            return
        a = dict(attrs)
        if tag == "table" and "data-grid" in a:
            self._table = a["data-grid"]
            self.grids[self._table] = {}
            self.classes[self._table] = {}
        self._open.append((tag, a, []))

    def handle_endtag(self, tag):
        if tag in _VOID or not any(t == tag for t, _, _ in self._open):
            return
        while True:
            t, a, parts = self._open.pop()
            text = "".join(parts)
            if self._open:
                self._open[-1][2].append(text)
            if t == "td" and self._table is not None and "data-r" in a:
                cell = (int(a["data-r"]), int(a["data-c"]))
                self.grids[self._table][cell] = text.strip()
                self.classes[self._table][cell] = set((a.get("class") or "").split())
            elif t == "table" and "data-grid" in a:
                self._table = None
            if "id" in a:
                self.ids[a["id"]] = text.strip()
            if t == tag:
                return

    def handle_data(self, data):
        if self._open and self._open[-1][0] not in ("script", "style"):
            self._open[-1][2].append(data)


def _dom(chromium, path: Path, fragment: str = "") -> _Grids:
    done = _browse(chromium, path.as_uri() + fragment, "--dump-dom")
    assert done.returncode == 0, done.stderr[-2000:]
    parser = _Grids()
    parser.feed(done.stdout)
    assert parser.grids, "the page drew no grid:\n" + done.stdout[:2000]
    return parser


def _matrix(grid: dict, inside=None) -> list:
    """A grid's cells inside the input (row, col >= 0 and within ``inside``) as nested lists of floats."""
    rows = sorted({r for r, _ in grid if r >= 0 and (inside is None or r < inside[0])})
    cols = sorted({c for _, c in grid if c >= 0 and (inside is None or c < inside[1])})
    return [[float(grid[(r, c)]) for c in cols] for r in rows]


def test_dom_holds_the_chapters_forward_and_backward_values(chromium, capsys, tmp_path):
    path = write_page(capsys, tmp_path)
    dom = _dom(chromium, path)
    g = dom.grids
    assert _matrix(g["input"]) == [[1, 3, 2, 1], [4, 2, 1, 5], [3, 1, 1, 0], [1, 2, 2, 4]]
    # Forward (17.5.1): max and mean pooling side by side.
    assert _matrix(g["out-max"]) == [[4, 5], [3, 4]]
    assert _matrix(g["out-avg"]) == [[2.5, 2.25], [1.75, 1.75]]
    # Backward (17.5.3) of δ = [[1, 2], [3, 4]].
    assert _matrix(g["dout-max"]) == _matrix(g["dout-avg"]) == [[1, 2], [3, 4]]
    assert _matrix(g["final-max"]) == [[0, 0, 0, 0], [1, 0, 0, 2], [3, 0, 0, 0], [0, 0, 0, 4]]
    assert _matrix(g["final-avg"]) == [[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5],
                                       [0.75, 0.75, 1, 1], [0.75, 0.75, 1, 1]]
    # Before the first step nothing has gone back; y[0,0]'s window is the one shown.
    assert _matrix(g["acc-max"]) == [[0] * 4] * 4
    assert {rc for rc, cls in dom.classes["input"].items() if "win" in cls} == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert {rc for rc, cls in dom.classes["input"].items() if "won" in cls} == {(1, 0)}
    assert dom.ids["step-label"] == "Step 0 of 4: nothing sent back yet; press “next”."
    assert "max(1, 3, 4, 2) = 4" in dom.ids["formula"] and "mean = (1 + 3 + 4 + 2)/4 = 2.5" in dom.ids["formula"]
    assert "H2 = (H1 - F)/S + 1 = (4 - 2)/2 + 1 = 2" in dom.ids["size"]


def test_dom_after_steps_and_on_other_windows(chromium, capsys, tmp_path):
    path = write_page(capsys, tmp_path)
    dom = _dom(chromium, path, "#step=2&window=1,1")
    g = dom.grids
    # Two δ back: 1 to x[1,0] (the 4), 2 to x[1,3] (the 5); mean: δ/4 over the first two windows.
    assert _matrix(g["acc-max"]) == [[0, 0, 0, 0], [1, 0, 0, 2], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert _matrix(g["acc-avg"]) == [[0.25, 0.25, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert {rc for rc, cls in dom.classes["acc-max"].items() if "recv" in cls} == {(1, 3)}
    assert {rc for rc, cls in dom.classes["acc-avg"].items() if "recv" in cls} == {(0, 2), (0, 3), (1, 2), (1, 3)}
    assert dom.ids["route-max"] == "δ[0,1] = 2 → x[1,3] (the max, 5)"
    assert {rc for rc, cls in dom.classes["input"].items() if "win" in cls} == {(2, 2), (2, 3), (3, 2), (3, 3)}
    assert {rc for rc, cls in dom.classes["input"].items() if "won" in cls} == {(3, 3)}
    end = _dom(chromium, path, "#step=end").grids
    for mode in ("max", "avg"):
        assert _matrix(end["acc-" + mode]) == _matrix(end["final-" + mode])
    # The stride-1 preset (17.5.2) and the padding preset, chosen by address.
    s1 = _dom(chromium, path, "#config=stride1").grids
    assert _matrix(s1["out-max"]) == [[4, 3, 5], [4, 2, 5], [3, 2, 4]]
    p1 = _dom(chromium, path, "#config=padding1").grids
    assert min(r for r, _ in p1["input"]) == -1 and p1["input"][(-1, -1)] == "·"
    assert _matrix(p1["out-max"]) == [[1, 3, 1], [4, 2, 5], [1, 2, 4]]


def test_dom_in_chinese(chromium, capsys, tmp_path):
    path = write_page(capsys, tmp_path)
    dom = _dom(chromium, path, "#lang=zh")
    assert PAGE["zh"]["title"] in dom.ids["app"]
    assert "平均值 = (1 + 3 + 4 + 2)/4 = 2.5" in dom.ids["formula"]
    zh = write_page(capsys, tmp_path, "--lang", "zh", name="zh.html")
    assert "第 0 步，共 4 步" in _dom(chromium, zh).ids["step-label"]


_SELFTEST = re.compile(r"^selftest: (\d+) checks passed$")


def _selftest(chromium, path: Path) -> str:
    return _dom(chromium, path, "#selftest").ids["selftest-result"]


@pytest.mark.parametrize("argv", PAGE_ARGV, ids=lambda a: " ".join(a) or "defaults")
def test_selftest_passes(chromium, capsys, tmp_path, argv):
    path = write_page(capsys, tmp_path, *argv)
    result = _selftest(chromium, path)
    m = _SELFTEST.match(result)
    assert m, result
    # It went through every window of every mode (6 checks each) and every step (4 checks each).
    data = embedded(path.read_text("utf-8"))
    least = sum(len(c["results"]) * int(np.prod(c["results"][0]["output_shape"])) * (6 + 4)
                for c in data["configs"])
    assert int(m.group(1)) >= least


@pytest.mark.parametrize("where, before, after, needle", [
    ("a number shown", "function show(cell, text) { cell.textContent = text; }",
     "function show(cell, text) { cell.textContent = text === \"5\" ? \"6\" : text; }", "shows 6, the JSON has 5"),
    ("a window", "cols.forEach(function (c) { var td = cells.input[key(r, c)]; if (td) { td.classList.add(\"win\"); } });",
     "cols.slice(1).forEach(function (c) { var td = cells.input[key(r, c)]; if (td) { td.classList.add(\"win\"); } });",
     "the window marked is"),
    ("a backward step", "for (var s = 0; s < t; s++) {", "for (var s = 0; s < t - 1; s++) {",
     "the running gradient differs"),
])
def test_selftest_can_fail(chromium, capsys, tmp_path, where, before, after, needle):
    path = write_page(capsys, tmp_path)
    page = path.read_text("utf-8")
    assert page.count(before) == 1, where
    path.write_text(page.replace(before, after), encoding="utf-8")
    result = _selftest(chromium, path)
    assert re.match(r"^selftest: \d+ of \d+ checks failed: ", result) and needle in result, (where, result)


def test_screenshot_is_not_blank(chromium, capsys, tmp_path):
    image = pytest.importorskip("matplotlib.image")
    path = write_page(capsys, tmp_path)
    shot = tmp_path / "shot.png"
    done = _browse(chromium, path.as_uri() + "#window=0,1&step=2", f"--screenshot={shot}", "--window-size=1200,900",
                   "--hide-scrollbars")
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]
    pixels = image.imread(str(shot))[..., :3]
    assert pixels.shape[:2] == (900, 1200)
    rgb = np.round(pixels.reshape(-1, 3) * 255).astype(int)
    colours = np.unique(rgb, axis=0)
    assert len(colours) > 50                                    # text, grids and highlights, not one flat colour
    assert np.mean(np.all(rgb > 245, axis=1)) < 0.97            # more than a white page
    # The highlights are drawn: Okabe-Ito blue (the window, 0072B2) and vermillion (a receiving cell, D55E00).
    for name, colour in (("blue", (0x00, 0x72, 0xB2)), ("vermillion", (0xD5, 0x5E, 0x00))):
        assert np.any(np.all(np.abs(rgb - colour) <= 8, axis=1)), name
