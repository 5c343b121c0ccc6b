"""Benchmark: scoring a DSB-sized dataset, vectorised IoU vs a per-pair reference.

Run: ``python bench/bench_metrics.py`` (one core: ``taskset -c 0`` or OMP_NUM_THREADS=1).

Targets (bench/README.md): scoring 670 images of 256×256 with ~40 nuclei each in < 1 s on one
core, and the co-occurrence IoU matrix at least 20× faster than looping over label pairs.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from course_lib import metrics  # noqa: E402

N_IMAGES, SIZE, N_NUCLEI = 670, 256, 40
N_REFERENCE = 50  # the per-pair reference is slow; time both on this subset


def random_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """``SIZE×SIZE`` label image of ``n`` disks, radii 4-12 px (later disks overwrite)."""
    labels = np.zeros((SIZE, SIZE), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.uniform(0, SIZE, 2)
        r = rng.uniform(4, 12)
        y0, y1 = int(max(cy - r, 0)), int(min(cy + r + 1, SIZE))
        x0, x1 = int(max(cx - r, 0)), int(min(cx + r + 1, SIZE))
        yy, xx = np.mgrid[y0:y1, x0:x1]
        patch = labels[y0:y1, x0:x1]
        patch[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = k
    return labels


def perturb(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """A plausible prediction: shifted by a pixel, 10 % of nuclei dropped, 3 false positives."""
    pred = np.roll(labels, shift=tuple(rng.integers(-1, 2, 2)), axis=(0, 1))
    n = int(labels.max())
    dropped = rng.choice(np.arange(1, n + 1), size=max(n // 10, 1), replace=False)
    pred[np.isin(pred, dropped)] = 0
    extra = random_labels(rng, 3)
    pred = np.where((pred == 0) & (extra > 0), extra + n, pred)
    return pred


def slow_iou(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Reference: one intersection and union per (true, pred) pair."""
    t_ids = [i for i in np.unique(true) if i]
    p_ids = [j for j in np.unique(pred) if j]
    out = np.zeros((len(t_ids), len(p_ids)))
    for a, i in enumerate(t_ids):
        ti = true == i
        for b, j in enumerate(p_ids):
            pj = pred == j
            out[a, b] = np.logical_and(ti, pj).sum() / np.logical_or(ti, pj).sum()
    return out


def main() -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    rng = np.random.default_rng(0)
    pairs = []
    for _ in range(N_IMAGES):
        true = random_labels(rng, N_NUCLEI)
        pairs.append((true, perturb(rng, true)))
    nuclei = np.mean([len(np.unique(t)) - 1 for t, _ in pairs])
    print(f"{N_IMAGES} images of {SIZE}×{SIZE}, {nuclei:.1f} nuclei per image on average")

    # CPU time of this process as well as wall time: on a shared machine the wall clock also
    # counts the time other jobs hold the core.
    start, start_cpu = time.perf_counter(), time.process_time()
    score = metrics.dsb_score(pairs)
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"dsb_score over {N_IMAGES} images: {total:.3f} s wall, {total_cpu:.3f} s CPU "
          f"({1e3 * total_cpu / N_IMAGES:.2f} ms CPU per image), score {score:.4f}  "
          f"[target < 1 s on one core: {'OK' if total_cpu < 1 else 'MISSED'}]")

    subset = pairs[:N_REFERENCE]
    start = time.process_time()
    fast = [metrics.iou_matrix(t, p) for t, p in subset]
    fast_time = (time.process_time() - start) / N_REFERENCE
    start = time.process_time()
    slow = [slow_iou(t, p) for t, p in subset]
    slow_time = (time.process_time() - start) / N_REFERENCE
    assert all(np.allclose(f, s) for f, s in zip(fast, slow, strict=True))
    ratio = slow_time / fast_time
    print(f"iou_matrix per image (CPU time): vectorised {1e3 * fast_time:.3f} ms, per-pair reference "
          f"{1e3 * slow_time:.1f} ms, ratio {ratio:.0f}x  "
          f"[target >= 20x: {'OK' if ratio >= 20 else 'MISSED'}]")


if __name__ == "__main__":
    main()
