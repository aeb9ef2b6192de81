"""The demo under load: concurrent /restore requests, a bounded queue, cancellation, and the server's memory.

    python benchmarks/bench_app_load.py                         # tiny-random prior, 8 requests, queue of 16
    python benchmarks/bench_app_load.py --max-queue 2           # a small queue: some requests are turned away
    python benchmarks/bench_app_load.py --prior mini --steps 10 --json load.json

Launches `python app.py` in a subprocess on a free loopback port (nothing else is contacted), warms it up with
one request, then sends N requests at once from N threads, one gradio_client `Client` (one session) each, every
one with its own input photo (sizes differ, so a mixed-up result would have the wrong size too) and its own
seed. Every request must either complete, with the size it asked for, its own seed echoed and a PNG no other
request got, or be turned away with gradio's clear "queue is full" answer (QueueError): none lost, none hanging
(each is bounded by --timeout). Then a long job is ended twice, once through /stop and once with
`job.cancel()`, and a normal request must still be served right after.

Memory: the server's resident set (VmRSS of app.py and any children, from /proc) is sampled every 0.1 s; the
report gives it after the warm-up (baseline), its peak under load (and the kernel's VmHWM, reset before the
load where /proc/PID/clear_refs allows), after the load, and around the cancelled jobs. RSS with glibc need not
shrink back when memory is freed: the numbers are what they are.

Prints a table per request and a summary, then the summary as one JSON line (also written to --json PATH).
Run it with `nice` on a busy machine; the server gets OMP_NUM_THREADS/--threads 1 by default.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024


# ------------------------------------------------------------------------------------------- the server

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if this script dies, even by SIGKILL (Linux)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Server:
    """`python app.py ...` in a subprocess; always terminated by `close` (use it in try/finally)."""

    def __init__(self, args: argparse.Namespace, tmp: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = tmp / "app.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GRADIO_", "LATENTINDIGO_"))}
        env.update(HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False", TOKENIZERS_PARALLELISM="false",
                   GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONUNBUFFERED="1",
                   OMP_NUM_THREADS=str(max(args.threads, 1)), MKL_NUM_THREADS=str(max(args.threads, 1)))
        command = [sys.executable, str(ROOT / "app.py"), "--prior", args.prior, "--port", str(self.port),
                   "--threads", str(args.threads), "--max-queue", str(args.max_queue)]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float) -> float:
        start = time.perf_counter()
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.perf_counter() - start > timeout:
                raise RuntimeError(f"app.py did not answer on {self.url} within {timeout} s:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                time.sleep(0.2)

    def queue_size(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url + "gradio_api/queue/status", timeout=5) as response:
                return json.load(response).get("queue_size")
        except (OSError, ValueError):
            return None

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def close(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


# ------------------------------------------------------------------------------------------- memory

def process_tree(pid: int) -> list[int]:
    """pid and its descendants, from /proc/PID/task/*/children."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return pids


def status_kib(pid: int, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_kib(pid: int, field: str) -> int:
    return sum(status_kib(p, field) for p in process_tree(pid))


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM to the current RSS (writing 5 to clear_refs); False where that is not allowed."""
    ok = True
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            ok = False
    return ok


class MemorySampler:
    """VmRSS of the server's process tree every `interval` seconds, in a thread."""

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []  # (perf_counter, bytes)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss-sampler")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), tree_kib(self.pid, "VmRSS") * 1024))
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)

    def now(self) -> int:
        return tree_kib(self.pid, "VmRSS") * 1024

    def peak(self, start: float, end: float | None = None) -> int:
        end = end if end is not None else time.perf_counter()
        values = [rss for t, rss in self.samples if start <= t <= end]
        return max(values + [self.now()])

    def settled(self, seconds: float = 1.0) -> int:
        """Median RSS over the next `seconds` (the server idle)."""
        values = []
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            values.append(self.now())
            time.sleep(0.1)
        return int(statistics.median(values))


# ------------------------------------------------------------------------------------------- requests

def make_photo(path: Path, width: int, height: int, variant: int) -> Path:
    """A smooth photo, different for each variant."""
    y, x = np.mgrid[0:height, 0:width] / max(width, height)
    k = 1 + variant
    rgb = np.stack([0.5 + 0.4 * np.sin(3 * k * x + y + variant), 0.5 + 0.3 * np.cos((2 + k) * y - variant),
                    0.3 + 0.5 * ((x * k + y) % 1.0)], axis=-1)
    Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(path)
    return path


def new_client(url: str, downloads: Path):
    from gradio_client import Client

    downloads.mkdir(parents=True, exist_ok=True)
    return Client(url, verbose=False, analytics_enabled=False, download_files=str(downloads))


def wait_job(job, deadline: float, poll: float = 0.05) -> float | None:
    """Poll until the job is done or the deadline passes; when its first streamed update arrived (or None)."""
    first = None
    while not job.done():
        if first is None and job.outputs():
            first = time.perf_counter()
        if time.perf_counter() > deadline:
            break
        time.sleep(poll)
    if first is None and job.outputs():
        first = time.perf_counter()
    return first


def classify(job, done: bool) -> tuple[str, object, str]:
    """(outcome, final outputs or None, message): completed, busy (queue full), error, cancelled, timeout."""
    from gradio_client.exceptions import AppError
    from gradio_client.utils import QueueError

    if not done:
        return "timeout", None, "no answer within the timeout"
    try:
        return "completed", job.result(timeout=5), ""
    except QueueError as e:
        return "busy", None, str(e)
    except AppError as e:
        return "error", None, " ".join(str(e).split())[:200]
    except concurrent.futures.CancelledError:
        return "cancelled", None, "cancelled"
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        return "error", None, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def one_request(i: int, url: str, tmp: Path, args: argparse.Namespace, barrier: threading.Barrier,
                t0: float) -> dict:
    from gradio_client import handle_file

    width, height = args.size + 2 * i, args.size  # a different size each: a mixed-up result shows
    seed = 1000 + 7919 * i
    source = make_photo(tmp / f"req{i:02d}.png", width, height, i)
    expected = (max(1, round(width * args.scale)), max(1, round(height * args.scale)))
    row = {"id": i, "input": f"{width}x{height}", "seed": seed, "expected": f"{expected[0]}x{expected[1]}"}
    client = None
    try:
        client = new_client(url, tmp / f"downloads{i:02d}")
        barrier.wait(timeout=args.timeout)
        submitted = time.perf_counter()
        job = client.submit(handle_file(str(source)), steps=args.steps, scale=args.scale, seed=seed,
                            api_name="/restore")
        first = wait_job(job, submitted + args.timeout)
        finished = time.perf_counter()
        outcome, final, message = classify(job, job.done())
        if outcome == "timeout":
            job.cancel()
        row.update(submitted=submitted - t0, first_update=None if first is None else first - t0,
                   finished=finished - t0, latency=finished - submitted,
                   wait=None if first is None else first - submitted,
                   run=None if first is None else finished - first, updates=len(job.outputs()),
                   outcome=outcome, message=message)
        if final is not None:
            _preview, _plot, status, _slider, png, seed_used, _estimate, seconds, _maps, _show = final
            with Image.open(png) as im:
                size = im.size
            data = Path(png).read_bytes()
            name = Path(png).name
            row.update(output=f"{size[0]}x{size[1]}", size_ok=size == expected, seed_echo=seed_used,
                       seed_ok=seed_used == seed and f"seed {seed}" in status and f"seed{seed}" in name,
                       name_ok=name.startswith(f"req{i:02d}-"), png=png, sha256=hashlib.sha256(data).hexdigest(),
                       server_seconds=seconds)
    except Exception as e:  # noqa: BLE001 - a failure of the benchmark itself is reported per request
        row.update(outcome="error", message=f"client: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
    finally:
        if client is not None:
            client.close()
    return row


def load_round(url: str, tmp: Path, args: argparse.Namespace) -> tuple[list[dict], float, float]:
    barrier = threading.Barrier(args.requests)
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(args.requests, thread_name_prefix="req") as pool:
        futures = [pool.submit(one_request, i, url, tmp, args, barrier, t0) for i in range(args.requests)]
        rows = [f.result() for f in futures]
    starts = [r["submitted"] for r in rows if "submitted" in r]
    return rows, t0 + (min(starts) if starts else 0.0), time.perf_counter()


def wait_for_updates(job, count: int, timeout: float) -> bool:
    end = time.perf_counter() + timeout
    while len(job.outputs()) < count:
        if job.done() or time.perf_counter() > end:
            return False
        time.sleep(0.05)
    return True


def cancellation(url: str, tmp: Path, args: argparse.Namespace, memory: MemorySampler) -> dict:
    """A long job ended by /stop, another by job.cancel(); a normal request right after each must be served."""
    from gradio_client import handle_file

    source = make_photo(tmp / "long.png", args.size, args.size, 99)
    expected = (round(args.size * args.scale), round(args.size * args.scale))
    report: dict = {"steps": args.cancel_steps}
    client = new_client(url, tmp / "downloads-cancel")
    try:
        report["rss_before"] = memory.settled()
        start = time.perf_counter()
        for how in ("stop", "cancel"):
            r: dict = {}
            job = client.submit(handle_file(str(source)), steps=args.cancel_steps, scale=args.scale, seed=4242,
                                api_name="/restore")
            if not wait_for_updates(job, args.cancel_after, args.timeout):
                r["problem"] = "the long job ended or stalled before it streamed enough updates"
            t_end = time.perf_counter()
            r["updates_before"] = len(job.outputs())
            if how == "stop":
                r["reply"] = client.predict(api_name="/stop")
                wait_job(job, t_end + args.timeout)
                outcome, final, message = classify(job, job.done())
                r["outcome"] = outcome if final is None else final[2].split(";")[0]
                if final is not None and not final[2].startswith("Stopped at step"):
                    r["problem"] = f"not stopped: {final[2][:120]}"
                r["ended_after"] = time.perf_counter() - t_end
            else:
                job.cancel()
                wait_job(job, t_end + 30)
                r["outcome"], _, r["message"] = classify(job, job.done())
                if r["message"].startswith("KeyError") and "'data'" in r["message"]:
                    # gradio_client 2.7: result() of a cancelled streaming job raises this KeyError, not
                    # CancelledError
                    r["outcome"] = "cancelled"
                r["ended_after"] = time.perf_counter() - t_end
            # the device must be free again: a normal request, timed from the stop / cancel
            t_next = time.perf_counter()
            follow = client.submit(handle_file(str(source)), steps=args.steps, scale=args.scale, seed=7,
                                   api_name="/restore")
            wait_job(follow, t_next + args.timeout)
            outcome, final, message = classify(follow, follow.done())
            r["next_request"] = outcome if final is None else ("completed" if final[2].startswith("**Done**")
                                                                else final[2][:80])
            if final is not None:
                with Image.open(final[4]) as im:
                    r["next_size_ok"] = im.size == expected
            else:
                r["next_message"] = message
            r["next_latency"] = time.perf_counter() - t_next
            r["served_after"] = time.perf_counter() - t_end
            report[how] = r
        report["nothing_running"] = client.predict(api_name="/stop")
        report["rss_peak"] = memory.peak(start)
        time.sleep(1.0)
        report["rss_after"] = memory.settled()
    finally:
        client.close()
    return report


# ------------------------------------------------------------------------------------------- report

def fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / MiB:.0f} MiB"


def print_table(rows: list[dict]) -> None:
    header = ["req", "input", "seed", "submit s", "start s", "end s", "wait s", "run s", "latency s", "sampler s",
              "outcome", "output", "size", "seed echo", "png sha256"]
    lines = [header]
    for r in rows:
        lines.append([str(r["id"]), r["input"], str(r["seed"]), fmt(r.get("submitted")), fmt(r.get("first_update")),
                      fmt(r.get("finished")), fmt(r.get("wait")), fmt(r.get("run")), fmt(r.get("latency")),
                      fmt(r.get("server_seconds")),
                      r.get("outcome", "?"), r.get("output", "-"),
                      {True: "ok", False: "WRONG"}.get(r.get("size_ok"), "-"),
                      {True: "ok", False: f"WRONG {r.get('seed_echo')}"}.get(r.get("seed_ok"), "-"),
                      r["sha256"][:10] if r.get("sha256") else (r.get("message") or "")[:40]])
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prior", default="tiny-random", help="the app's --prior SPEC (tiny-random; mini, a folder...)")
    p.add_argument("--requests", type=int, default=8, help="concurrent /restore requests (8)")
    p.add_argument("--steps", type=int, default=4, help="sampler steps of each request (4)")
    p.add_argument("--size", type=int, default=32, help="input height; request i is (size + 2i) wide (32)")
    p.add_argument("--scale", type=float, default=2.0, help="scale factor of each request (2)")
    p.add_argument("--max-queue", type=int, default=16, help="the app's --max-queue: jobs that may wait (16)")
    p.add_argument("--threads", type=int, default=1, help="the app's torch threads (1)")
    p.add_argument("--timeout", type=float, default=180, help="seconds any one request may take (180)")
    p.add_argument("--cancel-steps", type=int, default=200, help="steps of the long job that is ended (200)")
    p.add_argument("--cancel-after", type=int, default=4, help="streamed updates before it is ended (4)")
    p.add_argument("--no-cancel", action="store_true", help="skip the cancellation check")
    p.add_argument("--json", type=Path, help="also write the summary here")
    args = p.parse_args(argv)
    if args.requests < 1 or args.steps < 1 or args.size < 1 or args.max_queue < 1:
        p.error("--requests, --steps, --size and --max-queue must be positive")

    # SIGTERM (e.g. from a CI timeout) ends the run through the finally blocks, so the server is terminated
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    summary: dict = {"prior": args.prior, "requests": args.requests, "steps": args.steps, "size": args.size,
                     "scale": args.scale, "max_queue": args.max_queue, "threads": args.threads}
    problems: list[str] = []
    from gradio_client import handle_file

    with tempfile.TemporaryDirectory(prefix="bench-app-load-") as tmp_name:
        tmp = Path(tmp_name)
        server = Server(args, tmp)
        try:
            summary["ready_s"] = round(server.wait_ready(timeout=240), 2)
            with MemorySampler(server.pid) as memory:
                summary["rss_ready"] = memory.now()
                # warm-up: loads the prior and the pixel models, and runs the sampler once
                t = time.perf_counter()
                client = new_client(server.url, tmp / "downloads-warm")
                try:
                    warm = client.submit(handle_file(str(make_photo(tmp / "warm.png", args.size, args.size, 50))),
                                         steps=1, scale=args.scale, seed=1, api_name="/restore")
                    wait_job(warm, t + max(args.timeout, 300))
                    outcome, _, message = classify(warm, warm.done())
                finally:
                    client.close()
                if outcome != "completed":
                    raise RuntimeError(f"the warm-up request failed: {outcome} {message}\n{server.log_tail()}")
                summary["warm_up_s"] = round(time.perf_counter() - t, 2)
                summary["rss_baseline"] = memory.settled()
                summary["hwm_reset"] = reset_hwm(server.pid)

                rows, t_start, t_end = load_round(server.url, tmp, args)
                summary["rss_peak_load"] = memory.peak(t_start, t_end)
                summary["hwm_load" if summary["hwm_reset"] else "hwm_lifetime"] = tree_kib(server.pid, "VmHWM") * 1024
                time.sleep(1.0)
                summary["queue_after"] = server.queue_size()
                summary["rss_after_load"] = memory.settled()
                if not args.no_cancel:
                    summary["cancel"] = cancellation(server.url, tmp, args, memory)
                summary["hwm_lifetime_end"] = tree_kib(server.pid, "VmHWM") * 1024
                summary["server_pids"] = process_tree(server.pid)
            log = server.log_tail(10**7)
        finally:
            summary["server_exit"] = server.close()

    # ------------------------------------------------------------------ checks
    outcomes = {k: sum(r.get("outcome") == k for r in rows) for k in ("completed", "busy", "error", "cancelled",
                                                                          "timeout")}
    completed = [r for r in rows if r.get("outcome") == "completed"]
    digests = [r["sha256"] for r in completed]
    summary.update(outcomes=outcomes, lost=args.requests - sum(outcomes.values()),
                   wrong_size=[r["id"] for r in completed if not r.get("size_ok")],
                   wrong_seed=[r["id"] for r in completed if not r.get("seed_ok") or not r.get("name_ok")],
                   duplicate_outputs=len(digests) - len(set(digests)),
                   latency_completed=[round(r["latency"], 2) for r in completed],
                   wall_s=round(t_end - t_start, 2), tracebacks=log.count("Traceback"))
    for name in ("error", "cancelled", "timeout"):
        if outcomes[name]:
            problems.append(f"{outcomes[name]} request(s) ended as {name}: "
                            + "; ".join(f"#{r['id']} {r.get('message', '')}" for r in rows if r.get("outcome") == name))
    if summary["lost"]:
        problems.append(f"{summary['lost']} request(s) lost")
    if summary["wrong_size"] or summary["wrong_seed"] or summary["duplicate_outputs"]:
        problems.append("mixed results: wrong size %s, wrong seed/name %s, %d duplicate outputs"
                        % (summary["wrong_size"], summary["wrong_seed"], summary["duplicate_outputs"]))
    if summary.get("queue_after"):
        problems.append(f"{summary['queue_after']} event(s) still queued after the round")
    cancel = summary.get("cancel", {})
    for how in ("stop", "cancel"):
        r = cancel.get(how, {})
        if r.get("problem"):
            problems.append(f"{how}: {r['problem']}")
        if r and r.get("next_request") != "completed" or r.get("next_size_ok") is False:
            problems.append(f"after {how}: the next request {r.get('next_request')} {r.get('next_message', '')}")
    if cancel and cancel.get("nothing_running") != "Nothing is running.":
        problems.append(f"/stop after the cancellation check: {cancel.get('nothing_running')!r}")
    if summary["tracebacks"]:
        problems.append(f"{summary['tracebacks']} traceback(s) in the server log")
    summary["problems"] = problems
    for r in rows:
        r.pop("png", None)
    summary["rows"] = rows

    # ------------------------------------------------------------------ report
    print(f"\nLatentINDIGO app under load: prior {args.prior}, {args.requests} concurrent /restore requests "
          f"({args.steps} steps, x{args.scale:g}), --max-queue {args.max_queue}, --threads {args.threads}")
    print(f"server ready in {summary['ready_s']:.1f} s, warm-up request {summary['warm_up_s']:.1f} s; "
          "submit/start/end: seconds from the round's start (start: the job's first streamed update); wait: "
          "upload + queue, run: first update to result, sampler: the server's own time (seconds output)\n")
    print_table(rows)
    lat = summary["latency_completed"]
    print(f"\noutcomes: {outcomes['completed']} completed, {outcomes['busy']} busy (queue full), "
          f"{outcomes['error']} error, {outcomes['cancelled']} cancelled, {outcomes['timeout']} timeout; "
          f"lost {summary['lost']}; round {summary['wall_s']:.1f} s; queue after: {summary['queue_after']}")
    if lat:
        print(f"latency of completed: min {min(lat):.2f} s, median {statistics.median(lat):.2f} s, "
              f"max {max(lat):.2f} s")
    print(f"results: sizes {'all ok' if not summary['wrong_size'] else summary['wrong_size']}, seed echoes "
          f"{'all ok' if not summary['wrong_seed'] else summary['wrong_seed']}, "
          f"{len(set(digests))} distinct PNGs of {len(digests)}")
    hwm = summary.get("hwm_load")
    print(f"server RSS: ready {mib(summary['rss_ready'])}, baseline (after warm-up) {mib(summary['rss_baseline'])}, "
          f"peak under load {mib(summary['rss_peak_load'])}"
          + (f" (VmHWM since the load began {mib(hwm)})" if hwm else "")
          + f", after {mib(summary['rss_after_load'])}; lifetime VmHWM {mib(summary['hwm_lifetime_end'])}; "
          f"processes {len(summary['server_pids'])}")
    if cancel:
        for how, label in (("stop", "/stop"), ("cancel", "job.cancel()")):
            r = cancel[how]
            extra = (f", reply {r['reply']!r}, job ended {r['ended_after']:.2f} s later as {r['outcome']!r}"
                     if how == "stop" else f", job {r['outcome']} after {r['ended_after']:.2f} s")
            print(f"{label} after {r['updates_before']} updates of a {cancel['steps']}-step job{extra}; next request "
                  f"{r['next_request']} in {r['next_latency']:.2f} s")
        print(f"cancellation RSS: before {mib(cancel['rss_before'])}, peak {mib(cancel['rss_peak'])}, after "
              f"{mib(cancel['rss_after'])} ({(cancel['rss_after'] - cancel['rss_before']) / MiB:+.0f} MiB)")
    print(f"server exit code {summary['server_exit']} (terminated), tracebacks in its log: {summary['tracebacks']}")
    print("problems: " + ("; ".join(problems) if problems else "none"))
    line = json.dumps(summary, default=str)
    if args.json:
        args.json.write_text(line + "\n")
    print(line)
    return 1 if problems else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except RuntimeError as e:  # the server did not start, or could not restore at all (its log follows)
        print(f"bench_app_load: {e}", file=sys.stderr)
        sys.exit(2)
