"""The exercise checks: friendly verdicts, first failing case, not-yet-written exercises."""

from __future__ import annotations

import numpy as np
import pytest

from course_lib import exercises
from course_lib.exercises import Case, ExerciseFailed, check_function
from course_lib.ops import boxes


def test_box_area_hand_worked():
    # (0,0)-(2,3): 2 rows x 3 columns = 6 pixels; a 1-pixel box; a degenerate box is 0.
    got = boxes.area(np.array([[0, 0, 2, 3], [5, 7, 6, 8], [1, 1, 1, 5], [4, 4, 2, 2.0]]))
    np.testing.assert_array_equal(got, [6.0, 1.0, 0.0, 0.0])
    assert boxes.area(np.zeros((0, 4))).shape == (0,)


def test_correct_function_passes(capsys):
    assert exercises.check_box_area(lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]))
    assert "all 4 cases pass" in capsys.readouterr().out


def test_off_by_one_fails_on_the_first_case_with_expected_and_got(capsys):
    def plus_one(b):  # the classic inclusive-coordinates mistake
        return (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)

    with pytest.raises(ExerciseFailed, match="case 1"):
        exercises.check_box_area(plus_one)
    out = capsys.readouterr().out
    assert "case 1/4 failed: one 2x3 box" in out
    assert "expected:" in out and "[6.]" in out and "[12.]" in out
    assert "Hint:" in out


def test_later_case_is_reported_when_early_ones_pass(capsys):
    def scalar_only(b):  # works for one box, breaks for several and for none
        y1, x1, y2, x2 = b[0]
        return np.array([(y2 - y1) * (x2 - x1)])

    with pytest.raises(ExerciseFailed):
        exercises.check_box_area(scalar_only)
    assert "case 3/4 failed" in capsys.readouterr().out


def test_not_written_yet_is_reraised_with_a_friendly_line(capsys):
    def todo(b):
        raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        exercises.check_box_area(todo)
    assert "not written yet" in capsys.readouterr().out


def test_learner_exception_becomes_a_failed_case(capsys):
    with pytest.raises(ExerciseFailed, match="IndexError"):
        check_function(lambda x: [][0], lambda x: x, [Case("any", (1,))], name="demo")
    assert "raised IndexError" in capsys.readouterr().out


def test_inputs_are_copied_so_a_mutating_learner_cannot_spoil_the_reference():
    def mutating(a):
        a[:] = 0
        return a.sum()

    cases = [Case("ones", (np.ones(3),))]
    with pytest.raises(ExerciseFailed):
        check_function(mutating, lambda a: a.sum(), cases, name="sum")
    assert cases[0].args[0].sum() == 3


def test_comparisons():
    assert exercises.allclose([1.0, 2.0], [1.0, 2.0 + 1e-9]) is None
    assert "shape" in exercises.allclose([1.0], [1.0, 2.0])
    assert "differ" in exercises.allclose([1.0, 5.0], [1.0, 2.0])
    assert exercises.exact("1 2", "1 2") is None and exercises.exact("1 2", "1 3") is not None
