"""Tests of course_lib.ops.masks: Kaggle and COCO RLE, boxes, label images, mini-masks.

Oracles: encodings worked out by hand, pycocotools (COCO RLE area and boxes),
scikit-image (regionprops boxes, disks), and round-trip properties (hypothesis).
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils
from skimage.draw import disk
from skimage.measure import regionprops

from course_lib.ops import masks as M

# --------------------------------------------------------------------------- Kaggle RLE


def test_rle_encode_hand_worked_3x3():
    # 0 1 0     read column by column (top to bottom, then left to right), pixels 1..9:
    # 0 1 1     col 0: 0 0 0 (pixels 1-3), col 1: 1 1 0 (pixels 4-6), col 2: 0 1 1 (7-9)
    # 0 0 1     runs: start 4 length 2, start 8 length 2.
    mask = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool)
    assert M.rle_encode(mask) == "4 2 8 2"
    np.testing.assert_array_equal(M.rle_decode("4 2 8 2", (3, 3)), mask)


def test_rle_encode_non_square_run_crosses_columns():
    # H=2, W=3:  1 0 1    column-major: col 0 = 1 1 (pixels 1,2), col 1 = 0 1 (3,4),
    #            1 1 0    col 2 = 1 0 (5,6). Pixels 4 and 5 are one run across columns.
    mask = np.array([[1, 0, 1], [1, 1, 0]], dtype=bool)
    assert M.rle_encode(mask) == "1 2 4 2"
    # Row-major reading would give "1 1 3 3" instead: the transpose matters.
    np.testing.assert_array_equal(M.rle_decode("1 2 4 2", (2, 3)), mask)


def test_rle_full_and_empty_masks():
    assert M.rle_encode(np.zeros((4, 5))) == ""
    assert M.rle_encode(np.ones((4, 5))) == "1 20"
    assert not M.rle_decode("", (4, 5)).any()
    assert not M.rle_decode(float("nan"), (4, 5)).any()  # pandas' empty cell
    assert M.rle_decode("1 20", (4, 5)).all()


def test_rle_decode_rejects_bad_input():
    with pytest.raises(ValueError, match="pairs"):
        M.rle_decode("1 2 3", (3, 3))
    with pytest.raises(ValueError, match="only 9 pixels"):
        M.rle_decode("8 3", (3, 3))
    with pytest.raises(ValueError, match="1-indexed"):
        M.rle_decode("0 2", (3, 3))
    with pytest.raises(ValueError, match="2-D"):
        M.rle_encode(np.zeros((3, 3, 2)))


@settings(max_examples=60, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_rle_round_trip(mask):
    rle = M.rle_encode(mask)
    np.testing.assert_array_equal(M.rle_decode(rle, mask.shape), mask)
    values = [int(v) for v in rle.split()]
    # Starts increase and runs never touch (a touching pair would be one run).
    starts, lengths = values[0::2], values[1::2]
    assert all(s2 > s1 + l1 for s1, l1, s2 in zip(starts, lengths, starts[1:], strict=False))
    assert sum(lengths) == mask.sum()


# --------------------------------------------------------------------------- COCO RLE


def _disks(shape=(40, 50)):
    masks = np.zeros((*shape, 3), dtype=bool)
    for i, (centre, radius) in enumerate([((10, 12), 6), ((25, 30), 9)]):
        rr, cc = disk(centre, radius, shape=shape)
        masks[rr, cc, i] = True
    masks[0:3, 45:50, 2] = True  # touches the border
    return masks


def test_coco_rle_round_trip_and_json_safe():
    import json

    masks = _disks()
    rles = M.coco_rle_encode(masks)
    assert all(isinstance(r["counts"], str) for r in rles)
    json.dumps(rles)
    np.testing.assert_array_equal(M.coco_rle_decode(rles), masks)
    np.testing.assert_array_equal(M.coco_rle_decode(rles[1]), masks[..., 1])
    assert M.coco_rle_decode([], shape=(40, 50)).shape == (40, 50, 0)


def test_coco_rle_matches_pycocotools_area_and_box():
    masks = _disks()
    rles = M.coco_rle_encode(masks)
    as_bytes = [{"size": r["size"], "counts": r["counts"].encode()} for r in rles]
    np.testing.assert_array_equal(mask_utils.area(as_bytes), masks.sum(axis=(0, 1)))
    # pycocotools' [x, y, w, h] is our (y1, x1, y2, x2) reordered.
    x, y, w, h = mask_utils.toBbox(as_bytes).T
    np.testing.assert_allclose(np.stack([y, x, y + h, x + w], axis=1), M.masks_to_boxes(masks))


def test_coco_rle_accepts_c_ordered_stacks_that_pycocotools_refuses():
    # pycocotools reads memory column by column and refuses a C-ordered H×W×N uint8 array;
    # coco_rle_encode makes the Fortran-ordered copy itself.
    masks = _disks()
    c_ordered = np.ascontiguousarray(masks, dtype=np.uint8)
    with pytest.raises(ValueError):
        mask_utils.encode(c_ordered)
    direct = mask_utils.encode(np.asfortranarray(c_ordered))
    ours = M.coco_rle_encode(masks)
    assert [r["counts"].encode() for r in ours] == [r["counts"] for r in direct]


# --------------------------------------------------------------------------- boxes


def test_masks_to_boxes_hand_worked():
    masks = np.zeros((6, 7, 3), dtype=bool)
    masks[1:4, 2:6, 0] = True  # rows 1..3, cols 2..5 -> (1, 2, 4, 6)
    masks[5, 6, 1] = True  # the last pixel -> (5, 6, 6, 7)
    expected = [[1, 2, 4, 6], [5, 6, 6, 7], [0, 0, 0, 0]]  # third mask empty -> zeros
    np.testing.assert_array_equal(M.masks_to_boxes(masks), expected)
    assert M.masks_to_boxes(np.zeros((5, 5, 0), bool)).shape == (0, 4)


def test_masks_to_boxes_matches_regionprops():
    rng = np.random.default_rng(0)
    masks = np.zeros((64, 80, 12), dtype=bool)
    for i in range(12):
        rr, cc = disk(rng.uniform(0, [64, 80]), rng.uniform(2, 15), shape=(64, 80))
        masks[rr, cc, i] = True
    expected = [regionprops(masks[..., i].astype(np.uint8))[0].bbox for i in range(12)]
    # regionprops' bbox is (min_row, min_col, max_row, max_col) with exclusive max: pixel edges.
    np.testing.assert_array_equal(M.masks_to_boxes(masks), np.array(expected, dtype=np.float32))


# --------------------------------------------------------------------------- label images


def test_labels_masks_round_trip_with_gaps():
    labels = np.zeros((5, 6), dtype=np.int32)
    labels[0:2, 0:2] = 3
    labels[3:5, 2:6] = 7  # labels need not be consecutive
    masks = M.labels_to_masks(labels)
    assert masks.shape == (5, 6, 2) and masks.dtype == bool
    np.testing.assert_array_equal(masks[..., 0], labels == 3)  # increasing label order
    back = M.masks_to_labels(masks)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, np.where(labels == 3, 1, np.where(labels == 7, 2, 0)))
    assert M.labels_to_masks(np.zeros((4, 4), int)).shape == (4, 4, 0)
    assert M.masks_to_labels(np.zeros((4, 4, 0), bool)).shape == (4, 4)


def test_masks_to_labels_overlap_rules():
    masks = np.zeros((1, 3, 2), dtype=bool)
    masks[0, 0:2, 0] = True
    masks[0, 1:3, 1] = True  # pixel (0, 1) is in both
    np.testing.assert_array_equal(M.masks_to_labels(masks), [[1, 2, 2]])
    np.testing.assert_array_equal(M.masks_to_labels(masks, overlap="first"), [[1, 1, 2]])
    with pytest.raises(ValueError, match="1 pixels belong to several masks"):
        M.masks_to_labels(masks, overlap="error")


# --------------------------------------------------------------------------- mini-masks


def test_paste_full_mini_mask_fills_exactly_its_box():
    pasted = M.paste_mask(np.ones((28, 28)), [2, 3, 7, 11], (10, 12))
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:7, 3:11] = True
    np.testing.assert_array_equal(pasted, expected)


def test_paste_fractional_box_uses_pixel_centres():
    # Box rows [2.3, 5.5): pixel centres 2.5, 3.5, 4.5 are inside (rows 2..4), 5.5 is not.
    # Columns [3.6, 9.1): centres 4.5 .. 8.5 (cols 4..8); 3.5 is outside.
    pasted = M.paste_mask(np.ones((28, 28)), [2.3, 3.6, 5.5, 9.1], (10, 12))
    expected = np.zeros((10, 12), dtype=bool)
    expected[2:5, 4:9] = True
    np.testing.assert_array_equal(pasted, expected)


def test_paste_clips_box_outside_image_and_thresholds():
    pasted = M.paste_mask(np.ones((28, 28)), [-5, -5, 3, 4], (6, 6))
    assert pasted.sum() == 3 * 4
    half = np.zeros((28, 28))
    half[:, 14:] = 1.0  # right half on
    pasted = M.paste_mask(half, [0, 0, 4, 8], (4, 8))
    np.testing.assert_array_equal(pasted[:, 4:], True)
    np.testing.assert_array_equal(pasted[:, :4], False)
    soft = M.paste_mask(half, [0, 0, 4, 8], (4, 8), threshold=None)
    assert soft.dtype == np.float32 and soft.min() == 0.0 and soft.max() == 1.0


def test_minimize_then_expand_recovers_masks():
    rng = np.random.default_rng(1)
    masks = np.zeros((96, 96, 6), dtype=bool)
    for i in range(6):
        rr, cc = disk(rng.uniform(20, 76, 2), rng.uniform(4, 18), shape=(96, 96))
        masks[rr, cc, i] = True
    masks[10:14, 5:40, 5] = True  # a long thin one
    boxes = M.masks_to_boxes(masks)
    mini = M.minimize_masks(masks, boxes)
    assert mini.shape == (28, 28, 6) and mini.dtype == np.float32
    assert 0.0 <= mini.min() and mini.max() <= 1.0
    back = M.expand_masks(mini, boxes, masks.shape)
    for i in range(6):
        inter = (back[..., i] & masks[..., i]).sum()
        union = (back[..., i] | masks[..., i]).sum()
        assert inter / union > 0.95, i


def test_minimize_rectangle_is_all_ones_and_outside_is_zero():
    masks = np.zeros((10, 12, 1), dtype=bool)
    masks[2:5, 3:9, 0] = True
    np.testing.assert_array_equal(M.minimize_masks(masks, [[2, 3, 5, 9]]), 1.0)
    # A box twice as wide as the mask, reaching past the image: right half empty.
    mini = M.minimize_masks(masks, [[2, 3, 5, 15]], size=(4, 4))
    np.testing.assert_array_equal(mini[:, :2, 0], 1.0)
    np.testing.assert_array_equal(mini[:, 2:, 0], 0.0)
    with pytest.raises(ValueError, match="1 masks but 2 boxes"):
        M.minimize_masks(masks, np.zeros((2, 4)))


# --------------------------------------------------------------------------- real data

@pytest.mark.real_data
def test_real_masks_rle_and_boxes(real_dsb):
    from skimage.io import imread

    sample = sorted(p for p in real_dsb.iterdir() if p.is_dir())[0]
    files = sorted((sample / "masks").glob("*.png"))[:10]
    masks = np.stack([imread(f) > 0 for f in files], axis=-1)
    for i in range(masks.shape[-1]):
        np.testing.assert_array_equal(
            M.rle_decode(M.rle_encode(masks[..., i]), masks.shape[:2]), masks[..., i])
    # Original DSB masks may hold several pieces: regionprops of the whole mask (label 1).
    expected = [regionprops(masks[..., i].astype(np.uint8))[0].bbox for i in range(len(files))]
    np.testing.assert_array_equal(M.masks_to_boxes(masks), np.array(expected, np.float32))


def test_coco_rle_decode_uncompressed_counts():
    # COCO's uncompressed RLE alternates background/foreground run lengths, column-major,
    # starting with background: the 3×3 mask of the Kaggle test reads 0 0 0 1 1 0 0 1 1,
    # so counts = [3, 2, 2, 2].
    mask = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(M.coco_rle_decode({"size": [3, 3], "counts": [3, 2, 2, 2]}),
                                  mask)


@settings(max_examples=50, deadline=None)
@given(st.floats(-3, 20), st.floats(-3, 20), st.floats(0.3, 15), st.floats(0.3, 15),
       st.sampled_from([(28, 28), (14, 7), (1, 1)]))
def test_paste_full_mini_mask_covers_pixels_whose_centre_is_in_the_box(y1, x1, h, w, size):
    # Oracle: pixel (r, c) is inside when y1 <= r + 0.5 < y2 and x1 <= c + 0.5 < x2.
    box = np.array([y1, x1, y1 + h, x1 + w])
    pasted = M.paste_mask(np.ones(size), box, (16, 18))
    rr, cc = np.mgrid[:16, :18] + 0.5
    expected = (rr >= box[0]) & (rr < box[2]) & (cc >= box[1]) & (cc < box[3])
    np.testing.assert_array_equal(pasted, expected)


@pytest.mark.parametrize("seed", range(4))
def test_coco_rle_encode_labels_equals_encoding_the_mask_stack(seed):
    rng = np.random.default_rng(seed)
    labels = np.zeros((37, 53), np.int32)
    for k in rng.choice(np.arange(1, 500), size=15, replace=False):
        rr, cc = disk(rng.uniform(0, [37, 53]), rng.uniform(1, 9), shape=labels.shape)
        labels[rr, cc] = k
    labels[0, :] = labels[0, 0] or 7  # a run along the top row: crosses every column
    labels[-1, -1] = 3  # the very last pixel
    ids, rles = M.coco_rle_encode_labels(labels)
    np.testing.assert_array_equal(ids, np.unique(labels)[1:])
    assert rles == M.coco_rle_encode(M.labels_to_masks(labels))
    empty_ids, empty_rles = M.coco_rle_encode_labels(np.zeros((4, 4), int))
    assert empty_ids.shape == (0,) and empty_rles == []


def test_detections_to_labels_leaves_out_low_scores_and_gives_contested_pixels_to_the_best():
    from course_lib.ops.masks import detections_to_labels

    masks = np.zeros((6, 8, 3), bool)
    masks[0:4, 0:4, 0] = True      # score 0.6
    masks[2:6, 2:6, 1] = True      # score 0.9: wins the 2×2 overlap with the first
    masks[0:2, 6:8, 2] = True      # score 0.4: below min_score, left out
    det = {"masks": masks, "scores": np.array([0.6, 0.9, 0.4], np.float32)}
    labels = detections_to_labels(det, min_score=0.5)
    expected = np.zeros((6, 8), np.int32)
    expected[0:4, 0:4] = 2           # the second best is label 2 ...
    expected[2:6, 2:6] = 1           # ... painted over by the best, label 1
    np.testing.assert_array_equal(labels, expected)
    assert detections_to_labels(det, min_score=0.0).max() == 3
    assert detections_to_labels({"masks": masks[..., :0], "scores": np.zeros(0)}).max() == 0
