"""Does the dashboard open and filter a store of 5,000 runs in under 2 seconds per interaction?

    python experiments/bench_dashboard.py                        # 5,000 runs, in a temporary folder
    python experiments/bench_dashboard.py --keep /tmp/dash-bench # keep (and reuse) the stores
    python experiments/bench_dashboard.py --no-browser           # the server's side only
    python experiments/bench_dashboard.py --keep /tmp/dash-bench --no-server  # the browser's only

The store: six real tiny runs through the harness (``python -m harness -m
method=lora,dora,vera,ia3,loha,pissa seed=0 model=tiny_bert task=synthetic trainer=smoke``, the
tests' tiny runs), replicated into N runs by ``experiments/bench_report_scale.py``'s builder (a
week of a cluster: 6 methods x 4 ranks x 3 learning rates x 4 tasks x 2 models, seeds as N needs,
2% failed, every run with its curves and per-example test predictions, written with the store's
own ``record``).

Timed, twice each:
  server: the functions the page's callbacks call, in this process: opening the store (the first
    read: runs, the report's groups of every finished run, claims), a look at the store (what the
    page does every few seconds), the Explore view for a set of filters and axes
    (:func:`harness.dashboard.callbacks.explore`: selection, Pareto points and fronts, runs table,
    pickers), a table's findings (the report's analysis and sections; computed apart from the
    figure and kept), a run's page, two runs compared;
  browser: the real command (``python -m harness.dashboard``) and Debian's Chromium driven by
    Playwright: from asking for the page to its figure drawn (OPENS times, each in a fresh browser
    context, nothing cached, the page before closed: each open, their median and the slowest; then
    three times in one context, as a user's browser opens it again with its cache), and from each
    change a user makes
    (a filter, an axis, a click on a run) to the page showing its result; and, for reference, a
    Dash page holding nothing but one Plotly scatter of as many points, in the same browser, with
    the full plotly.js Dash loads by default and with the basic bundle the dashboard loads.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "experiments")]
OPENS = 5  # the page opened this many times, each in a fresh browser context
METHODS = ("lora", "dora", "vera", "ia3", "loha", "pissa")
# (what a user does, filters, x, y) in the order a user might do them
INTERACTIONS = [
    ("open: every run", {"stage": "final"}, "peak_memory_bytes", "accuracy"),
    ("filter method=lora", {"stage": "final", "method": ["lora"]}, "peak_memory_bytes", "accuracy"),
    ("filter + task=synthetic", {"stage": "final", "method": ["lora"], "task": ["synthetic"]}, "peak_memory_bytes",
     "accuracy"),
    ("x axis: wall time", {"stage": "final", "method": ["lora"], "task": ["synthetic"]}, "wall_s", "accuracy"),
    ("all stages, every method", {"stage": "all"}, "wall_s", "accuracy"),
    ("filter status=failed", {"stage": "all", "status": ["failed"]}, "wall_s", "accuracy"),
]


def tiny_store(work: Path) -> Path:
    store = work / "tiny.sqlite"
    if not store.exists():
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "WANDB_MODE": "disabled"}
        subprocess.run([sys.executable, "-m", "harness", "-m", f"method={','.join(METHODS)}", "seed=0",
                        "model=tiny_bert", "task=synthetic", "trainer=smoke", f"store.url={store}",
                        f"hydra.sweep.dir={work / 'sweep'}", "report.enabled=false", "summary=false"],
                       check=True, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)
    return store


def big_store(work: Path, n: int) -> Path:
    import bench_report_scale

    store = work / f"runs{n}.sqlite"
    if not store.exists():
        start = time.perf_counter()
        bench_report_scale.METHODS = METHODS
        bench_report_scale.build_store(store, n, tiny_store(work))
        print(f"[bench] store of {n} runs built in {time.perf_counter() - start:.0f} s "
              f"({store.stat().st_size / 2**20:.0f} MiB)", flush=True)
    return store


def timed(what: str, f, *args, **kwargs):
    times = []
    for _ in range(2):
        start = time.perf_counter()
        out = f(*args, **kwargs)
        times.append(time.perf_counter() - start)
    print(f"  {what:<42} {times[0]:6.2f} s   again {times[1]:6.2f} s", flush=True)
    return out


def server(store: Path) -> None:
    from harness.config import ReportConfig
    from harness.dashboard import callbacks, compare, findings, runpage
    from harness.dashboard.callbacks import explore
    from harness.dashboard.data import StoreView, pick

    print("server side (the callbacks' functions, this process):")
    start = time.perf_counter()
    view = StoreView(store)
    snap = view.snapshot(refresh_claims=True)
    print(f"  {'open the store (first read)':<42} {time.perf_counter() - start:6.2f} s", flush=True)
    timed("a look at the store (every few seconds)", view.snapshot, refresh_claims=True)
    for what, filters, x, y in INTERACTIONS:  # computed each time (the page keeps the last few)
        timed(f"Explore: {what}", lambda *a: (callbacks._shown.clear(), explore(*a)), view, filters, x, y)
    chosen = pick(snap.runs, {"stage": "final"})
    key = findings.table_keys(chosen)[0]
    timed(f"findings of {key} (then kept)", findings.sections, str(store), snap, chosen,
          {"stage": "final"}, key, ReportConfig())
    done = snap.raw[snap.raw.status == "finished"]
    row = done.iloc[0].to_dict()
    timed("a run's page", lambda: runpage.page(row, view.curves([row["run_id"]])))
    other = done[(done.task == row["task"]) & (done.seed == row["seed"]) & (done.run_id != row["run_id"])].iloc[0]
    pair = [row["run_id"], other.run_id]
    timed("two runs compared", lambda: compare.page(row, other.to_dict(), view.predictions(pair)))


def minimal_page(b, bundle: str, points: int = 555) -> None:
    """For reference, in the same browser: a Dash page holding nothing but one Plotly scatter of
    ``points`` points, served the same way (Werkzeug, Dash's own scripts), from asking for it to
    its figure drawn, with plotly.js's ``bundle``: "full" (what Dash loads by default, from the
    plotly package) or "basic" (the dashboard's, from its assets). What any Dash page with a figure
    costs on this machine, three times in fresh browser contexts."""
    import threading

    import plotly.graph_objects as go
    from dash import Dash, dcc, html
    from werkzeug.serving import make_server

    from harness.dashboard.app import STATIC
    from tests.dashboard_browser import free_port, wait_for_figure

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    assets = {"assets_folder": str(STATIC)} if bundle == "basic" else {"include_assets_files": False}
    app = Dash(__name__, serve_locally=True, **assets)
    app.layout = html.Div([dcc.Graph(id="pareto", figure=go.Figure(go.Scatter(
        x=list(range(points)), y=list(range(points)), mode="markers")))])
    port = free_port()
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    times = []
    try:
        for _ in range(3):
            page = b.new_page(viewport={"width": 1500, "height": 1100})
            start = time.perf_counter()
            page.goto(f"http://127.0.0.1:{port}/")
            wait_for_figure(page, timeout=120_000)
            times.append(time.perf_counter() - start)
            page.close()
    finally:
        server.shutdown()
    print(f"  {'a minimal Dash page, ' + bundle + ' plotly.js':<34} figure       "
          f"{' '.join(f'{t:.2f}' for t in times)} s, median {statistics.median(times):.2f} s", flush=True)


def browser(store: Path, work: Path) -> None:
    import shutil

    from playwright.sync_api import sync_playwright

    from tests.dashboard_browser import Dashboard, choose, wait_for_figure

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if not executable:
        print("browser: skipped (no Chromium: apt-get install chromium)")
        return
    dashboard = Dashboard(store, "--refresh", "3", log=work / "dashboard.log")  # the command's default
    print("browser (python -m harness.dashboard, Chromium via Playwright; the findings come from the "
          "worker process, after the figure):")
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
            for bundle in ("full", "basic"):
                minimal_page(b, bundle)
            page, opened = None, []
            for attempt in range(OPENS):  # after the first: the page before closed, the server warm
                if page is not None:
                    page.close()
                page = b.new_page(viewport={"width": 1500, "height": 1100})
                start = time.perf_counter()
                page.goto(dashboard.url)
                wait_for_figure(page, timeout=120_000)
                opened.append(time.perf_counter() - start)
                settle(page)
                report(f"open the page ({'first' if attempt == 0 else f'again, {attempt}'})", opened[-1],
                       time.perf_counter() - start)
            print(f"  {'open the page: median, slowest':<34} figure+table {statistics.median(opened):6.2f} s"
                  f"   slowest {max(opened):6.2f} s", flush=True)
            context = b.new_context(viewport={"width": 1500, "height": 1100})  # as in a user's browser:
            for attempt in ("first", "again", "again"):  # the scripts in its cache after the first
                page.close()
                page = context.new_page()
                start = time.perf_counter()
                page.goto(dashboard.url)
                wait_for_figure(page, timeout=120_000)
                drawn = time.perf_counter() - start
                settle(page)
                report(f"open, one browser ({attempt})", drawn, time.perf_counter() - start)
            steps = [("filter method=lora", lambda: choose(page, "f-method", "lora")),
                     ("filter + task=synthetic", lambda: choose(page, "f-task", "synthetic")),
                     ("x axis: wall time", lambda: choose(page, "x-field", "Wall time s")),
                     ("filter + rank=8", lambda: choose(page, "f-r", "8"))]
            for what, act in steps:
                before = page.inner_text("#selection-summary") + page.evaluate(TITLE)
                start = time.perf_counter()
                act()
                shown = changed(page, before) - start
                settle(page)
                report(what, shown, time.perf_counter() - start)
            start = time.perf_counter()
            page.locator("#runs-table td[data-dash-column='run']").first.click()
            page.wait_for_selector("#view-run #run-title", timeout=60_000)
            shown = time.perf_counter() - start
            settle(page)
            report("open a run (click a row)", shown, time.perf_counter() - start)
            b.close()
    finally:
        dashboard.stop()


TITLE = "() => document.querySelector('#pareto .js-plotly-plot').layout.xaxis.title.text"


def changed(page, before: str) -> float:
    """When the figure and the summary show something other than ``before`` (a frame drawn)."""
    page.wait_for_function(f"""() => document.querySelector('#selection-summary').innerText
        + ({TITLE[6:]}) !== {before!r}""", timeout=120_000, polling=20)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    return time.perf_counter()


def settle(page) -> None:
    """Until no callback runs (the findings beside the figure included), then one frame."""
    page.wait_for_function("() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=120_000)
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def report(what: str, shown: float, settled: float) -> None:
    print(f"  {what:<34} figure+table {shown:6.2f} s   findings too {settled:6.2f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=5000)
    p.add_argument("--keep", default=None, help="folder for the stores (reused if there)")
    p.add_argument("--no-browser", action="store_true")
    p.add_argument("--no-server", action="store_true", help="the browser's timings only")
    args = p.parse_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-dashboard-"))
    work.mkdir(parents=True, exist_ok=True)
    store = big_store(work, args.runs)
    if not args.no_server:
        server(store)
    if not args.no_browser:
        browser(store, work)


if __name__ == "__main__":
    main()
