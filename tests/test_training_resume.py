"""Resumable runs: a crash mid-epoch, a NaN loss, a truncated or corrupted checkpoint.

The oracle for a resumed run is the same run without interruption: it must end with the same
weights, and restart at the epoch, batch, optimizer step and learning rate the checkpoint
recorded (the schedule's hand-checked value at that step).
"""

from __future__ import annotations

import logging
import os
import shutil
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
