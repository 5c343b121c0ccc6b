"""Benchmark: PyramidRoIAlign (keras.ops, chunked gather) vs a tf.image.crop_and_resize version.

Taught in notebooks/07_roi_pool_vs_roi_align (the layer); this script only measures speed.

Setting: a 256×256 image, pyramid P2–P5 (64², 32², 16², 8²) with 256 channels, 1,000 boxes of
random sizes, 7×7 output, sampling_ratio 2, aligned. The reference is the usual TensorFlow
recipe: group boxes by level (tf.where, dynamic shapes), crop_and_resize each level to 14×14
at exactly RoIAlign's sample points, average-pool 2×2, scatter back. Both run on the CPU under
tf.function; the first (tracing) call is excluded. Prints each median time and the ratio.
The bar: the layer must be within 2× of the reference.

    python bench/bench_roi_align.py [--boxes 1000] [--repeats 7]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # a CPU benchmark

import numpy as np
import tensorflow as tf

from course_lib.layers.roi_align import PyramidRoIAlign

STRIDES = (4, 8, 16, 32)


def crop_and_resize_pyramid(features, boxes, output_size=7, sampling_ratio=2):
    """Multi-level aligned RoIAlign built on tf.image.crop_and_resize (batch 1, boxes (N, 4)).

    crop_and_resize samples crop row i at ny1*(H-1) + i*(ny2-ny1)*(H-1)/(n-1) on the grid, so
    the normalised box whose first and last samples are RoIAlign's first and last sample
    points, y_first = y1*s - 0.5 + step/2 and y_last = y1*s - 0.5 + (n - 1/2)*step with
    step = (y2 - y1)*s/n and n = output*ratio, is ny = y / (H - 1). (Out-of-map points differ:
    crop_and_resize gives 0 below 0 and above H-1, RoIAlign clamps in [-1, 0) and (H-1, H].)
    """
    n_samples = output_size * sampling_ratio
    h = boxes[:, 2] - boxes[:, 0]
    w = boxes[:, 3] - boxes[:, 1]
    k = tf.floor(4.0 + tf.math.log(tf.sqrt(h * w) / 224.0 + 1e-6) / tf.math.log(2.0))
    level = tf.cast(tf.clip_by_value(k, 2, 5), tf.int32)
    out = []
    order = []
    for i, (fmap, stride) in enumerate(zip(features, STRIDES, strict=True)):
        idx = tf.where(level == i + 2)[:, 0]
        b = tf.gather(boxes, idx) / stride - 0.5
        size_y, size_x = fmap.shape[1], fmap.shape[2]
        step_y = (b[:, 2] - b[:, 0]) / n_samples
        step_x = (b[:, 3] - b[:, 1]) / n_samples
        first_y, first_x = b[:, 0] + 0.5 * step_y, b[:, 1] + 0.5 * step_x
        last_y = b[:, 0] + (n_samples - 0.5) * step_y
        last_x = b[:, 1] + (n_samples - 0.5) * step_x
        norm = tf.stack([first_y / (size_y - 1), first_x / (size_x - 1),
                         last_y / (size_y - 1), last_x / (size_x - 1)], axis=1)
        crops = tf.image.crop_and_resize(fmap, norm, tf.zeros_like(idx, tf.int32),
                                         (n_samples, n_samples))
        out.append(tf.nn.avg_pool2d(crops, sampling_ratio, sampling_ratio, "VALID"))
        order.append(idx)
    pooled = tf.concat(out, axis=0)
    order = tf.concat(order, axis=0)
    # Put each box's crop back in its original position.
    shape = tf.concat([tf.shape(boxes, out_type=tf.int64)[:1],
                       tf.shape(pooled, out_type=tf.int64)[1:]], axis=0)
    return tf.scatter_nd(order[:, None], pooled, shape)


def random_boxes(rng, n, image_side):
    side = np.exp(rng.uniform(np.log(8), np.log(image_side), size=(n, 2)))
    centre = rng.uniform(0, image_side, size=(n, 2))
    boxes = np.concatenate([centre - side / 2, centre + side / 2], axis=1)
    return np.clip(boxes, 0, image_side).astype(np.float32)


def interleaved_medians(fn_a, fn_b, repeats):
    """Median seconds of each function, timed alternately so a busy machine slows both alike."""
    times = ([], [])
    for _ in range(repeats):
        for fn, out in zip((fn_a, fn_b), times, strict=True):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
    return float(np.median(times[0])), float(np.median(times[1]))


def main(argv=None):
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--boxes", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--channels", type=int, default=256)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    image_side = 256
    features = [tf.constant(rng.normal(size=(1, image_side // s, image_side // s, args.channels)),
                            tf.float32) for s in STRIDES]
    boxes = random_boxes(rng, args.boxes, image_side)
    layer = PyramidRoIAlign(output_size=7, strides=STRIDES, sampling_ratio=2, aligned=True)

    # Batch of one image; the layer takes (B, N, 4) boxes and a list of (B, H, W, C) maps.
    ours = tf.function(lambda: layer(tf.constant(boxes[None]), features))
    ref = tf.function(lambda: crop_and_resize_pyramid(features, tf.constant(boxes)))

    # Same numbers where no sample leaves the map (a check that the comparison is fair).
    a, b = ours().numpy()[0], ref().numpy()
    inner = np.all((boxes[:, :2] >= 16) & (boxes[:, 2:] <= image_side - 16), axis=1)
    agree = float(np.abs(a[inner] - b[inner]).max()) if inner.any() else float("nan")

    t_ours, t_ref = interleaved_medians(ours, ref, args.repeats)
    print(f"boxes={args.boxes} channels={args.channels} output=7x7 sampling_ratio=2, CPU, "
          f"{os.cpu_count()} cores")
    print(f"max |difference| on {int(inner.sum())} boxes well inside the image: {agree:.2e}")
    print(f"PyramidRoIAlign (keras.ops gather): {t_ours * 1e3:8.1f} ms")
    print(f"crop_and_resize reference:          {t_ref * 1e3:8.1f} ms")
    print(f"ratio ours / reference: {t_ours / t_ref:.2f} (bar: <= 2.0)")
    return t_ours / t_ref


if __name__ == "__main__":
    main()
