"""Every lesson notebook runs top to bottom as `jupyter nbconvert --execute` runs it, on both backends.

nbval (``make test-notebooks``) runs the notebooks too, but through its own pytest plug-in; a
learner or an instructor runs them with JupyterLab or ``jupyter nbconvert --execute``, which go
through nbclient. A notebook can pass one and hang the other (a widget cell once left
nbconvert waiting on an idle kernel), so this test executes each of ``notebooks/*.ipynb``
with nbclient, the library nbconvert uses, with a per-cell timeout: a hang fails the test
instead of stalling CI.

It runs every notebook twice: with ``KERAS_BACKEND=tensorflow`` (the default) and with
``KERAS_BACKEND=jax``, since the README promises that the lessons run on JAX as well.

It also checks what the learner sees: no output may carry TensorFlow's C++ start-up log lines
("failed call to cuInit", "oneDNN custom operations ...", "Could not find cuda drivers"), which
look like errors. ``course_lib`` silences them before TensorFlow is imported, so the kernel
here gets no ``TF_CPP_MIN_LOG_LEVEL`` of its own: the notebook must do it by itself.

Run one notebook: ``pytest tests/test_notebooks_execute.py -k "jax and 04_resnet"``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
BACKENDS = ("tensorflow", "jax")
#: Seconds one cell may run: far above any cell's time in quick mode, so only a hang trips it.
CELL_TIMEOUT = 300

# The C++ log lines of TensorFlow/XLA ("2026-01-02 10:11:12.345678: E external/...cc:51] ...")
# and the messages the issue saw in learners' outputs.
TF_LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] \S+:\d+\]|failed call to cuInit|"
    r"oneDNN custom operations|oneDNN supports|Could not find cuda drivers", re.MULTILINE)


def _backend_available(backend: str) -> bool:
    try:
        __import__(backend)
    except ImportError:
        return False
    return True


def _stream_texts(nb) -> list[tuple[int, str]]:
    """(cell index, text) of every stream output (stdout and stderr) of an executed notebook."""
    return [(i, out.get("text", "")) for i, cell in enumerate(nb.cells)
            if cell.cell_type == "code" for out in cell.get("outputs", [])
            if out.get("output_type") == "stream"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_notebook_executes_with_nbclient(path: Path, backend: str) -> None:
    import nbformat
    from nbclient import NotebookClient

    if not _backend_available(backend):
        pytest.skip(f"Keras backend {backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONHASHSEED="0")
    env.setdefault("COURSE_MODE", "quick")
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)   # course_lib must silence TensorFlow by itself
    # With PYTEST_CURRENT_TEST set, ipykernel leaves the process's own stdout/stderr (where
    # TensorFlow's C++ start-up lines go) out of the cells; a learner's JupyterLab kernel puts
    # them in, so the kernel here must not inherit it or the leak check below sees nothing.
    env.pop("PYTEST_CURRENT_TEST", None)
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute(env=env)
    print(f"\n{path.name} on {backend}: {time.monotonic() - started:.1f} s (kernel start included)")

    leaks = [(i, m.group(0)) for i, text in _stream_texts(nb) for m in TF_LOG_LINE.finditer(text)]
    assert not leaks, (f"TensorFlow's C++ log lines reached the learner's output of {path.name} "
                       f"(cell, line): {leaks[:3]}")
