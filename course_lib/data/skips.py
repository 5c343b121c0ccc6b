"""Skipping unusable samples: one bad file must not end a long command.

Taught in notebooks/11_train_nuclei.

Real folders hold a few broken files: a truncated download, a mask of another size, a json
entry pointing at a missing image. Training (:mod:`course_lib.data.pipeline`), validation,
evaluation, prediction and the classical baseline all read many samples in a loop, and each
of them treats such a sample the same way: skip it, say which one and why, count it, and go on
with the rest. This module is that shared vocabulary, kept free of Keras so the light commands
(the classical baseline) can use it without importing a deep-learning framework:

* :data:`SKIPPABLE_ERRORS`: the exceptions that mean "this sample is unusable" (anything else
  is a bug and must surface);
* :func:`skip_reason`: a short reason for the count (``missing_file``, ``unreadable_image``...);
* :class:`Skipped` and :func:`load_or_skip`: run one load, and on such an error record the
  sample and log a warning naming it instead of raising;
* :func:`describe_skips`: the one line a command prints about them
  (``"1 sample skipped: 0a7d (unreadable_image)"``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Exceptions that make one sample unusable (unreadable file, missing file, broken contract);
#: loops over samples skip such a sample, count it and take the next. Anything else is a bug
#: and surfaces.
SKIPPABLE_ERRORS = (OSError, ValueError, EOFError, KeyError)


class Skipped(NamedTuple):
    """One sample a loop could not use: its ``name``, the short ``reason``
    (:func:`skip_reason`) and the full ``message`` of the error.

    Taught in notebooks/11_train_nuclei.
    """

    name: str
    reason: str
    message: str


def skip_reason(err: BaseException) -> str:
    """Short reason of a skipped sample: ``missing_file``, ``unreadable_image``, ``read_error``
    or ``invalid_sample`` (the full message is kept beside it).

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.io import ImageReadError

    if isinstance(err, FileNotFoundError):
        return "missing_file"
    if isinstance(err, ImageReadError):
        return "unreadable_image"
    if isinstance(err, OSError):
        return "read_error"
    return "invalid_sample"


def load_or_skip(load: Callable[[], T], name: str, skipped: list[Skipped],
                 what: str = "sample") -> T | None:
    """``load()``, or ``None`` when it raises one of :data:`SKIPPABLE_ERRORS`.

    A failed load is appended to ``skipped`` and logged as a warning naming the sample and the
    reason, so the caller can go on with the next sample and report the count at the end.

    Args:
        load: reads the sample (no arguments), e.g. ``lambda: load_sample(folder)``.
        name: the sample's name in the warning and in ``skipped``.
        skipped: the list the caller keeps its skips in.
        what: how the warning calls the thing (``"sample"``, ``"image"``).

    Taught in notebooks/11_train_nuclei.
    """
    try:
        return load()
    except SKIPPABLE_ERRORS as err:
        entry = Skipped(str(name), skip_reason(err), f"{type(err).__name__}: {err}")
        skipped.append(entry)
        log.warning("skipping %s %s (%s): %s", what, entry.name, entry.reason, err)
        return None


def describe_skips(skipped: list[Skipped], what: str = "sample", limit: int = 5) -> str:
    """One line about ``skipped``: ``"2 samples skipped: a (unreadable_image), b
    (missing_file)"`` (the first ``limit`` named), or ``""`` when there are none.

    Taught in notebooks/11_train_nuclei.
    """
    if not skipped:
        return ""
    named = ", ".join(f"{s.name} ({s.reason})" for s in skipped[:limit])
    more = f", and {len(skipped) - limit} more" if len(skipped) > limit else ""
    plural = "" if len(skipped) == 1 else "s"
    return f"{len(skipped)} {what}{plural} skipped: {named}{more}"
