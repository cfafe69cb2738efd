"""The ``op_cost`` kind: the cost of one op, given by its trace columns, on one device.

The ``replay`` kind costs whole model traces (``model``, ``phase``, ``batch``, ``seq``); it
cannot sweep one op's own fields. A point of this kind names a trace op (``op``, any name
of :data:`neupims.ops.OP_KINDS`) and its columns (``fields``: the cells of a trace row,
``dims: 56x56``, ``algo: gemm``), so an experiment sweeps ``fields.<column>`` directly.
``baseline`` (optional) overrides some columns to give a reference op on the same device
(``baseline: {algo: naive}``): the point then also reports the reference's latency, the
speedup over it and the improvement in percent, as kernel papers report them
(improvement = 100 * (t_baseline / t - 1)). ``label`` is free text carried into the
results, a grouping key for figures and :func:`summarise` (``1d``, ``2d``).

Metrics: ``latency_s``, ``flops``, ``bytes`` (DRAM traffic), ``footprint_bytes``,
``tflops_per_s``, ``bound``, ``device_model``, ``baseline_latency_s``,
``speedup_vs_baseline``, ``improvement_pct`` (the last three NaN without a baseline) and
``detail`` (the device model's details as JSON).

Summary of a finished run, the mean over the points of each group:
``python -m neupims.experiments.kinds.op_cost results/natten_gpu --by label,fields.dtype,fields.algo``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from neupims.config import load_hw
from neupims.config.base import Spec
from neupims.devices import get_model
from neupims.experiments.kinds import ExperimentKind, register_kind
from neupims.experiments.overrides import apply_hw_overrides
from neupims.ops import OP_KINDS, op_from_row

METRICS = (
    "latency_s",
    "flops",
    "bytes",
    "footprint_bytes",
    "tflops_per_s",
    "bound",
    "device_model",
    "baseline_latency_s",
    "speedup_vs_baseline",
    "improvement_pct",
    "detail",
)


def build_op(kind: str, fields: dict[str, Any], where: str = "fields"):
    """The op named ``kind`` from trace-style ``fields``; ValueError names the bad key."""
    cls = OP_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"op: unknown op {kind!r}; expected one of {sorted(OP_KINDS)}")
    known = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown column(s) {unknown} of {kind}; expected {known}")
    row = {"op": kind}
    for k, v in fields.items():
        row[k] = str(v).lower() if isinstance(v, bool) else str(v)
    try:
        return op_from_row(row)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


class OpCostPoint(Spec):
    hw: str = "a100_40gb"
    hw_overrides: dict[str, Any] = Field(default_factory=dict)
    device_model: str | None = None
    op: str
    fields: dict[str, Any]
    baseline: dict[str, Any] = Field(default_factory=dict)
    label: str = ""

    @field_validator("hw")
    @classmethod
    def _known_hw(cls, v: str) -> str:
        load_hw(v)
        return v

    @model_validator(mode="after")
    def _valid_ops(self) -> OpCostPoint:
        build_op(self.op, self.fields)
        if self.baseline:
            build_op(self.op, {**self.fields, **self.baseline}, where="baseline")
        if self.hw_overrides:
            apply_hw_overrides(self.hw, self.hw_overrides)
        return self


def _model(cfg: OpCostPoint):
    return get_model(apply_hw_overrides(cfg.hw, cfg.hw_overrides), cfg.device_model)


def run_point(cfg: OpCostPoint) -> dict[str, Any]:
    model = _model(cfg)
    op = build_op(cfg.op, cfg.fields)
    cost = model.estimate(op)
    out = {
        "latency_s": cost.latency_s,
        "flops": cost.flops,
        "bytes": cost.bytes,
        "footprint_bytes": cost.footprint_bytes,
        "tflops_per_s": cost.flops / cost.latency_s / 1e12,
        "bound": cost.bound,
        "device_model": cost.model,
        "baseline_latency_s": math.nan,
        "speedup_vs_baseline": math.nan,
        "improvement_pct": math.nan,
        "detail": json.dumps(dict(cost.detail), sort_keys=True, default=str),
    }
    if cfg.baseline:
        ref = model.estimate(build_op(cfg.op, {**cfg.fields, **cfg.baseline}, where="baseline"))
        speedup = ref.latency_s / cost.latency_s
        out.update(
            baseline_latency_s=ref.latency_s,
            speedup_vs_baseline=speedup,
            improvement_pct=100.0 * (speedup - 1.0),
        )
    return out


register_kind(
    ExperimentKind(
        name="op_cost",
        schema=OpCostPoint,
        run_point=run_point,
        description="cost of one trace op (its columns swept as fields.*) on one device, "
        "optionally against a baseline variant of it",
        metrics=METRICS,
    )
)


def summarise(df, by: list[str]):
    """Per group of ``by`` columns: points, mean / min / max improvement in percent, mean
    and geometric-mean speedup over the baseline (rows with status ``ok`` only)."""
    ok = df[df["status"] == "ok"] if "status" in df else df
    missing = [c for c in by if c not in ok.columns]
    if missing:
        raise ValueError(f"no column(s) {missing} in the results; have {list(ok.columns)}")
    g = ok.groupby(by, sort=True)
    out = g.agg(
        points=("speedup_vs_baseline", "size"),
        mean_improvement_pct=("improvement_pct", "mean"),
        min_improvement_pct=("improvement_pct", "min"),
        max_improvement_pct=("improvement_pct", "max"),
        mean_speedup=("speedup_vs_baseline", "mean"),
    )
    out["geomean_speedup"] = g["speedup_vs_baseline"].apply(
        lambda s: float(np.exp(np.log(s).mean()))
    )
    return out.reset_index()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=summarise.__doc__)
    ap.add_argument("results", help="an experiment's output folder or its results.csv")
    ap.add_argument("--by", default="label", help="comma-separated grouping columns")
    args = ap.parse_args(argv)
    path = Path(args.results)
    if path.is_dir():
        path = path / "results.csv"
    if not path.exists():
        print(f"{path}: no such file", file=sys.stderr)
        return 2
    try:
        table = summarise(pd.read_csv(path), [c for c in args.by.split(",") if c])
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
