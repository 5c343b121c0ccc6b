"""The CPU budget's pieces: the compact cache, large images cut into pieces, native-scale
windows, the three-class U-Net target and its instances, and detection in overlapping tiles.

Each is checked against a hand-worked case or the plain NumPy operation it must equal."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib.data.augment import Window
from course_lib.data.samples import IgnoreRegions
from course_lib.models import tiled_detection as td
from course_lib.models import unet_training as ut
from course_lib.ops.weight_map import three_class_target


class _Blobs:
    """One 300×500 image with 6 square nuclei (one straddles the 384-px piece border) and a
    second, small 40×40 image with overlapping masks (which cannot be one label image)."""

    def __init__(self):
        self.calls = 0

    def __len__(self):
        return 2

    def name(self, index):
        return f"s{index}"

    def load(self, index):
        self.calls += 1
        if index == 1:
            image = np.full((40, 40, 3), 7, np.uint8)
            masks = np.zeros((40, 40, 2), bool)
            masks[5:20, 5:20, 0] = masks[10:30, 10:30, 1] = True
            return image, masks, np.array([1, 1], np.int32)
        rng = np.random.default_rng(0)
        image = rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)
        masks = np.zeros((300, 500, 6), bool)
        for k, (r, c) in enumerate([(10, 10), (100, 200), (250, 30), (50, 370), (200, 450),
                                    (120, 100)]):
            masks[r:r + 20, c:c + 25, k] = True
        return image, masks, np.arange(1, 7, dtype=np.int32)

    def load_with_ignore(self, index):
        image, masks, ids = self.load(index)
        return image, masks, ids, IgnoreRegions(np.zeros(masks.shape[:2] + (0,), bool), (),
                                                {"empty_mask": 2})


def test_cached_samples_return_what_the_provider_returns_decoding_once():
    provider = _Blobs()
    cached = ut.CachedSamples(provider, maxsize=4)
    for index in (0, 1):
        for _ in range(3):
            got, want = cached.load(index), provider.load(index)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_array_equal(g, w)
    provider.calls = 0
    cached.load(0), cached.load_with_ignore(0), cached.load(1)
    assert provider.calls == 0                     # every form served from the one cache
    kind = cached.packed(0)[1]
    assert isinstance(kind, tuple) and kind[1].dtype == np.uint16   # disjoint: a label image
    assert cached.packed(1)[1].shape == (40, 40, 2)                  # overlapping: kept whole
    assert cached.load_with_ignore(0)[3].dropped == {"empty_mask": 2}


def test_piece_starts_cover_the_side_evenly():
    assert td.tile_starts(256, 384, 0) == [0]
    assert td.tile_starts(500, 384, 0) == [0, 116]          # two pieces, 268 px shared
    assert td.tile_starts(1344, 384, 0) == [0, 320, 640, 960]
    for length in (385, 520, 696, 1024, 1388):
        starts = td.tile_starts(length, 384, 0)
        assert starts[0] == 0 and starts[-1] + 384 == length
        assert all(b - a <= 384 for a, b in zip(starts, starts[1:], strict=False))  # no gap


def test_tiled_samples_cut_exactly_the_windows_of_the_full_sample():
    provider = _Blobs()
    tiled = ut.TiledSamples(ut.CachedSamples(provider, maxsize=4), side=384, progress=False)
    assert [t[:3] for t in tiled.index] == [(0, 0, 0), (0, 0, 116), (1, 0, 0)]
    full_image, full_masks, full_ids = provider.load(0)
    for k in (0, 1):
        _, top, left, h, w = tiled.index[k]
        image, masks, ids = tiled.load(k)
        np.testing.assert_array_equal(image, full_image[top:top + h, left:left + w])
        window = full_masks[top:top + h, left:left + w]
        present = window.reshape(-1, window.shape[-1]).any(axis=0)
        np.testing.assert_array_equal(masks, window[..., present])   # same nuclei, same order
        np.testing.assert_array_equal(ids, full_ids[present])
    # the nucleus at columns 370:395 lies in both pieces, cut in the first one
    assert tiled.load(0)[1].shape[-1] == 5 and tiled.load(1)[1].shape[-1] == 4
    # overlapping masks (no label image) are cut as a stack
    assert tiled.load(2)[1].shape == (40, 40, 2)
    # the loader's drop counts are reported once per image, with its first piece
    assert tiled.load_with_ignore(0)[3].dropped == {"empty_mask": 2}
    assert tiled.load_with_ignore(1)[3].dropped == {}
    assert tiled.name(1) == "s0@0,116"


def test_window_cuts_at_native_scale():
    image = np.random.default_rng(1).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    labels = np.zeros((300, 400), np.int32)
    labels[100:140, 100:140] = 1
    out_image, out_labels = Window(256)(image, labels, np.random.default_rng(3))
    assert out_image.shape == (256, 256, 3)
    # the window is a plain slice of the input: find where and compare every pixel
    top, left = _locate(image, out_image)
    np.testing.assert_array_equal(out_image, image[top:top + 256, left:left + 256])
    np.testing.assert_array_equal(out_labels, labels[top:top + 256, left:left + 256])
    small = np.zeros((200, 100, 3), np.uint8)
    assert Window(256)(small, None, np.random.default_rng(0))[0] is small   # kept whole


def _locate(big: np.ndarray, small: np.ndarray) -> tuple[int, int]:
    h, w = small.shape[:2]
    for top in range(big.shape[0] - h + 1):
        for left in range(big.shape[1] - w + 1):
            if np.array_equal(big[top, left:left + 8], small[0, :8]) and \
                    np.array_equal(big[top:top + h, left:left + w], small):
                return top, left
    raise AssertionError("the window is not a slice of the image")


def test_three_class_recipe_targets_and_weights():
    recipe = ut.recipe_for_budget("cpu")
    labels = np.zeros((32, 32), np.int32)
    labels[4:14, 4:14], labels[4:14, 14:24] = 1, 2          # two touching squares
    classes = three_class_target(labels, recipe.border_width)
    target = ut.recipe_target_fn(recipe)(labels)
    assert target.shape == (32, 32, 3)
    np.testing.assert_array_equal(target.argmax(-1), classes)
    np.testing.assert_array_equal(target.sum(-1), 1.0)
    weights = ut.recipe_weight_fn(recipe)(labels)
    np.testing.assert_array_equal(weights[classes == 0], 1.0)
    np.testing.assert_array_equal(weights[classes == 2], recipe.border_weight)
    assert recipe.loss == "categorical_crossentropy" and recipe.n_outputs == 3
    assert ut.recipe_for_mode("quick").loss == "binary_crossentropy"
    with pytest.raises(ValueError, match="budget"):
        ut.recipe_for_budget("gpu")


def test_three_class_instances_separate_touching_nuclei():
    """A fake net that outputs the true classes: the instances are the two squares."""
    recipe = ut.recipe_for_budget("cpu", tile_size=64, margin=8, min_size=0)
    labels = np.zeros((64, 64), np.int32)
    labels[10:30, 10:30], labels[10:30, 30:50] = 1, 2
    truth = np.eye(3, dtype=np.float32)[three_class_target(labels, recipe.border_width)]

    class Oracle:
        def predict_on_batch(self, batch):
            # overlap tiling feeds mirrored tiles; the fake answers by the tile's pixel marks
            return np.stack([truth_for(tile) for tile in batch])

    def truth_for(tile):
        rows, cols = tile[..., 0].astype(int), tile[..., 1].astype(int)
        return truth[rows, cols]

    rr, cc = np.meshgrid(np.arange(64), np.arange(64), indexing="ij")
    image = np.stack([rr, cc, np.zeros_like(rr)], -1).astype(np.float32)
    got = ut.predict_instances(Oracle(), image, recipe)
    from course_lib.metrics import dsb_average_precision

    assert got.max() == 2 and dsb_average_precision(labels, got) > 0.9


def test_tile_starts_match_hand_worked_cases():
    assert td.tile_starts(256, 256, 64) == [0]
    assert td.tile_starts(520, 256, 64) == [0, 132, 264]
    assert td.tile_starts(100, 256, 64) == [0]
    for length in (300, 520, 696, 1024, 1344):
        starts = td.tile_starts(length, 256, 64)
        assert starts[-1] + 256 == length
        assert all(a + 256 - b >= 64 for a, b in zip(starts, starts[1:], strict=False))
    with pytest.raises(ValueError):
        td.tile_starts(500, 64, 64)


def test_detect_tiled_keeps_each_object_once_in_image_coordinates(monkeypatch):
    """A fake detector finds every bright square wholly inside a window; each of the 5
    squares of a 300×600 image must come back once, at its place, whatever window saw it."""
    from course_lib.models import maskrcnn

    image = np.zeros((300, 600, 3), np.uint8)
    squares = [(10, 10), (20, 230), (150, 300), (260, 420), (100, 560)]   # 30×30 each
    for r, c in squares:
        image[r:r + 30, c:c + 30] = 255

    def fake_detect(model, tiles, batch_size=2, mask_threshold=None, min_score=0.0):
        out = []
        for tile in tiles:
            from skimage import measure

            props = [p for p in measure.regionprops(measure.label(tile[..., 0] > 0))
                     if p.area == 900]                       # whole squares only
            boxes = np.array([p.bbox for p in props], np.float32).reshape(-1, 4)
            masks = np.stack([np.pad(np.ones((30, 30), bool),
                                     ((int(b[0]), tile.shape[0] - int(b[2])),
                                      (int(b[1]), tile.shape[1] - int(b[3]))))
                              for b in boxes], -1) if len(boxes) else \
                np.zeros(tile.shape[:2] + (0,), bool)
            scores = np.linspace(0.9, 0.6, len(boxes)).astype(np.float32)
            keep = scores >= min_score
            out.append({"boxes": boxes[keep], "class_ids": np.ones(int(keep.sum()), np.int32),
                        "scores": scores[keep], "masks": masks[..., keep]})
        return out

    monkeypatch.setattr(maskrcnn, "detect", fake_detect)

    class Model:
        class config:
            image_size = 256

    det = td.detect_tiled(Model(), image, overlap=64)
    found = sorted(tuple(int(v) for v in b[:2]) for b in det["boxes"])
    assert found == sorted(squares)                          # each once, image coordinates
    assert det["masks"].shape == (300, 600, 5)
    for k, (r, c, _, _) in enumerate(det["boxes"].astype(int)):
        assert det["masks"][r:r + 30, c:c + 30, k].all() and det["masks"][..., k].sum() == 900
    assert np.all(np.diff(det["scores"]) <= 0)               # best first
    # min_score reaches every window: fewer detections, each still once
    fewer = td.detect_tiled(Model(), image, overlap=64, min_score=0.85)
    assert 0 < len(fewer["scores"]) < 5 and np.all(fewer["scores"] >= 0.85)


def test_test_time_flips_average_four_views_mirrored_back():
    """A pixel-wise net is mirror-equivariant: the four views, mirrored back, agree with the
    plain prediction exactly; a net that sees only its tile's left half does not, and the
    average of its views is the mean of the four mirrored answers (computed by hand)."""
    recipe = ut.recipe_for_budget("cpu", tile_size=32, margin=0, depth=2)
    image = np.random.default_rng(0).random((32, 48, 3)).astype(np.float32)

    class PixelWise:
        calls = 0

        def predict_on_batch(self, batch):
            PixelWise.calls += 1
            return batch[..., :1] * 2

    plain = ut.predict_maps(PixelWise(), image, recipe, views=1)
    calls = PixelWise.calls
    both = ut.predict_maps(PixelWise(), image, recipe, views=4)
    np.testing.assert_allclose(both, plain, atol=1e-6)
    assert PixelWise.calls == 5 * calls                    # four views instead of one
    eight = ut.predict_maps(PixelWise(), image, recipe, views=8)
    np.testing.assert_allclose(eight, plain, atol=1e-6)
    assert PixelWise.calls == 13 * calls                   # and eight more

    class LeftColumn:
        def predict_on_batch(self, batch):       # every pixel gets its tile's first column
            return np.repeat(batch[:, :, :1, :1], batch.shape[2], axis=2)

    square = image[:, :32]
    got = ut.predict_maps(LeftColumn(), square, recipe, views=4)[..., 0]
    c = square[..., 0]
    views = [np.repeat(c[:, :1], 32, 1), np.repeat(c[:, -1:], 32, 1),       # plain, left-right
             np.repeat(c[:, :1], 32, 1), np.repeat(c[:, -1:], 32, 1)]       # up-down, both
    np.testing.assert_allclose(got, np.mean(views, axis=0), atol=1e-6)
    # transposed, "first column" becomes a row: of the four transposed views two read the
    # top row (plain, up-down) and two the bottom row (left-right, both), worked by hand
    got8 = ut.predict_maps(LeftColumn(), square, recipe, views=8)[..., 0]
    rows = [np.repeat(c[:1, :], 32, 0), np.repeat(c[-1:, :], 32, 0),        # plain, left-right
            np.repeat(c[:1, :], 32, 0), np.repeat(c[-1:, :], 32, 0)]        # up-down, both
    np.testing.assert_allclose(got8, np.mean(views + rows, axis=0), atol=1e-6)
    with pytest.raises(ValueError, match="test_views"):
        ut.recipe_for_budget("cpu", test_views=2)
