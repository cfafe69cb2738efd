"""The ``replay`` kind: trace one forward step of a model and replay it on one device.

Point config: ``model`` (zoo name, ``neupims trace --list``), ``phase``, ``batch``, ``seq``
(prompt length for prefill, tokens in the KV cache for decode), ``tp``, ``dtype``, ``hw``
(a hw_configs/ name or path), optional ``hw_overrides`` deep-merged into that hardware
config (``hw_overrides.hbm_bandwidth_gbps: [2000, 3350]``) and optional ``device_model``
(default: the most detailed model registered for the hardware kind).

The step is costed as ``neupims replay`` costs it (``DeviceModel.step``; ``dispatch``:
``eager`` or ``graph`` for GPUs, default eager as plain PyTorch; ops back to back elsewhere).
Metrics: ``latency_s`` (seconds per step), ``tokens_per_s`` (batch / latency for decode,
batch x seq / latency for prefill), ``tflops_per_s`` (achieved), ``flops``, ``bytes`` (moved
to/from main memory), ``peak_footprint_bytes`` (weights and KV caches plus the largest
activation of one op), ``busy_s`` (the device's busy time), ``sum_isolated_s`` (the ops'
isolated times summed), ``energy_j`` (NaN when the device model has no energy model),
``ops``, ``dispatch`` and ``device_model`` (the model used).
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator

from neupims.atomic import atomic_write_text
from neupims.config import load_hw
from neupims.config.base import PosInt, Spec, at_most
from neupims.devices import get_model
from neupims.experiments.kinds import ExperimentKind, about, register_kind
from neupims.experiments.overrides import apply_hw_overrides
from neupims.limits import MAX_BATCH, MAX_SEQ_LEN
from neupims.ops import dtype_bytes
from neupims.replay import replay_step
from neupims.workloads import get_model as get_zoo_model
from neupims.workloads import list_models, trace
from neupims.workloads.specs import TransformerSpec
from neupims.workloads.transformer import shard

METRICS = (
    "latency_s",
    "tokens_per_s",
    "tflops_per_s",
    "flops",
    "bytes",
    "peak_footprint_bytes",
    "busy_s",
    "sum_isolated_s",
    "energy_j",
    "ops",
    "dispatch",
    "device_model",
)


class ReplayPoint(Spec):
    model: str
    phase: Literal["prefill", "decode"] = "decode"
    batch: Annotated[PosInt, at_most(MAX_BATCH)] = 1
    seq: Annotated[PosInt, at_most(MAX_SEQ_LEN)] = 1
    tp: PosInt = 1
    dtype: str = "fp16"
    hw: str
    hw_overrides: dict[str, Any] = Field(default_factory=dict)
    device_model: str | None = None
    dispatch: Literal["eager", "graph", "serial"] | None = None  # None: the device's default

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        names = list_models()
        if v not in names and not Path(v).exists():
            raise ValueError(f"unknown model {v!r}; expected one of {names}")
        return v

    @field_validator("hw")
    @classmethod
    def _known_hw(cls, v: str) -> str:
        load_hw(v)  # ConfigError (a ValueError) names the file and key
        return v

    @field_validator("hw_overrides")
    @classmethod
    def _valid_overrides(cls, v: dict[str, Any], info) -> dict[str, Any]:
        if v and "hw" in info.data:
            apply_hw_overrides(info.data["hw"], v)
        return v


@lru_cache(maxsize=128)
def _trace(model: str, phase: str, batch: int, seq: int, tp: int, dtype: str):
    return tuple(trace(model, phase, batch, seq, tp=tp, dtype=dtype))


def _replay(cfg: ReplayPoint):
    hw = apply_hw_overrides(cfg.hw, cfg.hw_overrides)
    ops = _trace(cfg.model, cfg.phase, cfg.batch, cfg.seq, cfg.tp, cfg.dtype)
    return replay_step(list(ops), hw, cfg.device_model, cfg.dispatch)


def validate_point(cfg: ReplayPoint) -> None:
    """What would fail at run time: the dtype (known, and with a peak on the device), the
    device model (exists, models this hardware kind), and the trace itself (tensor
    parallelism dividing the heads, every op within the limits of neupims/limits.py)."""
    hw = apply_hw_overrides(cfg.hw, cfg.hw_overrides)
    with about("dtype"):
        dtype_bytes(cfg.dtype)
        if hasattr(hw, "peak_flops"):
            hw.peak_flops(cfg.dtype)
    with about("device_model"):
        get_model(hw, cfg.device_model)
    with about("tp"):
        spec = get_zoo_model(cfg.model)
        if isinstance(spec, TransformerSpec):
            shard(spec, cfg.tp, cfg.model)
    with about("batch", "seq"):  # what is left: ops beyond the limits (batch x seq tokens)
        _trace(cfg.model, cfg.phase, cfg.batch, cfg.seq, cfg.tp, cfg.dtype)


def run_point(cfg: ReplayPoint) -> dict[str, Any]:
    df, s = _replay(cfg)
    tokens = cfg.batch if cfg.phase == "decode" else cfg.batch * cfg.seq
    energy = float(df["energy_j"].sum()) if "energy_j" in df else math.nan
    return {
        "latency_s": s.latency_s,
        "tokens_per_s": tokens / s.latency_s if s.latency_s > 0 else math.inf,
        "tflops_per_s": s.flops / s.latency_s / 1e12 if s.latency_s > 0 else 0.0,
        "flops": s.flops,
        "bytes": s.bytes,
        "peak_footprint_bytes": s.peak_footprint_bytes,
        "busy_s": s.busy_s,
        "sum_isolated_s": s.isolated_s,
        "energy_j": energy,
        "ops": s.ops,
        "dispatch": s.dispatch,
        "device_model": s.model,
    }


def timeline(cfg: ReplayPoint, path: str | Path) -> None:
    """Chrome-trace JSON (chrome://tracing, Perfetto) of the point's ops, back to back at
    their isolated latencies."""
    df, _ = _replay(cfg)
    events, t_us = [], 0.0
    for row in df.itertuples(index=False):
        dur = float(row.latency_s) * 1e6
        events.append(
            {
                "name": str(row.layer),
                "cat": str(row.op),
                "ph": "X",
                "ts": t_us,
                "dur": dur,
                "pid": 0,
                "tid": 0,
                "args": {"flops": float(row.flops), "bytes": float(row.bytes), "bound": row.bound},
            }
        )
        t_us += dur
    meta = {"model": cfg.model, "hw": cfg.hw, "phase": cfg.phase, "batch": cfg.batch}
    atomic_write_text(path, json.dumps({"traceEvents": events, "otherData": meta}))


register_kind(
    ExperimentKind(
        name="replay",
        schema=ReplayPoint,
        run_point=run_point,
        description="trace one step of a zoo model and replay it op by op on one device",
        timeline=timeline,
        metrics=METRICS,
        validate_point=validate_point,
    )
)
