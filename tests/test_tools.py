"""The maintainers' tools in ``tools/``, run end to end on small synthetic inputs."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import keras
import numpy as np
from scipy import ndimage

from course_lib import shipped
from course_lib.data import nuclei
from course_lib.data.synthetic import make_nuclei
from course_lib.metrics import dsb_average_precision
from course_lib.models import unet_training as ut
from course_lib.ops.masks import masks_to_labels
from course_lib.ops.weight_map import three_class_target

ROOT = Path(__file__).resolve().parent.parent


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tune_unet_postprocessing_chooses_the_best_grid_point_and_writes_it(tmp_path,
                                                                           monkeypatch):
    """A stand-in U-Net whose maps are each image's true three classes, blurred: the rim of
    every nucleus is uncertain, so the thresholds matter. The tool must record all 75 grid
    points sorted, write the best into model.json, and the recorded score must be what the
    run folder, loaded again with that setting, scores on the same training images."""
    make_nuclei(tmp_path / "data", 12, seed=3, size=64)
    truth = {}
    for folder in nuclei.index_samples(tmp_path / "data" / "stage1_train"):
        image, masks = nuclei.load_sample(folder)
        one_hot = np.eye(3)[three_class_target(masks_to_labels(masks), border_width=2)]
        blurred = ndimage.gaussian_filter(one_hot, sigma=(1.2, 1.2, 0))
        truth[image.tobytes()] = (blurred / blurred.sum(-1, keepdims=True)).astype(np.float32)

    def blurred_truth(model, image, recipe, margin=None, batch_size=16, views=None):
        return truth[np.asarray(image, np.uint8).tobytes()]

    monkeypatch.setattr(ut, "predict_maps", blurred_truth)
    recipe = ut.recipe_for_budget("cpu", tile_size=32, margin=4, depth=2, base_filters=4)
    norm = keras.layers.Normalization(axis=None)
    norm.adapt(np.linspace(0, 1, 10))
    run = tmp_path / "run"
    run.mkdir()
    ut.build_recipe_unet(recipe, norm).save_weights(run / "final.weights.h5")
    shipped.write_model_spec(run, spec={"kind": "unet", "name": "standin",
                                        "unet_recipe": dataclasses.asdict(recipe)})
    monkeypatch.setattr(sys, "argv", ["tune", str(run), "--data", str(tmp_path / "data"),
                                      "--images", "4", "--views", "1", "--write"])
    _tool("tune_unet_postprocessing").main()

    record = json.loads((run / "postprocessing.json").read_text())
    grid = record["grid"]
    assert len(grid) == 5 * 3 * 5
    assert [g["train_dsb"] for g in grid] == sorted(g["train_dsb"] for g in grid)
    assert grid[-1]["train_dsb"] > grid[0]["train_dsb"]          # the thresholds matter here
    chosen = record["chosen"]
    assert chosen == {k: grid[-1][k] for k in chosen}
    written = json.loads((run / "model.json").read_text())["unet_recipe"]
    assert written["test_views"] == 1 and all(written[k] == v for k, v in chosen.items())
    # the oracle: the run folder loaded again predicts with the written setting
    again = shipped.load(run)
    root = tmp_path / "data" / "stage1_train"
    scores = []
    for name in record["training_images"]:
        image, masks = nuclei.load_sample(root / name)
        scores.append(dsb_average_precision(masks_to_labels(masks), again.labels(image)))
    assert round(float(np.mean(scores)), 4) == record["chosen_train_dsb"]
    assert len(record["training_images"]) == 4
