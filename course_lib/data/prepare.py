"""Make sure the course's datasets exist: real ones when present, synthetic look-alikes otherwise.

Taught in notebooks/01_data_tour.

``python -m course_lib.data.prepare`` prepares both datasets and prints what it did. Notebooks
call :func:`ensure_nuclei` / :func:`ensure_voc`, which never touch the network: real data is
used when it sits under :func:`course_lib.config.data_root` (see
``config.DATASET_LAYOUT``; ``python -m course_lib.data.download`` fetches it), otherwise a
deterministic synthetic set is generated once and reused.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from course_lib import config

log = logging.getLogger(__name__)


def _present(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def ensure_nuclei(n_images: int | None = None, seed: int = 0,
                  size=None) -> tuple[Path, str]:
    """``(path to a stage1_train folder, "real" | "synthetic")``.

    The real set at ``data_root()/dsb2018/stage1_train`` wins when present. Otherwise the
    synthetic set at ``data_root()/synthetic/nuclei/stage1_train`` is generated when missing
    (``n_images`` defaults to ``config.settings().n_synthetic_images``; ``size`` as in
    :func:`course_lib.data.synthetic.nuclei.make_nuclei`). An existing synthetic set is reused
    as it is; delete the folder to regenerate it with other settings.

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
    """The real dataset ``name`` when present, else its synthetic set (generated when missing).

    ``make(parent, n, **make_kwargs)`` writes the synthetic layout below ``parent``.
    """
    root = config.data_root()
    real_rel, synthetic_rel = config.DATASET_LAYOUT[name]
    real = root / real_rel
    if _present(real):
        return real, "real"
    synthetic = root / synthetic_rel
    if not _present(synthetic):
        n = config.settings().n_synthetic_images if n_images is None else n_images
        log.info("generating %d synthetic %s images in %s", n, name, synthetic)
        make(synthetic.parent, n, **make_kwargs)
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
    for name, ensure in (("nuclei", ensure_nuclei), ("voc", ensure_voc)):
        before = config.dataset_status()[name][0]
        path, source = ensure(args.n_images, args.seed)
        action = "found" if before == source else "generated"
        print(f"  {name}: {action} {source} data at {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
