"""How long the refusals take that should come at once: images too large refused from their header, and the sd21
prior without its weights and without the hub.

    python benchmarks/bench_refusals.py              # in-process: image refusals, sd21 offline and unreachable
    python benchmarks/bench_refusals.py --app        # also through the demo: python app.py, a /restore with sd21

The tests check what makes these fast (tests/test_imageio.py: nothing is decoded; tests/test_priors.py and
tests/test_app.py: no download is tried, the hub is not contacted); this prints the seconds. Nothing leaves the
machine: the Hugging Face cache is a fresh, empty temporary folder, and "the hub unreachable" is a loopback port
nothing listens on. Prints the median, min and max (ms) of --repeats runs per case (the first run of each, which
imports what it needs, is left out), then the results as one JSON line.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
HF_HOME = tempfile.mkdtemp(prefix="latentindigo-bench-hf-")  # before huggingface_hub is imported: it reads it then
os.environ["HF_HOME"] = HF_HOME
os.environ["HF_HUB_CACHE"] = os.path.join(HF_HOME, "hub")
os.environ["HF_HUB_OFFLINE"] = "1"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def header_png(width: int, height: int) -> bytes:
    """A real 1x1 PNG whose header claims width x height (a decompression-bomb header)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def timed(fn, repeats: int) -> dict:
    """Seconds of `fn()` (which must raise the refusal), first run left out; and the refusal's message."""
    seconds, message = [], ""
    for i in range(repeats + 1):
        start = time.perf_counter()
        try:
            fn()
        except Exception as e:  # the refusal
            message = f"{type(e).__name__}: {e}"
        else:
            raise RuntimeError(f"{fn.__name__} was not refused")
        if i:
            seconds.append(time.perf_counter() - start)
    return {"median_s": statistics.median(seconds), "min_s": min(seconds), "max_s": max(seconds),
            "message": message}


def in_process(repeats: int, tmp: Path) -> dict[str, dict]:
    from huggingface_hub import constants

    from latentindigo.imageio import load_image
    from latentindigo.priors import load_prior

    big, bomb = tmp / "big.png", tmp / "bomb.png"
    big.write_bytes(header_png(9000, 9000))
    bomb.write_bytes(header_png(30000, 30000))

    def image_above_the_pixel_limit():
        load_image(big)

    def decompression_bomb():
        load_image(bomb, max_pixels=10**12)  # Pillow's own limit

    def sd21_offline():
        load_prior("sd21", device="cpu")

    def sd21_hub_unreachable():
        offline, endpoint = constants.HF_HUB_OFFLINE, constants.ENDPOINT
        constants.HF_HUB_OFFLINE, constants.ENDPOINT = False, f"http://127.0.0.1:{closed_port()}"
        try:
            load_prior("sd21", device="cpu")
        finally:
            constants.HF_HUB_OFFLINE, constants.ENDPOINT = offline, endpoint

    return {fn.__name__: timed(fn, repeats) for fn in (image_above_the_pixel_limit, decompression_bomb,
                                                        sd21_offline, sd21_hub_unreachable)}


def through_the_app(repeats: int, tmp: Path) -> dict:
    """python app.py with the tiny random prior (and sd21 offered, as always); a /restore with prior sd21."""
    from types import SimpleNamespace

    from gradio_client import Client, handle_file
    from PIL import Image

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_app_load import Server

    photo = tmp / "in.png"
    Image.new("RGB", (16, 16), (120, 140, 160)).save(photo)
    server = Server(SimpleNamespace(prior="tiny-random", threads=1, max_queue=8), tmp)
    try:
        print(f"app.py answered after {server.wait_ready(240):.1f} s")
        client = Client(server.url, verbose=False, analytics_enabled=False, download_files=str(tmp / "downloads"))

        def sd21_through_the_app():
            client.submit(handle_file(str(photo)), prior="sd21", steps=2, api_name="/restore").result(timeout=300)

        return timed(sd21_through_the_app, repeats)
    finally:
        server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--app", action="store_true", help="also time sd21's refusal through python app.py")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="latentindigo-bench-refusals-"))
    try:
        results = in_process(args.repeats, tmp)
        if args.app:
            results["sd21_through_the_app"] = through_the_app(args.repeats, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(HF_HOME, ignore_errors=True)
    print(f"{'refusal':<30} {'median ms':>10} {'min ms':>9} {'max ms':>9}  message")
    for name, r in results.items():
        print(f"{name:<30} {1e3 * r['median_s']:10.3f} {1e3 * r['min_s']:9.3f} {1e3 * r['max_s']:9.3f}  "
              f"{r['message'][:80]}")
    line = json.dumps({"repeats": args.repeats, "results": results})
    print(line)
    if args.json:
        args.json.write_text(line + "\n")


if __name__ == "__main__":
    main()
