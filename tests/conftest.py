"""Shared fixtures: tiny models built from configs in-process; no network, no downloaded weights."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(scope="session")
def tiny_prior():
    from latentindigo.priors import load_prior

    return load_prior("tiny-random")


@pytest.fixture(scope="session")
def fresh_pixel_models():
    """An untrained PixelINN (exactly Haar), estimator and restorer (exactly bicubic): the sampler's code paths
    without trained weights."""
    from latentindigo.estimator import DegradationEstimator
    from latentindigo.inn import LiftingINN
    from latentindigo.restorer import Restorer
    from latentindigo.sampler import PixelModels

    torch.manual_seed(0)
    return PixelModels(inn=LiftingINN(channels=3).eval(), estimator=DegradationEstimator().eval(),
                       restorer=Restorer(widths=(4, 8, 8), blocks=(1, 1, 1)).eval())


@pytest.fixture
def photo() -> Image.Image:
    """A smooth natural-looking 45x37 test image (odd sizes on purpose)."""
    y, x = np.mgrid[0:37, 0:45] / 40.0
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * x + y), 0.5 + 0.3 * np.cos(2 * y), 0.4 + 0.3 * x * y], axis=-1)
    return Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8))
