"""A widget to browse predictions against ground truth, image by image, with the score.

Taught in notebooks/10_unet (browsing its predictions, worst first).
"""

from __future__ import annotations

from collections.abc import Sequence

import ipywidgets as widgets
import numpy as np

from course_lib.viz import plots
from course_lib.viz.widgets import Explorer, explorer


def _as_mask_stack(item, name: str, index: int) -> np.ndarray:
    """``H×W×N`` bool from an ``H×W×N`` mask stack or an ``H×W`` label image (0 background)."""
    item = np.asarray(item)
    if item.ndim == 3:
        return item.astype(bool)
    if item.ndim == 2:
        from course_lib.ops.masks import labels_to_masks  # the one label -> stack split

        return labels_to_masks(item)
    raise ValueError(
        f"prediction_browser: {name}[{index}] has shape {item.shape}; pass an H×W×N bool mask "
        "stack or an H×W label image (0 = background)"
    )


def _image_scores(true_masks: np.ndarray, pred_masks: np.ndarray) -> dict[str, float] | None:
    """DSB average precision and the mean best IoU of the true objects, or None.

    ``course_lib.metrics`` is imported here, not at module level, so the widget kit loads
    even where the metrics module is absent or broken (the browser then shows no score).
    """
    try:
        from course_lib.metrics import dsb_average_precision, iou_matrix
    except ImportError:
        return None
    iou = iou_matrix(true_masks, pred_masks)
    best = iou.max(axis=1) if iou.size else np.zeros(iou.shape[0])
    return {"dsb_ap": float(dsb_average_precision(true_masks, pred_masks)),
            "mean_best_iou": float(best.mean()) if best.size else float("nan")}


def prediction_browser(images: Sequence[np.ndarray], true_masks: Sequence[np.ndarray],
                       pred_masks: Sequence[np.ndarray], scores: Sequence[float] | None = None,
                       names: Sequence[str] | None = None) -> Explorer:
    """A slider over images: ground truth and prediction side by side, with the image's score.

    Args:
        images: ``n`` images, ``H×W×3`` uint8 (sizes may differ between images).
        true_masks, pred_masks: per image, an ``H×W×N`` bool mask stack or an ``H×W`` label
            image (0 background); ``N`` may differ between truth and prediction and be 0.
        scores: per-image scores to show instead of computing them (e.g. from a run's
            results table). By default each image gets its Data Science Bowl average precision
            (``course_lib.metrics.dsb_average_precision``) and the mean best IoU of its true
            objects, computed once for all images, when ``course_lib.metrics`` is there.
        names: per-image names for the title (default: the index).

    Returns:
        An :class:`Explorer` with controls ``index`` (slider) and ``order`` (dropdown: as
        given, worst first, best first; worst first is how one finds what the model gets
        wrong). ``result`` is a dict: ``index`` (into the inputs), ``position``, ``score``,
        ``mean_best_iou``, ``n_true``, ``n_pred`` and the printed ``text``.

    Taught in notebooks/10_unet (training and browsing its predictions).
    """
    n = len(images)
    if n == 0:
        raise ValueError("prediction_browser: `images` is empty; pass at least one image")
    if len(true_masks) != n or len(pred_masks) != n:
        raise ValueError(
            f"prediction_browser: {n} images but {len(true_masks)} true_masks and "
            f"{len(pred_masks)} pred_masks; pass one of each per image"
        )
    if scores is not None and len(scores) != n:
        raise ValueError(f"prediction_browser: {n} images but {len(scores)} scores")
    if names is not None and len(names) != n:
        raise ValueError(f"prediction_browser: {n} images but {len(names)} names")
    truths = [_as_mask_stack(m, "true_masks", i) for i, m in enumerate(true_masks)]
    preds = [_as_mask_stack(m, "pred_masks", i) for i, m in enumerate(pred_masks)]
    for i, (image, t, p) in enumerate(zip(images, truths, preds, strict=True)):
        if np.shape(image)[:2] != t.shape[:2] or t.shape[:2] != p.shape[:2]:
            raise ValueError(
                f"prediction_browser: image {i} is {np.shape(image)[:2]} but its masks are "
                f"{t.shape[:2]} (truth) and {p.shape[:2]} (prediction); they must match"
            )
    if scores is not None:
        per_image = [{"dsb_ap": float(s), "mean_best_iou": float("nan")} for s in scores]
        label = "score"
    else:
        # All at once: the "worst first" order needs every score, and each is one bincount.
        per_image = [_image_scores(t, p) for t, p in zip(truths, preds, strict=True)]
        label = "DSB AP"
    has_scores = per_image[0] is not None
    orders = ["as given"] + (["worst first", "best first"] if has_scores else [])

    def order_of(order: str) -> list[int]:
        if order == "as given":
            return list(range(n))
        key = np.array([s["dsb_ap"] for s in per_image])
        ranked = np.argsort(key, kind="stable")          # stable: ties keep the given order
        return [int(i) for i in (ranked if order == "worst first" else ranked[::-1])]

    def render(index: int, order: str) -> dict:
        i = order_of(order)[index]
        t, p = truths[i], preds[i]
        name = names[i] if names is not None else f"image {i}"
        score = per_image[i]
        parts = [f"{name} ({index + 1}/{n}): {t.shape[-1]} true, {p.shape[-1]} predicted"]
        if score is not None:
            parts.append(f"{label} {score['dsb_ap']:.3f}")
            if not np.isnan(score["mean_best_iou"]):
                parts.append(f"mean best IoU {score['mean_best_iou']:.3f}")
        text = ", ".join(parts)
        print(text)
        plots.compare_instances(np.asarray(images[i]), t, p,
                                titles=(f"ground truth ({t.shape[-1]})",
                                        f"prediction ({p.shape[-1]})"))
        return {"index": i, "position": index, "score": None if score is None else score["dsb_ap"],
                "mean_best_iou": None if score is None else score["mean_best_iou"],
                "n_true": int(t.shape[-1]), "n_pred": int(p.shape[-1]), "text": text}

    return explorer(render, title="Predictions: ground truth vs model",
                    index=widgets.IntSlider(value=0, min=0, max=n - 1, description="image",
                                            continuous_update=False),
                    order=widgets.Dropdown(options=orders, value="as given",
                                           description="order"))
