"""The module graph of tledge has no import cycles (counting imports inside functions too), neither between
modules nor between packages, the packages stand in their layers, and the CLI and `import tledge` load without
torch (Jetson images rarely have a matching one)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tledge"


def _module_graph() -> dict[str, set[str]]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    graph = {}
    for name, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tledge"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    deps.add(full if full in modules else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name.startswith("tledge"))
        # a package's own parents are imported by Python anyway; they are not edges of the design
        graph[name] = {d for d in deps if d in modules and d != name and not name.startswith(d + ".")}
    return graph


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str] | None:
    path, seen = [start], set()

    def visit(node: str) -> list[str] | None:
        for dep in sorted(graph[node]):
            if dep == start:
                return path + [start]
            if dep not in seen:
                seen.add(dep)
                path.append(dep)
                found = visit(dep)
                if found:
                    return found
                path.pop()
        return None

    return visit(start)


def test_no_import_cycles():
    graph = _module_graph()
    assert "tledge.models.backbones" in graph and "tledge.checkpoint" in graph
    cycles = [c for c in (_cycle_from(graph, m) for m in sorted(graph)) if c]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles[:3])


def _package_of(module: str) -> str:
    """The unit a module belongs to at the package level: its subpackage of tledge, or itself when it is a
    top-level module (tledge.api, tledge.card)."""
    return module.split(".")[1] if module.count(".") else module


def _package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, deps in _module_graph().items():
        if module == "tledge":
            continue
        unit = _package_of(module)
        graph.setdefault(unit, set()).update(_package_of(d) for d in deps if d != "tledge" and _package_of(d) != unit)
    return graph


# Bottom to top: a package may import only packages on lower lines (top-level modules are not listed: the
# cycle test covers them). The rules every job shares (devices, labelled folders, networks, the records of
# what was verified where) sit below the jobs; the CLI sits above everything and only hands options on.
LAYERS = [
    {"datasets", "models", "provenance", "data"},
    {"runtime"},
    {"training", "verification"},
    {"exporting"},
    {"cli"},
]


def test_no_package_cycles():
    graph = _package_graph()
    assert {"training", "exporting", "runtime", "verification", "cli"} <= set(graph)
    cycles = [c for c in (_cycle_from(graph, p) for p in sorted(graph)) if c]
    assert not cycles, " ; ".join(" -> ".join(c) for c in cycles[:3])


def test_packages_import_only_lower_layers():
    graph = _package_graph()
    level = {package: i for i, layer in enumerate(LAYERS) for package in layer}
    assert set(level) >= {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}, "a new package needs a layer"
    upward = [f"{a} -> {b}" for a in level for b in sorted(graph.get(a, ())) if b in level and level[b] >= level[a]]
    assert not upward, upward


def test_jobs_are_plain_functions_and_packages_plain_modules():
    import types

    import tledge
    import tledge.exporting
    import tledge.training

    assert isinstance(tledge.train, types.FunctionType) and isinstance(tledge.export, types.FunctionType)
    for package in (tledge.training, tledge.exporting):
        assert type(package) is types.ModuleType and not callable(package)


def test_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycle_from(graph, "a") == ["a", "b", "c", "a"] and _cycle_from(graph, "d") is None


def test_cli_and_package_import_without_torch():
    code = ("import sys, tledge, tledge.cli, tledge.options, tledge.training.config, tledge.exporting.options; "
            "tledge.train; tledge.export; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout
    assert out.strip() == "False"
