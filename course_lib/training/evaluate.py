"""Evaluation and export: DSB score, Kaggle submission, label PNGs and COCO results.

Taught in notebooks/11_train_nuclei.

Everything here takes a *predictor*: a function from one ``H×W×3`` uint8 image to its
``H×W`` int32 instance label image (0 background), such as ``recipe.predictor(model)`` of
:mod:`course_lib.training.recipes`. Every loop over images shows a progress bar (tqdm).

Every loop also survives a bad file: a sample or image that cannot be read is skipped, logged
with its name and reason, and listed in the result's ``skipped``
(:mod:`course_lib.data.skips`); the rest is scored or predicted and written.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

Predictor = Callable[[np.ndarray], np.ndarray]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class EvaluationSamples:
    """``(name, image, true labels)`` of samples read one at a time, in order, skipping the
    ones that cannot be read.

    Evaluation runs after training, often hours of it: one corrupt validation file must not
    throw the score away. A sample whose loading raises one of
    :data:`course_lib.data.skips.SKIPPABLE_ERRORS` is logged with its name and reason and
    left out; ``skipped`` lists those of the last pass (:class:`~course_lib.data.skips.Skipped`).

    Args:
        names: one name per sample.
        load: ``load(i) -> (image H×W×3 uint8, masks H×W×N bool)`` of sample ``i``.

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, names: Sequence[str], load: Callable[[int], tuple]):
        self.names, self.load = [str(n) for n in names], load
        self.skipped: list = []

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        from course_lib.data.skips import load_or_skip
        from course_lib.ops.masks import masks_to_labels

        self.skipped = []
        for i, name in enumerate(self.names):
            sample = load_or_skip(lambda i=i: self.load(i), name, self.skipped)
            if sample is not None:
                image, masks = sample
                yield name, image, masks_to_labels(masks)


def folder_samples(sample_dirs: Sequence[str | Path]) -> EvaluationSamples:
    """``(name, image, true labels)`` of DSB-layout sample folders, read one at a time;
    unreadable ones are skipped and listed in ``.skipped`` (:class:`EvaluationSamples`).

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.nuclei import load_sample

    dirs = [Path(d) for d in sample_dirs]
    return EvaluationSamples([d.name for d in dirs], lambda i: load_sample(dirs[i]))


#: Where Kaggle's stage-1 test set is looked for, below ``<data root>/dsb2018`` (the layout of
#: the competition's files: ``stage1_test/<id>/images/<id>.png`` and the solution CSV that
#: was published after stage 1, with ``ImageId, EncodedPixels, Height, Width`` columns).
STAGE1_TEST = ("stage1_test", "stage1_solution.csv")


def stage1_test_samples(root: str | Path | None = None) -> EvaluationSamples | None:
    """``(name, image, true labels)`` of Kaggle's stage-1 test images, or ``None`` when the
    images or the solution file are not there.

    The nuclei report scored its models on these images, so they are the one set on which our
    scores and the report's compare. The course never needs them (they are not part of the
    602 training images); when both are present, chapter 11 scores the shipped models on them.

    Args:
        root: the folder holding ``stage1_test/`` and ``stage1_solution.csv`` (default
            ``<data root>/dsb2018``).

    Raises:
        ValueError: the solution file lists an image that has no folder (names both).

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib import config
    from course_lib.data.io import read_image
    from course_lib.data.nuclei import read_submission

    root = Path(root) if root is not None else config.data_root() / "dsb2018"
    folder, solution = root / STAGE1_TEST[0], root / STAGE1_TEST[1]
    if not (folder.is_dir() and solution.is_file()):
        return None
    truth = read_submission(solution)
    names = sorted(truth)
    missing = [n for n in names if not (folder / n / "images" / f"{n}.png").is_file()]
    if missing:
        raise ValueError(f"{solution} lists {len(missing)} image(s) with no "
                         f"{folder}/<id>/images/<id>.png, e.g. {missing[0]}; copy the whole "
                         "stage1_test folder next to it.")

    def load(i: int):
        image = read_image(folder / names[i] / "images" / f"{names[i]}.png")
        return image, truth[names[i]]

    return EvaluationSamples(names, load)


def provider_samples(provider) -> EvaluationSamples:
    """``(name, image, true labels)`` of a sample provider (``len``, ``load``, ``name``);
    unreadable ones are skipped and listed in ``.skipped`` (:class:`EvaluationSamples`).

    Taught in notebooks/11_train_nuclei.
    """
    names = [provider.name(i) if hasattr(provider, "name") else str(i)
             for i in range(len(provider))]
    return EvaluationSamples(names, lambda i: provider.load(i)[:2])


def evaluate_dsb(predict: Predictor, samples, progress: bool = True) -> dict:
    """The Data Science Bowl score of ``predict`` over ``samples``, with a progress bar.

    Args:
        predict: image -> predicted labels.
        samples: iterable of ``(name, image, true labels)`` (:func:`folder_samples`,
            :func:`provider_samples`); ``len`` is used for the bar when present.
        progress: show the bar.

    Returns:
        ``{"score": mean, "per_image": {name: score}, "skipped": [...]}``; the per-image
        scores come from :func:`course_lib.metrics.dsb_average_precision`, the mean is over
        the images scored; ``skipped`` lists the samples that could not be read (the
        ``skipped`` of ``samples``, empty for a plain iterable).

    Raises:
        ValueError: no sample could be scored.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.skips import describe_skips
    from course_lib.metrics import dsb_average_precision

    per_image = {}
    total = len(samples) if hasattr(samples, "__len__") else None
    for name, image, truth in tqdm(samples, total=total, desc="DSB score", unit="image",
                                   disable=not progress):
        per_image[name] = float(dsb_average_precision(truth, predict(image)))
    skipped = list(getattr(samples, "skipped", []))
    if not per_image:
        why = f" ({describe_skips(skipped)})" if skipped else ""
        raise ValueError(f"evaluate_dsb: no samples to score{why}")
    return {"score": float(np.mean(list(per_image.values()))), "per_image": per_image,
            "skipped": skipped}


def _unique_ids(found: list[tuple[str, Path]], folder: Path) -> list[tuple[str, Path]]:
    """Give inputs that share an id (``x.png`` beside ``x.jpg``) distinct ids, and say so.

    Outputs are named by id (``<id>.png``, one CSV row per id), so two inputs with one id
    would silently overwrite each other. A plain file among them is identified by its full
    file name instead (``x.png``, ``x.jpg``); a DSB sample folder keeps its name, the
    dataset's own id.
    """
    counts = Counter(image_id for image_id, _ in found)
    out, renamed = [], []
    for image_id, path in found:
        if counts[image_id] > 1 and path.parent == folder:  # a plain file, not a sample folder
            image_id = path.name
            renamed.append(image_id)
        out.append((image_id, path))
    if renamed:
        log.warning("%d input files share their name with another input; they are named by "
                    "their full file name instead, so no output overwrites another: %s",
                    len(renamed), ", ".join(renamed[:6]) + (" ..." if len(renamed) > 6 else ""))
    ids = Counter(image_id for image_id, _ in out)
    clashing = sorted(i for i, n in ids.items() if n > 1)
    if clashing:  # e.g. a file "x.png" beside a sample folder "x.png": too odd to guess
        raise ValueError(f"{folder}: several inputs would be written as {clashing}; rename "
                         "them so that each image has a name of its own.")
    return out


def image_files(folder: str | Path) -> list[tuple[str, Path]]:
    """``(image id, path)`` of the images in ``folder``, sorted: plain image files, or DSB
    sample folders (``<id>/images/<id>.png``).

    The id is the file's stem (the sample folder's name). Two inputs with one id (``x.png``
    beside ``x.jpg``) would overwrite each other's outputs, so such files are identified by
    their full file name instead, with a logged warning.

    Raises:
        FileNotFoundError: no such folder, or no image in it (names the layouts looked for).

    Taught in notebooks/11_train_nuclei.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder of images.")
    found = [(p.stem, p) for p in sorted(folder.iterdir())
             if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    for d in sorted(p for p in folder.iterdir() if p.is_dir()):
        found.extend((d.name, p) for p in sorted((d / "images").glob(d.name + ".*"))[:1])
    if not found:
        raise FileNotFoundError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)} files, "
                                "or DSB-style <id>/images/<id>.png).")
    return _unique_ids(found, folder)


class Predictions(dict):
    """What :func:`predict_folder` returns: ``{image id: labels}``, plus ``skipped``, the
    images that could not be read (:class:`~course_lib.data.skips.Skipped` entries).

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self):
        super().__init__()
        self.skipped: list = []


def predict_folder(predict: Predictor, folder: str | Path, out_dir: str | Path,
                   submission: str | Path | None = None, *, coco_results: str | Path | None = None,
                   scores: Callable[[np.ndarray], Sequence[float]] | None = None,
                   progress: bool = True) -> Predictions:
    """Predict every image of ``folder``; write ``out_dir/<id>.png`` label images (16-bit).

    Args:
        predict: image -> labels.
        folder: images (see :func:`image_files`).
        out_dir: where the label PNGs go (created).
        submission: also write a Kaggle DSB submission CSV there
            (:func:`course_lib.data.nuclei.write_submission`).
        coco_results: also write COCO results json there (RLE masks via pycocotools, image
            ids ``1..n`` in sorted order, category 1; the mapping is saved beside it as
            ``<name>.image_ids.json``).
        scores: labels -> one confidence per instance for the COCO results (default 1.0).

    An image that cannot be read is skipped (logged, listed in the result's ``skipped``) and
    the others are predicted and written: one corrupt file must not cost the whole
    submission.

    Returns:
        :class:`Predictions`: ``{image id: labels}`` and ``.skipped``.

    Taught in notebooks/11_train_nuclei.
    """
    from PIL import Image

    from course_lib.data.io import read_image
    from course_lib.data.skips import load_or_skip

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = Predictions()
    for image_id, path in tqdm(image_files(folder), desc="predict", unit="image",
                               disable=not progress):
        image = load_or_skip(lambda path=path: read_image(path), image_id,
                             predictions.skipped, "image")
        if image is None:
            continue
        labels = np.asarray(predict(image), np.int32)
        if labels.max(initial=0) > 65535:
            raise ValueError(f"{path}: {labels.max()} instances do not fit a 16-bit PNG")
        Image.fromarray(labels.astype(np.uint16)).save(out_dir / f"{image_id}.png")
        predictions[image_id] = labels
    if submission is not None:
        from course_lib.data.nuclei import write_submission

        write_submission(submission, predictions)
    if coco_results is not None:
        from course_lib.metrics import labels_to_detections

        ids = list(predictions)
        detections = labels_to_detections(
            [predictions[i] for i in ids],
            scores=None if scores is None else [scores(predictions[i]) for i in ids],
            image_ids=list(range(1, len(ids) + 1)))
        coco_results = Path(coco_results)
        coco_results.write_text(json.dumps(detections))
        coco_results.with_suffix(".image_ids.json").write_text(
            json.dumps({i: n for n, i in enumerate(ids, start=1)}, indent=1))
    return predictions


def _coco_entries(masks: np.ndarray, class_ids, image_id: int) -> list[dict]:
    """COCO dicts (segmentation RLE, bbox x-y-w-h, area, category) of one image's masks."""
    from pycocotools import mask as mask_utils

    from course_lib.ops.masks import coco_rle_encode

    masks = np.asarray(masks, bool)
    if masks.ndim == 2:
        masks = masks[..., None]
    rles = coco_rle_encode(masks) if masks.shape[-1] else []
    out = []
    for k, rle in enumerate(rles):
        coded = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
        out.append({"image_id": int(image_id), "category_id": int(class_ids[k]),
                    "segmentation": rle, "area": float(mask_utils.area(coded)),
                    "bbox": [float(v) for v in mask_utils.toBbox(coded)]})
    return out


def evaluate_coco(detect: Callable[[np.ndarray], dict], provider, class_names=None,
                  progress: bool = True, *, per_class: bool = False) -> dict:
    """COCO box and mask AP of ``detect`` over a sample provider, through pycocotools.

    Args:
        detect: image -> ``{"masks": H×W×N bool, "class_ids": (N,), "scores": (N,)}`` (what
            :func:`course_lib.models.maskrcnn.detect` returns for one image).
        provider: sample provider (``len``, ``load(i) -> (image, masks, class_ids)``).
        class_names: names by class id (``[0]`` is the background), for the category list.
        progress: show a progress bar.
        per_class: also return each class's AP (:func:`course_lib.metrics.per_class_ap`).

    Returns:
        ``{"segm": {...}, "bbox": {...}}``, each the twelve COCO numbers of
        :func:`course_lib.metrics.coco_evaluate` (``AP``, ``AP50``, ...); with ``per_class``
        also ``"per_class": {"segm": {class id: AP}, "bbox": {...}}`` over the classes found
        in the ground truth or the detections (-1.0: no ground truth of that class); and
        ``"skipped"``: the samples that could not be read, left out of the score (logged,
        :class:`~course_lib.data.skips.Skipped` entries).

    Raises:
        ValueError: no sample could be read.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.data.skips import describe_skips, load_or_skip
    from course_lib.metrics import coco_evaluate, per_class_ap

    images, annotations, detections, skipped = [], [], [], []
    categories = set()
    for i in tqdm(range(len(provider)), desc="COCO eval", unit="image", disable=not progress):
        name = provider.name(i) if hasattr(provider, "name") else str(i)
        sample = load_or_skip(lambda i=i: provider.load(i), name, skipped)
        if sample is None:  # an unreadable validation sample: left out, listed in "skipped"
            continue
        image, masks, class_ids = sample
        image_id = i + 1
        images.append({"id": image_id, "height": int(image.shape[0]),
                       "width": int(image.shape[1]), "file_name": f"{image_id}.png"})
        for entry in _coco_entries(masks, class_ids, image_id):
            annotations.append({**entry, "id": len(annotations) + 1, "iscrowd": 0})
        categories.update(int(c) for c in class_ids)
        found = detect(image)
        for entry, score in zip(_coco_entries(found["masks"], found["class_ids"], image_id),
                                found["scores"], strict=True):
            detections.append({**entry, "score": float(score)})
            categories.add(entry["category_id"])
    if not images:
        raise ValueError(f"evaluate_coco: no samples to score ({describe_skips(skipped)})")
    names = list(class_names or [])
    cats = [{"id": c, "name": names[c] if c < len(names) else str(c)} for c in sorted(categories)]
    gt = {"images": images, "annotations": annotations, "categories": cats}
    out, classes = {}, {}
    for iou_type in ("segm", "bbox"):
        out[iou_type], coco_eval = coco_evaluate(gt, detections, iou_type, return_eval=True)
        classes[iou_type] = per_class_ap(coco_eval)
    if per_class:
        out["per_class"] = classes
    out["skipped"] = skipped
    return out
