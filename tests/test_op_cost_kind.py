"""The ``op_cost`` experiment kind: one trace op per point, its columns swept as fields.*."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from neupims.errors import ConfigError
from neupims.experiments import load_experiment
from neupims.experiments.kinds import get_kind
from neupims.experiments.kinds.op_cost import main, summarise


@pytest.fixture(scope="module")
def kind():
    return get_kind("op_cost")


def test_point_with_and_without_baseline(kind):
    fields = {"batch": 2, "heads": 4, "dims": "56x56", "kernel": 7, "head_dim": 32,
              "dtype": "fp16", "algo": "fused"}  # fmt: skip
    plain = kind.run_point(kind.schema(op="neighborhood_attention", fields=fields))
    assert set(kind.metrics) <= set(plain)
    assert math.isnan(plain["speedup_vs_baseline"])
    assert json.loads(plain["detail"])["algo"] == "fused"
    cmp = kind.run_point(kind.schema(op="neighborhood_attention", fields=fields,
                                     baseline={"algo": "naive"}))  # fmt: skip
    assert cmp["latency_s"] == plain["latency_s"]
    assert cmp["speedup_vs_baseline"] == pytest.approx(cmp["baseline_latency_s"] / cmp["latency_s"])
    assert cmp["improvement_pct"] == pytest.approx(100 * (cmp["speedup_vs_baseline"] - 1))


def test_any_trace_op_works(kind):
    r = kind.run_point(kind.schema(op="gemm", fields={"m": 512, "n": 512, "k": 512}))
    assert r["flops"] == 2 * 512**3 and r["device_model"] == "gpu"


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"op": "gemmm", "fields": {}}, "unknown op 'gemmm'"),
        ({"op": "gemm", "fields": {"m": 1, "n": 1, "k": 1, "kk": 2}}, r"unknown column\(s\) \['kk'\]"),
        ({"op": "gemm", "fields": {"m": 1, "n": 1}}, "fields: gemm needs column"),
        ({"op": "long_conv", "fields": {"batch": 1, "channels": 1, "length": 8},
          "baseline": {"algo": "fftw"}}, "baseline: algo must be one of"),
    ],
)  # fmt: skip
def test_bad_points_are_named(kind, kw, message):
    with pytest.raises(ValueError, match=message):
        kind.schema(**kw)


def test_bad_sweep_value_is_reported_before_running(tmp_path):
    exp = {
        "name": "t", "kind": "op_cost",
        "base": {"op": "neighborhood_attention",
                 "fields": {"batch": 1, "heads": 1, "dims": "64", "kernel": 3}},
        "sweep": {"grid": {"fields.kernel": [3, 65]}},
    }  # fmt: skip
    with pytest.raises(ConfigError, match=r"point 2 of 2 \(fields.kernel=65\): fields: kernel 65"):
        load_experiment(exp)


def test_summarise_and_cli(tmp_path, capsys):
    df = pd.DataFrame({
        "status": ["ok", "ok", "ok", "error"],
        "label": ["a", "a", "b", "b"],
        "speedup_vs_baseline": [2.0, 8.0, 1.5, 99.0],
        "improvement_pct": [100.0, 700.0, 50.0, 9800.0],
    })  # fmt: skip
    t = summarise(df, ["label"]).set_index("label")
    assert t.loc["a", "mean_improvement_pct"] == 400.0
    assert t.loc["a", "geomean_speedup"] == pytest.approx(4.0)
    assert t.loc["b", "points"] == 1  # the failed point is not counted
    df.to_csv(tmp_path / "results.csv", index=False)
    assert main([str(tmp_path), "--by", "label"]) == 0
    assert "400.00" in capsys.readouterr().out
    assert main([str(tmp_path), "--by", "nolabel"]) == 2
    assert "no column(s) ['nolabel']" in capsys.readouterr().err
