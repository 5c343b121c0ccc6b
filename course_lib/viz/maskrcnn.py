"""Pictures of Mask R-CNN's stages and the stage explorer (image slider, stage, score threshold).

Taught in notebooks/09_mask_rcnn.

Everything here reads the dict of NumPy arrays that
:func:`course_lib.models.maskrcnn.run_stages` returns (boxes in the padded square's pixels), so
the pictures show what the model computed, never a re-implementation of its forward pass.
:func:`stage_content` is the pure part (which boxes, scores and masks a stage shows at a score
threshold); :func:`draw_stage` draws it; :func:`stage_explorer` wires both to widgets.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from course_lib.viz.plots import draw_boxes, instance_colors, overlay_masks
from course_lib.viz.widgets import Explorer, explorer

#: The stages the explorer offers, in the order the data flows.
STAGES = ("anchors", "proposals", "refined boxes", "detections", "masks")

#: At most this many boxes are drawn per picture (the highest scores), so a picture stays
#: readable and quick: 4,000 anchors drawn at once are a grey smear.
MAX_DRAWN = 150


def stage_content(stages: dict, index: int, stage: str, score_threshold: float = 0.5,
                  max_drawn: int = MAX_DRAWN) -> dict:
    """What one stage shows for image ``index``: boxes, scores and (for "masks") mini-masks.

    Args:
        stages: :func:`~course_lib.models.maskrcnn.run_stages` output (batch axis first).
        index: image in the batch.
        stage: one of :data:`STAGES`.
        score_threshold: keep boxes whose score is at least this. The score of an anchor is
            its RPN objectness (sigmoid), of a proposal its objectness after NMS, of a refined
            box its best non-background class probability, of a detection (and its mask) the
            detection score.
        max_drawn: keep at most this many, highest scores first.

    Returns:
        dict: ``boxes (N, 4)`` (padded-square pixels), ``scores (N,)``, ``total`` (how many
        passed the threshold before the ``max_drawn`` cap), ``masks (N, 28, 28)`` or ``None``.

    Taught in notebooks/09_mask_rcnn.
    """
    if stage not in STAGES:
        raise ValueError(f"stage {stage!r} is not one of {STAGES}.")
    masks = None
    if stage == "anchors":
        boxes, scores = stages["anchors"], stages["rpn_scores"][index]
        valid = np.ones(len(boxes), bool)
    elif stage == "proposals":
        boxes, scores = stages["proposals"][index], stages["proposal_scores"][index]
        valid = stages["proposal_valid"][index].astype(bool)
    elif stage == "refined boxes":
        boxes = stages["refined_boxes"][index]
        scores = stages["class_probs"][index][:, 1:].max(axis=-1)
        valid = stages["proposal_valid"][index].astype(bool)
    else:
        boxes, scores = stages["detections"][index], stages["detection_scores"][index]
        valid = stages["detection_valid"][index].astype(bool)
        if stage == "masks":
            masks = stages["masks"][index]
    keep = np.flatnonzero(valid & (scores >= score_threshold))
    total = len(keep)
    keep = keep[np.argsort(-scores[keep], kind="stable")][:max_drawn]
    return {"boxes": np.asarray(boxes)[keep].reshape(-1, 4),
            "scores": np.asarray(scores)[keep],
            "total": total,
            "masks": None if masks is None else np.asarray(masks)[keep]}


def _as_uint8(image) -> np.ndarray:
    image = np.asarray(image)
    return image if image.dtype == np.uint8 else np.clip(image, 0, 255).astype(np.uint8)


def draw_stage(ax, image, stages: dict, index: int, stage: str, score_threshold: float = 0.5,
               gt_boxes=None, max_drawn: int = MAX_DRAWN, colorbar: bool = False) -> dict:
    """Draw one stage of image ``index`` on ``ax``; returns :func:`stage_content`'s dict.

    Args:
        ax: matplotlib axes.
        image: ``S×S×3`` padded image (float 0–255 as the batch holds it, or uint8).
        stages, index, stage, score_threshold, max_drawn: as in :func:`stage_content`.
        gt_boxes: ``(G, 4)`` ground truth drawn dashed magenta (seen on dark fluorescence
            and on bright-field backgrounds alike, and in no colour of the score map), or
            ``None``.
        colorbar: for the stages coloured by score (anchors, proposals, refined boxes), add
            a colour bar of the score beside ``ax`` (leave it off in a widget that redraws).

    Taught in notebooks/09_mask_rcnn.
    """
    from course_lib.ops.masks import paste_mask

    content = stage_content(stages, index, stage, score_threshold, max_drawn)
    image = _as_uint8(image)
    n = len(content["boxes"])
    if content["masks"] is not None and n:
        full = np.stack([paste_mask(m, b, image.shape) for m, b in
                         zip(content["masks"], content["boxes"], strict=True)], axis=-1)
        ax.imshow(overlay_masks(image, full, alpha=0.55), interpolation="nearest")
    else:
        ax.imshow(image, interpolation="nearest")
    if gt_boxes is not None and len(gt_boxes):
        draw_boxes(ax, gt_boxes, colors=["magenta"] * len(gt_boxes), linewidth=0.9,
                   linestyle="--")
    cmap = plt.get_cmap("viridis")
    if colorbar and stage not in ("detections", "masks"):
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        label = "objectness" if stage in ("anchors", "proposals") else "class score"
        ax.figure.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax, fraction=0.046,
                           pad=0.02, label=label)
    if n:
        colors = (instance_colors(n) if stage in ("detections", "masks")
                  else [cmap(float(s)) for s in content["scores"]])
        draw_boxes(ax, content["boxes"], colors=colors,
                   linewidth=1.2 if stage in ("detections", "masks") else 0.6)
    shown = f"{n} of {content['total']}" if content["total"] > n else f"{n}"
    ax.set_title(f"image {index}: {stage}, score ≥ {score_threshold:.2f}: {shown}", fontsize=9)
    ax.set_xlabel("x (pixels of the padded square)")
    ax.set_ylabel("y (pixels)")
    return content


def stage_explorer(images, stages: dict, gt_boxes=None, score_threshold: float = 0.5) -> Explorer:
    """Image slider, stage dropdown and score threshold over :func:`run_stages`' output.

    Args:
        images: ``(B, S, S, 3)`` the batch's images.
        stages: :func:`~course_lib.models.maskrcnn.run_stages` of that batch.
        gt_boxes: ``(B, G, 4)`` ground truth (zero rows are padding) or ``None``.
        score_threshold: initial threshold.

    ``explorer.result`` holds :func:`stage_content`'s dict plus ``index`` and ``stage``.

    Taught in notebooks/09_mask_rcnn.
    """
    images = np.asarray(images)

    def render(index: int, stage: str, score_threshold: float) -> dict:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        gt = None
        if gt_boxes is not None:
            gt = np.asarray(gt_boxes[index]).reshape(-1, 4)
            gt = gt[(gt[:, 2] > gt[:, 0]) & (gt[:, 3] > gt[:, 1])]
        content = draw_stage(ax, images[index], stages, index, stage, score_threshold, gt)
        print(f"image {index}, {stage}: {content['total']} boxes with score ≥ "
              f"{score_threshold:.2f}")
        return {**content, "index": index, "stage": stage}

    return explorer(
        render, title="Mask R-CNN, stage by stage",
        index=widgets.IntSlider(value=0, min=0, max=len(images) - 1, description="image"),
        stage=widgets.Dropdown(options=list(STAGES), value="detections", description="stage"),
        score_threshold=widgets.FloatSlider(value=score_threshold, min=0.0, max=1.0, step=0.05,
                                            description="score ≥", continuous_update=False),
    )
