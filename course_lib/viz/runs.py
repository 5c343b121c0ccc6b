"""Pictures of compared training runs: loss curves, per-class AP, detections (chapter 12).

Taught in notebooks/12_train_voc.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from course_lib.viz.plots import show_instances

#: One colour per run, in order (matplotlib's first tab10 colours).
RUN_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def steps_axis(result) -> np.ndarray:
    """Optimizer step at the end of each epoch of a run (``result.steps`` spread evenly over
    its epochs), so runs of different epoch lengths share one x axis.

    Taught in notebooks/12_train_voc.
    """
    n = len(result.history.get("loss", []))
    per_epoch = result.steps / n if n else 0
    return np.arange(1, n + 1) * per_epoch


def plot_losses(results: Mapping, ax: plt.Axes | None = None,
                keys: Sequence[str] = ("loss", "val_loss"), title: str | None = None
                ) -> dict[str, dict[str, list[float]]]:
    """Loss per epoch of each run against the optimizer step: one colour per run, training
    solid with dots, validation dashed with squares.

    Args:
        results: ``{name: RunResult}`` (:func:`course_lib.experiments.comparison.train_runs`).
        ax: where to draw (default: the current axes).
        keys: history keys to draw (those a run lacks are skipped).
        title: the axes' title.

    Returns:
        ``{run name: {key: values}}`` as drawn.

    Taught in notebooks/12_train_voc.
    """
    ax = ax or plt.gca()
    drawn = {}
    colors = [RUN_COLORS[k % len(RUN_COLORS)] for k in range(len(results))]
    for color, (name, result) in zip(colors, results.items(), strict=True):
        x = steps_axis(result)
        drawn[name] = {}
        for key in keys:
            if key not in result.history:
                continue
            values = list(result.history[key])
            val = key.startswith("val_")
            ax.plot(x, values, "s--" if val else "o-", color=color, ms=4,
                    label=f"{name}: {'validation' if val else 'training'}")
            drawn[name][key] = values
    ax.set_xlabel("optimizer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("loss (sum of the five)")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return drawn


def plot_per_class_ap(per_class: Mapping[str, Mapping[int, float]], class_names: Sequence[str],
                      ax: plt.Axes | None = None, title: str | None = None
                      ) -> dict[str, np.ndarray]:
    """Grouped bars: each class's AP (0-1) for each run.

    Args:
        per_class: ``{run name: {class id: AP}}``, e.g. ``evaluate_coco(...,
            per_class=True)["per_class"]["segm"]`` per run; -1 (or a missing class) means no
            validation instance of that class: no bar, a grey "–" under the axis.
        class_names: names by class id (``[0]`` the background, not drawn).
        ax, title: where to draw, and a title.

    Returns:
        ``{run name: AP per class 1..K-1}`` with ``nan`` where there was no ground truth.

    Taught in notebooks/12_train_voc.
    """
    ax = ax or plt.gca()
    ids = np.arange(1, len(class_names))
    width = 0.8 / max(1, len(per_class))
    drawn = {}
    colors = [RUN_COLORS[k % len(RUN_COLORS)] for k in range(len(per_class))]
    for k, (color, (name, values)) in enumerate(zip(colors, per_class.items(), strict=True)):
        ap = np.array([values.get(int(i), -1.0) for i in ids], float)
        ap[ap < 0] = np.nan
        drawn[name] = ap
        ax.bar(ids + (k - (len(per_class) - 1) / 2) * width, np.nan_to_num(ap), width,
               color=color, label=name)
    no_gt = np.all([np.isnan(v) for v in drawn.values()], axis=0) if drawn \
        else np.ones(len(ids), bool)
    for i, empty in zip(ids, no_gt, strict=True):
        if empty:
            ax.text(i, 0.0, "–", ha="center", va="bottom", color="grey")
    ax.set_xticks(ids)
    ax.set_xticklabels(class_names[1:], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("AP (IoU 0.5:0.95)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=8)
    return drawn


def draw_detections(ax: plt.Axes, image: np.ndarray, detection: Mapping, class_names,
                    min_score: float = 0.0, top: int | None = None,
                    title: str | None = None) -> np.ndarray:
    """One image with its detections (masks, boxes, class names and scores): those scoring at
    least ``min_score``, at most the ``top`` best of them.

    Returns:
        The indices of the detections drawn, best first.

    Taught in notebooks/12_train_voc.
    """
    scores = np.asarray(detection["scores"], float)
    order = np.argsort(-scores, kind="stable")
    drawn = order[scores[order] >= min_score][:top]
    labels = [class_names[int(c)] for c in np.asarray(detection["class_ids"])[drawn]]
    show_instances(image, np.asarray(detection["masks"])[..., drawn],
                   np.asarray(detection["boxes"]).reshape(-1, 4)[drawn], labels=labels,
                   scores=scores[drawn], ax=ax, title=title)
    return drawn
