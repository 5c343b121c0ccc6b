"""Exercise checks of notebooks/10_unet: the border weight map, the valid output size, centre crop.

Taught in notebooks/10_unet.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, check_function, exact


def _two_bar_labels(gap: int = 3) -> np.ndarray:
    """Two 2-px-wide nuclei with ``gap`` background columns between them (hand-worked case)."""
    labels = np.zeros((9, 8 + gap + 4), np.int32)
    labels[2:7, 4:6] = 1
    labels[2:7, 6 + gap:8 + gap] = 2
    return labels


def _three_nuclei_labels() -> np.ndarray:
    labels = np.zeros((30, 40), np.int32)
    labels[5:12, 5:14] = 1
    labels[5:12, 17:25] = 2      # 3-px gap to nucleus 1
    labels[15:24, 10:22] = 3     # below both, 3 px away
    return labels


def _single_nucleus_labels() -> np.ndarray:
    labels = np.zeros((12, 12), np.int32)
    labels[3:8, 4:9] = 5         # one nucleus, id 5: no second-nearest, no border term
    return labels


WEIGHT_MAP_CASES = [
    Case("two bars with a 3-px gap, w0 = 10, σ = 5 (middle gap pixel: 10·exp(-16/50))",
         (_two_bar_labels(3), 10.0, 5.0)),
    Case("three nuclei, w0 = 10, σ = 5", (_three_nuclei_labels(), 10.0, 5.0)),
    Case("three nuclei, w0 = 5, σ = 2", (_three_nuclei_labels(), 5.0, 2.0)),
    Case("a single nucleus (d2 = ∞: no border term, only w_c)",
         (_single_nucleus_labels(), 10.0, 5.0)),
    Case("no nucleus at all (w_c = 1 everywhere)", (np.zeros((6, 7), np.int32), 10.0, 5.0)),
]


def _weight_map_reference(labels, w0, sigma):
    from course_lib.ops.weight_map import weight_map

    return weight_map(labels, w0=w0, sigma=sigma)


def check_weight_map(fn: Callable) -> bool:
    """Check ``weight_map(labels, w0, sigma) -> H×W`` against ``ops.weight_map.weight_map``.

    Taught in notebooks/10_unet.
    """
    return check_function(
        fn, _weight_map_reference, WEIGHT_MAP_CASES, name="weight_map",
        hint="one distance map per nucleus: distance_transform_edt(labels != i); sort them along "
             "the nucleus axis and take the two smallest as d1, d2; with fewer than two nuclei "
             "the border term is 0; add it on background pixels only, to class_balance_weights.",
    )


UNET_OUTPUT_SIZE_CASES = [
    Case("the paper: 572 in, depth 4", (572, 4)),
    Case("the smallest valid input of depth 4 (188)", (188, 4)),
    Case("a small net: 92 in, depth 2", (92, 2)),
    Case("one pooling only: 20 in, depth 1", (20, 1)),
    Case("a larger tile: 636 in, depth 4", (636, 4)),
]


def _unet_output_size_reference(input_size, depth):
    from course_lib.models.unet import unet_output_size

    return unet_output_size(input_size, depth)


def check_unet_output_size(fn: Callable) -> bool:
    """Check ``unet_output_size(input_size, depth) -> int`` (valid convolutions).

    Taught in notebooks/10_unet.
    """
    return check_function(
        fn, _unet_output_size_reference, UNET_OUTPUT_SIZE_CASES, name="unet_output_size",
        compare=lambda got, exp: exact(int(got), exp) if np.ndim(got) == 0 else "not one number",
        hint="each level down: -2, -2, then //2; the bottom: -2, -2; each level up: *2, then "
             "-2, -2. Count the levels: depth poolings down and depth up-convolutions up.",
    )


CENTER_CROP_CASES = [
    Case("6x6 to 2x2 (remove 2 on each side)", (np.arange(36.0).reshape(1, 6, 6, 1), (2, 2))),
    Case("odd difference: 7x7 to 4x4 (the extra row/column goes at the bottom/right)",
         (np.arange(49.0).reshape(1, 7, 7, 1), (4, 4))),
    Case("nothing to crop", (np.ones((2, 5, 5, 3)), (5, 5))),
    Case("the paper's top level, 568 -> 392 (rectangular input, 2 channels)",
         (np.random.default_rng(0).random((1, 568, 570, 2)), (392, 394))),
]


def _center_crop_reference(x, target_hw):
    from course_lib.models.unet import center_crop

    return center_crop(x, target_hw)


def check_center_crop(fn: Callable) -> bool:
    """Check ``center_crop(x (B, H, W, C), (h, w))`` against ``models.unet.center_crop``.

    Taught in notebooks/10_unet.
    """
    return check_function(
        fn, _center_crop_reference, CENTER_CROP_CASES, name="center_crop",
        hint="top = (H - h) // 2 and left = (W - w) // 2, then x[:, top:top + h, left:left + w]; "
             "floor division puts the odd extra row at the bottom.",
    )
