"""The package's layers import only downward, and no modules import each other in a cycle.

Allowed order (each layer may import those before it):

    validation, io, errors -> data -> formats -> models -> attacks -> {exact, training, analysis}
    -> experiments -> report -> cli (and the package's own __init__, its facade)

exact, training and analysis are siblings: none of them imports another. Every import counts,
also those inside functions, under TYPE_CHECKING or by `importlib.import_module("advlab...")` (a
cycle held off at run time is still one).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "advlab"
LAYERS = {
    "validation": 0, "io": 0, "errors": 0,
    "progress": 0,
    "data": 1,
    "formats": 1.5,  # below models: load_external_model reads .onnx files through it
    "models": 2,
    "attacks": 3,
    "exact": 4, "training": 4, "analysis": 4,
    "experiments": 5,
    "report": 6,
    "cli": 7, "__main__": 7, "": 8,  # "": the package's __init__ (the public facade)
}
# Known violations, each to be removed once fixed (a test fails while a listed one is gone).
# (importing module, imported module)
KNOWN_UPWARD: set[tuple[str, str]] = set()
KNOWN_CYCLES: set[frozenset[str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, name: str) -> set[str]:
    """advlab modules imported anywhere in the file (resolved to module names where they are modules)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "advlab")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "advlab":
                continue
            for alias in node.names:  # `from advlab.models import linear` imports a module
                candidate = f"{base}.{alias.name}"
                found.add(candidate if candidate in MODULES else base)
        elif _is_dynamic_import(node):  # importlib.import_module("advlab.report.x") imports it as surely
            found.add(node.args[0].value)
    return found


def _is_dynamic_import(node: ast.AST) -> bool:
    """A call import_module("advlab...") / __import__("advlab...") with the module named by a literal."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return False
    function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    name = node.args[0].value
    return function in ("import_module", "__import__") and isinstance(name, str) and name.split(".")[0] == "advlab"


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> tuple[int, str]:
    top = module.split(".")[1] if "." in module else ""
    if top not in LAYERS:
        raise AssertionError(f"{module}: not in any layer; add its package to LAYERS in tests/test_layering.py")
    return LAYERS[top], top


GRAPH = {name: _imports(path, name) - {name} for name, path in MODULES.items()}


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_imports_only_go_down():
    bad = []
    for source, targets in GRAPH.items():
        (level, top) = _layer(source)
        for target in sorted(targets):
            target_level, target_top = _layer(target)
            upward = target_level > level or (target_level == level == 4 and target_top != top)
            if upward and (source, target) not in KNOWN_UPWARD:
                bad.append(f"{source} imports {target}")
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def _cycles() -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(frozenset(component))

    for v in MODULES:
        if v not in index:
            visit(v)
    return components


def test_no_import_cycles():
    # a package's __init__ re-exporting its submodules is not a cycle of the design
    found = [c for c in _cycles() if c not in KNOWN_CYCLES]
    assert not found, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in found)


def test_known_violations_are_still_real():
    """An allow-list entry that no longer happens must be removed (keeps the list honest)."""
    for source, target in KNOWN_UPWARD:
        assert target in GRAPH[source], f"{source} no longer imports {target}: remove it from KNOWN_UPWARD"
    cycles = set(_cycles())
    for cycle in KNOWN_CYCLES:
        assert cycle in cycles, f"cycle {sorted(cycle)} is gone: remove it from KNOWN_CYCLES"
