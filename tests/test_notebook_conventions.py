"""Every notebook follows the course conventions; exercises/ is generated from solutions/."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import nbtool  # noqa: E402

NOTEBOOKS = nbtool.all_notebooks()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_follows_conventions(path):
    assert nbtool.lint_notebook(path) == []


def test_there_are_notebooks():
    assert (ROOT / "notebooks" / "00_start_here.ipynb") in NOTEBOOKS


def test_exercises_are_up_to_date_with_solutions():
    assert nbtool.build_exercises(check=True) == []


def test_every_chapter_with_a_solution_has_its_lesson():
    for sol, _ in nbtool.exercise_pairs():
        assert (ROOT / "notebooks" / sol.name).exists(), f"solutions/{sol.name} has no lesson"


# --- the tool itself, on hand-made notebooks ---------------------------------------------

def _nb(*cells):
    nb = nbformat.v4.new_notebook()
    nb.cells = list(cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    return nb


def test_make_exercise_replaces_solution_at_its_indentation_and_tags_checks():
    code = nbformat.v4.new_code_cell(
        "def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n"
    )
    check = nbformat.v4.new_code_cell("# CHECK\nexercises.check_f(f)")
    other = nbformat.v4.new_code_cell("print(1)")
    ex = nbtool.make_exercise(_nb(code, check, other))
    assert ex.cells[0].source == ("def f(x):\n    # YOUR CODE HERE\n"
                                  "    raise NotImplementedError()\n")
    assert ex.cells[1].metadata["tags"] == ["raises-exception"]
    assert "tags" not in ex.cells[2].metadata
    # the exercise really raises NotImplementedError when its function is called
    scope = {}
    exec(ex.cells[0].source, scope)
    with pytest.raises(NotImplementedError):
        scope["f"](1)


@pytest.mark.parametrize("source", [
    "### BEGIN SOLUTION\nx = 1\n",
    "x = 1\n### END SOLUTION\n",
    "### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n",
])
def test_unbalanced_solution_markers_are_refused(source):
    with pytest.raises(ValueError):
        nbtool.make_exercise(_nb(nbformat.v4.new_code_cell(source)))


def test_strip_keeps_only_checked_outputs():
    kept = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(2)", execution_count=3)
    kept.outputs = [nbformat.v4.new_output("stream", name="stdout", text="2\n")]
    dropped = nbformat.v4.new_code_cell("print(1)", execution_count=4)
    dropped.outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    out = nbtool.strip(_nb(kept, dropped))
    assert out.cells[0].outputs[0]["text"] == "2\n" and out.cells[0].execution_count == 1
    assert out.cells[1].outputs == [] and out.cells[1].execution_count is None


def test_lint_reports_each_broken_convention(tmp_path):
    bad = _nb(nbformat.v4.new_markdown_cell("# Title"),
              nbformat.v4.new_code_cell("print(1)", execution_count=1))
    bad.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    path = tmp_path / "notebooks" / "99_bad.ipynb"
    path.parent.mkdir()
    nbformat.write(bad, str(path))
    problems = "\n".join(nbtool.lint_notebook(path))
    assert "stored with outputs" in problems
    assert "session.report" in problems
    assert "Learning goals" in problems
    assert "Recap" in problems
