"""Every lesson notebook runs top to bottom as `jupyter nbconvert --execute` runs it.

A learner or an instructor runs the lessons with JupyterLab or ``jupyter nbconvert --execute``,
which go through nbclient, the library this test uses, with a per-cell timeout: a hang fails the
test instead of stalling CI. (A notebook can pass nbval and hang nbclient: a widget cell once
left nbconvert waiting on an idle kernel.)

One execution per lesson and backend, and it checks everything there is to check:

- it runs to the end on TensorFlow (``KERAS_BACKEND=tensorflow``, the default);
- the cells marked ``# NBVAL_CHECK_OUTPUT`` print what is stored in the notebook, compared by
  nbval's own rules and sanitize file (``tests/notebook_outputs.py``), so the lessons need no
  second TensorFlow execution under nbval (``make nbval`` still runs them that way);
- no output carries TensorFlow's C++ start-up log lines ("failed call to cuInit", "oneDNN custom
  operations ...", "Could not find cuda drivers"), which look like errors. ``course_lib``
  silences them before TensorFlow is imported, so the kernel here gets no
  ``TF_CPP_MIN_LOG_LEVEL`` of its own: the notebook must do it by itself;
- the lessons in :data:`JAX_LESSONS` run again with ``KERAS_BACKEND=jax``: those whose code takes
  a path of its own under JAX. The model code is ``keras.ops`` and is tested under JAX by the
  unit tests (``*_other_backend.py``, ``test_maskrcnn``, ``test_unet``, ``test_training_distribute``),
  so a JAX run of a lesson that only calls it would prove nothing new.

Run one notebook: ``pytest tests/test_notebooks_execute.py -k "jax and 09_mask"``.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from notebook_outputs import checked_outputs, output_differences

REPO_ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))

#: The lessons run a second time under JAX, each with the reason: the path its code takes
#: under JAX that no unit test covers. The README's "Tests and benchmarks" section lists the same.
#: A JAX pass of all thirteen took 654 s against 472 s on TensorFlow (7 Dec 2026, 2 cores),
#: most of it re-running keras.ops model code that the unit tests already run under JAX.
JAX_LESSONS = {
    "00_start_here": "session.report() and set_seed() take their JAX branches (device list, "
                     "seeding): the first cell of every lesson, as a JAX learner first sees it",
    "11_train_nuclei": "the training engine trains the chapter's real recipes (U-Net with its "
                       "weight map, Mask R-CNN) under Keras' JAX trainer, reusing the compiled "
                       "step across rows and writing checkpoints; the unit tests run the engine "
                       "under JAX only on a stand-in model",
}

RUNS = [pytest.param(path, "tensorflow", id=f"tensorflow-{path.stem}") for path in LESSONS] + \
    [pytest.param(path, "jax", id=f"jax-{path.stem}") for path in LESSONS
     if path.stem in JAX_LESSONS]
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


def test_every_jax_lesson_exists_and_says_why():
    stems = {p.stem for p in LESSONS}
    assert set(JAX_LESSONS) <= stems, set(JAX_LESSONS) - stems
    assert all(len(why) > 20 for why in JAX_LESSONS.values())


@pytest.mark.notebook
@pytest.mark.parametrize("path, backend", RUNS)
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
    stored = checked_outputs(nb)        # nbclient overwrites the outputs in place
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute(env=env)
    print(f"\n{path.name} on {backend}: {time.monotonic() - started:.1f} s (kernel start included)")

    leaks = [(i, m.group(0)) for i, text in _stream_texts(nb) for m in TF_LOG_LINE.finditer(text)]
    assert not leaks, (f"TensorFlow's C++ log lines reached the learner's output of {path.name} "
                       f"(cell, line): {leaks[:3]}")
    if backend == "tensorflow":
        # The stored outputs were made on TensorFlow; under JAX a backend name may differ.
        differences = output_differences(stored, nb)
        assert not differences, f"{path.name}:\n" + "\n".join(differences)
