"""Box head, mask head and detection layer: structure (the paper's sizes), the shared layer
contract, and detections against a per-class NumPy reference."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops
from layer_contract import check_layer_contract

from course_lib.layers.detection import DetectionLayer, detections_np
from course_lib.layers.heads import BoxHead, MaskHead


def test_box_head_shapes_and_parameter_count():
    head = BoxHead(num_classes=3, fc_dim=32)
    feats = np.random.default_rng(0).normal(size=(2, 5, 7, 7, 8)).astype("float32")
    logits, deltas = check_layer_contract(head, feats, expected_shapes=[(2, 5, 3), (2, 5, 3, 4)])
    # fc1: 7*7*8 -> 32 (392*32 + 32), fc2: 32*32 + 32, cls: 32*3 + 3, box: 32*12 + 12
    assert head.count_params() == 392 * 32 + 32 + 32 * 32 + 32 + 32 * 3 + 3 + 32 * 12 + 12
    # every RoI is handled on its own: RoI 3 alone gives the same outputs (the contract's
    # training step changed the weights, so both calls are made now)
    logits, _ = (ops.convert_to_numpy(t) for t in head(feats))
    alone_logits, _ = head(feats[:, 3:4])
    np.testing.assert_allclose(ops.convert_to_numpy(alone_logits)[:, 0], logits[:, 3], atol=1e-5)


def test_mask_head_is_the_papers_fcn():
    head = MaskHead(num_classes=3, channels=16)
    feats = np.random.default_rng(1).normal(size=(2, 4, 14, 14, 8)).astype("float32")
    (out,) = check_layer_contract(head, feats, expected_shapes=[(2, 4, 28, 28, 3)])
    convs = [layer for layer in head._flatten_layers(include_self=False)
             if isinstance(layer, keras.layers.Conv2D)
             and not isinstance(layer, keras.layers.Conv2DTranspose)]
    kernels = [tuple(c.kernel_size) for c in convs]
    assert kernels == [(3, 3)] * 4 + [(1, 1)]
    assert head.up.kernel_size == (2, 2) and head.up.strides == (2, 2)
    gn = MaskHead(num_classes=3, channels=16, norm="group", groups=4)
    check_layer_contract(gn, feats, expected_shapes=[(2, 4, 28, 28, 3)])


def test_detections_match_per_class_reference():
    rng = np.random.default_rng(2)
    b, r, k = 2, 30, 4
    yx = rng.uniform(0, 100, (b, r, 2))
    rois = np.concatenate([yx, yx + rng.uniform(10, 40, (b, r, 2))], -1).astype("float32")
    valid = np.ones((b, r), bool)
    valid[1, 25:] = False
    logits = rng.normal(0, 2, (b, r, k)).astype("float32")
    deltas = rng.normal(0, 0.5, (b, r, k, 4)).astype("float32")
    meta = np.array([[128, 128, 0, 0, 128, 128, 1], [100, 128, 14, 0, 114, 128, 1]], "float32")
    layer = DetectionLayer(max_detections=20, score_threshold=0.2, nms_threshold=0.5,
                           pre_nms_top_k=60)
    boxes, classes, scores, ok = check_layer_contract(
        layer, [rois, valid, logits, deltas, meta],
        expected_shapes=[(2, 20, 4), (2, 20), (2, 20), (2, 20)])
    for i in range(b):
        rb, rc, rs = detections_np(rois[i], valid[i], logits[i], deltas[i], window=meta[i, 2:6],
                                   max_detections=20,
                                   score_threshold=0.2, nms_threshold=0.5, pre_nms_top_k=60)
        n = int(ok[i].sum())
        assert n == len(rb) > 3
        np.testing.assert_allclose(scores[i, :n], rs, atol=1e-5)
        np.testing.assert_array_equal(classes[i, :n], rc)
        np.testing.assert_allclose(boxes[i, :n], rb, atol=1e-3)
        assert np.all(classes[i, n:] == 0) and np.all(scores[i, n:] == 0)


def test_nms_is_per_class_hand_worked():
    # Two identical RoIs, zero deltas. RoI 0 says class 1 (logit 5), RoI 1 says class 2: the
    # boxes overlap fully (IoU 1) but belong to different classes, so both survive; a third
    # RoI equal to RoI 0 and also class 1 (lower score) is suppressed.
    rois = np.array([[[10, 10, 50, 50], [10, 10, 50, 50], [10, 10, 50, 50]]], "float32")
    logits = np.array([[[0, 5, 0], [0, 0, 5], [0, 4, 0]]], "float32")
    meta = np.array([[64, 64, 0, 0, 64, 64, 1]], "float32")
    layer = DetectionLayer(max_detections=5, score_threshold=0.3)
    boxes, classes, scores, ok = (ops.convert_to_numpy(t) for t in layer(
        [rois, np.ones((1, 3), bool), logits, np.zeros((1, 3, 3, 4), "float32"), meta]))
    assert ok[0].sum() == 2
    assert sorted(classes[0, :2].tolist()) == [1, 2]
    # softmax(0, 5, 0)[1] = e^5 / (e^5 + 2) = 148.413 / 150.413 = 0.986703
    np.testing.assert_allclose(scores[0, :2], 0.986703, atol=1e-5)
