"""The image_meta row is written and read in one place, the same in NumPy and in the graph."""

from __future__ import annotations

import numpy as np
from keras import ops

from course_lib.ops import geometry as G


def test_image_meta_round_trip_by_hand():
    # a 100×50 image into a 64 square: scale 64/100, new size 64×32, centred at columns 16..48
    image = np.zeros((100, 50, 3), np.uint8)
    _, _, window, scale = G.resize_and_pad(image, None, 64)
    assert scale == 0.64 and window.tolist() == [0, 16, 64, 48]
    row = G.image_meta(image.shape, window, scale)
    assert row.shape == (G.IMAGE_META_SIZE,) == (len(G.IMAGE_META_FIELDS),)
    fields = G.parse_image_meta(row[None])
    assert fields["original_shape"].tolist() == [[100, 50]]
    assert fields["window"].tolist() == [[0, 16, 64, 48]] and np.isclose(fields["scale"][0], 0.64)
    # the graph's reader gives the same window
    np.testing.assert_array_equal(ops.convert_to_numpy(G.meta_window(row[None])),
                                  fields["window"])
    # and a box of the square goes back to the original's pixel edges
    box = np.array([[0, 16, 64, 48]], np.float32)
    np.testing.assert_allclose(G.unresize_boxes(box, fields["window"][0], 0.64),
                               [[0, 0, 100, 50]], atol=1e-5)
