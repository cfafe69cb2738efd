"""Schema of a CPU: cores, SIMD, caches and DRAM."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neupims.config.base import PosFloat, PosInt, Spec


class CacheLevel(Spec):
    size_bytes: PosInt
    bandwidth_gbps_per_core: PosFloat
    shared: bool = False


class CpuConfig(Spec):
    kind: Literal["cpu"]
    name: str
    cores: PosInt
    threads: PosInt
    frequency_ghz: PosFloat
    simd_bits: PosInt
    fma_units: PosInt  # FMA pipes per core
    isa: list[str] = Field(default_factory=list)  # avx2, avx512, vnni, amx, neon, ...
    l1d: CacheLevel
    l2: CacheLevel
    l3: CacheLevel
    dram_bandwidth_gbps: PosFloat
    dram_latency_ns: PosFloat = 90.0
    efficiency: dict[str, float] = Field(default_factory=dict)

    def peak_flops(self, dtype: str) -> float:
        from neupims.ops import dtype_bytes

        lanes = self.simd_bits / (8 * dtype_bytes(dtype))
        return 2.0 * lanes * self.fma_units * self.frequency_ghz * 1e9 * self.cores

    @property
    def peak_bytes_per_s(self) -> float:
        return self.dram_bandwidth_gbps * 1e9
