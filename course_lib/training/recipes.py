"""Ready-made training runs: U-Net and Mask R-CNN on nuclei, Mask R-CNN on VOC or COCO.

Taught in notebooks/11_train_nuclei.

A :class:`Recipe` bundles what :func:`course_lib.training.train` needs (a model builder, the
training and validation data, a :class:`~course_lib.training.TrainConfig`, the loss) and what
evaluation needs (a function from an image to its instance label image). The command line
(``python -m course_lib.train``) and the notebooks build the same recipes with
:func:`make_recipe`, so a notebook run and a long run outside Jupyter share one code path.

Data checks happen here, before anything is built, and raise :class:`DataError` with a
message naming the folder and the fix.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib import config as course_config
from course_lib.ops.masks import MIN_SCORE_FOR_LABELS, detections_to_labels
from course_lib.training.engine import Stage, TrainConfig

PRESETS = ("nuclei", "voc", "coco")
MODELS = ("unet", "maskrcnn")

#: Mask R-CNN's "heads": FPN, RPN, box and mask heads (everything but the backbone), as in
#: the Mask R-CNN reference implementations' first training stage.
MASKRCNN_HEADS = r"(^|/)fpn_|^(rpn_head|box_head|mask_head)/"


class DataError(ValueError):
    """The data for a run is missing or unusable; the message names the folder and the fix.

    Taught in notebooks/11_train_nuclei.
    """


@dataclass
class Recipe:
    """One training run, ready for :func:`course_lib.training.train`.

    Attributes:
        name: model name recorded in the run folder (``"unet-nuclei"``, ...).
        build: builds the model to train (``model_fn`` of :func:`train`).
        train_data: a ``PyDataset`` of training batches.
        val_data: validation batches or ``(x, y)`` arrays, or ``None``.
        config: the :class:`TrainConfig`.
        loss: the compile loss (``None``: the model adds its own).
        predictor: ``predictor(model) -> (image H×W×3 uint8 -> labels H×W int32)``, for
            evaluation and export; ``model`` is what ``build`` returned.
        detector: for Mask R-CNN, ``detector(model) -> (image -> detect dict)`` (masks,
            class ids, scores), for COCO AP; ``None`` for U-Net.
        val_samples: sample folders (nuclei) or a provider of the validation split.
        data_root: where the samples were found.
        extra: anything else a caller may want (the U-Net recipe, the Mask R-CNN config).

    Taught in notebooks/11_train_nuclei.
    """

    name: str
    build: Callable
    train_data: object
    val_data: object
    config: TrainConfig
    loss: object = None
    predictor: Callable | None = None
    detector: Callable | None = None
    val_samples: object = None
    data_root: Path | None = None
    extra: dict = field(default_factory=dict)


class SubsetSamples:
    """A sample provider restricted to ``indices`` of another (a train/validation split).

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, provider, indices: Sequence[int]):
        self.provider, self.indices = provider, [int(i) for i in indices]
        if hasattr(provider, "load_with_ignore"):
            # pass the crowd / unmapped regions and the loader's drops through the split,
            # or the dataset would see none of them (lost without a count)
            self.load_with_ignore = lambda index: provider.load_with_ignore(
                self.indices[index])

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int):
        return self.provider.load(self.indices[index])

    def name(self, index: int) -> str:
        p = self.provider
        return p.name(self.indices[index]) if hasattr(p, "name") else str(self.indices[index])


def nuclei_folder(data: str | Path | None = None) -> tuple[Path, list[Path]]:
    """The nuclei ``stage1_train`` folder to train on and its sample folders.

    ``data`` may be the ``stage1_train`` folder itself or a folder holding it (as written by
    :func:`course_lib.data.synthetic.make_nuclei`); default: real data under
    :func:`course_lib.config.data_root`, else the synthetic set.

    Raises:
        DataError: the folder is missing or holds no DSB-layout samples.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data import nuclei

    if data is None:
        from course_lib.data.discovery import dataset_status

        source, path = dataset_status()["nuclei"]
        if path is None:
            raise DataError(f"no nuclei data under {course_config.data_root()}; run "
                            "`python -m course_lib.data.prepare` (synthetic) or pass --data.")
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(f"data folder {path} does not exist; pass --data pointing at a "
                            "stage1_train folder (or run `python -m course_lib.data.prepare`).")
        if (path / "stage1_train").is_dir():
            path = path / "stage1_train"
    samples = nuclei.index_samples(path)
    if not samples:
        raise DataError(f"{path} holds no nuclei samples (expected <id>/images/<id>.png and "
                        "<id>/masks/*.png); point --data at a DSB stage1_train folder.")
    if len(samples) < 2:
        raise DataError(f"{path} holds only {len(samples)} sample; at least 2 are needed for a "
                        "training and a validation split.")
    return path, samples


def require_instances(provider, where) -> None:
    """Refuse training data in which no sample holds a single instance.

    A folder whose masks are all empty (masks exported blank, the wrong folder, a threshold
    that kept nothing) would train without a word: the loss falls nicely while the model
    learns to call everything background. Reading samples up to the first one with an
    instance costs one sample in the normal case; only a dataset without any is read through,
    and then refused. Unreadable samples are skipped here as training skips them.

    Raises:
        DataError: no usable sample has an instance (the message names ``where``).

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.skips import describe_skips, load_or_skip

    skipped = []
    for i in range(len(provider)):
        name = provider.name(i) if hasattr(provider, "name") else str(i)
        sample = load_or_skip(lambda i=i: provider.load(i), name, skipped)
        if sample is not None and np.asarray(sample[1]).any():
            return
    read = len(provider) - len(skipped)
    also = f"; {describe_skips(skipped)}" if skipped else ""
    raise DataError(
        f"none of the {read} training samples read in {where} holds an instance: every mask "
        f"is empty{also}. There is nothing to learn; check that the masks mark the objects "
        "with non-zero pixels, or point --data at the right folder.")


def _unet_validation(val_dirs: Sequence[Path], recipe) -> tuple | None:
    """The U-Net recipe's fixed validation tiles, ``None`` when no validation sample is usable.

    Samples that cannot be read are left out and reported in one line; a validation split
    that is entirely unusable only costs the validation curves (the run trains without
    them, and says so), not the run.
    """
    from course_lib.data.skips import describe_skips
    from course_lib.models import unet_training as ut

    skipped = []
    try:
        images, targets, _ = ut.validation_tiles(val_dirs, recipe, tiles_per_image=1,
                                                 skipped=skipped)
    except ValueError as err:
        if len(skipped) < len(val_dirs):
            raise
        print(f"  validation: {err} Training without validation.")
        return None
    if skipped:
        print(f"  validation: {describe_skips(skipped)}; validating on the other "
              f"{len(val_dirs) - len(skipped)} sample(s)")
    return images, targets


def _with_overrides(cfg: TrainConfig, n_batches: int, overrides: dict) -> TrainConfig:
    """``cfg`` with ``overrides``; steps per epoch capped at the dataset's batches."""
    cfg = dataclasses.replace(cfg, **overrides)
    if cfg.steps_per_epoch and cfg.steps_per_epoch > n_batches:
        print(f"  steps_per_epoch {cfg.steps_per_epoch} > the {n_batches} batches the data "
              f"holds: using {n_batches}")
        cfg = dataclasses.replace(cfg, steps_per_epoch=n_batches)
    return cfg


def _mode_settings(mode: str | None) -> course_config.ModeSettings:
    return course_config.settings(mode)


def nuclei_split(samples: Sequence[Path], val_fraction: float = 0.1
                 ) -> tuple[list[Path], list[Path], dict[str, str]]:
    """The course's one nuclei train/validation split: notebook 11's, stratified by modality
    with seed 0 (:func:`course_lib.data.nuclei.stratified_split`).

    Every recipe, budget and shipped model is scored on this split, so their figures compare.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.nuclei import stratified_split

    return stratified_split(samples, val_fraction, seed=0)


def unet_nuclei(data=None, mode: str | None = None, val_fraction: float = 0.1,
                workers: int = 1, *, budget: str | None = None, **train_overrides) -> Recipe:
    """The U-Net recipe of notebook 10 (:mod:`course_lib.models.unet_training`) as a run.

    AdamW at the recipe's rate with the recipe's target: binary cross-entropy weighted by the
    paper's border map and a distance watershed (the modes), or three classes and their
    interiors as seeds (``budget="cpu"``, :func:`~course_lib.models.unet_training.recipe_for_budget`).
    ``train_overrides`` replace :class:`TrainConfig` fields (e.g. ``epochs=1,
    steps_per_epoch=3``). The split is :func:`nuclei_split`.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.models import unet_training as ut

    mode = _mode_settings(mode).name
    root, samples = nuclei_folder(data)
    recipe = ut.recipe_for_budget(budget) if budget else ut.recipe_for_mode(mode)
    train_dirs, val_dirs, _ = nuclei_split(samples, val_fraction)
    train_ds = ut.training_dataset(train_dirs, recipe, augmenter=recipe.augmenter())
    train_ds.workers = int(workers)
    require_instances(train_ds.provider, root)
    validation = _unet_validation(val_dirs, recipe)
    steps = min(recipe.steps_per_epoch or len(train_ds), len(train_ds))
    cfg = TrainConfig(epochs=recipe.epochs, steps_per_epoch=steps, optimizer="adamw",
                      learning_rate=recipe.learning_rate, weight_decay=1e-4, clipnorm=5.0,
                      warmup_steps=100 if budget else 0, seed=recipe.seed)
    cfg = _with_overrides(cfg, len(train_ds), train_overrides)

    def build():
        norm = ut.adapted_normalization(train_ds, recipe.norm_batches)
        return ut.build_recipe_unet(recipe, norm)

    def predictor(model):
        return lambda image: ut.predict_instances(model, image, recipe)

    name = f"unet-nuclei-{budget}" if budget else "unet-nuclei"
    return Recipe(name, build, train_ds, validation, cfg, loss=recipe.loss,
                  predictor=predictor, val_samples=val_dirs, data_root=root,
                  extra={"recipe": recipe, "train_ids": [d.name for d in train_dirs],
                         "val_ids": [d.name for d in val_dirs], "budget": budget})


#: What ``augment=`` may name: no augmentation, or the VOC article's set
#: (:meth:`course_lib.data.augment.Augmenter.article`).
AUGMENTATIONS = ("none", "article")


def initialise_from(model, init) -> object:
    """Copy into ``model`` the weights of ``init`` (a shipped model's name or a training run
    folder) wherever path and shape match: the start of a fine-tuning run.

    Returns the :class:`~course_lib.training.transfer.TransferReport` and prints one line
    saying how much was copied (a model of other classes keeps its own class outputs).

    Raises:
        DataError: ``init`` is neither a shipped model nor a finished run folder, or nothing
            in it matches ``model``.

    Taught in notebooks/12_train_voc.
    """
    from course_lib import shipped
    from course_lib.training.transfer import transfer_weights

    try:
        source = shipped.load(init).model
    except shipped.ShippedModelError as err:
        raise DataError(f"--init {init}: {err}") from err
    report = transfer_weights(source, model)
    if not report.copied:
        raise DataError(f"--init {init}: none of its weights fits this model (no variable "
                        "path and shape in common); start from a model of the same kind.")
    print(f"Initial weights from {init}: {len(report.copied)} of {len(report.rows)} variables "
          f"copied ({report.copied_fraction():.1%} of the values); the rest keep their random "
          "initialisation.")
    return report


def _maskrcnn_recipe(name: str, model_config, train_provider, val_provider, *, mode: str,
                     workers: int, root, train_overrides, budget: str | None = None,
                     augment: str = "none", init=None, windows: bool = False) -> Recipe:
    """The Mask R-CNN recipe behind every preset. ``budget``: the CPU budget's optimiser and
    epochs; ``windows``: train on native-scale windows of the images (flips and quarter turns
    included) and detect window by window, as the nuclei CPU budget does; ``augment``: a name
    of :data:`AUGMENTATIONS`; ``init``: start from these weights (:func:`initialise_from`)."""
    from course_lib.data.pipeline import MaskRCNNDataset
    from course_lib.models import maskrcnn

    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; use one of "
                         f"{', '.join(AUGMENTATIONS)}")
    if windows and augment != "none":
        raise ValueError("the nuclei CPU budget has its own augmentation (windows, flips, "
                         "quarter turns); leave --augment out there.")
    settings = _mode_settings(mode)
    require_instances(train_provider, root)
    batch_size = 4 if budget else settings.batch_size
    common = dict(batch_size=batch_size, workers=workers)
    augmenter = None
    if augment == "article":
        from course_lib.data.augment import Augmenter

        augmenter = Augmenter.article(seed=model_config.seed)
    if windows:   # native-scale windows, and the 8 orientations of each
        from course_lib.data.augment import Augmenter, FlipLeftRight, FlipUpDown, Rotate90, Window
        from course_lib.models.unet_training import CachedSamples, TiledSamples

        train_provider = TiledSamples(CachedSamples(train_provider, maxsize=len(train_provider)),
                                      side=384)
        augmenter = Augmenter([Window(model_config.image_size), FlipLeftRight(), FlipUpDown(),
                               Rotate90()], seed=model_config.seed)
    train_ds = MaskRCNNDataset.for_config(model_config, train_provider, seed=model_config.seed,
                                          augmenter=augmenter, **common)
    val_ds = None
    if val_provider and not windows:  # the nuclei budget's windows are scored by DSB instead
        if budget and len(val_provider) > VOC_CPU_VAL_IMAGES:   # a validation pass per epoch
            val_provider = SubsetSamples(val_provider, range(VOC_CPU_VAL_IMAGES))
        val_ds = MaskRCNNDataset.for_config(model_config, val_provider, shuffle=False, **common)
    steps = min(settings.steps_per_epoch or len(train_ds), len(train_ds))
    epochs = settings.epochs
    if budget:
        # from scratch on a CPU: AdamW with a warm-up, every layer from the first step
        epochs = MASKRCNN_CPU_EPOCHS if windows else VOC_CPU_EPOCHS
        steps = len(train_ds) if windows else min(len(train_ds), VOC_CPU_STEPS_PER_EPOCH)
        cfg = TrainConfig(epochs=epochs, steps_per_epoch=steps, optimizer="adamw",
                          learning_rate=1e-3, weight_decay=1e-4, clipnorm=5.0,
                          warmup_steps=min(200, epochs * steps // 10), seed=model_config.seed)
    else:
        heads = max(1, epochs // 4)  # the reference schedules: heads first, then every layer
        stages = (Stage("heads", heads, MASKRCNN_HEADS), Stage("all", max(1, epochs - heads)))
        # SGD as in the paper: 0.02 for 16 images a batch, scaled linearly to ours
        lr = 0.02 * settings.batch_size / 16
        cfg = TrainConfig(stages=stages, steps_per_epoch=steps, optimizer="sgd",
                          learning_rate=lr, momentum=0.9, weight_decay=1e-4, clipnorm=5.0,
                          warmup_steps=min(500, max(1, steps * (epochs) // 10)),
                          seed=model_config.seed)
    cfg = _with_overrides(cfg, len(train_ds), train_overrides)
    models = {}

    def build():
        # (the builder's line on the backbone's initialisation would say "from scratch")
        training, inference = maskrcnn.build_models(model_config, verbose=init is None)
        models["inference"] = inference
        if init is not None:   # fine-tuning: start from another model's weights
            models["init_report"] = initialise_from(training, init)
        return training

    def detector(model):
        inference = models.get("inference")
        if inference is None:  # a model built elsewhere: rebuild the twin sharing its layers
            inference = maskrcnn.MaskRCNN(model.config, mode="inference", shared=model,
                                          verbose=False)
        if windows:
            from course_lib.models.tiled_detection import detect_tiled

            return lambda image, min_score=0.0: detect_tiled(inference, image,
                                                             min_score=min_score)
        return lambda image, min_score=0.0: maskrcnn.detect(inference, [image],
                                                            min_score=min_score)[0]

    def predictor(model):
        find = detector(model)

        def labels(image):
            return detections_to_labels(find(image, MIN_SCORE_FOR_LABELS),
                                        MIN_SCORE_FOR_LABELS)

        return labels

    return Recipe(name, build, train_ds, val_ds, cfg, loss=None, predictor=predictor,
                  detector=detector, val_samples=val_provider, data_root=root,
                  extra={"model_config": model_config, "models": models, "budget": budget,
                         "augment": augment, "init": None if init is None else str(init)})


#: Epochs of the Mask R-CNN CPU budget (each one 256-px window of every 384-px piece of
#: every training image).
MASKRCNN_CPU_EPOCHS = 10
#: The VOC CPU budget (notebook 12's recorded overfitting runs): quick mode's 128-px light
#: model, batches of 4, this many epochs of at most this many batches, validation loss after
#: every epoch on at most this many validation images. On the 18 training images of the
#: look-alike that is 5 batches an epoch, 100 passes over the training set: enough to learn
#: them by heart.
VOC_CPU_EPOCHS = 100
VOC_CPU_STEPS_PER_EPOCH = 25
VOC_CPU_VAL_IMAGES = 48


def maskrcnn_nuclei(data=None, mode: str | None = None, val_fraction: float = 0.1,
                    workers: int = 1, *, budget: str | None = None, modality: str | None = None,
                    init=None, **train_overrides) -> Recipe:
    """Mask R-CNN on a nuclei folder: :func:`course_lib.models.maskrcnn.nuclei_config` sized
    by the mode, or :func:`~course_lib.models.maskrcnn.nuclei_cpu_config` for
    ``budget="cpu"`` (native-scale windows, AdamW, tiled detection). The split is
    :func:`nuclei_split`.

    ``modality`` (one of :data:`course_lib.data.nuclei.MODALITIES`) keeps only that modality's
    images on both sides of the split, and ``init`` starts from a trained model's weights
    (:func:`initialise_from`): notebook 12 fine-tunes the shipped nuclei model on histology
    this way, against the same run from scratch.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.coco import DsbFolderSamples
    from course_lib.data.nuclei import MODALITIES
    from course_lib.models import maskrcnn

    mode = _mode_settings(mode).name
    root, samples = nuclei_folder(data)
    train_dirs, val_dirs, found = nuclei_split(samples, val_fraction)
    name = f"maskrcnn-nuclei-{budget}" if budget else "maskrcnn-nuclei"
    if modality is not None:
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; use one of {', '.join(MODALITIES)}")
        train_dirs = [d for d in train_dirs if found[d.name] == modality]
        val_dirs = [d for d in val_dirs if found[d.name] == modality]
        if not train_dirs or not val_dirs:
            raise DataError(f"{root} has {len(train_dirs)} training and {len(val_dirs)} "
                            f"validation images of modality {modality}; both need at least "
                            "one (leave --modality out to use them all).")
        name = f"{name}-{modality}"
    config = maskrcnn.nuclei_cpu_config() if budget else maskrcnn.nuclei_config(mode)
    recipe = _maskrcnn_recipe(name, config, DsbFolderSamples(sample_dirs=train_dirs),
                              DsbFolderSamples(sample_dirs=val_dirs), mode=mode, workers=workers,
                              root=root, train_overrides=train_overrides, budget=budget,
                              init=init, windows=bool(budget))
    recipe.extra.update(train_ids=[d.name for d in train_dirs],
                        val_ids=[d.name for d in val_dirs], modality=modality)
    return recipe


def maskrcnn_voc(data=None, mode: str | None = None, workers: int = 1,
                 budget: str | None = None, *, augment: str = "none", init=None,
                 **train_overrides) -> Recipe:
    """Mask R-CNN (:func:`course_lib.models.maskrcnn.voc_config`) on Pascal VOC 2012
    (``train`` / ``val`` of ``ImageSets/Segmentation``).

    ``budget="cpu"``: quick mode's 128-px light model whatever the mode, trained from scratch
    with AdamW for :data:`VOC_CPU_EPOCHS` short epochs, the validation loss after each (on at
    most :data:`VOC_CPU_VAL_IMAGES` images): notebook 12's recorded overfitting runs, about
    ten minutes each on two CPU cores. ``augment="article"``: the VOC article's augmentation
    of every training image. ``init``: as in :func:`maskrcnn_nuclei`.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.data.voc import VocSamples
    from course_lib.models import maskrcnn

    if data is None:
        from course_lib.data.discovery import dataset_status

        _, data = dataset_status()["voc"]
        if data is None:
            raise DataError(f"no VOC data under {course_config.data_root()}; run "
                            "`python -m course_lib.data.prepare` (synthetic) or pass --data.")
    data = Path(data).expanduser()
    if not data.exists():
        raise DataError(f"data folder {data} does not exist; pass --data pointing at VOC2012.")
    try:
        train_p, val_p = VocSamples(data, "train"), VocSamples(data, "val")
    except FileNotFoundError as err:
        raise DataError(f"{data} is not a VOC 2012 folder ({err}); pass --data pointing at "
                        "VOCdevkit/VOC2012.") from err
    if len(train_p) == 0:
        raise DataError(f"{data} lists no training images in ImageSets/Segmentation/train.txt.")
    mode = _mode_settings(mode).name
    model_config = (maskrcnn.voc_config("quick", name="voc-cpu") if budget
                    else maskrcnn.voc_config(mode))
    name = f"maskrcnn-voc-{budget}" if budget else "maskrcnn-voc"
    if augment != "none":
        name = f"{name}-{augment}"
    return _maskrcnn_recipe(name, model_config, train_p, val_p if len(val_p) else None, mode=mode,
                            workers=workers, root=data, train_overrides=train_overrides,
                            budget=budget, augment=augment, init=init)


def maskrcnn_coco(data=None, mode: str | None = None, val_fraction: float = 0.1,
                  workers: int = 1, *, augment: str = "none", init=None,
                  **train_overrides) -> Recipe:
    """Mask R-CNN on a COCO instance json (``--data path/to/annotations.json``), its classes
    taken from the json; a seeded ``val_fraction`` of the images is held out. ``augment`` and
    ``init`` as in :func:`maskrcnn_voc`.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.data.coco import CocoSamples
    from course_lib.models import maskrcnn

    if data is None:
        raise DataError("the coco preset needs --data pointing at a COCO instances .json file.")
    data = Path(data).expanduser()
    if not data.is_file() or data.suffix.lower() != ".json":
        raise DataError(f"{data} is not a COCO .json file; pass --data path/to/annotations.json.")
    provider = CocoSamples(data)
    if len(provider) < 2:
        raise DataError(f"{data} lists {len(provider)} images; at least 2 are needed.")
    order = np.random.default_rng(0).permutation(len(provider))
    n_val = min(max(1, int(round(val_fraction * len(provider)))), len(provider) - 1)
    names = getattr(provider, "class_names", None)
    mode = _mode_settings(mode).name
    model_config = maskrcnn.voc_config(mode)
    if names:  # names by class id, background first
        model_config = dataclasses.replace(model_config, name="coco", num_classes=len(names),
                                           class_names=tuple(names))
    return _maskrcnn_recipe("maskrcnn-coco", model_config,
                            SubsetSamples(provider, sorted(order[n_val:])),
                            SubsetSamples(provider, sorted(order[:n_val])),
                            mode=_mode_settings(mode).name, workers=workers, root=data,
                            train_overrides=train_overrides,
                            augment=augment, init=init)


def make_recipe(preset: str, model: str, mode: str | None = None, data=None,
                **kwargs) -> Recipe:
    """The recipe for ``preset`` (``nuclei``, ``voc``, ``coco``) and ``model`` (``unet``,
    ``maskrcnn``); ``kwargs`` go to the recipe function (``workers``, TrainConfig fields).

    Raises:
        ValueError: an unknown preset or model, or U-Net asked for VOC/COCO.
        DataError: missing or unusable data.

    Taught in notebooks/11_train_nuclei.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; use one of {', '.join(MODELS)}")
    budget = kwargs.get("budget")
    if budget is not None and preset == "coco":
        raise ValueError(f"the {budget!r} budget is defined for the nuclei and voc presets")
    if kwargs.get("augment", "none") != "none" and (preset == "nuclei" or model == "unet"):
        raise ValueError("--augment article is the VOC article's set, for the voc and coco "
                         "presets; the nuclei recipes have their own augmentation.")
    if kwargs.get("modality") is not None and (preset != "nuclei" or model != "maskrcnn"):
        raise ValueError("--modality selects nuclei images; it applies to the nuclei preset's "
                         "Mask R-CNN only.")
    if kwargs.get("init") is not None and model != "maskrcnn":
        raise ValueError("--init (fine-tuning from trained weights) applies to Mask R-CNN.")
    # the options left at their defaults are not passed: not every recipe takes them
    kwargs = {k: v for k, v in kwargs.items()
              if not (k in ("augment", "modality", "init") and v in (None, "none"))}
    if model == "unet":
        if preset != "nuclei":
            raise ValueError("U-Net is trained on nuclei only (one foreground class); use "
                             "--model maskrcnn for voc or coco.")
        return unet_nuclei(data, mode, **kwargs)
    return {"nuclei": maskrcnn_nuclei, "voc": maskrcnn_voc,
            "coco": maskrcnn_coco}[preset](data, mode, **kwargs)
