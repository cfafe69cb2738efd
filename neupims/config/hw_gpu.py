"""Schema of a GPU: SMs, per-dtype peaks, memory hierarchy, launch overhead.

Datasheet numbers carry their source in the YAML. Efficiency constants that are fitted
rather than read from a datasheet live under ``efficiency`` with their provenance.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neupims.config.base import Fraction, PosFloat, PosInt, Spec


class GpuConfig(Spec):
    kind: Literal["gpu"]
    name: str
    sms: PosInt
    boost_clock_mhz: PosFloat
    tensor_tflops: dict[str, PosFloat]  # dense tensor-core peak per dtype
    cuda_core_tflops: dict[str, PosFloat]  # CUDA-core (SIMT) peak per dtype
    hbm_bandwidth_gbps: PosFloat
    hbm_capacity_gb: PosFloat
    l2_bytes: PosInt
    l2_bandwidth_gbps: PosFloat
    smem_per_sm_bytes: PosInt
    regs_per_sm: PosInt
    launch_overhead_us: PosFloat = 4.0
    efficiency: dict[str, float] = Field(default_factory=dict)
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

    def peak_flops(self, dtype: str) -> float:
        t = self.tensor_tflops.get(dtype) or self.cuda_core_tflops.get(dtype)
        if t is None:
            known = sorted(set(self.tensor_tflops) | set(self.cuda_core_tflops))
            raise ValueError(f"{self.name}: no peak for dtype {dtype!r}; known: {known}")
        return t * 1e12

    @property
    def peak_bytes_per_s(self) -> float:
        return self.hbm_bandwidth_gbps * 1e9
