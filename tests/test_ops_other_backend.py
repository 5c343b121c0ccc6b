"""The keras.ops twins give their NumPy references' answers under a second Keras backend.

Model code promises to run on TensorFlow, JAX and PyTorch. The other tests exercise the twins
under TensorFlow (the default); this one runs them in a subprocess with ``KERAS_BACKEND`` set to
each other backend that is installed (JAX is in the ``dev`` extra) and compares with the NumPy
references, which do not depend on the backend.
"""

from __future__ import annotations

import pytest
from other_backends import OTHER_BACKENDS as BACKENDS
from other_backends import run_under_backend

SCRIPT = r"""
import numpy as np, keras
from keras import ops
assert keras.backend.backend() == {backend!r}, keras.backend.backend()
from course_lib.ops import boxes, nms, roi
from course_lib.layers import rpn

rng = np.random.default_rng(0)
def random_boxes(n, size=200.0):
    yx = rng.uniform(0, size, (n, 2)); hw = rng.uniform(4, 60, (n, 2))
    return np.concatenate([yx, yx + hw], 1).astype("float32")

a, b = random_boxes(40), random_boxes(30)
np.testing.assert_allclose(ops.convert_to_numpy(boxes.iou_ops(a, b)), boxes.iou(a, b), atol=1e-5)
deltas = boxes.encode(a, b[:1].repeat(40, 0))
np.testing.assert_allclose(ops.convert_to_numpy(boxes.encode_ops(a, b[:1].repeat(40, 0))), deltas, atol=1e-4)
np.testing.assert_allclose(ops.convert_to_numpy(boxes.decode_ops(deltas, b[:1].repeat(40, 0))), a, atol=1e-3)

cand, scores = random_boxes(300), rng.random(300).astype("float32")
kept, count = nms.padded_nms(cand, scores, max_output=50, iou_threshold=0.5)
kept, count = ops.convert_to_numpy(kept), int(ops.convert_to_numpy(count))
ref = nms.nms(cand, scores, 0.5, max_output=50)
np.testing.assert_array_equal(kept[:count], ref)
kept, count = nms.padded_nms(cand, scores, max_output=50, iou_threshold=0.5, tile_size=16)
np.testing.assert_array_equal(ops.convert_to_numpy(kept)[:int(ops.convert_to_numpy(count))], ref)

feats = rng.random((1, 16, 16, 3)).astype("float32")
rois = random_boxes(7, size=50.0)
got = ops.convert_to_numpy(roi.roi_align_ops(feats, rois[None], 7, 0.25, sampling_ratio=2))
np.testing.assert_allclose(got[0], roi.roi_align(feats[0], rois, 7, 0.25, sampling_ratio=2), atol=1e-4)

layer = rpn.ProposalLayer((128, 128), pre_nms_top_k=200, post_nms_top_n=20, nms_threshold=0.7)
anchors = random_boxes(200, size=100.0)
logits = rng.normal(size=(1, 200)).astype("float32")
d = (0.1 * rng.normal(size=(1, 200, 4))).astype("float32")
out_boxes, out_scores, valid = (ops.convert_to_numpy(t) for t in layer([logits, d, anchors]))
ref_boxes, ref_scores = rpn.proposals_np(logits[0], d[0], anchors, (128, 128), pre_nms_top_k=200,
                             post_nms_top_n=20, nms_threshold=0.7)
n = int(valid[0].sum())
assert n == len(ref_boxes), (n, len(ref_boxes))
np.testing.assert_allclose(out_boxes[0, :n], ref_boxes, atol=1e-3)
np.testing.assert_allclose(out_scores[0, :n], ref_scores, atol=1e-4)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.skipif(not BACKENDS, reason="neither jax nor torch is installed")
@pytest.mark.other_backend
@pytest.mark.parametrize("backend", BACKENDS)
def test_ops_twins_match_references_on_other_backend(backend):
    assert "ok" in run_under_backend(backend, SCRIPT.format(backend=backend))
