"""The sample contract: what every dataset hands to augmentation, batching and training.

Taught in notebooks/01_data_tour and 12_train_voc.

Bring your own data
-------------------
Everything downstream (augmentation, batching, training, metrics) consumes *samples*::

    image      H x W x 3 uint8 RGB
    masks      H x W x N bool, one instance per channel (N may be 0)
    class_ids  (N,) int32, 1..K (0 is reserved for the background)

through a *sample provider* (:class:`SampleProvider`): any object with ``len(provider)``,
``provider.load(i) -> (image, masks, class_ids)`` and ``provider.name(i) -> str``. A provider
*may* also offer ``provider.load_with_ignore(i) -> (image, masks, class_ids,
IgnoreRegions)``: the instances it could not hand over as ground truth (crowd regions,
unmapped categories, VOC objects without a class) as masks with a reason each, so the batching
pipeline counts them and carries their boxes as ignore regions instead of letting them
silently become background. ``load`` keeps its three return values, so callers and custom
providers without the method work unchanged. :func:`check_sample` validates a sample against
the contract with an error that names the sample.

Ready-made providers, one module per format: :class:`course_lib.data.coco.CocoSamples` (a
COCO json and its images), :class:`course_lib.data.voc.VocSamples` (Pascal VOC 2012),
:class:`course_lib.data.coco.DsbFolderSamples` (the DSB2018 layout,
``<root>/<id>/images/<id>.png`` and ``<root>/<id>/masks/*.png``, all class 1) and
:class:`course_lib.data.coco.LabelFolderSamples` (``images/<name>.png`` beside
``labels/<name>.png`` numbering the instances 1..N). :func:`course_lib.data.coco.open_dataset`
picks the right one for a path. The format modules import this one, never each other's
contract.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SampleProvider(Protocol):
    """What the data pipeline needs of a dataset (``load_with_ignore`` is optional).

    Taught in notebooks/12_train_voc.
    """

    def __len__(self) -> int: ...

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...

    def name(self, index: int) -> str: ...


class IgnoreRegions(NamedTuple):
    """Ground truth a provider could not hand over as instances, returned by
    ``load_with_ignore``.

    Attributes:
        masks: ``H×W×K`` bool, one region per lost annotation (the image's H and W).
        reasons: ``(K,)`` why each was lost: ``"crowd"``, ``"unmapped"`` (category not among
            the classes), ``"unclassed"`` (VOC object with no class in SegmentationClass).
        dropped: instances lost without any region to carry, by reason (e.g.
            ``{"empty_mask": 2}``); counted, never silent.

    Taught in notebooks/12_train_voc.
    """

    masks: np.ndarray
    reasons: tuple[str, ...]
    dropped: dict[str, int]

    @classmethod
    def none(cls, shape: tuple[int, int]) -> IgnoreRegions:
        """No ignore regions for an image of ``shape`` ``(H, W)``."""
        return cls(np.zeros(tuple(shape[:2]) + (0,), bool), (), {})


def check_sample(image: np.ndarray, masks: np.ndarray, class_ids: np.ndarray,
                 source: str = "sample") -> None:
    """Raise ``ValueError`` naming ``source`` unless the sample follows the data contract.

    The contract: image ``H x W x 3`` uint8; masks ``H x W x N`` bool with the image's H and W;
    class_ids ``(N,)`` integers >= 1.

    Taught in notebooks/12_train_voc.
    """
    image, masks, class_ids = np.asarray(image), np.asarray(masks), np.asarray(class_ids)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{source}: image must be H x W x 3 uint8, got {image.shape} "
                         f"{image.dtype}; read it with course_lib.data.io.read_image.")
    if masks.ndim != 3 or masks.dtype != bool or masks.shape[:2] != image.shape[:2]:
        raise ValueError(f"{source}: masks must be H x W x N bool matching the image "
                         f"{image.shape[:2]}, got {masks.shape} {masks.dtype}.")
    if class_ids.ndim != 1 or class_ids.shape[0] != masks.shape[-1] or (
            class_ids.size and not np.issubdtype(class_ids.dtype, np.integer)):
        raise ValueError(f"{source}: class_ids must be ({masks.shape[-1]},) integers, one per "
                         f"mask; got {class_ids.shape} {class_ids.dtype}.")
    if class_ids.size and class_ids.min() < 1:
        raise ValueError(f"{source}: class ids must be >= 1 (0 is the background); "
                         f"got {class_ids.min()}.")
