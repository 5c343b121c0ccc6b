"""A tiny sample provider shared by the COCO-evaluation tests."""

from __future__ import annotations

import numpy as np


class TwoImages:
    """Two 32×32 images: squares of class 1 and 2 in the first, one of class 2 in the second.

    Each image is filled with its own index, so a stand-in detector can tell them apart.
    """

    def __init__(self):
        a = np.zeros((32, 32, 2), bool)
        a[2:10, 2:10, 0] = True
        a[15:30, 12:28, 1] = True
        b = np.zeros((32, 32, 1), bool)
        b[5:20, 5:25, 0] = True
        self.items = [(a, np.array([1, 2])), (b, np.array([2]))]

    def __len__(self):
        return 2

    def load(self, i):
        masks, ids = self.items[i]
        return np.full((32, 32, 3), i, np.uint8), masks, ids
