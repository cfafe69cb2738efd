"""Experiment kind ``apint_gpu``: bipolar-INT arbitrary-precision GEMMs on a GPU.

Reproduces the headlines of Ma et al., arXiv 2409.17870 (ASP-DAC 2025; docs/sources/kernels.md
section 7): up to 2.4x MatMul speed over NVIDIA CUTLASS and up to 6.7x LLM inference. A
point is one weight/activation bit pair (``wa``, e.g. ``w1a2``) on one workload:

* ``workload: matmul``: one GEMM of ``m x n x k``; bipolar-INT against the CUTLASS int4/int8
  GEMM on the padded precision and against an fp16 cuBLAS GEMM. ``kernel_only`` (default)
  compares the GEMM kernels alone, as kernel benchmarks time them; otherwise each side also
  pays its activation quantisation / bit-plane packing pass.
* ``workload: <zoo model>``: one ``phase`` step (``batch`` sequences, ``seq`` tokens of
  context or prompt) with the four linear layers of every block (QKV, O, FFN up, FFN down)
  as bipolar-INT or CUTLASS GEMMs (packing included) and everything else (attention, norms,
  LM head) in fp16, against the all-fp16 step. Steps are costed by
  :func:`neupims.serving.costing.step_time`.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from neupims.config import load_hw
from neupims.config.base import PosInt, Spec
from neupims.devices import get_model
from neupims.errors import ConfigError
from neupims.experiments.kinds import ExperimentKind, register_kind
from neupims.ops import ApintGemm, Gemm
from neupims.serving.costing import step_time
from neupims.workloads import TracedOp, list_models, trace

#: The paper's headline numbers (abstract of arXiv 2409.17870 v2).
PAPER_MATMUL_SPEEDUP_MAX = 2.4
PAPER_E2E_SPEEDUP_MAX = 6.7

#: Layer-name suffixes of the linear layers that run as arbitrary-precision GEMMs.
QUANTISED_LINEARS = ("attn.qkv", "attn.o", "mlp.fc1", "mlp.fc2")

_WA = re.compile(r"^w([1-8])a([1-8])$")


class ApintPoint(Spec):
    hw: str = "rtx3090"
    #: weight and activation bits, ``w<1-8>a<1-8>``
    wa: str = "w1a2"
    workload: str = "matmul"
    m: PosInt = 4096
    n: PosInt = 4096
    k: PosInt = 4096
    kernel_only: bool = True
    phase: Literal["prefill", "decode"] = "decode"
    batch: PosInt = 1
    seq: PosInt = Field(1024, description="context (decode) or prompt (prefill) tokens")
    # whole steps (GpuModel.step): "graph" = the GPU's kernel time (an inference engine that
    # launches from a CUDA graph), "eager" = plain PyTorch's host dispatch included
    dispatch: Literal["graph", "eager"] = "graph"

    @field_validator("wa")
    @classmethod
    def _wa(cls, v: str) -> str:
        if not _WA.match(v):
            raise ValueError(
                f"expected w<bits>a<bits> with 1 to 8 bits each (e.g. w1a2), got {v!r}"
            )
        return v

    @field_validator("workload")
    @classmethod
    def _workload(cls, v: str) -> str:
        if v != "matmul" and v not in list_models():
            raise ValueError(f"expected 'matmul' or a zoo model (neupims trace --list), got {v!r}")
        return v

    @property
    def bits(self) -> tuple[int, int]:
        w, a = _WA.match(self.wa).groups()  # type: ignore[union-attr]
        return int(w), int(a)


def _gpu(name: str):
    cfg = load_hw(name)
    if cfg.kind != "gpu":
        raise ConfigError(f"hw: {name!r} is a {cfg.kind} config; apint_gpu needs a gpu")
    return cfg


def quantise_linears(ops, wbits: int, abits: int, kernel: str):
    """``ops`` with every linear layer of :data:`QUANTISED_LINEARS` as an ApintGemm."""
    out = []
    for t in ops:
        if t.layer.split(".", 1)[-1] in QUANTISED_LINEARS:
            g = t.op
            out.append(TracedOp(t.layer, ApintGemm(g.m, g.n, g.k, wbits, abits, g.dtype, kernel)))
        else:
            out.append(t)
    return out


def _matmul(hw, cfg: ApintPoint, w: int, a: int) -> dict:
    model = get_model(hw)
    ops = {k: ApintGemm(cfg.m, cfg.n, cfg.k, w, a, kernel=k)
           for k in ("bipolar_int", "cutlass_padded")}  # fmt: skip
    costs = {k: model.estimate(op) for k, op in ops.items()}
    part = {k: dict(c.detail) for k, c in costs.items()}
    key = "kernel_s" if cfg.kernel_only else None
    t = {k: (part[k][key] if key else c.latency_s) for k, c in costs.items()}
    fp16 = model.estimate(Gemm(cfg.m, cfg.n, cfg.k)).latency_s
    b = part["bipolar_int"]
    return {
        "panel": f"GEMM N={cfg.n} K={cfg.k}",
        "case": f"M={cfg.m}",
        "bipolar_s": t["bipolar_int"],
        "cutlass_s": t["cutlass_padded"],
        "fp16_s": fp16,
        "pack_s": b["pack_s"],
        "mma_s": b["mma_s"],
        "recover_s": b["recover_s"],
        "bit_mmas": ops["bipolar_int"].bit_mmas,
        "cutlass_dtype": part["cutlass_padded"]["mma_dtype"],
        "equiv_tops": ops["bipolar_int"].flops / t["bipolar_int"] / 1e12,
    }


def _e2e(hw, cfg: ApintPoint, w: int, a: int) -> dict:
    ops = trace(cfg.workload, cfg.phase, cfg.batch, cfg.seq)
    fp16 = step_time(hw, ops, cfg.dispatch)
    bi = step_time(hw, quantise_linears(ops, w, a, "bipolar_int"), cfg.dispatch)
    cu = step_time(hw, quantise_linears(ops, w, a, "cutlass_padded"), cfg.dispatch)
    return {
        "panel": f"{cfg.workload} step",
        "case": f"{cfg.phase} b{cfg.batch}",
        "bipolar_s": bi.seconds,
        "cutlass_s": cu.seconds,
        "fp16_s": fp16.seconds,
        "pack_s": float("nan"),
        "mma_s": bi.kind_seconds("apint_gemm"),
        "recover_s": float("nan"),
        "bit_mmas": float("nan"),
        "cutlass_dtype": "int4" if max(w, a) <= 4 else "int8",
        "equiv_tops": float("nan"),
    }


def run_point(cfg: ApintPoint) -> dict:
    hw = _gpu(cfg.hw)
    w, a = cfg.bits
    r = _matmul(hw, cfg, w, a) if cfg.workload == "matmul" else _e2e(hw, cfg, w, a)
    return {
        **r,
        "wbits": w,
        "abits": a,
        "speedup_vs_cutlass": r["cutlass_s"] / r["bipolar_s"],
        "speedup_vs_fp16": r["fp16_s"] / r["bipolar_s"],
        "paper_matmul_speedup_max": PAPER_MATMUL_SPEEDUP_MAX,
        "paper_e2e_speedup_max": PAPER_E2E_SPEEDUP_MAX,
    }


register_kind(ExperimentKind(
    name="apint_gpu", schema=ApintPoint, run_point=run_point,
    description="bipolar-INT arbitrary-precision GEMM / LLM step vs CUTLASS and fp16 (2409.17870)",
    metrics=("panel", "case", "bipolar_s", "cutlass_s", "fp16_s", "pack_s", "mma_s", "recover_s",
             "bit_mmas", "cutlass_dtype", "equiv_tops", "wbits", "abits", "speedup_vs_cutlass",
             "speedup_vs_fp16", "paper_matmul_speedup_max", "paper_e2e_speedup_max"),
))  # fmt: skip
