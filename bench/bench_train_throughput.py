"""Training-step throughput through the real loop and pipeline, against a cached batch.

For each model and each setting of mixed precision and XLA, two short runs through
``course_lib.training.train`` (the same ``fit``, callbacks and checkpoints as a real run):

- *real*: batches made by the data pipeline (``UNetDataset`` / ``MaskRCNNDataset`` over
  synthetic nuclei written to a temporary folder, ``--workers`` loader threads);
- *cached*: one batch made once and returned for every step (the pipeline costs nothing);
- *bare*: the same compiled step called directly (``train_on_batch`` on the cached batch):
  no ``fit`` loop, callbacks or checkpoints. ``fit/bare`` is what the engine costs per step
  (target: within 10 %).

It prints the median step time of each (the first ``--warmup`` steps, which compile, are left
out), images per second, the ratio real / cached (target: a gap under 10 %), the time the
pipeline alone needs for one batch on one thread (``batch s``: on an accelerator the loader
threads hide it when ``batch s / workers`` is below the cached step; on a CPU the loader and
the model share the same cores, so the gap is roughly ``batch s / cached s``), and the peak
memory (host: maximum resident set size of the process, which only grows; GPU: the backend's
peak counter when a GPU is visible).

Models: ``unet`` (the full-mode recipe's U-Net, 256×256 tiles, batch 8) and ``maskrcnn``
(:func:`course_lib.models.maskrcnn.nuclei_config` with the ResNet-50 FPN at 512×512, batch 2;
``--maskrcnn-backbone light`` for a shorter CPU run).

Run:  python bench/bench_train_throughput.py [--models unet,maskrcnn] [--steps 6]
          [--warmup 2] [--configs fp32,bf16,fp32+xla,bf16+xla] [--workers 2]
On a GPU:  KERAS_BACKEND=jax python bench/bench_train_throughput.py --steps 50 --warmup 5
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from course_lib.data.nuclei import index_samples  # noqa: E402
from course_lib.data.synthetic import make_nuclei  # noqa: E402
from course_lib.training import TrainConfig, apply_precision, train  # noqa: E402
from course_lib.training.distribute import accelerators  # noqa: E402

CONFIGS = {"fp32": ("float32", False), "bf16": ("mixed_bfloat16", False),
           "fp16": ("mixed_float16", False), "fp32+xla": ("float32", True),
           "bf16+xla": ("mixed_bfloat16", True), "fp16+xla": ("mixed_float16", True)}


class StepTimer(keras.callbacks.Callback):
    """Wall time of each training batch (from batch begin to batch end)."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self._t = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        # logs hold tensors the step produced: reading one waits for the step to finish
        if logs:
            float(np.asarray(next(iter(logs.values()))))
        self.times.append(time.perf_counter() - self._t)


class CachedBatch(keras.utils.PyDataset):
    """The same batch for every index: training without data cost."""

    def __init__(self, batch, n: int):
        super().__init__()
        self.batch, self.n = batch, n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return self.batch


def gpu_peak_mb() -> float | None:
    if not accelerators():
        return None
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            return stats.get("peak_bytes_in_use", 0) / 2 ** 20
    except Exception:  # a backend without the counter: report nothing rather than fail
        return None
    return None


def host_peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def unet_case(root: Path, workers: int):
    from course_lib.models import unet_training as ut

    recipe = ut.recipe_for_mode("full", batch_size=8, tile_size=256)
    data = ut.training_dataset(index_samples(root), recipe)
    data.workers = workers
    norm_batch = data[0]

    def build():
        norm = keras.layers.Normalization(axis=None, name="normalize")
        norm.adapt(norm_batch[0])
        return ut.build_recipe_unet(recipe, norm)

    return "U-Net 256×256 b8", build, data, "binary_crossentropy", recipe.batch_size


def maskrcnn_case(root: Path, workers: int, backbone: str):
    from course_lib.data.coco import DsbFolderSamples
    from course_lib.data.pipeline import MaskRCNNDataset
    from course_lib.models import maskrcnn

    cfg = dataclasses.replace(maskrcnn.nuclei_config(), image_size=512, backbone=backbone,
                              pretrained=False)
    data = MaskRCNNDataset(DsbFolderSamples(root), batch_size=2, image_size=512,
                           max_instances=cfg.max_instances, mini_mask_shape=cfg.mini_mask_shape,
                           workers=workers)

    def build():
        return maskrcnn.build_models(cfg, verbose=False)[0]

    return f"Mask R-CNN {backbone} 512×512 b2", build, data, None, 2


def measure(case, policy: str, jit: bool, steps: int, warmup: int, run_root: Path) -> dict:
    label, build, data, loss, batch = case
    out = {}
    for kind in ("cached", "real"):
        apply_precision(policy)
        source = CachedBatch(data[0], len(data)) if kind == "cached" else data
        timer = StepTimer()
        per_epoch = min(steps + warmup, len(data))
        cfg = TrainConfig(epochs=-(-(steps + warmup) // per_epoch), steps_per_epoch=per_epoch,
                          optimizer="sgd", learning_rate=1e-3, mixed_precision=policy,
                          jit_compile=jit, tensorboard=False, verbose=0)
        run_dir = Path(tempfile.mkdtemp(dir=run_root))
        train(build, source, run_dir, cfg, loss=loss, callbacks=[timer],
              print_fn=lambda s: None)
        times = np.array(timer.times[warmup:warmup + steps])
        if len(times) == 0:
            raise RuntimeError(f"only {len(timer.times)} steps ran; lower --warmup")
        out[kind] = float(np.median(times))
    # bare: the same compiled step called directly on the cached batch (`train_on_batch`:
    # no fit loop, no callbacks, no checkpoints), so cached / bare is what the engine costs
    apply_precision(policy)
    model = build()
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss=loss, jit_compile=jit)
    x = data[0]
    args = (x,) if isinstance(x, dict) else x
    bare = []
    for _ in range(steps + warmup):
        t = time.perf_counter()
        logs = model.train_on_batch(*args, return_dict=True)
        float(np.asarray(next(iter(logs.values()))))
        bare.append(time.perf_counter() - t)
    out["bare"] = float(np.median(bare[warmup:]))
    out["fit_over_bare"] = out["cached"] / out["bare"]
    apply_precision("float32")
    # what one batch costs the pipeline alone, serially (the loader threads share it)
    batch_times = []
    for i in range(min(3, len(data))):
        t = time.perf_counter()
        data[i]
        batch_times.append(time.perf_counter() - t)
    out["batch"] = float(np.median(batch_times))
    out["ratio"] = out["real"] / out["cached"]
    out["images_per_s"] = batch / out["real"]
    out["host_mb"] = host_peak_mb()
    out["gpu_mb"] = gpu_peak_mb()
    return out


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="unet,maskrcnn")
    parser.add_argument("--configs", default="fp32,bf16,fp32+xla,bf16+xla")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=2, help="untimed first steps")
    parser.add_argument("--workers", type=int, default=2, help="loader threads")
    parser.add_argument("--images", type=int, default=24, help="synthetic images written")
    parser.add_argument("--maskrcnn-backbone", default="resnet50")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    make_nuclei(tmp / "nuclei", args.images, seed=0, size=(256, 320))
    root = tmp / "nuclei" / "stage1_train"
    print(f"backend {keras.backend.backend()}, devices: {accelerators() or 'CPU only'}; "
          f"{args.steps} timed steps after {args.warmup} warm-up steps, "
          f"{args.workers} loader threads")
    print(f"{'model':<30} {'config':<9} {'bare s':>7} {'cached s':>9} {'fit/bare':>9} "
          f"{'real s':>8} {'real/cached':>12} {'batch s':>8} {'img/s':>7} {'host MB':>8} "
          f"{'GPU MB':>7}")
    for name in args.models.split(","):
        if name == "unet":
            case = unet_case(root, args.workers)
        elif name == "maskrcnn":
            case = maskrcnn_case(root, args.workers, args.maskrcnn_backbone)
        else:
            raise SystemExit(f"unknown model {name!r}: use unet, maskrcnn")
        for conf in args.configs.split(","):
            policy, jit = CONFIGS[conf]
            try:
                r = measure(case, policy, jit, args.steps, args.warmup, tmp)
            except Exception as err:  # report and go on: one broken setting must not hide the rest
                print(f"{case[0]:<30} {conf:<9} failed: {type(err).__name__}: "
                      f"{str(err).splitlines()[0][:120]}")
                continue
            gpu = f"{r['gpu_mb']:.0f}" if r["gpu_mb"] is not None else "-"
            print(f"{case[0]:<30} {conf:<9} {r['bare']:7.3f} {r['cached']:9.3f} "
                  f"{r['fit_over_bare']:9.3f} {r['real']:8.3f} {r['ratio']:12.3f} "
                  f"{r['batch']:8.3f} {r['images_per_s']:7.2f} {r['host_mb']:8.0f} {gpu:>7}")


if __name__ == "__main__":
    main()
