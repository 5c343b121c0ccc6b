"""Tests of course_lib.viz.metrics: match pictures and the threshold explorer, headless.

Oracle: the hand-worked image of tests/test_metrics.py, whose counts are worked out there.
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from test_metrics import five_cases  # noqa: E402

from course_lib import metrics  # noqa: E402
from course_lib.viz import metrics as vm  # noqa: E402


def test_match_summary_counts_and_hits():
    true, pred = five_cases()
    s = vm.match_summary(true, pred, 0.5)
    # At 0.5 (strict): A, B1 and F match -> TP 3, FP 3, FN 3, precision 3/9.
    assert (s["tp"], s["fp"], s["fn"]) == (3, 3, 3)
    assert s["precision"] == pytest.approx(1 / 3)
    np.testing.assert_array_equal(s["true_hit"], [True, True, False, False, False, True])
    np.testing.assert_array_equal(s["pred_hit"], [True, True, False, False, False, True])
    assert "TP = 3" in s["text"] and ">" in s["text"]
    loose = vm.match_summary(true, pred, 0.5, strict=False)
    assert loose["tp"] == 4 and ">=" in loose["text"]


def test_draw_matches_colours_outcomes():
    true, pred = five_cases()
    s = vm.draw_matches(true, pred, 0.85)
    left, right = (ax.get_images()[0].get_array() for ax in s["figure"].axes[:2])
    # At 0.85 only A matches: B (true label 2, pixel (5, 22)) is drawn as missed (blue)...
    np.testing.assert_allclose(left[5, 22], vm.OUTCOME_COLORS["FN"])
    np.testing.assert_allclose(left[5, 5], vm.OUTCOME_COLORS["TP"])
    # ... and the shifted F prediction (pixel (8, 45)) as a false positive (red).
    np.testing.assert_allclose(right[8, 45], vm.OUTCOME_COLORS["FP"])
    plt.close("all")


def test_plots_draw_what_they_are_given():
    true, pred = five_cases()
    iou, t_ids, p_ids = metrics.iou_matrix(true, pred, return_labels=True)
    ax = vm.plot_iou_matrix(iou, t_ids, p_ids)
    np.testing.assert_allclose(ax.get_images()[0].get_array(), iou)
    assert "0.82" in [t.get_text() for t in ax.texts]
    _, details = metrics.dsb_average_precision(true, pred, return_details=True)
    ax = vm.plot_precision_per_threshold(details, label="strict")
    np.testing.assert_allclose(ax.lines[0].get_ydata(), details["precision"])
    plt.close("all")


def test_threshold_explorer_updates_on_slider_and_checkbox():
    true, pred = five_cases()
    box = vm.threshold_explorer(true, pred)
    slider, strict, text = box.children[:3]
    assert "TP = 3" in text.value
    slider.value = 0.6
    assert "TP = 2" in text.value and "0.60" in text.value
    strict.value = False  # B1's IoU is exactly 0.6: it counts with >=
    assert "TP = 3" in text.value and ">=" in text.value
    plt.close("all")
