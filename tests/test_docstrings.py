"""Every public function and class of ``course_lib`` names the notebook that teaches it.

Convention (borrowed from d2l): library code is tied to its lesson by a docstring line
``Taught in notebooks/NN_topic.``, and ``NN_topic`` must be a chapter of the course map.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import course_lib

COURSE_MAP = (
    "00_start_here",
    "01_data_tour",
    "02_metrics",
    "03_convolution",
    "04_resnet",
    "05_fpn",
    "06_anchors_and_rpn",
    "07_roi_pool_vs_roi_align",
    "08_heads_and_losses",
    "09_mask_rcnn",
    "10_unet",
    "11_train_nuclei",
    "12_train_voc",
)

TAUGHT = re.compile(r"Taught in notebooks/(\d\d_[a-z_]+)")
REFERENCE = re.compile(r"notebooks/(\d\d_[a-z_]*[a-z])")


def _modules():
    yield course_lib
    for info in pkgutil.walk_packages(course_lib.__path__, "course_lib."):
        yield importlib.import_module(info.name)


def _public_objects():
    """``(qualified name, object)`` for every public function and class defined in course_lib."""
    for mod in _modules():
        for name, obj in vars(mod).items():
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) != mod.__name__:
                continue
            yield f"{mod.__name__}.{name}", obj


def test_walk_finds_objects():
    names = {name for name, _ in _public_objects()}
    assert len(names) > 100
    assert "course_lib.ops.boxes.iou" in names


def test_every_public_object_names_its_notebook():
    missing = [name for name, obj in _public_objects()
               if not TAUGHT.search(inspect.getdoc(obj) or "")]
    assert not missing, (
        f"{len(missing)} public functions/classes lack a 'Taught in notebooks/NN_topic.' "
        "docstring line:\n  " + "\n  ".join(missing))


def test_referenced_notebooks_are_on_the_course_map():
    unknown = []
    for name, obj in _public_objects():
        for ref in REFERENCE.findall(inspect.getdoc(obj) or ""):
            if ref not in COURSE_MAP:
                unknown.append(f"{name}: notebooks/{ref}")
    for mod in _modules():
        for ref in REFERENCE.findall(mod.__doc__ or ""):
            if ref not in COURSE_MAP:
                unknown.append(f"{mod.__name__} (module): notebooks/{ref}")
    assert not unknown, ("docstrings reference notebooks that are not on the course map:\n  "
                         + "\n  ".join(unknown))
