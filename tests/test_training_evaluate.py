"""Evaluation and export, checked with oracle predictors whose scores are known by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
from coco_fixtures import TwoImages
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.data.nuclei import index_samples, load_sample, read_submission
from course_lib.data.synthetic import make_nuclei
from course_lib.ops.masks import masks_to_labels
from course_lib.training.evaluate import evaluate_dsb, folder_samples, image_files, predict_folder


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    make_nuclei(root, 2, seed=1, size=96)
    dirs = index_samples(root / "stage1_train")
    truth = {}
    for d in dirs:
        image, masks = load_sample(d)
        truth[image.tobytes()] = masks_to_labels(masks)
    return root / "stage1_train", dirs, truth


def test_dsb_score_of_oracles(samples):
    _, dirs, truth = samples
    perfect = evaluate_dsb(lambda im: truth[im.tobytes()], folder_samples(dirs), progress=False)
    assert perfect["score"] == 1.0 and len(perfect["per_image"]) == 2
    empty = evaluate_dsb(lambda im: np.zeros(im.shape[:2], np.int32), folder_samples(dirs),
                         progress=False)
    assert empty["score"] == 0.0
    first = next(iter(truth))  # right on one image, nothing on the other: (1 + 0) / 2

    def half(im):
        return truth[im.tobytes()] if im.tobytes() == first else np.zeros(im.shape[:2], np.int32)

    assert evaluate_dsb(half, folder_samples(dirs), progress=False)["score"] == 0.5


def test_predict_folder_writes_labels_submission_and_coco(samples, tmp_path):
    folder, dirs, truth = samples
    out = tmp_path / "pred"
    preds = predict_folder(lambda im: truth[im.tobytes()], folder, out,
                           submission=tmp_path / "sub.csv", coco_results=tmp_path / "res.json",
                           progress=False)
    assert sorted(preds) == sorted(d.name for d in dirs)
    for d in dirs:
        labels = truth[load_sample(d)[0].tobytes()]
        np.testing.assert_array_equal(np.asarray(Image.open(out / f"{d.name}.png")), labels)
    shapes = {d.name: preds[d.name].shape for d in dirs}
    read = read_submission(tmp_path / "sub.csv", shapes)
    for name, masks in read.items():
        assert np.array_equal(masks_to_labels(masks) > 0, preds[name] > 0)
        assert masks.shape[-1] == len(np.unique(preds[name])) - 1
    detections = json.loads((tmp_path / "res.json").read_text())
    ids = json.loads((tmp_path / "res.image_ids.json").read_text())
    for name, labels in preds.items():
        mine = [d for d in detections if d["image_id"] == ids[name]]
        assert len(mine) == labels.max()
        decoded = mask_utils.decode([d["segmentation"] for d in mine])  # pycocotools
        found = sorted(int(np.unique(labels[decoded[..., k] > 0])[0]) for k in range(len(mine)))
        assert found == list(range(1, labels.max() + 1))
        for k in range(len(mine)):
            assert len(np.unique(labels[decoded[..., k] > 0])) == 1


def test_image_files_finds_plain_images_and_refuses_empty(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    assert [i for i, _ in image_files(tmp_path)] == ["a"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        image_files(tmp_path / "empty")


def test_coco_ap_of_oracles():
    from course_lib.training.evaluate import evaluate_coco

    provider = TwoImages()

    def oracle(image):
        masks, ids = provider.items[int(image[0, 0, 0])]
        return {"masks": masks, "class_ids": ids, "scores": np.ones(len(ids))}

    def nothing(image):
        return {"masks": np.zeros((32, 32, 0), bool), "class_ids": [], "scores": []}

    def first_image_only(image):
        if int(image[0, 0, 0]) == 1:
            return nothing(image)
        return oracle(image)

    perfect = evaluate_coco(oracle, provider, ["bg", "a", "b"], progress=False)
    assert perfect["segm"]["AP"] == pytest.approx(1.0)
    assert perfect["bbox"]["AP"] == pytest.approx(1.0)
    assert evaluate_coco(nothing, provider, progress=False)["segm"]["AP"] == 0.0
    # class 1: its one object found (AP 1); class 2: one of two found at precision 1, so the
    # 101-point precision curve is 1 for recall 0..0.5 (51 points) and 0 after: AP 51/101
    half = evaluate_coco(first_image_only, provider, progress=False)
    assert half["segm"]["AP"] == pytest.approx((1 + 51 / 101) / 2)
    assert half["bbox"]["AP"] == pytest.approx((1 + 51 / 101) / 2)


def test_stage1_test_samples_read_the_solution_file(tmp_path):
    """Kaggle's stage-1 test layout, made by hand: image "a" (4×5) with one nucleus at rows 1-2
    of column 1 (column-major, 1-based RLE: pixel (1, 1) is number 1·4 + 1 + 1 = 6, run of 2,
    "6 2"), image "b" with none (an empty row). Absent files: None, not an error."""
    from course_lib.training.evaluate import stage1_test_samples

    assert stage1_test_samples(tmp_path) is None
    for name in ("a", "b"):
        folder = tmp_path / "stage1_test" / name / "images"
        folder.mkdir(parents=True)
        Image.fromarray(np.full((4, 5, 3), 40 * (name == "a"), np.uint8)).save(
            folder / f"{name}.png")
    assert stage1_test_samples(tmp_path) is None             # no solution file yet
    (tmp_path / "stage1_solution.csv").write_text(
        "ImageId,EncodedPixels,Height,Width,Usage\na,6 2,4,5,Private\nb,,4,5,Public\n")
    got = {name: (image, labels) for name, image, labels in stage1_test_samples(tmp_path)}
    assert sorted(got) == ["a", "b"]
    expected = np.zeros((4, 5), np.int32)
    expected[1:3, 1] = 1
    np.testing.assert_array_equal(got["a"][1], expected)
    assert got["a"][0].shape == (4, 5, 3) and got["b"][1].max() == 0
    (tmp_path / "stage1_solution.csv").write_text(
        "ImageId,EncodedPixels,Height,Width,Usage\na,6 2,4,5,Private\nc,1 1,4,5,Public\n")
    with pytest.raises(ValueError, match="stage1_solution.csv.*e.g. c"):
        stage1_test_samples(tmp_path)
