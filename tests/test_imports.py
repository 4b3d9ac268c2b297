"""`import poolkit` loads the pooling and nothing optional; lazy names still work.

Each check runs in a fresh interpreter: this test session has long since
imported matplotlib, torch and poolkit.explain itself.
"""
import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("poolkit.explain", "poolkit.bench", "matplotlib", "torch", "dask", "tqdm")


def run_fresh(code: str) -> dict:
    """Run ``code`` in a new Python; it prints one JSON object as its last line, returned here."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


def test_import_poolkit_loads_nothing_optional():
    res = run_fresh(f"""
        import json, sys
        import poolkit
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert res == []


def test_explain_pooling_is_lazy_but_public():
    res = run_fresh(f"""
        import json, sys
        import poolkit
        before = "poolkit.explain" in sys.modules
        listed = ["explain_pooling" in poolkit.__all__, "explain_pooling" in dir(poolkit)]
        out = poolkit.explain_pooling(mode="max")[0]["output"]
        from poolkit import explain_pooling
        print(json.dumps({{"before": before, "listed": listed, "out": out,
                          "same": explain_pooling is poolkit.explain_pooling is sys.modules["poolkit.explain"].explain_pooling,
                          "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
    """)
    assert res["before"] is False
    assert res["listed"] == [True, True]
    assert res["out"] == [[4.0, 5.0], [3.0, 4.0]]
    assert res["same"] is True
    # Explaining loads the explain package, but drawing is what needs matplotlib.
    assert res["loaded"] == ["poolkit.explain"]


def test_star_import_includes_lazy_names():
    res = run_fresh("""
        import json
        ns = {}
        exec("from poolkit import *", ns)
        print(json.dumps(callable(ns.get("explain_pooling"))))
    """)
    assert res is True


def test_output_shape_loads_words_only_when_asked():
    res = run_fresh("""
        import json, sys
        import poolkit
        poolkit.output_shape((28, 28), 2)
        plain = "poolkit.explain" in sys.modules
        text = poolkit.output_shape(5, 2, ceil_mode=True, explain=True)[1]
        print(json.dumps({"plain": plain, "text": text, "mpl": "matplotlib" in sys.modules}))
    """)
    assert res["plain"] is False
    assert "ceil_mode added a partial window starting at 4" in res["text"]
    assert res["mpl"] is False


def test_unknown_attribute_still_raises():
    import poolkit

    with pytest.raises(AttributeError, match="module 'poolkit' has no attribute 'no_such_name'"):
        poolkit.no_such_name
    assert not hasattr(poolkit, "explain_poolng")
