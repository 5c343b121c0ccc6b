"""The peer for ``bench_maskrcnn_infer.py``: torchvision's Mask R-CNN inference, timed.

Runs in a throw-away environment with torch and torchvision (the course never depends on
them); ``bench_maskrcnn_infer.py --peer-python ENV/bin/python`` calls it on the same images in
the same run. Standalone: ``python bench/peer_torchvision_infer.py IMAGES.npy --repeats 3``
with ``IMAGES.npy`` of shape (B, S, S, 3), float32 0..255.

Settings as ours: ResNet-50-FPN, random initialisation, 2 classes, eval mode under
``torch.no_grad()``, the images kept at S (``min_size = max_size = S``), 1000 proposals per
image after NMS, and detections capped alike: at most 100 per image with no score threshold
(``box_score_thresh=0``), so that its mask head runs on 100 boxes an image as ours does (at
random initialisation torchvision's default threshold, 0.05, would drop an arbitrary share of
them and make its step cheaper for no reason). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
import torchvision
from torchvision.models.detection import maskrcnn_resnet50_fpn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("images")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    data = np.load(args.images)
    size = data.shape[1]
    images = [torch.from_numpy(im).permute(2, 0, 1) / 255.0 for im in data]
    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2,
                                  min_size=size, max_size=size, rpn_post_nms_top_n_test=1000,
                                  box_detections_per_img=100, box_score_thresh=0.0).eval()

    def run():
        with torch.no_grad():
            return model(images)

    t0 = time.perf_counter()
    out = run()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - t0)
    print(json.dumps({"peer": f"torchvision {torchvision.__version__} (torch {torch.__version__})",
                      "threads": torch.get_num_threads(),
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      # torch runs its convolutions through its own oneDNN, which
                      # ATEN_CPU_CAPABILITY does not cap: ONEDNN_MAX_CPU_ISA does
                      "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset (all)"),
                      "first_s": first, "times_s": times, "median_s": statistics.median(times),
                      "detections_per_image": [int(len(o["boxes"])) for o in out]}))


if __name__ == "__main__":
    main()
