"""Pictures and an explorer for the U-Net chapter: the border weight map.

Taught in notebooks/10_unet.

:func:`draw_weight_map` is the pure drawing function (labels and the two constants in, a
figure and the map out); :func:`weight_map_explorer` wires two sliders (``w0`` and ``σ``) to
it with the course's explorer kit, so moving a slider redraws the map.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from course_lib.ops.weight_map import SIGMA, W0, weight_map
from course_lib.viz.widgets import Explorer, explorer


def color_labels(labels: np.ndarray) -> np.ndarray:
    """``H×W×3`` float RGB of a label image: black background, a distinct colour per id.

    Colours follow :func:`course_lib.viz.plots.instance_colors` (golden-ratio hues), so
    neighbouring ids, which are often neighbouring nuclei, get far-apart hues.

    Taught in notebooks/10_unet.
    """
    from course_lib.viz.plots import instance_colors

    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an H×W integer label image; got {labels.shape} "
                         f"{labels.dtype}")
    n = int(labels.max()) if labels.size else 0
    palette = np.vstack([[0.0, 0.0, 0.0], instance_colors(n)])
    return palette[np.clip(labels, 0, None)]


def label_outlines(labels: np.ndarray) -> np.ndarray:
    """``H×W`` bool outlines of every instance (for drawing over a map).

    Taught in notebooks/10_unet.
    """
    from skimage.segmentation import find_boundaries

    return find_boundaries(np.asarray(labels), mode="inner") & (np.asarray(labels) > 0)


def draw_weight_map(labels: np.ndarray, w0: float = W0, sigma: float = SIGMA,
                    axes: tuple[plt.Axes, plt.Axes] | None = None,
                    class_weights: str | None = "balanced") -> dict:
    """Draw the instance labels beside their U-Net weight map ``w = w_c + w0·exp(-(d1+d2)²/2σ²)``.

    Args:
        labels: ``H×W`` instance label image.
        w0, sigma: the border term's constants.
        axes: two axes to draw on (new figure when ``None``).
        class_weights: passed to :func:`course_lib.ops.weight_map.weight_map`.

    Returns:
        ``{"weight_map": H×W float32, "w0": w0, "sigma": sigma, "max": max weight,
        "figure": the figure}``.

    Taught in notebooks/10_unet.
    """
    labels = np.asarray(labels)
    wmap = weight_map(labels, w0=w0, sigma=sigma, class_weights=class_weights)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    else:
        fig = axes[0].figure
    ax_l, ax_w = axes
    ax_l.imshow(color_labels(labels), interpolation="nearest")
    ax_l.set_title(f"{len(np.unique(labels[labels > 0]))} instances")
    im = ax_w.imshow(wmap, cmap="magma", interpolation="nearest")
    outline = np.ma.masked_where(~label_outlines(labels), np.ones(labels.shape))
    ax_w.imshow(outline, cmap="Greys", vmin=0, vmax=1, alpha=0.5, interpolation="nearest")
    ax_w.set_title(f"weight map: w0 = {w0:g}, σ = {sigma:g} px (max {wmap.max():.2f})")
    fig.colorbar(im, ax=ax_w, fraction=0.046, label="loss weight w(x)")
    for ax in axes:
        ax.set_xlabel("x (px)")
        ax.set_ylabel("y (px)")
    fig.tight_layout()
    return {"weight_map": wmap, "w0": w0, "sigma": sigma, "max": float(wmap.max()),
            "figure": fig}


def weight_map_explorer(labels: np.ndarray) -> Explorer:
    """Sliders for ``w0`` (0–30) and ``σ`` (1–15 px) that redraw the weight map of ``labels``.

    ``explorer.result`` holds what :func:`draw_weight_map` returned last (its
    ``"weight_map"`` entry is the map on screen).

    Taught in notebooks/10_unet.
    """
    labels = np.asarray(labels)

    def render(w0: float, sigma: float) -> dict:
        return draw_weight_map(labels, w0=w0, sigma=sigma)

    return explorer(
        render, title="U-Net border weight map",
        w0=widgets.FloatSlider(value=W0, min=0.0, max=30.0, step=1.0, description="w0"),
        sigma=widgets.FloatSlider(value=SIGMA, min=1.0, max=15.0, step=0.5, description="σ (px)"),
    )
