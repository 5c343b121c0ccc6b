"""Per-class COCO AP (notebook 12): checked against pycocotools evaluating one category alone."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
from coco_fixtures import TwoImages
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from course_lib import metrics


def _square(shape, r, c, size):
    m = np.zeros(shape, bool)
    m[r:r + size, c:c + size] = True
    return m


def _scene():
    """Two 64×64 images, three classes with ground truth (1, 2, 3) and a fourth (4) only
    among the detections; the detections mix hits, shifted boxes, misses and false alarms."""
    shape = (64, 64)
    gt_masks = {1: [(_square(shape, 2, 2, 12), 1), (_square(shape, 30, 30, 20), 2),
                    (_square(shape, 2, 40, 10), 3)],
                2: [(_square(shape, 5, 5, 16), 1), (_square(shape, 40, 5, 14), 1),
                    (_square(shape, 30, 40, 18), 3)]}
    dets = {1: [(_square(shape, 2, 2, 12), 1, 0.9),       # class 1 hit
                (_square(shape, 33, 33, 20), 2, 0.8),     # class 2, IoU 289/511 ~ 0.57
                (_square(shape, 50, 0, 10), 3, 0.7),      # class 3 false alarm
                (_square(shape, 2, 40, 10), 3, 0.4),      # class 3 hit, ranked below the alarm
                (_square(shape, 20, 20, 8), 4, 0.6)],     # class 4: no ground truth anywhere
            2: [(_square(shape, 6, 6, 16), 1, 0.95),      # class 1, IoU 225/287 ~ 0.78
                (_square(shape, 30, 40, 18), 3, 0.5)]}    # class 3 hit; class-1 box 2 missed
    gt = {"images": [{"id": i, "height": 64, "width": 64} for i in (1, 2)],
          "categories": [{"id": c, "name": str(c)} for c in (1, 2, 3, 4)], "annotations": []}
    for image_id, items in gt_masks.items():
        for mask, cat in items:
            d = metrics.masks_to_detections(mask[..., None], None, image_id, cat)[0]
            d.pop("score")
            gt["annotations"].append(dict(d, id=len(gt["annotations"]) + 1, iscrowd=0,
                                          area=float(mask.sum())))
    detections = [metrics.masks_to_detections(mask[..., None], [score], image_id, cat)[0]
                  for image_id, items in dets.items() for mask, cat, score in items]
    return gt, detections


def _pycocotools_one_category(gt, detections, cat, iou_type):
    """pycocotools' own AP (stats[0]) and AP50 (stats[1]) with ``params.catIds = [cat]``."""
    coco_gt = COCO()
    coco_gt.dataset = {k: (list(v) if isinstance(v, list) else v) for k, v in gt.items()}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        clean = []
        for d in detections:
            d = dict(d)
            if iou_type == "bbox":
                d.pop("segmentation", None)
            else:
                d["segmentation"] = dict(d["segmentation"])
                if isinstance(d["segmentation"]["counts"], str):
                    d["segmentation"]["counts"] = d["segmentation"]["counts"].encode("ascii")
            clean.append(d)
        coco_dt = coco_gt.loadRes(clean)
        ev = COCOeval(coco_gt, coco_dt, iou_type)
        ev.params.catIds = [cat]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats[0], ev.stats[1]


@pytest.mark.parametrize("iou_type", ["segm", "bbox"])
def test_per_class_ap_equals_pycocotools_restricted_to_each_category(iou_type):
    gt, detections = _scene()
    stats, coco_eval = metrics.coco_evaluate(gt, detections, iou_type, return_eval=True)
    per_class = metrics.per_class_ap(coco_eval)
    per_class50 = metrics.per_class_ap(coco_eval, iou_threshold=0.5)
    assert sorted(per_class) == [1, 2, 3, 4]
    for cat in (1, 2, 3):
        ap, ap50 = _pycocotools_one_category(gt, detections, cat, iou_type)
        assert per_class[cat] == pytest.approx(ap, abs=1e-12)
        assert per_class50[cat] == pytest.approx(ap50, abs=1e-12)
    # class 4 has no ground truth: -1, as pycocotools writes it, and left out of the mean
    assert per_class[4] == -1.0
    assert stats["AP"] == pytest.approx(np.mean([per_class[c] for c in (1, 2, 3)]))
    # the numbers are not all alike: the scene tells the classes apart
    assert len({round(per_class[c], 6) for c in (1, 2, 3)}) == 3


def test_per_class_ap_hand_worked_and_errors():
    gt, detections = _scene()
    _, coco_eval = metrics.coco_evaluate(gt, detections, "bbox", return_eval=True)
    per_class = metrics.per_class_ap(coco_eval, iou_threshold=0.5)
    # class 3: the false alarm (0.7) ranks above both hits (0.5 and 0.4): precision 1/2 at
    # recall 1/2 and 2/3 at recall 1, so the envelope is 2/3 at every recall point: AP50 2/3
    assert per_class[3] == pytest.approx(2 / 3)
    # class 1: two hits of three (IoU 1 and 0.78) at precision 1, the third never found:
    # precision 1 up to recall 2/3 (points 0 .. 0.66, 67 of 101), then 0
    assert per_class[1] == pytest.approx(67 / 101)
    with pytest.raises(ValueError, match="IoU threshold"):
        metrics.per_class_ap(coco_eval, iou_threshold=0.42)
    with pytest.raises(ValueError, match="area"):
        metrics.per_class_ap(coco_eval, area="huge")


def test_evaluate_coco_per_class_hand_worked():
    from course_lib.training.evaluate import evaluate_coco

    provider = TwoImages()

    def first_image_only(image):
        if int(image[0, 0, 0]) == 1:
            return {"masks": np.zeros((32, 32, 0), bool), "class_ids": [], "scores": []}
        masks, ids = provider.items[0]
        return {"masks": masks, "class_ids": ids, "scores": np.ones(len(ids))}

    out = evaluate_coco(first_image_only, provider, progress=False, per_class=True)
    # class 1: its one object found (AP 1); class 2: one of two found at precision 1, so the
    # 101-point curve is 1 for recall 0..0.5 (51 points) and 0 after
    for iou_type in ("segm", "bbox"):
        assert out["per_class"][iou_type] == pytest.approx({1: 1.0, 2: 51 / 101})
        assert out[iou_type]["AP"] == pytest.approx((1 + 51 / 101) / 2)
    assert "per_class" not in evaluate_coco(first_image_only, provider, progress=False)
