"""Pictures of RoIPool and RoIAlign: sample grids over a feature grid, and an explorer.

Taught in notebooks/07_roi_pool_vs_roi_align.

Everything is drawn in *image pixels*: feature cell ``(i, j)`` of a stride-``s`` map covers
image pixels ``[i*s, (i+1)*s) × [j*s, (j+1)*s)``, so its centre (grid coordinate ``(i, j)``)
is drawn at ``((i + 0.5)*s, (j + 0.5)*s)``. A box is drawn where it is in the image; RoIPool's
quantised cells and RoIAlign's sample points are drawn where they really read the map. With
``aligned=False`` the samples therefore sit half a cell down-right of the box: the
misalignment the half-pixel offset removes.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from course_lib.ops import roi
from course_lib.viz.widgets import Explorer, explorer


def _channel0(features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    if features.ndim == 2:
        return features
    if features.ndim == 3:
        return features[..., 0]
    raise ValueError(f"features must be H×W or H×W×C; got shape {features.shape}")


def _as_hwc(features) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    return features[..., None] if features.ndim == 2 else features


def draw_feature_grid(ax, features, stride: float, cmap: str = "gray") -> plt.Axes:
    """Show channel 0 of a feature map in image pixels, with the cell boundaries.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    fmap = _channel0(features)
    h, w = fmap.shape
    ax.imshow(fmap, cmap=cmap, extent=(0, w * stride, h * stride, 0), interpolation="nearest")
    for r in range(h + 1):
        ax.axhline(r * stride, color="white", lw=0.4, alpha=0.5)
    for c in range(w + 1):
        ax.axvline(c * stride, color="white", lw=0.4, alpha=0.5)
    ax.set_xlim(0, w * stride)
    ax.set_ylim(h * stride, 0)
    ax.set_xlabel("x (image px)")
    ax.set_ylabel("y (image px)")
    return ax


def _draw_box(ax, box, color="yellow", lw=2.0, label=None):
    y1, x1, y2, x2 = box
    ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=color, lw=lw,
                           label=label))


def draw_roi_pool_cells(ax, box, output_size, stride: float, features_shape=None) -> np.ndarray:
    """Shade the feature cells each RoIPool bin takes its max over (clipped to the map).

    Returns the ``(h, w, 4)`` drawn cell rectangles ``(y1, x1, y2, x2)`` in image pixels.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    rows, cols = roi.roi_pool_bins(np.asarray(box, dtype=float)[None], output_size, 1.0 / stride)
    rows, cols = rows[0], cols[0]
    if features_shape is not None:
        rows = np.clip(rows, 0, features_shape[0])
        cols = np.clip(cols, 0, features_shape[1])
    rects = np.zeros((len(rows), len(cols), 4))
    colours = ("tab:orange", "tab:cyan")
    for i, (r0, r1) in enumerate(rows):
        for j, (c0, c1) in enumerate(cols):
            rects[i, j] = (r0 * stride, c0 * stride, r1 * stride, c1 * stride)
            if r1 > r0 and c1 > c0:
                ax.add_patch(Rectangle((c0 * stride, r0 * stride), (c1 - c0) * stride,
                                       (r1 - r0) * stride, facecolor=colours[(i + j) % 2],
                                       alpha=0.25, edgecolor=colours[(i + j) % 2], lw=1.0))
    _draw_box(ax, box, label="box")
    return rects


def draw_roi_align_samples(ax, box, output_size, stride: float, sampling_ratio: int = 2,
                           aligned: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Draw RoIAlign's bins and sample points where they read the map.

    Returns the sample positions in image pixels, ``(ys, xs)`` as in
    :func:`course_lib.ops.roi.roi_align_sample_points` (``(h, sr)`` and ``(w, sr)``).

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    ys, xs = roi.roi_align_sample_points(np.asarray(box, dtype=float)[None], output_size,
                                         1.0 / stride, sampling_ratio, aligned=aligned)
    # Grid coordinate g is drawn at (g + 0.5) * stride (cell centres).
    ys, xs = (ys[0] + 0.5) * stride, (xs[0] + 0.5) * stride
    sr = ys.shape[1]
    # Bin edges: a sample sits (a + 0.5)/sr through its bin, so the bin starts half a step before.
    step_y = (ys[0, 1] - ys[0, 0]) if sr > 1 else (ys[1, 0] - ys[0, 0] if len(ys) > 1 else 0.0)
    step_x = (xs[0, 1] - xs[0, 0]) if sr > 1 else (xs[1, 0] - xs[0, 0] if len(xs) > 1 else 0.0)
    edges_y = np.append(ys[:, 0] - step_y / 2, ys[-1, -1] + step_y / 2)
    edges_x = np.append(xs[:, 0] - step_x / 2, xs[-1, -1] + step_x / 2)
    for e in edges_y:
        ax.plot([edges_x[0], edges_x[-1]], [e, e], color="tab:red", lw=0.8)
    for e in edges_x:
        ax.plot([e, e], [edges_y[0], edges_y[-1]], color="tab:red", lw=0.8)
    gy, gx = np.meshgrid(ys.ravel(), xs.ravel(), indexing="ij")
    ax.plot(gx.ravel(), gy.ravel(), "o", color="tab:red", ms=3, label="samples")
    _draw_box(ax, box, label="box")
    return ys, xs


def draw_sample_grids(features, box, output_size=(2, 2), stride: float = 16.0,
                      sampling_ratio: int = 2, aligned: bool = True, fig=None):
    """Two panels over the same feature grid: RoIPool's quantised cells, RoIAlign's samples.

    Returns the figure.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    if fig is None:
        fig = plt.figure(figsize=(10, 5))
    axes = fig.subplots(1, 2)
    fmap = _channel0(features)
    for ax in axes:
        draw_feature_grid(ax, fmap, stride)
    draw_roi_pool_cells(axes[0], box, output_size, stride, fmap.shape)
    axes[0].set_title("RoIPool: box and bins snapped to cells, max")
    draw_roi_align_samples(axes[1], box, output_size, stride, sampling_ratio, aligned)
    axes[1].set_title(f"RoIAlign: {sampling_ratio}×{sampling_ratio} bilinear samples per bin"
                      f" (aligned={aligned})")
    fig.tight_layout()
    return fig


def draw_axis_samples(ax, positions: dict, box_edges, stride: float, n_cells: int) -> None:
    """Where different methods read the map along one axis, in image pixels.

    Args:
        ax: where to draw.
        positions: method name -> 1-D array of sample positions in image pixels (one row of
            markers per method, top to bottom in the order given).
        box_edges: ``(start, end)`` of the box along this axis, in image pixels (drawn as a
            yellow span).
        stride: image pixels per feature cell; cell centres are drawn as grey ticks.
        n_cells: feature cells along the axis.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    ax.axvspan(box_edges[0], box_edges[1], color="gold", alpha=0.25, label="box")
    for c in range(n_cells + 1):
        ax.axvline(c * stride, color="0.8", lw=0.6)
    centres = (np.arange(n_cells) + 0.5) * stride
    ax.plot(centres, np.full(n_cells, len(positions)), "|", color="0.4", ms=12,
            label="feature cell centres")
    markers = ["o", "s", "^", "D", "v"]
    for row, (name, pos) in enumerate(positions.items()):
        y = len(positions) - 1 - row
        ax.plot(np.asarray(pos, float), np.full(len(pos), y), markers[row % len(markers)],
                ms=5, linestyle="none", label=name)
    ax.set_yticks(range(len(positions) + 1),
                  [*reversed(list(positions)), "cell centres"], fontsize=8)
    ax.set_ylim(-0.7, len(positions) + 0.7)
    ax.set_xlabel("x (image px)")
    ax.set_xlim(box_edges[0] - stride, box_edges[1] + stride)


def draw_crops_beside_boxes(image, boxes, crops, levels, fig=None, per_row: int = 3):
    """Each box on the image (zoomed, with a margin) beside the crop pooled for it.

    Args:
        image: ``H×W`` grey image the boxes live in (pixel edges).
        boxes: ``(N, 4)`` in image pixels; crops: ``(N, h, w)`` or ``(N, h, w, C)`` (channel 0
            shown); levels: ``(N,)`` pyramid level of each box.
        fig: figure to draw into (default: a new one); per_row: box/crop pairs per row.

    Returns:
        the figure.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    boxes = np.asarray(boxes, float)
    crops = np.asarray(crops, float)
    crops = crops[..., 0] if crops.ndim == 4 else crops
    n = len(boxes)
    rows = int(np.ceil(n / per_row))
    if fig is None:
        fig = plt.figure(figsize=(4.2 * per_row, 2.3 * rows))
    axes = fig.subplots(rows, 2 * per_row, squeeze=False)
    lo, hi = float(np.min(image)), float(np.max(image))
    for k in range(rows * per_row):
        ax_img, ax_crop = axes[k // per_row, 2 * (k % per_row)], axes[k // per_row, 2 * (k % per_row) + 1]
        if k >= n:
            ax_img.set_axis_off(), ax_crop.set_axis_off()
            continue
        y1, x1, y2, x2 = boxes[k]
        margin = 0.25 * max(y2 - y1, x2 - x1)
        ax_img.imshow(image, cmap="gray", vmin=lo, vmax=hi)
        _draw_box(ax_img, (y1 - 0.5, x1 - 0.5, y2 - 0.5, x2 - 0.5), lw=1.5)
        ax_img.set_xlim(x1 - margin, x2 + margin)
        ax_img.set_ylim(y2 + margin, y1 - margin)
        ax_img.set_title(f"box {k}: {y2 - y1:.0f}×{x2 - x1:.0f} px", fontsize=8)
        ax_img.set_xlabel("x (px)", fontsize=7)
        ax_img.set_ylabel("y (px)", fontsize=7)
        ax_img.tick_params(labelsize=6)
        ax_crop.imshow(crops[k], cmap="gray", vmin=lo, vmax=hi)
        ax_crop.set_title(f"pooled from P{int(levels[k])}", fontsize=8)
        ax_crop.set_xlabel("bin", fontsize=7)
        ax_crop.set_ylabel("bin", fontsize=7)
        ax_crop.tick_params(labelsize=6)
    fig.tight_layout()
    return fig


def roi_explorer_state(features, box, stride: float = 16.0, output_size=7,
                       sampling_ratio: int = 2, aligned: bool = True, shift_y: float = 0.0,
                       shift_x: float = 0.0, scale: float = 1.0) -> dict:
    """The numbers the explorer shows (pure, no drawing).

    The box is scaled about its centre by ``scale`` and shifted by ``(shift_y, shift_x)``
    image pixels. Returns a dict with ``box`` (the moved box), ``pool`` and ``align``
    (``h×w×C`` outputs for it), ``pool_change`` and ``align_change`` (largest absolute change
    from the outputs of the unmoved box).

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    feats = _as_hwc(features)
    base = np.asarray(box, dtype=float)
    centre = (base[:2] + base[2:]) / 2
    half = (base[2:] - base[:2]) / 2 * scale
    moved = np.concatenate([centre - half, centre + half]) + np.array([shift_y, shift_x] * 2)
    boxes = np.stack([base, moved])
    pool = roi.roi_pool(feats, boxes, output_size, 1.0 / stride)
    align = roi.roi_align(feats, boxes, output_size, 1.0 / stride, sampling_ratio=sampling_ratio,
                          aligned=aligned)
    return {"box": moved, "pool": pool[1], "align": align[1],
            "pool_change": float(np.abs(pool[1] - pool[0]).max()),
            "align_change": float(np.abs(align[1] - align[0]).max())}


def draw_roi_explorer(features, box, stride: float = 16.0, output_size=7,
                      sampling_ratio: int = 2, aligned: bool = True, shift_y: float = 0.0,
                      shift_x: float = 0.0, scale: float = 1.0) -> dict:
    """Draw the moved box over the map with both sample patterns, and both outputs.

    Returns :func:`roi_explorer_state`'s dict plus ``figure``.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    state = roi_explorer_state(features, box, stride, output_size, sampling_ratio, aligned,
                               shift_y, shift_x, scale)
    fig, axes = plt.subplots(1, 4, figsize=(15, 4), gridspec_kw={"width_ratios": [1.3, 1.3, 1, 1]})
    fmap = _channel0(features)
    for ax in axes[:2]:
        draw_feature_grid(ax, fmap, stride)
    draw_roi_pool_cells(axes[0], state["box"], output_size, stride, fmap.shape)
    axes[0].set_title("RoIPool cells")
    draw_roi_align_samples(axes[1], state["box"], output_size, stride, sampling_ratio, aligned)
    axes[1].set_title("RoIAlign samples")
    # Zoom on the box, two cells around it: the sub-pixel motion is what there is to see.
    y1, x1, y2, x2 = state["box"]
    for ax in axes[:2]:
        ax.set_xlim(max(x1 - 2 * stride, 0), min(x2 + 2 * stride, fmap.shape[1] * stride))
        ax.set_ylim(min(y2 + 2 * stride, fmap.shape[0] * stride), max(y1 - 2 * stride, 0))
    lo, hi = float(fmap.min()), float(fmap.max())
    axes[2].imshow(state["pool"][..., 0], cmap="gray", vmin=lo, vmax=hi)
    axes[2].set_title(f"RoIPool out (Δ {state['pool_change']:.3f})")
    axes[3].imshow(state["align"][..., 0], cmap="gray", vmin=lo, vmax=hi)
    axes[3].set_title(f"RoIAlign out (Δ {state['align_change']:.3f})")
    for ax in axes[2:]:
        ax.set_xlabel("output bin (column)")
        ax.set_ylabel("output bin (row)")
    fig.tight_layout()
    state["figure"] = fig
    print(f"box {np.round(state['box'], 2)}: largest change from the unmoved box — "
          f"RoIPool {state['pool_change']:.4f}, RoIAlign {state['align_change']:.4f}")
    return state


def roi_explorer(features, box=None, stride: float = 16.0, output_size=7) -> Explorer:
    """Sliders that move and resize a box by sub-pixel amounts over a feature map.

    RoIPool's output stays frozen until an edge crosses a rounding boundary, then jumps;
    RoIAlign's output follows every quarter pixel. ``explorer.result`` holds
    :func:`draw_roi_explorer`'s dict (``pool``, ``align``, ``pool_change``, ``align_change``).

    Args:
        features: ``H×W`` or ``H×W×C`` feature map (channel 0 is shown).
        box: ``(y1, x1, y2, x2)`` in image pixels; default: the middle half of the map.
        stride: image pixels per feature cell.
        output_size: bins per box.

    Taught in notebooks/07_roi_pool_vs_roi_align.
    """
    fmap = _as_hwc(features)
    if box is None:
        h, w = fmap.shape[0] * stride, fmap.shape[1] * stride
        box = (h / 4, w / 4, 3 * h / 4, 3 * w / 4)

    def render(shift_y, shift_x, scale, sampling_ratio, aligned):
        return draw_roi_explorer(fmap, box, stride, output_size, sampling_ratio, aligned,
                                 shift_y, shift_x, scale)

    slider = dict(min=-float(stride), max=float(stride), step=0.25, readout_format=".2f",
                  continuous_update=False)
    return explorer(
        render, title="RoIPool snaps, RoIAlign follows: move the box by sub-pixel steps",
        shift_y=widgets.FloatSlider(value=0.0, description="shift y (px)", **slider),
        shift_x=widgets.FloatSlider(value=0.0, description="shift x (px)", **slider),
        scale=widgets.FloatSlider(value=1.0, min=0.5, max=1.5, step=0.01,
                                  description="scale", continuous_update=False),
        sampling_ratio=widgets.IntSlider(value=2, min=1, max=4, description="samples/bin side"),
        aligned=widgets.Checkbox(value=True, description="aligned (−0.5)"),
    )
