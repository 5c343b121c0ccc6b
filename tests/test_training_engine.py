"""The training engine's parts: schedule, optimizer, stages, early stopping, logs, run folder."""

from __future__ import annotations

import csv

import keras
import numpy as np
import pytest
from training_standins import AddsItsLoss, RegressionBatches, tiny_regressor

from course_lib.models.unet import same_unet
from course_lib.training import (
    EpochView,
    RunFolderError,
    Stage,
    TrainConfig,
    WarmupStepSchedule,
    make_optimizer,
    paper_schedule,
    set_trainable,
    train,
)

QUIET = dict(tensorboard=False, verbose=0)


# --- schedule ----------------------------------------------------------------------------

def test_schedule_hand_worked_values():
    s = WarmupStepSchedule(0.02, boundaries=[10, 20], factor=0.1, warmup_steps=4,
                           warmup_factor=1 / 3)
    # warm-up: 1/3 + (2/3)·step/4 of the base rate
    expected = {0: 0.02 / 3, 2: 0.02 * (1 / 3 + 2 / 3 * 0.5), 4: 0.02, 9: 0.02,
                10: 0.002, 19: 0.002, 20: 0.0002, 100: 0.0002}
    for step, lr in expected.items():
        assert float(s(step)) == pytest.approx(lr, rel=1e-6), step
        assert s.value(step) == pytest.approx(lr, rel=1e-6), step


def test_schedule_serialises_and_drives_the_optimizer():
    s = WarmupStepSchedule(0.1, [3], 0.5, warmup_steps=2, warmup_factor=0.5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
    assert again.get_config() == s.get_config()
    opt = keras.optimizers.SGD(learning_rate=s)
    v = keras.Variable(np.zeros(2, np.float32))
    seen = []
    for _ in range(5):
        seen.append(float(np.asarray(opt.learning_rate)))
        opt.apply_gradients([(keras.ops.ones(2), v)])
    assert seen == pytest.approx([0.05, 0.075, 0.1, 0.05, 0.05])
    # plain SGD: v = -sum of the rates used
    np.testing.assert_allclose(np.asarray(v), -sum(seen) * np.ones(2), rtol=1e-6)


def test_paper_schedule_scales_the_coco_run():
    s = paper_schedule(160_000, base_lr=0.02)
    assert s.boundaries == [120_000] and s.warmup_steps == 500
    short = paper_schedule(40)  # quick mode: warm-up shrinks to a tenth of the run
    assert short.boundaries == [30] and short.warmup_steps == 4


# --- optimizer ---------------------------------------------------------------------------

def test_sgd_momentum_weight_decay_and_clipping_hand_worked():
    cfg = TrainConfig(learning_rate=0.1, momentum=0.9, weight_decay=0.5, clipnorm=1.0)
    opt = make_optimizer(cfg, 0.1)
    w = keras.Variable(np.array([3.0, 4.0], np.float32), name="kernel")
    g = np.array([30.0, 40.0], np.float32)  # norm 50 → clipped to (0.6, 0.8)
    opt.apply_gradients([(keras.ops.convert_to_tensor(g), w)])
    # decoupled decay first: w -= lr·wd·w = (2.85, 3.8); then momentum step: w -= lr·g_clip
    np.testing.assert_allclose(np.asarray(w), [2.85 - 0.06, 3.8 - 0.08], rtol=1e-6)
    opt.apply_gradients([(keras.ops.convert_to_tensor(g), w)])
    # velocity = 0.9·(-0.06, -0.08) - 0.1·(0.6, 0.8) = (-0.114, -0.152)
    w1 = np.array([2.79, 3.72])
    np.testing.assert_allclose(np.asarray(w), w1 * (1 - 0.05) + [-0.114, -0.152], rtol=1e-5)


def test_no_weight_decay_on_normalisation_scales():
    opt = make_optimizer(TrainConfig(learning_rate=0.1, weight_decay=0.5, clipnorm=None), 0.1)
    gamma = keras.Variable(np.ones(2, np.float32), name="gamma")
    opt.apply_gradients([(keras.ops.zeros(2), gamma)])
    np.testing.assert_allclose(np.asarray(gamma), [1.0, 1.0])


def test_adamw_is_available():
    opt = make_optimizer(TrainConfig(optimizer="adamw"), 1e-3)
    assert isinstance(opt, keras.optimizers.AdamW) and opt.clipnorm == 5.0
    with pytest.raises(ValueError, match="sgd"):
        make_optimizer(TrainConfig(optimizer="rmsprop"), 1e-3)


# --- stages ------------------------------------------------------------------------------

def test_set_trainable_by_pattern_and_norm_rule():
    model = same_unet((32, 32, 3), base_filters=4, depth=2)
    counts = set_trainable(model, r"^(up\d|classifier)", train_norm=False)
    trainable = {layer.name for layer in model.layers if layer.trainable and layer.weights}
    assert trainable == {"up1_upconv", "up1_conv1", "up1_conv2", "up2_upconv", "up2_conv1",
                         "up2_conv2", "classifier"}  # the decoder's BN stays frozen
    # the four 3×3 convs have a kernel only (use_bias=False before BN); the two up-convs and
    # the classifier have kernel + bias: 4 + 2·2 + 2 = 10 variables
    assert counts["trainable_weights"] == 10
    set_trainable(model, r"^(up\d|classifier)", train_norm=True)
    assert model.get_layer("up1_bn1").trainable and not model.get_layer("down1_bn1").trainable
    with pytest.raises(ValueError, match="selects no layer"):
        set_trainable(model, r"^nothing_matches$")


def test_heads_stage_leaves_the_body_untouched(tmp_path):
    cfg = TrainConfig(stages=(Stage("heads", 1, trainable="head", train_norm=False),),
                      learning_rate=0.05, **QUIET)
    model = AddsItsLoss(name="standin")
    data = RegressionBatches()
    model(data[0])
    before = {v.path: np.array(v) for v in model.weights}
    train(model, data, tmp_path / "run", cfg)
    after = {v.path: np.array(v) for v in model.weights}
    changed = {p for p in before if not np.array_equal(before[p], after[p])}
    assert changed == {"standin/head/kernel", "standin/head/bias"}  # BN statistics frozen too


def test_stages_run_in_order_and_keep_counting_steps(tmp_path):
    cfg = TrainConfig(stages=(Stage("heads", 1, "head"), Stage("all", 2)), learning_rate=0.05,
                      lr_drops=(0.5,), **QUIET)
    lines = []
    result = train(lambda: AddsItsLoss(name="standin"), RegressionBatches(), tmp_path / "r",
                   cfg, print_fn=lines.append)
    assert result.step == 18 and result.epoch == 3
    assert any("stage 1/2 'heads'" in line for line in lines)
    assert any("stage 2/2 'all'" in line for line in lines)
    # one schedule across stages: the drop at step 9 shows in epoch 3's rate
    assert result.history["lr"] == pytest.approx([0.05, 0.005, 0.005])


# --- early stopping, logs, run folder ----------------------------------------------------

def test_early_stopping_ends_the_run(tmp_path):
    # a rate too small to change float32 weights: the loss repeats exactly, never improves
    cfg = TrainConfig(epochs=10, learning_rate=1e-12, early_stopping_patience=2, **QUIET)
    result = train(tiny_regressor, RegressionBatches(as_dict=False, fixed=True),
                   tmp_path / "run", cfg, loss="mse")
    assert result.stopped == "early_stopping"
    assert len(result.history["loss"]) == 3  # the first epoch, then 2 without improvement


def test_logs_csv_and_tensorboard(tmp_path):
    cfg = TrainConfig(epochs=2, learning_rate=0.01, verbose=0)
    run = tmp_path / "run"
    result = train(lambda: AddsItsLoss(name="standin"), RegressionBatches(), run, cfg,
                   val_data=RegressionBatches(n_batches=2, seed=9))
    with open(run / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    for key in ("loss", "main_loss", "aux_loss", "val_loss", "val_main_loss", "lr"):
        assert key in rows[0]
    assert float(rows[1]["loss"]) == pytest.approx(result.history["loss"][1], rel=1e-6)
    assert list((run / "logs" / "tensorboard").rglob("events.out.tfevents.*"))
    assert (run / "final.weights.h5").is_file()
    assert result.history["loss"][1] < result.history["loss"][0]  # it learns


def test_without_tensorboard_the_run_says_so_and_still_logs_csv(tmp_path, monkeypatch):
    # TensorFlow 2.21 stopped installing tensorboard: Keras' callback then raises
    # TBNotInstalledError at the first epoch's end. The engine must check first and say so.
    from course_lib.training import engine

    monkeypatch.setattr(engine, "tensorboard_installed", lambda: False)
    said = []
    cfg = TrainConfig(epochs=1, learning_rate=0.01, verbose=0)
    train(lambda: AddsItsLoss(name="standin"), RegressionBatches(), tmp_path / "run", cfg,
          print_fn=said.append)
    assert any("TensorBoard is not installed" in line for line in said), said
    assert not any("tensorboard --logdir" in line for line in said)
    assert not (tmp_path / "run" / "logs" / "tensorboard").exists()
    with open(tmp_path / "run" / "logs" / "train.csv") as f:
        assert len(list(csv.DictReader(f))) == 1


def test_tensorboard_installed_reads_the_environment():
    from course_lib.training.engine import tensorboard_installed

    try:
        import tensorboard  # noqa: F401
        expected = True
    except ImportError:
        expected = False
    assert tensorboard_installed() is expected


def test_run_folder_of_another_model_is_refused(tmp_path):
    run = tmp_path / "run"
    cfg = TrainConfig(epochs=1, **QUIET)
    train(tiny_regressor, RegressionBatches(as_dict=False), run, cfg, loss="mse")
    with pytest.raises(RunFolderError, match="new run folder"):
        train(lambda: AddsItsLoss(name="standin"), RegressionBatches(), run, cfg)
    with pytest.raises(RunFolderError, match="no run to resume"):
        train(tiny_regressor, RegressionBatches(as_dict=False), tmp_path / "empty", cfg,
              loss="mse", resume=True)
    with pytest.raises(RunFolderError, match="already holds a run"):
        train(tiny_regressor, RegressionBatches(as_dict=False), run, cfg, loss="mse",
              resume=False)


def test_epoch_view_reads_the_requested_epoch():
    data = RegressionBatches(n_batches=4)
    view = EpochView(data, steps_per_epoch=3, epoch=2, start=1)
    assert len(view) == 2
    np.testing.assert_array_equal(view[0]["x"], RegressionBatches(n_batches=4)._at(2, 1)["x"])
    with pytest.raises(ValueError, match="between 1 and"):
        EpochView(data, steps_per_epoch=5, epoch=0)


def test_epoch_view_takes_the_shared_dataset_back_to_its_epoch():
    """Two views share one dataset; making the second moves the dataset to its epoch. When
    Keras starts the first view's epoch (``set_epoch`` from ``on_epoch_begin``), the first
    must read its own epoch again, not the other's."""
    data = RegressionBatches(n_batches=4)
    rest_of_epoch_1 = EpochView(data, steps_per_epoch=4, epoch=1, start=2)
    EpochView(data, steps_per_epoch=4, epoch=2)
    rest_of_epoch_1.set_epoch(1)
    np.testing.assert_array_equal(rest_of_epoch_1[0]["x"], data._at(1, 2)["x"])
    with pytest.raises(ValueError, match="one epoch only"):
        rest_of_epoch_1.set_epoch(2)


# --- re-running one model from reset weights (the experiment tables of chapters 11, 12) ------

def test_rerun_from_reset_weights_reuses_the_step_and_matches_a_fresh_model(tmp_path):
    cfg = TrainConfig(epochs=2, optimizer="sgd", learning_rate=0.05, **QUIET)
    model = AddsItsLoss(name="standin")
    model(RegressionBatches()[0])
    initial = model.get_weights()
    train(model, RegressionBatches(seed=1), tmp_path / "a", cfg)
    step_fn = model.train_function
    # second run: same object, weights reset, other data -> the compiled step is kept ...
    model.set_weights(initial)
    lines = []
    second = train(model, RegressionBatches(seed=2), tmp_path / "b", cfg, print_fn=lines.append)
    assert model.train_function is step_fn
    assert any("nothing retraced" in line for line in lines)
    assert second.step == 12                            # the step count starts from zero
    # ... and gives what a freshly built and compiled model gives from the same start
    fresh = AddsItsLoss(name="standin")
    fresh(RegressionBatches()[0])
    fresh.set_weights(initial)
    train(fresh, RegressionBatches(seed=2), tmp_path / "c", cfg)
    for a, b in zip(model.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_different_schedule_compiles_again(tmp_path):
    model = AddsItsLoss(name="standin")
    train(model, RegressionBatches(), tmp_path / "a", TrainConfig(epochs=1, **QUIET))
    step_fn = model.train_function
    lines = []
    train(model, RegressionBatches(), tmp_path / "b",
          TrainConfig(epochs=1, learning_rate=0.5, **QUIET), print_fn=lines.append)
    assert not any("nothing retraced" in line for line in lines)
    assert model.train_function is not step_fn


def test_ctrl_c_stops_at_the_next_batch_and_the_handler_is_restored(tmp_path):
    """A SIGINT sent during batch 4 (from a callback, as a terminal would) interrupts before
    batch 5: exactly 4 optimizer steps, a KeyboardInterrupt out of train(), Python's own
    SIGINT handler back in place; the same command then resumes and finishes the run."""
    import os
    import signal

    class SigintAt4(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 4:
                os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    cfg = TrainConfig(epochs=2, learning_rate=0.05, **QUIET)
    model = AddsItsLoss(name="standin")
    with pytest.raises(KeyboardInterrupt):
        train(model, RegressionBatches(), tmp_path / "r", cfg, callbacks=[SigintAt4()],
              print_fn=lambda s: None)
    assert int(model.optimizer.iterations) == 4
    assert signal.getsignal(signal.SIGINT) is before
    resumed = train(lambda: AddsItsLoss(name="standin"), RegressionBatches(), tmp_path / "r",
                    cfg, print_fn=lambda s: None)
    assert resumed.step == 2 * len(RegressionBatches()) and resumed.stopped == "completed"
