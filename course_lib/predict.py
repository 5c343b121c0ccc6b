"""``python -m course_lib.predict MODEL INPUT OUTPUT``: instances in a folder of images.

Taught in notebooks/11_train_nuclei.

MODEL is a shipped model's name (``--list`` prints them) or a run folder of
``python -m course_lib.train``. INPUT is a folder of image files or of DSB sample folders
(``<id>/images/<id>.png``). OUTPUT receives, for every readable input, ``<id>.png``: a 16-bit
label image at the input's full resolution (0 background, one positive id per instance);
then ``submission.csv`` (Kaggle's DSB run-length format) and ``coco_results.json`` (COCO
results, RLE masks; ``coco_results.image_ids.json`` maps its image ids to file ids). An
unreadable image is reported and skipped; the others are predicted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

EPILOG = """examples:
  python -m course_lib.predict --list
  python -m course_lib.predict unet-nuclei-cpu data/real_nuclei out/
  python -m course_lib.predict runs/my-run path/to/stage1_test out/
exit codes: 0 done (skipped images are listed), 2 bad arguments, model or input,
  130 interrupted (Ctrl-C).
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``--help`` documents every option).

    Taught in notebooks/11_train_nuclei.
    """
    p = argparse.ArgumentParser(prog="python -m course_lib.predict", epilog=EPILOG,
                                description=__doc__.split("\n\n")[1].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="a shipped model's name (see --list) or a training run folder")
    p.add_argument("input", nargs="?", type=Path, metavar="INPUT",
                   help="folder of images, or of DSB sample folders <id>/images/<id>.png")
    p.add_argument("output", nargs="?", type=Path, metavar="OUTPUT",
                   help="folder for the label PNGs, submission.csv and coco_results.json")
    p.add_argument("--list", action="store_true",
                   help="print the shipped models, one per line, name first, and exit")
    p.add_argument("--views", type=int, choices=(1, 4, 8), default=None,
                   help="U-Net only: mirrored/turned views averaged per image (default: the "
                        "model's own, 8 for unet-nuclei-cpu; 1 is up to 8 times faster)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.exit(2, f"{parser.prog}: error: {message}\n")


def list_models() -> list[str]:
    """One line per shipped model: name, kind, validation DSB score, what it was trained on.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib import shipped

    lines = []
    for name in shipped.names():
        m = shipped.read_manifest(name)
        score = m.get("scores", {}).get("val_dsb")
        lines.append(f"{name}\t{m['architecture']['kind']}\t"
                     f"DSB {score:.3f} on {len(m.get('val_ids', []))} validation images\t"
                     f"{m.get('description', '')}" if score is not None else name)
    return lines


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, load the model, predict the folder; returns the exit code.

    Taught in notebooks/11_train_nuclei.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_models()) or "no shipped models")
        return 0
    if args.model is None or args.input is None or args.output is None:
        _fail(parser, "MODEL, INPUT and OUTPUT are all needed (or --list).")
    try:
        return _predict(parser, args)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; the label images written so far are in "
              f"{args.output}.", file=sys.stderr)
        return 130


def _predict(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    from course_lib import shipped
    from course_lib.data.skips import describe_skips
    from course_lib.training.evaluate import image_files, predict_folder

    try:
        image_files(args.input)   # a bad INPUT fails before the model is built
    except FileNotFoundError as err:
        _fail(parser, str(err))
    if args.output.exists() and not args.output.is_dir():
        _fail(parser, f"OUTPUT {args.output} exists and is not a folder.")
    try:
        model = shipped.load(args.model)
    except shipped.ShippedModelError as err:
        _fail(parser, str(err))
    if args.views is not None and model.kind != "unet":
        _fail(parser, f"--views is for a U-Net; {args.model} is a {model.kind}.")
    out = args.output
    predict = model.labels if args.views is None else \
        (lambda image: model.labels(image, views=args.views))
    preds = predict_folder(predict, args.input, out, submission=out / "submission.csv",
                           coco_results=out / "coco_results.json", progress=not args.quiet)
    skipped = (f"; {describe_skips(preds.skipped, 'image')}, not predicted"
               if preds.skipped else "")
    print(f"{len(preds)} images predicted with {args.model}: label PNGs, submission.csv and "
          f"coco_results.json in {out}{skipped}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
