"""Layer 1: typed schemas for hardware and experiments, YAML loading with precise errors."""

from neupims.config.hardware import HW_KINDS, HwConfig, load_hw, parse_hw
from neupims.config.loader import ROOT, load_yaml, resolve, validate

__all__ = [
    "HW_KINDS",
    "ROOT",
    "HwConfig",
    "load_hw",
    "load_yaml",
    "parse_hw",
    "resolve",
    "validate",
]
