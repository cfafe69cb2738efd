"""Registry of experiment kinds: what one sweep point computes.

A kind has a pydantic ``schema`` for the fully resolved point configuration (the
experiment's ``base`` with the swept values applied) and ``run_point(cfg) -> dict`` that
returns one result row of JSON-serialisable scalars. Modules in this package register
their kinds on import with :func:`register_kind`; :func:`get_kind` imports them all.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

import neupims.devices  # noqa: F401  registers run-time hw names ("cpu") that points may use


@dataclass(frozen=True)
class ExperimentKind:
    name: str
    schema: type[BaseModel]
    run_point: Callable[[Any], dict[str, Any]]
    description: str = ""
    #: optional: write a Chrome-trace JSON timeline of one point (``neupims run --timeline``)
    timeline: Callable[[Any, Any], None] | None = None
    #: optional: the metric names ``run_point`` returns, so an experiment's ``metrics`` list
    #: is checked before anything runs (otherwise after the first point)
    metrics: tuple[str, ...] = ()


KINDS: dict[str, ExperimentKind] = {}


def register_kind(kind: ExperimentKind) -> ExperimentKind:
    KINDS[kind.name] = kind
    return kind


def _discover() -> None:
    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")


def get_kind(name: str) -> ExperimentKind:
    _discover()
    if name not in KINDS:
        raise KeyError(f"unknown experiment kind {name!r}; expected one of {sorted(KINDS)}")
    return KINDS[name]


def all_kinds() -> dict[str, ExperimentKind]:
    _discover()
    return dict(KINDS)
