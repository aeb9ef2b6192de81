import math
import subprocess
import sys

import pytest
import torch

from latentindigo.degradations import Degradation, Summary, degrade, random_degradation


@pytest.fixture
def clean():
    g = torch.Generator().manual_seed(0)
    return torch.nn.functional.interpolate(torch.rand(1, 3, 16, 20, generator=g), size=(64, 80), mode="bicubic",
                                           align_corners=False).clamp(0, 1)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_random_degradations_are_reproducible(clean, seed):
    d1, d2 = random_degradation(seed, second_order=True), random_degradation(seed, second_order=True)
    assert d1 == d2
    torch.testing.assert_close(degrade(clean, d1), degrade(clean, d2), rtol=0, atol=0)


def test_different_seeds_differ(clean):
    a = degrade(clean, Degradation(scale=2, noise=10, seed=0))
    b = degrade(clean, Degradation(scale=2, noise=10, seed=1))
    assert (a - b).abs().mean() > 0.01


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "area"])
@pytest.mark.parametrize("scale", [2, 3, 4, 2.5])
def test_downsampling_sizes(clean, mode, scale):
    y = degrade(clean, Degradation(scale=scale, resize_mode=mode))
    assert y.shape[-2:] == (round(64 / scale), round(80 / scale))
    assert 0 <= y.min() and y.max() <= 1


def test_each_operation_changes_the_image(clean):
    plain = degrade(clean, Degradation())
    torch.testing.assert_close(plain, clean)
    for d in (Degradation(blur=1.5), Degradation(blur=2.0, blur_y=0.5, blur_angle=0.7), Degradation(noise=5),
              Degradation(blur=1.5, blur_kernel="motion", blur_angle=0.3), Degradation(blur=1.5, blur_kernel="defocus"),
              Degradation(poisson_peak=50), Degradation(jpeg=30)):
        assert (degrade(clean, d) - clean).abs().mean() > 1e-3, d


def test_second_order_pass_shares_the_total_scale(clean):
    d = random_degradation(3, scale=4, second_order=True)
    assert d.second is not None
    assert d.scale * d.second.scale == pytest.approx(4)
    assert degrade(clean, d).shape[-2:] == (16, 20)
    assert Summary.of(d).scale == pytest.approx(4)


def test_noise_free_switches():
    for seed in range(20):
        d = random_degradation(seed, noise=False, jpeg=False, second_order=True)
        for p in (d, d.second):
            assert p.noise == 0 and p.poisson_peak == 0 and p.jpeg is None


def test_degrade_cli(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 100, 50)).save(tmp_path / "in.png")
    args = [sys.executable, "-m", "latentindigo", "degrade", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"),
            "--scale", "4", "--blur", "1.2", "--noise", "5", "--jpeg", "70", "--seed", "0"]
    subprocess.run(args, check=True, capture_output=True)
    first = (tmp_path / "out.png").read_bytes()
    assert Image.open(tmp_path / "out.png").size == (10, 8)
    subprocess.run(args, check=True, capture_output=True)
    assert (tmp_path / "out.png").read_bytes() == first  # same seed, same file


def test_the_noise_label_is_the_noise_left_in_the_output():
    from latentindigo.degradations import effective_noise

    after = effective_noise(Degradation(scale=4, noise=10, order=("blur", "resize", "noise")), (96, 96))
    before = effective_noise(Degradation(scale=4, noise=10, order=("noise", "blur", "resize")), (96, 96))
    assert after == pytest.approx(10, rel=0.1)
    assert before < 4  # a x4 downscale averages 16 pixels: about a quarter of the noise is left
    assert effective_noise(Degradation(noise=10, jpeg=30), (96, 96)) < 0.5 * after  # JPEG smooths noise away
    assert effective_noise(Degradation(scale=2, blur=1.0), (96, 96)) == 0


@pytest.mark.parametrize("kind,angle", [("gaussian", 0.0), ("motion", 0.0), ("motion", 1.1), ("defocus", 0.0)])
def test_every_blur_kernel_has_the_spread_it_is_asked_for(kind, angle):
    """`blur` is the standard deviation along the kernel's main axis whatever its shape, so a motion or defocus
    blur of the same sigma degrades about as much, and the estimator's blur label means one thing."""
    from latentindigo.degradations import blur_kernel

    sigma = 1.7
    k = blur_kernel(sigma, theta=angle, kind=kind).double()
    assert k.sum().item() == pytest.approx(1) and (k >= 0).all()
    r = (k.shape[-1] - 1) / 2
    yy, xx = torch.meshgrid(torch.arange(k.shape[0]) - r, torch.arange(k.shape[1]) - r, indexing="ij")
    along = math.cos(angle) * xx + math.sin(angle) * yy
    across = -math.sin(angle) * xx + math.cos(angle) * yy
    assert (k * along).sum().item() == pytest.approx(0, abs=1e-9)  # centred: no shift of the image
    assert math.sqrt((k * along**2).sum().item()) == pytest.approx(sigma, rel=0.1)
    spread_across = math.sqrt((k * across**2).sum().item())
    assert spread_across < 0.5 if kind == "motion" else spread_across == pytest.approx(sigma, rel=0.1)


def test_random_degradations_include_motion_and_defocus():
    kinds = {random_degradation(seed).blur_kernel for seed in range(60)}
    assert kinds == {"gaussian", "motion", "defocus"}
