"""Replay a trace on a hardware config: one cost row per op (same order) and the step.

``replay`` gives each op's isolated cost (what a micro-benchmark of that op measures);
``replay_step`` adds the whole step as the device runs it (``DeviceModel.step``: for a GPU,
kernels back to back on a stream and the host's dispatch, eager or from a CUDA graph).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from neupims.config import HwConfig, load_hw
from neupims.devices import Cost, get_model
from neupims.devices.base import StepCost
from neupims.workloads.trace_io import TracedOp


def _hw(hw: HwConfig | str | Path) -> HwConfig:
    return hw if hasattr(hw, "kind") else load_hw(hw)


def replay_costs(
    trace: Sequence[TracedOp], hw: HwConfig | str | Path, model: str | None = None
) -> list[Cost]:
    """Estimate every op of ``trace`` on ``hw`` in isolation."""
    dev = get_model(_hw(hw), model)
    return [dev.estimate(t.op) for t in trace]


def replay(
    trace: Sequence[TracedOp], hw: HwConfig | str | Path, model: str | None = None
) -> pd.DataFrame:
    """Replay ``trace`` on ``hw``: a DataFrame with the trace columns plus the cost columns
    of each op in isolation (``latency_s`` is the op's own time) and ``fits``
    (:func:`add_fits`)."""
    hw = _hw(hw)
    costs = replay_costs(trace, hw, model)
    rows = []
    for t, c in zip(trace, costs, strict=True):
        row = {"op": t.op.name, "layer": t.layer, **t.op.fields()}
        row.update(c.as_row())
        rows.append(row)
    return add_fits(pd.DataFrame(rows), hw)


def device_memory_bytes(hw: HwConfig) -> float | None:
    """Bytes of the memory the device computes from: a GPU's HBM, an NPU's attached memory
    config, a memory config's channels, a CPU's RAM when its config gives it, else None."""
    if hw.kind == "npu":
        return float(load_hw(hw.memory).memory_capacity_bytes)
    return getattr(hw, "memory_capacity_bytes", None)


def add_fits(df: pd.DataFrame, hw: HwConfig) -> pd.DataFrame:
    """Add the column ``fits``: whether each op's ``footprint_bytes`` is at most the
    device's memory (:func:`device_memory_bytes`; empty where that is unknown)."""
    cap = device_memory_bytes(hw)
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
    cap = device_memory_bytes(hw)
    return (
        f"warning: {len(over)} of {len(df)} ops do not fit in the {cap / 2**30:,.1f} GiB "
        f"memory of {getattr(hw, 'name', 'the device')}; the largest, op {int(big.name) + 1} "
        f"({big['op']}{', layer ' + str(big['layer']) if big['layer'] else ''}), needs "
        f"{big['footprint_bytes'] / 2**30:,.1f} GiB"
    )


def replay_step(
    trace: Sequence[TracedOp],
    hw: HwConfig | str | Path,
    model: str | None = None,
    dispatch: str | None = None,
) -> tuple[pd.DataFrame, StepCost]:
    """The per-op table of :func:`replay` and the whole step (``dispatch``: the device's
    default when None, ``eager`` for GPUs)."""
    hw = _hw(hw)
    df = replay(trace, hw, model)
    step = get_model(hw, model).step([t.op for t in trace], dispatch)
    return df, step


def step_text(step: StepCost) -> str:
    """One line: the step's time and what it is made of."""
    ms = 1e3
    parts = [f"busy {step.busy_s * ms:.3f} ms"]
    if step.host_s > 0:
        parts.append(f"host dispatch {step.host_s * ms:.3f} ms")
    parts.append(f"ops one by one in isolation {step.isolated_s * ms:.3f} ms")
    tflops = step.flops / step.latency_s / 1e12 if step.latency_s > 0 else 0.0
    return (
        f"{step.ops} ops on {step.model} ({step.dispatch} dispatch): step "
        f"{step.latency_s * ms:.3f} ms ({', '.join(parts)}); {step.flops / 1e9:.2f} GFLOP, "
        f"achieved {tflops:.2f} TFLOP/s, {step.bytes / 1e9:.3f} GB moved, peak footprint "
        f"{step.peak_footprint_bytes / 2**30:.2f} GiB"
    )
