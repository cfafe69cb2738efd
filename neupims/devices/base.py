"""Device-model interface: the cost of one op on one device, and the model registry.

A device model is a class registered under a name (``roofline``, ``gpu``, ``npu``, ...)
for one or more hardware kinds. ``estimate(op)`` returns a :class:`Cost`. Models are
pure functions of (op, config), so costs are memoised per model instance.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from neupims.errors import ConfigError, NeupimsError
from neupims.ops import Op


@dataclass(frozen=True)
class Cost:
    """Cost of one op on one device.

    latency_s: wall time in seconds; flops: floating-point operations performed (2 per MAC);
    bytes: bytes moved to/from the device's main memory; footprint_bytes: device memory the
    op needs resident (inputs, outputs, workspace); energy_j: joules (NaN when the model has
    no energy model); bound: what limits it (``compute``, ``memory``, ``latency``, ...);
    model: the name of the device model that produced it; detail: model-specific extras
    (utilisation, tile choice, algorithm) as a tuple of (key, value) pairs.
    """

    latency_s: float
    flops: float
    bytes: float
    footprint_bytes: float
    bound: str
    model: str
    energy_j: float = math.nan
    detail: tuple[tuple[str, Any], ...] = field(default=())

    def as_row(self) -> dict[str, Any]:
        row = {
            "latency_s": self.latency_s,
            "flops": self.flops,
            "bytes": self.bytes,
            "footprint_bytes": self.footprint_bytes,
            "bound": self.bound,
            "energy_j": self.energy_j,
            "model": self.model,
        }
        row.update(dict(self.detail))
        return row


@dataclass(frozen=True)
class StepCost:
    """Cost of a whole step (a sequence of ops run one after another on one device).

    latency_s: the step's wall time as the device (and, for GPUs, the host dispatching its
    kernels) runs it; dispatch: how ops are launched (``eager``, ``graph`` or ``serial``);
    busy_s: time the device computes (kernels back to back); host_s: host time spent
    dispatching (eager GPU steps), else 0; isolated_s: the sum of the ops' isolated
    latencies (what ``replay``'s per-op table sums to); flops, bytes: totals; ops: op count;
    peak_footprint_bytes: every op's resident bytes (weights, KV caches) plus the largest
    activation footprint of one op.
    """

    latency_s: float
    dispatch: str
    busy_s: float
    host_s: float
    isolated_s: float
    ops: int
    flops: float
    bytes: float
    peak_footprint_bytes: float
    model: str

    def as_dict(self) -> dict[str, Any]:
        """Plain fields; ``busy_s`` is named ``gpu_busy_s`` for GPU steps."""
        return {
            "step_latency_s": self.latency_s,
            "dispatch": self.dispatch,
            ("gpu_busy_s" if self.model == "gpu" else "busy_s"): self.busy_s,
            "host_s": self.host_s,
            "sum_isolated_s": self.isolated_s,
            "ops": self.ops,
            "flops": self.flops,
            "bytes": self.bytes,
            "peak_footprint_bytes": self.peak_footprint_bytes,
            "model": self.model,
        }


def footprint_bytes(ops: Sequence[Op]) -> float:
    """Peak device memory of a step: resident bytes of every op (distinct weights and KV
    caches in a trace) plus the largest single-op activation footprint."""
    resident = sum(op.resident_bytes for op in ops)
    act = max((op.min_bytes - op.resident_bytes for op in ops), default=0.0)
    return float(resident + max(act, 0.0))


class DeviceModel:
    """Base class. Subclasses set ``name`` and ``kinds`` and implement ``_estimate``.

    ``step(ops)`` costs a whole sequence; the default runs the ops back to back (the sum of
    their latencies); device models with a dispatch model (GPUs) override it.
    """

    dispatch_modes: tuple[str, ...] = ("serial",)

    name: str = "device"
    kinds: tuple[str, ...] = ()

    def __init__(self, hw: Any):
        self.hw = hw
        self._cached: Callable[[Op], Cost] = lru_cache(maxsize=65536)(self._estimate)

    def estimate(self, op: Op) -> Cost:
        """The cost of ``op``. A ValueError of the model (a dtype the hardware has no peak
        for, an op it cannot run) is a ConfigError naming the op and the device."""
        try:
            return self._cached(op)
        except NeupimsError:
            raise
        except ValueError as exc:
            hw = getattr(self.hw, "name", "the device")
            raise ConfigError(f"{self.name} model of {hw} cannot cost {op}: {exc}") from None

    def _estimate(self, op: Op) -> Cost:  # pragma: no cover - abstract
        raise NotImplementedError

    def check_dispatch(self, dispatch: str | None) -> str:
        """The dispatch mode to use (the first of ``dispatch_modes`` when None)."""
        if dispatch is None:
            return self.dispatch_modes[0]
        if dispatch not in self.dispatch_modes:
            raise ConfigError(
                f"dispatch {dispatch!r} is not modelled for {self.name} devices; "
                f"expected one of {list(self.dispatch_modes)}"
            )
        return dispatch

    def step(self, ops: Sequence[Op], dispatch: str | None = None) -> StepCost:
        """Cost of ``ops`` run one after another (in order)."""
        mode = self.check_dispatch(dispatch)
        costs = [self.estimate(op) for op in ops]
        t = float(sum(c.latency_s for c in costs))
        return StepCost(
            latency_s=t,
            dispatch=mode,
            busy_s=t,
            host_s=0.0,
            isolated_s=t,
            ops=len(costs),
            flops=float(sum(c.flops for c in costs)),
            bytes=float(sum(c.bytes for c in costs)),
            peak_footprint_bytes=footprint_bytes(ops),
            model=self.name,
        )


#: model name -> class
DEVICE_MODELS: dict[str, type[DeviceModel]] = {}
#: hardware kind -> default model name (the most detailed registered model)
DEFAULT_MODEL: dict[str, str] = {}


def register_device(cls: type[DeviceModel], default: bool = True) -> type[DeviceModel]:
    """Register a device model; with ``default`` it becomes the model used for its kinds."""
    DEVICE_MODELS[cls.name] = cls
    if default:
        for kind in cls.kinds:
            DEFAULT_MODEL[kind] = cls.name
    return cls


def roofline_only(cls: type[DeviceModel]) -> type[DeviceModel]:
    """Register a model without making it the default for its kinds."""
    return register_device(cls, default=False)
