"""Pascal VOC reader and COCO conversion: a hand-made VOC folder and pycocotools as oracles."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image

from course_lib.data import voc

# The colours below are the VOC devkit's documented ones (VOCcode/labelcolormap): index 1
# aeroplane (128, 0, 0), 8 cat (64, 0, 0), 15 person (192, 128, 128), 255 void (224, 224, 192).
KNOWN_COLOURS = {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 8: (64, 0, 0),
                 15: (192, 128, 128), 20: (0, 64, 128), 255: (224, 224, 192)}


def _palette_png(path, indices):
    """Write a palette PNG by hand (independently of the library's writer)."""
    pal = []
    for i in range(256):
        pal += list(KNOWN_COLOURS.get(i, (i, i, i)))
    im = Image.fromarray(indices.astype(np.uint8), mode="L")
    im.putpalette(pal)
    assert im.mode == "P"
    im.save(path)


@pytest.fixture
def tiny_voc(tmp_path):
    """One 8 x 10 image: a person (instance 1) and a cat (instance 2), each ringed by 255."""
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for d in ("JPEGImages", "SegmentationObject", "SegmentationClass", "Annotations",
              "ImageSets/Segmentation"):
        (root / d).mkdir(parents=True)
    obj = np.zeros((8, 10), np.uint8)
    obj[0:5, 0:5] = 255          # void ring ...
    obj[1:4, 1:4] = 1            # ... around the person's 3 x 3 interior
    obj[3:8, 6:10] = 255
    obj[4:7, 7:9] = 2            # the cat: rows 4..6, columns 7..8
    cls = np.where(obj == 1, 15, np.where(obj == 2, 8, obj)).astype(np.uint8)
    _palette_png(root / "SegmentationObject" / "a.png", obj)
    _palette_png(root / "SegmentationClass" / "a.png", cls)
    Image.fromarray(np.full((8, 10, 3), 120, np.uint8)).save(root / "JPEGImages" / "a.jpg")
    (root / "Annotations" / "a.xml").write_text(
        "<annotation><object><name>person</name><difficult>0</difficult><bndbox><xmin>2</xmin>"
        "<ymin>2</ymin><xmax>4</xmax><ymax>4</ymax></bndbox></object>"
        "<object><name>cat</name><bndbox><xmin>8</xmin><ymin>5</ymin><xmax>9</xmax>"
        "<ymax>7</ymax></bndbox></object></annotation>")
    sets = root / "ImageSets" / "Segmentation"
    (sets / "train.txt").write_text("a\n")
    (sets / "val.txt").write_text("")
    (sets / "trainval.txt").write_text("a\n")
    return root


def test_palette_has_the_devkit_colours():
    assert voc.VOC_PALETTE.shape == (256, 3) and voc.VOC_PALETTE.dtype == np.uint8
    for index, colour in KNOWN_COLOURS.items():
        assert tuple(voc.VOC_PALETTE[index]) == colour, index
    assert len(voc.VOC_CLASSES) == 21 and voc.VOC_CLASSES[0] == "background"
    assert voc.VOC_CLASSES[15] == "person" and voc.VOC_CLASSES[8] == "cat"


def test_load_sample_reads_indices_and_leaves_void_out(tiny_voc):
    image, masks, class_ids = voc.load_sample(tiny_voc.parent.parent, "a")  # parent resolves
    assert image.shape == (8, 10, 3) and image.dtype == np.uint8
    assert masks.shape == (8, 10, 2) and masks.dtype == bool
    np.testing.assert_array_equal(class_ids, [15, 8])
    expected = np.zeros((8, 10, 2), bool)
    expected[1:4, 1:4, 0] = True
    expected[4:7, 7:9, 1] = True
    np.testing.assert_array_equal(masks, expected)  # the 255 ring belongs to neither


def test_rgb_saved_png_maps_back_to_indices(tiny_voc, tmp_path):
    obj = voc.read_index_png(tiny_voc / "SegmentationObject" / "a.png")
    rgb_path = tmp_path / "rgb.png"
    Image.open(tiny_voc / "SegmentationClass" / "a.png").convert("RGB").save(rgb_path)
    cls = voc.read_index_png(rgb_path)
    assert set(np.unique(obj)) == {0, 1, 2, 255}
    assert set(np.unique(cls)) == {0, 8, 15, 255}
    bad = tmp_path / "bad.png"
    Image.fromarray(np.full((2, 2, 3), 7, np.uint8)).save(bad)  # (7, 7, 7) is not in the map
    with pytest.raises(ValueError, match="outside the VOC palette"):
        voc.read_index_png(bad)


def test_annotation_boxes_to_pixel_edges(tiny_voc):
    objs = voc.read_annotation(tiny_voc, "a")
    # VOC xmin=2 (1-based) is pixel column 1, edge 1; xmax=4 inclusive is edge 4
    assert objs[0]["name"] == "person" and objs[0]["class_id"] == 15
    assert objs[0]["box"] == (1.0, 1.0, 4.0, 4.0)
    assert objs[1]["box"] == (4.0, 7.0, 7.0, 9.0)


def test_voc_to_coco_round_trips_through_pycocotools(tiny_voc):
    from pycocotools.coco import COCO

    data = voc.voc_to_coco(tiny_voc, "train")
    text = json.dumps(data)  # JSON-safe: RLE counts are str
    coco = COCO()
    coco.dataset = json.loads(text)
    coco.createIndex()
    _, masks, class_ids = voc.load_sample(tiny_voc, "a")
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["id"] for a in anns] == [1, 2]
    assert [a["category_id"] for a in anns] == [15, 8]
    for k, ann in enumerate(anns):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[..., k])
        assert ann["iscrowd"] == 0 and ann["area"] == masks[..., k].sum()
    # COCO bbox [x, y, w, h]: the person covers rows 1..3, columns 1..3 -> [1, 1, 3, 3];
    # the cat rows 4..6, columns 7..8 -> [7, 4, 2, 3]
    assert anns[0]["bbox"] == [1.0, 1.0, 3.0, 3.0]
    assert anns[1]["bbox"] == [7.0, 4.0, 2.0, 3.0]
    assert data["images"][0] == {"id": 1, "file_name": "a.jpg", "height": 8, "width": 10,
                                 "voc_id": "a"}
    assert {c["id"] for c in data["categories"]} == set(range(1, 21))


def test_voc_to_coco_subsets(tiny_voc):
    cats = voc.voc_to_coco(tiny_voc, "train", classes=["cat"])
    assert [a["category_id"] for a in cats["annotations"]] == [8]
    assert cats["categories"] == [{"id": 8, "name": "cat", "supercategory": "voc"}]
    none = voc.voc_to_coco(tiny_voc, "train", classes=[1])  # no aeroplane: image dropped
    assert none["images"] == [] and none["annotations"] == []
    assert voc.voc_to_coco(tiny_voc, "train", max_images=0)["images"] == []
    with pytest.raises(ValueError, match="Unknown VOC class"):
        voc.voc_to_coco(tiny_voc, "train", classes=["unicorn"])


def test_instance_without_class_is_skipped_and_logged(caplog):
    obj = np.array([[1, 1, 0], [2, 2, 255]], np.uint8)
    cls = np.array([[5, 5, 0], [0, 0, 255]], np.uint8)  # instance 2 has no class pixels
    with caplog.at_level(logging.WARNING, logger="course_lib.data.voc"):
        masks, ids = voc.instances_from_pngs(obj, cls, source="x")
    assert masks.shape == (2, 3, 1) and list(ids) == [5]
    assert "instance 2" in caplog.text


def test_missing_layout_and_split_errors_name_the_fix(tmp_path, tiny_voc):
    with pytest.raises(FileNotFoundError, match="make_voc"):
        voc.resolve_root(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="split"):
        voc.read_split(tiny_voc, "test")


def test_samples_provider_and_statistics(tiny_voc):
    samples = voc.VocSamples(tiny_voc, "trainval", classes=["person"])
    assert len(samples) == 1 and samples.name(0) == "a"
    _, masks, ids = samples.load(0)
    assert masks.shape[-1] == 1 and list(ids) == [15]
    stats = voc.statistics(tiny_voc, "train")
    np.testing.assert_array_equal(stats["instances_per_image"], [2])
    # box sizes sqrt(h * w): person 3 x 3 -> 3, cat 3 x 2 -> sqrt(6)
    np.testing.assert_allclose(stats["box_sizes"], [3.0, np.sqrt(6.0)])


def test_save_coco_writes_json(tiny_voc, tmp_path):
    path = voc.save_coco(voc.voc_to_coco(tiny_voc, "train"), tmp_path / "out" / "train.json")
    assert json.loads(path.read_text())["annotations"][0]["id"] == 1


def test_unclassed_and_filtered_instances_become_ignore_regions(tiny_voc):
    # SegmentationClass of the cat's pixels erased to background: instance 2 has no class
    cls = voc.read_index_png(tiny_voc / "SegmentationClass" / "a.png").copy()
    cls[cls == 8] = 0
    _palette_png(tiny_voc / "SegmentationClass" / "a.png", cls)
    image, masks, ids, ignored = voc.load_sample(tiny_voc, "a", with_ignore=True)
    assert list(ids) == [15] and ignored.reasons == ("unclassed",)
    cat = np.zeros((8, 10), bool)
    cat[4:7, 7:9] = True
    np.testing.assert_array_equal(ignored.masks[..., 0], cat)
    # a class filter: the person is not among the classes asked for -> "unmapped"
    samples = voc.VocSamples(tiny_voc, "train", classes=["cat"])
    _, masks2, ids2, ignored2 = samples.load_with_ignore(0)
    assert masks2.shape[-1] == 0 and ignored2.reasons == ("unclassed", "unmapped")
    person = np.zeros((8, 10), bool)
    person[1:4, 1:4] = True
    np.testing.assert_array_equal(ignored2.masks[..., 1], person)
    assert len(samples.load(0)) == 3  # the plain contract is unchanged
