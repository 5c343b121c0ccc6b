"""Batching: fixed shapes, hand-worked resize/window arithmetic, warnings, determinism, threads."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from course_lib.data import pipeline as P
from course_lib.data.augment import Augmenter
from course_lib.ops import geometry as G
from course_lib.ops.masks import masks_to_boxes


class ListSamples:
    """An in-memory sample provider for the tests."""

    def __init__(self, samples):
        self.samples = samples
        self.calls = 0

    def __len__(self):
        return len(self.samples)

    def name(self, i):
        return f"img{i}"

    def load(self, i):
        self.calls += 1
        image, masks, ids = self.samples[i]
        return image.copy(), masks.copy(), ids.copy()


def _sample(h, w, rects, seed=0, first_class=1):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    masks = np.zeros((h, w, len(rects)), bool)
    for k, (r0, c0, r1, c1) in enumerate(rects):
        masks[r0:r1, c0:c1, k] = True
    return image, masks, np.arange(first_class, first_class + len(rects), dtype=np.int32)


def _regionprops_boxes(masks):
    """Tight boxes by scikit-image (an implementation independent of the pipeline's):
    regionprops' bbox is (min_row, min_col, max_row, max_col) with exclusive maxima, i.e.
    pixel edges."""
    from skimage.measure import regionprops

    return np.array([regionprops(masks[..., k].astype(np.uint8))[0].bbox
                     for k in range(masks.shape[-1])], np.float32).reshape(-1, 4)


def _random_provider(n=7, seed=0):
    rng = np.random.default_rng(seed)
    samples = []
    for i in range(n):
        h, w = int(rng.integers(30, 90)), int(rng.integers(30, 90))
        rects = []
        for _ in range(int(rng.integers(0, 6))):
            r0, c0 = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
            rects.append((r0, c0, r0 + int(rng.integers(4, 9)), c0 + int(rng.integers(4, 9))))
        samples.append(_sample(h, w, rects, seed=i))
    return ListSamples(samples)


def test_resize_and_pad_exact_scale_by_hand():
    # 100 x 50 image into a 200 square: scale 200 / 100 = 2, resized 200 x 100, padded left by
    # (200 - 100) / 2 = 50: window (0, 50, 200, 150). Box (10, 20, 30, 40) -> 2x + (0, 50, 0, 50)
    # = (20, 90, 60, 130), and back: ((20 - 0) / 2, (90 - 50) / 2, ...) = (10, 20, 30, 40).
    image, masks, _ = _sample(100, 50, [(10, 20, 30, 40)])
    img, m, window, scale = G.resize_and_pad(image, masks, 200)
    assert img.shape == (200, 200, 3) and m.shape == (200, 200, 1) and scale == 2.0
    np.testing.assert_array_equal(window, [0, 50, 200, 150])
    box = masks_to_boxes(m)
    np.testing.assert_array_equal(box, [[20, 90, 60, 130]])
    np.testing.assert_allclose(G.unresize_boxes(box, window, scale), [[10, 20, 30, 40]])
    assert (img[:, :50] == 0).all() and (img[:, 150:] == 0).all()  # zero padding


def test_resize_and_pad_shrinking_by_hand():
    # 60 x 30 into 40: scale 2/3, resized 40 x 20, window (0, 10, 40, 30). Nearest resize: output
    # row r reads source floor((r + 0.5) * 1.5): rows 4..11 read 6..17 (r = 3 -> 5, r = 12 -> 18
    # fall outside), columns 2..7 read 3..11. Box (6, 3, 18, 12) -> (4, 2 + 10, 12, 8 + 10)
    # = (4, 12, 12, 18); back: (4 * 1.5, 2 * 1.5, 12 * 1.5, 8 * 1.5) = (6, 3, 18, 12).
    image, masks, _ = _sample(60, 30, [(6, 3, 18, 12)])
    img, m, window, scale = G.resize_and_pad(image, masks, 40)
    np.testing.assert_array_equal(window, [0, 10, 40, 30])
    np.testing.assert_allclose(scale, 2 / 3)
    box = masks_to_boxes(m)
    np.testing.assert_array_equal(box, [[4, 12, 12, 18]])
    np.testing.assert_allclose(G.unresize_boxes(box, window, scale), [[6, 3, 18, 12]], atol=1e-5)


def test_resize_to_a_long_side_inside_a_larger_square_by_hand():
    # The VOC article: a 375 x 500 photo, long side 500 in a 512 square. Scale 500 / 500 = 1,
    # so nothing is resampled; padding (512 - 375) // 2 = 68 on top, (512 - 500) // 2 = 6 left:
    # window (68, 6, 443, 506), and every pixel outside it is zero.
    image, masks, _ = _sample(375, 500, [(100, 200, 150, 260)])
    img, m, window, scale = G.resize_and_pad(image, masks, 512, long_side=500)
    assert img.shape == (512, 512, 3) and scale == 1.0
    np.testing.assert_array_equal(window, [68, 6, 443, 506])
    np.testing.assert_array_equal(img[68:443, 6:506], image)
    assert img.sum() == image.astype(np.int64).sum()                  # nothing but zeros added
    np.testing.assert_array_equal(masks_to_boxes(m), [[168, 206, 218, 266]])
    # A 750 x 1000 photo halves: window and scale as above, boxes map back to the photo.
    big, big_masks, _ = _sample(750, 1000, [(200, 400, 300, 520)])
    _, m2, window2, scale2 = G.resize_and_pad(big, big_masks, 512, long_side=500)
    assert scale2 == 0.5
    np.testing.assert_array_equal(window2, [68, 6, 443, 506])
    np.testing.assert_allclose(G.unresize_boxes(masks_to_boxes(m2), window2, scale2),
                               [[200, 400, 300, 520]])
    with pytest.raises(ValueError, match="long_side=600"):
        G.resize_and_pad(image, masks, 512, long_side=600)
    ds = P.MaskRCNNDataset(ListSamples([(image, masks, np.array([1], np.int32))]), batch_size=1,
                           image_size=512, long_side=500, mini_mask_shape=None, shuffle=False)
    np.testing.assert_array_equal(ds[0]["image_meta"][0], [375, 500, 68, 6, 443, 506, 1.0])


def test_batches_have_fixed_shapes():
    provider = _random_provider()
    ds = P.MaskRCNNDataset(provider, batch_size=3, image_size=64, max_instances=6,
                           mini_mask_shape=(14, 14), shuffle=True, seed=1)
    assert len(ds) == 3  # ceil(7 / 3); the last batch wraps around
    for i in range(len(ds)):
        b = ds[i]
        assert b["images"].shape == (3, 64, 64, 3) and b["images"].dtype == np.float32
        assert b["image_meta"].shape == (3, 7)
        assert b["gt_boxes"].shape == (3, 6, 4) and b["gt_class_ids"].shape == (3, 6)
        assert b["gt_masks"].shape == (3, 14, 14, 6) and b["gt_count"].shape == (3,)
        for j, n in enumerate(b["gt_count"]):
            assert (b["gt_class_ids"][j, :n] > 0).all() and (b["gt_class_ids"][j, n:] == 0).all()
            assert (b["gt_boxes"][j, n:] == 0).all()
    assert len(P.MaskRCNNDataset(provider, batch_size=3, drop_remainder=True)) == 2


def test_meta_window_and_scale_undo_the_resize():
    # one 40 x 80 image in a 160 square: scale 2, window (40, 0, 120, 160); the 12 x 10 box
    # at (5, 7) maps to (5 * 2 + 40, 7 * 2, 17 * 2 + 40, 17 * 2) = (50, 14, 74, 34)
    provider = ListSamples([_sample(40, 80, [(5, 7, 17, 17)], first_class=4)])
    b = P.MaskRCNNDataset(provider, batch_size=1, image_size=160, max_instances=3)[0]
    h, w, y1, x1, y2, x2, scale = b["image_meta"][0]
    assert (h, w, y1, x1, y2, x2, scale) == (40, 80, 40, 0, 120, 160, 2)
    meta = G.parse_image_meta(b["image_meta"])
    assert meta["original_shape"].tolist() == [[40, 80]] and meta["scale"].tolist() == [2.0]
    assert meta["window"].tolist() == [[40, 0, 120, 160]]
    np.testing.assert_array_equal(b["gt_boxes"][0, 0], [50, 14, 74, 34])
    np.testing.assert_allclose(G.unresize_boxes(b["gt_boxes"][0, :1], [y1, x1, y2, x2], scale),
                               [[5, 7, 17, 17]])
    assert b["gt_class_ids"][0].tolist() == [4, 0, 0] and b["gt_count"][0] == 1
    # a rectangle fills its own box: its mini-mask is all ones
    np.testing.assert_allclose(b["gt_masks"][0, ..., 0], 1.0)
    assert (b["gt_masks"][0, ..., 1:] == 0).all()


def test_full_masks_option_matches_boxes():
    provider = _random_provider(4, seed=2)
    ds = P.MaskRCNNDataset(provider, batch_size=2, image_size=48, max_instances=8,
                           mini_mask_shape=None, augmenter=Augmenter.default(), seed=3)
    for i in range(len(ds)):
        b = ds[i]
        assert b["gt_masks"].shape == (2, 48, 48, 8) and b["gt_masks"].dtype == bool
        for j, n in enumerate(b["gt_count"]):
            np.testing.assert_array_equal(b["gt_boxes"][j, :n],
                                          _regionprops_boxes(b["gt_masks"][j, ..., :n]))


def test_too_many_instances_warns_with_the_name_and_subsets_reproducibly():
    rects = [(2 * k, 0, 2 * k + 1, 5) for k in range(10)]
    provider = ListSamples([_sample(20, 20, rects)])
    ds = P.MaskRCNNDataset(provider, batch_size=1, image_size=20, max_instances=4, seed=0)
    with pytest.warns(UserWarning, match=r"img0: 10 instances, more than max_instances=4"):
        a = ds[0]
    assert a["gt_count"][0] == 4
    with pytest.warns(UserWarning):
        b = ds[0]
    np.testing.assert_array_equal(a["gt_boxes"], b["gt_boxes"])  # same subset on a rerun
    chosen = a["gt_class_ids"][0]
    assert len(set(chosen.tolist())) == 4 and set(chosen.tolist()) <= set(range(1, 11))


def test_epochs_are_deterministic_and_differ():
    provider = _random_provider(8, seed=4)
    ds = P.MaskRCNNDataset(provider, batch_size=2, image_size=32, max_instances=5, seed=7,
                           augmenter=Augmenter.default())
    epoch0 = [ds[i] for i in range(len(ds))]
    again = [ds[i] for i in range(len(ds))]
    for a, b in zip(epoch0, again, strict=True):
        np.testing.assert_array_equal(a["images"], b["images"])
    order0 = np.concatenate([ds.batch_indices(i) for i in range(len(ds))])
    ds.on_epoch_end()
    order1 = np.concatenate([ds.batch_indices(i) for i in range(len(ds))])
    assert sorted(order0) == sorted(order1) == list(range(8))
    assert not np.array_equal(order0, order1)
    ds.set_epoch(0)
    np.testing.assert_array_equal(ds[1]["images"], epoch0[1]["images"])


def test_worker_and_non_worker_batches_are_equal():
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    def make(workers):
        return P.MaskRCNNDataset(_random_provider(9, seed=5), batch_size=2, image_size=32,
                                 max_instances=5, augmenter=Augmenter.default(), seed=2,
                                 workers=workers)

    serial = [make(1)[i] for i in range(5)]
    # Keras' own threaded enqueuer, the path fit() takes with workers > 1
    adapter = PyDatasetAdapter(make(3), shuffle=False)
    adapter.on_epoch_begin()
    threaded = list(adapter.get_numpy_iterator())
    adapter.on_epoch_end()
    assert len(threaded) == 5
    # and a plain thread pool asking for the batches out of order
    ds = make(1)
    with ThreadPoolExecutor(4) as pool:
        pooled = list(pool.map(lambda i: ds[i], [4, 3, 2, 1, 0]))[::-1]
    for a, b, c in zip(serial, threaded, pooled, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
            np.testing.assert_array_equal(a[key], c[key])


def test_unet_batches_weights_and_crops():
    provider = _random_provider(5, seed=6)
    calls = []

    def weight_fn(labels):
        calls.append(labels.shape)
        return 1.0 + 2.0 * (labels > 0)

    ds = P.UNetDataset(provider, batch_size=2, tile_size=40, weight_fn=weight_fn, seed=1,
                       augmenter=Augmenter.unet())
    for i in range(len(ds)):
        x, y, w = ds[i]
        assert x.shape == (2, 40, 40, 3) and y.shape == (2, 40, 40, 1) and w.shape == (2, 40, 40)
        np.testing.assert_array_equal(w, 1.0 + 2.0 * y[..., 0])  # weights of the final tile
    assert calls and all(s == (40, 40) for s in calls)
    default = P.UNetDataset(provider, batch_size=2, tile_size=100, mode="resize")
    x, y, w = default[0]
    assert x.shape == (2, 100, 100, 3) and (w == 1).all()
    assert set(np.unique(y)) <= {0.0, 1.0}


def test_unet_crop_mirrors_small_images_and_keeps_scale():
    image, masks, ids = _sample(10, 12, [(2, 3, 6, 9)])  # 4 x 6 = 24 pixels of foreground
    ds = P.UNetDataset(ListSamples([(image, masks, ids)]), batch_size=1, tile_size=8, seed=0)
    x, y, _ = ds[0]
    assert x.shape == (1, 8, 8, 3)
    top_left = [(r, c) for r in range(3) for c in range(5)
                if np.array_equal(image[r:r + 8, c:c + 8], x[0].astype(np.uint8))]
    assert len(top_left) == 1  # an 8 x 8 window of the original, not a resized image
    bigger = P.UNetDataset(ListSamples([(image, masks, ids)]), batch_size=1, tile_size=16)
    x, y, _ = bigger[0]
    assert x.shape == (1, 16, 16, 3)
    assert y.sum() >= 24  # the object survives (and may be mirrored in)


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="empty"):
        P.MaskRCNNDataset(ListSamples([]))
    with pytest.raises(ValueError, match="mode"):
        P.UNetDataset(_random_provider(2), mode="tile")
    bad = ListSamples([(np.zeros((4, 4), np.uint8), np.zeros((4, 4, 0), bool),
                        np.zeros(0, np.int32))])
    # the only sample breaks the contract: nothing can replace it, so the skip becomes an error
    # that still names the file and the reason
    with pytest.raises(RuntimeError, match="img0: image must be"):
        P.MaskRCNNDataset(bad, batch_size=1)[0]
    with pytest.raises(IndexError):
        P.MaskRCNNDataset(_random_provider(2), batch_size=1).batch_indices(5)


def test_nothing_is_preloaded():
    provider = _random_provider(6)
    ds = P.MaskRCNNDataset(provider, batch_size=2, image_size=32)
    assert provider.calls == 0
    ds[0]
    assert provider.calls == 2


def test_uint8_resize_agrees_with_skimage():
    # Pillow's fast path against scikit-image's anti-aliased bilinear resize
    from skimage.transform import resize

    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 256, (6, 8, 3)), np.ones((16, 16, 1))).astype(np.uint8)
    for size in (64, 256):  # shrink 128 -> 64 and enlarge 128 -> 256
        img, _, window, scale = G.resize_and_pad(smooth, None, size)
        y1, x1, y2, x2 = (int(v) for v in window)
        ref = resize(smooth.astype(float), (y2 - y1, x2 - x1, 3), order=1, preserve_range=True,
                     anti_aliasing=scale < 1)
        diff = np.abs(img[y1:y2, x1:x2].astype(float) - ref)
        # inside the flat 16 x 16 blocks both agree exactly; at block edges the two anti-aliasing
        # filters (Pillow's widened triangle, scikit-image's Gaussian) blur differently
        assert np.median(diff) < 1.0 and diff.mean() < 8.0, (size, diff.mean())


def test_unet_with_the_paper_weight_map():
    # the weight function of the U-Net chapter plugs in as weight_fn: touching rectangles give
    # border weights above the class-balance weights in the gap between them
    from course_lib.ops.weight_map import weight_map

    provider = ListSamples([_sample(32, 32, [(4, 4, 28, 14), (4, 16, 28, 28)])])
    ds = P.UNetDataset(provider, batch_size=1, tile_size=32, weight_fn=weight_map)
    x, y, w = ds[0]
    gap = w[0, 10:20, 14:16]  # the 2-pixel background gap between the two objects
    assert y[0, 10:20, 14:16].sum() == 0 and gap.min() > w[0, 0, 0] + 1.0


def test_label_image_path_equals_mask_stack_computation():
    # non-overlapping instances are batched through a label image; recompute the targets from
    # the mask stack with the ops functions (resize, tight boxes, mini-masks) and compare
    from course_lib.ops.masks import minimize_masks

    image, masks, ids = _sample(70, 45, [(3, 4, 20, 30), (25, 2, 60, 12), (40, 20, 69, 44),
                                          (5, 35, 7, 37)])
    row = P.MaskRCNNDataset(ListSamples([(image, masks, ids)]), batch_size=1, image_size=48,
                            max_instances=6).sample(0)
    _, big, _, _ = G.resize_and_pad(image, masks, 48)
    present = big.any(axis=(0, 1))  # the 2 x 2 instance may vanish at scale 48 / 70
    big = big[..., present]
    n = big.shape[-1]
    assert row["gt_count"] == n
    np.testing.assert_array_equal(row["gt_class_ids"][:n], ids[present])
    np.testing.assert_array_equal(row["gt_boxes"][:n], _regionprops_boxes(big))
    expected = minimize_masks(big, _regionprops_boxes(big), (28, 28))
    # same sample points; float rounding of a shifted box may move a point across a pixel edge
    # (one of the 16 samples of a cell: 1/16)
    np.testing.assert_allclose(row["gt_masks"][..., :n], expected, atol=1 / 16 + 1e-6)
    assert np.abs(row["gt_masks"][..., :n] - expected).mean() < 1e-3
    full = P.MaskRCNNDataset(ListSamples([(image, masks, ids)]), batch_size=1, image_size=48,
                             max_instances=6, mini_mask_shape=None).sample(0)
    np.testing.assert_array_equal(full["gt_masks"][..., :n], big)


# --- nothing lost, nothing silent: skips, drops, ignore boxes ------------------------------


class FlakySamples(ListSamples):
    """Samples whose loading fails the way real files fail: ``bad`` maps an index to
    ``"corrupt"`` (garbage bytes read through io.read_image), ``"missing"`` (a file that is not
    there) or ``"invalid"`` (an image breaking the data contract)."""

    def __init__(self, samples, bad, folder):
        super().__init__(samples)
        self.bad, self.folder = bad, folder
        (folder / "bad.png").write_bytes(b"not a png")

    def load(self, i):
        from course_lib.data import io

        kind = self.bad.get(i)
        if kind == "corrupt":
            io.read_image(self.folder / "bad.png")
        if kind == "missing":
            io.read_image(self.folder / "gone.png")
        if kind == "invalid":
            return np.zeros((4, 4), np.uint8), np.zeros((4, 4, 0), bool), np.zeros(0, np.int32)
        return super().load(i)


def _distinct_provider(n):
    """n samples whose first pixel tells which sample a batch row came from (value 10 * i)."""
    samples = []
    for i in range(n):
        image, masks, ids = _sample(16, 16, [(2, 2, 6, 6)], seed=i)
        image[0, 0] = 10 * i
        samples.append((image, masks, ids))
    return samples


def test_unreadable_sample_is_skipped_counted_and_replaced_by_the_next(tmp_path, caplog):
    provider = FlakySamples(_distinct_provider(5), {1: "corrupt", 3: "missing"}, tmp_path)
    ds = P.MaskRCNNDataset(provider, batch_size=2, image_size=16, max_instances=2,
                           shuffle=False)
    with caplog.at_level("WARNING", logger="course_lib.data.pipeline"):
        batches = [ds[i] for i in range(len(ds))]
    # unshuffled order 0 1 2 3 4 (0 wraps in): slot of 1 taken by 2, slot of 3 by 4
    firsts = [b["images"][:, 0, 0, 0].tolist() for b in batches]
    assert firsts == [[0, 20], [20, 40], [40, 0]]
    assert all(b["images"].shape == (2, 16, 16, 3) for b in batches)  # shapes stay fixed
    summary = ds.skip_summary()
    assert summary["epoch"] == 0 and summary["skipped"] == 2
    assert summary["by_reason"] == {"missing_file": 1, "unreadable_image": 1}
    (n1, r1, m1), (n3, r3, m3) = summary["samples"]
    assert (n1, r1, n3, r3) == ("img1", "unreadable_image", "img3", "missing_file")
    assert "bad.png" in m1 and "gone.png" in m3  # the file is named
    logged = [r.getMessage() for r in caplog.records]
    assert any("skipping sample img1 (unreadable_image)" in m and "bad.png" in m for m in logged)
    # reading a batch again does not count twice; the next epoch starts its own count
    ds[0]
    assert ds.skip_summary()["skipped"] == 2
    ds.on_epoch_end()
    assert ds.skip_summary()["epoch"] == 0  # the epoch that just ended, until 1 has records
    ds[0]
    assert ds.skip_summary() == {"epoch": 1, "skipped": 1, "by_reason": {"unreadable_image": 1},
                                 "samples": [("img1", "unreadable_image", m1)]}
    assert ds.skip_summary(epoch=0)["skipped"] == 2


def test_skips_are_deterministic_with_shuffling_and_threads(tmp_path):
    def make():
        return P.MaskRCNNDataset(FlakySamples(_distinct_provider(7), {2: "invalid"}, tmp_path),
                                 batch_size=3, image_size=16, max_instances=2, seed=5)

    a, b = make(), make()
    serial = [a[i]["images"][:, 0, 0, 0] for i in range(len(a))]
    with ThreadPoolExecutor(3) as pool:
        pooled = list(pool.map(lambda i: b[i]["images"][:, 0, 0, 0], range(len(b))))
    for x, y in zip(serial, pooled, strict=True):
        np.testing.assert_array_equal(x, y)
    assert 20 not in np.concatenate(serial)  # the invalid sample never reaches a batch
    assert b.skip_summary()["by_reason"] == {"invalid_sample": 1}


def test_too_many_skips_raise_with_the_first_reasons(tmp_path):
    provider = FlakySamples(_distinct_provider(4), {0: "corrupt", 1: "corrupt", 2: "corrupt"},
                            tmp_path)
    ds = P.MaskRCNNDataset(provider, batch_size=2, image_size=16, shuffle=False)
    with pytest.raises(RuntimeError, match=r"3 of 4 samples .* img0: ImageReadError"):
        ds[0]


def test_unet_dataset_skips_too(tmp_path):
    provider = FlakySamples(_distinct_provider(3), {0: "corrupt"}, tmp_path)
    ds = P.UNetDataset(provider, batch_size=2, tile_size=16, mode="resize", shuffle=False)
    x, y, w = ds[0]
    assert x[:, 0, 0, 0].tolist() == [10, 10]  # slot 0 -> 1 (next), slot 1 is 1
    assert ds.skip_summary()["by_reason"] == {"unreadable_image": 1}


class IgnoreSamples(ListSamples):
    """ListSamples with a provider-side ignore region per sample (the load_with_ignore
    contract of course_lib.data.coco)."""

    def __init__(self, samples, regions):
        super().__init__(samples)
        self.regions = regions

    def load_with_ignore(self, i):
        from course_lib.data.samples import IgnoreRegions

        image, masks, ids = self.load(i)
        rects, reasons, dropped = self.regions[i]
        ign = np.zeros(image.shape[:2] + (len(rects),), bool)
        for k, (r0, c0, r1, c1) in enumerate(rects):
            ign[r0:r1, c0:c1, k] = True
        return image, masks, ids, IgnoreRegions(ign, tuple(reasons), dict(dropped))


def test_drops_and_ignore_boxes_by_hand():
    # 40 x 20 image into a 20 square: scale 1/2, resized 20 x 10, window (0, 5, 20, 15). The
    # nearest resize reads source row 2r + 1 for output row r (and column 2c + 1).
    # - instance A rows [4, 12) cols [2, 9): rows r with 2r+1 in [4, 12) are 2..5, columns
    #   c with 2c+1 in [2, 9) are 1..3 (+5): box (2, 6, 6, 9)
    # - instance B, the single pixel (0, 0): row 0 is never read, so it vanishes
    # - instance C rows [20, 30) cols [10, 20): rows 10..14, columns 5..9 (+5): (10, 10, 15, 15)
    # - instance D rows [32, 40) cols [0, 4): rows 16..19, columns 0..1 (+5): (16, 5, 20, 7)
    # - a crowd region rows [30, 40) cols [10, 20): rows 15..19, cols 10..14: (15, 10, 20, 15)
    # max_instances = 2 keeps two of A, C, D; the third becomes an ignore box after the crowd
    image, masks, ids = _sample(40, 20, [(4, 2, 12, 9), (0, 0, 1, 1), (20, 10, 30, 20),
                                         (32, 0, 40, 4)])
    provider = IgnoreSamples([(image, masks, ids)],
                             {0: ([(30, 10, 40, 20)], ["crowd"], {"empty_mask": 1})})
    ds = P.MaskRCNNDataset(provider, batch_size=1, image_size=20, max_instances=2, max_ignore=4)
    with pytest.warns(UserWarning, match="more than max_instances=2"):
        b = ds[0]
    boxes = {"A": [2, 6, 6, 9], "C": [10, 10, 15, 15], "D": [16, 5, 20, 7]}
    assert b["gt_count"][0] == 2 and b["gt_ignore_count"][0] == 2
    kept = [r.tolist() for r in b["gt_boxes"][0, :2]]
    ign = [r.tolist() for r in b["gt_ignore_boxes"][0, :2]]
    assert ign[0] == [15, 10, 20, 15]  # the crowd region first
    assert sorted(kept + ign[1:]) == sorted(boxes.values())  # the over-cap one is not lost
    assert (b["gt_ignore_boxes"][0, 2:] == 0).all()  # zero padding rows
    assert b["gt_ignore_boxes"].shape == (1, 4, 4) and b["gt_ignore_count"].dtype == np.int32
    assert ds.drop_summary() == {"crowd": 1, "empty_mask": 1, "over_cap": 1,
                                 "vanished_resize": 1}
    # ignore rows beyond max_ignore are counted, not silently cut
    small = P.MaskRCNNDataset(provider, batch_size=1, image_size=20, max_instances=2,
                              max_ignore=1)
    with pytest.warns(UserWarning):
        c = small[0]
    assert c["gt_ignore_count"][0] == 1 and c["gt_ignore_boxes"][0, 0].tolist() == ign[0]
    assert small.drop_summary()["ignore_rows_full"] == 1


def test_ignore_regions_move_with_the_augmentation_and_vanished_ones_are_counted():
    # a left-right flip of a 20-wide image maps columns [c0, c1) to [20 - c1, 20 - c0):
    # instance rows [2, 6) cols [1, 4) -> (2, 16, 6, 19); crowd rows [10, 14) cols [0, 5)
    # -> (10, 15, 14, 20). A second transform empties the bottom half, so the instance in
    # rows [15, 18) vanishes in the augmenter.
    def clear_bottom(image, masks, rng):
        masks = masks.copy()
        masks[15:] = 0
        return image, masks

    image, masks, ids = _sample(20, 20, [(2, 1, 6, 4), (15, 5, 18, 9)])
    provider = IgnoreSamples([(image, masks, ids)], {0: ([(10, 0, 14, 5)], ["crowd"], {})})
    aug = Augmenter([_flip_lr(), clear_bottom])
    ds = P.MaskRCNNDataset(provider, batch_size=1, image_size=20, augmenter=aug)
    b = ds[0]
    assert b["gt_count"][0] == 1 and b["gt_boxes"][0, 0].tolist() == [2, 16, 6, 19]
    assert b["gt_ignore_count"][0] == 1
    assert b["gt_ignore_boxes"][0, 0].tolist() == [10, 15, 14, 20]
    np.testing.assert_array_equal(b["images"][0], image[:, ::-1].astype(np.float32))
    assert ds.drop_summary() == {"crowd": 1, "vanished_augment": 1}
    # U-Net: the crowd pixels outside any instance weigh nothing, everything else 1
    x, y, w = P.UNetDataset(provider, batch_size=1, tile_size=20, mode="resize",
                            augmenter=aug)[0]
    expected = np.ones((20, 20), np.float32)
    expected[10:14, 15:20] = 0
    np.testing.assert_array_equal(w[0], expected)


def _flip_lr():
    from course_lib.data.augment import FlipLeftRight

    return FlipLeftRight(p=1.0)


def test_providers_without_ignore_keep_working_and_batches_carry_empty_ignore_rows():
    ds = P.MaskRCNNDataset(_random_provider(3), batch_size=3, image_size=32, max_ignore=5)
    b = ds[0]
    assert b["gt_ignore_boxes"].shape == (3, 5, 4) and (b["gt_ignore_boxes"] == 0).all()
    assert b["gt_ignore_count"].tolist() == [0, 0, 0]
    assert ds.skip_summary()["skipped"] == 0


def test_a_dataset_for_a_config_takes_every_size_from_it():
    """``for_config`` is how every Mask R-CNN dataset is made: nothing is typed twice, and a
    VOC config's margin (500 of 512) reaches the data."""
    from course_lib.models import maskrcnn as M

    cfg = M.voc_config("quick", max_instances=7, max_ignore=5, mini_mask_shape=(14, 14))
    ds = P.MaskRCNNDataset.for_config(cfg, _random_provider(3), batch_size=1, shuffle=False)
    assert (ds.image_size, ds.long_side, ds.max_instances, ds.max_ignore, ds.mini_mask_shape) \
        == (cfg.image_size, cfg.image_long_side, 7, 5, (14, 14))
    batch = ds[0]
    y1, x1, y2, x2 = G.parse_image_meta(batch["image_meta"])["window"][0]
    assert max(y2 - y1, x2 - x1) == cfg.image_long_side < cfg.image_size
    assert batch["gt_boxes"].shape[1] == 7 and batch["gt_masks"].shape[1:3] == (14, 14)
    # a deliberate change of one size is a keyword, the rest still from the config
    full = P.MaskRCNNDataset.for_config(cfg, _random_provider(3), mini_mask_shape=None)
    assert full.mini_mask_shape is None and full.long_side == cfg.image_long_side
