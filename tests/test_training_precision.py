"""Mixed precision through the engine: float16 with loss scaling, bfloat16."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from training_standins import RegressionBatches, tiny_regressor

from course_lib.config import cpu_flags, onednn_runs_avx2
from course_lib.training import CheckpointManager, TrainConfig, train
from course_lib.training.engine import resolve_precision

#: An AVX-512 BF16 CPU with oneDNN capped to AVX2 (how bench/ stands in for an AVX2 CPU):
#: TensorFlow reads BF16 from the CPU and asks oneDNN for bfloat16 kernels the cap forbids,
#: and oneDNN aborts the whole process ("could not create a primitive descriptor for the
#: inner product forward propagation primitive"). A real AVX2 CPU has no BF16 flag, so
#: TensorFlow does not ask; the test runs there, and everywhere without the cap.
BF16_CPU_CAPPED_TO_AVX2 = onednn_runs_avx2() and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


@pytest.fixture(autouse=True)
def float32_after():
    yield
    keras.mixed_precision.set_dtype_policy("float32")  # the policy is global: restore it


def test_auto_precision_is_float32_on_cpu_and_names_are_checked():
    assert resolve_precision("auto") == "float32"  # no GPU here
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="mixed_float16"):
        resolve_precision("half")


def test_float16_trains_with_loss_scaling_and_checkpoints_the_scale(tmp_path):
    cfg = TrainConfig(epochs=2, learning_rate=0.01, mixed_precision="mixed_float16",
                      tensorboard=False, verbose=0)
    run = tmp_path / "run"
    result = train(tiny_regressor, RegressionBatches(as_dict=False), run, cfg, loss="mse")
    model = result.model
    assert model.dtype_policy.name == "mixed_float16"
    assert model.get_layer("body").compute_dtype == "float16"
    assert model.get_layer("body").kernel.dtype == "float32"  # master weights stay float32
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert np.isfinite(result.history["loss"]).all()
    assert result.history["loss"][-1] < result.history["loss"][0]
    # the checkpoint carries the loss scale with the optimizer state
    ckpt = CheckpointManager(run / "checkpoints").latest()
    names = [name for name, _ in ckpt.optimizer_signature]
    assert any("scale" in n for n in names), names


@pytest.mark.skipif(BF16_CPU_CAPPED_TO_AVX2, reason="ONEDNN_MAX_CPU_ISA caps this BF16 CPU "
                    "below its bfloat16 kernels: oneDNN would abort the process (see above)")
def test_bfloat16_policy_runs(tmp_path):
    cfg = TrainConfig(epochs=1, learning_rate=0.01, mixed_precision="mixed_bfloat16",
                      tensorboard=False, verbose=0)
    result = train(tiny_regressor, RegressionBatches(as_dict=False), tmp_path / "r", cfg,
                   loss="mse")
    assert result.model.get_layer("head").compute_dtype == "bfloat16"
    assert np.isfinite(result.history["loss"]).all()
