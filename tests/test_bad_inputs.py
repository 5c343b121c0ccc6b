"""One bad input among good ones: every loop over samples skips it, names it, counts it and
finishes the rest; inputs that would be lost silently are refused or reported.

Each test builds a tiny folder (a few 32–64 px images) with exactly one bad item: a corrupt
image, a COCO polygon of one or two points, a PNG whose pixel data stops early, two files
with one name, masks that are all empty. The command-line side of the same faults (one-line
errors, exit codes, Ctrl-C) is in ``test_train_cli.py``.
"""

from __future__ import annotations

import json
import logging
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from course_lib.data import coco as C
from course_lib.data.io import ImageReadError, read_image
from course_lib.data.nuclei import index_samples, load_sample
from course_lib.data.skips import Skipped, describe_skips, load_or_skip
from course_lib.data.synthetic import make_nuclei
from course_lib.ops.masks import masks_to_labels


def corrupt(path: Path) -> Path:
    """Overwrite an image file with bytes no decoder accepts."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n but the rest is not a PNG")
    return path


def sample_image(sample_dir: Path) -> Path:
    return sample_dir / "images" / f"{sample_dir.name}.png"


@pytest.fixture(scope="module")
def nuclei_root(tmp_path_factory) -> Path:
    """Five small synthetic DSB samples (never modified: tests copy what they break)."""
    root = tmp_path_factory.mktemp("nuclei")
    make_nuclei(root, 5, seed=0, size=64)
    return root / "stage1_train"


@pytest.fixture
def one_bad(nuclei_root, tmp_path) -> tuple[list[Path], Path]:
    """A private copy of the samples with the image of the third one corrupt."""
    import shutil

    root = tmp_path / "stage1_train"
    shutil.copytree(nuclei_root, root)
    dirs = index_samples(root)
    corrupt(sample_image(dirs[2]))
    return dirs, dirs[2]


# --- the shared skip vocabulary -----------------------------------------------------------

def test_load_or_skip_records_names_and_logs(tmp_path, caplog):
    skipped: list[Skipped] = []
    assert load_or_skip(lambda: 7, "fine", skipped) == 7
    with caplog.at_level(logging.WARNING, logger="course_lib.data.skips"):
        got = load_or_skip(lambda: read_image(corrupt(tmp_path / "x.png")), "x", skipped)
        assert load_or_skip(lambda: read_image(tmp_path / "gone.png"), "gone", skipped) is None
    assert got is None
    assert [(s.name, s.reason) for s in skipped] == [("x", "unreadable_image"),
                                                     ("gone", "missing_file")]
    assert "skipping sample x (unreadable_image)" in caplog.text
    assert describe_skips(skipped) == ("2 samples skipped: x (unreadable_image), "
                                       "gone (missing_file)")
    with pytest.raises(ZeroDivisionError):  # a bug is not a bad file: it surfaces
        load_or_skip(lambda: 1 / 0, "bug", skipped)


# --- A(a): the U-Net validation split ----------------------------------------------------

def test_validation_tiles_skip_a_bad_sample_and_name_it(one_bad, caplog):
    from course_lib.models import unet_training as ut

    dirs, bad = one_bad
    recipe = ut.UNetRecipe(tile_size=32, base_filters=2, depth=2, margin=4)
    with caplog.at_level(logging.WARNING):
        images, targets, gaps = ut.validation_tiles(dirs, recipe, tiles_per_image=2)
    assert images.shape == (8, 32, 32, 3) and targets.shape == (8, 32, 32, 1)  # 4 good × 2
    assert gaps.shape == (8, 32, 32)
    assert f"skipping validation sample {bad.name} (unreadable_image)" in caplog.text
    skipped = []
    ut.validation_tiles(dirs, recipe, tiles_per_image=2, skipped=skipped)
    assert skipped == [Skipped(bad.name, "unreadable_image", skipped[0].message)]  # once
    with pytest.raises(ValueError, match=f"none of the 1 validation samples.*{bad.name}"):
        ut.validation_tiles([bad], recipe)


def test_unet_recipe_builds_when_a_validation_image_is_bad(one_bad, capsys):
    from course_lib.training.recipes import nuclei_split, unet_nuclei

    dirs, _ = one_bad
    _, val, _ = nuclei_split(dirs, 0.4)
    corrupt(sample_image(val[0]))  # one of the two validation samples (the split survives it)
    recipe = unet_nuclei(dirs[0].parent, "quick", val_fraction=0.4)
    images, targets = recipe.val_data
    assert len(images) == len(targets) == 1
    out = capsys.readouterr().out
    assert f"validation: 1 sample skipped: {val[0].name} (unreadable_image)" in out
    assert "validating on the other 1 sample(s)" in out


# --- A(b): a COCO polygon of one or two points ----------------------------------------------

def coco_with(segmentation, tmp_path: Path) -> Path:
    """One 16×16 image with a good square (annotation 1) and ``segmentation`` (annotation 2)."""
    (tmp_path / "images").mkdir(exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    data = {"images": [{"id": 1, "file_name": "a.png", "height": 16, "width": 16}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                 "segmentation": [[2, 2, 8, 2, 8, 8, 2, 8]], "bbox": [2, 2, 6, 6], "area": 36},
                {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0,
                 "segmentation": segmentation, "bbox": [1, 1, 1, 1], "area": 1}]}
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("segmentation, says", [
    ([[3, 4]], "1 point(s)"),                     # pycocotools: bare Exception
    ([[3, 4, 9, 9]], "2 point(s)"),               # pycocotools: TypeError
    ([[2, 2, 8, 2, 8, 8, 2]], "odd count"),
    ([], "no segmentation"),                      # pycocotools: IndexError
    ([[2, 2, 8, 2, 8, "x"]], "not a finite number"),
])
def test_a_degenerate_polygon_is_a_counted_named_skip(segmentation, says, tmp_path, caplog):
    from course_lib.data.pipeline import MaskRCNNDataset

    provider = C.CocoSamples(coco_with(segmentation, tmp_path))
    with caplog.at_level(logging.WARNING, logger="course_lib.data.coco"):
        image, masks, ids, regions = provider.load_with_ignore(0)
    assert masks.shape == (16, 16, 1) and list(ids) == [1]  # the good square is kept
    assert regions.dropped == {"bad_segmentation": 1}
    assert "a.png: annotation 2" in caplog.text and says in caplog.text
    # in a training batch: no exception mid-epoch, the loss counted by reason
    ds = MaskRCNNDataset(provider, batch_size=1, image_size=32, mini_mask_shape=(8, 8))
    assert int(ds[0]["gt_count"][0]) == 1
    assert ds.drop_summary() == {"bad_segmentation": 1}
    assert ds.skip_summary()["skipped"] == 0


@pytest.mark.parametrize("content, says", [
    ([{"id": 1}], "holds a json list, not a COCO instance dataset"),
    ({"images": [], "annotations": []}, "lacks the keys ['categories']"),
    ({"images": [], "annotations": [], "categories": []}, "lists no categories"),
    ({"images": {}, "annotations": [], "categories": [{"id": 1}]}, "images must be lists"),
])
def test_a_json_that_is_not_a_coco_dataset_is_named(content, says, tmp_path):
    path = tmp_path / "weird.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="weird.json") as info:
        C.load_coco(path)
    assert says in str(info.value)


# --- A(c), C(a): prediction over a folder --------------------------------------------------

def test_predict_folder_skips_an_unreadable_image_and_writes_the_rest(tmp_path, caplog):
    from course_lib.data.nuclei import read_submission
    from course_lib.training.evaluate import predict_folder

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "c"):
        Image.fromarray(np.full((8, 8, 3), 200, np.uint8)).save(folder / f"{name}.png")
    corrupt(folder / "b.png")

    def square(image):
        labels = np.zeros(image.shape[:2], np.int32)
        labels[2:5, 2:5] = 1
        return labels

    with caplog.at_level(logging.WARNING):
        preds = predict_folder(square, folder, tmp_path / "out", submission=tmp_path / "s.csv",
                               coco_results=tmp_path / "r.json", progress=False)
    assert sorted(preds) == ["a", "c"]
    assert [(s.name, s.reason) for s in preds.skipped] == [("b", "unreadable_image")]
    assert "b.png" in caplog.text
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]
    assert sorted(read_submission(tmp_path / "s.csv", {"a": (8, 8), "c": (8, 8)})) == ["a", "c"]


def test_two_inputs_with_one_name_get_two_outputs(tmp_path, caplog):
    from course_lib.training.evaluate import image_files, predict_folder

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((6, 6, 3), 10, np.uint8)).save(folder / "x.png")
    Image.fromarray(np.full((6, 6, 3), 250, np.uint8)).save(folder / "x.jpg", quality=95)
    Image.fromarray(np.full((6, 6, 3), 10, np.uint8)).save(folder / "y.png")
    with caplog.at_level(logging.WARNING):
        ids = [i for i, _ in image_files(folder)]
    assert sorted(ids) == ["x.jpg", "x.png", "y"]
    assert "x.jpg, x.png" in caplog.text and "full file name" in caplog.text

    def by_brightness(image):  # 1 label where bright, so the two outputs differ
        return (image[..., 0] > 128).astype(np.int32)

    preds = predict_folder(by_brightness, folder, tmp_path / "out", progress=False)
    assert preds["x.jpg"].max() == 1 and preds["x.png"].max() == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "x.jpg.png", "x.png.png", "y.png"]


# --- A(d): evaluation -----------------------------------------------------------------------

def test_dsb_evaluation_skips_a_bad_sample_and_scores_the_rest(one_bad):
    from course_lib.training.evaluate import evaluate_dsb, folder_samples

    dirs, bad = one_bad
    truth = {}
    for d in dirs:
        if d != bad:
            image, masks = load_sample(d)
            truth[image.tobytes()] = masks_to_labels(masks)
    result = evaluate_dsb(lambda im: truth[im.tobytes()], folder_samples(dirs), progress=False)
    assert result["score"] == 1.0 and len(result["per_image"]) == 4
    assert bad.name not in result["per_image"]
    assert [(s.name, s.reason) for s in result["skipped"]] == [(bad.name, "unreadable_image")]
    with pytest.raises(ValueError, match=f"no samples to score.*{bad.name}"):
        evaluate_dsb(lambda im: im, folder_samples([bad]), progress=False)


def test_coco_evaluation_skips_a_bad_sample(tmp_path):
    from coco_fixtures import TwoImages

    from course_lib.training.evaluate import evaluate_coco

    class SecondUnreadable(TwoImages):
        def name(self, i):
            return f"img{i}"

        def load(self, i):
            if i == 1:
                raise ImageReadError("Could not read image file img1.png: truncated")
            return super().load(i)

    provider = SecondUnreadable()

    def oracle(image):
        _, masks, ids = provider.load(int(image[0, 0, 0]))
        return {"masks": masks, "class_ids": ids, "scores": np.ones(len(ids))}

    result = evaluate_coco(oracle, provider, progress=False)
    assert result["segm"]["AP"] == pytest.approx(1.0)  # image 0 scored perfectly
    assert [(s.name, s.reason) for s in result["skipped"]] == [("img1", "unreadable_image")]


# --- A(e): the classical baseline command ---------------------------------------------------

def test_classical_baseline_skips_a_bad_sample_and_names_it(one_bad, capsys):
    from course_lib.models import classical

    dirs, bad = one_bad
    scores = classical.main([str(dirs[0].parent)])
    assert len(scores["all"]) == 4
    assert [s.name for s in scores.skipped] == [bad.name]
    out = capsys.readouterr().out
    assert "all: DSB score" in out and "on 4 images" in out
    assert f"Not scored: 1 sample skipped: {bad.name} (unreadable_image)" in out


@pytest.mark.parametrize("make, says", [
    (lambda root: root.mkdir(), "holds no DSB samples"),
    (lambda root: None, "does not exist"),
])
def test_classical_baseline_on_an_empty_or_missing_folder_is_one_line(make, says, tmp_path,
                                                                       capsys):
    from course_lib.models import classical

    root = tmp_path / "stage1_train"
    make(root)
    with pytest.raises(SystemExit) as stop:
        classical.main([str(root)])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0] and "Traceback" not in err[0]


# --- C(b): masks that are all empty ---------------------------------------------------------

@pytest.mark.parametrize("model", ["unet", "maskrcnn"])
def test_a_dataset_whose_masks_are_all_empty_is_refused(model, nuclei_root, tmp_path):
    import shutil

    from course_lib.training.recipes import DataError, make_recipe

    root = tmp_path / "stage1_train"
    shutil.copytree(nuclei_root, root)
    for mask in root.glob("*/masks/*.png"):
        Image.fromarray(np.zeros(Image.open(mask).size[::-1], np.uint8)).save(mask)
    with pytest.raises(DataError, match="holds an instance: every mask is empty") as info:
        make_recipe("nuclei", model, "quick", root)
    assert str(root) in str(info.value) and "\n" not in str(info.value)


# --- C(c): a PNG whose pixel data stops early but ends properly -----------------------------

def _png(width, height, raw, colour=2, interlace=0) -> bytes:
    """A PNG file around pixel bytes ``raw`` (filter bytes included), 8 bits per sample."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def test_a_png_with_rows_missing_is_refused_not_read_as_black(tmp_path):
    h, w = 12, 5
    pixels = np.random.default_rng(0).integers(1, 256, (h, w, 3), dtype=np.uint8)
    rows = [b"\x00" + pixels[r].tobytes() for r in range(h)]
    whole, short = tmp_path / "whole.png", tmp_path / "short.png"
    whole.write_bytes(_png(w, h, b"".join(rows)))
    short.write_bytes(_png(w, h, b"".join(rows[:7])))  # a complete stream of 7 rows of 12
    with Image.open(short) as im:  # what Pillow alone gives: black rows, no error
        assert not np.asarray(im.convert("RGB"))[7:].any()
    np.testing.assert_array_equal(read_image(whole), pixels)
    with pytest.raises(ImageReadError, match=r"short.png.*stops after 7 of 12 rows"):
        read_image(short)


def test_complete_pngs_of_every_kind_pass_the_row_check(tmp_path):
    """No false alarm: Pillow's own PNGs of each mode, and hand-made interlaced ones."""
    from course_lib.data.io import png_pixel_bytes

    rng = np.random.default_rng(1)
    for mode in ("1", "L", "LA", "P", "RGB", "RGBA", "I;16"):
        for h, w in ((1, 1), (7, 13), (9, 30)):
            rgba = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), "RGBA")
            im = (Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
                  if mode == "I;16" else rgba.convert(mode))
            path = tmp_path / f"{mode.replace(';', '')}_{h}x{w}.png"
            im.save(path)
            read_image(path)
    for h, w in ((1, 1), (7, 13), (11, 9)):
        raw = b"\x00" * png_pixel_bytes(w, h, 8, 2, interlaced=True)
        (tmp_path / "interlaced.png").write_bytes(_png(w, h, raw, interlace=1))
        assert read_image(tmp_path / "interlaced.png").shape == (h, w, 3)


def test_interlaced_pixel_bytes_by_hand_and_a_short_interlaced_png_is_refused(tmp_path):
    """Adam7 by hand for an 8×8 RGB image (1 filter byte per row, 3 bytes per pixel): passes of
    1×1, 1×1, 2×1, 2×2, 4×2, 4×4 and 8×4 pixels (columns × rows) inflate to 4 + 4 + 7 + 14 +
    26 + 52 + 100 = 207 bytes, against 8 × (1 + 24) = 200 without interlacing."""
    from course_lib.data.io import png_pixel_bytes, png_rows_missing

    assert png_pixel_bytes(8, 8, 8, 2, interlaced=True) == 207
    assert png_pixel_bytes(8, 8, 8, 2, interlaced=False) == 200
    assert png_pixel_bytes(1, 1, 8, 2, interlaced=True) == 4
    short = _png(8, 8, b"\x00" * 150, interlace=1)
    assert png_rows_missing(_png(8, 8, b"\x00" * 207, interlace=1)) == ""
    assert "150 of 207 bytes" in png_rows_missing(short)
    (tmp_path / "short.png").write_bytes(short)
    with pytest.raises(ImageReadError, match="short.png"):  # Pillow sees this one itself
        read_image(tmp_path / "short.png")


def test_skip_reasons_and_an_empty_skip_list():
    from course_lib.data.skips import skip_reason

    assert skip_reason(FileNotFoundError("x")) == "missing_file"
    assert skip_reason(ImageReadError("x")) == "unreadable_image"
    assert skip_reason(PermissionError("x")) == "read_error"
    assert skip_reason(ValueError("x")) == "invalid_sample"
    assert describe_skips([]) == ""


def test_ctrl_c_before_any_checkpoint_says_the_command_starts_again(tmp_path, capsys):
    from course_lib import train as cli

    assert cli._interrupted(cli.build_parser(), tmp_path / "run") == 130
    assert "no checkpoint was written yet; the same command starts the run again" in \
        capsys.readouterr().err


def test_the_stratified_split_survives_an_unreadable_image_and_logs_it(one_bad, caplog):
    from course_lib.data.nuclei import stratified_split

    dirs, bad = one_bad
    with caplog.at_level("WARNING", logger="course_lib.data.nuclei"):
        train, val, found = stratified_split(dirs, 0.25, seed=0)
    assert sorted(train + val) == sorted(dirs)            # nothing lost
    assert found[bad.name] == "fluorescence"
    assert bad.name in caplog.text and "unreadable" in caplog.text
