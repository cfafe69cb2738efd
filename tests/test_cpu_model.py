"""CPU device model: blocking, thread rule, cache levels, conv, SpMM, LUT, configs, detection."""

from __future__ import annotations

import math
import os

import pytest

from neupims.config import load_hw
from neupims.config.hardware import parse_hw
from neupims.devices import cpu as cpu_model
from neupims.devices import get_model
from neupims.errors import ConfigError
from neupims.ops import Conv2d, Elementwise, Gemm, Gemv, LutGemm, SpMM


@pytest.fixture(scope="module")
def xeon():
    return load_hw("xeon_8480")


def _one_thread(hw):
    return hw.model_copy(update={"run_threads": 1})


def test_blocking_follows_registers_and_cache_sizes(xeon):
    zen = load_hw("xeon_8480").model_copy(
        update={"simd_bits": 256, "vector_registers": 16, "l1d": xeon.l1d.model_copy(
            update={"size_bytes": 32768})}
    )  # fmt: skip
    b = cpu_model.blocking(zen, "fp32")
    # AVX2: nr = two 8-lane vectors, mr = (16 - 4) / 2; kc x nr x 4 B fills half of 32 KB
    assert (b.mr, b.nr, b.kc) == (6, 16, 256)
    b512 = cpu_model.blocking(xeon, "fp32")
    assert (b512.mr, b512.nr) == (14, 32)
    assert b512.kc * b512.nr * 4 <= xeon.l1d.size_bytes / 2
    assert b512.mc * b512.kc * 4 <= xeon.l2.size_bytes / 2
    assert b512.mc % b512.mr == 0 and b512.nc % b512.nr == 0


def test_openblas_thread_rule(xeon):
    assert cpu_model.blas_threads(xeon, 64, 64, 64) == 1  # 262144 <= 65536 * 4
    assert cpu_model.blas_threads(xeon, 128, 128, 128) == 8  # 2097152 / 262144
    assert cpu_model.blas_threads(xeon, 4096, 4096, 4096) == xeon.cores


def test_gemm_grows_with_size_and_threads_help_large_only(xeon):
    m = get_model(xeon)
    times = [m.estimate(Gemm(n, n, n, dtype="fp32")).latency_s for n in (64, 256, 1024, 4096)]
    assert times == sorted(times)
    one = get_model(_one_thread(xeon))
    big = Gemm(4096, 4096, 4096, dtype="fp32")
    assert one.estimate(big).latency_s / m.estimate(big).latency_s > 0.6 * xeon.cores
    tiny = Gemm(64, 64, 64, dtype="fp32")
    assert one.estimate(tiny).latency_s == pytest.approx(m.estimate(tiny).latency_s)
    # a large square GEMM is compute bound and below the nominal peak
    c = m.estimate(big)
    assert c.bound == "compute"
    assert c.flops / c.latency_s <= xeon.peak_flops("fp32")


def test_gemm_edge_tiles_cost_whole_micro_tiles(xeon):
    hw = _one_thread(xeon)
    mr = cpu_model.blocking(hw, "fp32").mr
    t_full, _ = cpu_model.gemm_time(hw, mr * 64, 512, 512, "fp32")
    t_plus1, _ = cpu_model.gemm_time(hw, mr * 64 + 1, 512, 512, "fp32")
    # one extra row costs a whole row of micro-tiles (1/64 more compute)
    assert t_plus1 / t_full > 1 + 0.8 / 64


def test_gemv_is_memory_bound_and_scales_with_bytes(xeon):
    m = get_model(xeon)
    a = m.estimate(Gemv(1, 16384, 16384, dtype="fp32"))
    b = m.estimate(Gemv(1, 32768, 16384, dtype="fp32"))
    assert a.bound == "memory"
    assert b.latency_s / a.latency_s == pytest.approx(2.0, rel=0.05)
    # DRAM-resident: no faster than the socket bandwidth allows
    assert a.latency_s >= 16384 * 16384 * 4 / (xeon.dram_bandwidth_gbps * 1e9)


def test_cache_resident_streams_faster_than_dram(xeon):
    hw = _one_thread(xeon)
    small = cpu_model.stream_time(hw, 1e6, 1e5, 1)  # in L2
    big = cpu_model.stream_time(hw, 1e6, 1e10, 1)  # DRAM
    assert big > 2 * small


def test_elementwise_write_allocate_only_beyond_cache(xeon):
    hw = _one_thread(xeon)
    no_wa = hw.model_copy(update={"write_allocate": False})
    big = Elementwise("add", 2**28, "fp32")
    small = Elementwise("add", 2**12, "fp32")
    t_wa, _ = cpu_model.elementwise_time(hw, big, 1)
    t_no, _ = cpu_model.elementwise_time(no_wa, big, 1)
    assert t_wa / t_no == pytest.approx(4 / 3, rel=0.02)  # 2 reads + write + allocate read
    assert cpu_model.elementwise_time(hw, small, 1) == cpu_model.elementwise_time(no_wa, small, 1)


def test_conv_algorithms(xeon):
    m = get_model(xeon)
    op = Conv2d(8, 64, 56, 56, 64, 3, 3)
    costs = {a: m.estimate(Conv2d(**{**op.fields(), "algo": a})) for a in ("im2col", "im2win",
                                                                           "direct")}  # fmt: skip
    auto = m.estimate(op)
    assert auto.latency_s == pytest.approx(min(c.latency_s for c in costs.values()))
    assert costs["im2win"].footprint_bytes < costs["im2col"].footprint_bytes
    assert costs["direct"].footprint_bytes < costs["im2win"].footprint_bytes
    # im2col buffer: batch * c * r * s * ho * wo elements
    extra = costs["im2col"].footprint_bytes - costs["direct"].footprint_bytes
    assert extra == op.im2col_elems * 4
    # stride hurts the direct loop nest (load-port bound)
    s1 = m.estimate(Conv2d(8, 64, 57, 57, 64, 3, 3, stride=1, algo="direct"))
    s2 = m.estimate(Conv2d(8, 64, 113, 113, 64, 3, 3, stride=2, algo="direct"))
    assert s2.latency_s > s1.latency_s  # same output size and FLOPs


def test_spmm_speeds_up_with_sparsity_but_not_ideally(xeon):
    hw = _one_thread(xeon)
    times = [cpu_model.spmm_time(hw, SpMM(512, 3072, 768, sparsity=s))[0]
             for s in (0.7, 0.8, 0.9)]  # fmt: skip
    assert times[0] > times[1] > times[2]
    dense, _ = cpu_model.gemm_time(hw, 512, 3072, 768, "int8")
    for s, t in zip((0.7, 0.8, 0.9), times, strict=True):
        assert 1.0 < dense / t < 1 / (1 - s)


def test_lut_lookup_cost_is_linear_in_bits():
    hw = load_hw("m2_ultra").model_copy(update={"run_threads": 1})
    looks = []
    for bits in (1, 2, 3, 4):
        _, d = cpu_model.lut_time(hw, LutGemm(1, 4096, 4096, wbits=bits))
        looks.append(d["t_lookup_s"])
    for b, t in zip((1, 2, 3, 4), looks, strict=True):
        assert t == pytest.approx(b * looks[0], rel=1e-9)


def test_unmodelled_op_falls_back_to_roofline(xeon):
    from neupims.ops import QuantGemm

    c = get_model(xeon).estimate(QuantGemm(1, 4096, 4096))
    assert c.model == "cpu" and dict(c.detail)["fallback"] == "roofline"


@pytest.mark.parametrize("name", ["xeon_8480", "m2_ultra", "rpi5"])
def test_presets_load_and_estimate(name):
    hw = load_hw(name)
    c = get_model(hw).estimate(Gemm(512, 512, 512, dtype="fp32"))
    assert c.model == "cpu" and 0 < c.latency_s < 1


def test_bad_efficiency_key_is_a_clear_error():
    data = load_hw("rpi5").model_dump()
    data["efficiency"] = {"gemm_fp23": 0.8}
    with pytest.raises(
        ConfigError,
        match=r"rpi5.yaml: efficiency.gemm_fp23: unknown efficiency constant "
        r"\(did you mean 'gemm_fp32'\?\)",
    ):
        parse_hw(data, "rpi5.yaml")
    data["efficiency"] = {"gemm_fp32": -1}
    with pytest.raises(ConfigError, match="efficiency.gemm_fp32: Input should be greater than 0"):
        parse_hw(data, "rpi5.yaml")


def test_detection_reports_detected_and_assumed():
    from neupims.devices.cpu_detect import describe_detection, detect

    det = detect()
    assert det.config.threads == os.cpu_count()
    assert det.config.kind == "cpu" and det.config.frequency_ghz > 0
    sources = dict(det.sources)
    assert sources["cores"].startswith("detected")
    assert sources["fma_units"].startswith("assumed")
    assert sources["run_threads"].startswith("detected")
    text = describe_detection(det)
    assert "detected" in text and "assumed" in text
    # --hw cpu: the same detected facts (bandwidths probed, or calibrated when cached)
    here = load_hw("cpu")
    assert (here.name, here.cores, here.l3.size_bytes) == (det.config.name, det.config.cores,
                                                           det.config.l3.size_bytes)  # fmt: skip
    assert math.isfinite(get_model(here).estimate(Gemm(64, 64, 64, dtype="fp32")).latency_s)


def test_cold_operands_come_from_dram_warm_from_cache(xeon):
    cold = get_model(xeon)  # default: a trace of distinct layers
    warm = get_model(xeon.model_copy(update={"warm": True}))
    op = Gemv(1, 4096, 4096, dtype="fp16")  # 32 MiB: fits the 105 MB L3
    t_cold = cold.estimate(op).latency_s
    assert t_cold >= op.min_bytes / (xeon.dram_bandwidth_gbps * 1e9)
    assert warm.estimate(op).latency_s < t_cold / 2
    big = Gemv(1, 32768, 32768, dtype="fp16")  # 2 GiB: DRAM either way
    assert warm.estimate(big).latency_s == pytest.approx(cold.estimate(big).latency_s, rel=0.3)


def test_detection_of_an_arm_host_uses_the_arm_row(monkeypatch):
    """A Raspberry-Pi-5-like /proc/cpuinfo and sysfs: NEON width, Arm table row, sysfs caches."""
    from neupims.devices import cpu_detect

    info = {"processor": "0", "CPU implementer": "0x41", "CPU part": "0xd0b",
            "Features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics asimdrdm asimddp"}  # fmt: skip
    files = {"online": "0-3"}
    monkeypatch.setattr(cpu_detect, "_cpuinfo", lambda: dict(info))
    monkeypatch.setattr(cpu_detect, "_read", lambda path: files.get(path.name))
    monkeypatch.setattr(cpu_detect, "_caches", lambda: {"l1d": (65536, False),
                                                        "l2": (524288, False),
                                                        "l3": (2097152, True)})  # fmt: skip
    det = cpu_detect.detect.__wrapped__()
    cfg, src = det.config, dict(det.sources)
    assert (cfg.cores, cfg.simd_bits, cfg.vector_registers) == (4, 128, 32)
    assert "asimd" in cfg.isa and cfg.l3.shared and cfg.l1d.size_bytes == 65536
    assert "Cortex-A76" in src["microarch"]
    assert src["frequency_ghz"].startswith("assumed")


def test_attention_is_modelled_not_roofline(xeon):
    from neupims.ops import Attention

    m = get_model(xeon)
    dec = m.estimate(Attention(8, 32, 32, 1, 4096, 128, "fp16"))
    assert "fallback" not in dict(dec.detail) and dec.bound == "memory"
    # decode attention reads the whole KV cache: no faster than DRAM allows
    assert dec.latency_s >= dec.bytes * 0.9 / (xeon.dram_bandwidth_gbps * 1e9)
    full = m.estimate(Attention(1, 32, 32, 2048, 2048, 128, "fp32"))
    causal = m.estimate(Attention(1, 32, 32, 2048, 2048, 128, "fp32", causal=True))
    assert 0.4 < causal.latency_s / full.latency_s < 0.6


def test_detection_of_a_sapphire_rapids_host_sets_amx_and_vnni_rates(monkeypatch):
    from neupims.devices import cpu_detect

    flags = "fpu sse2 avx avx2 fma avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16 amx_int8"
    info = {"vendor_id": "GenuineIntel", "cpu family": "6", "model name": "Xeon 8480+",
            "flags": flags, "siblings": "4", "cpu cores": "2"}  # fmt: skip
    monkeypatch.setattr(cpu_detect, "_cpuinfo", lambda: dict(info))
    monkeypatch.setattr(cpu_detect, "_read", lambda path: {"online": "0-3"}.get(path.name))
    monkeypatch.setattr(cpu_detect, "_caches", lambda: {})
    cfg = cpu_detect.detect.__wrapped__().config
    assert (cfg.cores, cfg.threads, cfg.simd_bits, cfg.vector_registers) == (2, 4, 512, 32)
    assert cfg.flops_per_cycle == {"int8": 2048.0, "bf16": 1024.0}  # AMX wins over VNNI
    assert cfg.flops_per_cycle_core("fp32") == 64  # 2 x 16 lanes x 2 FMA ports
