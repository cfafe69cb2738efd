"""Worker side of a sweep: run one point and return its store record (plain data).

Spawned pool processes and Dask workers import this module and then only the experiment
kind their task names (its module imports what its points need), so they start quickly.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import signal
import time
import traceback
from typing import Any

from neupims import __version__
from neupims.experiments.kinds import KINDS, get_kind

STATUS_OK = "ok"
STATUS_ERROR = "error"


def ignore_sigint() -> None:
    """Pool-process initializer: Ctrl-C is handled by the parent, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _scalar(name: str, value: Any) -> Any:
    if hasattr(value, "item") and callable(value.item):  # numpy scalar
        value = value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"metric {name!r} is a {type(value).__name__}; expected a number or string")


def _kind(name: str, module: str | None = None):
    """The registered kind ``name``. A fresh worker imports ``module`` (the task names the
    module that registers the kind) rather than every kind module and their dependencies;
    without it, or when that module does not register ``name``, all are imported."""
    if name not in KINDS and module:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    return KINDS.get(name) or get_kind(name)


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """Run one point and return its store record; never raises (errors are recorded).

    A top-level function taking and returning plain data, so it pickles to spawned
    processes and to Dask workers.
    """
    t0 = time.perf_counter()
    rec = {k: task[k] for k in ("key", "kind", "index", "swept", "config")}
    rec.update(version=__version__, host=platform.node(), pid=os.getpid())
    try:
        kind = _kind(task["kind"], task.get("kind_module"))
        cfg = kind.schema.model_validate(task["config"])
        result = kind.run_point(cfg)
        if not isinstance(result, dict):
            raise TypeError(f"run_point returned {type(result).__name__}; expected a dict")
        rec["result"] = {str(k): _scalar(k, v) for k, v in result.items()}
        rec.update(status=STATUS_OK, error=None, traceback=None)
    except Exception as exc:  # recorded, and the sweep goes on
        rec.update(
            status=STATUS_ERROR,
            result=None,
            error=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
        )
    rec["elapsed_s"] = time.perf_counter() - t0
    rec["finished_unix"] = time.time()
    return rec


def run_chunk(tasks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run several points in one worker task (amortises the pool's per-task cost)."""
    return [run_task(t) for t in tasks]
