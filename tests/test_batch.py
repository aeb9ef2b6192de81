"""restore-dir: every image of a folder once, resumable, a complete manifest, also split across processes."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from latentindigo.__main__ import main
from latentindigo.batch import merge_parts, plan, restore_dir
from latentindigo.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# name -> input size; sorted, "d_bad.png" (added by one test) falls between and is the 4th file: process 1's
IMAGES = {"a.png": (24, 20), "b.jpg": (24, 20), "c.bmp": (20, 24), "e.tiff": (24, 20), "f.webp": (24, 20),
          "sub/g.png": (16, 12)}


def make_images(folder: Path, images=IMAGES) -> None:
    rng = np.random.default_rng(0)
    for name, (w, h) in images.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        y, x = np.mgrid[0:h, 0:w] / 10.0
        rgb = np.stack([0.5 + 0.4 * np.sin(x + y), 0.5 + 0.3 * np.cos(y), 0.5 + 0.2 * np.sin(x)], axis=-1)
        pixels = (rgb * 255 + rng.normal(0, 4, rgb.shape)).clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / name)
    (folder / "notes.txt").write_text("not an image")


def manifest(out: Path, name="manifest.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def fingerprint(folder: Path) -> dict:
    return {p: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


def launch(in_dir, out_dir, tmp_path, *args):
    """restore-dir in two CPU processes under accelerate launch."""
    return accelerate_launch(tmp_path, "-m", "latentindigo", "restore-dir", str(in_dir), str(out_dir), "--recursive",
                             "--prior", "tiny-random", "--steps", "2", "--scale", "2", "--quiet", *args)


def accelerate_launch(tmp_path, *program):
    """Two CPU processes under accelerate launch (on a CPU-only machine its multi-GPU launcher runs gloo)."""
    config = tmp_path / "accelerate.yaml"
    config.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: MULTI_GPU\nnum_machines: 1\n"
                      "num_processes: 2\nmixed_precision: 'no'\nuse_cpu: false\ngpu_ids: all\n"
                      "main_process_port: 0\n")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *program]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)


def test_two_processes_restore_each_image_once_then_resume_skips_all(tmp_path):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    make_images(in_dir)
    inputs_before = fingerprint(in_dir)

    result = launch(in_dir, out, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "restored 6, skipped 0 already done, failed 0, of 6 images" in result.stdout  # not 12: no image twice
    records = manifest(out)
    assert len(records) == 6
    assert sorted(r["input"] for r in records) == sorted(IMAGES)
    order = sorted(IMAGES)
    for r in records:
        assert r["process"] == order.index(r["input"]) % 2  # files[index::2]: both processes did their share
        assert r["method"] == "latent" and r["prior"] == "tiny-random" and r["seed"] == 0
        assert r["parameters"]["steps"] == 2 and r["parameters"]["scale"] == 2
        assert set(r["estimate"]) == {"scale", "blur", "noise", "jpeg"}
        w, h = IMAGES[r["input"]]
        assert r["output"] == str(Path(r["input"]).with_suffix(".png").as_posix())
        assert r["input_size"] == [w, h] and r["output_size"] == [2 * w, 2 * h]
        with Image.open(out / r["output"]) as image:
            assert image.format == "PNG" and image.size == (2 * w, 2 * h)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        ["manifest.jsonl"] + [r["output"] for r in records])  # no part files, temp files or errors.jsonl
    assert fingerprint(in_dir) == inputs_before

    # a second run finds everything done: nothing restored, nothing rewritten, the manifest unchanged
    outputs_before = fingerprint(out)
    result = launch(in_dir, out, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "restored 0, skipped 6 already done, failed 0" in result.stdout
    assert fingerprint(out) == outputs_before

    # a corrupt file handled by the second process: reported, counted, and the launcher's status says so
    (in_dir / "d_bad.png").write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    result = launch(in_dir, out, tmp_path)
    assert result.returncode != 0
    assert "restored 0, skipped 6 already done, failed 1, of 7 images" in result.stdout
    assert any("d_bad.png" in line and line.startswith("error:") for line in result.stderr.splitlines())
    after = fingerprint(out)
    assert after.pop(out / "errors.jsonl") and after == outputs_before  # manifest and outputs untouched
    errors = manifest(out, "errors.jsonl")
    assert [(e["input"], e["process"]) for e in errors] == [("d_bad.png", 1)]
    assert "d_bad.png" in errors[0]["error"]


def test_a_launched_process_keeps_its_process_group_across_calls_and_ends_it_before_interpreter_shutdown(tmp_path):
    # Exiting with the gloo group alive let its worker threads touch Python objects during interpreter
    # shutdown: now and then a process aborted ("terminate called without an active exception").
    in_dir, out = tmp_path / "in", tmp_path / "out"
    make_images(in_dir)
    script = tmp_path / "twice.py"
    script.write_text(
        "import atexit, os, sys\n"
        "import torch\n"
        "from latentindigo.batch import restore_dir\n"
        "from latentindigo.settings import Settings\n"
        "log = open(f'log-{os.environ[\"RANK\"]}.txt', 'w', buffering=1)\n"
        "def report():  # registered first, so it runs after restore_dir's own exit handler\n"
        "    tasks = os.listdir('/proc/self/task') if os.path.isdir('/proc/self/task') else []\n"
        "    names = [open(f'/proc/self/task/{t}/comm').read().strip() for t in tasks]\n"
        "    print('at exit', torch.distributed.is_initialized(), [n for n in names if 'gloo' in n], file=log)\n"
        "atexit.register(report)\n"
        "for _ in range(2):\n"
        "    s = restore_dir(*sys.argv[1:], Settings(method='bicubic', scale=2), recursive=True, quiet=True)\n"
        "    print('call', s.restored, s.skipped, torch.distributed.is_initialized(), file=log)\n")
    result = accelerate_launch(tmp_path, str(script), str(in_dir), str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    for rank in (0, 1):  # the second call used the same group; at exit the group and gloo's threads are gone
        assert (tmp_path / f"log-{rank}.txt").read_text().splitlines() == [
            "call 6 0 True", "call 0 6 True", "at exit False []"], rank
    assert len(manifest(out)) == 6


def test_interrupted_save_leaves_no_partial_png_and_the_rerun_completes(tmp_path, monkeypatch):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    make_images(in_dir)
    settings = Settings(method="bicubic", scale=2)
    real_save = Image.Image.save
    calls = []

    def save_then_crash(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 3:  # the third output: half of it written, then Ctrl-C
            real_save(self, fp, *args, **kwargs)
            fp.truncate(fp.tell() // 2)
            raise KeyboardInterrupt
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        restore_dir(in_dir, out, settings, recursive=True, quiet=True)
    monkeypatch.undo()

    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == ["a.png", "b.png", "manifest.jsonl"]  # no temporary or partial file; the parts merged
    for name in ("a.png", "b.png"):
        with Image.open(out / name) as image:
            image.load()  # complete, decodable
            assert image.size == (48, 40)
    assert [r["output"] for r in manifest(out)] == ["a.png", "b.png"]

    # a killed process (SIGKILL: no cleanup) may leave a temporary file; the next run removes it
    stale = out / ".c.png.0123456789ab.tmp"
    stale.write_bytes(b"half a png")
    a_before = fingerprint(out)[out / "a.png"]
    summary = restore_dir(in_dir, out, settings, recursive=True, quiet=True)
    assert (summary.total, summary.restored, summary.skipped, summary.failed) == (6, 4, 2, 0)
    assert not stale.exists() and not list(out.glob("*.part-*"))
    assert fingerprint(out)[out / "a.png"] == a_before
    records = manifest(out)
    assert sorted(r["input"] for r in records) == sorted(IMAGES)  # the interrupted run's lines kept, once each
    assert all(not p.name.startswith(".") for p in out.rglob("*"))


def test_corrupt_files_are_reported_and_the_rest_succeed(tmp_path, capsys):
    in_dir, out = tmp_path / "in", tmp_path / "out"
    make_images(in_dir, {"a.png": (24, 20), "c.jpg": (20, 16)})
    (in_dir / "b.png").write_bytes(b"this is not a png")
    (in_dir / "empty.jpg").write_bytes(b"")
    Image.new("RGB", (300, 300), "gray").save(in_dir / "huge.png")  # --size 40x32 is below 1x of it
    inputs_before = fingerprint(in_dir)

    with pytest.raises(SystemExit) as exit_:
        main(["restore-dir", str(in_dir), str(out), "--method", "bicubic", "--size", "40x32", "--quiet"])
    assert exit_.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert len([line for line in err if line.startswith("error:")]) == 3
    for name, reason in (("b.png", "not an image"), ("empty.jpg", "empty"), ("huge.png", "300x300")):
        assert any(name in line and reason in line for line in err), (name, err)
    assert sorted(r["input"] for r in manifest(out)) == ["a.png", "c.jpg"]
    assert sorted(e["input"] for e in manifest(out, "errors.jsonl")) == ["b.png", "empty.jpg", "huge.png"]
    for name in ("a.png", "c.png"):
        with Image.open(out / name) as image:
            assert image.size == (40, 32)
            recipe = json.loads(image.text["latentindigo"])  # every output carries its recipe
            assert recipe["method"] == "bicubic" and recipe["output_size"] == [40, 32]
    assert not (out / "b.png").exists() and not (out / "empty.png").exists()
    assert fingerprint(in_dir) == inputs_before

    assert main(["restore-dir", str(in_dir / "sub_none"), str(out)]) == 2  # missing folder: usage error
    # once the bad files are gone: status 0, and the good ones are not restored again
    for bad in ("b.png", "empty.jpg", "huge.png"):
        (in_dir / bad).unlink()
    assert main(["restore-dir", str(in_dir), str(out), "--method", "bicubic", "--size", "40x32", "--quiet"]) == 0
    assert len(manifest(out)) == 2


def test_naming_recursion_and_usage_errors(tmp_path):
    in_dir = tmp_path / "in"
    make_images(in_dir, {"x.jpg": (8, 8), "x.png": (8, 8), "y.PNG": (8, 8), "z.gif": (8, 8), "sub/x.png": (8, 8),
                         ".hidden.png": (8, 8)})
    names = [(j.rel, j.out_rel) for j in plan(in_dir, tmp_path / "out")]
    assert names == [("x.jpg", "x.jpg.png"), ("x.png", "x.png.png"), ("y.PNG", "y.png"), ("z.gif", "z.png")]
    names = [(j.rel, j.out_rel) for j in plan(in_dir, in_dir / "restored", recursive=True)]
    assert ("sub/x.png", "sub/x.png") in names and len(names) == 5
    make_images(in_dir / "restored", {"old.png": (8, 8)})  # the output folder inside the input is not an input
    assert len(plan(in_dir, in_dir / "restored", recursive=True)) == 5
    assert main(["restore-dir", str(in_dir), str(in_dir)]) == 2
    assert main(["restore-dir", str(in_dir / "x.png"), str(tmp_path / "out")]) == 2
    assert main(["restore-dir", str(in_dir), str(tmp_path / "out"), "--steps", "0"]) == 2
    assert not (tmp_path / "out").exists()


def test_merge_replaces_lines_of_restored_again_outputs_and_drops_cut_lines(tmp_path):
    old = [{"input": "a.png", "output": "a.png", "time": "1"}, {"input": "b.png", "output": "b.png", "time": "1"}]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    (tmp_path / "manifest.part-1.jsonl").write_text(json.dumps({"input": "c.png", "output": "c.png", "time": "2"})
                                                    + '\n{"input": "d.p')
    (tmp_path / "manifest.part-0.jsonl").write_text(json.dumps({"input": "a.png", "output": "a.png", "time": "3"})
                                                    + "\n")
    assert merge_parts(tmp_path, "manifest", key="output") == 2
    records = manifest(tmp_path)
    assert [(r["output"], r["time"]) for r in records] == [("b.png", "1"), ("a.png", "3"), ("c.png", "2")]
    assert not list(tmp_path.glob("*.part-*"))
    assert merge_parts(tmp_path, "manifest", key="output") == 0
