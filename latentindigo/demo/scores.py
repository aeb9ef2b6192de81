"""The numbers of the Compare and Degradation lab tabs' results (`comparison.Scores`): their tables, with headers
that say which way is better, and their scatter of naturalness against faithfulness."""

from __future__ import annotations

import math

import pandas as pd

from latentindigo.comparison import NIQE_SIDE, Scores

COMPARE_COLUMNS = ["method", "seconds ↓", "consistency (dB) ↑", "NIQE ↓", "changed (/255 RMS)", "moved (%)"]
LAB_COLUMNS = ["method", "seconds ↓", "PSNR (dB) ↑", "SSIM ↑", "NIQE ↓"]
NIQE_NOTE = (f"NIQE: the project's naturalness score, lower is more natural (of the centre {NIQE_SIDE}x{NIQE_SIDE} "
             "of larger results; none below 192x96 pixels)")
COMPARE_CAPTION = (
    "↑ higher is better, ↓ lower is better. *Consistency*: the result passed through the INN's degradation model "
    f"against the photo, the consistency map's number (higher: closer to the photo's content). {NIQE_NOTE}. "
    "*Changed*, *moved* (diffusion methods): what the diffusion changed from its start, as RMS in 8-bit levels and "
    "the share of pixels moved by more than 2/255; more is more invented, neither better nor worse. A method that "
    "reuses the first stages another ran before it does not count their time.")
LAB_CAPTION = f"↑ higher is better, ↓ lower is better; PSNR and SSIM against the clean photo. {NIQE_NOTE}."


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def compare_row(name: str, s: Scores) -> dict:
    return dict(zip(COMPARE_COLUMNS, [
        name, round(s.seconds, 2), round(s.consistency, 2), _round(s.niqe, 2),
        None if s.change is None else round(s.change.rms * 255, 2),
        None if s.change is None else round(s.change.moved * 100, 1)]))


def lab_row(name: str, s: Scores) -> dict:
    return dict(zip(LAB_COLUMNS, [name, round(s.seconds, 2), round(s.psnr, 2), round(s.ssim, 4), _round(s.niqe, 2)]))


def table(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns)


def scatter(points: list[tuple[str, float, float | None]], names: list[str], x: str) -> pd.DataFrame | None:
    """The scatter's data: one point (method, x, NIQE) per result with a NIQE, or None while there is none.

    Gradio 6.31's plot colours only the methods in its first data and draws nothing after an empty frame: so
    every method of the run (`names`) starts with an empty (NaN) point, and there is no frame without a point."""
    shown = [(name, vx, vy) for name, vx, vy in points if vy is not None and math.isfinite(vy)]
    if not shown:
        return None
    seeds = [(name, math.nan, math.nan) for name in names]
    return pd.DataFrame(seeds + shown, columns=["method", x, "NIQE"]).astype(
        {"method": "str", x: "float64", "NIQE": "float64"})
