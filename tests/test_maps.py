"""The consistency and invented-detail maps (latentindigo.maps) on cases whose answer is known."""

from __future__ import annotations

from dataclasses import replace

import torch
from PIL import Image

from latentindigo.maps import FULL_SCALE, consistency_map, heatmap, invented_detail, maps, overlay
from latentindigo.sampler import run
from latentindigo.settings import Settings


def painted(x: torch.Tensor, top: int, left: int, side: int) -> torch.Tensor:
    x = x.clone()
    x[..., top : top + side, left : left + side] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)
    return x


def test_an_output_equal_to_the_first_stage_shows_no_invented_detail(photo, fresh_pixel_models):
    done = run(photo, Settings(method="faithful", scale=4, seed=0), None, fresh_pixel_models)
    m = maps(done)
    assert m.invented.shape == done.tensor.shape[-2:] and m.invented.abs().max() == 0
    assert m.consistency.shape == (photo.height, photo.width)
    assert 30 < m.consistency_psnr < 100  # a bicubic upscale, mean-pooled (the fresh INN), is near the input


def test_a_painted_in_square_shows_up_where_it_was_painted(photo, fresh_pixel_models):
    done = run(photo, Settings(method="faithful", scale=4, seed=0), None, fresh_pixel_models)
    square = painted(done.tensor, top=40, left=60, side=48)  # output pixels; input pixels 10..22, 15..27
    invented = invented_detail(square, done.first_stage)
    box = torch.zeros_like(invented, dtype=torch.bool)
    box[36:92, 56:112] = True  # the square and a 4-pixel margin: its high frequencies are at its edges
    assert invented[box].max() > FULL_SCALE and invented[~box].max() < 1e-6

    error, psnr = consistency_map(replace(done, tensor=square))
    inside = error[10:22, 15:27].mean()
    outside = torch.cat([error[:8].flatten(), error[24:].flatten()]).mean()
    assert inside > 10 * outside
    assert psnr < maps(done).consistency_psnr - 3


def test_heatmaps_are_black_for_nothing_and_overlays_keep_the_results_size():
    assert heatmap(torch.zeros(5, 7)).getextrema() == ((0, 0), (0, 0), (0, 0))
    assert heatmap(torch.full((5, 7), FULL_SCALE)).getpixel((0, 0)) == (255, 255, 255)
    assert heatmap(torch.zeros(5, 7), (28, 20)).size == (28, 20)
    result = Image.new("RGB", (28, 20), (200, 100, 50))
    assert overlay(result, torch.zeros(5, 7)).size == (28, 20)
