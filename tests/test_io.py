"""Tests of course_lib.data.io against hand-made files written with Pillow and tifffile.

The oracle is the array we wrote: reading it back must give the documented conversion.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from course_lib.data.io import ImageReadError, read_array, read_image, read_mask, to_uint8_rgb

RGB = np.array([[[10, 20, 30], [40, 50, 60]],
                [[70, 80, 90], [200, 210, 220]]], dtype=np.uint8)


def test_rgba_png_drops_alpha(tmp_path):
    alpha = np.array([[255, 0], [128, 7]], dtype=np.uint8)[..., None]
    path = tmp_path / "rgba.png"
    Image.fromarray(np.concatenate([RGB, alpha], axis=2), mode="RGBA").save(path)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (2, 2, 3)
    np.testing.assert_array_equal(image, RGB)  # colour kept even where alpha is 0


def test_grey_png_is_repeated(tmp_path):
    grey = np.array([[0, 1, 2], [253, 254, 255]], dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(grey, mode="L").save(path)
    image = read_image(path)
    assert image.shape == (2, 3, 3)
    for c in range(3):
        np.testing.assert_array_equal(image[..., c], grey)


def test_16bit_png_rescaled(tmp_path):
    # 65535 -> 255, 257 -> 1 (65535 / 255 = 257), 32896 = 128 * 257 -> 128, 0 -> 0
    data = np.array([[0, 257], [32896, 65535]], dtype=np.uint16)
    path = tmp_path / "g16.png"
    Image.fromarray(data).save(path)
    assert read_array(path).dtype == np.uint16
    image = read_image(path)
    np.testing.assert_array_equal(image[..., 0], [[0, 1], [128, 255]])


def test_16bit_rgb_tiff_rescaled(tmp_path):
    data = (RGB.astype(np.uint16) * 257)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, data)
    np.testing.assert_array_equal(read_image(path), RGB)


def test_jpeg_reads_close_to_written(tmp_path):
    flat = np.full((16, 16, 3), (120, 60, 200), dtype=np.uint8)
    path = tmp_path / "flat.jpg"
    Image.fromarray(flat).save(path, quality=95)
    image = read_image(path)
    assert image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - flat).max() <= 3  # JPEG is lossy


def test_float_and_bool_conversion():
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[0.0, 0.5, 1.0, 2.0]]))[..., 0],
                                  [[0, 128, 255, 255]])  # 0.5 * 255 = 127.5 rounds to 128
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[True, False]]))[..., 1], [[255, 0]])


def test_wrong_shape_is_refused():
    with pytest.raises(ImageReadError, match="shape"):
        to_uint8_rgb(np.zeros((6, 6, 5)))


def test_masks_binary_and_alpha_ignored(tmp_path):
    m = np.array([[0, 255, 0], [0, 1, 0]], dtype=np.uint8)
    Image.fromarray(m, mode="L").save(tmp_path / "m.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), m > 0)
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 3] = 255  # opaque black: no foreground at all
    rgba[0, 0, :3] = 255
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba_mask.png")
    expected = np.zeros((2, 3), bool)
    expected[0, 0] = True
    np.testing.assert_array_equal(read_mask(tmp_path / "rgba_mask.png"), expected)


def test_corrupt_bytes_name_the_file(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a png at all")
    with pytest.raises(ImageReadError, match="garbage.png") as info:
        read_image(path)
    assert "re-download or regenerate" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_truncated_png_raises(tmp_path):
    rng = np.random.default_rng(0)
    noisy = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)  # incompressible
    full = tmp_path / "full.png"
    Image.fromarray(noisy).save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    np.testing.assert_array_equal(read_image(full), noisy)
    with pytest.raises(ImageReadError, match="cut.png"):
        read_image(cut)
    with pytest.raises(ImageReadError, match="cut.png"):
        read_mask(cut)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        read_image(tmp_path / "nope.png")


def test_palette_png_expands_to_colours(tmp_path):
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    np.testing.assert_array_equal(image[0, 1], [128, 0, 0])
    np.testing.assert_array_equal(image[1, 0], [0, 128, 0])
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), idx > 0)
