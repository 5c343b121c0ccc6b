"""Batches of fixed shape for training: ``keras.utils.PyDataset`` over a sample provider.

Taught in notebooks/09_mask_rcnn (Mask R-CNN inputs), 10_unet and 11_train_nuclei.

A *sample provider* (see :mod:`course_lib.data.coco`) gives ``len(provider)`` and
``provider.load(i) -> (image H x W x 3 uint8, masks H x W x N bool, class_ids (N,) int32)``.
Nothing is preloaded: each batch reads its images when it is asked for, so an epoch over a
large folder needs the memory of a few batches only.

Models need fixed shapes, so each sample is brought to a square of side ``image_size``:

1. *resize keeping the aspect ratio*: ``scale = image_size / max(H, W)``, new size
   ``(round(H * scale), round(W * scale))``; bilinear for the image (anti-aliased when shrinking),
   nearest for the masks;
2. *zero-pad* to ``image_size x image_size``, centred. The image's place in the square is its
   *window* ``(y1, x1, y2, x2)``; a point ``p`` of the original image lands at
   ``p * scale + (y1, x1)``, so ``(p' - (y1, x1)) / scale`` undoes it
   (:func:`unresize_boxes`);
3. ground truth padded to ``max_instances`` rows with a count of the valid ones. An image with
   more instances keeps a random (seeded) subset and a warning names it.

Randomness (shuffling, augmentation, instance subsets) comes from generators seeded by
``(seed, epoch, sample index)``, so a batch depends only on its index and the epoch: the same
with or without worker threads, and the same on a rerun. ``on_epoch_end`` advances the epoch.
Use threads (``use_multiprocessing=False``); the work is NumPy/scikit-image, which releases
the GIL for much of it.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable

import keras
import numpy as np
from skimage.transform import resize as sk_resize

from course_lib.data.augment import Augmenter, label_boxes, stack_to_labels, tight_boxes
from course_lib.data.coco import (  # noqa: F401  (providers re-exported for convenience)
    CocoSamples,
    DsbFolderSamples,
    LabelFolderSamples,
    check_sample,
)
from course_lib.data.voc import VocSamples  # noqa: F401
from course_lib.ops.masks import masks_to_labels, minimize_masks

log = logging.getLogger(__name__)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample in one epoch; independent of call order and threads.

    Taught in notebooks/09_mask_rcnn.
    """
    return np.random.default_rng([int(seed), int(epoch), int(index), 7919])


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
    """Sample order of one epoch: a seeded permutation of ``range(n)`` (or ``arange`` unshuffled).

    Taught in notebooks/09_mask_rcnn.
    """
    if not shuffle:
        return np.arange(n)
    return np.random.default_rng([int(seed), int(epoch), 104729]).permutation(n)


def resize_nearest(masks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of ``H x W [x N]`` masks to ``shape``: each output pixel takes the
    source pixel under its centre (``(r + 0.5) * H / H' - 0.5`` rounded).

    Taught in notebooks/09_mask_rcnn.
    """
    h, w = masks.shape[:2]
    nh, nw = shape
    rows = np.clip(np.floor((np.arange(nh) + 0.5) * h / nh).astype(np.int64), 0, h - 1)
    cols = np.clip(np.floor((np.arange(nw) + 0.5) * w / nw).astype(np.int64), 0, w - 1)
    return masks[rows][:, cols]


def resize_and_pad(image: np.ndarray, masks: np.ndarray | None, image_size: int
                   ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, float]:
    """Resize keeping the aspect ratio so the longer side is ``image_size``, then zero-pad to a
    centred square.

    ``masks`` may be an ``H x W x N`` stack or an ``H x W`` label image (any dtype, resized by
    nearest neighbour, padded with 0).

    Returns:
        ``(image, masks, window, scale)``: ``S x S x C`` image (input dtype), ``S x S [x N]``
        masks of the input dtype (``None`` if none given), window ``(y1, x1, y2, x2)`` float32 of
        the image in the square, and the scale factor.

    Taught in notebooks/09_mask_rcnn.
    """
    h, w = image.shape[:2]
    scale = image_size / max(h, w)
    nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    if (nh, nw) == (h, w):
        resized = image
    elif image.dtype == np.uint8 and (image.ndim == 2 or image.shape[-1] in (1, 3, 4)):
        # Pillow's bilinear resize is a convolution whose support widens when shrinking, so it
        # anti-aliases, and it is ~20x faster than scikit-image on uint8 photos
        from PIL import Image

        squeeze = image.ndim == 3 and image.shape[-1] == 1
        pil = Image.fromarray(image[..., 0] if squeeze else image)
        resized = np.asarray(pil.resize((nw, nh), Image.Resampling.BILINEAR))
        resized = resized[..., None] if squeeze else resized
    else:
        resized = sk_resize(image.astype(np.float32), (nh, nw) + image.shape[2:], order=1,
                            preserve_range=True, anti_aliasing=scale < 1, mode="edge")
        resized = np.clip(np.rint(resized), 0, 255).astype(image.dtype) \
            if np.issubdtype(image.dtype, np.integer) else resized.astype(image.dtype)
    top, left = (image_size - nh) // 2, (image_size - nw) // 2
    out = np.zeros((image_size, image_size) + image.shape[2:], image.dtype)
    out[top:top + nh, left:left + nw] = resized
    window = np.array([top, left, top + nh, left + nw], np.float32)
    out_masks = None
    if masks is not None:
        m = resize_nearest(masks, (nh, nw)) if (nh, nw) != (h, w) else masks
        out_masks = np.zeros((image_size, image_size) + masks.shape[2:], masks.dtype)
        out_masks[top:top + nh, left:left + nw] = m
    return out, out_masks, window, float(scale)


def unresize_boxes(boxes: np.ndarray, window: np.ndarray, scale: float) -> np.ndarray:
    """Boxes of the padded square back in the original image's pixel-edge coordinates.

    Taught in notebooks/09_mask_rcnn.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    offset = np.array([window[0], window[1], window[0], window[1]], np.float32)
    return (boxes - offset) / scale


def parse_image_meta(meta: np.ndarray) -> dict[str, np.ndarray]:
    """Split ``image_meta`` rows ``(H, W, y1, x1, y2, x2, scale)`` of :class:`MaskRCNNDataset`.

    Returns:
        dict with ``original_shape`` ``(..., 2)`` int32, ``window`` ``(..., 4)`` float32 and
        ``scale`` ``(...)`` float32, for :func:`unresize_boxes` and for pasting detections back.

    Taught in notebooks/09_mask_rcnn.
    """
    meta = np.asarray(meta, np.float32)
    return {"original_shape": meta[..., :2].astype(np.int32), "window": meta[..., 2:6],
            "scale": meta[..., 6]}


def choose_instances(n: int, max_instances: int, rng: np.random.Generator,
                     name: str = "sample") -> np.ndarray:
    """Indices of the instances to keep: all when ``n <= max_instances``, else a random sorted
    subset of ``max_instances`` with a warning naming the image.

    Taught in notebooks/09_mask_rcnn.
    """
    if n <= max_instances:
        return np.arange(n)
    warnings.warn(f"{name}: {n} instances, more than max_instances={max_instances}; a random "
                  f"subset of {max_instances} is used (raise max_instances to keep all).",
                  stacklevel=3)
    return np.sort(rng.choice(n, size=max_instances, replace=False))


class _ProviderDataset(keras.utils.PyDataset):
    """Shared batching logic: epoch order, per-sample generators, augmentation."""

    def __init__(self, provider, batch_size: int, augmenter: Augmenter | None, shuffle: bool,
                 seed: int, drop_remainder: bool, workers: int, max_queue_size: int):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        if len(provider) == 0:
            raise ValueError("The sample provider is empty; check the dataset path and split.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.provider = provider
        self.batch_size = int(batch_size)
        self.augmenter = augmenter
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_remainder = drop_remainder
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.provider)
        if self.drop_remainder:
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch`` (e.g. when resuming training from a checkpoint)."""
        self.epoch = int(epoch)

    def batch_indices(self, index: int, epoch: int | None = None) -> np.ndarray:
        """Provider indices of batch ``index`` in ``epoch``; a short last batch is filled up by
        wrapping around, so every batch has ``batch_size`` samples."""
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        epoch = self.epoch if epoch is None else epoch
        order = epoch_order(len(self.provider), self.seed, epoch, self.shuffle)
        pos = np.arange(index * self.batch_size, (index + 1) * self.batch_size) % len(order)
        return order[pos]

    def name(self, sample: int) -> str:
        return self.provider.name(sample) if hasattr(self.provider, "name") else str(sample)

    def load(self, sample: int, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.random.Generator]:
        """Load (and augment) one sample; returns its generator for further draws."""
        image, masks, class_ids = self.provider.load(int(sample))
        check_sample(image, masks, class_ids, source=self.name(sample))
        rng = sample_rng(self.seed, epoch, sample)
        if self.augmenter is not None:
            out = self.augmenter(image, masks, class_ids, rng=rng)
            image, masks, class_ids = out.image, out.masks, out.class_ids
        return image, masks, class_ids, rng


class MaskRCNNDataset(_ProviderDataset):
    """Fixed-shape Mask R-CNN batches from a sample provider.

    Args:
        provider: sample provider (``len``, ``load(i)``, optionally ``name(i)``).
        batch_size: images per batch.
        image_size: side ``S`` of the padded square.
        max_instances: ground-truth rows per image ``M``.
        mini_mask_shape: ``(h, w)`` of the stored masks (each cropped to its box and resampled,
            float32 coverage in [0, 1]); ``None`` stores full ``S x S`` bool masks.
        augmenter: an :class:`~course_lib.data.augment.Augmenter` or ``None``.
        shuffle, seed: sample order per epoch (:func:`epoch_order`).
        drop_remainder: ``False`` fills the last batch up with samples from the start.
        workers: threads loading batches (``use_multiprocessing`` is always ``False``).

    ``ds[i]`` is a dict (Keras takes a dict as the model inputs, the losses live in the model):

    =================  ====================  =========================================
    key                shape                 meaning
    =================  ====================  =========================================
    ``images``         (B, S, S, 3) float32  pixel values 0..255, zero padding
    ``image_meta``     (B, 7) float32        original H, W, window y1, x1, y2, x2, scale
    ``gt_boxes``       (B, M, 4) float32     (y1, x1, y2, x2) pixel edges in the square
    ``gt_class_ids``   (B, M) int32          class ids, 0 in padding rows
    ``gt_masks``       (B, h, w, M) float32  mini-masks (or (B, S, S, M) bool full masks)
    ``gt_count``       (B,) int32            valid rows
    =================  ====================  =========================================

    Taught in notebooks/09_mask_rcnn.
    """

    def __init__(self, provider, batch_size: int = 2, image_size: int = 128,
                 max_instances: int = 100, mini_mask_shape: tuple[int, int] | None = (28, 28),
                 augmenter: Augmenter | None = None, shuffle: bool = True, seed: int = 0,
                 drop_remainder: bool = False, workers: int = 1, max_queue_size: int = 10):
        super().__init__(provider, batch_size, augmenter, shuffle, seed, drop_remainder,
                         workers, max_queue_size)
        self.image_size = int(image_size)
        self.max_instances = int(max_instances)
        self.mini_mask_shape = None if mini_mask_shape is None else tuple(mini_mask_shape)

    def sample(self, sample: int, epoch: int | None = None) -> dict[str, np.ndarray]:
        """One prepared sample (the rows of a batch), before stacking."""
        epoch = self.epoch if epoch is None else epoch
        image, masks, class_ids, rng = self.load(sample, epoch)
        h, w = image.shape[:2]
        n_in = masks.shape[-1]
        labels = stack_to_labels(masks) if n_in > 1 else None
        if labels is None:  # overlapping (or a single) instance: carry the mask stack
            image, masks, window, scale = resize_and_pad(image, masks, self.image_size)
            present = np.flatnonzero(masks.any(axis=(0, 1)))  # tiny ones vanish when shrinking
            keep = present[choose_instances(len(present), self.max_instances, rng,
                                            self.name(sample))]
            masks = masks[..., keep]
            boxes = tight_boxes(masks)
        else:  # the usual case: one label image instead of N masks, much less work
            image, labels, window, scale = resize_and_pad(image, labels, self.image_size)
            counts = np.bincount(labels.ravel(), minlength=n_in + 1)[1:n_in + 1]
            present = np.flatnonzero(counts)
            keep = present[choose_instances(len(present), self.max_instances, rng,
                                            self.name(sample))]
            boxes = label_boxes(labels, keep + 1)
        n, m, s = len(keep), self.max_instances, self.image_size
        out_boxes = np.zeros((m, 4), np.float32)
        ids = np.zeros(m, np.int32)
        out_boxes[:n] = boxes
        ids[:n] = class_ids[keep]
        if self.mini_mask_shape is None:
            out_masks = np.zeros((s, s, m), bool)
            out_masks[..., :n] = masks if labels is None else labels[..., None] == keep + 1
        else:
            out_masks = np.zeros(self.mini_mask_shape + (m,), np.float32)
            if labels is None and n:
                out_masks[..., :n] = minimize_masks(masks, boxes, self.mini_mask_shape)
            for k in range(n if labels is not None else 0):
                # each instance cut out of the label image at its box: no full-size stack
                y1, x1, y2, x2 = (int(v) for v in boxes[k])
                crop = labels[y1:y2, x1:x2, None] == keep[k] + 1
                out_masks[..., k] = minimize_masks(
                    crop, [[0, 0, y2 - y1, x2 - x1]], self.mini_mask_shape)[..., 0]
        meta = np.array([h, w, *window, scale], np.float32)
        return {"images": image.astype(np.float32), "image_meta": meta, "gt_boxes": out_boxes,
                "gt_class_ids": ids, "gt_masks": out_masks, "gt_count": np.int32(n)}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        epoch = self.epoch
        rows = [self.sample(int(i), epoch) for i in self.batch_indices(index, epoch)]
        return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


def uniform_weights(labels: np.ndarray) -> np.ndarray:
    """Default U-Net weight map: 1 everywhere (``H x W`` float32).

    Taught in notebooks/10_unet.
    """
    return np.ones(np.shape(labels)[:2], np.float32)


def foreground_target(labels: np.ndarray) -> np.ndarray:
    """Default U-Net target: ``H x W x 1`` float32, 1 on any instance.

    Taught in notebooks/10_unet.
    """
    return (np.asarray(labels) > 0).astype(np.float32)[..., None]


class UNetDataset(_ProviderDataset):
    """Fixed-shape U-Net batches ``(images, targets, weights)`` from a sample provider.

    Args:
        provider: sample provider.
        batch_size: tiles per batch.
        tile_size: side ``S`` of each tile.
        mode: ``"crop"`` takes a random (seeded) ``S x S`` crop at the original scale, mirroring
            images smaller than the tile (keeps nucleus sizes, as U-Net is trained); ``"resize"``
            resizes and pads like :class:`MaskRCNNDataset`.
        weight_fn: ``labels (H x W int32) -> H x W float32`` weight map of a tile, e.g.
            ``course_lib.ops.weight_map.weight_map``; default :func:`uniform_weights`.
        target_fn: ``labels -> H x W x C float32`` target; default :func:`foreground_target`.
        augmenter, shuffle, seed, drop_remainder, workers: as in :class:`MaskRCNNDataset`.

    ``ds[i]`` is ``(images (B, S, S, 3) float32 0..255, targets (B, S, S, C) float32,
    weights (B, S, S) float32)``, the ``(x, y, sample_weight)`` Keras ``fit`` expects. Weight
    maps and targets are computed on the final tile (after augmentation and cropping).

    Taught in notebooks/10_unet.
    """

    def __init__(self, provider, batch_size: int = 2, tile_size: int = 128, mode: str = "crop",
                 weight_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 target_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 augmenter: Augmenter | None = None, shuffle: bool = True, seed: int = 0,
                 drop_remainder: bool = False, workers: int = 1, max_queue_size: int = 10):
        super().__init__(provider, batch_size, augmenter, shuffle, seed, drop_remainder,
                         workers, max_queue_size)
        if mode not in ("crop", "resize"):
            raise ValueError(f"mode must be 'crop' or 'resize', got {mode!r}")
        self.tile_size = int(tile_size)
        self.mode = mode
        self.weight_fn = uniform_weights if weight_fn is None else weight_fn
        self.target_fn = foreground_target if target_fn is None else target_fn

    def _crop(self, image, labels, rng):
        s = self.tile_size
        h, w = labels.shape
        if h < s or w < s:  # mirror small images up to the tile size
            ph, pw = max(0, s - h), max(0, s - w)
            pad = ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2))
            image = np.pad(image, pad + ((0, 0),), mode="symmetric")
            labels = np.pad(labels, pad, mode="symmetric")
            h, w = labels.shape
        top = int(rng.integers(0, h - s + 1))
        left = int(rng.integers(0, w - s + 1))
        return image[top:top + s, left:left + s], labels[top:top + s, left:left + s]

    def sample(self, sample: int, epoch: int | None = None):
        """One ``(image, target, weights)`` tile."""
        epoch = self.epoch if epoch is None else epoch
        image, masks, _, rng = self.load(sample, epoch)
        labels = stack_to_labels(masks)
        if labels is None:  # overlapping instances: later masks win, as painting them in order
            labels = masks_to_labels(masks)
        if self.mode == "crop":
            image, labels = self._crop(image, labels, rng)
        else:
            image, labels, _, _ = resize_and_pad(image, labels, self.tile_size)
        target = np.asarray(self.target_fn(labels), np.float32)
        if target.ndim == 2:
            target = target[..., None]
        weights = np.asarray(self.weight_fn(labels), np.float32)
        return image.astype(np.float32), target, weights

    def __getitem__(self, index: int):
        epoch = self.epoch
        rows = [self.sample(int(i), epoch) for i in self.batch_indices(index, epoch)]
        return tuple(np.stack([r[k] for r in rows]) for k in range(3))


__all__ = ["MaskRCNNDataset", "UNetDataset", "resize_and_pad", "unresize_boxes", "parse_image_meta",
           "CocoSamples", "DsbFolderSamples", "LabelFolderSamples", "VocSamples",
           "resize_nearest", "choose_instances", "sample_rng", "epoch_order",
           "uniform_weights", "foreground_target"]
