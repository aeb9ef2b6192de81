"""The wavelet-inspired invertible network `g` (DESIGN section 2).

Each level splits the image into its four polyphase components, applies an exact Haar step (so an
untrained network is the Haar transform, with the 2x2 mean as its coarse part), then K learned lifting
steps: details <- details + P_k(coarse, gamma); coarse <- coarse + U_k(details, gamma). Undoing the steps in
reverse order with opposite signs inverts the network exactly, whatever P and U compute. The same
lifting steps serve every level; a level embedding beside `gamma` lets them act differently per level.

forward = simulated degradation (the coarse part imitates the low-quality observation);
inverse = reconstruction (coarse from the observation, details from the current estimate or zeros).
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

MAX_LEVELS = 4


def haar_split(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Polyphase split + Haar step: (B, C, H, W) -> coarse (B, C, H', W') 2x2 mean, details (B, 3C, H', W').

    Odd sizes are padded by repeating the last row/column (PyWavelets' 'symmetric' mode for Haar). One
    strided convolution instead of sixteen element-wise operations: on a GPU each is a kernel launch.
    """
    pad_h, pad_w = x.shape[-2] % 2, x.shape[-1] % 2
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    C = x.shape[1]
    bands = F.conv2d(x, _haar_kernels(C, x.device, x.dtype)[0], stride=2)
    return bands[:, :C], bands[:, C:]


def haar_merge(coarse: torch.Tensor, details: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Inverse of `haar_split`, cropped to `size` (height, width)."""
    kernel = _haar_kernels(coarse.shape[1], coarse.device, coarse.dtype)[1]
    return F.conv_transpose2d(torch.cat([coarse, details], dim=1), kernel, stride=2)[..., : size[0], : size[1]]


@functools.cache
def _haar_kernels(channels: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Analysis and synthesis kernels (4C, C, 2, 2): band k*C + c is Haar filter k (mean, horizontal, vertical,
    diagonal) of channel c. The filters' signs are their own synthesis: conv_transpose2d with the signs inverts
    conv2d with the signs / 4."""
    signs = torch.tensor([[[1, 1], [1, 1]], [[1, 1], [-1, -1]], [[1, -1], [1, -1]], [[1, -1], [-1, 1]]],
                         dtype=dtype)
    eye = torch.eye(channels, dtype=dtype)
    synthesis = (signs[:, None, None] * eye[None, :, :, None, None]).reshape(4 * channels, channels, 2, 2).to(device)
    return synthesis / 4, synthesis


class ConditionalResNet(nn.Module):
    """A small ResNet whose residual branches are scaled per channel by a function of (gamma, level)."""

    def __init__(self, cin: int, cout: int, width: int, blocks: int, gamma_dim: int):
        super().__init__()
        self.width, self.blocks = width, blocks
        self.inp = nn.Conv2d(cin, width, 3, padding=1)
        self.body = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.LeakyReLU(0.2),
                          nn.Conv2d(width, width, 3, padding=1))
            for _ in range(blocks)
        )
        self.modulation = nn.Sequential(nn.Linear(gamma_dim + MAX_LEVELS, width), nn.SiLU(),
                                        nn.Linear(width, blocks * width))
        self.out = nn.Conv2d(width, cout, 3, padding=1)
        # zero output: a fresh lifting step is the identity, so a fresh network is exactly Haar
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def scales(self, condition: torch.Tensor) -> torch.Tensor:
        """The residual branches' scales (N, blocks, width, 1, 1) for conditions (N, gamma_dim + MAX_LEVELS)."""
        return 1 + self.modulation(condition).view(-1, self.blocks, self.width, 1, 1)

    def forward(self, x: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
        """x (B, cin, H, W) -> (B, cout, H, W), with the residual branches scaled by `scales(condition)`."""
        h = self.inp(x)
        for block, scale in zip(self.body, scales.unbind(1)):
            h = torch.addcmul(h, scale, block(F.leaky_relu(h, 0.2)))
        return self.out(F.leaky_relu(h, 0.2))


class LiftingINN(nn.Module):
    """Exactly invertible multi-level lifting network for `channels`-channel images or latents."""

    def __init__(self, channels: int = 3, levels: int = 2, steps: int = 4, width: int = 32, blocks: int = 2,
                 gamma_dim: int = 64):
        super().__init__()
        if not 1 <= levels <= MAX_LEVELS:
            raise ValueError(f"levels must be between 1 and {MAX_LEVELS}")
        self.config = dict(channels=channels, levels=levels, steps=steps, width=width, blocks=blocks,
                           gamma_dim=gamma_dim)
        self.channels, self.levels, self.gamma_dim = channels, levels, gamma_dim
        self.predict = nn.ModuleList(ConditionalResNet(channels, 3 * channels, width, blocks, gamma_dim)
                                     for _ in range(steps))
        self.update = nn.ModuleList(ConditionalResNet(3 * channels, channels, width, blocks, gamma_dim)
                                    for _ in range(steps))

    def _scales(self, gamma: torch.Tensor | None, levels: int, batch: int,
                like: torch.Tensor) -> tuple[list[tuple[torch.Tensor, ...]], list[tuple[torch.Tensor, ...]]]:
        """Every predict and update network's scales at every level ([step][level]), from one modulation call
        per network for all levels: on a GPU each call is a few kernel launches."""
        if gamma is None:  # no degradation embedding
            gamma = like.new_zeros(batch, self.gamma_dim)
        gamma = gamma.to(like).expand(levels, batch, -1)
        onehot = torch.eye(MAX_LEVELS, dtype=like.dtype, device=like.device)[:levels, None].expand(-1, batch, -1)
        condition = torch.cat([gamma, onehot], dim=2).flatten(0, 1)
        return tuple([net.scales(condition).unflatten(0, (levels, batch)).unbind(0) for net in nets]
                     for nets in (self.predict, self.update))

    def forward(self, x: torch.Tensor, gamma: torch.Tensor | None = None,
                levels: int | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x -> (coarse, details): details[j] belongs to level j+1 (finest first)."""
        levels = levels or self.levels
        predict_scales, update_scales = self._scales(gamma, levels, x.shape[0], x)
        details = []
        for level in range(levels):
            coarse, detail = haar_split(x)
            for predict, update, p, u in zip(self.predict, self.update, predict_scales, update_scales):
                detail = detail + predict(coarse, p[level])
                coarse = coarse + update(detail, u[level])
            details.append(detail)
            x = coarse
        return x, details

    def inverse(self, coarse: torch.Tensor, details: list[torch.Tensor], gamma: torch.Tensor | None = None,
                size: tuple[int, int] | None = None) -> torch.Tensor:
        """(coarse, details) -> x of `size` (height, width): required when a side of x is odd.

        The size of every level but the full one is read off the detail tensors (level k's details have the
        size of level k + 1); the full size cannot be. The split repeats an odd side's last row or column, so
        the details of a 37-pixel side have the shape of a 38-pixel side's, and they cannot be made a row
        shorter: once the lifting steps have run, the details at the repeated row hold part of the image that
        the coarse part's update steps depend on. Without `size` the result is twice the finest details' size:
        x itself for even sides, x with its last row or column repeated for odd ones."""
        levels = len(details)
        finest = tuple(details[0].shape[-2:]) if levels else tuple(coarse.shape[-2:])
        sizes = [tuple(size) if size else (2 * finest[0], 2 * finest[1])]
        sizes += [tuple(d.shape[-2:]) for d in details[:-1]]
        predict_scales, update_scales = self._scales(gamma, levels, coarse.shape[0], coarse)
        steps = list(zip(self.predict, self.update, predict_scales, update_scales))[::-1]
        x = coarse
        for level in reversed(range(levels)):
            detail = details[level]
            for predict, update, p, u in steps:
                x = x - update(detail, u[level])
                detail = detail - predict(x, p[level])
            x = haar_merge(x, detail, sizes[level])
        return x


def level_sizes(size: tuple[int, int], levels: int) -> list[tuple[int, int]]:
    """(height, width) at every level, from the full size (level 0) to the coarse part (level `levels`)."""
    sizes = [tuple(size)]
    for _ in range(levels):
        sizes.append(((sizes[-1][0] + 1) // 2, (sizes[-1][1] + 1) // 2))
    return sizes


def zero_details(coarse: torch.Tensor, size: tuple[int, int], levels: int) -> list[torch.Tensor]:
    """Detail tensors of zeros for a coarse part, for the zero-detail inverse (an upsampler)."""
    B, C = coarse.shape[:2]
    return [coarse.new_zeros(B, 3 * C, *s) for s in level_sizes(size, levels)[1:]]


def levels_for_scale(scale: float) -> int:
    """Levels J for a scale factor: the coarse grid is the nearest power of two (at least one level)."""
    return max(1, round(math.log2(max(scale, 1.0))))


def coarse_size(height: int, width: int, levels: int) -> tuple[int, int]:
    """Size of the coarse part after `levels` splits (each rounds up)."""
    return level_sizes((height, width), levels)[-1]
