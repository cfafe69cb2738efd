"""Schema of a CPU: cores, SIMD, caches and DRAM.

Units: frequencies in GHz, bandwidths in GB/s (1e9 B/s), sizes in bytes, latencies in ns.
Every preset in ``hw_configs/`` cites the source of each number beside it.

The optional keys below refine the model (``neupims.devices.cpu``); omitted, they are
derived from the required keys as each docstring says. ``efficiency`` holds the model's
dimensionless constants (see :data:`EFFICIENCY_KEYS`); on a machine that has been measured
they are fitted by ``neupims.devices.cpu_fit`` rather than written by hand.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neupims.config.base import PosFloat, PosInt, Spec, key_of
from neupims.ops import dtype_bytes

#: Dimensionless constants of the CPU model, their meaning and the value used when a config
#: does not give one. Defaults are assumptions stated in docs/cpu.md; measured machines get
#: fitted values (``neupims.devices.cpu_fit.fit``).
EFFICIENCY_KEYS: dict[str, tuple[str, float]] = {
    "gemm_fp32": ("fraction of nominal fp32 FMA peak reached by the BLAS micro-kernel", 0.9),
    "gemm_fp64": ("fraction of nominal fp64 FMA peak reached by the BLAS micro-kernel", 0.9),
    "gemm_other": ("the same for other dtypes (bf16, int8 on VNNI/AMX)", 0.8),
    "gemm_k0": ("micro-kernel fixed cost per call, in k-iterations (C tile load/store)", 12.0),
    "call_us": ("fixed cost of one library call (Python + BLAS dispatch), microseconds", 3.0),
    "thread_us": (
        "fork/join cost of a parallel region, microseconds per level of its thread tree",
        5.0,
    ),
    "bw_l1": ("fraction of nominal L1 bandwidth reached by streaming kernels", 0.6),
    "bw_l2": ("fraction of nominal L2 bandwidth reached by streaming kernels", 0.6),
    "bw_l3": ("fraction of nominal L3 bandwidth reached by streaming kernels", 0.6),
    "bw_dram": ("fraction of nominal DRAM bandwidth reached by streaming kernels", 0.7),
    "cache_share": ("fraction of the last-level cache this process may use", 0.75),
}


#: A key of :data:`EFFICIENCY_KEYS` (a typo is an error naming the key).
EfficiencyKey = key_of(EFFICIENCY_KEYS, "efficiency constant")


class CacheLevel(Spec):
    """One cache level. ``bandwidth_gbps_per_core``: GB/s one core can stream from it."""

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
    #: main memory in GiB; optional (replay's ``fits`` column is empty without it). The
    #: detected CPU (``--hw cpu``) takes MemTotal from /proc/meminfo
    dram_capacity_gb: PosFloat | None = None
    efficiency: dict[EfficiencyKey, PosFloat] = Field(default_factory=dict)
    #: threads the software runs with (BLAS/OpenMP); default: one per core
    run_threads: PosInt | None = None
    #: DRAM GB/s one core can draw (limited by its outstanding misses); default:
    #: Little's law, ``mlp_lines`` x 64 B / ``dram_latency_ns``
    dram_bandwidth_per_core_gbps: PosFloat | None = None
    #: cache-line misses one core keeps in flight (used only for the default above)
    mlp_lines: PosInt = 32
    #: architectural vector registers (16 for AVX2, 32 for AVX-512 and AArch64 NEON)
    vector_registers: PosInt = 16
    #: FLOPs per cycle per core for dtypes whose units differ from the FMA pipes
    #: (e.g. AMX, VNNI int8); overrides ``2 x lanes x fma_units`` for that dtype
    flops_per_cycle: dict[str, PosFloat] = Field(default_factory=dict)
    #: 128-bit table-lookup shuffles (TBL / PSHUFB) issued per cycle per core
    shuffle_per_cycle: PosFloat = 2.0
    #: vector integer ALU instructions per cycle per core
    vector_alu_per_cycle: PosFloat = 2.0
    #: stores to a line not in cache first read it (x86 and Arm caches are write-allocate)
    write_allocate: bool = True
    #: an op's inputs start where they fit in cache (true when one op is timed in a loop,
    #: as the cross-check does); false: they come from DRAM, as the distinct layers of a
    #: replayed trace do
    warm: bool = False

    def eff(self, key: str) -> float:
        """The efficiency constant ``key``: the config's value, else the documented default."""
        return float(self.efficiency.get(key, EFFICIENCY_KEYS[key][1]))

    @property
    def nthreads(self) -> int:
        """Threads the modelled software runs with (``run_threads``, else one per core)."""
        return self.run_threads or self.cores

    def flops_per_cycle_core(self, dtype: str) -> float:
        """Peak FLOPs per cycle of one core for ``dtype`` (one FMA = 2 FLOPs)."""
        if dtype in self.flops_per_cycle:
            return float(self.flops_per_cycle[dtype])
        lanes = self.simd_bits / (8 * dtype_bytes(dtype))
        return 2.0 * lanes * self.fma_units

    def peak_flops(self, dtype: str) -> float:
        """Peak FLOP/s of all cores for ``dtype``."""
        return self.flops_per_cycle_core(dtype) * self.frequency_ghz * 1e9 * self.cores

    @property
    def peak_bytes_per_s(self) -> float:
        return self.dram_bandwidth_gbps * 1e9

    @property
    def memory_capacity_bytes(self) -> float | None:
        """Main memory in bytes (``dram_capacity_gb`` GiB), None when the config omits it."""
        return None if self.dram_capacity_gb is None else self.dram_capacity_gb * 2**30

    @property
    def dram_gbps_per_core(self) -> float:
        """GB/s one core can draw from DRAM (config value, else Little's law)."""
        if self.dram_bandwidth_per_core_gbps is not None:
            return float(self.dram_bandwidth_per_core_gbps)
        little = self.mlp_lines * 64 / self.dram_latency_ns  # B/ns = GB/s
        return min(little, self.dram_bandwidth_gbps)
