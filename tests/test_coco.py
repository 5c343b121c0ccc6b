"""COCO-json reader and the bring-your-own-data contract."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from course_lib.data import coco as C
from course_lib.data import samples as S
from course_lib.data import voc
from course_lib.data.synthetic import make_voc


def _rle(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


@pytest.fixture
def coco_dir(tmp_path):
    """Two images; categories 3 and 17 (not contiguous); a polygon, an RLE and a crowd region."""
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((10, 12, 3), 50, np.uint8)).save(images / "one.png")
    Image.fromarray(np.full((6, 6), 200, np.uint8)).save(images / "two.png")  # grey image
    blob = np.zeros((10, 12), bool)
    blob[6:9, 1:4] = True
    blob[7, 4] = True
    data = {
        "images": [{"id": 5, "file_name": "one.png", "height": 10, "width": 12},
                   {"id": 9, "file_name": "two.png", "height": 6, "width": 6}],
        "categories": [{"id": 17, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            # a rectangle polygon with corners on pixel edges x 3..7, y 2..5
            {"id": 1, "image_id": 5, "category_id": 17, "iscrowd": 0,
             "segmentation": [[3, 2, 7, 2, 7, 5, 3, 5]], "bbox": [3, 2, 4, 3], "area": 12},
            {"id": 2, "image_id": 5, "category_id": 3, "iscrowd": 0,
             "segmentation": _rle(blob), "bbox": [1, 6, 4, 3], "area": 10},
            {"id": 3, "image_id": 5, "category_id": 3, "iscrowd": 1,
             "segmentation": _rle(~blob), "bbox": [0, 0, 12, 10], "area": 110},
        ],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(data))
    return path, blob


def test_load_sample_decodes_polygons_and_rle(coco_dir):
    path, blob = coco_dir
    coco = C.load_coco(path)
    image, masks, class_ids = C.load_sample(coco, 5, path.parent / "images")
    assert image.shape == (10, 12, 3) and image.dtype == np.uint8
    assert masks.shape == (10, 12, 2) and masks.dtype == bool
    # categories sorted (3, 17) -> contiguous (1, 2): the dog polygon is 2, the cat RLE 1
    np.testing.assert_array_equal(class_ids, [2, 1])
    np.testing.assert_array_equal(masks[..., 1], blob)  # RLE: exact
    # a polygon with corners on pixel edges x 3..7, y 2..5 covers exactly the pixels in
    # rows 2..4 and columns 3..6 (3 x 4 = 12 pixels, the json's area)
    rect = np.zeros((10, 12), bool)
    rect[2:5, 3:7] = True
    np.testing.assert_array_equal(masks[..., 0], rect)
    # crowd regions only on request
    _, masks_c, ids_c = C.load_sample(coco, 5, path.parent / "images", include_crowd=True)
    assert masks_c.shape[-1] == 3 and list(ids_c) == [2, 1, 1]
    # an image without annotations gives an empty stack; the grey image becomes RGB
    image2, masks2, ids2 = C.load_sample(coco, 9, path.parent / "images")
    assert image2.shape == (6, 6, 3) and masks2.shape == (6, 6, 0) and ids2.shape == (0,)
    with pytest.raises(KeyError, match="not in the COCO index"):
        C.load_sample(coco, 1234, path.parent)


def test_category_mapping_is_contiguous(coco_dir):
    mapping, names = C.category_mapping(C.load_coco(coco_dir[0]))
    assert mapping == {3: 1, 17: 2} and names == ["background", "cat", "dog"]


def test_coco_samples_finds_the_image_folder(coco_dir):
    samples = C.CocoSamples(coco_dir[0])  # images/ beside the json
    assert len(samples) == 2 and samples.name(0) == "one.png"
    assert samples.class_names == ["background", "cat", "dog"]
    S.check_sample(*samples.load(0))
    with pytest.raises(ValueError, match="image_dir"):
        C.CocoSamples(json.loads(coco_dir[0].read_text()))


def test_size_mismatch_and_bad_json_are_explained(coco_dir, tmp_path):
    path, _ = coco_dir
    data = json.loads(path.read_text())
    data["images"][0]["height"] = 11
    with pytest.raises(ValueError, match="do not belong together"):
        C.load_sample(C.load_coco(data), 5, path.parent / "images")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid json"):
        C.load_coco(bad)
    with pytest.raises(ValueError, match="lacks the keys"):
        C.load_coco({"images": []})


def test_empty_annotation_mask_is_skipped_and_logged(coco_dir, caplog):
    path, _ = coco_dir
    data = json.loads(path.read_text())
    data["annotations"][1]["segmentation"] = _rle(np.zeros((10, 12), bool))
    with caplog.at_level(logging.WARNING, logger="course_lib.data.coco"):
        _, masks, ids = C.load_sample(C.load_coco(data), 5, path.parent / "images")
    assert masks.shape[-1] == 1 and list(ids) == [2] and "empty mask" in caplog.text


def test_voc_converted_to_coco_reads_back_the_same(tmp_path):
    root = make_voc(tmp_path, 3, seed=1, size=64)
    json_path = voc.save_coco(voc.voc_to_coco(root, "trainval"), tmp_path / "voc.json")
    from_coco = C.CocoSamples(json_path, root / "JPEGImages")
    from_voc = voc.VocSamples(root, "trainval")
    keep_ids = {c: c for c in from_coco.coco.getCatIds()}  # keep VOC ids for the comparison
    for i in range(len(from_voc)):
        image_a, masks_a, ids_a = from_voc.load(i)
        image_b, masks_b, ids_b = C.load_sample(from_coco.coco, from_coco.ids[i],
                                                root / "JPEGImages", mapping=keep_ids)
        np.testing.assert_array_equal(image_a, image_b)
        np.testing.assert_array_equal(masks_a, masks_b)
        np.testing.assert_array_equal(ids_a, ids_b)


# ------------------------------------------------------------------ bring your own data


def _check_contract(provider):
    assert len(provider) >= 1
    for i in range(len(provider)):
        image, masks, class_ids = provider.load(i)
        assert image.ndim == 3 and image.shape[-1] == 3 and image.dtype == np.uint8
        assert masks.ndim == 3 and masks.dtype == bool and masks.shape[:2] == image.shape[:2]
        assert class_ids.shape == (masks.shape[-1],)
        assert np.issubdtype(class_ids.dtype, np.integer) and (class_ids >= 1).all()
        assert isinstance(provider.name(i), str)
        S.check_sample(image, masks, class_ids, source=provider.name(i))


def test_check_sample_rejects_contract_violations():
    image = np.zeros((4, 5, 3), np.uint8)
    masks = np.zeros((4, 5, 2), bool)
    S.check_sample(image, masks, np.array([1, 2]))
    with pytest.raises(ValueError, match="img7: image must be"):
        S.check_sample(image.astype(np.float32), masks, np.array([1, 2]), source="img7")
    with pytest.raises(ValueError, match="masks must be"):
        S.check_sample(image, masks.astype(np.uint8), np.array([1, 2]))
    with pytest.raises(ValueError, match="masks must be"):
        S.check_sample(image, np.zeros((4, 6, 2), bool), np.array([1, 2]))
    with pytest.raises(ValueError, match="one per"):
        S.check_sample(image, masks, np.array([1]))
    with pytest.raises(ValueError, match="0 is the background"):
        S.check_sample(image, masks, np.array([0, 1]))


def test_label_folder_contract(tmp_path, caplog):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    labels = np.zeros((8, 9), np.uint16)
    labels[1:3, 1:4] = 7  # ids need not be consecutive; 16-bit PNG
    labels[5:8, 2:9] = 300
    Image.fromarray(np.full((8, 9, 3), 90, np.uint8)).save(tmp_path / "images" / "p.png")
    Image.fromarray(labels).save(tmp_path / "labels" / "p.png")
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "images" / "orphan.png")
    with caplog.at_level(logging.WARNING, logger="course_lib.data.coco"):
        provider = C.open_dataset(tmp_path)
    assert isinstance(provider, C.LabelFolderSamples) and provider.skipped == ["orphan.png"]
    _check_contract(provider)
    _, masks, ids = provider.load(0)
    assert masks.shape == (8, 9, 2) and masks[..., 0].sum() == 6 and masks[..., 1].sum() == 21
    assert list(ids) == [1, 1]


def test_dsb_folder_contract(tmp_path):
    sample = tmp_path / "stage" / "s1"
    (sample / "images").mkdir(parents=True)
    (sample / "masks").mkdir()
    Image.fromarray(np.full((12, 10, 4), 255, np.uint8)).save(sample / "images" / "s1.png")
    for k, (r, c) in enumerate([(1, 1), (6, 5)]):
        m = np.zeros((12, 10), np.uint8)
        m[r:r + 4, c:c + 3] = 255
        Image.fromarray(m).save(sample / "masks" / f"m{k}.png")
    Image.fromarray(np.zeros((12, 10), np.uint8)).save(sample / "masks" / "empty.png")
    provider = C.open_dataset(tmp_path / "stage")
    assert isinstance(provider, C.DsbFolderSamples)
    _check_contract(provider)
    assert provider.load(0)[1].shape == (12, 10, 2)
    # the loader's repairs are reported, not silent: the empty mask file is counted
    _, masks, _, ignored = provider.load_with_ignore(0)
    assert masks.shape == (12, 10, 2) and ignored.masks.shape == (12, 10, 0)
    assert ignored.dropped == {"empty_mask": 1}


def test_open_dataset_dispatches(coco_dir, tmp_path):
    assert isinstance(C.open_dataset(coco_dir[0]), C.CocoSamples)
    root = make_voc(tmp_path / "v", 2, seed=0, size=32)
    provider = C.open_dataset(root.parent, split="trainval")
    assert isinstance(provider, voc.VocSamples)
    _check_contract(provider)
    _check_contract(C.open_dataset(coco_dir[0]))
    with pytest.raises(FileNotFoundError, match="neither"):
        C.open_dataset(tmp_path / "missing.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no samples"):
        C.open_dataset(tmp_path / "empty")


def test_dsb_provider_on_real_data(real_dsb):
    from course_lib.data import nuclei

    provider = C.DsbFolderSamples(sample_dirs=nuclei.index_samples(real_dsb)[:2])
    _check_contract(provider)


def test_crowd_and_unmapped_annotations_become_ignore_regions(coco_dir):
    # the fixture's crowd annotation (id 3) covers ~blob; add one of a category the json does
    # not list (42): neither may silently become background
    path, blob = coco_dir
    data = json.loads(path.read_text())
    stray = np.zeros((10, 12), bool)
    stray[0:2, 8:12] = True
    data["annotations"].append({"id": 4, "image_id": 5, "category_id": 42, "iscrowd": 0,
                                "segmentation": _rle(stray), "bbox": [8, 0, 4, 2], "area": 8})
    provider = C.CocoSamples(data, image_dir=path.parent / "images")
    image, masks, ids = provider.load(0)  # the three-value contract is unchanged
    assert masks.shape[-1] == 2 and list(ids) == [2, 1]
    image4, masks4, ids4, ignored = provider.load_with_ignore(0)
    np.testing.assert_array_equal(masks4, masks)
    assert ignored.reasons == ("crowd", "unmapped") and ignored.dropped == {}
    np.testing.assert_array_equal(ignored.masks[..., 0], ~blob)
    np.testing.assert_array_equal(ignored.masks[..., 1], stray)
    # through the pipeline: 10 x 12 into a 12 square (scale 1.2 would not be exact, so use
    # 24: scale 2, window (2, 0, 22, 24)); the stray box rows 0..2, cols 8..12 becomes
    # (0 * 2 + 2, 16, 2 * 2 + 2, 24) = (2, 16, 6, 24), the crowd box (the whole image but the
    # blob's corner) (2, 0, 22, 24)
    from course_lib.data.pipeline import MaskRCNNDataset

    ds = MaskRCNNDataset(provider, batch_size=1, image_size=24, shuffle=False, max_ignore=3)
    b = ds[0]
    assert b["gt_ignore_count"][0] == 2
    np.testing.assert_array_equal(b["gt_ignore_boxes"][0, :2], [[2, 0, 22, 24], [2, 16, 6, 24]])
    assert ds.drop_summary() == {"crowd": 1, "unmapped": 1}


def test_colour_label_folder_keeps_every_instance(tmp_path):
    # two touching instances that differ only in green: channel 0 alone would merge them
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    rgb = np.zeros((6, 8, 3), np.uint8)
    rgb[1:4, 1:4] = (255, 0, 0)
    rgb[1:4, 4:7] = (255, 80, 0)
    Image.fromarray(np.full((6, 8, 3), 90, np.uint8)).save(tmp_path / "images" / "p.png")
    Image.fromarray(rgb).save(tmp_path / "labels" / "p.png")
    _, masks, ids = C.LabelFolderSamples(tmp_path).load(0)
    assert masks.shape == (6, 8, 2) and list(ids) == [1, 1]
    assert masks[1:4, 1:4, 0].all() and masks[..., 0].sum() == 9
    assert masks[1:4, 4:7, 1].all() and masks[..., 1].sum() == 9


def test_every_ready_made_provider_meets_the_provider_protocol(tmp_path):
    """The contract module's protocol is what the format modules implement (and nothing in
    the format modules defines the contract again)."""
    from course_lib.data import voc
    from course_lib.data.synthetic import make_nuclei

    make_nuclei(tmp_path, 2, seed=0, size=64)
    provider = C.DsbFolderSamples(tmp_path / "stage1_train")
    assert isinstance(provider, S.SampleProvider)
    S.check_sample(*provider.load(0), source=provider.name(0))
    assert not hasattr(C, "IgnoreRegions") or C.IgnoreRegions is S.IgnoreRegions
    assert not hasattr(voc, "check_sample")
