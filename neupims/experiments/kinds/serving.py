"""The ``neupims_serving`` kind: one serving run of one system (NeuPIMs Figs. 12-14, Table 4).

A point names a registered system (``npu_only``, ``npu_pim``, ``npu_pim_sbi``, ``neupims``,
``gpu_only``), optional overrides of its spec fields for the ablation (``dual_row_buffer``,
``placement``, ``sbi``, ``sbi_min_batch``; ``dispatch`` for the GPU), overrides of its
hardware (``hw_overrides``), the model, dataset, batch, tensor/pipeline parallelism and the
length of the run. It returns the serving metrics of :func:`neupims.serving.serve`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from neupims.config.base import NonNegInt, PosInt, Spec, at_most
from neupims.config.overrides import apply_hw_overrides
from neupims.errors import ConfigError
from neupims.experiments.kinds import ExperimentKind, about, register_kind
from neupims.limits import MAX_BATCH, MAX_SEQ_LEN
from neupims.serving import serve
from neupims.serving.loop import Server
from neupims.systems.base import build_system, get_system
from neupims.systems.placement import get_policy
from neupims.systems.timeline import write_chrome_trace
from neupims.workloads import get_model
from neupims.workloads.datasets import get_dataset
from neupims.workloads.specs import TransformerSpec

METRICS = (
    "throughput_tokens_per_s",
    "iter_latency_ms_mean",
    "iter_latency_ms_p99",
    "npu_utilisation",
    "pim_utilisation",
    "pim_busy_fraction",
    "mem_bw_utilisation",
    "memory_power_w",
    "npu_power_w",
    "energy_per_token_j",
    "dram_energy_per_token_j",
    "channel_load_max_over_mean",
    "mean_active",
    "preempted",
    "max_kv_tiles_used_fraction",
    "label",
    "panel",
    "parallelism",
    "devices",
    "preset",
)


class ServingPoint(Spec):
    system: str = "neupims"
    # "paper": the hardware as the paper describes it; "released": as the released NeuPIMs
    # simulator runs it (neupims.systems.base.PRESETS, docs/neupims.md "Presets")
    preset: Literal["paper", "released"] = "paper"
    overrides: dict[str, Any] = Field(default_factory=dict)  # SystemSpec fields
    label: str = ""  # name shown in figures (default: the system name)
    model: str = "gpt3-7b"
    dataset: str = "sharegpt"
    batch: Annotated[PosInt, at_most(MAX_BATCH)] = 256
    tp: PosInt = 4
    pp: PosInt = 1
    seed: NonNegInt = 0  # NumPy's generators take non-negative seeds
    warmup: NonNegInt = 300
    steady_start: bool = True  # begin from the stationary request mix (Server.start_steady)
    iterations: PosInt = 64
    stride: PosInt = 1  # time one iteration in `stride`; the sample spans iterations*stride
    max_seq_len: Annotated[PosInt, at_most(MAX_SEQ_LEN)] = 2048
    comm: bool = False  # TP all-reduce / PP hand-off; off = the authors' one-device simulator
    kv_layers: Literal["stage", "model"] = "stage"  # KV per device: layers/pp or all (pp batches)
    # "enforce": KV capacity per channel binds (preemption); "unlimited": always `batch`
    # requests, as the artifact's trace generator (docs/neupims.md, KV capacity)
    kv_capacity: Literal["enforce", "unlimited"] = "enforce"
    # overrides of the system's main hardware config (the NPU's, the GPU's), e.g.
    # {systolic_array: {stationary_operand: inputs}}
    hw_overrides: dict[str, Any] = Field(default_factory=dict)


def _system(cfg: ServingPoint, layers: int | None = None):
    return build_system(
        cfg.system,
        cfg.model,
        cfg.tp,
        cfg.pp,
        layers=layers,
        comm=cfg.comm,
        hw_overrides=cfg.hw_overrides,
        preset=cfg.preset,
        **cfg.overrides,
    )


def validate_point(cfg: ServingPoint) -> None:
    """What would fail at run time: the system, its preset and overrides, a model that is not
    a decoder, the hardware overrides, tensor/pipeline parallelism that does not divide the
    model, the placement policy, the dataset, and a batch the KV capacity cannot serve."""
    with about("system"):
        get_system(cfg.system)
    with about("overrides"):
        system = get_system(cfg.system, cfg.preset, **cfg.overrides)
    if hasattr(system, "placement"):
        with about("overrides.placement" if "placement" in cfg.overrides else "system"):
            get_policy(system.placement)
    with about("model"):
        spec = get_model(cfg.model)
        if not isinstance(spec, TransformerSpec) or spec.kind != "decoder":
            raise ValueError(
                f"model {cfg.model!r} is of kind {spec.kind!r}; serving needs a decoder"
            )
    with about("hw_overrides"):
        if cfg.hw_overrides:
            apply_hw_overrides(system.hw, cfg.hw_overrides, "hw_overrides")
    with about("tp", "pp"):
        built = _system(cfg)
    with about("dataset"):
        get_dataset(cfg.dataset)
    with about("batch", "max_seq_len", "tp", "pp"):
        Server(built, cfg.dataset, cfg.batch, cfg.seed, cfg.max_seq_len, kv_layers=cfg.kv_layers,
               kv_capacity=cfg.kv_capacity)  # fmt: skip


def run_point(cfg: ServingPoint) -> dict:
    row = serve(
        _system(cfg),
        cfg.dataset,
        cfg.batch,
        seed=cfg.seed,
        warmup=cfg.warmup,
        iterations=cfg.iterations,
        max_seq_len=cfg.max_seq_len,
        kv_layers=cfg.kv_layers,
        steady_start=cfg.steady_start,
        stride=cfg.stride,
        kv_capacity=cfg.kv_capacity,
    )
    row["label"] = cfg.label or cfg.system
    row["panel"] = f"{cfg.model} {cfg.dataset}"
    row["devices"] = cfg.tp * cfg.pp
    row["parallelism"] = f"TP{cfg.tp} PP{cfg.pp}"
    row["preset"] = cfg.preset
    return row


def timeline(cfg: ServingPoint, path: Path) -> None:
    """Chrome trace of one iteration (two blocks) at the end of the point's warm-up."""
    srv = Server(
        _system(cfg),
        cfg.dataset,
        cfg.batch,
        cfg.seed,
        cfg.max_seq_len,
        kv_layers=cfg.kv_layers,
        kv_capacity=cfg.kv_capacity,
    )
    if cfg.steady_start:
        srv.start_steady()
    for _ in range(cfg.warmup):
        srv.step(False)
    srv.refill(False)
    act = np.flatnonzero(srv.ch >= 0)
    small = _system(cfg, layers=2)
    r = small.iteration(srv.context()[act], srv.ch[act], record=True)
    if r.timeline is None:
        raise ConfigError(f"system {cfg.system}: its iteration has no stage timeline to export")
    write_chrome_trace(r.timeline, path, 1e9 / r.clock_hz)


register_kind(
    ExperimentKind(
        name="neupims_serving",
        schema=ServingPoint,
        run_point=run_point,
        description="continuous-batching decode serving on an NPU / NPU+PIM / NeuPIMs / GPU",
        timeline=timeline,
        metrics=METRICS,
        validate_point=validate_point,
    )
)
