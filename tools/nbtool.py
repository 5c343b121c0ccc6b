"""Notebook housekeeping for course authors: strip outputs, build exercises, lint conventions.

Usage (from the repository root, inside the venv; ``make`` targets call these):

    python tools/nbtool.py strip [NOTEBOOK ...]       # clear outputs except NBVAL_CHECK_OUTPUT cells
    python tools/nbtool.py exercises [--check]        # solutions/ -> exercises/ (or check staleness)
    python tools/nbtool.py lint                       # check the notebook conventions
    python tools/nbtool.py run NOTEBOOK [...]         # execute in place, keep only checked outputs

Conventions (README "Writing a notebook"):

* Notebooks are stored without outputs or execution counts, except code cells whose source
  contains ``# NBVAL_CHECK_OUTPUT``: their deterministic text output is kept (with execution
  count 1) and nbval compares it.
* The first code cell calls ``session.report(`` (mode, backend, data source; seeds fixed).
* A markdown cell among the first two says "Learning goals"; the last markdown cell is a
  "Recap"; a chapter with an exercise points to ``exercises/NN_topic.ipynb`` from its recap.
* In ``solutions/``, solution code sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION``;
  cells that run the learner's code start with ``# CHECK``. The exercise version replaces each
  solution block with ``# YOUR CODE HERE`` and ``raise NotImplementedError()`` and tags check
  cells ``raises-exception`` so nbval still executes the notebook.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
CHECK_OUTPUT = "NBVAL_CHECK_OUTPUT"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
CHECK_MARK = "# CHECK"
RAISES_TAG = "raises-exception"
NB_DIRS = ("notebooks", "solutions", "exercises")


def read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(str(path), as_version=4)


def write(nb: nbformat.NotebookNode, path: Path) -> None:
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Clear outputs and execution counts, keeping outputs of NBVAL_CHECK_OUTPUT cells."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if CHECK_OUTPUT in cell.source:
            # nbval skips the comparison of a cell that looks unrun, so a checked cell keeps
            # an execution count; a constant one keeps diffs quiet.
            cell.execution_count = 1
            for out in cell.outputs:
                if "execution_count" in out:
                    out["execution_count"] = 1
        else:
            cell.execution_count = None
            cell.outputs = []
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def _strip_solution(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block with a placeholder at the block's indentation."""
    out: list[str] = []
    inside = False
    for line in source.split("\n"):
        stripped = line.strip()
        if stripped.startswith(BEGIN):
            if inside:
                raise ValueError("nested ### BEGIN SOLUTION")
            inside = True
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}raise NotImplementedError()")
        elif stripped.startswith(END):
            if not inside:
                raise ValueError("### END SOLUTION without ### BEGIN SOLUTION")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError("### BEGIN SOLUTION without ### END SOLUTION")
    return "\n".join(out)


def make_exercise(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The exercise notebook for a solution notebook (outputs stripped)."""
    nb = strip(solution)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if BEGIN in cell.source or END in cell.source:
            cell.source = _strip_solution(cell.source)
        if cell.source.lstrip().startswith(CHECK_MARK):
            tags = list(cell.metadata.get("tags", []))
            if RAISES_TAG not in tags:
                tags.append(RAISES_TAG)
            cell.metadata["tags"] = tags
    nb.metadata.setdefault("course", {})["generated_from"] = "solutions (tools/nbtool.py exercises)"
    return nb


def exercise_pairs() -> list[tuple[Path, Path]]:
    return [(p, ROOT / "exercises" / p.name) for p in sorted((ROOT / "solutions").glob("*.ipynb"))]


def build_exercises(check: bool) -> list[str]:
    """Write exercises/ from solutions/; with ``check``, only report stale or missing ones."""
    problems = []
    expected_names = set()
    for sol, ex in exercise_pairs():
        expected_names.add(ex.name)
        text = nbformat.writes(make_exercise(read(sol))) + "\n"
        if check:
            if not ex.exists() or ex.read_text(encoding="utf-8") != text:
                problems.append(f"{ex.relative_to(ROOT)} is stale: run `make exercises`")
        else:
            ex.parent.mkdir(exist_ok=True)
            ex.write_text(text, encoding="utf-8")
    for ex in sorted((ROOT / "exercises").glob("*.ipynb")):
        if ex.name not in expected_names:
            problems.append(f"{ex.relative_to(ROOT)} has no solutions/{ex.name}")
    return problems


def lint_notebook(path: Path) -> list[str]:
    """Problems with one notebook's conventions (empty list when it is fine)."""
    nb = read(path)
    rel = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    markdown = [c for c in nb.cells if c.cell_type == "markdown"]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if CHECK_OUTPUT not in cell.source and (cell.outputs or cell.execution_count):
            problems.append(f"{rel}: cell {i} is stored with outputs (run `make strip`)")
        if CHECK_OUTPUT in cell.source and not cell.outputs:
            problems.append(f"{rel}: cell {i} is marked {CHECK_OUTPUT} but has no stored output "
                            f"(run `python tools/nbtool.py run {rel}`)")
    if not code or "session.report(" not in code[0].source:
        problems.append(f"{rel}: the first code cell must call session.report(...)")
    if not any("Learning goals" in c.source for c in nb.cells[:2] if c.cell_type == "markdown"):
        problems.append(f"{rel}: a 'Learning goals' markdown cell must be among the first two cells")
    if not markdown or "Recap" not in markdown[-1].source:
        problems.append(f"{rel}: the last markdown cell must be the 'Recap'")
    if path.parent.name == "notebooks":
        exercise = ROOT / "exercises" / path.name
        if exercise.exists() and markdown and f"exercises/{path.name}" not in markdown[-1].source:
            problems.append(f"{rel}: the recap must point to exercises/{path.name}")
    if path.parent.name == "solutions":
        if not any(BEGIN in c.source for c in code):
            problems.append(f"{rel}: a solutions notebook needs at least one {BEGIN} block")
        if not any(c.source.lstrip().startswith(CHECK_MARK) for c in code):
            problems.append(f"{rel}: a solutions notebook needs at least one '{CHECK_MARK}' cell")
    kernel = nb.metadata.get("kernelspec", {}).get("name")
    if kernel != "python3":
        problems.append(f"{rel}: kernelspec must be 'python3' (is {kernel!r})")
    return problems


def all_notebooks() -> list[Path]:
    return [p for d in NB_DIRS for p in sorted((ROOT / d).glob("*.ipynb"))]


def run_notebook(path: Path, timeout: int = 600) -> None:
    """Execute a notebook in place (cwd = its folder), then keep only checked outputs."""
    from nbclient import NotebookClient

    nb = read(path)
    NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    write(strip(nb), path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_strip = sub.add_parser("strip")
    p_strip.add_argument("paths", nargs="*", type=Path)
    p_ex = sub.add_parser("exercises")
    p_ex.add_argument("--check", action="store_true")
    sub.add_parser("lint")
    p_run = sub.add_parser("run")
    p_run.add_argument("paths", nargs="+", type=Path)
    args = parser.parse_args(argv)

    if args.cmd == "strip":
        for path in args.paths or all_notebooks():
            write(strip(read(path)), path)
        return 0
    if args.cmd == "exercises":
        problems = build_exercises(check=args.check)
        print("\n".join(problems) or ("exercises/ is up to date" if args.check else "exercises/ written"))
        return 1 if problems else 0
    if args.cmd == "lint":
        problems = [p for path in all_notebooks() for p in lint_notebook(path)]
        print("\n".join(problems) or f"{len(all_notebooks())} notebooks follow the conventions")
        return 1 if problems else 0
    if args.cmd == "run":
        for path in args.paths:
            run_notebook(path.resolve())
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(main())
