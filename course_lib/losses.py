"""The five Mask R-CNN losses, in ``keras.ops`` (backend-agnostic, fixed shapes).

Taught in notebooks/08_heads_and_losses.

Every loss reads the sampled slots only (the samplers' ``labels``: 1 positive, 0 negative,
-1 an empty slot that counts nowhere), and each is 0, not NaN, when its set is empty.

============  ======================================================  ========================
loss          definition                                              normalised by
============  ======================================================  ========================
rpn_class     binary cross-entropy of the objectness logit vs 1/0     sampled anchors
rpn_box       smooth L1 (beta) of the deltas, positives only          sampled anchors
class         softmax cross-entropy over K classes (0 background)     sampled RoIs
box           smooth L1 of the *gt class's* deltas, positives only    sampled RoIs
mask          per-pixel binary cross-entropy of the *gt class's*      positive RoIs × pixels
              28×28 logits (per-class sigmoid, no competition)
============  ======================================================  ========================

The box losses are summed over the 4 coordinates and the positives and divided by the number
of sampled candidates (as torchvision and detectron2 do), so they do not jump when the number
of positives changes; smooth L1 is ``0.5 x² / beta`` for ``|x| < beta``, else ``|x| - 0.5 beta``
with ``beta = 1/9`` on the std-normalised deltas.
"""

from __future__ import annotations

from keras import ops

#: Smooth L1 transition point (torchvision's 1/9) for both box losses.
SMOOTH_L1_BETA = 1.0 / 9.0


def smooth_l1(x, beta: float = SMOOTH_L1_BETA):
    """Elementwise smooth L1 of ``x``: ``0.5 x² / beta`` below ``beta`` in size, else ``|x| - beta / 2``.

    Taught in notebooks/08_heads_and_losses.
    """
    ax = ops.abs(x)
    if beta <= 0:
        return ax
    return ops.where(ax < beta, 0.5 * ax * ax / beta, ax - 0.5 * beta)


def _bce_with_logits(logits, targets):
    # max(x, 0) - x z + log(1 + exp(-|x|)): the stable form of -z log s(x) - (1-z) log(1-s(x))
    return (ops.maximum(logits, 0.0) - logits * targets
            + ops.log1p(ops.exp(-ops.abs(logits))))


def _safe_mean(total, count):
    return total / ops.maximum(ops.cast(count, "float32"), 1.0)


def rpn_class_loss(logits, labels):
    """Objectness loss: BCE over the sampled anchors.

    Args:
        logits: ``(B, R)`` objectness logits at the sampled anchors.
        labels: ``(B, R)`` int 1 / 0 / -1 (-1 ignored).

    Returns:
        scalar float32.

    Taught in notebooks/08_heads_and_losses.
    """
    logits = ops.cast(logits, "float32")
    labels = ops.cast(labels, "int32")
    used = ops.cast(labels >= 0, "float32")
    bce = _bce_with_logits(logits, ops.cast(labels == 1, "float32"))
    return _safe_mean(ops.sum(bce * used), ops.sum(used))


def rpn_box_loss(pred_deltas, target_deltas, labels, beta: float = SMOOTH_L1_BETA):
    """RPN box loss: smooth L1 of positive anchors' deltas / number of sampled anchors.

    Args:
        pred_deltas, target_deltas: ``(B, R, 4)``; labels: ``(B, R)`` int 1 / 0 / -1.

    Returns:
        scalar float32.

    Taught in notebooks/08_heads_and_losses.
    """
    labels = ops.cast(labels, "int32")
    diff = ops.cast(pred_deltas, "float32") - ops.cast(target_deltas, "float32")
    per = ops.sum(smooth_l1(diff, beta), axis=-1)
    per = ops.where(labels == 1, per, 0.0)
    return _safe_mean(ops.sum(per), ops.sum(ops.cast(labels >= 0, "float32")))


def class_loss(logits, class_targets):
    """Classification loss of the box head: softmax cross-entropy over sampled RoIs.

    Args:
        logits: ``(B, R, K)``; class_targets: ``(B, R)`` int (class, 0 background, -1 unused).

    Returns:
        scalar float32.

    Taught in notebooks/08_heads_and_losses.
    """
    logits = ops.cast(logits, "float32")
    targets = ops.cast(class_targets, "int32")
    used = targets >= 0
    log_probs = ops.log_softmax(logits, axis=-1)
    picked = ops.take_along_axis(log_probs, ops.maximum(targets, 0)[..., None], axis=-1)[..., 0]
    nll = ops.where(used, -picked, 0.0)
    return _safe_mean(ops.sum(nll), ops.sum(ops.cast(used, "float32")))


def box_loss(pred_deltas, target_deltas, class_targets, beta: float = SMOOTH_L1_BETA):
    """Box-head regression loss on the gt class's deltas of positive RoIs / sampled RoIs.

    Args:
        pred_deltas: ``(B, R, K, 4)`` per-class deltas; target_deltas: ``(B, R, 4)``;
        class_targets: ``(B, R)`` int (> 0 positive, 0 background, -1 unused).

    Returns:
        scalar float32.

    Taught in notebooks/08_heads_and_losses.
    """
    targets = ops.cast(class_targets, "int32")
    pred = ops.cast(pred_deltas, "float32")
    index = ops.maximum(targets, 0)[..., None, None] + ops.zeros((1, 1, 1, 4), "int32")
    picked = ops.take_along_axis(pred, index, axis=2)[:, :, 0, :]              # (B, R, 4)
    per = ops.sum(smooth_l1(picked - ops.cast(target_deltas, "float32"), beta), axis=-1)
    per = ops.where(targets > 0, per, 0.0)
    return _safe_mean(ops.sum(per), ops.sum(ops.cast(targets >= 0, "float32")))


def mask_loss(mask_logits, mask_targets, class_ids, positive):
    """Mask loss: mean per-pixel BCE of the gt class channel over positive RoIs.

    Args:
        mask_logits: ``(B, P, h, w, K)``; mask_targets: ``(B, P, h, w)`` in [0, 1];
        class_ids: ``(B, P)`` int gt class of each RoI; positive: ``(B, P)`` bool.

    Returns:
        scalar float32 (mean over positive RoIs and their ``h*w`` pixels).

    Taught in notebooks/08_heads_and_losses.
    """
    logits = ops.cast(mask_logits, "float32")
    ids = ops.maximum(ops.cast(class_ids, "int32"), 0)
    index = ids[:, :, None, None, None] + ops.zeros((1, 1) + tuple(logits.shape[2:4]) + (1,),
                                                     "int32")
    picked = ops.take_along_axis(logits, index, axis=-1)[..., 0]               # (B, P, h, w)
    bce = _bce_with_logits(picked, ops.cast(mask_targets, "float32"))
    pos = ops.cast(positive, "bool")
    per = ops.where(pos, ops.mean(bce, axis=(2, 3)), 0.0)
    return _safe_mean(ops.sum(per), ops.sum(ops.cast(pos, "float32")))


LOSS_NAMES = ("rpn_class_loss", "rpn_box_loss", "class_loss", "box_loss", "mask_loss")
