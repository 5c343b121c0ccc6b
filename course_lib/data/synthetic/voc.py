"""Synthetic Pascal VOC 2012 look-alike, written in exactly the VOC on-disk layout.

Taught in notebooks/01_data_tour.

Each scene has a textured background and 2-6 objects from the 20 VOC classes. An object is a
filled shape (ellipse, rotated rectangle or star-like polygon; the kind and the texture depend on
the class, so a model can learn something). Objects are drawn in order, so later ones occlude
earlier ones, and may be cut by the image frame. As in the real annotations, a void border
(value 255) a few pixels wide runs along every object outline in both ``SegmentationClass`` and
``SegmentationObject``. Objects hidden completely (or eaten by borders) are left out and the rest
numbered 1..N in drawing order, matching the ``<object>`` order in the XML.

Written below ``root/VOC2012``::

    JPEGImages/<id>.jpg, SegmentationClass/<id>.png, SegmentationObject/<id>.png,
    Annotations/<id>.xml, ImageSets/Segmentation/{train,val,trainval}.txt

The result depends only on ``(seed, image index, size)``: image ``i`` is the same whatever
``n_images`` is.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import draw, segmentation
from skimage.morphology import dilation, disk
from skimage.transform import resize

from course_lib.data.marker import clear_marker, write_marker
from course_lib.data.synthetic.spec import synthetic_spec
from course_lib.data.voc import VOC_CLASSES, VOC_PALETTE, VOID
from course_lib.ops.masks import masks_to_boxes

#: Image sizes (H, W) drawn from when ``size`` is None; the common VOC photo shapes.
VOC_SIZES = ((375, 500), (500, 375), (333, 500), (500, 333), (281, 500), (366, 500))

#: Fraction of images listed in ``train.txt``; the rest go to ``val.txt``.
TRAIN_FRACTION = 0.75


def image_id(index: int) -> str:
    """VOC-style id of synthetic image ``index`` (``2012_000001`` for index 0).

    Taught in notebooks/01_data_tour.
    """
    return f"2012_{index + 1:06d}"


def _class_colour(class_id: int) -> np.ndarray:
    """A distinct, saturated colour per class (its VOC palette colour, brightened)."""
    base = VOC_PALETTE[class_id].astype(np.float32)
    return np.clip(base * 0.8 + 40.0, 0, 255)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour gradients plus faint stripes and noise: a textured, non-trivial background."""
    coarse = rng.uniform(40, 220, size=(4, 4, 3))
    img = resize(coarse, (h, w, 3), order=3, mode="edge", anti_aliasing=False)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(8, 30)
    stripes = np.sin((yy * np.cos(angle) + xx * np.sin(angle)) * 2 * np.pi / period)
    img += 15.0 * stripes[..., None]
    img += rng.normal(0, 8.0, size=(h, w, 3))
    return img


def _shape_mask(rng: np.random.Generator, class_id: int, h: int, w: int) -> np.ndarray:
    """A filled shape of a kind set by the class: ellipse, rotated rectangle, or star polygon."""
    side = min(h, w)
    rh = rng.uniform(0.08, 0.28) * side
    rw = rh * rng.uniform(0.6, 1.6)
    cy = rng.uniform(0.05, 0.95) * h
    cx = rng.uniform(0.05, 0.95) * w
    theta = rng.uniform(0, np.pi)
    mask = np.zeros((h, w), bool)
    kind = class_id % 3
    if kind == 0:
        rr, cc = draw.ellipse(cy, cx, rh, rw, shape=(h, w), rotation=theta)
    elif kind == 1:
        corners = np.array([[-rh, -rw], [-rh, rw], [rh, rw], [rh, -rw]])
    else:
        k = 5 + class_id % 4
        angles = np.sort(rng.uniform(0, 2 * np.pi, size=k))
        radii = rng.uniform(0.5, 1.0, size=k)
        corners = np.stack([np.sin(angles) * radii * rh, np.cos(angles) * radii * rw], axis=1)
    if kind != 0:
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        pts = corners @ rot.T + np.array([cy, cx])
        rr, cc = draw.polygon(pts[:, 0], pts[:, 1], shape=(h, w))
    mask[rr, cc] = True
    return mask


def _texture(rng: np.random.Generator, class_id: int, h: int, w: int) -> np.ndarray:
    """The class colour modulated by a class-specific stripe frequency, plus noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = 4.0 + 2.0 * (class_id % 5)
    pattern = np.sin((yy + xx * (class_id % 2)) * 2 * np.pi / period)
    colour = _class_colour(class_id) * rng.uniform(0.85, 1.15)
    return colour[None, None, :] + 25.0 * pattern[..., None] + rng.normal(0, 6.0, size=(h, w, 3))


def _scene(rng: np.random.Generator, h: int, w: int, border: int):
    """Draw one scene: returns image (uint8), class PNG, object PNG, and objects for the XML."""
    image = _background(rng, h, w)
    labels = np.zeros((h, w), np.int32)  # drawing-order instance number, later covers earlier
    classes = []
    n_objects = int(rng.integers(2, 7))
    for k in range(1, n_objects + 1):
        class_id = int(rng.integers(1, len(VOC_CLASSES)))
        mask = _shape_mask(rng, class_id, h, w)
        if not mask.any():
            continue
        image[mask] = _texture(rng, class_id, h, w)[mask]
        labels[mask] = k
        classes.append((k, class_id))
    # void border along every outline (between objects and background and between objects)
    edges = segmentation.find_boundaries(labels, mode="inner")
    if border > 1:
        edges = dilation(edges, disk(border // 2))
    edges &= labels > 0  # VOC's border hugs objects; keep it on the object side
    obj_png = np.zeros((h, w), np.uint8)
    cls_png = np.zeros((h, w), np.uint8)
    objects = []
    for k, class_id in classes:
        full = labels == k
        visible = full & ~edges
        if visible.sum() < 4:  # hidden or eaten by its border: not annotated
            continue
        number = len(objects) + 1
        obj_png[visible] = number
        cls_png[visible] = class_id
        y1, x1, y2, x2 = (int(v) for v in masks_to_boxes(full)[0])
        objects.append({"name": VOC_CLASSES[class_id], "class_id": class_id,
                        # VOC boxes: 1-based inclusive corners, i.e. the pixel-edge box's
                        # low edges plus one and its high edges as they are
                        "xmin": x1 + 1, "ymin": y1 + 1, "xmax": x2, "ymax": y2})
    obj_png[edges] = VOID
    cls_png[edges] = VOID
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), cls_png, obj_png, objects


def _write_png(path: Path, indices: np.ndarray) -> None:
    im = Image.fromarray(indices, mode="L")
    im.putpalette(VOC_PALETTE.reshape(-1).tolist())  # turns it into a palette ("P") image
    im.save(path)


def _write_xml(path: Path, voc_id: str, shape: tuple[int, int], objects: list[dict]) -> None:
    ann = ET.Element("annotation")
    ET.SubElement(ann, "folder").text = "VOC2012"
    ET.SubElement(ann, "filename").text = f"{voc_id}.jpg"
    src = ET.SubElement(ann, "source")
    ET.SubElement(src, "database").text = "course_lib synthetic VOC"
    size = ET.SubElement(ann, "size")
    ET.SubElement(size, "width").text = str(shape[1])
    ET.SubElement(size, "height").text = str(shape[0])
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(ann, "segmented").text = "1"
    for obj in objects:
        o = ET.SubElement(ann, "object")
        ET.SubElement(o, "name").text = obj["name"]
        ET.SubElement(o, "pose").text = "Unspecified"
        ET.SubElement(o, "truncated").text = "0"
        ET.SubElement(o, "difficult").text = "0"
        bb = ET.SubElement(o, "bndbox")
        for key in ("xmin", "ymin", "xmax", "ymax"):
            ET.SubElement(bb, key).text = str(obj[key])
    ET.indent(ann)
    ET.ElementTree(ann).write(path, encoding="utf-8", xml_declaration=False)


def make_voc(root: str | Path, n_images: int, seed: int = 0,
             size: int | tuple[int, int] | None = None) -> Path:
    """Write ``n_images`` synthetic VOC scenes below ``root/VOC2012``.

    Args:
        root: output folder (created); the dataset goes to ``root/VOC2012``.
        n_images: number of scenes (at least 1). The first ~75 % are ``train``, the rest ``val``
            (at least one each when ``n_images >= 2``); ``trainval`` lists all.
        seed: scenes depend only on ``(seed, index, size)``.
        size: ``None`` for VOC's photo sizes (about 500 x 375), an int for square ``size x size``
            images (quick mode), or ``(H, W)``.

    Returns:
        The ``VOC2012`` folder, readable by :func:`course_lib.data.voc.load_sample`; its
        completion marker (what the set was made for, :func:`synthetic_spec`) is written last.

    Taught in notebooks/01_data_tour.
    """
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    out = Path(root) / "VOC2012"
    dirs = {name: out / name for name in ("JPEGImages", "SegmentationClass",
                                           "SegmentationObject", "Annotations")}
    for d in (*dirs.values(), out / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True, exist_ok=True)
    clear_marker(out)  # rewriting: incomplete until the marker is written again, last
    ids = []
    for i in range(n_images):
        rng = np.random.default_rng([seed, i])
        if size is None:
            h, w = VOC_SIZES[int(rng.integers(len(VOC_SIZES)))]
        elif np.isscalar(size):
            h = w = int(size)
        else:
            h, w = (int(s) for s in size)
        border = max(2, round(min(h, w) / 75))  # ~5 px at VOC size, 2 px on small images
        image, cls_png, obj_png, objects = _scene(rng, h, w, border)
        voc_id = image_id(i)
        Image.fromarray(image).save(dirs["JPEGImages"] / f"{voc_id}.jpg", quality=92)
        _write_png(dirs["SegmentationClass"] / f"{voc_id}.png", cls_png)
        _write_png(dirs["SegmentationObject"] / f"{voc_id}.png", obj_png)
        _write_xml(dirs["Annotations"] / f"{voc_id}.xml", voc_id, (h, w), objects)
        ids.append(voc_id)
    n_train = n_images if n_images < 2 else min(n_images - 1, max(1, round(n_images * TRAIN_FRACTION)))
    sets = out / "ImageSets" / "Segmentation"
    for name, chosen in (("train", ids[:n_train]), ("val", ids[n_train:]), ("trainval", ids)):
        (sets / f"{name}.txt").write_text("".join(f"{x}\n" for x in chosen))
    write_marker(out, **synthetic_spec("make_voc", n_images, seed, size))
    return out
