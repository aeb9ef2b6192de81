import pytest
import torch

from latentindigo.estimator import DegradationEstimator, decode_targets, encode_targets, jpeg_grid_features


@pytest.mark.parametrize("size", [(1, 1), (7, 13), (64, 48), (600, 900)])
def test_any_input_size_gives_one_embedding(size):
    est = DegradationEstimator(gamma_dim=32).eval()
    gamma, params = est(torch.rand(2, 3, *size))
    assert gamma.shape == (2, 32) and params.shape == (2, 4)
    assert torch.isfinite(gamma).all()


def test_targets_round_trip():
    t = torch.tensor(encode_targets(scale=4, blur=1.5, noise=10, jpeg=60))
    e = decode_targets(t)
    assert (e.scale, e.blur, e.noise, e.jpeg) == pytest.approx((4, 1.5, 10, 60))


def test_jpeg_grid_features_see_8x8_blocks():
    smooth = torch.rand(1, 3, 64, 64) * 0.01
    blocky = smooth.clone()
    blocky[..., :, 8::8] += 0.3  # a jump at every block border
    assert jpeg_grid_features(blocky).max() > 2 * jpeg_grid_features(smooth).max()


@pytest.mark.parametrize("quality", [30, 60, 75, 85])
def test_jpeg_quality_is_read_off_the_quantisation_lattice(quality):
    from latentindigo.degradations import jpeg
    from latentindigo.estimator import jpeg_quality

    g = torch.Generator().manual_seed(quality)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=g), size=(96, 96), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    assert abs(jpeg_quality(jpeg(photo, quality)) - quality) <= 4
    assert jpeg_quality(photo) == 100  # never saved as JPEG
    assert jpeg_quality(photo[..., :7, :7]) == 100  # smaller than one block


def test_jpeg_quality_of_a_large_photo_reads_a_sample_of_its_blocks(monkeypatch):
    from latentindigo import estimator
    from latentindigo.degradations import jpeg

    g = torch.Generator().manual_seed(0)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 40, 40, generator=g), size=(320, 320), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    compressed = jpeg(photo, 70)
    everything = estimator.jpeg_quality(compressed)
    monkeypatch.setattr(estimator, "MAX_BLOCKS", 200)  # of 1600
    assert abs(estimator.jpeg_quality(compressed) - 70) <= 4 and abs(everything - 70) <= 4


def test_jpeg_quality_finds_the_block_grid_at_every_offset():
    # a JPEG frame cropped at any of the 64 offsets (then kept losslessly, e.g. as PNG) still reads its quality
    from latentindigo.degradations import jpeg
    from latentindigo.estimator import jpeg_quality

    g = torch.Generator().manual_seed(1)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 14, 14, generator=g), size=(112, 112), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    compressed = jpeg(photo, 50)
    found = {(dy, dx): jpeg_quality(compressed[..., dy:dy + 96, dx:dx + 96]) for dy in range(8) for dx in range(8)}
    wrong = {offset: q for offset, q in found.items() if abs(q - 50) > 4}
    assert not wrong, wrong
    assert jpeg_quality(photo[..., 3:99, 5:101]) == 100  # and nothing is found where there is no JPEG


def test_a_jpeg_resized_after_compression_is_reported_unknown_not_free_of_jpeg():
    # resizing moves the coefficients off the lattice: the reader cannot tell it from an image never compressed,
    # and says so rather than "none"
    from latentindigo.degradations import jpeg, resize
    from latentindigo.estimator import Estimate, jpeg_quality

    g = torch.Generator().manual_seed(2)
    photo = torch.nn.functional.interpolate(torch.rand(1, 3, 16, 16, generator=g), size=(128, 128), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    resized = resize(jpeg(photo, 40), (96, 96), "bicubic").clamp(0, 1)
    quality = jpeg_quality(resized)
    assert quality == 100
    assert "JPEG unknown" in str(Estimate(scale=4, blur=0, noise=0, jpeg=quality))
    assert "JPEG quality" in str(Estimate(scale=4, blur=0, noise=0, jpeg=jpeg_quality(jpeg(photo, 40))))
