"""What bounds the U-Net training step on real nuclei: the data, the weight maps, or the model.

The full-mode recipe (256-px tiles, batch 8, 32 base filters, depth 4, batch norm, border
weight maps) on real DSB stage-1 images, timed piece by piece in one run on one CPU:

- **decode**: one training image and its mask PNGs read from disk (``DsbFolderSamples``);
- **tile pieces** (one thread, per tile): the cached sample unpacked, the label image,
  the crop, the target, the border weight map;
- **batch**: one batch of 8 tiles as ``UNetDataset`` makes it, with the image cache warm
  (every image decoded before) and cold (every image decoded as it comes: the first epoch,
  or every epoch when the cache holds fewer images than the split);
- **model**: the compiled training step alone on one fixed batch (``train_on_batch``);
- **fit**: ``--steps`` steps of ``model.fit`` on the dataset itself (its loader threads,
  ``--workers``), the pipeline and the model sharing the cores, with the cache warm.

Every figure names the CPU in the header (``bench/machine.py``). Emulate an AVX2 CPU on an
AVX-512 one with ``ONEDNN_MAX_CPU_ISA=AVX2``.

Run:  python bench/bench_unet_step.py --data ../shared/data/dsb2018/stage1_train
          [--images 64] [--steps 6] [--workers 2] [--recipe full|cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from machine import header  # noqa: E402  (the CPU and backend settings every figure needs)


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a DSB stage1_train folder (one folder per image)")
    p.add_argument("--images", type=int, default=64, help="training images to draw tiles from")
    p.add_argument("--steps", type=int, default=6, help="timed model and fit steps")
    p.add_argument("--workers", type=int, default=2, help="loader threads for the fit run")
    p.add_argument("--recipe", choices=("full", "cpu"), default="full",
                   help="full: recipe_for_mode('full'); cpu: recipe_for_budget('cpu')")
    args = p.parse_args(argv)

    import keras

    from course_lib.data.coco import DsbFolderSamples
    from course_lib.models import unet_training as ut
    from course_lib.ops.masks import disjoint_masks_to_labels

    print(header("U-Net training step on real nuclei (bench/bench_unet_step.py)"))
    recipe = (ut.recipe_for_mode("full") if args.recipe == "full"
              else ut.recipe_for_budget("cpu"))
    recipe = dataclasses.replace(recipe, batch_size=8, tile_size=256)
    dirs = sorted(d for d in Path(args.data).iterdir() if d.is_dir())[:args.images]
    if len(dirs) < recipe.batch_size * (args.steps + 1):   # fit times steps after the first
        p.error(f"{len(dirs)} images make fewer than --steps + 1 = {args.steps + 1} batches of "
                f"{recipe.batch_size}; pass more --images or fewer --steps")
    print(f"recipe {args.recipe}: tile {recipe.tile_size}, batch {recipe.batch_size}, "
          f"{recipe.base_filters} filters, depth {recipe.depth}, target {recipe.target}, "
          f"piece_side {recipe.piece_side}, augment {recipe.augment or 'none'}; "
          f"{len(dirs)} images")

    # -- decoding -------------------------------------------------------------------------
    raw = DsbFolderSamples(sample_dirs=dirs)
    start = time.perf_counter()
    samples = [raw.load(i) for i in range(len(dirs))]
    decode = (time.perf_counter() - start) / len(dirs)
    nuclei = [s[1].shape[-1] for s in samples]
    print(f"decode: {decode * 1000:.0f} ms an image (mean over {len(dirs)}; "
          f"{np.mean(nuclei):.0f} nuclei an image, at most {max(nuclei)})")

    # -- the pieces of one tile -------------------------------------------------------------
    cached = ut.CachedSamples(raw, maxsize=len(dirs))
    for i in range(len(dirs)):
        cached.packed(i)
    weight_fn, target_fn = ut.recipe_weight_fn(recipe), ut.recipe_target_fn(recipe)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(dirs), 32)
    labels_of = {int(i): disjoint_masks_to_labels(cached.load(int(i))[1]) for i in picks}

    def crop(labels):
        h, w = labels.shape
        s = recipe.tile_size
        if h < s or w < s:
            return np.pad(labels, ((0, max(0, s - h)), (0, max(0, s - w))), mode="symmetric")
        top, left = rng.integers(0, h - s + 1), rng.integers(0, w - s + 1)
        return labels[top:top + s, left:left + s]

    tiles = [crop(labels_of[int(i)]) for i in picks]
    def per_tile(fn):
        return median_time(fn, 3) / len(picks)

    unpack = per_tile(lambda: [cached.load(int(i)) for i in picks])
    # the label image is made from a fresh unpack each time (holding 32 stacks of a large
    # image's masks would take gigabytes), so the unpack is taken off again
    relabel = per_tile(lambda: [disjoint_masks_to_labels(cached.load(int(i))[1])
                                for i in picks]) - unpack
    pieces = {"unpack the cached sample (masks H×W×N)": unpack,
              "label image from the masks": relabel,
              "target": per_tile(lambda: [target_fn(t) if target_fn else (t > 0)
                                          for t in tiles]),
              "weight map": per_tile(lambda: [weight_fn(t) for t in tiles])}
    print("one tile, one thread (median of 3 passes over 32 tiles, cut from whole images):")
    for name, t in pieces.items():
        print(f"  {name:40s} {t * 1000:7.1f} ms")

    # -- whole batches ----------------------------------------------------------------------
    def dataset(samples, workers=1):
        """The recipe's training dataset (as the command line builds it) over ``samples``."""
        ds = ut.training_dataset(dirs, recipe, provider=samples, augmenter=recipe.augmenter())
        ds.workers = workers
        return ds

    def provider(decoded: bool):
        """The recipe's provider: whole cached images, or 384-px pieces of them
        (``piece_side``: :class:`TiledSamples` decodes every image when it is built)."""
        if decoded and not recipe.piece_side:
            return cached
        fresh = ut.CachedSamples(DsbFolderSamples(sample_dirs=dirs), maxsize=len(dirs))
        if recipe.piece_side:
            return ut.TiledSamples(cached if decoded else fresh, recipe.piece_side,
                                   progress=False)
        return fresh

    warm = dataset(provider(decoded=True))
    n_batches = min(len(warm), 6)
    t_warm = median_time(lambda: [warm[b] for b in range(n_batches)], 1) / n_batches
    if recipe.piece_side:   # no cold epoch: the pieces are cut from images decoded up front
        start = time.perf_counter()
        provider(decoded=False)
        t_cold = None
        print(f"batch of {recipe.batch_size}, one thread: {t_warm:.2f} s (pieces of "
              f"{recipe.piece_side} px; every image decoded before the first step: "
              f"{time.perf_counter() - start:.1f} s for {len(dirs)})")
    else:
        cold = dataset(provider(decoded=False))
        t_cold = median_time(lambda: [cold[b] for b in range(n_batches)], 1) / n_batches
        print(f"batch of {recipe.batch_size}, one thread: cache warm {t_warm:.2f} s, "
              f"cold (every image decoded: the first epoch; every epoch when the cache is "
              f"smaller than the split, as the old LRU of 64 was for full mode's 542 images) "
              f"{t_cold:.2f} s")

    # -- the model alone --------------------------------------------------------------------
    keras.utils.set_random_seed(0)
    model = ut.build_recipe_unet(recipe, input_shape=(recipe.tile_size, recipe.tile_size, 3))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss=recipe.loss)
    x, y, w = warm[0]
    model.train_on_batch(x, y, sample_weight=w)   # traces
    t_model = median_time(lambda: model.train_on_batch(x, y, sample_weight=w), args.steps)
    print(f"model step alone (train_on_batch, median of {args.steps}): {t_model:.2f} s "
          f"({recipe.batch_size / t_model:.2f} images/s)")

    # -- fit on the dataset -----------------------------------------------------------------
    class Timer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times, self.ends, self._t = [], [], None

        def on_train_batch_begin(self, batch, logs=None):
            self._t = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.ends.append(time.perf_counter())
            self.times.append(self.ends[-1] - self._t)

    def fit(samples, label):
        timer = Timer()
        model.fit(dataset(samples, workers=args.workers), epochs=1,
                  steps_per_epoch=args.steps + 1, verbose=0, callbacks=[timer])
        # wall: from the end of the first step (the loader's start-up) to the end of the
        # last, so the time a step waits for its batch counts
        wall = (timer.ends[-1] - timer.ends[0]) / args.steps
        print(f"fit on the dataset ({args.workers} loader threads, {label}): wall "
              f"{wall:.2f} s a step ({recipe.batch_size / wall:.2f} images/s); "
              f"fit / model alone {wall / t_model:.2f}")

    fit(provider(decoded=True), "cache warm: every epoch after the first")
    if t_cold is not None:
        fit(provider(decoded=False),
            "cache cold: the first epoch, and every epoch with a cache smaller than the split")
    shares = f"data warm {t_warm:.2f} s ({t_warm / (t_model + t_warm):.0%})"
    if t_cold is not None:
        shares += f", data cold {t_cold:.2f} s ({t_cold / (t_model + t_cold):.0%})"
    print(f"shares of one step on one thread: model {t_model:.2f} s, {shares}")


if __name__ == "__main__":
    main()
