"""Long convolutions: the op's counts and validation, its trace rows, the GPU model against
the H200 measurements (validation/kernels) and FlashButterfly's physics and headline
(experiments/longconv_gpu.yaml; docs/kernels.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from neupims.config import load_hw
from neupims.devices import get_model
from neupims.devices.gpu_longconv import implied_butterfly_tc_scale, radices
from neupims.experiments import load_experiment
from neupims.ops import LongConv
from neupims.workloads.trace_io import TracedOp, parse_trace, write_trace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hw():
    return load_hw("a100_40gb")


@pytest.fixture(scope="module")
def a100(hw):
    return get_model(hw)


def test_counts():
    op = LongConv(batch=2, channels=3, length=1000, dtype="fp32")
    n = 2000
    assert op.fft_size == n and op.sequences == 6
    assert op.flops == pytest.approx(6 * (2 * 2.5 * n * math.log2(n) + 6 * (n // 2 + 1)))
    assert op.direct_flops == 6 * 1000 * 1001  # causal: sum of (t + 1) MACs, 2 FLOPs each
    assert op.min_bytes == (2 * 6 + 3) * 1000 * 4  # u, y and the kernel


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"algo": "monarch"}, "algo must be one of"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"length": 0}, "length must be positive"),
    ],
)
def test_bad_fields(kw, message):
    with pytest.raises(ValueError, match=message):
        LongConv(**{"batch": 1, "channels": 4, "length": 64, **kw})


def test_trace_rows_round_trip():
    ops = [LongConv(1, 768, 4096, dtype="fp16", algo="butterfly"), LongConv(8, 256, 1024)]
    text = write_trace([TracedOp("L0.mixer", op) for op in ops])
    assert [t.op for t in parse_trace(text)] == ops


def test_radix_16_stages():
    assert radices(256) == [16, 16]
    assert radices(8192) == [16, 16, 16, 2]
    assert math.prod(radices(1 << 17)) == 1 << 17


def test_fft_and_direct_match_the_h200_measurements():
    """After the fit of ``fft_simt_eff`` (validation/kernels/fit.py): the whole FFT
    convolution (pad, rfft, multiply, irfft) and the direct conv1d, measured / model."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("kernels_fit", ROOT / "validation/kernels/fit.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.fit(ROOT / "validation/kernels/h200/kernels.csv")["rows"]
    conv = [r for r in rows if r["suite"] == "longconv" and r["kernel"] == "fft"]
    direct = [r for r in rows if r["suite"] == "longconv" and r["kernel"] == "direct"]
    assert len(conv) == 8 and len(direct) == 2
    for r in conv:
        assert r["measured_s"] / r["model_s_after_fit"] == pytest.approx(1.0, rel=0.4), r
    for r in direct:
        assert r["measured_s"] / r["model_s_after_fit"] == pytest.approx(1.0, rel=0.2), r


def _speedup(model, n, dtype="fp16", base_dtype="fp16"):
    b = model.estimate(LongConv(32, 256, n, dtype=dtype, algo="butterfly"))
    f = model.estimate(LongConv(32, 256, n, dtype=base_dtype, algo="fft"))
    return f.latency_s / b.latency_s, dict(b.detail)


def test_butterfly_advantage_grows_with_length_until_sram_then_drops(a100, hw):
    # lengths where 2N is a power of 16 (only full 16x16 stages): 128, 2048
    s_short, _ = _speedup(a100, 128)
    s_long, d_long = _speedup(a100, 2048)
    assert d_long["passes"] == 1 and s_long > s_short
    # the longest sequence that fits one SM's shared memory vs the next length
    fits = [n for n in (2**i for i in range(8, 18)) if 2 * n * 4 <= hw.smem_per_sm_bytes]
    last, first_out = fits[-1], fits[-1] * 2
    s_in, d_in = _speedup(a100, last)
    s_out, d_out = _speedup(a100, first_out)
    assert (d_in["passes"], d_out["passes"]) == (1, 3)
    assert s_out < 0.7 * s_in


def test_without_tensor_cores_the_dense_dfts_lose(a100):
    """FP32 butterflies run on CUDA cores on this config (``matmul_fp32_math: fp32``): dense
    16-point DFTs do 128 FLOPs per point per stage against the FFT's ~10."""
    for n in (1024, 16384, 131072):
        s, d = _speedup(a100, n, dtype="fp32", base_dtype="fp32")
        assert d["math"] == "simt" and s < 1.0


def test_implied_tensor_efficiency_reproduces_the_target(hw):
    op = LongConv(32, 256, 4096, dtype="fp16", algo="butterfly")
    base = LongConv(32, 256, 4096, dtype="fp32", algo="fft")
    scale = implied_butterfly_tc_scale(hw, 2.2, op, base)
    assert 0.05 < scale < 0.5
    cfg = hw.model_copy(update={"efficiency": {**hw.efficiency, "butterfly_tc_scale": scale}})
    m = get_model(cfg)
    assert m.estimate(base).latency_s / m.estimate(op).latency_s == pytest.approx(2.2, rel=0.01)


@pytest.fixture(scope="module")
def sweep():
    exp = load_experiment(ROOT / "experiments/longconv_gpu.yaml")
    out = []
    for p in exp.points:
        r = exp.kind.run_point(exp.kind.schema(**p.config))
        out.append((p.config["label"], p.config["fields"]["length"], r))
    return out


def test_headline_model_overestimates_the_papers_2_2x(sweep):
    """docs/kernels.md: at a GEMM's tensor-core efficiency the modelled FlashButterfly is
    3.4-7.3x faster than cuFFT on every swept length, above the paper's 2.2x."""
    assert len(sweep) == 20
    for label, n, r in sweep:
        assert 3.0 < r["speedup_vs_baseline"] < 8.0, (label, n)
        assert json.loads(r["detail"])["passes"] == (1 if n <= 16384 else 3)


def test_headline_at_the_implied_efficiency_is_flat_over_length(hw):
    """With the efficiency the 2.2x implies at N = 4K, every swept length lands within 25 %
    of 2.2x: the paper's single number is consistent with a length-independent speedup."""
    op = LongConv(32, 256, 4096, dtype="fp16", algo="butterfly")
    base = LongConv(32, 256, 4096, dtype="fp32", algo="fft")
    scale = implied_butterfly_tc_scale(hw, 2.2, op, base)
    cfg = hw.model_copy(update={"efficiency": {**hw.efficiency, "butterfly_tc_scale": scale}})
    m = get_model(cfg)
    for n in (2**i for i in range(8, 18)):
        s, _ = _speedup(m, n, base_dtype="fp32")
        assert s == pytest.approx(2.2, rel=0.25), n
