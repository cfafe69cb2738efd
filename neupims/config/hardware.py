"""Hardware configs: one YAML file describes one device, selected by its ``kind``.

To add a kind: write its schema module beside this one and add it to :data:`HW_KINDS`.

Some ``--hw`` names are not files but are resolved at run time by a higher layer, e.g.
``cpu`` (this machine's CPU, detected and calibrated by ``neupims.devices.cpu_detect``).
That layer registers a loader with :func:`register_hw_name`; this module never imports it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

from neupims.config.hw_cpu import CpuConfig
from neupims.config.hw_gpu import GpuConfig
from neupims.config.hw_memory import MemoryConfig
from neupims.config.hw_npu import NpuConfig
from neupims.config.loader import load_yaml, resolve, validate
from neupims.errors import ConfigError

HwConfig = NpuConfig | MemoryConfig | GpuConfig | CpuConfig

#: YAML ``kind`` -> schema class.
HW_KINDS: dict[str, type] = {
    "npu": NpuConfig,
    "memory": MemoryConfig,
    "gpu": GpuConfig,
    "cpu": CpuConfig,
}


#: ``--hw`` name -> (loader, one-line description), registered by higher layers.
HW_NAMES: dict[str, tuple[Callable[[], Any], str]] = {}


def register_hw_name(name: str, loader: Callable[[], Any], what: str) -> None:
    """Make ``load_hw(name)`` call ``loader()`` (a zero-argument function returning a config).

    Used by layers above this one (``neupims.devices`` registers ``cpu``), so the config
    layer resolves such names without importing them. A registered name wins over a file of
    the same name in the working directory (``./cpu`` loads the file).
    """
    HW_NAMES[name] = (loader, what)


def parse_hw(data: Any, source: str) -> HwConfig:
    """Validate a hardware mapping (already loaded from YAML) against its kind's schema."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping with a 'kind' key")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping with a 'kind' key, got {type(data).__name__}"
        )
    kind = data.get("kind")
    if kind is None:
        raise ConfigError(
            f"{source}: kind: required key is missing; expected one of {sorted(HW_KINDS)}"
        )
    schema = HW_KINDS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ConfigError(
            f"{source}: kind: unknown device kind {kind!r}; expected one of {sorted(HW_KINDS)}"
        )
    return validate(schema, data, source)


@lru_cache(maxsize=64)
def _load_hw_cached(path: str, mtime: float) -> HwConfig:
    return parse_hw(load_yaml(path), path)


def load_hw(name_or_path: str | Path) -> HwConfig:
    """Load a hardware config by path, by name in hw_configs/ (``h100_sxm``), or by a name
    registered with :func:`register_hw_name` (``cpu``: this machine, once ``neupims.devices``
    is imported, as the CLI, ``neupims.load_hw`` and ``neupims.replay`` do)."""
    entry = HW_NAMES.get(str(name_or_path))
    if entry is not None:
        return entry[0]()
    try:
        path = resolve(name_or_path, "hw_configs")
    except ConfigError as exc:
        if HW_NAMES:
            raise ConfigError(f"{exc}; or a run-time name: {sorted(HW_NAMES)}") from None
        raise ConfigError(
            f"{exc}; run-time names (such as 'cpu', this machine) are registered when "
            "neupims.devices is imported: use neupims.load_hw, or import neupims.devices"
        ) from None
    return _load_hw_cached(str(path), path.stat().st_mtime)
