"""Pascal VOC 2012 segmentation: read the original layout, convert it to COCO json.

Taught in notebooks/01_data_tour (classes, instances per image, object sizes) and
12_train_voc (training on a VOC subset in COCO format).

The layout (below ``VOCdevkit/VOC2012``, or our synthetic ``.../VOC2012``)::

    JPEGImages/<id>.jpg                 the photos
    SegmentationClass/<id>.png          palette PNG: pixel value = class id 0..20, 255 = void
    SegmentationObject/<id>.png         palette PNG: pixel value = instance 1..N, 0 = background,
                                        255 = void
    Annotations/<id>.xml                objects with class names and bounding boxes
    ImageSets/Segmentation/{train,val,trainval}.txt   one image id per line

The PNGs are *palette* images: the stored value is an index, the colour is only for display,
so they are read as indices (never converted to RGB). Value 255 is the "void" border the VOC
annotators drew around every object and over ambiguous regions: it is never a class and never an
instance; it simply belongs to no mask.

An instance's class is the majority class under its object mask in ``SegmentationClass``.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from course_lib.data import io
from course_lib.ops.masks import coco_rle_encode, masks_to_boxes

log = logging.getLogger(__name__)

#: Class names by id; 0 is the background.
VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)

#: The value marking void pixels (object borders, ambiguous regions) in both PNGs.
VOID = 255

SPLITS = ("train", "val", "trainval")


def voc_palette(n: int = 256) -> np.ndarray:
    """The standard VOC colour map: ``(n, 3)`` uint8, colour of index ``i`` in row ``i``.

    The map spreads the bits of the index over the three channels, most significant colour bit
    first: bit 0 of ``i`` feeds red, bit 1 green, bit 2 blue, the next three bits the next lower
    colour bit, and so on. Index 1 is (128, 0, 0), 2 is (0, 128, 0), 255 is (224, 224, 192).

    Taught in notebooks/01_data_tour.
    """
    palette = np.zeros((n, 3), np.uint8)
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


#: ``(256, 3)`` uint8 colour of each palette index (VOC's own map).
VOC_PALETTE: np.ndarray = voc_palette()


def resolve_root(voc_root: str | Path) -> Path:
    """The folder holding ``JPEGImages``: ``voc_root`` itself, or ``voc_root/VOC2012``, or
    ``voc_root/VOCdevkit/VOC2012``.

    Raises:
        FileNotFoundError: naming what was looked for and how to get it.

    Taught in notebooks/01_data_tour.
    """
    root = Path(voc_root).expanduser()
    for cand in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (cand / "JPEGImages").is_dir():
            return cand
    raise FileNotFoundError(
        f"No Pascal VOC 2012 layout under {root}: expected a JPEGImages folder there, in "
        f"{root / 'VOC2012'} or in {root / 'VOCdevkit' / 'VOC2012'}. Write a synthetic one with "
        "course_lib.data.synthetic.make_voc(root, n_images, seed), or download VOC 2012."
    )


def read_split(voc_root: str | Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Segmentation/<split>.txt`` (in file order).

    Taught in notebooks/01_data_tour.
    """
    root = resolve_root(voc_root)
    path = root / "ImageSets" / "Segmentation" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"Split file {path} not found; split must be one of {SPLITS} and the file must exist."
        )
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_index_png(path: str | Path) -> np.ndarray:
    """Read a VOC palette PNG as its ``H x W`` uint8 *indices* (not the displayed colours).

    Greyscale (``L``) PNGs are taken as indices too. An RGB PNG (someone saved the colours) is
    mapped back to indices through :data:`VOC_PALETTE`; an unknown colour raises.

    Taught in notebooks/01_data_tour.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Segmentation PNG {path} does not exist; the VOC folder is "
                                "incomplete (re-extract it or regenerate the synthetic set).")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "L"):
                return np.array(im, dtype=np.uint8)
            rgb = np.array(im.convert("RGB"))
    except (OSError, ValueError, SyntaxError) as err:
        raise io.ImageReadError(f"Could not read segmentation PNG {path}: {err}. Re-extract the "
                                "dataset or regenerate it.") from err
    codes = (VOC_PALETTE[:, 0].astype(np.int64) << 16) | (VOC_PALETTE[:, 1].astype(np.int64) << 8) \
        | VOC_PALETTE[:, 2]
    lookup = {int(code): i for i, code in enumerate(codes)}
    flat = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    uniq, inverse = np.unique(flat, return_inverse=True)
    unknown = [u for u in uniq if int(u) not in lookup]
    if unknown:
        raise io.ImageReadError(f"{path} is an RGB PNG with colours outside the VOC palette "
                                f"(e.g. #{int(unknown[0]):06x}); save it as a palette PNG.")
    return np.array([lookup[int(u)] for u in uniq], np.uint8)[inverse].reshape(flat.shape)


def read_annotation(voc_root: str | Path, image_id: str) -> list[dict]:
    """Objects of ``Annotations/<id>.xml``: dicts with ``name``, ``class_id``, ``difficult`` and
    ``box`` (y1, x1, y2, x2) in pixel-edge coordinates (VOC's 1-based inclusive corners minus 1
    on the low side: xmin=1 means the first pixel, edge 0).

    Taught in notebooks/01_data_tour.
    """
    path = resolve_root(voc_root) / "Annotations" / f"{image_id}.xml"
    if not path.is_file():
        raise FileNotFoundError(f"Annotation {path} does not exist.")
    try:
        tree = ET.parse(path)
    except ET.ParseError as err:
        raise ValueError(f"Annotation {path} is not valid XML: {err}") from err
    objects = []
    for obj in tree.getroot().iter("object"):
        name = obj.findtext("name", "").strip()
        bb = obj.find("bndbox")
        box = (0.0, 0.0, 0.0, 0.0)
        if bb is not None:
            xmin, ymin, xmax, ymax = (float(bb.findtext(k, "0")) for k in ("xmin", "ymin", "xmax", "ymax"))
            box = (ymin - 1.0, xmin - 1.0, ymax, xmax)
        objects.append({
            "name": name,
            "class_id": VOC_CLASSES.index(name) if name in VOC_CLASSES else -1,
            "difficult": obj.findtext("difficult", "0").strip() == "1",
            "box": box,
        })
    return objects


def instances_from_pngs(object_png: np.ndarray, class_png: np.ndarray,
                        source: str = "image", with_unclassed: bool = False):
    """Split a SegmentationObject index image into instance masks with their classes.

    Args:
        object_png: ``H x W`` uint8, instance numbers (0 background, 255 void).
        class_png: ``H x W`` uint8, class ids (0 background, 255 void).
        source: names the image in warnings.
        with_unclassed: also return the masks of the instances skipped for having no class
            (``H x W x U`` bool), so a pipeline can carry them as ignore regions.

    Returns:
        ``(masks, class_ids)``: ``H x W x N`` bool (void pixels in no mask) and ``(N,)`` int32,
        instances in increasing instance number (plus the unclassed masks when asked). An
        instance whose pixels carry no class (all background or void in SegmentationClass) is
        skipped with a logged warning.

    Taught in notebooks/01_data_tour.
    """
    if object_png.shape != class_png.shape:
        raise ValueError(f"{source}: SegmentationObject {object_png.shape} and "
                         f"SegmentationClass {class_png.shape} differ in shape")
    numbers = [int(v) for v in np.unique(object_png) if v not in (0, VOID)]
    masks, classes, unclassed = [], [], []
    for k in numbers:
        mask = object_png == k
        votes = class_png[mask]
        votes = votes[(votes != 0) & (votes != VOID) & (votes < len(VOC_CLASSES))]
        if votes.size == 0:
            log.warning("%s: instance %d has no class in SegmentationClass; skipped", source, k)
            unclassed.append(mask)
            continue
        masks.append(mask)
        classes.append(int(np.bincount(votes).argmax()))
    h, w = object_png.shape
    stack = np.stack(masks, axis=-1) if masks else np.zeros((h, w, 0), bool)
    ids = np.asarray(classes, np.int32)
    if not with_unclassed:
        return stack, ids
    return stack, ids, (np.stack(unclassed, axis=-1) if unclassed else np.zeros((h, w, 0), bool))


def load_sample(voc_root: str | Path, image_id: str, with_ignore: bool = False):
    """One VOC image with its instances.

    Args:
        voc_root: the VOC2012 folder (or a parent, see :func:`resolve_root`).
        image_id: the VOC image id, e.g. ``"2007_000032"``.
        with_ignore: also return the objects without a class as
            :class:`course_lib.data.samples.IgnoreRegions` (reason ``"unclassed"``).

    Returns:
        ``(image, masks, class_ids)``: ``H x W x 3`` uint8 RGB, ``H x W x N`` bool (the 255
        border belongs to no instance), ``(N,)`` int32 class ids in 1..20; plus the
        ``IgnoreRegions`` when ``with_ignore``. The void border itself is not an ignore region
        (it outlines every object; its box would be the whole scene).

    Taught in notebooks/01_data_tour.
    """
    root = resolve_root(voc_root)
    image = io.read_image(root / "JPEGImages" / f"{image_id}.jpg")
    obj = read_index_png(root / "SegmentationObject" / f"{image_id}.png")
    cls = read_index_png(root / "SegmentationClass" / f"{image_id}.png")
    if obj.shape != image.shape[:2]:
        raise ValueError(f"{root / 'SegmentationObject' / (image_id + '.png')} has shape "
                         f"{obj.shape} but the image is {image.shape[:2]}; the files do not match.")
    masks, class_ids, unclassed = instances_from_pngs(obj, cls, source=str(image_id),
                                                      with_unclassed=True)
    if not with_ignore:
        return image, masks, class_ids
    from course_lib.data.samples import IgnoreRegions

    regions = IgnoreRegions(unclassed, ("unclassed",) * unclassed.shape[-1], {})
    return image, masks, class_ids, regions


def _class_ids(classes: Iterable[str | int] | None) -> list[int]:
    if classes is None:
        return list(range(1, len(VOC_CLASSES)))
    ids = []
    for c in classes:
        if isinstance(c, str):
            if c not in VOC_CLASSES[1:]:
                raise ValueError(f"Unknown VOC class {c!r}; choose from {VOC_CLASSES[1:]}")
            ids.append(VOC_CLASSES.index(c))
        else:
            if not 1 <= int(c) < len(VOC_CLASSES):
                raise ValueError(f"VOC class id {c} out of range 1..{len(VOC_CLASSES) - 1}")
            ids.append(int(c))
    return sorted(set(ids))


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLEs of ``H x W x N`` bool masks, JSON-safe (``counts`` as ``str``).

    ``pycocotools.mask.encode`` of the Fortran-ordered uint8 stack, through
    :func:`course_lib.ops.masks.coco_rle_encode`.

    Taught in notebooks/12_train_voc.
    """
    if masks.shape[-1] == 0:
        return []
    return coco_rle_encode(masks)


def voc_to_coco(voc_root: str | Path, split: str = "train",
                classes: Sequence[str | int] | None = None,
                max_images: int | None = None) -> dict:
    """COCO instance-segmentation json (a dict) of a VOC 2012 split.

    Args:
        voc_root: the VOC2012 folder (or a parent, see :func:`resolve_root`).
        split: ``"train"``, ``"val"`` or ``"trainval"``.
        classes: keep only instances of these classes (names or ids); images left without any
            instance are dropped. ``None`` keeps all 20.
        max_images: keep at most this many images (the first ones of the split, after class
            filtering), for quick subsets.

    Returns:
        ``{"info", "images", "annotations", "categories"}`` where images have ``id`` (1, 2, ...),
        ``file_name`` (``<id>.jpg``), ``height``, ``width`` and ``voc_id``; annotations have
        ``id`` (from 1), ``image_id``, ``category_id`` (the VOC class id, 1..20),
        ``segmentation`` (RLE with str counts), ``area``, ``bbox`` ``[x, y, w, h]`` and
        ``iscrowd`` 0; categories keep VOC ids and names.

    Taught in notebooks/12_train_voc.
    """
    from pycocotools import mask as mask_utils

    keep = _class_ids(classes)
    root = resolve_root(voc_root)
    images, annotations = [], []
    for voc_id in read_split(root, split):
        if max_images is not None and len(images) >= max_images:
            break
        image, masks, class_ids = load_sample(root, voc_id)
        chosen = np.isin(class_ids, keep)
        if not chosen.any():
            continue
        masks, class_ids = masks[..., chosen], class_ids[chosen]
        image_id = len(images) + 1
        h, w = image.shape[:2]
        images.append({"id": image_id, "file_name": f"{voc_id}.jpg", "height": int(h),
                       "width": int(w), "voc_id": voc_id})
        for rle, cid in zip(encode_masks(masks), class_ids, strict=True):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(cid),
                "segmentation": rle,
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            })
    categories = [{"id": i, "name": VOC_CLASSES[i], "supercategory": "voc"} for i in keep]
    info = {"description": f"Pascal VOC 2012 segmentation, split {split!r}, converted by "
                           "course_lib.data.voc.voc_to_coco", "version": "1.0"}
    return {"info": info, "images": images, "annotations": annotations, "categories": categories}


def save_coco(dataset: dict, path: str | Path) -> Path:
    """Write a COCO dict as json (atomically: a temporary file renamed into place).

    Taught in notebooks/12_train_voc.
    """
    import json
    import os

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(dataset))
    os.replace(tmp, path)
    return path


class VocSamples:
    """A lightweight sample provider over one VOC split: reads one image per :meth:`load` call.

    ``len(provider)`` images; ``provider.load(i) -> (image, masks, class_ids)``;
    ``provider.name(i)`` is the VOC image id. ``classes`` filters instances as in
    :func:`voc_to_coco` (images are kept even when empty).

    Taught in notebooks/01_data_tour.
    """

    def __init__(self, voc_root: str | Path, split: str = "train",
                 classes: Sequence[str | int] | None = None, max_images: int | None = None):
        self.root = resolve_root(voc_root)
        self.ids = read_split(self.root, split)[:max_images]
        self.keep = _class_ids(classes)

    def __len__(self) -> int:
        return len(self.ids)

    def name(self, index: int) -> str:
        return self.ids[index]

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image, masks, class_ids = load_sample(self.root, self.ids[index])
        chosen = np.isin(class_ids, self.keep)
        return image, masks[..., chosen], class_ids[chosen]

    def load_with_ignore(self, index: int):
        """``load(index)`` plus :class:`course_lib.data.samples.IgnoreRegions`: objects without a
        class (``"unclassed"``) and objects of classes left out by ``classes`` (``"unmapped"``)."""
        from course_lib.data.samples import IgnoreRegions

        image, masks, class_ids, regions = load_sample(self.root, self.ids[index],
                                                       with_ignore=True)
        chosen = np.isin(class_ids, self.keep)
        lost = np.concatenate([regions.masks, masks[..., ~chosen]], axis=-1)
        reasons = regions.reasons + ("unmapped",) * int((~chosen).sum())
        return (image, masks[..., chosen], class_ids[chosen],
                IgnoreRegions(lost, reasons, dict(regions.dropped)))


def statistics(voc_root: str | Path, split: str = "train",
               max_images: int | None = None) -> dict[str, np.ndarray]:
    """Per-split numbers for the data tour.

    Returns:
        dict with ``instances_per_image`` ``(I,)``, ``class_ids`` ``(K,)`` of every instance,
        ``box_sizes`` ``(K,)`` = sqrt(box height x width) in pixels, ``image_shapes`` ``(I, 2)``.

    Taught in notebooks/01_data_tour.
    """
    samples = VocSamples(voc_root, split, max_images=max_images)
    per_image, cids, sizes, shapes = [], [], [], []
    for i in range(len(samples)):
        image, masks, class_ids = samples.load(i)
        per_image.append(masks.shape[-1])
        cids.extend(class_ids.tolist())
        boxes = masks_to_boxes(masks)
        sizes.extend(np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).tolist())
        shapes.append(image.shape[:2])
    return {"instances_per_image": np.asarray(per_image, np.int64),
            "class_ids": np.asarray(cids, np.int32),
            "box_sizes": np.asarray(sizes, np.float64),
            "image_shapes": np.asarray(shapes, np.int64).reshape(-1, 2)}
