"""Schema of a GPU: SMs, per-dtype peaks, memory hierarchy, launch overhead.

Datasheet numbers carry their source in the YAML. Efficiency constants that are fitted
rather than read from a datasheet live under ``efficiency`` with their provenance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neupims.config.base import Fraction, NonNegFloat, PosFloat, PosInt, Spec, key_of
from neupims.ops import DTYPE_BYTES

#: The GPU model's named efficiency constants (``neupims.devices.gpu``): meaning and the
#: starting value used before ``neupims calibrate`` fits them to measured kernels. Values are
#: dimensionless fractions unless the name carries a unit (``_us``, ``_ns``, ``_gelems``).
#: A config's ``efficiency`` block may set any of these and nothing else.
EFFICIENCY_KEYS: dict[str, tuple[str, float]] = {
    # GEMM
    "tc_eff": ("tensor-core main-loop fraction of peak for an ideal (infinite) tile", 0.9),
    "simt_eff": ("CUDA-core (SIMT) GEMM fraction of the FP32/FP16 SIMT peak", 0.7),
    "tile_alpha": ("elements; tile efficiency tm*tn / (tm*tn + alpha*(tm+tn))", 16.0),
    "dram_eff": ("achieved fraction of HBM bandwidth by streaming GEMM operands", 0.85),
    "gemm_fixed_us": ("per-GEMM fixed time: launch, prologue, pipeline fill, epilogue", 8.0),
    "l2_multicast": ("A/B panel loads shared by a CTA cluster (TMA multicast)", 2.0),
    "streamk_fixup": ("stream-K: extra time per tile for reducing split tiles", 0.1),
    # attention
    "attn_tc_eff": ("FlashAttention main loop (QK^T, softmax, PV) fraction of peak", 0.6),
    "attn_fixed_us": ("attention kernel fixed time", 8.0),
    "attn_dram_eff": ("decode: achieved fraction of HBM bandwidth streaming the KV", 0.93),
    "attn_token_ns": ("decode: serial latency per KV token along one CTA's range", 3.5),
    # element-wise
    "ew_fixed_us": ("launch + one tail of a streaming kernel", 4.0),
    "ew_rowwise_fixed_us": ("extra for row-wise reductions (layernorm, softmax)", 8.0),
    "ew_bw_eff": ("streaming element-wise kernels, fraction of HBM bandwidth", 0.9),
    "ew_bw_eff_layernorm": ("layernorm / rmsnorm, fraction of HBM bandwidth", 0.6),
    "ew_bw_eff_softmax": ("softmax, fraction of HBM bandwidth", 0.35),
    # convolution
    "conv_fixed_us": ("per-kernel fixed time of cuDNN's GEMM-based convolution kernels", 9.59),
    "conv_filter_gelems": ("G elements/s of cuDNN's KCRS -> KRSC filter copy", 177),
    "conv_layout_us": ("fixed time of each cuDNN helper kernel (layout copy, split-K sum)", 2.01),
    "conv_pw_fixed_us": ("fixed time of the 1x1 convolutions cuDNN runs as a plain GEMM", 6.81),
    "conv_pw_unaligned_scale": ("1x1 GEMM on rows not 16-byte aligned (SM80 kernel)", 0.286),
    "conv_pw_dram_eff": ("1x1 GEMM over NCHW images, achieved fraction of HBM bandwidth", 0.702),
    "conv_tc_eff": ("cuDNN implicit GEMM relative to a plain GEMM of the same view", 0.88),
    "conv_tf32_scale": ("FP32 (TF32) convolutions' efficiency relative to 16-bit", 1.31),
    "conv_simt_eff": ("cuDNN's NCHW CUDA-core kernel (channels not a multiple of 8/4)", 0.504),
    "conv_simt_rs0": ("taps: that kernel's rate grows as R*S / (R*S + rs0)", 8.29),
    "conv_layout_passes": ("NCHW<->NHWC copies, in passes over input + filter + output", 3.07),
    "unfold_bw_eff": ("PyTorch unfold (im2col) kernel, fraction of HBM bandwidth", 0.5),
    "unfold_fixed_us": ("per-image im2col kernel fixed time (one launch per image)", 4.0),
    "unfold_tap_ns": ("unfold: latency per filter tap along one thread (stems)", 100.0),
    "gather_gelems": ("G elements/s a strided gather (unfold, window copy) writes", 300.0),
    "window_bw_eff": ("Im2win window copy (a strided copy), fraction of HBM bandwidth", 0.8),
    "conv_fma_scale": ("FP32 (no TF32) NCHW implicit GEMM relative to a SIMT GEMM", 0.705),
    "conv_fma_alpha": ("elements; that kernel's tile efficiency tm*tn/(tm*tn+a*(tm+tn))", 2.93),
    "fft_bw_eff": ("cuDNN FFT passes (r2c, c2r), fraction of HBM bandwidth", 0.484),
    "fft_cgemm_eff": ("FFT: complex GEMM per frequency, fraction of the FP32 SIMT peak", 0.722),
    "fft_pointwise_eff": ("FFT >= 64x64: pointwise multiply-and-sum, fraction of FP32 peak", 0.305),
    "wino_bw_eff": ("Winograd data/filter/output transforms, fraction of HBM bandwidth", 0.517),
    "wino_gemm_scale": ("Winograd batched GEMMs relative to a plain GEMM of that shape", 0.905),
    "direct_eff": ("naive direct convolution, fraction of the FP32 SIMT peak", 0.05),
    "direct_rs0": ("direct conv: rate grows as R*S / (R*S + rs0) (inner-loop length)", 3.4),
    # Not measured here: the Im2win FP32 kernel reached a median of 8.9 TFLOPS over the
    # paper's 12 layers on an A100-class card (19.5 TFLOPS FP32), Lu et al., Euro-Par 2023
    # (docs/sources.md, Im2win): 8.9 / 19.5 = 0.46.
    "im2win_eff": ("Im2win GPU kernel, fraction of the FP32 SIMT peak (paper median)", 0.46),
    # weight-only quantised GEMM (dequantise in registers, then MMA)
    "quant_tc_eff": ("weight-only quantised GEMM, fraction of the 16-bit tensor peak", 0.05),
    "quant_fixed_us": ("weight-only quantised GEMM fixed time", 6.0),
    # neighborhood attention and long convolutions (neupims.devices.gpu_natten,
    # gpu_longconv). Fitted by validation/kernels/fit.py on an H200 (GH100 SMs, as the
    # H100) to validation/kernels/h200/kernels.csv: Triton copies of NATTEN's naive AV
    # kernel (18 shapes) and PyTorch's torch.fft.rfft (8 sizes), median of each row's value
    "na_naive_av_eff": ("naive NA AV kernel, fraction of its load/store-unit bound", 0.535),
    "fft_simt_eff": ("cuFFT real transforms, fraction of the FP32 SIMT peak", 0.09),
    # not measured (an assumption): cuFFT computes a transform of up to a few thousand
    # points in one kernel from shared memory and splits larger ones into passes over
    # device memory
    "fft_points_per_pass": ("points; cuFFT transforms up to this size in one pass", 4096.0),
    # not measured: FlashButterfly's 16x16 DFT matmuls at a large GEMM's tensor-core
    # efficiency (1.0 x tc_eff). The paper's 2.2x implies 0.16-0.19 in this model
    # (docs/kernels.md; neupims.devices.gpu_longconv.implied_butterfly_tc_scale)
    "butterfly_tc_scale": ("FlashButterfly DFT matmuls' efficiency relative to tc_eff", 1.0),
    # arbitrary-precision integer GEMM (bipolar-INT, neupims.devices.gpu_apint). ASSUMPTION,
    # not measured: no b1 tensor-core GEMM was timed here, so the one-bit main loop is taken
    # to reach the same fraction of its (b1) peak as a 16-bit GEMM of the same tile (1.0).
    "apint_tc_scale": ("bipolar-INT b1 GEMM main loop relative to tc_eff (assumed)", 1.0),
    # whole steps (GpuModel.step)
    "host_op_us": ("eager PyTorch: host time to dispatch one op", 15.0),
    "stream_overlap_us": (
        "fixed time each kernel hides behind the previous one on a stream",
        3.0,
    ),
    "sustained_slowdown": ("compute-bound ops in a whole step vs in isolation", 1.0),
}


#: A key of :data:`EFFICIENCY_KEYS` (a typo is an error naming the key).
EfficiencyKey = key_of(EFFICIENCY_KEYS, "efficiency constant")
#: A dtype name of :data:`neupims.ops.DTYPE_BYTES`.
DtypeKey = key_of(DTYPE_BYTES, "dtype")


class GpuConfig(Spec):
    kind: Literal["gpu"]
    name: str
    sms: PosInt
    boost_clock_mhz: PosFloat
    tensor_tflops: dict[DtypeKey, PosFloat]  # dense tensor-core peak per dtype
    #: CUDA-core (SIMT) peak per dtype; ``fp32`` is required (the SIMT kernels' peak)
    cuda_core_tflops: dict[DtypeKey, PosFloat]
    hbm_bandwidth_gbps: PosFloat
    hbm_capacity_gb: PosFloat
    l2_bytes: PosInt
    l2_bandwidth_gbps: PosFloat
    smem_per_sm_bytes: PosInt
    regs_per_sm: PosInt
    launch_overhead_us: PosFloat = 4.0
    #: GPU-to-GPU link of tensor/pipeline parallelism, GB/s per direction (NVLink), and the
    #: per-message latency of a collective step
    interconnect_gbps: PosFloat = 300.0
    interconnect_latency_us: NonNegFloat = 5.0
    efficiency: dict[EfficiencyKey, PosFloat] = Field(default_factory=dict)
    efficiency_provenance: str = "datasheet defaults, not calibrated"
    max_bandwidth_fraction: Fraction = 0.9
    #: candidate CTA tiles (rows x cols of C) that the GEMM library chooses among; the
    #: defaults are the CUTLASS 3 / cuBLAS SM90 tile shapes for 16-bit operands
    gemm_tiles: tuple[tuple[PosInt, PosInt], ...] = (
        (64, 64), (64, 128), (64, 256), (128, 64), (128, 128), (128, 256), (256, 128),
    )  # fmt: skip
    #: add FlashDecoding++'s flat-GEMM tiles (M padded to 8 instead of 64) to the candidates
    flat_gemm: bool = False
    #: math used for fp32 convolutions (PyTorch enables TF32 for cuDNN by default) and for
    #: fp32 matmuls (PyTorch disables TF32 for matmuls by default)
    conv_fp32_math: Literal["tf32", "fp32"] = "tf32"
    matmul_fp32_math: Literal["tf32", "fp32"] = "fp32"
    #: how ``algo: auto`` convolutions pick cuDNN's algorithm (neupims.devices.gpu_conv):
    #: ``heuristic`` as PyTorch's default ``torch.backends.cudnn.benchmark = False`` (cuDNN's
    #: heuristic pick), ``benchmark`` as ``cudnn.benchmark = True`` (the fastest engine that
    #: PyTorch times), ``exhaustive`` the fastest of all of cuDNN's algorithms, Winograd
    #: included (cudnnFindConvolutionForwardAlgorithm of the legacy API)
    conv_algo_choice: Literal["heuristic", "benchmark", "exhaustive"] = "heuristic"

    @model_validator(mode="after")
    def _fp32_simt(self) -> GpuConfig:
        if "fp32" not in self.cuda_core_tflops:
            raise ValueError("cuda_core_tflops needs an fp32 entry (the SIMT kernels' peak)")
        return self

    def peak_flops(self, dtype: str) -> float:
        t = self.tensor_tflops.get(dtype) or self.cuda_core_tflops.get(dtype)
        if t is None:
            known = sorted(set(self.tensor_tflops) | set(self.cuda_core_tflops))
            raise ValueError(f"{self.name}: no peak for dtype {dtype!r}; known: {known}")
        return t * 1e12

    @property
    def peak_bytes_per_s(self) -> float:
        return self.hbm_bandwidth_gbps * 1e9

    @property
    def memory_capacity_bytes(self) -> float:
        """Device memory in bytes. ``hbm_capacity_gb`` is the datasheet's size, which counts
        binary gigabytes (HBM stacks hold powers of two): CUDA reports 85,017,493,504 B
        (79.2 GiB usable) on the "80 GB" H100 (validation/h100/env.json)."""
        return self.hbm_capacity_gb * 2**30
