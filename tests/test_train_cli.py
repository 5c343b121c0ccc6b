"""The training command line: help, one-line errors, and a quick end-to-end run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

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
                   "--precision", "--jit", "--devices", "--evaluate", "--predict"):
        assert option in out, option
    assert "resumes" in out and "exit codes" in out


@pytest.mark.parametrize("args, says", [
    (["nuclei", "--model", "unet", "--data", "{tmp}/nowhere"], "does not exist"),
    (["nuclei", "--model", "unet", "--data", "{tmp}"], "holds no nuclei samples"),
    (["voc", "--model", "unet"], "use --model maskrcnn"),
    (["coco", "--model", "maskrcnn"], "needs --data"),
    (["nuclei", "--model", "unet", "--epochs", "0"], "at least 1"),
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
