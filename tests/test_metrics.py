import torch

from latentindigo.degradations import blur
from latentindigo.metrics import detail, detail_correlation


def test_detail_correlation_tells_detail_in_the_right_place_from_invented_detail():
    g = torch.Generator().manual_seed(0)
    truth = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 24, generator=g), size=(96, 96), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    soft = blur(truth, 1.0)
    invented = (soft + 0.05 * torch.randn(truth.shape, generator=g)).clamp(0, 1)
    assert detail_correlation(truth, truth) > 0.999
    assert detail_correlation(soft, truth) > 0.5  # less detail, in the right place
    assert abs(detail_correlation(torch.rand(truth.shape, generator=g), truth)) < 0.1
    # noise raises the amount of detail and lowers its correlation
    assert detail(invented, truth) > detail(soft, truth)
    assert detail_correlation(invented, truth) < detail_correlation(soft, truth)
