"""Independent oracles for the exercise checks.

A check compares the learner's function with the library's own function on its cases, so
"the check accepts the library" proves nothing about the library. Here each check is given an
*answer key* instead: a learner that looks the case up and returns an answer worked out by
hand (arithmetic in the comments) or computed by a different implementation (Keras layers,
TensorFlow ops, plain loops). The check passing means the library's reference agrees with
those answers on every case. Each check must also reject a learner with one answer wrong.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from keras.src.applications.resnet import residual_block_v1

from course_lib import exercises
from course_lib.exercises import ExerciseFailed

SQRT2 = math.sqrt(2.0)


# ------------------------------------------------------------------------ the answer key

def _same(a, b) -> bool:
    """Value equality of case arguments (the checks pass copies, so identity fails)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def answer_key(cases, answers):
    """A learner returning ``answers[i]`` (a value, or a function of the case's arguments)
    for the arguments of ``cases[i]``."""
    assert len(cases) == len(answers), "one answer per case"

    def learner(*args, **kwargs):
        for case, answer in zip(cases, answers, strict=True):
            if _same(tuple(case.args), args) and _same(dict(case.kwargs), kwargs):
                return answer(*args, **kwargs) if callable(answer) else answer
        raise AssertionError(f"not a case of this check: {args!r}")

    return learner


def _with_one_wrong(answers, index: int):
    wrong = list(answers)
    value = wrong[index]
    if callable(value):
        wrong[index] = lambda *a, **k: _perturb(value(*a, **k))
    else:
        wrong[index] = _perturb(value)
    return wrong


def _perturb(value):
    if isinstance(value, str):
        return value + " 1 1"
    if isinstance(value, (bool, np.bool_)):
        return not value
    if isinstance(value, list):
        return [_perturb(value[0])] + value[1:]
    arr = np.asarray(value)
    if arr.size == 0:
        return np.zeros(arr.shape[:-1] + (arr.shape[-1] + 1,)) if arr.ndim else 1.0
    out = arr.astype(float).copy()
    out.flat[0] += 1.0
    return out if arr.ndim else float(out)


# --------------------------------------------------------------- independent implementations

def _keras_conv2d(x, w, b, stride=1, padding="valid"):
    """Keras' Conv2D with the given weights, on one H×W×C image."""
    layer = keras.layers.Conv2D(w.shape[-1], w.shape[:2], strides=stride, padding=padding)
    layer.build((1, *x.shape))
    layer.set_weights([w.astype("float32"), b.astype("float32")])
    return np.asarray(layer(x[None].astype("float32")))[0]


def _keras_upsample_add(higher, lateral):
    """Keras' nearest-neighbour UpSampling2D, then add (any batch axis)."""
    h = np.asarray(higher, "float32")
    batched = h if h.ndim == 4 else h[None]
    up = np.asarray(keras.layers.UpSampling2D(2, interpolation="nearest")(batched))
    return (up if h.ndim == 4 else up[0]) + lateral


def _keras_top_down(laterals):
    merged = [np.asarray(laterals[3])]
    for lateral in reversed(laterals[:3]):
        merged.insert(0, _keras_upsample_add(merged[0], lateral))
    return merged


def _loop_rle(mask) -> str:
    """Kaggle run-length encoding by walking the pixels one at a time, column by column."""
    flat = [bool(v) for v in np.asarray(mask).ravel(order="F")]
    runs, start = [], None
    for i, on in enumerate(flat + [False], start=1):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs += [start, i - start]
            start = None
    return " ".join(map(str, runs))


def _tf_nms(boxes, scores, threshold):
    n = len(boxes)
    return tf.image.non_max_suppression(np.asarray(boxes, "float32"), np.asarray(scores, "float32"),
                                        n, threshold).numpy()


def _loop_level_anchors(image_shape, scale, ratios, stride):
    """Anchors by the definition, one Python loop per axis: centres (i + 0.5) * stride on a
    ceil(H / stride) × ceil(W / stride) grid, h = s / sqrt(r), w = s * sqrt(r)."""
    rows = []
    for i in range(math.ceil(image_shape[0] / stride)):
        for j in range(math.ceil(image_shape[1] / stride)):
            for r in ratios:
                h, w = scale / math.sqrt(r), scale * math.sqrt(r)
                cy, cx = (i + 0.5) * stride, (j + 0.5) * stride
                rows.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(rows)


def _crop_and_resize_roi_align(features, box, output_size, spatial_scale, sampling_ratio):
    """RoIAlign of one box through tf.image.crop_and_resize (valid when every sample point is
    inside the map): crop at the h*sr × w*sr sample points, then average sr × sr blocks."""
    out_h, out_w = output_size
    n_h, n_w = out_h * sampling_ratio, out_w * sampling_ratio
    y1, x1, y2, x2 = np.asarray(box, float) * spatial_scale - np.array([0.5, 0.5, 0.5, 0.5])
    sy, sx = (y2 - y1) / n_h, (x2 - x1) / n_w
    first = np.array([y1 + 0.5 * sy, x1 + 0.5 * sx])
    last = np.array([y1 + (n_h - 0.5) * sy, x1 + (n_w - 0.5) * sx])
    height, width = features.shape
    assert first.min() >= 0 and last[0] <= height - 1 and last[1] <= width - 1
    norm = np.concatenate([first, last]) / np.array([height - 1, width - 1] * 2)
    crop = tf.image.crop_and_resize(features[None, ..., None].astype("float32"),
                                    norm[None].astype("float32"), [0], (n_h, n_w)).numpy()
    return crop[0, ..., 0].reshape(out_h, sampling_ratio, out_w, sampling_ratio).mean(axis=(1, 3))


# ------------------------------------------------------------------------- hand-worked keys

def _box_area_answers():
    return [
        np.array([6.0]),                     # 2 rows × 3 columns
        np.array([1.0]),                     # one pixel
        np.array([3.5 * 1.5, 20.0 * 10.0, 0.0]),  # (4 - 0.5)(2.5 - 1); 20 × 10; zero height
        np.zeros(0),
    ]


def _data_tour_answers():
    return {
        "masks_to_boxes": [
            np.array([[1, 2, 3, 5], [5, 7, 6, 8]], float),  # rows 1-2 cols 2-4; pixel (5, 7)
            np.array([[1, 2, 8, 9]], float),                # the ring fills rows 1-7, cols 2-8
            np.zeros((1, 4)),                               # empty mask: a row of zeros
            np.zeros((0, 4)),
        ],
        "flip": [
            np.array([[1, 5, 4, 8]], float),                # x 2..5 in 10 -> 10-5 .. 10-2
            np.array([[0, 7, 3, 8]], float),                # x 0..1 in 8 -> 7 .. 8
            np.array([[0.5, 4, 2, 5.5], [4, 0, 6, 7]]),     # 7-3 .. 7-1.5; 7-7 .. 7-0
            np.zeros((0, 4)),
        ],
        "has_hole": [True, False, False, False, True],
    }


# mask IoU: 6×6 squares 3 columns apart share 6×3 = 18 of 36 + 36 - 18 = 54 pixels
MASK_IOU_ANSWERS = [18 / 54, 1.0, 0.0, 4 / 36, 0.0]
RLE_ANSWERS = [
    "4 2 8 2",   # column-major pixels 4, 5 (column 1) and 8, 9 (column 2)
    "1 2 4 2",   # columns [1, 1], [0, 1], [1, 0]: on at 1-2, then 4-5 across the column break
    "",
    "1 20",
    _loop_rle,   # the random mask: a pixel-by-pixel walk
]
# precision: TP / (TP + FP + FN), hits only where IoU > threshold (strictly)
PRECISION_AT_ANSWERS = [2 / 3, 1 / 4, 1 / 2, 0.0, 1.0]
CONV_OUTPUT_SIZE_ANSWERS = [
    3,     # 5 - 3 + 1
    112,   # (224 + 6 - 7) // 2 + 1
    3,     # (8 - 3) // 2 + 1
    5,     # span 2*(3-1)+1 = 5: 9 - 5 + 1
    4,     # (7 - 1) // 2 + 1
]
IOU_ANSWERS = [
    np.array([[1 / 7]]),                 # 1 px shared of 4 + 4 - 1
    np.array([[0.0]]),
    # a0 vs b1: 10×5 = 50 of 150; a1 (10×20) vs b0: 5×5 = 25 of 275; a1 vs b1: 5×10 of 250
    np.array([[1.0, 1 / 3, 0.0], [1 / 11, 0.2, 0.0]]),
    np.zeros((0, 2)),
]
ENCODE_ANSWERS = [
    np.zeros((1, 4)),
    np.array([[1.0, 0.0, 0.0, 0.0]]),                        # 1 / 10 / 0.1
    np.array([[0.0, 0.0, math.log(2) / 0.2, math.log(0.5) / 0.2]]),
    # box centre (16, 11.5) size 28×17 on anchor centre (16, 8) size 32×16;
    # box centre (2, 2) size 4×4 on anchor centre (3, 5) size 4×8
    np.array([[0.0, 3.5 / 16 / 0.1, math.log(28 / 32) / 0.2, math.log(17 / 16) / 0.2],
              [-1 / 4 / 0.1, -3 / 8 / 0.1, 0.0, math.log(0.5) / 0.2]]),
]
NMS_ANSWERS = [
    np.array([0, 2]),       # box 1 overlaps box 0 by 90 / 110 > 0.5
    np.array([1, 0]),       # IoU exactly 0.5 is not above 0.5: both kept, best first
    _tf_nms,                # 30 random boxes: TensorFlow's NMS
    np.zeros(0, int),
]
BILINEAR_POINT_ANSWERS = [
    15.0,          # linear map 10 y + x: 12.5 + 2.5
    21.0,          # the cell (2, 1) itself
    # rows 2 and 3 hold 4 and 9 (+ 3x): 4 + 0.3 * 5 = 5.5, plus 3 * 4.6 = 13.8
    19.3,
    30.5,          # last row: 30 + 0.5
    1.5,           # y = -0.5 is clamped to row 0: 0 + 1.5
    0.0,           # y = -1.5 is beyond the band: 0
]
ROI_ALIGN_BOX_ANSWERS = [
    np.array([[11.0, 12.0], [21.0, 22.0]]),     # worked in tests/test_roi.py
    np.array([[6.25, 7.75]]),                   # likewise
    _crop_and_resize_roi_align,                 # all its samples are inside: TensorFlow's op
    # box (-2, 0, 0, 2): rows at -2 (reads 0) and -1 (clamped to row 0), columns 0 and 1:
    # mean of (0, 0, 0, 1) = 0.25
    np.array([[0.25]]),
]
FPN_LEVEL_ANSWERS = [
    np.array([4]),
    np.array([3, 5, 4]),     # 112 -> 4 - 1; 448 -> 4 + 1; sqrt(112 * 448) = 224
    np.array([3]),           # log2(223 / 224) < 0
    # sqrt(2 * 3) = 2.4 px -> far below P2; sqrt(3000 * 2000) = 2449 px -> far above P5;
    # an empty box -> P2
    np.array([2, 5, 2]),
]
UNET_OUTPUT_SIZE_ANSWERS = [
    388,   # 572 -> 284 -> 140 -> 68 -> 32 -> bottom 28 -> 52 -> 100 -> 196 -> 388
    4,     # 188 -> 92 -> 44 -> 20 -> 8 -> bottom 4 -> 4 -> 4 -> 4 -> 4
    52,    # 92 -> 44 -> 20 -> bottom 16 -> 28 -> 52
    4,     # 20 -> 8 -> bottom 4 -> 4
    452,   # 636 -> 316 -> 156 -> 76 -> 36 -> bottom 32 -> 60 -> 116 -> 228 -> 452
]
CENTER_CROP_ANSWERS = [
    np.array([[14.0, 15.0], [20.0, 21.0]]).reshape(1, 2, 2, 1),  # rows, columns 2-3 of 6r + c
    (7.0 * np.arange(1, 5)[:, None] + np.arange(1, 5)[None, :]).reshape(1, 4, 4, 1),
    np.ones((2, 5, 5, 3)),
    lambda x, hw: x[:, 88:88 + 392, 88:88 + 394],                # (568 - 392) // 2 = 88
]


DSB_PRECISION_ANSWERS = [
    1 / 4,   # kept 0.9, 0.8, 0.7: the exact box hits; the shifted one (IoU 8/24) and the far one miss
    2 / 3,   # at 0.3 the shifted box (IoU 1/3) hits too: TP 2, FP 1 (far box), FN 0
    2 / 4,   # the weak exact box (0.3) now kept: TP 2 (both exact), FP 2 (shifted, far), FN 0
    2 / 4,   # float32 0.3 >= 0.3: the same four detections
    1 / 4,   # only IoU 1 beats 0.95: TP 1, FP 2, FN 1
    0.0,     # nothing detected: TP 0, FN 2
    1 / 3,   # two copies on nucleus 1 (IoU 1 and 12/16): TP 1, FP 1 (the copy), FN 1 (nucleus 2)
]


def _painted(shape, boxes, labels):
    """Paint boxes worst first so the best ends on top (the painter's algorithm)."""
    out = np.zeros(shape, np.int64)
    for (y1, x1, y2, x2), label in sorted(zip(boxes, labels, strict=True), key=lambda b: -b[1]):
        out[y1:y2, x1:x2] = label
    return out


_BOXES3 = [(0, 0, 6, 6), (3, 3, 9, 9), (2, 5, 5, 11)]
MASKS_TO_LABELS_ANSWERS = [
    _painted((10, 12), _BOXES3, [3, 1, 2]),     # scores 0.6, 0.9, 0.75: B first, C, then A
    _painted((10, 12), _BOXES3, [1, 2, 3]),     # 0.9, 0.6, 0.3: index order
    np.ones((6, 6), np.int64),                  # the small box is hidden under the big one
    np.zeros((4, 5), np.int64),
]


# windows: n = ceil((L - overlap) / (tile - overlap)), starts spread evenly, worked by hand
TILE_STARTS_ANSWERS = [
    [0],                                  # 256: one window
    [0],                                  # 100: one, padded
    [0, 132, 264],                        # 520: n = ceil(456 / 192) = 3, step 264 / 2
    [0, 64],                              # 320: n = ceil(256 / 192) = 2
    [0, 181, 363, 544, 725, 907, 1088],   # 1344: n = ceil(1280 / 192) = 7, step 1088 / 6
    [0, 256],                             # 512, no overlap: n = 2
    [0, 48, 96, 144],                     # 400, overlap 200: n = ceil(200 / 56) = 4
]


# learning rate: base · factor^(drops so far) · (f + (1 - f) · step / warm-up) during warm-up
WARMUP_STEP_LR_ANSWERS = [
    0.02,                        # no warm-up, no boundary
    0.02 / 3,                    # step 0: the warm-up factor 1/3 alone
    0.02 * (1 / 3 + 2 / 3 / 2),  # step 50 of 100: 1/3 + (2/3)(1/2) = 2/3 of the base
    0.02,                        # step 100: warm-up over
    0.002,                       # one drop (×0.1) at 300
    0.0002,                      # two drops
    0.1 * (0.5 + 0.5 * 5 / 10),  # base 1, one drop at 4, half-way (5 of 10) from 0.5: 0.075
]


def _keys():
    """(name, check, cases, answers) of every check with an answer key."""
    data_tour = _data_tour_answers()
    conv2d = [np.full((2, 2, 1), -3.0)] + [_keras_conv2d] * 4   # case 1: x - x[+1, +1] + 1
    upsample = [np.array([[2, 2, 3, 3], [2, 2, 3, 3], [4, 4, 5, 5], [4, 4, 5, 5]],
                         float)[..., None],                      # 2×2 block copies, plus 1
                _keras_upsample_add, _keras_upsample_add, np.full((2, 2, 3), 2.0)]
    top_down = [_keras_top_down,
                # constant levels 1, 10, 100, 1000 (finest first): M5 = 1000, M4 = 1100, ...
                [np.full((8 // 2**i, 8 // 2**i, 1), v) for i, v in
                 enumerate([1111.0, 1110.0, 1100.0, 1000.0])],
                _keras_top_down]
    level_anchors = [
        # 8×8 image, stride 4: centres 2 and 6, one 4×4 square each
        np.array([[0, 0, 4, 4], [0, 4, 4, 8], [4, 0, 8, 4], [4, 4, 8, 8]], float),
        # 16×8 image, stride 8: centres (4, 4) and (12, 4); ratios 0.5, 1, 2 of scale 16
        np.array([[cy - h / 2, 4 - w / 2, cy + h / 2, 4 + w / 2] for cy in (4, 12)
                  for h, w in ((16 * SQRT2, 16 / SQRT2), (16, 16), (16 / SQRT2, 16 * SQRT2))]),
        _loop_level_anchors,
    ]
    E = exercises
    return [
        ("box_area", E.check_box_area, E.BOX_AREA_CASES, _box_area_answers()),
        ("masks_to_boxes", E.check_masks_to_boxes, E.MASKS_TO_BOXES_CASES,
         data_tour["masks_to_boxes"]),
        ("flip_boxes_left_right", E.check_flip_boxes_left_right, E.FLIP_BOXES_CASES,
         data_tour["flip"]),
        ("has_hole", E.check_has_hole, E.HAS_HOLE_CASES, data_tour["has_hole"]),
        ("mask_iou", E.check_mask_iou, E.MASK_IOU_CASES, MASK_IOU_ANSWERS),
        ("rle_encode", E.check_rle_encode, E.RLE_CASES, RLE_ANSWERS),
        ("precision_at", E.check_precision_at, E.PRECISION_AT_CASES, PRECISION_AT_ANSWERS),
        ("conv2d", E.check_conv2d, E.CONV2D_CASES, conv2d),
        ("conv_output_size", E.check_conv_output_size, E.CONV_OUTPUT_SIZE_CASES,
         CONV_OUTPUT_SIZE_ANSWERS),
        ("upsample_add", E.check_upsample_add, E.UPSAMPLE_ADD_CASES, upsample),
        ("top_down", E.check_top_down, E.TOP_DOWN_CASES, top_down),
        ("iou", E.check_iou, E.IOU_CASES, IOU_ANSWERS),
        ("level_anchors", E.check_level_anchors, E.LEVEL_ANCHOR_CASES, level_anchors),
        ("encode", E.check_encode, E.ENCODE_CASES, ENCODE_ANSWERS),
        ("nms", E.check_nms, E.NMS_CASES, NMS_ANSWERS),
        ("bilinear_point", E.check_bilinear_point, E.BILINEAR_POINT_CASES,
         BILINEAR_POINT_ANSWERS),
        ("roi_align_box", E.check_roi_align_box, E.ROI_ALIGN_BOX_CASES, ROI_ALIGN_BOX_ANSWERS),
        ("fpn_level", E.check_fpn_level, E.FPN_LEVEL_CASES, FPN_LEVEL_ANSWERS),
        ("unet_output_size", E.check_unet_output_size, E.UNET_OUTPUT_SIZE_CASES,
         UNET_OUTPUT_SIZE_ANSWERS),
        ("center_crop", E.check_center_crop, E.CENTER_CROP_CASES, CENTER_CROP_ANSWERS),
        ("dsb_precision", E.check_dsb_precision, E.DSB_PRECISION_CASES, DSB_PRECISION_ANSWERS),
        ("masks_to_labels", E.check_masks_to_labels, E.MASKS_TO_LABELS_CASES,
         MASKS_TO_LABELS_ANSWERS),
        ("warmup_step_lr", E.check_warmup_step_lr, E.WARMUP_STEP_LR_CASES,
         WARMUP_STEP_LR_ANSWERS),
        ("tile_starts", E.check_tile_starts, E.TILE_STARTS_CASES, TILE_STARTS_ANSWERS),
    ]


KEYS = _keys()


@pytest.mark.parametrize("name, check, cases, answers", KEYS, ids=[k[0] for k in KEYS])
def test_check_accepts_the_independent_answers(name, check, cases, answers, capsys):
    assert check(answer_key(cases, answers))
    assert f"✓ {name}: all {len(cases)} cases pass" in capsys.readouterr().out


@pytest.mark.parametrize("name, check, cases, answers", KEYS, ids=[k[0] for k in KEYS])
def test_check_rejects_one_wrong_answer(name, check, cases, answers, capsys):
    # a learner right everywhere but in the last case: the check must get that far and fail
    last = len(cases) - 1
    with pytest.raises(ExerciseFailed, match=f"case {last + 1}"):
        check(answer_key(cases, _with_one_wrong(answers, last)))
    assert f"case {last + 1}/{len(cases)}" in capsys.readouterr().out


def test_hand_written_answers_agree_with_their_loop_oracles():
    # the pixel walk and the anchor loop used above, on cases worked by hand
    assert [_loop_rle(c.args[0]) for c in exercises.RLE_CASES[:4]] == RLE_ANSWERS[:4]
    np.testing.assert_allclose(_loop_level_anchors((8, 8), 4.0, (1.0,), 4),
                               [[0, 0, 4, 4], [0, 4, 4, 8], [4, 0, 8, 4], [4, 4, 8, 8]])


def test_bottleneck_check_accepts_keras_applications_own_block(capsys):
    # Oracle: the residual block keras.applications.ResNet50 is built from (Keras' code).
    def keras_block(x, filters, stride=1, conv_shortcut=True):
        return residual_block_v1(x, filters, stride=stride, conv_shortcut=conv_shortcut,
                                 name=f"keras_{filters}_{stride}_{int(conv_shortcut)}")

    assert exercises.check_bottleneck_block(keras_block)
    assert "✓ bottleneck_block" in capsys.readouterr().out
