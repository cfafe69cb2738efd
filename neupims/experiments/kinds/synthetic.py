"""The ``synthetic`` kind: closed-form points for testing and benchmarking the machinery.

It models no hardware. Each point computes a few deterministic numbers from its inputs
(so interrupted and uninterrupted sweeps can be compared exactly), can sleep to make a
sweep slow enough to interrupt, and can fail or kill its worker process on purpose to
test error recording.
A toy roofline (1 TFLOP/s peak, 1 GB/s bandwidth) gives figures something to place.
"""

from __future__ import annotations

import os
import random
import time

from pydantic import Field

from neupims.config.base import NonNegFloat, Spec
from neupims.experiments.kinds import ExperimentKind, register_kind

#: toy roofline of the synthetic device: FLOP/s and bytes/s (arbitrary, for figures only)
TOY_PEAK_FLOPS = 1e12
TOY_BYTES_PER_S = 1e9


class SyntheticPoint(Spec):
    x: float = 1.0
    y: int = 0
    label: str = "a"
    sleep_s: NonNegFloat = 0.0  # seconds each point sleeps before returning
    fail: bool = False  # raise instead of returning
    crash: bool = False  # kill the worker process (os._exit) instead of returning
    seed: int = Field(default=0, strict=True)


def run_point(cfg: SyntheticPoint) -> dict:
    if cfg.sleep_s:
        time.sleep(cfg.sleep_s)
    if cfg.crash:
        os._exit(3)
    if cfg.fail:
        raise RuntimeError(f"synthetic point failed on purpose (x={cfg.x}, y={cfg.y})")
    rng = random.Random(f"{cfg.seed}/{cfg.x}/{cfg.y}/{cfg.label}")
    value = cfg.x * (cfg.y + 1)
    flops = 1e9 * abs(cfg.x)
    nbytes = 1e6 * (cfg.y + 1)
    return {
        "value": value,
        "measured": value * (1 + rng.uniform(-0.15, 0.15)),
        "flops": flops,
        "bytes": nbytes,
        "latency_s": max(flops / TOY_PEAK_FLOPS, nbytes / TOY_BYTES_PER_S),
        "peak_flops_per_s": TOY_PEAK_FLOPS,
        "bytes_per_s": TOY_BYTES_PER_S,
    }


register_kind(
    ExperimentKind(
        name="synthetic",
        schema=SyntheticPoint,
        run_point=run_point,
        description="closed-form test points (no hardware): value = x*(y+1)",
        metrics=(
            "value",
            "measured",
            "flops",
            "bytes",
            "latency_s",
            "peak_flops_per_s",
            "bytes_per_s",
        ),
    )
)
