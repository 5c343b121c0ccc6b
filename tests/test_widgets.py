"""The explorer kit re-renders on every control change, headlessly."""

from __future__ import annotations

import ipywidgets as widgets
import matplotlib.pyplot as plt

from course_lib.viz.widgets import explorer, widget_check


def test_widget_check_follows_its_slider():
    w = widget_check()
    assert w.result == "3 squared is 9" and w.renders == 1
    w.controls["n"].value = 7
    assert w.result == "7 squared is 49" and w.renders == 2


def test_explorer_passes_every_control_value_and_closes_figures():
    seen = []

    def render(a, b):
        seen.append((a, b))
        plt.plot([a, b])
        return a + b

    w = explorer(render, a=widgets.IntSlider(value=1), b=widgets.Dropdown(options=[10, 20], value=10))
    w.controls["b"].value = 20
    assert seen == [(1, 10), (1, 20)] and w.result == 21
    assert plt.get_fignums() == [], "figures are shown into the output and not left open"


# ---------------------------------------------------------------------------------------
# prediction_browser
# ---------------------------------------------------------------------------------------

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from course_lib.viz.prediction_browser import prediction_browser  # noqa: E402


def _square(shape, top, left, size=4):
    m = np.zeros(shape, bool)
    m[top:top + size, left:left + size] = True
    return m


def _browser_inputs():
    """Three 16×16 images whose scores are worked out by hand (DSB: IoU must be > t).

    0: prediction == truth (two squares)            -> every threshold TP=2 -> AP 1.0, IoU 1.0
    1: one 4×4 square shifted by one column         -> inter 12, union 20, IoU 0.6 -> hits at
       t = 0.50 and 0.55 only -> AP 2/10 = 0.2
    2: two true squares, one found exactly          -> TP=1, FN=1 at every t -> AP 1/2 = 0.5,
       mean best IoU (1 + 0) / 2 = 0.5
    """
    shape = (16, 16)
    a, b = _square(shape, 1, 1), _square(shape, 9, 9)
    images = [np.full(shape + (3,), 40 * k, np.uint8) for k in range(3)]
    truths = [np.stack([a, b], -1), a[..., None], np.stack([a, b], -1)]
    preds = [np.stack([a, b], -1), _square(shape, 1, 2)[..., None], a[..., None]]
    return images, truths, preds


def test_prediction_browser_follows_its_slider_with_hand_worked_scores():
    images, truths, preds = _browser_inputs()
    w = prediction_browser(images, truths, preds)
    assert w.result["index"] == 0 and w.result["score"] == pytest.approx(1.0)
    assert w.result["mean_best_iou"] == pytest.approx(1.0)
    w.controls["index"].value = 1
    assert w.result["index"] == 1 and (w.result["n_true"], w.result["n_pred"]) == (1, 1)
    assert w.result["score"] == pytest.approx(0.2) and w.result["mean_best_iou"] == pytest.approx(0.6)
    assert "DSB AP 0.200" in w.result["text"] and "mean best IoU 0.600" in w.result["text"]
    w.controls["index"].value = 2
    assert w.result["score"] == pytest.approx(0.5) and w.result["mean_best_iou"] == pytest.approx(0.5)
    assert w.renders == 3
    assert plt.get_fignums() == []


def test_prediction_browser_orders_worst_first_and_accepts_label_images():
    images, truths, preds = _browser_inputs()
    # Label images (0 background) instead of mask stacks: the same objects, so the same scores.
    to_labels = [(m * np.arange(1, m.shape[-1] + 1)).sum(-1).astype(np.int32) for m in truths]
    w = prediction_browser(images, to_labels, preds)
    w.controls["order"].value = "worst first"            # scores 1.0, 0.2, 0.5 -> 1, 2, 0
    assert [w.result["index"]] == [1]
    w.controls["index"].value = 1
    assert w.result["index"] == 2
    w.controls["order"].value = "best first"
    assert w.result["index"] == 2                        # position 1 of (0, 2, 1)
    w.controls["index"].value = 0
    assert w.result["index"] == 0 and w.result["n_true"] == 2


def test_prediction_browser_shows_given_scores_and_rejects_bad_input():
    images, truths, preds = _browser_inputs()
    w = prediction_browser(images, truths, preds, scores=[0.9, 0.1, 0.4], names=["x", "y", "z"])
    w.controls["index"].value = 1
    assert w.result["score"] == pytest.approx(0.1) and w.result["text"].startswith("y (2/3)")
    with pytest.raises(ValueError, match="true_masks"):
        prediction_browser(images, truths[:2], preds)
    with pytest.raises(ValueError, match="image 0"):
        prediction_browser(images, [t[:8] for t in truths], preds)


# ---------------------------------------------------------------------------------------
# LiveCurves
# ---------------------------------------------------------------------------------------


def test_live_curves_redraws_once_per_epoch_during_fit():
    import keras

    from course_lib.viz.live_curves import LiveCurves

    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    live = LiveCurves()
    fit = model.fit(x, y, validation_split=0.25, epochs=2, batch_size=4, verbose=0,
                    callbacks=[live])
    assert live.redraws == 2
    assert set(live.history) >= {"loss", "mae", "val_loss", "val_mae"}
    assert all(len(v) == 2 for v in live.history.values())
    # Keras's own History is the oracle for the values.
    for key, values in fit.history.items():
        np.testing.assert_allclose(live.history[key], values, rtol=1e-6)
    # The output holds one drawing (the latest), an image of the figure.
    assert len(live.output.outputs) == 1 and "image/png" in live.output.outputs[0]["data"]
    assert isinstance(live.widget, widgets.VBox) and live.output in live.widget.children
    assert plt.get_fignums() == []


def test_explorer_shows_only_its_own_figures_and_closes_them_after_an_error():
    left_open = plt.figure()                  # a figure a notebook cell left open
    calls = []

    def render(n):
        calls.append(n)
        plt.figure()
        if n == 2:
            raise ValueError("bad n")
        return n

    w = explorer(render, n=widgets.IntSlider(value=1))
    assert plt.get_fignums() == [left_open.number], "render's figure closed, the cell's kept"
    try:
        w.controls["n"].value = 2             # headless, the error reaches the caller
    except ValueError:
        pass
    assert plt.get_fignums() == [left_open.number], "closed even when render failed"
    plt.close(left_open)
    assert calls == [1, 2]


def test_live_curves_keys_every_and_bad_arguments():
    from course_lib.viz.live_curves import LiveCurves

    live = LiveCurves(keys=["loss"])
    live.on_epoch_end(0, {"loss": 2.0, "acc": 0.5})
    assert live.redraws == 1 and live.history == {"loss": [2.0], "acc": [0.5]}
    assert "1 metrics" in live.output.outputs[0]["data"]["text/plain"]   # only the key asked for
    # every=2 over 5 epochs: drawn after epochs 2 and 4, and after the last one (5).
    sparse = LiveCurves(every=2)
    sparse.set_params({"epochs": 5, "verbose": 0})
    sparse.on_train_begin()
    for epoch in range(5):
        sparse.on_epoch_end(epoch, {"loss": 1.0 / (epoch + 1)})
    assert sparse.redraws == 3 and len(sparse.history["loss"]) == 5
    with pytest.raises(ValueError, match="every"):
        LiveCurves(every=0)
