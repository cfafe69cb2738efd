"""Hardware overrides: deep-merge a mapping into a hardware config and re-validate it.

Experiments sweep hardware parameters with dotted paths into an ``hw_overrides`` mapping
(``hw_overrides.pim.dual_row_buffer: [true, false]``); the kind applies them with
:func:`apply_hw_overrides`, which rejects unknown keys and wrong types with the key path.
"""

from __future__ import annotations

from typing import Any

from neupims.config.hardware import HwConfig, load_hw, parse_hw
from neupims.errors import ConfigError


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A new mapping: ``base`` with ``overrides`` merged in (mappings merge, values replace)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_hw_overrides(
    hw: HwConfig | str, overrides: dict[str, Any] | None, source: str = "hw_overrides"
) -> HwConfig:
    """Return ``hw`` (a config or a name) with ``overrides`` deep-merged and re-validated.

    Errors read ``hw_overrides (on NAME): key.path: what was expected``.
    """
    if isinstance(hw, str):
        hw = load_hw(hw)
    if not overrides:
        return hw
    if not isinstance(overrides, dict):
        raise ConfigError(f"{source}: expected a mapping of hardware keys, got {overrides!r}")
    if "kind" in overrides and overrides["kind"] != hw.kind:
        raise ConfigError(f"{source}: kind: the device kind cannot be overridden")
    merged = deep_merge(hw.model_dump(mode="python"), overrides)
    return parse_hw(merged, f"{source} (on {hw.name})")
