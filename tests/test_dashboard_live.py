"""The dashboard in a real browser while a sweep (the real CLI, in a process of its own) writes
to its store: a failed run, then a run held while it trains (tests/pausing_methods.py) shown as
running from its claim, then the same run appearing as finished, all without a reload. And over
the PostgreSQL store the suite starts, as a role that may only read, its URL holding a password
that the page and the command never show; and a PostgreSQL server that goes away and comes back
while the page is open."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TINY, tiny_config
from tests.dashboard_browser import (Dashboard, check_screenshot, choose, chromium, idle, launch, open_page,
                                     table_rows, traces)
from tests.pausing_methods import HOLD_ENV

ROOT = Path(__file__).resolve().parents[1]
FAST = ["trainer.max_steps=2", "trainer.epochs=1", "trainer.latency_batches=1", "report.enabled=false",
        "summary=false", "plugins=[tests.pausing_methods,tests.failing_methods]"]
PASSWORD = "s3cretpw"


@pytest.fixture(scope="module")
def browser():
    executable = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p, executable)
        yield b
        b.close()


def sweep(tmp_path: Path, store: Path) -> subprocess.Popen:
    """``python -m harness -m``: a run that fails, then one held at its last step until ``go``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled",
           HOLD_ENV: f"{tmp_path}:1"}
    return subprocess.Popen([sys.executable, "-m", "harness", "-m", "method.builder=raises_test,held_test",
                             "seed=0", f"store.url={store}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *TINY, *FAST],
                            cwd=ROOT, env=env, stdout=(tmp_path / "sweep.log").open("w"), stderr=subprocess.STDOUT)


def count(page, what: str) -> str:
    return page.inner_text(f"#count-{what}")


def test_a_run_shows_as_running_then_appears_finished_without_a_reload(browser, tmp_path):
    from harness.results.store import open_store

    store = tmp_path / "live.sqlite"
    proc, dashboard = sweep(tmp_path, store), None
    try:
        deadline = time.time() + 300
        while not (tmp_path / "held").exists():  # the failed run is recorded; the second trains
            assert proc.poll() is None and time.time() < deadline, (tmp_path / "sweep.log").read_text()[-3000:]
            time.sleep(0.1)
        held = open_store(store, create=False).claims()["run_id"].tolist()
        assert len(held) == 1
        dashboard = Dashboard(store, log=tmp_path / "dashboard.log")
        page = open_page(browser, dashboard.url, figure=False)  # nothing finished yet: no point to draw
        page.wait_for_selector("#count-running")
        page.evaluate("() => { window.notReloaded = true; }")
        assert (count(page, "finished"), count(page, "failed"), count(page, "running")) == ("0", "1", "1")
        page.locator("#tabs").get_by_text("Live", exact=True).click()
        running = page.locator("#running-table tr.claim-running")
        assert running.count() == 1 and held[0] in running.inner_text()
        check_screenshot(page, tmp_path / "live.png")
        (tmp_path / "go").touch()
        page.wait_for_function("() => document.querySelector('#count-finished').innerText === '1'", timeout=120_000)
        page.wait_for_function("() => document.querySelector('#count-running').innerText === '0'", timeout=30_000)
        idle(page)
        assert held[0] in page.inner_text("#latest-table") and page.locator("#no-claims").count() == 1
        page.locator("#tabs").get_by_text("Explore", exact=True).click()
        page.wait_for_selector("#pareto .js-plotly-plot g.trace")
        assert {r["status"] for r in table_rows(page)} == {"finished", "failed"}
        assert page.evaluate("() => window.notReloaded === true")  # the page was never loaded again
        check_screenshot(page, tmp_path / "after.png")
        proc.wait(timeout=120)
        assert "Traceback" not in dashboard.output(), dashboard.output()[-3000:]
    finally:
        proc.kill()
        if dashboard:
            dashboard.stop()


def reader_url(postgres_server, pg_url) -> str:
    """A role of its own that may read every table of ``pg_url``'s database and write none; its
    URL holds a password (the test server trusts local roles, so it is never checked)."""
    database = pg_url.split("/")[3].split("?")[0]
    role = f"viewer_{database}"
    postgres_server.sql(f"CREATE ROLE {role} LOGIN")
    postgres_server.sql(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}", database)
    return postgres_server.url(database, user=role).replace(f"{role}@", f"{role}:{PASSWORD}@")


def test_a_postgres_store_as_a_role_that_may_only_read(browser, postgres_server, pg_url, tmp_path):
    from harness.job.runner import run_job
    from harness.results import load

    for method in ("lora", "full"):
        assert run_job(tiny_config(f"'{pg_url}'", f"method={method}", "seed=0"))["status"] == "finished"
    url = reader_url(postgres_server, pg_url)
    dashboard = Dashboard(url, log=tmp_path / "dashboard.log")
    try:
        page = open_page(browser, dashboard.url)
        assert count(page, "finished") == "2"
        label = page.inner_text("#store-label")
        assert ":***@" in label and PASSWORD not in label
        runs = load(pg_url, decode=False)
        for run_id in runs.run_id:
            page.locator("#runs-table tr", has_text=run_id[:12]).locator("input[type=checkbox]").check()
        page.click("#compare-ticked")
        page.wait_for_selector("#view-compare #mcnemar-sentence")
        assert int(page.inner_text("#mcnemar-examples")) == int(runs.n_test.iloc[0])
        idle(page)
        check_screenshot(page, tmp_path / "postgres.png")
        assert PASSWORD not in page.content() and PASSWORD not in dashboard.output()
        assert all(u.startswith(dashboard.url) for u in page.requests) and not page.errors
        assert "Traceback" not in dashboard.output(), dashboard.output()[-3000:]
    finally:
        dashboard.stop()
    assert PASSWORD not in dashboard.output()


def test_a_store_whose_server_goes_away_and_comes_back(browser, postgres_server, pg_url, tmp_path):
    """While the server is down the page says so, and every view keeps working on what it read
    (a filter redraws the figure); what needs the store says so in one line; nothing fails on
    the server; when the server is back the page reads it again by itself."""
    from harness.job.runner import run_job

    for method in ("lora", "full"):
        assert run_job(tiny_config(f"'{pg_url}'", f"method={method}", "seed=0"))["status"] == "finished"
    dashboard = Dashboard(pg_url, log=tmp_path / "dashboard.log")
    try:
        page = open_page(browser, dashboard.url)
        summary = page.inner_text("#selection-summary")
        assert summary.startswith("2 runs selected") and page.inner_text("#updated").startswith("read ")
        postgres_server.pause()
        try:
            page.wait_for_function("() => document.querySelector('#updated').innerText"
                                   ".startsWith('store unreachable: cannot connect')", timeout=30_000)
            choose(page, "f-method", "lora")  # the runs already read: filtered, drawn
            page.wait_for_function("() => document.querySelector('#selection-summary').innerText"
                                   ".startsWith('1 runs selected')", timeout=30_000)
            assert [t["name"] for t in traces(page) if not t["name"].startswith("Pareto front")] == ["lora · none"]
            page.locator("#runs-table td[data-dash-column='run']").first.click()  # its curves: in the store
            page.wait_for_selector("#view-run .store-unreachable", timeout=30_000)
            assert "cannot be read now" in page.inner_text("#view-run")
        finally:
            postgres_server.resume()
        page.wait_for_function("() => document.querySelector('#updated').innerText.startsWith('read ')",
                               timeout=30_000)
        page.locator("#tabs").get_by_text("Explore", exact=True).click()
        assert page.inner_text("#selection-summary").startswith("1 runs selected") and not page.errors
        assert "Traceback" not in dashboard.output(), dashboard.output()[-3000:]
    finally:
        dashboard.stop()
