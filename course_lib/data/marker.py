"""Completion markers: a folder counts as a finished dataset only when its marker is there.

Taught in notebooks/01_data_tour.

Writing a dataset takes time (extracting 30 000 files, generating synthetic images) and can stop
half-way: a full disk, a closed laptop, Ctrl-C. A folder that merely *exists* proves nothing.
So whoever writes a dataset writes a small json file, :data:`COMPLETE_MARKER`, into it *last*
(atomically: a temporary file renamed into place), and readers check for it:

- :func:`course_lib.data.download.extract` marks an extracted archive (its name and SHA-256);
- the synthetic generators mark their sets with what they were made for (generator, number of
  images, seed, size, course mode), so :mod:`course_lib.data.prepare` regenerates a set made
  with other settings (a quick-mode set is never reused in full mode) instead of reusing it;
- :func:`course_lib.data.discovery.dataset_status` counts a synthetic set only when it is marked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

#: File written last into a folder that is complete.
COMPLETE_MARKER = ".course-complete.json"


def is_complete(folder: str | Path) -> bool:
    """Whether ``folder`` holds a readable completion marker (:data:`COMPLETE_MARKER`).

    Taught in notebooks/01_data_tour.
    """
    return read_marker(folder) is not None


def write_marker(folder: str | Path, **info) -> Path:
    """Write the completion marker into ``folder`` as json of ``info``, atomically; call it
    after everything else in the folder is written. Returns the marker's path.

    Taught in notebooks/01_data_tour.
    """
    path = Path(folder) / COMPLETE_MARKER
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1, sort_keys=True, default=str))
    os.replace(tmp, path)
    return path


def clear_marker(folder: str | Path) -> None:
    """Remove ``folder``'s marker (first thing to do before rewriting the folder).

    Taught in notebooks/01_data_tour.
    """
    (Path(folder) / COMPLETE_MARKER).unlink(missing_ok=True)


def read_marker(folder: str | Path) -> dict | None:
    """The json of ``folder``'s completion marker, or ``None`` when there is none (or it is
    unreadable, which counts as incomplete).

    Taught in notebooks/01_data_tour.
    """
    try:
        info = json.loads((Path(folder) / COMPLETE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None
