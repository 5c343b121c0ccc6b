"""Explorers for convolution: a 3×3 kernel on a photograph, and convolution arithmetic.

Taught in notebooks/03_convolution.

Each widget is an :class:`~course_lib.viz.widgets.Explorer` over pure functions
(:func:`apply_kernel`, :func:`draw_kernel_result`, :func:`conv_arithmetic`,
:func:`draw_conv_arithmetic`), so tests can change a control's ``.value`` headlessly and
check ``.result``, what the pure function returned.
"""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from course_lib.ops.conv import (
    conv2d,
    conv_output_size,
    effective_kernel_size,
    padding_amounts,
    receptive_field,
)
from course_lib.viz.widgets import Explorer, explorer

#: Classic 3×3 kernels (cross-correlation, as Keras applies them: no flip).
PRESET_KERNELS: dict[str, np.ndarray] = {
    "identity": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], float),
    "edges (Laplacian)": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], float),
    "sharpen": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], float),
    "box blur": np.full((3, 3), 1.0 / 9.0),
    "Gaussian blur": np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], float) / 16.0,
    "Sobel x (vertical edges)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float),
    "Sobel y (horizontal edges)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], float),
}


def default_image() -> np.ndarray:
    """The ``camera`` photograph from scikit-image (512×512 grey, uint8).

    Taught in notebooks/03_convolution.
    """
    from skimage import data

    return data.camera()


def to_gray(image: np.ndarray) -> np.ndarray:
    """``H×W`` float in [0, 1] from a grey or RGB(A) uint8/float image (RGB: channel mean).

    Taught in notebooks/03_convolution.
    """
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 3:
        img = img[..., :3].mean(axis=-1)
    if img.ndim != 2:
        raise ValueError(f"image must be H×W or H×W×C, got shape {np.shape(image)}.")
    return img / 255.0 if img.max(initial=0) > 1.0 else img


def apply_kernel(image: np.ndarray, kernel) -> np.ndarray:
    """Feature map of a 2-D ``kernel`` on a grey version of ``image``, ``"same"`` padding.

    Returns:
        ``H×W`` float64 (values may be negative: edges have a sign).

    Taught in notebooks/03_convolution.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    if kernel.ndim != 2:
        raise ValueError(f"kernel must be a 2-D array (kh, kw), got shape {kernel.shape}.")
    gray = to_gray(image)
    return conv2d(gray[:, :, None], kernel[:, :, None, None], padding="same")[:, :, 0]


def draw_kernel_result(image: np.ndarray, kernel, fig: Figure | None = None) -> Figure:
    """Draw input, kernel (with its numbers) and feature map side by side; returns the figure.

    ``fig``: a figure to redraw (a new pyplot figure when ``None``).

    Taught in notebooks/03_convolution.
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    fmap = apply_kernel(image, kernel)
    fig = fig or plt.figure(figsize=(11, 3.8))
    fig.clear()
    ax_in, ax_k, ax_out = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 1.2, 3]})
    ax_in.imshow(to_gray(image), cmap="gray")
    ax_in.set_title("input")
    lim = max(np.abs(kernel).max(), 1e-9)
    ax_k.imshow(kernel, cmap="RdBu_r", vmin=-lim, vmax=lim)
    for (r, c), v in np.ndenumerate(kernel):
        ax_k.text(c, r, f"{v:.2g}", ha="center", va="center", fontsize=9)
    ax_k.set_title("kernel")
    ax_out.imshow(fmap, cmap="gray")
    ax_out.set_title(f"feature map [{fmap.min():.2f}, {fmap.max():.2f}]")
    for ax in (ax_in, ax_k, ax_out):
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


class _KernelExplorer(Explorer):
    """Explorer whose preset dropdown fills the nine kernel cells (one render per change)."""

    syncing = False

    def _on_change(self, change) -> None:
        if self.syncing or change["owner"] is self.controls["preset"]:
            return  # preset changes are handled by _on_preset, which redraws once
        self.syncing = True  # show which preset (if any) the edited kernel now equals
        kernel = _kernel_from(self.values())
        match = [n for n, k in PRESET_KERNELS.items() if np.allclose(k, kernel)]
        self.controls["preset"].value = match[0] if match else "custom"
        self.syncing = False
        self.refresh()

    def _on_preset(self, change) -> None:
        if self.syncing or change["new"] == "custom":
            return
        self.syncing = True
        for i, v in enumerate(PRESET_KERNELS[change["new"]].ravel()):
            self.controls[f"k{i // 3}{i % 3}"].value = float(v)
        self.syncing = False
        self.refresh()


def _kernel_from(values: dict) -> np.ndarray:
    return np.array([values[f"k{i // 3}{i % 3}"] for i in range(9)], float).reshape(3, 3)


def kernel_explorer(image: np.ndarray | None = None) -> Explorer:
    """Widget: pick a preset 3×3 kernel or edit its 9 numbers; see the feature map.

    Args:
        image: grey or RGB image; default the ``camera`` photograph of scikit-image.

    Returns:
        An :class:`~course_lib.viz.widgets.Explorer`: ``.controls`` holds ``preset`` (a
        Dropdown) and ``k00`` … ``k22`` (FloatTexts, row by row); ``.result`` is the last
        feature map (``H×W`` float), as :func:`apply_kernel` computed it.

    Taught in notebooks/03_convolution.
    """
    image = default_image() if image is None else np.asarray(image)
    controls = {"preset": widgets.Dropdown(options=list(PRESET_KERNELS) + ["custom"],
                                           value="identity", description="kernel")}
    for i, v in enumerate(PRESET_KERNELS["identity"].ravel()):
        controls[f"k{i // 3}{i % 3}"] = widgets.FloatText(
            value=float(v), step=0.5, layout=widgets.Layout(width="75px"))

    def render(preset, **cells):
        kernel = _kernel_from(cells)
        fmap = apply_kernel(image, kernel)
        draw_kernel_result(image, kernel)
        print(f"kernel sum {kernel.sum():.3g}; feature map min {fmap.min():.3f}, "
              f"max {fmap.max():.3f}, mean {fmap.mean():.3f}")
        return fmap

    box = _KernelExplorer(render, controls, title="Kernel explorer: pick or edit a 3×3 kernel")
    controls["preset"].observe(box._on_preset, names="value")
    cells = [c for name, c in controls.items() if name != "preset"]
    grid = widgets.GridBox(cells, layout=widgets.Layout(grid_template_columns="repeat(3, 80px)"))
    box.children = (box.children[0], widgets.HBox([controls["preset"], grid]), box.output)
    return box


def conv_arithmetic(n: int, k: int, stride: int = 1, padding: int | str = 0, dilation: int = 1,
                    layers: int = 1) -> dict:
    """Numbers of one convolution along one axis, and of a stack of ``layers`` copies of it.

    Returns:
        dict with ``effective_kernel``, ``pad_before``, ``pad_after``, ``output_size`` (of one
        layer), ``stack_output_sizes`` (each layer's output, stopping where the kernel no
        longer fits), ``receptive_field`` and ``jump`` of the stack.

    Taught in notebooks/03_convolution.
    """
    before, after = padding_amounts(n, k, stride, padding, dilation=dilation)
    sizes, size = [], n
    for _ in range(layers):
        try:
            size = conv_output_size(size, k, stride, padding, dilation=dilation)
        except ValueError:
            break
        sizes.append(size)
    rf = receptive_field([(k, stride, dilation)] * layers)[-1]
    return {"effective_kernel": effective_kernel_size(k, dilation), "pad_before": before,
            "pad_after": after, "output_size": sizes[0] if sizes else 0,
            "stack_output_sizes": sizes, "receptive_field": rf.size, "jump": rf.jump}


def draw_conv_arithmetic(n: int, k: int, stride: int = 1, padding: int | str = 0,
                         dilation: int = 1, fig: Figure | None = None) -> Figure:
    """Draw the padded input grid, the taps of the first two output pixels, and the output.

    Square input of side ``n`` (``padding`` int or ``"valid"``/``"same"``); red taps belong to
    output (0, 0), orange ones to output (0, 1). Returns the figure.

    Taught in notebooks/03_convolution.
    """
    info = conv_arithmetic(n, k, stride, padding, dilation)
    before, after, m = info["pad_before"], info["pad_after"], info["output_size"]
    total = n + before + after
    fig = fig or plt.figure(figsize=(9, 4.5))
    fig.clear()
    ax_in, ax_out = fig.subplots(1, 2, gridspec_kw={"width_ratios": [max(total, 1), max(m, 1)]})
    for r in range(total):
        for c in range(total):
            pad = not (before <= r < before + n and before <= c < before + n)
            ax_in.add_patch(Rectangle((c, r), 1, 1, facecolor="0.9" if pad else "#9ecae1",
                                      edgecolor="white", hatch="//" if pad else None))
    # taps of output (0, 0) in red and of output (0, 1) in orange: the stride is their offset
    # (orange drawn smaller, in the cell's lower-right corner, so shared taps show both colours)
    for j, color, offset, side in ((0, "tab:red", 0.12, 0.76), (1, "tab:orange", 0.45, 0.45)):
        if j >= m:
            continue
        for u in range(k):
            for v in range(k):
                ax_in.add_patch(Rectangle((j * stride + v * dilation + offset,
                                           u * dilation + offset), side, side, facecolor=color,
                                          alpha=0.9))
    for r in range(m):
        for c in range(m):
            color = "tab:red" if (r, c) == (0, 0) else "tab:orange" if (r, c) == (0, 1) else "#74c476"
            ax_out.add_patch(Rectangle((c, r), 1, 1, facecolor=color, edgecolor="white"))
    for ax, side, title in ((ax_in, total, f"input {n}×{n} + padding ({before}, {after})"),
                            (ax_out, m, f"output {m}×{m}")):
        ax.set_xlim(0, max(side, 1))
        ax.set_ylim(max(side, 1), 0)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
    return fig


def conv_arithmetic_explorer() -> Explorer:
    """Widget: sliders for input size, kernel, stride, padding, dilation and stacked layers.

    Prints the output-size formula with the numbers filled in and the receptive field of the
    stack, and draws the grids (:func:`draw_conv_arithmetic`).

    Returns:
        An :class:`~course_lib.viz.widgets.Explorer`: ``.controls`` are the sliders ``n``,
        ``k``, ``stride``, ``padding``, ``dilation``, ``layers``; ``.result`` is the dict of
        :func:`conv_arithmetic` for the current values (``None`` when the kernel does not fit).

    Taught in notebooks/03_convolution.
    """
    style = {"description_width": "100px"}

    def render(n, k, stride, padding, dilation, layers):
        k_eff = effective_kernel_size(k, dilation)
        if k_eff > n + 2 * padding:
            print(f"The kernel does not fit: dilated, it spans {k_eff} px but the padded input "
                  f"has {n + 2 * padding} px.")
            return None
        info = conv_arithmetic(n, k, stride, padding, dilation, layers)
        print(f"output size = floor(({n} + 2*{padding} - {info['effective_kernel']}) / {stride})"
              f" + 1 = {info['output_size']}")
        print(f"receptive field of {layers} stacked layer(s): {info['receptive_field']} px "
              f"(jump {info['jump']} px); sizes through the stack: {info['stack_output_sizes']}")
        draw_conv_arithmetic(n, k, stride, padding, dilation)
        return info

    return explorer(
        render, title="Convolution arithmetic",
        n=widgets.IntSlider(7, 3, 16, description="input size", style=style),
        k=widgets.IntSlider(3, 1, 7, description="kernel", style=style),
        stride=widgets.IntSlider(1, 1, 4, description="stride", style=style),
        padding=widgets.IntSlider(0, 0, 4, description="padding", style=style),
        dilation=widgets.IntSlider(1, 1, 4, description="dilation", style=style),
        layers=widgets.IntSlider(1, 1, 6, description="stacked layers", style=style),
    )
