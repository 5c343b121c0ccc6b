"""Shared pytest fixtures: a private data root, the real DSB2018 folder when present."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib
import pytest
from hypothesis import settings

matplotlib.use("Agg")  # tests draw figures without a display
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# On CI, property tests draw the same examples every run: a red build is then reproducible,
# never a dice roll. Locally they explore new examples each run (hypothesis' default).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO_ROOT = Path(__file__).resolve().parent.parent


def real_dsb_root() -> Path | None:
    """The real DSB2018 stage1_train folder: $COURSE_REAL_DSB, else ../shared beside the repo."""
    env = os.environ.get("COURSE_REAL_DSB")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train")
    for path in candidates:
        if path.is_dir() and any(path.iterdir()):
            return path
    return None


def skip_unless_ci(reason: str) -> None:
    """Skip the running test for a missing optional resource, or fail it under CI (env CI set).

    A laptop without the real data or a browser skips; CI must really run those tests, so
    there a missing resource is a red build, never a quiet skip.
    """
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so this test must run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def real_dsb() -> Path:
    """Path to the real DSB2018 stage1_train folder: skips when absent, fails under CI.

    The one gate for every test on the real nuclei: such a test takes this fixture (and is
    marked ``real_data`` automatically, see ``pytest_collection_modifyitems``).
    """
    path = real_dsb_root()
    if path is None:
        skip_unless_ci("real DSB2018 data not present at ../shared/data/dsb2018/stage1_train "
                       "(or set COURSE_REAL_DSB to its stage1_train folder)")
    return path


def pytest_collection_modifyitems(config, items):
    """Tie the ``real_data`` marker to the ``real_dsb`` fixture, both ways; mark nbval's cells.

    A test that uses the fixture gets the marker (so ``-m "not real_data"`` deselects it);
    a test marked ``real_data`` without the fixture would bypass the CI gate, so it is an error.

    nbval's items (the cells of ``solutions/`` and ``exercises/``) get the ``notebook`` marker,
    so ``-m "not notebook"`` leaves them out as it does the nbclient runs of the lessons; an
    exercise's cells may raise only what an unfinished exercise raises.
    """
    for item in items:
        if item.__class__.__name__ == "IPyNbCell":
            item.add_marker(pytest.mark.notebook)
            if item.path.parent.name == "exercises":
                only_exercise_errors(item)
        uses_fixture = "real_dsb" in getattr(item, "fixturenames", ())
        if uses_fixture and item.get_closest_marker("real_data") is None:
            item.add_marker(pytest.mark.real_data)
        elif item.get_closest_marker("real_data") is not None and not uses_fixture:
            raise pytest.UsageError(f"{item.nodeid} is marked real_data but does not take the "
                                    "real_dsb fixture; take it, so CI cannot skip it silently")


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty private COURSE_DATA folder for the test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("COURSE_DATA", str(root))
    return root


#: What a check cell of an exercise notebook may raise while the exercise is not done: the
#: function is still ``raise NotImplementedError()``, or the check found the answer wrong.
EXERCISE_ERRORS = frozenset({"NotImplementedError", "ExerciseFailed"})


def unexpected_exercise_errors(outputs, unfinished_before: bool = False) -> list[str]:
    """``"Name: message"`` of each error output an unfinished exercise does not explain.

    nbval's ``raises-exception`` tag (which ``make exercises`` puts on an exercise's check
    cells) accepts *any* exception: a cell that fails with a NameError because the notebook's
    set-up broke, or ran in another kernel, would pass. Allowed: :data:`EXERCISE_ERRORS`, and a
    NameError once an earlier cell raised one of them (``unfinished_before``: a check that reads
    what the unwritten function would have made).
    """
    allowed = EXERCISE_ERRORS | ({"NameError"} if unfinished_before else set())
    return [f"{o.get('ename')}: {o.get('evalue', '')}" for o in outputs or ()
            if o.get("output_type") == "error" and o.get("ename") not in allowed]


def only_exercise_errors(item) -> None:
    """Make nbval's cell ``item`` of an exercise notebook fail when it raised something an
    unfinished exercise does not explain (see :func:`unexpected_exercise_errors`).

    Done by wrapping the item's ``runtest`` at collection: the report hooks of this conftest
    apply only to items under ``tests/``, the collection hook to every item. Whether an
    earlier cell of the same kernel raised an exercise error is kept on the notebook's node.
    """
    runtest, notebook = item.runtest, item.parent

    def run_and_check():
        runtest()
        outputs = getattr(item, "test_outputs", None)
        wrong = unexpected_exercise_errors(
            outputs, unfinished_before=getattr(notebook, "exercise_unfinished", False))
        if any(o.get("ename") in EXERCISE_ERRORS for o in outputs or ()):
            notebook.exercise_unfinished = True
        if wrong:
            pytest.fail(f"{item.nodeid} raised {wrong[0]}; an exercise's cells may raise only "
                        f"{', '.join(sorted(EXERCISE_ERRORS))} (the function not written yet, "
                        "or the check finding it wrong), or a NameError after one of those",
                        pytrace=False)

    item.runtest = run_and_check
