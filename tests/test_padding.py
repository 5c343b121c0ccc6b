"""The one mirror padding of the course, against hand-worked values."""

from __future__ import annotations

import numpy as np

from course_lib.ops.padding import MIRROR_MODE, mirror_pad


def test_mirror_pad_by_hand():
    # the border pixel is the mirror's axis and is not repeated: a b c -> c b | a b c | b a
    row = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(mirror_pad(row, ((0, 0), (2, 2))), [[3, 2, 1, 2, 3, 2, 1]])
    assert MIRROR_MODE == "reflect"
    # wider than the image: mirrored again and again (period 2 * (3 - 1) = 4)
    np.testing.assert_array_equal(mirror_pad(row, ((0, 0), (5, 0))), [[2, 1, 2, 3, 2, 1, 2, 3]])
    # channels are not padded; rows and columns independently; dtype kept
    image = np.arange(2 * 3 * 2, dtype=np.uint8).reshape(2, 3, 2)
    out = mirror_pad(image, ((1, 0), (0, 1)))
    assert out.shape == (3, 4, 2) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, :3], image[1])  # the row above is row 1
    np.testing.assert_array_equal(out[1:, 3], image[:, 1])  # the column right is column 1


def test_unet_crops_and_overlap_tile_pad_alike():
    # a 3 x 3 image mirrored up to a 5 x 5 tile by the U-Net dataset equals mirror_pad by one
    from course_lib.data import pipeline as P

    image = np.arange(27, dtype=np.uint8).reshape(3, 3, 3)

    class One:
        def __len__(self):
            return 1

        def load(self, i):
            return image.copy(), np.zeros((3, 3, 0), bool), np.zeros(0, np.int32)

    x, _, _ = P.UNetDataset(One(), batch_size=1, tile_size=5)[0]
    np.testing.assert_array_equal(x[0], mirror_pad(image, ((1, 1), (1, 1))))
    # the first padded row is row 1 (by hand: the axis is row 0)
    np.testing.assert_array_equal(x[0, 0, 1:4], image[1])
