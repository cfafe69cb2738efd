"""Long convolutions on the GPU model: PyTorch's cuFFT path, FlashButterfly, direct.

Sources: Fu et al., "Simple Hardware-Efficient Long Convolutions for Sequence Modeling",
arXiv 2302.06646 (ICML 2023), and its code (HazyResearch/safari, ``block_fft.py``,
``long_conv.py``); restated in docs/sources/kernels.md section 9, discussed in
docs/kernels.md. A long convolution runs B*H independent sequences of N samples against one
N-long kernel per channel; causality needs the circular convolution at n = 2N.
Units: seconds, bytes, FLOPs (2 per multiply-add), SM clocks.

``fft``: ``y = irfft(rfft(u, n=2N) * k_f, n=2N)[..., :N]`` in PyTorch, with the kernel's
transform ``k_f`` cached (inference). Kernels: the zero pad to 2N (a copy), the real FFT,
the complex multiply and the inverse real FFT. cuFFT computes one transform on chip when
it has at most ``fft_points_per_pass`` points and otherwise in several passes over device
memory (ceil(log2 n / log2 of that)); every pass reads and writes the n-real (n/2-complex)
array. The butterflies (2.5 n log2 n FLOPs per real transform) run on CUDA cores at
``fft_simt_eff`` of the SIMT peak. Each kernel takes max(DRAM, compute) + ``ew_fixed_us``.

``butterfly``: FlashButterfly. The length-n FFT (n = 2N rounded up to a power of two) is
a Cooley-Tukey / Monarch product of ceil(log16 n) stages of dense 16x16 (the last stage
smaller) DFT matmuls on tensor cores (at ``tc_eff`` x ``butterfly_tc_scale``) with twiddle
multiplies in between (``block_fft.py``:
``max_m = 16``, "simulating tensor cores of 16x16 mm"); the input's FFT, the multiply with
the cached ``k_f`` and the inverse FFT are fused in one kernel while the sequence's complex
values fit in one SM's shared memory, and otherwise take three passes over device memory
(the paper's three-pass algorithm: a butterfly matmul, parallel FFT convolutions, a
butterfly matmul, each pass reading and writing the complex intermediate). Each stage
reads and writes the sequence through shared memory (``L1_BYTES_PER_CLK`` per clock per
SM), and its radix-r matmul costs 8*r real FLOPs per point on tensor cores (FP32 inputs
use the config's FP32 matmul unit, CUDA cores by default); twiddles cost 6
FLOPs per point on CUDA cores. A stage takes max(tensor + twiddle time, shared-memory
time); one CTA per sequence, sequences spread over the SMs.

``direct``: the causal depthwise convolution in the time domain (PyTorch ``conv1d`` with an
N-tap kernel, one group per channel), N*(N+1) FLOPs per sequence on CUDA cores at
``direct_eff`` (the fitted rate of a naive direct convolution, docs/gpu.md).
"""

from __future__ import annotations

import math

from neupims.devices import get_model
from neupims.devices.base import Cost
from neupims.devices.gpu import GpuModel, register_gpu_op
from neupims.devices.gpu_natten import L1_BYTES_PER_CLK
from neupims.ops import LongConv, dtype_bytes

#: Largest DFT FlashButterfly runs as one dense matmul (16x16 tensor-core tiles; safari
#: ``block_fft.py``, ``max_m=16``).
RADIX = 16


def fft_passes(model: GpuModel, n: int) -> int:
    """Passes over device memory cuFFT needs for an n-point transform (>= 1)."""
    per_pass = model.eff["fft_points_per_pass"]
    return max(1, math.ceil(math.log2(n) / math.log2(per_pass) - 1e-9))


def radices(n: int) -> list[int]:
    """Radix of each FlashButterfly stage for a power-of-two n: 16s, then the remainder."""
    out, rest = [], n
    while rest > 1:
        r = min(RADIX, rest)
        out.append(r)
        rest //= r
    return out


def transform_time(model: GpuModel, op: LongConv) -> tuple[float, float, int]:
    """(seconds, DRAM bytes, passes) of one cuFFT real transform of all B*H sequences at
    n = 2N: each pass reads and writes the n-real / (n/2 + 1)-complex array, the
    butterflies (2.5 n log2 n FLOPs per sequence) run at ``fft_simt_eff`` of the FP32 SIMT
    peak, and each pass is a launch (``ew_fixed_us``)."""
    e = model.eff
    n = op.fft_size
    passes = fft_passes(model, n)
    arr = op.sequences * n * dtype_bytes(op.dtype)
    simt = model.hw.cuda_core_tflops.get("fp32", 1.0) * 1e12 * e["fft_simt_eff"]
    flops = op.sequences * 2.5 * n * math.log2(n)
    t_mem = 2 * arr * passes / (e["ew_bw_eff"] * model.bw)
    return max(t_mem, flops / simt) + passes * e["ew_fixed_us"] * 1e-6, 2 * arr * passes, passes


def _fft(model: GpuModel, op: LongConv) -> tuple[float, float, dict]:
    e = model.eff
    bf = dtype_bytes(op.dtype)
    n, s = op.fft_size, op.sequences
    bw = e["ew_bw_eff"] * model.bw
    fixed = e["ew_fixed_us"] * 1e-6
    arr = s * n * bf  # the n-real / (n/2 + 1)-complex array of all sequences
    t_pad = (s * op.length * bf + arr) / bw + fixed  # zero pad to 2N: a copy
    t_one, b_one, passes = transform_time(model, op)
    k_f = op.channels * (n + 2) * bf  # cached kernel transform, read once per channel
    t_mul = (2 * arr + k_f) / bw + fixed
    dram = (s * op.length * bf + arr) + 2 * b_one + (2 * arr + k_f)
    t = t_pad + 2 * t_one + t_mul
    return t, dram, {"cufft_passes": passes, "kernels": 2 + 2 * passes, "fft_s": t_one}


def _butterfly(model: GpuModel, op: LongConv) -> tuple[float, float, dict]:
    e, hw = model.eff, model.hw
    b = dtype_bytes(op.dtype)
    n = 1 << math.ceil(math.log2(op.fft_size))
    s = op.sequences
    unit, peak = model.math_of(op.dtype)
    base_eff = e["tc_eff"] * e["butterfly_tc_scale"] if unit == "tensor" else e["simt_eff"]
    tc_rate_sm = peak / hw.sms * base_eff
    simt_rate_sm = hw.cuda_core_tflops.get("fp32", 1.0) * 1e12 / hw.sms * e["simt_eff"]
    clock = hw.boost_clock_mhz * 1e6
    cplx = 2 * b  # bytes of a complex value at the input precision
    t_seq = 0.0  # on-chip time of one sequence on one SM: forward FFT + inverse FFT
    for r in radices(n):
        t_tc = 8.0 * r * n / tc_rate_sm + 6.0 * n / simt_rate_sm
        t_smem = 2.0 * n * cplx / (L1_BYTES_PER_CLK * clock)
        t_seq += 2 * max(t_tc, t_smem)
    t_seq += 6.0 * n / simt_rate_sm  # pointwise multiply with k_f
    fits = n * cplx <= hw.smem_per_sm_bytes
    passes = 1 if fits else 3
    waves = math.ceil(s / hw.sms)
    t_chip = waves * t_seq
    io = 2.0 * s * op.length * b + op.channels * n * cplx
    dram = io if fits else io + 4.0 * s * n * cplx
    t_mem = dram / (e["dram_eff"] * model.bw)
    t = max(t_chip, t_mem) + passes * e["gemm_fixed_us"] * 1e-6
    return (
        t,
        dram,
        {
            "fft_size": n,
            "stages": len(radices(n)),
            "passes": passes,
            "fits_sram": fits,
            "math": unit,
            "bound_part": "compute" if t_chip >= t_mem else "memory",
        },
    )


def _direct(model: GpuModel, op: LongConv) -> tuple[float, float, dict]:
    e = model.eff
    peak = model.hw.cuda_core_tflops.get("fp32", 1.0) * 1e12
    t_c = op.direct_flops / (peak * e["direct_eff"])
    dram = float(op.min_bytes)
    t_m = dram / (e["dram_eff"] * model.bw)
    return (
        max(t_c, t_m) + e["gemm_fixed_us"] * 1e-6,
        dram,
        {"bound_part": "compute" if t_c >= t_m else "memory"},
    )


ALGOS = {"fft": _fft, "butterfly": _butterfly, "direct": _direct}


@register_gpu_op(LongConv)
def long_conv(model: GpuModel, op: LongConv) -> Cost:
    t, dram, detail = ALGOS[op.algo](model, op)
    bound = detail.pop("bound_part", "memory")
    workspace = 0.0
    if op.algo == "fft":  # padded input, spectrum, product, 2N-long output
        workspace = 4.0 * op.sequences * op.fft_size * dtype_bytes(op.dtype)
    return Cost(
        latency_s=t,
        flops=op.flops,
        bytes=dram,
        footprint_bytes=float(op.min_bytes) + workspace,
        bound=bound,
        model=model.name,
        detail=(("algo", op.algo), *detail.items(), ("achieved_tflops", op.flops / t / 1e12)),
    )


def implied_butterfly_tc_scale(hw, target: float, op: LongConv, baseline: LongConv) -> float:
    """The ``butterfly_tc_scale`` at which ``op`` (a butterfly convolution) runs ``target``
    times faster than ``baseline`` on ``hw`` (bisection; a diagnostic that says what
    tensor-core efficiency a reported speedup implies, not a fit applied to the model)."""

    def speedup(scale: float) -> float:
        cfg = hw.model_copy(update={"efficiency": {**hw.efficiency, "butterfly_tc_scale": scale}})
        m = get_model(cfg)
        return m.estimate(baseline).latency_s / m.estimate(op).latency_s

    lo, hi = 1e-4, 1.0
    if speedup(hi) < target:
        raise ValueError(f"even at scale 1.0 the model's speedup is below {target}")
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if speedup(mid) < target else (lo, mid)
    return hi
