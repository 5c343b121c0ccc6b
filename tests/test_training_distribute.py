"""Data parallelism: the same global batch gives the same loss and update on 1 and 2 devices.

The CPU is split into two devices in a fresh process (TensorFlow: two logical CPU devices;
JAX: ``--xla_force_host_platform_device_count=2``), since a process fixes its devices when the
backend starts. Each process trains the same tiny model for 3 steps on one device and on two,
through :func:`course_lib.training.train`, for a model with a compiled loss and for one that
computes its loss inside (like Mask R-CNN).

Tolerance: the two-device run sums per-device partial gradients in a different order, so
float32 results agree to rounding only: relative 1e-5 on losses and weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import json, sys, tempfile
from pathlib import Path
backend, devices = sys.argv[1], sys.argv[2].split(",")
if backend == "tensorflow":
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
import keras
import numpy as np
sys.path.insert(0, {tests!r})
from training_standins import AddsItsLoss, RegressionBatches, tiny_regressor
from course_lib.training import TrainConfig, data_parallel, train

cfg = TrainConfig(epochs=1, steps_per_epoch=3, learning_rate=0.05, tensorboard=False,
                  verbose=0, seed=1, clipnorm=None)
runs = Path(tempfile.mkdtemp())
out = {{}}
for label, devs in (("one", None), ("two", devices)):
    for kind in ("compiled", "inside"):
        dp = data_parallel(devs) if devs else None
        build = tiny_regressor if kind == "compiled" else (lambda: AddsItsLoss(batch_norm=False, name="standin"))
        result = train(build, RegressionBatches(as_dict=kind == "inside", batch_size=8),
                       runs / f"{{label}}-{{kind}}", cfg, loss="mse" if kind == "compiled" else None,
                       distribution=dp, print_fn=lambda s: None)
        out[f"{{label}}-{{kind}}"] = {{
            "engine": dp.engine if dp else "single",
            "loss": result.history["loss"],
            "weights": [np.asarray(w).tolist() for w in result.model.trainable_weights]}}
print("RESULT" + json.dumps(out))
"""


def _run(backend: str, devices: str) -> dict:
    env = dict(os.environ, KERAS_BACKEND=backend, PYTHONPATH=str(ROOT),
               TF_CPP_MIN_LOG_LEVEL="3")
    if backend == "jax":
        env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    script = SCRIPT.format(tests=str(ROOT / "tests"))
    proc = subprocess.run([sys.executable, "-c", script, backend, devices], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


def _same(out: dict, kind: str) -> None:
    one, two = out[f"one-{kind}"], out[f"two-{kind}"]
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    for a, b in zip(two["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_mirrored_strategy_matches_one_device():
    out = _run("tensorflow", "/cpu:0,/cpu:1")
    assert out["two-compiled"]["engine"] == "MirroredStrategy"
    _same(out, "compiled")
    _same(out, "inside")


@pytest.mark.slow
@pytest.mark.other_backend
@pytest.mark.skipif(__import__("importlib").util.find_spec("jax") is None,
                    reason="JAX not installed")
def test_jax_data_parallel_matches_one_device():
    out = _run("jax", "cpu:0,cpu:1")
    assert out["two-compiled"]["engine"] == "keras.distribution.DataParallel"
    _same(out, "compiled")
    _same(out, "inside")
