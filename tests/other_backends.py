"""Run a snippet of course code under another Keras backend (JAX, PyTorch) in a subprocess.

The backend is chosen once per process when Keras is imported, so a test that wants JAX while
the suite runs on TensorFlow starts a fresh Python with ``KERAS_BACKEND`` set.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: The non-default backends installed here (JAX comes with the dev extra).
OTHER_BACKENDS = [b for b in ("jax", "torch") if importlib.util.find_spec(b) is not None]


def run_under_backend(backend: str, script: str, timeout: int = 600) -> str:
    """Run ``script`` with ``KERAS_BACKEND=backend`` from the repo root; return its stdout.

    Raises AssertionError with the end of stderr when the script fails.
    """
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"failed under {backend}:\n{proc.stderr[-3000:]}"
    return proc.stdout
