"""Which datasets are on this machine: real ones first, the synthetic look-alikes otherwise.

Taught in notebooks/00_start_here.

Datasets live below :func:`course_lib.config.data_root` in the layout :data:`DATASET_LAYOUT`
gives. A notebook uses real data when it is there and the synthetic look-alike otherwise, and
says which at the top (:func:`course_lib.session.report`).
"""

from __future__ import annotations

from pathlib import Path

from course_lib import config
from course_lib.data.marker import is_complete

#: Where each dataset is expected below :func:`course_lib.config.data_root`, real first,
#: synthetic last.
DATASET_LAYOUT = {
    "nuclei": ("dsb2018/stage1_train", "synthetic/nuclei/stage1_train"),
    "voc": ("VOCdevkit/VOC2012", "synthetic/voc/VOC2012"),
}


def dataset_status() -> dict[str, tuple[str, Path | None]]:
    """For each dataset, ``(source, path)``: source is ``"real"``, ``"synthetic"`` or ``"missing"``.

    A real folder counts as present when it exists and is not empty (the downloader renames
    its folders into place only once complete; a copy of your own has no marker). A synthetic
    set counts only when its completion marker (``course_lib.data.marker``), written last, is
    there; ``data.prepare`` also checks that the marker matches the mode's settings.

    Taught in notebooks/00_start_here.
    """
    root = config.data_root()
    status: dict[str, tuple[str, Path | None]] = {}
    for name, (real, synthetic) in DATASET_LAYOUT.items():
        status[name] = ("missing", None)
        for source, rel in (("real", real), ("synthetic", synthetic)):
            path = root / rel
            present = is_complete(path) if source == "synthetic" else \
                path.is_dir() and any(path.iterdir())
            if present:
                status[name] = (source, path)
                break
    return status
