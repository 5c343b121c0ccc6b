"""The region proposal network, gathered in one place for notebook 06: the head, its targets,
the proposal layer.

Taught in notebooks/06_anchors_and_rpn.

Each piece lives in its own module (one concept each) and is re-exported here so that
``from course_lib.layers import rpn`` keeps working:

- :class:`RPNHead` (:mod:`course_lib.layers.rpn_head`): shared 3×3 conv then two 1×1 convs per
  level, ``k`` objectness logits and ``4k`` deltas per cell;
- :func:`match_anchors_np`, :func:`anchor_targets_np`, :func:`anchor_targets_ops`,
  :class:`AnchorTargets`, :func:`rpn_targets_ops` (:mod:`course_lib.layers.anchor_targets`,
  built on :mod:`~course_lib.layers.matcher` and :mod:`~course_lib.layers.sampler`): label
  anchors 1 / 0 / -1 and give the deltas a positive anchor should predict;
- :class:`ProposalLayer` / :func:`proposals_np` (:mod:`course_lib.layers.proposals`): top-k
  (per level), decode, clip, drop small boxes, NMS, keep N;
- :class:`AnchorGenerator` (:mod:`course_lib.layers.anchors`): the anchors, made inside a model
  from its image shape. Notebook 06 passes the ``(A, 4)`` constant from
  :func:`course_lib.ops.anchors.pyramid_anchors` explicitly instead; both give the same boxes.
"""

from __future__ import annotations

from course_lib.layers.anchor_targets import (  # noqa: F401
    AnchorTargets,
    anchor_targets_np,
    anchor_targets_ops,
    match_anchors_np,
    rpn_targets_ops,
)
from course_lib.layers.anchors import AnchorGenerator  # noqa: F401
from course_lib.layers.matcher import BEST_IOU_TOLERANCE  # noqa: F401
from course_lib.layers.proposals import ProposalLayer, proposals_np  # noqa: F401
from course_lib.layers.rpn_head import RPNHead  # noqa: F401

__all__ = ["RPNHead", "AnchorTargets", "anchor_targets_np", "anchor_targets_ops",
           "match_anchors_np", "rpn_targets_ops", "ProposalLayer", "proposals_np",
           "AnchorGenerator", "BEST_IOU_TOLERANCE"]
