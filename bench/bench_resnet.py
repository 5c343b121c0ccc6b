"""Benchmark: forward time of our ResNet-50 vs keras.applications.ResNet50, same input, one run.

Run: ``python bench/bench_resnet.py [--size 224] [--batch 4] [--repeats 7]`` (CPU by default:
``CUDA_VISIBLE_DEVICES=`` is set unless already given).

Both models are the same architecture (the unit tests prove equal layers and outputs), so the
ratio should be ~1.0: the figure guards against our builder adding hidden cost (extra layers,
casts, Python in the graph). Also times our NumPy ``conv2d`` against ``keras.layers.Conv2D``
on one ResNet-sized 3×3 convolution, to show what the vectorised lesson code costs.
Timings: compiled ``predict_on_batch`` after a warm-up, median of interleaved repeats.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from course_lib.layers import resnet  # noqa: E402
from course_lib.ops import conv  # noqa: E402


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    shape = (args.size, args.size, 3)
    ours = resnet.resnet(50, shape)
    ref = keras.applications.ResNet50(weights=None, include_top=False, input_shape=shape)
    resnet.copy_weights(ref, ours)
    x = np.random.default_rng(0).normal(size=(args.batch, *shape)).astype("float32")
    c5 = ours.predict_on_batch(x)[-1]  # warm-up (traces both)
    ref_out = ref.predict_on_batch(x)
    print(f"backend {keras.backend.backend()}, input {args.batch}x{args.size}x{args.size}x3, "
          f"max |C5 ours - keras| = {np.abs(c5 - ref_out).max():.2e}")

    t_ours, t_ref = [], []
    for _ in range(args.repeats):  # interleave, so load changes hit both alike
        t_ours += timed(lambda: ours.predict_on_batch(x), 1)
        t_ref += timed(lambda: ref.predict_on_batch(x), 1)
    m_ours, m_ref = statistics.median(t_ours), statistics.median(t_ref)
    print(f"ResNet-50 forward, ours:                {m_ours * 1e3:8.1f} ms (median of {args.repeats})")
    print(f"ResNet-50 forward, keras.applications:  {m_ref * 1e3:8.1f} ms")
    print(f"ratio ours / keras: {m_ours / m_ref:.2f}")

    # the lesson's NumPy convolution on a conv3-sized layer: 28x28x128 -> 128, 3x3 same
    rng = np.random.default_rng(1)
    xc = rng.normal(size=(1, 28, 28, 128)).astype("float32")
    layer = keras.layers.Conv2D(128, 3, padding="same")
    layer(xc)
    w, b = (np.asarray(v) for v in layer.weights)
    np.testing.assert_allclose(conv.conv2d(xc, w, b, padding="same"), np.asarray(layer(xc)),
                               atol=1e-3)
    t_np = statistics.median(timed(lambda: conv.conv2d(xc, w, b, padding="same"), args.repeats))
    t_k = statistics.median(timed(lambda: np.asarray(layer(xc)), args.repeats))
    print(f"3x3 conv 28x28x128->128, NumPy conv2d:  {t_np * 1e3:8.2f} ms")
    print(f"3x3 conv 28x28x128->128, keras Conv2D:  {t_k * 1e3:8.2f} ms   ratio NumPy / keras: "
          f"{t_np / t_k:.1f}")


if __name__ == "__main__":
    main()
