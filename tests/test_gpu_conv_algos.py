"""cuDNN's convolution algorithms on the GPU model (issue 13): Winograd and FFT counts in
closed form, their constraints, the algorithm choices (``conv_algo_choice``) against what
cuDNN picked on the H200, and the committed H200 measurements within the bar."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from neupims.calibrate import load_measurements
from neupims.config import load_hw
from neupims.devices import get_model
from neupims.devices.gpu_conv import (
    BENCHMARK_FAMILY,
    COMPLEX_BYTES,
    CONV_ALGOS,
    EXHAUSTIVE_FAMILY,
    WINOGRAD,
    fft_size,
    heuristic_algo,
    rfft2_coeffs,
    transform_ops,
    unsupported,
    winograd_mults_per_output,
    winograd_transform_flops,
)
from neupims.errors import NeupimsError
from neupims.ops import Conv2d

ROOT = Path(__file__).resolve().parents[1]
H200 = ROOT / "validation/h200"


@pytest.fixture(scope="module")
def h200():
    return get_model(load_hw("h200_sxm"))


def fma(model):
    return model.variant(conv_fp32_math="fp32")


# ----------------------------------------------------------------------------- Winograd
@pytest.mark.parametrize("m", [2, 4])
def test_winograd_transforms_compute_the_convolution(m):
    """Y = A^T [(G g G^T) * (B^T d B)] A equals the 2-D correlation of an alpha x alpha
    tile with a 3x3 filter (Lavin & Gray 2016, eq. 8/10), for the committed matrices."""
    t = WINOGRAD[(m, 3)]
    bt, g, at = (np.array(t[k], dtype=float) for k in ("BT", "G", "AT"))
    rng = np.random.default_rng(0)
    d = rng.standard_normal((m + 2, m + 2))
    f = rng.standard_normal((3, 3))
    y = at @ ((g @ f @ g.T) * (bt @ d @ bt.T)) @ at.T
    direct = np.array([[np.sum(d[i:i + 3, j:j + 3] * f) for j in range(m)]
                       for i in range(m)])  # fmt: skip
    np.testing.assert_allclose(y, direct, rtol=1e-9, atol=1e-9)


def test_winograd_multiply_savings_in_closed_form():
    # F(2x2, 3x3): 16 multiplies per 4 outputs against 9 each: 2.25x fewer
    assert winograd_mults_per_output(2, 3) == 16 / 4
    assert 9 / winograd_mults_per_output(2, 3) == pytest.approx(2.25)
    # F(4x4, 3x3): 36 per 16 outputs: 4x fewer
    assert winograd_mults_per_output(4, 3) == 36 / 16
    assert 9 / winograd_mults_per_output(4, 3) == pytest.approx(4.0)


def test_winograd_transform_counts_match_lavin_and_gray():
    """F(2x2, 3x3): 32 additions for the data transform and 24 for the inverse (Lavin &
    Gray 2016, section 4.1), counted from the matrices; F(4x4, 3x3) costs more per tile."""
    f23 = winograd_transform_flops(2, 3)
    assert f23["data"] == 32 and f23["output"] == 24
    assert transform_ops(((1, 0, -1, 0),)) == 1  # one addition, no multiply
    assert transform_ops(((4, 0, -5, 0, 1, 0),)) == 2 + 2  # two adds, two multiplies
    f43 = winograd_transform_flops(4, 3)
    assert f43["data"] > f23["data"] and f43["output"] > f23["output"]


def test_winograd_nonfused_workspace_is_the_measured_one(h200):
    """36 fp32 values per tile of data, filter and output: on the H200 cuDNN reported
    exactly this workspace for VGG-16 conv3_2 at batch 32 (validation/h200)."""
    op = Conv2d(32, 256, 56, 56, 256, 3, 3, pad=1, dtype="fp32", algo="winograd_nonfused")
    tiles = math.ceil(op.ho / 4) * math.ceil(op.wo / 4)
    expect = 36 * 4 * (32 * 256 * tiles + 256 * 256 + 32 * 256 * tiles)
    ws = dict(h200.estimate(op).detail)["workspace_bytes"]
    assert ws == expect
    with open(H200 / "conv_algos.csv", newline="") as fh:
        measured = [int(r["mem_extra_bytes"]) for r in csv.DictReader(fh)
                    if r["layer"] == "conv3_2" and r["batch"] == "32" and r["dtype"] == "fp32"
                    and r["algo"] == "winograd_nonfused"]  # fmt: skip
    assert measured and all(m == expect for m in measured)


def test_winograd_gemm_does_a_quarter_of_the_direct_multiplies(h200):
    op = Conv2d(128, 256, 56, 56, 256, 3, 3, pad=1, dtype="fp32", algo="winograd_nonfused")
    d = dict(fma(h200).estimate(op).detail)
    tiles = math.ceil(op.ho / 4) * math.ceil(op.wo / 4)
    gemm_flops = 2 * 36 * op.kout * op.c * op.batch * tiles
    assert gemm_flops == pytest.approx(op.flops / 4)
    # faster than the FP32 peak allows for the direct multiplies: the observation
    peak = h200.hw.cuda_core_tflops["fp32"] * 1e12
    assert op.flops / h200.estimate(op).latency_s > peak
    assert d["gemm_s"] > d["data_transform_s"] > 0


# ----------------------------------------------------------------------------- FFT
def test_fft_sizes_and_coefficients():
    assert [fft_size(n) for n in (9, 16, 30, 58, 226)] == [16, 16, 32, 64, 256]
    assert rfft2_coeffs(32) == 32 * 17 and rfft2_coeffs(64) == 64 * 33


def test_fft_workspace_and_product_flops(h200):
    """Spectra of filters, input and output in complex64 plus the padded filters; the
    spectral product is 8 real FLOPs per complex multiply-add per frequency."""
    op = Conv2d(32, 256, 28, 28, 512, 3, 3, pad=1, dtype="fp32", algo="fft")
    t, f = 32, rfft2_coeffs(32)
    ws = dict(h200.estimate(op).detail)["workspace_bytes"]
    expect = 512 * 256 * (t * t * 4 + f * COMPLEX_BYTES) + 32 * (256 + 512) * f * COMPLEX_BYTES
    assert ws == expect
    with open(H200 / "conv_algos.csv", newline="") as fh:
        measured = [int(r["mem_extra_bytes"]) for r in csv.DictReader(fh)
                    if r["layer"] == "conv4_1" and r["batch"] == "32" and r["algo"] == "fft"
                    and r["dtype"] == "fp32"]  # fmt: skip
    assert measured and all(abs(m - expect) / m < 0.07 for m in measured)
    product = 8 * 32 * 256 * 512 * f
    assert product / op.flops == pytest.approx(8 * f / (2 * 9 * 28 * 28))


def test_fft_tiling_cuts_large_images_into_32x32_tiles(h200):
    op = Conv2d(32, 64, 224, 224, 64, 3, 3, pad=1, dtype="fp32", algo="fft_tiling")
    d = dict(h200.estimate(op).detail)
    assert d["tile_positions"] == 64  # measured: 64 launches of each per-tile kernel
    full = h200.estimate(Conv2d(**{**op.fields(), "algo": "fft"}))
    assert dict(h200.estimate(op).detail)["workspace_bytes"] < dict(full.detail)["workspace_bytes"]


# ----------------------------------------------------------------------------- constraints
@pytest.mark.parametrize(
    "op, algo, why",
    [
        (Conv2d(32, 128, 56, 56, 128, 3, 3, stride=2, pad=1), "winograd_nonfused", "stride 1"),
        (Conv2d(32, 128, 56, 56, 128, 3, 3, stride=2, pad=1), "winograd", "stride 1"),
        (Conv2d(32, 3, 224, 224, 64, 7, 7, stride=2, pad=3), "winograd_nonfused", "3x3"),
        (Conv2d(32, 256, 56, 56, 64, 1, 1), "winograd", "3x3"),
        (Conv2d(32, 256, 56, 56, 512, 1, 1, stride=2), "fft", "stride 1"),
        (Conv2d(1, 3, 300, 300, 8, 3, 3, pad=1), "fft", "256"),
        (Conv2d(32, 256, 56, 56, 512, 1, 1, stride=2), "fft_tiling", "strided 1x1"),
    ],
)
def test_unsupported_algorithms_are_refused(h200, op, algo, why):
    assert why in unsupported(op, algo)
    with pytest.raises(NeupimsError, match=algo):
        h200.estimate(Conv2d(**{**op.fields(), "algo": algo}))


def test_auto_never_picks_an_unsupported_algorithm(h200):
    for choice in ("heuristic", "benchmark", "exhaustive"):
        m = h200.variant(conv_algo_choice=choice, conv_fp32_math="fp32")
        for op in (Conv2d(128, 128, 56, 56, 128, 3, 3, stride=2, pad=1, dtype="fp32"),
                   Conv2d(128, 3, 224, 224, 64, 7, 7, stride=2, pad=3, dtype="fp32")):  # fmt: skip
            algo = dict(m.estimate(op).detail)["algo_used"]
            assert unsupported(op, algo) is None


# ----------------------------------------------------------------------------- choices
def test_heuristic_picks_fft_only_for_wide_fp32_3x3_layers(h200):
    vgg = lambda n, c, h, k, **kw: Conv2d(n, c, h, h, k, 3, 3, pad=1, **kw)  # noqa: E731
    m = fma(h200)
    assert heuristic_algo(m, vgg(32, 512, 28, 512, dtype="fp32")) == "fft"  # conv4_2
    assert heuristic_algo(m, vgg(128, 256, 56, 256, dtype="fp32")) == "implicit_gemm"
    assert heuristic_algo(m, vgg(32, 64, 224, 64, dtype="fp32")) == "implicit_gemm"
    assert heuristic_algo(m, vgg(1, 512, 28, 512, dtype="fp32")) == "implicit_gemm"
    # tensor-core math: always the GEMM-based engines
    assert heuristic_algo(h200, vgg(32, 512, 28, 512, dtype="fp32")) == "implicit_gemm"
    assert heuristic_algo(h200, vgg(32, 512, 28, 512, dtype="fp16")) == "implicit_gemm"


def _measured_picks(name):
    with open(H200 / name, newline="") as fh:
        for r in csv.DictReader(fh):
            op = Conv2d(int(r["batch"]), int(r["c"]), int(r["h"]), int(r["w"]), int(r["kout"]),
                        int(r["r"]), int(r["s"]), stride=int(r["stride"]), pad=int(r["pad"]),
                        dtype=r["dtype"])  # fmt: skip
            yield op, r["tf32_conv"] == "True", r["cudnn_algo"], json.loads(r["kernels"])


def test_heuristic_rule_reproduces_every_measured_pick(h200):
    """PyTorch with cudnn.benchmark off on the H200: FFT kernels in 10 of 288 calls, the
    GEMM-based engines in the rest; the documented rule gives the same algorithm in all."""
    n_fft = 0
    for op, tf32, algo, kernels in _measured_picks("conv_heuristic.csv"):
        assert not any("winograd" in k[0].lower() for k in kernels)
        m = h200 if tf32 else fma(h200)
        want = "fft" if algo == "fft" else "implicit_gemm"
        n_fft += want == "fft"
        assert heuristic_algo(m, op) == want, (op, tf32)
    assert n_fft == 10


def test_benchmark_is_the_fastest_of_what_pytorch_times(h200):
    op = Conv2d(32, 512, 28, 28, 512, 3, 3, pad=1, dtype="fp32")
    m = h200.variant(conv_fp32_math="fp32", conv_algo_choice="benchmark")
    times = {a: m.estimate(Conv2d(**{**op.fields(), "algo": a})).latency_s
             for a in BENCHMARK_FAMILY}  # fmt: skip
    auto = m.estimate(op)
    assert auto.latency_s == pytest.approx(min(times.values()))
    assert dict(auto.detail)["algo_used"] == min(times, key=times.get)
    # the measured picks: 282 of 288 the same family (FFT vs GEMM-based)
    agree = total = 0
    for o, tf32, algo, _ in _measured_picks("conv_benchmark.csv"):
        mm = h200.variant(conv_algo_choice="benchmark",
                          conv_fp32_math="tf32" if tf32 else "fp32")  # fmt: skip
        pick = dict(mm.estimate(o).detail)["algo_used"]
        agree += pick == ("fft" if algo == "fft" else "implicit_gemm")
        total += 1
    assert total == 288 and agree >= 280


def test_exhaustive_includes_winograd_where_cudnn_find_picks_it(h200):
    """VGG-16 conv3_2 at batch 128, FP32 without TF32: forced, Winograd (F(4x4,3x3)) ran
    in 3.4 ms against 9.0 ms for what cudnn.benchmark picked (validation/h200)."""
    op = Conv2d(128, 256, 56, 56, 256, 3, 3, pad=1, dtype="fp32")
    ex = h200.variant(conv_fp32_math="fp32", conv_algo_choice="exhaustive").estimate(op)
    bench = h200.variant(conv_fp32_math="fp32", conv_algo_choice="benchmark").estimate(op)
    assert dict(ex.detail)["algo_used"] == "winograd_nonfused"
    assert ex.latency_s < 0.6 * bench.latency_s
    assert set(BENCHMARK_FAMILY) < set(EXHAUSTIVE_FAMILY) <= set(CONV_ALGOS)
    assert "winograd" not in EXHAUSTIVE_FAMILY  # fused Winograd: NOT_SUPPORTED on SM90


def test_default_choice_is_pytorchs():
    assert load_hw("h200_sxm").conv_algo_choice == "heuristic"
    assert load_hw("h200_sxm").conv_fp32_math == "tf32"


# ----------------------------------------------------------------------------- measurements
def test_measured_rows_carry_their_settings():
    samples = load_measurements([H200 / "conv_heuristic.csv"])
    settings = {s.hw for s in samples}
    assert (("conv_fp32_math", "fp32"), ("conv_algo_choice", "heuristic")) in settings
    assert (("conv_fp32_math", "tf32"), ("conv_algo_choice", "heuristic")) in settings
    # rows of the same op that differ only in TF32 are different samples
    assert len({s.key for s in samples}) == len(samples) == 288


def test_committed_h200_measurements_within_the_bar():
    """Every class of the issue-13 target (dtype x TF32 x choice, ResNet-50/VGG-16 layers
    at batch 1/32/128) within 15 % MAPE on the fitted part, the held-out third and all;
    all classes together within 12.5 % (docs/gpu.md reports the numbers)."""
    sys.path.insert(0, str(H200))
    import conv_report

    rep = conv_report.report(load_hw("h200_sxm"))
    assert len(rep["classes"]) == 6
    for name, r in rep["classes"].items():
        assert r["n"] == 96, name
        for split in ("fit", "holdout", "all"):
            assert r[f"mape_{split}"] <= 15.0, (name, split, r)
    assert rep["target_all"]["n"] == 576
    assert rep["target_all"]["mape_all"] <= 12.5
    # Winograd at batch 32 and 128 (the batch-1 GEMM is a known miss, docs/gpu.md)
    for b in (32, 128):
        assert rep["forced"][f"winograd_nonfused batch {b}"]["mape_all"] <= 15.0
