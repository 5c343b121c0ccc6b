"""Joint image/mask/box augmentation: hand-worked boxes, identities, library oracles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage import filters

from course_lib.data import augment as A
from course_lib.ops.masks import masks_to_boxes


def _rect_masks(shape, rects):
    """H x W x N masks, one filled rectangle (r0, c0, r1, c1) (pixel edges) each."""
    masks = np.zeros(shape + (len(rects),), bool)
    for i, (r0, c0, r1, c1) in enumerate(rects):
        masks[r0:r1, c0:c1, i] = True
    return masks


def _regionprops_boxes(masks):
    """Tight boxes by scikit-image, independent of the library: regionprops' bbox is
    (min_row, min_col, max_row, max_col) with exclusive maxima, i.e. pixel edges."""
    from skimage.measure import regionprops

    return np.array([regionprops(masks[..., k].astype(np.uint8))[0].bbox
                     for k in range(masks.shape[-1])], np.float32).reshape(-1, 4)


def _hand_affine(shape, scale, translate, rotate):
    """The forward 3 x 3 map in (x, y) = (column, row) coordinates, written out by hand:
    about the centre ((W - 1) / 2, (H - 1) / 2) of the pixel-centre grid, scale by ``scale``,
    turn by ``rotate`` degrees counter-clockwise *on screen* (rows grow downwards, so in
    (x, y) that is x' = cos x + sin y, y' = -sin x + cos y), then shift by
    ``translate = (rows, columns)``."""
    h, w = shape
    cx, cy = (w - 1) / 2, (h - 1) / 2
    t = np.deg2rad(rotate)
    c, s = np.cos(t) * scale, np.sin(t) * scale
    return np.array([[c, s, cx + translate[1] - c * cx - s * cy],
                     [-s, c, cy + translate[0] + s * cx - c * cy],
                     [0.0, 0.0, 1.0]])


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)


# ---------------------------------------------------------------- flips and quarter turns


def test_flip_and_turn_boxes_by_hand():
    h, w = 10, 12
    masks = _rect_masks((h, w), [(2, 1, 5, 7)])  # box (y1, x1, y2, x2) = (2, 1, 5, 7)
    image = _image((h, w))
    # left-right: x -> 12 - x, so (2, 1, 5, 7) -> (2, 12 - 7, 5, 12 - 1) = (2, 5, 5, 11)
    _, m = A.flip_left_right(image, masks)
    np.testing.assert_array_equal(masks_to_boxes(m), [[2, 5, 5, 11]])
    np.testing.assert_array_equal(A.flip_boxes_left_right([[2, 1, 5, 7]], w), [[2, 5, 5, 11]])
    # up-down: y -> 10 - y: (10 - 5, 1, 10 - 2, 7) = (5, 1, 8, 7)
    _, m = A.flip_up_down(image, masks)
    np.testing.assert_array_equal(masks_to_boxes(m), [[5, 1, 8, 7]])
    np.testing.assert_array_equal(A.flip_boxes_up_down([[2, 1, 5, 7]], h), [[5, 1, 8, 7]])
    # one counter-clockwise quarter turn: (y, x) -> (W - x, y), so the box becomes
    # (12 - 7, 2, 12 - 1, 5) = (5, 2, 11, 5) in a 12 x 10 image
    img, m = A.rotate90(image, masks, k=1)
    assert img.shape == (12, 10, 3) and m.shape == (12, 10, 1)
    np.testing.assert_array_equal(masks_to_boxes(m), [[5, 2, 11, 5]])
    np.testing.assert_array_equal(A.rotate90_boxes([[2, 1, 5, 7]], (h, w), 1), [[5, 2, 11, 5]])
    # image pixels move with the masks: numpy's own rotation is the oracle
    np.testing.assert_array_equal(img, np.rot90(image))


@settings(max_examples=40, deadline=None)
@given(h=st.integers(3, 16), w=st.integers(3, 16), k=st.integers(0, 3),
       data=st.data())
def test_turn_boxes_match_turned_masks(h, w, k, data):
    r0 = data.draw(st.integers(0, h - 1))
    r1 = data.draw(st.integers(r0 + 1, h))
    c0 = data.draw(st.integers(0, w - 1))
    c1 = data.draw(st.integers(c0 + 1, w))
    masks = _rect_masks((h, w), [(r0, c0, r1, c1)])
    _, m = A.rotate90(np.zeros((h, w, 3), np.uint8), masks, k)
    np.testing.assert_array_equal(m, np.rot90(masks, k))  # NumPy's own quarter turn
    # the oracle box: scikit-image's regionprops of NumPy's turned mask
    np.testing.assert_array_equal(A.rotate90_boxes([[r0, c0, r1, c1]], (h, w), k),
                                  _regionprops_boxes(np.rot90(masks, k)))


# ---------------------------------------------------------------- affine


def test_affine_identity_returns_input():
    image = _image((17, 23))
    masks = _rect_masks((17, 23), [(2, 3, 9, 11), (0, 0, 17, 1)])
    img, m = A.affine(image, masks)  # scale 1, no shift, no rotation, no shear
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(m, masks)
    assert m.dtype == bool


def test_affine_quarter_rotation_equals_rot90():
    # rotating a square image by 90 degrees about its centre maps pixel centres onto pixel
    # centres, so the bilinear warp must agree with numpy's exact quarter turn
    image = _image((15, 15), seed=3)
    masks = _rect_masks((15, 15), [(1, 2, 6, 12)])
    img, m = A.affine(image, masks, rotate=90)
    np.testing.assert_array_equal(img, np.rot90(image))
    np.testing.assert_array_equal(m, np.rot90(masks))


def test_affine_integer_translation_is_a_shift_with_zero_fill():
    image = _image((12, 14), seed=1)
    masks = _rect_masks((12, 14), [(0, 0, 4, 5)])
    img, m = A.affine(image, masks, translate=(3, -2))  # 3 rows down, 2 columns left
    expected = np.zeros_like(image)
    expected[3:, :-2] = image[:-3, 2:]
    np.testing.assert_array_equal(img, expected)
    # mask box (0, 0, 4, 5) -> rows + 3, columns - 2 clipped at 0: (3, 0, 7, 3)
    np.testing.assert_array_equal(masks_to_boxes(m), [[3, 0, 7, 3]])


def test_affine_scale_about_centre_by_hand():
    # 11 x 11 image, centre pixel 5. Pixels 4..6 (edges 4..7) scaled by 2 about pixel 5: an
    # output pixel r samples source 5 + (r - 5) / 2, rounded half up; rows 2..7 land on 4..6
    # (r = 2 -> 3.5 -> 4, r = 7 -> 6.0, r = 8 -> 6.5 -> 7 is outside), so the box is (2, 2, 8, 8)
    masks = _rect_masks((11, 11), [(4, 4, 7, 7)])
    _, m = A.affine(np.zeros((11, 11, 3), np.uint8), masks, scale=2.0)
    np.testing.assert_array_equal(masks_to_boxes(m), [[2, 2, 8, 8]])
    assert m.sum() == 36


def test_affine_matches_a_hand_written_matrix_through_skimage_warp():
    # the oracle matrix is written out in the test (not taken from the augmenter), the image
    # warped by scikit-image, the masks sampled at the nearest source pixel computed here
    from skimage import transform as sktf

    image = _image((20, 24), seed=5)
    masks = _rect_masks((20, 24), [(3, 4, 12, 15), (14, 16, 19, 22)])
    img, m = A.affine(image, masks, scale=1.1, translate=(1.5, -2.0), rotate=12)
    forward = _hand_affine((20, 24), 1.1, (1.5, -2.0), 12)
    ref = sktf.warp(image.astype(float), sktf.AffineTransform(matrix=np.linalg.inv(forward)),
                    order=1, preserve_range=True)
    np.testing.assert_allclose(img, np.clip(np.rint(ref), 0, 255), atol=1)
    # each output pixel (r, c) reads source inv @ (c, r, 1), rounded half up; outside -> empty
    rr, cc = np.mgrid[0:20, 0:24]
    src = np.linalg.inv(forward) @ np.stack([cc.ravel(), rr.ravel(), np.ones(rr.size)])
    sc = np.floor(src[0] + 0.5).astype(int).reshape(20, 24)
    sr = np.floor(src[1] + 0.5).astype(int).reshape(20, 24)
    inside = (sr >= 0) & (sr < 20) & (sc >= 0) & (sc < 24)
    expected = np.zeros_like(masks)
    expected[inside] = masks[sr[inside], sc[inside]]
    np.testing.assert_array_equal(m, expected)
    # a pure quarter turn of a square by the hand matrix: NumPy's rot90 (exact, no warp)
    sq = _image((9, 9), seed=6)
    turned, _ = A.affine(sq, None, rotate=90)
    np.testing.assert_array_equal(turned, np.rot90(sq))
    np.testing.assert_allclose(_hand_affine((9, 9), 1.0, (0, 0), 90)[:2, :2], [[0, 1], [-1, 0]],
                               atol=1e-12)


def test_affine_shear_matches_skimage_warp():
    # shear has no short hand form; here the augmenter's matrix is checked through
    # scikit-image's own warp of it (the matrix itself is covered by the test above)
    from skimage import transform as sktf

    image = _image((20, 24), seed=5)
    img, _ = A.affine(image, None, scale=1.1, translate=(1.5, -2.0), rotate=12, shear=5)
    tform = A.affine_matrix((20, 24), 1.1, (1.5, -2.0), 12, 5)
    ref = sktf.warp(image.astype(float), tform.inverse, order=1, preserve_range=True)
    np.testing.assert_allclose(img, np.clip(np.rint(ref), 0, 255), atol=1)


# ---------------------------------------------------------------- elastic deformation


def test_elastic_sigma_zero_is_identity():
    image = _image((30, 40), seed=2)
    masks = _rect_masks((30, 40), [(3, 4, 20, 30), (25, 0, 30, 40)])
    img, m = A.elastic_deform(image, masks, np.random.default_rng(0), sigma=0.0)
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(m, masks)


def test_elastic_field_interpolates_the_coarse_grid():
    # the dense field passes through the 3 x 3 lattice of N(0, sigma) draws at the corners,
    # edge midpoints and centre (cubic-spline interpolation is exact at the nodes)
    h, w = 41, 61
    dy, dx = A.elastic_field((h, w), np.random.default_rng(7), grid=3, sigma=10.0)
    coarse = np.random.default_rng(7).normal(0.0, 10.0, size=(2, 3, 3))
    nodes_r, nodes_c = [0, 20, 40], [0, 30, 60]
    np.testing.assert_allclose(dy[np.ix_(nodes_r, nodes_c)], coarse[0], atol=1e-4)
    np.testing.assert_allclose(dx[np.ix_(nodes_r, nodes_c)], coarse[1], atol=1e-4)
    # smooth: neighbouring pixels move by much less than sigma
    assert np.abs(np.diff(dy, axis=0)).max() < 3.0


def test_elastic_moves_image_and_masks_together():
    masks = _rect_masks((64, 64), [(16, 20, 44, 50)])
    image = np.where(masks[..., :1], 255, 0).astype(np.uint8).repeat(3, axis=2)
    img, m = A.elastic_deform(image, masks, np.random.default_rng(4), sigma=10.0)
    assert m.dtype == bool and m.shape == masks.shape
    assert not np.array_equal(m, masks)  # it did deform
    inside, outside = img[..., 0][m[..., 0]], img[..., 0][~m[..., 0]]
    assert inside.mean() > 230 and outside.mean() < 25


def test_elastic_is_seeded():
    image = _image((32, 32), seed=9)
    a = A.elastic_deform(image, None, np.random.default_rng(11))[0]
    b = A.elastic_deform(image, None, np.random.default_rng(11))[0]
    c = A.elastic_deform(image, None, np.random.default_rng(12))[0]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sample_nearest_reflect_mirrors_like_scipy():
    arr = np.arange(5.0)[:, None] * np.ones((1, 3))
    rows = np.array([[-2.0, -1.0, 5.0, 6.0]]).T * np.ones((1, 3))
    cols = np.ones_like(rows)
    got = A.sample_nearest(arr, rows, cols, mode="reflect")
    ref = ndimage.map_coordinates(arr, [rows, cols], order=0, mode="reflect")
    np.testing.assert_array_equal(got, ref)


# ---------------------------------------------------------------- crop and photometric


def test_crop_full_window_is_identity_and_quadrant_zooms():
    image = _image((20, 20), seed=6)
    masks = _rect_masks((20, 20), [(0, 0, 10, 10)])
    img, m = A.crop(image, masks, 0, 0, 20, 20)
    np.testing.assert_array_equal(img, image)
    np.testing.assert_array_equal(m, masks)
    # the top-left quadrant, resized back to 20 x 20, is all mask
    img, m = A.crop(image, masks, 0, 0, 10, 10)
    assert img.shape == (20, 20, 3) and m.all()
    with pytest.raises(ValueError, match="does not fit"):
        A.crop(image, masks, 15, 0, 10, 10)


def test_photometric_identities_and_oracles():
    image = _image((16, 16), seed=8)
    np.testing.assert_array_equal(A.adjust_brightness(image, 1.0), image)
    np.testing.assert_array_equal(A.adjust_contrast(image, 1.0), image)
    np.testing.assert_array_equal(A.gaussian_blur(image, 0.0), image)
    # brightness 1.2 on value 250 clips to 255; on 100 gives 120
    flat = np.full((2, 2, 3), 250, np.uint8)
    assert A.adjust_brightness(flat, 1.2).max() == 255
    assert A.adjust_brightness(np.full((2, 2, 3), 100, np.uint8), 1.2)[0, 0, 0] == 120
    # contrast 1.5 about the mean: values 100 and 200 (mean 150) -> 75 and 225
    two = np.array([[[100] * 3, [200] * 3]], np.uint8)
    np.testing.assert_array_equal(A.adjust_contrast(two, 1.5)[0, :, 0], [75, 225])
    # blur against scikit-image's gaussian (channels apart, same sigma)
    ref = filters.gaussian(image.astype(float), sigma=1.0, channel_axis=-1, preserve_range=True,
                           mode="reflect", truncate=4.0)
    np.testing.assert_allclose(A.gaussian_blur(image, 1.0), ref, atol=1.0)


# ---------------------------------------------------------------- the Augmenter


def test_augmenter_drops_instances_leaving_the_frame():
    image = _image((20, 20))
    masks = _rect_masks((20, 20), [(0, 0, 5, 5), (15, 15, 20, 20)])
    shift = A.Affine(scale=(1, 1), translate=(0.5, 0.5), rotate=(0, 0), shear=(0, 0), p=1.0)
    out = A.Augmenter([shift], seed=0)(image, masks, [7, 9])
    # shifted by 0.5 * 20 = 10 px down and right: the corner instance leaves, the other moves
    # from (0, 0, 5, 5) to (10, 10, 15, 15)
    assert out.dropped == 1
    np.testing.assert_array_equal(out.class_ids, [7])
    np.testing.assert_array_equal(out.boxes, [[10, 10, 15, 15]])
    assert out.masks.shape == (20, 20, 1)


def test_augmenter_is_seeded_and_consistent():
    image = _image((40, 48), seed=1)
    masks = _rect_masks((40, 48), [(2, 3, 15, 20), (20, 25, 38, 46), (5, 30, 12, 40)])
    aug = A.Augmenter.default(seed=3)
    first = [aug(image, masks, [1, 2, 3]) for _ in range(6)]
    again = A.Augmenter.default(seed=3)
    for a in first:
        b = again(image, masks, [1, 2, 3])
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.masks, b.masks)
    for out in first + [A.Augmenter.unet(seed=1)(image, masks, [1, 2, 3])]:
        assert out.image.dtype == np.uint8 and out.masks.dtype == bool
        assert out.masks.shape[:2] == out.image.shape[:2]
        assert len(out.class_ids) == out.masks.shape[-1] == len(out.boxes) == 3 - out.dropped
        assert out.masks.any(axis=(0, 1)).all()  # no empty instance survives
        np.testing.assert_array_equal(out.boxes, _regionprops_boxes(out.masks))
    # an explicit generator overrides the augmenter's own
    x = aug(image, masks, rng=np.random.default_rng(5))
    y = A.Augmenter.default(seed=99)(image, masks, rng=np.random.default_rng(5))
    np.testing.assert_array_equal(x.image, y.image)


def test_augmenter_rejects_mismatched_input():
    aug = A.Augmenter([A.FlipLeftRight(p=1.0)])
    with pytest.raises(ValueError, match="class_ids"):
        aug(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4, 2), bool), [1])
    with pytest.raises(ValueError, match="does not match"):
        aug(np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 2), bool))
    out = aug(np.zeros((4, 4, 3), np.uint8))  # no masks at all is fine
    assert out.masks.shape == (4, 4, 0) and out.boxes.shape == (0, 4)


def test_affine_source_coords_match_skimage_warp_coords():
    from skimage import transform as sktf

    tform = sktf.AffineTransform(matrix=_hand_affine((9, 13), 1.2, (2.0, -1.5), 33.0))
    rows, cols = A.affine_source_coords(tform, (9, 13))
    ref_rows, ref_cols = sktf.warp_coords(tform.inverse, (9, 13))
    np.testing.assert_allclose(rows, ref_rows, atol=1e-4)
    np.testing.assert_allclose(cols, ref_cols, atol=1e-4)


def test_crop_fast_path_matches_interpolation():
    # the Pillow path for uint8 RGB against the generic bilinear sampler on the same window
    image = np.kron(_image((6, 8), seed=4), np.ones((5, 5, 1), np.uint8))  # 30 x 40, smooth-ish
    fast, _ = A.crop(image, None, 3, 4, 27, 36)
    rows = (np.arange(30) + 0.5) * 27 / 30 - 0.5
    cols = (np.arange(40) + 0.5) * 36 / 40 - 0.5
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    slow = A.sample_linear(image[3:30, 4:40], rr, cc, mode="nearest")
    diff = np.abs(fast.astype(int) - slow.astype(int))
    assert np.median(diff) == 0 and diff.mean() < 6


def test_label_image_shortcut_equals_the_mask_stack():
    # non-overlapping instances travel as a label image; the result must equal applying the
    # same transforms (same generator) to the bool stack directly
    image = _image((40, 52), seed=2)
    masks = _rect_masks((40, 52), [(2, 3, 15, 20), (20, 25, 38, 46), (5, 30, 12, 40),
                                   (36, 0, 40, 3)])
    transforms = [A.Rotate90(p=1.0), A.Affine(p=1.0), A.Crop(p=1.0), A.Elastic(p=1.0, sigma=4)]
    for seed in range(4):
        out = A.Augmenter(transforms)(image, masks, [1, 2, 3, 4],
                                      rng=np.random.default_rng(seed))
        img, m = image, masks
        rng = np.random.default_rng(seed)
        for t in transforms:
            img, m = t(img, m, rng)
        keep = m.any(axis=(0, 1))
        np.testing.assert_array_equal(out.image, img)
        np.testing.assert_array_equal(out.masks, m[..., keep])
        np.testing.assert_array_equal(out.class_ids, np.array([1, 2, 3, 4])[keep])
        assert out.dropped == int((~keep).sum())
    # overlapping instances keep the stack (a label image could not hold both)
    both = _rect_masks((10, 10), [(0, 0, 6, 6), (3, 3, 9, 9)])
    out = A.Augmenter([A.FlipLeftRight(p=1.0)])(np.zeros((10, 10, 3), np.uint8), both)
    np.testing.assert_array_equal(out.masks, both[:, ::-1])


def test_stack_to_labels_and_label_boxes_by_hand():
    # the old names are the ops functions (one implementation each)
    from course_lib.ops import masks as M

    assert A.stack_to_labels is M.disjoint_masks_to_labels and A.label_boxes is M.labels_to_boxes
    masks = _rect_masks((12, 15), [(0, 0, 3, 4), (5, 6, 12, 15), (3, 0, 5, 2)])
    labels = A.stack_to_labels(masks)
    expected = np.zeros((12, 15), np.int32)
    expected[0:3, 0:4], expected[5:12, 6:15], expected[3:5, 0:2] = 1, 2, 3
    np.testing.assert_array_equal(labels, expected)
    # the rectangles' own edges are their boxes; absent labels (7) and 0 give zeros
    np.testing.assert_array_equal(A.label_boxes(labels, [3, 1, 2, 7, 0]),
                                  [[3, 0, 5, 2], [0, 0, 3, 4], [5, 6, 12, 15], [0, 0, 0, 0],
                                   [0, 0, 0, 0]])
    np.testing.assert_array_equal(M.labels_to_masks(labels, [2, 9]),
                                  np.stack([expected == 2, np.zeros((12, 15), bool)], -1))
    overlapping = _rect_masks((6, 6), [(0, 0, 4, 4), (2, 2, 6, 6)])
    assert A.stack_to_labels(overlapping) is None
    assert A.stack_to_labels(np.zeros((3, 4, 0), bool)).shape == (3, 4)


# ---------------------------------------------------------------- the article's preset


def test_article_preset_is_exactly_the_articles_set_and_ranges():
    aug = A.Augmenter.article(seed=0)
    assert aug.transforms == [
        A.FlipLeftRight(p=0.5),
        A.Crop(fraction=(0.9, 1.0), p=1.0),
        A.Affine(scale=(0.8, 1.2), translate=(-0.2, 0.2), rotate=(-25.0, 25.0),
                 shear=(-8.0, 8.0), p=1.0, per_axis_scale=True),
        A.GaussianBlur(bounds=(0.0, 0.5), p=0.5),
        A.Contrast(bounds=(0.75, 1.5), p=1.0),
        A.Brightness(bounds=(0.8, 1.2), p=1.0),
    ]


def test_article_preset_moves_masks_with_the_image_and_is_seeded():
    # the instances are the only bright pixels: wherever the transforms take them, the
    # augmented masks must sit on the bright pixels of the augmented image
    masks = _rect_masks((48, 64), [(8, 10, 30, 28), (20, 36, 42, 58)])
    image = np.where(masks.any(axis=-1, keepdims=True), 255, 0).astype(np.uint8).repeat(3, 2)
    aug = A.Augmenter.article(seed=5)
    outs = [aug(image, masks, [3, 8]) for _ in range(12)]
    moved = 0
    for out in outs:
        assert out.image.shape == image.shape and out.masks.shape[:2] == image.shape[:2]
        union = out.masks.any(axis=-1)
        assert out.image[..., 0][union].mean() > 128
        assert out.image[..., 0][~union].mean() < 64
        np.testing.assert_array_equal(out.boxes, _regionprops_boxes(out.masks))
        moved += not np.array_equal(out.masks, masks[..., :out.masks.shape[-1]])
    assert moved == len(outs)  # the affine part (p = 1) always moves something
    again = A.Augmenter.article(seed=5)
    for out in outs[:3]:
        np.testing.assert_array_equal(again(image, masks, [3, 8]).image, out.image)


def test_affine_per_axis_scale_draws_two_zooms():
    masks = _rect_masks((61, 61), [(20, 20, 41, 41)])  # a centred 21 x 21 square
    image = _image((61, 61))
    ratios = {}
    for per_axis in (False, True):
        t = A.Affine(scale=(0.5, 1.5), translate=(0, 0), rotate=(0, 0), shear=(0, 0), p=1.0,
                     per_axis_scale=per_axis)
        rng = np.random.default_rng(0)
        boxes = [masks_to_boxes(t(image, masks, rng)[1])[0] for _ in range(8)]
        ratios[per_axis] = [(b[2] - b[0]) / (b[3] - b[1]) for b in boxes]
    # one zoom keeps the square square (up to a pixel of rounding); two zooms do not
    assert np.allclose(ratios[False], 1.0, atol=0.1)
    assert max(abs(r - 1.0) for r in ratios[True]) > 0.3
