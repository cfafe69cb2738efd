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
    of each op in isolation (``latency_s`` is the op's own time)."""
    costs = replay_costs(trace, hw, model)
    rows = []
    for t, c in zip(trace, costs, strict=True):
        row = {"op": t.op.name, "layer": t.layer, **t.op.fields()}
        row.update(c.as_row())
        rows.append(row)
    return pd.DataFrame(rows)


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
