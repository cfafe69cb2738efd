"""Seconds of one step's op trace on a device: the one place serving-level code costs a trace.

Today a step is its ops' kernels back to back: the sum of ``get_model(hw).estimate(op)``
latencies, with no host dispatch time and no overlap between kernels. When
``GpuModel.step(ops, dispatch=...)`` (a whole-step model with host dispatch) exists, switch
:func:`step_time` to it; every caller (prefill policies, bipolar-INT end to end) goes
through this function and keeps its signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neupims.devices import get_model
from neupims.ops import Op
from neupims.workloads import TracedOp


@dataclass(frozen=True)
class StepTime:
    """Seconds of one step, and the share of each op kind (``gemm``, ``attention``, ...)."""

    seconds: float
    by_kind: tuple[tuple[str, float], ...]

    def kind_seconds(self, kind: str) -> float:
        return dict(self.by_kind).get(kind, 0.0)


def step_time(hw, ops: Sequence[TracedOp | Op]) -> StepTime:
    """Seconds of the step ``ops`` (traced ops or bare ops) on the device ``hw`` (a config)."""
    model = get_model(hw)
    by_kind: dict[str, float] = {}
    for item in ops:
        op = item.op if isinstance(item, TracedOp) else item
        t = model.estimate(op).latency_s
        by_kind[op.name] = by_kind.get(op.name, 0.0) + t
    return StepTime(sum(by_kind.values()), tuple(sorted(by_kind.items())))


__all__ = ["StepTime", "step_time"]
