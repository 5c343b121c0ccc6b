"""Weight transfer between models of one architecture and different class counts (chapter 12)."""

from __future__ import annotations

import hashlib

import keras
import numpy as np
import pytest

from course_lib.layers import resnet
from course_lib.training import transfer


def _head(num_classes: int, hidden: int = 8, name: str = "toy") -> keras.Model:
    """A miniature Mask R-CNN-like model: a 'backbone' conv, an FPN conv, a box head whose
    class layer depends on the class count."""
    x = keras.Input((8, 8, 3))
    y = keras.layers.Conv2D(4, 3, name="conv1_conv")(x)
    y = keras.layers.BatchNormalization(name="conv1_bn")(y)
    y = keras.layers.Conv2D(4, 1, name="fpn_p2")(y)
    y = keras.layers.GlobalAveragePooling2D()(y)
    y = keras.layers.Dense(hidden, name="box_fc1")(y)
    y = keras.layers.Dense(num_classes, name="box_class_logits")(y)
    return keras.Model(x, y, name=name)


PARTS = (("fpn", r"^fpn_"), ("box_head", r"^box_"), ("backbone", r".*"))


def test_copies_what_matches_and_reports_the_rest():
    keras.utils.set_random_seed(0)
    source, target = _head(21), _head(2)
    # make every source value recognisable
    for v in source.weights:
        v.assign(np.full(v.shape, 7.0, "float32"))
    before = {v.path: np.asarray(v).copy() for v in target.weights}
    report = transfer.transfer_weights(source, target, parts=PARTS)
    # by hand: conv1_conv (kernel, bias), conv1_bn (gamma, beta, moving mean, moving var),
    # fpn_p2 (2), box_fc1 (2) match; box_class_logits kernel (8, 21) vs (8, 2) and bias do not
    copied = {r.path for r in report.copied}
    assert copied == {"conv1_conv/kernel", "conv1_conv/bias", "conv1_bn/gamma", "conv1_bn/beta",
                      "conv1_bn/moving_mean", "conv1_bn/moving_variance", "fpn_p2/kernel",
                      "fpn_p2/bias", "box_fc1/kernel", "box_fc1/bias"}
    assert [(r.path, r.status, r.source_shape, r.shape) for r in report.skipped] == [
        ("box_class_logits/kernel", "shape differs", (8, 21), (8, 2)),
        ("box_class_logits/bias", "shape differs", (21,), (2,))]
    for v in target.weights:
        if v.path in copied:
            assert np.all(np.asarray(v) == 7.0), v.path
        else:
            np.testing.assert_array_equal(np.asarray(v), before[v.path])
    parts = report.by_part()
    assert list(parts) == ["fpn", "box_head", "backbone"]
    # box head: fc1 8·4 + 8 = 40 values copied of 40 + 8·2 + 2 = 58
    assert parts["box_head"] == {"copied": 2, "skipped": 2, "copied_params": 40, "params": 58}
    assert parts["backbone"]["copied"] == 6 and parts["backbone"]["skipped"] == 0
    assert parts["fpn"] == {"copied": 2, "skipped": 0, "copied_params": 20, "params": 20}
    total = sum(r.size for r in report.rows)
    assert report.copied_fraction() == pytest.approx((total - 18) / total)
    text = str(report)
    assert "box_class_logits/kernel: (8, 21) in the source, (8, 2) here" in text
    # a source variable whose path matched but whose shape did not counts as used
    assert report.unused == [] and "not used" not in text


def test_mapping_source_missing_paths_and_repeated_names():
    keras.utils.set_random_seed(1)
    target = _head(2)
    values = {"fpn_p2/kernel": np.ones((1, 1, 4, 4), "float32"), "not/in_target": np.zeros(3)}
    report = transfer.transfer_weights(values, target, parts=PARTS)
    assert [r.path for r in report.copied] == ["fpn_p2/kernel"]
    assert all(r.status == "not in source" for r in report.skipped)
    assert report.unused == ["not/in_target"]
    np.testing.assert_array_equal(np.asarray(target.get_layer("fpn_p2").kernel), 1.0)
    with pytest.raises(TypeError, match="Keras model or layer"):
        transfer.transfer_weights([1, 2, 3], target)


def test_real_voc_to_nuclei_maskrcnn_skips_only_the_class_outputs(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "quick")
    from course_lib.models import maskrcnn as M

    keras.utils.set_random_seed(2)
    voc, _ = M.build_models(M.voc_config(), verbose=False)
    nuclei, _ = M.build_models(M.nuclei_config(), verbose=False)
    report = transfer.transfer_weights(voc, nuclei)
    assert {r.path for r in report.skipped} == {
        f"{layer}/{v}" for layer in ("box_head/box_class_logits", "box_head/box_deltas",
                                     "mask_head/mask_logits") for v in ("kernel", "bias")}
    assert set(report.by_part()) == {"backbone", "fpn", "rpn", "box_head", "mask_head"}
    assert all(v["skipped"] == 0 for p, v in report.by_part().items()
               if p in ("backbone", "fpn", "rpn"))
    # every part the report lists holds exactly the parameters parameter_counts gives it
    counts = M.parameter_counts(nuclei)
    for part, v in report.by_part().items():
        assert v["params"] == counts[part], part


def test_keras_resnet50_names_match_the_course_backbone():
    # the ImageNet path: keras.applications' ResNet-50 (random weights here, same names) fills
    # every variable of the course's ResNet-50 backbone
    keras.utils.set_random_seed(3)
    reference = keras.applications.ResNet50(weights=None, include_top=False,
                                            input_shape=(64, 64, 3))
    ours = resnet.resnet(50, input_shape=(64, 64, 3))
    report = transfer.transfer_weights(reference, ours, parts=(("backbone", ".*"),))
    assert report.skipped == []
    assert report.copied_fraction() == 1.0


def test_pretrained_source_falls_back_without_imagenet(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))          # an empty Keras cache
    fallback = object()

    class Cfg:
        backbone = "light"

    source, text = transfer.pretrained_source(Cfg(), fallback, "the VOC model")
    assert source is fallback and "light backbone has no ImageNet weights" in text
    Cfg.backbone = "resnet50"
    source, text = transfer.pretrained_source(Cfg(), fallback, "the VOC model")
    assert source is fallback and "no ImageNet weight file for ResNet-50" in text
    assert transfer.imagenet_depth(Cfg()) == 50 and transfer.imagenet_backbone(50) is None


def test_check_imagenet_file(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    missing = resnet.check_imagenet_file(50)
    assert not missing["found"] and not missing["ok"]
    assert missing["expected_path"] == tmp_path / "models" / resnet.IMAGENET_FILES[50][0]
    (tmp_path / "models").mkdir()
    fake = tmp_path / "models" / resnet.IMAGENET_FILES[50][0]
    fake.write_bytes(b"not the weights")
    found = resnet.check_imagenet_file(50)
    assert found["found"] and found["bytes"] == 15 and not found["ok"]
    assert found["md5"] == hashlib.md5(b"not the weights").hexdigest()
    with pytest.raises(ValueError, match="ResNet-50/101/152"):
        resnet.check_imagenet_file(34)


def test_imagenet_md5_table_is_the_one_keras_checks():
    from keras.src.applications.resnet import WEIGHTS_HASHES

    for depth, (notop, top) in resnet.IMAGENET_FILES.items():
        keras_top, keras_notop = WEIGHTS_HASHES[f"resnet{depth}"]
        assert resnet.IMAGENET_MD5[top] == keras_top
        assert resnet.IMAGENET_MD5[notop] == keras_notop
