"""Plotting helpers shared by every chapter: images with boxes, labels, scores and masks.

Taught in notebooks/01_data_tour first, then used throughout.

All functions draw on a matplotlib ``Axes`` (a new one when ``ax`` is None) and return it,
so a notebook can compose them and a test can inspect the artists without a display.
Boxes follow the course convention: ``(y1, x1, y2, x2)`` in pixel edges.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle


def instance_colors(n: int, seed: int = 0) -> np.ndarray:
    """``(n, 3)`` float RGB colours in [0, 1], bright and distinct, the same for the same seed.

    Taught in notebooks/00_start_here.
    """
    rng = np.random.default_rng(seed)
    hues = (np.arange(n) * 0.618033988749895 + rng.random()) % 1.0
    import matplotlib.colors as mcolors

    hsv = np.stack([hues, np.full(n, 0.75), np.full(n, 0.95)], axis=1)
    return mcolors.hsv_to_rgb(hsv) if n else np.zeros((0, 3))


def _axes(ax: plt.Axes | None, figsize=(5, 5)) -> plt.Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    return ax


def _canvas(image, masks, colors):
    """Float RGB copy of ``image`` in [0, 1], masks as ``H×W×N`` bool, one colour per mask."""
    out = np.asarray(image, dtype=np.float64) / 255.0
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim == 2:
        masks = masks[..., None]
    colors = instance_colors(masks.shape[-1]) if colors is None else colors
    return out, masks, colors


def overlay_masks(image: np.ndarray, masks: np.ndarray, alpha: float = 0.45,
                  colors: np.ndarray | None = None) -> np.ndarray:
    """Blend ``H×W×N`` bool masks onto an ``H×W×3`` uint8 image; returns float RGB in [0, 1].

    Taught in notebooks/00_start_here.
    """
    out, masks, colors = _canvas(image, masks, colors)
    for i in range(masks.shape[-1]):
        m = masks[..., i]
        out[m] = (1 - alpha) * out[m] + alpha * colors[i]
    return out


def draw_boxes(ax: plt.Axes, boxes: np.ndarray, colors: np.ndarray | Sequence | None = None,
               labels: Sequence[str] | None = None, scores: Sequence[float] | None = None,
               linewidth: float = 1.5, linestyle: str = "-") -> list[Rectangle]:
    """Draw ``(N, 4)`` boxes on ``ax`` (pixel edges: a box's outline hugs its pixels).

    ``imshow`` puts pixel (r, c)'s centre at (c, r), so its edges are at c - 0.5 and c + 0.5;
    a box edge x1 in our convention is drawn at x1 - 0.5.

    Taught in notebooks/06_anchors_and_rpn.
    """
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    colors = instance_colors(len(boxes)) if colors is None else colors
    patches = []
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        color = colors[i] if len(colors) > i else "yellow"
        rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color,
                         linewidth=linewidth, linestyle=linestyle)
        ax.add_patch(rect)
        patches.append(rect)
        text = []
        if labels is not None:
            text.append(str(labels[i]))
        if scores is not None:
            text.append(f"{scores[i]:.2f}")
        if text:
            ax.text(x1 - 0.5, y1 - 1.5, " ".join(text), color="white", fontsize=8,
                    bbox=dict(facecolor=color, alpha=0.7, pad=1, edgecolor="none"))
    return patches


def show_instances(image: np.ndarray, masks: np.ndarray | None = None,
                   boxes: np.ndarray | None = None, labels: Sequence[str] | None = None,
                   scores: Sequence[float] | None = None, title: str | None = None,
                   ax: plt.Axes | None = None) -> plt.Axes:
    """An image with coloured instance masks, their boxes, class labels and scores.

    Args:
        image: ``H×W×3`` uint8 (or ``H×W``).
        masks: ``H×W×N`` bool, optional.
        boxes: ``(N, 4)`` pixel-edge boxes, optional (same colours as the masks).
        labels, scores: per instance, optional.

    Taught in notebooks/00_start_here.
    """
    ax = _axes(ax)
    n = 0 if masks is None else np.asarray(masks).shape[-1]
    n = max(n, 0 if boxes is None else len(boxes))
    colors = instance_colors(n)
    shown = overlay_masks(image, masks, colors=colors) if masks is not None else image
    ax.imshow(shown, cmap="gray" if np.ndim(shown) == 2 else None, interpolation="nearest")
    if boxes is not None:
        draw_boxes(ax, boxes, colors=colors, labels=labels, scores=scores)
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def outline_masks(image: np.ndarray, masks: np.ndarray,
                  colors: np.ndarray | None = None) -> np.ndarray:
    """Draw the one-pixel inner outline of each ``H×W×N`` bool mask onto an ``H×W×3`` uint8
    image, leaving every other pixel as it is; returns float RGB in [0, 1].

    Unlike :func:`overlay_masks` the image stays fully visible inside the masks, which is what
    a reader needs to judge whether the masks sit on the objects (e.g. after augmentation).

    Taught in notebooks/01_data_tour.
    """
    from scipy import ndimage

    out, masks, colors = _canvas(image, masks, colors)
    for i in range(masks.shape[-1]):
        m = masks[..., i]
        rim = m & ~ndimage.binary_erosion(m, border_value=0)   # mask pixels with a neighbour outside
        out[rim] = colors[i]
    return out


def show_outlines(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray | None = None,
                  title: str | None = None, ax: plt.Axes | None = None) -> plt.Axes:
    """An image with its instance masks drawn as coloured outlines (image visible inside),
    optionally their boxes; axes hidden, as for a photograph.

    Args:
        image: ``H×W×3`` uint8 (or ``H×W``).
        masks: ``H×W×N`` bool.
        boxes: ``(N, 4)`` pixel-edge boxes, optional (same colours as the outlines).

    Taught in notebooks/01_data_tour.
    """
    ax = _axes(ax)
    n = np.asarray(masks).shape[-1] if np.ndim(masks) == 3 else 1
    colors = instance_colors(n)
    ax.imshow(outline_masks(image, masks, colors=colors), interpolation="nearest")
    if boxes is not None:
        draw_boxes(ax, boxes, colors=colors, linewidth=0.8, linestyle=":")
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return ax


def compare_instances(image: np.ndarray, true_masks: np.ndarray, pred_masks: np.ndarray,
                      titles: tuple[str, str] = ("ground truth", "prediction"),
                      figsize=(10, 5)) -> plt.Figure:
    """Ground truth and prediction side by side.

    Taught in notebooks/02_metrics.
    """
    fig, axes = plt.subplots(1, 2, figsize=figsize)
    show_instances(image, true_masks, title=titles[0], ax=axes[0])
    show_instances(image, pred_masks, title=titles[1], ax=axes[1])
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
               ncols: int = 4, size: float = 3.0, cmap: str | None = None) -> plt.Figure:
    """A grid of images with optional titles.

    Taught in notebooks/01_data_tour.
    """
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < n:
            ax.imshow(images[i], cmap=cmap, interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def training_curves(history: dict[str, Sequence[float]], ax: plt.Axes | None = None,
                    keys: Sequence[str] | None = None) -> plt.Axes:
    """Plot ``history`` (e.g. ``model.fit(...).history``): one line per key, val_ dashed.

    Taught in notebooks/10_unet.
    """
    ax = _axes(ax, figsize=(6, 4))
    for key in keys or history:
        values = history[key]
        ax.plot(np.arange(1, len(values) + 1), values, "--" if key.startswith("val_") else "-",
                label=key)
    ax.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax
