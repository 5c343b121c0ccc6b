"""Tests of course_lib.layers.resnet against keras.applications (counts, outputs, weights)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from course_lib.layers import resnet


@pytest.fixture(scope="module")
def pair50():
    ours = resnet.resnet(50, (64, 64, 3))
    ref = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    return ours, ref


def test_resnet50_parameter_count_equals_keras_applications(pair50):
    ours, ref = pair50
    assert ours.count_params() == ref.count_params() == 23_587_712


def test_resnet50_has_the_same_layers_as_keras_applications(pair50):
    ours, ref = pair50
    ours_layers = [(lay.name, type(lay).__name__) for lay in ours.layers[1:]]
    ref_layers = [(lay.name, type(lay).__name__) for lay in ref.layers[1:]]
    assert ours_layers == ref_layers


def test_resnet101_parameter_count_equals_keras_applications():
    ours = resnet.resnet(101)
    ref = keras.applications.ResNet101(weights=None, include_top=False)
    assert ours.count_params() == ref.count_params() == 42_658_176


def test_c2_to_c5_strides_on_224():
    model = resnet.resnet(50, (224, 224, 3))
    shapes = [tuple(t.shape[1:]) for t in model.outputs]
    # 224 / 4, 8, 16, 32 = 56, 28, 14, 7; channels 4 * (64, 128, 256, 512)
    assert shapes == [(56, 56, 256), (28, 28, 512), (14, 14, 1024), (7, 7, 2048)]


def test_copied_weights_give_identical_outputs(pair50):
    ours, ref = pair50
    rng = np.random.default_rng(0)
    # randomise BN statistics so the test also covers moving mean/variance being copied
    for layer in ref.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(size=b.shape) * 0.1,
                               rng.normal(size=m.shape) * 0.1, rng.uniform(0.5, 1.5, v.shape)])
    assert resnet.copy_weights(ref, ours) == sum(1 for lay in ref.layers if lay.weights)
    x = rng.normal(size=(2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(np.asarray(ours(x)[-1]), np.asarray(ref(x)), atol=1e-4, rtol=1e-4)


def test_copy_weights_refuses_mismatched_models():
    with pytest.raises(ValueError, match="namesake|weight shapes"):
        resnet.copy_weights(resnet.light_resnet(), resnet.resnet(50))


def test_frozen_bn_not_trainable_and_in_inference_mode():
    model = resnet.light_resnet((32, 32, 3), freeze_bn=True)
    bns = [lay for lay in model.layers if isinstance(lay, keras.layers.BatchNormalization)]
    assert bns and all(not lay.trainable for lay in bns)
    convs = [lay for lay in model.layers if isinstance(lay, keras.layers.Conv2D)]
    assert all(lay.trainable for lay in convs)
    # no BN weight is trainable: trainable weights are exactly the conv kernels and biases
    assert len(model.trainable_weights) == 2 * len(convs)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(4, 32, 32, 3)).astype("float32")
    before = [np.asarray(w).copy() for w in bns[0].weights]
    train_out = np.asarray(model(x, training=True)[0])
    np.testing.assert_allclose(train_out, np.asarray(model(x, training=False)[0]), atol=1e-5)
    for old, new in zip(before, bns[0].weights, strict=True):  # moving statistics untouched
        np.testing.assert_array_equal(old, np.asarray(new))


def test_unfrozen_bn_uses_batch_statistics():
    # the counterpart: without freezing, training=True normalises with the batch's statistics
    model = resnet.light_resnet((32, 32, 3), freeze_bn=False)
    x = np.random.default_rng(0).normal(3.0, 2.0, size=(4, 32, 32, 3)).astype("float32")
    assert not np.allclose(np.asarray(model(x, training=True)[0]),
                           np.asarray(model(x, training=False)[0]), atol=1e-3)


def test_light_resnet_strides():
    model = resnet.light_resnet((128, 128, 3), filters=(8, 16, 32, 64))
    assert [tuple(t.shape[1:]) for t in model.outputs] == [
        (32, 32, 8), (16, 16, 16), (8, 8, 32), (4, 4, 64)]


def test_blocks_output_shapes_and_counts():
    x = keras.Input((16, 16, 64))
    y = resnet.bottleneck_block(x, 32, stride=2, name="b")
    assert tuple(y.shape[1:]) == (8, 8, 128)
    m = keras.Model(x, y)
    # 1x1 64->32, 3x3 32->32, 1x1 32->128, shortcut 1x1 64->128 (with biases), 4 BN x 4*C
    convs = (64 * 32 + 32) + (9 * 32 * 32 + 32) + (32 * 128 + 128) + (64 * 128 + 128)
    bns = 4 * (32 + 32 + 128 + 128)
    assert m.count_params() == convs + bns
    z = resnet.basic_block(keras.Input((16, 16, 8)), 8, name="basic")
    assert tuple(z.shape[1:]) == (16, 16, 8)
    with pytest.raises(ValueError, match="identity shortcut"):
        resnet.bottleneck_block(x, 16, stride=2, conv_shortcut=False)


def test_imagenet_fallback_when_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # an empty cache: nothing to find
    model = resnet.resnet(50, (32, 32, 3))
    before = np.asarray(model.get_layer("conv1_conv").kernel).copy()
    assert resnet.load_imagenet_weights(model) is False
    assert "ImageNet weights not found offline: using random initialisation" in capsys.readouterr().out
    np.testing.assert_array_equal(before, np.asarray(model.get_layer("conv1_conv").kernel))


def test_imagenet_loads_from_cache(tmp_path, monkeypatch, pair50):
    # a cached weight file (here: random weights saved where Keras keeps ImageNet's) is used
    ours, ref = pair50
    (tmp_path / "models").mkdir()
    # legacy HDF5, the format of Keras' ImageNet files (a whole-model .h5 holds the weights)
    ref.save(str(tmp_path / "models" / resnet.IMAGENET_FILES[50][0]))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    target = resnet.resnet(50, (64, 64, 3))
    assert resnet.load_imagenet_weights(target, verbose=False) is True
    np.testing.assert_array_equal(np.asarray(target.get_layer("conv5_block3_3_conv").kernel),
                                  np.asarray(ref.get_layer("conv5_block3_3_conv").kernel))


def test_depth_errors():
    with pytest.raises(ValueError, match="depth"):
        resnet.resnet(34)
    with pytest.raises(ValueError, match="not a ResNet"):
        resnet.load_imagenet_weights(resnet.light_resnet())


def test_light_resnet_layer_contract():
    """The shared contract (tests/layer_contract.py): round trip, shapes, one training step."""
    from layer_contract import check_layer_contract

    model = resnet.light_resnet((32, 32, 3), filters=(4, 8, 8, 16), freeze_bn=True)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    check_layer_contract(model, x, expected_shapes=[(2, 8, 8, 4), (2, 4, 4, 8), (2, 2, 2, 8),
                                                    (2, 1, 1, 16)])
