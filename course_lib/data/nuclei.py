"""Nuclei samples in the 2018 Data Science Bowl layout, their clean-up, and submission files.

Taught in notebooks/01_data_tour.

On disk (DSB2018 ``stage1_train``, also BBBC038 and the course's synthetic look-alikes)::

    stage1_train/<id>/images/<id>.png     the image (8-bit RGBA, alpha 255)
    stage1_train/<id>/masks/<mask>.png    one nucleus per file, values 0 and 255

:func:`load_sample` returns ``(image H×W×3 uint8, masks H×W×N bool)``. The original labels are
not clean, so it repairs them by documented rules and counts every repair in a
:class:`MaskReport` (also logged through :mod:`logging`), never silently:

* empty mask files are dropped;
* masks with holes are kept, filled or dropped (``holes=``);
* masks in several pieces are kept, reduced to their largest piece or dropped (``pieces=``);
* overlapping masks are resolved pixel by pixel (``overlap=``): a contested pixel goes to the
  smallest mask covering it (``"smaller"``, the default: a small nucleus lying on a large one
  keeps its shape) or to the first mask in file-name order (``"first"``). Nothing is refused.

There is no cap on the number of nuclei per image (the real set reaches 375).

:class:`NucleiDataset` indexes a ``stage1_train`` folder and splits it into train and
validation by a seed; :func:`write_submission` / :func:`read_submission` handle the Kaggle CSV
(``ImageId,EncodedPixels``, run-length encoded with :mod:`course_lib.ops.masks`).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from course_lib.data.io import ImageReadError, read_image, read_mask
from course_lib.ops.masks import masks_to_boxes

log = logging.getLogger(__name__)

HOLES = ("keep", "fill", "drop")
PIECES = ("keep", "largest", "drop")
OVERLAP = ("smaller", "first")
MASK_SUFFIXES = (".png", ".tif", ".tiff")


@dataclass
class MaskReport:
    """Counts of what :func:`load_sample` found and changed. Add reports with ``+``.

    Attributes:
        samples: sample folders read.
        mask_files: mask files read.
        kept: masks returned.
        empty_dropped: mask files with no foreground pixel, dropped.
        with_holes: masks that enclosed background (a hole), before any repair.
        holes_filled: of those, filled (``holes="fill"``).
        holes_dropped: of those, dropped (``holes="drop"``).
        multi_piece: masks made of more than one 8-connected piece, before any repair.
        pieces_reduced: of those, cut down to the largest piece (``pieces="largest"``).
        pieces_dropped: of those, dropped (``pieces="drop"``).
        overlap_pixels: pixels claimed by more than one mask, each given to one mask.
        overlapping_masks: masks that lost at least one pixel to another mask.
        emptied_by_overlap: masks that lost all their pixels to others, dropped.

    Taught in notebooks/01_data_tour.
    """

    samples: int = 0
    mask_files: int = 0
    kept: int = 0
    empty_dropped: int = 0
    with_holes: int = 0
    holes_filled: int = 0
    holes_dropped: int = 0
    multi_piece: int = 0
    pieces_reduced: int = 0
    pieces_dropped: int = 0
    overlap_pixels: int = 0
    overlapping_masks: int = 0
    emptied_by_overlap: int = 0

    def __add__(self, other: MaskReport) -> MaskReport:
        return MaskReport(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                             for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary(self) -> str:
        """One line naming every non-zero count."""
        return ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v) or "nothing read"


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not an option; use one of {choices}.")


def _crop_slices(mask: np.ndarray) -> tuple[slice, slice]:
    """Bounding slices of a non-empty 2-D mask, padded by one pixel so holes see the outside."""
    y1, x1, y2, x2 = (int(v) for v in masks_to_boxes(mask)[0])  # the one tight-box function
    return (slice(max(y1 - 1, 0), y2 + 1), slice(max(x1 - 1, 0), x2 + 1))


_EIGHT = np.ones((3, 3), dtype=bool)


def has_hole(mask: np.ndarray) -> bool:
    """True when a 2-D bool mask encloses background (filling it would add pixels).

    Taught in notebooks/01_data_tour.
    """
    if not mask.any():
        return False
    crop = mask[_crop_slices(mask)]
    return bool(ndi.binary_fill_holes(crop).sum() > crop.sum())


def n_pieces(mask: np.ndarray) -> int:
    """Number of 8-connected pieces of a 2-D bool mask (0 for an empty mask).

    Taught in notebooks/01_data_tour.
    """
    if not mask.any():
        return 0
    return int(ndi.label(mask[_crop_slices(mask)], structure=_EIGHT)[1])


def resolve_overlaps(masks: np.ndarray, rule: str = "smaller") -> tuple[np.ndarray, int, int]:
    """Give every pixel claimed by several masks to exactly one of them.

    Args:
        masks: ``H×W×N`` bool.
        rule: ``"smaller"`` (the mask with fewest pixels wins; ties go to the first) or
            ``"first"`` (the lowest index wins).

    Returns:
        ``(resolved H×W×N bool, contested pixel count, number of masks that lost pixels)``.
        Masks may come back empty; the caller decides what to do with them.

    Taught in notebooks/01_data_tour.
    """
    _check_choice("overlap", rule, OVERLAP)
    masks = np.array(masks, dtype=bool, copy=True)
    if masks.shape[-1] < 2:
        return masks, 0, 0
    rr, cc = np.nonzero(masks.sum(axis=-1, dtype=np.int32) > 1)
    if rr.size == 0:
        return masks, 0, 0
    claims = masks[rr, cc]  # (K, N): who claims each contested pixel
    if rule == "smaller":
        areas = masks.sum(axis=(0, 1))
        owner = np.argmin(np.where(claims, areas[None, :], np.iinfo(np.int64).max), axis=1)
    else:
        owner = np.argmax(claims, axis=1)  # first True
    losers = claims.copy()
    losers[np.arange(len(owner)), owner] = False
    masks[rr, cc] = False
    masks[rr, cc, owner] = True
    return masks, int(rr.size), int(losers.any(axis=0).sum())


def sample_paths(sample_dir: str | Path) -> tuple[Path, list[Path]]:
    """The image file and the sorted mask files of one DSB sample folder.

    Raises:
        FileNotFoundError: the folder, its ``images/<id>.png`` or its ``masks`` folder is missing.

    Taught in notebooks/01_data_tour.
    """
    sample_dir = Path(sample_dir)
    image_dir = sample_dir / "images"
    candidates = sorted(image_dir.glob(sample_dir.name + ".*")) if image_dir.is_dir() else []
    if not candidates:
        raise FileNotFoundError(
            f"{sample_dir} is not a DSB sample folder: expected {image_dir / (sample_dir.name + '.png')}."
            " Point the loader at a stage1_train/<id> folder (layout in course_lib.data.nuclei).")
    mask_dir = sample_dir / "masks"
    if not mask_dir.is_dir():
        raise FileNotFoundError(
            f"{sample_dir} has no masks/ folder; test images (stage1_test) have no masks, "
            "read them with course_lib.data.io.read_image instead.")
    masks = sorted(p for p in mask_dir.iterdir() if p.suffix.lower() in MASK_SUFFIXES)
    return candidates[0], masks


def load_sample(sample_dir: str | Path, holes: str = "keep", pieces: str = "keep",
                overlap: str = "smaller", return_report: bool = False):
    """Read one DSB-layout sample: ``(image H×W×3 uint8, masks H×W×N bool)``.

    Args:
        sample_dir: a ``stage1_train/<id>`` folder.
        holes: ``"keep"`` masks with holes as they are, ``"fill"`` the holes, or ``"drop"`` them.
        pieces: ``"keep"`` masks in several pieces, keep only the ``"largest"`` piece, or
            ``"drop"`` them.
        overlap: how contested pixels are assigned, see :func:`resolve_overlaps`.
        return_report: also return the :class:`MaskReport` of this sample.

    Masks are in file-name order (minus the dropped ones). Holes and pieces are repaired
    before overlaps are resolved, because filling a hole can create an overlap.

    Raises:
        FileNotFoundError: not a sample folder.
        ImageReadError: an image or mask file is corrupt, or a mask's size differs from the image's.

    Taught in notebooks/01_data_tour.
    """
    for name, value, choices in (("holes", holes, HOLES), ("pieces", pieces, PIECES)):
        _check_choice(name, value, choices)
    _check_choice("overlap", overlap, OVERLAP)
    image_path, mask_paths = sample_paths(sample_dir)
    image = read_image(image_path)
    h, w = image.shape[:2]
    report = MaskReport(samples=1, mask_files=len(mask_paths))
    # written in place (no list + stack: a 1024² image with 100 nuclei is 100 MB of masks)
    masks = np.zeros((h, w, len(mask_paths)), dtype=bool)
    claims = np.zeros((h, w), dtype=np.uint16)  # masks covering each pixel
    n_kept = 0
    for path in mask_paths:
        m = read_mask(path)
        if m.shape != (h, w):
            raise ImageReadError(
                f"Mask {path} is {m.shape[0]}×{m.shape[1]} but its image {image_path} is {h}×{w}; "
                "the sample folder mixes files from different images: re-extract the dataset.")
        if not m.any():
            report.empty_dropped += 1
            continue
        sl = _crop_slices(m)
        crop = m[sl]
        # always counted; repaired only on request
        filled = ndi.binary_fill_holes(crop)
        if filled.sum() > crop.sum():
            report.with_holes += 1
            if holes == "drop":
                report.holes_dropped += 1
                continue
            if holes == "fill":
                report.holes_filled += 1
                crop = filled
        labels, n = ndi.label(crop, structure=_EIGHT)
        if n > 1:
            report.multi_piece += 1
            if pieces == "drop":
                report.pieces_dropped += 1
                continue
            if pieces == "largest":
                report.pieces_reduced += 1
                sizes = np.bincount(labels.ravel())[1:]
                crop = labels == (1 + int(np.argmax(sizes)))
        masks[sl + (n_kept,)] = crop
        claims[sl] += crop
        n_kept += 1
    masks = masks[..., :n_kept]
    if n_kept > 1 and claims.max() > 1:
        masks, report.overlap_pixels, report.overlapping_masks = resolve_overlaps(masks, overlap)
        nonempty = masks.any(axis=(0, 1))
        report.emptied_by_overlap = int((~nonempty).sum())
        masks = masks[..., nonempty]
    report.kept = masks.shape[-1]
    changed = {k: v for k, v in report.as_dict().items()
               if v and k not in ("samples", "mask_files", "kept")}
    if changed:
        log.info("%s: %d mask files -> %d masks (%s)", Path(sample_dir).name, report.mask_files,
                 report.kept, ", ".join(f"{k}={v}" for k, v in changed.items()))
    if return_report:
        return image, masks, report
    return image, masks


def index_samples(root: str | Path) -> list[Path]:
    """Sorted sample folders under a ``stage1_train`` folder.

    A sub-folder without ``images/<id>.*`` is skipped, counted and logged (a warning), so a
    stray folder cannot crash a training run; files at the top level are ignored.

    Raises:
        FileNotFoundError: ``root`` is not a folder.

    Taught in notebooks/01_data_tour.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(
            f"Nuclei folder {root} does not exist; run `python -m course_lib.data.prepare` "
            "or point COURSE_DATA at a folder holding dsb2018/stage1_train.")
    samples, skipped = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        if any((d / "images").glob(d.name + ".*")):
            samples.append(d)
        else:
            skipped.append(d.name)
    if skipped:
        log.warning("%s: skipped %d folders that are not DSB samples: %s", root, len(skipped),
                    ", ".join(skipped[:5]) + (" ..." if len(skipped) > 5 else ""))
    return samples


def split_samples(samples: Iterable[Path], val_fraction: float = 0.1,
                  seed: int = 0) -> tuple[list[Path], list[Path]]:
    """Shuffle ``samples`` with ``seed`` and split off ``val_fraction`` of them (at least one
    when there are two or more samples). The same seed and folder give the same split.

    Taught in notebooks/01_data_tour.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1).")
    samples = sorted(Path(s) for s in samples)
    order = np.random.default_rng(seed).permutation(len(samples))
    n_val = int(round(val_fraction * len(samples)))
    if val_fraction > 0 and len(samples) >= 2:
        n_val = min(max(n_val, 1), len(samples) - 1)
    val = sorted(samples[i] for i in order[:n_val])
    train = sorted(samples[i] for i in order[n_val:])
    return train, val


#: The three imaging modalities of DSB2018 stage 1 (the report: 81.5 / 16.1 / 2.4 %).
MODALITIES = ("fluorescence", "histology", "brightfield")


def guess_modality(image: np.ndarray) -> str:
    """The imaging modality of one image from its colour: one of :data:`MODALITIES`.

    Stained (histology) slides are coloured: the 99th percentile of the HSV saturation exceeds
    0.1. Of the grey images, bright-field ones are bright (mean HSV value above 0.5) and
    fluorescence ones dark. This is the rule notebook 01 uses to name its k-means clusters;
    there it agrees with the clusters on at least 95 % of the real images.

    Args:
        image: ``H×W×3`` (or ``H×W×4``) uint8 image.

    Taught in notebooks/11_train_nuclei.
    """
    from skimage import color

    image = np.asarray(image)
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    hsv = color.rgb2hsv(image[..., :3])
    if np.percentile(hsv[..., 1], 99) > 0.1:
        return "histology"
    return "brightfield" if hsv[..., 2].mean() > 0.5 else "fluorescence"


def stratified_split(samples: Iterable[Path], val_fraction: float = 0.1, seed: int = 0,
                     modality: Callable[[Path], str] | None = None
                     ) -> tuple[list[Path], list[Path], dict[str, str]]:
    """A seeded train/validation split that keeps each modality's share in both parts.

    Each modality's samples are shuffled with ``seed`` and ``val_fraction`` of them (rounded,
    at least one of any modality with two or more samples) go to validation, so the rare
    bright-field images are in both parts instead of only where chance puts them.

    Args:
        samples: DSB sample folders.
        val_fraction: share of each modality held out, in ``[0, 1)``.
        seed: the shuffle's seed; the same folder and seed give the same split.
        modality: ``folder -> modality`` (default: :func:`guess_modality` of its image; an
            unreadable image is logged and counted as the commonest modality, fluorescence).

    Returns:
        ``(train folders, validation folders, {folder name: modality})``, both lists sorted.

    Taught in notebooks/11_train_nuclei.
    """

    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction={val_fraction} must be in [0, 1).")
    samples = sorted(Path(s) for s in samples)
    if modality is None:
        def modality(folder: Path) -> str:
            try:
                return guess_modality(read_image(sample_paths(folder)[0]))
            except (OSError, ValueError) as err:   # ImageReadError is an OSError
                # an unreadable image must not stop the split (training skips it later);
                # it counts as the commonest modality, so the split stays where it was
                log.warning("%s: image unreadable (%s); counted as %s for the split",
                            folder.name, err, MODALITIES[0])
                return MODALITIES[0]
    found = {s.name: modality(s) for s in samples}
    train, val = [], []
    for k, name in enumerate(MODALITIES + tuple(sorted(set(found.values()) - set(MODALITIES)))):
        group = [s for s in samples if found[s.name] == name]
        order = np.random.default_rng([seed, k]).permutation(len(group))
        n_val = int(round(val_fraction * len(group)))
        if val_fraction > 0 and len(group) >= 2:
            n_val = min(max(n_val, 1), len(group) - 1)
        val += [group[i] for i in order[:n_val]]
        train += [group[i] for i in order[n_val:]]
    return sorted(train), sorted(val), found


class NucleiDataset:
    """An indexed ``stage1_train`` folder: ``len(ds)``, ``ds[i] -> (image, masks)``, ``ds.ids``.

    Args:
        root: the ``stage1_train`` folder.
        split: ``"all"``, ``"train"`` or ``"val"`` (see :func:`split_samples`).
        val_fraction, seed: the split.
        holes, pieces, overlap: repair rules passed to :func:`load_sample`.

    ``ds.report`` accumulates the :class:`MaskReport` of every sample read so far.

    Taught in notebooks/01_data_tour.
    """

    def __init__(self, root: str | Path, split: str = "all", val_fraction: float = 0.1,
                 seed: int = 0, holes: str = "keep", pieces: str = "keep",
                 overlap: str = "smaller"):
        _check_choice("split", split, ("all", "train", "val"))
        for name, value, choices in (("holes", holes, HOLES), ("pieces", pieces, PIECES),
                                     ("overlap", overlap, OVERLAP)):
            _check_choice(name, value, choices)
        self.root = Path(root)
        everything = index_samples(self.root)
        if split == "all":
            self.samples = everything
        else:
            train, val = split_samples(everything, val_fraction, seed)
            self.samples = train if split == "train" else val
        self.options = dict(holes=holes, pieces=pieces, overlap=overlap)
        self.report = MaskReport()

    @property
    def ids(self) -> list[str]:
        return [p.name for p in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        image, masks, report = load_sample(self.samples[i], return_report=True, **self.options)
        self.report = self.report + report
        return image, masks

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return f"NucleiDataset({str(self.root)!r}, {len(self)} samples, {self.options})"


# --- Kaggle submission files --------------------------------------------------------------

SUBMISSION_HEADER = ("ImageId", "EncodedPixels")


def write_submission(path: str | Path, predictions: Mapping[str, np.ndarray]) -> int:
    """Write a Kaggle DSB submission: one row per nucleus, ``ImageId,EncodedPixels``.

    Args:
        predictions: image id -> ``H×W×N`` bool masks or an ``H×W`` int label image
            (0 = background). An image without nuclei gets one row with empty
            ``EncodedPixels``, as Kaggle expects every test image listed.

    Returns the number of rows written. Raises ``ValueError`` when masks overlap (Kaggle
    rejects such files): resolve them first with :func:`resolve_overlaps`.

    Taught in notebooks/01_data_tour.
    """
    from course_lib.ops.masks import rle_encode

    rows = 0
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(SUBMISSION_HEADER)
        for image_id, pred in predictions.items():
            pred = np.asarray(pred)
            if pred.ndim == 2:
                ids = np.unique(pred)
                masks = np.stack([pred == i for i in ids[ids != 0]], axis=-1) if (ids != 0).any() \
                    else np.zeros(pred.shape + (0,), dtype=bool)
            elif pred.ndim == 3:
                masks = pred.astype(bool)
            else:
                raise ValueError(f"Prediction for {image_id!r} has shape {pred.shape}; expected "
                                 "H×W×N masks or an H×W label image.")
            if masks.shape[-1] > 1 and (masks.sum(axis=-1) > 1).any():
                raise ValueError(
                    f"Masks of {image_id!r} overlap; Kaggle rejects overlapping nuclei. Resolve "
                    "them with course_lib.data.nuclei.resolve_overlaps first.")
            encoded = [rle_encode(masks[..., i]) for i in range(masks.shape[-1])
                       if masks[..., i].any()]
            for rle in encoded or [""]:
                writer.writerow((image_id, rle))
                rows += 1
    return rows


def read_submission(path: str | Path,
                    shapes: Mapping[str, tuple[int, int]] | None = None) -> dict[str, np.ndarray]:
    """Read a submission or solution CSV into ``{image id: H×W×N bool masks}``.

    The stage-1 solution file carries ``Height`` and ``Width`` columns; a plain submission does
    not, so ``shapes`` (id -> ``(H, W)``) must then be given. Empty ``EncodedPixels`` rows give
    images with zero masks.

    Raises:
        ValueError: a missing column, or an image whose size is unknown (names the row).

    Taught in notebooks/01_data_tour.
    """
    from course_lib.ops.masks import rle_decode

    path = Path(path)
    rles: dict[str, list[str]] = {}
    sizes: dict[str, tuple[int, int]] = dict(shapes or {})
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in SUBMISSION_HEADER if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path} lacks column(s) {missing}; a DSB submission starts with "
                             "the header 'ImageId,EncodedPixels'.")
        for line, row in enumerate(reader, start=2):
            image_id = row["ImageId"]
            rles.setdefault(image_id, [])
            if (row.get("EncodedPixels") or "").strip():
                rles[image_id].append(row["EncodedPixels"].strip())
            if row.get("Height") and row.get("Width") and image_id not in sizes:
                sizes[image_id] = (int(row["Height"]), int(row["Width"]))
            if image_id not in sizes:
                raise ValueError(f"{path}, line {line}: size of image {image_id!r} unknown; pass "
                                 "shapes={id: (height, width)} or use a file with Height/Width.")
    out = {}
    for image_id, codes in rles.items():
        h, w = sizes[image_id]
        if codes:
            out[image_id] = np.stack([np.asarray(rle_decode(c, (h, w)), dtype=bool)
                                      for c in codes], axis=-1)
        else:
            out[image_id] = np.zeros((h, w, 0), dtype=bool)
    return out
