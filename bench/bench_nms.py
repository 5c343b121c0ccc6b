"""Benchmark: the fixed-shape keras.ops NMS against tf.image.non_max_suppression.

Run from the repository root inside the venv (TensorFlow backend, CPU):

    KERAS_BACKEND=tensorflow CUDA_VISIBLE_DEVICES= python bench/bench_nms.py

Two scenes: 6,000 random boxes -> at most 1,000 kept at IoU 0.7 (one image, the RPN's test-time
sizes at 1024 px), and the training step's RPN at 512 px (batch 2, 6,960 candidates per image
-> 2,000). Each is timed as a compiled ``tf.function``: TensorFlow's C++ kernel (per image),
ours with ``jit_compile=True`` (XLA), ours as a plain graph (how the training step runs it
unless ``jit_compile`` is asked for), and ours with ``tile_size=16`` (16 times the loop steps:
what the number of steps costs). Prints medians, ratios and whether every version kept the
NumPy reference's indices. Target: ours within 3x of TensorFlow's.
"""

from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from course_lib.ops.nms import batched_padded_nms, nms  # noqa: E402

IOU_THRESHOLD, REPEATS = 0.7, 9
SCENES = [  # name, images, boxes per image, kept at most, image side in pixels, box sides
    ("6,000 -> 1,000, 1024 px", 1, 6000, 1000, 1024, (16, 256)),
    ("training RPN: 2 x 6,960 -> 2,000, 512 px", 2, 6960, 2000, 512, (8, 128)),
]


def make_boxes(images: int, n: int, side: float, sizes, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, side, (images, n, 2))
    hw = rng.uniform(*sizes, (images, n, 2))
    boxes = np.concatenate([centres - hw / 2, centres + hw / 2], -1).astype(np.float32)
    return boxes, rng.random((images, n)).astype(np.float32)


def median_ms(fn, *args) -> float:
    fn(*args)  # trace / compile
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        out = fn(*args)
        _ = [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def run_scene(name: str, images: int, n: int, max_output: int, side: float, sizes) -> None:
    """Time every version on one scene and print the figures and ratios."""
    boxes, scores = make_boxes(images, n, side, sizes)
    b, s = tf.constant(boxes), tf.constant(scores)
    ref = [nms(boxes[i], scores[i], IOU_THRESHOLD, max_output) for i in range(images)]

    def tf_nms(b, s):
        return tuple(tf.image.non_max_suppression(b[i], s[i], max_output, IOU_THRESHOLD)
                     for i in range(images))

    def ours(tile_size):
        return lambda b, s: batched_padded_nms(b, s, max_output, IOU_THRESHOLD,
                                               tile_size=tile_size)

    runs = {"tf.image.non_max_suppression (C++ kernel)": tf.function(tf_nms),
            "batched_padded_nms, XLA": tf.function(ours(256), jit_compile=True),
            "batched_padded_nms, graph": tf.function(ours(256)),
            "batched_padded_nms, graph, tile_size=16": tf.function(ours(16))}
    print(f"{name}: kept {[len(r) for r in ref]}, IoU {IOU_THRESHOLD}, median of {REPEATS}")
    figures = {}
    for label, fn in runs.items():
        figures[label] = median_ms(fn, b, s)
        out = fn(b, s)
        if label.startswith("tf.image"):
            same = all(np.array_equal(o.numpy(), r) for o, r in zip(out, ref, strict=True))
        else:
            kept, count = (t.numpy() for t in out)
            same = all(np.array_equal(kept[i, :count[i]], r) for i, r in enumerate(ref))
        print(f"  {label:<44} {figures[label]:8.1f} ms   same indices as NumPy: {same}")
    base = figures["tf.image.non_max_suppression (C++ kernel)"]
    print("  ratios to TensorFlow's kernel (target <= 3x): " + ", ".join(
        f"{label.split(', ', 1)[1]} {ms / base:.1f}x"
        for label, ms in figures.items() if not label.startswith("tf.image")), flush=True)


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    for scene in SCENES:
        run_scene(*scene)


if __name__ == "__main__":
    main()
