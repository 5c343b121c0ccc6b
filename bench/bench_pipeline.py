"""Loader throughput and memory of the Mask R-CNN batching pipeline (synthetic VOC by default).

Prints samples per second for:
  - reading only (the sample provider's ``load``): the reference,
  - full batching (resize, pad, mini-masks) without augmentation,
  - full batching with the default augmentation, serial (``workers=1``),
  - the same through Keras' threaded enqueuer (``workers=N``), the path ``fit`` takes,
and the peak Python-heap memory (tracemalloc, which sees NumPy's buffers) and the process's
maximum resident set size over one epoch.

Run:  python bench/bench_pipeline.py [--dataset voc|nuclei|real] [--images 48] [--size 512]
                                     [--batch 4] [--workers 4]
``nuclei`` writes synthetic DSB-layout nuclei (the real size mix, 10-500 nuclei per image);
``real`` reads the first ``--images`` samples of the real DSB2018 folder when it is present
(``$COURSE_REAL_DSB`` or ../shared/data/dsb2018/stage1_train).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib.data import pipeline, voc  # noqa: E402
from course_lib.data.augment import Augmenter  # noqa: E402
from course_lib.data.synthetic import make_voc  # noqa: E402

CPU_MS: dict[str, float] = {}


def _rate(n_samples: int, fn, label: str) -> float:
    """Samples per wall-clock second; also records CPU milliseconds per sample (all threads)."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    CPU_MS[label] = (time.process_time() - cpu) * 1000.0 / n_samples
    return n_samples / (time.perf_counter() - start)


def _epoch(ds) -> None:
    for i in range(len(ds)):
        ds[i]


def _threaded_epoch(ds) -> None:
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    adapter = PyDatasetAdapter(ds, shuffle=False)
    adapter.on_epoch_begin()
    for _ in adapter.get_numpy_iterator():
        pass
    adapter.on_epoch_end()


def _provider(args, tmp: str):
    if args.dataset == "voc":
        return voc.VocSamples(make_voc(tmp, args.images, seed=0), "trainval")  # ~500 x 375
    from course_lib.data import nuclei
    from course_lib.data.coco import DsbFolderSamples

    if args.dataset == "nuclei":
        from course_lib.data.synthetic import make_nuclei

        return DsbFolderSamples(sample_dirs=make_nuclei(tmp, args.images, seed=0))
    real = Path(os.environ.get("COURSE_REAL_DSB", Path(__file__).resolve().parents[2]
                               / "shared" / "data" / "dsb2018" / "stage1_train"))
    if not real.is_dir():
        sys.exit(f"real DSB2018 folder {real} not found; set COURSE_REAL_DSB or use --dataset nuclei")
    return DsbFolderSamples(sample_dirs=nuclei.index_samples(real)[:args.images])


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("voc", "nuclei", "real"), default="voc")
    parser.add_argument("--images", type=int, default=48, help="images in the epoch")
    parser.add_argument("--size", type=int, default=512, help="padded square side")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        provider = _provider(args, tmp)
        n = len(provider)

        def make(augment: bool, workers: int = 1):
            return pipeline.MaskRCNNDataset(
                provider, batch_size=args.batch, image_size=args.size,
                max_instances=32 if args.dataset == "voc" else 400,
                augmenter=Augmenter.default(seed=0) if augment else None, seed=0,
                workers=workers, max_queue_size=8)

        samples = len(make(False)) * args.batch
        read = _rate(n, lambda: [provider.load(i) for i in range(n)], "read")
        plain = _rate(samples, lambda: _epoch(make(False)), "plain")
        serial = _rate(samples, lambda: _epoch(make(True)), "serial")
        threaded = _rate(samples, lambda: _threaded_epoch(make(True, args.workers)), "threaded")

        tracemalloc.start()
        _epoch(make(True))
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    print(f"{args.dataset}: {n} images, batches of {args.batch} at {args.size}x{args.size}, "
          f"{os.cpu_count()} CPUs")
    rows = [("read only (reference)", read, "read", ""),
            ("batching, no augmentation", plain, "plain", f"({plain / read:.2f}x read)"),
            ("batching + augmentation", serial, "serial", f"({serial / read:.2f}x read)"),
            (f"  same, {args.workers} worker threads", threaded, "threaded",
             f"({threaded / serial:.2f}x serial)")]
    print(f"{'':32}{'samples/s':>10}{'CPU ms/sample':>15}")
    for label, rate, key, note in rows:
        print(f"{label:32}{rate:10.1f}{CPU_MS[key]:15.1f}  {note}")
    print(f"load average {os.getloadavg()[0]:.1f}: wall-clock rates shrink when the CPUs are "
          "shared; CPU ms/sample does not")
    print(f"peak traced memory, one epoch  {peak / 2**20:8.1f} MiB")
    print(f"max resident set size          {maxrss_kb / 1024:8.1f} MiB (whole process, incl. "
          "TensorFlow import)")


if __name__ == "__main__":
    main()
