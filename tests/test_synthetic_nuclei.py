"""Tests of the synthetic nuclei generator: the on-disk layout, determinism, and a comparison of
its statistics with the real DSB2018 stage1_train (skipped when the real folder is absent).

Oracles: Pillow reads of the written files, the loader of course_lib.data.nuclei, and the
statistics of a random sample of the real folder computed here with plain Pillow/SciPy.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage as ndi

from course_lib.data.nuclei import index_samples, load_sample
from course_lib.data.synthetic.nuclei import SIZES, make_nuclei, make_sample


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn")
    return root, make_nuclei(root, 12, seed=3, size=96)


def test_layout_and_formats(small_set):
    root, dirs = small_set
    assert len(dirs) == 12 and index_samples(root / "stage1_train") == sorted(dirs)
    for d in dirs:
        with Image.open(d / "images" / f"{d.name}.png") as im:
            assert im.mode == "RGBA" and im.size == (96, 96)
            rgba = np.asarray(im)
        assert (rgba[..., 3] == 255).all()
        files = sorted((d / "masks").glob("*.png"))
        assert files, "every image has at least one nucleus"
        stack = []
        for f in files:
            with Image.open(f) as m:
                assert m.mode == "L"
                a = np.asarray(m)
            assert set(np.unique(a)) == {0, 255}
            stack.append(a > 0)
        assert (np.sum(stack, axis=0) <= 1).all(), "masks never overlap"
    manifest = json.loads((root / "manifest.json").read_text())
    assert [m["id"] for m in manifest["images"]] == [d.name for d in dirs]
    assert all(m["n_nuclei"] == len(list((root / "stage1_train" / m["id"] / "masks").iterdir()))
               for m in manifest["images"])


def test_loader_reads_synthetic(small_set):
    _, dirs = small_set
    for d in dirs[:4]:
        image, masks, report = load_sample(d, return_report=True)
        assert image.shape == (96, 96, 3) and masks.shape[:2] == (96, 96)
        assert report.empty_dropped == 0 and report.overlap_pixels == 0
        assert masks.sum(axis=(0, 1)).min() >= 21


def test_deterministic_and_prefix_stable(tmp_path):
    a = make_nuclei(tmp_path / "a", 3, seed=5, size=64)
    b = make_nuclei(tmp_path / "b", 4, seed=5, size=64)
    c = make_nuclei(tmp_path / "c", 3, seed=6, size=64)
    for da, db in zip(a, b, strict=False):
        assert da.name == db.name
        assert (da / "images" / f"{da.name}.png").read_bytes() == \
            (db / "images" / f"{db.name}.png").read_bytes()
        assert sorted(p.name for p in (da / "masks").iterdir()) == \
            sorted(p.name for p in (db / "masks").iterdir())
    assert {d.name for d in a}.isdisjoint({d.name for d in c})


def test_size_option_and_bad_arguments(tmp_path):
    s = make_sample(0, 0, size=(40, 72))
    assert s["image"].shape == (40, 72, 3) and s["labels"].shape == (40, 72)
    with pytest.raises(ValueError, match="size"):
        make_nuclei(tmp_path, 1, size=4)
    with pytest.raises(ValueError, match="n_images"):
        make_nuclei(tmp_path, -1)
    assert make_nuclei(tmp_path / "none", 0) == []


def test_modalities_look_right():
    """Fluorescence is grey on a very dark ground, histology is coloured, bright-field is
    grey on a bright ground (the classification rule used for the real set below)."""
    first = [make_sample(11, i, size=32)["modality"] for i in range(3)]
    assert first == ["fluorescence", "histology", "brightfield"]  # documented: one of each first
    seen = {}
    for i in range(3, 80):
        s = make_sample(11, i, size=64)
        seen.setdefault(s["modality"], s)
    assert set(seen) == {"fluorescence", "histology", "brightfield"}
    for name, s in seen.items():
        assert modality_of(s["image"]) == name, name
        img = s["image"].astype(int)
        if name != "histology":
            assert (img[..., 0] == img[..., 1]).all() and (img[..., 1] == img[..., 2]).all()


def test_quirks_present():
    """A few masks with holes and in two pieces, as in the real labels (2.5 % and 0.6 %)."""
    holes = pieces = total = 0
    for i in range(40):
        labels = make_sample(2, i, size=256)["labels"]
        for k, sl in enumerate(ndi.find_objects(labels), start=1):
            if sl is None:
                continue
            m = labels[sl] == k
            total += 1
            holes += ndi.binary_fill_holes(np.pad(m, 1)).sum() > m.sum()
            pieces += ndi.label(m, np.ones((3, 3)))[1] > 1
    assert 0.005 < holes / total < 0.06 and 0 < pieces / total < 0.02, (holes, pieces, total)


# --- comparison with the real stage1_train ------------------------------------------------

def modality_of(rgb: np.ndarray) -> str:
    """Rule of thumb for the three DSB modalities (matches the real set's 491/97/14 split):
    coloured -> histology; grey and dark on average -> fluorescence; else bright-field."""
    rgb = rgb.astype(float)
    saturation = (rgb.max(axis=-1) - rgb.min(axis=-1)).mean()
    if saturation > 10:
        return "histology"
    return "fluorescence" if rgb.mean() < 100 else "brightfield"


def _real_stats(root, n_images=150, n_area_images=30, seed=0):
    ids = sorted(p.name for p in root.iterdir() if p.is_dir())
    rng = random.Random(seed)
    picks = rng.sample(ids, min(n_images, len(ids)))
    modality, sizes, counts, areas = [], [], [], []
    for i in picks:
        with Image.open(root / i / "images" / f"{i}.png") as im:
            rgb = np.asarray(im)[..., :3]
        modality.append(modality_of(rgb))
        sizes.append(rgb.shape[:2])
        counts.append(len(list((root / i / "masks").iterdir())))
    for i in picks[:n_area_images]:
        for f in (root / i / "masks").iterdir():
            with Image.open(f) as m:
                areas.append(int((np.asarray(m) > 0).sum()))
    return modality, sizes, np.array(counts), np.array(areas)


def _synthetic_stats(n_images=150, n_area_images=60, seed=0):
    modality, sizes, counts, areas = [], [], [], []
    for i in range(n_images):
        s = make_sample(seed, i)
        modality.append(s["modality"])
        sizes.append(s["image"].shape[:2])
        sizes_px = np.bincount(s["labels"].ravel())[1:]
        sizes_px = sizes_px[sizes_px > 0]
        counts.append(len(sizes_px))
        if i < n_area_images:
            areas.extend(sizes_px.tolist())
    return modality, sizes, np.array(counts), np.array(areas)


@pytest.mark.real_data
@pytest.mark.slow
def test_statistics_match_real(real_dsb):
    r_mod, r_size, r_count, r_area = _real_stats(real_dsb)
    s_mod, s_size, s_count, s_area = _synthetic_stats()

    def share(values, key):
        return sum(v == key for v in values) / len(values)

    # modality shares: within 10 points (fluorescence, histology), bright-field under 6 %
    for key, tol in (("fluorescence", 0.10), ("histology", 0.10)):
        assert abs(share(s_mod, key) - share(r_mod, key)) < tol, key
    assert share(s_mod, "brightfield") < 0.06 and share(r_mod, "brightfield") < 0.06
    # sizes: only real sizes appear; the commonest (256×256) within 12 points
    real_sizes = {hw for table in SIZES.values() for hw, _ in table}
    assert set(r_size) <= real_sizes and set(s_size) <= real_sizes
    assert abs(share(s_size, (256, 256)) - share(r_size, (256, 256))) < 0.12
    # nuclei per image: 1 to 375, quartiles within a factor of 1.6, a tail above 100
    assert s_count.min() >= 1 and s_count.max() <= 375
    for q in (25, 50, 75):
        ratio = np.percentile(s_count, q) / np.percentile(r_count, q)
        assert 1 / 1.6 < ratio < 1.6, (q, ratio)
    assert abs(np.mean(s_count > 100) - np.mean(r_count > 100)) < 0.08
    # nucleus areas (pixels): at least 21, median within a factor of 1.6, 5 % / 95 % within 2
    assert s_area.min() >= 21 and r_area.min() >= 21
    for q, tol in ((50, 1.6), (5, 2.0), (95, 2.0)):
        ratio = np.percentile(s_area, q) / np.percentile(r_area, q)
        assert 1 / tol < ratio < tol, (q, ratio)


def test_completion_marker_records_what_the_set_was_made_for(small_set, monkeypatch):
    from course_lib.data.marker import read_marker

    root, _ = small_set
    marker = read_marker(root / "stage1_train")
    assert {k: marker[k] for k in ("generator", "n_images", "seed", "size")} == \
        {"generator": "make_nuclei", "n_images": 12, "seed": 3, "size": 96}
    assert marker["mode"] in ("quick", "full")
    # an interrupted rewrite is not complete: the marker goes first and comes back last
    from course_lib.data import synthetic

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.nuclei, "write_sample", boom)
    with pytest.raises(KeyboardInterrupt):
        make_nuclei(root, 12, seed=3, size=96)
    assert read_marker(root / "stage1_train") is None
