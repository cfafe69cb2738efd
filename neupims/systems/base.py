"""System registry: the four systems of the NeuPIMs evaluation as configuration.

A system is a frozen :class:`SystemSpec`; the baselines differ only in its fields
(docs/sources/neupims.md §14: "the three simulated systems differ only in pim_type, the trace
placement and the SBI flag"). The ablation of Fig. 13 is the same spec with fields
switched, e.g. ``get_system("npu_pim", dual_row_buffer=True)``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ValidationError

from neupims.config.base import NonNegInt, Spec
from neupims.errors import ConfigError


class SystemSpec(Spec):
    """One system. ``attention`` says where decode attention runs; ``device`` which
    hardware kind runs everything else."""

    name: str
    device: Literal["npu", "gpu"] = "npu"
    hw: str = "npu_neupims"  # hardware config (name in hw_configs/ or path)
    attention: Literal["npu", "pim", "gpu"] = "pim"
    dual_row_buffer: bool = False  # False = Newton blocked mode (one row buffer)
    placement: str = "round_robin"  # a policy of neupims.systems.placement.POLICIES
    sbi: bool = False  # sub-batch interleaving (docs/sources/neupims.md §10)
    sbi_min_batch: NonNegInt = 0  # SBI only for batch >= this (artifact README: 256)
    # "threshold": SBI whenever sbi and batch >= sbi_min_batch (the artifact's rule);
    # "adaptive": each iteration runs whichever of SBI / no SBI its timeline predicts faster
    # (our extension: the scheduler already predicts both stage costs)
    sbi_policy: Literal["threshold", "adaptive"] = "threshold"
    # What-if (not the paper's model, off by default): with SBI the block's weights stay on
    # chip between the two sub-batches, so only the first sub-batch reads them from HBM.
    # Needs SRAM >= one block's weights per device (100-450 MB for the GPT-3 models).
    sbi_weight_reuse: bool = False
    # Without SBI, dual row buffers let the NPU's DMA load the Proj/FFN weights while the
    # PIM runs the MHA (blocked mode cannot: the PIM holds the banks). Off = no prefetch.
    prefetch_during_pim: bool = True
    lm_head: bool = True  # include the LM-head GEMM of the last pipeline stage

    def uses_sbi(self, batch: int) -> bool:
        return self.sbi and batch >= self.sbi_min_batch and batch >= 2


#: name -> spec. A new system is one entry here (or a YAML override of an existing one).
SYSTEMS: dict[str, SystemSpec] = {}


def register_system(spec: SystemSpec) -> SystemSpec:
    SYSTEMS[spec.name] = spec
    return spec


register_system(SystemSpec(name="npu_only", attention="npu", placement="round_robin"))
register_system(
    SystemSpec(name="npu_pim", attention="pim", dual_row_buffer=False, placement="round_robin")
)
register_system(
    SystemSpec(
        name="neupims",
        attention="pim",
        dual_row_buffer=True,
        placement="gmlbp",
        sbi=True,
        sbi_min_batch=256,
    )
)
# The naive baseline as the released artifact's `npu+pim` branch configures it: its system
# json sets sub_batch_mode: true (docs/sources/neupims.md §14), i.e. SBI in blocked mode, which the
# artifact README switches on for batch >= 256. The paper's text describes NPU+PIM without
# SBI (`npu_pim`); docs/neupims.md reports the Fig. 12 ratios against both readings.
register_system(
    SystemSpec(
        name="npu_pim_sbi",
        attention="pim",
        dual_row_buffer=False,
        placement="round_robin",
        sbi=True,
        sbi_min_batch=256,
    )
)
register_system(
    SystemSpec(name="gpu_only", device="gpu", hw="a100_40gb", attention="gpu", lm_head=True)
)


def get_system(name: str, **overrides) -> SystemSpec:
    """The registered system ``name`` with ``overrides`` applied (validated)."""
    if name not in SYSTEMS:
        raise ConfigError(f"system: unknown system {name!r}; expected one of {sorted(SYSTEMS)}")
    if not overrides:
        return SYSTEMS[name]
    data = SYSTEMS[name].model_dump()
    unknown = sorted(set(overrides) - set(data))
    if unknown:
        raise ConfigError(
            f"system {name}: unknown override(s) {unknown}; expected some of {sorted(data)}"
        )
    data.update(overrides)
    try:
        return SystemSpec(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"system {name}: {where}: {err['msg']}, got {err.get('input')!r}"
        ) from None
