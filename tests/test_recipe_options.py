"""The recipes' options behind notebook 12's recorded runs: the VOC CPU budget, the article's
augmentation, one modality of nuclei, and fine-tuning from a shipped model (``init``)."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import shipped
from course_lib.data import nuclei as nuclei_data
from course_lib.data.augment import Augmenter
from course_lib.data.synthetic import make_nuclei, make_voc
from course_lib.training import recipes


@pytest.fixture(scope="module")
def voc(tmp_path_factory):
    return make_voc(tmp_path_factory.mktemp("voc"), 8, seed=0, size=64)


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    make_nuclei(root, 16, seed=0, size=64)
    return root


def test_the_voc_cpu_budget_is_the_128_px_model_whatever_the_mode(voc, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "full")
    recipe = recipes.maskrcnn_voc(voc, mode="full", budget="cpu")
    cfg, model = recipe.config, recipe.extra["model_config"]
    assert (model.name, model.image_size, model.backbone, model.num_classes) == (
        "voc-cpu", 128, "light", 21)
    assert recipe.name == "maskrcnn-voc-cpu"
    assert cfg.epochs == recipes.VOC_CPU_EPOCHS and cfg.optimizer == "adamw"
    # 6 training images in batches of 4: 2 batches an epoch (fewer than the cap of 25)
    assert len(recipe.train_data.provider) == 6 and recipe.train_data.batch_size == 4
    assert cfg.steps_per_epoch == 2 == len(recipe.train_data)
    assert recipe.val_data is not None and len(recipe.val_data.provider) == 2
    assert recipe.train_data.augmenter is None          # no augmentation unless asked


def test_augment_article_is_the_articles_set(voc):
    recipe = recipes.maskrcnn_voc(voc, mode="quick", budget="cpu", augment="article")
    assert recipe.name == "maskrcnn-voc-cpu-article"
    assert str(recipe.train_data.augmenter) == str(Augmenter.article(seed=0))
    with pytest.raises(ValueError, match="unknown augmentation 'mixup'"):
        recipes.maskrcnn_voc(voc, mode="quick", augment="mixup")


def test_modality_keeps_one_modality_on_both_sides_of_the_split(nuclei):
    root, samples = recipes.nuclei_folder(nuclei)
    train_all, val_all, found = recipes.nuclei_split(samples)
    counts = {m: sum(1 for v in found.values() if v == m) for m in set(found.values())}
    modality = max(counts, key=counts.get)         # the commonest: present on both sides
    recipe = recipes.maskrcnn_nuclei(nuclei, mode="quick", modality=modality)
    assert recipe.name == f"maskrcnn-nuclei-{modality}"
    # exactly the split's images of that modality, judged again from the pixels
    assert recipe.extra["train_ids"] == [d.name for d in train_all if found[d.name] == modality]
    assert recipe.extra["val_ids"] == [d.name for d in val_all if found[d.name] == modality]
    for d in train_all + val_all:
        image = nuclei_data.read_image(nuclei_data.sample_paths(d)[0])
        kept = d.name in recipe.extra["train_ids"] + recipe.extra["val_ids"]
        assert kept == (nuclei_data.guess_modality(image) == modality)
    with pytest.raises(ValueError, match="unknown modality 'xray'"):
        recipes.maskrcnn_nuclei(nuclei, mode="quick", modality="xray")
    absent = {"fluorescence", "histology", "brightfield"} - {
        found[d.name] for d in val_all}
    for name in absent:
        with pytest.raises(recipes.DataError, match=f"validation images of modality {name}"):
            recipes.maskrcnn_nuclei(nuclei, mode="quick", modality=name)


def test_init_starts_from_the_shipped_models_weights(nuclei, capsys):
    recipe = recipes.maskrcnn_nuclei(nuclei, budget="cpu", init="maskrcnn-nuclei-cpu")
    model = recipe.build()
    source = shipped.load("maskrcnn-nuclei-cpu").model
    expected = {v.path: np.asarray(v) for v in source.weights}
    assert len(model.weights) == len(expected)
    for v in model.weights:      # the same architecture: every variable copied, exactly
        np.testing.assert_array_equal(np.asarray(v), expected[v.path], err_msg=v.path)
    report = recipe.extra["models"]["init_report"]
    assert not report.skipped and report.copied_fraction() == 1.0
    assert "Initial weights from maskrcnn-nuclei-cpu: " in capsys.readouterr().out


def test_init_from_something_that_is_not_a_model_names_it(nuclei, tmp_path):
    recipe = recipes.maskrcnn_nuclei(nuclei, mode="quick", init=tmp_path)
    with pytest.raises(recipes.DataError, match=f"--init {tmp_path}: .*not a run folder"):
        recipe.build()
