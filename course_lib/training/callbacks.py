"""Keras callbacks of the training engine: checkpoints, the non-finite-loss guard, lr logging.

Taught in notebooks/11_train_nuclei.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from course_lib.training.checkpoints import CheckpointManager


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; the message names the step and the term.

    Attributes:
        step: the optimizer step (1-based count) whose loss was not finite.
        terms: ``{metric name: value}`` of the non-finite loss terms.
        checkpoint: manifest path of the last good checkpoint (``None`` if none was written).

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, message: str, step: int, terms: dict, checkpoint=None):
        super().__init__(message)
        self.step, self.terms, self.checkpoint = step, terms, checkpoint


def _scalar(value) -> float | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return float(arr) if arr.ndim == 0 else None


class TrainingPosition(keras.callbacks.Callback):
    """Tracks where training is: epoch, next batch of that epoch, and optimizer steps.

    Args:
        steps_per_epoch: batches per epoch.
        start: first batch of the (single) epoch of a resumed partial-epoch ``fit`` call.
        view: the :class:`~course_lib.training.data.EpochView` being trained on; told each
            epoch in ``on_epoch_begin``.

    Keras numbers batches from 0 in each ``fit`` call; a resumed partial epoch (a ``fit`` call
    of its own, one epoch long) starts at batch ``start``, so the true batch is
    ``start + batch``.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, steps_per_epoch: int, start: int = 0, view=None):
        super().__init__()
        self.view = view  # an EpochView told the epoch before Keras reads its batches
        self.steps_per_epoch = int(steps_per_epoch)
        self.start = int(start)
        self.epoch = 0
        self.next_batch = self.start

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = int(epoch)
        self.next_batch = self.start
        if self.view is not None:
            self.view.set_epoch(epoch)

    def on_train_batch_end(self, batch, logs=None):
        self.next_batch = self.start + int(batch) + 1

    @property
    def step(self) -> int:
        return int(np.asarray(self.model.optimizer.iterations))


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Stops training at the first batch whose loss (or any ``*loss*`` metric) is NaN or ±inf.

    Raises :class:`NonFiniteLossError` naming the optimizer step, the epoch and batch, every
    non-finite loss term, and the last good checkpoint (the weights in memory are already
    spoiled by that step; the checkpoint on disk is not, because this guard runs before the
    checkpoint callback).

    Args:
        position: the run's :class:`TrainingPosition`.
        checkpoints: the run's :class:`ModelCheckpointer` (for the last good file), or None.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, position: TrainingPosition, checkpoints=None):
        super().__init__()
        self.position = position
        self.checkpoints = checkpoints

    def on_train_batch_end(self, batch, logs=None):
        bad = {}
        for name, value in (logs or {}).items():
            if "loss" not in name:
                continue
            v = _scalar(value)
            if v is not None and not math.isfinite(v):
                bad[name] = v
        if not bad:
            return
        # name the specific terms when the model reports them, the total only otherwise
        terms = {k: v for k, v in bad.items() if k != "loss"} or bad
        step = self.position.step
        last = self.checkpoints.last_saved if self.checkpoints is not None else None
        where = f"the last good checkpoint is {last}" if last else "no checkpoint was written yet"
        listed = ", ".join(f"{k}={v}" for k, v in terms.items())
        message = (f"non-finite loss at optimizer step {step} (epoch {self.position.epoch + 1}, "
                   f"batch {self.position.start + int(batch) + 1}): {listed}. Training stopped; "
                   f"{where}. Lower the learning rate or check that batch's data.")
        raise NonFiniteLossError(message, step, terms, last)


class ModelCheckpointer(keras.callbacks.Callback):
    """Writes a checkpoint every ``every_steps`` optimizer steps and at the end of every epoch.

    The state stored is ``epoch``/``batch`` (where to continue: the next batch to run),
    ``step`` (optimizer steps done), ``stage`` and ``lr``. At an epoch's end the state points
    to batch 0 of the next epoch.

    Args:
        manager: the run's :class:`~course_lib.training.checkpoints.CheckpointManager`.
        position: the run's :class:`TrainingPosition`.
        stage: index of the current training stage.
        every_steps: steps between checkpoints inside an epoch (``None``/0: epoch ends only).

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, manager: CheckpointManager, position: TrainingPosition, stage: int = 0,
                 every_steps: int | None = None, *, last_saved=None):
        super().__init__()
        self.manager = manager
        self.position = position
        self.stage = int(stage)
        self.every_steps = int(every_steps or 0)
        self.last_saved = last_saved

    def _lr(self) -> float:
        return float(np.asarray(self.model.optimizer.learning_rate))

    def save(self, epoch: int, batch: int, **extra) -> None:
        state = {"epoch": int(epoch), "batch": int(batch), "step": self.position.step,
                 "stage": self.stage, "lr": self._lr(), **extra}
        self.last_saved = self.manager.save(self.model, self.model.optimizer, state)

    def on_train_batch_end(self, batch, logs=None):
        pos = self.position
        if (self.every_steps and pos.step % self.every_steps == 0
                and pos.next_batch < pos.steps_per_epoch):
            self.save(pos.epoch, pos.next_batch)

    def on_epoch_end(self, epoch, logs=None):
        self.save(epoch + 1, 0)


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the optimizer's current learning rate to the epoch logs as ``lr`` (CSV, TensorBoard).

    Taught in notebooks/11_train_nuclei.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["lr"] = float(np.asarray(self.model.optimizer.learning_rate))
