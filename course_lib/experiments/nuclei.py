"""The nuclei report's experiments as rows of one results table (chapter 11).

Taught in notebooks/11_train_nuclei.

Each :class:`Row` names one change the report tried (anchor sizes, clean masks, deeper
backbone, U-Net vs Mask R-CNN, input size, flips) and the figure the report gives for it;
:func:`run_row` trains that model on the training split with the mode's budget and scores it
on the validation split with the Data Science Bowl metric. Nothing in the table is typed in:
every score is computed by the run that produced it.

Two details keep quick mode fast without changing what is measured:

- Rows that share an architecture share one model object: it is reset to its initial
  weights before each row, and :func:`course_lib.training.train` then reuses the compiled
  training step instead of tracing the graph again (only the data differs between such rows).
- A row whose change costs more than quick mode allows, or does not exist there (ResNet-101:
  quick mode has only the light backbone), names its reason in ``full_only`` and is reported
  as skipped in quick mode.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from course_lib import config as course_config
from course_lib.training.history import read_history

#: The report's scores on Kaggle's test images (not our validation split), each beside the
#: row that changes what the report changed. U-Net: 0.245 without augmentation, 0.243 with
#: its full augmentation set (flips are one part of it).
REPORT_UNET_NO_AUGMENT = "0.245"
REPORT_UNET_AUGMENTED = "0.243 (all)"
REPORT_MASKRCNN_DEFAULT = "0.285"
#: ResNet-101 with anchors 4, 8, 16, 128, 256 and changed RoI/RPN settings: 0.344, and 0.380
#: on its "cleaned" data, which *excluded* masks with holes or missing pieces (ours fill the
#: holes instead); plain ResNet-101 scored 0.291. Only our ResNet-101 row compares.
REPORT_MASKRCNN_R101 = "0.380†"
#: The report's own held-out scores on training images: the like-for-like reference for a
#: validation split (U-Net, enhanced U-Net, Mask R-CNN).
REPORT_HELD_OUT = {"unet": 0.35, "enhanced unet": 0.42, "maskrcnn": 0.50}
#: The footnotes chapter 11 prints under its table.
REPORT_FOOTNOTES = (
    "report: the report's score on Kaggle's test images, not on our validation split; "
    "(all): with its full augmentation set",
    "† ResNet-101, anchors 4-256, changed RoI/RPN settings, on data that excluded masks with "
    "holes (0.344 before; plain ResNet-101 0.291); our rows fill holes instead",
    "the report's half-size U-Net resized whole images (128 vs 512 px); ours halves the tile "
    "at native scale, another experiment, so no figure stands beside it",
)

DEFAULT_ANCHORS = (32, 64, 128, 256, 512)

#: Why two Mask R-CNN rows wait for full mode.
SECOND_GRAPH = ("anchors are constants of the traced graph, so other anchors mean a second "
                "model to build and trace (about 30 s on a 2-core CPU, 80 s under JAX), more "
                "than quick mode's budget allows")
NO_RESNET = "quick mode has only the light backbone, so this row would repeat the one above"
HALF_TILE = ("another tile size is another traced input shape (seconds a trace on a CPU), "
             "which quick mode's 90 s cannot spare beside the shipped models' live scoring")
SMALL_ANCHORS = (8, 16, 32, 64, 128)


@dataclass(frozen=True)
class Row:
    """One experiment of the results table.

    Attributes:
        label: what the row changes, as the table shows it.
        model: ``"otsu"``, ``"unet"`` or ``"maskrcnn"``.
        anchors: Mask R-CNN anchor scales P2..P6 (pixels).
        holes: training masks with holes ``"keep"``, ``"fill"`` (clean masks, our rows) or
            ``"drop"`` (left out, as the report's "cleaned" data did).
        backbone: Mask R-CNN backbone; ``None``: the mode's (light in quick mode).
        flips: random left-right and up-down flips in training.
        size_factor: U-Net tile side as a multiple of the mode's tile (1 or 0.5).
        report: the report's figure for this change (its test set, not ours).
        full_only: why the row is skipped in quick mode (``""``: it runs in both modes).

    Taught in notebooks/11_train_nuclei.
    """

    label: str
    model: str
    anchors: tuple = SMALL_ANCHORS
    holes: str = "keep"
    backbone: str | None = None
    flips: bool = True
    size_factor: float = 1.0
    report: str = "—"
    full_only: str = ""

    def architecture(self, mode: str) -> tuple:
        """Rows with equal keys can share one model object (only their data differ)."""
        if self.model == "maskrcnn":
            return ("maskrcnn", self.anchors, self.backbone or _backbone(mode))
        return (self.model, self.size_factor)


def _backbone(mode: str) -> str:
    return "light" if mode == "quick" else "resnet50"


def nuclei_report_rows() -> list[Row]:
    """The rows of chapter 11's table, classical baseline first.

    Taught in notebooks/11_train_nuclei.
    """
    return [
        Row("Otsu + watershed (no learning)", "otsu"),
        Row("U-Net, flips", "unet", report=REPORT_UNET_AUGMENTED),
        Row("U-Net, half-size input tiles", "unet", size_factor=0.5, full_only=HALF_TILE),
        Row("U-Net, no flips", "unet", flips=False, report=REPORT_UNET_NO_AUGMENT),
        Row("Mask R-CNN, default anchors 32–512", "maskrcnn", anchors=DEFAULT_ANCHORS,
            report=REPORT_MASKRCNN_DEFAULT, full_only=SECOND_GRAPH),
        Row("Mask R-CNN, small anchors 8–128", "maskrcnn"),
        Row("Mask R-CNN, small anchors, masks with holes filled", "maskrcnn", holes="fill"),
        Row("Mask R-CNN, small anchors, holes filled, ResNet-101", "maskrcnn", holes="fill",
            backbone="resnet101", full_only=NO_RESNET, report=REPORT_MASKRCNN_R101),
    ]


@dataclass(frozen=True)
class Budget:
    """How long each row trains and on how much data.

    Attributes:
        unet_epochs / unet_steps: U-Net epochs and batches per epoch (``None``: all).
        maskrcnn_epochs / maskrcnn_steps: the same for Mask R-CNN.
        max_val_images: validation images scored per row (``None``: all).
        unet_tile: U-Net input tile side (``None``: the mode's recipe; the half-size row
            halves it).
        maskrcnn_images: Mask R-CNN trains on the first this many training images (``None``:
            all). Quick mode's few steps then revisit the same images, so its loss falls.

    Taught in notebooks/11_train_nuclei.
    """

    unet_epochs: int
    unet_steps: int | None
    maskrcnn_epochs: int
    maskrcnn_steps: int | None
    max_val_images: int | None = None
    unet_tile: int | None = None
    maskrcnn_images: int | None = None

    @classmethod
    def for_mode(cls, mode: str | None = None) -> Budget:
        """Quick: a few steps per row (the scores mean nothing yet); full: the mode's epochs."""
        mode = mode or course_config.mode()
        if mode == "quick":
            return cls(unet_epochs=3, unet_steps=4, maskrcnn_epochs=3, maskrcnn_steps=2,
                       max_val_images=4, unet_tile=64, maskrcnn_images=4)
        full = course_config.FULL
        return cls(unet_epochs=full.epochs, unet_steps=None, maskrcnn_epochs=full.epochs,
                   maskrcnn_steps=None)


@dataclass
class RowResult:
    """What one row produced.

    Attributes:
        row: the :class:`Row`.
        score: mean DSB score over the validation images (``nan`` when skipped).
        per_image: ``{image id: DSB score}``.
        history: ``{"loss": [per epoch], ...}`` of the training (empty for Otsu).
        seconds: wall time of training and scoring.
        predictions: ``{image id: H×W int32 labels}`` on the validation images.
        predictor: ``image -> labels`` of the trained model (``None`` when skipped).
        run_dir: the training's run folder (checkpoints, ``logs/train.csv``), or ``None``.
        skipped: why the row did not run, or ``""``.

    Taught in notebooks/11_train_nuclei.
    """

    row: Row
    score: float = float("nan")
    per_image: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    predictions: dict = field(default_factory=dict)
    predictor: Callable | None = None
    run_dir: Path | None = None
    skipped: str = ""


def score_result(row: Row, predict: Callable[[np.ndarray], np.ndarray],
                 samples: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> RowResult:
    """A :class:`RowResult` for a model that was not trained here (Otsu, a shipped model):
    ``predict`` scored by the DSB metric on ``(image id, image, true labels)`` samples.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.metrics import dsb_average_precision

    started = time.perf_counter()
    per_image, predictions = {}, {}
    for name, image, truth in samples:
        predictions[name] = np.asarray(predict(image), np.int32)
        per_image[name] = float(dsb_average_precision(truth, predictions[name]))
    return RowResult(row, float(np.mean(list(per_image.values()))), per_image,
                     predictions=predictions, predictor=predict,
                     seconds=time.perf_counter() - started)


def default_run_root(mode: str | None = None) -> Path:
    """``<repository>/runs/nuclei-experiments-<mode>``: where chapter 11's rows train
    unless told otherwise (``runs/`` is ignored by git).

    Taught in notebooks/11_train_nuclei.
    """
    return course_config.REPO_ROOT / "runs" / f"nuclei-experiments-{mode or course_config.mode()}"


def _spread(folders: list[Path], modality: dict[str, str] | None, n: int | None) -> list[Path]:
    """The first ``n`` folders, taking one of each modality in turn (all when ``n`` is None)."""
    if n is None or len(folders) <= n:
        return folders
    if not modality:
        return folders[:n]
    groups: dict[str, list[Path]] = {}
    for f in folders:
        groups.setdefault(modality[f.name], []).append(f)
    turns = sorted(((k, m) for m, group in groups.items() for k in range(len(group))))
    taken = [groups[m][k] for k, m in turns][:n]
    return sorted(taken)


class NucleiExperiments:
    """Runs :class:`Row` s on one training/validation split and keeps the results.

    Args:
        train_dirs, val_dirs: DSB sample folders of the two splits.
        mode: ``"quick"`` or ``"full"`` (default: the course's mode).
        budget: the training budget (default :meth:`Budget.for_mode`).
        run_root: where the run folders go (default :func:`default_run_root`: ``runs/`` in
            the repository, ignored by git). Each row trains in a folder named after its label
            and a digest of everything it trains with (mode, seed, split, recipe, schedule), so
            after a kernel restart the same row resumes its run (or, finished, is only scored
            again), while a row whose settings changed starts a folder of its own.
        seed: seeds weights, data order and augmentation of every row alike.
        modality: ``{folder name: modality}``; when the budget caps the validation images,
            they are taken in turn from each modality, so every modality stays scored.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, train_dirs: Sequence[Path], val_dirs: Sequence[Path],
                 mode: str | None = None, budget: Budget | None = None,
                 *, run_root: str | Path | None = None, seed: int = 0,
                 modality: dict[str, str] | None = None):
        self.mode = mode or course_config.mode()
        self.budget = budget or Budget.for_mode(self.mode)
        self.train_dirs = [Path(d) for d in train_dirs]
        self.val_dirs = _spread([Path(d) for d in val_dirs], modality,
                                self.budget.max_val_images)
        self.run_root = Path(run_root) if run_root else default_run_root(self.mode)
        self.seed = seed
        self.results: list[RowResult] = []
        self._models: dict[tuple, tuple] = {}     # architecture -> (model, initial weights, extra)
        self._val = None
        self._unet_samples = None

    # ------------------------------------------------------------------ validation data
    def validation(self) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(image id, image, true labels)`` of the scored validation images, read once."""
        if self._val is None:
            from course_lib.training.evaluate import folder_samples

            self._val = list(folder_samples(self.val_dirs))
        return self._val

    def score(self, predict: Callable[[np.ndarray], np.ndarray]
              ) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        """``({image id: DSB score}, {image id: predicted labels})`` on the validation images."""
        result = score_result(Row("", "otsu"), predict, self.validation())
        return result.per_image, result.predictions

    # ------------------------------------------------------------------ rows
    def run(self, row: Row, print_fn: Callable[[str], None] = print) -> RowResult:
        """Train and score one row; the result is also appended to :attr:`results`."""
        started = time.perf_counter()
        if row.full_only and self.mode == "quick":
            result = RowResult(row, skipped=f"full mode only: {row.full_only}")
        else:
            predictor, history, run_dir = {"otsu": self._otsu, "unet": self._unet,
                                           "maskrcnn": self._maskrcnn}[row.model](row)
            per_image, predictions = self.score(predictor)
            result = RowResult(row, float(np.mean(list(per_image.values()))), per_image,
                               history, predictions=predictions, predictor=predictor,
                               run_dir=None if row.model == "otsu" else run_dir)
        result.seconds = time.perf_counter() - started
        print_fn(f"{row.label}: " + (f"DSB {result.score:.3f}" if not result.skipped
                                     else f"skipped, {result.skipped}")
                 + f" ({result.seconds:.0f} s)")
        self.results.append(result)
        return result

    def run_all(self, rows: Sequence[Row], print_fn: Callable[[str], None] = print
                ) -> list[RowResult]:
        """:meth:`run` each row in order."""
        return [self.run(row, print_fn) for row in rows]

    def _run_dir(self, row: Row, *settings) -> Path:
        """``run_root/<row label>-<digest>``: the digest covers the row, the mode, the seed,
        the split and every setting passed (the model's recipe, the training config), so the
        same row finds its folder again after a restart and a changed row never resumes a
        run made with other settings."""
        slug = "".join(c if c.isalnum() else "-" for c in row.label.lower()).strip("-")
        record = [dataclasses.asdict(row), self.mode, self.seed, dataclasses.asdict(self.budget),
                  [d.name for d in self.train_dirs], *settings]
        digest = hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode())
        return self.run_root / f"{slug[:60]}-{digest.hexdigest()[:8]}"

    def add_run(self, label: str, run_dir: str | Path,
                print_fn: Callable[[str], None] = print) -> RowResult:
        """Score a run made elsewhere (``python -m course_lib.train nuclei ... --run-dir``,
        or a row's folder from an earlier session) as a row of the table: its final weights
        on the validation images, its loss curves from ``logs/train.csv``.

        Raises:
            course_lib.shipped.ShippedModelError: the folder holds no finished model.
        """
        from course_lib import shipped

        started = time.perf_counter()
        loaded = shipped.load(run_dir)
        result = score_result(Row(label, loaded.kind), loaded.labels, self.validation())
        result.history, result.run_dir = read_history(run_dir), Path(run_dir)
        result.seconds = time.perf_counter() - started
        print_fn(f"{label}: DSB {result.score:.3f} (read from {run_dir}, "
                 f"{result.seconds:.0f} s to score)")
        self.results.append(result)
        return result

    def _shared_model(self, row: Row, build: Callable[[], tuple]):
        """The model for ``row``'s architecture, built once and reset to its first weights."""
        key = row.architecture(self.mode)
        if key not in self._models:
            from course_lib import config as cfg_mod

            cfg_mod.set_seed(self.seed)
            model, extra = build()
            trained = model[0] if isinstance(model, tuple) else model  # (training, inference)
            self._models[key] = (model, trained.get_weights(), extra)
        model, initial, extra = self._models[key]
        (model[0] if isinstance(model, tuple) else model).set_weights(initial)
        return model, extra

    # ------------------------------------------------------------------ the three models
    def _otsu(self, row: Row) -> tuple[Callable, dict, None]:
        from course_lib.models.classical import otsu_instances

        return otsu_instances, {}, None

    def _flips(self, row: Row):
        from course_lib.data.augment import Augmenter, FlipLeftRight, FlipUpDown

        return Augmenter([FlipLeftRight(), FlipUpDown()], seed=self.seed) if row.flips else None

    def _unet(self, row: Row) -> tuple[Callable, dict, Path]:
        from course_lib import shipped
        from course_lib.models import unet_training as ut
        from course_lib.ops.watershed import watershed_instances
        from course_lib.training.engine import TrainConfig, train

        base = ut.recipe_for_mode(self.mode, seed=self.seed)
        tile = int((self.budget.unet_tile or base.tile_size) * row.size_factor)
        recipe = dataclasses.replace(base, tile_size=tile,
                                     margin=min(base.margin, tile // 4))
        if self._unet_samples is None:    # decoded once, shared by every U-Net row
            from course_lib.data.coco import DsbFolderSamples

            self._unet_samples = ut.CachedSamples(DsbFolderSamples(sample_dirs=self.train_dirs),
                                                  maxsize=len(self.train_dirs))
        dataset = ut.training_dataset(self.train_dirs, recipe, augmenter=self._flips(row),
                                      provider=self._unet_samples)

        def build():
            norm = ut.adapted_normalization(dataset, recipe.norm_batches)
            return ut.build_recipe_unet(recipe, norm), None

        model, _ = self._shared_model(row, build)
        cfg = TrainConfig(epochs=self.budget.unet_epochs, optimizer="adamw",
                          learning_rate=recipe.learning_rate, weight_decay=1e-4, clipnorm=5.0,
                          steps_per_epoch=min(self.budget.unet_steps or len(dataset),
                                              len(dataset)),
                          tensorboard=False, verbose=0, seed=self.seed)
        run_dir = self._run_dir(row, dataclasses.asdict(recipe), dataclasses.asdict(cfg))
        train(model, dataset, run_dir, cfg, loss="binary_crossentropy", model_name="unet-nuclei",
              print_fn=lambda s: None)     # resumes (or only loads) a run found there
        shipped.write_model_spec(run_dir, spec={"kind": "unet", "name": "unet-nuclei",
                                                "unet_recipe": dataclasses.asdict(recipe)})

        def predict(image):
            return watershed_instances(ut.predict_probability(model, image, recipe))

        return predict, read_history(run_dir), run_dir

    def _maskrcnn(self, row: Row) -> tuple[Callable, dict, Path]:
        from course_lib import shipped
        from course_lib.data.coco import DsbFolderSamples
        from course_lib.data.pipeline import MaskRCNNDataset
        from course_lib.models import maskrcnn
        from course_lib.ops.masks import detections_to_labels
        from course_lib.training.engine import TrainConfig, train

        settings = course_config.FULL if self.mode == "full" else course_config.QUICK
        mcfg = maskrcnn.nuclei_config(self.mode, anchor_scales=tuple(row.anchors),
                                      backbone=row.backbone or _backbone(self.mode))
        provider = DsbFolderSamples(sample_dirs=self.train_dirs[:self.budget.maskrcnn_images],
                                    holes=row.holes)
        dataset = MaskRCNNDataset.for_config(mcfg, provider, batch_size=settings.batch_size,
                                             augmenter=self._flips(row), seed=self.seed)
        (model, inference), _ = self._shared_model(
            row, lambda: (maskrcnn.build_models(mcfg), None))
        steps = min(self.budget.maskrcnn_steps or len(dataset), len(dataset))
        if self.mode == "quick":  # a few steps from scratch: AdamW moves fast enough to see
            opt = dict(optimizer="adamw", learning_rate=3e-3, warmup_steps=0)
        else:   # the paper's SGD, its rate scaled linearly from 16 images a batch to ours
            opt = dict(optimizer="sgd", learning_rate=0.02 * settings.batch_size / 16,
                       momentum=0.9, warmup_steps=min(500, steps))
        cfg = TrainConfig(epochs=self.budget.maskrcnn_epochs, steps_per_epoch=steps,
                          weight_decay=1e-4, clipnorm=5.0, tensorboard=False, verbose=0,
                          seed=self.seed, **opt)
        run_dir = self._run_dir(row, mcfg.to_dict(), dataclasses.asdict(cfg))
        train(model, dataset, run_dir, cfg, model_name="maskrcnn-nuclei",
              print_fn=lambda s: None)     # resumes (or only loads) a run found there
        shipped.write_model_spec(run_dir, spec={"kind": "maskrcnn", "name": "maskrcnn-nuclei",
                                                "config": mcfg.to_dict(), "tiled": False})

        def predict(image, min_score=0.5):
            return detections_to_labels(
                maskrcnn.detect(inference, [image], min_score=min_score)[0], min_score)

        return predict, read_history(run_dir), run_dir

    # ------------------------------------------------------------------ the table
    def table(self) -> str:
        """The results as a text table: row, our DSB score, gain over the baseline, report."""
        base = next((r.score for r in self.results if r.row.model == "otsu"), float("nan"))
        lines = [f"{'model and training':<55} {'DSB (ours)':>10} {'vs Otsu':>8} "
                 f"{'report*':>12} {'time':>6}"]
        for r in self.results:
            ours = "skipped" if r.skipped else f"{r.score:.3f}"
            gain = "" if r.skipped or r.row.model == "otsu" else f"{r.score - base:+.3f}"
            lines.append(f"{r.row.label:<55} {ours:>10} {gain:>8} {r.row.report:>12} "
                         f"{r.seconds:>5.0f}s")
        return "\n".join(lines)

    def best(self, model: str | None = None) -> RowResult:
        """The highest-scoring row that ran (of one model kind when ``model`` is given)."""
        ran = [r for r in self.results if not r.skipped and (model is None or r.row.model == model)]
        if not ran:
            raise ValueError(f"no row of model {model!r} has run yet")
        return max(ran, key=lambda r: r.score)
