"""Replay a trace on a hardware config: one cost row per op, same order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from neupims.config import HwConfig, load_hw
from neupims.devices import Cost, get_model
from neupims.workloads.trace_io import TracedOp


@dataclass(frozen=True)
class ReplaySummary:
    ops: int
    latency_s: float
    flops: float
    bytes: float
    peak_footprint_bytes: float
    model: str

    @property
    def tflops_per_s(self) -> float:
        return self.flops / self.latency_s / 1e12 if self.latency_s > 0 else 0.0

    def text(self) -> str:
        return (
            f"{self.ops} ops on {self.model}: total {self.latency_s * 1e3:.3f} ms, "
            f"{self.flops / 1e9:.2f} GFLOP, achieved {self.tflops_per_s:.2f} TFLOP/s, "
            f"{self.bytes / 1e9:.3f} GB moved, peak op footprint {self.peak_footprint_bytes / 2**20:.1f} MiB"
        )


def replay_costs(
    trace: Sequence[TracedOp], hw: HwConfig | str | Path, model: str | None = None
) -> list[Cost]:
    """Estimate every op of ``trace`` on ``hw``; ops run one after another."""
    if not hasattr(hw, "kind"):
        hw = load_hw(hw)
    dev = get_model(hw, model)
    return [dev.estimate(t.op) for t in trace]


def replay(
    trace: Sequence[TracedOp], hw: HwConfig | str | Path, model: str | None = None
) -> pd.DataFrame:
    """Replay ``trace`` on ``hw``: a DataFrame with the trace columns plus the cost columns
    and ``fits`` (:func:`add_fits`)."""
    if not hasattr(hw, "kind"):
        hw = load_hw(hw)
    costs = replay_costs(trace, hw, model)
    rows = []
    for t, c in zip(trace, costs, strict=True):
        row = {"op": t.op.name, "layer": t.layer, **t.op.fields()}
        row.update(c.as_row())
        rows.append(row)
    return add_fits(pd.DataFrame(rows), hw)


def add_fits(df: pd.DataFrame, hw: HwConfig) -> pd.DataFrame:
    """Add the column ``fits``: whether each op's ``footprint_bytes`` is at most the
    device's memory (``hw.memory_capacity_bytes``: a GPU's HBM, an NPU's attached memory,
    a memory config's channels, a CPU's RAM when its config gives it, else empty)."""
    cap = getattr(hw, "memory_capacity_bytes", None)
    if cap is None or "footprint_bytes" not in df:
        df["fits"] = pd.array([pd.NA] * len(df), dtype="boolean")
    else:
        df["fits"] = pd.array(df["footprint_bytes"] <= cap, dtype="boolean")
    return df


def fits_warning(df: pd.DataFrame, hw: HwConfig) -> str | None:
    """One line naming how many ops do not fit the device's memory and the largest; None
    when all fit or the capacity is unknown."""
    if "fits" not in df or not (df["fits"] == False).any():  # noqa: E712 - nullable booleans
        return None
    over = df[df["fits"] == False]  # noqa: E712
    big = over.loc[over["footprint_bytes"].idxmax()]
    cap = hw.memory_capacity_bytes
    return (
        f"warning: {len(over)} of {len(df)} ops do not fit in the {cap / 2**30:,.1f} GiB "
        f"memory of {getattr(hw, 'name', 'the device')}; the largest, op {int(big.name) + 1} "
        f"({big['op']}{', layer ' + str(big['layer']) if big['layer'] else ''}), needs "
        f"{big['footprint_bytes'] / 2**30:,.1f} GiB"
    )


def summarise(df: pd.DataFrame) -> ReplaySummary:
    return ReplaySummary(
        ops=len(df),
        latency_s=float(df["latency_s"].sum()),
        flops=float(df["flops"].sum()),
        bytes=float(df["bytes"].sum()),
        peak_footprint_bytes=float(df["footprint_bytes"].max()) if len(df) else 0.0,
        model=",".join(sorted(set(df["model"]))) if len(df) else "",
    )
