"""Compare the cells marked ``# NBVAL_CHECK_OUTPUT`` with their stored outputs, as nbval does.

``tests/test_notebooks_execute.py`` executes each lesson once on TensorFlow through nbclient (as
JupyterLab and ``jupyter nbconvert --execute`` do). The marked cells are checked in that same
execution, so no lesson has to run a second time under nbval just for them. The rules are
nbval's own, read from nbval rather than retyped: its comment markers, its stream coalescing
(``\\r`` and ``\\b`` handled, streams of one name merged), the same output keys left out of the
comparison (images, metadata, execution counts, widget ids), and the regex replacements of
``tests/nbval_sanitize.cfg`` applied to both sides.
"""

from __future__ import annotations

import copy
import re
from collections import defaultdict
from pathlib import Path

from nbval.plugin import (
    coalesce_streams,
    find_comment_markers,
    find_metadata_tags,
    get_sanitize_patterns,
    transform_streams_for_comparison,
)

SANITIZE_CFG = Path(__file__).resolve().parent / "nbval_sanitize.cfg"

#: The output keys nbval (``--nbval-lax``, without nbdime) leaves out of a comparison.
SKIP_COMPARE = frozenset({"metadata", "traceback", "prompt_number", "output_type", "name",
                          "execution_count", "application/vnd.jupyter.widget-view+json",
                          "image/png", "image/jpeg"})


def sanitize_patterns(path: Path = SANITIZE_CFG) -> list[tuple[str, str]]:
    """The (regex, replacement) pairs of an nbval sanitize file, parsed by nbval itself."""
    return get_sanitize_patterns(path.read_text())


def is_checked(cell) -> bool:
    """True for a code cell nbval compares in ``--nbval-lax`` mode: ``# NBVAL_CHECK_OUTPUT`` or the
    ``nbval-check-output`` tag (comments win over tags, as in nbval)."""
    if cell.cell_type != "code":
        return False
    markers = dict(find_metadata_tags(cell.get("metadata", {})))
    markers.update(find_comment_markers(cell.source))
    return bool(markers.get("check", False))


def checked_outputs(nb) -> dict[int, list]:
    """Deep copies of the stored outputs of the checked cells, by cell index (take before executing:
    nbclient overwrites a notebook's outputs in place)."""
    return {i: copy.deepcopy(cell.outputs) for i, cell in enumerate(nb.cells) if is_checked(cell)}


def comparable(outputs: list, patterns: list[tuple[str, str]]) -> dict[str, list]:
    """Outputs flattened as nbval compares them: {key or MIME type: [sanitized values, in order]}."""
    def clean(value):
        if not isinstance(value, str):
            return value
        for regex, replacement in patterns:
            value = re.sub(regex, replacement, value)
        return value

    flat: dict[str, list] = defaultdict(list)
    for output in transform_streams_for_comparison(coalesce_streams(copy.deepcopy(outputs))):
        for key, value in output.items():
            if key in SKIP_COMPARE:
                continue
            if key == "data":
                for mime, payload in value.items():
                    if mime not in SKIP_COMPARE:
                        flat[mime].append(clean(payload))
            else:
                flat[key].append(clean(value))
    return dict(flat)


def output_differences(reference: dict[int, list], executed_nb,
                       patterns: list[tuple[str, str]] | None = None) -> list[str]:
    """One message per checked cell whose fresh outputs differ from its stored ones; [] if none.

    ``reference`` is :func:`checked_outputs` of the notebook as stored. A checked cell stored
    without outputs is reported too: its check could never fail.
    """
    patterns = sanitize_patterns() if patterns is None else patterns
    problems = []
    for index, stored in reference.items():
        if not stored:
            problems.append(f"cell {index} is marked NBVAL_CHECK_OUTPUT but is stored without "
                            "outputs, so nothing is checked; run it and store its output")
            continue
        want = comparable(stored, patterns)
        got = comparable(executed_nb.cells[index].outputs, patterns)
        if want != got:
            lines = [f"cell {index} (NBVAL_CHECK_OUTPUT) differs from its stored output:"]
            for key in sorted(set(want) | set(got)):
                if want.get(key) != got.get(key):
                    lines.append(f"  {key}: stored {want.get(key)!r}\n  {key}: now    {got.get(key)!r}")
            problems.append("\n".join(lines))
    return problems
