"""The result of one decode iteration of a system on one device."""

from __future__ import annotations

from dataclasses import dataclass, field

from neupims.systems.timeline import TimelineResult


@dataclass
class IterationResult:
    """One decode iteration (all blocks of one device). Cycles are in the system's
    reporting clock (``clock_hz``: the NPU core clock; 1 GHz for the GPU system).

    ``stage_cycles``: cycles of each stage label (A-F with sub-batch interleaving, else QKV,
    MHA, ProjFFN) in the first block it occurs; ``stage_pim_busy_cycles``: per stage label,
    the busiest channel's and the mean channel's PIM cycles; ``flops``: every FLOP the
    iteration costs (linear layers, attention, vector ops, LM head); ``weight_params``:
    weight elements resident on the device (its blocks and its share of the LM head)."""

    system: str
    batch: int
    layers: int
    sbi: bool
    stage_cycles: dict[str, float]
    stage_pim_busy_cycles: dict[str, dict[str, float]]
    layer_cycles: float  # steady-state cycles of one block
    iteration_cycles: float
    wall_time_s: float
    npu_utilisation: float
    pim_utilisation: float
    mem_bw_utilisation: float
    pim_busy_fraction: float
    dram_energy_j: float
    npu_energy_j: float
    channel_load_max_over_mean: float
    pim_source: str
    flops: float = 0.0
    weight_params: int = 0
    #: cycles of each op of the first sub-batch's block, as ``chain/op`` (``qkv/attn.qkv``,
    #: ``projffn/mlp.fc1``, ``mha/...``), to compare op by op with a reference
    op_cycles: dict[str, float] = field(default_factory=dict)
    clock_hz: float = 1e9
    timeline: TimelineResult | None = field(default=None, repr=False)

    @property
    def energy_j(self) -> float:
        return self.dram_energy_j + self.npu_energy_j

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "timeline"}
        d["energy_j"] = self.energy_j
        return d
