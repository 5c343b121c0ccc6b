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
    so ``-m "not notebook"`` leaves them out as it does the nbclient runs of the lessons.
    """
    for item in items:
        if item.__class__.__name__ == "IPyNbCell":
            item.add_marker(pytest.mark.notebook)
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
