"""Synthetic VOC look-alike: the real layout, void borders, determinism, XML consistency."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from course_lib.data import voc
from course_lib.data.synthetic import make_voc
from course_lib.data.synthetic.voc import image_id


@pytest.fixture(scope="module")
def small_voc(tmp_path_factory):
    root = tmp_path_factory.mktemp("svoc")
    return make_voc(root, n_images=6, seed=3, size=96)


def test_layout_and_splits(small_voc):
    assert small_voc.name == "VOC2012"
    ids = voc.read_split(small_voc, "trainval")
    assert ids == [image_id(i) for i in range(6)] and ids[0] == "2012_000001"
    train, val = voc.read_split(small_voc, "train"), voc.read_split(small_voc, "val")
    assert train and val and sorted(train + val) == ids and not set(train) & set(val)
    for i in ids:
        assert (small_voc / "JPEGImages" / f"{i}.jpg").is_file()
        for folder in ("SegmentationClass", "SegmentationObject"):
            with Image.open(small_voc / folder / f"{i}.png") as im:
                assert im.mode == "P"  # palette PNGs, as VOC ships them
                assert tuple(im.getpalette()[3:6]) == (128, 0, 0)


def test_every_object_is_ringed_by_void(small_voc):
    for i in voc.read_split(small_voc, "trainval"):
        obj = voc.read_index_png(small_voc / "SegmentationObject" / f"{i}.png")
        cls = voc.read_index_png(small_voc / "SegmentationClass" / f"{i}.png")
        np.testing.assert_array_equal(obj == 255, cls == 255)  # same void in both
        numbers = sorted(set(np.unique(obj)) - {0, 255})
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 1
        for k in numbers:
            inside = obj == k
            ring = ndimage.binary_dilation(inside) & ~inside  # 4-neighbours outside the object
            assert (obj[ring] == 255).all(), f"{i}: instance {k} touches a non-void pixel"
            assert len(np.unique(cls[inside])) == 1 and 1 <= cls[inside][0] <= 20


def test_xml_agrees_with_the_masks(small_voc):
    for i in voc.read_split(small_voc, "trainval"):
        _, masks, class_ids = voc.load_sample(small_voc, i)
        objs = voc.read_annotation(small_voc, i)
        assert [o["class_id"] for o in objs] == class_ids.tolist()
        root = ET.parse(small_voc / "Annotations" / f"{i}.xml").getroot()
        assert root.findtext("size/width") == "96" and root.findtext("segmented") == "1"
        for k, o in enumerate(objs):
            rows = np.flatnonzero(masks[..., k].any(axis=1))
            cols = np.flatnonzero(masks[..., k].any(axis=0))
            y1, x1, y2, x2 = o["box"]  # the annotated box includes the object's border
            assert y1 <= rows[0] and x1 <= cols[0] and y2 >= rows[-1] + 1 and x2 >= cols[-1] + 1


def test_deterministic_per_seed_and_index(tmp_path):
    a = make_voc(tmp_path / "a", 3, seed=5, size=(48, 64))
    b = make_voc(tmp_path / "b", 5, seed=5, size=(48, 64))  # more images: same first three
    c = make_voc(tmp_path / "c", 3, seed=6, size=(48, 64))
    for i in voc.read_split(a, "trainval"):
        for rel in (f"JPEGImages/{i}.jpg", f"SegmentationObject/{i}.png",
                    f"Annotations/{i}.xml"):
            assert (a / rel).read_bytes() == (b / rel).read_bytes()
    different = [(a / f"SegmentationObject/{i}.png").read_bytes()
                 != (c / f"SegmentationObject/{i}.png").read_bytes()
                 for i in voc.read_split(a, "trainval")]
    assert all(different)
    image, _, _ = voc.load_sample(a, image_id(0))
    assert image.shape == (48, 64, 3)


def test_default_sizes_are_voc_like_and_later_objects_cover_earlier(tmp_path):
    root = make_voc(tmp_path, 4, seed=0)
    covered = 0
    for i in voc.read_split(root, "trainval"):
        image, masks, _ = voc.load_sample(root, i)
        assert max(image.shape[:2]) == 500 and 281 <= min(image.shape[:2]) <= 500
        boxes = [tuple(int(v) for v in o["box"]) for o in voc.read_annotation(root, i)]
        # a later object (k) showing well inside an earlier object's box (j < k): occlusion
        for j, (y1, x1, y2, x2) in enumerate(boxes):
            for k in range(j + 1, masks.shape[-1]):
                covered += masks[y1 + 5:y2 - 5, x1 + 5:x2 - 5, k].sum() > 50
    assert covered >= 2


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_images"):
        make_voc("/tmp/never", 0)


def test_completion_marker_written_last(small_voc):
    from course_lib.data.marker import COMPLETE_MARKER, read_marker

    marker = read_marker(small_voc)
    assert {k: marker[k] for k in ("generator", "n_images", "seed", "size")} == \
        {"generator": "make_voc", "n_images": 6, "seed": 3, "size": 96}
    newest = max(p.stat().st_mtime_ns for p in small_voc.rglob("*") if p.is_file())
    assert (small_voc / COMPLETE_MARKER).stat().st_mtime_ns == newest
