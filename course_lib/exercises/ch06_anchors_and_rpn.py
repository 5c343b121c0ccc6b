"""Exercise checks of notebooks/06_anchors_and_rpn: IoU, anchors of one level, delta encoding,
anchor labels, NMS.

Taught in notebooks/06_anchors_and_rpn.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact

IOU_CASES = [
    Case("two 2x2 boxes overlapping in one pixel: IoU 1 / 7",
         (np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[1.0, 1.0, 3.0, 3.0]]))),
    Case("boxes that only touch along an edge: IoU 0",
         (np.array([[0.0, 0.0, 2.0, 2.0]]), np.array([[2.0, 0.0, 4.0, 2.0]]))),
    Case("2 boxes against 3 (the result is 2 x 3)",
         (np.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 25.0]]),
          np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 5.0, 10.0, 15.0], [20.0, 20.0, 30.0, 30.0]]))),
    Case("no boxes on one side: shape (0, 2)",
         (np.zeros((0, 4)), np.array([[0.0, 0.0, 1.0, 1.0], [1.0, 1.0, 2.0, 2.0]]))),
]


def check_iou(fn: Callable) -> bool:
    """Check a learner's ``iou(a, b) -> (N, M)`` against :func:`course_lib.ops.boxes.iou`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import boxes

    return check_function(
        fn, boxes.iou, IOU_CASES, name="iou",
        hint="broadcast a[:, None, :] against b[None, :, :]; clip the intersection's height and "
             "width at 0 before multiplying (disjoint boxes), and no +1 on sizes.",
    )


LEVEL_ANCHOR_CASES = [
    Case("one square anchor per cell on an 8x8 image, stride 4", ((8, 8), 4.0, (1.0,), 4)),
    Case("three ratios on a 16x8 image, stride 8: h = s / sqrt(r), w = s * sqrt(r)",
         ((16, 8), 16.0, (0.5, 1.0, 2.0), 8)),
    Case("an image size that is not a multiple of the stride (grid of ceil(H / stride))",
         ((10, 7), 8.0, (1.0, 2.0), 4)),
]


def check_level_anchors(fn: Callable) -> bool:
    """Check ``level_anchors(image_shape, scale, ratios, stride) -> (n, 4)`` against
    :func:`course_lib.ops.anchors.level_anchors`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import anchors

    return check_function(
        fn, anchors.level_anchors, LEVEL_ANCHOR_CASES, name="level_anchors",
        hint="centres are at (i + 0.5) * stride; loop order row, column, then ratio innermost; "
             "the grid has ceil(H / stride) rows.",
    )


ENCODE_CASES = [
    Case("a box equal to its anchor: all deltas 0",
         (np.array([[0.0, 0.0, 10.0, 10.0]]), np.array([[0.0, 0.0, 10.0, 10.0]]))),
    Case("shifted by 1 px down on a 10-px anchor: dy = 1 / 10 / 0.1 = 1",
         (np.array([[1.0, 0.0, 11.0, 10.0]]), np.array([[0.0, 0.0, 10.0, 10.0]]))),
    Case("twice as tall, half as wide: log dh = log 2 / 0.2",
         (np.array([[-5.0, 2.5, 15.0, 7.5]]), np.array([[0.0, 0.0, 10.0, 10.0]]))),
    Case("several rows at once",
         (np.array([[2.0, 3.0, 30.0, 20.0], [0.0, 0.0, 4.0, 4.0]]),
          np.array([[0.0, 0.0, 32.0, 16.0], [1.0, 1.0, 5.0, 9.0]]))),
]


def check_encode(fn: Callable) -> bool:
    """Check ``encode(boxes, anchors) -> (N, 4)`` deltas against :func:`course_lib.ops.boxes.encode`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import boxes

    return check_function(
        fn, boxes.encode, ENCODE_CASES, name="encode",
        hint="use centres (y1 + y2) / 2 and sizes y2 - y1; dy = (cy - acy) / ah; dh = log(h / ah); "
             "then divide by (0.1, 0.1, 0.2, 0.2).",
    )


def _nms_scene(seed: int, n: int):
    rng = np.random.default_rng(seed)
    c = rng.uniform(0, 60, (n, 2))
    hw = rng.uniform(6, 30, (n, 2))
    return np.concatenate([c - hw / 2, c + hw / 2], 1), rng.random(n)


NMS_CASES = [
    Case("three boxes: the middle-scored one overlaps the best by 90 / 110",
         (np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 1.0, 10.0, 11.0], [0.0, 20.0, 10.0, 30.0]]),
          np.array([0.9, 0.8, 0.7]), 0.5)),
    Case("IoU exactly at the threshold is kept (suppress only when IoU > threshold)",
         (np.array([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]]), np.array([0.6, 0.9]), 0.5)),
    Case("30 random boxes at threshold 0.3", (*_nms_scene(0, 30), 0.3)),
    Case("no boxes at all", (np.zeros((0, 4)), np.zeros(0), 0.5)),
]


def check_nms(fn: Callable) -> bool:
    """Check ``nms(boxes, scores, iou_threshold) -> indices`` against
    :func:`course_lib.ops.nms.nms`.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import nms

    return check_function(
        fn, lambda b, s, t: nms.nms(b, s, t), NMS_CASES, name="nms",
        compare=lambda got, expected: exact(np.asarray(got, dtype=np.int64).reshape(-1),
                                            expected),
        hint="sort by score (highest first), keep the first, drop the rest whose IoU with it is "
             "> threshold, repeat on what is left; return indices into the original boxes.",
    )


# ----------------------------------------------------------------------------- anchor targets

def _boxes(*rows) -> np.ndarray:
    return np.array(rows, dtype=float).reshape(-1, 4)


#: Each case isolates one labelling rule; the IoUs in the descriptions are worked out by hand
#: (a 10×10 ground-truth box; an anchor (0, 0, 10, 3) shares 30 of 100 px: IoU exactly 0.3).
LABEL_ANCHOR_CASES = [
    Case("rule 1: two anchors with IoU >= 0.7 (1.0 and 0.8) are both positive, a far one is "
         "negative",
         (_boxes([0, 0, 10, 10], [0, 0, 10, 8], [30, 30, 40, 40]), _boxes([0, 0, 10, 10]))),
    Case("rule 2: IoU exactly 0.3 is negative (<= 0.3), IoU 0.5 is neutral (-1)",
         (_boxes([0, 0, 10, 10], [0, 0, 10, 3], [0, 0, 10, 5]), _boxes([0, 0, 10, 10]))),
    Case("rule 3: a box whose best anchor has IoU 0.4 still gets that one anchor positive",
         (_boxes([0, 0, 10, 4], [0, 0, 10, 2], [20, 20, 30, 30]), _boxes([0, 0, 10, 10]))),
    Case("rule 3 with a tie: two anchors share the best IoU 0.5; only the first is positive",
         (_boxes([0, 0, 10, 5], [0, 5, 10, 10], [20, 20, 30, 30]), _boxes([0, 0, 10, 10]))),
    Case("two boxes: each gets its own best anchor (IoU 1.0 and 1/3); the rest are negative",
         (_boxes([0, 0, 10, 10], [0, 18, 10, 24], [0, 8, 10, 20], [40, 40, 50, 50]),
          _boxes([0, 0, 10, 10], [0, 20, 10, 30]))),
    Case("no ground-truth boxes: every anchor is negative",
         (_boxes([0, 0, 10, 10], [5, 5, 15, 15]), np.zeros((0, 4)))),
]


def _label_reference(anchors, gt_boxes, positive_iou=0.7, negative_iou=0.3):
    from course_lib.layers.rpn import match_anchors_np

    return match_anchors_np(anchors, gt_boxes, None, positive_iou, negative_iou=negative_iou)[0]


def label_rule_failed(anchors, gt_boxes, got, expected, positive_iou: float = 0.7,
                      negative_iou: float = 0.3) -> str | None:
    """Which labelling rule a learner's anchor labels break, in words; ``None`` when they agree.

    Args:
        anchors: ``(A, 4)``; gt_boxes: ``(G, 4)``, pixel edges.
        got: the learner's ``(A,)`` labels; expected: the reference labels.

    Returns:
        a sentence naming the first anchor that differs, its best IoU, and the rule (IoU >=
        ``positive_iou`` positive; max IoU <= ``negative_iou`` negative; the best anchor of each
        box positive, the first one on a tie), or the shape problem.

    Taught in notebooks/06_anchors_and_rpn.
    """
    from course_lib.ops import boxes

    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        return f"shape {got.shape} instead of {expected.shape}: one label per anchor"
    differ = np.flatnonzero(got != expected)
    if differ.size == 0:
        return None
    a = int(differ[0])
    overlaps = boxes.iou(anchors, gt_boxes)
    best = float(overlaps[a].max()) if overlaps.shape[1] else 0.0
    is_best_of = [g for g in range(overlaps.shape[1])
                  if overlaps[:, g].max() > 0 and int(np.argmax(overlaps[:, g])) == a]
    where = f"anchor {a} (its best IoU {best:.2f}): expected {int(expected[a])}, got {int(got[a])}"
    if expected[a] == 1 and best >= positive_iou:
        rule = f"rule 1: IoU >= {positive_iou} makes an anchor positive"
    elif expected[a] == 1:
        rule = (f"rule 3: anchor {a} is the best anchor of box {is_best_of[0]}, so it is positive "
                f"even below {positive_iou}")
    elif got[a] == 1 and best < positive_iou:
        rule = ("rule 3 gives each box only ONE best anchor, the first of any tie "
                "(np.argmax over anchors), and only for boxes with some overlap")
    elif expected[a] == 0:
        rule = f"rule 2: an anchor whose best IoU is <= {negative_iou} is negative (<=, not <)"
    else:
        rule = (f"rule 2: between {negative_iou} and {positive_iou} an anchor is neutral (-1), "
                "left out of the loss")
    return f"{where}. {rule}"


def check_label_anchors(fn: Callable) -> bool:
    """Check ``label_anchors(anchors, gt_boxes) -> (A,)`` labels in {1, 0, -1} against
    :func:`course_lib.layers.rpn.match_anchors_np`; a failure names the rule that broke.

    Taught in notebooks/06_anchors_and_rpn.
    """
    results = {}

    def compare(got, expected):
        anchors, gt = results["case"]
        return label_rule_failed(anchors, gt, got, expected)

    def reference(anchors, gt_boxes):
        results["case"] = (anchors, gt_boxes)
        return _label_reference(anchors, gt_boxes)

    return check_function(
        fn, reference, LABEL_ANCHOR_CASES, name="label_anchors", compare=compare,
        hint="max IoU over boxes per anchor: >= 0.7 -> 1, <= 0.3 -> 0, else -1; then for each box "
             "with any overlap, np.argmax of its IoU column over anchors -> 1 (one anchor per box).",
    )
