"""The peer for ``bench_maskrcnn_step.py``: torchvision's Mask R-CNN, one training step timed.

Runs in a throw-away environment with torch and torchvision (the course never depends on
them); ``bench_maskrcnn_step.py --peer-python ENV/bin/python`` calls it on the same batch in
the same run. Standalone: ``python bench/peer_torchvision_maskrcnn.py BATCH.npz --steps 3``
where the ``.npz`` holds ``images`` (B, S, S, 3) float32 0..255, ``boxes`` (B, N, 4) float32
(y1, x1, y2, x2) pixel edges and ``masks`` (B, S, S, N) bool. ``--bf16`` runs the forward
pass under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (torchvision's RoIAlign casts
itself back to float32 there), the peer of our ``mixed_bfloat16`` policy. ``--rpn-as-course``
gives torchvision's RPN the course's two RPN conventions: deltas divided by (0.1, 0.1, 0.2, 0.2)
(its box coder's weights (10, 10, 5, 5); torchvision's RPN uses 1s) and Glorot-uniform kernels
with zero biases in the RPN head (Keras' defaults; torchvision draws normal(0, 0.01)). At
``--lr 0.001`` these two are part of what sets how fast the RPN closes in on the objects, so
how many positives the mask head trains on (bench/README.md, 8 Dec 2026).

Settings as the course's benchmark: ResNet-50-FPN with random initialisation (torchvision then
trains every backbone layer and uses ordinary BatchNorm), 2 classes, the images kept at S
(``min_size = max_size = S``, so torchvision does not scale them to 800), torchvision's defaults
for everything the paper fixes (256 anchors, 2000 proposals, 512 RoIs, 25 % positive), SGD
with momentum 0.9 at ``--lr`` (default 0: the network stays at its initialisation, so every
step does the same work; the update is computed all the same), the CPU with as many threads
as cores. Prints one JSON line, with the positive RoIs per image the sampler found at each step
(torchvision's mask head runs on exactly those; ours on the smallest multiple of
``mask_roi_step`` slots that holds them) and the last step's total loss (at 0.01 from random
initialisation it diverges to NaN within five steps, and a diverged network proposes nothing
but the ground truth, which makes its steps cheaper).
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
from torchvision.models.detection._utils import BoxCoder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("batch")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--bf16", action="store_true", help="bfloat16 autocast on the CPU")
    parser.add_argument("--lr", type=float, default=0.0, help="SGD learning rate")
    parser.add_argument("--rpn-as-course", action="store_true",
                        help="the course's RPN delta coding and RPN head initialisation")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)

    data = np.load(args.batch)
    size = data["images"].shape[1]
    images = [torch.from_numpy(im).permute(2, 0, 1) / 255.0 for im in data["images"]]
    targets = []
    for boxes, masks in zip(data["boxes"], data["masks"], strict=True):
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        targets.append({
            "boxes": torch.from_numpy(boxes[keep][:, [1, 0, 3, 2]]),     # torchvision: x1 y1 x2 y2
            "labels": torch.ones(int(keep.sum()), dtype=torch.int64),
            "masks": torch.from_numpy(np.moveaxis(masks[..., keep], -1, 0).astype(np.uint8))})

    model = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=2,
                                  min_size=size, max_size=size)
    model.train()
    if args.rpn_as_course:
        model.rpn.box_coder = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
        for conv in model.rpn.head.modules():
            if isinstance(conv, torch.nn.Conv2d):
                torch.nn.init.xavier_uniform_(conv.weight)
                torch.nn.init.zeros_(conv.bias)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    positives: list[list[int]] = []            # positive RoIs per image, every step
    sample = model.roi_heads.select_training_samples

    def counted_sample(proposals, targets):
        out = sample(proposals, targets)
        positives.append([int((labels > 0).sum()) for labels in out[2]])   # (.., labels, ..)
        return out

    model.roi_heads.select_training_samples = counted_sample

    last_loss: list[float] = []

    def step() -> float:
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            losses = model(images, targets)
        total = sum(loss.float() for loss in losses.values())
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        elapsed = time.perf_counter() - start
        last_loss[:] = [float(total)]
        return elapsed

    first = step()
    times = [step() for _ in range(args.steps)]
    print(json.dumps({"peer": f"torchvision {torchvision.__version__} (torch {torch.__version__})"
                              + (", bfloat16 autocast" if args.bf16 else ""),
                      "threads": torch.get_num_threads(),
                      # what ATen dispatches to (ATEN_CPU_CAPABILITY caps it): the cap's proof
                      "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                      # torch runs its convolutions through its own oneDNN, which
                      # ATEN_CPU_CAPABILITY does not cap: ONEDNN_MAX_CPU_ISA does
                      "onednn_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "unset (all)"),
                      "first_s": first, "times_s": times,
                      "median_s": statistics.median(times),
                      "positive_rois_per_image": statistics.mean(sum(positives, [])),
                      "positive_rois_per_step": positives, "lr": args.lr,
                      "rpn": "as the course's" if args.rpn_as_course else "torchvision's",
                      "last_loss": last_loss[0],
                      "parameters": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()
