"""The structure of ``spevidence``: its import graph and the length of its functions
(issue 20; DESIGN.md section 9; docs/architecture.md).

Import rules, read from the source with :mod:`ast` (imports inside functions count too):

- no cycle between spevidence modules (a package's ``__init__`` counts as a module, so a
  submodule importing from its own package's ``__init__`` while it imports the submodule
  is a cycle);
- no private name across packages: a module or a name beginning with ``_`` under
  ``spevidence.A`` is imported only by modules inside ``spevidence.A``. Root-level private
  modules (``spevidence._atomic``, ``spevidence._version``...) are shared by the whole
  package; a private *name* from them is not.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import spevidence

ROOT = Path(spevidence.__file__).parent


def _module_name(path: Path) -> str:
    parts = ["spevidence", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(module: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(target module as written, names imported) for every spevidence import in ``module``."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "spevidence":
                    yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target.split(".")[0] == "spevidence":
                yield target, tuple(a.name for a in node.names)


def _resolve(target: str, names: tuple[str, ...]) -> set[str]:
    """The spevidence modules an import loads: ``from pkg import submodule`` loads both."""
    mods = {t for t in (target, *(f"{target}.{n}" for n in names)) if t in MODULES}
    while not mods and "." in target:
        target = target.rpartition(".")[0]
        mods = {target} if target in MODULES else set()
    return mods


def _graph() -> dict[str, set[str]]:
    return {
        m: {t for target, names in _imports(m) for t in _resolve(target, names)} - {m}
        for m in MODULES
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[v] = min(low[v], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def _package(module: str) -> str:
    """The top-level package a module belongs to (``spevidence.data._read`` -> ``data``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _private_across(module: str) -> list[str]:
    bad = []
    for target, names in _imports(module):
        if _package(target) == _package(module):
            continue
        private_path = [p for p in target.split(".")[2:] if p.startswith("_")]
        private_names = [n for n in names if n.startswith("_") and not n.startswith("__")]
        if private_path or private_names:
            bad.append(f"{module} imports {', '.join(names) or target} from {target}")
    return bad


def test_the_checks_see_the_package() -> None:
    graph = _graph()
    assert len(graph) > 50
    assert "spevidence.did" in graph["spevidence.pipeline"] | {
        t for m in graph if m.startswith("spevidence.pipeline") for t in graph[m]
    }


def test_cycle_finder_finds_a_planted_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_cycles_between_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_imported_across_packages(module: str) -> None:
    bad = _private_across(module)
    assert not bad, "\n".join(bad)


def test_packages_form_layers() -> None:
    """No two top-level packages import each other, however indirectly: the stages are
    layers (DESIGN.md section 2), each importing only those below it."""
    graph: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        graph.setdefault(_package(module), set()).update(
            _package(t) for t in targets if _package(t) != _package(module)
        )
    cycles = _cycles(graph)
    assert not cycles, "packages importing each other:\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


LONGEST = 120  # lines from ``def`` to the function's end, docstring included (issue 20)


def _function_lengths() -> list[tuple[int, str]]:
    out = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                assert node.end_lineno is not None
                out.append((node.end_lineno - node.lineno + 1, f"{module}.{node.name}"))
    return sorted(out, reverse=True)


def test_functions_are_short_enough_to_read_at_once() -> None:
    lengths = _function_lengths()
    assert len(lengths) > 500
    too_long = [f"{name}: {n} lines" for n, name in lengths if n >= LONGEST]
    assert not too_long, f"functions of {LONGEST} lines or more:\n" + "\n".join(too_long)
