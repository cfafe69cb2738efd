"""Systems: an interface, a registry of system kinds, and the named systems as configuration.

A *system kind* is a class (:class:`System`) that composes devices into one decode
iteration: ``npu`` (an NPU sharing HBM with PIM channels: NPU-only, NPU+PIM, NeuPIMs) and
``gpu`` (GPU-only). Each kind has its typed spec (:class:`SystemSpec` subclass, unknown keys
are errors). A *named system* is a spec registered in :data:`SYSTEMS`; the NeuPIMs
baselines differ only in spec fields (docs/sources/neupims.md §14: "the three simulated
systems differ only in pim_type, the trace placement and the SBI flag"), and the ablation of
Fig. 13 is the same spec with fields switched (``get_system("npu_pim", dual_row_buffer=True)``).

Adding a system kind is one module with a :class:`System` subclass decorated with
:func:`register_system_kind`, listed in :data:`SYSTEM_MODULES`; adding a named system of an
existing kind is one :func:`register_system` call (docs/neupims.md, "Adding a system").
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import ValidationError

from neupims.config.base import Fraction, NonNegInt, Spec
from neupims.errors import ConfigError
from neupims.systems.block import DecodeBlock, decode_block

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from neupims.systems.kv import KvLayout
    from neupims.systems.result import IterationResult

#: Modules that define system kinds (imported when the registry is first used).
SYSTEM_MODULES = ("neupims.systems.npu_pim", "neupims.systems.gpu")


class SystemSpec(Spec):
    """Fields every system has. ``kind`` picks the class that composes it; ``hw`` is the
    hardware config of its main device (name in hw_configs/ or a path)."""

    name: str
    kind: str
    hw: str
    lm_head: bool = True  # include the LM-head GEMM of the last pipeline stage


class NpuSystemSpec(SystemSpec):
    """An NPU sharing its HBM with PIM channels. ``attention`` says where decode attention
    runs (``npu``: streamed through the systolic arrays; ``pim``: on the PIM banks)."""

    kind: Literal["npu"] = "npu"
    hw: str = "npu_neupims"
    attention: Literal["npu", "pim"] = "pim"
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
    # How a sub-batch's MHA runs on the PIM channels: "fused" = each channel runs its
    # requests' K^T q and s.V back to back (the paper's per-request flow); "barrier" = every
    # channel runs all its requests' K^T q, all channels wait for the slowest, then all run
    # s.V (the released simulator's NPU core issues one PIM operation at a time).
    pim_phases: Literal["fused", "barrier"] = "fused"

    def uses_sbi(self, batch: int) -> bool:
        return self.sbi and self.attention == "pim" and batch >= self.sbi_min_batch and batch >= 2


class GpuSystemSpec(SystemSpec):
    """A GPU per tensor-parallel rank running every op (``neupims.devices.gpu``)."""

    kind: Literal["gpu"] = "gpu"
    hw: str = "a100_40gb"
    # how the host launches the step's kernels (GpuModel.step): "graph" = a captured CUDA
    # graph (what serving engines such as vLLM do for decode), "eager" = plain PyTorch
    dispatch: Literal["graph", "eager"] = "graph"
    # share of the GPU's memory that weights and KV cache may take (vLLM's default
    # gpu_memory_utilization = 0.9; the rest is activations, workspace, the CUDA context)
    memory_fraction: Fraction = 0.9
    kv_page_tokens: NonNegInt = 16  # paged KV blocks of 16 tokens (vLLM's default block size)


class System:
    """One system on one model split ``tp`` x ``pp``: the simulated device is the last
    pipeline stage (it holds the LM head). Subclasses set ``kind`` and ``spec_cls``."""

    kind: ClassVar[str]
    spec_cls: ClassVar[type[SystemSpec]]

    spec: SystemSpec
    model: str
    tp: int
    pp: int
    layers: int  # decoder blocks simulated (default: all blocks of the stage)
    comm: bool
    clock_hz: float  # reporting clock of the iteration's cycles

    dtype: str = "fp16"  # element type of the traced ops

    @property
    def devices(self) -> int:
        return self.tp * self.pp

    def _setup(self, spec, model: str, tp: int, pp: int, layers: int | None, comm: bool) -> None:
        """The fields every system sets: its spec, the model split, the one-request block
        template (building it validates the model, ``tp`` and ``pp``) and the blocks run."""
        self.spec, self.model, self.tp, self.pp, self.comm = spec, model, tp, pp, comm
        self.template = decode_block(model, 1, tp, pp, self.dtype)
        full = self.template.stage_layers
        self.layers = full if layers is None else layers
        self.with_head = spec.lm_head and self.layers == full

    def block(self, batch: int) -> DecodeBlock:
        """The ops of one block for ``batch`` requests (from the zoo's trace)."""
        return decode_block(self.model, batch, self.tp, self.pp, self.dtype)

    def kv(self) -> KvLayout:  # pragma: no cover - interface
        """The KV-cache pools, their capacity and the placement policy."""
        raise NotImplementedError

    def iteration(
        self, seq_lens, ch_idx=None, *, record: bool = False, periodic: bool = False
    ) -> IterationResult:  # pragma: no cover - interface
        """One decode iteration of the requests (``seq_lens[i]`` keys of context, KV cache
        in pool ``ch_idx[i]``) on this system's device."""
        raise NotImplementedError

    def handoff_s(self, batch: int) -> float:  # pragma: no cover - interface
        """Pipeline hand-off of one batch's activations to the next stage (seconds)."""
        raise NotImplementedError

    def step(self, seq_lens: np.ndarray, ch_idx: np.ndarray, periodic: bool = True) -> dict:
        """One serving iteration of one pipeline stage: the device runs its ``layers / pp``
        blocks for the whole batch it holds, as the authors' simulator does (one device, the
        snapshot's batch). With ``pp`` stages, ``pp`` such batches are in flight, so the
        system emits one batch of tokens per stage time; the activations are handed to the
        next stage over the interconnect (added serially, a conservative choice).
        Returns the :class:`IterationResult` fields as a dict."""
        r = self.iteration(seq_lens, ch_idx, periodic=periodic)
        out = r.as_dict()
        extra = self.handoff_s(r.batch) * r.clock_hz if (self.pp > 1 and self.comm) else 0.0
        if extra > 0:
            scale = r.iteration_cycles / (r.iteration_cycles + extra)
            out["iteration_cycles"] += extra
            out["wall_time_s"] += extra / r.clock_hz
            for k in (
                "npu_utilisation",
                "pim_utilisation",
                "mem_bw_utilisation",
                "pim_busy_fraction",
            ):
                out[k] *= scale
        return out


#: Named presets: spec field overrides per system kind, applied before a caller's own
#: overrides (docs/neupims.md, "Presets"). ``paper``: the model as the paper describes the
#: hardware (the default). ``released``: as the released NeuPIMs simulator runs it, to compare
#: stage by stage (its NPU mapping, data path and quirks in hw_configs/npu_neupims_released.yaml,
#: no weight prefetch during the MHA, the K^T q / s.V barrier).
PRESETS: dict[str, dict[str, dict]] = {
    "paper": {},
    "released": {
        "npu": {
            "hw": "npu_neupims_released",
            "prefetch_during_pim": False,
            "pim_phases": "barrier",
        }
    },
}

#: system kind -> class
SYSTEM_KINDS: dict[str, type[System]] = {}
#: name -> spec. A named system is one entry here (or an override of an existing one).
SYSTEMS: dict[str, SystemSpec] = {}

_loaded = False


def _load_kinds() -> None:
    global _loaded
    if not _loaded:
        for mod in SYSTEM_MODULES:
            importlib.import_module(mod)
        _loaded = True


def register_system_kind(cls: type[System]) -> type[System]:
    SYSTEM_KINDS[cls.kind] = cls
    return cls


def register_system(spec: SystemSpec) -> SystemSpec:
    SYSTEMS[spec.name] = spec
    return spec


register_system(NpuSystemSpec(name="npu_only", attention="npu", placement="round_robin"))
register_system(NpuSystemSpec(name="npu_pim", attention="pim", placement="round_robin"))
register_system(
    NpuSystemSpec(
        name="neupims",
        attention="pim",
        dual_row_buffer=True,
        placement="gmlbp",
        sbi=True,
        sbi_min_batch=256,
    )
)
# The naive baseline as the released artifact's `npu+pim` branch configures it: its system
# json sets sub_batch_mode: true (docs/sources/neupims.md §14), i.e. SBI in blocked mode,
# which the artifact README switches on for batch >= 256. The paper's text describes NPU+PIM
# without SBI (`npu_pim`); docs/neupims.md reports the Fig. 12 ratios against both readings.
register_system(
    NpuSystemSpec(
        name="npu_pim_sbi",
        attention="pim",
        placement="round_robin",
        sbi=True,
        sbi_min_batch=256,
    )
)
register_system(GpuSystemSpec(name="gpu_only"))


def get_system(name: str, preset: str = "paper", **overrides) -> SystemSpec:
    """The registered system ``name`` under ``preset`` (:data:`PRESETS`) with ``overrides``
    applied (validated against its kind's spec: a field of another kind is an error)."""
    if name not in SYSTEMS:
        raise ConfigError(f"system: unknown system {name!r}; expected one of {sorted(SYSTEMS)}")
    if preset not in PRESETS:
        raise ConfigError(f"preset: unknown preset {preset!r}; expected one of {sorted(PRESETS)}")
    spec = SYSTEMS[name]
    overrides = {**PRESETS[preset].get(spec.kind, {}), **overrides}
    if not overrides:
        return spec
    data = spec.model_dump()
    unknown = sorted(set(overrides) - set(data))
    if unknown:
        raise ConfigError(
            f"system {name}: unknown override(s) {unknown}; expected some of {sorted(data)}"
        )
    data.update(overrides)
    try:
        return type(spec)(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(
            f"system {name}: {where}: {err['msg']}, got {err.get('input')!r}"
        ) from None


def build_system(
    system: str | SystemSpec,
    model: str,
    tp: int = 1,
    pp: int = 1,
    *,
    layers: int | None = None,
    comm: bool = True,
    hw_overrides: dict | None = None,
    preset: str = "paper",
    **overrides,
) -> System:
    """A ready :class:`System`: ``system`` (a name or a spec, with ``preset`` and field
    ``overrides``) on ``model`` split ``tp`` x ``pp``. ``layers`` limits the blocks simulated;
    ``comm`` models TP all-reduce and PP hand-off on the system's interconnect;
    ``hw_overrides`` deep-merges into the main device's hardware config (validated)."""
    spec = get_system(system, preset, **overrides) if isinstance(system, str) else system
    if (overrides or preset != "paper") and not isinstance(system, str):
        raise ConfigError(
            "build_system: pass a preset and overrides with a system name, not a spec"
        )
    _load_kinds()
    cls = SYSTEM_KINDS.get(spec.kind)
    if cls is None:
        raise ConfigError(
            f"system {spec.name}: unknown kind {spec.kind!r}; expected one of {sorted(SYSTEM_KINDS)}"
        )
    for what, v in (("tp", tp), ("pp", pp)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{what} must be a positive integer, got {v!r}")
    built = cls(spec, model, tp, pp, layers=None, comm=comm, hw_overrides=hw_overrides)
    if layers is None:
        return built
    full = built.template.stage_layers
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= full:
        raise ConfigError(
            f"layers must be in 1..{full} (the decoder blocks of one pipeline stage of "
            f"{model}), got {layers!r}"
        )
    return cls(spec, model, tp, pp, layers=layers, comm=comm, hw_overrides=hw_overrides)
