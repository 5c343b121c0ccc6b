"""The training command line: ``python -m course_lib.train nuclei --model unet --run-dir runs/a``.

Taught in notebooks/11_train_nuclei.

The same recipes (:mod:`course_lib.training.recipes`) and engine
(:func:`course_lib.training.train`) as the notebooks. Starting the command again with the same
``--run-dir`` resumes the run from its last good checkpoint. Bad arguments end with a
one-line error that says what to do, and exit code 2; a NaN loss ends with exit code 3.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DESCRIPTION = """\
Train U-Net or Mask R-CNN on nuclei (DSB 2018 layout), Pascal VOC 2012 or a COCO json.
Checkpoints, a CSV log and TensorBoard logs go to RUN_DIR; starting the same command again
resumes from the last good checkpoint (same epoch, batch, optimizer step and learning rate).
"""

EPILOG = """\
examples:
  python -m course_lib.train nuclei --model unet --mode quick --run-dir runs/unet
  python -m course_lib.train nuclei --model maskrcnn --mode full --run-dir runs/mrcnn \\
      --data data/dsb2018/stage1_train
  python -m course_lib.train voc --model maskrcnn --run-dir runs/voc --resume
  KERAS_BACKEND=jax python -m course_lib.train nuclei --model maskrcnn --run-dir runs/j
exit codes: 0 done, 2 bad arguments or data, 3 training stopped on a NaN/inf loss.
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
    p.add_argument("--run-dir", required=True, type=Path, metavar="DIR",
                   help="run folder for checkpoints and logs; an existing run there resumes")
    p.add_argument("--data", type=Path, default=None, metavar="PATH",
                   help="dataset folder (nuclei: stage1_train; voc: VOC2012) or COCO json; "
                        "default: the data found under COURSE_DATA / data/")
    p.add_argument("--resume", action="store_true",
                   help="require an existing run in --run-dir (error if there is none)")
    p.add_argument("--epochs", type=int, default=None,
                   help="override the number of epochs (all layers train throughout, no "
                        "heads-only stage)")
    p.add_argument("--steps-per-epoch", type=int, default=None, metavar="N",
                   help="override the batches per epoch")
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


def _fail(parser: argparse.ArgumentParser, message: str) -> None:
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, build the recipe, train (resuming), optionally evaluate.

    Returns the exit code (0 done, 2 bad arguments, 3 non-finite loss).

    Taught in notebooks/11_train_nuclei.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.mode:
        os.environ["COURSE_MODE"] = args.mode  # before anything reads the mode
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

    mode = config.mode()
    full = mode == "full"
    overrides = {k: v for k, v in (("epochs", args.epochs),
                                   ("steps_per_epoch", args.steps_per_epoch),
                                   ("learning_rate", args.learning_rate)) if v is not None}
    if args.epochs is not None:
        overrides["stages"] = ()  # an explicit epoch count trains every layer throughout
    for name in ("epochs", "steps_per_epoch", "checkpoint_every", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            _fail(parser, f"--{name.replace('_', '-')} must be at least 1, got {value}")
    overrides["checkpoint_every"] = args.checkpoint_every or (500 if full else None)
    overrides["mixed_precision"] = args.precision
    overrides["jit_compile"] = {"auto": "auto", "on": True, "off": False}[args.jit]
    overrides["verbose"] = 2 if args.quiet else 1
    workers = args.workers or (4 if full else 1)
    try:
        apply_precision(args.precision)  # before the data and model are built
        recipe = make_recipe(args.preset, args.model, mode, args.data, workers=workers,
                             **overrides)
    except (DataError, ValueError, FileNotFoundError) as err:
        _fail(parser, str(err))
    print(f"Training {recipe.name} ({mode} mode) on {recipe.data_root}")
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
    if args.evaluate:
        from course_lib.training import evaluate as ev

        if args.preset == "nuclei":
            samples = (ev.folder_samples(recipe.val_samples) if args.model == "unet"
                       else ev.provider_samples(recipe.val_samples))
            score = ev.evaluate_dsb(recipe.predictor(result.model), samples)
            print(f"DSB score on {len(samples)} validation images: {score['score']:.4f}")
        if recipe.detector is not None and recipe.val_samples is not None:
            names = recipe.extra["model_config"].class_names
            ap = ev.evaluate_coco(recipe.detector(result.model), recipe.val_samples, names)
            print(f"COCO AP on {len(recipe.val_samples)} validation images: mask "
                  f"{ap['segm']['AP']:.4f}, box {ap['bbox']['AP']:.4f}")
    if args.predict is not None:
        from course_lib.training.evaluate import predict_folder

        out = args.run_dir / "predictions"
        try:
            preds = predict_folder(
                recipe.predictor(result.model), args.predict, out / "labels",
                submission=out / "submission.csv" if args.preset == "nuclei" else None,
                coco_results=out / "coco_results.json")
        except FileNotFoundError as err:
            _fail(parser, str(err))
        print(f"Predictions for {len(preds)} images: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
