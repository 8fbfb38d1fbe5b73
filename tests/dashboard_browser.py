"""Helpers of the dashboard's tests: the real command (``python -m harness.dashboard``) in a
process of its own, Debian's Chromium driven by Playwright, and what a test reads off the page.

Without Chromium or Playwright (or Dash) the browser tests skip with a one-line reason; CI
installs all three (.ci/run, the ``test`` extra).
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser")
STARTUP_S = 120


def chromium() -> str:
    """Debian's Chromium, or a skip naming what to install."""
    pytest.importorskip("dash", reason="Dash is not installed: pip install -e '.[dashboard]'")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: pip install -e '.[test]'")
    found = os.environ.get("CHROMIUM") or next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if not found:
        pytest.skip("Chromium not found: install Debian's chromium package (.ci/run does)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dashboard:
    """``python -m harness.dashboard --store URL`` serving on a free port until :meth:`stop`."""

    def __init__(self, store, *args: str, log: Path) -> None:
        self.port, self.log = free_port(), log
        env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "harness.dashboard", "--store", str(store),
                                      "--port", str(self.port), "--refresh", "1", *args],
                                     cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self.port}/"
        deadline = time.time() + STARTUP_S
        while "[dashboard] http://" not in self.output():
            assert self.proc.poll() is None and time.time() < deadline, self.output()[-3000:]
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def launch(playwright, executable: str):
    return playwright.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])


def open_page(browser, url: str, figure: bool = True):
    """A page on the dashboard, its first figure drawn (with ``figure``); ``page.requests`` lists
    every URL it asked for, ``page.errors`` the script errors it met."""
    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r.url))
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.goto(url)
    if figure:
        wait_for_figure(page)
    return page


def wait_for_figure(page, selector: str = "#pareto", timeout: float = 60_000) -> None:
    page.wait_for_selector(f"{selector} .js-plotly-plot g.trace", timeout=timeout)


def idle(page, timeout: float = 60_000) -> None:
    """Until Dash has no callback running (its title and loading marks gone)."""
    page.wait_for_function("() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-dash-is-loading=\"true\"]')", timeout=timeout)


def traces(page, selector: str = "#pareto") -> list[dict]:
    """The figure's traces as Plotly drew them: name, x, y, customdata, hovertext."""
    return page.evaluate(f"""() => document.querySelector('{selector} .js-plotly-plot').data.map(
        t => ({{name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || []), customdata: t.customdata || [],
               hovertext: t.hovertext || []}}))""")


def axis_title(page, axis: str, selector: str = "#pareto") -> str:
    return page.evaluate(f"() => document.querySelector('{selector} .js-plotly-plot').layout.{axis}axis.title.text")


def choose(page, dropdown_id: str, label: str) -> None:
    """Pick ``label`` in a Dash dropdown, as a user does: open it, type, press Enter."""
    page.locator(f"#{dropdown_id}").click()
    popup = page.locator(".dash-dropdown-content[data-state=open]")
    try:
        popup.wait_for(timeout=3000)
    except Exception:  # noqa: BLE001 - Dash before 4: react-select takes what is typed
        page.keyboard.type(label)
        page.wait_for_timeout(200)
        page.keyboard.press("Enter")
        return
    popup.locator("input.dash-dropdown-search").fill(label)
    popup.locator("[role=option]").filter(has_text=label).first.click()
    page.keyboard.press("Escape")


def table_rows(page, table_id: str = "runs-table") -> list[dict]:
    """The DataTable's rows on its current page: {column: text}."""
    return page.evaluate(f"""() => {{
        const root = document.querySelector('#{table_id}');
        const heads = [...root.querySelectorAll('th.dash-header')].map(h => h.innerText.trim()).filter(Boolean);
        return [...root.querySelectorAll('tr')].filter(r => r.querySelector('td.dash-cell')).map(r => {{
            const cells = [...r.querySelectorAll('td.dash-cell')].map(c => c.innerText.trim());
            return Object.fromEntries(heads.map((h, i) => [h, cells[i]])); }}); }}""")


def check_screenshot(page, path: Path, selector: str | None = None) -> Path:
    """A screenshot of the page (or of one element), checked to show something: a PNG of some
    size, with many colours."""
    from PIL import Image

    (page.locator(selector) if selector else page).screenshot(path=str(path))
    image = Image.open(io.BytesIO(path.read_bytes())).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert image.width > 200 and image.height > 150 and len(colours) > 20, (path, image.size, len(colours))
    return path
