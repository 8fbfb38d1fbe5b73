"""The shape of the package: the layers ``harness.LAYERS`` declares, no import circle, short
modules and functions, and a top folder a newcomer can read (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import harness

PACKAGE = Path(harness.__file__).resolve().parent
# Modules allowed past about 250 lines, each with its reason.
LONG_MODULES: dict[str, str] = {
    "harness.fields": "one declaration per column of the runs table",
    "harness.results.backends.sqlite": "the one module that knows the store is a file: every read "
                                       "and write (runs, claims, predictions) with its transaction",
    "harness.results.backends.postgres": "the same for a PostgreSQL database: every write with its "
                                         "transaction, advisory lock and the server's clock",
}
# Functions allowed past about 60 lines, each with its reason.
LONG_FUNCTIONS: dict[str, str] = {}
MAX_FUNCTION_LINES = 60
MAX_TOP_MODULES = 10


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str], root: Path = PACKAGE) -> set[str]:
    """Every module of the package that ``path`` imports: at the top, inside a function, or for
    annotations only (``if TYPE_CHECKING:``), since each of them ties the two modules together."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
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


def import_graph(root: Path = PACKAGE) -> nx.DiGraph:
    files = [p for p in root.rglob("*.py") if "metric_scripts" not in p.parts]
    modules = {module_name(p, root) for p in files}
    graph = nx.DiGraph()
    for path in files:
        graph.add_node(module_name(path, root))
        for target in imports_of(path, modules, root):
            graph.add_edge(module_name(path, root), target)
        if path.name == "__init__.py" and any(f"{call}(__name__, __path__)" in path.read_text()
                                              for call in ("import_submodules", "declare_submodules")):
            # a package that imports every module in its folder depends on each of them
            for sibling in path.parent.glob("*.py"):
                if not sibling.name.startswith("_"):
                    graph.add_edge(module_name(path, root), module_name(sibling, root))
            for sub in path.parent.glob("*/__init__.py"):
                graph.add_edge(module_name(path, root), module_name(sub, root))
    return graph


def layer_index(module: str, layers) -> int | None:
    """The position (0: top) of the layer that holds ``module``: its longest declared prefix."""
    best, where = -1, None
    for i, (_, members, _) in enumerate(layers):
        for member in members:
            if (module == member or module.startswith(member + ".")) and len(member) > best:
                best, where = len(member), i
    return where


def problems(graph: nx.DiGraph, layers) -> list[str]:
    """Every import circle, every module no layer holds, every import of a higher layer."""
    found = [" -> ".join(c + c[:1]) + " (circle)" for c in sorted(nx.simple_cycles(graph), key=len)]
    for module in sorted(graph.nodes):
        if layer_index(module, layers) is None:
            found.append(f"{module} is in no layer")
    for a, b in sorted(graph.edges):
        la, lb = layer_index(a, layers), layer_index(b, layers)
        if la is not None and lb is not None and lb < la:
            found.append(f"{a} ({layers[la][0]}) imports {b} ({layers[lb][0]}), a higher layer")
    return found


def test_every_import_follows_the_declared_layers():
    graph = import_graph()
    assert graph.number_of_nodes() > 100 and graph.number_of_edges() > 200  # the graph is real
    found = problems(graph, harness.LAYERS)
    assert not found, "\n".join(found[:20])


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for rel, text in {"__init__.py": "", **files}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


LAYERS = (("high", ("pkg.high",), ""), ("low", ("pkg", "pkg.low"), ""))


def test_the_check_catches_each_kind_of_fault(tmp_path):
    """A circle closed at the top, inside a function, or for annotations only, and an import of a
    higher layer, are each reported; a clean package reports nothing."""
    clean = _package(tmp_path / "clean", {"high.py": "from pkg.low import x\n", "low.py": "x = 1\n"})
    assert problems(import_graph(clean), LAYERS) == []
    kinds = {
        "top": "from pkg.low import x\n",
        "function": "def f():\n    from pkg.low import x\n",
        "type_only": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.low import x\n",
    }
    for kind, back in kinds.items():
        root = _package(tmp_path / kind, {"high.py": "from pkg.low import x\n",
                                          "low.py": "x = 1\n", "other.py": "",
                                          "low2.py": back.replace("pkg.low", "pkg.low3"),
                                          "low3.py": back.replace("pkg.low", "pkg.low2")})
        layers = (("high", ("pkg.high",), ""), ("low", ("pkg",), ""))
        assert any("(circle)" in p for p in problems(import_graph(root), layers)), kind
        upward = _package(tmp_path / f"up_{kind}", {"high.py": "", "low.py": back.replace("pkg.low", "pkg.high")})
        assert any("a higher layer" in p for p in problems(import_graph(upward), LAYERS)), kind
    stray = _package(tmp_path / "stray", {"high.py": "", "low.py": "", "extra/__init__.py": ""})
    assert problems(import_graph(stray), (("high", ("pkg.high",), ""), ("low", ("pkg.low",), ""))) == \
        ["pkg is in no layer", "pkg.extra is in no layer"]


def test_the_top_folder_stays_small():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, f"{len(top)} modules directly in harness/: {top}"
    declared = {m for _, members, _ in harness.LAYERS for m in members}
    folders = {f"harness.{p.parent.name}" for p in PACKAGE.glob("*/__init__.py")}
    assert folders - {"harness.conf"} <= declared, folders - declared


def test_modules_stay_short():
    long = {module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 250 and module_name(p) not in LONG_MODULES}
    assert not long, f"modules over 250 lines (split them or give a reason in LONG_MODULES): {long}"


def long_functions(root: Path = PACKAGE) -> dict[str, int]:
    found = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found[f"{module_name(path, root)}.{node.name}"] = lines
    return found


def test_functions_stay_short():
    long = {k: v for k, v in long_functions().items() if k not in LONG_FUNCTIONS}
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them into named steps or "
                      f"give a reason in LONG_FUNCTIONS): {long}")


def test_the_length_check_sees_a_long_function(tmp_path):
    root = _package(tmp_path, {"m.py": "def f():\n" + "    x = 1\n" * MAX_FUNCTION_LINES})
    assert long_functions(root) == {"pkg.m.f": MAX_FUNCTION_LINES + 1}


def test_schemas_import_no_plug_in():
    graph = import_graph()
    reachable = nx.descendants(graph, "harness.config")
    assert not {m for m in reachable if m.startswith(("harness.methods", "harness.tasks",
                                                        "harness.tracking", "harness.results"))}


def test_the_architecture_document_lists_the_layers_in_order():
    """docs/architecture.md names every layer, top to bottom, in the order ``LAYERS`` declares."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    positions = [text.find(f"**{name}**") for name, _, _ in harness.LAYERS]
    assert -1 not in positions, [name for (name, _, _), p in zip(harness.LAYERS, positions) if p < 0]
    assert positions == sorted(positions)
