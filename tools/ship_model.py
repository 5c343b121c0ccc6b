"""Ship a finished CPU-budget run as a course model: score it, write weights and manifest.

    python tools/ship_model.py RUN_DIR NAME --data STAGE1_TRAIN --command "..." \
        --commit SHA --started "YYYY-MM-DD HH:MM:SS" [--description TEXT] [--float32]

Scores the run's final weights by the DSB metric on the validation split of
``course_lib.training.recipes.nuclei_split`` (per image and per modality), the Otsu + watershed
baseline on the same images, and both on the eight demo images; stores the weights as float16
only when that moves the validation score by less than 0.005 (both scores are recorded); then
writes ``course_lib/shipped_models/NAME/`` through :func:`course_lib.shipped.export`. When the
run folder holds ``postprocessing.json`` (``tools/tune_unet_postprocessing.py --write``), how
those settings were chosen goes into the manifest too. A U-Net that averages several views
is also scored on the demo images with one view, the faster setting the notebooks use in quick
mode.

The training wall time is the final weights' modification time minus ``--started`` (when the
training command was launched, so decoding the images counts).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime
from pathlib import Path

import numpy as np


def machine_line() -> str:
    """The machine in one line: CPU model, widest vector extension, cores, OS, Keras and backend."""
    from course_lib import config

    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("flags")).split()
        isa = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    except (OSError, StopIteration):
        isa = "?"
    v = config.versions()
    return (f"{cpu} ({isa}), {os.cpu_count()} cores, {platform.system()}; "
            f"Keras {v.get('keras')} on {config.keras_backend()} {v.get(config.keras_backend())}")


def _scores(predict, samples) -> dict[str, float]:
    from course_lib.metrics import dsb_average_precision

    return {name: float(dsb_average_precision(truth, predict(image)))
            for name, image, truth in samples}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("name")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--command", required=True)
    p.add_argument("--commit", required=True)
    p.add_argument("--started", required=True)
    p.add_argument("--description", default="")
    p.add_argument("--float32", action="store_true", help="never store float16")
    args = p.parse_args()

    from course_lib import shipped
    from course_lib.data.demo import demo_samples
    from course_lib.models.classical import otsu_instances
    from course_lib.training.evaluate import folder_samples
    from course_lib.training.recipes import nuclei_folder, nuclei_split

    root, samples = nuclei_folder(args.data)
    train_dirs, val_dirs, modality = nuclei_split(samples)
    val = list(folder_samples(val_dirs))
    demo = list(folder_samples(demo_samples()))
    run = shipped.load(args.run_dir)
    t = time.perf_counter()
    val32 = _scores(run.labels, val)
    per_image_seconds = (time.perf_counter() - t) / len(val)
    otsu_val = _scores(otsu_instances, val)
    print(f"float32: val DSB {np.mean(list(val32.values())):.4f} "
          f"(Otsu {np.mean(list(otsu_val.values())):.4f}), {per_image_seconds:.2f} s/image")

    started = datetime.strptime(args.started, "%Y-%m-%d %H:%M:%S").timestamp()
    wall = (args.run_dir / "final.weights.h5").stat().st_mtime - started
    retrain = args.command.replace(str(args.data), "data/dsb2018/stage1_train").replace(
        str(args.run_dir), f"runs/{args.name}")
    manifest = {"description": args.description, "command": args.command,
                "retrain_command": retrain,
                "commit": args.commit, "machine": machine_line(), "wall_seconds": round(wall),
                "budget": "cpu", "train_ids": [d.name for d in train_dirs],
                "val_ids": [d.name for d in val_dirs], "split": "recipes.nuclei_split "
                "(stratified by modality, seed 0, 10 % validation)"}
    tuned = Path(args.run_dir) / "postprocessing.json"
    if tuned.is_file():   # chosen on training images by tools/tune_unet_postprocessing.py
        search = json.loads(tuned.read_text())
        manifest["postprocessing"] = {k: v for k, v in search.items() if k != "grid"}
    stored = run
    val16 = val32
    if not args.float32:   # score the float16 file itself, exactly as a learner will load it
        scratch = Path(args.run_dir) / "ship-float16"
        shipped.export(args.run_dir, args.name, manifest, float16=True, root=scratch)
        shipped_dir, shipped.SHIPPED_DIR = shipped.SHIPPED_DIR, scratch
        try:
            stored = shipped.load(args.name)
            val16 = _scores(stored.labels, val)
        finally:
            shipped.SHIPPED_DIR = shipped_dir
    d32, d16 = np.mean(list(val32.values())), np.mean(list(val16.values()))
    use16 = not args.float32 and abs(d16 - d32) < 0.005
    print(f"stored {'float16' if not args.float32 else 'float32'}: val DSB {d16:.4f} "
          f"({d16 - d32:+.4f}); shipping {'float16' if use16 else 'float32'}")
    halves = {} if args.float32 else {"val_dsb_float16": round(float(d16), 4)}
    final = val16 if use16 else val32
    stored_model = stored if use16 else run
    demo_scores = _scores(stored_model.labels, demo)
    otsu_demo = _scores(otsu_instances, demo)
    one_view = {}
    if getattr(stored_model.recipe, "test_views", 1) > 1:   # what a notebook in quick mode shows
        quick = _scores(lambda image: stored_model.labels(image, views=1), demo)
        one_view = {"demo_dsb_one_view": round(float(np.mean(list(quick.values()))), 4),
                    "demo_per_image_one_view": {k: round(v, 4) for k, v in quick.items()}}
    per_modality = {}
    for m in sorted(set(modality[n] for n in final)):
        names = [n for n in final if modality[n] == m]
        per_modality[m] = {"images": len(names),
                           "dsb": round(float(np.mean([final[n] for n in names])), 4),
                           "otsu": round(float(np.mean([otsu_val[n] for n in names])), 4)}
    manifest.update(
        weights_dtype="float16 where exact enough" if use16 else "float32",
        scores={"val_dsb": round(float(np.mean(list(final.values()))), 4),
                "val_dsb_float32": round(float(d32), 4), **halves,
                "otsu_val_dsb": round(float(np.mean(list(otsu_val.values()))), 4),
                "val_per_image": {k: round(v, 4) for k, v in final.items()},
                "demo_dsb": round(float(np.mean(list(demo_scores.values()))), 4),
                "otsu_demo_dsb": round(float(np.mean(list(otsu_demo.values()))), 4),
                "demo_per_image": {k: round(v, 4) for k, v in demo_scores.items()},
                **one_view,
                "seconds_per_val_image": round(per_image_seconds, 2)},
        per_modality=per_modality)
    folder = shipped.export(args.run_dir, args.name, manifest, float16=use16)
    print(json.dumps({k: v for k, v in json.loads((folder / shipped.MANIFEST).read_text())
                      .items() if k not in ("train_ids", "val_ids", "architecture")},
                     indent=1)[:3000])


if __name__ == "__main__":
    main()
