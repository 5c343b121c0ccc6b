"""The batches of one training epoch, in a fixed order that a resumed run can continue.

Taught in notebooks/11_train_nuclei.

The course's datasets (:mod:`course_lib.data.pipeline`) draw every random choice from
``(seed, epoch, sample index)``, so batch ``b`` of epoch ``e`` is the same array whenever it
is made. :class:`EpochView` fixes which dataset epoch Keras reads, and can start an epoch at
batch ``b``: a run stopped after batch ``b - 1`` then sees exactly the batches it would have
seen, in the same order.
"""

from __future__ import annotations

import keras


class EpochView(keras.utils.PyDataset):
    """Batches ``start .. steps_per_epoch - 1`` of ``dataset`` at epoch ``epoch``, then following
    epochs from batch 0.

    Args:
        dataset: a ``keras.utils.PyDataset``; when it has ``set_epoch(e)`` (the course's
            datasets do) the view sets the dataset's epoch, so the order is reproducible.
            Otherwise its ``on_epoch_end`` is called between epochs.
        steps_per_epoch: batches per epoch (at most ``len(dataset)``).
        epoch: the (0-based) epoch the first batch belongs to.
        start: first batch of that epoch (a resumed run); a view with ``start > 0`` covers
            that one partial epoch only, because Keras needs a fixed number of batches per
            epoch.

    The view keeps the dataset's ``workers`` and ``max_queue_size``. Its epoch is set by the
    training loop (:meth:`set_epoch`, from a callback's ``on_epoch_begin``, which Keras calls
    before it starts reading the epoch's batches), not counted in ``on_epoch_end``: Keras
    calls that hook once more when ``fit`` starts, and it must not shift the data order. Pass
    ``shuffle=False`` to ``fit``: the order is the dataset's (seeded) business.

    Several views over one dataset share its epoch, and making a view sets it: make each view
    just before the ``fit`` that reads it, not all of them up front.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, dataset, steps_per_epoch: int, epoch: int, start: int = 0):
        super().__init__(workers=getattr(dataset, "workers", 1),
                         use_multiprocessing=getattr(dataset, "use_multiprocessing", False),
                         max_queue_size=getattr(dataset, "max_queue_size", 10))
        n = len(dataset)
        if not 1 <= steps_per_epoch <= n:
            raise ValueError(f"steps_per_epoch={steps_per_epoch} must be between 1 and the "
                             f"dataset's {n} batches; lower it or add samples.")
        if not 0 <= start < steps_per_epoch:
            raise ValueError(f"start={start} must be in [0, {steps_per_epoch})")
        self.dataset = dataset
        self.steps_per_epoch = int(steps_per_epoch)
        self.epoch = int(epoch)
        self.start = int(start)
        self._sync()

    def _sync(self) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        return self.dataset[self.start + index]

    def set_epoch(self, epoch: int) -> None:
        """Read epoch ``epoch`` from now on (a view with ``start > 0`` stays in its epoch).

        The dataset's epoch is set again even when the view's does not change: the dataset
        is shared (another view over it, a notebook cell drawing a batch may have moved it),
        and this is the last moment before Keras reads the epoch's batches.
        """
        epoch = int(epoch)
        if self.start and epoch != self.epoch:
            raise ValueError("a view that starts mid-epoch covers that one epoch only")
        if hasattr(self.dataset, "set_epoch"):
            self.epoch = epoch
            self._sync()
        else:  # a dataset without epochs: let it reshuffle its own way
            while self.epoch < epoch:
                self.epoch += 1
                if hasattr(self.dataset, "on_epoch_end"):
                    self.dataset.on_epoch_end()

    def on_epoch_end(self) -> None:
        """Nothing: the epoch is set by :meth:`set_epoch` (see the class docstring)."""
