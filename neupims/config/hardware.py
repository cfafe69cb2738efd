"""Hardware configs: one YAML file describes one device, selected by its ``kind``.

To add a kind: write its schema module beside this one and add it to :data:`HW_KINDS`.
"""

from __future__ import annotations

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
    """Load a hardware config by path or by name in hw_configs/ (``h100_sxm``)."""
    if str(name_or_path) == "cpu":
        from neupims.devices import cpu_detect  # detected at run time (CPU issue)

        return cpu_detect.detect_config()
    path = resolve(name_or_path, "hw_configs")
    return _load_hw_cached(str(path), path.stat().st_mtime)
