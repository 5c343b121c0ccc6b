"""Chapter 12's run comparisons: runs from chosen weights, their evaluation, the plan, pictures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course_lib import config  # noqa: E402
from course_lib.experiments import comparison as C  # noqa: E402
from course_lib.training import Stage, TrainConfig  # noqa: E402
from course_lib.viz import runs as viz_runs  # noqa: E402
from tests.training_standins import AddsItsLoss, RegressionBatches  # noqa: E402

QUIET = dict(tensorboard=False, verbose=0)


class Augmented(RegressionBatches):
    """Batches that record the augmenter set on them when each batch is read, and shift the
    targets by the augmenter's value (so an augmented run sees other data)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.augmenter = "original"
        self.seen = []

    def __getitem__(self, index):
        self.seen.append(self.augmenter)
        batch = super().__getitem__(index)
        if isinstance(self.augmenter, float):
            batch["y"] = batch["y"] + self.augmenter
        return batch


def _model():
    model = AddsItsLoss(name="standin")
    model(RegressionBatches()[0])
    return model


def test_runs_start_from_their_weights_reuse_the_step_and_restore_the_augmenter(tmp_path):
    model, data = _model(), Augmented(n_batches=4)
    initial = model.get_weights()
    cfg = TrainConfig(epochs=2, optimizer="sgd", learning_rate=0.05, **QUIET)
    lines = []
    runs = C.train_runs(model, data, {"a": C.Run(initial, cfg, None),
                                      "again a": C.Run(initial, cfg, None),
                                      "shifted": C.Run(initial, cfg, 5.0)},
                        run_root=tmp_path, val_data=RegressionBatches(n_batches=2, seed=9, fixed=True),
                        print_fn=lines.append)
    a, again, shifted = runs.values()
    # the same start, settings and data: the same run, and no second trace
    for key in ("loss", "val_loss"):
        np.testing.assert_allclose(a.history[key], again.history[key], rtol=1e-5)
    assert (a.traced, again.traced, shifted.traced) == (1, 0, 0)
    assert a.steps == again.steps == 8 and len(a.history["loss"]) == 2
    # the augmenter was set during its run only, and put back afterwards
    assert set(data.seen) >= {None, 5.0} and data.augmenter == "original"
    assert shifted.history["loss"][0] > 2 * a.history["loss"][0]
    assert a.final_weights.is_file() and a.run_dir.parent == tmp_path
    assert len(lines) == 3 and lines[1].startswith("again a: 8 steps")
    # evaluate_runs: the model holds each run's final weights when measured
    measured = C.evaluate_runs(model, runs, lambda: [np.asarray(w).copy()
                                                      for w in model.get_weights()])
    reloaded = _model()
    for name, run in runs.items():
        reloaded.load_weights(run.final_weights)
        for got, want in zip(measured[name], reloaded.get_weights(), strict=True):
            np.testing.assert_array_equal(got, want)
    assert not np.allclose(measured["a"][-1], initial[-1])      # it did train


def test_a_two_stage_run_traces_each_stage(tmp_path):
    model, data = _model(), Augmented(n_batches=3)
    start = model.get_weights()
    two = TrainConfig(stages=(Stage("head", 1, "head"), Stage("all", 1)), **QUIET)
    one = TrainConfig(stages=(Stage("all", 2),), **QUIET)
    runs = C.train_runs(model, data, {"staged": C.Run(start, two), "all": C.Run(start, one)},
                        run_root=tmp_path, print_fn=lambda s: None)
    # the single-stage run has the settings of the staged run's last stage: reused
    assert runs["staged"].traced == 2 and runs["all"].traced == 0
    assert runs["staged"].steps == runs["all"].steps == 6


def test_overfitting_summary_by_hand():
    s = C.overfitting({"loss": [3.0, 2.0, 1.0, 0.5], "val_loss": [2.5, 2.0, 2.2, 2.6]})
    assert s["best_epoch"] == 2 and s["val_best"] == 2.0
    assert s["val_rise"] == pytest.approx(0.6) and s["gap"] == pytest.approx(2.1)
    assert (s["train_first"], s["train_last"], s["val_first"], s["val_last"]) == (3.0, 0.5, 2.5, 2.6)
    with pytest.raises(ValueError, match="val_loss"):
        C.overfitting({"loss": [1.0], "val_loss": []})


def test_overfitting_smoothed_by_hand():
    # a validation curve with one lucky epoch (1.0 at epoch 3) between 2.0s
    history = {"loss": [4.0, 3.0, 2.0, 1.0, 0.0], "val_loss": [2.0, 2.0, 1.0, 2.0, 2.6]}
    raw = C.overfitting(history)
    assert raw["best_epoch"] == 3 and raw["val_best"] == 1.0
    s = C.overfitting(history, smooth=2)
    # windows of two: train 3.5 2.5 1.5 0.5; validation 2.0 1.5 1.5 2.3
    assert s["best_epoch"] == 3 and s["val_best"] == pytest.approx(1.5)   # epochs 2-3
    assert (s["train_first"], s["train_last"]) == (3.5, 0.5)
    assert s["val_last"] == pytest.approx(2.3) and s["val_rise"] == pytest.approx(0.8)
    assert s["gap"] == pytest.approx(1.8)
    with pytest.raises(ValueError, match="smooth=6"):
        C.overfitting(history, smooth=6)


def test_plan_quick_and_full():
    base = TrainConfig(optimizer="sgd", learning_rate=0.005, warmup_steps=50, seed=3)
    quick = C.Plan.for_mode("quick")
    cfg = quick.voc_config(base, n_batches=9)
    assert [(s.name, s.epochs) for s in cfg.stages] == [("all", 3)]
    assert (cfg.steps_per_epoch, cfg.optimizer, cfg.learning_rate, cfg.warmup_steps, cfg.seed) \
        == (2, "adamw", 1e-3, 0, 3)
    fine, scratch = quick.finetune_config(base, 11), quick.scratch_config(base, 11)
    assert [(s.name, s.epochs) for s in fine.stages] == [("heads", 1), ("all", 2)]
    assert fine.stages[0].trainable == C._heads() and fine.stages[1].trainable == ".*"
    assert [(s.name, s.epochs) for s in scratch.stages] == [("all", 3)]
    assert fine.total_epochs() == scratch.total_epochs()
    # the steps are capped at the batches the data hold
    assert quick.voc_config(base, n_batches=1).steps_per_epoch == 1
    full = C.Plan.for_mode("full")
    epochs = config.FULL.epochs
    cfg = full.voc_config(base, n_batches=183)
    assert [(s.name, s.epochs) for s in cfg.stages] == [("all", epochs)]
    assert (cfg.steps_per_epoch, cfg.optimizer, cfg.learning_rate, cfg.warmup_steps) \
        == (183, "sgd", 0.005, 50)                              # the recipe's own optimizer
    pre = C.Plan.for_mode("full", pretrained_backbone=True).voc_config(base, 183)
    assert [(s.name, s.epochs) for s in pre.stages] == [("heads", epochs // 4),
                                                        ("all", epochs - epochs // 4)]
    fine = full.finetune_config(base, 20)
    assert [(s.name, s.epochs) for s in fine.stages] == [("heads", 10), ("all", 30)]


def test_plot_losses_and_per_class_bars():
    runs = {"a": C.RunResult("a", {"loss": [3.0, 2.0], "val_loss": [2.5, 2.4]}, steps=8),
            "b": C.RunResult("b", {"loss": [3.5, 1.0]}, steps=8)}
    np.testing.assert_array_equal(viz_runs.steps_axis(runs["a"]), [4, 8])
    fig, ax = plt.subplots()
    drawn = viz_runs.plot_losses(runs, ax=ax)
    assert drawn == {"a": {"loss": [3.0, 2.0], "val_loss": [2.5, 2.4]}, "b": {"loss": [3.5, 1.0]}}
    assert len(ax.lines) == 3
    np.testing.assert_array_equal(ax.lines[1].get_xdata(), [4, 8])
    fig, ax = plt.subplots()
    bars = viz_runs.plot_per_class_ap({"a": {1: 0.5, 2: -1.0}, "b": {1: 0.25}},
                                      ["bg", "cat", "dog", "cow"], ax=ax)
    np.testing.assert_array_equal(bars["a"], [0.5, np.nan, np.nan])
    np.testing.assert_array_equal(bars["b"], [0.25, np.nan, np.nan])
    assert len(ax.patches) == 6 and sorted(p.get_height() for p in ax.patches)[-2:] == [0.25, 0.5]
    assert [t.get_text() for t in ax.texts] == ["–", "–"]      # dog and cow: no ground truth
    plt.close("all")


def test_draw_detections_keeps_the_best():
    det = {"scores": np.array([0.2, 0.9, 0.5]), "class_ids": np.array([1, 2, 1]),
           "boxes": np.array([[0, 0, 2, 2], [1, 1, 4, 4], [2, 2, 5, 5]], float),
           "masks": np.zeros((6, 6, 3), bool)}
    fig, ax = plt.subplots()
    np.testing.assert_array_equal(viz_runs.draw_detections(ax, np.zeros((6, 6, 3), np.uint8), det,
                                                           ["bg", "a", "b"], top=2), [1, 2])
    assert sorted(t.get_text() for t in ax.texts) == ["a 0.50", "b 0.90"]
    np.testing.assert_array_equal(viz_runs.draw_detections(ax, np.zeros((6, 6, 3), np.uint8), det,
                                                           ["bg", "a", "b"], min_score=0.6), [1])
    plt.close("all")
