"""Tests of course_lib.metrics: IoU matrices, the DSB 2018 metric, the COCO wrapper.

Oracles: a hand-worked image with every case the DSB metric distinguishes (arithmetic in the
comments), a slow per-pair IoU reference, and pycocotools' COCOeval called directly.
"""

import contextlib
import io
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_lib import metrics
from course_lib.ops.masks import labels_to_masks
from tests import strategies as S

# --------------------------------------------------------------------------- the hand-worked image


def five_cases():
    """Ground truth and prediction (40×60 label images) with six true and six predicted objects.

    A  perfect match             true rows 2-9,  cols 2-9   (8×8 = 64) = pred         IoU 1.0
    B  split nucleus             true rows 2-9,  cols 20-29 (8×10 = 80); pred B1 = cols 20-25
                                 (48 px, IoU 48/80 = 0.6), B2 = cols 26-29 (32 px, IoU 0.4)
    C  merged pair               true C1 rows 20-27 cols 2-9 and C2 cols 10-17 (64 px each);
                                 one pred over both (128 px): IoU 64/128 = 0.5 with each
    D  missed                    true rows 20-27 cols 30-37, nothing predicted
    E  false positive            pred rows 30-37 cols 45-52, nothing true
    F  shifted by one row        true rows 2-11 cols 40-49 (100 px), pred rows 3-12:
                                 IoU 90 / 110 = 0.8181...
    """
    true = np.zeros((40, 60), np.int32)
    pred = np.zeros((40, 60), np.int32)
    true[2:10, 2:10] = 1
    pred[2:10, 2:10] = 1  # A
    true[2:10, 20:30] = 2
    pred[2:10, 20:26] = 2  # B1
    pred[2:10, 26:30] = 3  # B2
    true[20:28, 2:10] = 3
    true[20:28, 10:18] = 4
    pred[20:28, 2:18] = 4  # C merged
    true[20:28, 30:38] = 5  # D missed
    pred[30:38, 45:53] = 5  # E false positive
    true[2:12, 40:50] = 6
    pred[3:13, 40:50] = 6  # F shifted
    return true, pred


def test_hand_worked_iou_matrix():
    true, pred = five_cases()
    iou = metrics.iou_matrix(true, pred)
    expected = np.zeros((6, 6))
    expected[0, 0] = 1.0  # A
    expected[1, 1], expected[1, 2] = 48 / 80, 32 / 80  # B split
    expected[2, 3] = expected[3, 3] = 64 / 128  # C merged
    expected[5, 5] = 90 / 110  # F shifted
    np.testing.assert_allclose(iou, expected)


def test_hand_worked_dsb_score():
    # Hits (IoU strictly above t): A at all ten thresholds; B1 (0.6) at 0.50 and 0.55 only
    # (0.6 > 0.6 is false); F (0.818) at 0.50 ... 0.80 (seven thresholds); C (0.5) never.
    # 6 true and 6 predicted objects, so FP = FN = 6 - TP and precision = TP / (12 - TP):
    #   t = 0.50, 0.55:          TP 3 -> 3/9  = 1/3   (two thresholds)
    #   t = 0.60 ... 0.80:       TP 2 -> 2/10 = 1/5   (five)
    #   t = 0.85, 0.90, 0.95:    TP 1 -> 1/11         (three)
    # mean = (2/3 + 1 + 3/11) / 10 = (64/33) / 10 = 32/165 = 0.19393...
    true, pred = five_cases()
    score, details = metrics.dsb_average_precision(true, pred, return_details=True)
    assert score == pytest.approx(32 / 165)
    np.testing.assert_array_equal(details["tp"], [3, 3, 2, 2, 2, 2, 2, 1, 1, 1])
    np.testing.assert_array_equal(details["fp"], 6 - details["tp"])
    np.testing.assert_array_equal(details["fn"], 6 - details["tp"])
    np.testing.assert_allclose(details["thresholds"], np.arange(0.5, 0.96, 0.05))
    np.testing.assert_allclose(details["precision"][[0, 2, 9]], [1 / 3, 1 / 5, 1 / 11])


def test_hand_worked_non_strict_threshold():
    # With >= (pycocotools, StarDist) the IoUs that sit exactly on a threshold count:
    #   t = 0.50: A, B1, F and one of C1/C2 with the merged pred (0.5 >= 0.5; the merged
    #             object can match only one) -> TP 4 -> 4/8 = 1/2
    #   t = 0.55: A, B1, F -> 1/3;   t = 0.60: A, B1 (0.6 >= 0.6), F -> 1/3
    #   t = 0.65 ... 0.80: A, F -> 1/5 (four);   t = 0.85 ... 0.95: A -> 1/11 (three)
    # mean = (1/2 + 2/3 + 4/5 + 3/11) / 10 = (739/330) / 10 = 739/3300 = 0.22393...
    true, pred = five_cases()
    score, details = metrics.dsb_average_precision(true, pred, strict=False,
                                                   return_details=True)
    assert score == pytest.approx(739 / 3300)
    np.testing.assert_array_equal(details["tp"], [4, 3, 3, 2, 2, 2, 2, 1, 1, 1])


def test_each_case_alone():
    true, pred = five_cases()

    def only(labels, keep):
        return np.where(np.isin(labels, keep), labels, 0)

    assert metrics.dsb_average_precision(only(true, [1]), only(pred, [1])) == 1.0  # perfect
    # split: TP 1 at two thresholds -> precision 1/(1 + 1 FP) = 1/2; else 0/(1 + 2) -> 2*0.5/10
    assert metrics.dsb_average_precision(only(true, [2]), only(pred, [2, 3])) == pytest.approx(0.1)
    assert metrics.dsb_average_precision(only(true, [3, 4]), only(pred, [4])) == 0.0  # merged
    assert metrics.dsb_average_precision(only(true, [5]), np.zeros_like(pred)) == 0.0  # missed
    assert metrics.dsb_average_precision(np.zeros_like(true), only(pred, [5])) == 0.0  # FP


def test_empty_conventions():
    empty = np.zeros((8, 8), np.int32)
    one = empty.copy()
    one[2:4, 2:4] = 1
    assert metrics.dsb_average_precision(empty, empty) == 1.0
    assert metrics.dsb_average_precision(one, empty) == 0.0
    assert metrics.dsb_average_precision(empty, one) == 0.0
    assert metrics.precision_at(np.zeros((0, 0)), 0.5) == 1.0
    assert metrics.precision_at(np.zeros((3, 0)), 0.5) == 0.0


def test_precision_at_hand_worked():
    iou = np.array([[0.9, 0.0, 0.0],
                    [0.0, 0.55, 0.0]])  # 2 true, 3 pred
    # t = 0.5: both hit -> TP 2, FP 1, FN 0 -> 2/3. t = 0.55 strict: only 0.9 -> 1/(1+2+1) = 1/4
    assert metrics.precision_at(iou, 0.5) == pytest.approx(2 / 3)
    assert metrics.precision_at(iou, 0.55) == pytest.approx(1 / 4)
    assert metrics.precision_at(iou, 0.55, strict=False) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="matrix"):
        metrics.precision_at(np.zeros(3), 0.5)


def test_labels_need_not_be_consecutive_and_order_does_not_matter():
    true, pred = five_cases()
    # Relabel with large, sparse values: exercises the np.unique path.
    true_remap = np.array([0, 70001, 5, 999999, 12, 3, 40])
    pred_remap = np.array([0, 8, 123456, 2, 77, 9, 4000])
    assert metrics.dsb_average_precision(true_remap[true], pred_remap[pred]) == \
        pytest.approx(32 / 165)


def test_masks_and_labels_give_the_same_score():
    true, pred = five_cases()
    assert metrics.dsb_average_precision(labels_to_masks(true), labels_to_masks(pred)) == \
        pytest.approx(32 / 165)


def test_dsb_score_is_mean_over_images():
    true, pred = five_cases()
    pairs = [(true, pred), (true, true), (true, np.zeros_like(true))]
    mean, per_image = metrics.dsb_score(pairs, return_per_image=True)
    np.testing.assert_allclose(per_image, [32 / 165, 1.0, 0.0])
    assert mean == pytest.approx((32 / 165 + 1.0) / 3)
    with pytest.raises(ValueError, match="no"):
        metrics.dsb_score([])


# --------------------------------------------------------------------------- IoU vs a slow reference


def slow_iou(true, pred):
    """Per-pair reference: loop over every (true, pred) label pair."""
    t_ids = [i for i in np.unique(true) if i]
    p_ids = [j for j in np.unique(pred) if j]
    out = np.zeros((len(t_ids), len(p_ids)))
    for a, i in enumerate(t_ids):
        for b, j in enumerate(p_ids):
            inter = np.logical_and(true == i, pred == j).sum()
            union = np.logical_or(true == i, pred == j).sum()
            out[a, b] = inter / union
    return out


def random_labels(rng, shape=(48, 64), n=12, max_label=None):
    labels = np.zeros(shape, np.int32)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    values = rng.choice(np.arange(1, (max_label or n) + 1), size=n, replace=False)
    for v in values:
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        r = rng.uniform(2, 10)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = v  # later disks overwrite
    return labels


@pytest.mark.parametrize("seed", range(6))
def test_iou_matrix_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    max_label = None if seed % 2 else 100000  # consecutive-ish and sparse labels
    true = random_labels(rng, max_label=max_label)
    pred = random_labels(rng, n=int(rng.integers(0, 15)), max_label=max_label)
    np.testing.assert_allclose(metrics.iou_matrix(true, pred), slow_iou(true, pred))
    # The mask-stack path agrees too.
    np.testing.assert_allclose(
        metrics.iou_matrix(labels_to_masks(true), labels_to_masks(pred)), slow_iou(true, pred))


@settings(max_examples=40, deadline=None)
@given(a=S.label_images(), b=S.label_images())
def test_iou_matrix_properties(a, b):
    iou_ab, iou_ba = metrics.iou_matrix(a, b), metrics.iou_matrix(b, a)
    np.testing.assert_allclose(iou_ab, slow_iou(a, b))  # the per-pair loop as oracle
    np.testing.assert_allclose(iou_ab, iou_ba.T)  # symmetric
    assert ((iou_ab >= 0) & (iou_ab <= 1)).all()
    self_iou = metrics.iou_matrix(a, a)
    np.testing.assert_allclose(self_iou, np.eye(len(self_iou)))
    # Label images cannot overlap, so a true object's IoUs sum to at most 1 over a partition.
    assert (iou_ab.sum(axis=1) <= 1 + 1e-12).all()


def test_iou_matrix_return_labels_and_errors():
    true, pred = five_cases()
    iou, t_ids, p_ids = metrics.iou_matrix(true * 10, pred, return_labels=True)
    np.testing.assert_array_equal(t_ids, [10, 20, 30, 40, 50, 60])
    np.testing.assert_array_equal(p_ids, [1, 2, 3, 4, 5, 6])
    with pytest.raises(ValueError, match="shape"):
        metrics.iou_matrix(true, pred[:-1])
    with pytest.raises(ValueError, match="negative"):
        metrics.iou_matrix(-true, pred)


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0:2, 0:2] = True  # 4 px
    b[1:3, 1:3] = True  # 4 px, overlap 1 px -> 1 / 7
    assert metrics.mask_iou(a, b) == pytest.approx(1 / 7)
    assert metrics.mask_iou(a, a) == 1.0
    assert metrics.mask_iou(np.zeros((4, 4)), np.zeros((4, 4))) == 0.0


# --------------------------------------------------------------------------- COCO


def _direct_coco_eval(gt, dets, iou_type="segm", max_dets=(1, 10, 100)):
    """pycocotools used directly, the way its README shows."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([dict(d) for d in dets])
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _squares(n, size=4, spacing=6, shape=(96, 96)):
    labels = np.zeros(shape, np.int32)
    per_row = shape[1] // spacing
    for k in range(n):
        r, c = (k // per_row) * spacing, (k % per_row) * spacing
        labels[r:r + size, c:c + size] = k + 1
    return labels


def test_coco_perfect_prediction_ap_is_one_and_matches_pycocotools():
    true, _ = five_cases()
    gt = metrics.labels_to_coco([true, true[::-1]])
    dets = metrics.labels_to_detections([true, true[::-1]])
    for iou_type in ("segm", "bbox"):
        stats = metrics.coco_evaluate(gt, dets, iou_type=iou_type)
        assert stats["AP"] == 1.0 and stats["AP50"] == 1.0 and stats["AR@100"] == 1.0
        np.testing.assert_allclose(list(stats.values()), _direct_coco_eval(gt, dets, iou_type))


def test_coco_half_right_hand_worked():
    # Two true squares, two detections: a perfect one and one on empty background.
    # Ranked by score: TP (precision 1, recall 1/2), then FP (precision 1/2, recall 1/2).
    # The interpolated precision is 1 for recall 0, 0.01, ..., 0.50 (51 of the 101 points) and
    # 0 beyond (recall 1 is never reached): AP = 51/101 at every IoU threshold.
    true = _squares(2, size=8, spacing=20, shape=(40, 40))
    wrong = np.zeros_like(true)
    wrong[30:38, 30:38] = 1
    gt = metrics.labels_to_coco([true])
    dets = (metrics.masks_to_detections(true == 1, [0.9], 1)
            + metrics.masks_to_detections(wrong, [0.8], 1))
    stats = metrics.coco_evaluate(gt, dets)
    assert stats["AP"] == pytest.approx(51 / 101)
    assert stats["AR@100"] == pytest.approx(0.5)
    np.testing.assert_allclose(list(stats.values()), _direct_coco_eval(gt, dets))
    # Swap the scores: FP first (precision 0), then TP (precision 1/2 at recall 1/2):
    # the envelope is 1/2 up to recall 0.5 -> AP = 0.5 * 51/101. The DSB metric ignores scores.
    dets[0]["score"], dets[1]["score"] = 0.8, 0.9
    assert metrics.coco_evaluate(gt, dets)["AP"] == pytest.approx(0.5 * 51 / 101)


def test_coco_more_than_100_detections_gives_a_real_number():
    true = _squares(150)
    assert true.max() == 150
    gt = metrics.labels_to_coco([true])
    dets = metrics.labels_to_detections([true])
    # The trap: pycocotools' summarize() looks for maxDets == 100 and prints -1 without it.
    assert _direct_coco_eval(gt, dets, max_dets=(1, 10, 200))[0] == -1
    stats = metrics.coco_evaluate(gt, dets)  # max_dets chosen from the detections
    assert stats["AP"] == 1.0 and stats["AR@150"] == 1.0
    stats = metrics.coco_evaluate(gt, dets, max_dets=(1, 10, 1000))
    assert stats["AP"] == 1.0
    with pytest.warns(UserWarning, match="150 detections"):
        capped = metrics.coco_evaluate(gt, dets, max_dets=(1, 10, 100))
    assert capped["AR@100"] == pytest.approx(100 / 150)


def test_coco_annotation_id_zero_is_renumbered():
    true, _ = five_cases()
    gt = metrics.labels_to_coco([true])
    for a in gt["annotations"]:
        a["id"] -= 1  # ids 0..5, as a careless converter writes them
    dets = metrics.labels_to_detections([true])
    # pycocotools directly: the detection matched to gt id 0 reads as unmatched (a FP).
    assert _direct_coco_eval(gt, dets)[0] < 1.0
    assert metrics.coco_evaluate(gt, dets)["AP"] == 1.0
    assert gt["annotations"][0]["id"] == 0  # the caller's dict is left alone


def test_coco_empty_detections_scores_zero():
    true, _ = five_cases()
    gt = metrics.labels_to_coco([true])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = metrics.coco_evaluate(gt, [])
    # Small objects exist (all < 32² px) so AP_small is 0; no medium/large ground truth: -1.
    assert stats["AP"] == 0.0 and stats["AR@100"] == 0.0 and stats["AP_small"] == 0.0
    assert stats["AP_medium"] == -1.0 and stats["AR_large"] == -1.0


def test_coco_structures_are_json_safe_and_checked():
    import json

    true, pred = five_cases()
    gt = metrics.labels_to_coco([true])
    dets = metrics.labels_to_detections([pred], scores=[np.linspace(1, 0.5, 6)])
    json.loads(json.dumps(gt))
    json.loads(json.dumps(dets))
    assert [a["id"] for a in gt["annotations"]] == [1, 2, 3, 4, 5, 6]
    # bbox [x, y, w, h] of A (rows 2-9, cols 2-9) and its area.
    assert gt["annotations"][0]["bbox"] == [2.0, 2.0, 8.0, 8.0]
    assert gt["annotations"][0]["area"] == 64.0
    with pytest.raises(ValueError, match="image ids"):
        metrics.coco_evaluate(gt, metrics.labels_to_detections([pred], image_ids=[7]))
    with pytest.raises(ValueError, match="'segmentation' and 'score'"):
        metrics.coco_evaluate(gt, [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}])
    with pytest.raises(ValueError, match="annotations"):
        metrics.coco_evaluate({"images": []}, [])
    with pytest.raises(ValueError, match="3 masks but 2 scores"):
        metrics.masks_to_detections(np.zeros((4, 4, 3), bool), [1, 2], 1)


def test_coco_and_dsb_differ_on_the_hand_worked_image():
    # COCO counts a match at IoU >= t and ignores FN in precision: the split/merged/shifted
    # cases cost less, so COCO AP exceeds the DSB score on the same prediction.
    true, pred = five_cases()
    stats = metrics.coco_evaluate(metrics.labels_to_coco([true]),
                                  metrics.labels_to_detections([pred]))
    assert stats["AP"] > metrics.dsb_average_precision(true, pred)


def test_coco_hand_worked_ap50_and_ap75_on_the_five_cases():
    # Scores per predicted label 1..6: A .95, B1 .7, B2 .4, merged .6, E (FP) .9, F .8.
    # IoU >= 0.5, in score order: A TP, E FP, F TP, B1 TP, merged TP (0.5 >= 0.5), B2 FP.
    #   recall    1/6 1/6 2/6 3/6 4/6 4/6;  precision 1 1/2 2/3 3/4 4/5 4/6
    #   envelope (max to the right): 1 .8 .8 .8 .8 .67. At the 101 recall points 0, .01, ...:
    #   r <= .16 -> 1 (17 points); .17 <= r <= .66 -> .8 (50 points); r >= .67 unreachable -> 0
    #   AP50 = (17 + 50 * 0.8) / 101 = 57/101
    # IoU >= 0.75: A TP, E FP, F TP, then three FP: recall 1/6 1/6 2/6 2/6 2/6 2/6,
    #   envelope 1, 2/3, 2/3, ...: AP75 = (17 + 17 * 2/3) / 101 = 85/303
    true, pred = five_cases()
    dets = metrics.labels_to_detections([pred], scores=[[0.95, 0.7, 0.4, 0.6, 0.9, 0.8]])
    stats = metrics.coco_evaluate(metrics.labels_to_coco([true]), dets)
    assert stats["AP50"] == pytest.approx(57 / 101)
    assert stats["AP75"] == pytest.approx(85 / 303)


# --------------------------------------------------------------------------- exercise checks


def test_exercise_checks_pass_the_references_and_catch_usual_mistakes(capsys):
    from course_lib import exercises
    from course_lib.exercises import ExerciseFailed
    from course_lib.ops import masks

    assert exercises.check_mask_iou(metrics.mask_iou)
    assert exercises.check_rle_encode(masks.rle_encode)
    assert exercises.check_precision_at(metrics.precision_at)

    def row_major_rle(mask):  # reads rows instead of columns
        return masks.rle_encode(np.asarray(mask).T)

    with pytest.raises(ExerciseFailed, match="case 1"):
        exercises.check_rle_encode(row_major_rle)

    def non_strict(iou, t):  # >= instead of >
        hits = np.asarray(iou) >= t
        tp = int(hits.sum())
        total = tp + (iou.shape[1] - tp) + (iou.shape[0] - tp)
        return tp / total if total else 1.0

    with pytest.raises(ExerciseFailed, match="case 2"):
        exercises.check_precision_at(non_strict)

    def unguarded(a, b):  # divides by an empty union
        with np.errstate(invalid="ignore"):
            return float(np.logical_and(a, b).sum() / np.logical_or(a, b).sum())

    with pytest.raises(ExerciseFailed, match="case 5"):
        exercises.check_mask_iou(unguarded)
    assert "Hint:" in capsys.readouterr().out


def test_label_dtypes_whole_floats_accepted_fractions_refused():
    true, pred = five_cases()
    assert metrics.dsb_average_precision(true.astype(np.float32), pred.astype(np.uint16)) == \
        pytest.approx(32 / 165)
    with pytest.raises(ValueError, match="probability map"):
        metrics.iou_matrix(true * 0.5, pred)
    # Labels up to a million in a small image: the table stays small (renumbered).
    iou = metrics.iou_matrix(true * 1_000_000, pred * 999_983)
    np.testing.assert_allclose(iou, metrics.iou_matrix(true, pred))


def test_overlapping_predicted_masks_match_one_to_one():
    # Two identical predictions of one nucleus: both have IoU 1 with it, but only one can be
    # its match -> TP 1, FP 1, FN 0 at every threshold -> 1/2.
    true = np.zeros((10, 10, 1), bool)
    true[2:6, 2:6, 0] = True
    pred = np.concatenate([true, true], axis=-1)
    score, details = metrics.dsb_average_precision(true, pred, return_details=True)
    assert score == 0.5
    assert details["tp"].tolist() == [1] * 10 and details["fp"].tolist() == [1] * 10


@pytest.mark.real_data
def test_real_crowded_image_scores_one_against_itself(real_dsb):
    # A real image with more than 100 nuclei: perfect predictions must score 1 with both
    # metrics (COCO only when max_dets goes past 100, which coco_evaluate does by itself).
    from skimage.io import imread

    samples = sorted(p for p in real_dsb.iterdir() if p.is_dir())
    crowded = next((s for s in samples if len(list((s / "masks").glob("*.png"))) > 100), None)
    if crowded is None:
        pytest.skip("no real image with more than 100 nuclei")
    files = sorted((crowded / "masks").glob("*.png"))
    masks = np.stack([imread(f) > 0 for f in files], axis=-1)
    labels = np.zeros(masks.shape[:2], np.int32)
    for k in range(masks.shape[-1]):
        labels[masks[..., k]] = k + 1
    assert metrics.dsb_average_precision(labels, labels) == 1.0
    stats = metrics.coco_evaluate(metrics.labels_to_coco([masks]),
                                  metrics.labels_to_detections([masks]))
    assert stats["AP"] == 1.0
