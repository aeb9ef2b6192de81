"""Priors: the suite's own cache, LatentINN calibration and its cache, the fallback notice, folders that are not
checkpoints, sd21 where the hub cannot be reached."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentindigo import UserError
from latentindigo.calibration import latent_inn_cache_path
from latentindigo.priors import load_prior


def test_the_suite_has_a_hugging_face_cache_of_its_own():
    """tests/conftest.py's: whatever this machine's own cache holds changes no test."""
    import tempfile

    from huggingface_hub import constants

    home = Path(os.environ["HF_HOME"])
    assert home.parent == Path(tempfile.gettempdir()) and home.name.startswith("latentindigo-tests-hf-")
    assert Path(constants.HF_HOME) == home and Path(constants.HF_HUB_CACHE) == home / "hub"
    assert constants.HF_HUB_OFFLINE


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


def test_without_calibration_the_prior_says_it_falls_back_and_a_cached_one_is_used(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from latentindigo.inn import LiftingINN
    from latentindigo.weights import save_weights

    monkeypatch.setattr(constants, "HF_HOME", str(tmp_path / "hf"))  # an empty cache, whatever the suite did
    prior = load_prior("tiny-random", device="cpu", calibrate=False)
    cached = latent_inn_cache_path(prior.vae)
    assert cached.parent == tmp_path / "hf" / "latentindigo" / "latent_inn" and not cached.exists()
    assert not prior.latent_inn_trained and cached not in prior.files
    assert "Haar-initialised" in prior.notice and "calibrate --prior tiny-random" in prior.notice

    # a LatentINN in the cache (here: made up, not a calibrated one) is the one loaded, without a notice
    inn = LiftingINN(channels=prior.vae.config.latent_channels)
    for parameter in inn.parameters():
        torch.nn.init.normal_(parameter, std=0.1, generator=torch.Generator().manual_seed(1))
    save_weights(inn, cached)
    again = load_prior("tiny-random", device="cpu", calibrate=False)
    assert again.latent_inn_trained and not again.notice and cached in again.files
    for name, value in inn.state_dict().items():
        assert torch.equal(again.latent_inn.state_dict()[name], value), name


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


# ------------------------------------------------------------------------------------------- sd21 without the hub
# The suite's cache (tests/conftest.py) is empty and HF_HUB_OFFLINE=1: sd21 is not there to load. Where the hub
# is offline or cannot be connected to, the error comes at once: no download is tried (huggingface_hub retries
# for half a minute). benchmarks/bench_refusals.py times it.

def closed_port() -> int:
    """A loopback port nothing listens on: a connection to it is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hub(monkeypatch):
    """Every snapshot_download that may reach the network (not local_files_only) is recorded and fails at once
    in its place; those that only read the (empty) cache run. Every socket connection is recorded too, and the
    hub's address is a closed loopback port: nothing leaves the machine, even where the code under test is
    broken."""
    import huggingface_hub
    from huggingface_hub import constants

    calls = {"downloads": [], "connections": []}
    cached_only = huggingface_hub.snapshot_download

    def snapshot_download(repo_id, **kwargs):
        if kwargs.get("local_files_only"):
            return cached_only(repo_id, **kwargs)
        calls["downloads"].append(repo_id)
        raise OSError("a download (the test's stand-in, which contacts nothing)")

    connect = socket.create_connection

    def create_connection(address, *args, **kwargs):
        calls["connections"].append(address)
        return connect(address, *args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed_port()}")
    for name in ("LATENTINDIGO_SD21_REPO", "LATENTINDIGO_SD21_REVISION"):
        monkeypatch.delenv(name, raising=False)
    return calls


def assert_sd21_error(reason: str) -> None:
    from latentindigo.priors import SD21_REPO, SD21_REVISION

    with pytest.raises(UserError) as info:
        load_prior("sd21", device="cpu")
    message = str(info.value)
    assert SD21_REPO in message and SD21_REVISION in message and f"({reason})" in message, message
    assert f"hf download {SD21_REPO} --revision {SD21_REVISION}" in message and "\n" not in message


def test_offline_sd21_fails_without_contacting_the_hub(hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # (as the suite's HF_HUB_OFFLINE=1 sets it)
    assert_sd21_error("OSError")
    assert hub == {"downloads": [], "connections": []}


def test_sd21_with_the_hub_unreachable_fails_without_trying_a_download(hub, monkeypatch):
    from huggingface_hub import constants

    port = closed_port()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    assert_sd21_error("ConnectionRefusedError")
    assert hub == {"downloads": [], "connections": [("127.0.0.1", port)]}


def test_sd21_with_the_hub_reachable_downloads(hub, monkeypatch):
    from huggingface_hub import constants

    from latentindigo.priors import SD21_REPO

    with socket.socket() as listener:  # stands for the hub: it accepts connections
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        assert_sd21_error("OSError")  # the stand-in download's
    assert hub == {"downloads": [SD21_REPO], "connections": [("127.0.0.1", port)]}
