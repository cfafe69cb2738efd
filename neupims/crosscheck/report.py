"""What every cross-check writes: measured vs predicted per op, errors per class, parity plot.

``df`` has one row per timed op with at least ``class``, ``measured_s`` and ``predicted_s``;
``ape_pct`` (absolute percentage error of the prediction) is added here.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from neupims.atomic import atomic_open

#: marker shapes cycled over op classes, so the plot reads in grayscale
_MARKERS = "os^vD<>ph*"


def write_report(
    df: pd.DataFrame, outdir: Path, prefix: str, title: str, xlabel: str, band: float = 0.10
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write ``{prefix}_crosscheck.csv``, ``{prefix}_errors.csv`` and ``{prefix}_parity.png``.

    Returns the rows with ``ape_pct`` added and the per-class error table (columns class, n,
    mape_pct, max_ape_pct).
    """
    df = df.copy()
    df["ape_pct"] = 100 * (df["predicted_s"] - df["measured_s"]).abs() / df["measured_s"]
    outdir.mkdir(parents=True, exist_ok=True)
    with atomic_open(outdir / f"{prefix}_crosscheck.csv", "w", newline="") as fh:
        df.to_csv(fh, index=False)
    per = df.groupby("class")["ape_pct"].agg(["count", "mean", "max"]).reset_index()
    per.columns = ["class", "n", "mape_pct", "max_ape_pct"]
    with atomic_open(outdir / f"{prefix}_errors.csv", "w", newline="") as fh:
        per.to_csv(fh, index=False)
    parity_plot(df, outdir / f"{prefix}_parity.png", title, xlabel, band)
    return df, per


def parity_plot(df: pd.DataFrame, path: Path, title: str, xlabel: str, band: float) -> None:
    """Log-log predicted vs measured, one marker per class, y = x and a +-band region."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    shades = itertools.cycle(["0.0", "0.35", "0.6"])
    for (cls, g), marker in zip(df.groupby("class"), itertools.cycle(_MARKERS), strict=False):
        ax.scatter(g["measured_s"], g["predicted_s"], s=14, marker=marker,
                   facecolors="none", edgecolors=next(shades), label=str(cls))  # fmt: skip
    lo = float(min(df["measured_s"].min(), df["predicted_s"].min())) / 2
    hi = float(max(df["measured_s"].max(), df["predicted_s"].max())) * 2
    xs = np.array([lo, hi])
    ax.plot(xs, xs, "k-", lw=0.8)
    ax.fill_between(xs, xs * (1 - band), xs * (1 + band), color="0.88",
                    label=f"±{band:.0%}")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel=xlabel, ylabel="predicted (s)", title=title)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=150)
