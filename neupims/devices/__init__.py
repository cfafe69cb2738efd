"""Layer 3: cost of one op on one device. ``get_model(hw)`` picks the registered model.

Importing this package also registers the run-time hardware name ``cpu`` (this machine,
:mod:`neupims.devices.cpu_detect`) with the config layer's ``load_hw``, which it re-exports
(``neupims.load_hw`` is this one: it knows ``cpu``).

Device-model modules self-register on import; :data:`MODEL_MODULES` lists those that are
imported when the registry is first used, so a new device is one module plus one line.
"""

from __future__ import annotations

import importlib

from neupims.config import load_hw
from neupims.devices import cpu_detect as _cpu_detect  # noqa: F401  registers --hw cpu
from neupims.devices.base import DEFAULT_MODEL, DEVICE_MODELS, Cost, DeviceModel, register_device
from neupims.errors import ConfigError

#: Modules that register device models. A missing module is skipped (optional devices).
MODEL_MODULES = (
    "neupims.devices.roofline",
    "neupims.devices.npu",
    "neupims.devices.gpu",
    "neupims.devices.gpu_conv",
    "neupims.devices.gpu_natten",
    "neupims.devices.gpu_longconv",
    "neupims.devices.gpu_apint",
    "neupims.devices.cpu",
)

_loaded = False


def load_models() -> None:
    """Import every module of :data:`MODEL_MODULES` once (they register models and op costs)."""
    global _loaded
    if _loaded:
        return
    for mod in MODEL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name != mod:
                raise
    _loaded = True


def get_model(hw, model: str | None = None) -> DeviceModel:
    """Instantiate the device model for ``hw``: ``model`` by name, else the kind's default."""
    load_models()
    name = model or DEFAULT_MODEL.get(hw.kind, "roofline")
    cls = DEVICE_MODELS.get(name)
    if cls is None:
        raise ConfigError(f"unknown device model {name!r}; expected one of {sorted(DEVICE_MODELS)}")
    if hw.kind not in cls.kinds:
        fits = sorted(n for n, c in DEVICE_MODELS.items() if hw.kind in c.kinds)
        raise ConfigError(
            f"device model {name!r} does not model {hw.kind!r} hardware; expected one of {fits}"
        )
    return _instance(cls, hw)


_instances: dict[tuple[str, int], DeviceModel] = {}


def _instance(cls: type[DeviceModel], hw) -> DeviceModel:
    key = (cls.name, hash(hw.model_dump_json()) if hasattr(hw, "model_dump_json") else id(hw))
    inst = _instances.get(key)
    if inst is None:
        inst = _instances[key] = cls(hw)
    return inst


__all__ = [
    "DEFAULT_MODEL",
    "DEVICE_MODELS",
    "Cost",
    "DeviceModel",
    "get_model",
    "load_hw",
    "load_models",
    "register_device",
]
