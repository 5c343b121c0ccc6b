"""A tiny Mask R-CNN configuration and hand-drawn synthetic batches for the model tests.

Taught in notebooks/09_mask_rcnn (the model these fixtures exercise).
"""

from __future__ import annotations

import numpy as np

from course_lib.data.pipeline import MaskRCNNDataset
from course_lib.models import maskrcnn as M


def tiny_config(**overrides) -> M.MaskRCNNConfig:
    """64 px images, the light backbone at its default widths, small heads and samples."""
    values = dict(image_size=64, backbone="light", fpn_channels=32, box_head_dim=64,
                  mask_head_channels=32, rpn_batch_per_image=64, rpn_pre_nms_top_k_train=200,
                  rpn_post_nms_top_n_train=100, rpn_pre_nms_top_k_test=100,
                  rpn_post_nms_top_n_test=50, rois_per_image=32, max_instances=8,
                  detections_per_image=10, detection_pre_nms_top_k=100)
    values.update(overrides)
    return M.nuclei_config(**values)


class BlobSamples:
    """In-memory sample provider: dark images with bright ellipses (nucleus look-alikes).

    ``load(i) -> (image H×W×3 uint8, masks H×W×N bool, class_ids (N,))``; the image sizes
    differ from the model's square, so resizing and the window are exercised.
    """

    def __init__(self, n_images: int = 2, shape=(96, 120), n_objects: int = 4, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.samples = []
        h, w = shape
        yy, xx = np.mgrid[:h, :w] + 0.5
        for _ in range(n_images):
            masks = []
            taken = np.zeros((h, w), bool)
            while len(masks) < n_objects:
                cy, cx = rng.uniform(14, h - 14), rng.uniform(14, w - 14)
                ry, rx = rng.uniform(7, 13), rng.uniform(7, 13)
                m = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
                if (m & taken).any():
                    continue
                taken |= m
                masks.append(m)
            masks = np.stack(masks, -1)
            image = np.full((h, w, 3), 20, np.uint8)
            image[taken] = (200, 160, 220)
            image = np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
            self.samples.append((image, masks, np.ones(n_objects, np.int32)))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int):
        return self.samples[i]

    def name(self, i: int) -> str:
        return f"blobs_{i}"


def blob_batch(config: M.MaskRCNNConfig, n_images: int = 2, seed: int = 0, **kwargs) -> dict:
    """One MaskRCNNDataset batch of :class:`BlobSamples` for ``config``."""
    provider = BlobSamples(n_images, seed=seed, **kwargs)
    ds = MaskRCNNDataset.for_config(config, provider, batch_size=n_images, shuffle=False)
    return ds[0], provider
