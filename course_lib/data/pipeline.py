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
   (:mod:`course_lib.ops.geometry`, shared with the model, which pastes its detections back);
3. ground truth padded to ``max_instances`` rows with a count of the valid ones. An image with
   more instances keeps a random (seeded) subset and a warning names it; the boxes of the
   others become *ignore boxes* (``gt_ignore_boxes``, ``gt_ignore_count``), as do the regions a
   provider reports through ``load_with_ignore`` (crowd, unmapped, unclassed), so the model
   treats anchors on them as neither object nor background instead of teaching "background".

Nothing lost, nothing silent. One bad file must not end a long training run: a sample whose
loading raises one of :data:`SKIPPABLE_ERRORS` (unreadable or missing file, a sample breaking
the data contract) is skipped, logged with its name and reason, counted per epoch
(:meth:`MaskRCNNDataset.skip_summary`) and replaced by the next sample of the epoch order, so
batch shapes stay fixed and a batch still depends only on (seed, epoch, index). Instances lost
on the way are counted per reason (:data:`DROP_REASONS`, :meth:`MaskRCNNDataset.drop_summary`)
and logged. Too many skips in one epoch (``max_skip_fraction``) raise: that is no longer one
bad file but a broken dataset.

Randomness (shuffling, augmentation, instance subsets) comes from generators seeded by
``(seed, epoch, sample index)``, so a batch depends only on its index and the epoch: the same
with or without worker threads, and the same on a rerun. ``on_epoch_end`` advances the epoch.
Use threads (``use_multiprocessing=False``); the work is NumPy/scikit-image, which releases
the GIL for much of it.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Callable

import keras
import numpy as np

from course_lib.data.augment import Augmenter
from course_lib.data.samples import check_sample
from course_lib.data.skips import SKIPPABLE_ERRORS, skip_reason
from course_lib.ops.geometry import image_meta, resize_and_pad
from course_lib.ops.masks import (
    disjoint_masks_to_labels,
    labels_to_boxes,
    labels_to_masks,
    masks_to_boxes,
    masks_to_labels,
    minimize_masks,
)
from course_lib.ops.padding import mirror_pad

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


#: Why instances of a sample are lost on the way to the batch (keys of ``drop_summary``):
#: ``vanished_augment`` (left the frame or became empty in the augmenter), ``vanished_resize``
#: (too small to keep a pixel after resizing), ``over_cap`` (beyond ``max_instances``; carried
#: as ignore boxes), and the reasons a provider reports through ``load_with_ignore``
#: (``crowd``, ``unmapped``, ``unclassed``: carried as ignore boxes; ``empty_mask``,
#: ``bad_segmentation`` (a COCO polygon of fewer than three points, or none) and the DSB
#: loader's repairs ``holes_dropped``, ``pieces_dropped``, ``emptied_by_overlap``: no region).
DROP_REASONS = ("vanished_augment", "vanished_resize", "over_cap", "crowd", "unmapped",
                "unclassed", "empty_mask", "bad_segmentation", "holes_dropped",
                "pieces_dropped", "emptied_by_overlap")


class _ProviderDataset(keras.utils.PyDataset):
    """Shared batching logic: epoch order, per-sample generators, augmentation, skips, drops."""

    def __init__(self, provider, batch_size: int, augmenter: Augmenter | None, shuffle: bool,
                 seed: int, drop_remainder: bool, workers: int, max_queue_size: int,
                 max_skip_fraction: float = 0.5):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        if len(provider) == 0:
            raise ValueError("The sample provider is empty; check the dataset path and split.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= max_skip_fraction < 1:
            raise ValueError(f"max_skip_fraction must be in [0, 1), got {max_skip_fraction}")
        self.provider = provider
        self.batch_size = int(batch_size)
        self.augmenter = augmenter
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_remainder = drop_remainder
        self.max_skip_fraction = float(max_skip_fraction)
        self.epoch = 0
        # per epoch, per provider index: why the sample was skipped / what it lost. Keyed by
        # sample so that a batch asked for twice (Keras retries, threads) is counted once.
        self._skips: dict[int, dict[int, tuple[str, str, str]]] = {}
        self._drops: dict[int, dict[int, dict[str, int]]] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        n = len(self.provider)
        if self.drop_remainder:
            return max(1, n // self.batch_size)
        return -(-n // self.batch_size)

    def on_epoch_end(self) -> None:
        skipped = self._skips.get(self.epoch, {})
        if skipped:
            log.warning("epoch %d: %d samples skipped (%s)", self.epoch, len(skipped),
                        ", ".join(f"{k} {v}" for k, v in
                                  self.skip_summary(self.epoch)["by_reason"].items()))
        self.epoch += 1

    def set_epoch(self, epoch: int) -> None:
        """Jump to ``epoch`` (e.g. when resuming training from a checkpoint)."""
        self.epoch = int(epoch)

    def _positions(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} out of range 0..{len(self) - 1}")
        return np.arange(index * self.batch_size, (index + 1) * self.batch_size)

    def batch_indices(self, index: int, epoch: int | None = None) -> np.ndarray:
        """Provider indices of batch ``index`` in ``epoch``; a short last batch is filled up by
        wrapping around, so every batch has ``batch_size`` samples. (A sample that turns out
        unreadable is replaced by the next one in the epoch order, see :meth:`rows`.)"""
        epoch = self.epoch if epoch is None else epoch
        order = epoch_order(len(self.provider), self.seed, epoch, self.shuffle)
        return order[self._positions(index) % len(order)]

    def name(self, sample: int) -> str:
        return self.provider.name(sample) if hasattr(self.provider, "name") else str(sample)

    def load_with_ignore(self, sample: int, epoch: int):
        """Load (and augment) one sample with its ignore regions.

        Returns:
            ``(image, masks, class_ids, ignore_masks, ignore_reasons, rng)``: the sample after
            augmentation, the provider's ignore regions moved by the same transforms
            (``H x W x K`` bool and their ``K`` reasons; none when the provider has no
            ``load_with_ignore``) and the sample's generator for further draws. Instances
            and regions lost on the way are counted in :meth:`drop_summary`.
        """
        from course_lib.data.samples import IgnoreRegions

        name = self.name(sample)
        if hasattr(self.provider, "load_with_ignore"):
            image, masks, class_ids, regions = self.provider.load_with_ignore(int(sample))
        else:
            image, masks, class_ids = self.provider.load(int(sample))
            regions = IgnoreRegions.none(np.shape(image)[:2])
        check_sample(image, masks, class_ids, source=name)
        ign = np.asarray(regions.masks, bool)
        if ign.ndim != 3 or ign.shape[:2] != image.shape[:2] or \
                ign.shape[-1] != len(regions.reasons):
            raise ValueError(f"{name}: ignore regions must be H x W x K bool with K reasons, "
                             f"got {ign.shape} and {len(regions.reasons)} reasons.")
        drops: dict[str, int] = dict(regions.dropped)
        for reason in regions.reasons:
            drops[reason] = drops.get(reason, 0) + 1
        reasons = list(regions.reasons)
        rng = sample_rng(self.seed, epoch, sample)
        if self.augmenter is not None:
            n = masks.shape[-1]
            # the ignore regions ride along as extra instances marked by negative class ids,
            # so they move with exactly the same random transform as the image
            marks = -1 - np.arange(ign.shape[-1], dtype=np.int32)
            out = self.augmenter(image, np.concatenate([masks, ign], axis=-1),
                                 np.concatenate([np.asarray(class_ids, np.int32), marks]),
                                 rng=rng)
            real = out.class_ids > 0
            image, masks, class_ids = out.image, out.masks[..., real], out.class_ids[real]
            ign = out.masks[..., ~real]
            reasons = [reasons[-1 - int(m)] for m in out.class_ids[~real]]
            if n - int(real.sum()):
                drops["vanished_augment"] = n - int(real.sum())
        self._record_drops(epoch, sample, drops)
        return image, masks, class_ids, ign, reasons, rng

    def load(self, sample: int, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                     np.random.Generator]:
        """Load (and augment) one sample; returns ``(image, masks, class_ids, rng)``."""
        image, masks, class_ids, _, _, rng = self.load_with_ignore(sample, epoch)
        return image, masks, class_ids, rng

    # -- skips and drops --------------------------------------------------------------------

    def _record_drops(self, epoch: int, sample: int, drops: dict[str, int]) -> None:
        drops = {k: int(v) for k, v in drops.items() if v}
        with self._lock:
            self._drops.setdefault(epoch, {})[int(sample)] = drops
        if drops:
            log.info("%s: %d instances not used as ground truth (%s)", self.name(sample),
                     sum(drops.values()), ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))

    def _add_drops(self, epoch: int, sample: int, drops: dict[str, int]) -> None:
        """Add counts found after loading (resize, instance cap) to the sample's record."""
        drops = {k: int(v) for k, v in drops.items() if v}
        if not drops:
            return
        with self._lock:
            rec = self._drops.setdefault(epoch, {}).setdefault(int(sample), {})
            rec.update(drops)
        log.info("%s: %s", self.name(sample),
                 ", ".join(f"{k} {v}" for k, v in sorted(drops.items())))

    def _record_skip(self, epoch: int, sample: int, err: BaseException) -> None:
        name, reason = self.name(sample), skip_reason(err)
        with self._lock:
            book = self._skips.setdefault(epoch, {})
            first = int(sample) not in book
            book[int(sample)] = (name, reason, f"{type(err).__name__}: {err}")
            self._drops.get(epoch, {}).pop(int(sample), None)  # nothing of it reached a batch
            n_skipped = len(book)
        if first:
            log.warning("skipping sample %s (%s): %s", name, reason, err)
        if n_skipped > self.max_skip_fraction * len(self.provider):
            raise RuntimeError(
                f"{n_skipped} of {len(self.provider)} samples could not be used in epoch {epoch} "
                f"(more than max_skip_fraction={self.max_skip_fraction}); something systematic is "
                f"wrong with the data. First ones: "
                + "; ".join(f"{n}: {m}" for n, _, m in list(book.values())[:3])) from err

    def _latest(self, book: dict, epoch) -> int:
        if epoch is not None:
            return int(epoch)
        return max(book) if book else self.epoch

    def skip_summary(self, epoch: int | None = None) -> dict:
        """Samples skipped in one epoch.

        Args:
            epoch: the epoch; ``None`` = the latest epoch with any record (so a training loop
                gets the epoch that just ended whether or not ``on_epoch_end`` ran already).

        Returns:
            ``{"epoch": e, "skipped": n, "by_reason": {reason: count}, "samples": [(name,
            reason, message), ...]}`` with reasons from :func:`skip_reason`.
        """
        with self._lock:
            epoch = self._latest(self._skips, epoch)
            records = sorted(self._skips.get(epoch, {}).values())
        by_reason: dict[str, int] = {}
        for _, reason, _ in records:
            by_reason[reason] = by_reason.get(reason, 0) + 1
        return {"epoch": epoch, "skipped": len(records), "by_reason": by_reason,
                "samples": records}

    def drop_summary(self, epoch: int | str | None = None) -> dict[str, int]:
        """Instances not used as ground truth, by reason (:data:`DROP_REASONS`).

        Args:
            epoch: an epoch; ``None`` = the latest epoch with any record; ``"all"`` = summed
                over every epoch so far.

        Returns:
            ``{reason: count}`` over the samples batched in that epoch (each sample counted
            once however often its batch was read), only reasons that occurred; the key
            ``"ignore_rows_full"`` counts ignore regions that did not fit in ``max_ignore``.
        """
        with self._lock:
            if epoch == "all":
                records = [r for book in self._drops.values() for r in book.values()]
            else:
                records = list(self._drops.get(self._latest(self._drops, epoch), {}).values())
        total: dict[str, int] = {}
        for rec in records:
            for k, v in rec.items():
                total[k] = total.get(k, 0) + v
        return dict(sorted(total.items()))

    def rows(self, index: int, epoch: int | None = None) -> list:
        """The prepared samples of batch ``index``: an unusable sample (see
        :data:`SKIPPABLE_ERRORS`) is counted, logged and replaced by the next sample of the
        epoch order, so the batch keeps its shape and depends only on (seed, epoch, index)."""
        epoch = self.epoch if epoch is None else epoch
        order = epoch_order(len(self.provider), self.seed, epoch, self.shuffle)
        n = len(order)
        out = []
        for pos in self._positions(index):
            for step in range(n):
                sample = int(order[(pos + step) % n])
                try:
                    out.append(self.sample(sample, epoch))
                    break
                except SKIPPABLE_ERRORS as err:
                    self._record_skip(epoch, sample, err)
        return out


class MaskRCNNDataset(_ProviderDataset):
    """Fixed-shape Mask R-CNN batches from a sample provider.

    Args:
        provider: sample provider (``len``, ``load(i)``, optionally ``name(i)`` and
            ``load_with_ignore(i)``, see :mod:`course_lib.data.coco`).
        batch_size: images per batch.
        image_size: side ``S`` of the padded square.
        long_side: the image's longer side after resizing (``None``: ``S``; see
            :func:`resize_and_pad`).
        max_instances: ground-truth rows per image ``M``.
        mini_mask_shape: ``(h, w)`` of the stored masks (each cropped to its box and resampled,
            float32 coverage in [0, 1]); ``None`` stores full ``S x S`` bool masks.
        augmenter: an :class:`~course_lib.data.augment.Augmenter` or ``None``.
        shuffle, seed: sample order per epoch (:func:`epoch_order`).
        drop_remainder: ``False`` fills the last batch up with samples from the start.
        workers: threads loading batches (``use_multiprocessing`` is always ``False``).
        max_ignore: ignore-box rows per image ``MI``.
        max_skip_fraction: more skipped samples than this fraction of the provider in one epoch
            raises ``RuntimeError`` (a systematic problem, not one bad file).

    ``ds[i]`` is a dict (Keras takes a dict as the model inputs, the losses live in the model):

    ===================  ====================  ==========================================
    key                  shape                 meaning
    ===================  ====================  ==========================================
    ``images``           (B, S, S, 3) float32  pixel values 0..255, zero padding
    ``image_meta``       (B, 7) float32        original H, W, window y1, x1, y2, x2, scale
    ``gt_boxes``         (B, M, 4) float32     (y1, x1, y2, x2) pixel edges in the square
    ``gt_class_ids``     (B, M) int32          class ids, 0 in padding rows
    ``gt_masks``         (B, h, w, M) float32  mini-masks (or (B, S, S, M) bool full masks)
    ``gt_count``         (B,) int32            valid rows
    ``gt_ignore_boxes``  (B, MI, 4) float32    boxes of ground truth not kept (over the cap,
                                               crowd, unmapped, unclassed); zero padding
    ``gt_ignore_count``  (B,) int32            valid rows of ``gt_ignore_boxes``
    ===================  ====================  ==========================================

    Nothing is lost silently: an unreadable or invalid sample is skipped, logged and replaced
    by the next one of the epoch (:meth:`skip_summary`); instances lost on the way are counted
    per reason (:meth:`drop_summary`) and, where they still cover pixels, carried as ignore
    boxes.

    Taught in notebooks/09_mask_rcnn.
    """

    @classmethod
    def for_config(cls, config, provider, **kwargs) -> MaskRCNNDataset:
        """A dataset shaped for a model's config: the square's side, the image's long side,
        the instance and ignore caps and the mini-mask shape all come from ``config`` (a
        :class:`~course_lib.models.maskrcnn.MaskRCNNConfig`), so they cannot drift apart.

        ``kwargs``: the loader's own settings (``batch_size``, ``augmenter``, ``shuffle``,
        ``seed``, ``workers``, ...), or a deliberate change of one of the config's (such as
        ``mini_mask_shape=None`` for full-size masks).

        Taught in notebooks/09_mask_rcnn.
        """
        shaped = dict(image_size=config.image_size, long_side=config.image_long_side,
                      max_instances=config.max_instances, max_ignore=config.max_ignore,
                      mini_mask_shape=config.mini_mask_shape)
        return cls(provider, **{**shaped, **kwargs})

    def __init__(self, provider, batch_size: int = 2, image_size: int = 128,
                 max_instances: int = 100, mini_mask_shape: tuple[int, int] | None = (28, 28),
                 augmenter: Augmenter | None = None, shuffle: bool = True, seed: int = 0,
                 drop_remainder: bool = False, workers: int = 1, max_queue_size: int = 10,
                 max_ignore: int = 32, max_skip_fraction: float = 0.5,
                 long_side: int | None = None):
        super().__init__(provider, batch_size, augmenter, shuffle, seed, drop_remainder,
                         workers, max_queue_size, max_skip_fraction)
        self.image_size = int(image_size)
        self.long_side = None if long_side is None else int(long_side)
        self.max_instances = int(max_instances)
        self.max_ignore = int(max_ignore)
        self.mini_mask_shape = None if mini_mask_shape is None else tuple(mini_mask_shape)

    def sample(self, sample: int, epoch: int | None = None) -> dict[str, np.ndarray]:
        """One prepared sample (the rows of a batch), before stacking."""
        epoch = self.epoch if epoch is None else epoch
        image, masks, class_ids, ign, reasons, rng = self.load_with_ignore(sample, epoch)
        h, w = image.shape[:2]
        n_in, k_in = masks.shape[-1], ign.shape[-1]
        # instances 0..n_in-1, then the ignore regions; one label image when none overlap
        stack = np.concatenate([masks, ign], axis=-1) if k_in else masks
        labels = disjoint_masks_to_labels(stack) if n_in + k_in > 1 else None
        if labels is None:  # overlapping (or a single) instance: carry the mask stack
            image, stack, window, scale = resize_and_pad(image, stack, self.image_size,
                                                        self.long_side)
            present = stack.any(axis=(0, 1))
            all_boxes = masks_to_boxes(stack)
        else:  # the usual case: one label image instead of N masks, much less work
            image, labels, window, scale = resize_and_pad(image, labels, self.image_size,
                                                         self.long_side)
            ids = np.arange(1, n_in + k_in + 1)
            present = np.bincount(labels.ravel(), minlength=n_in + k_in + 1)[1:] > 0
            all_boxes = labels_to_boxes(labels, ids)
        real = np.flatnonzero(present[:n_in])  # tiny instances vanish when shrinking
        keep = real[choose_instances(len(real), self.max_instances, rng, self.name(sample))]
        over = np.setdiff1d(real, keep)
        # ignore boxes: the provider's regions still visible, then instances over the cap
        ignored = np.concatenate([n_in + np.flatnonzero(present[n_in:]), over])
        s, m, mi = self.image_size, self.max_instances, self.max_ignore
        self._add_drops(epoch, sample, {"vanished_resize": n_in - len(real),
                                        "over_cap": len(over),
                                        "ignore_rows_full": max(0, len(ignored) - mi)})
        ignored = ignored[:mi]
        n = len(keep)
        boxes = all_boxes[keep]
        out_boxes = np.zeros((m, 4), np.float32)
        ids_out = np.zeros(m, np.int32)
        out_boxes[:n] = boxes
        ids_out[:n] = class_ids[keep]
        ignore_boxes = np.zeros((mi, 4), np.float32)
        ignore_boxes[:len(ignored)] = all_boxes[ignored]
        if self.mini_mask_shape is None:
            out_masks = np.zeros((s, s, m), bool)
            out_masks[..., :n] = stack[..., keep] if labels is None else \
                labels_to_masks(labels, keep + 1)
        else:
            out_masks = np.zeros(self.mini_mask_shape + (m,), np.float32)
            if labels is None and n:
                out_masks[..., :n] = minimize_masks(stack[..., keep], boxes, self.mini_mask_shape)
            for k in range(n if labels is not None else 0):
                # each instance cut out of the label image at its box: no full-size stack
                y1, x1, y2, x2 = (int(v) for v in boxes[k])
                crop = labels_to_masks(labels[y1:y2, x1:x2], [keep[k] + 1])
                out_masks[..., k] = minimize_masks(
                    crop, [[0, 0, y2 - y1, x2 - x1]], self.mini_mask_shape)[..., 0]
        meta = image_meta((h, w), window, scale)
        return {"images": image.astype(np.float32), "image_meta": meta, "gt_boxes": out_boxes,
                "gt_class_ids": ids_out, "gt_masks": out_masks, "gt_count": np.int32(n),
                "gt_ignore_boxes": ignore_boxes, "gt_ignore_count": np.int32(len(ignored))}

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rows = self.rows(index, self.epoch)
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
        augmenter, shuffle, seed, drop_remainder, workers, max_skip_fraction: as in
            :class:`MaskRCNNDataset`.

    ``ds[i]`` is ``(images (B, S, S, 3) float32 0..255, targets (B, S, S, C) float32,
    weights (B, S, S) float32)``, the ``(x, y, sample_weight)`` Keras ``fit`` expects. Weight
    maps and targets are computed on the final tile (after augmentation and cropping). Pixels
    of a provider's ignore regions (crowd, unclassed; see ``load_with_ignore``) that belong to
    no instance get weight 0. Unusable samples are skipped and replaced as in
    :class:`MaskRCNNDataset` (:meth:`skip_summary`, :meth:`drop_summary`). Small images are
    mirrored up to the tile with :func:`course_lib.ops.padding.mirror_pad`, the same mirror
    as overlap-tile inference.

    Taught in notebooks/10_unet.
    """

    def __init__(self, provider, batch_size: int = 2, tile_size: int = 128, mode: str = "crop",
                 weight_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 target_fn: Callable[[np.ndarray], np.ndarray] | None = None,
                 augmenter: Augmenter | None = None, shuffle: bool = True, seed: int = 0,
                 drop_remainder: bool = False, workers: int = 1, max_queue_size: int = 10,
                 max_skip_fraction: float = 0.5):
        super().__init__(provider, batch_size, augmenter, shuffle, seed, drop_remainder,
                         workers, max_queue_size, max_skip_fraction)
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
            image, labels = mirror_pad(image, pad), mirror_pad(labels, pad)
            h, w = labels.shape
        top = int(rng.integers(0, h - s + 1))
        left = int(rng.integers(0, w - s + 1))
        return image[top:top + s, left:left + s], labels[top:top + s, left:left + s]

    def sample(self, sample: int, epoch: int | None = None):
        """One ``(image, target, weights)`` tile."""
        epoch = self.epoch if epoch is None else epoch
        image, masks, _, ign, _, rng = self.load_with_ignore(sample, epoch)
        labels = disjoint_masks_to_labels(masks)
        if labels is None:  # overlapping instances: later masks win, as painting them in order
            labels = masks_to_labels(masks)
        if ign.shape[-1]:  # ignore regions (crowd, unclassed) travel as label -1 ...
            labels[(labels == 0) & ign.any(axis=-1)] = -1
        if self.mode == "crop":
            image, labels = self._crop(image, labels, rng)
        else:
            image, labels, _, _ = resize_and_pad(image, labels, self.tile_size)
        void = labels < 0
        labels = np.where(void, 0, labels)
        target = np.asarray(self.target_fn(labels), np.float32)
        if target.ndim == 2:
            target = target[..., None]
        weights = np.asarray(self.weight_fn(labels), np.float32)
        if void.any():  # ... and weigh nothing: neither foreground nor background is taught there
            weights = np.where(void, np.float32(0), weights)
        return image.astype(np.float32), target, weights

    def __getitem__(self, index: int):
        rows = self.rows(index, self.epoch)
        return tuple(np.stack([r[k] for r in rows]) for k in range(3))


__all__ = ["MaskRCNNDataset", "UNetDataset", "choose_instances", "sample_rng", "epoch_order",
           "uniform_weights", "foreground_target", "skip_reason", "SKIPPABLE_ERRORS",
           "DROP_REASONS"]
