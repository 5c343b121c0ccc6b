"""Evaluation and export: DSB score, Kaggle submission, label PNGs and COCO results.

Taught in notebooks/11_train_nuclei.

Everything here takes a *predictor*: a function from one ``H×W×3`` uint8 image to its
``H×W`` int32 instance label image (0 background), such as ``recipe.predictor(model)`` of
:mod:`course_lib.training.recipes`. Every loop over images shows a progress bar (tqdm).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

Predictor = Callable[[np.ndarray], np.ndarray]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def folder_samples(sample_dirs: Sequence[str | Path]) -> Iterable[tuple[str, np.ndarray,
                                                                        np.ndarray]]:
    """``(name, image, true labels)`` of DSB-layout sample folders, read one at a time.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.nuclei import load_sample
    from course_lib.ops.masks import masks_to_labels

    class _Samples:
        def __len__(self):
            return len(sample_dirs)

        def __iter__(self):
            for d in sample_dirs:
                image, masks = load_sample(d)
                yield Path(d).name, image, masks_to_labels(masks)

    return _Samples()


def provider_samples(provider) -> Iterable[tuple[str, np.ndarray, np.ndarray]]:
    """``(name, image, true labels)`` of a sample provider (``len``, ``load``, ``name``).

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.ops.masks import masks_to_labels

    class _Samples:
        def __len__(self):
            return len(provider)

        def __iter__(self):
            for i in range(len(provider)):
                image, masks, _ = provider.load(i)
                name = provider.name(i) if hasattr(provider, "name") else str(i)
                yield name, image, masks_to_labels(masks)

    return _Samples()


def evaluate_dsb(predict: Predictor, samples, progress: bool = True) -> dict:
    """The Data Science Bowl score of ``predict`` over ``samples``, with a progress bar.

    Args:
        predict: image -> predicted labels.
        samples: iterable of ``(name, image, true labels)`` (:func:`folder_samples`,
            :func:`provider_samples`); ``len`` is used for the bar when present.
        progress: show the bar.

    Returns:
        ``{"score": mean, "per_image": {name: score}}``; the per-image scores come from
        :func:`course_lib.metrics.dsb_average_precision`.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.metrics import dsb_average_precision

    per_image = {}
    total = len(samples) if hasattr(samples, "__len__") else None
    for name, image, truth in tqdm(samples, total=total, desc="DSB score", unit="image",
                                   disable=not progress):
        per_image[name] = float(dsb_average_precision(truth, predict(image)))
    if not per_image:
        raise ValueError("evaluate_dsb: no samples to score")
    return {"score": float(np.mean(list(per_image.values()))), "per_image": per_image}


def image_files(folder: str | Path) -> list[tuple[str, Path]]:
    """``(image id, path)`` of the images in ``folder``, sorted: plain image files, or DSB
    sample folders (``<id>/images/<id>.png``).

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
    return found


def predict_folder(predict: Predictor, folder: str | Path, out_dir: str | Path,
                   submission: str | Path | None = None, coco_results: str | Path | None = None,
                   scores: Callable[[np.ndarray], Sequence[float]] | None = None,
                   progress: bool = True) -> dict[str, np.ndarray]:
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

    Returns:
        ``{image id: labels}``.

    Taught in notebooks/11_train_nuclei.
    """
    from PIL import Image

    from course_lib.data.io import read_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    predictions = {}
    for image_id, path in tqdm(image_files(folder), desc="predict", unit="image",
                               disable=not progress):
        labels = np.asarray(predict(read_image(path)), np.int32)
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
                  progress: bool = True, per_class: bool = False) -> dict:
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
        in the ground truth or the detections (-1.0: no ground truth of that class).

    Taught in notebooks/12_train_voc.
    """
    from course_lib.metrics import coco_evaluate, per_class_ap

    images, annotations, detections = [], [], []
    categories = set()
    for i in tqdm(range(len(provider)), desc="COCO eval", unit="image", disable=not progress):
        image, masks, class_ids = provider.load(i)
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
    names = list(class_names or [])
    cats = [{"id": c, "name": names[c] if c < len(names) else str(c)} for c in sorted(categories)]
    gt = {"images": images, "annotations": annotations, "categories": cats}
    out, classes = {}, {}
    for iou_type in ("segm", "bbox"):
        out[iou_type], coco_eval = coco_evaluate(gt, detections, iou_type, return_eval=True)
        classes[iou_type] = per_class_ap(coco_eval)
    if per_class:
        out["per_class"] = classes
    return out
