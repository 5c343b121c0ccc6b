"""Scoring instance segmentations: mask IoU, the Data Science Bowl 2018 metric, and COCO AP.

Taught in notebooks/02_metrics.

Two scores are used in the course and they answer different questions:

- **DSB 2018** (:func:`dsb_average_precision`, :func:`dsb_score`): for one image, at each IoU
  threshold ``t`` in 0.50, 0.55, ..., 0.95 a predicted object *hits* a true object when their
  IoU is **strictly greater** than ``t``; ``precision(t) = TP / (TP + FP + FN)``. The image's
  score is the mean over thresholds; the dataset's score is the mean over images. Predictions
  carry no scores, and misses and false alarms cost the same.
- **COCO AP** (:func:`coco_evaluate`, pycocotools): detections are ranked by score, a match
  needs IoU ``>=`` the threshold, and precision ``TP / (TP + FP)`` is integrated over recall;
  101-point interpolated, averaged over the same ten thresholds and over categories.

Label images follow DESIGN.md: ``H×W`` integers, 0 background; instance masks ``H×W×N`` bool.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Sequence

import numpy as np

#: The DSB 2018 IoU thresholds 0.50, 0.55, ..., 0.95. Written as k/100 so that each is the
#: double nearest to the decimal, like an IoU computed as one division (3/4 == 0.75 exactly).
DSB_THRESHOLDS = np.arange(50, 100, 5) / 100.0


# ---------------------------------------------------------------------------------------
# IoU matrices
# ---------------------------------------------------------------------------------------


def _flat_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """Flattened label values as integers, with a clear error for labels that are not."""
    flat = labels.ravel()
    if flat.dtype == bool:
        return flat.astype(np.intp)
    if not np.issubdtype(flat.dtype, np.integer):
        if not np.issubdtype(flat.dtype, np.floating) or not np.all(np.mod(flat, 1) == 0):
            raise ValueError(f"iou_matrix: {name} must hold integer labels (0 background), "
                             f"got dtype {flat.dtype}; pass a label image, not a probability map")
    if flat.size and flat.min() < 0:
        raise ValueError(f"iou_matrix: {name} holds negative labels; 0 is background and "
                         "objects are 1, 2, ...")
    return flat.astype(np.intp, copy=False)


def _renumber(flat: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Labels renumbered 0 (background), 1..n in increasing order; n and the original ids."""
    ids, inverse = np.unique(flat, return_inverse=True)
    if ids[0] != 0:  # keep index 0 for the background even when no pixel is background
        ids = np.concatenate([[0], ids])
        inverse = inverse + 1
    return inverse.astype(np.intp).ravel(), len(ids) - 1, ids[1:]


def _label_iou(true_labels: np.ndarray, pred_labels: np.ndarray):
    """IoU matrix of two label images by counting label co-occurrences; see iou_matrix."""
    if true_labels.shape != pred_labels.shape:
        raise ValueError(f"iou_matrix: label images differ in shape: {true_labels.shape} "
                         f"vs {pred_labels.shape}")
    t, p = _flat_labels(true_labels, "true"), _flat_labels(pred_labels, "pred")
    t_top = int(t.max()) if t.size else 0
    p_top = int(p.max()) if p.size else 0
    if (t_top + 1) * (p_top + 1) <= max(4 * t.size, 1 << 16):
        # Usual case, labels 1..N: use the values as they are (no sort needed); labels that
        # do not occur are dropped below.
        true_ids, pred_ids = np.arange(1, t_top + 1), np.arange(1, p_top + 1)
    else:  # sparse or huge labels: renumber so the table stays (N + 1) x (M + 1)
        t, t_top, true_ids = _renumber(t)
        p, p_top, pred_ids = _renumber(p)
    # Each pixel votes for the pair (its true label, its predicted label): one bincount over
    # a combined index gives the whole contingency table, intersections included.
    width = p_top + 1
    table = np.bincount(t * width + p, minlength=(t_top + 1) * width)
    table = table.reshape(t_top + 1, width)
    true_area = table.sum(axis=1)[1:]
    pred_area = table.sum(axis=0)[1:]
    # Drop label values that do not occur (e.g. 1..N with a gap).
    keep_t, keep_p = true_area > 0, pred_area > 0
    inter = table[1:, 1:][keep_t][:, keep_p].astype(np.float64)
    union = true_area[keep_t][:, None] + pred_area[keep_p][None, :] - inter
    return inter / union, true_ids[keep_t], pred_ids[keep_p]


def _mask_iou(true_masks: np.ndarray, pred_masks: np.ndarray):
    """IoU matrix of two mask stacks (masks may overlap) by one matrix product."""
    if true_masks.shape[:2] != pred_masks.shape[:2]:
        raise ValueError(f"iou_matrix: mask stacks differ in image size: "
                         f"{true_masks.shape[:2]} vs {pred_masks.shape[:2]}")
    pixels = true_masks.shape[0] * true_masks.shape[1]
    a = true_masks.reshape(pixels, true_masks.shape[-1]).astype(np.float32)
    b = pred_masks.reshape(pixels, pred_masks.shape[-1]).astype(np.float32)
    # float32 sums of 0/1 are exact up to 2**24 pixels; fall back to float64 beyond.
    if a.shape[0] >= 2**24:
        a, b = a.astype(np.float64), b.astype(np.float64)
    inter = (a.T @ b).astype(np.float64)
    union = a.sum(axis=0, dtype=np.float64)[:, None] + b.sum(axis=0, dtype=np.float64) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return iou


def iou_matrix(true: np.ndarray, pred: np.ndarray, return_labels: bool = False):
    """IoU of every true object with every predicted object.

    Two label images (``H×W`` ints) are compared by counting how often each pair of labels
    occurs at the same pixel (one ``np.bincount`` over ``true * (P + 1) + pred``), which gives
    every intersection at once; union = area_true + area_pred - intersection. Two mask stacks
    (``H×W×N`` and ``H×W×M`` bool, which may overlap) are compared by a matrix product of the
    flattened masks.

    Args:
        true: ``H×W`` label image or ``H×W×N`` masks.
        pred: the same kind and image size.
        return_labels: for label images, also return the label values of the rows and columns.

    Returns:
        ``(N, M)`` float64 IoU in ``[0, 1]``; for label images, rows and columns follow the
        increasing order of the labels that occur (0, the background, excluded). With
        ``return_labels``: ``(iou, true_ids, pred_ids)``.

    Taught in notebooks/02_metrics.
    """
    true, pred = np.asarray(true), np.asarray(pred)
    if true.ndim != pred.ndim or true.ndim not in (2, 3):
        raise ValueError(
            f"iou_matrix: pass two H×W label images or two H×W×N mask stacks, got shapes "
            f"{true.shape} and {pred.shape}"
        )
    if true.ndim == 2:
        iou, true_ids, pred_ids = _label_iou(true, pred)
        return (iou, true_ids, pred_ids) if return_labels else iou
    iou = _mask_iou(true != 0, pred != 0)
    if return_labels:
        return iou, np.arange(1, iou.shape[0] + 1), np.arange(1, iou.shape[1] + 1)
    return iou


def mask_iou(mask_a: np.ndarray, mask_b: np.ndarray) -> float:
    """IoU of two single masks, ``|A ∩ B| / |A ∪ B|``; two empty masks give 0.0.

    Taught in notebooks/02_metrics.
    """
    a, b = np.asarray(mask_a) != 0, np.asarray(mask_b) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask_iou: masks differ in shape: {a.shape} vs {b.shape}")
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


# ---------------------------------------------------------------------------------------
# The Data Science Bowl 2018 metric
# ---------------------------------------------------------------------------------------


def _count_matches(hits: np.ndarray) -> int:
    """Number of one-to-one matches among ``hits`` (N, M) bool.

    Above IoU 0.5 (strictly) an object can overlap at most one other object that much, so
    every row and column holds at most one hit and the count is simply ``hits.sum()``. Only at
    ``>= 0.5`` or below can a row hold two hits (a nucleus split into two exact halves); then
    the largest one-to-one matching is counted.
    """
    if hits.size == 0:
        return 0
    if hits.sum(axis=0).max() <= 1 and hits.sum(axis=1).max() <= 1:
        return int(hits.sum())
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_bipartite_matching

    match = maximum_bipartite_matching(csr_matrix(hits), perm_type="column")
    return int((match >= 0).sum())


def precision_at(iou: np.ndarray, threshold: float, strict: bool = True) -> float:
    """The DSB precision ``TP / (TP + FP + FN)`` at one IoU threshold.

    A pair (true ``i``, predicted ``j``) is a hit when ``iou[i, j] > threshold`` (``>=`` with
    ``strict=False``). TP counts one-to-one hits, FN the true objects left unmatched, FP the
    predictions left unmatched.

    Args:
        iou: ``(N, M)`` IoU matrix, true objects in rows (see :func:`iou_matrix`).
        threshold: IoU threshold.
        strict: ``True`` for the DSB's ``>``; ``False`` for pycocotools' / StarDist's ``>=``.

    Returns:
        The precision; ``1.0`` when there is nothing at all (N = M = 0), by the convention of
        :func:`dsb_average_precision`.

    Taught in notebooks/02_metrics.
    """
    iou = np.asarray(iou, dtype=np.float64)
    if iou.ndim != 2:
        raise ValueError(f"precision_at: iou must be an (N, M) matrix, got shape {iou.shape}")
    tp, fp, fn = match_counts(iou, threshold, strict)
    total = tp + fp + fn
    return 1.0 if total == 0 else tp / total


def match_counts(iou: np.ndarray, threshold: float, strict: bool = True) -> tuple[int, int, int]:
    """``(TP, FP, FN)`` at one IoU threshold from an ``(N, M)`` IoU matrix (true in rows).

    TP is the number of one-to-one matches with IoU ``> threshold`` (``>=`` when not
    ``strict``), FP = M - TP and FN = N - TP.

    Taught in notebooks/02_metrics.
    """
    iou = np.asarray(iou, dtype=np.float64)
    hits = iou > threshold if strict else iou >= threshold
    tp = _count_matches(hits)
    return tp, iou.shape[1] - tp, iou.shape[0] - tp


def dsb_average_precision(true_labels: np.ndarray, pred_labels: np.ndarray,
                          thresholds: Sequence[float] = DSB_THRESHOLDS, strict: bool = True,
                          return_details: bool = False):
    """One image's score in the 2018 Data Science Bowl.

    At each IoU threshold ``t`` (0.50, 0.55, ..., 0.95) a predicted object hits a true object
    when their IoU is strictly above ``t``; ``precision(t) = TP / (TP + FP + FN)``; the score is
    the mean of the ten precisions.

    Edge cases (a convention: the competition's definition does not cover them): no true and
    no predicted objects scores **1.0** (nothing to find, nothing falsely found); objects on
    one side only score **0.0** (TP = 0). Overlapping predicted masks (possible with mask
    stacks, not with label images) are matched one-to-one, so one nucleus never counts twice.

    Args:
        true_labels: ``H×W`` label image of the ground truth (0 background); an ``H×W×N``
            mask stack also works.
        pred_labels: the prediction, same kind and size. Each predicted object must carry its
            own label: touching nuclei merged into one label count as one object.
        thresholds: IoU thresholds (default :data:`DSB_THRESHOLDS`).
        strict: ``True`` (the DSB's ``>``) or ``False`` (``>=``, as in pycocotools and StarDist).
        return_details: also return a dict of per-threshold arrays ``thresholds``, ``tp``,
            ``fp``, ``fn``, ``precision`` and the ``iou`` matrix.

    Returns:
        The score in ``[0, 1]``, or ``(score, details)``.

    Taught in notebooks/02_metrics.
    """
    iou = iou_matrix(true_labels, pred_labels)
    return _average_precision_from_iou(iou, thresholds, strict, return_details)


def _average_precision_from_iou(iou, thresholds, strict, return_details):
    thresholds = np.asarray(thresholds, dtype=np.float64).ravel()
    n_true, n_pred = iou.shape
    # All thresholds at once: hits[k, i, j] says whether pair (i, j) hits at threshold k.
    t = thresholds[:, None, None]
    hits = iou[None] > t if strict else iou[None] >= t
    if n_true and n_pred and (hits.sum(axis=1).max() > 1 or hits.sum(axis=2).max() > 1):
        # Some object hits two others (only possible at >= 0.5 or below): match one-to-one.
        tp = np.array([_count_matches(h) for h in hits], dtype=np.int64)
    else:
        tp = hits.sum(axis=(1, 2)).astype(np.int64)
    fp, fn = n_pred - tp, n_true - tp
    total = tp + fp + fn
    precision = np.where(total > 0, tp / np.maximum(total, 1), 1.0)
    score = float(precision.mean())
    if not return_details:
        return score
    details = {"thresholds": thresholds, "tp": tp, "fp": fp, "fn": fn,
               "precision": precision, "iou": iou}
    return score, details


def dsb_score(pairs: Iterable[tuple[np.ndarray, np.ndarray]], strict: bool = True,
              return_per_image: bool = False):
    """The DSB 2018 score of a dataset: mean of :func:`dsb_average_precision` over images.

    Args:
        pairs: ``(true_labels, pred_labels)`` for each image.
        strict: see :func:`dsb_average_precision`.
        return_per_image: also return the ``(n_images,)`` per-image scores.

    Returns:
        The mean score (or ``(mean, per_image)``). No images at all raises ``ValueError``.

    Taught in notebooks/02_metrics.
    """
    scores = np.array([dsb_average_precision(t, p, strict=strict) for t, p in pairs])
    if scores.size == 0:
        raise ValueError("dsb_score: no (true, pred) pairs given")
    mean = float(scores.mean())
    return (mean, scores) if return_per_image else mean


# ---------------------------------------------------------------------------------------
# COCO structures from label images and masks
# ---------------------------------------------------------------------------------------


def _rle_annotations(item: np.ndarray, name: str) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """COCO RLEs, areas and ``[x, y, w, h]`` boxes of a label image or an ``H×W×N`` stack."""
    from pycocotools import mask as mask_utils

    from course_lib.ops.masks import coco_rle_encode, coco_rle_encode_labels

    item = np.asarray(item)
    if item.ndim == 2:
        _, rles = coco_rle_encode_labels(item)
    elif item.ndim == 3:
        rles = coco_rle_encode(item)
    else:
        raise ValueError(f"{name}: expected an H×W label image or H×W×N masks, got {item.shape}")
    if not rles:
        return [], np.zeros(0), np.zeros((0, 4))
    as_bytes = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    return rles, mask_utils.area(as_bytes), mask_utils.toBbox(as_bytes)


def labels_to_coco(label_images: Sequence[np.ndarray], image_ids: Sequence[int] | None = None,
                   category_id: int = 1, category_name: str = "nucleus") -> dict:
    """A COCO ground-truth dict from label images (or mask stacks), ready for :func:`coco_evaluate`.

    Annotation ids start at 1 (pycocotools treats id 0 as "unmatched"); image ids default to
    ``1..n``. Segmentations are COCO RLEs with ``str`` counts, so the dict can be written with
    ``json.dump``.

    Args:
        label_images: ``H×W`` label images or ``H×W×N`` mask stacks, one per image.
        image_ids: one id per image (default ``1..n``).
        category_id: the single category's id.
        category_name: its name.

    Returns:
        ``{"images", "annotations", "categories"}``.

    Taught in notebooks/02_metrics.
    """
    image_ids = list(range(1, len(label_images) + 1)) if image_ids is None else list(image_ids)
    if len(image_ids) != len(label_images):
        raise ValueError(f"labels_to_coco: {len(label_images)} images but "
                         f"{len(image_ids)} image_ids")
    images, annotations = [], []
    for image_id, item in zip(image_ids, label_images, strict=True):
        item = np.asarray(item)
        images.append({"id": int(image_id), "height": int(item.shape[0]),
                       "width": int(item.shape[1]), "file_name": f"{image_id}.png"})
        rles, areas, bboxes = _rle_annotations(item, "labels_to_coco")
        for rle, area, bbox in zip(rles, areas, bboxes, strict=True):
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id),
                "category_id": int(category_id), "segmentation": rle, "area": float(area),
                "bbox": [float(v) for v in bbox], "iscrowd": 0,
            })
    return {"images": images, "annotations": annotations,
            "categories": [{"id": int(category_id), "name": category_name}]}


def masks_to_detections(masks: np.ndarray, scores: Sequence[float] | None, image_id: int,
                        category_id: int = 1) -> list[dict]:
    """COCO result dicts (``segmentation``, ``bbox``, ``score``) for one image's masks.

    Args:
        masks: ``H×W×N`` predicted masks (or an ``H×W`` label image).
        scores: ``N`` confidences (default 1.0 each: a method without scores, like U-Net).
        image_id: the image's id in the ground truth.
        category_id: the category predicted.

    Returns:
        ``N`` dicts, JSON-safe.

    Taught in notebooks/02_metrics.
    """
    rles, _, bboxes = _rle_annotations(masks, "masks_to_detections")
    n = len(rles)
    scores = np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64).ravel()
    if len(scores) != n:
        raise ValueError(f"masks_to_detections: {n} masks but {len(scores)} scores")
    return [{"image_id": int(image_id), "category_id": int(category_id), "segmentation": rle,
             "bbox": [float(v) for v in bbox], "score": float(s)}
            for rle, bbox, s in zip(rles, bboxes, scores, strict=True)]


def labels_to_detections(label_images: Sequence[np.ndarray],
                         scores: Sequence[Sequence[float] | None] | None = None,
                         image_ids: Sequence[int] | None = None,
                         category_id: int = 1) -> list[dict]:
    """COCO result dicts for several images' predicted label images (or mask stacks).

    Args:
        label_images: one prediction per image.
        scores: per image, one score per object in label order (default 1.0 each).
        image_ids: default ``1..n``, matching :func:`labels_to_coco`'s default.
        category_id: the category predicted.

    Returns:
        The detections of all images in one list.

    Taught in notebooks/02_metrics.
    """
    image_ids = list(range(1, len(label_images) + 1)) if image_ids is None else list(image_ids)
    scores = [None] * len(label_images) if scores is None else list(scores)
    if not len(image_ids) == len(scores) == len(label_images):
        raise ValueError("labels_to_detections: label_images, scores and image_ids must have "
                         "the same length")
    detections: list[dict] = []
    for item, s, image_id in zip(label_images, scores, image_ids, strict=True):
        detections.extend(masks_to_detections(item, s, image_id, category_id))
    return detections


# ---------------------------------------------------------------------------------------
# COCO evaluation
# ---------------------------------------------------------------------------------------

#: Names of the twelve COCO summary numbers, in pycocotools' ``stats`` order; ``{}`` is
#: filled with the three ``max_dets``.
COCO_STAT_NAMES = ("AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large",
                   "AR@{0}", "AR@{1}", "AR@{2}", "AR_small", "AR_medium", "AR_large")


def _clean_ground_truth(gt: dict) -> dict:
    """A copy of ``gt`` that pycocotools cannot trip over.

    - annotation ids renumbered ``1..n`` when any is 0 or repeated (COCOeval stores the matched
      ground-truth id in its match table, so id 0 reads as "no match");
    - ``iscrowd`` (0) and ``area`` (from the RLE) filled in where missing;
    - ``str`` RLE counts are fine for pycocotools; uncompressed (list) counts are kept as they
      are, pycocotools converts them.
    """
    from pycocotools import mask as mask_utils

    for key in ("images", "annotations", "categories"):
        if key not in gt:
            raise ValueError(f"coco_evaluate: the ground-truth dict has no {key!r} list; build "
                             "it with labels_to_coco or a COCO json file")
    gt = dict(gt)
    annotations = [dict(a) for a in gt["annotations"]]
    ids = [a.get("id") for a in annotations]
    if any(i is None or i == 0 for i in ids) or len(set(ids)) != len(ids):
        for k, a in enumerate(annotations, start=1):
            a["id"] = k
    for a in annotations:
        a.setdefault("iscrowd", 0)
        if "area" not in a:
            seg = a["segmentation"]
            if isinstance(seg, dict) and not isinstance(seg["counts"], list):
                counts = seg["counts"]
                rle = {"size": seg["size"],
                       "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
                a["area"] = float(mask_utils.area(rle))
            elif "bbox" in a:
                a["area"] = float(a["bbox"][2] * a["bbox"][3])
            else:
                raise ValueError(f"coco_evaluate: annotation {a['id']} has no 'area' and no "
                                 "RLE to compute it from")
    gt["annotations"] = annotations
    gt.setdefault("info", {})
    return gt


def _coco_from_dict(dataset: dict):
    import contextlib
    import io

    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # "creating index..." chatter
        coco.createIndex()
    return coco


def coco_stats(coco_eval) -> np.ndarray:
    """The twelve summary numbers of an evaluated-and-accumulated ``COCOeval``.

    Computed from ``coco_eval.eval["precision"]`` and ``["recall"]`` for *its own*
    ``params.maxDets`` (AP uses the largest, AR the three given), whereas
    ``COCOeval.summarize`` hard-codes 100 for AP and returns -1 when 100 is not among them.
    Entries with no ground truth in range are -1, as in pycocotools.

    Taught in notebooks/02_metrics.
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
    recall = coco_eval.eval["recall"]  # (T, K, A, M)
    area = {name: i for i, name in enumerate(params.areaRngLbl)}
    max_dets = list(params.maxDets)

    def mean_valid(values: np.ndarray) -> float:
        values = values[values > -1]
        return float(values.mean()) if values.size else -1.0

    def ap(iou_thr=None, area_name="all"):
        s = precision[..., area[area_name], len(max_dets) - 1]
        if iou_thr is not None:
            s = s[np.isclose(params.iouThrs, iou_thr)]
        return mean_valid(s)

    def ar(m_index, area_name="all"):
        return mean_valid(recall[:, :, area[area_name], m_index])

    return np.array([
        ap(), ap(0.5), ap(0.75), ap(area_name="small"), ap(area_name="medium"),
        ap(area_name="large"), ar(0), ar(min(1, len(max_dets) - 1)),
        ar(min(2, len(max_dets) - 1)), ar(len(max_dets) - 1, "small"),
        ar(len(max_dets) - 1, "medium"), ar(len(max_dets) - 1, "large"),
    ])


def per_class_ap(coco_eval, iou_threshold: float | None = None,
                 area: str = "all") -> dict[int, float]:
    """AP of each category of an evaluated-and-accumulated ``COCOeval``, by category id.

    Read from ``coco_eval.eval["precision"]``, the ``(T, R, K, A, M)`` array of precision at
    T IoU thresholds, R recall points (101), K categories (in ``params.catIds`` order),
    A area ranges and M detection limits: category k's AP is the mean over thresholds and
    recall points of ``precision[:, :, k, area, -1]`` (the largest ``maxDets``), leaving
    out the -1 entries (nothing to recall). That is what pycocotools reports as AP when it
    evaluates that category alone (``params.catIds = [k]``), and the summary AP is the mean
    of these numbers over the categories that have ground truth.

    Args:
        coco_eval: after ``evaluate()`` and ``accumulate()`` (e.g. the second value of
            :func:`coco_evaluate` with ``return_eval=True``).
        iou_threshold: one IoU threshold (0.5 gives AP50); ``None``: the mean over 0.5:0.95.
        area: ``"all"``, ``"small"``, ``"medium"`` or ``"large"``.

    Returns:
        ``{category id: AP in [0, 1]}``; -1.0 for a category with no ground truth (in that
        area range), as pycocotools writes it.

    Taught in notebooks/12_train_voc.
    """
    params = coco_eval.params
    precision = coco_eval.eval["precision"]  # (T, R, K, A, M)
    if area not in params.areaRngLbl:
        raise ValueError(f"per_class_ap: area must be one of {params.areaRngLbl}, got {area!r}")
    s = precision[:, :, :, params.areaRngLbl.index(area), -1]
    if iou_threshold is not None:
        chosen = np.isclose(params.iouThrs, iou_threshold)
        if not chosen.any():
            raise ValueError(f"per_class_ap: IoU threshold {iou_threshold} is not one of "
                             f"{np.round(params.iouThrs, 2).tolist()}")
        s = s[chosen]
    out = {}
    for k, cat in enumerate(params.catIds):
        values = s[:, :, k]
        values = values[values > -1]
        out[int(cat)] = float(values.mean()) if values.size else -1.0
    return out


def coco_evaluate(gt: dict, detections: list[dict], iou_type: str = "segm",
                  max_dets: Sequence[int] | None = None, return_eval: bool = False):
    """COCO AP/AR of ``detections`` against ``gt`` with pycocotools, trap-free.

    Handles what goes wrong when pycocotools is called directly:

    - ground-truth annotation ids of 0 (silently never matched) are renumbered from 1;
    - crowded images (nuclei: up to ~500 per image) with more detections than the largest
      ``maxDets``: ``max_dets=None`` uses ``(1, 10, max(100, most detections in an image))``,
      and the summary is computed from the accumulated arrays (:func:`coco_stats`) instead of
      ``summarize()``, which would print -1 once 100 is not among ``maxDets``;
    - an empty detection list (``loadRes`` crashes on it): evaluated as "found nothing", so
      every AP and AR is 0.0 (-1 where no ground truth falls in an area range);
    - RLE ``counts`` as ``str`` (JSON-safe) or bytes; masks must already be encoded from
      Fortran-ordered arrays (:func:`course_lib.ops.masks.coco_rle_encode` does it).

    Args:
        gt: COCO ground-truth dict (``images``, ``annotations``, ``categories``), e.g. from
            :func:`labels_to_coco`; not modified.
        detections: COCO result dicts (``image_id``, ``category_id``, ``score`` and
            ``segmentation`` for ``"segm"`` or ``bbox`` ``[x, y, w, h]`` for ``"bbox"``).
        iou_type: ``"segm"`` (mask IoU) or ``"bbox"``.
        max_dets: three increasing detection limits per image for the AR numbers (AP uses the
            last).
        return_eval: also return the ``COCOeval`` object (for its ``eval`` arrays).

    Returns:
        Dict of the twelve numbers named by :data:`COCO_STAT_NAMES` (``"AR@100"`` etc. carry
        the actual ``max_dets``), in pycocotools' order; or ``(dict, COCOeval)``.

    Taught in notebooks/02_metrics.
    """
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"coco_evaluate: iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    gt = _clean_ground_truth(gt)
    coco_gt = _coco_from_dict(gt)
    detections = list(detections)
    key = "segmentation" if iou_type == "segm" else "bbox"
    for d in detections:
        if key not in d or "score" not in d:
            raise ValueError(f"coco_evaluate: every detection needs {key!r} and 'score' for "
                             f"iou_type={iou_type!r}; got keys {sorted(d)}")
    per_image: dict[int, int] = {}
    for d in detections:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    if max_dets is None:
        max_dets = (1, 10, max([100, *per_image.values()]))
    max_dets = [int(m) for m in max_dets]
    if len(max_dets) != 3 or sorted(max_dets) != max_dets:
        raise ValueError(f"coco_evaluate: max_dets must be three increasing numbers, "
                         f"got {max_dets}")
    if per_image and max(per_image.values()) > max_dets[-1]:
        warnings.warn(f"coco_evaluate: an image has {max(per_image.values())} detections but "
                      f"max_dets[-1] = {max_dets[-1]}; the lowest-scored are ignored",
                      stacklevel=2)
    unknown = set(per_image) - set(coco_gt.getImgIds())
    if unknown:
        raise ValueError(f"coco_evaluate: detections for image ids {sorted(unknown)[:5]} that "
                         "the ground truth does not have")

    if detections:
        # loadRes rewrites its input dicts (ids, area, bbox); give it copies.
        clean = []
        for d in copy.deepcopy(detections):
            d.pop("id", None)
            if iou_type == "bbox":
                d.pop("segmentation", None)  # else loadRes takes the masks' boxes
            else:
                counts = d["segmentation"].get("counts")
                if isinstance(counts, str):
                    d["segmentation"]["counts"] = counts.encode("ascii")
            clean.append(d)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes(clean)
    else:
        coco_dt = _coco_from_dict({"images": gt["images"], "categories": gt["categories"],
                                   "annotations": [], "info": {}})

    coco_eval = COCOeval(coco_gt, coco_dt, iouType=iou_type)
    coco_eval.params.maxDets = max_dets
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
    names = [n.format(*max_dets) for n in COCO_STAT_NAMES]
    stats = dict(zip(names, (float(v) for v in coco_stats(coco_eval)), strict=True))
    return (stats, coco_eval) if return_eval else stats
