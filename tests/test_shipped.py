"""The shipped models and the predict command.

The models are loaded exactly as a learner loads them; their scores on the repository's
eight real images are recomputed from scratch and set against the manifest's figure (a
broken load path, preprocessing or paste-back loses far more than the 0.05 allowed). A
damaged file, a wrong checksum and an unreadable input each give the clear answer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from course_lib import predict, shipped
from course_lib.data.demo import MODALITY, demo_samples

EXPECTED = ("maskrcnn-nuclei-cpu", "unet-nuclei-cpu")
#: what the manifest's figure on the demo images may exceed a fresh scoring by
TOLERANCE = 0.05


def test_the_demo_images_are_the_eight_real_samples_documented():
    samples = demo_samples()
    assert sorted(s.name for s in samples) == sorted(MODALITY)
    readme = (samples[0].parent / "README.md").read_text()
    assert "CC0" in readme and all(s.name in readme for s in samples)
    total = sum(f.stat().st_size for s in samples for f in s.rglob("*.png"))
    assert total <= 3_000_000


@pytest.mark.parametrize("name", EXPECTED)
def test_a_shipped_model_has_a_complete_manifest_and_its_checksum_holds(name):
    assert name in shipped.names(), f"{name} is not shipped in {shipped.SHIPPED_DIR}"
    m = shipped.read_manifest(name)
    for key in ("command", "retrain_command", "commit", "machine", "wall_seconds", "train_ids",
                "val_ids", "scores", "per_modality", "sha256", "architecture"):
        assert key in m, f"manifest of {name} lacks {key}"
    weights = shipped.SHIPPED_DIR / name / m["weights_file"]
    assert shipped.sha256(weights) == m["sha256"]
    assert weights.stat().st_size <= 25_000_000
    # the demo images are held out: none of them was trained on
    assert not set(MODALITY) & set(m["train_ids"])
    assert set(MODALITY) <= set(m["val_ids"])


def test_the_shipped_models_fit_the_size_limit():
    total = sum(f.stat().st_size for n in shipped.names()
                for f in (shipped.SHIPPED_DIR / n).iterdir())
    assert total <= 40_000_000


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED)
def test_a_shipped_model_scores_its_manifest_figure_on_the_real_demo_images(name):
    from course_lib.metrics import dsb_average_precision
    from course_lib.training.evaluate import folder_samples

    model = shipped.load(name)
    m = model.manifest
    scores = {image_id: float(dsb_average_precision(truth, model.labels(image)))
              for image_id, image, truth in folder_samples(demo_samples())}
    assert set(scores) == set(m["scores"]["demo_per_image"])
    fresh = float(np.mean(list(scores.values())))
    assert fresh >= m["scores"]["demo_dsb"] - TOLERANCE, (fresh, m["scores"]["demo_dsb"])
    if "demo_dsb_one_view" in m["scores"]:   # the faster setting the notebooks use in quick mode
        one = np.mean([dsb_average_precision(truth, model.labels(image, views=1))
                       for _, image, truth in folder_samples(demo_samples())])
        assert one >= m["scores"]["demo_dsb_one_view"] - TOLERANCE
    # and the model is no mere blob finder: it beats Otsu on the same images
    from course_lib.models.classical import otsu_instances

    otsu = np.mean([dsb_average_precision(t, otsu_instances(i))
                    for _, i, t in folder_samples(demo_samples())])
    assert fresh > otsu


@pytest.fixture
def copied_model(tmp_path, monkeypatch):
    """The U-Net's folder copied to a private shipped folder, to damage freely."""
    root = tmp_path / "shipped"
    shutil.copytree(shipped.SHIPPED_DIR / "unet-nuclei-cpu", root / "unet-nuclei-cpu")
    monkeypatch.setattr(shipped, "SHIPPED_DIR", root)
    return root / "unet-nuclei-cpu"


def test_a_changed_weights_file_is_refused_naming_it(copied_model):
    weights = copied_model / shipped.WEIGHTS
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(shipped.ShippedModelError) as err:
        shipped.load("unet-nuclei-cpu")
    assert str(weights) in str(err.value) and "SHA-256" in str(err.value)
    assert "git checkout" in str(err.value)


def test_a_truncated_weights_file_is_refused_naming_it_even_unverified(copied_model):
    weights = copied_model / shipped.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(shipped.ShippedModelError, match="checksum|SHA-256"):
        shipped.load("unet-nuclei-cpu")
    with pytest.raises(shipped.ShippedModelError) as err:   # the reader's own refusal
        shipped.load("unet-nuclei-cpu", verify=False)
    assert str(weights) in str(err.value) and "damaged or incomplete" in str(err.value)


def test_an_unknown_name_lists_the_shipped_ones():
    with pytest.raises(shipped.ShippedModelError, match="unet-nuclei-cpu"):
        shipped.load("no-such-model")


def test_save_and_load_weights_round_trip_float16_where_safe(tmp_path):
    import keras

    inputs = keras.Input((4,))
    norm = keras.layers.Normalization(axis=None)
    norm.adapt(np.arange(100_000, dtype=np.float32))       # count 1e5 does not fit float16
    model = keras.Model(inputs, keras.layers.Dense(3)(norm(inputs)))
    stored = shipped.save_weights(model, tmp_path / "w.npz")
    # mean, kernel and bias halve; the variance (8.3e8) and the integer count cannot
    assert (stored["arrays"], stored["float16"]) == (5, 3)
    twin_inputs = keras.Input((4,))
    twin = keras.Model(twin_inputs, keras.layers.Dense(3)(
        keras.layers.Normalization(axis=None)(twin_inputs)))
    shipped.load_weights(twin, tmp_path / "w.npz")
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32) * 3e4
    np.testing.assert_allclose(twin.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=2e-3, atol=2e-3)


# --- the predict command ------------------------------------------------------------------

def _run(args, capsys):
    try:
        code = predict.main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_prints_one_model_per_line_name_first(capsys):
    code, out, _ = _run(["--list"], capsys)
    lines = out.strip().splitlines()
    assert code == 0 and [line.split("\t")[0] for line in lines] == shipped.names()
    assert all("DSB" in line for line in lines)


@pytest.mark.parametrize("args, says", [
    (["no-such-model", "IN", "OUT"], "no shipped model"),
    (["unet-nuclei-cpu", "MISSING", "OUT"], "is not a folder of images"),
    (["unet-nuclei-cpu"], "MODEL, INPUT and OUTPUT"),
    (["maskrcnn-nuclei-cpu", "IN", "OUT", "--views", "1"], "--views is for a U-Net"),
])
def test_bad_arguments_give_one_line_and_exit_2(args, says, tmp_path, capsys):
    (tmp_path / "IN").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "IN" / "a.png")
    args = [str(tmp_path / a) if a in ("IN", "OUT", "MISSING") else a for a in args]
    code, _, err = _run(args, capsys)
    assert code == 2 and says in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_predict_writes_labels_submission_and_coco_and_skips_an_unreadable_file(tmp_path,
                                                                                 capsys):
    from course_lib.data.io import read_array, read_image

    inputs = tmp_path / "in"
    small = [s for s in demo_samples() if MODALITY[s.name] == "histology"]
    for s in small:                          # DSB sample folders ...
        shutil.copytree(s, inputs / s.name)
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)   # ... and a bad file
    out = tmp_path / "out"
    code, text, err = _run(["unet-nuclei-cpu", inputs, out, "--quiet", "--views", "1"], capsys)
    assert code == 0, err
    assert "broken" in text and f"{len(small)} images predicted" in text
    model = shipped.load("unet-nuclei-cpu")
    for s in small:
        labels = read_array(out / f"{s.name}.png")
        image = read_image(s / "images" / f"{s.name}.png")
        assert labels.shape == image.shape[:2] and labels.max() > 0
        # --views 1 is honoured: the same instances as the model's one-view labels
        np.testing.assert_array_equal(labels > 0, model.labels(image, views=1) > 0)
    rows = (out / "submission.csv").read_text().splitlines()
    assert rows[0] == "ImageId,EncodedPixels" and {r.split(",")[0] for r in rows[1:]} == \
        {s.name for s in small}
    coco = json.loads((out / "coco_results.json").read_text())
    assert coco and {d["image_id"] for d in coco} == {1, 2}
