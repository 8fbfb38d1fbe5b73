"""The shape of the package: no import cycle and short modules."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
# Modules allowed past about 250 lines, each with its reason.
LONG_MODULES: dict[str, str] = {
    "harness.config": "one typed schema per config group, read together",
    "harness.fields": "one declaration per column of the runs table",
    "harness.results.backends.sqlite": "the one module that knows the store is a file: every read "
                                       "and write (runs, claims, predictions) with its transaction",
    "harness.results.backends.postgres": "the same for a PostgreSQL database: every write with its "
                                         "transaction, advisory lock and the server's clock",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """Every harness module ``path`` imports, at the top or inside a function."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and ast.unparse(block.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
                   for n in ast.walk(block)}  # imports for annotations only never run
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            # ``from pkg import sub`` imports the submodule when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # harness.x.y.Name -> harness.x.y
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> nx.DiGraph:
    files = [p for p in PACKAGE.rglob("*.py") if "metric_scripts" not in p.parts]
    modules = {module_name(p) for p in files}
    graph = nx.DiGraph()
    for path in files:
        graph.add_node(module_name(path))
        for target in imports_of(path, modules):
            graph.add_edge(module_name(path), target)
        if path.name == "__init__.py" and any(f"{call}(__name__, __path__)" in path.read_text()
                                              for call in ("import_submodules", "declare_submodules")):
            # a package that imports every module in its folder depends on each of them
            for sibling in path.parent.glob("*.py"):
                if not sibling.name.startswith("_"):
                    graph.add_edge(module_name(path), module_name(sibling))
            for sub in path.parent.glob("*/__init__.py"):
                graph.add_edge(module_name(path), module_name(sub))
    return graph


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert graph.number_of_nodes() > 40 and graph.number_of_edges() > 80  # the graph is real
    cycles = sorted(nx.simple_cycles(graph), key=len)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:10])


def test_the_cycle_check_sees_a_cycle(tmp_path):
    graph = import_graph()
    graph.add_edge("harness.config", "harness.methods")  # what config.py used to do
    assert list(nx.simple_cycles(graph))


def test_modules_stay_short():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 250 and module_name(p) not in LONG_MODULES}
    assert not long, f"modules over 250 lines (split them or give a reason in LONG_MODULES): {long}"


def test_schemas_import_no_plug_in():
    graph = import_graph()
    reachable = nx.descendants(graph, "harness.config")
    assert not {m for m in reachable if m.startswith(("harness.methods", "harness.tasks",
                                                        "harness.tracking", "harness.results"))}
