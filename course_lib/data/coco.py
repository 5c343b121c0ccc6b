"""COCO-json instance datasets, and the contract for bringing your own data.

Taught in notebooks/12_train_voc (the VOC subset in COCO format) and 01_data_tour.

A COCO instance-segmentation json lists ``images`` (id, file_name, height, width),
``categories`` (id, name) and ``annotations`` (image_id, category_id, segmentation as polygons or
RLE, bbox ``[x, y, w, h]``, iscrowd). :func:`load_coco` indexes one with
``pycocotools.coco.COCO``; :func:`load_sample` decodes one image's annotations into the course's
arrays through ``COCO.annToMask`` (which handles polygons, RLE and uncompressed RLE).

Category ids in a COCO file need not be consecutive (COCO's own run 1..90 with gaps); models want
class ids 1..K with 0 for the background, so :func:`category_mapping` maps the sorted category
ids to 1..K.

Bring your own data: the sample contract (what a provider returns, :class:`IgnoreRegions`,
:func:`check_sample`) lives in :mod:`course_lib.data.samples`. The ready-made providers:
:class:`CocoSamples` (a COCO json plus its image folder, polygons or RLE),
:class:`course_lib.data.voc.VocSamples` (a Pascal VOC 2012 folder), :class:`DsbFolderSamples`
(the DSB2018 layout) and :class:`LabelFolderSamples` (images beside label images).
:func:`open_dataset` picks the right one for a path.
"""

from __future__ import annotations

import contextlib
import io as _io
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from course_lib.data import io
from course_lib.data.samples import IgnoreRegions

log = logging.getLogger(__name__)


def check_coco_dict(dataset, source: str = "COCO dict") -> None:
    """Raise ``ValueError`` naming ``source`` unless ``dataset`` has a COCO instance json's shape.

    pycocotools takes anything and fails later, far from the cause: a json holding a list dies
    on a bare ``assert``, one without ``categories`` indexes fine and then trains a model with
    no class. Checking the outline (one object with ``images``, ``annotations`` and
    ``categories`` lists, at least one category) up front names the file and what is missing.

    Taught in notebooks/12_train_voc.
    """
    layout = ('{"images": [...], "annotations": [...], "categories": [...]}; '
              "check that --data points at an instances json")
    if not isinstance(dataset, dict):
        raise ValueError(f"{source} holds a json {type(dataset).__name__}, not a COCO instance "
                         f"dataset, which is one object {layout}.")
    missing = [k for k in ("images", "annotations", "categories") if k not in dataset]
    if missing:
        raise ValueError(f"{source} lacks the keys {missing}; an instance-segmentation json "
                         f"needs images, annotations and categories: {layout}.")
    wrong = [k for k in ("images", "annotations", "categories") if not isinstance(dataset[k], list)]
    if wrong:
        raise ValueError(f"{source}: {', '.join(wrong)} must be lists, as in {layout}.")
    if not dataset["categories"]:
        raise ValueError(f"{source} lists no categories, so there is no class to learn; add "
                         'e.g. "categories": [{"id": 1, "name": "nucleus"}].')


def load_coco(annotations: str | Path | dict):
    """A ``pycocotools.coco.COCO`` index of a json file path or an already loaded dict.

    The json's outline is checked first (:func:`check_coco_dict`); pycocotools' progress
    prints are silenced. A dict is not copied; don't change it afterwards.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not valid json, or not shaped like a COCO instance dataset (the message
            names the file and what is missing).

    Taught in notebooks/12_train_voc.
    """
    from pycocotools.coco import COCO

    if isinstance(annotations, dict):
        dataset = annotations
        check_coco_dict(dataset)
    else:
        path = Path(annotations)
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file {path} does not exist.")
        try:
            dataset = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
            raise ValueError(f"{path} is not valid json: {err}") from err
        check_coco_dict(dataset, str(path))
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(_io.StringIO()):
        coco.createIndex()
    return coco


def category_mapping(coco) -> tuple[dict[int, int], list[str]]:
    """Map COCO category ids (sorted) to contiguous class ids 1..K.

    Returns:
        ``(mapping, class_names)``: ``{category_id: class_id}`` and the names by class id,
        ``class_names[0] == "background"``.

    Taught in notebooks/12_train_voc.
    """
    cat_ids = sorted(coco.getCatIds())
    mapping = {cid: i + 1 for i, cid in enumerate(cat_ids)}
    names = ["background"] + [coco.loadCats(cid)[0]["name"] for cid in cat_ids]
    return mapping, names


def _polygon_problem(polygon) -> str:
    """What is wrong with one COCO polygon ``[x1, y1, x2, y2, ...]`` (``""``: nothing)."""
    if not isinstance(polygon, (list, tuple)):
        return f"has a polygon that is a {type(polygon).__name__}, not a list of coordinates"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
               for v in polygon):
        return "has a polygon with a coordinate that is not a finite number"
    if len(polygon) % 2:
        return f"has a polygon of {len(polygon)} numbers (an odd count: x and y must pair up)"
    if len(polygon) < 6:
        return (f"has a polygon of {len(polygon) // 2} point(s); a polygon needs at least 3 "
                "(x, y) points")
    return ""


def segmentation_problem(segmentation) -> str:
    """What makes a COCO ``segmentation`` undecodable (``""``: nothing found).

    pycocotools decodes polygons and RLE, but a polygon of one or two points, an empty list or
    a missing segmentation makes it raise ``TypeError``, ``IndexError`` or a bare
    ``Exception`` ("input type is not supported") in the middle of an epoch, without naming
    the annotation. :func:`load_sample` asks this first and skips such an annotation, naming
    it and counting it as ``bad_segmentation``. RLE dicts are left to pycocotools.

    Taught in notebooks/12_train_voc.
    """
    if isinstance(segmentation, dict):
        return "" if "counts" in segmentation and "size" in segmentation else \
            "has an RLE segmentation without 'counts' and 'size'"
    if not isinstance(segmentation, (list, tuple)) or not segmentation:
        return "has no segmentation (neither polygons nor RLE)"
    for polygon in segmentation:
        problem = _polygon_problem(polygon)
        if problem:
            return problem
    return ""


def load_sample(coco, image_id: int, image_dir: str | Path,
                mapping: dict[int, int] | None = None, include_crowd: bool = False,
                with_ignore: bool = False):
    """One image of a COCO dataset with its instances.

    Args:
        coco: a ``COCO`` index (:func:`load_coco`).
        image_id: the COCO image id.
        image_dir: folder holding the images' ``file_name``.
        mapping: category id -> class id; default :func:`category_mapping` (contiguous 1..K).
            Pass ``{c: c for c in coco.getCatIds()}`` to keep the json's ids.
        include_crowd: keep ``iscrowd=1`` annotations (regions of many objects; usually left out
            of training).

        with_ignore: also return the annotations left out, as :class:`IgnoreRegions`
            (crowd ones when ``include_crowd`` is False, reason ``"crowd"``; categories missing
            from ``mapping``, reason ``"unmapped"``; empty masks counted as ``"empty_mask"``,
            undecodable segmentations as ``"bad_segmentation"``).

    Returns:
        ``(image, masks, class_ids)``: ``H x W x 3`` uint8, ``H x W x N`` bool, ``(N,)`` int32,
        plus the :class:`IgnoreRegions` when ``with_ignore``. Annotations whose mask is empty,
        or whose segmentation cannot be decoded (:func:`segmentation_problem`: a polygon of
        fewer than three points, none at all), are skipped with a logged warning naming the
        file and the annotation id, and counted in ``IgnoreRegions.dropped``
        (``empty_mask``, ``bad_segmentation``).

    Taught in notebooks/12_train_voc.
    """
    if image_id not in coco.imgs:
        raise KeyError(f"image id {image_id} is not in the COCO index "
                       f"({len(coco.imgs)} images; ids like {list(coco.imgs)[:3]})")
    if mapping is None:
        mapping, _ = category_mapping(coco)
    info = coco.imgs[image_id]
    image = io.read_image(Path(image_dir) / info["file_name"])
    h, w = int(info["height"]), int(info["width"])
    if image.shape[:2] != (h, w):
        raise ValueError(f"{Path(image_dir) / info['file_name']} is {image.shape[:2]} but the "
                         f"json says {(h, w)}; the json and the images do not belong together.")
    masks, class_ids, lost, reasons, dropped = [], [], [], [], {}
    for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
        reason = None
        if ann.get("iscrowd", 0) and not include_crowd:
            reason = "crowd"
        elif ann["category_id"] not in mapping:
            reason = "unmapped"
        if reason is not None and not with_ignore:
            continue  # nobody asked for the lost ones: do not decode them
        problem = segmentation_problem(ann.get("segmentation"))
        if problem:
            log.warning("%s: annotation %s %s; skipped", info["file_name"], ann.get("id"),
                        problem)
            dropped["bad_segmentation"] = dropped.get("bad_segmentation", 0) + 1
            continue
        mask = coco.annToMask(ann).astype(bool)
        if not mask.any():
            log.warning("%s: annotation %s has an empty mask; skipped", info["file_name"],
                        ann.get("id"))
            dropped["empty_mask"] = dropped.get("empty_mask", 0) + 1
            continue
        if reason is None:
            masks.append(mask)
            class_ids.append(mapping[ann["category_id"]])
        else:
            lost.append(mask)
            reasons.append(reason)
    stack = np.stack(masks, axis=-1) if masks else np.zeros((h, w, 0), bool)
    ids = np.asarray(class_ids, np.int32)
    if not with_ignore:
        return image, stack, ids
    regions = IgnoreRegions(np.stack(lost, axis=-1) if lost else np.zeros((h, w, 0), bool),
                            tuple(reasons), dropped)
    return image, stack, ids, regions


class CocoSamples:
    """Sample provider over a COCO json and its image folder.

    Args:
        annotations: json path or dict.
        image_dir: folder of the images (default: the json's folder, or its ``images``
            sub-folder when that exists).
        image_ids: a subset of COCO image ids (default: all, sorted).
        include_crowd: see :func:`load_sample`.

    ``provider.class_names`` lists names by contiguous class id (0 = background).

    Taught in notebooks/12_train_voc.
    """

    def __init__(self, annotations: str | Path | dict, image_dir: str | Path | None = None,
                 image_ids: Sequence[int] | None = None, include_crowd: bool = False):
        self.coco = load_coco(annotations)
        if image_dir is None:
            if isinstance(annotations, dict):
                raise ValueError("CocoSamples: pass image_dir when annotations is a dict.")
            base = Path(annotations).parent
            image_dir = base / "images" if (base / "images").is_dir() else base
        self.image_dir = Path(image_dir)
        self.ids = sorted(self.coco.getImgIds()) if image_ids is None else list(image_ids)
        self.mapping, self.class_names = category_mapping(self.coco)
        self.include_crowd = include_crowd

    def __len__(self) -> int:
        return len(self.ids)

    def name(self, index: int) -> str:
        return str(self.coco.imgs[self.ids[index]]["file_name"])

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return load_sample(self.coco, self.ids[index], self.image_dir, self.mapping,
                           self.include_crowd)

    def load_with_ignore(self, index: int):
        """``load(index)`` plus the crowd and unmapped annotations as :class:`IgnoreRegions`."""
        return load_sample(self.coco, self.ids[index], self.image_dir, self.mapping,
                           self.include_crowd, with_ignore=True)


class DsbFolderSamples:
    """Sample provider over a DSB2018-layout folder (``<root>/<id>/images``, ``masks``).

    Uses :func:`course_lib.data.nuclei.load_sample` (its repair options pass through
    ``**options``); every instance gets class 1. ``sample_dirs`` may be given instead of
    ``root`` (e.g. one split of :func:`course_lib.data.nuclei.split_samples`).

    Taught in notebooks/12_train_voc.
    """

    def __init__(self, root: str | Path | None = None,
                 sample_dirs: Sequence[str | Path] | None = None, **options):
        from course_lib.data import nuclei

        if sample_dirs is None:
            if root is None:
                raise ValueError("DsbFolderSamples: pass root or sample_dirs")
            sample_dirs = nuclei.index_samples(root)
        self.samples = [Path(p) for p in sample_dirs]
        self.options = options

    def __len__(self) -> int:
        return len(self.samples)

    def name(self, index: int) -> str:
        return self.samples[index].name

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from course_lib.data import nuclei

        image, masks = nuclei.load_sample(self.samples[index], **self.options)
        return image, masks, np.ones(masks.shape[-1], np.int32)

    def load_with_ignore(self, index: int):
        """``load(index)`` plus :class:`IgnoreRegions` with no regions but the masks the loader
        dropped, by reason (``empty_mask``, ``holes_dropped``, ``pieces_dropped``,
        ``emptied_by_overlap``), so a training loop sees them in ``drop_summary``."""
        from course_lib.data import nuclei

        options = {k: v for k, v in self.options.items() if k != "return_report"}
        image, masks, report = nuclei.load_sample(self.samples[index], return_report=True,
                                                  **options)
        dropped = {"empty_mask": report.empty_dropped, "holes_dropped": report.holes_dropped,
                   "pieces_dropped": report.pieces_dropped,
                   "emptied_by_overlap": report.emptied_by_overlap}
        return (image, masks, np.ones(masks.shape[-1], np.int32),
                IgnoreRegions(np.zeros(masks.shape[:2] + (0,), bool), (),
                              {k: v for k, v in dropped.items() if v}))


class LabelFolderSamples:
    """Sample provider over ``images/<name>.<ext>`` and ``labels/<name>.png`` label images.

    A label image holds one integer per instance (0 background, any positive ids; 8- or 16-bit
    PNG or TIFF), or one colour per instance (an RGB(A) file, black background: every distinct
    colour becomes its own instance, :func:`course_lib.ops.masks.colour_labels`). Every instance
    gets class 1. Images without a label file are skipped, counted
    and logged.

    Taught in notebooks/12_train_voc.
    """

    IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

    def __init__(self, root: str | Path, images: str = "images", labels: str = "labels"):
        root = Path(root)
        self.image_dir, self.label_dir = root / images, root / labels
        for d in (self.image_dir, self.label_dir):
            if not d.is_dir():
                raise FileNotFoundError(f"{d} does not exist; LabelFolderSamples expects "
                                        f"{root}/{images}/ and {root}/{labels}/ folders.")
        self.pairs: list[tuple[Path, Path]] = []
        skipped = []
        for p in sorted(self.image_dir.iterdir()):
            if p.suffix.lower() not in self.IMAGE_SUFFIXES:
                continue
            found = [self.label_dir / (p.stem + s) for s in (".png", ".tif", ".tiff")]
            found = [f for f in found if f.is_file()]
            if found:
                self.pairs.append((p, found[0]))
            else:
                skipped.append(p.name)
        if skipped:
            log.warning("%s: %d images have no label file in %s and are skipped: %s", root,
                        len(skipped), self.label_dir, ", ".join(skipped[:5]))
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.pairs)

    def name(self, index: int) -> str:
        return self.pairs[index][0].stem

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from course_lib.ops.masks import labels_to_masks

        image_path, label_path = self.pairs[index]
        image = io.read_image(image_path)
        labels = io.read_label_image(label_path)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{label_path} is {labels.shape} but {image_path} is "
                             f"{image.shape[:2]}; the label image must match its image.")
        masks = labels_to_masks(labels)
        return image, masks, np.ones(masks.shape[-1], np.int32)


def open_dataset(path: str | Path, image_dir: str | Path | None = None, split: str = "train"):
    """The sample provider for ``path``, chosen by what is there.

    - a ``.json`` file: :class:`CocoSamples` (``image_dir`` as there);
    - a folder with ``JPEGImages`` (or ``VOC2012``/``VOCdevkit``): ``VocSamples`` of ``split``;
    - a folder with ``images/`` and ``labels/``: :class:`LabelFolderSamples`;
    - otherwise a DSB-layout folder: :class:`DsbFolderSamples`.

    Taught in notebooks/12_train_voc.
    """
    from course_lib.data import voc

    path = Path(path)
    if path.suffix.lower() == ".json":
        return CocoSamples(path, image_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is neither a COCO .json file nor a folder.")
    try:
        return voc.VocSamples(path, split)
    except FileNotFoundError:
        pass
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return LabelFolderSamples(path)
    provider = DsbFolderSamples(path)
    if len(provider) == 0:
        raise FileNotFoundError(
            f"{path}: no samples found. Expected a COCO json, a VOC folder, images/ + labels/, or "
            "DSB-style <id>/images/<id>.png with <id>/masks/*.png (see course_lib.data.coco).")
    return provider
