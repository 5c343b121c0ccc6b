"""The training command line: ``python -m course_lib.train nuclei --model unet --run-dir runs/a``.

Taught in notebooks/11_train_nuclei.

The same recipes (:mod:`course_lib.training.recipes`) and engine
(:func:`course_lib.training.train`) as the notebooks. Starting the command again with the same
``--run-dir`` resumes the run from its last good checkpoint. Bad arguments end with a
one-line error that says what to do, and exit code 2; a NaN loss ends with exit code 3;
Ctrl-C ends with one line naming the last checkpoint (the same command resumes from it) and
exit code 130. One unreadable file does not end the command: validation, ``--evaluate`` and
``--predict`` skip it and name it, as training does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import NoReturn

DESCRIPTION = """\
Train U-Net or Mask R-CNN on nuclei (DSB 2018 layout), Pascal VOC 2012 or a COCO json.
Checkpoints, a CSV log and TensorBoard logs go to RUN_DIR; starting the same command again
resumes from the last good checkpoint (same epoch, batch, optimizer step and learning rate).
A run keeps the length it started with (--epochs, --steps-per-epoch): to train longer, use a
new RUN_DIR. If no checkpoint in RUN_DIR is usable any more, the command stops instead of
starting over on top of the old run: to start afresh, use a new RUN_DIR (or delete the old
one). Temporary files that a killed checkpoint write left behind are deleted at the next start.
"""

EPILOG = """\
examples:
  python -m course_lib.train nuclei --model unet --mode quick --run-dir runs/unet
  python -m course_lib.train nuclei --model maskrcnn --mode full --run-dir runs/mrcnn \\
      --data data/dsb2018/stage1_train
  python -m course_lib.train voc --model maskrcnn --run-dir runs/voc --resume
  python -m course_lib.train nuclei --model unet --budget cpu --run-dir runs/unet-cpu \
      --data data/dsb2018/stage1_train --evaluate     # the shipped U-Net: about an hour
  python -m course_lib.train voc --model maskrcnn --budget cpu --augment article \
      --run-dir runs/voc-cpu-article          # notebook 12's recorded run with augmentation
  python -m course_lib.train nuclei --model maskrcnn --budget cpu --modality histology \
      --init maskrcnn-nuclei-cpu --epochs 12 --run-dir runs/histology-finetuned \
      --data data/dsb2018/stage1_train --evaluate   # notebook 12's transfer run
  KERAS_BACKEND=jax python -m course_lib.train nuclei --model maskrcnn --run-dir runs/j
exit codes: 0 done, 2 bad arguments or data, 3 training stopped on a NaN/inf loss,
  130 interrupted (Ctrl-C; the same command resumes from the last checkpoint).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` documents every option).

    Taught in notebooks/11_train_nuclei.
    """
    p = argparse.ArgumentParser(prog="python -m course_lib.train", description=DESCRIPTION,
                                epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset", choices=("nuclei", "voc", "coco"), metavar="PRESET",
                   help="dataset preset: nuclei (DSB 2018 layout), voc (Pascal VOC 2012) or "
                        "coco (a COCO instances json given with --data)")
    p.add_argument("--model", choices=("maskrcnn", "unet"), default="maskrcnn",
                   help="model to train (default maskrcnn; unet for nuclei only)")
    p.add_argument("--mode", choices=("quick", "full"), default=None,
                   help="quick: small images and few steps (CPU); full: real training. "
                        "Default: COURSE_MODE, else full when a GPU is visible")
    p.add_argument("--budget", choices=("cpu",), default=None,
                   help="a named training budget instead of the mode's sizes: cpu = the "
                        "shipped models' recipe, about an hour on a 2-core CPU, on real "
                        "DSB images (see notebook 11); for voc, notebook 12's recorded "
                        "overfitting runs (128-px model, 100 short epochs)")
    p.add_argument("--augment", choices=("none", "article"), default="none",
                   help="voc and coco: article = the VOC article's augmentation of every "
                        "training image (flip, crop, affine, blur, contrast, brightness); "
                        "default none")
    p.add_argument("--modality", choices=("fluorescence", "histology", "brightfield"),
                   default=None, help="nuclei Mask R-CNN: train and validate on the images "
                                      "of this modality only (the split stays notebook 11's)")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="Mask R-CNN: start from this model's weights (a shipped model's name, "
                        "see python -m course_lib.predict --list, or a run folder), copied "
                        "wherever variable path and shape match: fine-tuning")
    p.add_argument("--run-dir", required=True, type=Path, metavar="DIR",
                   help="run folder for checkpoints and logs; an existing run there resumes (a new "
                        "folder starts afresh)")
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="dataset folder (nuclei: stage1_train; voc: VOC2012) or COCO json; "
                        "default: the data found under COURSE_DATA / data/")
    p.add_argument("--resume", action="store_true",
                   help="require an existing run in --run-dir (error if there is none)")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the number of epochs (all layers train throughout, no "
                        "heads-only stage); fixed when the run starts: resuming with "
                        "another value is refused")
    p.add_argument("--steps-per-epoch", type=int, default=None, metavar="N",
                   help="override the batches per epoch (fixed when the run starts, like "
                        "--epochs)")
    p.add_argument("--learning-rate", type=float, default=None, metavar="LR",
                   help="override the base learning rate")
    p.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS optimizer steps (default: every epoch "
                        "only in quick mode, every 500 steps in full mode)")
    p.add_argument("--workers", type=int, default=None,
                   help="data loading threads (default 1 in quick mode, 4 in full mode)")
    p.add_argument("--precision", choices=("auto", "float32", "mixed_bfloat16",
                                           "mixed_float16"), default="auto",
                   help="auto: mixed_bfloat16 on a GPU, float32 on CPU; mixed_float16 adds "
                        "dynamic loss scaling")
    p.add_argument("--jit", choices=("auto", "on", "off"), default="auto",
                   help="XLA compilation (auto: on for GPUs and JAX, off for TF on CPU)")
    p.add_argument("--devices", default=None, metavar="LIST",
                   help="comma-separated devices to train on in data parallel, e.g. "
                        "/gpu:0,/gpu:1 (TensorFlow) or cuda:0,cuda:1 (JAX); default: every "
                        "visible GPU (one device: no distribution). The batch size is the "
                        "global batch, split between the devices")
    p.add_argument("--evaluate", action="store_true",
                   help="after training, score the validation split (DSB score for nuclei)")
    p.add_argument("--predict", type=Path, default=None, metavar="FOLDER",
                   help="after training, predict every image in FOLDER (image files or DSB "
                        "sample folders): label PNGs, a Kaggle submission CSV (nuclei) and "
                        "COCO results json under RUN_DIR/predictions")
    p.add_argument("--quiet", action="store_true", help="one line per epoch, no progress bar")
    return p


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    """Exit with code 2 and ``message`` as the one line on stderr (``parser.error`` would
    print the usage too)."""
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def _check_numbers(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse counts below 1 and a learning rate that is not a positive finite number.

    ``float("nan")`` and ``float("inf")`` parse, and a negative rate is a number too: each
    would be accepted and only show as a NaN loss steps later (or, negative, as a loss that
    climbs), after the model was built and the data read.
    """
    for name in ("epochs", "steps_per_epoch", "checkpoint_every", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            _fail(parser, f"--{name.replace('_', '-')} must be at least 1, got {value}")
    lr = args.learning_rate
    if lr is not None and not (math.isfinite(lr) and lr > 0):
        _fail(parser, f"--learning-rate must be a positive finite number, got {lr}; pass e.g. "
                      "--learning-rate 0.001, or leave it out to use the recipe's rate.")


def _probe_write(folder: Path) -> None:
    """Create and delete a temporary file in ``folder``: raises ``OSError`` if it cannot."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def _check_run_dir(parser: argparse.ArgumentParser, run_dir: Path) -> None:
    """Refuse a ``--run-dir`` that cannot hold a run, before anything is built or read.

    A file in the way (the path itself, or one of its parents) or a folder that cannot be
    written (read-only, another user's) would otherwise end the run with a traceback when the
    first file is written. A folder that does not exist yet is checked at the nearest parent
    that does, and is not created here (the run creates it).
    """
    if run_dir.exists() and not run_dir.is_dir():
        _fail(parser, f"--run-dir {run_dir} is a file, not a folder; pass a folder path (a new "
                      "folder starts a run, an existing run folder resumes it).")
    base = run_dir
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        _fail(parser, f"--run-dir {run_dir} cannot be created: {base} is a file; choose "
                      "another path.")
    try:
        _probe_write(base)
    except OSError as err:
        _fail(parser, f"--run-dir {run_dir} cannot be written ({base}: "
                      f"{err.strerror or err}); choose a folder you can write to, or fix its "
                      "permissions.")


def _under(path, folder: Path) -> bool:
    """Whether ``path`` (a file name from an ``OSError``, maybe ``None``) lies in ``folder``."""
    if not path:
        return False
    try:
        Path(path).resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True


def _interrupted(parser: argparse.ArgumentParser, run_dir: Path) -> int:
    """Ctrl-C: one line saying where the run stands and how to go on; exit code 130.

    130 is 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C. Keras and
    TensorFlow would print a long traceback through their internals instead, which hides
    the one thing a learner needs: the checkpoint is safe and the same command resumes.
    """
    from course_lib.training.checkpoints import CheckpointError, CheckpointManager

    ckpt = None
    if (run_dir / "checkpoints").is_dir():
        try:
            ckpt = CheckpointManager(run_dir / "checkpoints").latest()
        except (CheckpointError, OSError):
            ckpt = None
    if ckpt is None:
        where = "no checkpoint was written yet; the same command starts the run again"
    elif ckpt.state.get("finished"):
        where = (f"training had finished ({ckpt.manifest}); the same command skips it and "
                 "redoes what comes after (--evaluate, --predict)")
    else:
        state = ckpt.state
        where = (f"the last checkpoint is {ckpt.manifest} (epoch {state['epoch'] + 1}, batch "
                 f"{state['batch'] + 1}, optimizer step {state['step']}); run the same command "
                 "to resume from it")
    sys.stdout.write("\n")  # end a progress bar's line
    sys.stdout.flush()
    print(f"{parser.prog}: interrupted: {where}", file=sys.stderr)
    return 130


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, build the recipe, train (resuming), optionally evaluate and predict.

    Returns the exit code (0 done, 2 bad arguments or data, 3 non-finite loss, 130
    interrupted by Ctrl-C).

    Taught in notebooks/11_train_nuclei.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _main(parser, args)
    except KeyboardInterrupt:
        return _interrupted(parser, args.run_dir)


def _main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    """The command after parsing: checks, recipe, training, then ``--evaluate`` and
    ``--predict``; returns the exit code (:func:`main` wraps it to catch Ctrl-C)."""
    _check_numbers(parser, args)
    _check_run_dir(parser, args.run_dir)
    from course_lib import config
    from course_lib.training import (
        NonFiniteLossError,
        RunFolderError,
        apply_precision,
        data_parallel,
        train,
    )
    from course_lib.training.checkpoints import CheckpointError
    from course_lib.training.recipes import DataError, make_recipe

    mode = args.mode or config.mode()   # passed down, never written into the environment
    full = mode == "full"
    overrides = {k: v for k, v in (("epochs", args.epochs),
                                   ("steps_per_epoch", args.steps_per_epoch),
                                   ("learning_rate", args.learning_rate)) if v is not None}
    if args.epochs is not None:
        overrides["stages"] = ()  # an explicit epoch count trains every layer throughout
    overrides["checkpoint_every"] = args.checkpoint_every or (
        500 if full else 200 if args.budget else None)
    overrides["mixed_precision"] = args.precision
    overrides["jit_compile"] = {"auto": "auto", "on": True, "off": False}[args.jit]
    overrides["verbose"] = 2 if args.quiet else 1
    workers = args.workers or (4 if full else 2 if args.budget else 1)
    if args.budget:
        overrides["budget"] = args.budget
    for option in ("augment", "modality", "init"):   # passed only when asked for
        if getattr(args, option) not in (None, "none"):
            overrides[option] = getattr(args, option)
    try:
        apply_precision(args.precision)  # before the data and model are built
        recipe = make_recipe(args.preset, args.model, mode, args.data, workers=workers,
                             **overrides)
    except (DataError, ValueError, FileNotFoundError) as err:
        _fail(parser, str(err))
    print(f"Training {recipe.name} ({f'{args.budget} budget' if args.budget else f'{mode} mode'})"
          f" on {recipe.data_root}")
    try:
        distribution = data_parallel(args.devices.split(",") if args.devices else None)
    except (ValueError, RuntimeError, NotImplementedError) as err:
        _fail(parser, f"--devices {args.devices}: {err}")
    try:
        result = train(recipe.build, recipe.train_data, args.run_dir, recipe.config,
                       val_data=recipe.val_data, loss=recipe.loss, model_name=recipe.name,
                       resume=True if args.resume else "auto", distribution=distribution)
    except (RunFolderError, CheckpointError) as err:
        _fail(parser, str(err))
    except NonFiniteLossError as err:
        print(f"{parser.prog}: stopped: {err}", file=sys.stderr)
        return 3
    except OSError as err:
        if not _under(err.filename, args.run_dir):
            raise
        _fail(parser, f"could not write {err.filename} ({err.strerror or err}); the run folder "
                      "must stay writable and its disk must have space. Fix that and run the "
                      "same command to resume from the last checkpoint.")
    from course_lib.shipped import write_model_spec

    write_model_spec(args.run_dir, recipe)  # what `predict RUN_DIR` needs to rebuild the model
    scored = _evaluate(parser, args, recipe, result.model) if args.evaluate else True
    if args.predict is not None:
        _predict(parser, args, recipe, result.model)
    return 0 if scored else 2


def _evaluate(parser: argparse.ArgumentParser, args: argparse.Namespace, recipe, model) -> bool:
    """``--evaluate``: the DSB score (nuclei) and COCO AP (Mask R-CNN) of the validation
    split. Unreadable samples are skipped and named; a split with none left gives a one-line
    error and ``False`` (exit code 2), after which ``--predict`` still runs."""
    from course_lib.data.skips import describe_skips
    from course_lib.training import evaluate as ev

    def skips(result: dict) -> str:
        return f" ({describe_skips(result['skipped'])})" if result["skipped"] else ""

    record = {}   # written to RUN_DIR/evaluation.json, so the run folder keeps its scores
    try:
        if args.preset == "nuclei":
            samples = (ev.folder_samples(recipe.val_samples) if args.model == "unet"
                       else ev.provider_samples(recipe.val_samples))
            score = ev.evaluate_dsb(recipe.predictor(model), samples)
            print(f"DSB score on {len(score['per_image'])} validation images: "
                  f"{score['score']:.4f}{skips(score)}")
            record["dsb"] = {"score": score["score"], "per_image": score["per_image"],
                             "skipped": [s._asdict() for s in score["skipped"]]}
        if recipe.detector is not None and recipe.val_samples is not None:
            names = recipe.extra["model_config"].class_names
            ap = ev.evaluate_coco(recipe.detector(model), recipe.val_samples, names)
            scored = len(recipe.val_samples) - len(ap["skipped"])
            print(f"COCO AP on {scored} validation images: mask {ap['segm']['AP']:.4f}, "
                  f"box {ap['bbox']['AP']:.4f}{skips(ap)}")
            record["coco"] = {"images": scored, "segm": ap["segm"], "bbox": ap["bbox"],
                              "skipped": [s._asdict() for s in ap["skipped"]]}
    except ValueError as err:  # no validation sample could be read
        print(f"{parser.prog}: error: --evaluate: {err}; the trained weights are in "
              f"{args.run_dir}.", file=sys.stderr)
        return False
    (args.run_dir / "evaluation.json").write_text(json.dumps(record, indent=1, default=float))
    return True


def _predict(parser: argparse.ArgumentParser, args: argparse.Namespace, recipe, model) -> None:
    """``--predict FOLDER``: label PNGs, a submission CSV (nuclei) and COCO results for every
    readable image of FOLDER; unreadable ones are skipped and named."""
    from course_lib.data.skips import describe_skips
    from course_lib.training.evaluate import predict_folder

    out = args.run_dir / "predictions"
    try:
        preds = predict_folder(
            recipe.predictor(model), args.predict, out / "labels",
            submission=out / "submission.csv" if args.preset == "nuclei" else None,
            coco_results=out / "coco_results.json")
    except (FileNotFoundError, ValueError) as err:
        _fail(parser, f"--predict: {err}")
    skipped = f" ({describe_skips(preds.skipped, 'image')}, not predicted)" \
        if preds.skipped else ""
    print(f"Predictions for {len(preds)} images: {out}{skipped}")


if __name__ == "__main__":
    sys.exit(main())
