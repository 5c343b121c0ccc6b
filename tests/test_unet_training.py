"""The U-Net training plumbing: padding arithmetic, caching, fixed-shape prediction, recipe."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from course_lib.experiments import unet as unet_runs
from course_lib.models import unet
from course_lib.models import unet_training as ut


def test_same_padding_amounts_hand_worked():
    # 100 + 2·16 = 132 → next multiple of 8 is 136 (+4); 130 + 32 = 162 → 168 (+6)
    assert ut.same_padding_amounts((100, 130), depth=3, margin=16) == ((16, 20), (16, 22))
    # already divisible: 96 + 2·16 = 128
    assert ut.same_padding_amounts((96, 96), depth=3, margin=16) == ((16, 16), (16, 16))
    # no margin, depth 4: 250 → 256
    assert ut.same_padding_amounts((250, 256), depth=4, margin=0) == ((0, 6), (0, 0))
    with pytest.raises(ValueError):
        ut.same_padding_amounts((10, 10), depth=3, margin=-1)


def test_recipe_checks_and_output_tile():
    r = ut.UNetRecipe(tile_size=128, margin=16)
    assert r.tile_out == 96
    with pytest.raises(ValueError, match="divisible"):
        ut.UNetRecipe(tile_size=100, depth=3)
    with pytest.raises(ValueError, match="margin"):
        ut.UNetRecipe(tile_size=64, margin=32)
    assert ut.recipe_for_mode("quick", w0=0).w0 == 0
    with pytest.raises(ValueError):
        ut.recipe_for_mode("slow")


def test_cached_samples_decodes_each_sample_once():
    class Provider:
        calls = 0

        def __len__(self):
            return 3

        def load(self, i):
            Provider.calls += 1
            return np.full((4, 4, 3), i), np.zeros((4, 4, 0), bool), np.zeros(0, np.int32)

    cached = ut.CachedSamples(Provider(), maxsize=8)
    for _ in range(4):
        for i in range(3):
            assert cached.load(i)[0][0, 0, 0] == i
    assert Provider.calls == 3 and len(cached) == 3 and cached.name(2) == "2"


def test_training_dataset_decodes_each_image_once_over_epochs(monkeypatch):
    """The default cache holds the whole split: over more images than the old LRU of 64, a
    second and third epoch, each in a new order, decode nothing again; a smaller cache, when
    asked for, is honoured (and decodes again)."""
    from course_lib.data import coco

    decoded = []

    class Folders:   # stands in for DsbFolderSamples: one tiny nucleus per "folder"
        def __init__(self, sample_dirs):
            self.dirs = list(sample_dirs)

        def __len__(self):
            return len(self.dirs)

        def load(self, i):
            decoded.append(i)
            masks = np.zeros((16, 16, 1), bool)
            masks[4:10, 4:10, 0] = True
            return np.full((16, 16, 3), i % 256, np.uint8), masks, np.ones(1, np.int32)

    monkeypatch.setattr(coco, "DsbFolderSamples", Folders)
    dirs = [f"sample{i}" for i in range(70)]
    recipe = ut.UNetRecipe(tile_size=32, batch_size=10, depth=2, margin=4)

    def epochs(ds, n):
        for epoch in range(n):
            if epoch:
                ds.on_epoch_end()
            for b in range(len(ds)):
                ds[b]

    epochs(ut.training_dataset(dirs, recipe), 3)
    assert sorted(decoded) == list(range(70))
    decoded.clear()
    epochs(ut.training_dataset(dirs, recipe, cache=2), 2)
    assert len(decoded) > 70   # the second epoch decoded again


def test_tile_predictor_pads_to_a_power_of_two_up_to_the_batch_size():
    seen = []

    class Fake:
        def predict_on_batch(self, batch):
            seen.append(batch.shape[0])
            return batch[..., :1] * 2

    predict = ut.tile_predictor(Fake(), batch_size=16)
    x = np.arange(3 * 2 * 2 * 3, dtype=np.float32).reshape(3, 2, 2, 3)
    out = predict(x)
    np.testing.assert_array_equal(out, x[..., :1] * 2)     # the padding is dropped again
    for n in (1, 2, 4, 5, 9, 16):
        predict(np.zeros((n, 2, 2, 3), np.float32))
    # 3 tiles -> 4 slots, then 1, 2, 4, 8, 16, 16: a handful of shapes, never 16 for 3
    assert seen == [4, 1, 2, 4, 8, 16, 16]
    with pytest.raises(ValueError, match="batch_size"):
        predict(np.zeros((17, 2, 2, 3)))


def _pointwise_model(input_shape=(None, None, 3)):
    """A 1×1 convolution then a sigmoid: the answer per pixel is known in NumPy."""
    inputs = keras.Input(input_shape)
    out = keras.layers.Conv2D(1, 1, activation="sigmoid", name="classifier")(inputs)
    model = keras.Model(inputs, out)
    model.get_layer("classifier").set_weights([np.array([0.02, -0.01, 0.005]).reshape(1, 1, 3, 1),
                                              np.array([-0.5])])
    return model


def test_tiled_and_whole_image_probability_match_numpy():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (70, 90, 3)).astype(np.float32)
    expected = 1 / (1 + np.exp(-(image @ np.array([0.02, -0.01, 0.005]) - 0.5)))
    recipe = ut.UNetRecipe(tile_size=32, depth=3, margin=8)
    model = _pointwise_model()
    np.testing.assert_allclose(ut.predict_probability(model, image, recipe), expected, atol=1e-5)
    np.testing.assert_allclose(ut.whole_image_probability(model, image, recipe), expected,
                               atol=1e-5)
    # a model with a fixed input size is rebuilt for the whole image
    fixed = _pointwise_model((32, 32, 3))
    np.testing.assert_allclose(ut.whole_image_probability(fixed, image, recipe), expected,
                               atol=1e-5)


def test_rebuild_for_shape_keeps_the_function():
    model = unet.same_unet((32, 32, 3), n_classes=1, base_filters=2, depth=2, batch_norm=False,
                           dropout=0.0)
    big = ut.rebuild_for_shape(model, (48, 64, 3))
    assert big.input_shape == (None, 48, 64, 3) and big.output_shape == (None, 48, 64, 1)
    x = np.random.default_rng(1).random((1, 32, 32, 3)).astype(np.float32)
    # the same weights on a 32×32 input: rebuilt again at the original size
    back = ut.rebuild_for_shape(big, (32, 32, 3))
    np.testing.assert_allclose(back.predict_on_batch(x), model.predict_on_batch(x), atol=1e-6)


def test_classifier_bias_starts_at_the_prior_log_odds():
    recipe = ut.UNetRecipe(prior_foreground=0.3, base_filters=2, depth=2, tile_size=32, margin=4,
                           batch_norm=True)
    model = ut.build_recipe_unet(recipe)
    bias = keras.ops.convert_to_numpy(model.get_layer("classifier").bias)
    assert bias[0] == pytest.approx(math.log(0.3 / 0.7), abs=1e-6)   # -0.8473
    bn = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bn and all(layer.momentum == 0.9 for layer in bn)


def test_train_unet_smoke_and_validation_matches_keras_loss(tmp_path):
    from course_lib.data.synthetic.nuclei import make_nuclei

    dirs = make_nuclei(tmp_path, 4, seed=0, size=64)
    recipe = ut.UNetRecipe(tile_size=32, base_filters=2, depth=2, margin=4, batch_size=2,
                           epochs=2, steps_per_epoch=2, norm_batches=1)
    run = unet_runs.train_unet(dirs[:3], recipe, val_dirs=dirs[3:])
    assert len(run.history["loss"]) == 2
    assert set(run.history) >= {"loss", "val_bce", "val_gap_bce"}
    # val_bce is Keras' own binary cross-entropy on the same fixed tiles
    x, y, gap = ut.validation_tiles(dirs[3:], recipe)
    p = run.model.predict_on_batch(x)
    per_pixel = keras.ops.convert_to_numpy(keras.losses.binary_crossentropy(y, p))  # (N, S, S)
    assert run.history["val_bce"][-1] == pytest.approx(float(per_pixel.mean()), rel=1e-3)
    assert gap.any()   # these seeded tiles hold gaps between touching nuclei
    # and val_gap_bce is the same loss over the gap pixels only
    assert run.history["val_gap_bce"][-1] == pytest.approx(float(per_pixel[gap].mean()), rel=1e-3)


def test_train_unet_trains_a_three_class_recipe_with_its_own_loss(tmp_path):
    """The loss comes from the recipe: a three-class U-Net (softmax over background, interior,
    border) is trained with categorical cross-entropy, the per-pixel loss Keras computes,
    weighted by the tiles' class weights."""
    from course_lib.data.synthetic.nuclei import make_nuclei

    dirs = make_nuclei(tmp_path, 3, seed=0, size=64)
    recipe = ut.UNetRecipe(tile_size=32, base_filters=2, depth=2, margin=4, batch_size=2,
                           epochs=1, steps_per_epoch=1, norm_batches=1, target="three_class",
                           prior_foreground=None)
    run = unet_runs.train_unet(dirs, recipe)
    x, y, w = run.dataset[0]
    assert y.shape[-1] == 3
    got = run.model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)["loss"]
    per_pixel = keras.ops.convert_to_numpy(
        keras.losses.categorical_crossentropy(y, run.model.predict_on_batch(x)))
    assert got == pytest.approx(float((per_pixel * w).mean()), rel=1e-4)


def test_recipe_weights_hand_worked():
    # two 2-px-wide nuclei with a 3-px gap: the middle gap pixel is 2 px from each
    labels = np.zeros((9, 15), np.int32)
    labels[2:7, 4:6] = 1
    labels[2:7, 9:11] = 2
    weights = ut.recipe_weight_fn(ut.UNetRecipe(w0=10.0, sigma=5.0, foreground_weight=3.0))(labels)
    assert weights[4, 7] == pytest.approx(1 + 10 * math.exp(-16 / 50), abs=1e-5)   # 8.26
    assert weights[4, 4] == pytest.approx(3.0)          # inside a nucleus: w_c only
    assert weights[0, 0] == pytest.approx(1 + 10 * math.exp(-((4 ** 2 + 4) ** 0.5 + (9 ** 2 + 4) ** 0.5) ** 2 / 50), abs=1e-4)
    flat = ut.recipe_weight_fn(ut.UNetRecipe(w0=0.0, foreground_weight=1.0))(labels)
    assert np.all(flat == 1.0)


class _PaintedUNet:
    """A stand-in U-Net that reads the nucleus probability off the image's red channel (the
    images below paint nuclei red at 255): ``predict_on_batch`` is all the tiled predictor
    calls, pixel by pixel, so the tiling cannot change its answer."""

    def predict_on_batch(self, batch):
        return np.asarray(batch, np.float32)[..., :1] / 255.0


def test_score_unet_is_the_dsb_score_of_its_instances_worked_by_hand():
    """Three separate square nuclei, the image paints two of them: two perfect matches and one
    miss at every threshold, so each image scores TP / (TP + FP + FN) = 2 / 3; a second image
    painted in full scores 1. The mean, 5 / 6, is what metrics.dsb_score gives too."""
    masks = np.zeros((48, 48, 3), bool)
    for k, (r, c) in enumerate([(4, 4), (4, 30), (30, 16)]):
        masks[r:r + 12, c:c + 12, k] = True
    partial = np.zeros((48, 48, 3), np.uint8)
    partial[..., 0] = 255 * masks[..., :2].any(axis=-1)
    full = np.zeros((48, 48, 3), np.uint8)
    full[..., 0] = 255 * masks.any(axis=-1)
    recipe = ut.UNetRecipe(tile_size=32, margin=4, test_views=1)
    score = ut.score_unet(_PaintedUNet(), [(partial, masks), (full, masks)], recipe)
    assert score == pytest.approx((2 / 3 + 1.0) / 2)
