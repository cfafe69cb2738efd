"""Cross-checks against real kernels: time ops on this machine's device, compare with the model.

Each module in this package that handles a hardware kind registers a function
``check(hw, trace, outdir) -> int`` (exit status) in :data:`CHECKERS` under that kind.
``neupims crosscheck --hw HW`` dispatches on ``hw.kind``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHECKERS: dict[str, Callable[[Any, Any, Path], int]] = {}


def register_checker(kind: str):
    def deco(fn):
        CHECKERS[kind] = fn
        return fn

    return deco


#: Fraction of the device memory one timed op's operands may take: timing allocates every
#: operand and result, plus workspace and the framework's own memory.
MEMORY_SHARE = 0.5


def too_big(op: Any, capacity_bytes: float | None) -> str | None:
    """Why ``op`` cannot be timed on a device of ``capacity_bytes``: its operands and
    results (``op.min_bytes``) exceed :data:`MEMORY_SHARE` of it. None when they fit or
    the capacity is unknown."""
    if capacity_bytes is None or op.min_bytes <= MEMORY_SHARE * capacity_bytes:
        return None
    return (
        f"its operands need {op.min_bytes / 2**30:,.1f} GiB, more than "
        f"{MEMORY_SHARE:.0%} of the device's {capacity_bytes / 2**30:,.1f} GiB"
    )


def get_checker(kind: str) -> Callable[[Any, Any, Path], int]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    if kind not in CHECKERS:
        raise KeyError(f"no cross-check for {kind!r} hardware; available: {sorted(CHECKERS)}")
    return CHECKERS[kind]
