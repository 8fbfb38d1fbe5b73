"""The dashboard in a real browser (Debian's Chromium, driven by Playwright) over a store written
by real tiny runs: the Pareto view and its numbers, other axes, filters, a run's page, two runs
compared example by example, the exports, the report's findings beside the figure. Each view's
screenshot is checked to show something, and the numbers on the page are checked against the
store. The live view and the PostgreSQL store: tests/test_dashboard_live.py."""
from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pandas as pd
import pytest

from conftest import tiny_config
from tests.dashboard_browser import (Dashboard, axis_title, check_screenshot, chromium, choose, idle, launch,
                                     open_page, table_rows, traces, wait_for_figure)

MIB = 2**20
WRITTEN: dict = {}  # the store's files as the runs left them: the dashboard must never change them
FAILED_ERROR = "WorkerError: worker process killed by signal 9 (out of memory?)"


@pytest.fixture(scope="module")
def browser():
    executable = chromium()  # skips, in one line, without Chromium, Playwright or Dash
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, executable)
        yield b
        b.close()


@pytest.fixture(scope="module")
def tiny_store(browser, tmp_path_factory):
    """Real tiny runs: lora and full fine-tuning on two seeds each (on the tiny model they answer
    one class each, so they disagree on every example of the other class), and a failed run."""
    from harness.job.runner import run_job
    from harness.results import load
    from harness.results.store import open_store

    store = tmp_path_factory.mktemp("dashboard") / "results.sqlite"
    for method in ("lora", "full"):
        for seed in (0, 1):
            assert run_job(tiny_config(store, f"method={method}", f"seed={seed}"))["status"] == "finished"
    good = load(store, decode=False).iloc[0].to_dict()
    open_store(store).record(
        {k: good[k] for k in ("sweep", "created_at", "method", "model", "task", "quant", "config_json",
                              "schema_version")}
        | {"run_id": "broken-run", "seed": 7, "r": 8, "config_hash": "broken", "status": "failed",
           "error": FAILED_ERROR}, [])
    WRITTEN.update(files(store))
    return store


def files(store) -> dict[str, str]:
    """The store's database and its journal by content: SQLite's shared-memory index aside, and
    an empty journal (a reader of a WAL database makes one, and it holds nothing) as none."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in store.parent.glob(f"{store.name}*")
            if not p.name.endswith("-shm") and p.stat().st_size}


@pytest.fixture(scope="module")
def dashboard(tiny_store, tmp_path_factory):
    d = Dashboard(tiny_store, log=tmp_path_factory.mktemp("dashboard-log") / "log")
    yield d
    d.stop()


@pytest.fixture
def page(browser, dashboard):
    p = open_page(browser, dashboard.url)
    yield p
    assert not p.errors, p.errors
    elsewhere = [u for u in p.requests if not u.startswith(dashboard.url)]
    assert not elsewhere, elsewhere  # the page asks nothing of any other address
    assert "Traceback" not in dashboard.output(), dashboard.output()[-3000:]  # no callback failed
    p.close()


def finished(store) -> pd.DataFrame:
    from harness.results import load

    return load(store, status="finished", decode=False)


def by_method(store, column: str, scale: float = 1.0) -> dict[str, float]:
    return (finished(store).groupby("method")[column].mean() / scale).to_dict()


def points(page) -> dict[str, tuple[list, list]]:
    """{trace name: (x, y)} of the configurations (not the front)."""
    return {t["name"]: (t["x"], t["y"]) for t in traces(page) if not t["name"].startswith("Pareto front")}


def test_the_pareto_view_shows_the_store_and_the_reports_findings(page, tiny_store, tmp_path):
    from harness.config import ReportConfig
    from harness.report import build_report

    assert page.inner_text("#store-label") == str(tiny_store)
    assert [page.inner_text(f"#count-{k}") for k in ("finished", "failed", "running")] == ["4", "1", "0"]
    memory, accuracy = by_method(tiny_store, "peak_memory_bytes", MIB), by_method(tiny_store, "accuracy")
    shown = points(page)
    hover = next(t for t in traces(page) if t["name"] == "lora · none")["hovertext"][0]
    assert "n = 2 (seeds 0, 1)" in hover and "lr=0.002" in hover and "r=8" in hover  # the configuration
    assert set(shown) == {"lora · none", "full · none"}
    for method in ("lora", "full"):
        (x,), (y,) = shown[f"{method} · none"]
        assert x == pytest.approx(memory[method]) and y == pytest.approx(accuracy[method])
    assert any(t["name"].startswith("Pareto front: synthetic — tiny_bert") for t in traces(page))
    assert axis_title(page, "x") == "Peak memory MiB (lower is better)"
    assert axis_title(page, "y") == "Accuracy (higher is better)"
    summary = page.inner_text("#selection-summary")
    assert "5 runs selected: 4 finished, 1 failed; 2 configurations in 1 tables" in summary
    idle(page)
    panel = page.inner_text("#findings")
    report = build_report(tiny_store, tmp_path / "report", options=ReportConfig(formats=["md"], pdf=False))
    found = report.findings[("synthetic", "tiny_bert")]
    for heading in ("Equal budgets", "Best choice under a memory budget", "Differences from the reference"):
        assert heading in panel and all(s in panel for s in found[heading]), heading
    assert "Published claims" in panel
    check_screenshot(page, tmp_path / "pareto.png")


def test_other_axes_redraw_in_each_fields_direction(page, tiny_store, tmp_path):
    choose(page, "x-field", "Wall time s")
    choose(page, "y-field", "Macro-F1")
    page.wait_for_function("() => document.querySelector('#pareto .js-plotly-plot').layout.xaxis.title.text"
                           ".startsWith('Wall time s')")
    idle(page)
    wall, f1 = by_method(tiny_store, "wall_s"), by_method(tiny_store, "f1_macro")
    for method, ((x,), (y,)) in ((n.split(" · ")[0], v) for n, v in points(page).items()):
        assert x == pytest.approx(wall[method], rel=1e-5) and y == pytest.approx(f1[method])
    assert axis_title(page, "y") == "Macro-F1 (higher is better)"
    choose(page, "x-field", "Train samples/s")
    page.wait_for_function("() => document.querySelector('#pareto .js-plotly-plot').layout.xaxis.title.text"
                           " === 'Train samples/s (higher is better)'")
    idle(page)
    speed = by_method(tiny_store, "train_samples_per_s")
    front = next(t for t in traces(page) if t["name"].startswith("Pareto front"))
    fastest = max(speed, key=speed.get)  # the fastest configuration is on the front when speed is better high
    assert any(x == pytest.approx(speed[fastest], rel=1e-5) for x in front["x"])
    check_screenshot(page, tmp_path / "axes.png", "#pareto")


def test_filters_narrow_the_figure_and_the_table(page, tiny_store, tmp_path):
    page.locator("#runs-table th[data-dash-column='accuracy'] .column-header--sort").click()  # ascending
    page.wait_for_function("() => document.querySelector('#runs-table td[data-dash-column=\"status\"]')"
                           ".innerText === 'finished'")
    idle(page)
    ordered = [float(r["accuracy"]) for r in table_rows(page) if r["accuracy"]]
    assert ordered == sorted(ordered) and len(ordered) == 4 and table_rows(page)[-1]["status"] == "failed"
    choose(page, "f-method", "full")
    page.wait_for_function("() => document.querySelector('#selection-summary').innerText.startsWith('2 runs')")
    idle(page)
    assert set(points(page)) == {"full · none"}
    rows = table_rows(page)
    assert len(rows) == 2 and {r["method"] for r in rows} == {"full"}
    stored = finished(tiny_store).set_index("run_id")
    for r in rows:
        run_id = next(i for i in stored.index if i.startswith(r["run"]))
        assert float(r["accuracy"]) == pytest.approx(stored.at[run_id, "accuracy"], abs=1e-6)
    choose(page, "f-seed", "1")
    page.wait_for_function("() => document.querySelector('#selection-summary').innerText.startsWith('1 runs')")
    idle(page)
    assert [r["seed"] for r in table_rows(page)] == ["1"]
    check_screenshot(page, tmp_path / "filtered.png")


def open_run(page, run_id: str) -> None:
    page.locator("#runs-table td[data-dash-column='run']", has_text=run_id[:12]).first.click()
    page.wait_for_selector("#view-run #run-title")
    idle(page)


def test_a_runs_page_and_a_failed_runs_error(page, tiny_store, tmp_path):
    run = finished(tiny_store).iloc[0]
    open_run(page, run.run_id)
    assert page.is_visible("#view-run") and not page.is_visible("#view-explore")
    assert run.method in page.inner_text("#run-title")
    metrics = page.inner_text("#run-metrics")
    assert f"{run.accuracy:.6g}" in metrics and f"{run.f1_macro:.6g}" in metrics
    config = page.inner_text("#run-config")
    assert f'"name": "{run.method}"' in config and run.config_hash in page.inner_text("#view-run")
    wait_for_figure(page, "#run-curves")
    wait_for_figure(page, "#run-time")
    wait_for_figure(page, "#run-memory")
    check_screenshot(page, tmp_path / "run.png")
    page.locator("#tabs").get_by_text("Explore", exact=True).click()
    open_run(page, "broken-run")
    assert page.inner_text("#run-error") == FAILED_ERROR and "failed" in page.inner_text("#run-status")
    # every figure (the Pareto scatter, the run's curves and bars) drawn by plotly.js's basic bundle
    # from the app's assets: the full bundle of the plotly package is never asked for
    from harness.dashboard.app import PLOTLY_BASIC_VERSION, STATIC

    assert [u for u in page.requests if "/assets/plotly-basic.min.js" in u]
    assert not [u for u in page.requests if u.split("?")[0].endswith("/plotly.min.js")], page.requests
    assert page.evaluate("() => Plotly.version") == PLOTLY_BASIC_VERSION
    assert f"plotly.js (basic - minified) v{PLOTLY_BASIC_VERSION}" in (STATIC / "plotly-basic.min.js").read_text()[:200]


def stored_predictions(store, run_ids):
    from harness.results.store import open_store

    return open_store(store, create=False).predictions(run_ids)


def test_two_runs_side_by_side_example_by_example(page, tiny_store, tmp_path):
    runs = finished(tiny_store)
    a, b = (runs[(runs.method == m) & (runs.seed == 0)].iloc[0] for m in ("lora", "full"))
    for run in (a, b):
        page.locator("#runs-table tr", has_text=run.run_id[:12]).locator("input[type=checkbox]").check()
    page.click("#compare-ticked")
    page.wait_for_selector("#view-compare #mcnemar-sentence")
    idle(page)
    preds = stored_predictions(tiny_store, [a.run_id, b.run_id])
    labels = preds[a.run_id]["labels"]
    right_a, right_b = (preds[r]["predictions"] == labels for r in (a.run_id, b.run_id))
    shown = {k: int(page.inner_text(f"#mcnemar-{k}")) for k in
             ("examples", "both-right", "only-A-right", "only-B-right", "both-wrong")}
    assert shown == {"examples": len(labels), "both-right": int((right_a & right_b).sum()),
                     "only-A-right": int((right_a & ~right_b).sum()), "only-B-right": int((~right_a & right_b).sum()),
                     "both-wrong": int((~right_a & ~right_b).sum())}
    differ = np.flatnonzero(preds[a.run_id]["predictions"] != preds[b.run_id]["predictions"])
    assert len(differ) > 0
    assert page.inner_text("#disagree-count").startswith(f"{len(differ)} test examples")
    names = ["negative", "positive"]
    for row in table_rows(page, "disagreements"):
        i = int(row["example"])
        assert i in differ and row["text"] and row["label"] == names[labels[i]]
        assert (row["A"], row["B"]) == tuple(names[preds[r.run_id]["predictions"][i]] for r in (a, b))
    check_screenshot(page, tmp_path / "compare.png")


def test_the_selection_exports_as_csv_and_as_the_report(page, tiny_store, tmp_path):
    from harness.results import load

    with page.expect_download() as csv:
        page.click("#export-csv")
    exported = pd.read_csv(csv.value.path())
    assert sorted(exported.run_id) == sorted(load(tiny_store, decode=False).run_id)
    with page.expect_download(timeout=120_000) as zipped:
        page.click("#export-zip")
    names = zipfile.ZipFile(io.BytesIO(open(zipped.value.path(), "rb").read())).namelist()
    assert "report/report.md" in names and "report/report.pdf" in names
    assert any(n.startswith("report/tables/") and n.endswith(".html") for n in names)
    assert "report.zip" in page.inner_text("#export-status")


def test_the_store_was_only_read(tiny_store, dashboard):
    """After every view and export above (this test runs last), the store's files are as the runs left them."""
    assert files(tiny_store) == WRITTEN and "[dashboard]" in dashboard.output()
