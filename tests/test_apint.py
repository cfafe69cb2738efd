"""bipolar-INT arbitrary-precision GEMM: the op, its GPU cost and the apint_gpu experiment."""

from __future__ import annotations

import pytest

from neupims.config import load_hw
from neupims.devices import get_model
from neupims.devices.gpu_apint import padded_dtype
from neupims.errors import ConfigError, TraceError
from neupims.ops import ApintGemm, op_from_row


@pytest.fixture(scope="module")
def gpu():
    return get_model(load_hw("rtx3090"))


# ------------------------------------------------------------------------- the op
@pytest.mark.parametrize("w,a", [(1, 1), (1, 2), (3, 5), (8, 8)])
def test_closed_form_counts(w, a):
    m, n, k = 24, 40, 96
    op = ApintGemm(m, n, k, w, a)
    assert op.bit_mmas == w * a * m * n * k  # one-bit MMAs of the w*a bit-plane GEMMs
    assert op.flops == 2 * m * n * k
    assert op.weight_bytes == n * k * w / 8  # w bit-planes of n*k bits
    assert op.act_bytes == m * k * a / 8
    assert op.min_bytes == n * k * w / 8 + m * k * a / 8 + m * n * 2  # fp16 out


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"wbits": 0}, "wbits must be an integer from 1 to 8 bits, got 0"),
        ({"wbits": 9}, "wbits must be an integer from 1 to 8 bits, got 9"),
        ({"abits": 12}, "abits must be an integer from 1 to 8 bits, got 12"),
        ({"kernel": "cublas"}, "kernel must be one of"),
        ({"m": 0}, "m must be positive"),
    ],
)
def test_bad_fields_are_rejected(kw, msg):
    with pytest.raises(ValueError, match=msg):
        ApintGemm(**{"m": 8, "n": 8, "k": 8, **kw})


def test_trace_row_with_bad_bits_names_the_column():
    with pytest.raises(ValueError, match="abits must be an integer from 1 to 8"):
        op_from_row({"op": "apint_gemm", "m": "1", "n": "8", "k": "8", "abits": "9"})


def test_trace_csv_error_names_file_and_line(tmp_path):
    from neupims.workloads import read_trace

    p = tmp_path / "t.csv"
    p.write_text(
        "op,layer,m,n,k,wbits,abits\napint_gemm,L0,1,64,64,2,2\napint_gemm,L1,1,64,64,0,2\n"
    )
    with pytest.raises(TraceError, match=r"t\.csv: line 3: .*wbits"):
        read_trace(p)


def test_padded_precision_of_the_cutlass_baseline():
    assert [padded_dtype(w, a) for w, a in [(1, 1), (3, 3), (4, 4), (2, 5), (8, 1)]] == [
        "int4", "int4", "int4", "int8", "int8"]  # fmt: skip


# ------------------------------------------------------------------------- GPU cost
def test_gpus_without_the_peak_are_rejected():
    h100 = get_model(load_hw("h100_sxm"))  # H100 datasheet: no INT4, no binary tensor peak
    with pytest.raises(ConfigError, match="h100-sxm: tensor_tflops has no 'int1' peak"):
        h100.estimate(ApintGemm(64, 64, 64))
    with pytest.raises(ConfigError, match="no 'int4' peak"):
        h100.estimate(ApintGemm(64, 64, 64, kernel="cutlass_padded"))


def test_bit_plane_packing_pass_moves_the_closed_form_bytes(gpu):
    m, k, a = 512, 4096, 3
    d = dict(gpu.estimate(ApintGemm(m, 4096, k, 2, a)).detail)
    # reads the fp16 activations, writes a bit-planes of m*k bits
    assert d["pack_s"] == pytest.approx(gpu.stream_time(m * k * 2 + a * m * k / 8))


def test_kernel_dram_traffic_is_weights_at_wbits_acts_at_abits_outputs_once(gpu):
    op = ApintGemm(4096, 11008, 4096, 2, 3)  # enough tiles: no split-K partials
    cost = gpu.estimate(op)
    assert cost.bytes == pytest.approx(op.weight_bytes + op.act_bytes + op.m * op.n * 2)


def test_recovery_is_one_fma_per_partial_product(gpu):
    op = ApintGemm(1024, 2048, 4096, 3, 2)
    d = dict(gpu.estimate(op).detail)
    simt = gpu.hw.cuda_core_tflops["fp32"] * 1e12 * gpu.eff["simt_eff"]
    assert d["recover_s"] == pytest.approx(2 * 3 * 2 * 1024 * 2048 / simt)


def test_compute_bound_speedup_follows_the_peak_ratio(gpu):
    """Large M: time ~ w*a one-bit GEMMs at the b1 peak against one int4 GEMM at its peak."""
    hw = gpu.hw
    for w, a in [(1, 1), (1, 2), (2, 2)]:
        k = {kern: dict(gpu.estimate(ApintGemm(4096, 11008, 4096, w, a, kernel=kern)).detail)
             for kern in ("bipolar_int", "cutlass_padded")}  # fmt: skip
        ratio = k["cutlass_padded"]["kernel_s"] / k["bipolar_int"]["kernel_s"]
        ideal = hw.tensor_tflops["int1"] / (w * a) / hw.tensor_tflops["int4"]
        assert ratio == pytest.approx(ideal, rel=0.06)  # recovery + fixed time: a few %


def test_memory_bound_speedup_is_below_the_weight_byte_ratio(gpu):
    for w in (1, 2, 3):
        t = {kern: dict(gpu.estimate(ApintGemm(1, 11008, 4096, w, 2, kernel=kern)).detail)
             for kern in ("bipolar_int", "cutlass_padded")}  # fmt: skip
        ratio = t["cutlass_padded"]["kernel_s"] / t["bipolar_int"]["kernel_s"]
        assert 1.0 < ratio < 4 / w  # int4 weights vs w-bit weights, minus fixed time


def test_wide_pairs_lose_to_cutlass_when_compute_bound(gpu):
    """w*a one-bit GEMMs cost more than one int8 GEMM once w*a > b1 / int8 peak (= 8)."""
    t = {kern: gpu.estimate(ApintGemm(4096, 4096, 4096, 4, 4, kernel=kern)).latency_s
         for kern in ("bipolar_int", "cutlass_padded")}  # fmt: skip
    assert t["bipolar_int"] > t["cutlass_padded"]


# ------------------------------------------------------------------------- experiment
@pytest.fixture(scope="module")
def kind():
    from neupims.experiments.kinds import get_kind

    return get_kind("apint_gpu")


def _run(kind, **kw):
    return kind.run_point(kind.schema(**kw))


def test_matmul_headline_w1a2(kind):
    """Paper: up to 2.4x over CUTLASS. Model, W1A2 (int4 baseline) on the Llama-2-7B shapes
    of experiments/apint_gpu.yaml: its maximum is within 15 % (docs: 2.32x at M = 1,
    11008 x 4096, memory-bound; W1A1 reaches 3.8x, above the paper)."""
    best = max(
        _run(kind, wa="w1a2", m=m, n=n, k=4096)["speedup_vs_cutlass"]
        for m in (1, 16, 256, 4096)
        for n in (4096, 11008)
    )
    assert best == pytest.approx(2.4, rel=0.15)


def test_e2e_headline_w1a2_prefill(kind):
    """Paper: up to 6.7x LLM inference. Model: Llama-2-7B prefill (1 x 1024) at W1A2 over
    fp16 within 20 % (7.4x; decode at batch 1 gives 4.0x)."""
    r = _run(kind, wa="w1a2", workload="llama2-7b", phase="prefill", batch=1, seq=1024)
    assert r["speedup_vs_fp16"] == pytest.approx(6.7, rel=0.2)
    d = _run(kind, wa="w1a2", workload="llama2-7b", phase="decode", batch=1, seq=1024)
    assert 1 < d["speedup_vs_fp16"] < r["speedup_vs_fp16"]


def test_point_errors(kind):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="w<bits>a<bits>"):
        kind.schema(wa="w9a2")
    with pytest.raises(ValidationError, match="zoo model"):
        kind.schema(workload="llama9")
    with pytest.raises(ConfigError, match="needs a gpu"):
        _run(kind, hw="npu_neupims")
