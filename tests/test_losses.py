"""The five Mask R-CNN losses (course_lib.losses): hand-worked values, and a plain NumPy
reference on random cases (written here, independently of the library)."""

from __future__ import annotations

import numpy as np
import pytest
from keras import ops

from course_lib import losses as L


def _f(t):
    return float(ops.convert_to_numpy(t))


# ------------------------------------------------------------------ NumPy reference (per slot)

def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


def _smooth_l1(x, beta=1 / 9):
    ax = np.abs(x)
    return np.where(ax < beta, 0.5 * ax ** 2 / beta, ax - 0.5 * beta)


def ref_rpn_class(logits, labels):
    used = labels >= 0
    z = (labels == 1).astype(float)
    bce = _softplus(logits) - logits * z          # -z log s - (1 - z) log(1 - s)
    return bce[used].sum() / max(used.sum(), 1)


def ref_rpn_box(pred, target, labels):
    per = _smooth_l1(pred - target).sum(-1)
    return per[labels == 1].sum() / max((labels >= 0).sum(), 1)


def ref_class(logits, targets):
    total, n = 0.0, 0
    for row, t in zip(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), strict=True):
        if t < 0:
            continue
        total += -(row[t] - np.log(np.exp(row - row.max()).sum()) - row.max())
        n += 1
    return total / max(n, 1)


def ref_box(pred, target, classes):
    total, n = 0.0, 0
    for p, t, c in zip(pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, 4),
                       classes.reshape(-1), strict=True):
        n += c >= 0
        if c > 0:
            total += _smooth_l1(p[c] - t).sum()
    return total / max(n, 1)


def ref_mask(logits, targets, classes, positive):
    per = []
    for lg, t, c, p in zip(logits.reshape(-1, *logits.shape[-3:]), targets.reshape(-1, *targets.shape[-2:]),
                           classes.reshape(-1), positive.reshape(-1), strict=True):
        if p:
            x = lg[..., c]
            per.append(np.mean(_softplus(x) - x * t))
    return float(np.mean(per)) if per else 0.0


# -------------------------------------------------------------------------- hand-worked values

def test_rpn_class_loss_hand_worked():
    # logit 0 positive: ln 2 = 0.693147; logit 2 negative: ln(1 + e^2) = 2.126928;
    # logit -1 ignored; logit 5 positive: ln(1 + e^-5) = 0.006715. Mean of 3 = 0.942263.
    got = L.rpn_class_loss(np.array([[0.0, 2.0, -1.0, 5.0]]), np.array([[1, 0, -1, 1]]))
    assert _f(got) == pytest.approx(0.942263, abs=1e-5)


def test_rpn_box_loss_hand_worked():
    # beta 1/9. Positive rows: 0.05 < beta -> 0.5 * 0.05^2 * 9 = 0.01125; 1 -> 1 - 1/18 =
    # 0.944444. The negative row's big error does not count but the row is sampled:
    # (0.01125 + 0.944444) / 3 = 0.318565.
    pred = np.array([[[0.05, 0, 0, 0], [1, 0, 0, 0], [3, 3, 3, 3]]])
    got = L.rpn_box_loss(pred, np.zeros_like(pred), np.array([[1, 1, 0]]))
    assert _f(got) == pytest.approx(0.318565, abs=1e-5)


def test_class_loss_hand_worked():
    # row 0: logits (0, 0), class 1 -> ln 2 = 0.693147; row 1: (ln 3, 0), class 0 -> p = 3/4,
    # -ln 0.75 = 0.287682; row 2 unused. Mean of 2 = 0.490415.
    logits = np.array([[[0.0, 0.0], [np.log(3.0), 0.0], [9.0, -9.0]]])
    got = L.class_loss(logits, np.array([[1, 0, -1]]))
    assert _f(got) == pytest.approx(0.490415, abs=1e-5)


def test_box_loss_reads_only_the_gt_class():
    # row 0 is class 2: its class-2 deltas (1, 0, 0, 0) vs target 0 -> 1 - 1/18 = 0.944444;
    # its class-1 deltas (10 ...) must not count. Row 1 is background: not in the sum, but
    # sampled, so the mean is over 2 rows: 0.472222.
    pred = np.zeros((1, 2, 3, 4))
    pred[0, 0, 2] = [1, 0, 0, 0]
    pred[0, 0, 1] = 10
    pred[0, 1] = 5
    got = L.box_loss(pred, np.zeros((1, 2, 4)), np.array([[2, 0]]))
    assert _f(got) == pytest.approx(0.472222, abs=1e-5)


def test_mask_loss_reads_only_the_gt_class_channel():
    # RoI 0 (class 1, positive): channel-1 logits (2, -2, 0, 0) vs targets (1, 0, 0, 1):
    # ln(1 + e^-2) = 0.126928 twice and ln 2 twice -> mean (0.253856 + 1.386294) / 4 =
    # 0.410038. Channel 0 holds nonsense and RoI 1 is not positive: neither counts.
    logits = np.zeros((1, 2, 2, 2, 2))
    logits[0, 0, ..., 1] = [[2, -2], [0, 0]]
    logits[0, 0, ..., 0] = 50
    logits[0, 1] = -50
    targets = np.array([[[[1, 0], [0, 1]], [[1, 1], [1, 1]]]], float)
    got = L.mask_loss(logits, targets, np.array([[1, 0]]), np.array([[True, False]]))
    assert _f(got) == pytest.approx(0.410038, abs=1e-5)


def test_empty_sets_give_zero_not_nan():
    assert _f(L.rpn_class_loss(np.zeros((1, 3)), -np.ones((1, 3), int))) == 0
    assert _f(L.rpn_box_loss(np.ones((1, 3, 4)), np.zeros((1, 3, 4)), np.zeros((1, 3), int))) == 0
    assert _f(L.box_loss(np.ones((1, 3, 2, 4)), np.zeros((1, 3, 4)), np.zeros((1, 3), int))) == 0
    assert _f(L.mask_loss(np.ones((1, 2, 4, 4, 2)), np.zeros((1, 2, 4, 4)), np.ones((1, 2), int),
                          np.zeros((1, 2), bool))) == 0


# ------------------------------------------------------------------------- random vs reference

@pytest.mark.parametrize("seed", [0, 1])
def test_losses_match_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    b, r, k, p = 2, 12, 4, 5
    labels = rng.choice([1, 0, -1], (b, r))
    logits = rng.normal(0, 3, (b, r))
    pred, target = rng.normal(0, 1, (b, r, 4)), rng.normal(0, 1, (b, r, 4)) * 0.2
    assert _f(L.rpn_class_loss(logits, labels)) == pytest.approx(ref_rpn_class(logits, labels),
                                                                  rel=1e-5)
    assert _f(L.rpn_box_loss(pred, target, labels)) == pytest.approx(
        ref_rpn_box(pred, target, labels), rel=1e-5)
    classes = np.where(labels == 1, rng.integers(1, k, (b, r)), np.where(labels == 0, 0, -1))
    cls_logits = rng.normal(0, 2, (b, r, k))
    assert _f(L.class_loss(cls_logits, classes)) == pytest.approx(ref_class(cls_logits, classes),
                                                                  rel=1e-5)
    per_class = rng.normal(0, 1, (b, r, k, 4))
    assert _f(L.box_loss(per_class, target, classes)) == pytest.approx(
        ref_box(per_class, target, classes), rel=1e-5)
    m_logits = rng.normal(0, 2, (b, p, 6, 6, k))
    m_targets = (rng.random((b, p, 6, 6)) > 0.5).astype(float)
    m_classes = rng.integers(1, k, (b, p))
    positive = rng.random((b, p)) > 0.4
    assert _f(L.mask_loss(m_logits, m_targets, m_classes, positive)) == pytest.approx(
        ref_mask(m_logits, m_targets, m_classes, positive), rel=1e-5)


def test_smooth_l1_is_continuous_at_beta():
    beta = 1 / 9
    x = np.array([beta - 1e-7, beta + 1e-7])
    v = ops.convert_to_numpy(L.smooth_l1(x, beta))
    assert abs(v[0] - v[1]) < 1e-5 and v[1] == pytest.approx(beta / 2, abs=1e-5)
