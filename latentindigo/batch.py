"""Restore every image in a folder: `python -m latentindigo restore-dir IN_DIR OUT_DIR [restore options]`.

    accelerate launch --multi_gpu --num_processes 4 -m latentindigo restore-dir photos/ restored/ --recursive

What it does, and the promises it keeps:

- Inputs are the files in IN_DIR (and its subfolders with `recursive`) whose extension is one of
  `IMAGE_EXTENSIONS`, case-insensitively; names starting with "." are ignored, and so is OUT_DIR when it lies
  inside IN_DIR. Inputs are only ever opened for reading.
- Each input `IN_DIR/sub/name.ext` is restored to `OUT_DIR/sub/name.png`. When several inputs would get the
  same output (`a.jpg` and `a.png`, or `a.PNG` and `a.png` on a case-insensitive disk), each of them keeps its
  whole name instead: `a.jpg.png`, `a.png.png`.
- Outputs that already exist are skipped, so a crashed or interrupted run is resumed by running it again.
  PNGs are written to a temporary file and renamed (`imageio.save_png`), so an output that exists is complete;
  temporary files left behind by a killed process are removed by the next run.
- Every image gets the same settings, seed included, so the output depends only on the input and the settings.
- `OUT_DIR/manifest.jsonl` gets one JSON line per restored image (see `_restore_one`); a run adds the lines
  of the images it restored, and when an image is restored again (its output was deleted) its new line
  replaces the old one. Failures are not in the manifest: each gets a line in `OUT_DIR/errors.jsonl`
  (`{"input", "error", "process", "time"}`), a log that every run appends to, and one line on stderr.
- Several processes (`accelerate launch`): the sorted file list is split as `files[index::num_processes]`,
  so each file belongs to exactly one process whatever the others do. Each process appends its lines to
  `manifest.part-{index}.jsonl` (and `errors.part-{index}.jsonl`) as it goes; after all processes are done,
  the main process merges the part files into `manifest.jsonl` and `errors.jsonl` and removes them. Part
  files left by a crashed run are merged by the next one. Two runs writing to the same OUT_DIR at the same
  time are not supported.

On a CPU-only machine `accelerate launch --cpu` starts a single process (accelerate 1.15 only splits CPU work
with mpirun); `accelerate launch --multi_gpu --num_processes N` starts N processes that talk over gloo, and
this module then runs them on the CPU.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import torch

from latentindigo.errors import UserError
from latentindigo.imageio import ImageError, load_image, save_png

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
MANIFEST = "manifest"  # OUT_DIR/manifest.jsonl, OUT_DIR/manifest.part-{index}.jsonl
ERRORS = "errors"  # OUT_DIR/errors.jsonl, OUT_DIR/errors.part-{index}.jsonl
# How long a process that has finished its share waits for the slowest one before the merge.
BARRIER_TIMEOUT = timedelta(hours=24)

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{12}\.tmp$")  # imageio.save_png's temporary files
_PART_INDEX = re.compile(r"\.part-(\d+)\.jsonl$")


@dataclass(frozen=True)
class Job:
    """One input image and where its restoration goes."""

    input: Path
    output: Path
    rel: str  # the input relative to IN_DIR, with "/" separators
    out_rel: str  # the output relative to OUT_DIR, with "/" separators


@dataclass(frozen=True)
class Summary:
    """Counts over all processes."""

    total: int
    restored: int
    skipped: int  # outputs that already existed
    failed: int
    main_process: bool = True

    @property
    def exit_status(self) -> int:
        """1 when an image failed, else 0; only the main process reports failures, so that a launcher does
        not stop the main process while it merges the manifest."""
        return 1 if self.failed and self.main_process else 0


def find_images(in_dir: Path, recursive: bool = False, exclude: Path | None = None) -> list[str]:
    """The image files in `in_dir`, as sorted "/"-separated paths relative to it.

    Hidden names (".x") are ignored; so is the folder `exclude` (resolved) and everything under it.
    Symbolic links to folders are not followed.
    """
    found = []
    for folder, dirs, files in os.walk(in_dir):
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and (exclude is None or Path(folder, d).resolve() != exclude)]
        if not recursive:
            dirs.clear()
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS:
                found.append(Path(folder, name).relative_to(in_dir).as_posix())
    return sorted(found)


def plan(in_dir: str | os.PathLike, out_dir: str | os.PathLike, recursive: bool = False) -> list[Job]:
    """All jobs of a run, sorted by input path; the same list in every process. Raises UserError."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise UserError(f"input folder {str(in_dir)!r} " + ("is not a folder" if in_dir.exists() else "not found"))
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output folder {str(out_dir)!r} is a file")
    if out_dir.resolve() == in_dir.resolve():
        raise UserError("the output folder must not be the input folder")
    rels = find_images(in_dir, recursive, exclude=out_dir.resolve())

    def output_of(rel: str, whole_name: bool) -> str:
        return rel + ".png" if whole_name else Path(rel).with_suffix(".png").as_posix()

    groups: dict[str, list[str]] = {}
    for rel in rels:
        groups.setdefault(output_of(rel, False).casefold(), []).append(rel)
    out_rels = {rel: output_of(rel, len(group) > 1) for group in groups.values() for rel in group}
    seen: dict[str, str] = {}
    for rel in rels:
        other = seen.setdefault(out_rels[rel].casefold(), rel)
        if other != rel:
            raise UserError(f"{other!r} and {rel!r} would both be restored to {out_rels[rel]!r}; rename one")
    jobs = [Job(in_dir / rel, out_dir / out_rels[rel], rel, out_rels[rel]) for rel in rels]
    inputs = {job.input.resolve() for job in jobs}
    for job in jobs:
        if job.output.resolve() in inputs:
            raise UserError(f"the output {str(job.output)!r} would overwrite an input; choose another output folder")
    return jobs


def check_settings(settings) -> None:
    """Raise UserError for settings that are wrong whatever the image (size limits are checked per image)."""
    width, height = settings.size if settings.size else (64, 64)
    settings.check(width, height, max_pixels=sys.maxsize)


def restore_dir(in_dir: str | os.PathLike, out_dir: str | os.PathLike, settings, *, prior_spec: str = "mini",
                recursive: bool = False, device: str | None = None, quiet: bool = False, prior=None,
                first_stage_weights: Path | None = None) -> Summary:
    """Restore the images of `in_dir` into `out_dir` (see the module docstring); returns counts over all processes.

    Call it in every process of an `accelerate launch`; plain Python is a single process. `device`: None for
    the process's accelerate device, "cpu" to force the CPU, or a torch device for a single process.
    `prior`: an already loaded prior (otherwise `prior_spec` is loaded once per process, when first needed).
    `first_stage_weights`: a user's ESRGAN-family file for the realistic first stage.
    Raises UserError for mistakes that concern the whole run; a bad image only counts as failed.
    """
    from tqdm import tqdm

    from latentindigo.sampler import load_pixel_models
    from latentindigo.settings import DIFFUSION_METHODS

    in_dir, out_dir = Path(in_dir), Path(out_dir)
    check_settings(settings)
    pixel = load_pixel_models(realistic=first_stage_weights)
    if settings.uses_realistic:
        pixel.realistic_model()  # a missing package or a bad weights file concerns every image: not caught
    jobs = plan(in_dir, out_dir, recursive)
    state, device = _state(device)
    index, num = state.process_index, state.num_processes
    mine = jobs[index::num]
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(mine)
    pending = [job for job in mine if not job.output.exists()]
    skipped = len(mine) - len(pending)
    if state.is_main_process and not jobs:
        print(f"no images in {str(in_dir)!r}" + ("" if recursive else " (--recursive looks in subfolders)"),
              file=sys.stderr)

    needs_prior = settings.method in DIFFUSION_METHODS
    loaded = {"prior": prior}

    def get_prior():
        if needs_prior and loaded["prior"] is None:
            loaded["prior"] = _load_prior(prior_spec, device)  # its errors concern every image: not caught
        return loaded["prior"] if needs_prior else None

    run_info = {"input_dir": str(in_dir.resolve()), "prior": prior_spec if needs_prior else None, "process": index}
    restored = failed = 0
    bar = tqdm(total=len(pending), desc="restore-dir" if num == 1 else f"restore-dir {index + 1}/{num}",
               unit="img", file=sys.stderr, disable=quiet or not pending, position=index if num > 1 else None,
               dynamic_ncols=True)
    try:
        with _JsonLines(out_dir / f"{MANIFEST}.part-{index}.jsonl") as manifest, \
                _JsonLines(out_dir / f"{ERRORS}.part-{index}.jsonl") as errors, bar:
            for job in pending:
                record, error = _restore_one(job, settings, get_prior, pixel, run_info)
                if error is None:
                    manifest.write(record)
                    restored += 1
                else:
                    errors.write({"input": job.rel, "error": error, "process": index, "time": _now()})
                    failed += 1
                    bar.write(f"error: {error}", file=sys.stderr)
                    bar.set_postfix(failed=failed)
                bar.update(1)
    except KeyboardInterrupt:
        if num == 1:  # alone, the manifest can be brought up to date; else the next run merges the parts
            merge_parts(out_dir, MANIFEST, key="output")
            merge_parts(out_dir, ERRORS)
        raise

    state.wait_for_everyone()
    counts = _gather((restored, skipped, failed))
    summary = Summary(len(jobs), *(sum(c[i] for c in counts) for i in range(3)), state.is_main_process)
    if state.is_main_process:
        merge_parts(out_dir, MANIFEST, key="output")
        merge_parts(out_dir, ERRORS)
        print(f"{out_dir}: restored {summary.restored}, skipped {summary.skipped} already done, "
              f"failed {summary.failed}, of {summary.total} images" +
              (f" (see {out_dir / (ERRORS + '.jsonl')})" if summary.failed else ""))
    state.wait_for_everyone()  # every process returns the same status only once the manifest is complete
    return summary


def merge_parts(out_dir: Path, stem: str, key: str | None = None) -> int:
    """Append the lines of `out_dir/{stem}.part-*.jsonl` to `out_dir/{stem}.jsonl`, then remove the parts.

    With `key`, a new line replaces earlier lines with the same value of `key` (the newest, by "time", wins
    among the new ones) and new lines are sorted by "input". The file is replaced atomically, so a crash
    leaves either the old or the new version; part files are removed only after that. Returns the number
    of lines added.
    """
    out_dir = Path(out_dir)
    target = out_dir / f"{stem}.jsonl"
    for stale in out_dir.glob(f".{target.name}.*.tmp"):  # a merge killed before its rename
        stale.unlink(missing_ok=True)
    parts = sorted(out_dir.glob(f"{stem}.part-*.jsonl"), key=lambda p: int(_PART_INDEX.search(p.name).group(1))
                   if _PART_INDEX.search(p.name) else -1)
    if not parts:
        return 0
    new = [record for part in parts for _, record in _read_jsonl(part)]
    if key is not None:
        latest: dict = {}
        for record in sorted(new, key=lambda r: str(r.get("time", ""))):
            latest[record.get(key)] = record
        new = sorted(latest.values(), key=lambda r: str(r.get("input", "")))
    replaced = {r.get(key) for r in new} if key is not None else set()
    old = [line for line, record in _read_jsonl(target)
           if key is None or record.get(key) not in replaced] if target.exists() else []
    if new:
        text = "".join(line + "\n" for line in old) + "".join(json.dumps(r) + "\n" for r in new)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    for part in parts:
        part.unlink(missing_ok=True)
    return len(new)


def _read_jsonl(path: Path):
    """(line, record) for each valid JSON object line of `path`; other lines (a write cut short) are skipped."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict):
                yield line, record
            else:
                print(f"warning: {path.name} line {number} is not a JSON object (a write cut short?), dropped",
                      file=sys.stderr)


class _JsonLines:
    """Appends JSON lines to a file, each on disk before the next image starts; the file is made on first write."""

    def __init__(self, path: Path):
        self.path, self.file = path, None

    def write(self, record: dict) -> None:
        if self.file is None:
            cut = False  # a line cut short by a crash must not swallow the next one
            if self.path.exists() and self.path.stat().st_size:
                with open(self.path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    cut = f.read(1) != b"\n"
            self.file = open(self.path, "a", encoding="utf-8")
            if cut:
                self.file.write("\n")
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.file is not None:
            self.file.close()


def _state(device: str | None):
    """accelerate's PartialState (on the CPU when asked for, or when there is no GPU) and the device to use."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    cpu = device == "cpu" or parse_flag_from_env("ACCELERATE_USE_CPU") or not torch.cuda.is_available()
    started = not _distributed()
    state = PartialState(cpu=cpu, timeout=BARRIER_TIMEOUT)
    if started and _distributed():  # this call started the process group: it ends with the process
        atexit.register(_end_processes)
    if device is None or device == "cpu":
        chosen = torch.device("cpu") if cpu or state.device.type == "cpu" else state.device
    else:
        chosen = torch.device(device)
        if state.num_processes > 1:
            raise UserError(f"--device {device} would put all {state.num_processes} processes on one device; "
                            "leave --device out under accelerate launch")
    return state, chosen


def _distributed() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _end_processes() -> None:
    """Destroy the process group that `_state` started; run at exit, while the interpreter is still whole.

    Without it, gloo's worker threads can still be freeing the last collective's work (tensors that hold
    Python objects) when the interpreter shuts down; such a thread then dies taking the GIL and the process
    aborts ("terminate called without an active exception", exit code -6), about once in 25 runs where the
    exit follows the last barrier at once (a resume with nothing to do). destroy_process_group joins those
    threads. It is local: every collective of a run has completed by then (each rank's last is the final
    barrier, or none when it fails), so it waits for no other process. Not at the end of `restore_dir`: the
    group could not be started again for a second call in the same process.
    """
    if _distributed():
        torch.distributed.destroy_process_group()


def _gather(counts: tuple[int, int, int]) -> list[tuple[int, int, int]]:
    from accelerate.utils import gather_object

    return [tuple(c) for c in gather_object([counts])]


def _load_prior(spec: str, device: torch.device):
    from latentindigo.priors import load_prior

    return load_prior(spec, device=device)


def _remove_stale_temps(jobs: list[Job]) -> None:
    """Remove the temporary files of `jobs`' outputs that a killed process left (only this process's outputs)."""
    by_folder: dict[Path, set[str]] = {}
    for job in jobs:
        by_folder.setdefault(job.output.parent, set()).add(job.output.name)
    for folder, names in by_folder.items():
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            continue
        for entry in entries:
            match = _TEMP_NAME.match(entry.name)
            if match and match.group("name") in names and entry.is_file(follow_symlinks=False):
                Path(entry.path).unlink(missing_ok=True)


def _restore_one(job: Job, settings, get_prior, pixel, run_info: dict) -> tuple[dict | None, str | None]:
    """Restore one image: (its manifest line, None), or (None, a line naming the file and what went wrong).

    `run_info`: the manifest fields that are the same for every image of a process (input_dir, prior, process).
    """
    from latentindigo.recipe import png_text, recipe
    from latentindigo.sampler import run

    t0 = time.perf_counter()
    try:
        image = load_image(job.input, name=job.rel)
        settings.check(image.width, image.height)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the others
        return None, _describe(job, e)
    loading = time.perf_counter()
    prior = get_prior()
    t0 += time.perf_counter() - loading  # loading the prior is not part of this image's time
    try:
        done = run(image, settings, prior, pixel)
        save_png(done.image, job.output, text=png_text(recipe(done, image, prior, pixel)))
    except Exception as e:  # noqa: BLE001
        return None, _describe(job, e)
    return {
        "input": job.rel,  # relative to input_dir
        "output": job.out_rel,  # relative to the manifest's folder, OUT_DIR
        "input_dir": run_info["input_dir"],  # absolute
        "method": done.settings.method,
        "prior": run_info["prior"],  # the --prior spec; None for methods without a diffusion prior
        "parameters": dataclasses.asdict(done.settings),
        "seed": done.settings.seed,
        "estimate": dataclasses.asdict(done.estimate),
        "latent_inn_trained": done.latent_inn_trained,
        "input_size": [image.width, image.height],
        "output_size": [done.image.width, done.image.height],
        "seconds": round(time.perf_counter() - t0, 3),  # wall clock: load, restore, save
        "process": run_info["process"],  # accelerate process index
        "time": _now(),
    }, None


def _describe(job: Job, e: Exception) -> str:
    """One line naming the file and what went wrong."""
    if isinstance(e, ImageError):
        return str(e)  # names the file already
    text = " ".join(str(e).split())
    return f"{job.rel}: {text}" if isinstance(e, UserError) else f"{job.rel}: {type(e).__name__}: {text}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
