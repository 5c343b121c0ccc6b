"""The CPU budget's speed: training images per second, and the shipped models' inference.

For each CPU-budget recipe (``--budget cpu``: the U-Net and the Mask R-CNN of notebook 11):

- *data*: seconds the pipeline needs for one batch on one thread (decoding is cached by the
  recipe, so this is windowing, augmenting, targets);
- *step*: the median seconds of ``train_on_batch`` on one cached batch, after ``--warmup``
  steps (compilation and the first calls are left out);
- images/s of the step alone, and with the data made on the same cores (``batch /
  (step + data / workers)``, an upper bound on what a run sees when the loader threads and
  the model share two cores).

Then each shipped model's inference on the eight real demo images: milliseconds per image,
image to instance labels (windows or tiles, post-processing and paste-back included), and per
megapixel, since the images run from 0.07 to 1.05 megapixels.

Run:  python bench/bench_cpu_budget.py [--data STAGE1_TRAIN] [--steps 8] [--warmup 2]
Without ``--data`` the training batches come from the demo images (the step costs the same:
every batch has the same shape).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from machine import header  # noqa: E402


def bench_training(model: str, data: Path, steps: int, warmup: int, workers: int) -> str:
    from course_lib.training.recipes import make_recipe

    recipe = make_recipe("nuclei", model, "quick", data, budget="cpu", workers=workers)
    ds = recipe.train_data
    t = time.perf_counter()
    batches = [ds[i % len(ds)] for i in range(3)]
    data_s = (time.perf_counter() - t) / 3
    net = recipe.build()
    if model == "unet":
        import keras

        net.compile(optimizer=keras.optimizers.AdamW(1e-4), loss=recipe.loss)
        x, y, w = batches[0]

        def step():
            net.train_on_batch(x, y, sample_weight=w)
    else:
        import keras

        net.compile(optimizer=keras.optimizers.AdamW(1e-4))

        def step():
            net.train_on_batch(batches[0])
    times = []
    for k in range(warmup + steps):
        t = time.perf_counter()
        step()
        if k >= warmup:
            times.append(time.perf_counter() - t)
    s = statistics.median(times)
    b = ds.batch_size
    return (f"{recipe.name:<22} batch {b}  data {data_s:5.2f} s/batch (1 thread)  step "
            f"{s:5.2f} s  -> {b / s:5.2f} images/s (step), "
            f"{b / (s + data_s / workers):5.2f} images/s (with data on {workers} threads)")


def bench_inference() -> list[str]:
    from course_lib import shipped
    from course_lib.data.demo import demo_samples
    from course_lib.training.evaluate import folder_samples

    samples = list(folder_samples(demo_samples()))
    lines = []
    for name in shipped.names():
        model = shipped.load(name)
        model.labels(samples[0][1])        # compile the predict step once
        per_image, pixels = [], []
        for _, image, _ in samples:
            t = time.perf_counter()
            model.labels(image)
            per_image.append(time.perf_counter() - t)
            pixels.append(image.shape[0] * image.shape[1] / 1e6)
        lines.append(f"{name:<22} {1000 * np.mean(per_image):7.0f} ms/image (mean of "
                     f"{len(samples)}; {1000 * min(per_image):.0f}-{1000 * max(per_image):.0f})"
                     f"  {1000 * sum(per_image) / sum(pixels):7.0f} ms/megapixel")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=None)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--models", default="unet,maskrcnn")
    args = p.parse_args()
    from course_lib.data.demo import demo_nuclei_folder

    print(header("CPU budget: training step and shipped-model inference"))
    data = args.data or demo_nuclei_folder()
    print(f"training batches from {data}")
    for model in args.models.split(","):
        print(bench_training(model, data, args.steps, args.warmup, args.workers), flush=True)
    print("inference on the 8 demo images (image -> instance labels):")
    for line in bench_inference():
        print(line, flush=True)


if __name__ == "__main__":
    main()
