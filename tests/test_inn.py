import numpy as np
import pytest
import pywt
import torch

from latentindigo.inn import LiftingINN, coarse_size, zero_details


def randomised(inn: LiftingINN, seed: int = 0) -> LiftingINN:
    """Give the (zero-initialised) lifting outputs random weights, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in inn.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return inn.eval()


@pytest.mark.parametrize("channels,size,levels", [(3, (37, 45), 2), (4, (17, 9), 3), (3, (64, 48), 1), (4, (1, 5), 2)])
def test_exactly_invertible_at_odd_sizes(channels, size, levels):
    inn = randomised(LiftingINN(channels=channels, levels=levels))
    x = torch.rand(2, channels, *size)
    gamma = torch.randn(2, inn.gamma_dim)
    with torch.no_grad():
        coarse, details = inn(x, gamma)
        assert coarse.shape[-2:] == coarse_size(*size, levels)
        assert len(details) == levels
        back = inn.inverse(coarse, details, gamma, size)
    assert back.shape == x.shape
    assert (back - x).abs().max() < 1e-5
    # the learned steps really do something: not a plain Haar transform any more
    assert (coarse - LiftingINN(channels=channels, levels=levels)(x)[0]).abs().max() > 1e-3


@pytest.mark.parametrize("size,levels", [((37, 53), 2), ((101, 67), 3), ((64, 48), 2)])
def test_inverse_without_size_reads_level_sizes_off_the_details(size, levels):
    inn = randomised(LiftingINN(channels=3, levels=levels))
    x = torch.rand(1, 3, *size)
    with torch.no_grad():
        back = inn.inverse(*inn(x))
    # only the full size is ambiguous: the default is even, and x is its top-left part
    assert back.shape[-2:] == (size[0] + size[0] % 2, size[1] + size[1] % 2)
    assert (back[..., : size[0], : size[1]] - x).abs().max() < 1e-5


@pytest.mark.parametrize("levels", [1, 2])
def test_odd_sizes_come_back_exactly_given_size_which_the_details_cannot_carry(levels):
    """Why `inverse` needs `size` for odd sides: a 37x45 image's details have the shapes of a 38x46 one's, and they
    cannot be a row shorter. On the padded (repeated) last row the Haar step's row-difference bands are zero, so a
    fresh network would lose nothing without them; after trained lifting steps the image depends on them."""

    def without_padded_row(details: list[torch.Tensor]) -> list[torch.Tensor]:
        finest = details[0].clone()
        horizontal, _, diagonal = finest.chunk(3, dim=1)  # (views into finest)
        horizontal[..., -1, :], diagonal[..., -1, :] = 0, 0
        return [finest, *details[1:]]

    x = torch.rand(1, 3, 37, 45, dtype=torch.float64)
    for inn, lost in ((LiftingINN(channels=3, levels=levels).double(), False),
                      (randomised(LiftingINN(channels=3, levels=levels)).double(), True)):
        gamma = torch.randn(1, inn.gamma_dim, dtype=torch.float64)
        with torch.no_grad():
            coarse, details = inn(x, gamma)
            even = inn(torch.rand(1, 3, 38, 46, dtype=torch.float64), gamma)[1]
            assert [d.shape for d in details] == [d.shape for d in even]
            back = inn.inverse(coarse, details, gamma, (37, 45))
            assert back.shape == x.shape and (back - x).abs().max() < 1e-12
            shorter = inn.inverse(coarse, without_padded_row(details), gamma, (37, 45))
        assert ((shorter - x).abs().max() > 1e-3) == lost


@pytest.mark.parametrize("size", [(16, 24), (9, 11)])
def test_fresh_network_is_haar(size):
    inn = LiftingINN(channels=3, levels=1).double()
    x = torch.rand(1, 3, *size, dtype=torch.float64)
    with torch.no_grad():
        coarse, (details,) = inn(x)
    cA, (cH, cV, cD) = pywt.dwt2(x.numpy(), "haar", mode="symmetric", axes=(-2, -1))
    # our coarse part is the 2x2 mean: PyWavelets' approximation / 2, and so are the details
    np.testing.assert_allclose(coarse.numpy(), cA / 2, atol=1e-12)
    horizontal, vertical, diagonal = details.chunk(3, dim=1)
    for ours, theirs in ((horizontal, cH), (vertical, cV), (diagonal, cD)):
        np.testing.assert_allclose(ours.numpy(), theirs / 2, atol=1e-12)


def test_two_levels_of_haar_give_the_4x4_mean():
    x = torch.rand(1, 4, 16, 16)
    coarse, _ = LiftingINN(channels=4, levels=2)(x)
    torch.testing.assert_close(coarse, torch.nn.functional.avg_pool2d(x, 4))


def test_gamma_conditions_the_forward_model():
    inn = randomised(LiftingINN(channels=3, levels=2))
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a, _ = inn(x, torch.zeros(1, inn.gamma_dim))
        b, _ = inn(x, torch.ones(1, inn.gamma_dim))
        none, _ = inn(x, None)
    assert (a - b).abs().max() > 1e-3
    torch.testing.assert_close(a, none)  # no embedding = the zero embedding


def test_zero_detail_inverse_upsamples_a_constant_exactly():
    inn = LiftingINN(channels=3, levels=2)
    coarse = torch.full((1, 3, 5, 7), 0.3)
    out = inn.inverse(coarse, zero_details(coarse, (19, 27), 2), None, (19, 27))
    assert out.shape[-2:] == (19, 27)
    torch.testing.assert_close(out, torch.full_like(out, 0.3))


def test_forward_is_the_lifting_scheme_one_level_at_a_time():
    # the reference: DESIGN's lifting steps written out, one modulation call per network and level, the Haar
    # step as the 2x2 sums; the network computes its modulations for all levels at once and the Haar step as a
    # convolution (fewer kernel launches), which must not change what it computes
    inn = randomised(LiftingINN(channels=4, levels=2))
    x, gamma = torch.rand(1, 4, 24, 20), torch.randn(1, inn.gamma_dim)
    with torch.no_grad():
        coarse, details = inn(x, gamma)
        expected, level_input = [], x
        for level in range(2):
            a, b = level_input[..., 0::2, 0::2], level_input[..., 0::2, 1::2]
            c, d = level_input[..., 1::2, 0::2], level_input[..., 1::2, 1::2]
            mean, detail = (a + b + c + d) / 4, torch.cat([a + b - c - d, a - b + c - d, a - b - c + d], 1) / 4
            condition = torch.cat([gamma, torch.eye(4)[level : level + 1]], dim=1)
            for predict, update in zip(inn.predict, inn.update):
                detail = detail + predict(mean, predict.scales(condition))
                mean = mean + update(detail, update.scales(condition))
            expected.append(detail)
            level_input = mean
    torch.testing.assert_close(coarse, level_input, rtol=0, atol=1e-6)
    for ours, theirs in zip(details, expected):
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
