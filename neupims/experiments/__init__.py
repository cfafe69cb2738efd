"""Layer 6: experiments — YAML sweeps, parallel/distributed execution, result store.

``neupims.experiments.run(path_or_spec, outdir, jobs=...)`` runs an experiment and returns
its results as a DataFrame; see docs/experiments.md for the YAML format and the store.
"""

from neupims.experiments.overrides import apply_hw_overrides
from neupims.experiments.runner import run
from neupims.experiments.spec import (
    Experiment,
    ExperimentSpec,
    FigureSpec,
    Point,
    load_experiment,
)

__all__ = [
    "Experiment",
    "ExperimentSpec",
    "FigureSpec",
    "Point",
    "apply_hw_overrides",
    "load_experiment",
    "run",
]
