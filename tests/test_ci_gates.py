"""The gates in conftest.py: real-data tests skip on a laptop without the data, fail under CI.

Oracle: pytest's own outcome exceptions (``Skipped`` and ``Failed``), raised by the fixture's
helper under each environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import conftest
import pytest
from _pytest.outcomes import Failed, Skipped


def test_missing_resource_skips_locally(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(Skipped, match="no data here"):
        conftest.skip_unless_ci("no data here")


def test_missing_resource_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "1")
    with pytest.raises(Failed, match="CI is set.*no data here"):
        conftest.skip_unless_ci("no data here")


def test_real_dsb_root_is_none_without_data(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSE_REAL_DSB", raising=False)
    monkeypatch.setattr(conftest, "REPO_ROOT", tmp_path / "repo")
    assert conftest.real_dsb_root() is None
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("COURSE_REAL_DSB", str(empty))
    assert conftest.real_dsb_root() is None, "an empty folder is not data"
    (empty / "id1").mkdir()
    assert conftest.real_dsb_root() == empty


def _run_pytest_on(tmp_path, ci: bool, *args) -> subprocess.CompletedProcess:
    """Run pytest on one real-data test beside a copy of conftest.py, where no data is found."""
    shutil.copy(Path(conftest.__file__), tmp_path / "conftest.py")
    (tmp_path / "test_uses_real.py").write_text(
        "def test_reads(real_dsb):\n    assert real_dsb.is_dir()\n")
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    real_data: real nuclei\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "COURSE_REAL_DSB")}
    if ci:
        env["CI"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rs", *args, str(tmp_path)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_real_data_test_without_data_skips_locally_fails_under_ci_and_is_marked(tmp_path):
    local = _run_pytest_on(tmp_path, ci=False)
    assert local.returncode == 0 and "1 skipped" in local.stdout, local.stdout
    under_ci = _run_pytest_on(tmp_path, ci=True)
    # the fixture fails, so pytest reports an error in setup: a red build either way
    assert under_ci.returncode == 1 and "1 error" in under_ci.stdout, under_ci.stdout
    assert "CI is set" in under_ci.stdout
    # the fixture alone marks the test real_data, so it can be deselected by marker
    deselected = _run_pytest_on(tmp_path, True, "-m", "not real_data")
    assert "1 deselected" in deselected.stdout, deselected.stdout
