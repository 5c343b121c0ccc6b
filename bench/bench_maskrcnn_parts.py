"""Benchmark: where a Mask R-CNN training step's time goes, one piece at a time, on the CPU.

Run: ``python bench/bench_maskrcnn_parts.py [--size 512] [--train-chunk-mib 64]``
(CUDA is hidden unless ``CUDA_VISIBLE_DEVICES`` is set).

The same model and batch as ``bench_maskrcnn_step.py`` (ResNet-50-FPN, batch 2, 40 random
ellipses per image, random initialisation). The backbone runs once; then each piece of the
rest is compiled alone (``tf.function``) on the real intermediate tensors and timed, median of
3 after the tracing call: the RPN targets, the proposals and the RoI targets (forward only:
no gradient flows through them), each RoIAlign forward alone and forward + backward (the
gradient into P2-P5), and each head forward + backward (into its input and weights). The
sum of the pieces plus the backbone step of ``bench_maskrcnn_step.py`` should come close to
the whole step; pieces overlap a little when TensorFlow runs them together.

``--scatter-chunk-mib`` sets ``course_lib.ops.roi.SCATTER_CHUNK_BYTES`` for this run, so the
RoIAlign rows show what the backward's chunk size does. The last rows time the largest
convolution (3×3, 256 channels, on P2) forward + backward as the model runs it
(``course_lib.layers.conv2d.Conv2D``, its kernel gradient written out as matrix products)
and as ``keras.layers.Conv2D`` runs it, with the same weights.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib.layers.anchor_targets import rpn_targets_ops  # noqa: E402
from course_lib.layers.roi_targets import roi_targets_ops  # noqa: E402
from course_lib.models import maskrcnn as M  # noqa: E402
from course_lib.ops import roi  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_maskrcnn_step import synthetic_batch  # noqa: E402


def timed(name: str, fn, repeats: int = 3):
    """Compile ``fn``, call it once (tracing), then time ``repeats`` calls; print the median."""
    compiled = tf.function(fn)
    start = time.perf_counter()
    result = compiled()
    trace = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = compiled()
        tf.nest.map_structure(lambda t: t.numpy() if hasattr(t, "numpy") else t, result)
        times.append(time.perf_counter() - start)
    print(f"{name:<66} {statistics.median(times):7.2f} s   (first call {trace:5.1f} s)",
          flush=True)
    return result


def backward(fn, sources):
    """A function returning the gradients of ``sum(fn())`` with respect to ``sources``."""
    def run():
        with tf.GradientTape() as tape:
            tape.watch([s for s in sources if not isinstance(s, keras.Variable)])
            total = sum(tf.reduce_sum(tf.cast(t, "float32")) for t in tf.nest.flatten(fn()))
        return tape.gradient(total, sources)
    return run


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--instances", type=int, default=40)
    parser.add_argument("--scatter-chunk-mib", type=float, default=None)
    args = parser.parse_args()
    if args.scatter_chunk_mib is not None:
        roi.SCATTER_CHUNK_BYTES = int(args.scatter_chunk_mib * 2**20)
    cfg = M.MaskRCNNConfig(image_size=args.size, num_classes=2, backbone="resnet50",
                           pretrained=False, max_instances=max(64, args.instances))
    keras.utils.set_random_seed(0)
    model, _ = M.build_models(cfg, verbose=False)
    batch = synthetic_batch(cfg, 2, args.instances)
    batch.pop("full_masks")
    inputs = {k: tf.convert_to_tensor(v) for k, v in batch.items()}
    pyramid, anchors, rpn_logits, rpn_deltas = model._features(inputs["images"], True)
    gt = model._ground_truth(inputs)
    print(f"{args.size}², batch 2, {args.instances} instances/image, {len(anchors):,} anchors; "
          f"RoIAlign chunks: forward gather {roi.GATHER_CHUNK_BYTES / 2**20:g} MiB, backward "
          f"scatter {roi.SCATTER_CHUNK_BYTES / 2**20:g} MiB")

    timed("RPN targets (forward)", lambda: rpn_targets_ops(
        anchors, gt["gt_boxes"], gt["gt_valid"], gt["ignore_boxes"],
        ignore_valid=gt["ignore_valid"],
        positive_iou=cfg.rpn_positive_iou, negative_iou=cfg.rpn_negative_iou,
        samples=cfg.rpn_batch_per_image,
        positive_fraction=cfg.rpn_positive_fraction, seed=0))
    proposals, _, valid = timed("proposals: top-k per level, decode, NMS (forward)",
                                lambda: model.train_proposals([rpn_logits, rpn_deltas, anchors,
                                                               inputs["image_meta"]]))
    targets = timed("RoI targets with mask targets (forward)", lambda: roi_targets_ops(
        proposals, valid, gt["gt_boxes"], gt["gt_class_ids"], gt_masks=gt["gt_masks"],
        ignore_boxes=gt["ignore_boxes"], ignore_valid=gt["ignore_valid"],
        num_samples=cfg.rois_per_image, positive_fraction=cfg.roi_positive_fraction,
        positive_iou=cfg.roi_positive_iou, mask_shape=(cfg.mask_shape, cfg.mask_shape),
        mini_masks=gt["mini"], seed=0))
    rois, p = targets["rois"], cfg.positive_rois
    maps = [tf.identity(level) for level in pyramid[:4]]
    n_box, n_mask = int(rois.shape[0]) * int(rois.shape[1]), int(rois.shape[0]) * p
    for name, align, boxes, head in (
            (f"box RoIAlign 7×7, {n_box} RoIs", model.box_align, rois, model.box_head),
            (f"mask RoIAlign 14×14, {n_mask} RoIs", model.mask_align, rois[:, :p],
             model.mask_head)):
        timed(f"{name}: forward", lambda a=align, b=boxes: a(b, maps))
        timed(f"{name}: forward + backward", backward(lambda a=align, b=boxes: a(b, maps), maps))
        pooled = align(boxes, maps)
        timed("  its head: forward + backward", backward(
            lambda h=head, x=pooled: h(x), [pooled] + list(head.trainable_variables)))

    # The largest convolution: P2's 3×3 smoothing conv, 256 channels in and out.
    p2_conv = model.backbone.get_layer("fpn_p2")
    plain = keras.layers.Conv2D(p2_conv.filters, 3, padding="same")
    merged = tf.random.normal((2, *p2_conv.input.shape[1:]), seed=0)
    plain.build(merged.shape)
    plain.set_weights(p2_conv.get_weights())
    for name, layer in (("course_lib Conv2D (kernel gradient as 9 matrix products)", p2_conv),
                        ("keras.layers.Conv2D (the backend's kernel gradient)", plain)):
        timed(f"P2 conv 3×3 256, {tuple(merged.shape[1:3])}, fwd + bwd: {name}", backward(
            lambda c=layer: c(merged), [merged] + list(layer.trainable_variables)))


if __name__ == "__main__":
    main()
