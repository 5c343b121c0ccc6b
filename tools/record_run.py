"""Record a finished training run for the course: its CSV log and how it was made.

    python tools/record_run.py RUN_DIR NAME --command "..." --commit SHA --data "words" \
        [--description TEXT] [--note TEXT ...] [--root FOLDER]

Copies ``RUN_DIR/logs/train.csv`` to ``course_lib/recorded_runs/NAME/train.csv`` and writes
``record.json`` beside it: the command, the commit, this machine, the wall time (the final
weights' modification time minus the run folder's creation time in ``run.json``), the
training configuration's length (epochs, steps per epoch), the run's ``evaluation.json``
(written by ``--evaluate``) when there is one, and the notes. Weights are not copied: a
recorded run is read and plotted (:mod:`course_lib.recorded`), not loaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import datetime
from pathlib import Path

from ship_model import machine_line


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("name")
    p.add_argument("--command", required=True, help="the exact training command")
    p.add_argument("--commit", required=True, help="the commit the command ran at")
    p.add_argument("--data", required=True, help="what the run trained on, in words")
    p.add_argument("--description", default="")
    p.add_argument("--note", action="append", default=[], help="a sentence for the record")
    p.add_argument("--root", type=Path, default=None,
                   help="where recorded runs live (default course_lib/recorded_runs)")
    args = p.parse_args(argv)

    from course_lib.recorded import RECORDED_DIR, load

    run, log = json.loads((args.run_dir / "run.json").read_text()), \
        args.run_dir / "logs" / "train.csv"
    weights = args.run_dir / "final.weights.h5"
    if not weights.is_file():
        raise SystemExit(f"{args.run_dir} has not finished ({weights.name} is missing): "
                         "run its training command again to finish it, then record it.")
    created = datetime.strptime(run["created"], "%Y-%m-%d %H:%M:%S").timestamp()
    evaluation = args.run_dir / "evaluation.json"
    record = {"name": args.name, "description": args.description, "command": args.command,
              "commit": args.commit, "machine": machine_line(), "data": args.data,
              "model": run["model"], "started": run["created"],
              "wall_seconds": round(weights.stat().st_mtime - created),
              "epochs": run["config"]["epochs"],
              "steps_per_epoch": run["config"]["steps_per_epoch"],
              "evaluation": (json.loads(evaluation.read_text()) if evaluation.is_file()
                             else None),
              "notes": args.note}
    root = args.root or RECORDED_DIR
    folder = root / args.name
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(log, folder / "train.csv")
    (folder / "record.json").write_text(json.dumps(record, indent=1) + "\n")
    recorded = load(args.name, root=root)   # read back as the notebook will
    if recorded.epochs != record["epochs"]:
        raise SystemExit(f"{log} logs {recorded.epochs} epochs, the run was set for "
                         f"{record['epochs']}: record a finished run.")
    print(f"recorded {args.name}: {recorded.epochs} epochs, {recorded.steps} steps, "
          f"{record['wall_seconds']} s -> {folder}")
    return folder


if __name__ == "__main__":
    main()
