"""The house plan, checked by reading the source (`ast`), so a later change cannot quietly undo it:

- imports form no cycle between modules, counting the imports inside functions (which hide cycles
  from Python but not from a reader);
- dependencies point down: the job layer (`jobs.py`, `executors.py`, `lifelines.py`) and `store/`
  import no stage, analysis, engine or study module;
- no module under src/ is over 400 lines, no function over 60.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parents[1] / "src"
PACKAGE = SRC / "protoscope"
LOWER = ("protoscope.jobs", "protoscope.executors", "protoscope.lifelines", "protoscope.store")
UPPER = ("protoscope.stages", "protoscope.study", "protoscope.synth", "protoscope.analyze", "protoscope.train",
         "protoscope.report", "protoscope.cli", "protoscope.api", "protoscope.demo")


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str, path: Path) -> set[str]:
    """The protoscope modules that `name` imports anywhere in its file (a package's submodule counts
    as itself, not as its package: `from . import shapes` is an edge to `...data.shapes`)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [[alias.name] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            candidates = [[f"{base}.{alias.name}", base] for alias in node.names]
        else:
            continue
        for options in candidates:  # the most specific name that is a module
            hit = next((option for option in options if option in MODULES), None)
            if hit and hit != name:
                found.add(hit)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(graph.get(child, ())))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycle():
    assert cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_cycle():
    """The check above could pass by finding nothing: a graph with a cycle must be reported."""
    graph = {name: set(edges) for name, edges in GRAPH.items()}
    graph["protoscope.store.blocks"].add("protoscope.stages.base")
    found = cycles(graph)
    assert any("protoscope.store.blocks" in component and "protoscope.stages.base" in component for component in found)


@pytest.mark.parametrize("lower", LOWER)
def test_the_job_layer_and_the_store_import_nothing_above_them(lower):
    upward = {(name, target) for name, targets in GRAPH.items() if name == lower or name.startswith(lower + ".")
              for target in targets if target.startswith(UPPER)}
    assert upward == set()


def test_no_module_over_400_lines_and_no_function_over_60():
    long_modules = {name: n for name, path in MODULES.items() if (n := len(path.read_text().splitlines())) > 400}
    long_functions = {}
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long_functions[f"{name}.{node.name}"] = node.end_lineno - node.lineno + 1
    assert long_modules == {} and long_functions == {}
