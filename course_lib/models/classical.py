"""The classical baseline: Otsu threshold, hole filling, small objects removed, watershed.

Taught in notebooks/11_train_nuclei.

No learning at all: a dozen lines of scikit-image that every learned model of chapter 11 must
beat. The threshold comes from the image's own grey-level histogram (Otsu's method picks the
level that best separates two classes); the class that covers more of the image is taken as the
background, so nuclei are the bright class on a dark fluorescence background and the dark class
on a bright histology or bright-field slide. Touching nuclei are split by the watershed of the
distance transform (:func:`course_lib.ops.watershed.watershed_instances`, chapter 10).

Run as a command, it scores the baseline on a DSB-layout folder, per modality, so the figures
chapter 11 quotes for the real stage-1 images can be re-measured by anyone who has them::

    python -m course_lib.models.classical $COURSE_DATA/dsb2018/stage1_train --every 3
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy import ndimage
from skimage import color, filters, morphology

from course_lib.ops.watershed import watershed_instances


def otsu_foreground(image: np.ndarray) -> tuple[np.ndarray, float, bool]:
    """Nucleus pixels of one image by Otsu's threshold.

    Args:
        image: ``H×W×3`` (or ``H×W``) image, uint8 or float.

    Returns:
        ``(mask H×W bool, threshold on the grey level in [0, 1], dark_nuclei)``;
        ``dark_nuclei`` is True when the bright class was the larger one (the background).

    Taught in notebooks/11_train_nuclei.
    """
    image = np.asarray(image)
    grey = color.rgb2gray(image[..., :3]) if image.ndim == 3 else image.astype(np.float64)
    if image.dtype == np.uint8 and image.ndim == 2:
        grey = grey / 255.0
    if grey.max() == grey.min():            # a flat image has no second class
        return np.zeros(grey.shape, bool), float(grey.max()), False
    threshold = float(filters.threshold_otsu(grey))
    bright = grey > threshold
    dark_nuclei = bool(bright.mean() > 0.5)  # the larger class is the background
    return (~bright if dark_nuclei else bright), threshold, dark_nuclei


def otsu_instances(image: np.ndarray, min_size: int = 20, min_distance: int = 4) -> np.ndarray:
    """Instance labels by Otsu threshold, hole filling, small objects removed, watershed.

    Args:
        image: ``H×W×3`` image.
        min_size: objects (and instances after the split) under this many pixels are dropped.
        min_distance: smallest distance in pixels between two nucleus centres (watershed peaks).

    Returns:
        ``H×W int32`` labels, 0 = background.

    Taught in notebooks/11_train_nuclei.
    """
    mask, _, _ = otsu_foreground(image)
    mask = ndimage.binary_fill_holes(mask)
    mask = morphology.remove_small_objects(mask, max_size=min_size - 1) if min_size > 1 else mask
    return watershed_instances(mask, min_distance=min_distance, min_size=min_size)


class FolderScores(dict):
    """What :func:`score_folder` returns: ``{modality: [score per image]}`` plus ``skipped``,
    the samples that could not be read (:class:`~course_lib.data.skips.Skipped` entries).

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self):
        super().__init__(all=[])
        self.skipped: list = []


def score_folder(root: str | Path, every: int = 1) -> FolderScores:
    """The baseline's DSB score of every ``every``-th sample under a ``stage1_train`` folder.

    Args:
        root: a DSB-layout folder (``<id>/images/<id>.png``, ``<id>/masks/*.png``).
        every: score samples ``0, every, 2·every, …`` of the sorted folder list (3 takes a
            third of the 602 stage-1 images, ≈ 40 s on one core).

    A sample that cannot be read is skipped (logged, listed in ``skipped``) and the others
    are scored: one corrupt file among hundreds must not void the measurement.

    Returns:
        :class:`FolderScores`: ``{modality: [score per image]}`` for the modalities present
        (the rule of :func:`course_lib.data.nuclei.guess_modality`), plus ``"all"``, in folder
        order; ``.skipped`` lists the unreadable samples.

    Raises:
        FileNotFoundError: ``root`` is not a folder or holds no DSB sample.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data import nuclei
    from course_lib.data.skips import load_or_skip
    from course_lib.metrics import dsb_average_precision
    from course_lib.ops.masks import masks_to_labels

    if every < 1:
        raise ValueError(f"every={every} must be 1 or more.")
    samples = nuclei.index_samples(root)
    if not samples:
        raise FileNotFoundError(f"{root} holds no DSB samples (expected <id>/images/<id>.png "
                                "and <id>/masks/*.png); point it at a stage1_train folder.")
    scores = FolderScores()
    for sample in samples[::every]:
        loaded = load_or_skip(lambda sample=sample: nuclei.load_sample(sample), sample.name,
                              scores.skipped)
        if loaded is None:
            continue
        image, masks = loaded
        score = float(dsb_average_precision(masks_to_labels(masks), otsu_instances(image)))
        scores.setdefault(nuclei.guess_modality(image), []).append(score)
        scores["all"].append(score)
    return scores


def main(argv: Sequence[str] | None = None) -> FolderScores:
    """Command line: print the baseline's mean DSB score per modality on a folder.

    Unreadable samples are skipped and named in one line; a folder that is missing or holds
    no usable sample ends with a one-line error and exit code 2.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.skips import describe_skips

    parser = argparse.ArgumentParser(
        prog="python -m course_lib.models.classical",
        description="Score the Otsu + watershed baseline on a DSB2018-layout folder.")
    parser.add_argument("root", help="a stage1_train folder (one sub-folder per image)")
    parser.add_argument("--every", type=int, default=1,
                        help="score every N-th image only (default 1: all of them)")
    args = parser.parse_args(argv)

    def fail(message: str):  # one line, exit code 2 (argparse's error adds the usage)
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    if args.every < 1:
        fail(f"--every must be 1 or more, got {args.every}")
    try:
        scores = score_folder(args.root, every=args.every)
    except FileNotFoundError as err:
        fail(str(err))
    if not scores["all"]:
        fail(f"no sample of {args.root} could be scored ({describe_skips(scores.skipped)}); "
             "repair or replace those files.")
    print(f"Otsu + watershed baseline on {args.root} (one image in {args.every})")
    for name, values in scores.items():
        if values:
            print(f"{name:>13}: DSB score {np.mean(values):.3f} on {len(values)} images")
    if scores.skipped:
        print(f"Not scored: {describe_skips(scores.skipped)}")
    return scores


if __name__ == "__main__":
    main()
