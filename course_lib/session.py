"""The line every notebook prints first: mode, backend, devices and data, with the seeds set.

Taught in notebooks/00_start_here.

It reads every floor of the package (the mode and devices from :mod:`course_lib.config`, the
datasets from :mod:`course_lib.data.discovery`), so it lives at the top, apart from the
settings it reports.
"""

from __future__ import annotations

from course_lib import config
from course_lib.config import DEFAULT_SEED
from course_lib.data.discovery import dataset_status


def report(seed: int = DEFAULT_SEED, verbose: bool = False) -> dict[str, str]:
    """Seed everything and print one line a notebook shows first: mode, backend, data.

    With ``verbose=True`` (notebook 00) also print Python, library versions and devices.
    Returns the printed facts as a dict, so a notebook can ``assert`` on them.

    Taught in notebooks/00_start_here.
    """
    seeded = config.set_seed(seed)
    import keras

    facts = {
        "mode": config.mode(),
        "backend": keras.backend.backend(),
        "devices": ", ".join(config.gpu_devices()) or "CPU only",
    }
    for name, (source, path) in dataset_status().items():
        facts[f"data.{name}"] = source if path is None else f"{source} ({path})"
    print(f"Mode: {facts['mode']} | Keras backend: {facts['backend']} | "
          f"Devices: {facts['devices']}")
    print("Data: " + "; ".join(f"{k[5:]}: {v}" for k, v in facts.items() if k.startswith("data.")))
    if verbose:
        facts.update(config.versions())
        facts.update(seeded)
        print(f"  seed {seeded['seed']}; str hashing: {seeded['str hashing']}")
        for key in ("python", "numpy", "keras", "tensorflow", "jax", "torch", "skimage",
                    "pycocotools", "ipywidgets", "matplotlib"):
            print(f"  {key:<12} {facts.get(key, '-')}")
    return facts
