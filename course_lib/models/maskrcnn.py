"""Mask R-CNN assembled: configs, the training and inference models, ``detect``, the stages.

Taught in notebooks/09_mask_rcnn.

Public API (fixed in DESIGN.md's table; the rest is documented here):

- :func:`nuclei_config` / :func:`voc_config` -> :class:`MaskRCNNConfig`, a frozen dataclass with
  mode-dependent sizes (``COURSE_MODE`` quick/full via :func:`course_lib.config.settings`);
  override fields with ``dataclasses.replace(config, image_size=256)``.
- :func:`build_models(config) <build_models>` -> ``(training_model, inference_model)``: two
  :class:`MaskRCNN` instances that share every layer (so every weight). Weight files are
  interchangeable: ``training_model.save_weights(p)``, ``inference_model.load_weights(p)``.
- *training model*: call it on the :class:`~course_lib.data.pipeline.MaskRCNNDataset` batch dict
  (``images``, ``image_meta``, ``gt_boxes``, ``gt_class_ids``, ``gt_masks``, optional
  ``gt_ignore_boxes`` / ``gt_ignore_count``); it returns the five losses as a dict. It computes
  its loss itself, so ``model.compile(optimizer=...)`` then ``model.fit(dataset)`` with no ``y``
  trains it, and fit's logs report ``loss`` plus each of :data:`course_lib.losses.LOSS_NAMES`.
- *inference model*: call it on ``{"images", "image_meta"}``; returns ``boxes (B, D, 4)`` in the
  padded square's pixels, ``class_ids (B, D)``, ``scores (B, D)``, ``masks (B, D, 28, 28)``
  (sigmoid of the detected class's channel), ``valid (B, D)`` bool.
- :func:`detect(inference_model, images) <detect>`: images of any sizes (``H×W×3`` uint8) ->
  one dict per image: ``boxes (N, 4)`` in the original pixels, ``class_ids (N,)``,
  ``scores (N,)``, ``masks H×W×N`` bool (mini-masks pasted back at threshold 0.5).
- :func:`run_stages(model, batch) <run_stages>` (or ``model.stages(batch)``): every
  intermediate stage of one forward pass as NumPy arrays, by name (:data:`STAGE_NAMES`):
  ``anchors``, ``rpn_scores``, ``rpn_deltas``, ``proposals`` / ``proposal_scores`` /
  ``proposal_valid``, ``class_probs``, ``refined_boxes`` (each proposal refined by its best
  class), ``detections`` / ``detection_class_ids`` / ``detection_scores`` / ``detection_valid``,
  ``masks``; with ground truth in the batch also the training targets (``rpn_target_*``,
  ``roi_*``, ``mask_targets``) and the five ``losses``. Works on either model.
- :func:`parameter_counts(model) <parameter_counts>`: parameters per part (backbone, FPN, RPN,
  box head, mask head).

Normalisation: with ImageNet weights present (Keras cache, see
:func:`course_lib.layers.resnet.find_imagenet_weights`) the backbone's BatchNorm is frozen, the
usual fine-tuning set-up; without them (this course's default: nothing is downloaded) it
trains from scratch, so BatchNorm is trainable (momentum :attr:`MaskRCNNConfig.bn_momentum`,
0.9, so the moving statistics follow a short run) and the mask head may use GroupNorm. Frozen
BatchNorm with random weights is the usual reason a Keras Mask R-CNN trained from scratch
scores zero. The model prints which case applies when it is built.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import keras
import numpy as np
from keras import ops

from course_lib import config as course_config
from course_lib import losses as L
from course_lib.data.voc import VOC_CLASSES  # the class names live with the dataset
from course_lib.layers import fpn as fpn_lib
from course_lib.layers import resnet as resnet_lib
from course_lib.layers.anchor_targets import rpn_targets_ops
from course_lib.layers.anchors import AnchorGenerator
from course_lib.layers.box_coder import clip_to_window_ops
from course_lib.layers.detection import DetectionLayer
from course_lib.layers.heads import BoxHead, MaskHead
from course_lib.layers.preprocessing import CaffePreprocessing
from course_lib.layers.proposals import ProposalLayer
from course_lib.layers.roi_align import PyramidRoIAlign
from course_lib.layers.roi_targets import roi_targets_ops
from course_lib.layers.rpn_head import RPNHead
from course_lib.layers.sampler import gather_rows, positive_slots
from course_lib.ops import boxes as box_ops
from course_lib.ops.geometry import (
    image_meta,
    meta_window,
    parse_image_meta,
    resize_and_pad,
    unresize_boxes,
)

# ------------------------------------------------------------------------------------ config


@dataclass(frozen=True)
class MaskRCNNConfig:
    """Every setting of the model (defaults: the Mask R-CNN / FPN papers, full size).

    Attributes:
        name: preset name. image_size: side ``S`` of the padded square input (multiple of 64).
        image_fill: the image's longer side as a fraction of ``S`` (1: no margin; VOC's preset
            500/512, the article's 500 px in our 512 square); read it as pixels from
            :attr:`image_long_side`. A fraction, so ``replace(config, image_size=...)`` keeps it.
        num_classes: ``K`` including background (class 0). class_names: ``K`` names.
        backbone: ``"resnet50"``, ``"resnet101"`` or ``"light"`` (quick mode on a CPU).
        pretrained: load ImageNet backbone weights when the file is in the Keras cache.
        bn_momentum: BatchNorm momentum when the backbone trains from scratch.
        fpn_channels: pyramid width (256).
        anchor_scales: one scale per level P2..P6 (pixels, sqrt of area); anchor_ratios: w/h.
        strides: P2..P6 strides. anchor_stride: anchors on every n-th cell.
        rpn_positive_iou / rpn_negative_iou: anchor matching (0.7 / 0.3, best anchor kept).
        rpn_batch_per_image / rpn_positive_fraction: anchor sampling (256, 0.5).
        rpn_pre_nms_top_k_train / _test: best anchors per level before NMS (2000 / 1000).
        rpn_post_nms_top_n_train / _test: proposals after NMS (2000 / 1000).
        rpn_nms_threshold: 0.7. rpn_min_size: smallest proposal side in pixels.
        rpn_per_level_nms: the RPN's NMS within each pyramid level (torchvision, detectron2)
            or, ``False``, over all levels at once (:class:`~course_lib.layers.proposals.ProposalLayer`).
        rois_per_image / roi_positive_fraction / roi_positive_iou: RoI sampling (512, 0.25, 0.5).
        mask_rois_per_image: how many of the positive slice's slots the mask head trains on
            (``None``: all ``P = rois * fraction``, the paper). The sampler puts the positives
            first in random order, so a cap ``M < P`` trains the mask on a uniform random
            ``M`` of them when there are more (the loss stays the mean over positives, an
            unbiased estimate) and loses nothing when there are fewer. The mask head is the
            costliest piece of a training step (≈ 1 GFLOP forward per RoI at 14×14×256;
            7.2 s of a 19 s step for 256 RoIs at 512² on 2 CPU cores), so this is a speed
            lever; ``bench/bench_maskrcnn_step.py --mask-rois``.
        mask_roi_step: the mask head runs on the smallest multiple of this many slots (up to
            ``M``) that holds every positive the sampler found in the batch's fullest image
            (a ``keras.ops.switch`` over the ``ceil(M / step)`` slot counts, each traced
            once). The slots it skips hold no positive, and the mask loss is the mean over
            positives with every RoI processed on its own, so the loss and its gradients
            equal those of all ``M`` slots: the paper's loss, at the cost of the positives
            there are (torchvision runs its mask head on exactly those). ``None``: always
            ``M`` slots, one branch.
        pool_size / mask_pool_size / mask_shape: RoIAlign 7×7 and 14×14, masks 28×28.
        box_head_dim: the two FC layers (1024). mask_head_channels: mask convs (256).
        mask_head_norm: ``"none"`` or ``"group"``.
        max_instances: gt rows per image ``G`` (the dataset's ``max_instances``).
        max_ignore: ignore-region rows (the dataset's ``max_ignore``).
        mini_mask_shape: ``(h, w)`` of the gt mini-masks, or ``None`` for full masks.
        detections_per_image: ``D``. detection_min_confidence: score threshold (0.05).
        detection_nms_threshold: per-class NMS IoU (0.5). detection_pre_nms_top_k: candidates.
        mask_threshold: binarisation of pasted masks (0.5).
        ignore_ioa: IoA with an ignore region that makes a non-positive candidate ignored.
        seed: seed of the samplers.

    Learning settings (optimizer, steps, schedules) belong to the training engine.

    Taught in notebooks/09_mask_rcnn.
    """

    name: str = "maskrcnn"
    image_size: int = 512
    image_fill: float = 1.0
    num_classes: int = 2
    class_names: tuple = ("background", "object")
    backbone: str = "resnet50"
    pretrained: bool = True
    bn_momentum: float = 0.9
    fpn_channels: int = 256
    anchor_scales: tuple = (32, 64, 128, 256, 512)
    anchor_ratios: tuple = (0.5, 1.0, 2.0)
    strides: tuple = (4, 8, 16, 32, 64)
    anchor_stride: int = 1
    rpn_positive_iou: float = 0.7
    rpn_negative_iou: float = 0.3
    rpn_batch_per_image: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_k_train: int = 2000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_k_test: int = 1000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_min_size: float = 1.0
    rpn_per_level_nms: bool = True
    rois_per_image: int = 512
    roi_positive_fraction: float = 0.25
    roi_positive_iou: float = 0.5
    mask_rois_per_image: int | None = None
    mask_roi_step: int | None = 16
    pool_size: int = 7
    mask_pool_size: int = 14
    mask_shape: int = 28
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    mask_head_norm: str = "none"
    max_instances: int = 100
    max_ignore: int = 32
    mini_mask_shape: tuple | None = (28, 28)
    detections_per_image: int = 100
    detection_min_confidence: float = 0.05
    detection_nms_threshold: float = 0.5
    detection_pre_nms_top_k: int = 1000
    mask_threshold: float = 0.5
    ignore_ioa: float = 0.5
    seed: int = 42

    @property
    def image_long_side(self) -> int:
        """The image's longer side in pixels after resizing (``round(image_size * image_fill)``)."""
        return max(1, round(self.image_size * self.image_fill))

    def __post_init__(self):
        if self.image_size % 64:
            raise ValueError(f"MaskRCNNConfig.image_size={self.image_size}: use a multiple of "
                             f"64 (P6 has stride 64), e.g. {64 * max(1, round(self.image_size / 64))}.")
        if not 0 < self.image_fill <= 1:
            raise ValueError(f"MaskRCNNConfig.image_fill={self.image_fill} must be in (0, 1]: "
                             f"the image's long side as a fraction of image_size.")
        if self.backbone not in fpn_lib.BACKBONES:
            raise ValueError(f"backbone {self.backbone!r} is not one of {fpn_lib.BACKBONES}.")
        if len(self.anchor_scales) != len(self.strides):
            raise ValueError("anchor_scales needs one entry per stride (P2..P6).")
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names for num_classes="
                             f"{self.num_classes} (background included).")
        if self.mask_rois_per_image is not None and not (
                1 <= self.mask_rois_per_image <= self.positive_rois):
            raise ValueError(
                f"mask_rois_per_image={self.mask_rois_per_image} must be None or between 1 "
                f"and the positive slice, {self.positive_rois} (rois_per_image × "
                "roi_positive_fraction).")
        if self.mask_roi_step is not None and self.mask_roi_step < 1:
            raise ValueError(f"mask_roi_step={self.mask_roi_step} must be None or at least 1.")
        if self.mask_shape != 2 * self.mask_pool_size:
            raise ValueError("mask_shape must be 2 * mask_pool_size (one 2×2 transposed conv).")

    @property
    def positive_rois(self) -> int:
        """``P``: the positive slice the mask head trains on (``rois * fraction``)."""
        return positive_slots(self.rois_per_image, self.roi_positive_fraction)

    @property
    def mask_rois(self) -> int:
        """``M``: the slots of the positive slice the mask head trains on (``<= P``)."""
        if self.mask_rois_per_image is None:
            return self.positive_rois
        return self.mask_rois_per_image

    @property
    def mask_slot_counts(self) -> tuple[int, ...]:
        """The slot counts the mask head may run on in training: multiples of
        :attr:`mask_roi_step` below ``M``, then ``M`` (just ``(M,)`` when the step is ``None``)."""
        m, step = self.mask_rois, self.mask_roi_step
        if step is None or step >= m:
            return (m,)
        return tuple(range(step, m, step)) + (m,)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> MaskRCNNConfig:
        """Inverse of :meth:`to_dict` (lists become tuples; unknown keys are an error)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"MaskRCNNConfig has no field(s) {sorted(unknown)}.")
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})


def nuclei_config(mode: str | None = None, **overrides) -> MaskRCNNConfig:
    """Preset for cell nuclei (2 classes), sized by the course mode.

    Small anchors (8–128 px on P2–P6: nuclei are 8–100 px, so every nucleus-sized box falls on
    P2–P4) and many instances (400 in full mode; DSB images hold up to ~375 nuclei). Quick
    mode: 128 px images, the light backbone, narrower FPN and heads, fewer RoIs, and the mask
    head always on the whole 32-slot positive slice (``mask_roi_step=None``: one traced
    branch, since tracing is most of a quick run's time).

    ``mode``: ``"quick"`` or ``"full"`` (default :func:`course_lib.config.mode`); a caller
    asked for a mode gets that mode's model whatever ``COURSE_MODE`` says.

    Taught in notebooks/09_mask_rcnn.
    """
    settings = course_config.settings(mode)
    quick = settings.name == "quick"
    values = dict(name="nuclei", num_classes=2, class_names=("background", "nucleus"),
                  anchor_scales=(8, 16, 32, 64, 128))
    if quick:
        values.update(image_size=settings.image_size, backbone="light",
                      fpn_channels=64, box_head_dim=256, mask_head_channels=64,
                      rpn_batch_per_image=128, rpn_pre_nms_top_k_train=500,
                      rpn_post_nms_top_n_train=300, rpn_pre_nms_top_k_test=300,
                      rpn_post_nms_top_n_test=200, rois_per_image=128, max_instances=64,
                      detections_per_image=64, detection_pre_nms_top_k=200,
                      mask_roi_step=None)
    else:
        values.update(image_size=512, backbone="resnet50", max_instances=400,
                      detections_per_image=400, detection_pre_nms_top_k=2000,
                      rpn_post_nms_top_n_test=2000)
    values.update(overrides)
    return MaskRCNNConfig(**values)


def nuclei_cpu_config(**overrides) -> MaskRCNNConfig:
    """Preset for the nuclei CPU budget: 256-px windows at native scale, the light backbone.

    The model of notebook 11's shipped Mask R-CNN, trained from scratch within an hour on a
    2-core CPU: it sees 256×256 windows cut at the images' own scale (not whole images
    shrunk into the square) and detects in large images window by window
    (:func:`course_lib.models.tiled_detection.detect_tiled`). The report's small anchors
    (8–128 px), up to 256 nuclei per window, group-normalised mask head (batches of 4
    images are too small for batch statistics in the heads).

    Taught in notebooks/11_train_nuclei.
    """
    values = dict(name="nuclei-cpu", num_classes=2, class_names=("background", "nucleus"),
                  anchor_scales=(8, 16, 32, 64, 128), image_size=256, backbone="light",
                  fpn_channels=64, box_head_dim=256, mask_head_channels=64,
                  mask_head_norm="group", rpn_batch_per_image=256,
                  rpn_pre_nms_top_k_train=1000, rpn_post_nms_top_n_train=500,
                  rpn_pre_nms_top_k_test=1000, rpn_post_nms_top_n_test=500,
                  rois_per_image=256, max_instances=256, detections_per_image=256,
                  detection_pre_nms_top_k=1000, mask_roi_step=None)
    values.update(overrides)
    return MaskRCNNConfig(**values)




def voc_config(mode: str | None = None, **overrides) -> MaskRCNNConfig:
    """Preset for Pascal VOC (21 classes with background), sized by the course mode.

    Default anchor scales 32–512 (full mode, 512 px images); quick mode: 128 px images, the
    light backbone, scales 16–256, narrower FPN and heads. Images are resized to 500/512 of
    the square on their long side (500 px in full mode, as the VOC article does) and padded.
    ``mode`` as in :func:`nuclei_config`.

    Taught in notebooks/09_mask_rcnn.
    """
    settings = course_config.settings(mode)
    quick = settings.name == "quick"
    values = dict(name="voc", num_classes=21, class_names=VOC_CLASSES, max_instances=32)
    if quick:
        values.update(image_size=settings.image_size, backbone="light",
                      anchor_scales=(16, 32, 64, 128, 256), fpn_channels=64, box_head_dim=256,
                      mask_head_channels=64, rpn_batch_per_image=128,
                      rpn_pre_nms_top_k_train=500, rpn_post_nms_top_n_train=300,
                      rpn_pre_nms_top_k_test=300, rpn_post_nms_top_n_test=200,
                      rois_per_image=128, detections_per_image=50, detection_pre_nms_top_k=500,
                      mask_roi_step=None)
    values.update(overrides)
    values.setdefault("image_fill", 500 / 512)
    return MaskRCNNConfig(**values)


def _as_config(config) -> MaskRCNNConfig:
    if config is None:
        return nuclei_config()
    if isinstance(config, MaskRCNNConfig):
        return config
    if isinstance(config, dict):
        return MaskRCNNConfig.from_dict(config)
    raise TypeError(f"expected a MaskRCNNConfig or a dict, got {type(config).__name__}.")


# ------------------------------------------------------------------------------------- model

def _build_backbone(config: MaskRCNNConfig, verbose: bool = True) -> keras.Model:
    """Backbone + FPN with the normalisation that suits the weights that can be had."""
    shape = (config.image_size, config.image_size, 3)
    weights = None
    if config.pretrained and config.backbone != "light":
        weights = resnet_lib.find_imagenet_weights(int(config.backbone[6:]))
    frozen = weights is not None
    model = fpn_lib.build_backbone(config.backbone, shape, config.fpn_channels, freeze_bn=frozen)
    backbone = model.get_layer("backbone")
    if frozen:
        resnet_lib.load_imagenet_weights(backbone, verbose=verbose)
        if verbose:
            print(f"Mask R-CNN backbone {config.backbone}: ImageNet weights, frozen BatchNorm.")
    else:
        for layer in backbone.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.momentum = config.bn_momentum
        if verbose:
            why = ("no ImageNet weights exist for the light backbone"
                   if config.backbone == "light" else
                   f"{resnet_lib.FALLBACK_MESSAGE}" if config.pretrained else
                   "pretrained=False")
            print(f"Mask R-CNN backbone {config.backbone}: random initialisation ({why}); "
                  f"trainable BatchNorm (momentum {config.bn_momentum}), trained from scratch.")
    return model


@keras.saving.register_keras_serializable(package="course_lib")
class MaskRCNN(keras.Model):
    """Mask R-CNN, in ``"training"`` or ``"inference"`` mode (see the module docstring).

    Args:
        config: a :class:`MaskRCNNConfig` (or its ``to_dict()``).
        mode: ``"training"`` (call returns the five losses) or ``"inference"`` (detections).
        shared: another :class:`MaskRCNN` whose layers (and so weights) this one reuses.
        verbose: print how the backbone was initialised.

    Both modes hold the same layers under the same names, so weight files move between them.

    Taught in notebooks/09_mask_rcnn.
    """

    def __init__(self, config=None, mode: str = "training", shared: MaskRCNN | None = None,
                 verbose: bool = True, **kwargs):
        if mode not in ("training", "inference", "stages"):
            raise ValueError(f"mode must be 'training', 'inference' or 'stages', got {mode!r}.")
        kwargs.setdefault("name", f"maskrcnn_{mode}")
        super().__init__(**kwargs)
        self.config = _as_config(config)
        self.mode = mode
        cfg = self.config
        s = cfg.image_size
        if shared is not None:
            for attr in ("preprocess", "backbone", "anchor_generator", "rpn_head",
                         "train_proposals", "test_proposals", "box_align", "mask_align",
                         "box_head", "mask_head", "detection", "seed_generator"):
                setattr(self, attr, getattr(shared, attr))
        else:
            self.preprocess = CaffePreprocessing(name="preprocess")
            self.backbone = _build_backbone(cfg, verbose)
            self.anchor_generator = AnchorGenerator(cfg.anchor_scales, cfg.anchor_ratios,
                                                    cfg.strides, cfg.anchor_stride,
                                                    name="anchors")
            self.rpn_head = RPNHead(self.anchor_generator.anchors_per_location,
                                    cfg.fpn_channels, name="rpn_head")
            counts = self.anchor_generator.level_counts((s, s))
            self.train_proposals = ProposalLayer(
                (s, s), cfg.rpn_pre_nms_top_k_train, cfg.rpn_post_nms_top_n_train,
                cfg.rpn_nms_threshold, level_counts=counts, min_size=cfg.rpn_min_size,
                per_level_nms=cfg.rpn_per_level_nms,
                name="train_proposals")
            self.test_proposals = ProposalLayer(
                (s, s), cfg.rpn_pre_nms_top_k_test, cfg.rpn_post_nms_top_n_test,
                cfg.rpn_nms_threshold, level_counts=counts, min_size=cfg.rpn_min_size,
                per_level_nms=cfg.rpn_per_level_nms,
                name="test_proposals")
            levels = cfg.strides[:4]
            self.box_align = PyramidRoIAlign(cfg.pool_size, levels, name="box_roi_align")
            self.mask_align = PyramidRoIAlign(cfg.mask_pool_size, levels, name="mask_roi_align")
            self.box_head = BoxHead(cfg.num_classes, cfg.box_head_dim, name="box_head")
            self.mask_head = MaskHead(cfg.num_classes, cfg.mask_head_channels,
                                      norm=cfg.mask_head_norm, name="mask_head")
            self.detection = DetectionLayer(cfg.detections_per_image,
                                            cfg.detection_min_confidence,
                                            cfg.detection_nms_threshold,
                                            cfg.detection_pre_nms_top_k, name="detection")
            self.seed_generator = keras.random.SeedGenerator(cfg.seed, name="sampler_seed")
            self._build_heads()
        self.loss_trackers = {n: keras.metrics.Mean(name=n) for n in L.LOSS_NAMES}
        self.built = True

    # ---- building
    def _build_heads(self):
        cfg = self.config
        s, c = cfg.image_size, cfg.fpn_channels
        self.rpn_head.build([(None, -(-s // t), -(-s // t), c) for t in cfg.strides])
        self.box_head.build((None, None, cfg.pool_size, cfg.pool_size, c))
        self.mask_head.build((None, None, cfg.mask_pool_size, cfg.mask_pool_size, c))

    def get_config(self):
        return {"config": self.config.to_dict(), "mode": self.mode, "name": self.name,
                "trainable": self.trainable}

    @classmethod
    def from_config(cls, config):
        return cls(config=config["config"], mode=config.get("mode", "training"),
                   name=config.get("name"), verbose=False)

    # ---- the forward pass, stage by stage
    def _features(self, images, training):
        x = self.preprocess(images)
        pyramid = self.backbone(x, training=training)
        anchors = self.anchor_generator(images)
        logits, deltas = self.rpn_head(pyramid)
        return pyramid, anchors, ops.cast(logits, "float32"), ops.cast(deltas, "float32")

    def _ground_truth(self, inputs):
        cfg = self.config
        gt_boxes = ops.cast(inputs["gt_boxes"], "float32")
        gt_class_ids = ops.cast(inputs["gt_class_ids"], "int32")
        gt_valid = gt_class_ids > 0
        ignore_boxes = inputs.get("gt_ignore_boxes")
        ignore_valid = None
        if ignore_boxes is not None:
            ignore_boxes = ops.cast(ignore_boxes, "float32")
            n = int(ignore_boxes.shape[1])
            area = ((ignore_boxes[..., 2] - ignore_boxes[..., 0])
                    * (ignore_boxes[..., 3] - ignore_boxes[..., 1]))
            ignore_valid = area > 0
            if "gt_ignore_count" in inputs:
                rows = ops.arange(n, dtype="int32")[None, :]
                count = ops.cast(inputs["gt_ignore_count"], "int32")
                ignore_valid = ignore_valid & (rows < ops.reshape(count, (-1, 1)))
        return dict(gt_boxes=gt_boxes, gt_class_ids=gt_class_ids, gt_valid=gt_valid,
                    gt_masks=inputs["gt_masks"], ignore_boxes=ignore_boxes,
                    ignore_valid=ignore_valid, mini=cfg.mini_mask_shape is not None)

    def _training_pass(self, inputs, training, keep_stages=False, features=None):
        cfg = self.config
        images, meta = inputs["images"], inputs["image_meta"]
        if features is None:
            features = self._features(images, training)
        pyramid, anchors, rpn_logits, rpn_deltas = features
        gt = self._ground_truth(inputs)
        rpn_t = rpn_targets_ops(anchors, gt["gt_boxes"], gt["gt_valid"], gt["ignore_boxes"],
                                ignore_valid=gt["ignore_valid"], positive_iou=cfg.rpn_positive_iou,
                                negative_iou=cfg.rpn_negative_iou,
                                samples=cfg.rpn_batch_per_image,
                                positive_fraction=cfg.rpn_positive_fraction,
                                seed=self.seed_generator)
        losses = {
            "rpn_class_loss": L.rpn_class_loss(
                ops.take_along_axis(rpn_logits, rpn_t["indices"], axis=1), rpn_t["labels"]),
            "rpn_box_loss": L.rpn_box_loss(gather_rows(rpn_deltas, rpn_t["indices"]),
                                           rpn_t["deltas"], rpn_t["labels"]),
        }
        proposals, scores, valid = self.train_proposals([rpn_logits, rpn_deltas, anchors, meta])
        roi_t = roi_targets_ops(proposals, valid, gt["gt_boxes"], gt["gt_class_ids"],
                                gt_masks=gt["gt_masks"], ignore_boxes=gt["ignore_boxes"],
                                ignore_valid=gt["ignore_valid"], num_samples=cfg.rois_per_image,
                                positive_fraction=cfg.roi_positive_fraction,
                                positive_iou=cfg.roi_positive_iou,
                                mask_shape=(cfg.mask_shape, cfg.mask_shape),
                                mini_masks=gt["mini"], seed=self.seed_generator,
                                ignore_ioa=cfg.ignore_ioa)
        rois = ops.stop_gradient(roi_t["rois"])
        class_logits, box_deltas = self.box_head(self.box_align(rois, pyramid[:4]))
        losses["class_loss"] = L.class_loss(class_logits, roi_t["class_targets"])
        losses["box_loss"] = L.box_loss(box_deltas, roi_t["box_targets"],
                                        roi_t["class_targets"])
        # The mask head runs on the first slots of the positive slice only: the mask loss is
        # defined on positives, and the sampler put them first, in random order.
        m = cfg.mask_rois
        mask_features = self.mask_align(rois[:, :m], pyramid[:4])           # (B, M, 14, 14, C)
        mask_targets = (roi_t["mask_targets"][:, :m], roi_t["class_targets"][:, :m],
                        roi_t["positive"][:, :m])
        if not keep_stages:
            losses["mask_loss"] = self._mask_loss_on_positives(mask_features, *mask_targets)
            return losses
        mask_logits, losses["mask_loss"] = self._mask_branch(mask_features, *mask_targets)
        return {"losses": losses, "rpn_target_indices": rpn_t["indices"],
                "rpn_target_labels": rpn_t["labels"], "rpn_target_deltas": rpn_t["deltas"],
                "train_proposals": proposals, "train_proposal_valid": valid,
                "roi_boxes": roi_t["rois"], "roi_labels": roi_t["labels"],
                "roi_class_targets": roi_t["class_targets"],
                "roi_box_targets": roi_t["box_targets"], "mask_targets": roi_t["mask_targets"],
                "roi_positive": roi_t["positive"], "train_class_logits": class_logits,
                "train_mask_logits": mask_logits}

    def _mask_branch(self, features, targets, class_ids, positive):
        """Mask logits ``(B, k, 28, 28, K)`` and the mask loss on the ``k`` slots given."""
        logits = self.mask_head(features)
        return logits, L.mask_loss(logits, targets, class_ids, positive)

    def _mask_loss_on_positives(self, features, targets, class_ids, positive):
        """The mask loss on the ``M`` slots, with the mask head run on only as many as hold
        positives.

        Picks the smallest of :attr:`MaskRCNNConfig.mask_slot_counts` that holds the fullest
        image's positives and runs the mask head on that many slots (``keras.ops.switch``
        runs one branch, forward and backward). Exact: the slots left out hold no positive.
        ``features`` are the RoIAlign of all ``M`` slots, made outside the switch: it is cheap
        next to the head, and its gather loop inside a branch does not compile under
        TensorFlow's XLA.
        """
        counts = self.config.mask_slot_counts

        def on_slots(k):
            return lambda f, t, c, p: self._mask_branch(f[:, :k], t[:, :k], c[:, :k],
                                                        p[:, :k])[1]

        if len(counts) == 1:
            return on_slots(counts[0])(features, targets, class_ids, positive)
        fullest = ops.max(ops.sum(ops.cast(positive, "int32"), axis=1))
        index = ops.sum(ops.cast(ops.convert_to_tensor(counts[:-1], "int32") < fullest,
                                 "int32"))
        return ops.switch(index, [on_slots(k) for k in counts],
                          features, targets, class_ids, positive)

    def _inference_pass(self, inputs, keep_stages=False):
        images, meta = inputs["images"], inputs["image_meta"]
        pyramid, anchors, rpn_logits, rpn_deltas = self._features(images, False)
        proposals, scores, valid = self.test_proposals([rpn_logits, rpn_deltas, anchors, meta])
        rois = ops.stop_gradient(proposals)
        class_logits, box_deltas = self.box_head(self.box_align(rois, pyramid[:4]))
        boxes, class_ids, det_scores, det_valid = self.detection(
            [rois, valid, class_logits, box_deltas, meta])
        mask_logits = self.mask_head(self.mask_align(ops.stop_gradient(boxes), pyramid[:4]))
        channel = class_ids[:, :, None, None, None] + ops.zeros(
            (1, 1) + tuple(mask_logits.shape[2:4]) + (1,), "int32")
        masks = ops.sigmoid(ops.take_along_axis(mask_logits, channel, axis=-1)[..., 0])
        masks = ops.where(det_valid[:, :, None, None], masks, 0.0)
        out = {"boxes": boxes, "class_ids": class_ids, "scores": det_scores, "masks": masks,
               "valid": det_valid}
        if not keep_stages:
            return out
        probs = ops.softmax(class_logits, axis=-1)
        best = ops.argmax(probs[..., 1:], axis=-1) + 1                            # (B, R)
        index = ops.cast(best, "int32")[:, :, None, None] + ops.zeros((1, 1, 1, 4), "int32")
        best_deltas = ops.take_along_axis(box_deltas, index, axis=2)[:, :, 0]
        refined = clip_to_window_ops(box_ops.decode_ops(best_deltas, rois),
                                     meta_window(meta))
        return {"anchors": anchors, "rpn_scores": ops.sigmoid(rpn_logits),
                "rpn_deltas": rpn_deltas, "proposals": proposals, "proposal_scores": scores,
                "proposal_valid": valid, "class_probs": probs, "refined_boxes": refined,
                "refined_class_ids": ops.cast(best, "int32"), "detections": boxes,
                "detection_class_ids": class_ids, "detection_scores": det_scores,
                "detection_valid": det_valid, "masks": masks, "mask_logits": mask_logits,
                "pyramid": pyramid}

    def call(self, inputs, training=None):
        if self.mode == "training":
            return self._training_pass(inputs, training)
        if self.mode == "stages":
            out = self._inference_pass(inputs, keep_stages=True)
            if "gt_boxes" in inputs:
                out.update(self._training_pass(inputs, False, keep_stages=True))
            return out
        return self._inference_pass(inputs)

    def stages(self, batch) -> dict:
        """Every intermediate stage of one batch, as NumPy arrays (see :func:`run_stages`)."""
        return run_stages(self, batch)

    # ---- fit without y: the losses are the predictions
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if not isinstance(y_pred, dict) or set(L.LOSS_NAMES) - set(y_pred):
            raise ValueError("MaskRCNN.compute_loss expects the training model's output (a "
                             "dict of the five losses); fit the *training* model of "
                             "build_models(), not the inference model.")
        total = 0.0
        for name in L.LOSS_NAMES:
            self.loss_trackers[name].update_state(y_pred[name])
            total = total + y_pred[name]
        if self.losses:
            total = total + ops.sum(ops.stack(self.losses))
        return total

    def compute_output_shape(self, input_shape):
        raise NotImplementedError


def _to_numpy(tree):
    if isinstance(tree, dict):
        return {k: _to_numpy(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [_to_numpy(v) for v in tree]
    return keras.ops.convert_to_numpy(tree)


#: One "stages" model per model it shares its layers with (made on first use, compiled once).
_STAGE_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


STAGE_NAMES = ("anchors", "rpn_scores", "rpn_deltas", "proposals", "proposal_scores",
               "proposal_valid", "class_probs", "refined_boxes", "refined_class_ids",
               "detections", "detection_class_ids", "detection_scores", "detection_valid",
               "masks")


def build_models(config=None, verbose: bool = True) -> tuple[MaskRCNN, MaskRCNN]:
    """``(training_model, inference_model)`` for ``config`` (default :func:`nuclei_config`),
    sharing every layer and weight.

    Taught in notebooks/09_mask_rcnn.
    """
    training = MaskRCNN(config, mode="training", verbose=verbose)
    inference = MaskRCNN(training.config, mode="inference", shared=training, verbose=False)
    return training, inference


def run_stages(model: MaskRCNN, batch: dict) -> dict:
    """All stages of one forward pass of ``batch`` (a dataset batch dict) as NumPy arrays.

    Keys: :data:`STAGE_NAMES` (inference path: anchors ``(A, 4)``, rpn_scores ``(B, A)``,
    proposals ``(B, N, 4)`` …, masks ``(B, D, 28, 28)``) plus ``pyramid`` (P2..P6) and
    ``mask_logits``; with ground truth in the batch also ``losses`` and the training targets
    (``rpn_target_indices/labels/deltas``, ``train_proposals``, ``roi_boxes``, ``roi_labels``,
    ``roi_class_targets``, ``roi_box_targets``, ``mask_targets``, ``roi_positive``).

    The pass runs compiled (``predict_on_batch`` of a third :class:`MaskRCNN` in ``"stages"``
    mode sharing ``model``'s layers), with BatchNorm in inference mode; its ``detections`` and
    ``masks`` equal the inference model's outputs.

    Taught in notebooks/09_mask_rcnn.
    """
    stage_model = model if model.mode == "stages" else _STAGE_MODELS.get(model)
    if stage_model is None:
        stage_model = MaskRCNN(model.config, mode="stages", shared=model, verbose=False)
        _STAGE_MODELS[model] = stage_model
    batch = {k: np.asarray(v) for k, v in batch.items()}
    return _to_numpy(stage_model.predict_on_batch(batch))


def parameter_counts(model: MaskRCNN) -> dict[str, int]:
    """Parameters per part: backbone, fpn, rpn, box_head, mask_head (and the total).

    Taught in notebooks/09_mask_rcnn.
    """
    backbone = model.backbone.get_layer("backbone").count_params()
    counts = {"backbone": backbone, "fpn": model.backbone.count_params() - backbone,
              "rpn": model.rpn_head.count_params(), "box_head": model.box_head.count_params(),
              "mask_head": model.mask_head.count_params()}
    counts["total"] = sum(counts.values())
    return counts


# ------------------------------------------------------------------------------------ detect

def _rgb(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"detect: images must be H×W×3 (or grey / RGBA), got {image.shape}.")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    return image[..., :3]


def prepare_images(images, image_size: int, long_side: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Resize (longer side ``long_side``, default ``image_size``) and pad images to the model's
    square: ``(B, S, S, 3)`` float32 and ``image_meta (B, 7)`` as
    :class:`~course_lib.data.pipeline.MaskRCNNDataset` makes them.

    Taught in notebooks/09_mask_rcnn.
    """
    batch, metas = [], []
    for image in images:
        image = _rgb(image)
        padded, _, window, scale = resize_and_pad(image, None, image_size, long_side)
        batch.append(padded.astype(np.float32))
        metas.append(image_meta(image.shape, window, scale))
    return np.stack(batch), np.stack(metas)


def pass_size(n_images: int, batch_size: int) -> int:
    """Images in the forward pass that carries ``n_images`` (``<= batch_size``): the next power
    of two, at most ``batch_size``.

    Every batch shape is traced once (seconds to tens of seconds on a 2-core CPU), so padding
    keeps the shapes few: 1, 2, 4, … and ``batch_size``. Padding one image up to a whole
    batch, as ``detect`` once did, cost the course's single-image calls (evaluation, shipped
    models, tiled detection of a small image) twice the work of a batch of one (bench/README,
    "Batch 1 on AVX2": the shipped nuclei model 1.9× faster on one-window images).

    Taught in notebooks/09_mask_rcnn.
    """
    if not 1 <= n_images <= batch_size:
        raise ValueError(f"pass_size: n_images={n_images} must be between 1 and "
                         f"batch_size={batch_size}")
    return min(batch_size, 1 << (n_images - 1).bit_length())


def detect(inference_model: MaskRCNN, images, batch_size: int = 2,
           mask_threshold: float | None = None, min_score: float = 0.0) -> list[dict]:
    """Detect objects in images of any sizes (DESIGN's public API).

    Args:
        inference_model: the inference model of :func:`build_models` (or a loaded one).
        images: a list of ``H×W×3`` uint8 images (grey and RGBA are converted).
        batch_size: images per forward pass. A shorter pass (the last one, or a call with
            fewer images) is padded with copies to :func:`pass_size`, the next power of two:
            one image alone runs as a batch of one.
        mask_threshold: default the config's 0.5.
        min_score: detections scoring below this are dropped before their masks are pasted
            (pasting is most of ``detect``'s time on a CPU; a label image keeps only the
            confident ones anyway). Default 0: every detection the model returns.

    Returns:
        One dict per image: ``boxes`` ``(N, 4)`` float32 in the original image's pixel edges,
        ``class_ids`` ``(N,)`` int32, ``scores`` ``(N,)`` float32 (best first), ``masks``
        ``H×W×N`` bool at the original resolution.

    Taught in notebooks/09_mask_rcnn.
    """
    from course_lib.ops.masks import paste_mask

    if inference_model.mode != "inference":
        raise ValueError("detect needs the inference model (second of build_models()).")
    cfg = inference_model.config
    threshold = cfg.mask_threshold if mask_threshold is None else mask_threshold
    if isinstance(images, np.ndarray) and images.ndim == 4:
        images = list(images)
    results = []
    for start in range(0, len(images), batch_size):
        chunk = [_rgb(im) for im in images[start:start + batch_size]]
        x, meta = prepare_images(chunk, cfg.image_size, cfg.image_long_side)
        n_real = len(chunk)
        size = pass_size(n_real, batch_size)
        if n_real < size:  # few compiled shapes: pad a short batch with copies
            x = np.concatenate([x, np.repeat(x[-1:], size - n_real, 0)])
            meta = np.concatenate([meta, np.repeat(meta[-1:], size - n_real, 0)])
        out = inference_model.predict_on_batch({"images": x, "image_meta": meta})
        for i, image in enumerate(chunk):
            h, w = image.shape[:2]
            keep = np.flatnonzero(out["valid"][i] & (out["scores"][i] >= min_score))
            fields = parse_image_meta(meta[i])
            boxes = unresize_boxes(out["boxes"][i][keep], fields["window"], float(fields["scale"]))
            boxes = np.clip(boxes, 0, [h, w, h, w]).astype(np.float32)
            masks = np.zeros((h, w, len(keep)), bool)
            for j, k in enumerate(keep):
                masks[..., j] = paste_mask(out["masks"][i][k], boxes[j], (h, w), threshold)
            results.append({"boxes": boxes,
                            "class_ids": out["class_ids"][i][keep].astype(np.int32),
                            "scores": out["scores"][i][keep].astype(np.float32),
                            "masks": masks})
    return results


__all__ = ["MaskRCNNConfig", "MaskRCNN", "nuclei_config", "nuclei_cpu_config", "voc_config", "build_models",
           "detect", "pass_size", "run_stages", "parameter_counts", "prepare_images", "STAGE_NAMES",
           "VOC_CLASSES"]
