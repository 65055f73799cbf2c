"""The product's import structure: layers that only import downwards, no cycles, and no product
module that imports the development tools (the loopback Hub server lives in tools/).

Imports are read from the source (every `import` statement, at module level or inside a
function), so a lazy import inside a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Import name -> folder (pyproject.toml's package-dir): the Hub tools and the app are installed as
# diffcd_hub and diffcd_space, so that no generic top-level name (hub, space) is claimed.
PRODUCT_PACKAGES = {"diffcd": "diffcd", "diffcd_hub": "hub", "diffcd_space": "space"}
OLD_NAMES = ("hub", "space")

# What each part of the product may import (besides itself). app.py builds and launches the app;
# it also enables diffcd's compilation cache and warms up a fit.
ALLOWED = {
    "diffcd": set(),
    "diffcd_hub": {"diffcd"},
    "diffcd_space": {"diffcd_hub", "diffcd"},
    "app": {"diffcd_space", "diffcd"},
}
FORBIDDEN_IN_DIFFCD = ("gradio", "huggingface_hub")  # the library knows nothing of the app or the Hub


def _product_modules() -> dict[str, Path]:
    modules = {}
    for package, folder in PRODUCT_PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = [package, *path.relative_to(ROOT / folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    modules["app"] = ROOT / "app.py"
    return modules


MODULES = _product_modules()


def imported_names(module: str, path: Path) -> list[tuple[str, int]]:
    """(dotted name, line) of everything `path` imports; `from a import b` gives a.b when that is a
    module, else a; relative imports are resolved; importlib.import_module("x") counts too."""
    found = []
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                name = f"{source}.{alias.name}"
                found.append((name if name in MODULES else source, node.lineno))
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.append((node.args[0].value, node.lineno))
    return found


def _product_target(name: str) -> str | None:
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in MODULES else None


def import_graph() -> dict[str, set[str]]:
    """module -> the product modules it imports."""
    graph = {}
    for module, path in MODULES.items():
        targets = {_product_target(name) for name, _ in imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_product_module_imports_the_development_tools():
    offenders = [f"{path.relative_to(ROOT)}:{line} imports {name}"
                 for module, path in MODULES.items() for name, line in imported_names(module, path)
                 if name == "tools" or name.startswith("tools.") or name.split(".")[-1] == "hubserver"]
    assert not offenders, offenders


def test_each_layer_imports_only_the_layers_below_it():
    wrong = [f"{MODULES[module].relative_to(ROOT)} imports {target}"
             for module, targets in import_graph().items() for target in targets
             if target.split(".")[0] != module.split(".")[0]
             and target.split(".")[0] not in ALLOWED[module.split(".")[0]]]
    assert not wrong, wrong


def test_nothing_imports_the_folder_names_of_the_hub_tools_or_the_app():
    sources = {**MODULES, **{str(p.relative_to(ROOT)): p for folder in ("tests", "benchmarks", "tools")
                             for p in sorted((ROOT / folder).rglob("*.py"))}}
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for module, path in sources.items() for name, line in imported_names(module, path)
             if name.split(".")[0] in OLD_NAMES]
    assert not wrong, wrong


def test_the_package_names_are_those_pyproject_installs():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert project["package-dir"] == PRODUCT_PACKAGES and sorted(project["packages"]) == sorted(PRODUCT_PACKAGES)


def test_the_library_imports_neither_gradio_nor_huggingface_hub():
    wrong = [f"{path.relative_to(ROOT)}:{line} imports {name}"
             for module, path in MODULES.items() if module.split(".")[0] == "diffcd"
             for name, line in imported_names(module, path) if name.split(".")[0] in FORBIDDEN_IN_DIFFCD]
    assert not wrong, wrong


def test_there_are_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


@pytest.mark.parametrize("graph, cycle", [
    ({"a": {"b"}, "b": {"a"}}, ["a", "b", "a"]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
    ({"a": {"b", "c"}, "b": {"c"}, "c": {"b"}}, ["b", "c", "b"]),
])
def test_the_cycle_finder_finds_cycles(graph, cycle):
    assert find_cycle(graph) == cycle


def test_lazy_and_relative_imports_are_seen(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("from . import fit\n\ndef f():\n    from diffcd_hub.pull import pull_checkpoint\n"
                      "    import importlib\n    importlib.import_module('tools.hubserver')\n")
    names = [name for name, _ in imported_names("diffcd.x", source)]
    assert names == ["diffcd.fit", "diffcd_hub.pull", "importlib", "tools.hubserver"]
