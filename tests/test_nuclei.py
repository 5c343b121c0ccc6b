"""Tests of course_lib.data.nuclei: the DSB sample loader, its repair report, the dataset index
and the Kaggle submission CSV.

Oracles: tiny sample folders drawn by hand (every expected count worked out below), direct
scikit-image reads of the real files, scikit-image's labelling for holes and pieces, and the
run-length encoding worked by hand in the RLE example of course_lib.ops.masks.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import pytest
from PIL import Image
from skimage import io as skio
from skimage import measure

from course_lib.data.io import ImageReadError
from course_lib.data.nuclei import (
    MaskReport,
    NucleiDataset,
    has_hole,
    index_samples,
    load_sample,
    n_pieces,
    read_submission,
    resolve_overlaps,
    sample_paths,
    split_samples,
    write_submission,
)


def _write_sample(root, sample_id, image, masks: dict):
    d = root / sample_id
    (d / "images").mkdir(parents=True)
    (d / "masks").mkdir()
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(d / "images" / f"{sample_id}.png")
    for name, m in masks.items():
        Image.fromarray(np.where(m, 255, 0).astype(np.uint8), mode="L").save(d / "masks" / f"{name}.png")
    return d


def _box(shape, r0, r1, c0, c1):
    m = np.zeros(shape, bool)
    m[r0:r1, c0:c1] = True
    return m


@pytest.fixture
def quirky(tmp_path):
    """A 12×12 sample with every annotation quirk, one mask each (files sort a..f):

    a: empty                                   -> dropped
    b: 5×5 ring rows 0-4, cols 0-4, hole (2,2) -> 24 px, one hole of 1 px
    c: two 2×2 squares at (0,8) and (3,8)      -> 8 px, two pieces (a blank row between)
    d: 4×4 square rows 6-9, cols 0-3           -> 16 px, overlaps e on rows 8-9 cols 2-3 (4 px)
    e: 3×3 square rows 8-10, cols 2-4          -> 9 px
    f: 3×3 square rows 8-10, cols 8-10         -> 9 px, clean
    """
    shape = (12, 12)
    ring = _box(shape, 0, 5, 0, 5)
    ring[2, 2] = False
    two = _box(shape, 0, 2, 8, 10) | _box(shape, 3, 5, 8, 10)
    masks = {"a": np.zeros(shape, bool), "b": ring, "c": two, "d": _box(shape, 6, 10, 0, 4),
             "e": _box(shape, 8, 11, 2, 5), "f": _box(shape, 8, 11, 8, 11)}
    image = np.arange(12 * 12 * 3, dtype=np.uint8).reshape(12, 12, 3)
    return _write_sample(tmp_path / "stage1_train", "quirky", image, masks), masks, image


def test_defaults_keep_everything_but_empty(quirky):
    sample, masks, image = quirky
    img, out, report = load_sample(sample, return_report=True)
    np.testing.assert_array_equal(img, image)
    assert out.dtype == bool and out.shape == (12, 12, 5)
    assert report.mask_files == 6 and report.kept == 5 and report.empty_dropped == 1
    assert report.with_holes == 1 and report.multi_piece == 1
    # d (16 px) and e (9 px) share rows 8-9 × cols 2-3 = 4 pixels; the smaller e keeps them
    assert report.overlap_pixels == 4 and report.overlapping_masks == 1
    np.testing.assert_array_equal(out[..., 3], masks["e"])
    np.testing.assert_array_equal(out[..., 2], masks["d"] & ~masks["e"])
    assert out[..., 2].sum() == 12
    np.testing.assert_array_equal(out[..., 0], masks["b"])  # hole kept
    assert (out.sum(axis=-1) <= 1).all()


def test_fill_holes_and_largest_piece(quirky):
    sample, masks, _ = quirky
    _, out, report = load_sample(sample, holes="fill", pieces="largest", overlap="first",
                                 return_report=True)
    assert report.holes_filled == 1 and report.pieces_reduced == 1
    assert out[..., 0].sum() == 25 and out[2, 2, 0]
    assert out[..., 1].sum() == 4  # both pieces have 4 px: the first (top) one wins the tie
    np.testing.assert_array_equal(out[..., 1], _box((12, 12), 0, 2, 8, 10))
    # "first": d (earlier file) keeps the 4 shared pixels, e keeps 9 - 4 = 5
    assert out[..., 2].sum() == 16 and out[..., 3].sum() == 5


def test_drop_options(quirky):
    sample, _, _ = quirky
    _, out, report = load_sample(sample, holes="drop", pieces="drop", return_report=True)
    assert out.shape[-1] == 3
    assert report.holes_dropped == 1 and report.pieces_dropped == 1 and report.kept == 3
    assert report.summary().startswith("samples=1, mask_files=6, kept=3")


def test_report_is_logged(quirky, caplog):
    sample, _, _ = quirky
    with caplog.at_level(logging.INFO, logger="course_lib.data.nuclei"):
        load_sample(sample)
    assert "empty_dropped=1" in caplog.text and "overlap_pixels=4" in caplog.text


def test_bad_options_and_folders(quirky, tmp_path):
    sample, _, _ = quirky
    with pytest.raises(ValueError, match="holes"):
        load_sample(sample, holes="patch")
    with pytest.raises(FileNotFoundError, match="not a DSB sample"):
        load_sample(tmp_path)


def test_mask_of_wrong_size_names_file(quirky):
    sample, _, _ = quirky
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(sample / "masks" / "z.png")
    with pytest.raises(ImageReadError, match="z.png"):
        load_sample(sample)


def test_resolve_overlaps_hand_case():
    # three masks on a 1×4 strip: A covers 0-3 (4 px), B covers 1-2 (2 px), C covers 2 (1 px)
    m = np.zeros((1, 4, 3), bool)
    m[0, 0:4, 0] = True
    m[0, 1:3, 1] = True
    m[0, 2, 2] = True
    small, contested, losers = resolve_overlaps(m, "smaller")
    # pixel 1: A, B -> B;  pixel 2: A, B, C -> C
    np.testing.assert_array_equal(small[0].T.astype(int), [[1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0]])
    assert (contested, losers) == (2, 2)
    first, _, losers = resolve_overlaps(m, "first")
    np.testing.assert_array_equal(first[0].T.astype(int), [[1, 1, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert losers == 2


def test_no_cap_on_nuclei(tmp_path):
    shape = (40, 40)
    masks = {f"m{i:03d}": _box(shape, 2 * (i // 20), 2 * (i // 20) + 1, 2 * (i % 20), 2 * (i % 20) + 1)
             for i in range(400)}
    d = _write_sample(tmp_path, "many", np.zeros(shape + (3,), np.uint8), masks)
    _, out = load_sample(d)
    assert out.shape[-1] == 400


def test_index_split_and_dataset(tmp_path, caplog):
    root = tmp_path / "stage1_train"
    for i in range(10):
        _write_sample(root, f"s{i}", np.full((4, 4, 3), i, np.uint8), {"m": _box((4, 4), 0, 2, 0, 2)})
    (root / "stray").mkdir()
    (root / "notes.txt").write_text("ignored")
    with caplog.at_level(logging.WARNING):
        samples = index_samples(root)
    assert [p.name for p in samples] == [f"s{i}" for i in range(10)]
    assert "stray" in caplog.text
    train, val = split_samples(samples, 0.3, seed=1)
    assert len(val) == 3 and len(train) == 7 and not set(train) & set(val)
    assert split_samples(samples, 0.3, seed=1) == (train, val)
    assert split_samples(samples, 0.3, seed=2) != (train, val)
    ds = NucleiDataset(root, split="val", val_fraction=0.3, seed=1)
    assert ds.ids == [p.name for p in val] and len(ds) == 3
    for image, masks in ds:
        assert image.shape == (4, 4, 3) and masks.shape == (4, 4, 1)
    assert ds.report.samples == 3 and ds.report.kept == 3
    with pytest.raises(FileNotFoundError, match="prepare"):
        index_samples(tmp_path / "missing")


def test_report_addition():
    a = MaskReport(samples=1, kept=2, with_holes=1)
    b = MaskReport(samples=2, kept=5)
    assert (a + b).as_dict()["kept"] == 7 and (a + b).samples == 3


# --- submission CSV ----------------------------------------------------------------------

def test_submission_hand_worked(tmp_path):
    # the 3×3 mask of the rle_encode docstring: columns read top to bottom give 0 0 0 | 1 1 0 |
    # 0 1 1, so the runs start at pixels 4 and 8 (1-indexed) with length 2: "4 2 8 2"
    m = np.array([[0, 1, 0], [0, 1, 1], [0, 0, 1]], bool)
    path = tmp_path / "sub.csv"
    rows = write_submission(path, {"img1": m[..., None], "empty": np.zeros((3, 3), np.int32)})
    assert rows == 2
    assert path.read_text().splitlines() == ["ImageId,EncodedPixels", "img1,4 2 8 2", "empty,"]
    back = read_submission(path, shapes={"img1": (3, 3), "empty": (3, 3)})
    np.testing.assert_array_equal(back["img1"][..., 0], m)
    assert back["empty"].shape == (3, 3, 0)


def test_submission_round_trip_labels_and_solution_columns(tmp_path):
    labels = np.zeros((6, 5), np.int32)
    labels[0:2, 0:2] = 3
    labels[4:6, 1:5] = 7
    path = tmp_path / "sub.csv"
    write_submission(path, {"x": labels})
    back = read_submission(path, shapes={"x": (6, 5)})["x"]
    assert back.shape == (6, 5, 2)
    np.testing.assert_array_equal(back[..., 0], labels == 3)
    np.testing.assert_array_equal(back[..., 1], labels == 7)
    # the stage-1 solution file carries the size itself
    sol = tmp_path / "solution.csv"
    sol.write_text("ImageId,EncodedPixels,Height,Width,Usage\nx,1 2,6,5,Public\n")
    got = read_submission(sol)["x"]
    assert got.shape == (6, 5, 1) and got[0:2, 0, 0].all() and got.sum() == 2


def test_submission_errors(tmp_path):
    overlapping = np.ones((3, 3, 2), bool)
    with pytest.raises(ValueError, match="overlap"):
        write_submission(tmp_path / "bad.csv", {"a": overlapping})
    path = tmp_path / "sub.csv"
    path.write_text("ImageId,EncodedPixels\na,1 2\n")
    with pytest.raises(ValueError, match="line 2"):
        read_submission(path)
    (tmp_path / "nohead.csv").write_text("id,rle\n")
    with pytest.raises(ValueError, match="ImageId"):
        read_submission(tmp_path / "nohead.csv")


# --- the real DSB2018 folder (skipped when absent) ----------------------------------------

def _oracle_counts(m: np.ndarray) -> tuple[bool, int]:
    """Holes and pieces by scikit-image: background components that do not touch the border
    are holes; 8-connected foreground components are pieces."""
    padded = np.pad(~m, 1, constant_values=True)
    background = measure.label(padded, connectivity=1)
    holes = len(np.unique(background[background > 0])) > 1
    return holes, int(measure.label(m, connectivity=2).max())


#: Real samples with annotation quirks: one mask in two pieces; seven masks with holes.
QUIRKY_REAL = ("00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552",
               "02903040e19ddf92f452907644ad3822918f54af41dd85e5a3fe3e1b6d6f9339")


@pytest.mark.real_data
def test_real_samples_match_direct_reads(real_dsb):
    ids = sorted(p.name for p in real_dsb.iterdir())
    picks = random.Random(0).sample(ids, 4) + [i for i in QUIRKY_REAL if i in ids]
    total = MaskReport()
    holes = pieces = files = 0
    for sample_id in picks:
        d = real_dsb / sample_id
        image, masks, report = load_sample(d, return_report=True)
        raw = skio.imread(d / "images" / f"{sample_id}.png")
        np.testing.assert_array_equal(image, raw[..., :3])
        mask_files = sorted((d / "masks").iterdir())
        direct = [skio.imread(p) > 0 for p in mask_files]
        files += len(direct)
        direct = [m for m in direct if m.any()]
        assert masks.shape == image.shape[:2] + (len(direct),)
        for m in direct:
            h, p = _oracle_counts(m)
            holes += h
            pieces += p > 1
        # the real labels do not overlap, so the loader returns the files unchanged
        if report.overlap_pixels == 0:
            np.testing.assert_array_equal(masks, np.stack(direct, axis=-1))
        total = total + report
    assert total.samples == len(picks) and total.mask_files == files
    assert total.with_holes == holes and total.multi_piece == pieces
    assert total.kept + total.empty_dropped + total.emptied_by_overlap == files


@pytest.mark.real_data
def test_real_quirks_repaired(real_dsb):
    present = [i for i in QUIRKY_REAL if (real_dsb / i).is_dir()]
    if len(present) < 2:
        pytest.skip("the quirky real samples are not in this copy of the data")
    _, masks, report = load_sample(real_dsb / present[0], pieces="largest", return_report=True)
    assert report.multi_piece == 1 and report.pieces_reduced == 1
    assert all(_oracle_counts(masks[..., i])[1] == 1 for i in range(masks.shape[-1]))
    _, masks, report = load_sample(real_dsb / present[1], holes="fill", return_report=True)
    assert report.with_holes == report.holes_filled == 7
    assert not any(_oracle_counts(masks[..., i])[0] for i in range(masks.shape[-1]))


def test_hole_and_piece_helpers():
    ring = _box((7, 7), 1, 6, 1, 6)
    ring[3, 3] = False  # a 1-pixel hole in a 5×5 square
    assert has_hole(ring) and n_pieces(ring) == 1
    # two squares touching only at a corner are ONE 8-connected piece
    corner = _box((6, 6), 0, 2, 0, 2) | _box((6, 6), 2, 4, 2, 4)
    assert n_pieces(corner) == 1 and not has_hole(corner)
    apart = _box((6, 6), 0, 2, 0, 2) | _box((6, 6), 3, 5, 3, 5)
    assert n_pieces(apart) == 2
    # a notch open to the outside is not a hole
    notch = _box((6, 6), 0, 5, 0, 5)
    notch[2, 0:3] = False
    assert not has_hole(notch)
    assert n_pieces(np.zeros((3, 3), bool)) == 0 and not has_hole(np.zeros((3, 3), bool))


def test_sample_paths(quirky, tmp_path):
    sample, _, _ = quirky
    image_path, masks = sample_paths(sample)
    assert image_path.name == "quirky.png" and [m.stem for m in masks] == list("abcdef")
    (sample / "masks" / "readme.txt").write_text("not a mask")
    assert len(sample_paths(sample)[1]) == 6
    test_like = tmp_path / "t1"
    (test_like / "images").mkdir(parents=True)
    (test_like / "images" / "t1.png").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="no masks/ folder"):
        sample_paths(test_like)
