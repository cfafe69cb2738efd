"""neupims calibrate: the fit recovers known constants, writes them back with provenance,
and bad measured files get clear errors. neupims crosscheck without a GPU fails clearly."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from neupims.calibrate import (
    Sample,
    calibrate,
    load_measurements,
    predict,
    write_efficiency,
)
from neupims.cli import main
from neupims.config import load_hw
from neupims.errors import TraceError
from neupims.ops import Gemm

ROOT = Path(__file__).resolve().parents[1]


def _gemm_samples(hw, truth: dict[str, float], seed: int = 0) -> list[Sample]:
    rng = np.random.default_rng(seed)
    ops = [Gemm(int(m), int(n), int(k)) for m, n, k in zip(
        2 ** rng.integers(0, 13, 60), 1024 * rng.integers(1, 24, 60),
        1024 * rng.integers(1, 24, 60), strict=True)]  # fmt: skip
    stub = [Sample(f"g{i}", "gemm", "op", 1.0, op=op) for i, op in enumerate(ops)]
    times = predict(hw, stub, truth)
    return [
        Sample(s.key, "gemm", "op", float(t), op=s.op) for s, t in zip(stub, times, strict=True)
    ]


def test_fit_recovers_known_constants():
    hw = load_hw("h100_sxm")
    truth = {"tc_eff": 0.6, "dram_eff": 0.7, "gemm_fixed_us": 6.0}
    samples = _gemm_samples(hw, truth)
    fit = calibrate(hw, samples, groups={"gemm": tuple(truth)})
    for k, v in truth.items():
        assert fit.efficiency[k] == pytest.approx(v, rel=0.02), k


def test_groups_without_samples_keep_their_values():
    hw = load_hw("h100_sxm")
    samples = _gemm_samples(hw, {"tc_eff": 0.6})
    fit = calibrate(hw, samples, groups={"attention": ("attn_tc_eff",)})
    assert fit.efficiency["attn_tc_eff"] == hw.efficiency["attn_tc_eff"]
    assert fit.n_fit["attention"] == 0


def test_write_back_keeps_comments_and_records_provenance(tmp_path):
    path = tmp_path / "gpu.yaml"
    shutil.copy(ROOT / "hw_configs/h100_sxm.yaml", path)
    before = [ln for ln in path.read_text().splitlines() if "whitepaper" in ln]
    eff = {**load_hw(path).efficiency, "tc_eff": 0.5}
    write_efficiency(path, eff, 'fitted from "x.csv" on a test')
    hw = load_hw(path)
    assert hw.efficiency["tc_eff"] == 0.5
    assert hw.efficiency_provenance == 'fitted from "x.csv" on a test'
    assert [ln for ln in path.read_text().splitlines() if "whitepaper" in ln] == before


def _write_measured(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def test_cli_calibrates_a_copy_and_writes_it(tmp_path, capsys):
    cfg = tmp_path / "gpu.yaml"
    shutil.copy(ROOT / "hw_configs/h100_sxm.yaml", cfg)
    with open(ROOT / "validation/h100/ops.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["suite"] == "linear"][:60]
    measured = tmp_path / "m.csv"
    _write_measured(measured, rows)
    rc = main(["calibrate", "--hw", str(cfg), "--measured", str(measured), "--write",
               "-o", str(tmp_path / "samples.csv")])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    assert "gemm" in out and "held out" in out
    first = load_hw(cfg)
    assert "m.csv" in first.efficiency_provenance
    assert (tmp_path / "samples.csv").read_text().count("\n") == 61
    # re-running starts from the same defaults: the same constants come out
    assert main(["calibrate", "--hw", str(cfg), "--measured", str(measured), "--write"]) == 0
    assert load_hw(cfg).efficiency == first.efficiency


def test_bad_measured_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.csv"
    _write_measured(bad, [{"suite": "linear", "op": "gemm", "m": "1", "n": "2", "k": "x",
                           "measured_s": "1e-5"}])  # fmt: skip
    with pytest.raises(TraceError, match=r"bad.csv: line 2: k must be an integer"):
        load_measurements([bad])
    nomeas = tmp_path / "nomeas.csv"
    _write_measured(nomeas, [{"op": "gemm", "m": "1", "n": "2", "k": "3"}])
    with pytest.raises(TraceError, match="no 'measured_s' column"):
        load_measurements([nomeas])


def test_cli_calibrate_rejects_non_gpu_configs(capsys):
    rc = main(["calibrate", "--hw", "npu_neupims", "--measured",
               str(ROOT / "validation/h100/e2e.csv")])  # fmt: skip
    assert rc == 2
    assert "GPU" in capsys.readouterr().err


def _have_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(_have_cuda(), reason="this machine has a GPU: the no-GPU path is untested")
def test_crosscheck_without_a_gpu_says_so_and_fails(tmp_path, capsys):
    rc = main(["crosscheck", "--hw", "h100_sxm", "-o", str(tmp_path / "cc")])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no GPU cross-check possible" in err or "no CUDA GPU" in err
    assert not (tmp_path / "cc").exists()


def test_crosscheck_of_a_kind_without_checker_fails_clearly(tmp_path, capsys):
    rc = main(["crosscheck", "--hw", "npu_neupims", "-o", str(tmp_path / "cc")])
    assert rc == 2
    assert "no cross-check for 'npu'" in capsys.readouterr().err
