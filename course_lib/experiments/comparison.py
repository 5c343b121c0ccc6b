"""Train one model several ways and compare the runs (chapter 12).

Taught in notebooks/12_train_voc.

Chapter 12 asks two "what if" questions of one architecture: does the article's augmentation
keep Mask R-CNN from overfitting a small Pascal VOC subset, and does a start from weights of
another task beat a start from scratch on nuclei? Each answer is two runs of *one model
object* from chosen starting weights (:class:`Run`). :func:`train_runs` resets the weights
before each run, so the runs differ only in what the :class:`Run` says, and
:func:`course_lib.training.train` reuses the compiled training step between runs of equal
settings (no second graph trace). :func:`evaluate_runs` loads each run's final weights in
turn and measures it. :class:`Plan` holds the mode's epochs and steps, so the notebook runs
unchanged in quick and full mode.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib import config as course_config
from course_lib.training.engine import Stage, TrainConfig


@dataclass(frozen=True)
class Plan:
    """Epochs and steps of chapter 12's experiments in one mode.

    Attributes:
        mode: ``"quick"`` or ``"full"``.
        voc_epochs: epochs of each VOC run (with and without augmentation).
        voc_steps: batches per VOC epoch (``None``: the whole training split).
        voc_heads_epochs: of those, epochs training only the heads first (0: every layer
            from the start, the only sensible choice over a randomly initialised backbone).
        heads_epochs, all_epochs: the fine-tuning run on nuclei: heads only, then every layer.
            The run from scratch trains every layer for ``heads_epochs + all_epochs``.
        nuclei_steps: batches per nuclei epoch (``None``: the whole training split).
        optimizer, learning_rate, warmup_steps: quick mode's few steps from random weights
            need AdamW at 1e-3 to move at all; full mode keeps the recipe's SGD (``None``).

    Taught in notebooks/12_train_voc.
    """

    mode: str
    voc_epochs: int
    voc_steps: int | None
    voc_heads_epochs: int
    heads_epochs: int
    all_epochs: int
    nuclei_steps: int | None
    optimizer: str | None = None
    learning_rate: float | None = None
    warmup_steps: int | None = None

    @classmethod
    def for_mode(cls, mode: str | None = None, pretrained_backbone: bool = False) -> Plan:
        """Quick: a few steps per run (enough to run every cell, not to learn much); full:
        the mode's epochs (:data:`course_lib.config.FULL`), a quarter of them heads-only.

        ``pretrained_backbone``: the VOC model starts from ImageNet weights, so its runs
        train the heads first as well: matterport's recipe for pretrained weights (heads,
        then every layer). The VOC article itself trained from random weights on purpose,
        and the nuclei report tuned the backbone first (50 epochs), then the heads (300).
        """
        mode = mode or course_config.mode()
        if mode == "quick":
            return cls("quick", voc_epochs=3, voc_steps=2, voc_heads_epochs=0, heads_epochs=1,
                       all_epochs=2, nuclei_steps=2, optimizer="adamw", learning_rate=1e-3,
                       warmup_steps=0)
        epochs = course_config.FULL.epochs
        heads = max(1, epochs // 4)
        return cls("full", voc_epochs=epochs, voc_steps=None,
                   voc_heads_epochs=heads if pretrained_backbone else 0, heads_epochs=heads,
                   all_epochs=epochs - heads, nuclei_steps=None)

    def _config(self, base: TrainConfig, stages, steps: int | None, n_batches: int
                ) -> TrainConfig:
        changes = dict(stages=tuple(stages), steps_per_epoch=min(steps or n_batches, n_batches),
                       tensorboard=False, verbose=0)
        for name in ("optimizer", "learning_rate", "warmup_steps"):
            if getattr(self, name) is not None:
                changes[name] = getattr(self, name)
        return dataclasses.replace(base, **changes)

    def voc_config(self, base: TrainConfig, n_batches: int) -> TrainConfig:
        """The VOC runs' config: ``base`` (the recipe's) with this plan's stages and steps."""
        stages = [Stage("all", self.voc_epochs - self.voc_heads_epochs)]
        if self.voc_heads_epochs:
            stages.insert(0, Stage("heads", self.voc_heads_epochs, _heads()))
        return self._config(base, stages, self.voc_steps, n_batches)

    def finetune_config(self, base: TrainConfig, n_batches: int) -> TrainConfig:
        """Fine-tuning on nuclei: the heads for ``heads_epochs``, then every layer."""
        stages = [Stage("heads", self.heads_epochs, _heads()), Stage("all", self.all_epochs)]
        return self._config(base, stages, self.nuclei_steps, n_batches)

    def scratch_config(self, base: TrainConfig, n_batches: int) -> TrainConfig:
        """From scratch on nuclei: every layer, as many epochs (so steps) as fine-tuning."""
        stages = [Stage("all", self.heads_epochs + self.all_epochs)]
        return self._config(base, stages, self.nuclei_steps, n_batches)


def _heads() -> str:
    from course_lib.training.recipes import MASKRCNN_HEADS

    return MASKRCNN_HEADS


@dataclass
class Run:
    """One way to train the shared model.

    Attributes:
        start: the weights to start from (``model.get_weights()`` order).
        config: the :class:`TrainConfig` of the run.
        augmenter: set on the training data for this run (``None``: no augmentation).

    Taught in notebooks/12_train_voc.
    """

    start: list
    config: TrainConfig
    augmenter: object = None


@dataclass
class RunResult:
    """What one :class:`Run` produced.

    Attributes:
        name: the run's name.
        history: ``{"loss": [per epoch], "val_loss": [...], ...}`` (Keras' logs).
        final_weights: the run's ``final.weights.h5``.
        run_dir: its run folder (checkpoints, ``logs/train.csv``).
        steps: optimizer steps done.
        seconds: wall time of the training.
        traced: stages that compiled (traced) a training step; a stage with the settings of
            the model's previous one reuses its compiled step instead (0 for a whole run
            that repeats the previous run's settings).

    Taught in notebooks/12_train_voc.
    """

    name: str
    history: dict = field(default_factory=dict)
    final_weights: Path | None = None
    run_dir: Path | None = None
    steps: int = 0
    seconds: float = 0.0
    traced: int = 0


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")[:60]


def train_runs(model, train_data, runs: Mapping[str, Run], run_root: str | Path | None = None,
               *, val_data=None, print_fn: Callable[[str], None] = print) -> dict[str, RunResult]:
    """Train ``model`` once per :class:`Run`, each from its own starting weights.

    Before each run the model's weights are set to ``run.start`` and ``train_data.augmenter``
    to ``run.augmenter``; :func:`course_lib.training.train` zeroes the optimizer state (or
    compiles afresh) and trains in a new folder under ``run_root`` (default: a new temporary
    folder, so a rerun of the notebook trains again instead of resuming a finished run). After
    the last run the model holds that run's weights and the data its original augmenter.

    Returns:
        ``{name: RunResult}`` in the order of ``runs``.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.training.engine import train

    root = Path(run_root or tempfile.mkdtemp(prefix="course-ch12-"))
    original = getattr(train_data, "augmenter", None)
    results = {}
    try:
        for k, (name, run) in enumerate(runs.items()):
            model.set_weights(run.start)
            train_data.augmenter = run.augmenter
            lines: list[str] = []
            started = time.perf_counter()
            out = train(model, train_data, root / f"{k:02d}-{_slug(name)}", run.config,
                        val_data=val_data, model_name=model.name, resume=False,
                        print_fn=lines.append)
            seconds = time.perf_counter() - started
            stages = sum(line.lstrip().startswith("stage ") for line in lines)
            traced = stages - sum("nothing retraced" in line for line in lines)
            results[name] = RunResult(name, out.history, out.final_weights, out.run_dir,
                                      out.step, seconds, traced)
            print_fn(f"{name}: {out.step} steps, {len(out.history.get('loss', []))} epochs, "
                     f"{seconds:.0f} s; training steps traced: {traced} of {stages} stages")
    finally:
        train_data.augmenter = original
    return results


def evaluate_runs(model, results: Mapping[str, RunResult], evaluate: Callable[[], object]
                  ) -> dict[str, object]:
    """``{name: evaluate()}`` with ``model`` holding each run's final weights in turn.

    ``evaluate`` takes no argument: it measures whatever ``model`` (and any model sharing its
    layers, such as Mask R-CNN's inference twin) holds when called. Afterwards the model
    holds the last run's weights.

    Taught in notebooks/12_train_voc.
    """
    out = {}
    for name, result in results.items():
        model.load_weights(result.final_weights)
        out[name] = evaluate()
    return out


def overfitting(history: Mapping[str, list], smooth: int = 1) -> dict[str, float]:
    """What a run's loss curves say about overfitting (losses per epoch, from Keras' logs).

    Args:
        history: ``{"loss": [per epoch], "val_loss": [per epoch], ...}``.
        smooth: average both curves over this many consecutive epochs first (a moving mean,
            over whole windows only), so that one noisy epoch of a small validation set
            decides neither the best epoch nor the rise; 1 reads the curves as logged.

    Returns:
        ``{"train_first", "train_last", "val_first", "val_last", "val_best",
        "best_epoch" (1-based; with ``smooth`` > 1, the last epoch of the best window),
        "gap" (val - train at the last epoch), "val_rise" (last val minus the best val: > 0
        when validation got worse after its best epoch while training went on)}``.

    Taught in notebooks/12_train_voc.
    """
    train = np.asarray(history["loss"], float)
    val = np.asarray(history["val_loss"], float)
    if len(train) == 0 or len(val) == 0:
        raise ValueError("overfitting: the history needs 'loss' and 'val_loss' per epoch "
                         "(train with validation data)")
    if not 1 <= smooth <= min(len(train), len(val)):
        raise ValueError(f"overfitting: smooth={smooth} must be between 1 and the number of "
                         f"epochs ({min(len(train), len(val))})")
    window = np.ones(smooth) / smooth
    train, val = (np.convolve(c, window, mode="valid") for c in (train, val))
    best = int(np.argmin(val))
    return {"train_first": float(train[0]), "train_last": float(train[-1]),
            "val_first": float(val[0]), "val_last": float(val[-1]),
            "val_best": float(val[best]), "best_epoch": best + smooth,
            "gap": float(val[-1] - train[-1]), "val_rise": float(val[-1] - val[best])}


def instance_labels(inference_model, min_score: float = 0.5) -> Callable[[np.ndarray],
                                                                         np.ndarray]:
    """``image -> H×W int32 instance labels`` of a Mask R-CNN's detections scoring at least
    ``min_score`` (a higher score wins a contested pixel), for the DSB score.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.models import maskrcnn
    from course_lib.ops.masks import detections_to_labels

    def predict(image):
        return detections_to_labels(
            maskrcnn.detect(inference_model, [image], min_score=min_score)[0], min_score)

    return predict
