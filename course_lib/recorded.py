"""Recorded training runs shipped with the course: the loss curves and scores of runs too long
for a notebook, trained offline by the project's own command line.

Taught in notebooks/12_train_voc.

A quick-mode notebook trains for a few dozen steps: enough to see the code work, too few to
see what a longer run teaches (validation and training losses parting, weights from another
task giving a head start). Those runs were trained once at the CPU budget, on this repository's
command line, and their logs are kept here, one folder per run::

    course_lib/recorded_runs/<name>/train.csv     the engine's CSV log, one row per epoch
    course_lib/recorded_runs/<name>/record.json   how the run was made and what it scored

``record.json`` holds at least ``command`` (the exact training command), ``commit`` (the
repository commit it ran at), ``machine``, ``wall_seconds``, ``data`` (what it trained on, in
words), ``epochs`` and ``steps_per_epoch`` (the run's length), and ``evaluation`` (the
``evaluation.json`` that ``--evaluate`` wrote, when it ran).
``tools/record_run.py`` writes a folder from a finished run.

Only logs and scores are kept, never weights: a recorded run is something to read and plot.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from course_lib.training.history import read_csv_log

#: Where the recorded runs live (inside the package, so an installed course has them).
RECORDED_DIR = Path(__file__).resolve().parent / "recorded_runs"
#: The keys every ``record.json`` must hold.
REQUIRED = ("command", "commit", "machine", "wall_seconds", "data", "epochs",
            "steps_per_epoch")


class RecordedRunError(LookupError):
    """A recorded run is unknown or its files are incomplete; the message names the file.

    Taught in notebooks/12_train_voc.
    """


@dataclass(frozen=True)
class RecordedRun:
    """One recorded run.

    Attributes:
        name: the folder's name.
        history: ``{metric: [value per epoch]}`` from ``train.csv`` (``loss``, ``val_loss``,
            the five losses, ``lr``; NaN where an epoch did not log a value).
        record: ``record.json``.

    Taught in notebooks/12_train_voc.
    """

    name: str
    history: dict
    record: dict

    @property
    def epochs(self) -> int:
        """Number of epochs logged."""
        return len(self.history.get("loss", []))

    @property
    def steps(self) -> int:
        """Optimizer steps the run took (epochs × steps per epoch of its record)."""
        return self.epochs * int(self.record["steps_per_epoch"])


def names() -> list[str]:
    """The recorded runs, sorted by name.

    Taught in notebooks/12_train_voc.
    """
    if not RECORDED_DIR.is_dir():
        return []
    return sorted(p.name for p in RECORDED_DIR.iterdir() if (p / "record.json").is_file())


def load(name: str, root: str | Path | None = None) -> RecordedRun:
    """The recorded run ``name``: its history and record.

    Raises:
        RecordedRunError: no such run (the message lists those there are), or its log or
            record is missing, empty or lacks a required key.

    Taught in notebooks/12_train_voc.
    """
    base = Path(root) if root is not None else RECORDED_DIR
    folder = base / name
    record_path, log_path = folder / "record.json", folder / "train.csv"
    if not record_path.is_file():
        known = ", ".join(names()) if root is None else "see the folder"
        raise RecordedRunError(f"no recorded run {name!r} ({record_path} is missing); "
                               f"recorded runs: {known or 'none'}.")
    try:
        record = json.loads(record_path.read_text())
    except json.JSONDecodeError as err:
        raise RecordedRunError(f"{record_path} is not valid JSON ({err}); restore it with "
                               "git checkout.") from err
    missing = [key for key in REQUIRED if key not in record]
    if missing:
        raise RecordedRunError(f"{record_path} lacks {', '.join(missing)}; write it with "
                               "tools/record_run.py.")
    history = read_csv_log(log_path)
    if not history.get("loss"):
        raise RecordedRunError(f"{log_path} is missing or holds no epoch; restore it with "
                               "git checkout, or record the run again.")
    return RecordedRun(name, history, record)


__all__ = ["RECORDED_DIR", "RecordedRun", "RecordedRunError", "load", "names"]
