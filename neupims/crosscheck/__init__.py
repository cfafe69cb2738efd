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


def get_checker(kind: str) -> Callable[[Any, Any, Path], int]:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    if kind not in CHECKERS:
        raise KeyError(f"no cross-check for {kind!r} hardware; available: {sorted(CHECKERS)}")
    return CHECKERS[kind]
