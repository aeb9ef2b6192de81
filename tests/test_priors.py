"""Priors: LatentINN calibration and its cache, the fallback notice, folders that are not checkpoints."""

import json
import os
import subprocess
import sys

import pytest

from latentindigo import UserError
from latentindigo.priors import latent_inn_cache_path, load_prior


def test_calibrate_caches_a_latent_inn_that_beats_haar_and_is_used(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "latentindigo", "calibrate", "--prior", "tiny-random", "--steps", "60",
               "--batch", "4", "--crop", "64"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    line = result.stdout.strip().splitlines()[-1]  # ".../<hash>.safetensors: LatentINN error A (Haar initialisation B)"
    trained, haar = (float(v) for v in line.replace(")", "").split("error ")[1].split(" (Haar initialisation "))
    assert trained < haar
    check = ("from latentindigo.priors import load_prior, latent_inn_cache_path; import json; "
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
