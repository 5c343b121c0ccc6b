"""The training command line: help, one-line errors, and a quick end-to-end run."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from course_lib import train as cli
from course_lib.data.synthetic import make_nuclei

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    make_nuclei(root, 8, seed=0, size=128)
    return root


def run_cli(args, capsys):
    """``main(args)``; returns (exit code, stdout, stderr)."""
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_help_explains_every_option(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for option in ("PRESET", "--model", "--mode", "--run-dir", "--data", "--resume",
                   "--epochs", "--steps-per-epoch", "--checkpoint-every", "--workers",
                   "--precision", "--jit", "--devices", "--evaluate", "--predict", "--budget",
                   "--augment", "--modality", "--init"):
        assert option in out, option
    assert "resumes" in out and "exit codes" in out


@pytest.mark.parametrize("args, says", [
    (["nuclei", "--model", "unet", "--data", "{tmp}/nowhere"], "does not exist"),
    (["nuclei", "--model", "unet", "--data", "{tmp}"], "holds no nuclei samples"),
    (["voc", "--model", "unet"], "use --model maskrcnn"),
    (["coco", "--model", "maskrcnn"], "needs --data"),
    (["nuclei", "--model", "unet", "--epochs", "0"], "at least 1"),
    (["coco", "--model", "maskrcnn", "--budget", "cpu"], "nuclei and voc presets"),
    (["nuclei", "--model", "maskrcnn", "--augment", "article"], "their own augmentation"),
    (["nuclei", "--model", "unet", "--modality", "histology"], "Mask R-CNN only"),
    (["voc", "--model", "maskrcnn", "--modality", "histology"], "Mask R-CNN only"),
    (["nuclei", "--model", "unet", "--init", "maskrcnn-nuclei-cpu"], "applies to Mask R-CNN"),
])
def test_bad_arguments_give_one_line(args, says, tmp_path, capsys, data_root):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code, _, err = run_cli(args + ["--run-dir", tmp_path / "run"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], err
    assert "Traceback" not in err


def test_unknown_preset_is_refused(tmp_path, capsys):
    code, _, err = run_cli(["cityscapes", "--run-dir", tmp_path], capsys)
    assert code == 2 and "invalid choice: 'cityscapes'" in err


@pytest.mark.slow
def test_end_to_end_quick_unet_loss_falls_and_resume(nuclei, tmp_path, capsys):
    run = tmp_path / "run"
    args = ["nuclei", "--model", "unet", "--mode", "quick", "--data", nuclei, "--run-dir", run,
            "--epochs", "3", "--steps-per-epoch", "2", "--quiet"]
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert f"checkpoints: {run / 'checkpoints'}" in out and str(run / "logs") in out
    with open(run / "logs" / "train.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (run / "final.weights.h5").is_file()
    # the same command again: the run is found, finished, nothing is trained; --predict
    # then writes one label PNG per image, a submission and COCO results
    code, out, err = run_cli(args + ["--predict", nuclei / "stage1_train"], capsys)
    assert code == 0 and "already finished" in out, err
    pred = run / "predictions"
    names = sorted(p.stem for p in (pred / "labels").glob("*.png"))
    assert names == sorted(p.name for p in (nuclei / "stage1_train").iterdir() if p.is_dir())
    assert (pred / "submission.csv").read_text().startswith("ImageId,EncodedPixels")
    assert (pred / "coco_results.json").is_file()
    # the predict command rebuilds the model from the run folder: the same labels
    from course_lib import predict

    again = tmp_path / "again"
    assert predict.main([str(run), str(nuclei / "stage1_train"), str(again), "--quiet"]) == 0
    from course_lib.data.io import read_array

    for name in names:
        np.testing.assert_array_equal(read_array(again / f"{name}.png"),
                                      read_array(pred / "labels" / f"{name}.png"))
    assert (again / "submission.csv").read_text() == (pred / "submission.csv").read_text()
    # a different model in the same folder is refused in one line
    code, _, err = run_cli(["nuclei", "--model", "maskrcnn", "--data", nuclei, "--run-dir", run],
                           capsys)
    assert code == 2 and "choose a new run folder" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_error_from_a_real_process_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "course_lib.train", "nuclei", "--model", "unet",
                           "--data", str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "does not exist" in proc.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_end_to_end_quick_maskrcnn_loss_falls(nuclei, tmp_path, capsys):
    run = tmp_path / "run"
    code, out, err = run_cli(["nuclei", "--model", "maskrcnn", "--mode", "quick", "--data",
                              nuclei, "--run-dir", run, "--epochs", "3", "--steps-per-epoch",
                              "2", "--quiet"], capsys)
    assert code == 0, err
    with open(run / "logs" / "train.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3
    for term in ("rpn_class_loss", "rpn_box_loss", "class_loss", "box_loss", "mask_loss"):
        assert term in rows[0]  # each loss term is logged on its own
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])


# --- the run folder's refusals, in one line (a stand-in recipe: a tiny model, seconds) -------

def standin_recipe(preset, model, mode=None, data=None, workers=1, **overrides):
    """What ``make_recipe`` returns, for the training engine's tiny stand-in model."""
    from training_standins import AddsItsLoss, RegressionBatches

    from course_lib.training import TrainConfig
    from course_lib.training.recipes import Recipe

    config = dataclasses.replace(TrainConfig(learning_rate=0.05, tensorboard=False), **overrides)
    return Recipe("standin", lambda: AddsItsLoss(name="standin"),
                  RegressionBatches(n_batches=3), None, config)


@pytest.fixture
def standin_cli(monkeypatch, capsys):
    """Runs the command line on the stand-in recipe: ``cli(args) -> (code, out, err)``."""
    from course_lib.training import recipes

    monkeypatch.setattr(recipes, "make_recipe", standin_recipe)
    return lambda args: run_cli(["nuclei", "--quiet", *args], capsys)


def train_csv_rows(run):
    with open(run / "logs" / "train.csv") as f:
        return list(csv.DictReader(f))


def test_more_epochs_on_a_finished_run_is_refused_in_one_line(standin_cli, tmp_path):
    run = tmp_path / "run"
    code, _, err = standin_cli(["--run-dir", run, "--epochs", "2"])
    assert code == 0, err
    code, out, err = standin_cli(["--run-dir", run, "--epochs", "2"])
    assert code == 0 and "already finished" in out, err
    code, _, err = standin_cli(["--run-dir", run, "--epochs", "5"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "a run of 2 epochs of the whole dataset, but this one asks for 5 epochs" in lines[0]
    assert "new run folder" in lines[0]
    assert len(train_csv_rows(run)) == 2


def test_a_run_without_a_usable_checkpoint_is_refused_in_one_line(standin_cli, tmp_path):
    run = tmp_path / "run"
    args = ["--run-dir", run, "--epochs", "2"]
    assert standin_cli(args)[0] == 0
    final = (run / "final.weights.h5").read_bytes()
    corrupt = sorted((run / "checkpoints").glob("*.npz"))
    for data in corrupt:
        data.write_bytes(b"\x00" * 10)
    code, _, err = standin_cli(args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for data in corrupt:
        assert str(data) in lines[0]
    assert "new run folder (or delete" in lines[0]
    assert len(train_csv_rows(run)) == 2  # no duplicate rows
    assert (run / "final.weights.h5").read_bytes() == final


# --- bad values and bad folders: one line naming the fault and the fix, exit code 2 ---------

@pytest.mark.parametrize("rate", ["-1", "0", "nan", "inf", "-inf"])
def test_a_learning_rate_that_is_not_positive_and_finite_is_one_line(rate, standin_cli,
                                                                     tmp_path):
    """NaN and inf parse as floats: they were accepted until the loss turned NaN at step 2."""
    code, _, err = standin_cli(["--run-dir", tmp_path / "run", f"--learning-rate={rate}"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "--learning-rate must be a positive finite number" in lines[0]
    assert "--learning-rate 0.001" in lines[0]  # the fix
    assert not (tmp_path / "run").exists()  # refused before anything was built or written


@pytest.mark.parametrize("where", ["run", "run/sub"])
def test_a_run_dir_that_is_a_file_is_one_line(where, standin_cli, tmp_path):
    (tmp_path / "run").write_text("not a folder")
    code, _, err = standin_cli(["--run-dir", tmp_path / where])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert "is a file" in lines[0] and str(tmp_path / "run") in lines[0]


def test_a_read_only_run_dir_is_one_line(standin_cli, tmp_path, monkeypatch):
    """Tests run as root, where a read-only folder is still writable: the refusal is simulated
    at the one place the command probes the folder (the real case is the next test)."""
    def refuse(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(cli, "_probe_write", refuse)
    code, _, err = standin_cli(["--run-dir", tmp_path / "run"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "cannot be written" in lines[0] and "Permission denied" in lines[0]
    assert "choose a folder you can write to" in lines[0]


def test_a_read_only_run_dir_is_one_line_for_real(standin_cli, tmp_path):
    if os.name == "nt" or os.geteuid() == 0:
        pytest.skip("root (or Windows) writes into a read-only folder anyway; the previous "
                    "test simulates the refusal")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = standin_cli(["--run-dir", locked / "run"])
    finally:
        locked.chmod(0o755)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot be written" in err


def test_a_write_failing_mid_run_is_one_line(standin_cli, tmp_path, monkeypatch):
    """The disk fills or the folder turns read-only during training: one line, and the same
    command resumes once that is fixed."""
    from course_lib.training.checkpoints import CheckpointManager

    run = tmp_path / "run"

    def full_disk(self, *args, **kwargs):
        raise OSError(28, "No space left on device", str(self.directory / "ckpt.npz"))

    monkeypatch.setattr(CheckpointManager, "save", full_disk)
    code, _, err = standin_cli(["--run-dir", run, "--epochs", "2"])
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "No space left on device" in lines[0], err
    assert "run the same command to resume" in lines[0]


@pytest.mark.parametrize("content, says", [
    ([{"id": 1, "file_name": "a.png"}], "holds a json list"),
    ({"images": [], "annotations": []}, "lacks the keys ['categories']"),
])
def test_a_coco_json_of_the_wrong_shape_is_one_line(content, says, tmp_path, capsys):
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(content))
    code, _, err = run_cli(["coco", "--data", path, "--run-dir", tmp_path / "run"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0] and str(path) in lines[0]


# --- Ctrl-C: one line naming the last checkpoint, exit code 130, the same command resumes ---

def test_ctrl_c_is_one_line_and_the_same_command_resumes(standin_cli, tmp_path, monkeypatch):
    import keras

    from course_lib import training

    class CtrlCAt(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if int(self.model.optimizer.iterations) == 4:  # epoch 2, after its first batch
                raise KeyboardInterrupt

    real_train = training.train
    monkeypatch.setattr(training, "train",
                        lambda *a, **k: real_train(*a, callbacks=[CtrlCAt()], **k))
    run = tmp_path / "run"
    args = ["--run-dir", run, "--epochs", "2"]
    try:
        code, _, err = standin_cli(args)
    except KeyboardInterrupt:  # not re-raised: it would stop the whole test session
        pytest.fail("Ctrl-C escaped the command as a traceback")
    assert code == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    checkpoint = run / "checkpoints" / "ckpt-00000003.json"  # the end of epoch 1 (3 steps)
    assert f"interrupted: the last checkpoint is {checkpoint}" in lines[0]
    assert "run the same command to resume" in lines[0]
    monkeypatch.setattr(training, "train", real_train)
    code, out, err = standin_cli(args)
    assert code == 0, err
    assert "resuming from ckpt-00000003.json: epoch 2, batch 1, optimizer step 3" in out
    assert len(train_csv_rows(run)) == 2


# --- one bad file after training: --evaluate and --predict skip it, name it, finish ----------

def test_evaluate_and_predict_skip_a_bad_file_and_finish(monkeypatch, capsys, tmp_path):
    from training_standins import AddsItsLoss, RegressionBatches

    from course_lib.training import TrainConfig, recipes

    root = tmp_path / "nuclei"
    dirs = make_nuclei(root, 3, seed=0, size=32)
    bad = dirs[1] / "images" / f"{dirs[1].name}.png"
    bad.write_bytes(b"not an image")
    images = tmp_path / "to_predict"
    images.mkdir()
    for d in dirs:
        (images / f"{d.name}.png").write_bytes((d / "images" / f"{d.name}.png").read_bytes())

    def recipe(preset, model, mode=None, data=None, workers=1, **overrides):
        config = dataclasses.replace(TrainConfig(learning_rate=0.05, tensorboard=False),
                                     **overrides)
        return recipes.Recipe("standin", lambda: AddsItsLoss(name="standin"),
                              RegressionBatches(n_batches=3), None, config,
                              predictor=lambda model: lambda im: np.zeros(im.shape[:2], np.int32),
                              val_samples=dirs)

    monkeypatch.setattr(recipes, "make_recipe", recipe)
    run = tmp_path / "run"
    code, out, err = run_cli(["nuclei", "--model", "unet", "--quiet", "--run-dir", run,
                              "--epochs", "1", "--evaluate", "--predict", images], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    assert (f"DSB score on 2 validation images: 0.0000 (1 sample skipped: {dirs[1].name} "
            "(unreadable_image))") in out
    assert (f"Predictions for 2 images: {run / 'predictions'} (1 image skipped: "
            f"{dirs[1].name} (unreadable_image), not predicted)") in out
    rows = (run / "predictions" / "submission.csv").read_text().splitlines()
    assert rows[0] == "ImageId,EncodedPixels" and {r.split(",")[0] for r in rows[1:]} == {
        d.name for d in dirs if d != dirs[1]}
    # the run folder keeps the scores it printed, the skipped sample named
    kept = json.loads((run / "evaluation.json").read_text())["dsb"]
    assert kept["score"] == 0.0 and set(kept["per_image"]) == {dirs[0].name, dirs[2].name}
    assert [(k["name"], k["reason"]) for k in kept["skipped"]] == [(dirs[1].name,
                                                                     "unreadable_image")]


@pytest.mark.slow
def test_ctrl_c_in_a_real_process_is_one_line_with_exit_code_130(tmp_path):
    """A real SIGINT, delivered mid-epoch through Python's signal handler, in a real process:
    the exit code and stderr are what a shell sees."""
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys, keras
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from test_train_cli import standin_recipe
        from course_lib import train as cli, training
        from course_lib.training import recipes

        class SigintAt4(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.optimizer.iterations) == 4:
                    os.kill(os.getpid(), signal.SIGINT)

        real_train = training.train
        training.train = lambda *a, **k: real_train(*a, callbacks=[SigintAt4()], **k)
        recipes.make_recipe = standin_recipe
        sys.exit(cli.main(["nuclei", "--quiet", "--run-dir", {str(run)!r}, "--epochs", "2"]))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert f"interrupted: the last checkpoint is {run / 'checkpoints' / 'ckpt-00000003.json'}" \
        in last


def test_a_full_mode_recipe_under_a_quick_environment_builds_the_full_model(nuclei,
                                                                           monkeypatch):
    """``mode`` is honoured end to end: asked for full mode, a recipe builds full-mode sizes
    whatever COURSE_MODE says, and the command line passes the mode instead of writing the
    environment."""
    from course_lib.training.recipes import make_recipe

    monkeypatch.setenv("COURSE_MODE", "quick")
    recipe = make_recipe("nuclei", "maskrcnn", "full", nuclei)
    cfg = recipe.extra["model_config"]
    assert (cfg.image_size, cfg.backbone, cfg.max_instances) == (512, "resnet50", 400)
    assert recipe.train_data.batch_size == 8 and recipe.train_data.image_size == 512
    unet = make_recipe("nuclei", "unet", "full", nuclei)
    assert unet.extra["recipe"].tile_size == 256 and unet.train_data.batch_size == 8
    quick = make_recipe("nuclei", "maskrcnn", None, nuclei)      # no mode asked: the env's
    assert quick.extra["model_config"].image_size == 128


def test_the_command_line_leaves_the_environment_alone(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COURSE_MODE", "quick")
    code, _, err = run_cli(["nuclei", "--model", "unet", "--mode", "full", "--data",
                            tmp_path / "nowhere", "--run-dir", tmp_path / "run"], capsys)
    assert code == 2 and "does not exist" in err
    assert os.environ["COURSE_MODE"] == "quick"
