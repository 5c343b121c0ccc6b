"""Exercise checks of notebooks/10_unet: weight map, valid output size, centre crop, overlap-tile.

Taught in notebooks/10_unet.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from course_lib.exercises.checking import Case, ExerciseFailed, check_function, exact


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


# --------------------------------------------------------------------------------------
# Overlap-tile prediction
# --------------------------------------------------------------------------------------

#: ``(height, width, channels, tile_in, tile_out)`` of each overlap-tile case.
OVERLAP_TILE_CASES = [
    Case("a 40×40 image, tiles 20 → 10 (margin 5): the tiles fit exactly", (40, 40, 1, 20, 10)),
    Case("a 37×53 image, tiles 24 → 16 (margin 4): the last tiles stick out past the image",
         (37, 53, 1, 24, 16)),
    Case("a 30×45 RGB image, tiles 22 → 12 (margin 5)", (30, 45, 3, 22, 12)),
]


def _stand_in_net(kernel: np.ndarray):
    """A "network" with valid convolutions: one ``(2m+1)×(2m+1)`` correlation, summed over
    channels. Like the valid U-Net it maps a ``T_in`` tile to a ``T_in - 2m`` tile, and its
    output at a pixel depends only on the ``m``-px neighbourhood, so the right answer for a
    whole image is known independently (:func:`scipy.ndimage.correlate`, mirrored borders)."""
    k = kernel.shape[0]

    def predict(batch):
        batch = np.asarray(batch, np.float64)
        windows = np.lib.stride_tricks.sliding_window_view(batch, (k, k), axis=(1, 2))
        # windows: (B, T-2m, T-2m, C, k, k) -> one output channel
        return np.einsum("byxcij,ij->byx", windows, kernel)[..., None]

    return predict


def _mirrored_reference(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    # scipy's "mirror" (d c b | a b c d | c b a) is NumPy's pad mode "reflect"
    return sum(ndimage.correlate(image[..., c].astype(np.float64), kernel, mode="mirror")
               for c in range(image.shape[-1]))[..., None]


def check_overlap_tile(fn: Callable) -> bool:
    """Check ``overlap_tile(predict_fn, image H×W×C, tile_in, tile_out) -> H×W×K``.

    The stand-in network is a valid correlation (``T_in → T_in - 2m``), so the right answer
    is the correlation of the whole mirrored image (SciPy). The verdict names the part that
    failed: the output's shape, the tiles fed to the net (count and size), the interior
    pixels (tile placement) or the pixels near the image border (mirroring).

    Taught in notebooks/10_unet.
    """
    rng = np.random.default_rng(10)
    for n, case in enumerate(OVERLAP_TILE_CASES, start=1):
        h, w, c, tile_in, tile_out = case.args
        m = (tile_in - tile_out) // 2
        image = rng.random((h, w, c))
        kernel = rng.standard_normal((2 * m + 1, 2 * m + 1))
        net = _stand_in_net(kernel)
        fed = []

        def counting_net(batch, net=net, fed=fed):
            batch = np.asarray(batch)
            fed.append(batch.shape)
            return net(batch)

        where = f"overlap_tile: case {n}/{len(OVERLAP_TILE_CASES)} ({case.description})"
        try:
            got = fn(counting_net, image.copy(), tile_in, tile_out)
        except NotImplementedError:
            print("✋ overlap_tile: not written yet. Replace `raise NotImplementedError()` with "
                  "your code, run that cell, then run this check again.")
            raise
        except Exception as err:  # the learner's bug: a failed case
            message = f"✗ {where} raised {type(err).__name__}: {err}"
            print(message)
            raise ExerciseFailed(message) from err
        expected = _mirrored_reference(image, kernel)
        n_tiles = -(-h // tile_out) * -(-w // tile_out)
        got = np.asarray(got, np.float64)
        interior = np.zeros((h, w), bool)
        interior[m:h - m, m:w - m] = True
        parts = [
            ("the output's shape",
             None if got.shape == expected.shape else
             f"shape {got.shape}, expected {expected.shape} (crop the pasted tiles to H×W)"),
            ("the tiles fed to the net",
             None if sum(s[0] for s in fed) == n_tiles
             and all(s[1:3] == (tile_in, tile_in) for s in fed) else
             f"{sum(s[0] for s in fed)} tiles of sides {sorted({s[1:3] for s in fed})}; "
             f"expected {n_tiles} tiles of {tile_in}×{tile_in} (one per output tile: "
             f"ceil(H / tile_out) · ceil(W / tile_out))"),
        ]
        for label, reason in parts:
            if reason is not None:
                return _overlap_fail(where, label, reason)
        if not np.allclose(got[interior], expected[interior], atol=1e-6):
            return _overlap_fail(
                where, "the interior pixels (tile placement)",
                "pixels at least the margin away from the border differ: the tile whose "
                "output starts at (y, x) needs the padded window starting at (y, x)")
        if not np.allclose(got, expected, atol=1e-6):
            return _overlap_fail(
                where, "the pixels near the border (mirrored context)",
                "the interior is right but the border is not: pad with "
                "np.pad(..., mode='reflect') by the margin on every side (plus what the last "
                "tiles stick out at the bottom and right)")
    print(f"✓ overlap_tile: all {len(OVERLAP_TILE_CASES)} cases pass (shape, tiles, interior, "
          "mirrored borders). Well done!")
    return True


def _overlap_fail(where: str, part: str, reason: str) -> bool:
    message = f"✗ {where}: the part that failed is {part}: {reason}"
    print(message)
    raise ExerciseFailed(message)
