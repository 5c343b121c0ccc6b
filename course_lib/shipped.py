"""Models trained by the course's own command line and shipped with it, loaded by name.

Taught in notebooks/11_train_nuclei.

A learner without a GPU cannot train a detector that works inside a notebook's 90 seconds,
so the course ships two: a U-Net and a Mask R-CNN trained on the real DSB 2018 stage-1
images within the CPU budget (``python -m course_lib.train nuclei --budget cpu``). Each
lives in ``course_lib/shipped_models/<name>/``:

- ``weights.npz``: the model's weights in ``model.get_weights()`` order, float16 where that
  is exact enough (the manifest records the validation score both ways), float32 otherwise;
- ``manifest.json``: how the file was made (the exact command, the commit, the machine, the
  wall time, the training and validation image ids), what it scores (DSB on the validation
  split, per modality, and on the repository's own real images), the architecture to
  rebuild, and the SHA-256 of ``weights.npz``.

:func:`load` rebuilds the architecture, checks the checksum (a mismatch is refused with a
message naming the file: a truncated clone, a merge that mangled a binary, a hand edit) and
returns a :class:`LoadedModel` that turns an image into instance labels the way the model
was evaluated. :func:`load` also takes a run folder of ``python -m course_lib.train``
(its ``model.json`` names the architecture, ``final.weights.h5`` holds the weights), so
``python -m course_lib.predict`` works the same on a shipped model and on your own run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

#: Where the shipped models live (inside the package, so ``pip install`` carries them).
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped_models"
WEIGHTS = "weights.npz"
MANIFEST = "manifest.json"
#: Written by the training command into every run folder: what :func:`load` rebuilds.
MODEL_SPEC = "model.json"
#: Float arrays whose values all lie within this stay float16 when shipped (the float16
#: maximum is 65504; a Normalization layer's pixel count does not fit and stays float32).
FLOAT16_LIMIT = 6e4


class ShippedModelError(RuntimeError):
    """A shipped model or run folder cannot be loaded; the message names the file and the fix.

    Taught in notebooks/11_train_nuclei.
    """


# --------------------------------------------------------------------------------------
# Architecture: what to rebuild before the weights can be read
# --------------------------------------------------------------------------------------


def model_spec(recipe) -> dict | None:
    """The JSON-able description of a recipe's architecture and inference (``model.json``).

    Args:
        recipe: a :class:`course_lib.training.recipes.Recipe`.

    Returns:
        ``{"kind": "unet", "unet_recipe": {...}}`` or ``{"kind": "maskrcnn", "config":
        {...}, "tiled": bool}`` (tiled: detect in native-scale windows, the CPU budget's way);
        ``None`` for a recipe of neither kind (a stand-in model: nothing to rebuild by name).

    Taught in notebooks/11_train_nuclei.
    """
    extra = recipe.extra
    if "recipe" in extra:
        return {"kind": "unet", "name": recipe.name,
                "unet_recipe": dataclasses.asdict(extra["recipe"])}
    if "model_config" in extra:
        return {"kind": "maskrcnn", "name": recipe.name,
                "config": extra["model_config"].to_dict(), "tiled": bool(extra.get("budget"))}
    return None


def write_model_spec(run_dir: str | Path, recipe=None, *, spec: dict | None = None
                     ) -> Path | None:
    """Write :func:`model_spec` of ``recipe`` (or ``spec`` itself, a dict of the same form)
    to ``run_dir/model.json``; returns the path (``None``, and nothing written, for a recipe
    :func:`model_spec` cannot describe).

    Taught in notebooks/11_train_nuclei.
    """
    spec = spec if spec is not None else model_spec(recipe)
    if spec is None:
        return None
    path = Path(run_dir) / MODEL_SPEC
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec, indent=1) + "\n")
    return path


def _build(spec: dict):
    """``(model whose weights are stored, LoadedModel factory args)`` from a spec."""
    import keras

    if spec["kind"] == "unet":
        from course_lib.models import unet_training as ut

        recipe = ut.UNetRecipe(**spec["unet_recipe"])
        model = ut.build_recipe_unet(recipe, keras.layers.Normalization(axis=None))
        return model, {"recipe": recipe}
    if spec["kind"] == "maskrcnn":
        from course_lib.models import maskrcnn

        config = maskrcnn.MaskRCNNConfig.from_dict(spec["config"])
        training, inference = maskrcnn.build_models(config, verbose=False)
        return training, {"inference": inference, "tiled": bool(spec.get("tiled"))}
    raise ShippedModelError(f"unknown model kind {spec['kind']!r} (expected unet or maskrcnn)")


def _finish_loading(model) -> None:
    """Recompute what ``set_weights`` does not: a Normalization layer's mean and variance."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()


# --------------------------------------------------------------------------------------
# Weights files
# --------------------------------------------------------------------------------------


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes.

    Taught in notebooks/11_train_nuclei.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_weights(model, path: str | Path, float16: bool = True) -> dict:
    """Save ``model.get_weights()`` to an ``.npz`` (``w0000``, ``w0001``, ... in order).

    With ``float16``, float arrays within :data:`FLOAT16_LIMIT` are stored as float16 (half
    the bytes); others keep their dtype. Returns ``{"arrays": n, "float16": k, "bytes": size}``.

    Taught in notebooks/11_train_nuclei.
    """
    arrays, halved = {}, 0
    for i, w in enumerate(model.get_weights()):
        w = np.asarray(w)
        if float16 and w.dtype == np.float32 and np.all(np.abs(w) <= FLOAT16_LIMIT):
            w, halved = w.astype(np.float16), halved + 1
        arrays[f"w{i:04d}"] = w
    path = Path(path)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)
    return {"arrays": len(arrays), "float16": halved, "bytes": path.stat().st_size}


def load_weights(model, path: str | Path) -> None:
    """Read :func:`save_weights`' file into ``model`` (each array cast to the model's dtype).

    Raises:
        ShippedModelError: the file is unreadable or does not fit the model (names the file).

    Taught in notebooks/11_train_nuclei.
    """
    path = Path(path)
    want = model.get_weights()
    try:
        with np.load(path) as data:
            arrays = [data[f"w{i:04d}"] for i in range(len(data.files))]
    except Exception as err:  # zipfile, OSError, ValueError, KeyError: all mean "bad file"
        raise ShippedModelError(
            f"{path} cannot be read as model weights ({type(err).__name__}: {err}); the file "
            "is damaged or incomplete. Restore it (git checkout -- the file, or a fresh "
            "clone) or retrain with the command in the manifest beside it.") from err
    if len(arrays) != len(want) or any(a.shape != w.shape for a, w in zip(arrays, want,
                                                                          strict=False)):
        raise ShippedModelError(
            f"{path} holds {len(arrays)} arrays that do not fit the model's {len(want)}; the "
            "file belongs to another architecture than its manifest describes.")
    model.set_weights([a.astype(w.dtype) for a, w in zip(arrays, want, strict=True)])
    _finish_loading(model)


# --------------------------------------------------------------------------------------
# Loading by name or run folder
# --------------------------------------------------------------------------------------


def names() -> list[str]:
    """The shipped models' names, sorted (folders of :data:`SHIPPED_DIR` with a manifest).

    Taught in notebooks/11_train_nuclei.
    """
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p.name for p in SHIPPED_DIR.iterdir() if (p / MANIFEST).is_file())


def read_manifest(name: str) -> dict:
    """The manifest of shipped model ``name`` (see the module docstring).

    Raises:
        ShippedModelError: no such model (names the ones there are).

    Taught in notebooks/11_train_nuclei.
    """
    path = SHIPPED_DIR / name / MANIFEST
    if not path.is_file():
        have = ", ".join(names()) or "none"
        raise ShippedModelError(f"no shipped model {name!r} (no {path}); shipped: {have}.")
    return json.loads(path.read_text())


@dataclasses.dataclass
class LoadedModel:
    """A trained model ready to predict: :meth:`labels` turns an image into instances.

    Attributes:
        name: the shipped model's name or the run folder.
        kind: ``"unet"`` or ``"maskrcnn"``.
        model: the Keras model the weights belong to (Mask R-CNN: the training model).
        manifest: the shipped manifest (``{}`` for a run folder).
        recipe: U-Net only, the :class:`~course_lib.models.unet_training.UNetRecipe`.
        inference: Mask R-CNN only, the inference model sharing ``model``'s layers.
        tiled: Mask R-CNN only, detect in native-scale windows.

    Taught in notebooks/11_train_nuclei.
    """

    name: str
    kind: str
    model: object
    manifest: dict
    recipe: object = None
    inference: object = None
    tiled: bool = False

    def detect(self, image: np.ndarray, min_score: float = 0.0) -> dict:
        """Mask R-CNN's detections of one image (boxes, class ids, scores, masks), those
        scoring below ``min_score`` left out."""
        if self.kind != "maskrcnn":
            raise ValueError(f"{self.name} is a U-Net: it predicts maps, not detections; use "
                             "labels() or maps().")
        from course_lib.models import maskrcnn
        from course_lib.models.tiled_detection import detect_tiled

        image = np.asarray(image)
        if self.tiled:
            return detect_tiled(self.inference, image, min_score=min_score)
        return maskrcnn.detect(self.inference, [image], min_score=min_score)[0]

    def maps(self, image: np.ndarray, views: int | None = None) -> np.ndarray:
        """The U-Net's ``H×W×K`` output maps (K = 1 probability, or 3 class probabilities),
        averaged over ``views`` mirrored/turned views (default: the recipe's ``test_views``;
        1 is up to 8 times faster)."""
        if self.kind != "unet":
            raise ValueError(f"{self.name} is a Mask R-CNN; use detect() or labels().")
        from course_lib.models import unet_training as ut

        return ut.predict_maps(self.model, np.asarray(image), self.recipe, views=views)

    def labels(self, image: np.ndarray, views: int | None = None) -> np.ndarray:
        """``H×W`` int32 instance labels of an ``H×W×3`` image, as the model was scored
        (U-Net: ``views`` as in :meth:`maps`; Mask R-CNN: no views, leave it ``None``)."""
        if self.kind == "unet":
            from course_lib.models import unet_training as ut

            return ut.predict_instances(self.model, np.asarray(image), self.recipe,
                                        views=views)
        if views is not None:
            raise ValueError(f"{self.name} is a Mask R-CNN: it predicts one view; drop views=.")
        from course_lib.ops.masks import MIN_SCORE_FOR_LABELS, detections_to_labels

        return detections_to_labels(self.detect(image, MIN_SCORE_FOR_LABELS),
                                    MIN_SCORE_FOR_LABELS)


def load(name_or_run: str | Path, verify: bool = True) -> LoadedModel:
    """A shipped model by name, or a training run folder, ready to predict.

    Args:
        name_or_run: a name of :func:`names`, or a folder written by ``python -m
            course_lib.train`` (holding ``model.json`` and ``final.weights.h5``).
        verify: check the shipped file's SHA-256 against its manifest first.

    Raises:
        ShippedModelError: unknown name, checksum mismatch, damaged or foreign weights, a run
            folder without a finished model; each message names the file and the fix.

    Taught in notebooks/11_train_nuclei.
    """
    folder = Path(name_or_run)
    if str(name_or_run) not in names() and folder.is_dir():
        return _load_run(folder)
    name = str(name_or_run)
    manifest = read_manifest(name)
    weights = SHIPPED_DIR / name / manifest.get("weights_file", WEIGHTS)
    if not weights.is_file():
        raise ShippedModelError(f"{weights} is missing; restore it (git checkout, or a fresh "
                                "clone with Git LFS off) or retrain with the manifest's command.")
    if verify:
        found = sha256(weights)
        if found != manifest["sha256"]:
            raise ShippedModelError(
                f"{weights} does not match its manifest: SHA-256 {found[:16]}… instead of "
                f"{manifest['sha256'][:16]}…. The file is damaged, truncated or was replaced; "
                "restore it from the repository (git checkout -- that file) or retrain with "
                "the command in the manifest.")
    model, parts = _build(manifest["architecture"])
    load_weights(model, weights)
    return LoadedModel(name, manifest["architecture"]["kind"], model, manifest, **parts)


def _load_run(run_dir: Path) -> LoadedModel:
    spec_path, weights = run_dir / MODEL_SPEC, run_dir / "final.weights.h5"
    if not spec_path.is_file():
        raise ShippedModelError(
            f"{run_dir} is not a run folder of python -m course_lib.train (no {MODEL_SPEC}); "
            f"pass a shipped model's name ({', '.join(names()) or 'none shipped'}) or a run "
            "folder.")
    if not weights.is_file():
        raise ShippedModelError(
            f"{run_dir} holds no finished model ({weights.name} is written when training "
            "completes); finish the run by running its training command again (it resumes).")
    spec = json.loads(spec_path.read_text())
    model, parts = _build(spec)
    try:
        model.load_weights(weights)
    except Exception as err:
        raise ShippedModelError(f"{weights} cannot be loaded into the model {spec_path} "
                                f"describes ({type(err).__name__}: {err}).") from err
    _finish_loading(model)
    return LoadedModel(str(run_dir), spec["kind"], model, {}, **parts)


def export(run_dir: str | Path, name: str, manifest: dict, float16: bool = True,
           root: str | Path | None = None) -> Path:
    """Ship a finished run as ``<root>/<name>/`` (weights.npz + manifest.json).

    ``manifest`` holds what the run cannot know about itself (command, commit, machine, wall
    time, image ids, scores); the architecture and the checksum are added here.

    Returns:
        The new model folder.

    Taught in notebooks/11_train_nuclei.
    """
    run_dir = Path(run_dir)
    loaded = _load_run(run_dir)
    folder = Path(root or SHIPPED_DIR) / name
    folder.mkdir(parents=True, exist_ok=True)
    stored = save_weights(loaded.model, folder / WEIGHTS, float16=float16)
    full = dict(manifest, name=name, weights_file=WEIGHTS, sha256=sha256(folder / WEIGHTS),
                weights_bytes=stored["bytes"], float16_arrays=stored["float16"],
                architecture=json.loads((run_dir / MODEL_SPEC).read_text()))
    (folder / MANIFEST).write_text(json.dumps(full, indent=1) + "\n")
    return folder
