"""Tests of course_lib.ops.roi: RoIPool, RoIAlign, level assignment, and the keras.ops twins.

Oracles: values worked out by hand on tiny grids (arithmetic in the comments),
tf.image.crop_and_resize where its sample points coincide with RoIAlign's, plain slicing for
RoIPool's bins, and the NumPy references for the keras.ops twins.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.ops import roi
from tests import strategies as S

# 4×4 map, value 10*r + c: row r, column c readable from the number itself.
GRID = (10.0 * np.arange(4)[:, None] + np.arange(4)[None, :])[..., None]


# ---------------------------------------------------------------------- bilinear_sample

def test_bilinear_sample_hand_worked():
    # Features r**2 + c (not bilinear in r, so interpolation is visible).
    feats = (np.arange(4)[:, None] ** 2.0 + np.arange(4)[None, :])[..., None]
    # (1.25, 2.5): rows 1 and 2 hold 1 and 4 -> 0.75*1 + 0.25*4 = 1.75; columns add 2.5 -> 4.25.
    # (0, 0) is exactly cell (0, 0) -> 0.  (3, 3) -> 9 + 3 = 12.
    got = roi.bilinear_sample(feats, np.array([1.25, 0.0, 3.0]), np.array([2.5, 0.0, 3.0]))
    np.testing.assert_allclose(got[:, 0], [4.25, 0.0, 12.0])


def test_bilinear_sample_border_rules():
    # On the 4×4 GRID (H = W = 4):
    #   (-0.5, 1.5): inside the [-1, H] band, clamped to row 0 -> 10*0 + 1.5 = 1.5
    #   (-1.0, 2.0): exactly -1 still counts, clamped -> 2
    #   (-1.5, 1.0): beyond -1 -> 0
    #   (3.5, 3.2): clamped to (3, 3) -> 33
    #   (4.0, 0.0): y = H still counts, clamped to row 3 -> 30
    #   (4.01, 0.0): beyond H -> 0
    #   (1.0, 4.5): x beyond W -> 0
    y = np.array([-0.5, -1.0, -1.5, 3.5, 4.0, 4.01, 1.0])
    x = np.array([1.5, 2.0, 1.0, 3.2, 0.0, 0.0, 4.5])
    np.testing.assert_allclose(roi.bilinear_sample(GRID, y, x)[:, 0],
                               [1.5, 2.0, 0.0, 33.0, 30.0, 0.0, 0.0])


def test_bilinear_sample_broadcasts_and_keeps_channels():
    feats = np.stack([GRID[..., 0], -GRID[..., 0]], axis=-1)
    out = roi.bilinear_sample(feats, np.array([[0.5], [1.5]]), np.array([[0.0, 1.0, 2.0]]))
    assert out.shape == (2, 3, 2)
    # (0.5, 1.0) -> 10*0.5 + 1 = 6 (bilinear is exact on a linear map)
    np.testing.assert_allclose(out[0, 1], [6.0, -6.0])


# --------------------------------------------------------------------------- roi_align

def test_roi_align_hand_worked_aligned_and_not():
    box = np.array([[1.0, 1.0, 3.0, 3.0]])
    # aligned=True, scale 1: the box starts at 1 - 0.5 = 0.5 on the grid, 2 cells long, two
    # bins of 1 cell; samples at 0.5 + {0.25, 0.75} = {0.75, 1.25} (bin 0) and {1.75, 2.25}
    # (bin 1). The map is linear, so a bin's mean is 10*mean(y) + mean(x):
    # bin (0, 0): 10*1 + 1 = 11, (0, 1): 12, (1, 0): 21, (1, 1): 22.
    got = roi.roi_align(GRID, box, 2, 1.0, sampling_ratio=2, aligned=True)
    np.testing.assert_allclose(got[0, :, :, 0], [[11, 12], [21, 22]])
    # aligned=False: no half-pixel shift, samples at {1.25, 1.75} and {2.25, 2.75}: means 1.5
    # and 2.5, so every value is 10*0.5 + 0.5 = 5.5 higher: the half-pixel shift made visible.
    got = roi.roi_align(GRID, box, 2, 1.0, sampling_ratio=2, aligned=False)
    np.testing.assert_allclose(got[0, :, :, 0], [[16.5, 17.5], [26.5, 27.5]])


def test_roi_align_hand_worked_stride_and_clamp():
    # Stride 2 (scale 0.5), box (0, 2, 4, 8) px, output 1×2, sampling_ratio 1, aligned:
    # y: 0*0.5 - 0.5 = -0.5, height 2 cells, one bin: sample at -0.5 + 1 = 0.5.
    # x: 2*0.5 - 0.5 = 0.5, width 3 cells, two bins of 1.5: samples at 0.5 + 0.75 = 1.25 and
    # 0.5 + 2.25 = 2.75. Values: 10*0.5 + 1.25 = 6.25 and 10*0.5 + 2.75 = 7.75.
    got = roi.roi_align(GRID, np.array([[0.0, 2.0, 4.0, 8.0]]), (1, 2), 0.5, sampling_ratio=1)
    np.testing.assert_allclose(got[0, 0, :, 0], [6.25, 7.75])
    # A box hanging off the top: (-4, 0, 0, 2) px at scale 1, 1×1, sampling_ratio 2.
    # y from -4.5, height 4: samples at -3.5 (-> 0, beyond -1) and -1.5 (-> 0);
    # x from -0.5, width 2: samples at 0 and 1. All four samples read 0 -> output 0.
    got = roi.roi_align(GRID, np.array([[-4.0, 0.0, 0.0, 2.0]]), 1, 1.0, sampling_ratio=2)
    assert got[0, 0, 0, 0] == 0.0
    # (-2, 0, 0, 2): y from -2.5, height 2: samples at -2 (zero) and -1 (clamped to row 0):
    # the clamped ones read 10*0 + x with x in {0, 1}; mean of (0, 0, 0, 1) = 0.25.
    got = roi.roi_align(GRID, np.array([[-2.0, 0.0, 0.0, 2.0]]), 1, 1.0, sampling_ratio=2)
    np.testing.assert_allclose(got[0, 0, 0, 0], 0.25)


def test_roi_align_sample_points_layout():
    ys, xs = roi.roi_align_sample_points(np.array([[0.0, 0.0, 8.0, 4.0]]), (2, 1), 0.5,
                                         sampling_ratio=2)
    # y: from -0.5, 4 cells, 2 bins of 2: samples -0.5 + {0.5, 1.5, 2.5, 3.5}.
    np.testing.assert_allclose(ys[0], [[0.0, 1.0], [2.0, 3.0]])
    # x: from -0.5, 2 cells, 1 bin: samples -0.5 + {0.5, 1.5}.
    np.testing.assert_allclose(xs[0], [[0.0, 1.0]])


def _crop_and_resize(features, norm_boxes, size):
    out = tf.image.crop_and_resize(features[None].astype(np.float32), norm_boxes.astype(np.float32),
                                   np.zeros(len(norm_boxes), np.int32), size)
    return out.numpy()


def _inner_boxes(rng, n, feat_side, scale):
    # Boxes whose samples all land inside [0, side-1], where crop_and_resize and RoIAlign share
    # the same border-free bilinear rule.
    img = feat_side / scale
    y1 = rng.uniform(0.6 * 1 / scale, img * 0.4, size=(n, 2))
    size = rng.uniform(1.5 / scale, img * 0.45, size=(n, 2))
    return np.concatenate([y1, y1 + size], axis=1)


def test_roi_align_unaligned_matches_crop_and_resize():
    """aligned=False, sampling_ratio=1 against tf.image.crop_and_resize.

    RoIAlign (aligned=False, one sample per bin) samples bin i of a box at
        y_i = y1*s + (i + 0.5) * bh / h,   bh = max((y2 - y1)*s, 1),
    on the feature grid. crop_and_resize with normalised box (ny1, ny2) samples crop row i at
        ny1*(H-1) + i * (ny2 - ny1) * (H-1) / (h - 1).
    Equal for every i when ny1*(H-1) = y_0 and ny2*(H-1) = y_{h-1}, i.e.
        ny1 = (y1*s + 0.5*bh/h) / (H-1),  ny2 = (y1*s + (h - 0.5)*bh/h) / (H-1),
    and the same for x with W. (Only away from the border: crop_and_resize puts 0 outside
    [0, H-1] where RoIAlign clamps, so the boxes here keep every sample inside.)
    """
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(12, 10, 3))
    scale, (h, w) = 0.25, (3, 4)
    boxes = _inner_boxes(rng, 20, 9, scale)
    s_box = boxes * scale
    bh = np.maximum(s_box[:, 2] - s_box[:, 0], 1.0)
    bw = np.maximum(s_box[:, 3] - s_box[:, 1], 1.0)
    H, W = feats.shape[:2]
    norm = np.stack([(s_box[:, 0] + 0.5 * bh / h) / (H - 1),
                     (s_box[:, 1] + 0.5 * bw / w) / (W - 1),
                     (s_box[:, 0] + (h - 0.5) * bh / h) / (H - 1),
                     (s_box[:, 1] + (w - 0.5) * bw / w) / (W - 1)], axis=1)
    expected = _crop_and_resize(feats, norm, (h, w))
    got = roi.roi_align(feats, boxes, (h, w), scale, sampling_ratio=1, aligned=False)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_roi_align_aligned_matches_crop_and_resize_then_average():
    """aligned=True, sampling_ratio=2: crop_and_resize to (2h, 2w) at the sample points, then
    average 2×2 blocks. Samples: y_t = y1*s - 0.5 + (t + 0.5) * step, step = (y2-y1)*s/(2h),
    t = 0 .. 2h-1; first and last divided by (H-1) give the normalised box."""
    rng = np.random.default_rng(2)
    feats = rng.normal(size=(16, 16, 2))
    scale, out = 0.5, 3
    boxes = _inner_boxes(rng, 15, 15, scale) + 1.0
    n = 2 * out
    s_box = boxes * scale - 0.5
    step = (s_box[:, 2:] - s_box[:, :2]) / n
    first = s_box[:, :2] + 0.5 * step
    last = s_box[:, :2] + (n - 0.5) * step
    norm = np.concatenate([first, last], axis=1) / 15.0
    crops = _crop_and_resize(feats, norm, (n, n))
    expected = crops.reshape(-1, out, 2, out, 2, 2).mean(axis=(2, 4))
    got = roi.roi_align(feats, boxes, out, scale, sampling_ratio=2, aligned=True)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_roi_align_constant_map_gives_constant_inside():
    feats = np.full((8, 8, 1), 3.0)
    got = roi.roi_align(feats, np.array([[2.0, 3.0, 20.0, 25.0]]), 7, 0.25)
    np.testing.assert_allclose(got, 3.0)


def test_roi_align_moves_with_subpixel_shift_roi_pool_does_not():
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(16, 16, 4))
    box = np.array([[40.0, 48.0, 150.0, 170.0]])
    shifted = box + 0.25  # a quarter of an image pixel, 1/64 of a cell at stride 16
    np.testing.assert_array_equal(roi.roi_pool(feats, box, 7, 1 / 16),
                                  roi.roi_pool(feats, shifted, 7, 1 / 16))
    assert not np.allclose(roi.roi_align(feats, box, 7, 1 / 16),
                           roi.roi_align(feats, shifted, 7, 1 / 16))


def test_roi_align_bad_input_messages():
    with pytest.raises(ValueError, match="features"):
        roi.roi_align(np.zeros((4, 4)), np.zeros((1, 4)), 2, 1.0)
    with pytest.raises(ValueError, match=r"boxes\[None\]"):
        roi.roi_align(GRID, np.zeros(4), 2, 1.0)
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi.roi_align(GRID, np.zeros((1, 4)), 2, 1.0, sampling_ratio=0)
    with pytest.raises(ValueError, match="output_size"):
        roi.roi_align(GRID, np.zeros((1, 4)), 0, 1.0)


def test_roi_align_no_boxes():
    assert roi.roi_align(GRID, np.zeros((0, 4)), (2, 3), 1.0).shape == (0, 2, 3, 1)
    assert roi.roi_pool(GRID, np.zeros((0, 4)), (2, 3), 1.0).shape == (0, 2, 3, 1)


# ---------------------------------------------------------------------------- roi_pool

def test_roi_pool_hand_worked():
    # Stride 2 (scale 0.5), box (1.2, 0.9, 7.4, 6.2) px -> (0.6, 0.45, 3.7, 3.1) cells,
    # rounded half-up to rows [1, 4), columns [0, 3): 3×3 cells. Output 2×2, bins of 1.5 cells:
    # rows: bin 0 [1 + floor(0), 1 + ceil(1.5)) = [1, 3); bin 1 [1 + floor(1.5), 1 + ceil(3)) = [2, 4)
    # cols: bin 0 [0, 2); bin 1 [1, 3). Max of 10r + c is at the bin's last row and column:
    # (0,0): 10*2 + 1 = 21, (0,1): 22, (1,0): 31, (1,1): 32.
    box = np.array([[1.2, 0.9, 7.4, 6.2]])
    rows, cols = roi.roi_pool_bins(box, 2, 0.5)
    np.testing.assert_array_equal(rows[0], [[1, 3], [2, 4]])
    np.testing.assert_array_equal(cols[0], [[0, 2], [1, 3]])
    np.testing.assert_allclose(roi.roi_pool(GRID, box, 2, 0.5)[0, :, :, 0], [[21, 22], [31, 32]])


def test_roi_pool_rounding_half_up_and_min_one_cell():
    # 0.5 rounds up to 1, 2.49 down to 2; a box thinner than a cell still gets one cell.
    rows, cols = roi.roi_pool_bins(np.array([[0.5, 2.49, 0.6, 2.5]]), 1, 1.0)
    np.testing.assert_array_equal(rows[0], [[1, 2]])
    np.testing.assert_array_equal(cols[0], [[2, 3]])


def test_roi_pool_hand_worked_uneven_bins_and_clipping():
    # A 7×5 map of 10r + c, scale 1, box (0, 0, 7, 5): rounded box rows [0, 7), cols [0, 5).
    # Output 3×2: a row bin is 7/3 cells: bin 0 [floor(0), ceil(7/3)) = [0, 3),
    # bin 1 [floor(7/3), ceil(14/3)) = [2, 5), bin 2 [floor(14/3), ceil(21/3)) = [4, 7);
    # a column bin is 5/2 cells: bin 0 [0, ceil(2.5)) = [0, 3), bin 1 [floor(2.5), 5) = [2, 5).
    # The max of 10r + c sits at a bin's last row and column: row 2, 4, 6; column 2, 4.
    feats = (10.0 * np.arange(7)[:, None] + np.arange(5)[None, :])[..., None]
    box = np.array([[0.0, 0.0, 7.0, 5.0]])
    rows, cols = roi.roi_pool_bins(box, (3, 2), 1.0)
    np.testing.assert_array_equal(rows[0], [[0, 3], [2, 5], [4, 7]])
    np.testing.assert_array_equal(cols[0], [[0, 3], [2, 5]])
    np.testing.assert_array_equal(roi.roi_pool(feats, box, (3, 2), 1.0)[0, ..., 0],
                                  [[22, 24], [42, 44], [62, 64]])
    # Half off the map: box (-2.6, 3.4, 2.4, 9.0) px at scale 1 rounds to rows [-3, 2),
    # cols [3, 9). One 1×2 output: rows [-3, 2) clip to [0, 2); column bins of 3 cells:
    # [3, 6) -> [3, 5) after clipping to the 5 columns, and [6, 9), wholly off the map -> 0.
    # Max over rows 0-1, columns 3-4 is 10*1 + 4 = 14.
    box = np.array([[-2.6, 3.4, 2.4, 9.0]])
    rows, cols = roi.roi_pool_bins(box, (1, 2), 1.0)
    np.testing.assert_array_equal(rows[0], [[-3, 2]])
    np.testing.assert_array_equal(cols[0], [[3, 6], [6, 9]])
    np.testing.assert_array_equal(roi.roi_pool(feats, box, (1, 2), 1.0)[0, 0, :, 0], [14, 0])


def _pool_bins_exact(lo_px: float, hi_px: float, n_bins: int, scale: float) -> list[tuple]:
    """RoIPool's bins on one axis from the definition, in exact rational arithmetic: edges
    rounded half-up to cells, at least one cell, bin i = [floor(i*size/n), ceil((i+1)*size/n))."""
    start = math.floor(Fraction(lo_px) * Fraction(scale) + Fraction(1, 2))
    end = math.floor(Fraction(hi_px) * Fraction(scale) + Fraction(1, 2))
    size = max(end - start, 1)
    return [(start + math.floor(Fraction(i * size, n_bins)),
             start + math.ceil(Fraction((i + 1) * size, n_bins))) for i in range(n_bins)]


@settings(max_examples=30, deadline=None)
@given(boxes=S.boxes(min_boxes=1, max_boxes=4, max_coord=60.0, max_side=60.0),
       out=st.tuples(st.integers(1, 7), st.integers(1, 7)),
       scale=st.sampled_from([1.0, 0.5, 0.25]), data=st.data())
def test_roi_pool_equals_the_definition_on_slices(boxes, out, scale, data):
    # Oracle: bins from the definition in exact arithmetic, and NumPy max over plain slices.
    boxes = boxes - 8.0   # some boxes hang off the top or left of the map
    feats = data.draw(st.lists(st.integers(-50, 50), min_size=9 * 13 * 2, max_size=9 * 13 * 2)
                      .map(lambda v: np.array(v, float).reshape(9, 13, 2)), label="features")
    got = roi.roi_pool(feats, boxes, out, scale)
    for n, (y1, x1, y2, x2) in enumerate(boxes.tolist()):
        for i, (r0, r1) in enumerate(_pool_bins_exact(y1, y2, out[0], scale)):
            for j, (c0, c1) in enumerate(_pool_bins_exact(x1, x2, out[1], scale)):
                patch = feats[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)]
                want = patch.max(axis=(0, 1)) if patch.size else np.zeros(2)
                np.testing.assert_array_equal(got[n, i, j], want)


@pytest.mark.parametrize("size, n_bins", [(29, 7), (58, 14), (122, 14)])
def test_roi_pool_bins_are_exact_where_floats_round_up(size, n_bins):
    # 7 * (29 / 7) is 29.000000000000004 in floating point: its ceil would end the last bin one
    # cell past the box; 7 * (122 / 14) is 60.99999999999999: its floor would start bin 7 one
    # cell early. Bins from whole-number arithmetic are exact: the first starts at 0, the last
    # ends at size, and each is the definition's.
    rows, _ = roi.roi_pool_bins(np.array([[0.0, 0.0, float(size), 1.0]]), (n_bins, 1), 1.0)
    assert rows[0, 0, 0] == 0 and rows[0, -1, 1] == size
    assert [tuple(r) for r in rows[0]] == _pool_bins_exact(0.0, float(size), n_bins, 1.0)


def test_roi_pool_empty_bins_give_zero():
    # Box wholly below the map: every bin is empty after clipping.
    got = roi.roi_pool(GRID + 100.0, np.array([[10.0, 0.0, 14.0, 4.0]]), 2, 1.0)
    np.testing.assert_array_equal(got, 0.0)


# --------------------------------------------------------------------------- fpn_level

def _square(side):
    return np.array([[0.0, 0.0, side, side]])


@pytest.mark.parametrize("side, level", [(224, 4), (112, 3), (448, 5), (2, 2), (5000, 5),
                                         (223.9, 3), (56, 2), (0, 2)])
def test_fpn_level_by_side(side, level):
    assert roi.fpn_level(_square(side))[0] == level


def test_fpn_level_uses_geometric_mean_side():
    # 112 × 448: sqrt(112*448) = 224 -> level 4, like a 224 square.
    assert roi.fpn_level(np.array([[0.0, 0.0, 112.0, 448.0]]))[0] == 4


@settings(max_examples=40, deadline=None)
@given(side=st.floats(16.0, 800.0), k0=st.integers(3, 5))
def test_fpn_level_doubling_moves_one_level_up(side, k0):
    lo = roi.fpn_level(_square(side), k0=k0, min_level=-20, max_level=20)[0]
    hi = roi.fpn_level(_square(2 * side), k0=k0, min_level=-20, max_level=20)[0]
    assert hi == lo + 1
    assert roi.fpn_level(_square(side), k0=k0, min_level=3, max_level=4)[0] in (3, 4)


def test_fpn_level_ops_matches_numpy():
    rng = np.random.default_rng(5)
    boxes = np.concatenate([np.zeros((50, 2)), np.exp(rng.uniform(0, 7, (50, 2)))], 1)
    boxes = np.concatenate([boxes, _square(224), _square(112), _square(448)])
    got = np.asarray(roi.fpn_level_ops(boxes[None]))[0]
    np.testing.assert_array_equal(got, roi.fpn_level(boxes))


# --------------------------------------------------------------- multi-level, keras twins

def _random_boxes(rng, n, side):
    corner = rng.uniform(-10, side, (n, 2))
    size = np.exp(rng.uniform(np.log(2), np.log(side), (n, 2)))
    return np.concatenate([corner, corner + size], 1)


def test_multilevel_picks_the_level_of_each_box():
    rng = np.random.default_rng(6)
    pyramid = [rng.normal(size=(64 // 2**i, 64 // 2**i, 2)) for i in range(4)]
    boxes = np.array([[0, 0, 20, 20], [10, 10, 130, 140], [0, 0, 250, 256]], float)
    got = roi.multilevel_roi_align(pyramid, boxes, 3)
    for n, level in enumerate(roi.fpn_level(boxes)):
        want = roi.roi_align(pyramid[level - 2], boxes[n:n + 1], 3, 1 / 2**level)
        np.testing.assert_allclose(got[n:n + 1], want)
    with pytest.raises(ValueError, match="strides"):
        roi.multilevel_roi_align(pyramid, boxes, 3, strides=(4, 8))


@pytest.mark.parametrize("aligned, sampling_ratio, out", [(True, 2, 7), (False, 1, (3, 5)),
                                                          (True, 3, (2, 2))])
def test_roi_align_ops_matches_reference(aligned, sampling_ratio, out):
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(2, 11, 9, 5))
    boxes = np.stack([_random_boxes(rng, 13, 40) for _ in range(2)])
    got = np.asarray(roi.roi_align_ops(feats, boxes, out, 0.25, sampling_ratio=sampling_ratio,
                                       aligned=aligned))
    for b in range(2):
        want = roi.roi_align(feats[b], boxes[b], out, 0.25, sampling_ratio=sampling_ratio,
                             aligned=aligned)
        np.testing.assert_allclose(got[b], want, atol=1e-4)


def _pretend_gpu(monkeypatch, visible: bool):
    from course_lib import config

    monkeypatch.setattr(config, "gpu_devices", lambda: ("/physical_device:GPU:0",) if visible
                        else ())


@pytest.mark.parametrize("gpu", [False, True])
def test_the_gather_chunk_follows_the_device(gpu, monkeypatch):
    _pretend_gpu(monkeypatch, gpu)
    assert roi.gather_chunk_bytes() == (2**30 if gpu else 4 * 2**20)


@pytest.mark.parametrize("gpu", [False, True])
def test_multilevel_roi_align_ops_matches_reference(gpu, monkeypatch):
    # On the CPU, chunks of 3 boxes (not a divisor of 80), so the gather crosses chunk edges;
    # with a GPU visible, all 80 boxes in one step, not padded up to 1 GiB.
    import keras

    _pretend_gpu(monkeypatch, gpu)
    monkeypatch.setattr(roi, "GATHER_CHUNK_BYTES", 3 * 49 * 16 * 3 * 4)
    chunks = []   # (steps, boxes per step) of every ops.map call
    map_ = keras.ops.map
    monkeypatch.setattr(keras.ops, "map", lambda f, xs: chunks.append(tuple(xs[0].shape[:2]))
                        or map_(f, xs))
    rng = np.random.default_rng(8)
    pyramid = [rng.normal(size=(2, 64 // 2**i, 48 // 2**i, 3)) for i in range(4)]
    boxes = np.stack([_random_boxes(rng, 40, 500) for _ in range(2)])
    got = np.asarray(roi.multilevel_roi_align_ops(pyramid, boxes, 7))
    for b in range(2):
        want = roi.multilevel_roi_align([p[b] for p in pyramid], boxes[b], 7)
        np.testing.assert_allclose(got[b], want, atol=1e-4)
    assert len(set(roi.fpn_level(boxes.reshape(-1, 4)))) >= 3  # the test spans levels
    assert chunks == [(1, 80) if gpu else (27, 3)]


@pytest.mark.parametrize("scatter_boxes", [1, 7, 1000])
def test_multilevel_roi_align_gradient_is_the_reference_transposed(scatter_boxes, monkeypatch):
    # RoIAlign is linear in the maps, out = A·F, so for any direction E the gradient g of
    # sum(w · out) satisfies <g, E> = sum(w · A·E): the NumPy reference applied to E is the
    # oracle. The written-out backward scatters 1, 7 (not a divisor of 20) or all boxes per
    # step; the forward gathers 3 at a time.
    import tensorflow as tf

    monkeypatch.setattr(roi, "GATHER_CHUNK_BYTES", 3 * 9 * 16 * 2 * 4)
    monkeypatch.setattr(roi, "SCATTER_CHUNK_BYTES", scatter_boxes * 9 * 16 * 2 * 4)
    rng = np.random.default_rng(9)
    pyramid = [tf.constant(rng.normal(size=(1, 32 // 2**i, 32 // 2**i, 2)), tf.float32)
               for i in range(4)]
    boxes = _random_boxes(rng, 20, 250)[None]
    w = rng.normal(size=(1, 20, 3, 3, 2))
    direction = [rng.normal(size=p.shape) for p in pyramid]
    want = float(np.sum(w[0] * roi.multilevel_roi_align([d[0] for d in direction], boxes[0], 3)))
    with tf.GradientTape() as tape:
        tape.watch(pyramid)
        out = roi.multilevel_roi_align_ops(pyramid, boxes, 3)
        total = tf.reduce_sum(tf.constant(w, tf.float32) * out)
    grads = tape.gradient(total, pyramid)
    got = sum(float(np.sum(np.asarray(g) * d)) for g, d in zip(grads, direction, strict=True))
    assert got == pytest.approx(want, rel=1e-4, abs=1e-4)


def test_roi_align_gradient_into_the_boxes_matches_finite_differences():
    # The written-out backward also returns the gradient into the sampling weights, which
    # carries on into the box coordinates. Oracle: central differences of the float64 NumPy
    # reference (bilinear sampling is linear between cell centres, so a small step that
    # crosses no centre gives the exact slope; the boxes are chosen to sit between centres).
    import tensorflow as tf

    rng = np.random.default_rng(10)
    fmap = rng.normal(size=(1, 12, 12, 2))
    # Edges at x.3 cells (stride 1, aligned): every sample point is 0.05+ from a centre.
    boxes = np.array([[[1.3, 2.3, 7.3, 9.3], [4.3, 0.3, 10.3, 5.3]]])
    w = rng.normal(size=(1, 2, 3, 3, 2))

    def total(b):
        return float(np.sum(w[0] * roi.roi_align(fmap[0], b, 3, 1.0, sampling_ratio=2)))

    eps = 1e-3
    want = np.zeros_like(boxes[0])
    for i in range(2):
        for j in range(4):
            up, down = boxes[0].copy(), boxes[0].copy()
            up[i, j] += eps
            down[i, j] -= eps
            want[i, j] = (total(up) - total(down)) / (2 * eps)
    tb = tf.constant(boxes, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(tb)
        out = roi.roi_align_ops(tf.constant(fmap, tf.float32), tb, 3, 1.0, sampling_ratio=2)
        loss = tf.reduce_sum(tf.constant(w, tf.float32) * out)
    got = np.asarray(tape.gradient(loss, tb))[0]
    assert np.abs(want).max() > 0.1            # the boxes do move the output
    np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-3)


# ------------------------------------------------------------------- the exercise checks

def test_exercise_checks_accept_the_library_and_reject_classic_mistakes(capsys):
    from course_lib import exercises

    assert exercises.check_bilinear_point(
        lambda f, y, x: float(roi.bilinear_sample(f[..., None], y, x)[0]))
    assert exercises.check_roi_align_box(
        lambda f, b, size, s, sr: roi.roi_align(f[..., None], b[None], size, s,
                                                sampling_ratio=sr)[0, ..., 0])
    assert exercises.check_fpn_level(roi.fpn_level)

    def no_border_rule(f, y, x):  # clamps everything, never returns 0 beyond the -1 band
        return float(roi.bilinear_sample(f[..., None], np.clip(y, 0, f.shape[0] - 1),
                                         np.clip(x, 0, f.shape[1] - 1))[0])

    with pytest.raises(exercises.ExerciseFailed, match="case 6"):
        exercises.check_bilinear_point(no_border_rule)

    def unaligned(f, b, size, s, sr):  # forgets the half-pixel shift
        out = roi.roi_align(f[..., None], b[None], size, s, sampling_ratio=sr, aligned=False)
        return out[0, ..., 0]

    with pytest.raises(exercises.ExerciseFailed, match="case 1"):
        exercises.check_roi_align_box(unaligned)

    def rounded(b):  # rounds instead of flooring: 223 px would go to P4
        side = np.sqrt((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
        with np.errstate(divide="ignore"):
            return np.clip(np.round(4 + np.log2(side / 224 + 1e-6)), 2, 5).astype(int)

    with pytest.raises(exercises.ExerciseFailed):
        exercises.check_fpn_level(rounded)
    capsys.readouterr()


def test_ops_twins_accept_zero_boxes():
    feats = np.ones((2, 8, 8, 3))
    out = np.asarray(roi.roi_align_ops(feats, np.zeros((2, 0, 4)), 3, 0.5))
    assert out.shape == (2, 0, 3, 3, 3)
    pyramid = [np.ones((1, 16 // 2**i, 16 // 2**i, 3)) for i in range(4)]
    assert np.asarray(roi.multilevel_roi_align_ops(pyramid, np.zeros((1, 0, 4)), 3)).shape == \
        (1, 0, 3, 3, 3)


@settings(max_examples=40, deadline=None)
@given(a=st.floats(-3, 3), b=st.floats(-3, 3), y1=st.floats(2, 20), x1=st.floats(2, 20),
       h=st.floats(0.2, 10), w=st.floats(0.2, 10), sr=st.integers(1, 3),
       out=st.tuples(st.integers(1, 4), st.integers(1, 4)), aligned=st.booleans())
def test_roi_align_of_a_linear_map_is_the_map_at_bin_centres(a, b, y1, x1, h, w, sr, out, aligned):
    # Bilinear interpolation is exact on f(r, c) = a*r + b*c, and averaging symmetric samples
    # gives the bin centre: bin (i, j) of a box inside the map reads
    # a*(y1*s - off + (i + 0.5)*bh) + b*(x1*s - off + (j + 0.5)*bw) (every sample inside the
    # 32×32 map: y1 + h <= 30; thin boxes exercise the one-cell minimum of aligned=False).
    s = 0.5
    rows = cols = 32
    feats = (a * np.arange(rows)[:, None] + b * np.arange(cols)[None, :])[..., None]
    box = np.array([[y1, x1, y1 + h, x1 + w]]) / s   # image pixels; on the grid: [y1, y1 + h]
    off = 0.5 if aligned else 0.0
    bh, bw = h / out[0], w / out[1]
    if not aligned:
        bh, bw = max(h, 1.0) / out[0], max(w, 1.0) / out[1]
    cy = y1 - off + (np.arange(out[0]) + 0.5) * bh
    cx = x1 - off + (np.arange(out[1]) + 0.5) * bw
    want = a * cy[:, None] + b * cx[None, :]
    got = roi.roi_align(feats, box, out, s, sampling_ratio=sr, aligned=aligned)[0, ..., 0]
    np.testing.assert_allclose(got, want, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(dy=st.integers(-3, 3), dx=st.integers(-3, 3),
       values=st.lists(st.integers(-20, 20), min_size=24 * 24 * 2, max_size=24 * 24 * 2))
def test_roi_align_and_pool_are_equivariant_to_whole_cell_shifts(dy, dx, values):
    # Rolling the map by (dy, dx) cells and moving the box by (dy, dx) * stride pixels changes
    # nothing, for both methods, as long as the box stays well inside.
    feats = np.array(values, float).reshape(24, 24, 2)
    stride = 4.0
    box = np.array([[30.3, 33.7, 57.1, 61.9]])
    moved_feats = np.roll(feats, (dy, dx), axis=(0, 1))
    moved_box = box + stride * np.array([dy, dx, dy, dx])
    for op in (lambda f, bx: roi.roi_align(f, bx, 5, 1 / stride),
               lambda f, bx: roi.roi_pool(f, bx, 5, 1 / stride)):
        np.testing.assert_allclose(op(moved_feats, moved_box), op(feats, box), atol=1e-12)
