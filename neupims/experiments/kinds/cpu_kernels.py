"""Experiment kinds for the CPU model's three paper reproductions (docs/cpu.md).

* ``cpu_spmm``: 4x1 block-sparse int8 SpMM vs dense int8 GEMM (Shen et al., arXiv
  2306.16601: up to 5x over oneDNN dense at 70-90 % sparsity), BERT linear shapes.
* ``tmac_cpu``: T-MAC decode tokens/s of Llama-2-7B and BitNet-3B at 1-4 weight bits (Wei et al., arXiv
  2407.00088), with the paper's table (docs/sources/kernels.md §5) where it has the point.
* ``im2win_cpu``: Im2win vs im2col vs direct convolution on the twelve Im2win CPU layers
  (arXiv 2306.14320: 3.6x over im2col, 5.3x over direct, 41.6 % less memory).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neupims.config import load_hw
from neupims.config.base import PosInt, Spec
from neupims.devices.cpu import (
    conv_footprint,
    conv_time,
    gemm_time,
    lut_time,
    overhead_s,
    spmm_time,
    stream_time,
)
from neupims.errors import ConfigError
from neupims.experiments.kinds import ExperimentKind, about, register_kind
from neupims.ops import Conv2d, Gemm, LutGemm, SpMM
from neupims.workloads import im2win_layers


def _cpu(hw: str, threads: int | None = None, int8_flops_per_cycle: float | None = None):
    cfg = load_hw(hw)
    if cfg.kind != "cpu":
        raise ConfigError(f"hw: {hw!r} is a {cfg.kind} config; these experiments need a cpu")
    upd = {}
    if threads is not None:
        upd["run_threads"] = threads
    if int8_flops_per_cycle is not None:
        upd["flops_per_cycle"] = {**cfg.flops_per_cycle, "int8": int8_flops_per_cycle}
    return cfg.model_copy(update=upd) if upd else cfg


# --------------------------------------------------------------------------- SpMM
#: Linear layers of BERT-Base (docs/sources/workloads.md §2): name -> (out features, in features).
BERT_BASE_LINEARS = {"qkv": (3 * 768, 768), "attn_out": (768, 768), "ffn1": (3072, 768),
                     "ffn2": (768, 3072)}  # fmt: skip


class SpmmPoint(Spec):
    hw: str = "xeon_8480"
    layer: Literal["qkv", "attn_out", "ffn1", "ffn2"] = "ffn1"
    tokens: PosInt = 128  # batch x sequence length (the dense activation's columns)
    sparsity: float = Field(0.8, ge=0.0, lt=1.0)
    threads: PosInt | None = None
    #: the dense baseline's int8 engine: AVX-512 VNNI or AMX (2048 int8 ops/cycle/core,
    #: Intel AMX overview); the sparse kernel always uses VNNI, as in the paper
    dense_engine: Literal["vnni", "amx"] = "vnni"
    #: kernel benchmarks repeat one op, so its operands start in cache (as the paper times)
    warm: bool = True


def validate_spmm(cfg: SpmmPoint) -> None:
    """A CPU config, and the layer's ops within the op limits."""
    with about("hw"):
        _cpu(cfg.hw, cfg.threads)
    with about("tokens"):
        out_f, in_f = BERT_BASE_LINEARS[cfg.layer]
        SpMM(cfg.tokens, out_f, in_f, sparsity=cfg.sparsity, dtype="int8")


def run_spmm(cfg: SpmmPoint) -> dict:
    hw = _cpu(cfg.hw, cfg.threads).model_copy(update={"warm": cfg.warm})
    out_f, in_f = BERT_BASE_LINEARS[cfg.layer]
    sp = SpMM(cfg.tokens, out_f, in_f, sparsity=cfg.sparsity, dtype="int8")
    t_sparse, _ = spmm_time(hw, sp)
    dense_hw = hw
    if cfg.dense_engine == "amx":
        dense_hw = _cpu(cfg.hw, cfg.threads, 2048.0).model_copy(update={"warm": cfg.warm})
    t_dense, _ = gemm_time(dense_hw, cfg.tokens, out_f, in_f, "int8", threads=hw.nthreads)
    dense = Gemm(cfg.tokens, out_f, in_f, dtype="int8")
    return {
        "sparse_s": t_sparse,
        "dense_s": t_dense,
        "speedup": t_dense / t_sparse,
        "ideal_speedup": 1.0 / (1.0 - cfg.sparsity),
        "dense_tops": dense.flops / t_dense / 1e12,
        "paper_max_speedup": 5.0,
    }


# --------------------------------------------------------------------------- T-MAC
#: Decoder linears per layer, (out, in) x count, of the two models T-MAC reports
#: (docs/sources/workloads.md §1 and §3: Llama-2-7B; BitNet b1.58 3B, 26 layers, hidden 3200,
#: intermediate 8640, vocab 32002). T-MAC runs BitNet's ternary weights as 2-bit.
TMAC_MODELS = {
    "llama-2-7b": {"layers": 32, "linears": [((4096, 4096), 4), ((11008, 4096), 2),
                                             ((4096, 11008), 1)], "vocab": 32000, "hidden": 4096},
    "bitnet-3b": {"layers": 26, "linears": [((3200, 3200), 4), ((8640, 3200), 2),
                                            ((3200, 8640), 1)], "vocab": 32002, "hidden": 3200},
}  # fmt: skip
LLAMA2_7B = TMAC_MODELS["llama-2-7b"]
#: Compute nodes of llama.cpp's Llama graph per layer (norms, scale, 7 mat-vecs, 2 RoPEs,
#: 2 KV-cache copies, 2 attention products, softmax, SiLU, gating multiply, 2 residual
#: adds, permute/contiguous copies): counted from the graph's structure, about 25
#: (derived, unverified). Every node ends in a barrier of all threads.
LLAMACPP_NODES_PER_LAYER = 25
#: llama.cpp stores the output projection as Q6_K: 210 bytes per 256 weights
#: (ggml k-quants), i.e. 6.5625 bits per weight.
LM_HEAD_BITS = 6.5625
#: T-MAC decode tokens/s (docs/sources/kernels.md §5, from T-MAC docs/profiling_data.md):
#: (model, hw, threads, bits) -> (llama.cpp, T-MAC).
TMAC_PAPER = {
    ("llama-2-7b", "m2_ultra", 1, 2): (3.82, 16.68), ("llama-2-7b", "m2_ultra", 1, 4): (5.65, 8.97),
    ("llama-2-7b", "m2_ultra", 8, 2): (22.06, 51.01), ("llama-2-7b", "m2_ultra", 8, 4): (31.57, 35.65),
    ("llama-2-7b", "rpi5", 1, 2): (0.66, 4.40), ("llama-2-7b", "rpi5", 1, 4): (0.85, 2.42),
    ("llama-2-7b", "rpi5", 2, 2): (1.31, 5.92), ("llama-2-7b", "rpi5", 2, 4): (1.63, 3.35),
    ("bitnet-3b", "m2_ultra", 1, 2): (6.49, 22.08), ("bitnet-3b", "m2_ultra", 4, 2): (22.09, 54.46),
    ("bitnet-3b", "rpi5", 1, 2): (1.37, 8.03), ("bitnet-3b", "rpi5", 2, 2): (2.71, 11.09),
}  # fmt: skip


class TmacPoint(Spec):
    model: Literal["llama-2-7b", "bitnet-3b"] = "llama-2-7b"
    hw: str = "m2_ultra"
    threads: PosInt = 1
    wbits: int = Field(2, ge=1, le=4)
    weight_group: PosInt = 128  # T-MAC default
    lut_group: PosInt = 4


def validate_tmac(cfg: TmacPoint) -> None:
    """A CPU config, and LUT GEMV ops within the op limits."""
    with about("hw"):
        _cpu(cfg.hw, cfg.threads)
    with about("lut_group", "weight_group"):
        for (out_f, in_f), _ in TMAC_MODELS[cfg.model]["linears"]:
            LutGemm(1, out_f, in_f, wbits=cfg.wbits, lut_group=cfg.lut_group,
                    weight_group=cfg.weight_group)  # fmt: skip


def run_tmac(cfg: TmacPoint) -> dict:
    hw = _cpu(cfg.hw, cfg.threads)
    spec = TMAC_MODELS[cfg.model]
    t_lin = 0.0
    t_build = t_look = 0.0
    for (out_f, in_f), count in spec["linears"]:
        op = LutGemm(1, out_f, in_f, wbits=cfg.wbits, lut_group=cfg.lut_group,
                     weight_group=cfg.weight_group)  # fmt: skip
        t, d = lut_time(hw, op)
        t_lin += count * t
        t_build += count * d["t_build_s"]
        t_look += count * d["t_lookup_s"]
    t_lin *= spec["layers"]
    head_bytes = spec["vocab"] * spec["hidden"] * LM_HEAD_BITS / 8
    t_head = overhead_s(hw, hw.nthreads) + stream_time(hw, head_bytes, head_bytes, hw.nthreads)
    # every other graph node costs one call with its barrier (their work is negligible at
    # decode); the mat-vec nodes already paid theirs inside lut_time
    n_mv = sum(c for _, c in spec["linears"])
    t_sync = spec["layers"] * (LLAMACPP_NODES_PER_LAYER - n_mv) * overhead_s(hw, hw.nthreads)
    t_tok = t_lin + t_head + t_sync
    paper = TMAC_PAPER.get(
        (cfg.model, cfg.hw, cfg.threads, cfg.wbits), (float("nan"), float("nan"))
    )
    tok_s = 1.0 / t_tok
    return {
        "tokens_per_s": tok_s,
        "paper_tmac_tokens_per_s": paper[1],
        "paper_llamacpp_tokens_per_s": paper[0],
        "model_over_paper": tok_s / paper[1],
        "linear_s": t_lin,
        "lm_head_s": t_head,
        "sync_s": t_sync,
        "lookup_s": t_look * spec["layers"],
        "table_build_s": t_build * spec["layers"],
    }


# --------------------------------------------------------------------------- Im2win
class Im2winPoint(Spec):
    hw: str = "xeon_8480"
    layer: Literal["conv1", "conv2", "conv3", "conv4", "conv5", "conv6", "conv7", "conv8",
                   "conv9", "conv10", "conv11", "conv12"] = "conv1"  # fmt: skip
    threads: PosInt | None = None
    batch: PosInt = 128  # the paper's batch


def validate_im2win(cfg: Im2winPoint) -> None:
    """A CPU config, and the layer within the op limits at this batch."""
    with about("hw"):
        _cpu(cfg.hw, cfg.threads)
    with about("batch"):
        Conv2d(**{**dict(im2win_layers("cpu"))[cfg.layer].fields(), "batch": cfg.batch})


def run_im2win(cfg: Im2winPoint) -> dict:
    hw = _cpu(cfg.hw, cfg.threads)
    op = dict(im2win_layers("cpu"))[cfg.layer]
    op = Conv2d(**{**op.fields(), "batch": cfg.batch})
    t = {a: conv_time(hw, op, a)[0] for a in ("im2col", "im2win", "direct")}
    mem = {a: conv_footprint(op, a) for a in ("im2col", "im2win")}
    return {
        "im2col_s": t["im2col"],
        "im2win_s": t["im2win"],
        "direct_s": t["direct"],
        "speedup_vs_im2col": t["im2col"] / t["im2win"],
        "speedup_vs_direct": t["direct"] / t["im2win"],
        "im2win_gflops": op.flops / t["im2win"] / 1e9,
        "im2col_bytes": mem["im2col"],
        "im2win_bytes": mem["im2win"],
        "memory_saving_pct": 100.0 * (1 - mem["im2win"] / mem["im2col"]),
        "paper_speedup_vs_im2col": 3.6,
        "paper_memory_saving_pct": 41.6,
    }


register_kind(ExperimentKind(
    name="cpu_spmm", schema=SpmmPoint, run_point=run_spmm, validate_point=validate_spmm,
    description="4x1 block-sparse int8 SpMM vs dense int8 GEMM on a CPU (Intel, 2306.16601)",
    metrics=("sparse_s", "dense_s", "speedup", "ideal_speedup", "dense_tops",
             "paper_max_speedup"),
))  # fmt: skip
register_kind(ExperimentKind(
    name="tmac_cpu", schema=TmacPoint, run_point=run_tmac, validate_point=validate_tmac,
    description="T-MAC LUT decode tokens/s of Llama-2-7B / BitNet-3B on a CPU (2407.00088)",
    metrics=("tokens_per_s", "paper_tmac_tokens_per_s", "paper_llamacpp_tokens_per_s",
             "model_over_paper", "linear_s", "lm_head_s", "sync_s", "lookup_s", "table_build_s"),
))  # fmt: skip
register_kind(ExperimentKind(
    name="im2win_cpu", schema=Im2winPoint, run_point=run_im2win, validate_point=validate_im2win,
    description="Im2win vs im2col vs direct conv2d on a CPU (2306.14320)",
    metrics=("im2col_s", "im2win_s", "direct_s", "speedup_vs_im2col", "speedup_vs_direct",
             "im2win_gflops", "im2col_bytes", "im2win_bytes", "memory_saving_pct",
             "paper_speedup_vs_im2col", "paper_memory_saving_pct"),
))  # fmt: skip
