"""GPU model behaviour: tiles and waves, split-K, flat GEMM, attention, conv algorithms."""

from __future__ import annotations

import math

import pytest

from neupims.calibrate import gpu_model
from neupims.config import load_hw
from neupims.devices import get_model
from neupims.devices.gpu_conv import CONV_ALGOS, EXHAUSTIVE_FAMILY
from neupims.ops import Attention, Conv2d, Elementwise, Gemm, Gemv, QuantGemm, dtype_bytes


@pytest.fixture(scope="module")
def h100():
    return load_hw("h100_sxm")


@pytest.fixture(scope="module")
def model(h100):
    return get_model(h100)


def test_gpu_model_is_the_default_for_gpu_configs(model):
    assert model.name == "gpu"
    assert model.estimate(Gemm(64, 64, 64)).model == "gpu"


def test_wave_quantisation_one_tile_past_the_sms_costs_a_second_wave(h100):
    # one fixed 128x128 tile: 132 tiles fill the 132 SMs once, 133 need a second wave
    m = gpu_model(h100)
    k = 65536
    one = m.gemm_plan(128 * 132, 128, k, 1, "fp16", tiles=((128, 128),), stream_k=False)
    two = m.gemm_plan(128 * 133, 128, k, 1, "fp16", tiles=((128, 128),), stream_k=False)
    assert (one.waves, two.waves) == (1, 2)
    assert two.t_compute == pytest.approx(2 * one.t_compute)
    # stream-K spreads the one extra tile's work over all SMs, for a fix-up cost
    sk = m.gemm_plan(128 * 133, 128, k, 1, "fp16", tiles=((128, 128),))
    fix = m.eff["streamk_fixup"]
    assert sk.t_compute == pytest.approx(133 / 132 * one.t_compute * (1 + fix))


def test_flat_gemm_splits_k_and_is_memory_bound(model):
    c = model.estimate(Gemv(1, 4096, 16384))
    d = dict(c.detail)
    assert d["split_k"] > 1
    assert c.bound == "memory"
    # latency ~ weight bytes at the achieved bandwidth plus the fixed kernel time
    e = model.eff
    expect = 4096 * 16384 * 2 / (e["dram_eff"] * model.bw) + e["gemm_fixed_us"] * 1e-6
    assert c.latency_s == pytest.approx(expect, rel=0.02)


def test_large_gemm_is_compute_bound_below_peak(model, h100):
    op = Gemm(8192, 8192, 8192)
    c = model.estimate(op)
    assert c.bound == "compute"
    achieved = op.flops / c.latency_s
    assert 0.5 * h100.peak_flops("fp16") < achieved < h100.peak_flops("fp16")


def test_flashdecoding_flat_gemm_pads_m_to_8(h100):
    cublas = gpu_model(h100)
    flat = gpu_model(h100.model_copy(update={"flat_gemm": True}))
    op = Gemm(8, 4096, 4096)
    a, b = dict(cublas.estimate(op).detail), dict(flat.estimate(op).detail)
    assert a["useful_mma_fraction"] <= 8 / 64 + 1e-9  # M padded to a 64-row tile
    assert b["tile"].startswith("8x") and b["useful_mma_fraction"] == pytest.approx(1.0)
    assert flat.estimate(op).latency_s <= cublas.estimate(op).latency_s


def test_fp32_matmul_runs_on_cuda_cores_unless_tf32(h100):
    simt = gpu_model(h100)
    tf32 = gpu_model(h100.model_copy(update={"matmul_fp32_math": "tf32"}))
    op = Gemm(4096, 4096, 4096, dtype="fp32")
    assert simt.math_of("fp32")[0] == "simt"
    assert tf32.estimate(op).latency_s < simt.estimate(op).latency_s / 3


def test_decode_attention_streams_the_kv_cache(model):
    short = model.estimate(Attention(64, 32, 32, 1, 1024, 128))
    long = model.estimate(Attention(64, 32, 32, 1, 2048, 128))
    assert short.bound == long.bound == "memory"
    assert 1.8 < long.latency_s / short.latency_s < 2.05
    assert dict(long.detail)["kernel"] == "flash_decoding"


def test_causal_prefill_does_about_half_the_work(model):
    full = model.estimate(Attention(16, 32, 32, 2048, 2048, 128))
    causal = model.estimate(Attention(16, 32, 32, 2048, 2048, 128, causal=True))
    assert 0.4 < causal.latency_s / full.latency_s < 0.65


def test_elementwise_is_bandwidth_bound_with_a_floor(model):
    tiny = model.estimate(Elementwise("add", 1024))
    big = model.estimate(Elementwise("add", 2**28))
    assert tiny.latency_s == pytest.approx(model.eff["ew_fixed_us"] * 1e-6, rel=0.05)
    gbps = big.bytes / big.latency_s / 1e9
    assert 0.5 * 3350 < gbps < 3350


def test_weight_only_int4_decode_gains_the_byte_ratio(model):
    fp16 = model.estimate(Gemm(1, 12288, 4096))
    int4 = model.estimate(QuantGemm(1, 12288, 4096, wbits=4, group_size=64))
    bytes_ratio = (12288 * 4096 * 2) / QuantGemm(1, 12288, 4096).weight_bytes
    assert bytes_ratio == pytest.approx(16 / (4 + 16 / 64))  # docs/sources/kernels.md §3
    assert 1.5 < fp16.latency_s / int4.latency_s <= bytes_ratio


CONV = Conv2d(32, 64, 56, 56, 64, 3, 3, pad=1, dtype="fp16")


@pytest.mark.parametrize("algo", sorted(CONV_ALGOS))
def test_every_conv_algorithm_reports_workspace_and_footprint(model, algo):
    op = Conv2d(**{**CONV.fields(), "algo": algo})
    c = model.estimate(op)
    d = dict(c.detail)
    b = dtype_bytes(op.dtype)
    io = (op.input_elems + op.filter_elems + op.output_elems) * b
    assert d["algo_used"] == algo
    assert c.footprint_bytes == pytest.approx(io + d["workspace_bytes"])
    expect_ws = {"im2col": op.im2col_elems * b, "im2win": op.im2win_elems * b, "direct": 0.0}
    if algo in expect_ws:
        assert d["workspace_bytes"] == pytest.approx(expect_ws[algo])
    assert c.latency_s > 0 and math.isfinite(c.latency_s)


def test_exhaustive_auto_is_the_fastest_cudnn_algorithm(model):
    m = model.variant(conv_algo_choice="exhaustive")
    auto = m.estimate(Conv2d(**{**CONV.fields(), "algo": "auto"}))
    times = {a: m.estimate(Conv2d(**{**CONV.fields(), "algo": a})).latency_s
             for a in EXHAUSTIVE_FAMILY}  # fmt: skip
    assert auto.latency_s == pytest.approx(min(times.values()))
    assert dict(auto.detail)["algo_used"] == min(times, key=times.get)


def test_im2win_window_is_a_third_of_im2col_for_3x3_stride_1(model):
    op = Conv2d(128, 64, 56, 56, 64, 3, 3, algo="im2win", dtype="fp32")
    win = dict(model.estimate(op).detail)["workspace_bytes"]
    col = dict(model.estimate(Conv2d(**{**op.fields(), "algo": "im2col"})).detail)[
        "workspace_bytes"
    ]
    assert win / col == pytest.approx(op.w / (op.wo * op.s), rel=1e-9)  # docs/sources/kernels.md §1


def test_1x1_stride_1_im2win_needs_no_window_copy(model):
    op = Conv2d(32, 256, 14, 14, 1024, 1, 1, algo="im2win")
    d = dict(model.estimate(op).detail)
    assert d["workspace_bytes"] == 0.0 and d["transform_s"] == 0.0


def test_cudnn_picks_its_kernel_family_from_the_shape(model):
    """As measured on the H200 (kernel names and allocations): NCHW GEMM for aligned 1x1
    (no workspace), NHWC implicit GEMM otherwise (workspace of input + filter + output),
    the CUDA-core kernel for 3-channel stems (NHWC when strided), the tensor-core first
    layer kernel for 16-bit 7x7 stride-2 stems, and with TF32 off the NCHW FMA kernel."""

    def plan(m=model, **kw):
        op = Conv2d(**{"batch": 32, "h": 28, "w": 28, "dtype": "fp16",
                       "algo": "implicit_gemm", **kw})  # fmt: skip
        d = dict(m.estimate(op).detail)
        io = (op.input_elems + op.filter_elems + op.output_elems) * dtype_bytes(op.dtype)
        return d["kernel"], d["workspace_bytes"], io

    kernel, ws, _ = plan(c=128, kout=512, r=1, s=1)  # H*W = 784: 16-byte rows
    assert kernel.startswith("cudnn_nchw_gemm") and ws == 0.0
    kernel, ws, io = plan(c=512, kout=2048, r=1, s=1, h=7, w=7)  # H*W = 49: not aligned
    assert kernel.startswith("cudnn_nhwc_implicit_gemm") and ws >= io
    kernel, ws, _ = plan(c=512, kout=2048, r=1, s=1, h=7, w=7, batch=1)  # one image
    assert kernel.startswith("cudnn_nchw_gemm")
    kernel, ws, io = plan(c=128, kout=128, r=3, s=3, pad=1)
    assert kernel.startswith("cudnn_nhwc_implicit_gemm") and ws >= io
    kernel, ws, _ = plan(c=3, kout=64, r=3, s=3, pad=1, h=224, w=224)  # read as NCHW
    assert kernel == "cudnn_simt" and ws == 0.0
    kernel, ws, io = plan(c=3, kout=64, r=7, s=7, stride=2, pad=3, h=224, w=224, dtype="fp32")
    assert kernel == "cudnn_simt" and ws == pytest.approx(io)  # TF32: via NHWC
    kernel, ws, _ = plan(c=3, kout=64, r=7, s=7, stride=2, pad=3, h=224, w=224)
    assert kernel == "cudnn_first_layer_tensor"
    fma = model.variant(conv_fp32_math="fp32")
    kernel, ws, _ = plan(fma, c=128, kout=128, r=3, s=3, pad=1, dtype="fp32")
    assert kernel == "cudnn_nchw_implicit_gemm_fma" and ws == 0.0
    kernel, ws, _ = plan(fma, c=3, kout=64, r=7, s=7, stride=2, pad=3, h=224, w=224,
                         dtype="fp32")  # fmt: skip
    assert kernel == "cudnn_simt" and ws == 0.0  # implicit_convolve_sgemm on NCHW


def test_stem_simt_rate_grows_with_the_filter_taps(model):
    def tflops(r):
        op = Conv2d(32, 3, 224, 224, 64, r, r, pad=r // 2, dtype="fp32", algo="implicit_gemm")
        return op.flops / model.estimate(op).latency_s

    assert tflops(3) < tflops(7) < tflops(11)
    e = model.eff
    peak = model.hw.cuda_core_tflops["fp32"] * 1e12
    assert tflops(11) < peak * e["conv_simt_eff"]


def test_split_k_conv_pays_a_reduction_kernel_and_its_workspace(model):
    # ResNet-50 res5 3x3: M = 32*7*7 = 1568 rows, too few tiles to fill 132 SMs
    op = Conv2d(32, 512, 7, 7, 512, 3, 3, pad=1, dtype="fp16", algo="implicit_gemm")
    d = dict(model.estimate(op).detail)
    assert d["split_k"] > 1
    b = dtype_bytes(op.dtype)
    m, n, _ = op.gemm_mnk
    layout = (op.input_elems + op.filter_elems + op.output_elems) * b
    assert d["workspace_bytes"] == pytest.approx(layout + d["split_k"] * m * n * 4)


def test_unfold_of_few_channel_large_filters_is_latency_bound(model):
    """C*Ho*Wo threads per image, R*S taps each: an 11x11 3-channel stem cannot fill the
    GPU, so its unfold time grows with the taps, not with the bytes written."""
    from neupims.devices.gpu_conv import unfold_serial_time

    stem = Conv2d(128, 3, 227, 227, 96, 11, 11, stride=4, dtype="fp16", algo="im2col")
    assert stem.c * stem.ho * stem.wo < model.hw.sms * 2048
    t_taps = unfold_serial_time(model, stem)
    assert t_taps == pytest.approx(121 * model.eff["unfold_tap_ns"] * 1e-9)
    per_image_bytes = (stem.input_elems + stem.im2col_elems) * 2 / stem.batch
    assert t_taps > per_image_bytes / (model.eff["unfold_bw_eff"] * model.bw)
    d = dict(model.estimate(stem).detail)
    assert d["unfold_s"] >= stem.batch * t_taps


def test_gpu_efficiency_typo_is_an_error_naming_the_key():
    from neupims.config.hardware import parse_hw
    from neupims.errors import ConfigError

    data = load_hw("h100_sxm").model_dump()
    data["efficiency"] = {**data["efficiency"], "tc_efff": 0.5}
    with pytest.raises(
        ConfigError,
        match=r"h100.yaml: efficiency.tc_efff: unknown efficiency constant "
        r"\(did you mean 'tc_eff'\?\)",
    ):
        parse_hw(data, "h100.yaml")
