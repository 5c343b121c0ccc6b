"""RoI targets (course_lib.layers.roi_targets): mask targets on hand-worked cases and against
an independent RoIAlign per RoI, and the batched sampling/targets against the NumPy reference."""

from __future__ import annotations

import numpy as np
from keras import ops

from course_lib.layers import roi_targets as T
from course_lib.ops import boxes as B
from course_lib.ops.masks import masks_to_boxes, minimize_masks


def _np(t):
    return ops.convert_to_numpy(t)


def test_mask_target_of_the_gt_box_itself_is_the_mini_mask():
    # RoI == gt box: each target cell reads its own mini-mask cell; its 2x2 samples sit a
    # quarter cell from the centre, so a 1-cell next to 0s still averages >= 0.5625 -> 1 and a
    # 0-cell next to 1s at most 0.4375 -> 0. The binary mini-mask comes back unchanged.
    rng = np.random.default_rng(0)
    mini = (rng.random((28, 28, 1)) > 0.6).astype("float32")
    box = np.array([[3.0, 5.0, 31.0, 47.0]], "float32")
    got = _np(T.mask_targets_ops(mini[None], box[None], box[None], np.zeros((1, 1), "int32")))
    np.testing.assert_array_equal(got[0, 0], mini[..., 0])


def test_mask_target_of_a_larger_roi_puts_the_object_in_its_corner():
    # gt box (10, 10, 24, 24), 14 px, fully foreground; RoI (10, 10, 38, 38), 28 px: the object
    # fills the top-left 14 x 14 cells of the 28 x 28 target and nothing else (outside the gt
    # box the zero border reads 0).
    mini = np.ones((1, 28, 28, 1), "float32")
    gt = np.array([[[10, 10, 24, 24]]], "float32")
    roi = np.array([[[10, 10, 38, 38]]], "float32")
    got = _np(T.mask_targets_ops(mini, gt, roi, np.zeros((1, 1), "int32")))[0, 0]
    want = np.zeros((28, 28))
    want[:14, :14] = 1
    np.testing.assert_array_equal(got, want)


def test_mask_targets_match_roi_align_reference_on_real_shapes():
    # disks drawn at full resolution, stored as mini-masks, cut at jittered RoIs
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:96, :96]
    centres = rng.uniform(20, 76, (4, 2))
    radii = rng.uniform(6, 18, 4)
    full = np.stack([(yy + 0.5 - c[0]) ** 2 + (xx + 0.5 - c[1]) ** 2 < r ** 2
                     for c, r in zip(centres, radii, strict=True)], -1)
    gt = masks_to_boxes(full)
    mini = minimize_masks(full, gt, (28, 28))
    index = np.array([0, 1, 2, 3, 0, 2])
    rois = gt[index] + rng.normal(0, 3, (6, 4))
    got = _np(T.mask_targets_ops(mini[None], gt[None].astype("float32"),
                                 rois[None].astype("float32"), index[None]))[0]
    want = T.mask_targets_np(mini, gt, rois, index)
    assert (np.abs(got - want) > 0).mean() < 0.002  # float32 vs float64 at the 0.5 edge only
    soft = _np(T.mask_targets_ops(mini[None], gt[None].astype("float32"),
                                  rois[None].astype("float32"), index[None], threshold=None))[0]
    np.testing.assert_allclose(soft, T.mask_targets_np(mini, gt, rois, index, threshold=None),
                               atol=1e-4)
    # and the targets really show the disks: their area matches the full-resolution mask's
    # share of each RoI to within the resampling error
    for r in range(6):
        y1, x1, y2, x2 = rois[r]
        ys = (y1 + (np.arange(28) + 0.5) * (y2 - y1) / 28).astype(int).clip(0, 95)
        xs = (x1 + (np.arange(28) + 0.5) * (x2 - x1) / 28).astype(int).clip(0, 95)
        direct = full[ys][:, xs, index[r]]
        assert np.mean(direct != (got[r] > 0.5)) < 0.08


def _batch(seed=3):
    rng = np.random.default_rng(seed)
    g, n = 5, 40
    yx = rng.uniform(0, 80, (2, g, 2))
    gt = np.concatenate([yx, yx + rng.uniform(8, 30, (2, g, 2))], -1).astype("float32")
    cls = rng.integers(1, 3, (2, g)).astype("int32")
    cls[0, 3:] = 0  # padding rows in image 0
    gt[0, 3:] = 0
    masks = (rng.random((2, 28, 28, g)) > 0.5).astype("float32")
    # proposals: jittered gt boxes and random boxes
    jitter = gt[:, rng.integers(0, 3, n)] + rng.normal(0, 4, (2, n, 4))
    rand = rng.uniform(0, 100, (2, n, 2))
    rand = np.concatenate([rand, rand + rng.uniform(5, 30, (2, n, 2))], -1)
    props = np.where(rng.random((2, n, 1)) < 0.5, jitter, rand).astype("float32")
    valid = np.ones((2, n), bool)
    valid[1, 30:] = False
    return props, valid, gt, cls, masks


def test_roi_targets_twin_equals_reference():
    props, valid, gt, cls, masks = _batch()
    keys = np.random.default_rng(4).random((2, props.shape[1] + gt.shape[1]))
    ignore = np.array([[[0, 0, 30, 30]], [[0, 0, 0, 0]]], "float32")
    out = T.roi_targets_ops(props, valid, gt, cls, gt_masks=masks, ignore_boxes=ignore,
                            ignore_valid=np.array([[True], [False]]), num_samples=32,
                            positive_fraction=0.25, keys=keys)
    out = {k: _np(v) for k, v in out.items()}
    for i in range(2):
        ref = T.roi_targets_np(props[i], valid[i], gt[i], cls[i], gt_masks=masks[i],
                               ignore_boxes=ignore[i] if i == 0 else None, num_samples=32,
                               positive_fraction=0.25, keys=keys[i])
        np.testing.assert_array_equal(out["labels"][i], ref["labels"])
        np.testing.assert_allclose(out["rois"][i], ref["rois"], atol=1e-5)
        np.testing.assert_array_equal(out["class_targets"][i], ref["class_targets"])
        np.testing.assert_allclose(out["box_targets"][i], ref["box_targets"], atol=1e-4)
        np.testing.assert_array_equal(out["positive"][i], ref["positive"])
        assert np.mean(out["mask_targets"][i] != ref["mask_targets"]) < 0.002
        assert 0 < ref["positive"].sum() <= 8
    # box targets decode back to the matched gt boxes
    pos = out["labels"][1] == 1
    back = B.decode(out["box_targets"][1][pos], out["rois"][1][pos])
    np.testing.assert_allclose(back, gt[1][out["gt_index"][1][pos]], atol=1e-3)


def test_gt_boxes_join_the_proposals_and_ignore_regions_are_not_background():
    # No valid proposal at all: the positives are the gt boxes themselves (IoU 1)
    props, valid, gt, cls, masks = _batch()
    out = T.roi_targets_ops(props, np.zeros_like(valid), gt, cls, gt_masks=masks, num_samples=16,
                            positive_fraction=0.5, seed=0)
    labels, rois = _np(out["labels"]), _np(out["rois"])
    assert (labels[0] == 1).sum() == 3 and (labels[1] == 1).sum() == 5
    for i in range(2):
        pos_boxes = rois[i][labels[i] == 1]
        assert np.all(B.iou(pos_boxes, gt[i]).max(1) > 0.999)
    # an ignore region over the whole image: no candidate may be background any more
    everything = np.array([[[0, 0, 200, 200]]] * 2, "float32")
    out = T.roi_targets_ops(props, valid, gt, cls, gt_masks=masks, ignore_boxes=everything,
                            ignore_valid=np.ones((2, 1), bool), num_samples=16,
                            positive_fraction=0.5, seed=0)
    assert not np.any(_np(out["labels"]) == 0)
