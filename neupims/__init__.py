"""neupims: a fast, validated simulator of DNN/LLM inference hardware.

Python API (the CLI wraps the same functions):
    neupims.trace(model, phase, batch, seq, tp=1) -> list of TracedOp
    neupims.replay(trace, hw) -> pandas.DataFrame of per-op costs
    neupims.replay_step(trace, hw, dispatch=None) -> (per-op DataFrame, StepCost)
    neupims.build_system(name, model, tp=1, pp=1) -> a System (its .iteration(seq_lens, ch))
    neupims.load_hw(name_or_path) -> typed hardware config
    neupims.run(experiment, outdir) -> pandas.DataFrame of results
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

#: The Python API: name -> "module:attribute", imported on first use (PEP 562) so that
#: ``import neupims`` (and the CLI's start-up) stays light. ``load_hw`` is taken from
#: ``neupims.devices``, whose import registers the run-time hardware name ``cpu``.
API = {
    "replay": "neupims.replay:replay",
    "replay_step": "neupims.replay:replay_step",
    "build_system": "neupims.systems.base:build_system",
    "load_hw": "neupims.devices:load_hw",
    "trace": "neupims.workloads:trace",
    "run": "neupims.experiments.runner:run",
}

__all__ = ["__version__", *sorted(API)]


def __getattr__(name: str):
    target = API.get(name)
    if target is None:
        raise AttributeError(f"module 'neupims' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
