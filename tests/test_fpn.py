"""Tests of course_lib.layers.fpn: pyramid shapes, the merge against NumPy, parameter counts."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from course_lib.layers import fpn


def test_p2_to_p6_shapes_for_512_light():
    model = fpn.build_backbone("light", (512, 512, 3))
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    # 512 / 4, 8, 16, 32, 64
    assert shapes == [(128, 128, 256), (64, 64, 256), (32, 32, 256), (16, 16, 256), (8, 8, 256)]
    assert [(r["height"], r["width"], r["channels"]) for r in fpn.fpn_shapes(512)] == \
        [s for s in shapes]


def test_resnet50_fpn_shapes_and_parameter_count():
    model = fpn.build_backbone("resnet50", (512, 512, 3))
    assert [tuple(t.shape[1:3]) for t in model.outputs] == [(128, 128), (64, 64), (32, 32),
                                                            (16, 16), (8, 8)]
    assert all(t.shape[-1] == 256 for t in model.outputs)
    # FPN on top of ResNet-50 (23,587,712): laterals (256+512+1024+2048)*256 + 4*256 biases,
    # smoothing 4 * (9*256*256 + 256) -> 983,040 + 1,024 + 2,360,320 = 3,344,384
    assert model.count_params() == 23_587_712 + 3_344_384


def test_fpn_shapes_rectangular_and_rounding():
    table = fpn.fpn_shapes((256, 320))
    assert [(r["level"], r["stride"], r["height"], r["width"]) for r in table] == [
        ("P2", 4, 64, 80), ("P3", 8, 32, 40), ("P4", 16, 16, 20), ("P5", 32, 8, 10),
        ("P6", 64, 4, 5)]


def test_top_down_matches_numpy_reference():
    """Set laterals and smoothing to identities: the P-levels are the NumPy top-down sums."""
    rng = np.random.default_rng(0)
    ch = 4
    shapes = [(16, 16), (8, 8), (4, 4), (2, 2)]
    inputs = [keras.Input((h, w, ch)) for h, w in shapes]
    model = keras.Model(inputs, fpn.top_down(inputs, channels=ch))
    eye1 = np.eye(ch).reshape(1, 1, ch, ch)
    eye3 = np.zeros((3, 3, ch, ch))
    eye3[1, 1] = np.eye(ch)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            k = eye1 if layer.kernel.shape[0] == 1 else eye3
            layer.set_weights([k, np.zeros(ch)])
    cs = [rng.normal(size=(1, h, w, ch)).astype("float32") for h, w in shapes]
    p2, p3, p4, p5, p6 = (np.asarray(t) for t in model(cs))

    def up(m):  # nearest ×2 written out with np.repeat: independent of the library's merge
        return np.repeat(np.repeat(m, 2, axis=1), 2, axis=2)

    m5 = cs[3]
    m4 = up(m5) + cs[2]
    m3 = up(m4) + cs[1]
    m2 = up(m3) + cs[0]
    for got, want in ((p5, m5), (p4, m4), (p3, m3), (p2, m2), (p6, m5[:, ::2, ::2])):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_upsample_add_hand_worked():
    higher = np.array([[1.0, 2.0], [3.0, 4.0]])[..., None]
    lateral = np.ones((4, 4, 1))
    expected = np.array([[2, 2, 3, 3], [2, 2, 3, 3], [4, 4, 5, 5], [4, 4, 5, 5]], float)[..., None]
    np.testing.assert_array_equal(fpn.upsample_add(higher, lateral), expected)
    with pytest.raises(ValueError, match="twice"):
        fpn.upsample_add(higher, np.ones((3, 4, 1)))


def test_light_backbone_runs_and_is_frozen():
    model = fpn.build_backbone("light", (64, 64, 3), channels=32)
    out = model(np.zeros((2, 64, 64, 3), "float32"))
    assert [tuple(o.shape) for o in out] == [(2, 16, 16, 32), (2, 8, 8, 32), (2, 4, 4, 32),
                                             (2, 2, 2, 32), (2, 1, 1, 32)]
    backbone = model.get_layer("backbone")
    assert all(not lay.trainable for lay in backbone.layers
               if isinstance(lay, keras.layers.BatchNormalization))


def test_bad_backbone_arguments():
    with pytest.raises(ValueError, match="divisible by 32"):
        fpn.build_backbone("light", (100, 128, 3))
    with pytest.raises(ValueError, match="not known"):
        fpn.build_backbone("vgg16", (128, 128, 3))


def test_light_fpn_layer_contract():
    """The shared contract (tests/layer_contract.py) on the whole light backbone + FPN."""
    from layer_contract import check_layer_contract

    # default light filters: TensorFlow's oneDNN CPU kernels crash (heap corruption) on the
    # gradient of a strided 1x1 conv with only 4-8 channels at batch size 1, not with these
    model = fpn.build_backbone("light", (64, 64, 3), channels=8)
    x = np.random.default_rng(0).normal(size=(1, 64, 64, 3)).astype("float32")
    check_layer_contract(model, x, expected_shapes=[(1, 16, 16, 8), (1, 8, 8, 8), (1, 4, 4, 8),
                                                    (1, 2, 2, 8), (1, 1, 1, 8)])
