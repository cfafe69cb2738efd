"""CPU cross-check: the committed fit data, the fitter, and a live quick run on this machine."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from neupims.devices import cpu_fit
from neupims.devices.cpu_detect import VALIDATION_DIR, detect
from neupims.errors import TraceError
from neupims.ops import Gemm, Gemv

DATA = VALIDATION_DIR / "measured_amd-epyc-2c.csv"
FIT = VALIDATION_DIR / "fitted_amd-epyc-2c.json"


@pytest.fixture(scope="module")
def committed():
    rows = cpu_fit.read_measurements(DATA)
    return rows, json.loads(FIT.read_text())


def _blas_1t(rows):
    return [r for r in cpu_fit.fit_rows(rows) if isinstance(r.op, Gemm)]


def test_committed_data_covers_the_issue_range(committed):
    rows, _ = committed
    blas = _blas_1t(rows)
    gemm = {(r.op.m, r.op.n, r.op.k) for r in blas if type(r.op) is Gemm}
    gemv = {(r.op.n, r.op.k) for r in blas if isinstance(r.op, Gemv)}
    assert len(gemm | {(1, n, k) for n, k in gemv}) >= 30
    assert (64, 64, 64) in gemm and (4096, 4096, 4096) in gemm
    assert (16384, 16384) in gemv
    assert {r.op.dtype for r in blas} == {"fp32", "fp64"}
    assert {r.threads for r in rows} == {1, 2}


def test_fitted_constants_match_the_committed_data(committed):
    rows, fitted = committed
    from neupims.devices import cpu as cpu_model

    h = hashlib.sha256(DATA.read_bytes())
    for mod in (cpu_model, cpu_fit):
        h.update(Path(mod.__file__).read_bytes())
    assert fitted["sha256"] == h.hexdigest(), (
        "stale fit after a model change: refit with "
        "python -c 'from neupims.devices.cpu_detect import detect; detect()' and commit it"
    )
    # the recorded optimum is what those constants give on that data (not hand-edited)
    hw = _epyc_like()
    cfg = hw.model_copy(update={"efficiency": fitted["efficiency"]})
    train = cpu_fit.fit_rows(rows)
    assert cpu_fit.mean_abs_log_err(cfg, train) == pytest.approx(
        fitted["mean_abs_log_err"], rel=1e-3
    )
    # issue 6: single-thread GEMM/GEMV MAPE <= 15 % on this machine's data
    assert cpu_fit.mape(cfg, _blas_1t(rows)) <= 15.0


def _epyc_like():
    """The config detection builds for the machine the data was measured on (2-core AMD
    EPYC VM, Zen 3, sysfs caches 32 KB / 512 KB / 32 MB, 2.445 GHz nominal)."""
    from neupims.config.hw_cpu import CpuConfig

    ghz = 2.445402
    return CpuConfig(
        kind="cpu", name="AMD EPYC", cores=2, threads=2, frequency_ghz=ghz, simd_bits=256,
        fma_units=2, isa=["avx2", "fma"], vector_registers=16,
        l1d={"size_bytes": 32768, "bandwidth_gbps_per_core": 64 * ghz},
        l2={"size_bytes": 524288, "bandwidth_gbps_per_core": 32 * ghz},
        l3={"size_bytes": 33554432, "bandwidth_gbps_per_core": 32 * ghz, "shared": True},
        dram_bandwidth_gbps=204.8, dram_latency_ns=100.0,
    )  # fmt: skip


def test_fit_recovers_known_constants():
    """Synthetic data made by the model with known constants: the fit finds them again."""
    hw = _epyc_like()
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


def test_live_quick_crosscheck(tmp_path: Path):
    """Times the default suite here (about 6 s: 38 single-thread GEMM/GEMV rows over the
    issue's shape range) and checks them against the model at the CI tolerance of 25 %
    (issue 6). The quick suite is dominated by microsecond ops whose timing noise alone
    (13-81 % on a 256x256 GEMV) put its mean at 14-25 %, on the bound. One retry."""
    import pandas as pd

    from neupims.crosscheck.cpu import check

    hw = detect().config
    for _attempt in range(2):
        assert check(hw, None, tmp_path, quick=False) == 0
        df = pd.read_csv(tmp_path / "cpu_crosscheck.csv")
        one = df[df["class"].str.match(r"gem[mv] fp(32|64) 1t")]
        mape = float(one["ape_pct"].mean())
        if mape <= 25.0:
            break
    assert len(one) >= 30
    assert mape <= 25.0, f"single-thread GEMM/GEMV MAPE {mape:.1f} % after a retry"
    for name in ("cpu_errors.csv", "cpu_parity.png", "cpu_detection.txt"):
        assert (tmp_path / name).stat().st_size > 0
    assert np.isfinite(df["predicted_s"]).all()


def test_crosscheck_times_a_trace_and_skips_what_numpy_cannot(tmp_path: Path, capsys):
    from neupims.crosscheck.cpu import check
    from neupims.ops import Attention
    from neupims.workloads.trace_io import TracedOp

    trace = [TracedOp("l0", Gemm(64, 64, 64, dtype="fp32")),
             TracedOp("l1", Attention(1, 2, 2, 1, 16, 8, "fp32"))]  # fmt: skip
    assert check(detect().config, trace, tmp_path) == 0
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
