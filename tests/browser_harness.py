"""A private JupyterLab and a headless Chromium, for the browser test and the widget benchmark.

Used by tests/test_browser_e2e.py and bench/bench_widgets_browser.py. Nothing here touches the
user's Jupyter configuration: the server gets its own runtime, config, data, settings,
workspaces and IPython folders under a temporary directory, a random token, a free port on
127.0.0.1, and every network fetch JupyterLab would do by itself (news, update checks) is off.

Chromium is the Debian package (``apt-get install chromium`` puts it at /usr/bin/chromium);
Playwright drives it through ``executable_path``, so ``playwright install`` is never needed.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO_ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# JupyterLab settings written into the private settings folder:
# - every cell stays in the DOM (no windowing), so off-screen prompts and outputs can be read;
# - no news or update checks (no network, no pop-up over the notebook).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "checkForUpdates": False, "fetchNews": "false"},
}


def missing_browser_tools() -> str | None:
    """Why the browser tests cannot run here (None when Chromium and Playwright are both there)."""
    if not CHROMIUM.exists():
        return (f"Chromium not found at {CHROMIUM} (Debian/Ubuntu: `apt-get install chromium`, "
                "or set COURSE_CHROMIUM to a Chromium binary)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (`pip install -e '.[dev]'`)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class JupyterLab:
    """``with JupyterLab(root) as lab:`` a JupyterLab server serving ``root`` until the block ends.

    Args:
        root: the folder the server shows (copy the notebooks there first).
        home: a private folder for Jupyter's runtime/config/data/settings (default: root/../.jupyter-home).
        env: extra environment variables for the server and its kernels.
        start_timeout: seconds to wait for the server to answer.
    """

    def __init__(self, root: Path, home: Path | None = None, env: dict[str, str] | None = None,
                 start_timeout: float = 90.0):
        self.root = Path(root)
        self.home = Path(home) if home else self.root.parent / ".jupyter-home"
        self.extra_env = env or {}
        self.start_timeout = start_timeout
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.proc: subprocess.Popen | None = None
        self.log_path = self.home / "jupyterlab.log"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "lab") -> str:
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        folders = {"JUPYTER_RUNTIME_DIR": "runtime", "JUPYTER_CONFIG_DIR": "config",
                   "JUPYTER_DATA_DIR": "data", "JUPYTERLAB_SETTINGS_DIR": "settings",
                   "JUPYTERLAB_WORKSPACES_DIR": "workspaces", "IPYTHONDIR": "ipython"}
        for var, name in folders.items():
            (self.home / name).mkdir(parents=True, exist_ok=True)
            env[var] = str(self.home / name)
        env.pop("JUPYTER_PATH", None)          # only the venv's extensions (ipywidgets 8's)
        env.setdefault("COURSE_MODE", "quick")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        env.update(self.extra_env)
        return env

    def start(self) -> JupyterLab:
        env = self._environment()
        for rel, content in LAB_SETTINGS.items():
            path = self.home / "settings" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(content))
        cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
               f"--port={self.port}", "--port-retries=0",
               f"--IdentityProvider.token={self.token}",
               f"--ServerApp.root_dir={self.root}",
               "--LabApp.news_url=", "--LabApp.extension_manager=readonly",
               "--ServerApp.terminals_enabled=False"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")      # CI containers run as root
        log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop)
        self._log = log
        # A session of its own: stop() can end the server and the kernels it started together.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("api/status"), timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"JupyterLab did not answer within {self.start_timeout} s:\n"
                           f"{self.log_tail()}")

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """Ask the server to shut down (it stops its kernels), then terminate, then kill."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                req = urllib.request.Request(self.url("api/shutdown"), method="POST")
                urllib.request.urlopen(req, timeout=5).close()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=10)
        # Kernels left in the server's own process group (only processes started here).
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        self.proc = None

    def shutdown_kernels(self) -> int:
        """Delete every session (and so its kernel); returns how many there were."""
        headers = {"Authorization": f"token {self.token}"}
        req = urllib.request.Request(f"{self.base_url}/api/sessions", headers=headers)
        with urllib.request.urlopen(req, timeout=10) as reply:
            sessions = json.loads(reply.read())
        for session in sessions:
            req = urllib.request.Request(f"{self.base_url}/api/sessions/{session['id']}",
                                         headers=headers, method="DELETE")
            urllib.request.urlopen(req, timeout=30).close()
        return len(sessions)

    def __enter__(self) -> JupyterLab:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def copy_notebooks(names: list[str], root: Path) -> list[Path]:
    """Copy ``notebooks/<name>`` files into ``root`` (the server's folder); returns the copies."""
    root.mkdir(parents=True, exist_ok=True)
    copies = []
    for name in names:
        source = REPO_ROOT / "notebooks" / name
        shutil.copy2(source, root / name)
        copies.append(root / name)
    return copies


def launch_chromium(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                      args=CHROMIUM_ARGS)


def open_notebook(page, lab: JupyterLab, name: str, timeout_ms: int = 90_000,
                  workspace: str | None = None) -> None:
    """Open ``name`` (relative to the server's root); wait for its cells and an idle kernel.

    ``workspace``: a fresh JupyterLab workspace name, so no tab of an earlier page comes back.
    """
    path = f"lab/workspaces/{workspace}/tree/{name}" if workspace else f"lab/tree/{name}"
    page.goto(lab.url(path), timeout=timeout_ms)
    page.wait_for_selector(".jp-NotebookPanel .jp-Notebook .jp-Cell", timeout=timeout_ms)
    # The notebook's kernelspec was used (no kernel-choice dialog) and the kernel is up: the
    # status bar reads "Python 3 (ipykernel) | Idle". Commands clicked earlier can be lost.
    page.wait_for_function(
        "() => !document.querySelector('.jp-Dialog') && "
        "/Python/.test(document.querySelector('.jp-StatusBar-Widget')?.innerText ?? '') && "
        + KERNEL_IDLE_JS,
        timeout=timeout_ms, polling=200)


_PROMPTS_JS = """() => [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')]
    .map(e => e.textContent.trim())"""


def run_all_cells(page, timeout_ms: int = 300_000) -> float:
    """Run → Run All Cells from the menu bar; wait until no cell is queued or running.

    Returns the seconds it took (kernel start included).
    """
    start = time.monotonic()
    for _attempt in range(3):
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        item = page.locator(".lm-Menu-item:not(.lm-mod-disabled)", has_text="Run All Cells").first
        item.wait_for(state="visible", timeout=10_000)
        item.click()
        try:   # queued cells show "[*]:" at once; a click lost to a busy page shows nothing
            page.wait_for_function(
                f"() => ({_PROMPTS_JS})().some(t => /\\[(\\*|\\d+)\\]/.test(t))",
                timeout=10_000, polling=100)
            break
        except Exception:  # noqa: BLE001 (Playwright's TimeoutError: try the menu again)
            page.keyboard.press("Escape")
    else:
        raise TimeoutError("Run → Run All Cells did not start any cell (3 attempts)")
    # Wait until one cell has run and none is left queued or running.
    page.wait_for_function(
        f"""() => {{
            const prompts = ({_PROMPTS_JS})();
            return !prompts.some(t => t.includes('*')) && prompts.some(t => /\\[\\d+\\]/.test(t));
        }}""", timeout=timeout_ms, polling=200)
    return time.monotonic() - start


def cell_errors(page) -> list[str]:
    """The text of every traceback on the page (not plain stderr such as TensorFlow's logs)."""
    texts = page.eval_on_selector_all(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']",
        "els => els.map(e => e.innerText.slice(0, 2000))")
    return [t for t in texts if "Traceback (most recent call last)" in t]


# Time from a key press on a slider handle to the explorer's output settling, measured in the
# page with performance.now(): a keydown listener (capture phase) stamps the press, a
# MutationObserver stamps every change of the explorer's output area. "Settled" = the kernel
# is idle again (it reports idle only after sending every output of the render) and nothing
# changed for `quiet_ms`. The latency is last change - key press (DOM updated; the paint of
# a new image follows within a frame).
_ARM_JS = """([slider, outputSel]) => {
    let box = slider;   // the nearest ancestor holding an output area: the explorer
    while (box && !box.querySelector(outputSel)) box = box.parentElement;
    const out = box ? box.querySelector(outputSel) : null;
    window.__lat = {t0: null, last: null, n: 0};
    // The first key press, or the first input/change event (a dropdown picked), starts the clock.
    const stamp = () => { if (window.__lat.t0 === null) window.__lat.t0 = performance.now(); };
    for (const type of ['keydown', 'input', 'change']) {
        document.addEventListener(type, stamp, {capture: true, once: true});
    }
    if (window.__latObserver) window.__latObserver.disconnect();
    window.__latObserver = new MutationObserver(() => {
        window.__lat.last = performance.now(); window.__lat.n += 1; });
    if (out) window.__latObserver.observe(out, {childList: true, subtree: true,
                                                characterData: true, attributes: true});
    return out !== null;
}"""

_OUTPUT_TEXT_JS = """([slider, outputSel]) => {
    let box = slider;
    while (box && !box.querySelector(outputSel)) box = box.parentElement;
    const out = box ? box.querySelector(outputSel) : null;
    return out ? out.innerText : '';
}"""

KERNEL_IDLE_JS = ("/\\|\\s*Idle/.test(document.querySelector('.jp-StatusBar-Widget')"
                  "?.innerText ?? '')")


def time_change(page, control, act, quiet_ms: int = 300, timeout_ms: int = 60_000,
                output_selector: str = ".widget-output") -> dict:
    """Run ``act()`` (which changes ``control``, a locator inside an explorer) and time it.

    Returns a dict: ``latency_ms`` (first key/input/change event to the last change of the
    explorer's output area, once the kernel is idle again), ``mutations`` and ``text`` (the
    output area's text afterwards).
    """
    element = control.element_handle()
    if not page.evaluate(_ARM_JS, [element, output_selector]):
        raise RuntimeError("no output area next to this control")
    act()
    page.wait_for_function(
        f"""() => {{
            const l = window.__lat;
            return l.t0 !== null && l.last !== null && l.last > l.t0 && {KERNEL_IDLE_JS}
                && performance.now() - l.last > {quiet_ms};
        }}""", timeout=timeout_ms, polling=50)
    lat = page.evaluate("() => window.__lat")
    text = page.evaluate(_OUTPUT_TEXT_JS, [element, output_selector])
    return {"latency_ms": lat["last"] - lat["t0"], "mutations": lat["n"], "text": text}


def press_and_time(page, handle, key: str = "ArrowRight", **kwargs) -> dict:
    """Focus a noUiSlider handle and press ``key`` once; see :func:`time_change`."""

    def act():
        handle.focus()
        page.keyboard.press(key)

    return time_change(page, handle, act, **kwargs)


def select_and_time(page, select, label: str | None = None, **kwargs) -> dict:
    """Pick option ``label`` of a dropdown (``<select>``; default: the next one, wrapping);
    see :func:`time_change`."""
    if label is None:
        options = select.locator("option").all_inner_texts()
        current = select.evaluate("el => el.selectedIndex")
        label = options[(current + 1) % len(options)]
    return time_change(page, select, lambda: select.select_option(label=label), **kwargs)
