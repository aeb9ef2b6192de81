"""Tests for latentindigo.imageio; every input file is built here with PIL/numpy."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from latentindigo.imageio import (
    MAX_INPUT_PIXELS,
    ImageError,
    load_image,
    save_png,
    to_image,
    to_tensor,
)

RED = (255, 0, 0)
WHITE = (255, 255, 255)


def noise(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def assert_refused(source, fragment: str, **kwargs) -> str:
    with pytest.raises(ImageError) as info:
        load_image(source, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert fragment in message
    return message


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A real 1x1 PNG whose IHDR claims another size (a decompression-bomb header)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    # Signature (8) + chunk length (4) + b"IHDR" (4), then width and height; CRC covers type + data.
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


# --- modes and metadata -------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displaying
    path = tmp_path / "rotated.jpg"
    Image.new("RGB", (20, 10), RED).save(path, exif=exif)
    image = load_image(path)
    assert image.size == (10, 20)
    assert image.mode == "RGB"


def test_grayscale(tmp_path):
    path = tmp_path / "gray.png"
    Image.new("L", (4, 3), 77).save(path)
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (4, 3))
    assert image.getpixel((0, 0)) == (77, 77, 77)


def test_bilevel(tmp_path):
    path = tmp_path / "bw.png"
    Image.new("1", (4, 4), 1).save(path)
    assert load_image(path).getpixel((0, 0)) == WHITE


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    loaded = load_image(path)
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == RED


def test_grayscale_with_alpha(tmp_path):
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (0, 0))
    image.putpixel((1, 0), (50, 255))
    path = tmp_path / "la.png"
    image.save(path)
    loaded = load_image(path)
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == (50, 50, 50)


def test_rgba_is_composited_on_white(tmp_path):
    image = Image.new("RGBA", (3, 1))
    image.putpixel((0, 0), (0, 0, 255, 0))
    image.putpixel((1, 0), (255, 0, 0, 255))
    image.putpixel((2, 0), (0, 0, 0, 128))
    path = tmp_path / "rgba.png"
    image.save(path)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    assert loaded.getpixel((0, 0)) == WHITE
    assert loaded.getpixel((1, 0)) == RED
    assert all(abs(c - 127) <= 1 for c in loaded.getpixel((2, 0)))


def test_16_bit_png_is_rounded_to_8_bit(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 32768, 65535, 257]], dtype=np.uint16)).save(path)
    with Image.open(path) as raw:
        assert raw.mode.startswith("I")
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 1]


def test_16_bit_pgm(tmp_path):
    path = tmp_path / "deep.pgm"
    Image.fromarray(np.array([[32768, 65535]], dtype=np.uint16)).save(path)
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0)) for x in range(2)] == [(128,) * 3, WHITE]


def test_float_tiff(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32)).save(path)
    loaded = load_image(path)
    assert [loaded.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 255]


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(path, quality=100)
    loaded = load_image(path)
    assert loaded.mode == "RGB"
    r, g, b = loaded.getpixel((4, 4))
    assert r > 240 and g < 15 and b < 15


def test_ycbcr_and_lab_images():
    assert load_image(Image.new("YCbCr", (2, 2), (255, 128, 128))).getpixel((0, 0)) == WHITE
    assert load_image(Image.new("LAB", (2, 2), (0, 128, 128))).getpixel((0, 0))[1] <= 2


def test_animated_gif_uses_first_frame(tmp_path):
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (8, 8), colour) for colour in (RED, (0, 0, 255), (0, 255, 0))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    assert load_image(path).getpixel((4, 4)) == RED


def test_multipage_tiff_uses_first_page(tmp_path):
    path = tmp_path / "pages.tif"
    pages = [Image.new("RGB", (8, 8), colour) for colour in (RED, (0, 0, 255))]
    pages[0].save(path, save_all=True, append_images=pages[1:])
    assert load_image(path).getpixel((0, 0)) == RED


# --- other source types ---------------------------------------------------------------------


def test_bytes_stream_and_pil_sources(tmp_path):
    original = noise()
    path = tmp_path / "noise.png"
    original.save(path)
    data = path.read_bytes()
    expected = np.asarray(original)
    for source in (str(path), path, data, io.BytesIO(data)):
        assert np.array_equal(np.asarray(load_image(source)), expected)
    with Image.open(path) as lazy:
        assert np.array_equal(np.asarray(load_image(lazy)), expected)

    class OneWayStream:  # e.g. a socket or an HTTP response body
        name = "upload.png"

        def read(self, size: int = -1) -> bytes:
            return data

        def seekable(self) -> bool:
            return False

    assert np.array_equal(np.asarray(load_image(OneWayStream())), expected)
    assert_refused(io.BytesIO(b""), "'image': file is empty")
    with open(path, "rb") as handle:
        assert np.array_equal(np.asarray(load_image(handle)), expected)
        assert not handle.closed  # the caller's handle is theirs to close


def test_pil_source_is_not_modified():
    original = noise()
    before = np.asarray(original).copy()
    loaded = load_image(original)
    assert loaded is not original
    loaded.paste((1, 2, 3), (0, 0, 64, 48))
    assert np.array_equal(np.asarray(original), before)


def test_caller_file_is_untouched(tmp_path):
    path = tmp_path / "keep.png"
    noise().save(path)
    before = path.read_bytes()
    load_image(path)
    assert path.read_bytes() == before


def test_numpy_uint8_grayscale():
    image = load_image(np.array([[0, 100], [200, 255]], dtype=np.uint8))
    assert (image.mode, image.size) == ("RGB", (2, 2))
    assert image.getpixel((1, 0)) == (100, 100, 100)


def test_numpy_uint16_colour():
    array = np.zeros((2, 3, 3), dtype=np.uint16)
    array[0, 0] = (65535, 32768, 0)
    image = load_image(array)
    assert image.size == (3, 2)
    assert image.getpixel((0, 0)) == (255, 128, 0)


def test_numpy_float_and_alpha():
    assert load_image(np.full((2, 2), 0.5)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(np.full((2, 2, 3), 1.5, dtype=np.float32)).getpixel((0, 0)) == WHITE
    assert load_image(np.zeros((2, 2, 1), dtype=np.float32)).getpixel((0, 0)) == (0, 0, 0)
    transparent = np.zeros((2, 2, 4), dtype=np.uint8)
    assert load_image(transparent).getpixel((0, 0)) == WHITE


@pytest.mark.parametrize(
    "array, fragment",
    [
        (np.zeros((2, 2), dtype=np.int64), "dtype int64"),
        (np.zeros((2, 2, 5), dtype=np.uint8), "shape"),
        (np.zeros((0, 4), dtype=np.uint8), "zero size"),
        (np.array([[np.nan]]), "NaN"),
    ],
)
def test_bad_arrays_are_refused(array, fragment):
    assert_refused(array, fragment, name="tensor dump")


# --- refusals -------------------------------------------------------------------------------


def test_empty_file(tmp_path):
    path = tmp_path / "photo.jpg"
    path.touch()
    assert assert_refused(path, "file is empty") == "cannot read 'photo.jpg': file is empty"


@pytest.mark.parametrize("fmt, suffix", [("PNG", "png"), ("JPEG", "jpg")])
def test_truncated_file(tmp_path, fmt, suffix):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    path = tmp_path / f"cut.{suffix}"
    noise(256, 256).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    assert_refused(path, f"cut.{suffix}")


def test_text_file(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n" * 10)
    assert_refused(path, "'notes.png': not an image")


@pytest.mark.parametrize(
    "text",
    [
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
        '<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    ],
)
def test_svg_file(tmp_path, text):
    path = tmp_path / "x.svg"
    path.write_text(text)
    message = assert_refused(path, "SVG is not supported")
    assert message == "cannot read 'x.svg': SVG is not supported, convert it to PNG or JPEG"


def no_decoding(self):
    raise AssertionError("load_image decoded an image above the pixel limit")


# (benchmarks/bench_refusals.py times these refusals)
def test_pixel_limit_is_checked_from_the_header_without_decoding(tmp_path, monkeypatch):
    path = png_with_header_size(tmp_path / "big.png", 9000, 9000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    message = assert_refused(path, "big.png")
    assert message == "cannot read 'big.png': 9000x9000 is 81.0 megapixels, above the limit of 64.0"


def test_huge_decompression_bomb_is_refused_from_the_header_without_decoding(tmp_path, monkeypatch):
    path = png_with_header_size(tmp_path / "bomb.png", 30000, 30000)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    message = assert_refused(path, "bomb.png")
    assert message == "cannot read 'bomb.png': image is too large: 900.0 megapixels, above the limit of 64.0"
    # Pillow's own limit still applies
    assert "image is too large: 900.0 megapixels" in assert_refused(path, "bomb.png", max_pixels=10**12)


def test_max_pixels_argument(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (20, 20)).save(path)
    assert_refused(path, "20x20 is 0.0 megapixels", max_pixels=399)
    assert load_image(path, max_pixels=400).size == (20, 20)
    assert MAX_INPUT_PIXELS == 64_000_000


def test_zero_size_header(tmp_path):
    assert_refused(png_with_header_size(tmp_path / "flat.png", 0, 5), "flat.png")


def test_missing_path(tmp_path):
    message = assert_refused(tmp_path / "nowhere.png", "nowhere.png")
    assert "not found" in message


def test_directory(tmp_path):
    folder = tmp_path / "album.png"
    folder.mkdir()
    assert_refused(folder, "'album.png': is a directory")


def test_name_argument_is_used(tmp_path):
    message = assert_refused(b"", "upload.jpg", name="upload.jpg")
    assert message == "cannot read 'upload.jpg': file is empty"
    assert_refused(b"", "'image'")


# --- saving and tensors ---------------------------------------------------------------------


def test_save_png_round_trip_leaves_no_temporary_files(tmp_path):
    image = noise()
    target = tmp_path / "out" / "nested" / "result.png"
    assert save_png(image, target) == target
    assert save_png(noise(seed=1), str(target)) == target  # overwrite in place
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.png"]
    assert np.array_equal(np.asarray(load_image(target)), np.asarray(noise(seed=1)))


def test_save_png_failure_keeps_the_old_file(tmp_path):
    target = tmp_path / "result.png"
    save_png(noise(), target)
    before = target.read_bytes()
    with pytest.raises(OSError):
        save_png(Image.new("CMYK", (4, 4)), target)  # PNG cannot hold CMYK
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["result.png"]


def test_tensor_round_trip_is_exact():
    image = noise(33, 17)
    tensor = to_tensor(image)
    assert tensor.shape == (1, 3, 17, 33)
    assert tensor.dtype == torch.float32
    assert np.array_equal(np.asarray(to_image(tensor)), np.asarray(image))
    assert np.array_equal(np.asarray(to_image(tensor[0])), np.asarray(image))


def test_to_image_clamps_and_rounds():
    tensor = torch.tensor([-0.5, 0.5, 2.0]).view(3, 1, 1)
    assert to_image(tensor).getpixel((0, 0)) == (0, 128, 255)
    with pytest.raises(ValueError):
        to_image(torch.zeros(1, 4, 2, 2))


def matrix_profile(colorants: list[tuple[float, float, float]], gamma: float) -> bytes:
    """A minimal ICC v2 RGB display profile (matrix + gamma curves), as colour-managed editors embed."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(v: tuple[float, float, float]) -> bytes:
        return b"XYZ \0\0\0\0" + b"".join(s15(c) for c in v)

    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    text = b"test wide-gamut RGB\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    tags = [(b"desc", desc), (b"wtpt", xyz((0.9642, 1.0, 0.8249))), (b"rXYZ", xyz(colorants[0])),
            (b"gXYZ", xyz(colorants[1])), (b"bXYZ", xyz(colorants[2])), (b"rTRC", curve), (b"gTRC", curve),
            (b"bTRC", curve)]
    offset, table, data = 128 + 4 + 12 * len(tags), b"", b""
    for sig, body in tags:
        body += b"\0" * (-len(body) % 4)
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (struct.pack(">I", size) + b"\0" * 4 + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
              + b"acsp" + b"\0" * 24 + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + table + data


# Adobe RGB (1998), adapted to D50
ADOBE_RGB = matrix_profile([(0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446)],
                           563 / 256)


def test_wide_gamut_input_is_converted_to_srgb_and_outputs_are_tagged_srgb(tmp_path):
    from PIL import ImageCms

    raw = Image.new("RGB", (8, 8), (100, 150, 90))  # a mid green, inside sRGB's gamut
    raw.save(tmp_path / "adobe.png", icc_profile=ADOBE_RGB)
    loaded = load_image(tmp_path / "adobe.png")
    # the same colour in sRGB numbers: Adobe RGB's green primary is more saturated, so its red drops
    r, g, b = loaded.getpixel((0, 0))
    assert r < 100 - 20 and g >= 150
    # and converted back into the photo's profile, it is the photo's colour again
    back = ImageCms.profileToProfile(loaded, ImageCms.createProfile("sRGB"),
                                     ImageCms.ImageCmsProfile(io.BytesIO(ADOBE_RGB)), outputMode="RGB")
    assert max(abs(a - b) for a, b in zip(back.getpixel((0, 0)), (100, 150, 90))) <= 2

    out = save_png(loaded, tmp_path / "out.png")
    with Image.open(out) as saved:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(saved.info["icc_profile"]))
        assert "sRGB" in ImageCms.getProfileDescription(profile)
    assert load_image(out).tobytes() == loaded.tobytes()  # our own output is read back to the bit


def test_unusable_colour_profile_is_ignored_with_a_warning(tmp_path):
    raw = Image.new("RGB", (4, 4), (10, 20, 30))
    raw.save(tmp_path / "bad.png", icc_profile=b"not a profile at all")
    with pytest.warns(UserWarning, match="colour profile is ignored"):
        loaded = load_image(tmp_path / "bad.png")
    assert loaded.getpixel((0, 0)) == (10, 20, 30)
