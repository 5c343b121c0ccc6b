"""What a synthetic set was made for, recorded in its completion marker.

Taught in notebooks/01_data_tour.

A synthetic set depends only on the generator, the number of images, the seed and the image
size (the course mode picks the number and the size). Its completion marker
(:mod:`course_lib.data.marker`) records them and the mode, and :func:`spec_matches` says whether
an existing set is the one asked for, so :mod:`course_lib.data.prepare` never silently reuses a
quick-mode set (24 small images) where full mode wants 600 real-sized ones.
"""

from __future__ import annotations

#: The fields that decide a set's content; the recorded ``mode`` is for people reading it.
IDENTITY = ("generator", "n_images", "seed", "size")


def _size(size):
    if size is None:
        return None
    if isinstance(size, (int, float)) or getattr(size, "ndim", 1) == 0:
        return int(size)
    return [int(s) for s in size]


def synthetic_spec(generator: str, n_images: int, seed: int, size=None) -> dict:
    """The json-safe record of a synthetic set: ``generator``, ``n_images``, ``seed``,
    ``size`` (``None``, an int or ``[H, W]``) and the course ``mode`` it was made in.

    Taught in notebooks/01_data_tour.
    """
    from course_lib import config

    return {"generator": str(generator), "n_images": int(n_images), "seed": int(seed),
            "size": _size(size), "mode": config.mode()}


def spec_matches(recorded: dict | None, wanted: dict) -> bool:
    """Whether a recorded spec (a marker's json, ``None`` when unmarked) is the set ``wanted``
    (same generator, number of images, seed and size).

    Taught in notebooks/01_data_tour.
    """
    if not recorded:
        return False
    return all(recorded.get(k) == wanted.get(k) for k in IDENTITY)
