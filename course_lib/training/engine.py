"""The training loop: Keras ``fit`` with staged training, resumable checkpoints and logs.

Taught in notebooks/11_train_nuclei.

:func:`train` takes a Keras model (or a function that builds one), a ``PyDataset`` and a run
folder, and trains through ``model.fit``: Keras does the stepping, progress bars, metrics and
(on several devices) the distribution; this module adds what a long run needs around it:

- an optimizer from :class:`TrainConfig` (SGD with momentum 0.9 and decoupled weight decay, or
  AdamW), gradient clipping by norm, and the warm-up + step schedule of the paper
  (:class:`~course_lib.training.schedules.WarmupStepSchedule`) driven by the optimizer's step;
- *stages*: e.g. the heads alone first, then every layer (:func:`set_trainable` by layer-name
  patterns; normalisation layers frozen or trained as the stage says);
- checkpoints every N steps and every epoch (:mod:`~course_lib.training.checkpoints`), and a
  resume that continues at the same epoch, batch, optimizer step and learning rate;
- a guard that stops at the first NaN/inf loss naming the step and the loss term;
- early stopping, a CSV log and TensorBoard logs in the run folder.

Run folder layout::

    run.json              what made the run (model name and variable signature, config)
    checkpoints/          ckpt-<step>.npz + ckpt-<step>.json (the newest few)
    logs/train.csv        one row per epoch (losses, lr, validation losses)
    logs/tensorboard/     TensorBoard event files (``tensorboard --logdir RUN/logs``)
    final.weights.h5      the trained weights (``model.load_weights``)

A run's length (epochs per stage, steps per epoch) is fixed when it starts: its learning-rate
schedule spans the whole run, so resuming with another length is refused, and so is a folder
whose checkpoints are all unusable (starting over there would mix two runs' logs). Temporary
files that a killed write left behind are deleted when the run starts again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import re
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import ops

from course_lib.training.callbacks import (
    LearningRateLogger,
    ModelCheckpointer,
    NonFiniteLossGuard,
    TrainingPosition,
)
from course_lib.training.checkpoints import (
    CheckpointError,
    CheckpointManager,
    remove_stale_temp_files,
    restore_model,
    restore_optimizer,
)
from course_lib.training.data import EpochView
from course_lib.training.distribute import DataParallel
from course_lib.training.schedules import WarmupStepSchedule

log = logging.getLogger(__name__)

#: Normalisation layers: frozen (inference statistics, fixed scale and shift) unless a stage
#: trains them. Detection fine-tuning keeps BatchNorm frozen: its batches are too small for
#: good statistics.
NORM_LAYERS = (keras.layers.BatchNormalization, keras.layers.GroupNormalization,
               keras.layers.LayerNormalization)


class RunFolderError(ValueError):
    """The run folder cannot be used for this run: another model's run, no run to resume, a run
    of another length, or a run none of whose checkpoints is usable.

    Taught in notebooks/11_train_nuclei.
    """


@dataclass(frozen=True)
class Stage:
    """One stage of training: which layers learn, for how many epochs.

    Attributes:
        name: shown in logs, e.g. ``"heads"`` or ``"all"``.
        epochs: epochs in this stage.
        trainable: regular expression searched in each layer's path (``outer/inner/layer``);
            matching layers learn, the rest are frozen. ``".*"`` trains everything.
        train_norm: ``False`` freezes every normalisation layer (the usual choice when
            fine-tuning a pretrained detector), ``True`` trains those the pattern selects;
            ``None`` keeps the model's own choice (the flag each normalisation layer had when
            the model was built, e.g. Mask R-CNN freezes BatchNorm only over ImageNet
            weights), within the pattern.

    Taught in notebooks/11_train_nuclei.
    """

    name: str
    epochs: int
    trainable: str = ".*"
    train_norm: bool | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Learning settings of a run (the model's config holds the architecture).

    Attributes:
        epochs: total epochs when ``stages`` is empty (one stage training everything).
        stages: the :class:`Stage` sequence; total epochs is then their sum.
        steps_per_epoch: batches per epoch (``None``: the whole dataset).
        optimizer: ``"sgd"`` (momentum, decoupled weight decay), ``"adamw"``, or ``"adam"``
            (no weight decay: notebook 10's U-Net recipe).
        learning_rate: base rate after warm-up.
        momentum: SGD momentum (0.9 in the paper).
        weight_decay: decoupled weight decay per step, multiplied by the rate (1e-4 in the
            paper); not applied to normalisation scales and shifts.
        clipnorm: clip each gradient tensor's L2 norm to this (``None``: no clipping).
        warmup_steps, warmup_factor: linear warm-up (:class:`WarmupStepSchedule`).
        lr_drops: fractions of the total steps at which the rate is multiplied by
            ``lr_factor`` (the paper: 0.75).
        lr_factor: multiplier at each drop.
        checkpoint_every: steps between checkpoints inside an epoch (``None``: epoch ends only).
        keep_checkpoints: how many checkpoints to keep.
        early_stopping_patience: epochs without improvement of ``monitor`` before stopping
            (``None``: never).
        monitor: the logged value early stopping watches (``val_loss`` when validation data is
            given, else ``loss``, when left ``None``).
        mixed_precision: ``"auto"`` (``mixed_bfloat16`` on a GPU, float32 on CPU),
            ``"mixed_bfloat16"``, ``"mixed_float16"`` (Keras then scales the loss) or
            ``"float32"``.
        jit_compile: ``"auto"`` (Keras: XLA on accelerators), ``True`` or ``False``.
        tensorboard: write TensorBoard logs.
        verbose: Keras progress bar (1), one line per epoch (2), silent (0).
        seed: seeds Python, NumPy and the backend before the model is built.

    Taught in notebooks/11_train_nuclei.
    """

    epochs: int = 2
    stages: tuple[Stage, ...] = ()
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    learning_rate: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    clipnorm: float | None = 5.0
    warmup_steps: int = 0
    warmup_factor: float = 1.0 / 3.0
    lr_drops: tuple[float, ...] = (0.75,)
    lr_factor: float = 0.1
    checkpoint_every: int | None = None
    keep_checkpoints: int = 3
    early_stopping_patience: int | None = None
    monitor: str | None = None
    mixed_precision: str = "auto"
    jit_compile: bool | str = "auto"
    tensorboard: bool = True
    verbose: int = 1
    seed: int = 0

    def stage_list(self) -> tuple[Stage, ...]:
        """The stages, or one stage ``all`` of :attr:`epochs` epochs when none are given."""
        return self.stages or (Stage("all", self.epochs),)

    def total_epochs(self) -> int:
        return sum(s.epochs for s in self.stage_list())


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes:
        model: the trained model.
        history: ``{metric: [value per epoch]}`` over every ``fit`` call of the run.
        run_dir: the run folder.
        step: optimizer steps done.
        epoch: epochs done.
        stopped: ``"completed"``, ``"early_stopping"`` or ``"already_finished"``.
        resumed_from: manifest of the checkpoint the run resumed from (``None``: fresh).
        final_weights: path of ``final.weights.h5``.

    Taught in notebooks/11_train_nuclei.
    """

    model: keras.Model
    history: dict = field(default_factory=dict)
    run_dir: Path | None = None
    step: int = 0
    epoch: int = 0
    stopped: str = "completed"
    resumed_from: Path | None = None
    final_weights: Path | None = None


# --------------------------------------------------------------------------------------
# Precision, optimizer, trainability
# --------------------------------------------------------------------------------------

def resolve_precision(policy: str = "auto") -> str:
    """The dtype policy name for ``policy``: ``"auto"`` is ``mixed_bfloat16`` on a GPU, else
    ``float32`` (CPUs gain little from bfloat16 and lose accuracy).

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.training.distribute import accelerators

    if policy == "auto":
        return "mixed_bfloat16" if accelerators() else "float32"
    allowed = ("float32", "mixed_bfloat16", "mixed_float16")
    if policy not in allowed:
        raise ValueError(f"mixed_precision={policy!r}: use 'auto' or one of {allowed}")
    return policy


def apply_precision(policy: str = "auto") -> str:
    """Set Keras' global dtype policy (before building the model); returns its name.

    Under ``mixed_float16`` ``model.compile`` wraps the optimizer in a
    ``LossScaleOptimizer`` (dynamic loss scaling), so small float16 gradients do not underflow.

    Taught in notebooks/11_train_nuclei.
    """
    name = resolve_precision(policy)
    keras.mixed_precision.set_dtype_policy(name)
    return name


def make_optimizer(config: TrainConfig, schedule) -> keras.optimizers.Optimizer:
    """SGD (momentum, decoupled weight decay), AdamW or Adam, with clipping, driven by
    ``schedule``.

    Taught in notebooks/11_train_nuclei.
    """
    common = dict(learning_rate=schedule, weight_decay=config.weight_decay or None,
                  clipnorm=config.clipnorm)
    if config.optimizer == "sgd":
        opt = keras.optimizers.SGD(momentum=config.momentum, **common)
    elif config.optimizer == "adamw":
        opt = keras.optimizers.AdamW(**common)
    elif config.optimizer == "adam":   # notebook 10's U-Net recipe: plain Adam
        if config.weight_decay:
            raise ValueError("optimizer='adam' takes no weight decay; use 'adamw' for that")
        opt = keras.optimizers.Adam(learning_rate=schedule, clipnorm=config.clipnorm)
    else:
        raise ValueError(f"optimizer={config.optimizer!r}: use 'sgd', 'adamw' or 'adam'")
    if config.weight_decay:
        # decaying a normalisation layer's scale towards 0 would switch channels off
        opt.exclude_from_weight_decay(var_names=["gamma", "beta"])
    return opt


def make_schedule(config: TrainConfig, total_steps: int) -> WarmupStepSchedule:
    """The run's :class:`WarmupStepSchedule` over ``total_steps`` optimizer steps.

    Taught in notebooks/11_train_nuclei.
    """
    boundaries = sorted({max(1, int(round(f * total_steps))) for f in config.lr_drops
                         if 0 < f < 1})
    return WarmupStepSchedule(config.learning_rate, boundaries, config.lr_factor,
                              min(config.warmup_steps, max(total_steps - 1, 0)),
                              warmup_factor=config.warmup_factor)


def _leaf_layers(layer, prefix: str = ""):
    """(path, layer) of every layer without sub-layers, depth first."""
    children = getattr(layer, "layers", None)
    if children is None:
        children = list(layer._flatten_layers(include_self=False, recursive=False)) \
            if hasattr(layer, "_flatten_layers") else []
    if not children:
        yield prefix.rstrip("/"), layer
        return
    for child in children:
        yield from _leaf_layers(child, f"{prefix}{child.name}/")


def set_trainable(model: keras.Model, pattern: str = ".*",
                  train_norm: bool | None = None) -> dict[str, int]:
    """Make the layers whose path matches ``pattern`` trainable and freeze the others.

    Args:
        model: any Keras model (nested models and layers are walked down to the leaves; a
            leaf's path is ``outer/inner/leaf``).
        pattern: regular expression, ``re.search``-ed in each path.
        train_norm: see :class:`Stage`.

    Returns:
        ``{"trainable": n_layers, "frozen": n_layers, "trainable_weights": n_variables}``.
        Call ``compile`` afterwards (Keras fixes the trainable set at compile time).

    Taught in notebooks/11_train_nuclei.
    """
    regex = re.compile(pattern)
    counts = {"trainable": 0, "frozen": 0}
    leaves = list(_leaf_layers(model))
    for _, layer in leaves:
        if isinstance(layer, NORM_LAYERS) and not hasattr(layer, "_course_built_trainable"):
            # remember the model's own choice before the first stage changes it
            layer._course_built_trainable = bool(layer.trainable)
    model.trainable = True  # parents must be trainable for a child's flag to count
    for path, layer in leaves:
        on = bool(regex.search(path or layer.name))
        if isinstance(layer, NORM_LAYERS):
            on = on and (layer._course_built_trainable if train_norm is None else train_norm)
        layer.trainable = on
        counts["trainable" if on else "frozen"] += 1
    counts["trainable_weights"] = len(model.trainable_weights)
    if counts["trainable_weights"] == 0:
        raise ValueError(f"pattern {pattern!r} selects no layer with weights; layer paths look "
                         f"like {[p for p, _ in list(_leaf_layers(model))[:5]]}")
    return counts


# --------------------------------------------------------------------------------------
# The run folder
# --------------------------------------------------------------------------------------

def model_signature(model: keras.Model) -> str:
    """A short hash of the model's variable paths and shapes: the same architecture, the
    same signature.

    Taught in notebooks/11_train_nuclei.
    """
    text = ";".join(f"{v.path}:{tuple(v.shape)}" for v in model.weights)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _config_record(config: TrainConfig) -> dict:
    """``config`` as plain JSON values, as ``run.json`` records it (stages become dicts)."""
    return json.loads(json.dumps(asdict(config), default=str))


def _run_length(record: dict) -> tuple[list[tuple[str, int]], int | None]:
    """``([(stage name, epochs), ...], steps per epoch)`` of a recorded config: how long the
    run is. The schedule's warm-up and drops are placed by it, so a run keeps it to the end."""
    stages = [(s["name"], int(s["epochs"])) for s in record.get("stages") or ()]
    return stages or [("all", int(record["epochs"]))], record.get("steps_per_epoch")


def _describe_length(length: tuple[list[tuple[str, int]], int | None]) -> str:
    """``"3 epochs of 4 steps"``, or ``"3 epochs (heads 1 + all 2) of the whole dataset"``."""
    stages, steps = length
    total = sum(epochs for _, epochs in stages)
    split = f" ({' + '.join(f'{n} {e}' for n, e in stages)})" if len(stages) > 1 else ""
    return f"{total} epochs{split} of {f'{steps} steps' if steps else 'the whole dataset'}"


def _check_run_length(run_dir: Path, info: dict, config: TrainConfig) -> None:
    """Refuse to resume a run with another length than it started with.

    Resuming cannot honour a new length: the learning-rate schedule (warm-up, drops at
    fractions of the run) was laid out over the old one, and a finished run would silently
    stay finished. Training longer is a new run.
    """
    if "config" not in info:  # a run folder from before run.json recorded the config
        return
    old, new = _run_length(info["config"]), _run_length(_config_record(config))
    if old != new:
        raise RunFolderError(
            f"{run_dir} holds a run of {_describe_length(old)}, but this one asks for "
            f"{_describe_length(new)}; a run keeps the length it started with (its "
            "learning-rate schedule spans the whole run). Resume it with its own settings, "
            "or train the new length in a new run folder.")


def _check_run_folder(run_dir: Path, model: keras.Model, model_name: str, config: TrainConfig,
                      *, resume) -> None:
    info_path = run_dir / "run.json"
    signature = model_signature(model)
    if info_path.is_file():
        info = json.loads(info_path.read_text())
        if resume is False:
            raise RunFolderError(f"{run_dir} already holds a run ({info.get('model')}); resume "
                                 "it or choose a new run folder.")
        if info.get("signature") != signature or info.get("model") != model_name:
            raise RunFolderError(
                f"{run_dir} holds a run of model {info.get('model')!r} "
                f"(signature {info.get('signature')}), not of {model_name!r} ({signature}); "
                "choose a new run folder for this model.")
        _check_run_length(run_dir, info, config)
        return
    if resume is True:
        raise RunFolderError(f"{run_dir} holds no run to resume; drop --resume to start one.")
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"model": model_name, "signature": signature, "backend": keras.backend.backend(),
            "created": time.strftime("%Y-%m-%d %H:%M:%S"), "config": _config_record(config)}
    tmp = info_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    os.replace(tmp, info_path)


def _ensure_built(model: keras.Model, train_data) -> None:
    """Call a subclassed model once on the first batch so its variables exist (to restore)."""
    if model.built and model.variables:
        return
    batch = train_data[0]
    model(batch if isinstance(batch, dict) else batch[0])


def _scale_own_loss_for_replicas(model: keras.Model, replicas: int) -> None:
    """Divide the loss of a model that overrides ``compute_loss`` by the replica count.

    Under ``MirroredStrategy`` each replica's gradients are *summed*, so Keras divides the
    losses it computes itself (compiled losses, ``add_loss`` terms) by the number of replicas.
    A model that computes its own total in ``compute_loss`` (Mask R-CNN, which adds its five
    losses) skips that step and would train with ``replicas`` times the gradient and log
    ``replicas`` times the loss; this wraps its ``compute_loss`` to do the same division.
    (JAX's ``DataParallel`` runs one program over the global batch: nothing to do there.)
    """
    if type(model).compute_loss is keras.Model.compute_loss or replicas < 2:
        return
    original = model.compute_loss
    factor = 1.0 / replicas

    def compute_loss(*args, **kwargs):
        return original(*args, **kwargs) * factor

    model.compute_loss = compute_loss


def _compile_key(config: TrainConfig, schedule, stage: Stage, loss, *, metrics) -> str:
    """What a compiled training step depends on: optimizer settings, schedule, stage, loss.

    Two runs of one model object with the same key can share Keras' compiled (traced) step.
    """
    fields = ("optimizer", "learning_rate", "momentum", "weight_decay", "clipnorm",
              "jit_compile")
    return repr(([getattr(config, f) for f in fields], schedule.get_config(), stage.trainable,
                 stage.train_norm, loss, metrics))


#: The temporary name ``final.weights.h5`` is written under (Keras wants ``.weights.h5``).
FINAL_TMP = "final.tmp.weights.h5"


def _save_final(model: keras.Model, run_dir: Path) -> Path:
    path = run_dir / "final.weights.h5"
    tmp = run_dir / FINAL_TMP
    model.save_weights(tmp)
    os.replace(tmp, path)
    return path


def _remove_stale_temp_files(run_dir: Path, print_fn) -> None:
    """Delete what writes killed midway left in the run folder, and say so.

    Every file of the run is written to a temporary name and renamed when complete; a hard
    kill during a write leaves the temporary file, which nothing reads again.
    """
    removed = remove_stale_temp_files(run_dir) + remove_stale_temp_files(run_dir / "checkpoints")
    final_tmp = run_dir / FINAL_TMP
    if final_tmp.is_file():
        final_tmp.unlink()
        removed.append(final_tmp)
    if removed:
        names = ", ".join(str(p.relative_to(run_dir)) for p in removed)
        print_fn(f"  removed {len(removed)} temporary file(s) left by an interrupted write: "
                 f"{names}")


def _latest_checkpoint(manager: CheckpointManager, run_dir: Path):
    """The checkpoint to resume from (``None``: a new run); refuses a folder whose checkpoints
    are all unusable, where starting over would append to the old run's log and, for a
    finished run, replace its weights."""
    try:
        return manager.latest()
    except CheckpointError as err:
        raise RunFolderError(
            f"{err}. Nothing was trained: starting over here would mix a new run into this "
            f"run's logs and weights. To start afresh, use a new run folder (or delete "
            f"{run_dir}).") from err


def _logging_callbacks(config: TrainConfig, logs_dir: Path, tensorboard: bool,
                       validating: bool) -> list[keras.callbacks.Callback]:
    """The rate logger, the CSV log, TensorBoard (if wanted and installed), early stopping."""
    cbs = [LearningRateLogger(),
           keras.callbacks.CSVLogger(str(logs_dir / "train.csv"), append=True)]
    if tensorboard:
        cbs.append(keras.callbacks.TensorBoard(str(logs_dir / "tensorboard"), write_graph=False))
    if config.early_stopping_patience:
        monitor = config.monitor or ("val_loss" if validating else "loss")
        cbs.append(keras.callbacks.EarlyStopping(
            monitor=monitor, patience=config.early_stopping_patience, verbose=1))
    return cbs


class _InterruptAtBatchBoundary(keras.callbacks.Callback):
    """Raises the ``KeyboardInterrupt`` of a Ctrl-C that :func:`_ctrl_c_between_batches`
    held back, at the start of the next batch (training or validation)."""

    def __init__(self):
        super().__init__()
        self.requested = False

    def check(self):
        if self.requested:
            self.requested = False
            raise KeyboardInterrupt

    def on_train_batch_begin(self, batch, logs=None):
        self.check()

    def on_test_batch_begin(self, batch, logs=None):
        self.check()


@contextmanager
def _ctrl_c_between_batches():
    """During ``fit``, a Ctrl-C (SIGINT) stops training at the next batch boundary.

    Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when the
    signal is noticed: inside Keras' data adapter or its callback loop it can be caught and
    lost (a real-process test saw a Ctrl-C swallowed and the run finish with exit code 0), or
    land between a checkpoint's files. Here the handler only records the request; the
    callback yielded raises it before the next batch, where every callback of the last batch
    has run. A second Ctrl-C interrupts at once, as usual. Outside the main thread (where
    Python cannot install signal handlers) nothing changes.
    """
    guard = _InterruptAtBatchBoundary()
    if threading.current_thread() is not threading.main_thread():
        yield guard
        return
    previous = signal.getsignal(signal.SIGINT)

    def request(signum, frame):
        guard.requested = True
        signal.signal(signal.SIGINT, previous)       # the next Ctrl-C acts at once

    signal.signal(signal.SIGINT, request)
    try:
        yield guard
        guard.check()          # a Ctrl-C during the last batch of the fit call
    finally:
        signal.signal(signal.SIGINT, previous)


def _fit_calls(epoch: int, batch: int, stage_end: int) -> list[tuple[int, int, int]]:
    """The ``fit`` calls that train from batch ``batch`` of ``epoch`` to the end of the stage,
    as ``(first epoch, end epoch, first batch)``.

    Keras wants the same number of batches in every epoch of a ``fit`` call, so the rest of
    an epoch interrupted midway gets a call of its own, before the whole epochs left.
    """
    calls = []
    if batch > 0:
        calls.append((epoch, epoch + 1, batch))
        epoch += 1
    if epoch < stage_end:
        calls.append((epoch, stage_end, 0))
    return calls


# --------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------

def tensorboard_installed() -> bool:
    """Whether the ``tensorboard`` package is importable (Keras' callback needs it to write).

    TensorFlow installed it up to 2.20 and no longer does from 2.21, so the course lists it
    itself; ``train`` checks anyway and says so instead of failing mid-run when it is missing.

    Taught in notebooks/11_train_nuclei.
    """
    return importlib.util.find_spec("tensorboard") is not None


def train(model: keras.Model | Callable[[], keras.Model], train_data, run_dir: str | Path,
          config: TrainConfig = TrainConfig(), *, val_data=None, loss=None, metrics=None,
          callbacks: Sequence[keras.callbacks.Callback] = (), model_name: str | None = None,
          resume: bool | str = "auto", distribution: DataParallel | None = None,
          print_fn: Callable[[str], None] = print) -> TrainResult:
    """Train ``model`` on ``train_data`` in ``run_dir``, resuming a run found there.

    Args:
        model: a Keras model, or a function building one (needed under a multi-device
            ``distribution``, where variables must be created inside its scope; the dtype
            policy of ``config.mixed_precision`` is set before it is called). A model that adds
            its own losses (``add_loss`` / ``compute_loss``) takes ``loss=None``.
        train_data: a ``keras.utils.PyDataset`` (``(x, y[, sample_weight])`` or a dict of
            inputs). With ``set_epoch`` (the course's datasets) the order is reproducible and a
            resumed run continues it.
        run_dir: the run folder (see the module docstring).
        config: :class:`TrainConfig`.
        val_data: optional ``PyDataset`` evaluated after each epoch (``val_*`` logs).
        loss, metrics: passed to ``compile``.
        callbacks: more Keras callbacks (after the engine's own).
        model_name: recorded in ``run.json``; a run folder of another model is refused.
        resume: ``"auto"`` resumes when the folder holds a run, ``True`` requires one,
            ``False`` refuses a folder that holds one.
        distribution: :func:`~course_lib.training.distribute.data_parallel` (default: one
            device).
        print_fn: where the engine's messages go.

    Returns:
        :class:`TrainResult`.

    Raises:
        NonFiniteLossError: a NaN/inf loss (names step and term; checkpoints stay good).
        RunFolderError: the folder belongs to another model, or ``resume`` cannot be honoured.

    Taught in notebooks/11_train_nuclei.
    """
    run_dir = Path(run_dir)
    distribution = distribution or DataParallel([], "single")
    with distribution.scope():
        if isinstance(model, keras.Model):
            policy = model.dtype_policy.name
        else:
            keras.utils.set_random_seed(config.seed)
            policy = apply_precision(config.mixed_precision)
            model = model()
        _ensure_built(model, train_data)
        if keras.backend.backend() == "tensorflow" and distribution.handle is not None:
            # any tf.distribute strategy (Mirrored, MultiWorkerMirrored) sums replica gradients
            _scale_own_loss_for_replicas(model, distribution.handle.num_replicas_in_sync)
        name = model_name or model.name
        _check_run_folder(run_dir, model, name, config, resume=resume)
        return _run(model, train_data, run_dir, config, val_data=val_data, loss=loss,
                    metrics=metrics, extra_callbacks=list(callbacks), name=name, policy=policy,
                    distribution=distribution, print_fn=print_fn)


@dataclass
class _Session:
    """What one call of :func:`train` works with, gathered once for the steps of :func:`_run`.

    ``steps_per_epoch`` and ``schedule`` are the run's whole length and learning-rate
    schedule (every stage); ``tensorboard``: whether TensorBoard logs are written."""

    model: keras.Model
    train_data: object
    run_dir: Path
    config: TrainConfig
    val_data: object
    loss: object
    metrics: object
    extra_callbacks: list
    print_fn: Callable[[str], None]
    manager: CheckpointManager
    logs_dir: Path
    steps_per_epoch: int
    schedule: object
    tensorboard: bool


#: The compile settings each model was last compiled with (:func:`_compile_key`), so a second
#: run of the same model with the same settings keeps Keras' compiled step. Weak keys: a model
#: that is gone leaves no entry behind.
_COMPILED_FOR: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _run(model, train_data, run_dir, config, *, val_data, loss, metrics, extra_callbacks,
         name, policy, distribution, print_fn) -> TrainResult:
    """The run after its folder was checked: open it, train the stages left, finish."""
    spe = int(config.steps_per_epoch or len(train_data))
    session = _Session(model, train_data, run_dir, config, val_data, loss, metrics,
                       extra_callbacks, print_fn,
                       manager=CheckpointManager(run_dir / "checkpoints",
                                                 keep=config.keep_checkpoints),
                       logs_dir=run_dir / "logs", steps_per_epoch=spe,
                       schedule=make_schedule(config, spe * config.total_epochs()),
                       tensorboard=config.tensorboard and tensorboard_installed())
    session.logs_dir.mkdir(parents=True, exist_ok=True)
    ckpt = _open_run(session, name, policy, distribution)
    state = dict(ckpt.state) if ckpt else {"epoch": 0, "batch": 0, "step": 0, "stage": 0}
    result = TrainResult(model=model, run_dir=run_dir,
                         resumed_from=ckpt.manifest if ckpt else None)
    if state.get("finished"):
        return _already_finished(session, ckpt, state, result)
    state, stopped_early = _train_stages(session, ckpt, state, result)
    return _finish(session, state, stopped_early, result)


def _open_run(session: _Session, name: str, policy: str, distribution):
    """Print where the run writes, delete a killed write's temporary files, and return the
    latest good checkpoint (``None`` for a new run)."""
    say, run_dir = session.print_fn, session.run_dir
    say(f"Run folder: {run_dir}  (model {name}, precision {policy}, "
        f"{distribution.replicas} device(s) via {distribution.engine})")
    _remove_stale_temp_files(run_dir, say)
    ckpt = _latest_checkpoint(session.manager, run_dir)
    logs = session.logs_dir
    say(f"  checkpoints: {session.manager.directory}   logs: {logs / 'train.csv'}"
        + (f"   tensorboard --logdir {logs / 'tensorboard'}" if session.tensorboard else ""))
    if session.config.tensorboard and not session.tensorboard:
        say("  TensorBoard is not installed, so this run writes no TensorBoard logs "
            "(train.csv has every number); `pip install tensorboard` to get them.")
    if ckpt and not ckpt.state.get("finished"):
        state = ckpt.state
        say(f"  resuming from {ckpt.manifest.name}: epoch {state['epoch'] + 1}, batch "
            f"{state['batch'] + 1}, optimizer step {state['step']}")
    return ckpt


def _already_finished(session: _Session, ckpt, state: dict, result: TrainResult) -> TrainResult:
    """A run whose last checkpoint is marked finished: load it, train nothing."""
    restore_model(session.model, ckpt)
    session.print_fn("  this run has already finished; nothing to do.")
    result.stopped, result.step, result.epoch = "already_finished", state["step"], state["epoch"]
    result.final_weights = session.run_dir / "final.weights.h5"
    if not result.final_weights.is_file():  # killed while writing it, after the checkpoint
        _save_final(session.model, session.run_dir)
        session.print_fn(f"  wrote the missing {result.final_weights.name} from "
                         f"{ckpt.data.name}")
    return result


def _train_stages(session: _Session, ckpt, state: dict, result: TrainResult
                  ) -> tuple[dict, bool]:
    """Train every stage not yet done; returns the position reached and whether early
    stopping ended the run."""
    model, stages = session.model, session.config.stage_list()
    restored = False
    last_saved = ckpt.manifest if ckpt else None
    stage_start = 0
    for s_idx, stage in enumerate(stages):
        stage_end = stage_start + stage.epochs
        if state["epoch"] >= stage_end:
            stage_start = stage_end
            continue
        counts = set_trainable(model, stage.trainable, stage.train_norm)
        session.print_fn(f"  stage {s_idx + 1}/{len(stages)} '{stage.name}': epochs "
                         f"{max(state['epoch'], stage_start) + 1}-{stage_end}, "
                         f"{counts['trainable']} layers learn, {counts['frozen']} frozen")
        _compile_or_reuse(session, stage)
        if ckpt is not None and not restored:
            restore_model(model, ckpt)
            restored = True
        _start_optimizer(model, ckpt if ckpt is not None and ckpt.state.get("stage") == s_idx
                         else None, state["step"])
        epoch = max(state["epoch"], stage_start)
        batch = 0 if state["epoch"] < stage_start else state["batch"]
        state, last_saved, stopped = _fit_stage(session, s_idx, stage_end, epoch=epoch,
                                                batch=batch, last_saved=last_saved,
                                                result=result)
        if stopped:
            return state, True
        stage_start = stage_end
    return state, False


def _compile_or_reuse(session: _Session, stage: Stage) -> None:
    """Compile the model for ``stage``, or keep its compiled step when it was last compiled
    with the same settings (an experiment re-run from reset weights): then nothing is traced
    again and the optimizer starts from zero state."""
    model, config = session.model, session.config
    key = _compile_key(config, session.schedule, stage, session.loss, metrics=session.metrics)
    optimizer = getattr(model, "optimizer", None)
    if _COMPILED_FOR.get(model) == key and optimizer is not None and optimizer.built and \
            not isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        session.print_fn("  same compiled training step as the previous run of this model: "
                         "optimizer state reset, nothing retraced")
        for variable in optimizer.variables:
            variable.assign(ops.zeros(variable.shape, variable.dtype))
        return
    model.compile(optimizer=make_optimizer(config, session.schedule), loss=session.loss,
                  metrics=session.metrics, jit_compile=config.jit_compile)
    _COMPILED_FOR[model] = key


def _start_optimizer(model: keras.Model, ckpt, step: int) -> None:
    """The stage's optimizer state: the checkpoint's when it was saved in this stage, else a
    fresh optimizer that keeps counting steps (``step``) for the schedule."""
    optimizer = model.optimizer
    if ckpt is not None:
        restore_optimizer(optimizer, model.trainable_variables, ckpt)
        return
    if not optimizer.built:
        optimizer.build(model.trainable_variables)
    optimizer.iterations.assign(step)


def _fit_stage(session: _Session, s_idx: int, stage_end: int, *, epoch: int, batch: int,
               last_saved, result: TrainResult) -> tuple[dict, object, bool]:
    """``model.fit`` over the stage's epochs from ``(epoch, batch)``: a resumed part-epoch is
    its own call (:func:`_fit_calls`). Returns the position reached, the last checkpoint
    written and whether early stopping asked to stop."""
    model, spe = session.model, session.steps_per_epoch
    state = None
    for first, last, start in _fit_calls(epoch, batch, stage_end):
        # made here, just before its fit: a view sets the dataset's epoch, so making the
        # next one early would feed this one the next epoch's batches
        view = EpochView(session.train_data, spe, first, start=start)
        position = TrainingPosition(spe, start, view)
        checkpointer = ModelCheckpointer(session.manager, position, s_idx,
                                         session.config.checkpoint_every, last_saved=last_saved)
        cbs = [position, NonFiniteLossGuard(position, checkpointer), checkpointer,
               *_logging_callbacks(session.config, session.logs_dir, session.tensorboard,
                                   session.val_data is not None)]
        # shuffle=False: the order is the dataset's own, seeded by (seed, epoch)
        with _ctrl_c_between_batches() as ctrl_c:
            history = model.fit(view, validation_data=session.val_data, initial_epoch=first,
                                epochs=last,
                                callbacks=[ctrl_c, *cbs, *session.extra_callbacks],
                                verbose=session.config.verbose, shuffle=False)
        last_saved = checkpointer.last_saved
        for key, values in history.history.items():
            result.history.setdefault(key, []).extend(values)
        state = {"epoch": position.epoch + 1, "batch": 0,
                 "step": int(np.asarray(model.optimizer.iterations)), "stage": s_idx}
        if model.stop_training:
            return state, last_saved, True
    return state, last_saved, False


def _finish(session: _Session, state: dict, stopped_early: bool,
            result: TrainResult) -> TrainResult:
    """A last checkpoint marked finished (running the command again trains no more) and the
    final weights file."""
    model = session.model
    result.step, result.epoch = state["step"], state["epoch"]
    result.stopped = "early_stopping" if stopped_early else "completed"
    finished = dict(state, finished=True, lr=float(np.asarray(model.optimizer.learning_rate)))
    session.manager.save(model, model.optimizer, finished)
    result.final_weights = _save_final(model, session.run_dir)
    session.print_fn(f"  done ({result.stopped}) after {result.epoch} epochs, {result.step} "
                     f"steps; weights: {result.final_weights}")
    return result
