"""A run's loss curves read back from its CSV log.

Taught in notebooks/11_train_nuclei.

The engine (:func:`course_lib.training.train`) appends one row per finished epoch to
``RUN_DIR/logs/train.csv`` (Keras' ``CSVLogger``: an ``epoch`` column, then one column per
logged value, ``NA`` where an epoch did not log it). A run resumed after an interruption may
log an epoch twice (killed between the log row and its checkpoint); the later row is the one
that counts. Recorded runs shipped with the course (:mod:`course_lib.recorded`) keep the same
file.
"""

from __future__ import annotations

import csv
from pathlib import Path


def read_csv_log(path: str | Path) -> dict[str, list[float]]:
    """``{metric: [value per epoch]}`` from an engine CSV log, in epoch order.

    An epoch logged twice counts once (the later row); a value an epoch did not log is NaN,
    so every list has one entry per epoch. A missing file gives ``{}``.

    Taught in notebooks/11_train_nuclei.
    """
    path = Path(path)
    if not path.is_file():
        return {}
    by_epoch: dict[int, dict] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            if row.get("epoch", "").strip().lstrip("-").isdigit():
                by_epoch[int(row["epoch"])] = row
    history: dict[str, list[float]] = {}
    for epoch in sorted(by_epoch):
        for key, value in by_epoch[epoch].items():
            if key != "epoch":   # Keras writes NA for a value an epoch did not log: NaN
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    number = float("nan")
                history.setdefault(key, []).append(number)
    return history


def read_history(run_dir: str | Path) -> dict[str, list[float]]:
    """:func:`read_csv_log` of a run folder's ``logs/train.csv``, over every session of the
    run (``{}`` for a folder without one).

    Taught in notebooks/11_train_nuclei.
    """
    return read_csv_log(Path(run_dir) / "logs" / "train.csv")
