"""Course-wide settings: mode (quick/full), devices, paths, seeds, library versions.

Taught in notebooks/00_start_here.

*Mode* decides sizes and step counts only, never the code path:

- ``quick``: small images and few steps so every notebook runs in well under 90 s on a
  2-core CPU. The default when no GPU is visible, and what CI uses.
- ``full``: real training. The default when a GPU is visible.

Set ``COURSE_MODE=quick`` or ``COURSE_MODE=full`` to override the automatic choice.

*Data* lives under ``<repo>/data`` unless ``COURSE_DATA`` points elsewhere
(:func:`data_root`); which datasets are there is :func:`course_lib.data.discovery.dataset_status`,
and the line every notebook prints first is :func:`course_lib.session.report`.

This is the ground floor of the package: it imports nothing else from ``course_lib``, so
every other module may read it.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Seed used by :func:`set_seed` when none is given. Fixed so reruns show the same numbers.
DEFAULT_SEED = 42

#: The repository root (the folder holding ``course_lib``).
REPO_ROOT = Path(__file__).resolve().parent.parent

MODES = ("quick", "full")

#: ``PYTHONHASHSEED`` as this process found it (read at import; what the interpreter saw at its
#: start, unless something changed the environment before the course was imported).
_HASH_SEED_AT_START = os.environ.get("PYTHONHASHSEED")


@dataclass(frozen=True)
class ModeSettings:
    """Sizes and step counts for one mode. The code path is identical in both modes.

    Attributes:
        name: ``"quick"`` or ``"full"``.
        image_size: side in pixels of square training images.
        n_synthetic_images: how many synthetic nuclei images to generate.
        epochs: training epochs for the chapter trainings.
        steps_per_epoch: batches per epoch (``None``: the whole dataset).
        batch_size: images per batch.
        backbone: ``"light"`` (a small ResNet for CPUs) or ``"resnet50"``.

    Taught in notebooks/00_start_here.
    """

    name: str
    image_size: int
    n_synthetic_images: int
    epochs: int
    steps_per_epoch: int | None
    batch_size: int
    backbone: str


QUICK = ModeSettings("quick", image_size=128, n_synthetic_images=24, epochs=2,
                     steps_per_epoch=8, batch_size=2, backbone="light")
FULL = ModeSettings("full", image_size=512, n_synthetic_images=600, epochs=40,
                    steps_per_epoch=None, batch_size=8, backbone="resnet50")


@functools.lru_cache(maxsize=1)
def gpu_devices() -> tuple[str, ...]:
    """Names of the accelerators the active Keras backend can see (empty on a CPU).

    Imports the backend lazily, so ``import course_lib.config`` stays cheap.
    """
    backend = keras_backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return tuple(d.name for d in tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return tuple(str(d) for d in jax.devices() if d.platform != "cpu")
        if backend == "torch":
            import torch

            n = torch.cuda.device_count()
            return tuple(torch.cuda.get_device_name(i) for i in range(n))
    except Exception:  # a broken GPU install must not stop the course from running on CPU
        return ()
    return ()


#: ``ONEDNN_MAX_CPU_ISA`` values that keep oneDNN on 256-bit AVX2 vectors (the ISA names of
#: oneDNN's documentation, "Dispatcher control"; TensorFlow reads the variable at its start).
ONEDNN_AVX2_CAPS = ("AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def cpu_info(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields in ``cpuinfo`` (Linux), e.g. ``{"model name": "AMD EPYC",
    "cpu family": "26", "flags": "fpu ... avx2 ..."}``; empty where the file cannot be read
    (macOS, Windows).

    Taught in notebooks/03_convolution (through :func:`onednn_runs_avx2`, which reads the flags).
    """
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    if fields:          # a blank line ends the first processor's block
                        break
                    continue
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


@functools.lru_cache(maxsize=4)
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags as Linux names them (``"avx2"``, ``"fma"``, ``"avx512f"``, …).

    Read from ``cpuinfo`` (:func:`cpu_info`); empty where that file cannot be read (macOS,
    Windows), so a caller that needs a flag treats "unknown" as "absent".

    Taught in notebooks/03_convolution (why one image on an AVX2 CPU is cut in two).
    """
    return frozenset(cpu_info(cpuinfo).get("flags", "").split())


def onednn_runs_avx2(flags: frozenset[str] | None = None) -> bool:
    """Whether TensorFlow's oneDNN kernels run here with AVX2 as their widest vectors.

    True on an x86 CPU with AVX2 and no AVX-512 (AMD Zen 1–3, most Intel laptop CPUs), or on
    an AVX-512 one whose oneDNN is capped with ``ONEDNN_MAX_CPU_ISA=AVX2`` (how this
    project's benchmarks stand in for such a CPU). False with AVX-512, with oneDNN off
    (``TF_ENABLE_ONEDNN_OPTS=0``), on a backend other than TensorFlow, or where the CPU's flags
    cannot be read (:func:`cpu_flags`). :class:`course_lib.layers.conv2d.Conv2D` reads it: on
    such a CPU oneDNN runs a one-image 3×3 convolution about 3× slower per image than a
    two-image one (bench/README.md, "Batch 1 on AVX2").

    Args:
        flags: the CPU's flags (default: :func:`cpu_flags`); tests pass their own.

    Taught in notebooks/03_convolution.
    """
    if keras_backend() != "tensorflow" or os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        return False
    flags = cpu_flags() if flags is None else flags
    if "avx2" not in flags:
        return False
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    if cap in ONEDNN_AVX2_CAPS:
        return True
    if cap.startswith("SSE") or cap == "AVX":     # capped below AVX2
        return False
    return "avx512f" not in flags                   # unset, ALL or an AVX-512 cap: the CPU decides


def keras_config_path() -> Path:
    """Where Keras keeps ``keras.json``: ``$KERAS_HOME``, else ``~/.keras`` (``/tmp/.keras``
    when the home folder is not writable), as Keras itself decides at import.

    Taught in notebooks/00_start_here.
    """
    home = os.environ.get("KERAS_HOME")
    if home is None:
        base = os.path.expanduser("~")
        if not os.access(base, os.W_OK):
            base = "/tmp"
        home = os.path.join(base, ".keras")
    return Path(os.path.expanduser(home)) / "keras.json"


def configured_keras_backend() -> str:
    """The backend Keras *will* choose when imported, read the way Keras reads it.

    ``KERAS_BACKEND`` when set and not empty; else the ``"backend"`` of ``keras.json``
    (:func:`keras_config_path`; an unreadable or invalid file counts as absent); else
    ``"tensorflow"``. Needs no Keras import, so it is cheap.

    Taught in notebooks/00_start_here.
    """
    env = os.environ.get("KERAS_BACKEND")
    if env:
        return env
    path = keras_config_path()
    try:
        with open(path) as f:
            backend = json.load(f).get("backend")
    except (OSError, ValueError, AttributeError):  # missing, unreadable, not JSON, not a dict
        backend = None
    return backend if isinstance(backend, str) and backend else "tensorflow"


def keras_backend() -> str:
    """The Keras backend in use: Keras' own answer once it is imported (the backend is fixed at
    import and the environment may have changed since), else :func:`configured_keras_backend`.

    Taught in notebooks/00_start_here.
    """
    keras = sys.modules.get("keras")
    backend_fn = getattr(getattr(keras, "config", None), "backend", None)
    if callable(backend_fn):
        return backend_fn()
    return configured_keras_backend()


def mode() -> str:
    """``COURSE_MODE`` if set, else ``full`` when a GPU is visible, else ``quick``.

    Taught in notebooks/00_start_here.
    """
    requested = os.environ.get("COURSE_MODE", "").strip().lower()
    if requested:
        if requested not in MODES:
            raise ValueError(
                f"COURSE_MODE={requested!r} is not a mode; use one of {MODES} "
                "(or unset it to choose automatically)."
            )
        return requested
    return "full" if gpu_devices() else "quick"


def settings(name: str | None = None) -> ModeSettings:
    """The :class:`ModeSettings` of mode ``name`` (default: the current :func:`mode`).

    A caller asked for a mode passes it here, so it gets that mode's sizes whatever
    ``COURSE_MODE`` says.

    Taught in notebooks/00_start_here.
    """
    name = name or mode()
    if name not in MODES:
        raise ValueError(f"mode={name!r}: use one of {MODES}")
    return FULL if name == "full" else QUICK


def data_root() -> Path:
    """Where datasets live: ``$COURSE_DATA`` or ``<repo>/data``.

    Taught in notebooks/00_start_here.
    """
    env = os.environ.get("COURSE_DATA")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "data"


def set_seed(seed: int = DEFAULT_SEED, deterministic_ops: bool = False) -> dict[str, str]:
    """Seed every generator a run draws from, so a rerun shows the same numbers.

    Seeds Python's :mod:`random`, NumPy's global generator and Keras' global seed
    (``keras.utils.set_random_seed``, which also seeds the backend: ``tf.random.set_seed``,
    ``torch.manual_seed``, and the seed ``keras.random`` and weight initialisers draw from
    under JAX). That fixes weight initialisation, ``keras.random`` draws, dropout, shuffling
    and the course's augmentations.

    What it cannot do: Python randomises the hash of ``str`` and ``bytes`` (so the iteration
    order of a set of strings) once, when the interpreter *starts*. Setting
    ``os.environ["PYTHONHASHSEED"]`` afterwards changes nothing in the running process, so this
    function does not pretend to; start Python with ``PYTHONHASHSEED=0`` (the Makefile does,
    and the notebook kernels it starts inherit it). The returned ``"str hashing"`` fact says
    which case this process is in.

    Args:
        seed: the seed for all generators.
        deterministic_ops: also ask the backend for deterministic kernels (TensorFlow:
            ``tf.config.experimental.enable_op_determinism``; PyTorch:
            ``torch.use_deterministic_algorithms``). Off by default: it slows some GPU ops and
            makes ops without a deterministic kernel raise. On a CPU it costs little.

    Returns:
        What was set, as printable facts: ``{"seed", "str hashing", "deterministic ops"}``.

    Taught in notebooks/00_start_here.
    """
    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed)
    import keras

    keras.utils.set_random_seed(seed)
    deterministic = "off"
    if deterministic_ops:
        backend = keras.config.backend()
        if backend == "tensorflow":
            import tensorflow as tf

            tf.config.experimental.enable_op_determinism()
            deterministic = "on (tensorflow)"
        elif backend == "torch":
            import torch

            torch.use_deterministic_algorithms(True)
            deterministic = "on (torch)"
        else:  # JAX on CPU is deterministic; on GPU it is set by XLA flags at start-up
            deterministic = f"not settable at run time for {backend}"
    hashing = (f"fixed (PYTHONHASHSEED={_HASH_SEED_AT_START})"
               if _HASH_SEED_AT_START not in (None, "", "random")
               else "random per process (start Python with PYTHONHASHSEED=0 to fix it)")
    return {"seed": str(seed), "str hashing": hashing, "deterministic ops": deterministic}


def versions() -> dict[str, str]:
    """Versions of Python and the course's libraries (``"not installed"`` when absent).

    Taught in notebooks/00_start_here.
    """
    from importlib import metadata

    out = {"python": platform.python_version()}
    dists = {"numpy": "numpy", "keras": "keras", "tensorflow": "tensorflow", "jax": "jax",
             "torch": "torch", "skimage": "scikit-image", "pycocotools": "pycocotools",
             "ipywidgets": "ipywidgets", "matplotlib": "matplotlib"}
    for key, dist in dists.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = "not installed"
    return out
