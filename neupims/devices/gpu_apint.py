"""GPU cost of arbitrary-precision integer GEMMs (:class:`neupims.ops.ApintGemm`).

Two kernels, chosen by the op's ``kernel`` field (docs/kernels.md):

``bipolar_int`` (Ma, Fang, Shao, Wang, "Efficient Arbitrary Precision Acceleration for Large
Language Models on GPU Tensor Cores", arXiv 2409.17870, ASP-DAC 2025; docs/sources/kernels.md
section 7). A p-bit bipolar-INT value is sum_i 2^i (2 b_i - 1): every bit-plane holds +-1, so
a p-bit x q-bit GEMM is p*q one-bit GEMMs of M x N x K whose dot products are
K - 2 popc(a XOR w) (tensor-core ``mma.b1``, m16n8k256 on Ampere). Cost, in three parts:

* packing: the activations (``dtype``, the previous layer's output) are quantised and split
  into ``abits`` bit-planes of M x K bits: one streaming pass that reads M*K*bytes(dtype) and
  writes abits*M*K/8 bytes (the weights are packed offline, once);
* the one-bit MMAs: the planes are stacked, activation planes along M and weight planes
  along N, so the p*q GEMMs are one GEMM of (abits*M) x (wbits*N) x K one-bit elements,
  costed by the tensor-core tile/wave model :meth:`GpuModel.gemm_plan` at the config's
  binary peak ``tensor_tflops["int1"]`` (2 ops per one-bit multiply-add, as NVIDIA counts
  TOPS) and a main-loop efficiency ``tc_eff * apint_tc_scale``. Its DRAM traffic is the
  weights at wbits/8 bytes per element, the activation planes at abits/8, and the M x N
  outputs at ``dtype``: partial products are recovered in shared memory before any write
  (the paper's recovery-oriented memory management), never as p*q planes;
* recovery: every output sums its p*q partial dot products, each scaled by 2^(i+j) (one
  FMA per partial on the CUDA cores: 2*p*q*M*N FLOPs at the FP32 SIMT peak x ``simt_eff``),
  in each tile's epilogue, after its main loop (serial with it, not hidden).

``cutlass_padded``: the CUTLASS baseline, an int4 (both operands <= 4 bits) or int8 (5 to 8
bits) tensor-core GEMM on the padded precision (a 3-bit weight runs as int4), by the same
tile/wave model at ``tensor_tflops["int4"]`` / ``["int8"]``, plus the activation
quantisation pass (fp16 in, int4/int8 out). The output is written at ``dtype``.

A GPU without the needed peak in ``tensor_tflops`` is an error naming the key: the H100's
datasheet lists neither INT4 nor binary tensor throughput, so neither kernel runs there.
Units: seconds, bytes, FLOPs (2 per multiply-add).
"""

from __future__ import annotations

from dataclasses import dataclass

from neupims.devices.base import Cost
from neupims.devices.gpu import GemmPlan, GpuModel, register_gpu_op
from neupims.errors import ConfigError
from neupims.ops import ApintGemm, dtype_bytes

#: ``tensor_tflops`` key of the one-bit (``mma.b1``) tensor-core peak, in TOPS.
B1_DTYPE = "int1"


def padded_dtype(wbits: int, abits: int) -> str:
    """The CUTLASS integer type a wbits x abits GEMM runs as: int4 up to 4 bits, else int8."""
    return "int4" if max(wbits, abits) <= 4 else "int8"


def tensor_peak(model: GpuModel, dtype: str, what: str) -> float:
    """Dense tensor-core peak of ``dtype`` in ops/s; ConfigError naming the key if absent."""
    peaks = model.hw.tensor_tflops
    if dtype not in peaks:
        raise ConfigError(
            f"{model.hw.name}: tensor_tflops has no {dtype!r} peak, which {what} needs "
            f"(the config lists {sorted(peaks)}); add it with its datasheet source"
        )
    return peaks[dtype] * 1e12


@dataclass(frozen=True)
class ApintTime:
    """Parts of one arbitrary-precision GEMM, in seconds."""

    pack_s: float  # activation quantisation / bit-plane packing pass
    mma_s: float  # tensor-core main loops (the plan's compute time)
    recover_s: float  # shift-add recovery on the CUDA cores (0 for CUTLASS)
    kernel_s: float  # the GEMM kernel: max(mma + recovery, DRAM, L2) + fixed time
    plan: GemmPlan
    dram_bytes: float  # the GEMM kernel's DRAM traffic

    @property
    def total_s(self) -> float:
        return self.pack_s + self.kernel_s


def pack_seconds(model: GpuModel, m: int, k: int, src_dtype: str, out_bytes: float) -> float:
    """One streaming pass reading the m x k ``src_dtype`` activations and writing
    ``out_bytes`` of packed (bit-plane or int4/int8) activations."""
    return model.stream_time(m * k * dtype_bytes(src_dtype) + out_bytes)


def bipolar_time(model: GpuModel, op: ApintGemm) -> ApintTime:
    e = model.eff
    peak = tensor_peak(model, B1_DTYPE, "the bipolar-INT one-bit MMA (mma.b1)")
    rows, cols = op.abits * op.m, op.wbits * op.n
    c_stacked = rows * cols * dtype_bytes(B1_DTYPE)  # what gemm_plan counts for C
    c_out = op.m * op.n * dtype_bytes(op.dtype)  # what the kernel writes after recovery
    plan = model.gemm_plan(
        rows, cols, op.k, 1, B1_DTYPE, unit="tensor", peak=peak,
        eff_scale=e["apint_tc_scale"], extra_bytes=c_out - c_stacked,
    )  # fmt: skip
    simt = model.hw.cuda_core_tflops["fp32"] * 1e12 * e["simt_eff"]
    recover = 2.0 * op.wbits * op.abits * op.m * op.n / simt
    kernel = max(plan.t_compute + recover, plan.t_dram, plan.t_l2) + e["gemm_fixed_us"] * 1e-6
    pack = pack_seconds(model, op.m, op.k, op.dtype, op.act_bytes)
    return ApintTime(pack, plan.t_compute, recover, kernel, plan, plan.dram_bytes)


def cutlass_time(model: GpuModel, op: ApintGemm) -> ApintTime:
    e = model.eff
    dt = padded_dtype(op.wbits, op.abits)
    peak = tensor_peak(model, dt, f"the CUTLASS {dt} baseline of W{op.wbits}A{op.abits}")
    extra = op.m * op.n * (dtype_bytes(op.dtype) - dtype_bytes(dt))  # output at op.dtype
    plan = model.gemm_plan(op.m, op.n, op.k, 1, dt, unit="tensor", peak=peak, extra_bytes=extra)
    kernel = max(plan.t_compute, plan.t_dram, plan.t_l2) + e["gemm_fixed_us"] * 1e-6
    pack = pack_seconds(model, op.m, op.k, op.dtype, op.m * op.k * dtype_bytes(dt))
    return ApintTime(pack, plan.t_compute, 0.0, kernel, plan, plan.dram_bytes)


#: kernel name -> timing function
APINT_TIMERS = {"bipolar_int": bipolar_time, "cutlass_padded": cutlass_time}


@register_gpu_op(ApintGemm)
def apint_gemm_cost(model: GpuModel, op: ApintGemm) -> Cost:
    """Cost of an :class:`ApintGemm` on a GPU: packing pass + GEMM kernel (see module doc)."""
    t = APINT_TIMERS[op.kernel](model, op)
    p = t.plan
    bound = "compute" if t.mma_s + t.recover_s >= max(p.t_dram, p.t_l2) else p.bound
    return Cost(
        latency_s=t.total_s,
        flops=op.flops,
        bytes=t.dram_bytes,
        footprint_bytes=float(op.min_bytes),
        bound=bound,
        model=model.name,
        detail=(
            ("kernel", op.kernel),
            ("kernel_s", t.kernel_s),
            ("pack_s", t.pack_s),
            ("mma_s", t.mma_s),
            ("recover_s", t.recover_s),
            ("bit_mmas", op.bit_mmas),
            ("mma_dtype", B1_DTYPE if op.kernel == "bipolar_int" else padded_dtype(op.wbits, op.abits)),
            ("tile", f"{p.tile[0]}x{p.tile[1]}"),
            ("waves", p.waves),
            ("equiv_tops", op.flops / t.total_s / 1e12),
        ),
    )  # fmt: skip


__all__ = [
    "APINT_TIMERS",
    "B1_DTYPE",
    "ApintTime",
    "apint_gemm_cost",
    "bipolar_time",
    "cutlass_time",
    "pack_seconds",
    "padded_dtype",
    "tensor_peak",
]
