"""End to end: the widget check of 00_start_here works in a real JupyterLab in a real browser.

What a learner does, done by a headless Chromium (Playwright): JupyterLab (this venv's) opens
notebooks/00_start_here.ipynb, Run → Run All Cells, then the widget check's slider is moved
with the keyboard and the explorer's text must follow: "n squared is n²". The oracle is the
arithmetic (6² = 36, 7² = 49) and the slider's own readout. The headless tests in
test_widgets.py cover the Python side; only this test sees the widget manager, the comm
messages and the front end render.

Needs /usr/bin/chromium (Debian package `chromium`; `.ci/run` installs it) and Playwright for
Python (the `dev` extra). Skips without them, except under CI (env CI set), where it fails:
CI must really run it. Screenshots go to test-artifacts/ (gitignored).

A learner must also reach the exercises: JupyterLab serves a copy of the repository layout
(``notebooks/``, ``exercises/``, ``solutions/``, as ``make lab`` serves the repository root),
and a test opens an exercise notebook through the file browser, and through the link in the
lesson's course map.

A further test does the same for the two widgets a kernel-less test cannot fully check:
LiveCurves must redraw in the browser while ``fit`` is still running (one picture per epoch),
and the prediction browser's slider must bring the next image's hand-worked score.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest

from tests.browser_harness import (
    ARTIFACTS,
    KERNEL_IDLE_JS,
    REPO_ROOT,
    JupyterLab,
    cell_errors,
    launch_chromium,
    missing_browser_tools,
    open_notebook,
    press_and_time,
    run_all_cells,
)

pytestmark = pytest.mark.browser

NOTEBOOK = "notebooks/00_start_here.ipynb"
EXERCISE = "exercises/00_start_here.ipynb"


@pytest.fixture(scope="module")
def tools():
    why = missing_browser_tools()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the browser test must run: {why}")
        pytest.skip(why)


@pytest.fixture(scope="module")
def lab(tools, tmp_path_factory):
    """One private JupyterLab for the module, serving a temporary copy of the repository layout."""
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    for folder in ("notebooks", "exercises", "solutions"):   # what `make lab` shows, in a copy
        (root / folder).mkdir(parents=True)
        shutil.copy2(REPO_ROOT / folder / "00_start_here.ipynb", root / folder)
    with JupyterLab(root, home=base / "home") as server:
        yield server


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 900})
        finally:
            browser.close()
    lab.shutdown_kernels()   # two cores: no kernel left running for the next test


@pytest.mark.slow
def test_widget_check_slider_updates_its_text_in_jupyterlab(lab, page):
    started = time.monotonic()
    try:
        open_notebook(page, lab, NOTEBOOK, workspace="widget-check")
        seconds = run_all_cells(page)
        print(f"\nRun → Run All Cells took {seconds:.1f} s (kernel already started)")
        assert cell_errors(page) == [], "every cell ran without a traceback"

        handle = page.locator(".noUi-handle")
        assert handle.count() == 1, "the notebook shows exactly one slider, the widget check"
        # After Run All the next cell has set the slider to 5 from Python: the front end
        # must show that value, i.e. kernel -> browser sync works too.
        output = page.locator(".widget-output").first
        page.wait_for_function(
            "() => /5 squared is 25/.test(document.querySelector('.widget-output').innerText)",
            timeout=60_000)
        assert "VBox(children" not in output.inner_text()
        handle.scroll_into_view_if_needed()
        widget = page.locator(".jp-OutputArea-output", has=page.locator(".noUi-handle"))
        widget.screenshot(path=str(ARTIFACTS / "widget_check_before.png"))
        page.screenshot(path=str(ARTIFACTS / "widget_check_before_page.png"))

        latencies = []
        for expected_n in (6, 7):               # browser -> kernel -> browser, twice
            moved = press_and_time(page, handle, "ArrowRight")
            assert f"{expected_n} squared is {expected_n * expected_n}" in moved["text"], moved
            assert f"{expected_n - 1} squared" not in moved["text"], "old text replaced"
            readout = page.locator(".widget-readout").first.inner_text().strip()
            assert readout == str(expected_n)
            latencies.append(moved["latency_ms"])

        widget.screenshot(path=str(ARTIFACTS / "widget_check_after.png"))
        page.screenshot(path=str(ARTIFACTS / "widget_check_after_page.png"))
        print("key press -> updated output: " + ", ".join(f"{ms:.0f} ms" for ms in latencies))
    except Exception:
        _on_failure(lab, page, "widget_check_failure.png")
        raise
    print(f"test: {time.monotonic() - started:.1f} s")


@pytest.mark.slow
def test_exercise_opens_from_the_file_browser_and_from_the_lesson_link(lab, page):
    try:
        # 1. The file browser at the served root shows the three folders; open exercises/, then
        #    the exercise notebook, by double clicks as a learner does.
        page.goto(lab.url("lab/workspaces/file-browser"), timeout=90_000)
        listing = page.locator(".jp-DirListing-content")
        listing.wait_for(timeout=90_000)
        for folder in ("notebooks", "exercises", "solutions"):
            page.locator(".jp-DirListing-item", has_text=folder).first.wait_for(timeout=30_000)
        page.locator(".jp-DirListing-item", has_text="exercises").first.dblclick()
        page.wait_for_function(
            "() => /exercises/.test(document.querySelector('.jp-FileBrowser-crumbs')?.innerText ?? '')",
            timeout=30_000)
        page.locator(".jp-DirListing-item", has_text="00_start_here.ipynb").first.dblclick()
        page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=90_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown')]"
            ".some(e => /00 · Start here: exercises/.test(e.innerText))", timeout=60_000)
        assert page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell").count() >= 4
        page.screenshot(path=str(ARTIFACTS / "exercise_from_file_browser.png"))

        # 2. The lesson's course map links to ../exercises/00_start_here.ipynb: a click opens it.
        open_notebook(page, lab, NOTEBOOK, workspace="lesson-link")
        # (JupyterLab rewrites a relative href to a server URL and opens the file itself on click)
        link = page.locator(".jp-RenderedMarkdown a", has_text="exercises/00_start_here.ipynb").first
        link.scroll_into_view_if_needed()
        link.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('.lm-TabBar-tab.lm-mod-current')]"
            ".some(t => /00_start_here/.test(t.innerText)) && "
            "[...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown')]"
            ".some(e => /00 · Start here: exercises/.test(e.innerText))", timeout=60_000)
        page.wait_for_function(f"() => {KERNEL_IDLE_JS}", timeout=90_000, polling=200)
        page.screenshot(path=str(ARTIFACTS / "exercise_from_lesson_link.png"))
    except Exception:
        _on_failure(lab, page, "exercise_navigation_failure.png")
        raise


# A test-only notebook: LiveCurves during a 4-epoch fit, then a prediction browser over two
# images whose scores are worked out by hand (tests/test_widgets.py: an exact match scores 1.0;
# a 4×4 square shifted by one column has IoU 12/20 = 0.6 -> DSB AP 2/10 = 0.2).
# After each epoch the kernel waits until the test has seen that epoch's picture (the test
# writes `seen_<epoch>` beside the notebook), so the test sees every redraw without guessing
# how long an epoch must last; a deadline keeps a broken page from hanging the kernel.
_LIVE_FIT = """\
import time
from pathlib import Path
import keras
import numpy as np
from IPython.display import display
from course_lib.viz.live_curves import LiveCurves
from course_lib.viz.prediction_browser import prediction_browser

class WaitUntilSeen(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        deadline = time.monotonic() + 60
        while not Path(f"seen_{epoch}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)

x = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
y = x.sum(axis=1, keepdims=True)
model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse")
live = LiveCurves()
display(live.widget)
model.fit(x, y, epochs=4, verbose=0, validation_split=0.25, callbacks=[live, WaitUntilSeen()])
print("fit done:", live.redraws, "redraws")"""

_BROWSER = """\
def square(top, left):
    m = np.zeros((16, 16), bool)
    m[top:top + 4, left:left + 4] = True
    return m[..., None]

images = [np.full((16, 16, 3), 60, np.uint8)] * 2
prediction_browser(images, [square(1, 1), square(1, 1)], [square(1, 1), square(1, 2)])"""


@pytest.mark.slow
def test_live_curves_redraw_during_fit_and_prediction_browser_follows_its_slider(lab, page):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(_LIVE_FIT),
                                         nbformat.v4.new_code_cell(_BROWSER)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, lab.root / "live_widgets.ipynb")
    try:
        open_notebook(page, lab, "live_widgets.ipynb", workspace="live-widgets")
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-item:not(.lm-mod-disabled)", has_text="Run All Cells").first.click()
        # While fit runs, collect the distinct curve images the browser shows; each new one
        # releases the kernel into the next epoch.
        curves, deadline = [], time.monotonic() + 180
        while time.monotonic() < deadline:
            first = page.locator(".widget-output img").first
            src = first.get_attribute("src") if first.count() else None
            if src and src not in curves:
                curves.append(src)
                (lab.root / f"seen_{len(curves) - 1}").touch()
            if "fit done" in _outputs_text(page):
                break
            page.wait_for_timeout(100)   # poll interval
        else:
            raise AssertionError(f"the fit cell did not finish in 180 s ({len(curves)} pictures)")
        assert "fit done: 4 redraws" in _outputs_text(page)
        # One picture per epoch, replaced in place, each seen while the fit was still running.
        assert len(curves) == 4, f"saw {len(curves)} distinct curve images during fit"
        assert page.locator(".widget-output").first.locator("img").count() == 1
        page.locator(".jp-OutputArea-output", has=page.locator(".widget-output img")).first \
            .screenshot(path=str(ARTIFACTS / "live_curves_after_fit.png"))

        handle = page.locator(".noUi-handle")
        handle.first.wait_for(timeout=60_000)
        page.wait_for_function(
            "() => [...document.querySelectorAll('.widget-output')]"
            ".some(e => /image 0 \\(1\\/2\\).*DSB AP 1\\.000/.test(e.innerText))",
            timeout=60_000)
        moved = press_and_time(page, handle.first, "ArrowRight")
        assert "image 1 (2/2)" in moved["text"] and "DSB AP 0.200" in moved["text"], moved
        assert "mean best IoU 0.600" in moved["text"]
        page.locator(".jp-OutputArea-output", has=page.locator(".noUi-handle")).screenshot(
            path=str(ARTIFACTS / "prediction_browser_after.png"))
        print(f"\nLiveCurves: {len(curves)} distinct redraws seen during fit; prediction "
              f"browser: key press -> updated output {moved['latency_ms']:.0f} ms")
    except Exception:
        _on_failure(lab, page, "live_widgets_failure.png")
        raise


def _outputs_text(page) -> str:
    """The text of every cell's outputs (not of the code, which may hold the same words)."""
    return "\n".join(page.locator(".jp-Cell-outputArea").all_inner_texts())


def _on_failure(lab, page, name: str) -> None:
    print("JupyterLab log (tail):\n" + lab.log_tail())
    try:
        page.screenshot(path=str(ARTIFACTS / name))
    except Exception:  # noqa: S110 (best effort on the way out)
        pass
