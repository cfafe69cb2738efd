"""CPU model against committed measurements (validation/cpu/), the fitter, the cross-check.

Deterministic: the model is scored on timings committed as CSV, with the configs committed
beside them; nothing here is timed for accuracy (benchmarks/bench_cpu_crosscheck.py does).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from neupims.config import load_hw
from neupims.devices import cpu_fit
from neupims.errors import TraceError
from neupims.ops import Gemm, Gemv

VALIDATION = Path(__file__).resolve().parents[1] / "validation" / "cpu"
AMD = VALIDATION / "measured_amd-epyc-2c.csv"
AMD_CFG = VALIDATION / "amd-epyc-2c.yaml"
XEON = VALIDATION / "measured_intel-r-xeon-r-processor-2c.csv"
XEON_CFG = VALIDATION / "intel-r-xeon-r-processor-2c.yaml"


def _blas(rows, threads=None):
    return [r for r in rows if r.op.name in ("gemm", "gemv")
            and (threads is None or (r.threads == 1) == (threads == 1))]  # fmt: skip


@pytest.fixture(scope="module")
def amd():
    return cpu_fit.read_measurements(AMD), load_hw(AMD_CFG)


@pytest.fixture(scope="module")
def xeon():
    return cpu_fit.read_measurements(XEON), load_hw(XEON_CFG)


def test_committed_data_covers_the_issue_range(amd, xeon):
    for rows, _ in (amd, xeon):
        blas = _blas(rows, 1)
        gemm = {(r.op.m, r.op.n, r.op.k) for r in blas if type(r.op) is Gemm}
        gemv = {(r.op.n, r.op.k) for r in blas if isinstance(r.op, Gemv)}
        assert len(gemm | {(1, n, k) for n, k in gemv}) >= 30
        assert (64, 64, 64) in gemm and (4096, 4096, 4096) in gemm
        assert (16384, 16384) in gemv and (4096, 4096) in gemv
        assert {r.op.dtype for r in blas} == {"fp32", "fp64"}
        assert {r.threads for r in rows} == {1, 2}


def test_committed_amd_fit_meets_the_single_thread_bar(amd):
    """The committed AMD fit (made by `bench_cpu_crosscheck.py --refit`, see the YAML's
    header) on its own data: issue 6's single-thread GEMM/GEMV bar of 15 %. Its 2-thread
    rows were timed on a contended VM and are reported in docs/cpu.md, not asserted."""
    rows, cfg = amd
    assert set(cfg.efficiency) >= set(cpu_fit.FIT_KEYS) - {"thread_us"}
    assert cpu_fit.mape(cfg, _blas(rows, 1)) <= 15.0


def test_calibrated_xeon_predicts_numpy_on_default_threads(xeon):
    """The calibration of this machine (`neupims calibrate --hw cpu`, committed with the
    cross-check timings taken in the same session): GEMM/GEMV within the CPU issue's 25 %
    MAPE on one thread and on NumPy's default thread count (2), and the 4096 x 4096 fp32
    GEMV on 2 threads no longer 2.3-2.7x off."""
    rows, cfg = xeon
    assert cfg.run_threads == 2
    assert cpu_fit.mape(cfg, _blas(rows, 1)) <= 25.0
    assert cpu_fit.mape(cfg, _blas(rows, 2)) <= 25.0
    gemv = [r for r in rows if isinstance(r.op, Gemv) and (r.op.n, r.op.k) == (4096, 4096)
            and r.op.dtype == "fp32"]  # fmt: skip
    assert {r.threads for r in gemv} == {1, 2}
    for r in gemv:
        assert 0.67 <= cpu_fit.predict(cfg, r.op, r.threads) / r.t_best_s <= 1.5


def test_committed_calibration_is_labelled(xeon):
    from neupims.devices.cpu_detect import read_labels

    labels = read_labels(XEON_CFG)
    for key in ("dram_bandwidth_gbps", "dram_bandwidth_per_core_gbps",
                "l2.bandwidth_gbps_per_core", "l3.bandwidth_gbps_per_core"):  # fmt: skip
        assert labels[key].startswith("measured by neupims calibrate on ")
    assert labels["efficiency.gemm_fp32"].startswith("fitted by neupims calibrate on ")
    assert labels["fma_units"].startswith("assumed: ")


def test_fit_recovers_known_constants(amd):
    """Synthetic data made by the model with known constants: the fit finds them again."""
    hw = amd[1].model_copy(update={"efficiency": {}})
    truth = {"gemm_fp32": 0.8, "call_us": 2.0, "bw_dram": 0.5}
    true_cfg = hw.model_copy(update={"efficiency": truth})
    ops = [Gemm(n, n, n, dtype="fp32") for n in (32, 128, 512, 1024)]
    ops += [Gemv(1, n, n, dtype="fp32") for n in (256, 8192, 16384)]
    rows = [cpu_fit.Measurement(op, 1, t, t, 3, t)
            for op in ops for t in [cpu_fit.predict(true_cfg, op, 1)]]  # fmt: skip
    before = cpu_fit.mape(hw, rows)
    res = cpu_fit.fit(hw, rows, iters=400)
    after = cpu_fit.mape(hw.model_copy(update={"efficiency": res.efficiency}), rows)
    assert before > 10 and after < 2
    assert res.efficiency["gemm_fp32"] == pytest.approx(0.8, rel=0.05)


def test_bad_measurement_row_names_file_and_line(tmp_path: Path):
    bad = tmp_path / "m.csv"
    bad.write_text(
        "op,m,n,k,dtype,threads,t_median_s,t_min_s,repeats\n"
        "gemm,64,64,64,fp32,1,1e-5,1e-5,3\n"
        "gemm,64,64,x,fp32,1,1e-5,1e-5,3\n"
    )
    with pytest.raises(TraceError, match=r"m\.csv: line 3: k must be an integer"):
        cpu_fit.read_measurements(bad)


def test_crosscheck_times_a_trace_and_skips_what_numpy_cannot(tmp_path: Path, capsys):
    from neupims.crosscheck.cpu import check
    from neupims.ops import Attention
    from neupims.workloads.trace_io import TracedOp

    trace = [TracedOp("l0", Gemm(64, 64, 64, dtype="fp32")),
             TracedOp("l1", Attention(1, 2, 2, 1, 16, 8, "fp32"))]  # fmt: skip
    assert check(load_hw("xeon_8480"), trace, tmp_path) == 0
    assert "skipped l1" in capsys.readouterr().out
    assert len(pd_read(tmp_path / "cpu_crosscheck.csv")) == 1


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path)


def test_without_thread_control_each_thread_count_runs_in_a_subprocess():
    from neupims.crosscheck.cpu import run_suite

    class NoControl:
        available = False

    pairs = [(Gemm(32, 32, 32, dtype="fp32"), 1), (Gemv(1, 64, 64, dtype="fp64"), 2),
             (Gemm(16, 16, 16, dtype="fp64"), 1)]  # fmt: skip
    rows, how = run_suite(pairs, min_time=0.0, ctl=NoControl())
    assert how.startswith("subprocess")
    assert [(r.op, r.threads) for r in rows] == pairs
    assert all(r.t_median_s > 0 and r.repeats >= 3 for r in rows)
