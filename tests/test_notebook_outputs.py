"""The checked-output comparison of the nbclient pass agrees with nbval's.

Oracles: hand-made notebooks whose verdict is worked out by hand (a timing that the sanitize file
replaces, a changed number, a stream split in two, a changed image), and nbval itself, run as a
pytest plug-in on the same notebook in a subprocess.
"""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from notebook_outputs import SANITIZE_CFG, checked_outputs, is_checked, output_differences


def _stdout(*texts):
    return [new_output("stream", name="stdout", text=t) for t in texts]


def _notebook(outputs, source="# NBVAL_CHECK_OUTPUT\nprint(result)"):
    cell = new_code_cell(source, execution_count=1, outputs=outputs)
    return new_notebook(cells=[new_markdown_cell("# title"), cell])


def _differences(stored, fresh, source="# NBVAL_CHECK_OUTPUT\nprint(result)"):
    reference = checked_outputs(_notebook(stored, source))
    return output_differences(reference, _notebook(fresh, source))


def test_timings_and_addresses_are_sanitized_as_the_cfg_says():
    stored = _stdout("took 1.25 s at 0x7f00aa, result 42\n")
    assert _differences(stored, _stdout("took 3 ms at 0x55beef, result 42\n")) == []


def test_a_changed_number_is_reported_with_the_cell_and_both_texts():
    problems = _differences(_stdout("result 42\n"), _stdout("result 43\n"))
    assert len(problems) == 1
    assert "cell 1" in problems[0] and "'result 42\\n'" in problems[0] \
        and "'result 43\\n'" in problems[0]


def test_streams_are_coalesced_and_carriage_returns_resolved():
    assert _differences(_stdout("a 1\nb 2\n"), _stdout("a 1\n", "b 2\n")) == []
    # a progress line rewritten with \r leaves only its last state, as nbval sees it
    assert _differences(_stdout("done\n"), _stdout("10%\r50%\rdone\n")) == []


def test_images_are_not_compared_but_their_text_is():
    def figure(png, text):
        return [new_output("display_data", data={"image/png": png, "text/plain": text})]

    assert _differences(figure("AAAA", "<Figure>"), figure("BBBB", "<Figure>")) == []
    assert len(_differences(figure("AAAA", "<Figure>"), figure("AAAA", "<Other>"))) == 1


def test_unmarked_and_ignored_cells_are_not_compared():
    assert _differences(_stdout("1\n"), _stdout("2\n"), source="print(1)") == []
    assert not is_checked(new_code_cell("# NBVAL_IGNORE_OUTPUT\nprint(1)"))
    tagged = new_code_cell("print(1)", metadata={"tags": ["nbval-check-output"]})
    assert is_checked(tagged)


def test_a_checked_cell_stored_without_outputs_is_reported():
    problems = _differences([], _stdout("anything\n"))
    assert len(problems) == 1 and "stored without outputs" in problems[0]


@pytest.mark.parametrize("printed, agrees", [("took 9.5 s, 7 nuclei", True),
                                             ("took 9.5 s, 8 nuclei", False)])
def test_verdict_matches_nbval_on_a_real_kernel(tmp_path, printed, agrees):
    """nbval (the plug-in instructors run) and the nbclient comparison give the same verdict."""
    from nbclient import NotebookClient

    stored = _stdout("took 0.1 s, 7 nuclei\n")
    nb = _notebook(stored, source=f"# NBVAL_CHECK_OUTPUT\nprint({printed!r})")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)

    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--nbval-lax", "--nbval-sanitize-with", str(SANITIZE_CFG), str(path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    nbval_passed = proc.returncode == 0
    assert ("1 passed" in proc.stdout) == nbval_passed, proc.stdout[-2000:]

    reference = checked_outputs(nb)
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    ours_passed = output_differences(reference, nb) == []
    assert nbval_passed == ours_passed == agrees


def test_an_exercise_cell_may_raise_only_what_an_unfinished_exercise_raises():
    """nbval's raises-exception tag accepts any exception; conftest narrows it for exercises."""
    from conftest import unexpected_exercise_errors

    def error(name):
        return new_output("error", ename=name, evalue="x", traceback=[])

    assert unexpected_exercise_errors([error("NotImplementedError"), error("ExerciseFailed")]) \
        == []
    assert unexpected_exercise_errors(_stdout("ok\n")) == []
    assert unexpected_exercise_errors([error("NameError")]) == ["NameError: x"]
    # a check reading what the unwritten function would have made, after it raised
    assert unexpected_exercise_errors([error("NameError")], unfinished_before=True) == []
    assert unexpected_exercise_errors([error("TypeError")], unfinished_before=True) \
        == ["TypeError: x"]
