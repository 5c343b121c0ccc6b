"""The U-Net against the paper: sizes per level, 572 -> 388, parameter count; the same variant."""

from __future__ import annotations

import textwrap

import keras
import numpy as np
import pytest
from other_backends import OTHER_BACKENDS, run_under_backend

from course_lib.models import unet

# The paper's Fig. 1, read level by level (572×572 input tile, 388×388 output segmentation map)
PAPER_SIDES = [572, 570, 568, 284, 282, 280, 140, 138, 136, 68, 66, 64, 32, 30, 28,
               56, 54, 52, 104, 102, 100, 200, 198, 196, 392, 390, 388]


def test_level_sizes_match_the_papers_figure():
    sides = [s for name, s in unet.unet_level_sizes(572, depth=4) if name != "output"]
    assert sides == PAPER_SIDES
    assert unet.unet_output_size(572, 4) == 388


def test_output_size_closed_form_and_margin():
    # input = 2^d·b + 4(2^d - 1), output = 2^d(b - 4) - 4(2^d - 1) (module docstring)
    for depth in (1, 2, 3, 4, 5):
        for b in (8, 9, 13, 20):
            size_in = 2 ** depth * b + 4 * (2 ** depth - 1)
            expected = 2 ** depth * (b - 4) - 4 * (2 ** depth - 1)
            assert unet.unet_output_size(size_in, depth) == expected
            assert size_in - expected == 12 * 2 ** depth - 8


def test_invalid_sizes_name_the_nearest_valid_one():
    with pytest.raises(ValueError, match="valid_input_size"):
        unet.unet_output_size(570, 4)  # 570 - 4 = 566, /2 = 283, then 283 - 4 = 279 is odd
    with pytest.raises(ValueError, match="too small"):
        unet.unet_output_size(172, 4)  # bottom side 7


def test_valid_input_size():
    # valid sides for depth 4 are 188, 204, ..., 556, 572, 588: 16·b + 60
    assert unet.valid_input_size(572, 4) == 572
    assert unet.valid_input_size(570, 4) == 572   # 2 from 572, 14 from 556
    assert unet.valid_input_size(563, 4) == 556   # 7 from 556, 9 from 572
    assert unet.valid_input_size(564, 4) == 572   # a tie goes up
    assert unet.valid_input_size(565, 4, direction="down") == 556
    assert unet.valid_input_size(557, 4, direction="up") == 572
    assert unet.valid_input_size(10, 4) == unet.min_input_size(4) == 188
    for size in range(150, 700, 7):
        v = unet.valid_input_size(size, 3)
        unet.unet_output_size(v, 3)  # must not raise
    assert unet.input_size_for_output(388, 4) == 572
    assert unet.input_size_for_output(389, 4) == 588


def test_center_crop_takes_the_middle():
    x = np.arange(6 * 6).reshape(1, 6, 6, 1)
    crop = unet.center_crop(x, (2, 2))
    # rows 2..3 and columns 2..3 of the 6×6 ramp: 14, 15, 20, 21
    assert crop[0, ..., 0].tolist() == [[14, 15], [20, 21]]
    # odd difference: the extra row goes at the bottom
    assert unet.center_crop(x, (3, 3))[0, 0, 0, 0] == 7


def test_paper_parameter_count():
    # 64..1024 filters, 1 input channel, 2 classes; k·k·in·out + out per convolution:
    # down:   640 + 36,928 | 73,856 + 147,584 | 295,168 + 590,080 | 1,180,160 + 2,359,808
    # bottom: 4,719,616 + 9,438,208                         (contracting total 18,842,048)
    # up4: 2,097,664 (2×2 up-conv) + 4,719,104 + 2,359,808
    # up3:   524,544 + 1,179,904 + 590,080
    # up2:   131,200 +   295,040 + 147,584
    # up1:    32,832 +    73,792 +  36,928;  1×1 classifier 130  (expanding 12,188,610)
    # total 31,030,658 ≈ the "31 M" usually quoted for the paper's net
    hand = 31_030_658
    assert unet.unet_parameter_count(64, 4, 1, 2) == hand
    model = unet.paper_unet()
    assert model.count_params() == hand
    assert model.input_shape == (None, 572, 572, 1)
    assert model.output_shape == (None, 388, 388, 2)


def test_small_valid_unet_runs_and_skips_are_cropped():
    model = unet.paper_unet(input_size=92, base_filters=4, depth=2)
    # depth 2: 92 -> 88 -> 44 -> 40 -> 20 -> 16 -> 32 -> 28 -> 56 -> 52
    assert model.output_shape == (None, 52, 52, 2)
    assert model.get_layer("up1_crop").output.shape[1:3] == (56, 56)  # 88 cropped to 56
    out = model.predict(np.random.default_rng(0).random((1, 92, 92, 1), np.float32), verbose=0)
    assert out.shape == (1, 52, 52, 2)
    np.testing.assert_allclose(out.sum(-1), 1.0, rtol=1e-5)  # softmax over the classes
    assert unet.unet_parameter_count(4, 2, 1, 2) == model.count_params()


def test_same_variant_keeps_the_size_with_bn_and_dropout():
    model = unet.same_unet((None, None, 3), n_classes=3, base_filters=4, depth=3,
                           final_activation="softmax")
    x = np.random.default_rng(0).random((2, 48, 64, 3), np.float32)
    assert model.predict(x, verbose=0).shape == (2, 48, 64, 3)
    names = [layer.name for layer in model.layers]
    assert any("bn" in n for n in names) and any("dropout" in n for n in names)
    with pytest.raises(ValueError, match="divisible by 8"):
        unet.same_unet((100, 100, 3), depth=3)
    with pytest.raises(ValueError, match="fixed input size"):
        unet.build_unet((None, None, 1), padding="valid")


def test_per_image_standardization_against_numpy_and_contract():
    from layer_contract import check_layer_contract

    x = np.random.default_rng(0).random((2, 8, 9, 3)).astype(np.float32) * 255
    x[1] = 7.0  # a constant image: std 0, so the epsilon keeps it finite (all zeros)
    layer = unet.PerImageStandardization()
    got = keras.ops.convert_to_numpy(layer(x))
    mean = x[0].mean()
    np.testing.assert_allclose(got[0], (x[0] - mean) / x[0].std(), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got[1], 0.0)
    check_layer_contract(layer, x, expected_shapes=[(2, 8, 9, 3)])


@pytest.mark.slow
@pytest.mark.other_backend
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_unet_builds_on_another_backend(backend):
    if backend not in OTHER_BACKENDS:
        pytest.skip(f"{backend} is not installed: the backend test needs it")
    code = textwrap.dedent("""
        import numpy as np, keras
        from course_lib.models import unet
        assert keras.backend.backend() == BACKEND
        m = unet.paper_unet(input_size=92, base_filters=4, depth=2)
        assert m.output_shape == (None, 52, 52, 2), m.output_shape
        s = unet.same_unet((32, 32, 3), base_filters=4, depth=2, rescale="per_image")
        y = s.predict(np.zeros((1, 32, 32, 3), np.float32), verbose=0)
        assert y.shape == (1, 32, 32, 1), y.shape
        print("ok", m.count_params())
    """).replace("BACKEND", repr(backend))
    out = run_under_backend(backend, code, timeout=300)
    assert out.split()[-1] == str(unet.unet_parameter_count(4, 2, 1, 2))


def test_exercise_checks_accept_the_reference_and_reject_usual_mistakes(capsys):
    from course_lib import exercises

    assert exercises.check_unet_output_size(unet.unet_output_size)
    assert exercises.check_center_crop(unet.center_crop)
    with pytest.raises(exercises.ExerciseFailed):
        # forgetting the bottom block's two convolutions: 4·2**d px too many at the output
        exercises.check_unet_output_size(lambda s, d: unet.unet_output_size(s, d) + 4 * 2 ** d)
    with pytest.raises(exercises.ExerciseFailed, match="case 2"):
        # rounding the offset up puts the odd extra row at the top
        exercises.check_center_crop(
            lambda x, hw: x[:, -(-(x.shape[1] - hw[0]) // 2):][:, :hw[0],
                             -(-(x.shape[2] - hw[1]) // 2):][:, :, :hw[1]])
    assert "Hint:" in capsys.readouterr().out


def test_zero_initialised_paper_net_has_the_same_parameters():
    # only the shapes matter for the count; the default build draws random kernels
    zeros = unet.paper_unet(input_size=188, base_filters=8, kernel_initializer="zeros")
    default = unet.paper_unet(input_size=188, base_filters=8)
    assert zeros.count_params() == default.count_params() == unet.unet_parameter_count(8, 4, 1, 2)
    assert all(not np.any(keras.ops.convert_to_numpy(w)) for w in zeros.weights)
    kernel = keras.ops.convert_to_numpy(default.get_layer("down1_conv1").kernel)
    assert np.std(kernel) > 0
