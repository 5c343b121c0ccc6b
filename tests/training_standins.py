"""Tiny stand-ins for the training-engine tests: a deterministic dataset and models.

``AddsItsLoss`` behaves like the Mask R-CNN training model of the contract: it takes a dict of
inputs, computes its loss terms inside, and reports each term as a metric, so ``compile``
without a loss and ``fit`` without targets work.
"""

from __future__ import annotations

import keras
import numpy as np

TRUE_W = np.array([[1.5], [-2.0], [0.5], [1.0]], np.float32)


class RegressionBatches(keras.utils.PyDataset):
    """Batches of ``y = x · TRUE_W + 0.3`` drawn from ``(seed, epoch, index)`` only.

    ``nan_at=(epoch, index)`` puts a NaN target into that batch (to test the loss guard).
    """

    def __init__(self, n_batches=6, batch_size=8, seed=0, as_dict=True, nan_at=None,
                 fixed=False, **kw):
        super().__init__(**kw)
        self.fixed = fixed  # the same batches every epoch
        self.n_batches, self.batch_size, self.seed = n_batches, batch_size, seed
        self.as_dict, self.nan_at = as_dict, nan_at
        self.epoch = 0
        self.calls: list[tuple[int, int]] = []

    def __len__(self):
        return self.n_batches

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def on_epoch_end(self):
        self.epoch += 1

    def _at(self, epoch, index):
        """Batch ``index`` of ``epoch`` without changing the dataset's own epoch."""
        saved, self.epoch = self.epoch, epoch
        try:
            return self[index]
        finally:
            self.epoch = saved

    def __getitem__(self, index):
        self.calls.append((self.epoch, int(index)))
        rng = np.random.default_rng([self.seed, 0 if self.fixed else self.epoch, int(index)])
        x = rng.normal(size=(self.batch_size, 4)).astype(np.float32)
        y = (x @ TRUE_W + 0.3).astype(np.float32)
        if self.nan_at == (self.epoch, int(index)):
            y[0, 0] = np.nan
        return {"x": x, "y": y} if self.as_dict else (x, y)


@keras.saving.register_keras_serializable(package="course_lib_tests")
class AddsItsLoss(keras.Model):
    """``pred = Dense(1)(Dense(8)(x))``; losses ``main_loss`` (MSE to ``y``) and ``aux_loss``
    (1e-3 · squared kernel norm) computed inside and reported as metrics."""

    def __init__(self, batch_norm=True, **kwargs):
        super().__init__(**kwargs)
        self.hidden = keras.layers.Dense(8, activation="tanh", name="body")
        # batch statistics depend on the per-device batch: off for the distributed tests
        self.norm = keras.layers.BatchNormalization(name="body_bn") if batch_norm else None
        self.head = keras.layers.Dense(1, name="head")
        self.trackers = [keras.metrics.Mean(name="main_loss"), keras.metrics.Mean(name="aux_loss")]

    def call(self, inputs, training=False):
        h = self.hidden(inputs["x"])
        if self.norm is not None:
            h = self.norm(h, training=training)
        pred = self.head(h)
        main = keras.ops.mean(keras.ops.square(pred - inputs["y"]))
        aux = 1e-3 * keras.ops.sum(keras.ops.square(self.head.kernel))
        return {"pred": pred, "main_loss": main, "aux_loss": aux}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        self.trackers[0].update_state(y_pred["main_loss"])
        self.trackers[1].update_state(y_pred["aux_loss"])
        return y_pred["main_loss"] + y_pred["aux_loss"]

    @property
    def metrics(self):
        return [*super().metrics, *self.trackers]


def tiny_regressor() -> keras.Model:
    """A functional ``x -> y`` model (for ``loss="mse"``)."""
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="tanh", name="body")(x)
    return keras.Model(x, keras.layers.Dense(1, name="head")(h), name="tiny_regressor")
