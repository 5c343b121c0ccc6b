"""Synthetic cell-nuclei images in the DSB2018 ``stage1_train`` layout, deterministic per seed.

Taught in notebooks/01_data_tour.

The statistics below were measured on the 602 real ``stage1_train`` images the team holds
(see ``tests/test_synthetic_nuclei.py``, which compares the two sets):

* modalities: fluorescence 81.6 % (grey stored as colour, very dark background, bright
  nuclei), H&E-stained histology 16.1 % (pink tissue, purple nuclei, always 256×320),
  bright-field 2.3 % (grey, bright background, dark nuclei, 1024×1024);
* image sizes (fluorescence): 256×256 61 %, 520×696 17 %, 360×360 17 %, 512×640 2.4 %,
  603×1272 1 %, 260×347 0.8 %, 256×320 0.6 %, 1040×1388 0.2 %;
* nuclei per image: 1 to 375, quartiles 16 / 27 / 53, about 10 % of images above 100;
* nucleus area: from 21 px, median about 300 px, 5 % / 95 % quantiles about 45 / 2000 px;
* about 2.5 % of masks have a hole and about 0.6 % are in two pieces (annotation quirks that
  :func:`course_lib.data.nuclei.load_sample` counts and can repair).

Nuclei are rotated ellipses drawn into one label image with :func:`skimage.draw.ellipse`. Some
are placed against an earlier nucleus so neighbours touch; a newcomer gives up the pixels an
earlier nucleus already holds, so masks never overlap. The picture is then rendered from the
labels (texture, blur, uneven illumination, noise) and written as 8-bit RGBA PNG with
alpha 255; each nucleus becomes one single-channel 0/255 PNG in ``masks/``.

The first three images are one of each modality (fluorescence, histology, bright-field), so
even a quick-mode set of a few dozen images shows all three; the rest follow the real shares.

Every image has its own random stream ``default_rng([seed, index])``: the same seed gives the
same files, and asking for more images leaves the first ones unchanged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage.draw import ellipse

from course_lib.data.marker import clear_marker, write_marker
from course_lib.data.synthetic.spec import synthetic_spec

#: (name, probability) of the three imaging modalities in the real stage1_train.
MODALITIES = (("fluorescence", 0.8156), ("histology", 0.1611), ("brightfield", 0.0233))

#: Image sizes (H, W) and their weights, per modality, counted on the real set.
SIZES = {
    "fluorescence": (((256, 256), 301), ((520, 696), 83), ((360, 360), 82), ((512, 640), 12),
                     ((603, 1272), 5), ((260, 347), 4), ((256, 320), 3), ((1040, 1388), 1)),
    "histology": (((256, 320), 1),),
    "brightfield": (((1024, 1024), 1),),
}

#: Log-normal nuclei count per modality: (median, sigma of the log), clipped to [1, MAX_NUCLEI].
COUNTS = {"fluorescence": (26.0, 0.9), "histology": (33.0, 0.75), "brightfield": (85.0, 0.35)}
MAX_NUCLEI = 375
#: Smallest nucleus kept, in pixels (the smallest real mask has 21).
MIN_AREA = 21
#: Share of nuclei given a hole / cut in two, and placed against a neighbour.
P_HOLE, P_TWO_PIECES, P_TOUCH = 0.025, 0.006, 0.35
#: Largest fraction of the image the nuclei may cover (areas shrink to respect it).
MAX_COVER = 0.45


def _sample_id(seed: int, index: int) -> str:
    return hashlib.sha256(f"synthetic-nuclei/{seed}/{index}".encode()).hexdigest()


def _choice(rng: np.random.Generator, table):
    items, weights = zip(*table, strict=True)
    p = np.asarray(weights, dtype=float)
    return items[rng.choice(len(items), p=p / p.sum())]


def _parse_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if np.isscalar(size) else tuple(size)
    if int(h) < 16 or int(w) < 16:
        raise ValueError(f"size={size!r} is too small; use at least 16 pixels a side.")
    return int(h), int(w)


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    """Zero-mean, unit-std noise smoothed over ``sigma`` pixels (texture, stroma)."""
    n = ndi.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-9)


def _illumination(rng: np.random.Generator, shape, strength: float) -> np.ndarray:
    """A smooth multiplicative field around 1: a random tilt plus a vignette."""
    h, w = shape
    y = np.linspace(-1, 1, h)[:, None]
    x = np.linspace(-1, 1, w)[None, :]
    a, b = rng.uniform(-1, 1, 2)
    field = a * y + b * x - rng.uniform(0, 1) * (x ** 2 + y ** 2) / 2
    field = field - field.mean()
    return 1.0 + strength * field / (np.abs(field).max() + 1e-9)


def _draw_nuclei(rng: np.random.Generator, shape, n: int, median_area: float):
    """Place up to ``n`` nuclei; return (mask labels, render labels).

    ``render`` is what the microscope saw (whole nuclei); ``labels`` is the annotation,
    where a few nuclei carry a hole or a cut (the real set's quirks).
    """
    h, w = shape
    labels = np.zeros(shape, dtype=np.int32)
    areas = np.exp(np.log(median_area) + 0.5 * rng.standard_normal(n))
    areas = np.clip(areas, MIN_AREA + 6, 0.25 * h * w)
    ratios = np.exp(np.abs(rng.normal(0, 0.25, n)))  # axis ratio >= 1, median about 1.18
    centres: list[tuple[float, float, float]] = []
    quirks: list[tuple[int, str, float, float, float, float, float]] = []
    k = 0
    for i in range(n):
        ry = np.sqrt(areas[i] * ratios[i] / np.pi)
        rx = np.sqrt(areas[i] / (ratios[i] * np.pi))
        rot = rng.uniform(-np.pi, np.pi)
        for _ in range(6):  # a few tries to find room
            if centres and rng.random() < P_TOUCH:
                cy, cx, cr = centres[rng.integers(len(centres))]
                theta = rng.uniform(0, 2 * np.pi)
                d = 0.95 * (cr + np.sqrt(ry * rx))
                r, c = cy + d * np.sin(theta), cx + d * np.cos(theta)
            else:
                r, c = rng.uniform(0, h), rng.uniform(0, w)
            rr, cc = ellipse(r, c, ry, rx, shape=shape, rotation=rot)
            if rr.size < MIN_AREA:
                continue
            free = labels[rr, cc] == 0
            if free.mean() < 0.8 or free.sum() < MIN_AREA:
                continue
            k += 1
            labels[rr[free], cc[free]] = k
            centres.append((r, c, np.sqrt(ry * rx)))
            u = rng.random()
            if u < P_HOLE and min(ry, rx) >= 4:
                quirks.append((k, "hole", r, c, ry, rx, rot))
            elif u < P_HOLE + P_TWO_PIECES and min(ry, rx) >= 4:
                quirks.append((k, "cut", r, c, ry, rx, rot))
            break
    render = labels.copy()
    for q, kind, r, c, ry, rx, rot in quirks:
        if kind == "hole":  # an unlabelled core, as when an annotator traced only the rim
            rr, cc = ellipse(r, c, max(ry * 0.35, 1.5), max(rx * 0.35, 1.5), shape=shape,
                             rotation=rot)
        else:  # a 3-pixel band through the centre splits the mask in two
            rr, cc = ellipse(r, c, ry + 2, 1.6, shape=shape, rotation=rot + np.pi / 2)
        inside = labels[rr, cc] == q
        labels[rr[inside], cc[inside]] = 0
    # drop nuclei the border or neighbours cut below the smallest real size
    sizes = np.bincount(labels.ravel(), minlength=k + 1)
    small = np.flatnonzero((sizes < MIN_AREA) & (np.arange(k + 1) > 0))
    if small.size:
        drop = np.isin(labels, small)
        labels[drop] = 0
        render[np.isin(render, small)] = 0
    return labels, render


def _render(rng: np.random.Generator, modality: str, render: np.ndarray) -> np.ndarray:
    """Paint the microscope picture of the label image ``render``; returns ``H×W×3 uint8``."""
    shape = render.shape
    n = int(render.max())
    fg = render > 0
    texture = _smooth_noise(rng, shape, 1.2)
    illum = _illumination(rng, shape, rng.uniform(0.05, 0.35))
    if modality == "fluorescence":
        level = rng.uniform(30, 150)
        per_nucleus = np.concatenate([[0.0], level * np.exp(rng.normal(0, 0.3, n))])
        signal = per_nucleus[render] * (1 + 0.15 * texture)
        signal = ndi.gaussian_filter(signal, rng.uniform(0.6, 1.5))
        background = rng.uniform(1, 14)
        grey = (background + signal) * illum
        grey = grey + rng.normal(0, rng.uniform(0.5, 2.5), shape) + \
            rng.normal(0, 1, shape) * np.sqrt(np.maximum(grey, 0)) * 0.3
        rgb = np.repeat(grey[..., None], 3, axis=2)
    elif modality == "histology":
        tissue = np.array([225.0, 165.0, 210.0]) + rng.normal(0, 6, 3)
        nucleus = np.array([105.0, 65.0, 150.0]) + rng.normal(0, 12, 3)
        stroma = _smooth_noise(rng, shape, 4.0)[..., None] * np.array([14.0, 20.0, 10.0])
        rgb = np.where(fg[..., None], nucleus + 18 * texture[..., None], tissue + stroma)
        rgb = ndi.gaussian_filter(rgb, (1.0, 1.0, 0))
        rgb = rgb * illum[..., None] + rng.normal(0, 3, shape + (3,))
    elif modality == "brightfield":
        background = rng.uniform(215, 235)
        per_nucleus = np.concatenate([[0.0], rng.uniform(70, 120, n)])
        grey = background - per_nucleus[render] * (1 + 0.1 * texture)
        grey = ndi.gaussian_filter(grey, rng.uniform(0.8, 1.6)) * illum
        grey = grey + rng.normal(0, 2.5, shape)
        rgb = np.repeat(grey[..., None], 3, axis=2)
    else:
        raise ValueError(f"Unknown modality {modality!r}; use one of {[m for m, _ in MODALITIES]}.")
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def make_sample(seed: int, index: int, size=None) -> dict:
    """Generate (without writing) synthetic image ``index`` of the set drawn with ``seed``.

    Returns a dict: ``id``, ``modality``, ``image`` (``H×W×3 uint8``), ``labels``
    (``H×W int32`` annotation, 0 = background) and ``render`` (the whole nuclei drawn).

    Taught in notebooks/01_data_tour.
    """
    rng = np.random.default_rng([seed, index])
    modality = _choice(rng, MODALITIES)
    if index < len(MODALITIES):  # the first images show every modality, even in a small set
        modality = MODALITIES[index][0]
    natural = _choice(rng, SIZES[modality])
    forced = _parse_size(size)
    shape = forced or natural
    median, sigma = COUNTS[modality]
    n = float(np.exp(np.log(median) + sigma * rng.standard_normal()))
    if forced:  # keep the density of nuclei per pixel when the picture is resized
        n *= (shape[0] * shape[1]) / (natural[0] * natural[1])
    n = int(np.clip(round(n), 1, MAX_NUCLEI))
    median_area = float(np.exp(np.log(650.0) + 1.0 * rng.standard_normal()))
    median_area = min(median_area, MAX_COVER * shape[0] * shape[1] / (1.25 * n))
    median_area = max(median_area, MIN_AREA + 10)
    labels, render = _draw_nuclei(rng, shape, n, median_area)
    image = _render(rng, modality, render)
    return {"id": _sample_id(seed, index), "modality": modality, "image": image,
            "labels": labels, "render": render}


def write_sample(stage1_train: str | Path, sample: dict) -> Path:
    """Write one sample from :func:`make_sample` in the DSB layout; returns its folder.

    Taught in notebooks/01_data_tour.
    """
    sample_dir = Path(stage1_train) / sample["id"]
    (sample_dir / "images").mkdir(parents=True, exist_ok=True)
    mask_dir = sample_dir / "masks"
    mask_dir.mkdir(exist_ok=True)
    for old in mask_dir.glob("*.png"):  # regenerating over an older set: no stale nuclei
        old.unlink()
    image = sample["image"]
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, mode="RGBA").save(sample_dir / "images" / f"{sample['id']}.png",
                                            compress_level=1)
    labels = sample["labels"]
    objects = ndi.find_objects(labels)
    for k, sl in enumerate(objects, start=1):
        if sl is None:  # label dropped as too small
            continue
        mask = np.zeros(labels.shape, dtype=np.uint8)
        mask[sl] = np.where(labels[sl] == k, 255, 0)
        mid = hashlib.sha256(f"{sample['id']}/{k}".encode()).hexdigest()
        Image.fromarray(mask, mode="L").save(mask_dir / f"{mid}.png", compress_level=1)
    return sample_dir


def make_nuclei(root: str | Path, n_images: int, seed: int = 0, size=None) -> list[Path]:
    """Write ``n_images`` synthetic nuclei samples under ``root/stage1_train``.

    Args:
        root: folder to write into; ``root/stage1_train/<id>/images/<id>.png`` and
            ``root/stage1_train/<id>/masks/<mask id>.png`` are created, plus
            ``root/manifest.json`` listing each image's id, modality, size and nuclei count,
            and, written last, the completion marker ``stage1_train/.course-complete.json``
            recording what the set was made for (:func:`synthetic_spec`).
        n_images: how many images (0 is allowed).
        seed: the same seed gives byte-identical files.
        size: ``None`` for the real size mix, an int for square images, or ``(H, W)``. A forced
            size keeps the number of nuclei per pixel (smaller pictures, fewer nuclei).

    Returns:
        The sample folders, in generation order.

    Taught in notebooks/01_data_tour.
    """
    if int(n_images) != n_images or n_images < 0:
        raise ValueError(f"n_images={n_images!r} must be a non-negative integer.")
    _parse_size(size)
    stage1 = Path(root) / "stage1_train"
    stage1.mkdir(parents=True, exist_ok=True)
    clear_marker(stage1)  # rewriting: incomplete until the marker is written again, last
    dirs, manifest = [], []
    for i in range(int(n_images)):
        sample = make_sample(seed, i, size)
        dirs.append(write_sample(stage1, sample))
        h, w = sample["image"].shape[:2]
        manifest.append({"id": sample["id"], "modality": sample["modality"], "height": h,
                         "width": w, "n_nuclei": int(len(np.unique(sample["labels"])) - 1)})
    (Path(root) / "manifest.json").write_text(json.dumps(
        {"generator": "course_lib.data.synthetic.nuclei", "seed": seed, "size": size,
         "images": manifest}, indent=1))
    write_marker(stage1, **synthetic_spec("make_nuclei", n_images, seed, size))
    return dirs
