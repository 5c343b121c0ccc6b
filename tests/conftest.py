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


@pytest.fixture
def real_dsb() -> Path:
    """Path to the real DSB2018 stage1_train folder; skips the test when it is absent."""
    path = real_dsb_root()
    if path is None:
        pytest.skip("real DSB2018 data not present (set COURSE_REAL_DSB to its stage1_train)")
    return path


@pytest.fixture
def data_root(tmp_path, monkeypatch) -> Path:
    """An empty private COURSE_DATA folder for the test."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("COURSE_DATA", str(root))
    return root
