"""The package's import graph: no circles (function-local imports included), and evaluation and
model code never reach training or distributed code. Built from the source (AST), not by importing."""

from __future__ import annotations

import ast
from pathlib import Path

from contextclip.config import REPO_ROOT

PACKAGE = REPO_ROOT / "contextclip"

#: what evaluating a trained run (and the model it loads) is made of
EVALUATION = {"evaluate", "encoding", "zeroshot", "retrieval", "finetune", "model", "losses", "plots", "results",
              "results_io", "frozen_features", "image_cache", "interactive", "runs"}
#: what only training needs: the loop, its per-run caches and DataLoader, process ranks
TRAINING = {"train", "train_caches", "distributed", "multirun"}


def module_names(package: Path) -> dict[str, Path]:
    """``{"pkg.sub.mod": path}`` for every ``.py`` file under ``package`` (``__init__`` names the package)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its body (functions included)."""
    modules = module_names(package)
    graph = {}
    for name, path in modules.items():
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x, from ..data import y
                    anchor = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                # `from pkg import mod` imports the module pkg.mod; `from mod import name` the module mod
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for w in graph.get(todo.pop(), ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen


def test_the_package_has_no_import_circle_even_inside_functions():
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and "contextclip.errors" in graph
    assert cycles(graph) == []


def test_errors_is_the_bottom_layer():
    assert import_graph(PACKAGE)["contextclip.errors"] == set()


def test_evaluation_and_model_code_never_reach_training_or_distributed_code():
    graph = import_graph(PACKAGE)
    evaluation = {f"contextclip.{m}" for m in EVALUATION} & set(graph)
    assert {"contextclip.evaluate", "contextclip.encoding", "contextclip.model", "contextclip.plots"} <= evaluation
    training = {f"contextclip.{m}" for m in TRAINING}
    assert training <= set(graph), training - set(graph)
    reached = {m: sorted(reachable(graph, m) & training) for m in sorted(evaluation)}
    assert {m: r for m, r in reached.items() if r} == {}


def test_the_graph_sees_a_circle_hidden_in_a_function_and_relative_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg import b\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.sub import c\n    return c\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import a\nimport os\n")
    (pkg / "d.py").write_text("from pkg.a import something\n")
    graph = import_graph(pkg)
    assert graph["pkg.b"] == {"pkg.sub.c"} and graph["pkg.sub.c"] == {"pkg.a"} and graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.sub.c"]]
    assert reachable(graph, "pkg.d") == {"pkg.a", "pkg.b", "pkg.sub.c"}
