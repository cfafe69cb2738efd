"""Experiment kind ``conv_algos``: one convolution algorithm on one layer of a GPU config.

Reproduces the Im2win GPU figure (Lu et al., Euro-Par 2023; docs/sources/kernels.md §1.2):
TFLOP/s and memory of the twelve Im2win layers for im2col + GEMM, the best cuDNN
algorithm, Im2win and direct convolution. Each point is (hw, layer, algo); the result
carries the model's numbers, the ratios to im2col on the same layer, and the paper's
measured values for that layer and algorithm (FP32, batch 128, its unnamed GPU).
"""

from __future__ import annotations

from typing import Annotated, Literal

from neupims.config import load_hw
from neupims.config.base import NonNegFloat, PosInt, Spec, at_most
from neupims.devices import get_model
from neupims.errors import ConfigError
from neupims.experiments.kinds import ExperimentKind, about, register_kind
from neupims.limits import MAX_BATCH
from neupims.ops import Conv2d
from neupims.workloads import im2win_layers

#: experiment algorithm name -> the model's conv algorithm (``auto`` = fastest of cuDNN's)
ALGOS = {"im2col": "im2col", "cudnn_best": "auto", "im2win": "im2win", "direct": "direct"}

#: The paper's per-layer results (docs/sources/kernels.md §1.2, from the repository's
#: log/log_float_GPU_TFLOPS.txt and log_float_GPU_mem_GB.txt): TFLOPS and device memory in
#: GB, the latter including a CUDA/PyTorch context of about 0.5-0.7 GB.
PAPER_TFLOPS = {
    "im2col": (3.02, 3.05, 3.12, 6.85, 3.79, 3.83, 0.74, 6.25, 2.05, 3.33, 1.68, 0.91),
    "cudnn_best": (4.46, 5.58, 4.63, 9.98, 19.27, 10.12, 1.65, 9.47, 6.42, 11.60, 15.57, 7.09),
    "direct": (0.665, 0.665, 0.717, 0.278, 0.520, 0.184, 0.261, 0.500, 0.560, 0.560, 0.200,
               0.049),
    "im2win": (8.02, 7.69, 3.76, 13.03, 14.50, 9.98, 1.30, 12.03, 7.30, 11.98, 12.39, 7.64),
}  # fmt: skip
PAPER_MEM_GB = {
    "im2col": (1.200, 1.206, 1.438, 1.819, 1.085, 1.050, 2.567, 2.444, 1.161, 1.091, 1.054,
               1.042),
    "cudnn_best": (1.212, 1.356, 1.589, 2.483, 1.108, 1.089, 2.718, 3.632, 1.468, 1.206, 1.175,
                   1.265),
    "direct": (0.786, 0.788, 0.979, 1.309, 0.810, 0.784, 1.544, 1.315, 0.847, 0.800, 0.743,
               0.771),
    "im2win": (0.858, 0.862, 1.263, 1.315, 0.923, 0.849, 1.827, 1.964, 0.929, 0.937, 0.784,
               0.815),
}  # fmt: skip

LAYERS = tuple(f"conv{i}" for i in range(1, 13))


class ConvAlgoPoint(Spec):
    hw: str = "h100_sxm"
    layer: Literal[LAYERS] = "conv1"  # type: ignore[valid-type]
    algo: Literal["im2col", "cudnn_best", "im2win", "direct"] = "im2win"
    batch: Annotated[PosInt, at_most(MAX_BATCH)] = 128
    dtype: Literal["fp32", "fp16", "bf16"] = "fp32"
    #: FP32 convolution math; None keeps the config's (PyTorch's default: TF32)
    conv_fp32_math: Literal["tf32", "fp32"] | None = None
    #: how ``cudnn_best`` picks cuDNN's algorithm (GpuConfig.conv_algo_choice); None keeps
    #: the config's (PyTorch's default: cuDNN's heuristic)
    conv_algo_choice: Literal["heuristic", "benchmark", "exhaustive"] | None = None
    #: device memory outside the model's footprint (CUDA/PyTorch context), added to
    #: ``memory_gb`` to compare with the paper's whole-device figures (0.5-0.7 GB there)
    context_gb: NonNegFloat = 0.6


def _gpu(name: str):
    cfg = load_hw(name)
    if cfg.kind != "gpu":
        raise ConfigError(f"hw: {name!r} is a {cfg.kind} config; conv_algos needs a gpu")
    return cfg


def _cost(hw, op, algo: str):
    return get_model(hw).estimate(Conv2d(**{**op.fields(), "algo": ALGOS[algo]}))


def validate_point(cfg: ConvAlgoPoint) -> None:
    """What would fail at run time: a hardware config that is not a GPU, or a batch whose
    layer exceeds the op limits (neupims/limits.py)."""
    with about("hw"):
        _gpu(cfg.hw)
    with about("batch"):
        base = dict(im2win_layers("gpu"))[cfg.layer]
        Conv2d(**{**base.fields(), "batch": cfg.batch, "dtype": cfg.dtype})


def run_point(cfg: ConvAlgoPoint) -> dict:
    hw = _gpu(cfg.hw)
    if cfg.conv_fp32_math is not None:
        hw = hw.model_copy(update={"conv_fp32_math": cfg.conv_fp32_math})
    if cfg.conv_algo_choice is not None:
        hw = hw.model_copy(update={"conv_algo_choice": cfg.conv_algo_choice})
    base = dict(im2win_layers("gpu"))[cfg.layer]
    op = Conv2d(**{**base.fields(), "batch": cfg.batch, "dtype": cfg.dtype})
    cost = _cost(hw, op, cfg.algo)
    ref = _cost(hw, op, "im2col")
    detail = dict(cost.detail)
    # the paper times Im2win's kernel alone (its window transform runs on the host)
    kernel_s = detail.get("kernel_s", cost.latency_s)
    i = LAYERS.index(cfg.layer)
    return {
        "latency_s": cost.latency_s,
        "tflops": op.flops / cost.latency_s / 1e12,
        "kernel_tflops": op.flops / kernel_s / 1e12,
        "footprint_gb": cost.footprint_bytes / 1e9,
        "workspace_gb": float(detail.get("workspace_bytes", 0.0)) / 1e9,
        "speedup_vs_im2col": ref.latency_s / kernel_s,
        "memory_vs_im2col": cost.footprint_bytes / ref.footprint_bytes,
        "memory_gb": cost.footprint_bytes / 1e9 + cfg.context_gb,
        "memory_saving_vs_im2col_pct": 100
        * (
            1
            - (cost.footprint_bytes / 1e9 + cfg.context_gb)
            / (ref.footprint_bytes / 1e9 + cfg.context_gb)
        ),
        "algo_used": detail.get("algo_used", ALGOS[cfg.algo]),
        "paper_tflops": PAPER_TFLOPS[cfg.algo][i],
        "paper_mem_gb": PAPER_MEM_GB[cfg.algo][i],
        "paper_speedup_vs_im2col": PAPER_TFLOPS[cfg.algo][i] / PAPER_TFLOPS["im2col"][i],
        "paper_memory_saving_vs_im2col_pct": 100
        * (1 - PAPER_MEM_GB[cfg.algo][i] / PAPER_MEM_GB["im2col"][i]),
    }


register_kind(ExperimentKind(
    name="conv_algos", schema=ConvAlgoPoint, run_point=run_point, validate_point=validate_point,
    description="one conv2d algorithm on one Im2win layer of a GPU config (Euro-Par 2023)",
    metrics=("latency_s", "tflops", "kernel_tflops", "footprint_gb", "workspace_gb",
             "speedup_vs_im2col", "memory_vs_im2col", "memory_gb",
             "memory_saving_vs_im2col_pct", "algo_used", "paper_tflops", "paper_mem_gb",
             "paper_speedup_vs_im2col", "paper_memory_saving_vs_im2col_pct"),
))  # fmt: skip
