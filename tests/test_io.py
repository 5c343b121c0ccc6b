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


def test_16bit_rgb_tiff_rescaled_by_its_range(tmp_path):
    # RGB * 257 spans 10 * 257 .. 220 * 257, so min-max gives round((v - 10) / 210 * 255):
    # 20 -> 12.14 -> 12, 30 -> 24.29 -> 24, 40 -> 36.43 -> 36, 50 -> 48.57 -> 49, 60 -> 60.71
    # -> 61, 70 -> 72.86 -> 73, 80 -> 85, 90 -> 97.14 -> 97, 200 -> 230.71 -> 231,
    # 210 -> 242.86 -> 243, 220 -> 255; one range for all three channels
    data = (RGB.astype(np.uint16) * 257)
    path = tmp_path / "rgb16.tif"
    tifffile.imwrite(path, data)
    expected = [[[0, 12, 24], [36, 49, 61]], [[73, 85, 97], [231, 243, 255]]]
    np.testing.assert_array_equal(read_image(path), expected)


def test_12bit_data_in_16bit_png_is_not_dark(tmp_path):
    # a 12-bit camera: values 0..4095 stored in uint16. Dividing by 65535 would give at most
    # 4095 / 65535 * 255 = 15.9 -> 16; by the image's range: 1024 / 4095 * 255 = 63.77 -> 64,
    # 2048 / 4095 * 255 = 127.53 -> 128, 4095 -> 255
    data = np.array([[0, 1024], [2048, 4095]], dtype=np.uint16)
    path = tmp_path / "g12.png"
    Image.fromarray(data).save(path)
    np.testing.assert_array_equal(read_image(path)[..., 1], [[0, 64], [128, 255]])
    # an offset (camera bias 100) is removed too: (v - 100) / 3995 * 255; 2097.5 -> 127.5 -> 128
    offset = np.array([[100, 4095]], dtype=np.uint16)
    np.testing.assert_array_equal(to_uint8_rgb(offset)[..., 0], [[0, 255]])
    # a constant image has no range: falls back to v / dtype max (65535 -> 255)
    np.testing.assert_array_equal(to_uint8_rgb(np.full((1, 2), 65535, np.uint16))[..., 0],
                                  [[255, 255]])


def test_robust_percentile_rule_by_hand():
    # 0..2000: the 0.1 and 99.9 percentiles (linear) sit at positions 2 and 1998, values 2 and
    # 1998; v -> (v - 2) / 1996 * 255 clipped: 0 -> 0, 1000 -> 127.5 -> 128, 2000 -> 255
    values = np.arange(2001, dtype=np.uint16).reshape(1, -1)
    out = to_uint8_rgb(values, rescale="percentile")[0, :, 0]
    assert (out[0], out[1000], out[2000]) == (0, 128, 255)
    assert out[1] == 0 and out[1999] == 255  # beyond the percentiles: clipped
    with pytest.raises(ValueError, match="rescale"):
        to_uint8_rgb(values, rescale="gamma")


def test_jpeg_reads_close_to_written(tmp_path):
    flat = np.full((16, 16, 3), (120, 60, 200), dtype=np.uint8)
    path = tmp_path / "flat.jpg"
    Image.fromarray(flat).save(path, quality=95)
    image = read_image(path)
    assert image.shape == (16, 16, 3)
    assert np.abs(image.astype(int) - flat).max() <= 3  # JPEG is lossy


def test_float_and_bool_conversion():
    # in [0, 1]: times 255 (0.5 * 255 = 127.5 rounds to even 128)
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[0.0, 0.5, 1.0]]))[..., 0],
                                  [[0, 128, 255]])
    # beyond [0, 1]: rescaled by the range 0..2, not clipped (0.5 -> 63.75 -> 64, 1 -> 127.5
    # -> 128), and negative values likewise (-1..1: 0 -> 127.5 -> 128)
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[0.0, 0.5, 1.0, 2.0]]))[..., 0],
                                  [[0, 64, 128, 255]])
    np.testing.assert_array_equal(to_uint8_rgb(np.array([[-1.0, 0.0, 1.0]]))[..., 2],
                                  [[0, 128, 255]])
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


def test_multipage_tiff_refused_planar_rgb_read(tmp_path):
    # three grey pages: a stack, not an RGB image; the error names the file and the fix
    pages = np.stack([np.full((4, 5), v, np.uint8) for v in (10, 20, 30)])
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, pages, photometric="minisblack")
    with pytest.raises(ImageReadError, match=r"stack.tif is a multi-page TIFF \(3 pages"):
        read_image(path)
    # one page holding RGB as separate planes (axes SYX): the file's own tag says channels
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.moveaxis(RGB, -1, 0), photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_image(planar), RGB)
    # a channel-first array handed over directly is refused, not guessed
    with pytest.raises(ImageReadError, match="channels last"):
        to_uint8_rgb(np.zeros((3, 6, 6)))


def test_decompression_bomb_becomes_image_read_error(tmp_path, monkeypatch):
    import PIL.Image

    path = tmp_path / "big.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(path)
    # Pillow raises its DecompressionBombError above twice the limit: 64 pixels > 2 * 10
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 10)
    with pytest.raises(ImageReadError, match=r"big.png.*MAX_IMAGE_PIXELS = None"):
        read_image(path)


def test_colour_label_image_keeps_every_instance(tmp_path):
    from course_lib.data.io import read_label_image

    # three instances; A and B share the red channel (reading channel 0 would merge them)
    a, b, c = (200, 0, 0), (200, 50, 0), (0, 0, 90)
    rgb = np.zeros((2, 4, 3), np.uint8)
    rgb[0, 0], rgb[0, 1], rgb[1, 2], rgb[1, 3] = a, b, c, c
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    # labels by sorted colour: (0, 0, 90) -> 1, (200, 0, 0) -> 2, (200, 50, 0) -> 3
    np.testing.assert_array_equal(read_label_image(tmp_path / "colour.png"),
                                  [[2, 3, 0, 0], [0, 0, 1, 1]])
    # a palette label file gives its indices, not its colours; 16-bit grey keeps its values
    idx = np.array([[0, 7], [3, 7]], np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([255, 255, 255] * 256)
    im.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "p.png"), idx)
    big = np.array([[0, 300], [70000 % 65536, 1]], np.uint16)
    Image.fromarray(big).save(tmp_path / "g16.png")
    np.testing.assert_array_equal(read_label_image(tmp_path / "g16.png"), big.astype(np.int32))
