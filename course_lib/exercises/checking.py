"""The checking machinery every chapter's exercise checks are built on.

Taught in notebooks/00_start_here (how to do an exercise).

Every check runs the learner's function and the library's reference on several cases and
prints a friendly verdict: all cases passed, or the *first* failing case with what was
expected, what came back and a hint. A failing check raises :class:`ExerciseFailed` (an
``AssertionError``), so a notebook run stops there, as a failing test would.

Chapter checks are small wrappers around :func:`check_function`::

    def check_box_area(fn):
        return check_function(fn, boxes.area, BOX_AREA_CASES, name="box_area", hint="...")
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class ExerciseFailed(AssertionError):
    """Raised by a check when the learner's function disagrees with the reference.

    Taught in notebooks/00_start_here.
    """


@dataclass(frozen=True)
class Case:
    """One input to try.

    Attributes:
        description: shown to the learner when this case fails ("two identical boxes").
        args: positional arguments, passed to both the learner's function and the reference.
        kwargs: keyword arguments, likewise.

    Taught in notebooks/00_start_here.
    """

    description: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)


def _short(value: Any, limit: int = 300) -> str:
    """A compact, readable rendering of a value for a verdict."""
    if isinstance(value, np.ndarray):
        with np.printoptions(precision=4, suppress=True, threshold=40, edgeitems=3):
            text = f"array(shape={value.shape}, dtype={value.dtype}):\n{value}"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def allclose(got: Any, expected: Any, atol: float = 1e-5, rtol: float = 1e-5) -> str | None:
    """Default comparison: same shape and values within tolerance.

    Returns ``None`` when they agree, else a sentence saying how they differ.

    Taught in notebooks/00_start_here.
    """
    try:
        got_arr = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        return f"could not read the result as numbers (got type {type(got).__name__})"
    exp_arr = np.asarray(expected, dtype=float)
    if got_arr.shape != exp_arr.shape:
        return f"shape {got_arr.shape} instead of {exp_arr.shape}"
    if not np.allclose(got_arr, exp_arr, atol=atol, rtol=rtol, equal_nan=True):
        worst = np.unravel_index(np.nanargmax(np.abs(got_arr - exp_arr)), exp_arr.shape) \
            if exp_arr.ndim else ()
        return f"values differ (largest difference at index {tuple(int(i) for i in worst)})"
    return None


def exact(got: Any, expected: Any) -> str | None:
    """Comparison for strings, ints and index lists: must be equal.

    Taught in notebooks/00_start_here.
    """
    if isinstance(expected, np.ndarray) or isinstance(got, np.ndarray):
        g, e = np.asarray(got), np.asarray(expected)
        if g.shape != e.shape or not np.array_equal(g, e):
            return "not equal"
        return None
    return None if got == expected else "not equal"


def check_function(
    learner_fn: Callable,
    reference_fn: Callable,
    cases: Sequence[Case],
    *,
    name: str,
    compare: Callable[[Any, Any], str | None] = allclose,
    hint: str = "",
) -> bool:
    """Run ``learner_fn`` and ``reference_fn`` on every case; print a verdict.

    Args:
        learner_fn: the learner's function.
        reference_fn: the library function it should agree with.
        cases: inputs to try, in order; the first failure is reported.
        name: the exercise's name, as the learner sees it.
        compare: ``compare(got, expected)`` returns ``None`` or a reason they differ.
        hint: one sentence pointing at the usual mistake.

    Returns:
        ``True`` when every case passes.

    Raises:
        NotImplementedError: the learner has not written the function yet (re-raised
            after a friendly line).
        ExerciseFailed: a case disagrees, or the learner's function raised.

    Taught in notebooks/00_start_here.
    """
    for i, case in enumerate(cases, start=1):
        expected = reference_fn(*_copy(case.args), **_copy(case.kwargs))
        try:
            got = learner_fn(*_copy(case.args), **_copy(case.kwargs))
        except NotImplementedError:
            print(f"✋ {name}: not written yet. Replace `raise NotImplementedError()` "
                  "with your code, run that cell, then run this check again.")
            raise
        except Exception as err:  # the learner's bug: show it as a failed case
            message = (f"✗ {name}: case {i}/{len(cases)} ({case.description}) raised "
                       f"{type(err).__name__}: {err}")
            print(message + (f"\n  Hint: {hint}" if hint else ""))
            raise ExerciseFailed(message) from err
        reason = compare(got, expected)
        if reason is not None:
            lines = [
                f"✗ {name}: case {i}/{len(cases)} failed: {case.description}",
                f"  inputs:   {_short(case.args)}",
                f"  expected: {_short(expected)}",
                f"  got:      {_short(got)}",
                f"  ({reason})",
            ]
            if hint:
                lines.append(f"  Hint: {hint}")
            print("\n".join(lines))
            raise ExerciseFailed(f"{name}: case {i} ({case.description}) failed: {reason}")
    print(f"✓ {name}: all {len(cases)} cases pass. Well done!")
    return True


def _copy(value: Any) -> Any:
    """Deep-ish copy so a function that writes into its inputs cannot spoil the next call."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, tuple):
        return tuple(_copy(v) for v in value)
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    return value
