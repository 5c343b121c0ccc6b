"""course_lib.config: modes, data discovery, seeds, the report line every notebook prints."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import config


def test_mode_follows_the_environment(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    assert config.mode() == "full" and config.settings() is config.FULL
    monkeypatch.setenv("COURSE_MODE", "Quick ")
    assert config.mode() == "quick" and config.settings() is config.QUICK


def test_unknown_mode_names_the_variable_and_the_choices(monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "fast")
    with pytest.raises(ValueError, match=r"COURSE_MODE='fast'.*quick.*full"):
        config.mode()


def test_without_override_mode_depends_on_gpus(monkeypatch):
    monkeypatch.delenv("COURSE_MODE", raising=False)
    monkeypatch.setattr(config, "gpu_devices", lambda: ())
    assert config.mode() == "quick"
    monkeypatch.setattr(config, "gpu_devices", lambda: ("/physical_device:GPU:0",))
    assert config.mode() == "full"


def test_quick_mode_is_smaller_than_full():
    q, f = config.QUICK, config.FULL
    assert q.image_size < f.image_size and q.epochs < f.epochs
    assert q.n_synthetic_images < f.n_synthetic_images


def test_dataset_status_prefers_real_over_synthetic(data_root):
    assert config.dataset_status()["nuclei"] == ("missing", None)
    synthetic = data_root / "synthetic/nuclei/stage1_train"
    (synthetic / "abc").mkdir(parents=True)
    assert config.dataset_status()["nuclei"] == ("synthetic", synthetic)
    real = data_root / "dsb2018/stage1_train"
    real.mkdir(parents=True)
    assert config.dataset_status()["nuclei"][0] == "synthetic", "an empty folder is not data"
    (real / "id1").mkdir()
    assert config.dataset_status()["nuclei"] == ("real", real)


def test_set_seed_makes_numpy_and_keras_repeat():
    import keras

    def draw():
        return np.random.rand(3), keras.ops.convert_to_numpy(keras.random.uniform((3,)))

    config.set_seed(7)
    a = draw()
    config.set_seed(7)
    b = draw()
    config.set_seed(8)
    c = draw()
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_report_prints_mode_backend_and_data(data_root, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_MODE", "quick")
    facts = config.report(verbose=True)
    out = capsys.readouterr().out
    assert "Mode: quick" in out and "Keras backend: tensorflow" in out
    assert "nuclei: missing" in out and "voc: missing" in out
    assert facts["mode"] == "quick" and facts["keras"] != "not installed"
    assert facts["python"].startswith("3.")
