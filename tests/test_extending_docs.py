"""docs/extending.md's skeletons match the protocols they stand for, so the guide cannot drift from
the code again: the method's builder and hooks, the loader, the metric's declaration and
measurement, the store backend's methods and the report section. The examples also run:
tests/test_plugins.py runs the method, the loader and the metric through ``python -m harness``,
tests/test_report_sections.py the report section through a report."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

from harness import fields
from harness.methods.base import Adapted
from harness.methods.spec import register_method
from harness.report.sections import SECTIONS
from harness.results.store import ResultsStore, StoreBackend
from harness.tasks.data import TASK_LOADERS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
TEXT = DOCS.read_text()


def block(first_line: str) -> str:
    blocks = re.findall(r"```(?:python|yaml)\n(.*?)```", TEXT, flags=re.S)
    (found,) = [b for b in blocks if b.startswith(first_line)]
    return found


def functions(tree: ast.AST) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def parameters(node: ast.FunctionDef) -> list[tuple[str, str | None]]:
    """(name, default as source) of each parameter, as the skeleton writes them."""
    args = node.args
    defaults = [None] * (len(args.args) - len(args.defaults)) + [ast.unparse(d) for d in args.defaults]
    kw = [ast.unparse(d) if d is not None else None for d in args.kw_defaults]
    return list(zip([a.arg for a in args.args], defaults)) + list(zip([a.arg for a in args.kwonlyargs], kw))


def protocol_parameters(function) -> list[tuple[str, str | None]]:
    return [(p.name, None if p.default is inspect.Parameter.empty else repr(p.default))
            for p in inspect.signature(function).parameters.values()]


def decorator_call(node: ast.FunctionDef | ast.ClassDef, name: str) -> ast.Call:
    (call,) = [d for d in node.decorator_list if isinstance(d, ast.Call) and ast.unparse(d.func).endswith(name)]
    return call


def test_the_store_backend_skeleton_has_every_method_of_the_protocols():
    tree = ast.parse(block("# harness/results/backends/mystore.py"))
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    written = {n.name: n for n in cls.body if isinstance(n, ast.FunctionDef)}
    wanted = {name: f for name, f in vars(ResultsStore).items() if callable(f) and not name.startswith("_")}
    assert set(written) - {"__init__", "check"} == set(wanted), "skeleton and ResultsStore differ"
    for name, function in wanted.items():
        assert parameters(written[name]) == protocol_parameters(function), name
    # opening a store: the backend is called with (url, create), and checked with (url)
    assert parameters(written["__init__"]) == protocol_parameters(StoreBackend.__call__)
    assert parameters(written["check"])[1:] == protocol_parameters(StoreBackend.check)[1:]
    assert "classmethod" in [ast.unparse(d) for d in written["check"].decorator_list]


def test_the_method_skeleton_matches_the_builder_and_names_only_real_hooks():
    tree = ast.parse(block("# harness/methods/bitfit.py"))
    build = functions(tree)["build"]
    assert [a for a, _ in parameters(build)] == ["model", "method", "ctx"]  # spec.Builder's call
    call = decorator_call(build, "register_method")
    allowed = set(inspect.signature(register_method).parameters)
    assert {k.arg for k in call.keywords} <= allowed
    hooks = TEXT.split("- `Adapted` holds the model and the hooks a method may override:", 1)[1].split("\n- ", 1)[0]
    named = {re.match(r"\w+", h).group(0) for h in re.findall(r"`(\w+)[`(]", hooks)} - {"TrainingStart"}
    assert named and all(callable(getattr(Adapted, h, None)) for h in named), named - set(dir(Adapted))
    overridable = {n for n, f in vars(Adapted).items() if callable(f) and not n.startswith("_")
                   and n not in ("condition", "trainable_parameters", "count_parameters", "optimizer_class",
                                 "snapshot", "restore")}
    assert overridable <= named, f"hooks of Adapted the guide does not name: {overridable - named}"


def test_the_loader_skeleton_registers_what_the_registry_reads():
    tree = ast.parse(block("# harness/tasks/my_reviews.py"))
    load = functions(tree)["load"]
    assert [a for a, _ in parameters(load)] == ["cfg"]  # load_task calls loader(cfg)
    call = decorator_call(load, "TASK_LOADERS.register")
    import harness.tasks  # noqa: F401  (the built-in loaders register)

    read = {key for name in TASK_LOADERS.names() for key in TASK_LOADERS.info(name)}  # keys loaders declare
    assert {k.arg for k in call.keywords} <= read
    for keyword in call.keywords:
        if keyword.arg == "data_path":
            assert ast.literal_eval(keyword.value) in ("required", "optional")


def test_the_metric_skeleton_declares_with_real_arguments_and_measures_with_the_pipelines_call():
    tree = ast.parse(block("# my_bias_metric.py"))
    (declare,) = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "fields.declare"]
    inspect.signature(fields.declare).bind(**{k.arg: None for k in declare.keywords})
    measure = functions(tree)["count_biases"]
    assert [a for a, _ in parameters(measure)] == ["setup", "trained"]
    pipeline = Path(inspect.getsourcefile(__import__("harness.run.pipeline", fromlist=["x"]))).read_text()
    assert "MEASUREMENTS.get(name)(s, trained)" in pipeline  # called with (setup, training result)


def test_the_report_section_skeleton_matches_the_registry_and_the_builders_call():
    tree = ast.parse(block("# my_sections.py"))
    (section,) = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    assert [a for a, _ in parameters(section)] == ["context"]
    call = decorator_call(section, "SECTIONS.register")
    assert {k.arg for k in call.keywords} <= {"title"}
    assert all(len(inspect.signature(SECTIONS.get(n)).parameters) == 1 for n in SECTIONS.names())
