"""The package's dependency rule (README, "How it is built"), checked on the source.

* leaves (``shared``, ``dsn``, ``scrubbing``) import nothing of the package but
  themselves, and ``scrubbing`` imports neither OpenTelemetry nor sentry-sdk;
* ``settings`` imports only leaves, ``profile`` only ``settings`` and leaves;
* a concern package imports leaves, ``settings``, ``profile``, its own modules and the
  documented exceptions below; only ``setup`` (and the package's ``__init__``) wires
  concerns together;
* across packages only a package's surface (its ``__init__``) is imported, never its modules;
* no import cycles (function-level and ``TYPE_CHECKING`` imports count);
* no module uses another module's private (``_name``) names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "telemetry"

LEAVES = {"telemetry.shared", "telemetry.dsn", "telemetry.scrubbing"}
CONFIG = {
    "telemetry.settings": LEAVES,
    "telemetry.profile": LEAVES | {"telemetry.settings"},
}
CONCERNS = {
    "telemetry.tracing",
    "telemetry.sentry",
    "telemetry.metrics",
    "telemetry.logs",
    "telemetry.file_sinks",
    "telemetry.doctor",
    "telemetry.genai",
}
#: The documented exceptions: the doctor checks the other concerns with their own code; the
#: GenAI facade builds on the public facade (spans, capture) and records into the metrics
#: registry's public surface.
EXCEPTIONS = {
    "telemetry.doctor": {"telemetry.tracing", "telemetry.sentry"},
    "telemetry.genai": {"telemetry.api", "telemetry.metrics"},
}
TOP = {
    "telemetry.api": LEAVES,
    "telemetry.cli": {"telemetry.doctor"},
}
#: The composition root and the public surface may import any package surface.
WIRING = {"telemetry.setup", "telemetry"}
THIRD_PARTY_FREE = {"telemetry.scrubbing": ("opentelemetry", "sentry_sdk")}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (a submodule when ``from pkg import submodule``)
    names: tuple[str, ...]
    line: int


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def unit_of(module: str) -> str:
    """The architectural unit a module belongs to: its top-level package or module."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imports() -> Iterator[Import]:
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, alias.name, (), node.lineno)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = tuple(a.name for a in node.names)
                submodules = [n for n in names if f"{node.module}.{n}" in MODULES]
                for sub in submodules:
                    yield Import(name, f"{node.module}.{sub}", (), node.lineno)
                rest = tuple(n for n in names if n not in submodules)
                if rest or not submodules:
                    yield Import(name, node.module, rest, node.lineno)


IMPORTS = list(imports())
INTERNAL = [i for i in IMPORTS if i.target == "telemetry" or i.target.startswith("telemetry.")]


def allowed_units(unit: str) -> set[str] | None:
    """The units ``unit`` may import besides itself; None: anything (wiring)."""
    if unit in WIRING:
        return None
    if unit in LEAVES:
        return set()
    if unit in CONFIG:
        return set(CONFIG[unit])
    if unit in CONCERNS:
        return LEAVES | set(CONFIG) | EXCEPTIONS.get(unit, set())
    if unit in TOP:
        return set(TOP[unit])
    raise AssertionError(f"{unit} has no place in the dependency rule: add it to this test")


def test_every_module_has_a_place_in_the_rule() -> None:
    for module in MODULES:
        allowed_units(unit_of(module))


def test_units_import_only_what_the_rule_allows() -> None:
    wrong = []
    for imp in INTERNAL:
        source, target = unit_of(imp.source), unit_of(imp.target)
        allowed = allowed_units(source)
        if source != target and allowed is not None and target not in allowed:
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target}")
    assert not wrong, "imports the dependency rule forbids:\n" + "\n".join(wrong)


def test_other_packages_are_imported_through_their_surface() -> None:
    wrong = []
    for imp in INTERNAL:
        source, target = unit_of(imp.source), unit_of(imp.target)
        if source != target and imp.target != target and MODULES[target].name == "__init__.py":
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target}, not {target}")
    assert not wrong, "reaches into another package's modules:\n" + "\n".join(wrong)


@pytest.mark.parametrize("package", sorted(THIRD_PARTY_FREE))
def test_leaf_imports_no_sink_library(package: str) -> None:
    banned = THIRD_PARTY_FREE[package]
    wrong = [
        f"{imp.source}:{imp.line} imports {imp.target}"
        for imp in IMPORTS
        if unit_of(imp.source) == package and imp.target.split(".")[0] in banned
    ]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for imp in INTERNAL:
        if imp.target in MODULES and imp.target != imp.source:
            graph[imp.source].add(imp.target)
    cycles = [scc for scc in strongly_connected(graph) if len(scc) > 1]
    assert not cycles, f"import cycles: {cycles}"


def test_no_private_names_of_other_modules() -> None:
    wrong = [
        f"{imp.source}:{imp.line} imports {name} from {imp.target}"
        for imp in INTERNAL
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        aliases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("telemetry")
            for alias in node.names
            if f"{node.module}.{alias.name}" in MODULES
        }
        wrong += [
            f"{name}:{node.lineno} uses {node.value.id}.{node.attr}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
        ]
    assert not wrong, "private names used across modules:\n" + "\n".join(wrong)


def test_the_cycle_check_finds_a_cycle() -> None:
    components = strongly_connected({"a": {"b"}, "b": {"a"}, "c": set()})
    assert sorted(map(sorted, components)) == [["a", "b"], ["c"]]


def strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (iterative): the graph's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[set[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                result.append(component)
    return result
