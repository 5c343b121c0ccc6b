"""Benchmark: wall time of each lesson notebook in quick mode, against the 90 s budget.

Run: ``python bench/bench_notebooks.py [NOTEBOOK ...] [--backend tensorflow|jax|torch]``
(default: every ``notebooks/NN_*.ipynb``, on the backend ``KERAS_BACKEND`` names).

The course promises that every notebook runs top to bottom in quick mode within 90 s on a
2-core CPU. This runs each notebook as an instructor's CI would (nbclient, a fresh kernel,
``COURSE_MODE=quick``, the notebook's own folder as working directory) and prints, per notebook,
the seconds from kernel start to the last cell, the three slowest cells, and the ratio to the
budget. Timings are only meaningful on a quiet machine: the script prints the core count and the
load average before and after, and a run started on a loaded machine says so.

Nothing here is a test: a notebook over budget is reported, not failed (the notebooks' own
correctness is checked by ``tests/test_notebooks_execute.py`` and nbval).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
#: Seconds a notebook may take in quick mode on a 2-core CPU (README, "Quick and full mode").
BUDGET_S = 90.0


def _cell_seconds(cell) -> float | None:
    """Seconds a code cell ran, from nbclient's timing metadata (None when not recorded)."""
    meta = cell.metadata.get("execution", {})
    start, end = meta.get("iopub.execute_input"), meta.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def time_notebook(path: Path, backend: str) -> tuple[float, list[tuple[float, int]]]:
    """Run one notebook in a fresh kernel; return (total seconds, [(seconds, cell index)])."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ, COURSE_MODE="quick", KERAS_BACKEND=backend, PYTHONHASHSEED="0")
    client = NotebookClient(nb, timeout=900, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    started = time.monotonic()
    client.execute(env=env)
    total = time.monotonic() - started
    cells = [(s, i) for i, c in enumerate(nb.cells)
             if c.cell_type == "code" and (s := _cell_seconds(c)) is not None]
    return total, sorted(cells, reverse=True)


def main(argv=None) -> None:
    from machine import header  # the CPU and the backend settings every figure needs
    print(header(__doc__.strip().splitlines()[0]), flush=True)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to time (default: every lesson notebook)")
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} at start, backend {args.backend}, "
          f"quick mode, budget {BUDGET_S:.0f} s per notebook")
    if load > 0.5:
        print("  (the machine is busy: the times below are inflated)")
    print(f"{'notebook':<32} {'seconds':>8} {'x budget':>9}  slowest cells (s)")
    over = []
    for path in paths:
        total, cells = time_notebook(path.resolve(), args.backend)
        slow = ", ".join(f"[{i}] {s:.1f}" for s, i in cells[:3])
        print(f"{path.stem:<32} {total:>8.1f} {total / BUDGET_S:>9.2f}  {slow}", flush=True)
        if total > BUDGET_S:
            over.append(path.stem)
    print(f"load average {os.getloadavg()[0]:.2f} at the end; over budget: "
          f"{', '.join(over) if over else 'none'}")


if __name__ == "__main__":
    main()
