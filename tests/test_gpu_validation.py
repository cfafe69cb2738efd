"""Replay the committed H100 measurements (validation/h100/) through the calibrated H100
config and assert the errors that docs/gpu.md reports, on the fitted part and on the
held-out third. Targets of issue 5: GEMM/GEMV and attention <= 10 %, conv <= 15 %,
end to end <= 5 %. Where the model misses a target the bound asserted here is the
measured miss (docs/gpu.md, "Divergences"), so a regression still fails the test."""

from __future__ import annotations

from pathlib import Path

import pytest

from neupims.calibrate import error_report, load_measurements
from neupims.config import load_hw

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "validation/h100" / f for f in ("ops.csv", "ops_big_m.csv", "e2e.csv")]

#: group -> MAPE bound (%) asserted on the fitted part, the held-out part and all samples
BOUNDS = {
    "gemm": 10.0,  # target 10
    "attention": 10.0,  # target 10
    "e2e_graph": 5.0,  # target 5 (GPU time of a step: CUDA-graph replay)
    "conv": 15.0,  # target 15 (11.1 % fitted, 11.0 % held out)
    "e2e_eager": 6.5,  # target 5: met on all and held out, 6.2 % on the fitted part
    "quant": 10.0,  # no target; int4 tinygemm
    "elementwise": 17.0,  # no target
}


@pytest.fixture(scope="module")
def report():
    samples = load_measurements(FILES)
    assert len([s for s in samples if s.kind == "op"]) >= 300
    return {r["group"]: r for r in error_report(load_hw("h100_sxm"), samples)}


@pytest.mark.parametrize("group", sorted(BOUNDS))
@pytest.mark.parametrize("split", ["fit", "holdout", "all"])
def test_error_within_bound(report, group, split):
    r = report[group]
    assert r["n"] >= 30
    assert r[f"mape_{split}"] <= BOUNDS[group], (group, split, r)


def test_held_out_third_is_a_third():
    samples = load_measurements(FILES)
    frac = sum(s.holdout for s in samples) / len(samples)
    assert 0.28 < frac < 0.38
    # deterministic: the same sample is held out on every load
    again = load_measurements(FILES)
    assert [s.holdout for s in samples] == [s.holdout for s in again]


def test_committed_rows_record_the_device_and_libraries():
    import csv

    with open(FILES[0], newline="") as fh:
        row = next(csv.DictReader(fh))
    assert "H100" in row["device"]
    assert row["torch"] and row["cuda"] and row["cudnn"]


def test_config_records_its_calibration_provenance():
    hw = load_hw("h100_sxm")
    assert "neupims calibrate" in hw.efficiency_provenance
    assert "held out" in hw.efficiency_provenance
    assert {"tc_eff", "dram_eff", "attn_tc_eff", "host_op_us"} <= set(hw.efficiency)


def _e2e_rows():
    import csv

    with open(ROOT / "validation/h100/e2e.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_replay_of_the_measured_steps_is_the_calibrated_step_model(tmp_path):
    """`neupims replay` of each measured GPT-3 6.7B/13B/30B step (trace from `neupims trace`;
    a decode step measured at `seq` keys is the trace over seq - 1 cached tokens) gives the
    step model's time, the very number calibration predicts, for both dispatch modes; over the
    project's end-to-end set its MAPE is within 5 % of eager PyTorch and 3 % of CUDA-graph
    replays (issue 11)."""
    import json

    import numpy as np

    from neupims.calibrate import load_measurements, predict_sample
    from neupims.cli import main
    from neupims.devices import get_model
    from neupims.workloads import trace, write_trace

    hw = load_hw("h100_sxm")
    model = get_model(hw)
    samples = {(s.key, s.kind): s for s in load_measurements([ROOT / "validation/h100/e2e.csv"])}
    err = {"eager": [], "graph": []}
    rows = _e2e_rows()
    for i, row in enumerate(rows):
        b, seq = int(row["batch"]), int(row["seq"])
        ctx = seq - 1 if row["phase"] == "decode" else seq
        tr = trace(row["model"], row["phase"], b, ctx)
        key = f"e2e|{row['model']}|{row['phase']}|{b}|{seq}"
        for dispatch, kind, col in (("eager", "e2e", "measured_s"),
                                    ("graph", "e2e_graph", "graph_measured_s")):  # fmt: skip
            step = model.step([t.op for t in tr], dispatch).latency_s
            assert step == predict_sample(model, samples[(key, kind)])
            err[dispatch].append(abs(step / float(row[col]) - 1))
        if i % 12 == 0:  # the CLI on a third of the models' rows: same number, in the JSON
            path, summary = tmp_path / f"t{i}.csv", tmp_path / f"s{i}.json"
            write_trace(tr, path)
            argv = ["replay", str(path), "--hw", "h100_sxm", "--summary", str(summary)]
            assert main(argv) == 0
            d = json.loads(summary.read_text())
            assert d["dispatch"] == "eager"  # the default: plain PyTorch
            assert d["step_latency_s"] == pytest.approx(model.step([t.op for t in tr]).latency_s)
            assert {"gpu_busy_s", "ops", "flops", "bytes", "peak_footprint_bytes"} <= set(d)
    assert len(rows) == 36 and {r["model"] for r in rows} == {"gpt3-6.7b", "gpt3-13b", "gpt3-30b"}
    assert 100 * np.mean(err["eager"]) <= 5.0
    assert 100 * np.mean(err["graph"]) <= 3.0


def test_step_model_on_llama_steps_it_was_never_fitted_to():
    """validation/h200/llama_e2e: 28 Llama-2 / ChatGLM2 steps (RMSNorm, SwiGLU, grouped-query
    attention) timed on the H200 and used by no fit. The GPU time (CUDA-graph replay) of the
    step model is within 5 % MAPE of them; eager steps are reported, not bounded here: their
    host dispatch per traced op depends on the model code (docs/gpu.md)."""
    from neupims.calibrate import error_report, load_measurements

    samples = load_measurements([ROOT / "validation/h200/llama_e2e/e2e_llama.csv"])
    assert {s.key.split("|")[1] for s in samples} == {
        "llama2-7b",
        "llama2-13b",
        "chatglm2-6b",
        "llama2-70b",
    }
    rows = {r["group"]: r for r in error_report(load_hw("h200_sxm"), samples)}
    assert rows["e2e_graph"]["n"] == 28
    assert rows["e2e_graph"]["mape_all"] <= 5.0
