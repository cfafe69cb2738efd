"""Registry of experiment kinds: what one sweep point computes.

A kind has a pydantic ``schema`` for the fully resolved point configuration (the
experiment's ``base`` with the swept values applied) and ``run_point(cfg) -> dict`` that
returns one result row of JSON-serialisable scalars. Modules in this package register
their kinds on import with :func:`register_kind`; :func:`get_kind` imports them all.

A kind may also give ``validate_point(cfg)``: the cheap semantic checks that would
otherwise fail only when the point runs (an unknown dtype or dataset, a hardware config
of the wrong kind, a tensor-parallel degree that does not divide the heads). It runs
for every point before anything runs; inside it, ``with about("dtype"):`` attributes an
error to a config key, so the message names the sweep or base key at fault.
"""

from __future__ import annotations

import contextlib
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

import neupims.devices  # noqa: F401  registers run-time hw names ("cpu") that points may use
from neupims.errors import ConfigError, NeupimsError


class PointError(ConfigError):
    """A point config that passes its schema but cannot run; ``keys`` are the dotted config
    keys at fault (the experiment's message maps each to its sweep or base entry)."""

    def __init__(self, keys: tuple[str, ...], message: str):
        super().__init__(message)
        self.keys = keys


@contextlib.contextmanager
def about(*keys: str) -> Iterator[None]:
    """Inside ``validate_point``: a NeupimsError or ValueError raised in the block is a
    :class:`PointError` about ``keys``."""
    try:
        yield
    except PointError:
        raise
    except (NeupimsError, ValueError) as exc:
        raise PointError(keys, str(exc)) from None


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
    #: optional: cheap semantic checks of one validated point config, run for every point
    #: before anything runs; raises (through :func:`about`) what ``run_point`` would
    validate_point: Callable[[Any], None] | None = None


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
