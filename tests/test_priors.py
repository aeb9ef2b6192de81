"""Priors: LatentINN calibration and its cache, the fallback notice, folders that are not checkpoints."""

import json
import os
import subprocess
import sys

import pytest

from latentindigo import UserError
from latentindigo.calibration import latent_inn_cache_path
from latentindigo.priors import load_prior


def test_calibrate_caches_a_latent_inn_that_beats_haar_and_is_used(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "latentindigo", "calibrate", "--prior", "tiny-random", "--steps", "60",
               "--batch", "4", "--crop", "64"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1]  # ".../<hash>.safetensors: LatentINN error A (Haar initialisation B)"
    trained, haar = (float(v) for v in line.replace(")", "").split("error ")[1].split(" (Haar initialisation "))
    assert trained < haar
    check = ("from latentindigo.priors import load_prior; from latentindigo.calibration import latent_inn_cache_path; "
             "import json; "
             "p = load_prior('tiny-random'); "
             "print(json.dumps([p.latent_inn_trained, p.notice, str(latent_inn_cache_path(p.vae))]))")
    out = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=env, timeout=300)
    trained_flag, notice, path = json.loads(out.stdout.strip().splitlines()[-1])
    assert trained_flag and not notice and path in line and path.startswith(str(tmp_path / "hf"))


def test_without_calibration_the_prior_says_it_falls_back(tiny_prior):
    if latent_inn_cache_path(tiny_prior.vae).exists():
        pytest.skip("a calibrated LatentINN for tiny-random is in this machine's cache")
    assert not tiny_prior.latent_inn_trained
    assert "Haar-initialised" in tiny_prior.notice and "calibrate --prior tiny-random" in tiny_prior.notice


@pytest.mark.parametrize("spec,message", [("no/such/folder/x", "neither a known name"),
                                          (".", "not a diffusers checkpoint folder")])
def test_bad_prior_specs_are_one_line_errors(spec, message):
    with pytest.raises(UserError, match=message) as info:
        load_prior(spec)
    assert "\n" not in str(info.value)


def test_a_prior_without_a_latent_inn_is_calibrated_on_first_use_and_cached(tmp_path):
    """What a GPU server does on a VAE's first use (forced here with calibrate=True; short, on the CPU)."""
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    script = """
import json
from latentindigo import calibration
from latentindigo.priors import load_prior
calls, seen = [], []
original = calibration.calibrate_latent_inn
def short(prior, progress=None):
    calls.append(prior.name)
    return original(prior, steps=8, batch=2, crop=64, progress=progress)
calibration.calibrate_latent_inn = short
first = load_prior("tiny-random", calibrate=True, progress=lambda step, total: seen.append([step, total]))
again = load_prior("tiny-random", calibrate=True)
print(json.dumps([calls, first.latent_inn_trained, first.notice, seen[-1], again.latent_inn_trained]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    calls, trained, notice, last, trained_again = json.loads(out.stdout.strip().splitlines()[-1])
    assert calls == ["tiny-random"]  # the second load used the cache
    assert trained and not notice and last == [8, 8] and trained_again
    assert list((tmp_path / "hf" / "latentindigo" / "latent_inn").glob("*.safetensors"))
