"""Layer 6: experiments — YAML sweeps, parallel/distributed execution, result store.

``neupims.experiments.run(path_or_spec, outdir, jobs=...)`` runs an experiment and returns
its results as a DataFrame; see docs/experiments.md for the YAML format and the store.
Names are imported lazily so that pool workers (which import
:mod:`neupims.experiments.worker`) start without pandas.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "run": "neupims.experiments.runner",
    "apply_hw_overrides": "neupims.experiments.overrides",
    "Experiment": "neupims.experiments.spec",
    "ExperimentSpec": "neupims.experiments.spec",
    "FigureSpec": "neupims.experiments.spec",
    "Point": "neupims.experiments.spec",
    "load_experiment": "neupims.experiments.spec",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(name)
    return getattr(importlib.import_module(_EXPORTS[name]), name)
