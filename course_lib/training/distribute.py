"""Training on several accelerators with the engines Keras already has (no home-made loop).

Taught in notebooks/11_train_nuclei.

- TensorFlow backend: ``tf.distribute.MirroredStrategy`` copies the model onto every device,
  splits each global batch between them, and sums the gradients (all-reduce) before one
  identical update everywhere. The model and its optimizer must be *created* inside
  ``strategy.scope()``, which is why :func:`course_lib.training.train` accepts a function that
  builds the model.
- JAX backend: ``keras.distribution.DataParallel`` shards each batch along a ``batch`` mesh
  axis and replicates the variables; XLA inserts the all-reduce.

Either way a global batch of ``B`` images gives the same loss and the same update as on one
device (up to float rounding in the order of the sums), so learning rates need no change.
Several machines: under JAX call ``keras.distribution.initialize()`` on every host first (it
reads the coordinator address, process count and id); under TensorFlow use
``tf.distribute.MultiWorkerMirroredStrategy`` with ``TF_CONFIG`` set on each host.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import keras


@dataclass
class DataParallel:
    """A data-parallel setting: ``scope()`` to build and train the model in, and its devices.

    Attributes:
        devices: device names used (one replica each).
        engine: ``"MirroredStrategy"``, ``"keras.distribution.DataParallel"`` or ``"single"``.
        handle: the strategy or distribution object (``None`` for one device).

    Taught in notebooks/11_train_nuclei.
    """

    devices: list
    engine: str
    handle: object = None

    @property
    def replicas(self) -> int:
        return max(1, len(self.devices))

    def scope(self):
        """Context manager to create the model and call ``compile``/``fit`` in."""
        if self.handle is None:
            return contextlib.nullcontext()
        return self.handle.scope()


def accelerators() -> list[str]:
    """Accelerator device names the active backend sees (empty on a CPU-only machine).

    Taught in notebooks/11_train_nuclei.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_logical_devices("GPU")]
    if backend == "jax":
        return [d for d in keras.distribution.list_devices() if not d.startswith("cpu")]
    return []


def data_parallel(devices: list[str] | None = None) -> DataParallel:
    """Data parallelism over ``devices`` (default: every accelerator; one device: no-op).

    Args:
        devices: e.g. ``["/gpu:0", "/gpu:1"]`` under TensorFlow or ``["cuda:0", "cuda:1"]``
            / ``["cpu:0", "cpu:1"]`` under JAX (``keras.distribution.list_devices()``).

    Returns:
        A :class:`DataParallel`; ``with dp.scope(): model = build(); train...``.

    Taught in notebooks/11_train_nuclei.
    """
    devices = list(devices) if devices is not None else accelerators()
    if len(devices) < 2:
        return DataParallel(devices, "single")
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return DataParallel(devices, "MirroredStrategy", tf.distribute.MirroredStrategy(devices))
    if backend == "jax":
        return DataParallel(devices, "keras.distribution.DataParallel",
                            keras.distribution.DataParallel(devices=devices))
    raise NotImplementedError(f"data parallelism is wired for TensorFlow and JAX, not {backend}; "
                              "train on one device or switch KERAS_BACKEND.")
