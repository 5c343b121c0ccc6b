"""Crash-safe training checkpoints: weights, optimizer state and the position in the data.

Taught in notebooks/11_train_nuclei.

A checkpoint is two files in the run's ``checkpoints/`` folder:

- ``ckpt-<step>.npz``: every model variable (weights, BatchNorm statistics, random-seed
  states) and every optimizer variable (step counter, momenta), in the order Keras lists them;
- ``ckpt-<step>.json``: the *manifest*, written last: the data file's name, size and SHA-256,
  the variable names and shapes, and the training state (epoch, next batch, optimizer step,
  stage, learning rate).

Both are written atomically: to a temporary file in the same folder, flushed and ``fsync``-ed,
then renamed over the final name with ``os.replace`` (atomic on POSIX and Windows), and the
folder is synced. A crash can therefore leave a stray temporary file (``<name>.<random>.tmp``,
deleted by :func:`remove_stale_temp_files` when the run starts again), never a half-written
checkpoint under its final name; a data file whose manifest is missing is ignored, and one
whose bytes do not match the manifest's checksum (a disk error, a copy cut short) is refused
with a warning naming it and the previous checkpoint, which is then used. When no checkpoint
is left that verifies, :meth:`CheckpointManager.latest` raises instead of pretending the run
never started.

The files get the permissions of any other file the run writes (``0o666`` less the umask),
not the private ``0o600`` of ``tempfile.mkstemp``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

_NAME = re.compile(r"^ckpt-(\d{8})\.json$")


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used (corrupt, or made by another model).

    Taught in notebooks/11_train_nuclei.
    """


@dataclass
class Checkpoint:
    """One verified checkpoint: its files, training state and the arrays it holds.

    Attributes:
        manifest: path of the ``.json`` manifest.
        data: path of the ``.npz`` data file.
        state: ``epoch`` (0-based epoch to continue in), ``batch`` (next batch of that epoch),
            ``step`` (optimizer steps done), ``stage`` (index of the training stage), ``lr``.
        model_arrays / optimizer_arrays: the values, in Keras' variable order.

    Taught in notebooks/11_train_nuclei.
    """

    manifest: Path
    data: Path
    state: dict
    model_arrays: list = field(default_factory=list, repr=False)
    optimizer_arrays: list = field(default_factory=list, repr=False)
    model_signature: list = field(default_factory=list, repr=False)
    optimizer_signature: list = field(default_factory=list, repr=False)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders; the rename is durable enough there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _create_temp(path: Path) -> tuple[int, Path]:
    """Create and open ``<name>.<random>.tmp`` beside ``path``: ``(file descriptor, its path)``.

    Not ``tempfile.mkstemp``: it makes the file private (mode 0600) and the rename passes that
    on to the checkpoint, so the others sharing a run folder could not read it. ``os.open``
    with mode 0666 lets the umask decide, as it does for every other file the run writes.
    ``O_EXCL`` refuses a name that exists, so two writers never share a temporary file.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f"{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:  # the same random name drawn twice: draw again
            continue


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Delete the ``*.tmp`` files in ``folder`` (not in its subfolders); returns their paths.

    :func:`atomic_write` deletes its temporary file when a write fails, but a process killed
    hard (``SIGKILL``, a power cut) cannot, and nothing ever reads such a file again: without
    this, every killed write would leave one behind for ever. Call it when a run starts, while
    no other process writes into the folder.

    Taught in notebooks/11_train_nuclei.
    """
    removed = sorted(p for p in Path(folder).glob("*.tmp") if p.is_file())
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def atomic_write(path: str | Path, write) -> str:
    """Write a file atomically: ``write(f)`` into a temporary file, fsync, ``os.replace``.

    Args:
        path: the final file name.
        write: callable given the open binary file object.

    Returns:
        The SHA-256 hex digest of the bytes written.

    Taught in notebooks/11_train_nuclei.
    """
    path = Path(path)
    fd, tmp = _create_temp(path)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        digest = sha256_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks.

    Taught in notebooks/11_train_nuclei.
    """
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _signature(variables) -> list[list]:
    return [[v.path, list(v.shape)] for v in variables]


class CheckpointManager:
    """Writes, lists, verifies and prunes the checkpoints of one run folder.

    Args:
        directory: the folder holding the checkpoints (created if missing).
        keep: how many checkpoints to keep (older ones are deleted, manifest first).

    Taught in notebooks/11_train_nuclei.
    """

    def __init__(self, directory: str | Path, keep: int = 3):
        if keep < 2:
            raise ValueError("keep must be >= 2 so a corrupt newest checkpoint has a fallback")
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = int(keep)

    # -- writing ---------------------------------------------------------------------------
    def save(self, model, optimizer, state: dict) -> Path:
        """Write a checkpoint of ``model.variables`` and ``optimizer.variables`` with ``state``.

        ``state`` must hold ``step`` (an int: the file is named after it); other keys are
        stored as given (JSON). Returns the manifest's path.
        """
        step = int(state["step"])
        stem = f"ckpt-{step:08d}"
        data_path = self.directory / f"{stem}.npz"
        model_vars = list(model.variables)
        opt_vars = list(optimizer.variables) if optimizer is not None else []
        arrays = {f"m{i:05d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                  for i, v in enumerate(model_vars)}
        arrays.update({f"o{i:05d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v)
                       for i, v in enumerate(opt_vars)})
        digest = atomic_write(data_path, lambda f: np.savez(f, **arrays))
        manifest = {
            "format": 1,
            "data": data_path.name,
            "bytes": data_path.stat().st_size,
            "sha256": digest,
            "state": {k: (v.item() if isinstance(v, np.generic) else v) for k, v in state.items()},
            "model_variables": _signature(model_vars),
            "optimizer_variables": _signature(opt_vars),
        }
        text = json.dumps(manifest, indent=1).encode()
        manifest_path = self.directory / f"{stem}.json"
        atomic_write(manifest_path, lambda f: f.write(text))  # last: it vouches for the data
        self._prune()
        return manifest_path

    def _prune(self) -> None:
        for manifest in self.manifests()[:-self.keep]:
            data = manifest.with_suffix(".npz")
            manifest.unlink(missing_ok=True)  # first, so no manifest ever points to nothing
            data.unlink(missing_ok=True)

    # -- reading ---------------------------------------------------------------------------
    def manifests(self) -> list[Path]:
        """Manifests present, oldest first (by step in the name)."""
        return sorted(p for p in self.directory.glob("ckpt-*.json") if _NAME.match(p.name))

    def verify(self, manifest_path: Path) -> Checkpoint:
        """Read and check one checkpoint; raises :class:`CheckpointError` saying what is wrong."""
        try:
            manifest = json.loads(Path(manifest_path).read_text())
            data_path = Path(manifest_path).parent / manifest["data"]
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"manifest {manifest_path} is unreadable ({err})") from err
        if not data_path.is_file():
            raise CheckpointError(f"{data_path} is missing")
        size = data_path.stat().st_size
        if size != manifest["bytes"]:
            raise CheckpointError(f"{data_path} has {size} bytes, its manifest says "
                                  f"{manifest['bytes']} (truncated?)")
        if sha256_file(data_path) != manifest["sha256"]:
            raise CheckpointError(f"{data_path} does not match the SHA-256 in {manifest_path}")
        with np.load(data_path) as npz:
            m = [npz[f"m{i:05d}"] for i in range(len(manifest["model_variables"]))]
            o = [npz[f"o{i:05d}"] for i in range(len(manifest["optimizer_variables"]))]
        return Checkpoint(Path(manifest_path), data_path, manifest["state"], m, o,
                          manifest["model_variables"], manifest["optimizer_variables"])

    def latest(self) -> Checkpoint | None:
        """The newest checkpoint that verifies; a bad one is reported and the previous one used.

        Returns ``None`` when the folder holds no checkpoint at all (a run that has not
        written one yet).

        Raises:
            CheckpointError: the folder holds checkpoints but none of them verifies; the
                message names each one and what is wrong with it. Returning ``None`` would
                make the run start over from scratch as if it were new, silently.
        """
        bad: list[tuple[Path, str]] = []
        for manifest in reversed(self.manifests()):
            try:
                ckpt = self.verify(manifest)
            except CheckpointError as err:
                bad.append((manifest, str(err)))
                continue
            for path, why in bad:
                log.warning("checkpoint %s is unusable (%s); using the previous one, %s",
                            path.with_suffix(".npz"), why, ckpt.data)
            return ckpt
        if bad:
            reasons = "; ".join(why for _, why in reversed(bad))  # oldest first
            raise CheckpointError(f"none of the {len(bad)} checkpoints in {self.directory} is "
                                  f"usable: {reasons}")
        return None


def _assign(variables, arrays, signature, what: str, *, source: Path) -> None:
    if len(variables) != len(arrays):
        raise CheckpointError(
            f"{source} holds {len(arrays)} {what} variables but the {what} has "
            f"{len(variables)}: it was written by another model or training stage. Use a new "
            "run folder, or the model that made this one.")
    for v, a, (name, shape) in zip(variables, arrays, signature, strict=True):
        if tuple(v.shape) != tuple(a.shape):
            raise CheckpointError(
                f"{source}: variable {name} has shape {tuple(shape)}, the {what}'s {v.path} has "
                f"{tuple(v.shape)}: it was written by another model. Use a new run folder.")
    for v, a in zip(variables, arrays, strict=True):
        v.assign(a)


def restore_model(model, ckpt: Checkpoint) -> None:
    """Load a checkpoint's model variables into ``model`` (same architecture, checked).

    Taught in notebooks/11_train_nuclei.
    """
    _assign(list(model.variables), ckpt.model_arrays, ckpt.model_signature, "model",
            source=ckpt.data)


def restore_optimizer(optimizer, trainable_variables, ckpt: Checkpoint) -> None:
    """Build ``optimizer`` for ``trainable_variables`` and load its state from ``ckpt``.

    Taught in notebooks/11_train_nuclei.
    """
    if not optimizer.built:
        optimizer.build(trainable_variables)
    _assign(list(optimizer.variables), ckpt.optimizer_arrays, ckpt.optimizer_signature,
            "optimizer", source=ckpt.data)
