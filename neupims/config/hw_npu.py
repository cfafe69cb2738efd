"""Schema of an NPU: weight-stationary systolic arrays, vector units, SRAM.

Numbers for the NeuPIMs NPU come from ../shared/docs/NEUPIMS.md section 2.
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
    def memory_capacity_bytes(self) -> float:
        """Bytes of the memory the NPU is attached to (its ``memory`` config)."""
        from neupims.config.hardware import load_hw

        return float(load_hw(self.memory).capacity_bytes)

    @property
    def vector_flops(self) -> float:
        v = self.vector_unit
        return v.count * v.width * self.clock_hz
