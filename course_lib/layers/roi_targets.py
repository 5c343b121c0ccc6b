"""RoI targets for the heads: which proposals train the box and mask heads, and toward what.

Taught in notebooks/08_heads_and_losses.

For each image, all batched with fixed shapes (no Python loop over images or boxes):

1. **ground truth joins the proposals** (``N`` proposals + ``G`` gt rows), so early in training,
   when the RPN proposes rubbish, the heads still see positives;
2. **match** at IoU 0.5 (:mod:`~course_lib.layers.matcher`, no low-quality matches): ``>= 0.5``
   is positive with the class of its gt box, ``< 0.5`` background; ignore regions (IoA >= 0.5)
   and padding rows are left out;
3. **sample** ``R`` RoIs (512 in full mode), at most 25 % positive, positives first
   (:mod:`~course_lib.layers.sampler`), so the first ``P = round(R * 0.25)`` slots are the
   *positive slice* that the mask head runs on;
4. **box targets**: ``encode(matched gt, RoI)`` with std (0.1, 0.1, 0.2, 0.2) for positives;
5. **mask targets** for the positive slice: the matched gt mask cut out *in the RoI's frame* and
   resampled to 28×28 by RoIAlign-style bilinear sampling (2×2 points per cell, averaged), then
   thresholded at 0.5. The gt masks arrive as mini-masks (each stored at ``h×w`` inside its own
   gt box, :func:`course_lib.ops.masks.minimize_masks`): an RoI edge ``y`` lands at
   ``(y - gy1) * h / gh`` in its gt's mini-mask. Each mini-mask gets a one-cell zero border, so
   the parts of an RoI outside the gt box read 0 exactly. With full ``S×S`` masks the frame is
   the whole image instead.
"""

from __future__ import annotations

import numpy as np
from keras import ops

from course_lib.layers.matcher import match_np, match_ops
from course_lib.layers.sampler import gather_rows, positive_slots, sample_np, sample_ops
from course_lib.ops import boxes as box_ops
from course_lib.ops import roi as roi_ops

# ------------------------------------------------------------------------------ mask targets

def mask_targets_np(gt_masks, frames, rois, gt_index, *, mask_shape=(28, 28),
                    sampling_ratio: int = 2, threshold: float = 0.5) -> np.ndarray:
    """Mask targets of one image's RoIs (NumPy reference, one RoIAlign per RoI).

    Args:
        gt_masks: ``(h, w, M)`` mini-masks (or full masks, then ``frames`` are the image).
        frames: ``(M, 4)`` the box each mask is stored in (the gt boxes for mini-masks).
        rois: ``(P, 4)`` RoIs in image pixels; gt_index: ``(P,)`` matched gt of each.
        mask_shape, sampling_ratio: output size and samples per cell side.
        threshold: binarise at this coverage (``None``: soft targets).

    Returns:
        ``(P, mh, mw)`` float32 targets.

    Taught in notebooks/08_heads_and_losses.
    """
    gt_masks = np.asarray(gt_masks, np.float64)
    h, w = gt_masks.shape[:2]
    out = np.zeros((len(rois),) + tuple(mask_shape), np.float32)
    for r, (box, g) in enumerate(zip(np.asarray(rois, np.float64).reshape(-1, 4),
                                     np.asarray(gt_index).reshape(-1), strict=True)):
        fy1, fx1, fy2, fx2 = np.asarray(frames, np.float64)[g]
        sy, sx = h / max(fy2 - fy1, 1e-6), w / max(fx2 - fx1, 1e-6)
        # the RoI in the padded mini-mask's pixel edges (+1: the zero border)
        local = np.array([(box[0] - fy1) * sy + 1, (box[1] - fx1) * sx + 1,
                          (box[2] - fy1) * sy + 1, (box[3] - fx1) * sx + 1])
        padded = np.pad(gt_masks[..., g], 1)[..., None]
        crop = roi_ops.roi_align(padded, local[None], mask_shape, 1.0,
                                 sampling_ratio=sampling_ratio)[0, ..., 0]
        out[r] = crop if threshold is None else (crop >= threshold)
    return out


def mask_targets_ops(gt_masks, frames, rois, gt_index, *, mask_shape=(28, 28),
                     sampling_ratio: int = 2, threshold: float | None = 0.5):
    """Batched twin of :func:`mask_targets_np`.

    Args:
        gt_masks: ``(B, h, w, M)`` (mini-masks, or full masks with frames = the image).
        frames: ``(B, M, 4)``; rois: ``(B, P, 4)``; gt_index: ``(B, P)`` int.

    Returns:
        ``(B, P, mh, mw)`` float32.

    Taught in notebooks/08_heads_and_losses.
    """
    gt_masks = ops.cast(gt_masks, "float32")
    h, w, m = int(gt_masks.shape[1]), int(gt_masks.shape[2]), int(gt_masks.shape[3])
    mh, mw = (mask_shape, mask_shape) if isinstance(mask_shape, int) else tuple(mask_shape)
    batch = ops.shape(gt_masks)[0]
    p = int(rois.shape[1])
    # (B, M, h+2, w+2) with a zero border, as one (B*M*(h+2)*(w+2), 1) table
    table = ops.pad(ops.transpose(gt_masks, (0, 3, 1, 2)), ((0, 0), (0, 0), (1, 1), (1, 1)))
    flat = ops.reshape(table, (-1, 1))
    gt_index = ops.cast(gt_index, "int32")
    base = (ops.arange(batch, dtype="int32")[:, None] * m + gt_index) * ((h + 2) * (w + 2))
    frame = gather_rows(ops.cast(frames, "float32"), gt_index)                 # (B, P, 4)
    sy = h / ops.maximum(frame[..., 2] - frame[..., 0], 1e-6)
    sx = w / ops.maximum(frame[..., 3] - frame[..., 1], 1e-6)
    scale = ops.stack([sy, sx, sy, sx], axis=-1)
    origin = ops.stack([frame[..., 0], frame[..., 1], frame[..., 0], frame[..., 1]], axis=-1)
    local = (ops.cast(rois, "float32") - origin) * scale + 1.0
    ones = ops.ones((batch, p), "float32")
    crop = roi_ops.roi_align_table_ops(flat, local, base=base, height=ones * (h + 2),
                                       width=ones * (w + 2), scale=ones, output_size=(mh, mw),
                                       sampling_ratio=sampling_ratio, aligned=True)[..., 0]
    if threshold is None:
        return crop
    return ops.cast(crop >= threshold, "float32")


# ------------------------------------------------------------------------------- RoI targets

def _gt_valid_np(gt_boxes, gt_class_ids):
    return (np.asarray(gt_class_ids) > 0) & (box_ops.area(np.asarray(gt_boxes)) > 0)


def roi_targets_np(proposals, proposal_valid, gt_boxes, gt_class_ids, *, gt_masks,
                   ignore_boxes=None, num_samples: int = 512, positive_fraction: float = 0.25,
                   positive_iou: float = 0.5, mask_shape=(28, 28), mini_masks: bool = True,
                   keys=None, rng=None, ignore_ioa: float = 0.5):
    """RoI targets of one image (NumPy reference of :func:`roi_targets_ops`).

    Args:
        proposals: ``(N, 4)``; proposal_valid: ``(N,)`` bool.
        gt_boxes: ``(G, 4)``; gt_class_ids: ``(G,)`` (0 = padding); gt_masks ``(h, w, G)``.
        ignore_boxes: ``(I, 4)`` or ``None``.
        keys: ``(N + G,)`` sampler keys (else drawn from ``rng``).
        Others as in :func:`roi_targets_ops`.

    Returns:
        dict like :func:`roi_targets_ops` for one image (no batch axis).

    Taught in notebooks/08_heads_and_losses.
    """
    proposals = np.asarray(proposals, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_valid = _gt_valid_np(gt_boxes, gt_class_ids)
    cand = np.concatenate([proposals, gt_boxes])
    cand_valid = np.concatenate([np.asarray(proposal_valid, bool), gt_valid])
    labels, matched, _ = match_np(cand, gt_boxes, gt_valid, positive_iou, negative_iou=positive_iou,
                                  allow_low_quality=False, ignore_boxes=ignore_boxes,
                                  ignore_ioa=ignore_ioa)
    labels = np.where(cand_valid, labels, -1)
    idx, lab = sample_np(labels, num_samples, positive_fraction, keys=keys, rng=rng)
    rois = cand[idx]
    gt_index = matched[idx]
    class_targets = np.where(lab == 1, gt_class_ids[gt_index], np.where(lab == 0, 0, -1))
    box_targets = np.zeros((num_samples, 4))
    pos = lab == 1
    if pos.any():
        box_targets[pos] = box_ops.encode(gt_boxes[gt_index[pos]], rois[pos])
    p = positive_slots(num_samples, positive_fraction)
    s = np.asarray(gt_masks).shape[0]
    frames = gt_boxes if mini_masks else np.tile([[0.0, 0.0, s, s]], (len(gt_boxes), 1))
    mask_targets = mask_targets_np(gt_masks, frames, rois[:p], gt_index[:p], mask_shape=mask_shape)
    mask_targets[~pos[:p]] = 0
    return {"rois": rois, "labels": lab, "class_targets": class_targets.astype(np.int32),
            "box_targets": box_targets, "mask_targets": mask_targets,
            "positive": pos[:p], "gt_index": gt_index}


def roi_targets_ops(proposals, proposal_valid, gt_boxes, gt_class_ids, *, gt_masks,
                    ignore_boxes=None, ignore_valid=None, num_samples: int = 512,
                    positive_fraction: float = 0.25, positive_iou: float = 0.5,
                    mask_shape=(28, 28), mini_masks: bool = True, seed=None, keys=None,
                    ignore_ioa: float = 0.5):
    """RoI sampling and targets, batched with fixed shapes (steps in the module docstring).

    Args:
        proposals: ``(B, N, 4)``; proposal_valid: ``(B, N)`` bool.
        gt_boxes: ``(B, G, 4)``; gt_class_ids: ``(B, G)`` int (0 = padding).
        gt_masks: ``(B, h, w, G)`` mini-masks (``mini_masks=True``) or ``(B, S, S, G)``.
        ignore_boxes, ignore_valid: ``(B, I, 4)``, ``(B, I)`` or ``None``.
        num_samples: ``R``; positive_fraction: at most this share positive (``P`` slots).
        positive_iou: IoU for a positive (below it: background).
        mask_shape: target size (28×28).
        seed: int or ``keras.random.SeedGenerator``; keys: explicit ``(B, N + G)`` sampler keys.

    Returns:
        dict of ``rois (B, R, 4)``, ``labels (B, R)`` int32 (1, 0, -1 empty slot),
        ``class_targets (B, R)`` int32 (gt class, 0 background, -1 empty),
        ``box_targets (B, R, 4)``, ``mask_targets (B, P, mh, mw)`` float32 in {0, 1},
        ``positive (B, P)`` bool, ``gt_index (B, R)`` int32. No gradient flows through any.

    Taught in notebooks/08_heads_and_losses.
    """
    proposals = ops.stop_gradient(ops.cast(proposals, "float32"))
    gt_boxes = ops.cast(gt_boxes, "float32")
    gt_class_ids = ops.cast(gt_class_ids, "int32")
    gt_valid = (gt_class_ids > 0) & (box_ops.area_ops(gt_boxes) > 0)
    cand = ops.concatenate([proposals, gt_boxes], axis=1)
    cand_valid = ops.concatenate([ops.cast(proposal_valid, "bool"), gt_valid], axis=1)
    labels, matched, _ = match_ops(cand, gt_boxes, gt_valid, positive_iou,
                                   negative_iou=positive_iou,
                                   allow_low_quality=False, ignore_boxes=ignore_boxes,
                                   ignore_valid=ignore_valid, ignore_ioa=ignore_ioa)
    labels = ops.where(cand_valid, labels, -1)
    idx, lab = sample_ops(labels, num_samples, positive_fraction, seed=seed, keys=keys)
    rois = gather_rows(cand, idx)
    gt_index = ops.take_along_axis(matched, idx, axis=1)
    pos = lab == 1
    matched_class = ops.take_along_axis(gt_class_ids, gt_index, axis=1)
    class_targets = ops.where(pos, matched_class, ops.where(lab == 0, 0, -1))
    box_targets = box_ops.encode_ops(gather_rows(gt_boxes, gt_index), rois)
    box_targets = ops.where(pos[..., None], box_targets, 0.0)
    p = positive_slots(num_samples, positive_fraction)
    if mini_masks:
        frames = gt_boxes
    else:
        s = float(gt_masks.shape[1])
        frames = ops.zeros_like(gt_boxes) + ops.convert_to_tensor([0.0, 0.0, s, s])
    masks = mask_targets_ops(gt_masks, frames, rois[:, :p], gt_index[:, :p], mask_shape=mask_shape)
    masks = ops.where(pos[:, :p, None, None], masks, 0.0)
    out = {"rois": rois, "labels": lab, "class_targets": ops.cast(class_targets, "int32"),
           "box_targets": box_targets, "mask_targets": masks, "positive": pos[:, :p],
           "gt_index": gt_index}
    return {k: ops.stop_gradient(v) if k in ("rois", "box_targets", "mask_targets") else v
            for k, v in out.items()}
