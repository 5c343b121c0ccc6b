"""Resumable runs: a crash mid-epoch, a NaN loss, a truncated or corrupted checkpoint, a kill
during a write, and the run folder refusing what it cannot honour.

The oracle for a resumed run is the same run without interruption: it must end with the same
weights, and restart at the epoch, batch, optimizer step and learning rate the checkpoint
recorded (the schedule's hand-checked value at that step).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
from training_standins import AddsItsLoss, RegressionBatches

from course_lib.training import (
    CheckpointManager,
    NonFiniteLossError,
    RunFolderError,
    TrainConfig,
    restore_model,
    train,
)
from course_lib.training.checkpoints import atomic_write

ROOT = Path(__file__).resolve().parent.parent

# 2 epochs of 6 batches; a checkpoint every 2 steps; the rate warms up over 3 steps and drops
# at half the run (step 6), so a wrong step after resuming would show in the rate too.
CFG = TrainConfig(epochs=2, learning_rate=0.05, warmup_steps=3, lr_drops=(0.5,),
                  checkpoint_every=2, tensorboard=False, verbose=0, seed=3)


def build():
    return AddsItsLoss(name="standin")


def weights(model):
    return [np.array(v) for v in model.weights]


class CrashAt(keras.callbacks.Callback):
    """Raise at the end of optimizer step ``step``, like a job killed mid-epoch."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            raise KeyboardInterrupt(f"simulated kill at step {self.step}")


class Probe(keras.callbacks.Callback):
    """Records the optimizer step, rate and epoch when the resumed run starts."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_train_begin(self, logs=None):
        self.seen.setdefault("step", int(self.model.optimizer.iterations))
        self.seen.setdefault("lr", float(np.asarray(self.model.optimizer.learning_rate)))

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.setdefault("epoch", epoch)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    result = train(build, RegressionBatches(), tmp_path_factory.mktemp("a") / "run", CFG)
    return weights(result.model), result


def test_crash_mid_epoch_resumes_where_it_stopped(tmp_path, uninterrupted):
    ref_weights, ref = uninterrupted
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build, RegressionBatches(), run, CFG, callbacks=[CrashAt(9)])
    ckpt = CheckpointManager(run / "checkpoints").latest()
    # step 8 = epoch 2 (index 1), batches 0 and 1 done: continue at batch 2
    assert (ckpt.state["epoch"], ckpt.state["batch"], ckpt.state["step"]) == (1, 2, 8)
    assert ckpt.state["lr"] == pytest.approx(0.005)  # 0.05 after warm-up, ÷10 from step 6

    data, probe = RegressionBatches(), Probe()
    result = train(build, data, run, CFG, callbacks=[probe])
    assert result.resumed_from == ckpt.manifest
    assert probe.seen == {"step": 8, "lr": pytest.approx(0.005), "epoch": 1}
    # calls[0] builds the subclassed model; training then reads epoch 1 from batch 2 on
    assert data.calls[1] == (1, 2)
    assert set(data.calls[1:]) == {(1, b) for b in range(2, 6)}
    assert result.step == ref.step == 12
    for got, want in zip(weights(result.model), ref_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_process_killed_hard_resumes(tmp_path, uninterrupted):
    """A subprocess ends with os._exit at step 7 (no cleanup, no finally blocks)."""
    ref_weights, _ = uninterrupted
    run = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, sys, keras
        sys.path.insert(0, {str(ROOT / 'tests')!r})
        from training_standins import AddsItsLoss, RegressionBatches
        from course_lib.training import TrainConfig, train
        class Kill(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if int(self.model.optimizer.iterations) == 7:
                    os._exit(3)
        cfg = TrainConfig(epochs=2, learning_rate=0.05, warmup_steps=3, lr_drops=(0.5,),
                          checkpoint_every=2, tensorboard=False, verbose=0, seed=3)
        train(lambda: AddsItsLoss(name="standin"), RegressionBatches(), {str(run)!r}, cfg,
              callbacks=[Kill()])
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    state = CheckpointManager(run / "checkpoints").latest().state
    assert (state["epoch"], state["batch"], state["step"]) == (1, 0, 6)  # the epoch-end one
    result = train(build, RegressionBatches(), run, CFG)
    for got, want in zip(weights(result.model), ref_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_nan_loss_stops_naming_step_and_term(tmp_path):
    run = tmp_path / "run"
    # batch index 3 of epoch 1 is optimizer step 6 + 4 = 10
    with pytest.raises(NonFiniteLossError) as info:
        train(build, RegressionBatches(nan_at=(1, 3)), run, CFG)
    err = info.value
    assert err.step == 10
    assert set(err.terms) == {"main_loss"}  # the term, not just the total
    assert "optimizer step 10" in str(err) and "main_loss=nan" in str(err)
    assert err.checkpoint == run / "checkpoints" / "ckpt-00000008.json"
    assert str(err.checkpoint) in str(err)
    # the last good checkpoint loads into a fresh model and holds finite weights
    ckpt = CheckpointManager(run / "checkpoints").latest()
    assert ckpt.manifest == err.checkpoint
    model = build()
    model(RegressionBatches()[0])
    restore_model(model, ckpt)
    assert all(np.isfinite(w).all() for w in weights(model))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("finished") / "run"
    train(build, RegressionBatches(), run, CFG)
    return run


@pytest.fixture
def two_checkpoints(finished_run, tmp_path):
    """A private copy of a finished run's checkpoints: (manager, manifests oldest first)."""
    shutil.copytree(finished_run, tmp_path / "run")
    manager = CheckpointManager(tmp_path / "run" / "checkpoints")
    return manager, manager.manifests()


def test_truncated_checkpoint_falls_back_to_previous(two_checkpoints, caplog):
    manager, manifests = two_checkpoints
    newest, previous = manifests[-1].with_suffix(".npz"), manifests[-2].with_suffix(".npz")
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2])  # a copy cut short
    with caplog.at_level(logging.WARNING):
        ckpt = manager.latest()
    assert ckpt.data == previous
    assert str(newest) in caplog.text and str(previous) in caplog.text
    assert "truncated" in caplog.text


def test_flipped_byte_is_caught_by_the_checksum(two_checkpoints, caplog):
    manager, manifests = two_checkpoints
    newest = manifests[-1].with_suffix(".npz")
    data = bytearray(newest.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, different bytes
    newest.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        ckpt = manager.latest()
    assert ckpt.manifest == manifests[-2]
    assert "SHA-256" in caplog.text


def test_data_without_manifest_is_ignored(two_checkpoints):
    manager, manifests = two_checkpoints
    manifests[-1].unlink()  # a crash between writing the data and its manifest
    assert manager.latest().manifest == manifests[-2]


def test_resume_from_a_truncated_newest_checkpoint(tmp_path, uninterrupted):
    """End to end: the newest checkpoint is cut short; the run resumes from the one before
    and still ends with the uninterrupted run's weights."""
    ref_weights, _ = uninterrupted
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build, RegressionBatches(), run, CFG, callbacks=[CrashAt(11)])
    manager = CheckpointManager(run / "checkpoints")
    newest = manager.manifests()[-1]
    assert newest.name == "ckpt-00000010.json"
    newest.with_suffix(".npz").write_bytes(b"\x00" * 10)
    result = train(build, RegressionBatches(), run, CFG)
    assert result.resumed_from.name == "ckpt-00000008.json"
    for got, want in zip(weights(result.model), ref_weights, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, lambda f: f.write(b"old"))

    def broken(f):
        f.write(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, broken)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]  # no temp file left


def test_old_checkpoints_are_pruned(two_checkpoints):
    manager, manifests = two_checkpoints
    assert len(manifests) == 3  # keep_checkpoints
    assert len(list(manager.directory.glob("*.npz"))) == 3


# --- kills anywhere in a longer run: the resumed run must be the uninterrupted one, bit for bit

# 3 epochs of 4 batches (of the dataset's 6) and a checkpoint after every step, like
# `--epochs 3 --steps-per-epoch 4 --checkpoint-every 1`: a kill can land mid-epoch with whole
# epochs still to come, or exactly on an epoch's end.
CFG3 = TrainConfig(epochs=3, steps_per_epoch=4, learning_rate=0.05, warmup_steps=3,
                   lr_drops=(0.5,), checkpoint_every=1, tensorboard=False, verbose=0, seed=3)


@pytest.fixture(scope="module")
def uninterrupted3(tmp_path_factory):
    result = train(build, RegressionBatches(), tmp_path_factory.mktemp("u3") / "run", CFG3)
    return weights(result.model)


class KillBeforeStep(keras.callbacks.Callback):
    """Raise when step ``step + 1`` is about to start: after every checkpoint of step ``step``,
    the epoch-end one included, like a job killed between two steps."""

    def __init__(self, step):
        super().__init__()
        self.step = step

    def on_train_batch_begin(self, batch, logs=None):
        if int(self.model.optimizer.iterations) == self.step:
            raise KeyboardInterrupt(f"simulated kill after step {self.step}")


def assert_same_weights(model, ref_weights):
    """Exactly equal: a resumed run on the CPU repeats the uninterrupted run's arithmetic."""
    for got, want in zip(weights(model), ref_weights, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kill_at, resume_at", [
    (2, (0, 2)),    # mid-epoch, two whole epochs still to come
    (4, (1, 0)),    # between two epochs (after the epoch-end checkpoint)
    (6, (1, 2)),    # mid-epoch in the middle epoch (checkpoint 6 of the bug report)
])
def test_resume_after_a_kill_is_bit_identical(kill_at, resume_at, tmp_path, uninterrupted3):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build, RegressionBatches(), run, CFG3, callbacks=[KillBeforeStep(kill_at)])
    state = CheckpointManager(run / "checkpoints").latest().state
    assert (state["epoch"], state["batch"], state["step"]) == (*resume_at, kill_at)
    result = train(build, RegressionBatches(), run, CFG3)
    assert result.step == 12
    assert_same_weights(result.model, uninterrupted3)


def test_leftovers_of_a_killed_checkpoint_write_are_removed_and_resume_is_exact(
        tmp_path, uninterrupted3):
    """A kill while checkpoint 7 was being written leaves its temporary files and no
    checkpoint 7: the next start deletes them, says so, and resumes exactly from 6."""
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(build, RegressionBatches(), run, CFG3, callbacks=[KillBeforeStep(6)])
    ckpts = run / "checkpoints"
    half = (ckpts / "ckpt-00000006.npz").read_bytes()[:500]
    (ckpts / "ckpt-00000007.npz.3f9a01bc.tmp").write_bytes(half)  # what atomic_write leaves
    (ckpts / "ckpt-00000007.json.77e0d2aa.tmp").write_bytes(b'{"format": 1, "da')
    said = []
    result = train(build, RegressionBatches(), run, CFG3, print_fn=said.append)
    assert result.resumed_from.name == "ckpt-00000006.json"
    assert not list(run.rglob("*.tmp"))
    removed = [line for line in said if "temporary file" in line]
    assert len(removed) == 1 and "removed 2" in removed[0], said
    assert "ckpt-00000007.npz.3f9a01bc.tmp" in removed[0]
    assert_same_weights(result.model, uninterrupted3)


def test_files_of_a_run_follow_the_umask(tmp_path):
    """Not mkstemp's private 0600: a run folder shared with a group stays readable."""
    if os.name == "nt":
        pytest.skip("POSIX permissions")
    for umask in (0o022, 0o027, 0o002):
        old = os.umask(umask)
        try:
            target = tmp_path / f"f{umask:o}.bin"
            atomic_write(target, lambda f: f.write(b"x"))
        finally:
            os.umask(old)
        assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask, oct(umask)


def test_checkpoints_of_a_run_have_the_folders_permissions(finished_run):
    if os.name == "nt":
        pytest.skip("POSIX permissions")
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode)
             for p in (finished_run / "checkpoints").iterdir()}
    assert set(modes.values()) == {0o666 & ~umask}, modes


def test_a_run_whose_checkpoints_are_all_unusable_is_refused(two_checkpoints):
    """Starting over would append duplicate rows to train.csv and replace final.weights.h5."""
    manager, manifests = two_checkpoints
    run = manager.directory.parent
    for manifest in manifests:
        data = manifest.with_suffix(".npz")
        data.write_bytes(data.read_bytes()[:100])  # every one cut short
    csv_before = (run / "logs" / "train.csv").read_bytes()
    final_before = (run / "final.weights.h5").read_bytes()
    with pytest.raises(RunFolderError) as info:
        train(build, RegressionBatches(), run, CFG)
    message = str(info.value)
    for manifest in manifests:
        assert str(manifest.with_suffix(".npz")) in message
    assert "new run folder" in message and "\n" not in message
    assert (run / "logs" / "train.csv").read_bytes() == csv_before
    assert (run / "final.weights.h5").read_bytes() == final_before


def test_killed_while_writing_the_final_weights(two_checkpoints):
    """The finished checkpoint is written before final.weights.h5: a kill between the two
    leaves a finished run without its weights file, which the next start writes."""
    manager, _ = two_checkpoints
    run = manager.directory.parent
    (run / "final.weights.h5").unlink()
    (run / "final.tmp.weights.h5").write_bytes(b"\x89HDF half")
    said = []
    result = train(build, RegressionBatches(), run, CFG, print_fn=said.append)
    assert result.stopped == "already_finished"
    assert not (run / "final.tmp.weights.h5").exists()
    assert any("wrote the missing final.weights.h5" in line for line in said), said
    model = build()
    model(RegressionBatches()[0])
    model.load_weights(run / "final.weights.h5")
    assert_same_weights(model, weights(result.model))


def test_resuming_with_another_length_is_refused(finished_run, tmp_path):
    """A finished 2-epoch run asked for 3: refused (not "already finished"), nothing changes."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    longer = dataclasses.replace(CFG, epochs=3)
    with pytest.raises(RunFolderError, match=r"a run of 2 epochs of the whole dataset, but "
                                             r"this one asks for 3 epochs of the whole dataset"):
        train(build, RegressionBatches(), run, longer)
    assert CheckpointManager(run / "checkpoints").latest().state["epoch"] == 2
    with pytest.raises(RunFolderError, match="new run folder"):
        train(build, RegressionBatches(), run, dataclasses.replace(CFG, steps_per_epoch=4))
