"""Chapter 11's library: Otsu baseline, stratified split, the experiment table, its plots."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from skimage import draw

from course_lib.data import nuclei
from course_lib.data.synthetic.nuclei import make_nuclei
from course_lib.experiments import nuclei as X
from course_lib.metrics import dsb_average_precision
from course_lib.models import classical
from course_lib.models.classical import otsu_foreground, otsu_instances
from course_lib.ops.masks import masks_to_labels
from course_lib.viz import results as R


def _two_touching_disks(bright_on_dark: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Two radius-9 disks whose centres are 16 px apart (they touch), on a 48×64 image."""
    labels = np.zeros((48, 64), np.int32)
    for k, cx in enumerate((22, 38), start=1):
        rr, cc = draw.disk((24, cx), 9, shape=labels.shape)
        labels[rr, cc] = np.where(labels[rr, cc] == 0, k, labels[rr, cc])
    grey = np.where(labels > 0, 200, 30).astype(np.uint8)
    if not bright_on_dark:
        grey = 255 - grey
    return np.stack([grey] * 3, axis=-1), labels


# --- the classical baseline ----------------------------------------------------------------

def test_otsu_threshold_is_the_brute_force_maximum_of_between_class_variance():
    rng = np.random.default_rng(0)
    grey = np.clip(np.concatenate([rng.normal(0.25, 0.05, 3000), rng.normal(0.7, 0.1, 1000)]),
                   0, 1).reshape(40, 100)
    image = (np.stack([grey] * 3, -1) * 255).round().astype(np.uint8)
    _, t, _ = otsu_foreground(image)
    g = image[..., 0].astype(float).ravel() / 255      # rgb2gray of a grey image is the grey

    def between(c):       # w0 · w1 · (mu0 - mu1)² of the split g <= c | g > c
        return (g <= c).mean() * (g > c).mean() * (g[g <= c].mean() - g[g > c].mean()) ** 2

    candidates = np.unique(g)[:-1]
    best = max(between(c) for c in candidates)
    # scikit-image bins the histogram (256 bins over the image's range), so its split may sit
    # one grey level off the exact maximum, at a variance within 0.1 % of it
    assert between(t) >= 0.999 * best
    assert abs(t - candidates[int(np.argmax([between(c) for c in candidates]))]) <= 2 / 255


@pytest.mark.parametrize("bright_on_dark", [True, False])
def test_otsu_takes_the_smaller_class_as_nuclei_and_splits_touching_ones(bright_on_dark):
    image, labels = _two_touching_disks(bright_on_dark)
    mask, _, dark = otsu_foreground(image)
    assert dark is (not bright_on_dark)
    np.testing.assert_array_equal(mask, labels > 0)
    found = otsu_instances(image)
    assert len(np.unique(found)) - 1 == 2                      # the watershed split the pair
    assert dsb_average_precision(labels, found) >= 0.9


def test_otsu_fills_holes_and_drops_specks_and_survives_a_flat_image():
    image, labels = _two_touching_disks()
    image[24, 22] = 30                                         # a hole in the first nucleus
    image[2, 2] = 200                                          # a one-pixel speck
    found = otsu_instances(image, min_size=20)
    assert found[24, 22] > 0 and found[2, 2] == 0
    flat = np.full((16, 16, 3), 90, np.uint8)
    assert otsu_instances(flat).max() == 0


def _write_dsb_sample(root: Path, sample_id: str, image: np.ndarray, labels: np.ndarray):
    """One DSB-layout folder: ``images/<id>.png`` and one mask PNG per label."""
    from PIL import Image

    (root / sample_id / "images").mkdir(parents=True)
    (root / sample_id / "masks").mkdir()
    Image.fromarray(image).save(root / sample_id / "images" / f"{sample_id}.png")
    for k in range(1, labels.max() + 1):
        Image.fromarray(np.where(labels == k, 255, 0).astype(np.uint8)).save(
            root / sample_id / "masks" / f"m{k}.png")


def test_the_baseline_command_scores_a_folder_per_modality(tmp_path, capsys):
    # Oracle: two hand-made images the baseline segments (the test above: >= 0.9 each), one
    # bright on dark (fluorescence by the colour rule), one dark on bright (bright-field), and
    # a third whose truth is a nucleus where the image shows nothing, so it scores exactly 0.
    bright, labels = _two_touching_disks(True)
    dark, _ = _two_touching_disks(False)
    empty_truth = np.zeros_like(labels)
    empty_truth[5:15, 5:15] = 1
    _write_dsb_sample(tmp_path, "a_fluo", bright, labels)
    _write_dsb_sample(tmp_path, "b_bright", dark, labels)
    _write_dsb_sample(tmp_path, "c_missed", bright, empty_truth)
    one = dsb_average_precision(labels, otsu_instances(bright))
    scores = classical.main([str(tmp_path)])
    assert scores["fluorescence"] == pytest.approx([one, 0.0])
    assert scores["brightfield"] == pytest.approx([dsb_average_precision(labels,
                                                                         otsu_instances(dark))])
    assert len(scores["all"]) == 3 and min(scores["all"][:2]) >= 0.9
    out = capsys.readouterr().out
    assert f"fluorescence: DSB score {one / 2:.3f} on 2 images" in out
    assert "  all: DSB score" in out
    assert classical.score_folder(tmp_path, every=2)["all"] == pytest.approx([one, 0.0])
    with pytest.raises(ValueError, match="every=0"):
        classical.score_folder(tmp_path, every=0)


# --- modality and the stratified split -----------------------------------------------------

@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    dirs = make_nuclei(root, 12, seed=3, size=96)
    truth = {m["id"]: m["modality"] for m in json.loads((root / "manifest.json").read_text())["images"]}
    return sorted(dirs), truth


def test_guess_modality_agrees_with_the_synthetic_sets_recorded_truth(synthetic_set):
    dirs, truth = synthetic_set
    guessed = {d.name: nuclei.guess_modality(nuclei.load_sample(d)[0]) for d in dirs}
    assert guessed == truth
    assert set(truth.values()) == set(nuclei.MODALITIES)       # the first three: one of each


def test_stratified_split_holds_out_each_modalitys_share():
    folders = [Path(f"/x/s{i:02d}") for i in range(20)]
    kind = {f.name: ("a" if i < 12 else "b" if i < 18 else "c") for i, f in enumerate(folders)}
    train, val, found = nuclei.stratified_split(folders, 0.25, seed=1,
                                                modality=lambda f: kind[f.name])
    per = {m: sum(1 for v in val if kind[v.name] == m) for m in "abc"}
    assert per == {"a": 3, "b": 2, "c": 1}      # round(0.25·12), round(0.25·6)=2, min 1 of 2
    assert found == kind
    assert sorted(train + val) == sorted(folders) and not set(train) & set(val)
    again = nuclei.stratified_split(folders, 0.25, seed=1, modality=lambda f: kind[f.name])
    assert again[:2] == (train, val)
    other = nuclei.stratified_split(folders, 0.25, seed=2, modality=lambda f: kind[f.name])
    assert other[1] != val                                     # the seed matters
    with pytest.raises(ValueError, match="val_fraction"):
        nuclei.stratified_split(folders, 1.0)


# --- the experiment table ------------------------------------------------------------------

def test_rows_follow_the_report_and_quick_mode_says_why_it_skips(synthetic_set, tmp_path):
    rows = X.nuclei_report_rows()
    assert rows[0].model == "otsu"
    assert {r.model for r in rows} == {"otsu", "unet", "maskrcnn"}
    # the report's figures stand only beside the rows that change what the report changed:
    # 0.380 is ResNet-101 (anchors 4-256, tuned RoI/RPN), so only our ResNet-101 row gets it
    by_label = {r.label: r.report for r in rows}
    assert [r.report for r in rows if r.model == "maskrcnn"] == ["0.285", "—", "—", "0.380†"]
    assert rows[-1].backbone == "resnet101"
    assert by_label["U-Net, no flips"] == "0.245" and by_label["U-Net, flips"].startswith("0.243")
    assert by_label["U-Net, half-size input tiles"] == "—"     # the report resized images
    dirs, _ = synthetic_set
    ex = X.NucleiExperiments(dirs[:8], dirs[8:], mode="quick", run_root=tmp_path)
    skipped = ex.run(rows[-1], print_fn=lambda s: None)
    assert skipped.skipped.startswith("full mode only") and np.isnan(skipped.score)
    assert "skipped" in ex.table()


def test_otsu_row_scores_what_the_metric_gives_image_by_image(synthetic_set, tmp_path):
    dirs, _ = synthetic_set
    ex = X.NucleiExperiments(dirs[:8], dirs[8:], mode="quick", run_root=tmp_path)
    result = ex.run(X.nuclei_report_rows()[0], print_fn=lambda s: None)
    by_hand = {}
    for d in dirs[8:][:ex.budget.max_val_images]:
        image, masks = nuclei.load_sample(d)
        by_hand[d.name] = dsb_average_precision(masks_to_labels(masks), otsu_instances(image))
    assert result.per_image == pytest.approx(by_hand)
    assert result.score == pytest.approx(np.mean(list(by_hand.values())))
    assert ex.best() is result


def test_unet_rows_share_one_model_and_one_compiled_step(synthetic_set, tmp_path):
    dirs, _ = synthetic_set
    budget = X.Budget(unet_epochs=2, unet_steps=1, maskrcnn_epochs=1, maskrcnn_steps=1,
                      max_val_images=1)
    ex = X.NucleiExperiments(dirs[:8], dirs[8:], mode="quick", budget=budget,
                             run_root=tmp_path)
    flips, _, no_flips = X.nuclei_report_rows()[1:4]
    first = ex.run(flips)
    second = ex.run(no_flips)
    assert len(ex._models) == 1                                # built once ...
    state = json.loads((second.run_dir / "run.json").read_text())
    assert state["model"] == "unet-nuclei"
    assert len(first.history["loss"]) == len(second.history["loss"]) == 2
    assert first.history["loss"] != second.history["loss"]     # ... trained on other data
    assert set(second.predictions) == set(second.per_image)


def test_rows_resume_after_a_restart_and_a_changed_row_starts_afresh(synthetic_set, tmp_path):
    """A new NucleiExperiments on the same run folder (what a kernel restart gives) finds a
    finished row's run instead of training again: same weights, so the same scores, and the
    loss curve read back from logs/train.csv. Another seed trains in a folder of its own. A
    row's folder reads in as a run made elsewhere (add_run) and scores the same."""
    dirs, _ = synthetic_set
    budget = X.Budget(unet_epochs=2, unet_steps=1, maskrcnn_epochs=1, maskrcnn_steps=1,
                      max_val_images=2)
    row = X.nuclei_report_rows()[1]
    first = X.NucleiExperiments(dirs[:8], dirs[8:], mode="quick", budget=budget,
                                run_root=tmp_path).run(row, print_fn=lambda s: None)
    stamp = (first.run_dir / "final.weights.h5").stat().st_mtime_ns
    again = X.NucleiExperiments(dirs[:8], dirs[8:], mode="quick", budget=budget,
                                run_root=tmp_path)
    second = again.run(row, print_fn=lambda s: None)
    assert second.run_dir == first.run_dir
    assert (first.run_dir / "final.weights.h5").stat().st_mtime_ns == stamp   # not retrained
    assert second.per_image == pytest.approx(first.per_image)
    assert second.history["loss"] == pytest.approx(first.history["loss"]) and \
        len(second.history["loss"]) == 2
    other = X.NucleiExperiments(dirs[:8], dirs[8:], mode="quick", budget=budget,
                                run_root=tmp_path, seed=1).run(row, print_fn=lambda s: None)
    assert other.run_dir != first.run_dir and other.run_dir.parent == tmp_path
    read_in = again.add_run("the same run, read in", first.run_dir, print_fn=lambda s: None)
    assert read_in.row.model == "unet" and read_in.per_image == pytest.approx(first.per_image)
    assert read_in.history["loss"] == pytest.approx(first.history["loss"])


def test_read_history_counts_an_epoch_logged_twice_once(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    # session 1 logged epochs 0 and 1 and was killed before epoch 1's checkpoint; session 2
    # redid epoch 1 and went on: epoch 1's later row is the one that counts
    (logs / "train.csv").write_text("epoch,loss,val_loss\n0,2.0,2.5\n1,1.5,2.0\n"
                                    "1,1.4,1.9\n2,1.0,NA\n")
    from course_lib.training.history import read_history

    history = read_history(tmp_path)
    assert history["loss"] == [2.0, 1.4, 1.0]
    np.testing.assert_array_equal(history["val_loss"], [2.5, 1.9, np.nan])   # one per epoch
    assert read_history(tmp_path / "nothing here") == {}


# --- the plots return what they drew --------------------------------------------------------

def test_result_plots_draw_the_results_numbers():
    rows = X.nuclei_report_rows()
    a = X.RowResult(rows[0], 0.5, {"i1": 0.4, "i2": 0.6, "i3": 0.5})
    b = X.RowResult(rows[1], 0.2, {"i1": 0.1, "i2": 0.3, "i3": 0.2}, {"loss": [1.0, 0.5]})
    c = X.RowResult(rows[-1], skipped="full mode only")
    modality = {"i1": "fluorescence", "i2": "fluorescence", "i3": "histology"}
    fig, axes = plt.subplots(1, 4)
    assert R.plot_scores([a, b, c], ax=axes[0]) == {rows[0].label: 0.5, rows[1].label: 0.2}
    drawn = R.plot_per_modality([a, b], modality, ax=axes[1])
    assert drawn[rows[0].label] == {"fluorescence": pytest.approx(0.5), "histology": 0.5}
    assert drawn[rows[1].label]["fluorescence"] == pytest.approx(0.2)
    points = R.plot_score_vs_count([a], {"i1": 3, "i2": 10, "i3": 1}, ax=axes[2])
    np.testing.assert_allclose(points[rows[0].label], [[3, 0.4], [10, 0.6], [1, 0.5]])
    assert R.plot_losses([a, b], ax=axes[3], model="unet") == {rows[1].label: [1.0, 0.5]}
    plt.close(fig)


def test_capped_validation_takes_each_modality_in_turn():
    folders = [Path(f"/v/{c}{i}") for c in "abc" for i in range(3)]
    kind = {f.name: f.name[0] for f in folders}
    budget = X.Budget(1, 1, 1, 1, max_val_images=4)
    ex = X.NucleiExperiments(folders[:1], folders, mode="quick", budget=budget, modality=kind)
    assert [f.name for f in ex.val_dirs] == ["a0", "a1", "b0", "c0"]
    assert X.NucleiExperiments(folders[:1], folders, mode="quick",
                               budget=budget).val_dirs == folders[:4]
