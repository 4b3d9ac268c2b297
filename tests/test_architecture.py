"""The house rules of issue 21, read off the source (AST), not off a running poolkit.

* Every module sits in a layer, and imports only from its own layer or lower ones (function-level
  imports included: a deferred import is an arrow too); the import graph has no cycle.
* At most 8 ``.py`` files at the package's top level; no module outside the kernels over 700 lines.
* The op names ("max", "min", "avg", "sum", "lp") are spelled as strings in at most 5 library files
  (tooling aside): everything below the public API reads the op table, poolkit.core.reductions.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "poolkit"

# Lowest first. A module may import from its own layer and the ones before it.
LAYERS = [
    ("core", ["poolkit.core"]),                       # geometry, layout, plan, the op table, windows, threads
    ("backends", ["poolkit.backends"]),               # reference, img2col, numba kernels, served
    ("engine", ["poolkit.engine"]),                   # prepare (the front door), eager (NumPy), lazy (Dask)
    ("functional", ["poolkit.functional"]),           # the public functions, by family
    ("layers", ["poolkit.layers"]),                   # the layers, on one base
    ("warmup", ["poolkit.backends.numba.warmup"]),    # compiling ahead runs functions and layers
    ("multiscale", ["poolkit.multiscale"]),           # pyramids, OME-Zarr
    ("chapter", ["poolkit.chapter"]),                 # the textbook's PoolingLayer
    ("package", ["poolkit"]),                         # poolkit/__init__: the public names
    ("explain", ["poolkit.explain"]),                 # tooling from here on
    ("bench", ["poolkit.bench"]),
    ("cli", ["poolkit.cli", "poolkit.__main__"]),
]
TOOLING = ("poolkit.explain", "poolkit.bench", "poolkit.cli", "poolkit.__main__", "poolkit.backends.numba.warmup")
OP_NAMES = {"max", "min", "avg", "sum", "lp"}
# Kernel modules may be long: one kernel per traversal, written out for the compiler.
KERNELS = ("poolkit.backends",)


def _modules():
    """``{module name: (path, is_package)}`` for every module of the package."""
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = ("poolkit",) + path.relative_to(SRC).with_suffix("").parts
        package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if package else parts)
        out[name] = (path, package)
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    """Index in :data:`LAYERS` of the most specific prefix naming ``module``."""
    best, best_len = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best


def _resolve(importer: str, package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    base = base if package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(name: str):
    """The poolkit modules ``name`` imports (anywhere in it), as ``(target, line)``."""
    path, package = MODULES[name]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, package, node)
            # `from . import x` names a submodule when one exists, else an attribute of the package
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            if t == "poolkit" or t.startswith("poolkit."):
                while t not in MODULES:            # an attribute: its module
                    t = t.rsplit(".", 1)[0]
                if t != name:
                    found.append((t, node.lineno))
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def test_every_module_is_in_a_layer():
    for name in MODULES:
        _layer(name)


def test_no_module_imports_a_layer_above_its_own():
    bad = []
    for name, targets in GRAPH.items():
        for target, line in targets:
            # a package's __init__ may re-export its own submodules
            if target.startswith(name + ".") and MODULES[name][1]:
                continue
            if _layer(target) > _layer(name):
                bad.append(f"{name}:{line} imports {target} ({LAYERS[_layer(name)][0]} < {LAYERS[_layer(target)][0]})")
    assert not bad, "\n".join(bad)


def test_import_graph_has_no_cycle():
    # Arrows into a package's own __init__ from its submodules are how Python imports them; leave those out.
    edges = {name: {t for t, _ in targets if not name.startswith(t + ".")} for name, targets in GRAPH.items()}
    state: dict = {}
    stack: list = []

    def visit(n):
        state[n] = "open"
        stack.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(m):] + [m]))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = "done"

    for n in sorted(edges):
        if n not in state:
            visit(n)


def test_the_engines_do_not_import_each_other_and_functional_no_tooling():
    eager = {t for t, _ in GRAPH["poolkit.engine.eager"]}
    assert "poolkit.engine.lazy" not in eager
    for name, targets in GRAPH.items():
        if name.startswith(("poolkit.functional", "poolkit.layers", "poolkit.core", "poolkit.engine")):
            assert not [t for t, _ in targets if t.startswith(TOOLING)], name


def test_top_level_files_and_module_sizes():
    top = sorted(p.name for p in SRC.glob("*.py"))
    assert len(top) <= 8, top
    long = [f"{name} ({n} lines)" for name, (path, _) in MODULES.items()
            if not name.startswith(KERNELS) and (n := len(path.read_text(encoding="utf-8").splitlines())) > 700]
    assert not long, long


def _op_strings(path: pathlib.Path):
    """Lines where an op name stands as a string constant in code (docstrings aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docs = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docs.add(id(first.value))
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in OP_NAMES
            and id(node) not in docs]


def test_op_names_are_spelled_in_few_library_files():
    files = {name: lines for name, (path, _) in MODULES.items()
             if not name.startswith(TOOLING) and (lines := _op_strings(path))}
    assert "poolkit.core.reductions" in files            # the table spells them, once
    assert len(files) <= 5, files


@pytest.mark.parametrize("below", ["poolkit.core", "poolkit.backends", "poolkit.engine"])
def test_nothing_below_the_public_api_compares_op_names(below):
    # The op table is the one place that names the ops; below the public API nothing else may.
    files = {name: lines for name, (path, _) in MODULES.items()
             if name.startswith(below) and not name.startswith(TOOLING) and name != "poolkit.core.reductions"
             and (lines := _op_strings(path))}
    assert not files, files
