"""NIQE: MATLAB's resize written out, scores that rank damage as it looks, pooling, and errors."""

import numpy as np
import pytest
from skimage import data

from latentindigo.niqe import halve, niqe, niqe_pooled, patch_features


def test_halve_is_matlab_imresize_on_smooth_content():
    # MATLAB's imresize(x, 0.5) keeps constants and linear ramps (sampled between each pair of pixels)
    assert np.allclose(halve(np.full((10, 14), 7.0)), 7.0)
    ramp = np.add.outer(np.arange(16.0), 2 * np.arange(12.0))
    out = halve(ramp)
    assert out.shape == (8, 6)
    expected = np.add.outer(np.arange(8) * 2 + 0.5, 2 * (np.arange(6) * 2 + 0.5))
    assert np.allclose(out[2:-2, 2:-2], expected[2:-2, 2:-2])  # (the mirrored border bends the ramp)


def degraded(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float64) + rng.normal(0, 20, image.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def test_noise_scores_worse_than_the_photo():
    photo = data.astronaut()[:288, :288]
    assert niqe(degraded(photo, np.random.default_rng(0))) > niqe(photo) + 2


def test_pooled_over_one_image_is_its_score_and_pooling_uses_every_patch():
    photo = data.chelsea()[:192, :288]
    assert niqe_pooled([photo]) == pytest.approx(niqe(photo))
    crops = [photo[:, :96 * 2], photo[:, 96:]]
    assert sum(len(patch_features(c)) for c in crops) == 8
    assert niqe_pooled(crops) != pytest.approx(niqe(crops[0]))


def test_too_small_or_wrong_type_is_refused():
    with pytest.raises(ValueError, match="two 96x96 patches"):
        niqe(np.zeros((95, 300, 3), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        niqe(np.zeros((192, 192, 3), np.float32))
