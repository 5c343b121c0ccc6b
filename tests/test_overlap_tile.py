"""Overlap-tile prediction equals whole-image prediction for translation-equivariant models."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course_lib.models import unet
from course_lib.models.overlap_tile import model_tile_sizes, overlap_tile_predict, tile_origins


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), st.integers(1, 25))
def test_tiles_cover_every_pixel_once(h, w, tile):
    count = np.zeros((h + tile, w + tile), int)
    for y, x in tile_origins((h, w), tile):
        count[y:y + tile, x:x + tile] += 1
    assert (count[:h, :w] == 1).all()


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 60), st.integers(1, 60), st.integers(2, 20), st.integers(0, 6))
def test_identity_crop_model_reproduces_the_image(h, w, tile_out, margin):
    rng = np.random.default_rng(h * 100 + w)
    image = rng.random((h, w, 2)).astype(np.float32)
    tile_in = tile_out + 2 * margin

    def crop_centre(batch):  # a "valid" model that returns its input's centre
        return batch[:, margin:margin + tile_out, margin:margin + tile_out]

    np.testing.assert_array_equal(overlap_tile_predict(crop_centre, image, tile_in, tile_out),
                                  image)


def test_linear_valid_conv_model_tiled_equals_whole():
    # two valid 3x3 convolutions: margin 2, output tile = input tile - 4
    rng = np.random.default_rng(0)
    image = rng.random((37, 50, 1)).astype(np.float32)

    def model_for(side_h, side_w):
        inp = keras.Input((side_h, side_w, 1))
        x = keras.layers.Conv2D(3, 3, name="c1")(inp)
        x = keras.layers.Conv2D(2, 3, name="c2")(x)
        return keras.Model(inp, x)

    tiled_model = model_for(20, 20)
    whole_model = model_for(37 + 4, 50 + 4)
    whole_model.set_weights(tiled_model.get_weights())
    tiled = overlap_tile_predict(lambda b: tiled_model.predict(b, verbose=0), image, 20, 16)
    padded = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    whole = whole_model.predict(padded[None], verbose=0)[0]
    assert tiled.shape == (37, 50, 2)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_valid_unet_depth2_tiled_equals_whole():
    # depth 2: output tiles of 52 are multiples of 2**2, so the pooling grids line up and the
    # tiled prediction is exactly the whole-image one (same weights, larger static input)
    tile_model = unet.paper_unet(input_size=92, base_filters=4, depth=2)
    assert model_tile_sizes(tile_model) == (92, 52)
    h, w = 100, 70                                  # 2 × 2 tiles, the last ones sticking out
    big_in = 2 * 52 + 40                            # 144 -> 104 = 2 output tiles
    whole_model = unet.paper_unet(input_size=big_in, base_filters=4, depth=2)
    whole_model.set_weights(tile_model.get_weights())
    image = np.random.default_rng(1).random((h, w, 1)).astype(np.float32)
    tiled = overlap_tile_predict(lambda b: tile_model.predict(b, verbose=0), image, 92, 52)
    padded = np.pad(image, ((20, 20 + 104 - h), (20, 20 + 104 - w), (0, 0)), mode="reflect")
    whole = whole_model.predict(padded[None], verbose=0)[0, :h, :w]
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_same_padding_model_keeps_the_centre():
    rng = np.random.default_rng(2)
    image = rng.random((30, 41, 1)).astype(np.float32)
    # a same-size "model" that marks its border: only the centre must reach the output
    def same_model(batch):
        out = batch.copy()
        out[:, :3], out[:, -3:], out[:, :, :3], out[:, :, -3:] = -1, -1, -1, -1
        return out
    got = overlap_tile_predict(same_model, image, 16, 10)
    np.testing.assert_array_equal(got, image)


def test_bad_tile_sizes_are_named():
    with pytest.raises(ValueError, match="even"):
        overlap_tile_predict(lambda b: b, np.zeros((8, 8)), 9, 4)
    with pytest.raises(ValueError, match="predict_fn returned"):
        overlap_tile_predict(lambda b: b[:, :3, :3], np.zeros((8, 8)), 8, 4)
    same = unet.same_unet((None, None, 1), base_filters=2, depth=1)
    with pytest.raises(ValueError, match="fixed input size"):
        model_tile_sizes(same)
    fixed = unet.same_unet((32, 32, 1), base_filters=2, depth=1)
    assert model_tile_sizes(fixed, margin=4) == (32, 24)  # 4 px dropped on each side
    with pytest.raises(ValueError, match="margin"):
        model_tile_sizes(fixed)


def _by_hand(predict_fn, image, tile_in, tile_out, pad_mode="reflect", stride=None):
    """An overlap-tile written out tile by tile (one tile per call), as a learner would."""
    m = (tile_in - tile_out) // 2
    h, w = image.shape[:2]
    stride = stride or tile_out
    rows, cols = -(-h // tile_out), -(-w // tile_out)
    padded = np.pad(image, ((m, m + rows * tile_out - h + tile_out),
                            (m, m + cols * tile_out - w + tile_out), (0, 0)), mode=pad_mode)
    out = np.zeros((rows * tile_out + tile_out, cols * tile_out + tile_out, 1))
    for y in range(0, h, stride):
        for x in range(0, w, stride):
            out[y:y + tile_out, x:x + tile_out] = predict_fn(padded[None, y:y + tile_in,
                                                                    x:x + tile_in])[0]
    return out[:h, :w]


def test_exercise_check_accepts_a_correct_tiling_and_names_the_broken_part(capsys):
    from course_lib import exercises

    assert exercises.check_overlap_tile(_by_hand)
    cases = [
        (lambda f, im, a, b: _by_hand(f, im, a, b, pad_mode="constant"), "mirrored context"),
        (lambda f, im, a, b: _by_hand(f, im, a, b, stride=b // 2), "the tiles fed to the net"),
        (lambda f, im, a, b: _by_hand(f, im, a, b)[:-1], "the output's shape"),
        # every tile taken one pixel too far right: the interior is off
        (lambda f, im, a, b: _by_hand(f, np.pad(im, ((0, 0), (0, 1), (0, 0)), mode="reflect")
                                      [:, 1:], a, b), "interior pixels"),
    ]
    for broken, part in cases:
        with pytest.raises(exercises.ExerciseFailed, match=part):
            exercises.check_overlap_tile(broken)
    assert "the part that failed is" in capsys.readouterr().out


def test_paper_tile_sizes_give_the_92_px_margin():
    # the paper's net: 572-px input tiles, 388-px output tiles, 92 px of context per side
    seen = []

    def centre(batch):
        seen.append(batch.shape[1:3])
        return batch[:, 92:92 + 388, 92:92 + 388]

    image = np.random.default_rng(0).random((400, 500, 1)).astype(np.float32)
    out = overlap_tile_predict(centre, image, 572, 388, batch_size=2)
    np.testing.assert_array_equal(out, image)        # the centres reassemble the image
    assert set(seen) == {(572, 572)} and len(tile_origins((400, 500), 388)) == 4
