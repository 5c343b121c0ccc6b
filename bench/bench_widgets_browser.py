"""Benchmark: how fast each chapter's explorer answers a slider move in a real JupyterLab.

For each notebook given (default: every notebook in notebooks/ that shows an explorer: 00
start_here, 03 convolution, 06 anchors_and_rpn, 07 roi_pool_vs_roi_align, 10 unet, ...), a
private JupyterLab (this venv's) and a headless Chromium (Playwright, /usr/bin/chromium) open
it, Run → Run All Cells, then for every explorer on the page (a cell output holding a widget
Output) focus its FIRST slider and press an arrow key ``--presses`` times (an explorer without
a slider: pick the next option of its first dropdown). Each change is timed in the page with
performance.now(): key press -> the explorer's output area stops changing (kernel idle again).
That is the whole round trip a learner feels: browser -> comm message -> kernel render
(NumPy, matplotlib, PNG) -> output message -> DOM.

Reference in the same run: the widget check of 00_start_here (prints one line, no figure), i.e.
the round-trip floor of this machine; every explorer's median is printed as a ratio to it.
Target: < 300 ms for the geometry explorers on a CPU.

    python bench/bench_widgets_browser.py [--presses 5] [NOTEBOOK.ipynb ...]

Uses tests/browser_harness.py (the same harness as tests/test_browser_e2e.py): a temporary
Jupyter home, a random token, 127.0.0.1 on a free port; the user's config is not touched.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from tests.browser_harness import (  # noqa: E402
    ARTIFACTS,
    JupyterLab,
    cell_errors,
    copy_notebooks,
    launch_chromium,
    missing_browser_tools,
    open_notebook,
    press_and_time,
    run_all_cells,
    select_and_time,
)


def default_notebooks() -> list[str]:
    """Every notebook in notebooks/ that shows an explorer (its source mentions one)."""
    return [nb.name for nb in sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
            if "explorer" in nb.read_text() or "widget_check" in nb.read_text()]


# Top-level cell outputs (not the output areas nested inside a widget Output).
CELL_OUTPUTS = ".jp-Cell-outputArea > .jp-OutputArea-child > .jp-OutputArea-output"


def explorer_title(output) -> str:
    """The explorer's bold title (Explorer puts it first), else the first slider's label."""
    title = output.locator(".widget-html b").first
    if title.count():
        return title.inner_text().strip()[:60]
    label = output.locator(".widget-label").first
    return label.inner_text().strip()[:60] if label.count() else "(untitled)"


def measure_notebook(page, lab, name: str, presses: int) -> list[dict]:
    open_notebook(page, lab, name, workspace=Path(name).stem.replace("_", "-"))
    run_seconds = run_all_cells(page)
    errors = cell_errors(page)
    print(f"{name}: Run All Cells {run_seconds:.1f} s"
          + (f", {len(errors)} error output(s): {errors[0][:200]!r}" if errors else ""))
    rows = []
    # Every explorer: a cell output holding a widget Output and a control to change.
    outputs = page.locator(CELL_OUTPUTS).filter(has=page.locator(".widget-output"))
    for i in range(outputs.count()):
        output = outputs.nth(i)
        handles = output.locator(".noUi-handle")
        selects = output.locator(".widget-dropdown select")
        if handles.count():
            control = handles.first
            label = output.locator(".widget-slider .widget-label").first
        elif selects.count():     # no slider (e.g. a kernel picker): its first dropdown
            control = selects.first
            label = output.locator(".widget-dropdown .widget-label").first
        else:
            continue
        control.scroll_into_view_if_needed()
        control_name = label.inner_text().strip() if label.count() else "?"
        if not handles.count():
            control_name += " (dropdown)"
        title = explorer_title(output)
        times = []
        if not handles.count():   # a dropdown: toggle between its value and the next option
            options = control.locator("option").all_inner_texts()
            first = control.evaluate("el => el.selectedIndex")
            toggle = [options[(first + 1) % len(options)], options[first]]
        for press in range(presses):
            try:
                if handles.count():
                    now, top = (float(control.get_attribute(a) or 0)
                                for a in ("aria-valuenow", "aria-valuemax"))
                    key = "ArrowLeft" if now >= top else "ArrowRight"   # stay inside the range
                    times.append(press_and_time(page, control, key,
                                                timeout_ms=20_000)["latency_ms"])
                else:
                    times.append(select_and_time(page, control, toggle[press % 2],
                                                 timeout_ms=20_000)["latency_ms"])
            except Exception as error:  # noqa: BLE001 (report and go on with the next explorer)
                print(f"  {title}: no update ({type(error).__name__})")
                break
        if times:
            output.screenshot(path=str(ARTIFACTS / f"bench_{Path(name).stem}_{i}.png"))
            rows.append({"notebook": name, "explorer": title, "slider": control_name,
                         "median_ms": statistics.median(times), "min_ms": min(times),
                         "max_ms": max(times), "n": len(times)})
            r = rows[-1]
            print(f"  {title} [{control_name}]: median {r['median_ms']:.0f} ms "
                  f"(min {r['min_ms']:.0f}, max {r['max_ms']:.0f}, {r['n']} changes)")
    return rows


def main() -> int:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebook with an explorer")
    parser.add_argument("--presses", type=int, default=5)
    args = parser.parse_args()
    why = missing_browser_tools()
    if why:
        print(f"cannot run: {why}")
        return 2
    from playwright.sync_api import sync_playwright

    args.notebooks = args.notebooks or default_notebooks()
    present = [n for n in args.notebooks if (REPO_ROOT / "notebooks" / n).exists()]
    for n in sorted(set(args.notebooks) - set(present)):
        print(f"{n}: not in notebooks/ yet, skipped")
    os.environ.setdefault("COURSE_MODE", "quick")
    ARTIFACTS.mkdir(exist_ok=True)
    rows = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "root"
        copy_notebooks(present, root)
        with JupyterLab(root, home=Path(tmp) / "home") as lab, sync_playwright() as pw:
            browser = launch_chromium(pw)
            try:
                for name in present:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    try:
                        rows.extend(measure_notebook(page, lab, name, args.presses))
                    except Exception as error:  # noqa: BLE001 (one broken notebook, not all)
                        print(f"{name}: failed: {type(error).__name__}: {str(error)[:300]}")
                        print(lab.log_tail(15))
                    finally:
                        page.close()
                        lab.shutdown_kernels()   # two cores: one kernel at a time
            finally:
                browser.close()
    reference = next((r["median_ms"] for r in rows if r["notebook"] == "00_start_here.ipynb"),
                     None)
    print(f"\n{len(rows)} explorers in {time.monotonic() - started:.0f} s "
          f"(COURSE_MODE={os.environ['COURSE_MODE']})\n")
    print("| notebook | explorer | control moved | median ms | min–max ms | × widget check |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ratio = f"{r['median_ms'] / reference:.1f}" if reference else "–"
        print(f"| {Path(r['notebook']).stem} | {r['explorer']} | {r['slider']} | "
              f"{r['median_ms']:.0f} | {r['min_ms']:.0f}–{r['max_ms']:.0f} | {ratio} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
