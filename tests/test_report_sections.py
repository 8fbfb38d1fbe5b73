"""The report's sections are plug-ins (harness.report.sections.SECTIONS): the six built-in ones
keep their titles and order, a registered section comes after them with the next number, and a
section that raises loses only itself."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
from report_fixture import make_fixture_store

from harness.config import ReportConfig
from harness.report import build_report
from harness.report.sections import SECTIONS, SectionContext

DOCS = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
MD_ONLY = ReportConfig(pdf=False, formats=["md"])
BUILT_IN = ["1. Setup", "2. Findings", "3. Tables", "4. Figures",
            "5. Failed runs (not in any aggregate)", "6. How the statistics were computed", "7. Published claims"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sections") / "results.sqlite"
    make_fixture_store(path)
    return path


@pytest.fixture
def register():
    """SECTIONS.register for one test: what it registers is unregistered after it."""
    added: list[str] = []

    def add(name: str, **info):
        def decorate(section):
            SECTIONS.register(name, **info)(section)
            added.append(name)
            return section
        return decorate

    yield add
    for name in added:
        SECTIONS.unregister(name)


def headings(md: str) -> list[str]:
    return [line[3:] for line in md.splitlines() if line.startswith("## ")]


def section_text(md: str, heading: str) -> str:
    """The Markdown of one section, up to the next section's heading."""
    return md.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def doc_block(first_line: str) -> str:
    """The code block of docs/extending.md that starts with ``first_line``."""
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    (block,) = [b for b in blocks if b.startswith(first_line)]
    return block


def test_built_in_sections_keep_their_titles_and_order(store, tmp_path):
    assert SECTIONS.in_order()[:6] == ["setup", "findings", "tables", "figures", "failed", "statistics"]
    build_report(store, tmp_path / "out", options=MD_ONLY)
    md = (tmp_path / "out" / "report.md").read_text()
    assert headings(md) == BUILT_IN
    assert "RuntimeError: CUDA out of memory" in section_text(md, BUILT_IN[4])
    assert "### synthetic — tiny_bert" in section_text(md, BUILT_IN[1])


def test_a_registered_section_comes_next_with_its_items(store, tmp_path, register):
    @register("per_method", title="Runs per method")
    def per_method(context: SectionContext) -> tuple[str, list]:
        counts = context.finished.groupby("method").size()
        assert context.report.findings  # the built-in sections ran first
        return "Runs per method", [("kv", [(m, str(n)) for m, n in counts.items()]),
                                   ("bullets", [f"{len(context.failed)} failed"]), "A paragraph."]

    @register("last")
    def last(context: SectionContext) -> tuple[str, list]:
        return "Last words", [("h2", "the end")]

    report = build_report(store, tmp_path / "out", options=ReportConfig(formats=["md"]))
    md = (tmp_path / "out" / "report.md").read_text()
    assert headings(md) == [*BUILT_IN, "8. Runs per method", "9. Last words"]
    mine = section_text(md, "8. Runs per method")
    assert "| lora | 3 |" in mine and "| vera | 1 |" in mine
    assert "- 1 failed" in mine and "A paragraph." in mine
    assert "### the end" in section_text(md, "9. Last words")
    from pypdf import PdfReader

    text = " ".join(page.extract_text() or "" for page in PdfReader(report.pdf).pages)
    assert "8. Runs per method" in text and "9. Last words" in text


def test_a_section_that_raises_loses_only_itself(store, tmp_path, register, monkeypatch):
    @register("broken", title="Broken section")
    def broken(context: SectionContext) -> tuple[str, list]:
        raise RuntimeError("no meter here\nsecond line of the error")

    @register("after")
    def after(context: SectionContext) -> tuple[str, list]:
        return "After the broken one", ["still here"]

    def boom(context):
        raise ValueError("figures failed")

    monkeypatch.setitem(SECTIONS._items, "figures", boom)  # a built-in that fails too
    build_report(store, tmp_path / "out", options=MD_ONLY)
    md = (tmp_path / "out" / "report.md").read_text()
    assert headings(md) == [*BUILT_IN, "8. Broken section", "9. After the broken one"]
    assert section_text(md, "8. Broken section").strip() == "- Not built: no meter here"
    assert "second line" not in md
    assert section_text(md, "4. Figures").strip() == "- Not built: figures failed"
    assert "still here" in section_text(md, "9. After the broken one")
    assert "| lora (reference) |" in section_text(md, "3. Tables")  # the others are whole


def test_the_guides_example_section_loads_as_a_plug_in(store, tmp_path):
    module = tmp_path / "my_sections.py"
    module.write_text(doc_block("# my_sections.py"))
    spec = importlib.util.spec_from_file_location("my_sections", module)
    try:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
        build_report(store, tmp_path / "out", options=MD_ONLY)
    finally:
        SECTIONS.unregister("seeds")
    md = (tmp_path / "out" / "report.md").read_text()
    assert headings(md)[-1] == "8. Seeds per method"
    assert "| lora | 3 seeds |" in md and "| vera | 1 seed |" in md


def test_the_report_command_loads_a_named_plug_in_and_refuses_a_missing_one(store, tmp_path):
    import subprocess
    import sys

    module = tmp_path / "my_sections.py"
    module.write_text(doc_block("# my_sections.py"))
    command = [sys.executable, "-m", "harness.report", "--store", str(store), "--out", str(tmp_path / "out"),
               "--no-pdf", "--format", "md"]
    done = subprocess.run([*command, "--plugin", str(module)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert headings((tmp_path / "out" / "report.md").read_text())[-1] == "8. Seeds per method"
    missing = subprocess.run([*command, "--plugin", str(tmp_path / "nope.py")], capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: plugins: no such file: {tmp_path / 'nope.py'}"
