"""Seconds of one step's op trace on a device: the one place serving-level code costs a trace.

A step is costed by the device's step model (``DeviceModel.step``: for a GPU the kernels on
one stream with eager PyTorch's host dispatch by default, or from a CUDA graph), the same
one ``neupims replay`` uses. Every caller (prefill policies, bipolar-INT end to end) goes
through :func:`step_time`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neupims.devices import get_model
from neupims.ops import Op
from neupims.workloads import TracedOp


@dataclass(frozen=True)
class StepTime:
    """Seconds of one step, and the device's busy seconds of each op kind (``gemm``,
    ``attention``, ...); they sum to the busy time, which the host's dispatch may exceed."""

    seconds: float
    by_kind: tuple[tuple[str, float], ...]
    dispatch: str = "serial"

    def kind_seconds(self, kind: str) -> float:
        return dict(self.by_kind).get(kind, 0.0)


def step_time(hw, ops: Sequence[TracedOp | Op], dispatch: str | None = None) -> StepTime:
    """Seconds of the step ``ops`` (traced ops or bare ops) on the device ``hw`` (a config);
    ``dispatch``: the device's default when None (eager PyTorch for GPUs)."""
    model = get_model(hw)
    bare = [item.op if isinstance(item, TracedOp) else item for item in ops]
    step = model.step(bare, dispatch)
    busy = getattr(model, "in_stream_s", None)
    by_kind: dict[str, float] = {}
    for op in bare:
        cost = model.estimate(op)
        t = busy(cost) if busy is not None else cost.latency_s
        by_kind[op.name] = by_kind.get(op.name, 0.0) + t
    return StepTime(step.latency_s, tuple(sorted(by_kind.items())), step.dispatch)


__all__ = ["StepTime", "step_time"]
