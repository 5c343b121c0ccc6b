"""Choose how a three-class U-Net's probabilities become instances, on training images only.

    python tools/tune_unet_postprocessing.py RUN_DIR --data STAGE1_TRAIN [--images 40]
        [--views 8] [--write]

The U-Net's maps do not change here, only the few numbers that turn them into nuclei
(:func:`course_lib.ops.watershed.instances_from_three_class`): the background probability below
which a pixel belongs to a nucleus (``foreground_threshold``), the interior probability a seed
pixel needs (``interior_threshold``), the smallest instance kept (``min_size``), and how many
mirrored and turned views of each image are averaged (``test_views``). Every setting is scored
by the DSB metric on ``--images`` of the run's *training* images (every k-th of the split's
training ids), never on the validation split, so the validation score that
``tools/ship_model.py`` records afterwards is still a held-out figure.

Prints every setting's score, best last. ``--write`` stores the best setting in the run's
``model.json`` (the recipe the run folder and a shipped copy load with) and the whole search
in ``postprocessing.json`` beside it, which ``tools/ship_model.py`` copies into the manifest.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import numpy as np

#: The grid searched (the CPU budget's defaults are one of its points).
GRID = {"foreground_threshold": (None, 0.4, 0.35, 0.3, 0.25),
        "interior_threshold": (0.5, 0.4, 0.3),
        "min_size": (10, 20, 30, 40, 50)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--images", type=int, default=40, help="training images to score on")
    p.add_argument("--views", type=int, default=8, choices=(1, 4, 8),
                   help="test-time views averaged (1, 4 mirrors, 8 mirrors and turns)")
    p.add_argument("--write", action="store_true",
                   help="store the best setting in RUN_DIR/model.json")
    args = p.parse_args()

    from tqdm.auto import tqdm

    from course_lib import shipped
    from course_lib.metrics import dsb_average_precision
    from course_lib.models import unet_training as ut
    from course_lib.ops.watershed import instances_from_three_class
    from course_lib.training.evaluate import folder_samples
    from course_lib.training.recipes import nuclei_folder, nuclei_split

    run = shipped.load(args.run_dir)
    if run.kind != "unet" or run.recipe.target != "three_class":
        raise SystemExit(f"{args.run_dir}: only a three-class U-Net has these settings")
    _, samples = nuclei_folder(args.data)
    train_dirs, _, _ = nuclei_split(samples)
    every = max(1, len(train_dirs) // args.images)
    chosen = train_dirs[::every][:args.images]
    recipe = dataclasses.replace(run.recipe, test_views=args.views)
    maps, truths = [], []
    start = time.perf_counter()
    for _, image, truth in tqdm(folder_samples(chosen), total=len(chosen), desc="maps",
                                unit="image"):
        maps.append(ut.predict_maps(run.model, image, recipe))
        truths.append(truth)
    seconds = (time.perf_counter() - start) / max(len(maps), 1)

    def score(fg, seed, size) -> dict:
        scores = [dsb_average_precision(t, instances_from_three_class(
            m, min_size=size, interior_threshold=seed, foreground_threshold=fg))
            for m, t in zip(maps, truths, strict=True)]
        return {"foreground_threshold": fg, "interior_threshold": seed, "min_size": size,
                "train_dsb": round(float(np.mean(scores)), 4)}

    results = sorted((score(*point) for point in itertools.product(*GRID.values())),
                     key=lambda r: r["train_dsb"])
    for r in results:
        print(f"foreground {str(r['foreground_threshold']):>4}  interior "
              f"{r['interior_threshold']:.2f}  min_size {r['min_size']:>3}:  "
              f"DSB {r['train_dsb']:.4f}")
    best = results[-1]
    # the run's own setting, scored the same way (it need not be a grid point)
    before = score(run.recipe.foreground_threshold, run.recipe.interior_threshold,
                   run.recipe.min_size)
    print(f"{len(chosen)} training images, {args.views} views ({seconds:.1f} s/image): the "
          f"run's setting scores {before['train_dsb']:.4f}, the best {best['train_dsb']:.4f}")
    if args.write:
        spec_path = args.run_dir / shipped.MODEL_SPEC
        spec = json.loads(spec_path.read_text())
        spec["unet_recipe"].update(test_views=args.views, **{k: best[k] for k in GRID})
        spec_path.write_text(json.dumps(spec, indent=1) + "\n")
        record = {"command": "python tools/tune_unet_postprocessing.py " + " ".join(
                      [str(args.run_dir), "--data", str(args.data), "--images",
                       str(args.images), "--views", str(args.views), "--write"]),
                  "training_images": [d.name for d in chosen], "views": args.views,
                  "chosen": {k: best[k] for k in GRID}, "chosen_train_dsb": best["train_dsb"],
                  "before": {k: before[k] for k in GRID},
                  "before_train_dsb": before["train_dsb"], "grid": results}
        (args.run_dir / "postprocessing.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"wrote the best setting to {spec_path} and the search to "
              f"{args.run_dir / 'postprocessing.json'}")


if __name__ == "__main__":
    main()
