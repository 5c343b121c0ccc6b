"""Make sure the course's datasets exist: real ones when present, synthetic look-alikes otherwise.

Taught in notebooks/01_data_tour.

``python -m course_lib.data.prepare`` prepares both datasets and prints what it did. Notebooks
call :func:`ensure_nuclei` / :func:`ensure_voc`, which never touch the network: real data is
used when it sits under :func:`course_lib.config.data_root` (see
``discovery.DATASET_LAYOUT``; ``python -m course_lib.data.download`` fetches it), otherwise a
deterministic synthetic set is generated once and reused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from course_lib import config
from course_lib.data import discovery

log = logging.getLogger(__name__)


def _present(path: Path) -> bool:
    """A real dataset folder is present when it is not empty: the downloader renames its folders
    into place only once complete (and marked), and a copy you made yourself has no marker."""
    return path.is_dir() and any(path.iterdir())


def ensure_nuclei(n_images: int | None = None, seed: int = 0,
                  size=None) -> tuple[Path, str]:
    """``(path to a stage1_train folder, "real" | "synthetic")``.

    The real set at ``data_root()/dsb2018/stage1_train`` wins when present. Otherwise the
    synthetic set at ``data_root()/synthetic/nuclei/stage1_train`` is generated when missing
    (``n_images`` defaults to ``config.settings().n_synthetic_images``; ``size`` as in
    :func:`course_lib.data.synthetic.nuclei.make_nuclei`). An existing synthetic set is reused
    only when its completion marker says it was made with the same number of images, seed and
    size; an unmarked (interrupted) set or one made for other settings (e.g. quick mode's 24
    images when full mode wants 600) is regenerated.

    Taught in notebooks/01_data_tour.
    """
    from course_lib.data.synthetic.nuclei import make_nuclei

    return _ensure("nuclei", make_nuclei, n_images, seed=seed, size=size)


def ensure_voc(n_images: int | None = None, seed: int = 0) -> tuple[Path, str]:
    """``(path to a VOC2012 folder, "real" | "synthetic")``, generating the synthetic set with
    :func:`course_lib.data.synthetic.make_voc` under ``data_root()/synthetic/voc`` when no real
    ``VOCdevkit/VOC2012`` is present (``n_images`` defaults to
    ``config.settings().n_synthetic_images``).

    Taught in notebooks/01_data_tour.
    """
    from course_lib.data.synthetic import make_voc

    return _ensure("voc", make_voc, n_images, seed=seed)


def _ensure(name: str, make, n_images: int | None, **make_kwargs) -> tuple[Path, str]:
    """The real dataset ``name`` when present, else its synthetic set (generated when missing,
    unmarked, or made for other settings).

    ``make(parent, n, **make_kwargs)`` writes the synthetic layout below ``parent`` and marks it
    complete last. A set is reused only when its marker records the same generator, number of
    images, seed and size (:func:`course_lib.data.synthetic.spec.spec_matches`); otherwise it is
    regenerated in a temporary sibling folder that replaces the old one only once complete, so
    a reader never sees half a set.
    """
    import os
    import shutil

    from course_lib.data.marker import read_marker
    from course_lib.data.synthetic.spec import spec_matches, synthetic_spec

    root = config.data_root()
    real_rel, synthetic_rel = discovery.DATASET_LAYOUT[name]
    real = root / real_rel
    if _present(real):
        return real, "real"
    synthetic = root / synthetic_rel
    n = config.settings().n_synthetic_images if n_images is None else n_images
    wanted = synthetic_spec(make.__name__, n, make_kwargs.get("seed", 0),
                            make_kwargs.get("size"))
    recorded = read_marker(synthetic)
    if spec_matches(recorded, wanted):
        return synthetic, "synthetic"
    parent = synthetic.parent  # e.g. data/synthetic/nuclei, holding stage1_train
    if recorded is None and _present(synthetic):
        log.warning("%s: no completion marker (interrupted, or made by an older version); "
                    "regenerating it", synthetic)
    elif recorded is not None:
        log.warning("%s was made for %s, not %s; regenerating it", synthetic,
                    {k: recorded.get(k) for k in ("n_images", "seed", "size", "mode")},
                    {k: wanted[k] for k in ("n_images", "seed", "size", "mode")})
    log.info("generating %d synthetic %s images in %s", n, name, synthetic)
    tmp = parent.with_name(f".{parent.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        make(tmp, n, **make_kwargs)
        old = parent.with_name(f".{parent.name}.old-{os.getpid()}")
        if parent.exists():
            os.replace(parent, old)
        try:
            os.replace(tmp, parent)
        except OSError:  # another process put its set in place meanwhile
            if not spec_matches(read_marker(synthetic), wanted):
                raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return synthetic, "synthetic"


def main(argv: list[str] | None = None) -> int:
    """Prepare both datasets and print where they are.

    Taught in notebooks/01_data_tour.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, default=None,
                        help="synthetic images per dataset (default: from the course mode)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(f"Data root: {config.data_root()} (mode {config.mode()})")
    from course_lib.data.marker import read_marker

    for name, ensure in (("nuclei", ensure_nuclei), ("voc", ensure_voc)):
        source_before, path_before = discovery.dataset_status()[name]
        marker_before = read_marker(path_before) if path_before is not None else None
        path, source = ensure(args.n_images, args.seed)
        unchanged = source == source_before and (source == "real" or
                                                 read_marker(path) == marker_before)
        action = "found" if unchanged else "generated"
        print(f"  {name}: {action} {source} data at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
