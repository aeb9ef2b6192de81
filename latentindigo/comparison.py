"""One photo through several methods, made comparable: the numbers of each result (`Scores`: consistency with the
photo, NIQE, what the diffusion changed, and against a clean photo PSNR and SSIM) and a labelled grid of the
input and every result, at 1:1, to look at and to share (`grid`; `recipe.comparison_text` puts every method's
recipe in its PNG).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont

if TYPE_CHECKING:
    import torch

    from latentindigo.sampler import Change, Done

# NIQE of a result larger than this square is that of its centre crop of this size: 0.5 s on one CPU core, where
# a 4096x4096 result would take 8 s for each method
NIQE_SIDE = 1024
# the grid shows results up to this size whole, larger ones as their centre crop of this size, at 1:1
VIEW = 512
SMALL = 256  # a result smaller than this is shown enlarged (nearest) by a whole factor to about this size


@dataclass
class Scores:
    """The numbers of one result."""

    seconds: float
    consistency: float  # dB: the result through the INN's forward model against the photo (the consistency map's)
    niqe: float | None  # lower: more natural; None where the result is too small for NIQE
    change: Change | None = None  # diffusion methods: the result against the diffusion's start
    psnr: float | None = None  # dB, against a clean photo (the lab)
    ssim: float | None = None

    def caption(self) -> list[str]:
        """One or two lines for the grid: '12.3 s · consistency 31.2 dB · NIQE 5.43', and what diffusion changed."""
        parts = [f"{self.seconds:.1f} s", f"consistency {self.consistency:.1f} dB",
                 "NIQE n/a" if self.niqe is None else f"NIQE {self.niqe:.2f}"]
        if self.psnr is not None:
            parts.append(f"PSNR {self.psnr:.2f} dB")
        if self.ssim is not None:
            parts.append(f"SSIM {self.ssim:.3f}")
        lines = [" · ".join(parts)]
        if self.change is not None:
            lines.append(f"diffusion changed {self.change.rms * 255:.2f}/255 RMS, {self.change.moved:.1%} of pixels")
        return lines


def naturalness(image: Image.Image) -> float | None:
    """The project's NIQE of `image` (of its centre NIQE_SIDE square where larger), or None where it is smaller
    than NIQE's two 96x96 patches."""
    from latentindigo.niqe import PATCH, niqe

    w, h = image.size
    if (w // PATCH) * (h // PATCH) < 2:
        return None
    cw, ch = min(w, NIQE_SIDE), min(h, NIQE_SIDE)
    left, top = (w - cw) // 2, (h - ch) // 2
    return niqe(np.asarray(image.convert("RGB").crop((left, top, left + cw, top + ch))))


def score(done: Done, truth: torch.Tensor | None = None) -> Scores:
    """The numbers of a result; with `truth` (the clean photo, at the result's size) also PSNR and SSIM."""
    from latentindigo.maps import consistency_map
    from latentindigo.metrics import psnr, ssim

    return Scores(seconds=done.seconds, consistency=consistency_map(done)[1], niqe=naturalness(done.image),
                  change=done.change,
                  psnr=None if truth is None else psnr(done.tensor.cpu(), truth),
                  ssim=None if truth is None else ssim(done.tensor.cpu(), truth))


# ------------------------------------------------------------------------------------------- the grid

def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def view_box(size: tuple[int, int]) -> tuple[tuple[int, int, int, int], int]:
    """(the part of a result of `size` the grid shows, left top right bottom; its enlargement): the whole result
    (enlarged by a whole factor when small), or its centre VIEW x VIEW crop at 1:1."""
    w, h = size
    cw, ch = min(w, VIEW), min(h, VIEW)
    left, top = (w - cw) // 2, (h - ch) // 2
    zoom = max(1, SMALL // max(w, h)) if (cw, ch) == (w, h) else 1
    return (left, top, left + cw, top + ch), zoom


def grid(photo: Image.Image, results: list[tuple[str, Image.Image, list[str]]], title: list[str]) -> Image.Image:
    """The input and every result (name, image, caption lines) in a labelled grid, under `title` lines, all
    showing the same part of the picture (`view_box`: whole, or a centre crop at 1:1); the input is enlarged to
    the results' size, nearest neighbour, so that its pixels show as they are."""
    size = results[0][1].size
    box, zoom = view_box(size)
    tile = ((box[2] - box[0]) * zoom, (box[3] - box[1]) * zoom)
    sx, sy = photo.width / size[0], photo.height / size[1]
    shown = photo.convert("RGB").resize(tile, Image.Resampling.NEAREST,
                                        box=(box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))
    if (box[2] - box[0], box[3] - box[1]) == size:
        where = f"whole, shown x{zoom} (nearest)" if zoom > 1 else "whole, at 1:1"
    else:
        where = f"centre {box[2] - box[0]}x{box[3] - box[1]} of {size[0]}x{size[1]}, at 1:1"
    tiles = [("input", shown, [f"{photo.width}x{photo.height}, enlarged to the results' size (nearest)"])]
    for name, image, lines in results:
        crop = image.convert("RGB").crop(box)
        tiles.append((name, crop if zoom == 1 else crop.resize(tile, Image.Resampling.NEAREST), lines))

    name_font, text_font, title_font = _font(18), _font(14), _font(18)
    pad, line = 12, 18
    width = max(tile[0], 300)
    wrapped = [(name, image, [part for text in lines for part in _wrap(text, text_font, width)])
               for name, image, lines in tiles]
    caption_lines = max(len(lines) for _, _, lines in wrapped)
    cell_w, cell_h = width + pad, tile[1] + 26 + caption_lines * line + pad
    columns = min(len(wrapped), 4, max(2, math.ceil(math.sqrt(len(wrapped)))))
    rows = math.ceil(len(wrapped) / columns)
    # (the default font has no arrows)
    heading = [(part, title_font if i == 0 else text_font)
               for i, text in enumerate([*title, f"Each picture: {where}."])
               for part in _wrap(text.replace("→", "->"), title_font if i == 0 else text_font, columns * cell_w - pad)]
    head = pad + len(heading) * (line + 4)
    canvas = Image.new("RGB", (pad + columns * cell_w, head + rows * cell_h + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (text, font) in enumerate(heading):
        draw.text((pad, pad + i * (line + 4)), text, fill="black", font=font)
    for i, (name, image, lines) in enumerate(wrapped):
        x, y = pad + (i % columns) * cell_w, head + (i // columns) * cell_h
        canvas.paste(image, (x, y))
        draw.text((x, y + tile[1] + 4), name, fill="black", font=name_font)
        for k, text in enumerate(lines):
            draw.text((x, y + tile[1] + 26 + k * line), text, fill=(60, 60, 60), font=text_font)
    return canvas


def _wrap(text: str, font, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels, broken at ' · ' or spaces."""
    lines, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}".strip()
        if current and font.getlength(candidate) > width:
            lines.append(current)
            current = word
        else:
            current = candidate
    return [*lines, current] if current else lines
