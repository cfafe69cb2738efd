"""Schema of an NPU: weight-stationary systolic arrays, vector units, SRAM.

Numbers for the NeuPIMs NPU come from docs/sources/neupims.md §2.
"""

from __future__ import annotations

from typing import Literal

from neupims.config.base import NonNegFloat, PosFloat, PosInt, Spec
from neupims.ops import dtype_bytes


class SystolicSpec(Spec):
    count: PosInt
    rows: PosInt
    cols: PosInt
    dataflow: Literal["weight_stationary", "output_stationary"] = "weight_stationary"
    # Which GEMM operand the compiler keeps in the arrays (devices/npu.py GEMM_SCHEDULES):
    # "weights": a weight tile is preloaded and the batch rows stream through it;
    # "inputs": a 128-row activation tile is preloaded and the weights stream through it,
    # the mapping of the NeuPIMs artifact's MatMul (operands swapped), see docs/neupims.md.
    stationary_operand: Literal["weights", "inputs"] = "weights"


class VectorSpec(Spec):
    count: PosInt
    width: PosInt  # lanes per unit
    op_latency_cycles: PosInt = 1


class NpuEnergy(Spec):
    """Energy constants (picojoules). Documented where the config sets them."""

    mac_pj: NonNegFloat = 0.0
    vector_op_pj: NonNegFloat = 0.0
    sram_byte_pj: NonNegFloat = 0.0
    static_w: NonNegFloat = 0.0


class DataPath(Spec):
    """Where activations live between ops.

    ``activations: sram`` (default): they stay on chip (the NeuPIMs NPU's 131 MB SRAM holds
    any decode step's activations); only weights and the KV cache cross HBM. ``dram``: every
    op reads its inputs from HBM and writes its result back, as the released NeuPIMs
    simulator's MOVIN/MOVOUT instructions do (docs/neupims.md, "What the released simulator
    does"). ``posted_writes``: a write is acknowledged when it enters the memory controller's
    write buffer and drains while the next op streams its reads (the released controller acks
    writes one cycle after they enter its buffer); off: an op waits for its own writes."""

    activations: Literal["sram", "dram"] = "sram"
    posted_writes: bool = True


class ReleasedQuirks(Spec):
    """Behaviours of the released NeuPIMs simulator's code that a physical NPU would not have,
    each off by default; the released-simulator preset switches them on so that its stages can
    be compared one by one (docs/neupims.md, "Presets").

    ``vector_compute_free``: LayerNorm, residual Add and GELU take their vector work size from
    an address list already moved into the load instruction, so they compute nothing and cost
    only their DRAM traffic (src/operations/LayerNorm.cc, Add.cc, Gelu.cc). Softmax is not
    affected. ``gemm_outputs_not_written``: MatMul builds store addresses for 16 output blocks
    only, so a GEMM writes almost none of its result (src/operations/MatMul.cc)."""

    vector_compute_free: bool = False
    gemm_outputs_not_written: bool = False


class NpuConfig(Spec):
    kind: Literal["npu"]
    name: str
    frequency_mhz: PosFloat
    precision: str = "fp16"
    systolic_array: SystolicSpec
    vector_unit: VectorSpec
    sram_bytes: PosInt
    memory: str  # name or path of the memory config this NPU is attached to
    interconnect_gbps: PosFloat = 64.0  # device-to-device link for TP/PP
    interconnect_latency_us: NonNegFloat = 1.0
    energy: NpuEnergy = NpuEnergy()
    data_path: DataPath = DataPath()
    released_quirks: ReleasedQuirks = ReleasedQuirks()

    @property
    def clock_hz(self) -> float:
        return self.frequency_mhz * 1e6

    @property
    def macs_per_cycle(self) -> int:
        s = self.systolic_array
        return s.count * s.rows * s.cols

    def peak_flops(self, dtype: str) -> float:
        # The arrays run at `precision`; narrower dtypes gain nothing, wider ones are
        # emulated at the precision ratio.
        ratio = min(1.0, dtype_bytes(self.precision) / dtype_bytes(dtype))
        return 2.0 * self.macs_per_cycle * self.clock_hz * ratio

    @property
    def vector_flops(self) -> float:
        v = self.vector_unit
        return v.count * v.width * self.clock_hz
