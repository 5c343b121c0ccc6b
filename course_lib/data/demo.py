"""The eight real DSB 2018 stage-1 images shipped with the course (BBBC038, CC0).

Taught in notebooks/11_train_nuclei.

They sit in ``course_lib/demo_data/nuclei/`` in the original DSB layout, so every nuclei
loader reads them as it reads the full set (``README.md`` there lists their ids, modalities
and licence). All eight come from the validation split of
:func:`course_lib.training.recipes.nuclei_split`: the shipped models never saw them.
"""

from __future__ import annotations

from pathlib import Path

#: The folder of the demo samples (``<id>/images/<id>.png`` and ``<id>/masks/*.png``).
DEMO_NUCLEI = Path(__file__).resolve().parent.parent / "demo_data" / "nuclei"

#: Modality of each demo image, as :func:`course_lib.data.nuclei.guess_modality` finds it.
MODALITY = {
    "08275a5b1c2dfcd739e8c4888a5ee2d29f83eccfa75185404ced1dc0866ea992": "brightfield",
    "1f9e429c12f4477221b5b855a5f494fda2ef6d064ff75b061ffaf093e91758c5": "fluorescence",
    "28d33efef218392e79e385906deb88055d94b65ad217de78c07e85476f80f45a": "fluorescence",
    "4590d7d47f521df62f3bcb0bf74d1bca861d94ade614d8afc912d1009d607b94": "histology",
    "4d2cff9a0c8df3a7ef6100fda6f66e865a7670af6a18564767d8019b9ed2fd7b": "fluorescence",
    "6034456567632f4b48dc3dfbb98534b5953c151990f4235df6c912c0a9c08397": "fluorescence",
    "6b72b61b80060a9e79a4747f9c5d5af135af9db466681c2d1086f784c7130699": "fluorescence",
    "a08166d91d2cca263d2dd52764dc25c9c582b7a5ece2b802749fa4be33187c49": "histology",
}


def demo_nuclei_folder() -> Path:
    """The demo images' folder, a DSB ``stage1_train``-layout folder of 8 samples.

    Raises:
        FileNotFoundError: the package was installed without its data files.

    Taught in notebooks/11_train_nuclei.
    """
    if not DEMO_NUCLEI.is_dir():
        raise FileNotFoundError(f"{DEMO_NUCLEI} is missing: the course was installed without "
                                "its package data; reinstall with `make install`.")
    return DEMO_NUCLEI


def demo_samples() -> list[Path]:
    """The eight sample folders, sorted by id.

    Taught in notebooks/11_train_nuclei.
    """
    from course_lib.data.nuclei import index_samples

    return index_samples(demo_nuclei_folder())
