"""The ``replay`` kind: metrics from a traced step, hardware overrides, timeline export."""

from __future__ import annotations

import itertools
import json

import pytest

from neupims.cli import main

EXP = """\
name: rp
kind: replay
base: {model: gpt3-125m, phase: decode, seq: 256, hw: h100_sxm}
sweep:
  grid:
    dispatch: [graph, eager]
    hw_overrides.hbm_bandwidth_gbps: [1675, 3350]
    batch: [1, 8]
"""


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rp")
    (folder / "rp.yaml").write_text(EXP)
    timeline = folder / "timeline.json"
    argv = ["run", str(folder / "rp.yaml"), "-o", str(folder / "out"), "--jobs", "1"]
    assert main([*argv, "--no-progress", "--timeline", str(timeline)]) == 0
    import pandas as pd

    return pd.read_csv(folder / "out" / "results.csv"), json.loads(timeline.read_text())


def test_metrics_follow_from_the_replayed_step(results):
    df, _ = results
    assert list(df["status"]) == ["ok"] * 8
    assert (df["tokens_per_s"] == df["batch"] / df["latency_s"]).all()
    assert (df["tflops_per_s"] - df["flops"] / df["latency_s"] / 1e12).abs().max() < 1e-9
    # the override changes only the hardware: same work, and from a CUDA graph decode is
    # faster with more bandwidth
    bw = "hw_overrides.hbm_bandwidth_gbps"
    graph = df[df["dispatch"] == "graph"]
    slow, fast = graph[graph[bw] == 1675].reset_index(), graph[graph[bw] == 3350].reset_index()
    assert (slow["flops"] == fast["flops"]).all() and (slow["bytes"] == fast["bytes"]).all()
    assert (slow["latency_s"] > fast["latency_s"]).all()
    assert (graph["latency_s"] == graph["busy_s"]).all()
    # eager PyTorch: the host's dispatch of this small model's 124 ops is the step, whatever
    # the bandwidth (host_op_us from the H100 calibration)
    from neupims.config import load_hw

    eager = df[df["dispatch"] == "eager"]
    host = eager["ops"] * load_hw("h100_sxm").efficiency["host_op_us"] * 1e-6
    assert eager["latency_s"].to_numpy() == pytest.approx(host.to_numpy(), rel=1e-12)
    assert (eager["latency_s"].to_numpy() > graph["latency_s"].to_numpy()).all()


def test_timeline_of_the_first_point_covers_its_ops(results):
    df, tl = results
    events = tl["traceEvents"]
    assert tl["otherData"]["batch"] == 1 and events[0]["ph"] == "X"
    first = df.iloc[0]
    assert first[["hw_overrides.hbm_bandwidth_gbps", "batch"]].tolist() == [1675, 1]
    total_us = sum(e["dur"] for e in events)  # ops back to back at their isolated times
    assert total_us == pytest.approx(first["sum_isolated_s"] * 1e6, rel=1e-9)
    assert all(b["ts"] == pytest.approx(a["ts"] + a["dur"]) for a, b in itertools.pairwise(events))


def test_timeline_of_a_kind_without_one_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "s.yaml").write_text("name: s\nkind: synthetic\n")
    argv = ["run", str(tmp_path / "s.yaml"), "-o", str(tmp_path), "--timeline", "t.json"]
    assert main([*argv, "--no-progress"]) == 2
    assert "kind 'synthetic' cannot export a timeline (--timeline)" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [tmp_path / "s.yaml"]  # nothing ran, nothing written


def test_python_api_is_exposed_on_the_package(tmp_path):
    import neupims

    df = neupims.run({"name": "api", "kind": "synthetic", "base": {"x": 2.5}}, tmp_path,
                     jobs=1, progress=False)  # fmt: skip
    assert df["value"].tolist() == [2.5]


def test_list_kinds_shows_keys_and_metrics(capsys):
    assert main(["run", "--list-kinds"]) == 0
    out = capsys.readouterr().out
    assert "replay: trace one step" in out
    assert (
        "keys: model, phase, batch, seq, tp, dtype, hw, hw_overrides, device_model, dispatch" in out
    )
    assert main(["run"]) == 2
    assert "give an experiment YAML file (or --list-kinds)" in capsys.readouterr().err
