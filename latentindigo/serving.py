"""The demo's serving half, without a user interface: the priors it offers, one job at a time on the device,
Stop, what a run will cost, and running methods to the end. `latentindigo/demo/` builds the Gradio tabs on it.

Importing this module imports neither torch nor Gradio: the page is served first, the library loaded after.
"""

from __future__ import annotations

import inspect
import math
import os
import random
import shutil
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from latentindigo.errors import UserError
from latentindigo.settings import DIFFUSION_METHODS, REALISM_METHODS, REALISM_SWEEP, Settings, settings_for

if TYPE_CHECKING:
    import torch

    from latentindigo.priors import Prior
    from latentindigo.sampler import Done, FirstStage, FirstStageCache, Step

LOCK_WAIT = 600  # seconds a job waits for the device before giving up (the queue normally prevents waiting)


class Models:
    """Priors loaded on first use and kept, one per spec. `calibrate`: whether a VAE without a calibrated
    LatentINN is calibrated when its prior loads (None: on a GPU)."""

    def __init__(self, specs: list[str], device: str | None = None, threads: int = 0, default: str | None = None,
                 calibrate: bool | None = None):
        self.specs, self._device, self.threads, self.calibrate = specs, device, threads, calibrate
        # Stable Diffusion is never the implicit default (it needs a GPU and a download): name it first in
        # --prior / LATENTINDIGO_PRIORS to make it the default, e.g. on a GPU Space
        self.default = default if default is not None else next((s for s in specs if s != "sd21"), None)
        self._loading = threading.Lock()
        self._priors: dict[str, Prior] = {}
        self.calibrating: dict[str, tuple[int, int]] = {}  # spec -> (step, total) of the calibration its load runs
        self._first_stages: FirstStageCache | None = None
        # (the first-stage cache's key, scale, the realism_detail of its estimates): the last photo's, for
        # `cached_start` (a key names the photo, output size, weights and device: it fixes the estimates)
        self._start_detail: tuple | None = None

    @property
    def first_stages(self) -> FirstStageCache:
        """The last photo's first-stage estimates (one job runs at a time, so one photo's are enough)."""
        if self._first_stages is None:
            from latentindigo.sampler import FirstStageCache

            self._first_stages = FirstStageCache()
        return self._first_stages

    def start_detail(self, key: tuple, estimates: dict[str, torch.Tensor], scale: float) -> torch.Tensor:
        """`first_stages.realism_detail` of the first-stage cache's `estimates` under `key`, kept for the last key
        it was asked for (the realism slider's start is then a multiply-add)."""
        from latentindigo.first_stages import realism_detail

        kept = self._start_detail
        if kept is None or kept[0] != key or kept[1] != scale:
            kept = self._start_detail = (key, scale, realism_detail(estimates["faithful"], estimates["realistic"],
                                                                    scale))
        return kept[2]

    def settings(self, spec: str | None, **given) -> Settings:
        """Settings for a job on prior `spec` (None: the default): `given`, else the prior's tuned settings."""
        return settings_for(spec or self.default, **given)

    @property
    def device(self) -> str:
        if self._device is None:
            import torch

            self._device = "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def prior(self, spec: str | None = None) -> Prior:
        """The prior `spec` (None: the default), loaded on first use (`calibrating` follows a calibration that
        its loading starts)."""
        from latentindigo.priors import load_prior

        spec = spec or self.default
        if not spec:
            raise UserError("no diffusion prior is available: start the app with --prior SPEC")
        if spec not in self.specs:
            raise UserError(f"unknown prior {spec!r}: start the app with --prior {spec}")
        with self._loading:
            if spec not in self._priors:
                progress = lambda step, total: self.calibrating.__setitem__(spec, (step, total))  # noqa: E731
                self._priors[spec] = load_prior(spec, device=self.device, calibrate=self.calibrate,
                                                progress=progress)
            return self._priors[spec]

    def loaded(self, spec: str | None) -> Prior | None:
        return self._priors.get(spec or self.default)

    def loading(self, spec: str | None) -> Iterator[str]:
        """Load the prior `spec` in a thread, yielding a status line every half second (the calibration's
        progress when it runs); the prior is then `loaded(spec)`. Errors are raised here."""
        done, failed, spec = threading.Event(), [], spec or self.default

        def load() -> None:
            try:
                self.prior(spec)
            except BaseException as e:  # raised in the caller's thread below
                failed.append(e)
            finally:
                done.set()

        threading.Thread(target=load, daemon=True, name="load-prior").start()
        started = time.perf_counter()
        while not done.wait(0.5):
            seconds = f"{time.perf_counter() - started:.0f} s"
            if spec in self.calibrating:
                step, total = self.calibrating[spec]
                yield (f"Calibrating the LatentINN for this prior's VAE (first use, cached after): step {step} of "
                       f"{total}, {seconds}…")
            else:
                yield f"Loading the prior {spec} ({seconds})…"
        if failed:
            raise failed[0]

    def warm_up(self, jobs: Jobs | None = None) -> None:
        """Load the pixel models and the default prior in the background, so the first job starts at once;
        with `jobs`, time a short run of each mode so that the first estimate is this device's."""
        try:
            import torch

            from latentindigo.sampler import load_pixel_models

            if self.threads > 0:
                torch.set_num_threads(self.threads)
            pixel = load_pixel_models()
            if self.settings(None).uses_realistic:
                pixel.realistic_model()  # (loaded inside the first timed run, it made the fit's slope too low)
            if self.default:
                self.prior(self.default)
                if jobs is not None:
                    jobs.time_first_runs(self)
        except Exception:  # the first job will report it
            traceback.print_exc()


# ------------------------------------------------------------------------------------------- jobs

@dataclass
class Job:
    kind: str  # "restore", "compare" or "lab"
    stop: threading.Event = field(default_factory=threading.Event)
    step: int = 0
    total: int = 0
    started: float = field(default_factory=time.perf_counter)
    shown: tuple[float, float] | None = None  # (seconds left, when) last reported

    def stopped(self) -> str:
        return f"Stopped at step {self.step} of {self.total}" if self.total else "Stopped before the first step"

    def time_left(self) -> float | None:
        """Seconds until the last step, from the pace so far (None before the first step). It only counts down:
        steps differ in cost (a projection every few steps), and a count that jumps back up misleads."""
        if not self.step or not self.total:
            return None
        now = time.perf_counter()
        left = (now - self.started) / self.step * (self.total - self.step)
        if self.shown is not None:
            left = min(left, max(0.0, self.shown[0] - (now - self.shown[1])))
        self.shown = (left, now)
        return left


class Jobs:
    """The device, one job at a time, each registered under its browser session so that Stop reaches it; and
    what runs cost here (`RunCosts`)."""

    def __init__(self, wait: float = LOCK_WAIT):
        # held for a whole job; a Lock, not an RLock: gradio resumes a generator, or closes it when the run
        # is cancelled, on whichever thread it likes, and the release must work from there
        self.lock = threading.Lock()
        self.wait = wait
        self.running: dict[str, Job] = {}  # session -> its running job
        # (session, kind or None for every kind) -> the browser's clock (ms) at its last Stop
        self.stopped_at: dict[tuple[str, str | None], float] = {}
        self.costs = RunCosts()

    @contextmanager
    def run(self, kind: str, session: str | None, submitted: float | None = None) -> Iterator[Job]:
        """Hold the device for one job. The web queue already runs one job at a time; the lock also covers a
        cancelled run whose last step is still finishing. `submitted`: the browser's clock (ms) when the run was
        sent; a run sent before its session's Stop (it was waiting in the queue) is stopped at its first step."""
        if not self.lock.acquire(timeout=self.wait):
            raise UserError("the device is busy with another job, try again in a minute")
        job = Job(kind)
        if session and submitted is not None:
            stop = max(self.stopped_at.get((session, kind), -math.inf), self.stopped_at.get((session, None), -math.inf))
            if submitted < stop:
                job.stop.set()
        if session:
            self.running[session] = job
        try:
            yield job
        finally:
            if session and self.running.get(session) is job:
                del self.running[session]
            self.lock.release()

    def stop(self, session: str | None, kind: str | None = None, at: float | None = None) -> str | None:
        """Ask this session's running job (of this kind) to stop at its next step, and with `at` (the browser's
        clock, ms) its runs sent before `at` that still wait in the queue; a status line, or None."""
        if session and at is not None:
            self.stopped_at[session, kind] = max(at, self.stopped_at.get((session, kind), -math.inf))
        job = self.running.get(session) if session else None
        if job is None or (kind and job.kind != kind):
            return None
        job.stop.set()
        return f"{job.stopped()}."

    def time_first_runs(self, models: Models) -> None:
        """Time two short LatentINN runs (the default mode) on the default prior, a 64x64 photo to 256x256 in 3
        and 6 steps (3 apart: the fit sees a tuned regularisation every 3 steps; about 3 s on 2 CPU threads), so
        that its estimates are this device's from the first job on. Other modes and priors are estimated once
        the server has run them; every job refines the estimates."""
        photo = Image.new("RGB", (64, 64), (128, 128, 128))
        for method in ("latent",):
            for steps in (3, 6):
                settings = models.settings(None, method=method, steps=steps, size=(256, 256), seed=0)
                with self.run("calibrate", None) as job:
                    done = run_method(photo, settings, models, None, job)
                self.costs.record(models.default, done)


class RunCosts:
    """What a run costs on this server: seconds per megapixel of output, a fixed part plus a part per step taken,
    per prior and method, fitted to the runs done here (the most recent 20 of each). A run that stopped early
    (the output had stopped moving) tells how many steps the next one will likely take."""

    def __init__(self, keep: int = 20):
        self.keep = keep
        # (prior, method) -> (steps asked for, steps taken, seconds per megapixel)
        self.runs: dict[tuple[str, str], list[tuple[int, int, float]]] = {}

    def record(self, prior: str | None, done: Done) -> None:
        """Keep a run's cost; not one that reused its first stages: estimates are for a new photo."""
        if done.first_stages_reused:
            return
        megapixels = done.image.width * done.image.height / 1e6
        runs = self.runs.setdefault((prior or "", done.settings.method), [])
        runs.append((done.settings.steps, done.steps_taken or done.settings.steps, done.seconds / megapixels))
        del runs[: -self.keep]

    def estimate(self, prior: str | None, method: str, steps: int, pixels: int) -> float | None:
        """Seconds for a run of `steps` steps to an output of `pixels` pixels, or None before any run."""
        runs = self.runs.get((prior or "", method))
        if not runs:
            return None
        if method not in DIFFUSION_METHODS:
            return statistics.median(c for _, _, c in runs) * pixels / 1e6
        stopped = [taken for asked, taken, _ in runs if taken < asked]
        steps = min(steps, round(statistics.median(stopped))) if stopped else steps
        if len({taken for _, taken, _ in runs}) < 2:
            per_mp = statistics.median(c * steps / taken for _, taken, c in runs)
        else:  # least squares: seconds per megapixel = fixed + per_step * steps
            mean_s = statistics.fmean(taken for _, taken, _ in runs)
            mean_c = statistics.fmean(c for _, _, c in runs)
            slope = (sum((taken - mean_s) * (c - mean_c) for _, taken, c in runs)
                     / sum((taken - mean_s) ** 2 for _, taken, _ in runs))
            slope = max(slope, 0.0)
            per_mp = max(mean_c - slope * mean_s, 0.0) + slope * steps
        return per_mp * pixels / 1e6


def gpu_seconds(fn: Callable, costs: RunCosts, default_prior: Callable[[], str | None]) -> Callable[..., int]:
    """ZeroGPU duration of a job of `fn` (restore, compare or lab): what `costs` expects of its methods at its
    output size, doubled, plus 20 s to attach the GPU (a job that runs out of GPU time fails, one that asks for
    less waits less in the ZeroGPU queue); 120 s before the server has run those methods."""
    signature = inspect.signature(fn)
    lab = "blur" in signature.parameters  # the lab restores a degraded copy to the photo's own size

    def estimate(*args, **kwargs) -> int:
        a = signature.bind_partial(*args, **kwargs).arguments
        try:
            with Image.open(a["image"]) as photo:
                pixels = photo.width * photo.height * (1.0 if lab else float(a.get("scale") or 4.0) ** 2)
        except Exception:
            pixels = 512 * 512
        prior = a.get("prior") or default_prior()
        steps = int(a.get("steps") or Settings().steps)
        methods = a.get("methods") or [a.get("mode") or "latent"]
        if a.get("sweep"):  # (Compare's realism sweep: a run per realism of each method that has a start)
            methods = [m for m in methods for _ in (REALISM_SWEEP if m in REALISM_METHODS else [m])]
        seconds = [costs.estimate(prior, m, steps, int(pixels)) for m in methods]
        if any(s is None for s in seconds):
            return 120
        return int(min(300, 20 + 2 * sum(seconds)))

    return estimate


def duration(seconds: float) -> str:
    """'about 4 s', 'about 2 min'."""
    return f"about {max(1, round(seconds))} s" if seconds < 90 else f"about {math.ceil(seconds / 60)} min"


def busy_note(running: bool) -> str:
    """' (the machine is busy ...)' when other programs load the CPU beyond its cores, so that an estimate
    fitted on a quiet machine is read as a lower bound; '' otherwise, and where the load is not known. `running`:
    a job of this server is running (its own load is not someone else's)."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows
        return ""
    cores = os.cpu_count() or 1
    if load - (cores if running else 0) <= cores:
        return ""
    return f" (the machine is busy, load {load:.1f} on {cores} cores: it may take longer)"


@contextmanager
def scratch_folder() -> Iterator[Path]:
    """A folder for one job's PNGs, removed when the job's generator ends. Results are sent as files, not
    images: gradio copies a file into its cache once, but re-encodes an image on every update, rewriting a file
    the browser may be reading."""
    folder = Path(tempfile.mkdtemp(prefix="latentindigo-"))
    try:
        yield folder
    finally:  # the job's last update has been sent, and its files copied, before the generator resumes
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------------------- a run

def read_photo(path: str | None) -> Image.Image:
    from latentindigo.imageio import load_image

    if not path:
        raise UserError("upload a photo first")
    return load_image(path)


def pick_seed(seed: float | None) -> int:
    return random.randrange(2**31) if seed is None or seed < 0 else int(seed)


class PreviewPacer:
    """When to decode a preview (a VAE decode each): at most every `interval` seconds and at most about
    `share` of the run's time, but always at a few evenly spaced steps, so a fast run shows progress too."""

    def __init__(self, total: int, interval: float = 0.5, share: float = 0.2, milestones: int = 4):
        self.milestones = {math.ceil(total * k / milestones) for k in range(1, milestones)}
        self.interval, self.share = interval, share
        self.last_step, self.last_time, self.cost = 0, -math.inf, 0.0

    def due(self, step: int) -> bool:
        if step == self.last_step:  # one preview per step at most
            return False
        wait = max(self.interval, self.cost / self.share)
        return step in self.milestones or time.perf_counter() - self.last_time >= wait

    def decode(self, event) -> Image.Image:
        t0 = time.perf_counter()
        image = event.preview
        self.last_time = time.perf_counter()
        self.cost, self.last_step = self.last_time - t0, event.step
        return image


def method_runs(models: Models, methods: list[str] | None, prior: str | None, steps: int | None,
                **same) -> list[Settings]:
    """Settings for each chosen method of a Compare or Lab job: the prior's tuned settings, with `steps` when
    given and `same` (seed, output size) for all."""
    if not methods:
        raise UserError("choose at least one method")
    base = models.settings(prior, **same, **({} if steps is None else {"steps": int(steps)}))
    return [replace(base, method=m) for m in methods]


def run_events(photo: Image.Image, settings: Settings, models: Models, prior_spec: str | None,
               job: Job) -> Iterator[FirstStage | Step | Done]:
    """One run's events, for every tab: the sampler on the job's prior with the server's first-stage cache (a
    new realism or method on the same photo reuses its first stages), ending early when the job is stopped
    (then no `Done` comes); `job` follows the steps."""
    from latentindigo.sampler import Step, load_pixel_models
    from latentindigo.sampler import restore as sample

    prior = models.prior(prior_spec) if settings.method in DIFFUSION_METHODS else None
    events = sample(photo, settings, prior, load_pixel_models(), models.first_stages)
    try:
        for event in events:
            if job.stop.is_set():
                return
            if isinstance(event, Step):
                job.step, job.total = event.step, event.total
            yield event
    finally:
        events.close()  # a stopped or cancelled run must not go on sampling


def held_first_stages(photo: Image.Image, settings: Settings, models: Models,
                      prior_spec: str | None) -> dict[str, torch.Tensor] | None:
    """The first-stage estimates the server holds for a run of `settings` on `photo` ("faithful", and "realistic"
    when a run needed it), or None when it holds none for them: no run yet, another photo or output size, other
    weights or device since. Runs no network, and loads none."""
    held = _held(photo, settings, models, prior_spec)
    return None if held is None else held[1]


def _held(photo: Image.Image, settings: Settings, models: Models, prior_spec: str | None) -> tuple | None:
    """(the first-stage cache's key, its estimates) when they are this run's (`held_first_stages`), else None."""
    cache = models._first_stages
    if cache is None or cache.key is None:  # nothing ran yet: not even the pixel models are loaded
        return None
    from latentindigo.sampler import _input_key, load_pixel_models

    image = photo.convert("RGB")
    width, height = settings.output_size(image.width, image.height)
    diffusion = settings.method in DIFFUSION_METHODS
    prior = models.loaded(prior_spec) if diffusion else None
    device = prior.device if prior is not None else models.device if diffusion else "cpu"  # where `restore` runs
    key = _input_key(image, (height, width), load_pixel_models(), device)
    # (a running job may put another photo's in the cache meanwhile: they count only when its key is this photo's
    # both before and after they are read)
    before, estimates = cache.key, dict(cache.estimates)
    if before != key or cache.key != key or "faithful" not in estimates:
        return None
    return key, estimates


def cached_start(photo: Image.Image, settings: Settings, models: Models,
                 prior_spec: str | None) -> torch.Tensor | None:
    """The start a run of `settings` on `photo` begins from (`first_stages.combine`), made from the first stages the
    server holds: no network runs, and with the held photo's `realism_detail` kept (`Models.start_detail`) a
    multiply-add; None when it holds none for this photo at this output size, or not the realistic stage a realism
    above 0 needs."""
    held = _held(photo, settings, models, prior_spec)
    if held is None:
        return None
    key, estimates = held
    if not settings.uses_realistic:
        return estimates["faithful"]
    if "realistic" not in estimates:
        return None
    width, height = settings.output_size(photo.width, photo.height)
    scale = math.sqrt(height * width / (photo.height * photo.width))  # as `restore` has it
    return estimates["faithful"] + settings.realism * models.start_detail(key, estimates, scale)


def run_method(photo: Image.Image, settings: Settings, models: Models, prior_spec: str | None, job: Job,
               progress: Callable[[int, int, str], None] | None = None) -> Done | None:
    """Run one method to the end: its `Done`, or None when the job was stopped. `progress(step, total, phase)`
    is called at every step."""
    from latentindigo.sampler import Done, Step

    for event in run_events(photo, settings, models, prior_spec, job):
        if isinstance(event, Done):
            return event
        if isinstance(event, Step) and progress is not None:
            progress(event.step, event.total, event.phase)
    return None
