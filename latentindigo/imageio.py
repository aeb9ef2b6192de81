"""Loading and saving images safely.

Everything that enters the restoration pipeline goes through `load_image`, which
turns whatever the user hands us (a path, bytes, a stream, a PIL image or a numpy
array) into an 8-bit RGB PIL image, or raises `ImageError` with a one-line message
that names the file and says what is wrong with it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import secrets
import struct
import warnings
import zlib
from functools import cache
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, PngImagePlugin

from latentindigo.errors import UserError

MAX_INPUT_PIXELS: int = 64_000_000

ImageSource = Union[
    str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, Image.Image, np.ndarray
]

# Pillow's decoders report corrupt or truncated data with many unrelated exception
# types; to the caller they all mean "this file cannot be decoded".
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    EOFError,
    struct.error,
    zlib.error,
)

_HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")


class ImageError(UserError):
    """An image that cannot be used; `str()` is one line naming the file and the reason."""


def _error(name: str, reason: object) -> ImageError:
    # Collapse whitespace so messages coming from Pillow never span several lines.
    return ImageError(f"cannot read {name!r}: {' '.join(str(reason).split())}")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = MAX_INPUT_PIXELS,
    name: str | None = None,
) -> Image.Image:
    """Return `source` as an 8-bit RGB image, or raise `ImageError`.

    EXIF orientation is applied, an embedded ICC profile (Adobe RGB, Display P3,
    CMYK, ...) is converted to sRGB, transparency is composited on white, high bit
    depths are rounded to 8 bits and only the first frame of animations is used.
    Images above `max_pixels` are refused from their header, before decoding.
    """
    if isinstance(source, np.ndarray):
        return _from_array(source, name or "image", max_pixels)
    if isinstance(source, Image.Image):
        # The caller's image may still be lazily opened, so it gets the same checks as a file.
        name = name or Path(getattr(source, "filename", "") or "image").name
        return _decode(source, name, max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _read_stream(io.BytesIO(bytes(source)), name or "image", max_pixels)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or path.name or str(path)
        if not path.exists():
            raise _error(name, "file not found")
        if path.is_dir():
            raise _error(name, "is a directory, not an image file")
        try:
            fp = open(path, "rb")
        except OSError as e:
            raise _error(name, f"cannot open file: {e.strerror}") from None
        with fp:
            return _read_stream(fp, name, max_pixels)
    if hasattr(source, "read"):
        name = name or Path(str(getattr(source, "name", "") or "image")).name
        if not (hasattr(source, "seekable") and source.seekable()):
            # Pillow needs to seek while identifying the format.
            source = io.BytesIO(source.read())
        return _read_stream(source, name, max_pixels)
    raise TypeError(f"load_image() cannot read a {type(source).__name__}")


def _read_stream(fp: BinaryIO, name: str, max_pixels: int) -> Image.Image:
    head = fp.read(512)
    fp.seek(0)  # Image.open reads from the start of the stream too
    if not head:
        raise _error(name, "file is empty")
    # Pillow cannot rasterise SVG, and would only say "cannot identify image file".
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<?xml") or (text.startswith(b"<") and b"<svg" in text):
        raise _error(name, "SVG is not supported, convert it to PNG or JPEG")
    try:
        image = Image.open(fp)
    except Image.UnidentifiedImageError:
        raise _error(name, "not an image file, or a format that is not supported") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        # Pillow's own limit fired while reading the header (the warning only arrives as an exception when
        # warnings are turned into errors); say it in the same words as our own limit
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(pixels.group(1)) / 1e6:.1f} megapixels" if pixels else "too large"
        raise _error(name, f"image is too large: {size}, above the limit of {max_pixels / 1e6:.1f}") from None
    except _DECODE_ERRORS as e:
        raise _error(name, f"corrupt image header ({e})") from e
    return _decode(image, name, max_pixels)


def _check_size(width: int, height: int, name: str, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise _error(name, f"image has zero size ({width}x{height})")
    if width * height > max_pixels:
        raise _error(
            name,
            f"{width}x{height} is {width * height / 1e6:.1f} megapixels, "
            f"above the limit of {max_pixels / 1e6:.1f}",
        )


def _decode(image: Image.Image, name: str, max_pixels: int) -> Image.Image:
    # `Image.open` only parsed the header, so this check costs nothing even for a bomb.
    _check_size(*image.size, name, max_pixels)
    try:
        # Truncated data surfaces here, as ImageFile.LOAD_TRUNCATED_IMAGES is left False.
        image.load()
        image = ImageOps.exif_transpose(image)
        icc = image.info.get("icc_profile")
        # our own outputs (tagged with this very profile) are read back unchanged, to the bit
        return _to_srgb(image, icc, name) if icc and icc != srgb_profile() else _to_rgb(image)
    except _DECODE_ERRORS as e:
        raise _error(name, f"image data is corrupt or truncated ({e})") from e


@cache
def srgb_profile() -> bytes:
    """The ICC profile every output is tagged with: LittleCMS's sRGB, with a fixed creation date (LittleCMS
    stamps the current time) so that the same pixels always give the same PNG bytes."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[24:36] = struct.pack(">6H", 2000, 1, 1, 0, 0, 0)
    # the profile ID is the MD5 of the profile with its flags, rendering intent and ID zeroed (ICC.1:2010 7.2.18)
    unsigned = profile.copy()
    unsigned[44:48], unsigned[64:68], unsigned[84:100] = bytes(4), bytes(4), bytes(16)
    profile[84:100] = hashlib.md5(unsigned).digest()
    return bytes(profile)


def _to_srgb(image: Image.Image, icc: bytes, name: str) -> Image.Image:
    """Pixels in the embedded profile's colour space -> sRGB, so that a wide-gamut photo keeps its colours
    (the networks were trained on sRGB). A profile LittleCMS cannot use is ignored, with a warning."""
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = source.profile.xcolor_space.strip()
        # a profile describes the photo's own mode: RGB, grey or CMYK (alpha, high depths: made RGB first)
        pixels = image if (space, image.mode) in (("GRAY", "L"), ("CMYK", "CMYK")) else _to_rgb(image)
        if space not in ("RGB", "GRAY", "CMYK") or (space == "RGB") != (pixels.mode == "RGB"):
            raise ImageCms.PyCMSError(f"a {space} profile on a {image.mode} image")
        return ImageCms.profileToProfile(pixels, source, ImageCms.ImageCmsProfile(io.BytesIO(srgb_profile())),
                                         outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError) as e:
        warnings.warn(f"{name}: its colour profile is ignored ({' '.join(str(e).split())})", stacklevel=3)
        return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in _HIGH_DEPTH_MODES:
        return Image.fromarray(_to_uint8(np.asarray(image))).convert("RGB")
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, LAB, HSV


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale integer samples by their bit depth and floats from [0, 1] to 0..255, rounding."""
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        return np.rint(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)
    # uint16, or int32 from Pillow's "I" mode, which also holds 16-bit PGM/PNG
    # samples: use the 32-bit range only when the values actually need it.
    full_scale = 65535 if array.max(initial=0) <= 65535 else 2**31 - 1
    return np.rint(np.clip(array, 0, full_scale) * (255.0 / full_scale)).astype(np.uint8)


def _from_array(array: np.ndarray, name: str, max_pixels: int) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise _error(name, f"array of shape {array.shape} is not HxW or HxWxC with C in 1..4")
    if not (array.dtype in (np.uint8, np.uint16) or array.dtype.kind == "f"):
        raise _error(
            name, f"array dtype {array.dtype} unsupported, use uint8, uint16 or float in [0, 1]"
        )
    _check_size(array.shape[1], array.shape[0], name, max_pixels)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise _error(name, "array contains NaN or infinite values")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    # Pillow picks L, LA, RGB or RGBA from the uint8 array's shape.
    return _to_rgb(Image.fromarray(np.ascontiguousarray(_to_uint8(array))))


def save_png(image: Image.Image, path: str | os.PathLike, text: dict[str, str] | None = None) -> Path:
    """Write `image` as a PNG tagged sRGB at `path` atomically, creating parent folders; return the path.
    `text`: PNG text chunks (e.g. `recipe.png_text`).

    Readers see either the old file or the complete new one, never a partial write.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target so that os.replace is a rename, not a copy across filesystems.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "xb") as f:
            info = PngImagePlugin.PngInfo()
            for key, value in (text or {}).items():
                info.add_itxt(key, value)  # iTXt: UTF-8, as recipes can hold any prompt
            image.save(f, format="PNG", icc_profile=srgb_profile(), pnginfo=info)
            f.flush()
            os.fsync(f.fileno())  # the data must be on disk before the rename makes it visible
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def to_tensor(image: Image.Image) -> torch.Tensor:
    """Return `image` as a float32 tensor of shape (1, 3, H, W) with values in [0, 1]."""
    pixels = np.asarray(_to_rgb(image), dtype=np.float32) / 255.0
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0).contiguous()


def to_image(tensor: torch.Tensor) -> Image.Image:
    """Return a (1, 3, H, W) or (3, H, W) tensor in [0, 1] as an RGB image (clamped, rounded)."""
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3 or tensor.shape[0] != 3:
        raise ValueError(f"expected a (1, 3, H, W) or (3, H, W) tensor, got {tuple(tensor.shape)}")
    pixels = tensor.detach().float().nan_to_num(0.0).clamp(0.0, 1.0).mul(255.0).round()
    return Image.fromarray(pixels.to(torch.uint8).permute(1, 2, 0).cpu().numpy())


def pixels_hash(image: Image.Image) -> str:
    """SHA-256 of an image's size and RGB pixels: the same photo, whatever file it came in."""
    return hashlib.sha256(f"{image.width}x{image.height}".encode() + image.convert("RGB").tobytes()).hexdigest()
