"""The README's and docs/dashboard.md's picture of the dashboard's Pareto view, taken from a real store.

    python experiments/dashboard_screenshot.py [--store results/results.sqlite] [--out docs/dashboard.png]

Starts ``python -m harness.dashboard`` on the store (read-only), opens it in Debian's Chromium
through Playwright, waits for the figure and the report's findings beside it, and saves the page
as a PNG of few colours (small enough to commit).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    from tests.dashboard_browser import Dashboard, idle, open_page

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", default="results/results.sqlite", help="relative to the repository")
    p.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=860)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dashboard-screenshot-"))
    dashboard = Dashboard(args.store, log=work / "log")
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium",
                                         args=["--no-sandbox"])
            page = open_page(browser, dashboard.url)
            page.set_viewport_size({"width": args.width, "height": args.height})
            idle(page)
            page.wait_for_timeout(1000)
            page.screenshot(path=str(work / "shot.png"))
            browser.close()
    finally:
        dashboard.stop()
    image = Image.open(work / "shot.png").convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({Path(args.out).stat().st_size // 1024} KiB) from {args.store}")


if __name__ == "__main__":
    main()
