"""The import hook that applies TF_CPP_MIN_LOG_LEVEL to TensorFlow 2.21's abseil log lines.

The oracle is hand-written stderr text: lines in abseil's and in TensorFlow's older format at
each severity, a continuation line, and ordinary output that must always come back. The
subprocess tests import a stand-in package that writes to file descriptor 2 as TensorFlow's
C++ code does (``os.write(2, ...)``), so they run without TensorFlow 2.21 installed; the notebook
leak check in ``test_notebooks_execute.py`` covers the real one when it is.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from course_lib._tf_logs import filter_log_text

ROOT = Path(__file__).resolve().parent.parent

NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
INFO = ("I0000 00:00:1796228401.021071    2881 cudart_stub.cc:31] Could not find cuda drivers "
        "on your machine, GPU will not be used.\n")
INFO_CONTINUED = ("I0000 00:00:1796228326.137899    2790 cpu_feature_guard.cc:227] This TensorFlow "
                  "binary is optimized\n"
                  "To enable the following instructions: AVX2 FMA, rebuild TensorFlow.\n")
OLD_WARNING = ("2026-01-02 10:11:12.345678: W external/local_xla/xla/stream_executor/"
               "cuda/cuda_driver.cc:51] failed call to cuInit\n")
ERROR = "E0000 00:00:1758131045.203198 3722035 cuda_dnn.cc:8579] Unable to register cuDNN\n"
FATAL = "F0000 00:00:1758131045.203198 3722035 check.cc:1] Check failed\n"
PLAIN = "a line of the program's own\n"


def test_each_level_drops_exactly_the_records_below_it():
    text = NOTICE + INFO + PLAIN + INFO_CONTINUED + OLD_WARNING + ERROR + FATAL
    assert filter_log_text(text, 0) == text
    assert filter_log_text(text, 1) == PLAIN + OLD_WARNING + ERROR + FATAL
    assert filter_log_text(text, 2) == PLAIN + ERROR + FATAL
    assert filter_log_text(text, 3) == PLAIN + FATAL
    assert filter_log_text(text, 9) == PLAIN + FATAL      # FATAL is never dropped


def test_only_cpu_feature_guards_second_line_goes_with_its_record():
    # A Python warning right after a dropped record is the program's own and must stay.
    warning = "/x/site-packages/tf/__init__.py:5: UserWarning: something\n"
    assert filter_log_text(INFO + warning + INFO_CONTINUED + PLAIN, 3) == warning + PLAIN
    # The continuation stays with a record that is kept.
    assert filter_log_text(INFO_CONTINUED, 0) == INFO_CONTINUED
    assert filter_log_text("", 3) == ""


def _run(tmp_path: Path, package_body: str, level: str) -> subprocess.CompletedProcess:
    package = tmp_path / "noisy_pkg"
    package.mkdir()
    (package / "__init__.py").write_text(textwrap.dedent(package_body))
    program = textwrap.dedent("""
        import os, sys
        from course_lib import _tf_logs
        _tf_logs.install("noisy_pkg")
        try:
            import noisy_pkg
            print("loader", type(noisy_pkg.__spec__.loader).__name__)
        except ImportError as error:
            print("import failed:", error)
        os.write(2, b"after the import\\n")
    """)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)]),
               TF_CPP_MIN_LOG_LEVEL=level)
    return subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                          text=True, timeout=60, check=True)


def test_the_first_import_is_filtered_and_everything_else_comes_back_in_order(tmp_path):
    body = f"""
        import os, warnings
        os.write(2, {(NOTICE + INFO).encode()!r})
        os.write(2, {PLAIN.encode()!r})
        os.write(2, {ERROR.encode()!r})
        warnings.warn("a Python warning during the import")
    """
    done = _run(tmp_path, body, level="2")
    assert "Could not find cuda drivers" not in done.stderr
    assert "absl::InitializeLog" not in done.stderr
    kept = [PLAIN.strip(), "Unable to register cuDNN", "a Python warning during the import",
            "after the import"]
    positions = [done.stderr.find(part) for part in kept]
    assert all(p >= 0 for p in positions) and positions == sorted(positions), done.stderr
    # The module keeps its real loader: the wrapper leaves no trace.
    assert "loader SourceFileLoader" in done.stdout


def test_a_failing_import_still_shows_its_output_and_restores_stderr(tmp_path):
    body = f"""
        import os
        os.write(2, {INFO.encode()!r})
        os.write(2, b"why it failed\\n")
        raise ImportError("missing shared library")
    """
    done = _run(tmp_path, body, level="3")
    assert "import failed: missing shared library" in done.stdout
    assert "why it failed" in done.stderr and "after the import" in done.stderr
    assert "Could not find cuda drivers" not in done.stderr


def test_level_zero_keeps_every_line(tmp_path):
    done = _run(tmp_path, f"import os\nos.write(2, {(NOTICE + INFO).encode()!r})\n", level="0")
    assert NOTICE + INFO in done.stderr
