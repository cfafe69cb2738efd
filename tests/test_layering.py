"""The package's layers (README "Layout") import downwards only, and no two project modules
import each other, directly or through others (module-level and function-level imports
alike; the registries' ``importlib`` loading by name is not an import edge)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "neupims"

#: top-level module or package -> layer (README "Layout"; DESIGN: imports flow downwards)
LAYERS = {
    "errors": 1,
    "atomic": 1,
    "ops": 1,
    "limits": 1,
    "textio": 1,
    "config": 1,
    "workloads": 2,
    "devices": 3,
    "replay": 3,
    "systems": 4,
    "serving": 5,
    "experiments": 6,
    "plots": 6,
    "crosscheck": 6,
    "calibrate": 6,
    "cli": 7,
    "__init__": 8,
    "__main__": 8,
}


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports anywhere in its body."""
    tree = ast.parse(path.read_text())
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            subs = [f"{base}.{a.name}" for a in node.names]
            # `from pkg import submodule` depends on the submodule (and pkg's __init__ runs
            # first, but pkg does not depend on the importer); `from pkg import name` on pkg
            targets = [t if t in modules else base for t in subs]
        else:
            continue
        for t in targets:
            while t and t not in modules:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {m: _imports(p, m, mods) for m, p in mods.items()}


def _layer(mod: str) -> int:
    parts = mod.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def test_every_top_level_module_has_a_layer():
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert tops <= set(LAYERS), f"give these a layer: {sorted(tops - set(LAYERS))}"


def test_imports_flow_downwards():
    bad = [
        f"{m} (layer {_layer(m)}) imports {t} (layer {_layer(t)})"
        for m, deps in _graph().items()
        for t in deps
        if t != "neupims" and _layer(t) > _layer(m)
    ]
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycles():
    graph = _graph()
    # the package root re-exports the public API; it is nobody's dependency
    graph = {m: {t for t in d if t != "neupims"} for m, d in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                cycles.append([*stack[stack.index(t) :], t])
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


#: Files another change is rewriting now; their function-level imports are pending cleanup
#: (the lead removes each from this list once it is cleaned). Nothing else may be added.
PENDING_CLEANUP: set[str] = set()  # every module follows the rule

#: Top-level packages that may be imported inside a function, and why: each is optional
#: (not in pyproject's base ``dependencies``) or heavy and needed by one rarely used path.
OPTIONAL_IMPORTS = {
    "torch": "the `gpu` extra; only the GPU cross-check (neupims.crosscheck.gpu) uses it",
    "cupy": "a GPU array library, never installed by the base package",
    "triton": "GPU kernels, installed with torch (the `gpu` extra) at most",
    "dask": "heavy; only `neupims run --cluster/--scheduler` needs it",
    "distributed": "Dask's scheduler client; only `neupims run --cluster/--scheduler`",
    "numba": "the JIT, imported only where a pure-Python path runs without it (NEUPIMS_NO_JIT)",
}


def _function_level_imports(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, top-level module names) of every import statement inside a function."""
    out: list[tuple[int, list[str]]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if in_function and isinstance(child, ast.Import):
                out.append((child.lineno, [a.name.split(".")[0] for a in child.names]))
            elif in_function and isinstance(child, ast.ImportFrom):
                top = "." if child.level else (child.module or "").split(".")[0]
                out.append((child.lineno, [top]))
            visit(child, in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef))

    visit(tree, False)
    return out


def test_imports_inside_functions_are_only_optional_dependencies():
    bad = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).as_posix()
        if rel in PENDING_CLEANUP:
            continue
        for line, tops in _function_level_imports(ast.parse(path.read_text())):
            if not set(tops) <= set(OPTIONAL_IMPORTS):
                bad.append(f"neupims/{rel}:{line}: import of {', '.join(tops)} inside a function")
    assert not bad, (
        "imports belong at module level (a cycle means a function is in the wrong layer); "
        "inside a function only for the optional dependencies in OPTIONAL_IMPORTS:\n"
        + "\n".join(bad)
    )


def test_the_function_level_import_check_sees_nested_and_method_imports():
    src = (
        "import os\n"
        "class A:\n"
        "    def m(self):\n"
        "        if True:\n"
        "            from neupims import ops\n"
        "def f():\n"
        "    def g():\n"
        "        import torch.nn\n"
        "    from . import x\n"
    )
    assert _function_level_imports(ast.parse(src)) == [(5, ["neupims"]), (8, ["torch"]), (9, ["."])]
