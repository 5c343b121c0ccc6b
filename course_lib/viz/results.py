"""Plots of an experiment table's results: scores per row, per modality, against nuclei count.

Taught in notebooks/11_train_nuclei.

Every function takes the :class:`~course_lib.experiments.nuclei.RowResult` list of
:class:`~course_lib.experiments.nuclei.NucleiExperiments` and draws on a given matplotlib
axis; what it drew is returned as numbers, so a notebook can check the picture against them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import ticker

from course_lib.viz.plots import instance_colors


def _ran(results) -> list:
    return [r for r in results if not r.skipped]


def plot_scores(results: Sequence, ax: plt.Axes | None = None) -> dict[str, float]:
    """Horizontal bars: each row's mean DSB score, the classical baseline as a dashed line.

    Returns:
        ``{row label: score}`` as drawn.

    Taught in notebooks/11_train_nuclei.
    """
    ax = ax or plt.gca()
    ran = _ran(results)
    labels = [r.row.label for r in ran]
    scores = [r.score for r in ran]
    colours = ["0.5" if r.row.model == "otsu" else "C0" if r.row.model == "unet" else "C3"
               for r in ran]
    y = np.arange(len(ran))[::-1]
    bars = ax.barh(y, scores, color=colours)
    ax.bar_label(bars, fmt="%.3f", padding=3)     # a zero score still shows its number
    ax.set_yticks(y, labels)
    base = [r.score for r in ran if r.row.model == "otsu"]
    if base:
        ax.axvline(base[0], color="0.3", ls="--", lw=1, label="Otsu baseline")
        ax.legend(loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_xlabel("mean DSB score on the validation split")
    return dict(zip(labels, scores, strict=True))


def per_modality(result, modality: Mapping[str, str]) -> dict[str, tuple[float, int]]:
    """``{modality: (mean score, images)}`` of one row's per-image scores.

    Taught in notebooks/11_train_nuclei.
    """
    groups: dict[str, list[float]] = {}
    for name, score in result.per_image.items():
        groups.setdefault(modality[name], []).append(score)
    return {m: (float(np.mean(v)), len(v)) for m, v in sorted(groups.items())}


def plot_per_modality(results: Sequence, modality: Mapping[str, str],
                      ax: plt.Axes | None = None) -> dict[str, dict[str, float]]:
    """Grouped bars: the mean score of each row on each modality's validation images.

    Returns:
        ``{row label: {modality: mean score}}`` as drawn.

    Taught in notebooks/11_train_nuclei.
    """
    ax = ax or plt.gca()
    ran = _ran(results)
    mods = sorted({modality[n] for r in ran for n in r.per_image})
    width = 0.8 / max(len(ran), 1)
    drawn = {}
    for k, r in enumerate(ran):
        means = per_modality(r, modality)
        values = [means.get(m, (np.nan, 0))[0] for m in mods]
        ax.bar(np.arange(len(mods)) + (k - (len(ran) - 1) / 2) * width, values, width,
               label=r.row.label)
        drawn[r.row.label] = dict(zip(mods, values, strict=True))
    counts = per_modality(ran[0], modality) if ran else {}
    n_images = {m: counts.get(m, (0, 0))[1] for m in mods}
    ax.set_xticks(np.arange(len(mods)), [f"{m}\n({n} image{'s' if n != 1 else ''})"
                                         for m, n in n_images.items()])
    ax.set_ylim(0, 1)
    ax.set_ylabel("mean DSB score")
    ax.legend(fontsize=7, loc="upper right")
    return drawn


def plot_score_vs_count(results: Sequence, counts: Mapping[str, int],
                        ax: plt.Axes | None = None) -> dict[str, np.ndarray]:
    """Each validation image's score against its number of true nuclei, one colour per row.

    Returns:
        ``{row label: (n, 2) array of (nuclei, score)}`` as drawn.

    Taught in notebooks/11_train_nuclei.
    """
    ax = ax or plt.gca()
    ran = _ran(results)
    colours = instance_colors(max(len(ran), 1), seed=3)
    drawn = {}
    for r, colour in zip(ran, colours, strict=False):
        points = np.array([(counts[n], s) for n, s in r.per_image.items()], float)
        ax.scatter(points[:, 0], points[:, 1], s=18, color=colour, label=r.row.label, alpha=0.8)
        drawn[r.row.label] = points
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.ScalarFormatter())   # 10, 100 rather than 10¹, 10²
    ax.set_xlabel("true nuclei in the image (log scale)")
    ax.set_ylabel("DSB score of the image")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=7)
    return drawn


def plot_losses(results: Sequence, ax: plt.Axes | None = None, model: str = "maskrcnn"
                ) -> dict[str, list[float]]:
    """Training loss per epoch of every row of one model kind.

    Returns:
        ``{row label: [loss per epoch]}`` as drawn.

    Taught in notebooks/11_train_nuclei.
    """
    ax = ax or plt.gca()
    drawn = {}
    for r in _ran(results):
        if r.row.model != model or "loss" not in r.history:
            continue
        loss = list(r.history["loss"])
        ax.plot(np.arange(1, len(loss) + 1), loss, "o-", label=r.row.label)
        drawn[r.row.label] = loss
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(ticker.MaxNLocator(integer=True))
    ax.set_ylabel("training loss")
    ax.set_title({"maskrcnn": "Mask R-CNN (sum of the five losses)",
                  "unet": "U-Net (weighted cross-entropy)"}.get(model, model))
    if drawn:
        ax.legend(fontsize=7)
    return drawn
