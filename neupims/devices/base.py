"""Device-model interface: the cost of one op on one device, and the model registry.

A device model is a class registered under a name (``roofline``, ``gpu``, ``npu``, ...)
for one or more hardware kinds. ``estimate(op)`` returns a :class:`Cost`. Models are
pure functions of (op, config), so costs are memoised per model instance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


class DeviceModel:
    """Base class. Subclasses set ``name`` and ``kinds`` and implement ``_estimate``."""

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
