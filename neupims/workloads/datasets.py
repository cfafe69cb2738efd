"""Request-length distributions of serving datasets (``workloads/datasets/*.yaml``).

A dataset file gives the input and output token-length statistics NeuPIMs reports
(mean, median, p90, p99, max over ``pairs`` kept pairs; docs/sources/neupims.md §12). From them
:class:`LengthDistribution` builds an inverse CDF that is piecewise power-law
("piecewise Pareto"): log(length) is linear in -log(1 - q) between the knots

    (0, floor), (0.5, median), (0.9, p90), (0.99, p99), (1 - 1/pairs, max)

and equals ``max`` above the last knot (the largest of ``pairs`` draws sits near
quantile 1 - 1/pairs). Interpolating log(length) against log(1 - q) rather than against q
keeps the heavy tails from inflating the mean: linear-in-q interpolation gives ShareGPT
input a mean of 456 tokens instead of 80.

The statistics do not constrain the lower half, so the value at q = 0 (the ``floor``) is
fitted by code: bisection on [1, median] until the mean of the rounded lengths equals the
reported mean (:func:`fit_length_distribution`). Samples are rounded to integers and at
least 1. Inputs and outputs are drawn independently (their joint law is not published).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import model_validator

from neupims.config.base import NonNegInt, PosFloat, PosInt, Spec
from neupims.config.loader import ROOT, load_yaml, resolve, validate
from neupims.errors import NeupimsError

DATASETS_DIR = ROOT / "workloads" / "datasets"

#: Quantile levels of the knots between the floor and the maximum.
KNOT_QUANTILES = (0.5, 0.9, 0.99)

#: Midpoint-rule grid on q used to compute the mean of a distribution while fitting.
_MEAN_GRID_POINTS = 200_000


class LengthStats(Spec):
    """Token-length statistics of one side (input or output) of a dataset."""

    mean: PosFloat
    median: PosInt
    p90: PosInt
    p99: PosInt
    max: PosInt

    @model_validator(mode="after")
    def _ordered(self) -> LengthStats:
        if not self.median <= self.p90 <= self.p99 <= self.max:
            raise ValueError(
                "expected median <= p90 <= p99 <= max, got "
                f"{self.median}, {self.p90}, {self.p99}, {self.max}"
            )
        if not 1 <= self.mean <= self.max:
            raise ValueError(f"mean must lie in [1, max], got {self.mean}")
        return self


class PaperMean(Spec):
    input: PosFloat
    output: PosFloat


class DatasetSpec(Spec):
    name: str
    source: str
    tokenizer: str
    pairs: PosInt
    dropped: NonNegInt = 0
    input: LengthStats
    output: LengthStats
    paper_mean: PaperMean | None = None


@dataclass(frozen=True)
class LengthDistribution:
    """Piecewise-Pareto inverse CDF through ``(quantiles[i], values[i])`` knots (tokens)."""

    quantiles: tuple[float, ...]
    values: tuple[float, ...]

    def ppf(self, q: np.ndarray | float) -> np.ndarray:
        """Length (tokens, real-valued) at quantile ``q`` in [0, 1)."""
        q = np.asarray(q, dtype=float)
        t_knots = -np.log1p(-np.asarray(self.quantiles))
        t = -np.log1p(-np.minimum(q, self.quantiles[-1]))
        return np.exp(np.interp(t, t_knots, np.log(self.values)))

    def lengths(self, q: np.ndarray) -> np.ndarray:
        """Integer lengths (>= 1) at quantiles ``q``."""
        return np.maximum(1, np.rint(self.ppf(q))).astype(np.int64)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return self.lengths(rng.random(n))

    def mean(self) -> float:
        """Mean of the integer lengths, by the midpoint rule on q (deterministic)."""
        q = (np.arange(_MEAN_GRID_POINTS) + 0.5) / _MEAN_GRID_POINTS
        return float(self.lengths(q).mean())


def _knots(stats: LengthStats, pairs: int, floor: float) -> LengthDistribution:
    top = 1.0 - 1.0 / pairs
    qs = (0.0, *KNOT_QUANTILES, top)
    vs = (floor, float(stats.median), float(stats.p90), float(stats.p99), float(stats.max))
    # Drop knots that the tail knot would overtake for tiny `pairs` (keeps q increasing).
    keep = [i for i, q in enumerate(qs) if i == 0 or q > qs[i - 1]]
    return LengthDistribution(tuple(qs[i] for i in keep), tuple(vs[i] for i in keep))


def fit_length_distribution(stats: LengthStats, pairs: int) -> LengthDistribution:
    """Fit the floor (length at q = 0) so the mean matches ``stats.mean``.

    The mean rises with the floor; bisection on [1, median] to 1e-3 tokens. When the
    reported mean lies outside what the fixed knots allow, the nearest end is kept.
    """
    lo, hi = 1.0, float(stats.median)
    if _knots(stats, pairs, lo).mean() >= stats.mean:
        return _knots(stats, pairs, lo)
    if _knots(stats, pairs, hi).mean() <= stats.mean:
        return _knots(stats, pairs, hi)
    while hi - lo > 1e-3:
        mid = 0.5 * (lo + hi)
        if _knots(stats, pairs, mid).mean() < stats.mean:
            lo = mid
        else:
            hi = mid
    return _knots(stats, pairs, 0.5 * (lo + hi))


def load_dataset_file(path: str | Path) -> DatasetSpec:
    return validate(DatasetSpec, load_yaml(path), str(path))


def list_datasets() -> list[str]:
    return sorted(p.stem for p in DATASETS_DIR.glob("*.yaml"))


@lru_cache(maxsize=16)
def get_dataset(name: str) -> DatasetSpec:
    """Dataset statistics by name (``sharegpt``, ``alpaca``) or YAML path."""
    try:
        path = resolve(name, "workloads/datasets")
    except NeupimsError:
        raise NeupimsError(
            f"unknown dataset {name!r}; expected one of {list_datasets()} or a YAML path"
        ) from None
    return load_dataset_file(path)


@lru_cache(maxsize=16)
def length_distributions(name: str) -> tuple[LengthDistribution, LengthDistribution]:
    """Fitted (input, output) length distributions of a dataset."""
    ds = get_dataset(name)
    return (
        fit_length_distribution(ds.input, ds.pairs),
        fit_length_distribution(ds.output, ds.pairs),
    )


def sample_requests(name: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` (input_len, output_len) pairs as two int64 arrays, each length >= 1.

    Deterministic for a given ``seed`` (NumPy PCG64); inputs and outputs are independent.
    """
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise NeupimsError(f"n must be a non-negative integer, got {n!r}")
    d_in, d_out = length_distributions(name)
    rng = np.random.default_rng(seed)
    u = rng.random((2, int(n)))
    return d_in.lengths(u[0]), d_out.lengths(u[1])


def summary(name: str, n: int = 200_000, seed: int = 0) -> list[dict[str, float | str]]:
    """Sampled vs reported mean / median / p90 / p99 of both sides (for docs and checks)."""
    ds = get_dataset(name)
    rows = []
    for side, stats, arr in zip(
        ("input", "output"), (ds.input, ds.output), sample_requests(name, n, seed), strict=True
    ):
        p50, p90, p99 = np.percentile(arr, [50, 90, 99])
        rows.append(
            {
                "dataset": name,
                "side": side,
                "mean": float(arr.mean()),
                "mean_ref": stats.mean,
                "median": float(p50),
                "median_ref": stats.median,
                "p90": float(p90),
                "p90_ref": stats.p90,
                "p99": float(p99),
                "p99_ref": stats.p99,
                "max": float(arr.max()),
                "max_ref": stats.max,
            }
        )
    return rows


__all__ = [
    "DatasetSpec",
    "LengthDistribution",
    "LengthStats",
    "fit_length_distribution",
    "get_dataset",
    "length_distributions",
    "list_datasets",
    "sample_requests",
    "summary",
]
