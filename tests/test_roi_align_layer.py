"""Tests of the RoIAlign Keras layers: the shared layer contract (serialisation round trip,
shapes), agreement with the NumPy reference, and use inside a functional model that is saved
and reloaded."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from layer_contract import check_layer_contract
from other_backends import OTHER_BACKENDS, run_under_backend

from course_lib.layers.roi_align import PyramidRoIAlign, RoIAlign
from course_lib.ops import roi

STRIDES = (4, 8, 16, 32)


def _pyramid(rng, batch=2, side=64, channels=3):
    return [rng.normal(size=(batch, side // 2**i, side // 2**i, channels)).astype("float32")
            for i in range(4)]


def _boxes(rng, batch, n, image_side=256):
    corner = rng.uniform(-8, image_side - 8, (batch, n, 2))
    size = np.exp(rng.uniform(np.log(4), np.log(2 * image_side), (batch, n, 2)))
    return np.concatenate([corner, corner + size], -1).astype("float32")


def test_roi_align_layer_contract_and_reference():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(2, 10, 12, 4)).astype("float32")
    boxes = _boxes(rng, 2, 9, image_side=160)
    layer = RoIAlign(output_size=(3, 5), spatial_scale=1 / 16, sampling_ratio=2, aligned=True)
    (out,) = check_layer_contract(layer, [feats, boxes], expected_shapes=[(2, 9, 3, 5, 4)])
    for b in range(2):
        np.testing.assert_allclose(out[b], roi.roi_align(feats[b], boxes[b], (3, 5), 1 / 16),
                                   atol=1e-4)
    # The two-argument call, torchvision style, gives the same.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(feats, boxes)), out, atol=1e-6)


def test_pyramid_roi_align_contract_and_reference():
    rng = np.random.default_rng(1)
    pyramid = _pyramid(rng)
    boxes = _boxes(rng, 2, 30)
    layer = PyramidRoIAlign(output_size=7, strides=STRIDES, sampling_ratio=2)
    (out,) = check_layer_contract(layer, [boxes, pyramid], expected_shapes=[(2, 30, 7, 7, 3)])
    for b in range(2):
        want = roi.multilevel_roi_align([p[b] for p in pyramid], boxes[b], 7, strides=STRIDES)
        np.testing.assert_allclose(out[b], want, atol=1e-4)
    levels = keras.ops.convert_to_numpy(layer.levels(boxes))
    np.testing.assert_array_equal(levels, roi.fpn_level(boxes.reshape(-1, 4)).reshape(2, 30))
    assert len(np.unique(levels)) >= 3  # the boxes really span the pyramid


def test_config_round_trip_keeps_settings():
    layer = PyramidRoIAlign(output_size=(14, 14), strides=(8, 16, 32), sampling_ratio=1,
                            aligned=False, k0=5, canonical=112.0, min_level=3, name="mask_pool")
    clone = PyramidRoIAlign.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()
    assert clone.output_size == (14, 14) and clone.strides == (8, 16, 32)
    assert clone.aligned is False and clone.max_level == 5


def test_functional_model_saves_and_reloads(tmp_path):
    rng = np.random.default_rng(2)
    pyramid = _pyramid(rng, batch=1, side=32, channels=2)
    boxes = _boxes(rng, 1, 5, image_side=128)
    box_in = keras.Input((None, 4))
    level_in = [keras.Input(p.shape[1:]) for p in pyramid]
    out = PyramidRoIAlign(output_size=4)(box_in, level_in)
    model = keras.Model([box_in, *level_in], out)
    assert tuple(model.output.shape) == (None, None, 4, 4, 2)
    path = tmp_path / "pool.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(loaded.predict([boxes, *pyramid], verbose=0),
                               model.predict([boxes, *pyramid], verbose=0), atol=1e-6)


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(ValueError, match="sampling_ratio"):
        RoIAlign(sampling_ratio=0)
    with pytest.raises(ValueError, match="spatial_scale"):
        RoIAlign(spatial_scale=0.0)
    rng = np.random.default_rng(3)
    layer = PyramidRoIAlign(strides=STRIDES)
    with pytest.raises(ValueError, match="one map per stride"):
        layer(_boxes(rng, 1, 2), _pyramid(rng, batch=1)[:3])


_BACKEND_SCRIPT = """
import numpy as np, keras
assert keras.backend.backend() == {backend!r}
from course_lib.layers.roi_align import PyramidRoIAlign
from course_lib.ops import roi
rng = np.random.default_rng(0)
pyr = [rng.normal(size=(1, 32 // 2**i, 32 // 2**i, 2)).astype("float32") for i in range(4)]
c = rng.uniform(0, 100, (1, 9, 2)); boxes = np.concatenate([c, c + rng.uniform(4, 200, (1, 9, 2))], -1)
got = keras.ops.convert_to_numpy(PyramidRoIAlign(5)(boxes.astype("float32"), pyr))
want = roi.multilevel_roi_align([p[0] for p in pyr], boxes[0], 5)
np.testing.assert_allclose(got[0], want, atol=1e-4)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.other_backend
@pytest.mark.skipif(not OTHER_BACKENDS, reason="neither jax nor torch is installed")
@pytest.mark.parametrize("backend", OTHER_BACKENDS)
def test_pyramid_roi_align_under_another_backend(backend):
    assert "ok" in run_under_backend(backend, _BACKEND_SCRIPT.format(backend=backend))
