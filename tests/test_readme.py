"""The README's Python examples run as written, and its claims about shapes hold."""
import pathlib
import re

import numpy as np

import poolkit

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"


def _blocks():
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_python_blocks_run(capsys):
    blocks = _blocks()
    assert len(blocks) >= 3
    namespace = {}
    for code in blocks:                      # one namespace: later blocks use earlier names
        exec(compile(code, str(README), "exec"), namespace)
    capsys.readouterr()


def test_readme_shape_comments_are_true():
    # Lines like "y = f(x)   # (2, 3, 4)" or "f(x).shape   # (2, 3, 4)" state a shape: check it.
    namespace = {"np": np, "poolkit": poolkit}
    stated = re.compile(r"^(?:(?P<target>\w+)(?:, \w+)* = )?(?P<expr>.+?)\s+#\s*\((?P<shape>\d+(?:, \d+)*)\)")
    checked = 0
    for code in _blocks():
        for line in code.splitlines():
            m = stated.match(line)
            if m is None:
                exec(line, namespace)
                continue
            if m.group("target"):
                exec(line, namespace)
                value = namespace[m.group("target")]
            else:
                value = eval(m.group("expr"), namespace)
            shape = value if isinstance(value, tuple) else value.shape
            assert shape == tuple(int(v) for v in m.group("shape").split(", ")), line
            checked += 1
    assert checked >= 8


def test_readme_saved_nbytes_claim():
    x = np.random.default_rng(0).standard_normal((8, 3, 32, 32))
    pool = poolkit.MaxPool2d(3, stride=2, padding=1)
    pool(x)
    assert pool.saved_nbytes == 6144 == 8 * 3 * 16 * 16
