"""Training and predicting with the same-padding U-Net: the plumbing around ``fit``.

Taught in notebooks/10_unet.

Notebook 10 trains a small same-padding U-Net on nuclei tiles and then predicts whole images.
The pieces it needs besides the model itself live here, so the notebook shows the ideas and
the training engine (``course_lib.training``) can reuse them:

- :class:`UNetRecipe`: every knob of one training run in one frozen record (tile size, net
  size, optimiser, weight map, seed); :func:`recipe_for_mode` gives the quick/full defaults.
- :class:`CachedSamples`: a sample provider that keeps decoded images in memory, because
  every epoch reads the same few images again.
- :func:`adapted_normalization`: one fixed affine map of the pixel values, fitted on training
  tiles (the same for every tile, which overlap-tiling needs).
- :func:`build_recipe_unet`: the model (the engine compiles it, with Keras'
  ``jit_compile="auto"``: XLA on for JAX and on GPUs, off for TensorFlow on a CPU, where
  compiling costs more than a few dozen steps gain).
- training itself is the engine's (:func:`course_lib.experiments.unet.train_unet` for
  notebook 10, :func:`course_lib.training.recipes.unet_nuclei` for the command line).
- :class:`TileValidation`: per-epoch validation on fixed tiles: plain cross-entropy on all
  pixels and on the gap pixels between touching nuclei (where the weight map acts).
- :func:`tile_predictor`, :func:`predict_probability`: overlap-tile prediction of any image.
- :func:`same_padding_amounts`, :func:`whole_image_probability`: the same net on a whole
  (mirrored) image at once, as the reference that tiling should reproduce.
- :func:`score_unet`: the Data Science Bowl score of a model on whole validation images.

Why the quick recipe weights nucleus pixels 3, starts its classifier at a 30 % foreground
share and leaves batch normalisation out: the seeds, scores and failed variants that led
there are recorded in ``bench/README.md`` ("U-Net quick recipe"), not here.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from course_lib import config
from course_lib.models import unet
from course_lib.models.overlap_tile import overlap_tile_predict

# --------------------------------------------------------------------------------------
# The recipe
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class UNetRecipe:
    """Everything one U-Net training run depends on.

    Attributes:
        tile_size: side (px) of the square training tiles and of the prediction tiles.
        base_filters: filters at the first level (doubling per level).
        depth: number of poolings; tiles must be divisible by ``2**depth``.
        batch_norm: batch normalisation after every convolution.
        batch_size: tiles per training step.
        epochs: training epochs.
        steps_per_epoch: batches per epoch (``None``: the whole dataset).
        learning_rate: Adam's learning rate.
        w0: the weight map's border weight (0 = no border term).
        sigma: the weight map's gap width (px).
        margin: context pixels dropped on each side of a tile at prediction time.
        seed: seeds Keras (weights), NumPy and the tile sampler.
        norm_batches: training batches whose pixels fit the input normalisation.
        prior_foreground: foreground share the classifier's bias starts at (``None``: 0.5).
        bn_momentum: batch-norm momentum (0.9: the moving statistics follow a short run).
        foreground_weight: loss weight of nucleus pixels (``w_c`` of the foreground; the
            background's is 1). 1 = no class balancing.
        target: ``"foreground"`` (one sigmoid: nucleus or not, touching nuclei kept apart by
            the weight map and a distance watershed) or ``"three_class"`` (softmax over
            background / interior / border: touching nuclei kept apart by a predicted border,
            :func:`course_lib.ops.watershed.instances_from_three_class`).
        border_width: width (px) of the border class (``"three_class"`` only).
        border_weight: loss weight of border pixels (``"three_class"``; interior and
            background weigh 1 and 1, plus the foreground weight on the interior).
        augment: random transforms of each training image before the crop: ``""`` (none),
            ``"flips"`` or ``"flips+rot90"`` (the nuclei have no up, down, left or right).
        piece_side: keep every decoded training image in memory and cut the large ones into
            pieces of at most this side (:class:`TiledSamples`; the CPU budget revisits each
            image dozens of times, and decoding its hundreds of mask PNGs, or unpacking a
            large image's mask stack, is the slow part); ``None``: every decoded image cached whole.
        min_size: predicted instances smaller than this many pixels are dropped.
        test_views: views of each image predicted and averaged (:func:`predict_maps`): 1
            (the image), 4 (its mirror images) or 8 (mirrors and transposes: every quarter
            turn and reflection, the views the CPU budget's augmentation trains on).
        interior_threshold, foreground_threshold: ``"three_class"`` only, how the class
            probabilities become instances
            (:func:`~course_lib.ops.watershed.instances_from_three_class`): a seed pixel needs
            ``p_interior`` above the first; a nucleus pixel needs ``p_background`` below the
            second (``None``: background not the most probable class).

    Taught in notebooks/10_unet.
    """

    tile_size: int = 128
    base_filters: int = 8
    depth: int = 3
    batch_norm: bool = False
    batch_size: int = 4
    epochs: int = 20
    steps_per_epoch: int | None = 8
    learning_rate: float = 2e-3
    w0: float = 10.0
    sigma: float = 5.0
    margin: int = 16
    seed: int = 0
    norm_batches: int = 4
    prior_foreground: float | None = 0.3
    bn_momentum: float = 0.9
    foreground_weight: float = 3.0
    target: str = "foreground"
    border_width: int = 2
    border_weight: float = 3.0
    augment: str = ""
    piece_side: int | None = None
    min_size: int = 0
    test_views: int = 1
    interior_threshold: float = 0.5
    foreground_threshold: float | None = None

    def __post_init__(self):
        if self.target not in TARGETS:
            raise ValueError(f"UNetRecipe: target={self.target!r}; use one of {TARGETS}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"UNetRecipe: augment={self.augment!r}; use one of {AUGMENTS}")
        if self.tile_size % 2 ** self.depth:
            raise ValueError(f"UNetRecipe: tile_size={self.tile_size} must be divisible by "
                             f"2**depth = {2 ** self.depth}")
        if self.test_views not in TEST_VIEWS:
            raise ValueError(f"UNetRecipe: test_views={self.test_views}; use one of "
                             f"{TEST_VIEWS}")
        if not 0 <= 2 * self.margin < self.tile_size:
            raise ValueError(f"UNetRecipe: margin={self.margin} leaves no output tile of "
                             f"tile_size={self.tile_size}; use 0 <= margin < tile_size / 2")

    @property
    def tile_out(self) -> int:
        """Side of the output tile kept per prediction tile: ``tile_size - 2·margin``."""
        return self.tile_size - 2 * self.margin

    @property
    def n_outputs(self) -> int:
        """Output channels of the net: 1 (nucleus probability) or 3 (class probabilities)."""
        return 3 if self.target == "three_class" else 1

    @property
    def loss(self) -> str:
        """The Keras loss the recipe trains with (per pixel, weighted by the weight map)."""
        return "categorical_crossentropy" if self.target == "three_class" \
            else "binary_crossentropy"

    def augmenter(self):
        """The recipe's :class:`~course_lib.data.augment.Augmenter` (``None``: no augmentation)."""
        from course_lib.data.augment import Augmenter, FlipLeftRight, FlipUpDown, Rotate90

        if not self.augment:
            return None
        transforms = [FlipLeftRight(), FlipUpDown()]
        if self.augment == "flips+rot90":
            transforms.append(Rotate90())
        return Augmenter(transforms, seed=self.seed)


#: What a U-Net recipe can learn to predict (:attr:`UNetRecipe.target`).
TARGETS = ("foreground", "three_class")
#: The recipe's augmentation choices (:attr:`UNetRecipe.augment`).
AUGMENTS = ("", "flips", "flips+rot90")
#: How many views of an image prediction can average (:attr:`UNetRecipe.test_views`).
TEST_VIEWS = (1, 4, 8)
#: Named training budgets beside the modes (:func:`recipe_for_budget`).
BUDGETS = ("cpu",)


def recipe_for_mode(mode: str | None = None, **overrides) -> UNetRecipe:
    """The notebook's recipe for ``quick`` (CPU, seconds) or ``full`` (GPU) mode.

    Args:
        mode: ``"quick"`` or ``"full"`` (default :func:`course_lib.config.mode`).
        overrides: fields to change, e.g. ``w0=0`` or ``seed=3``.

    Taught in notebooks/10_unet.
    """
    mode = mode or config.mode()
    if mode == "quick":
        base = UNetRecipe()
    elif mode == "full":
        s = config.FULL
        base = UNetRecipe(tile_size=256, base_filters=32, depth=4, batch_size=s.batch_size,
                          epochs=s.epochs, steps_per_epoch=None, learning_rate=1e-3,
                          margin=32, batch_norm=True, bn_momentum=0.99)
    else:
        raise ValueError(f"mode={mode!r}: use 'quick' or 'full'")
    return dataclasses.replace(base, **overrides)


def recipe_for_budget(budget: str, **overrides) -> UNetRecipe:
    """A recipe sized for a named budget rather than a mode.

    ``"cpu"``: U-Net trained on real nuclei within an hour on a 2-core CPU (notebook 11's
    shipped model). What makes an hour enough, each chosen for a measured reason:

    - 256-px crops at the images' own scale (most DSB images are 256×256 or 256×320, so a
      crop is often the whole image; shrinking large images would shrink their nuclei);
    - 16 base filters, depth 4, batch normalisation: about 1 s a step of 8 tiles on 2 cores;
    - three classes (background, interior, a 2-px border) instead of the weight map: the
      border class separates touching nuclei without the per-tile distance transforms of
      the weight map, and seeds the watershed with interiors instead of distance peaks;
    - flips and quarter turns (nuclei have no orientation: 8 views of each image);
    - every decoded image cached, large ones cut into 384-px pieces (:class:`TiledSamples`),
      AdamW with warm-up and one drop of the rate at 3/4;
    - at prediction, the 8 mirrored and turned views averaged, a nucleus pixel where
      ``p_background < 0.3``, seeds where ``p_interior > 0.4``, instances of 40 px or more:
      chosen after training, on 40 training images only, by
      ``tools/tune_unet_postprocessing.py`` (the net draws nuclei a little too large and
      keeps specks; +0.05 DSB on the validation split, which played no part in the choice).

    Taught in notebooks/11_train_nuclei.
    """
    if budget != "cpu":
        raise ValueError(f"budget={budget!r}: use one of {BUDGETS}")
    base = UNetRecipe(tile_size=256, base_filters=16, depth=4, batch_norm=True,
                      bn_momentum=0.99, batch_size=8, epochs=20, steps_per_epoch=None,
                      learning_rate=2e-3, margin=32, prior_foreground=None,
                      foreground_weight=1.0, target="three_class", border_width=2,
                      border_weight=3.0, augment="flips+rot90", piece_side=384, min_size=40,
                      test_views=8, interior_threshold=0.4, foreground_threshold=0.3)
    return dataclasses.replace(base, **overrides)


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


class CachedSamples:
    """A sample provider that keeps the last ``maxsize`` decoded samples in memory.

    Wraps any provider with ``__len__``, ``load(i)`` and (optionally) ``name(i)``, such as
    :class:`course_lib.data.coco.DsbFolderSamples`. A U-Net epoch cuts new random tiles from
    the same images, so decoding each PNG (and its hundreds of mask PNGs) once saves most of
    the data time.

    Masks that do not overlap (every DSB sample) are kept as one ``uint16`` label image and
    split into the ``H×W×N`` stack again on each ``load``: the stack of a 1024×1344 image
    with 300 nuclei takes 400 MB, its label image 2.7 MB, so all 542 training images of the
    DSB split fit in about 1 GB instead of 6.4 GB. ``load`` returns fresh mask arrays; the
    image is the cached array itself, which callers must not write into (the U-Net pipeline
    crops copies).

    Taught in notebooks/10_unet.
    """

    def __init__(self, provider, maxsize: int = 64):
        self.provider = provider
        # one cache: with ignore regions when the provider has them (``load`` then returns
        # the first three items), so a sample is never decoded twice
        with_ignore = hasattr(provider, "load_with_ignore")
        read = provider.load_with_ignore if with_ignore else provider.load
        self._cache = functools.lru_cache(maxsize=maxsize)(
            lambda index: _pack_sample(read(index)))
        if with_ignore:  # the ignore regions and drop counts must survive the cache too
            self.load_with_ignore = lambda index: _unpack_sample(self._cache(index))

    def load(self, index: int):
        """``provider.load(index)``, decoded once and then served from memory."""
        return _unpack_sample(self._cache(index)[:3])

    def packed(self, index: int) -> tuple:
        """The cached form of ``load_with_ignore(index)`` (of ``load(index)`` for a provider
        without it): masks as ``("labels", uint16 H×W, N)`` when they do not overlap (what
        :class:`TiledSamples` cuts from)."""
        return self._cache(index)

    def __len__(self) -> int:
        return len(self.provider)

    def name(self, index: int) -> str:
        """The wrapped provider's name of sample ``index`` (its index when it has none)."""
        name = getattr(self.provider, "name", None)
        return name(index) if callable(name) else str(index)

    def cache_info(self):
        """``functools.lru_cache`` statistics of the samples served: hits, misses, size."""
        return self._cache.cache_info()


class TiledSamples:
    """Large images as several samples of at most ``side × side``, cut from a
    :class:`CachedSamples` without rebuilding the whole image's mask stack.

    A 1024×1344 image with 300 nuclei has a 400 MB stack of masks; every step that touches
    it (the sample check, the augmenter, the tile cut) costs a second of a 2-core CPU, for a
    256-px training window. Cut into 384-px pieces first, only the piece's own nuclei are
    unpacked from the cached label image, and every part of a large image is seen once per
    epoch instead of one random window of it. Images no larger than ``side`` stay whole.

    Every sample is decoded once at construction (to learn its size), which fills the cache.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, cached: CachedSamples, side: int = 384, progress: bool = True):
        from tqdm.auto import tqdm

        from course_lib.data.skips import load_or_skip
        from course_lib.models.tiled_detection import tile_starts

        self.cached, self.side = cached, int(side)
        self.index: list[tuple[int, int, int, int, int]] = []   # sample, top, left, h, w
        self.skipped: list = []
        for i in tqdm(range(len(cached)), desc="decoding training images", unit="image",
                      disable=not progress):
            packed = load_or_skip(lambda i=i: cached.packed(i), cached.name(i), self.skipped)
            if packed is None:
                continue   # counted, logged; the dataset never sees it
            h, w = np.shape(packed[0])[:2]
            # the fewest side-long pieces spread evenly (the windows of tiled detection,
            # without an overlap)
            for top in tile_starts(h, self.side, overlap=0):
                for left in tile_starts(w, self.side, overlap=0):
                    self.index.append((i, top, left, min(h, self.side), min(w, self.side)))
        if hasattr(cached, "load_with_ignore"):
            self.load_with_ignore = self._load_with_ignore

    def __len__(self) -> int:
        return len(self.index)

    def name(self, index: int) -> str:
        i, top, left, _, _ = self.index[index]
        return f"{self.cached.name(i)}@{top},{left}"

    def _cut(self, index: int, packed: tuple) -> tuple:
        i, top, left, h, w = self.index[index]
        image, masks, class_ids, *rest = packed
        window = (slice(top, top + h), slice(left, left + w))
        if isinstance(masks, tuple):   # a label image: unpack only this piece's nuclei
            from course_lib.ops.masks import labels_to_masks

            labels = masks[1][window]
            ids = np.unique(labels)
            ids = ids[ids > 0]
            masks = labels_to_masks(labels, ids=ids)
            class_ids = np.asarray(class_ids)[ids.astype(np.int64) - 1]
        else:
            masks = np.asarray(masks)[window]
            present = masks.reshape(-1, masks.shape[-1]).any(axis=0)
            masks, class_ids = masks[..., present], np.asarray(class_ids)[present]
        rest = [self._cut_regions(r, window, first=(top, left) == (0, 0)) for r in rest]
        return (image[window], masks, class_ids, *rest)

    @staticmethod
    def _cut_regions(regions, window, first: bool):
        from course_lib.data.samples import IgnoreRegions

        # the loader's drop counts belong to the image: report them with its first piece only
        return IgnoreRegions(np.asarray(regions.masks)[window], regions.reasons,
                             regions.dropped if first else {})

    def load(self, index: int):
        """Piece ``index``: ``(image, masks, class_ids)`` of its window."""
        return self._cut(index, self.cached.packed(self.index[index][0])[:3])

    def _load_with_ignore(self, index: int):
        return self._cut(index, self.cached.packed(self.index[index][0]))


def _pack_sample(sample: tuple) -> tuple:
    """``(image, masks, ...)`` with the masks as ``("labels", uint16 H×W, N)`` when disjoint."""
    from course_lib.ops.masks import disjoint_masks_to_labels

    image, masks, *rest = sample
    masks = np.asarray(masks)
    n = masks.shape[-1]
    labels = disjoint_masks_to_labels(masks) if 0 < n < 2 ** 16 else None
    if labels is None:
        return (image, masks, *rest)
    return (image, ("labels", labels.astype(np.uint16), n), *rest)


def _unpack_sample(packed: tuple) -> tuple:
    """The inverse of :func:`_pack_sample`: the ``H×W×N`` bool masks, in their order."""
    from course_lib.ops.masks import labels_to_masks

    image, masks, *rest = packed
    if isinstance(masks, tuple):
        _, labels, n = masks
        masks = labels_to_masks(labels, ids=range(1, n + 1))
    return (image, masks, *rest)


def recipe_weight_fn(recipe: UNetRecipe) -> Callable[[np.ndarray], np.ndarray]:
    """``labels (H×W) -> H×W float32`` loss weights: ``1 + w0·exp(-(d1+d2)²/2σ²)`` on gaps.

    ``w_c = 1`` (no class balancing): balancing pushes the predicted probabilities up, so a
    0.5 threshold glues nuclei together. With ``w0 = 0`` every pixel weighs 1.

    Taught in notebooks/10_unet.
    """
    from course_lib.ops.weight_map import border_weight

    w0, sigma, fg = float(recipe.w0), float(recipe.sigma), float(recipe.foreground_weight)
    if recipe.target == "three_class":
        from course_lib.ops.weight_map import three_class_target

        # per-class weights, no border map: the border is a class of its own
        by_class = np.array([1.0, fg, float(recipe.border_weight)], np.float32)

        def class_weights(labels: np.ndarray) -> np.ndarray:
            return by_class[three_class_target(labels, recipe.border_width)]

        return class_weights

    def weights(labels: np.ndarray) -> np.ndarray:
        wc = np.where(labels > 0, fg, 1.0).astype(np.float32)
        return wc + border_weight(labels, w0=w0, sigma=sigma)

    return weights


def recipe_target_fn(recipe: UNetRecipe) -> Callable[[np.ndarray], np.ndarray] | None:
    """``labels (H×W) -> H×W×K`` float32 targets of the recipe (``None``: the dataset's
    default, the ``H×W×1`` foreground).

    Taught in notebooks/10_unet.
    """
    if recipe.target != "three_class":
        return None
    from course_lib.ops.weight_map import three_class_target

    eye = np.eye(3, dtype=np.float32)

    def one_hot(labels: np.ndarray) -> np.ndarray:
        return eye[three_class_target(labels, recipe.border_width)]

    return one_hot


def training_dataset(sample_dirs: Sequence[str | Path], recipe: UNetRecipe,
                     cache: int | None = None, weight_fn: Callable | None = None,
                     shuffle: bool = True, augmenter=None, provider=None):
    """A ``UNetDataset`` of random ``tile_size`` crops with the recipe's weight map.

    ``cache``: how many decoded images to keep (:class:`CachedSamples`); default every one
    of ``sample_dirs``. An epoch visits the images in a new random order, so a cache smaller
    than the split misses on almost every tile and decodes the image and its mask PNGs again
    (``bench/bench_unet_step.py``: 1.22 s instead of 0.23 s a batch of 8 on one core, a
    quarter of a full-mode step on a 2-core CPU). The cache keeps masks as one label image,
    about 1 GB for the whole DSB training split.

    ``augmenter``: an optional :class:`~course_lib.data.augment.Augmenter` applied to each
    sample before the crop (chapter 11's flips). ``provider``: the samples to crop from
    (default: a :class:`CachedSamples` of ``sample_dirs``); pass one to share its decoded
    images between several datasets.

    Taught in notebooks/10_unet.
    """
    from course_lib.data.coco import DsbFolderSamples
    from course_lib.data.pipeline import UNetDataset

    if provider is None:
        if recipe.piece_side:
            provider = TiledSamples(CachedSamples(DsbFolderSamples(sample_dirs=list(sample_dirs)),
                                                  maxsize=len(sample_dirs)), recipe.piece_side)
        else:
            provider = CachedSamples(DsbFolderSamples(sample_dirs=list(sample_dirs)),
                                     maxsize=len(sample_dirs) if cache is None else cache)
    return UNetDataset(provider, batch_size=recipe.batch_size, tile_size=recipe.tile_size,
                       weight_fn=weight_fn or recipe_weight_fn(recipe),
                       target_fn=recipe_target_fn(recipe), seed=recipe.seed,
                       shuffle=shuffle, augmenter=augmenter)


def validation_tiles(sample_dirs: Sequence[str | Path], recipe: UNetRecipe,
                     tiles_per_image: int = 2, seed: int = 1234, skipped: list | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fixed validation tiles: ``(images (N,S,S,3), targets (N,S,S,1), gap_mask (N,S,S) bool)``.

    ``gap_mask`` marks the background pixels between touching nuclei, where the paper's border
    term exceeds 1 (with w0 = 10, σ = 5: ``d1 + d2`` below about 7.6 px). The tiles are the same
    for every run (their own seed), so validation curves of different runs compare.

    A sample that cannot be used (a corrupt image, a mask of another size: the errors
    training skips, :data:`course_lib.data.skips.SKIPPABLE_ERRORS`) is left out, as training
    leaves it out: logged with its name and reason, and recorded in ``skipped`` when a list is
    passed (:class:`course_lib.data.skips.Skipped` entries, one per sample). One bad file must
    not stop a run before its first step.

    Raises:
        ValueError: no sample is usable (there is nothing to validate on); names them.

    Taught in notebooks/10_unet.
    """
    from course_lib.data.skips import describe_skips, load_or_skip
    from course_lib.ops.weight_map import border_weight

    fixed = dataclasses.replace(recipe, seed=seed, batch_size=1, piece_side=None)
    ds = training_dataset(sample_dirs, fixed, weight_fn=lambda labels: border_weight(
        labels, w0=10.0, sigma=5.0), shuffle=False)
    skipped = [] if skipped is None else skipped
    usable = list(range(len(ds.provider)))
    tiles = []
    for epoch in range(tiles_per_image):
        for i in list(usable):
            tile = load_or_skip(lambda i=i, epoch=epoch: ds.sample(i, epoch), ds.name(i),
                                skipped, "validation sample")
            if tile is None:
                usable.remove(i)  # counted once, not again for its next tiles
            else:
                tiles.append(tile)
    if not tiles:
        raise ValueError(f"none of the {len(ds.provider)} validation samples is usable "
                         f"({describe_skips(skipped)}); repair or replace those files.")
    images, targets, borders = zip(*tiles, strict=True)
    return np.stack(images), np.stack(targets), np.stack(borders) > 1.0


# --------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------


def adapted_normalization(dataset, n_batches: int = 4):
    """A ``keras.layers.Normalization`` (one mean and variance over all pixels and channels)
    adapted on the images of the first ``n_batches`` batches of ``dataset``.

    One fixed affine map for every tile: unlike per-tile standardisation it cannot make the
    tile grid visible in an overlap-tiled prediction.

    Taught in notebooks/10_unet.
    """
    import keras

    n = max(1, min(len(dataset), n_batches))
    pixels = np.concatenate([dataset[i][0] for i in range(n)])
    norm = keras.layers.Normalization(axis=None, name="normalize")
    norm.adapt(pixels)
    return norm


def build_recipe_unet(recipe: UNetRecipe, normalization=None, input_shape=None):
    """The recipe's same-padding U-Net: 3 channels in, one sigmoid nucleus probability out.

    Args:
        recipe: sizes and options.
        normalization: an input layer (e.g. from :func:`adapted_normalization`) or ``None``.
        input_shape: ``(H, W, 3)``; default ``(None, None, 3)``: any size divisible by
            ``2**depth``, so the same model predicts tiles and whole images.

    The classifier's bias starts at ``log(p / (1 - p))`` with ``p = prior_foreground``: the
    untrained net then predicts the foreground share instead of 0.5 everywhere.

    Taught in notebooks/10_unet.
    """
    import keras

    model = unet.same_unet(input_shape or (None, None, 3), n_classes=recipe.n_outputs,
                           base_filters=recipe.base_filters, depth=recipe.depth,
                           batch_norm=recipe.batch_norm, dropout=0.0, rescale=normalization,
                           bn_momentum=recipe.bn_momentum,
                           final_activation="softmax" if recipe.n_outputs > 1 else "sigmoid")
    if recipe.prior_foreground is not None and recipe.n_outputs == 1:
        p = float(recipe.prior_foreground)
        if not 0 < p < 1:
            raise ValueError(f"prior_foreground={p}: a share strictly between 0 and 1")
        classifier = model.get_layer("classifier")
        classifier.bias.assign(keras.ops.full(classifier.bias.shape, math.log(p / (1 - p))))
    return model


@functools.cache
def _make_tile_validation():
    import keras

    class TileValidation(keras.callbacks.Callback):
        """Adds ``val_bce`` and ``val_gap_bce`` to the logs at every epoch end.

        ``val_bce``: unweighted binary cross-entropy of the nucleus probability over every
        pixel of fixed validation tiles. ``val_gap_bce``: the same over the gap pixels between
        touching nuclei only (``gap_mask``), where the border weight map puts its weight. Both
        are independent of the training weights, so runs with different ``w0`` compare.
        Place it before any callback that reads these keys (e.g. ``LiveCurves``).

        Args:
            tiles: ``(images, targets, gap_mask)`` from :func:`validation_tiles`.
            batch_size: tiles per forward pass (16, as :func:`predict_probability`: the
                compiled predict step is then shared, which saves a compilation under JAX).

        Taught in notebooks/10_unet.
        """

        def __init__(self, tiles, batch_size: int = 16):
            super().__init__()
            self.images, self.targets, self.gaps = tiles
            self.batch_size = batch_size

        def on_epoch_end(self, epoch, logs=None):
            prob = predict_tiles_in_batches(self.model, self.images, self.batch_size)[..., 0]
            p = np.clip(prob.astype(np.float64), 1e-7, 1 - 1e-7)
            y = self.targets[..., 0] > 0.5
            bce = -np.where(y, np.log(p), np.log(1 - p))
            if logs is not None:
                logs["val_bce"] = float(bce.mean())
                logs["val_gap_bce"] = float(bce[self.gaps].mean()) if self.gaps.any() else 0.0

    return TileValidation


def predict_tiles_in_batches(model, tiles: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """``model`` on ``(N, S, S, C)`` tiles in fixed-size batches: ``(N, S, S, K)`` float32.

    Taught in notebooks/10_unet.
    """
    predict = tile_predictor(model, batch_size)
    return np.concatenate([predict(tiles[i:i + batch_size])
                           for i in range(0, len(tiles), batch_size)])


# --------------------------------------------------------------------------------------
# Prediction
# --------------------------------------------------------------------------------------


def tile_predictor(model, batch_size: int = 16) -> Callable[[np.ndarray], np.ndarray]:
    """``batch (B, S, S, C) -> (B, S, S, K)`` NumPy predictions with few batch shapes.

    Every call pads the batch to the next power of two (at most ``batch_size``; ``B <=
    batch_size``), so the compiled predict step is traced for a handful of batch shapes per
    tile size (1, 2, 4, 8, 16), not for every leftover count, then drops the padding. Padding
    only to ``batch_size`` would compute 16 tiles for a 256-px image's 4: four times the work
    (the CPU budget's U-Net predicts 8 views of each image, so this is most of its inference
    time). Inference mode (batch norm uses its moving statistics).

    Taught in notebooks/10_unet.
    """

    def predict(batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        n = len(batch)
        if n > batch_size:
            raise ValueError(f"tile_predictor: got {n} tiles; at most batch_size={batch_size}")
        slots = min(batch_size, 1 << max(n - 1, 0).bit_length())
        if n < slots:
            fill = np.zeros((slots - n, *batch.shape[1:]), np.float32)
            batch = np.concatenate([batch, fill])
        return np.asarray(model.predict_on_batch(batch), np.float32)[:n]

    return predict


def predict_probability(model, image: np.ndarray, recipe: UNetRecipe,
                        margin: int | None = None, batch_size: int = 16) -> np.ndarray:
    """Overlap-tiled ``H×W`` float32 nucleus probability of an ``H×W×3`` image.

    Input tiles of ``recipe.tile_size``; the centre ``tile_size - 2·margin`` of each output
    tile is kept (``margin`` defaults to the recipe's; 0 = tiles without context).

    Taught in notebooks/10_unet.
    """
    maps = predict_maps(model, image, recipe, margin, batch_size)
    return maps[..., 0] if maps.shape[-1] == 1 else 1.0 - maps[..., 0]


def predict_maps(model, image: np.ndarray, recipe: UNetRecipe, margin: int | None = None,
                 batch_size: int = 16, views: int | None = None) -> np.ndarray:
    """Overlap-tiled ``H×W×K`` float32 outputs of the net: ``K = 1`` nucleus probability,
    or ``K = 3`` probabilities of background, interior and border.

    ``views`` (default ``recipe.test_views``): test-time augmentation. 4: also predict the
    image mirrored left-right, up-down and both; 8: those four and their transposes (the
    quarter turns and diagonal reflections). Each answer is mapped back and the answers are
    averaged: a nucleus has no orientation, so they should agree, and their mean is smoother.

    Taught in notebooks/10_unet.
    """
    margin = recipe.margin if margin is None else margin
    tile = recipe.tile_size
    image = np.asarray(image, np.float32)
    views = recipe.test_views if views is None else int(views)
    if views not in TEST_VIEWS:
        raise ValueError(f"views={views}; use one of {TEST_VIEWS}")
    mirrors = [(False, False), (False, True), (True, False), (True, True)][:min(views, 4)]
    total = None
    for transpose in (False, True)[:1 + (views == 8)]:
        for up_down, left_right in mirrors:
            view = image.transpose(1, 0, 2) if transpose else image
            view = view[::-1] if up_down else view
            view = view[:, ::-1] if left_right else view
            out = overlap_tile_predict(tile_predictor(model, batch_size),
                                       np.ascontiguousarray(view), tile, tile - 2 * margin,
                                       batch_size=batch_size)
            out = out[::-1] if up_down else out      # undo in reverse order
            out = out[:, ::-1] if left_right else out
            out = out.transpose(1, 0, 2) if transpose else out
            total = out if total is None else total + out
    return np.ascontiguousarray(total / views, dtype=np.float32)


def predict_instances(model, image: np.ndarray, recipe: UNetRecipe,
                      batch_size: int = 16, views: int | None = None) -> np.ndarray:
    """``H×W`` int32 instance labels of one image, the recipe's way.

    ``"foreground"`` recipes: watershed of the probability from distance peaks
    (:func:`~course_lib.ops.watershed.watershed_instances`); ``"three_class"``: interiors
    grown over the border (:func:`~course_lib.ops.watershed.instances_from_three_class`).
    Instances under ``recipe.min_size`` pixels are dropped. ``views``: as in
    :func:`predict_maps` (default ``recipe.test_views``).

    Taught in notebooks/10_unet.
    """
    from course_lib.ops.watershed import instances_from_three_class, watershed_instances

    maps = predict_maps(model, image, recipe, batch_size=batch_size, views=views)
    if recipe.target == "three_class":
        return instances_from_three_class(maps, min_size=recipe.min_size,
                                          interior_threshold=recipe.interior_threshold,
                                          foreground_threshold=recipe.foreground_threshold)
    return watershed_instances(maps[..., 0], min_size=recipe.min_size)


def same_padding_amounts(shape: tuple[int, int], depth: int, margin: int
                         ) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right))`` mirror padding for a whole-image same-net pass.

    ``margin`` px of context on every side, plus what the bottom/right need so each padded
    side is divisible by ``2**depth`` (the poolings). E.g. ``(100, 130)``, depth 3, margin
    16: rows ``100 + 32 = 132 → 136`` (+4 at the bottom), columns ``130 + 32 = 162 → 168``
    (+6 at the right): ``((16, 20), (16, 22))``.

    Taught in notebooks/10_unet.
    """
    step = 2 ** depth
    if margin < 0 or depth < 1:
        raise ValueError(f"margin={margin} must be ≥ 0 and depth={depth} ≥ 1")
    out = []
    for side in shape[:2]:
        extra = -(side + 2 * margin) % step
        out.append((margin, margin + extra))
    return tuple(out)


def whole_image_probability(model, image: np.ndarray, recipe: UNetRecipe,
                            margin: int | None = None) -> np.ndarray:
    """The same net on the whole mirrored image at once: ``H×W`` float32 probability.

    The image is mirror-padded by :func:`same_padding_amounts` (the context the tiles got,
    and a side divisible by ``2**depth``), predicted in one pass, and cropped back. A model
    built with a fixed input size is rebuilt for this size with the same weights.

    Taught in notebooks/10_unet.
    """
    margin = recipe.margin if margin is None else margin
    image = np.asarray(image, np.float32)
    h, w = image.shape[:2]
    (top, bottom), (left, right) = same_padding_amounts((h, w), recipe.depth, margin)
    padded = np.pad(image, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    net = model
    if model.input_shape[1] is not None and model.input_shape[1:3] != padded.shape[:2]:
        net = rebuild_for_shape(model, padded.shape)
    prob = np.asarray(net.predict_on_batch(padded[None]), np.float32)
    return prob[0, top:top + h, left:left + w, 0]


def rebuild_for_shape(model, input_shape: tuple):
    """The same functional model, built for another input shape, sharing no weights.

    Rebuilds from the model's config with ``input_shape`` and copies the weights; works for
    any model whose layers accept the new size (a same-padding U-Net needs sides divisible by
    ``2**depth``).

    Taught in notebooks/10_unet.
    """
    import keras

    cfg = model.get_config()
    layers = cfg["layers"]
    first = next(layer for layer in layers if layer["class_name"] == "InputLayer")
    key = "batch_shape" if "batch_shape" in first["config"] else "batch_input_shape"
    first["config"][key] = [None, *input_shape]
    rebuilt = keras.Model.from_config(cfg)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def score_unet(model, samples: Sequence[tuple[np.ndarray, np.ndarray]], recipe: UNetRecipe,
               instances: Callable[[np.ndarray], np.ndarray] | None = None) -> float:
    """The DSB score (:func:`course_lib.metrics.dsb_score`) of a U-Net on whole images: each
    image's overlap-tiled probability (:func:`predict_probability`) turned into instances.

    Args:
        model: the U-Net.
        samples: ``(image H×W×3, masks H×W×N)`` pairs.
        recipe: tile size and margin for :func:`predict_probability`.
        instances: probability -> instance labels (default
            :func:`course_lib.ops.watershed.watershed_instances`).

    Taught in notebooks/10_unet.
    """
    from course_lib.metrics import dsb_score
    from course_lib.ops.masks import masks_to_labels
    from course_lib.ops.watershed import watershed_instances

    instances = instances or watershed_instances
    return float(dsb_score((masks_to_labels(masks),
                            instances(predict_probability(model, image, recipe)))
                           for image, masks in samples))


_LAZY = {"TileValidation": _make_tile_validation}


def __getattr__(name: str):
    # PEP 562: the Keras callback class is built on first use, so importing this module does
    # not import Keras (and TensorFlow) before a notebook's first cell has set things up.
    if name in _LAZY:
        value = _LAZY[name]()
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
