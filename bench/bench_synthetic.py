"""Benchmark: synthetic nuclei generation and the DSB loader's throughput.

Run from the repository root inside the venv (one core):

    OMP_NUM_THREADS=1 taskset -c 0 python bench/bench_synthetic.py [--real PATH]

Prints:
* generation of 100 synthetic 256×256 images written to disk (target < 10 s on one core),
  against a reference that draws the same label images with a per-pixel Python loop
  (measured on 3 images and scaled to 100);
* load_sample throughput (samples/s) on synthetic and, when present, real stage1_train
  samples, against plain Pillow reads of the same files (the I/O floor).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from course_lib.data.nuclei import load_sample  # noqa: E402
from course_lib.data.synthetic.nuclei import make_nuclei, make_sample  # noqa: E402


def _loop_labels(shape, ellipses):
    """Reference: every pixel tested against every ellipse in Python (what not to do)."""
    h, w = shape
    labels = np.zeros(shape, np.int32)
    for k, (r, c, ry, rx) in enumerate(ellipses, start=1):
        for y in range(h):
            for x in range(w):
                if labels[y, x] == 0 and ((y - r) / ry) ** 2 + ((x - c) / rx) ** 2 <= 1:
                    labels[y, x] = k
    return labels


def bench_generation(n=100, size=256):
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_nuclei(tmp, n, seed=0, size=size)
        ours = time.perf_counter() - t
    # reference on 3 images with the nuclei our generator placed (centres, mean radii)
    t = time.perf_counter()
    for i in range(3):
        labels = make_sample(0, i, size)["labels"]
        from scipy import ndimage as ndi

        ell = []
        for sl in ndi.find_objects(labels):
            if sl is not None:
                ry, rx = (sl[0].stop - sl[0].start) / 2, (sl[1].stop - sl[1].start) / 2
                ell.append(((sl[0].start + sl[0].stop) / 2, (sl[1].start + sl[1].stop) / 2, ry, rx))
        _loop_labels(labels.shape, ell)
    reference = (time.perf_counter() - t) / 3 * n
    print(f"generate+write {n} images {size}×{size}: {ours:.2f} s ({ours / n * 1e3:.1f} ms/image)"
          f" | per-pixel loop reference (labels only, scaled from 3): {reference:.1f} s"
          f" | speed-up {reference / ours:.0f}×")
    return ours


def bench_loader(dirs, label):
    t = time.perf_counter()
    n_masks = 0
    for d in dirs:
        n_masks += load_sample(d)[1].shape[-1]
    ours = time.perf_counter() - t
    t = time.perf_counter()
    for d in dirs:
        np.asarray(Image.open(d / "images" / f"{d.name}.png"))
        for f in sorted((d / "masks").iterdir()):
            np.asarray(Image.open(f))
    raw = time.perf_counter() - t
    print(f"load_sample on {len(dirs)} {label} samples ({n_masks} masks): "
          f"{len(dirs) / ours:.1f} samples/s | raw Pillow reads: {len(dirs) / raw:.1f} samples/s"
          f" | loader/raw time {ours / raw:.2f}")


def main():
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser()
    default_real = ROOT.parent / "shared" / "data" / "dsb2018" / "stage1_train"
    parser.add_argument("--real", type=Path, default=Path(os.environ.get("COURSE_REAL_DSB", default_real)))
    parser.add_argument("--n-loader", type=int, default=40)
    args = parser.parse_args()
    if hasattr(os, "sched_getaffinity"):
        print(f"cores available to this process: {len(os.sched_getaffinity(0))}")
    bench_generation()
    with tempfile.TemporaryDirectory() as tmp:
        dirs = make_nuclei(tmp, args.n_loader, seed=1)  # the real size mix
        bench_loader(dirs, "synthetic (real size mix)")
    if args.real.is_dir():
        ids = sorted(p for p in args.real.iterdir() if p.is_dir())
        bench_loader(random.Random(0).sample(ids, min(args.n_loader, len(ids))), "real")
    else:
        print(f"real data not found at {args.real}: skipped")


if __name__ == "__main__":
    main()
