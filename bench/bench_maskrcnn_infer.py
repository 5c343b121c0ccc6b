"""Benchmark: Mask R-CNN inference images/s on the CPU and where the time goes.

Run: ``python bench/bench_maskrcnn_infer.py [--size 512] [--batch 2] [--repeats 3]
[--backbone resnet50] [--peer-python ENV/bin/python]`` (CPU: ``CUDA_VISIBLE_DEVICES=`` is set
unless already given).

``--peer-python`` also times torchvision's Mask R-CNN in eval mode on the same images in the
same run (``bench/peer_torchvision_infer.py`` under that interpreter: a throw-away venv with
torch and torchvision; the course never depends on them), detections capped alike (100 an
image, no score threshold), and prints the ratio of images/s.

ResNet-50-FPN at 512×512, random initialisation, the paper's test settings (1000 proposals
per image, 100 detections). The whole inference model is timed (compiled ``predict_on_batch``),
then the same stages one by one, each compiled on its own with ``tf.function`` on the
outputs of the previous one, so the split adds up to roughly the whole:

- backbone: preprocessing + ResNet-50 + FPN;
- RPN + proposals: RPN head on P2–P6, per-level top-k, decode, clip, NMS;
- RoIAlign: 7×7 for the 1000 proposals and 14×14 for the 100 detections;
- heads: box head, detection layer (per-class NMS), mask head.

Figures are wall-clock medians; on a loaded machine compare the shares, not the seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib.models import maskrcnn as M  # noqa: E402


def median_time(fn, repeats: int) -> float:
    fn()  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        for t in tf.nest.flatten(out):
            np.asarray(t)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--peer-python", help="interpreter of a venv with torch + torchvision")
    args = parser.parse_args()

    cfg = M.MaskRCNNConfig(image_size=args.size, num_classes=2, backbone=args.backbone,
                           pretrained=False)
    keras.utils.set_random_seed(0)
    _, model = M.build_models(cfg, verbose=False)
    rng = np.random.default_rng(0)
    s = args.size
    x = {"images": rng.uniform(0, 255, (args.batch, s, s, 3)).astype("float32"),
         "image_meta": np.tile(np.array([[s, s, 0, 0, s, s, 1.0]], "float32"), (args.batch, 1))}
    peer = time_peer(args.peer_python, x["images"], args.repeats) if args.peer_python else None
    whole = median_time(lambda: model.predict_on_batch(x), args.repeats)

    images = tf.constant(x["images"])
    meta = tf.constant(x["image_meta"])
    backbone = tf.function(lambda im: model.backbone(model.preprocess(im), training=False))
    pyramid = backbone(images)

    def rpn(pyr):
        logits, deltas = model.rpn_head(pyr)
        anchors = model.anchor_generator(images)
        return model.test_proposals([logits, deltas, anchors, meta])

    rpn = tf.function(rpn)
    proposals, _, valid = rpn(pyramid)
    box_align = tf.function(lambda boxes, pyr: model.box_align(boxes, pyr[:4]))
    pooled = box_align(proposals, pyramid)

    def box_stage(feats):
        logits, deltas = model.box_head(feats)
        return model.detection([proposals, valid, logits, deltas, meta])

    box_stage = tf.function(box_stage)
    det_boxes = box_stage(pooled)[0]
    mask_align = tf.function(lambda boxes, pyr: model.mask_align(boxes, pyr[:4]))
    mask_feats = mask_align(det_boxes, pyramid)
    mask_head = tf.function(lambda f: model.mask_head(f))

    split = {
        "backbone + FPN": median_time(lambda: backbone(images), args.repeats),
        "RPN head + proposals": median_time(lambda: rpn(pyramid), args.repeats),
        "RoIAlign 7x7 (proposals) + 14x14 (detections)":
            median_time(lambda: box_align(proposals, pyramid), args.repeats)
            + median_time(lambda: mask_align(det_boxes, pyramid), args.repeats),
        "box head + detection + mask head":
            median_time(lambda: box_stage(pooled), args.repeats)
            + median_time(lambda: mask_head(mask_feats), args.repeats),
    }
    total = sum(split.values())
    print(f"backend {keras.backend.backend()}, {cfg.backbone}-FPN {s}², batch {args.batch}, "
          f"{cfg.rpn_post_nms_top_n_test} proposals, {cfg.detections_per_image} detections")
    print(f"whole inference model: {whole:.2f} s/batch -> {args.batch / whole:.2f} images/s")
    for name, t in split.items():
        print(f"  {name:48s} {t:6.2f} s  ({t / total:5.1%})")
    print(f"  {'sum of the stages':48s} {total:6.2f} s  ({total / whole:.2f}x the whole)")
    if peer:
        print(f"peer {peer['peer']}, {peer['threads']} threads, ATen dispatching "
              f"{peer['cpu_capability']}, its oneDNN convolutions at "
              f"{peer.get('onednn_isa', '?')}: {peer['median_s']:.2f} s/batch (runs "
              f"{', '.join(f'{t:.2f}' for t in peer['times_s'])}; first {peer['first_s']:.1f} s), "
              f"{peer['detections_per_image']} detections per image")
        print(f"measured in this run: ours {whole:.2f} s/batch vs torchvision "
              f"{peer['median_s']:.2f} s/batch -> ours runs at {peer['median_s'] / whole:.2f}x "
              "the peer's images/s")


def time_peer(python: str, images: np.ndarray, repeats: int) -> dict:
    """torchvision's inference on ``images`` in a subprocess under ``python`` (its own venv),
    run first, so that its threads do not share the cores with TensorFlow's."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "peer_torchvision_infer.py")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "images.npy")
        np.save(path, images)
        done = subprocess.run([python, script, path, "--repeats", str(repeats)], check=True,
                              capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
