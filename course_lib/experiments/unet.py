"""Notebook 10's U-Net runs, trained by the course's one training engine.

Taught in notebooks/10_unet.

:func:`train_unet` is what a training cell would do, in one call: seed with the recipe's seed,
cut the training tiles, fit the normalisation, build the U-Net and train it with
:func:`course_lib.training.train` (the engine the command line uses too), validating on fixed
tiles after every epoch. Notebook 10 trains it twice, with and without the border weight
map, and compares the runs.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from course_lib import config
from course_lib.models import unet_training as ut


class TrainedUNet:
    """What :func:`train_unet` returns: the model, its recipe and the training history.

    Attributes:
        model: the trained Keras model (input ``(None, None, 3)``, output ``(…, 1)``).
        recipe: the :class:`~course_lib.models.unet_training.UNetRecipe` it was trained with.
        history: metric name -> per-epoch values (``loss``, ``val_bce``, ``val_gap_bce``).
        dataset: the training ``UNetDataset`` (its provider caches the decoded images).

    Taught in notebooks/10_unet.
    """

    def __init__(self, model, recipe, history, dataset):
        self.model, self.recipe, self.history, self.dataset = model, recipe, history, dataset

    def probability(self, image: np.ndarray) -> np.ndarray:
        """Overlap-tiled ``H×W`` nucleus probability of one image
        (:func:`~course_lib.models.unet_training.predict_probability`)."""
        return ut.predict_probability(self.model, image, self.recipe)


def train_unet(train_dirs: Sequence[str | Path], recipe: ut.UNetRecipe, *,
               val_dirs: Sequence[str | Path] | None = None, callbacks: Sequence = (),
               dataset=None, before_fit: Callable | None = None,
               run_dir: str | Path | None = None) -> TrainedUNet:
    """Seed, build and normalise the recipe's U-Net, then train it with the engine.

    The optimiser is the recipe's Adam (no weight decay, no clipping, a constant rate), so the
    engine trains exactly what the recipe describes. ``run_dir``: where the engine keeps its
    checkpoints and CSV log (default: a temporary folder, deleted afterwards: the model and
    its history are returned).

    Args:
        train_dirs: DSB-layout sample folders to cut training tiles from.
        recipe: the run's settings (its ``seed`` seeds weights and tiles).
        val_dirs: folders for :class:`~course_lib.models.unet_training.TileValidation`
            (``val_bce``, ``val_gap_bce`` per epoch); ``None`` for none.
        callbacks: more Keras callbacks, run after the validation callback.
        dataset: a training dataset to reuse (e.g. to share its image cache between runs);
            by default :func:`~course_lib.models.unet_training.training_dataset`. Its tile
            seed is set to the recipe's.
        before_fit: ``f(model)`` called on the built, untrained net before training (e.g. to
            score it).

    Taught in notebooks/10_unet.
    """
    from course_lib.training import TrainConfig, train

    config.set_seed(recipe.seed)
    if dataset is None:
        dataset = ut.training_dataset(train_dirs, recipe)
    else:
        dataset.weight_fn = ut.recipe_weight_fn(recipe)
        dataset.seed = recipe.seed
        dataset.set_epoch(0)          # the same tiles, epoch by epoch, as a fresh dataset
    norm = ut.adapted_normalization(dataset, recipe.norm_batches)
    model = ut.build_recipe_unet(recipe, norm)
    if before_fit is not None:
        before_fit(model)
    cbs = []
    if val_dirs:
        cbs.append(ut.TileValidation(ut.validation_tiles(val_dirs, recipe)))
    cbs.extend(callbacks)
    steps = min(recipe.steps_per_epoch or len(dataset), len(dataset))
    settings = TrainConfig(epochs=recipe.epochs, steps_per_epoch=steps, optimizer="adam",
                           learning_rate=recipe.learning_rate, weight_decay=0.0,
                           clipnorm=None, lr_drops=(), checkpoint_every=None,
                           tensorboard=False, verbose=0, seed=recipe.seed)
    with tempfile.TemporaryDirectory(prefix="unet-run-") as scratch:
        result = train(model, dataset, Path(run_dir or scratch), settings,
                       loss=recipe.loss, callbacks=cbs, resume=False,
                       print_fn=lambda line: None)
    return TrainedUNet(model, recipe, dict(result.history), dataset)
