"""Experiment kind ``prefill_batching``: Prepacking vs padding vs length-ordered prefill.

Reproduces the headlines of Zhao et al., arXiv 2404.09529 (docs/sources/kernels.md section
8): up to 6x faster time to first token (TTFT) and up to 16x larger batches than padding,
on one RTX A6000 48 GB with Sheared-LLaMA-1.3B (8-bit) and Llama-2-7B. A point is one
(model, dataset, policy, batch size): ``n_prompts`` prompt lengths drawn from the dataset
(seeded, clipped to ``max_prompt_len``) are prefilled batch by batch under the policy
(:mod:`neupims.serving.prefill`) and under padding (full batching, the baseline), and
the largest batch that fits the GPU's memory is searched for both over a set of
``max_batch_prompts`` prompts.

TTFT is the mean over prompts of the prefill time of the batch each prompt is in (queueing
not included, as the paper's per-batch prefill time); throughput is prompts per second of
prefill; peak memory is the largest over the batches.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from neupims.config import load_hw
from neupims.config.base import PosInt, Spec
from neupims.errors import ConfigError
from neupims.experiments.kinds import ExperimentKind, register_kind
from neupims.serving.prefill import max_batch, prompt_lengths, run_prefill
from neupims.workloads import get_model

#: The paper's headlines (abstract): "up to 6x" TTFT and "up to 16x" larger batch.
PAPER_TTFT_SPEEDUP_MAX = 6.0
PAPER_BATCH_RATIO_MAX = 16.0


class PrefillPoint(Spec):
    hw: str = "rtx_a6000"
    model: str = "sheared-llama-1.3b"
    dataset: str = "sharegpt"
    policy: Literal["padding", "length_ordered", "prepacking"] = "prepacking"
    batch_size: PosInt = 64
    n_prompts: PosInt = 1000  # the paper samples 1000 prompts per dataset
    max_batch_prompts: PosInt = 4096
    max_prompt_len: PosInt | None = None  # None: the model's context
    weight_bits: Literal[4, 8, 16] = 16
    packer: Literal["best_fit_decreasing", "first_fit_decreasing"] = "best_fit_decreasing"
    attention: Literal["sdpa_mask", "eager", "varlen"] = "sdpa_mask"
    logits: Literal["all", "last"] = "all"
    # host dispatch of the prefill step (GpuModel.step): "eager", the paper's Hugging Face
    # PyTorch path, or "graph" (kernels back to back, GPU time only)
    dispatch: Literal["eager", "graph"] = "eager"
    seed: int = Field(0, ge=0)


def _gpu(name: str):
    cfg = load_hw(name)
    if cfg.kind != "gpu":
        raise ConfigError(f"hw: {name!r} is a {cfg.kind} config; prefill_batching needs a gpu")
    return cfg


def run_point(cfg: PrefillPoint) -> dict:
    hw = _gpu(cfg.hw)
    spec = get_model(cfg.model)
    clip = min(cfg.max_prompt_len or spec.max_context, spec.max_context)
    kw = dict(packer=cfg.packer, attention=cfg.attention, logits=cfg.logits,
              weight_bits=cfg.weight_bits)  # fmt: skip
    lengths = prompt_lengths(cfg.dataset, cfg.n_prompts, cfg.seed, clip)
    timing = {"dispatch": cfg.dispatch}
    run = run_prefill(hw, cfg.model, lengths, cfg.policy, cfg.batch_size, **kw, **timing)
    pad = run_prefill(hw, cfg.model, lengths, "padding", cfg.batch_size, **kw, **timing)
    cap = hw.hbm_capacity_gb * 1e9
    pool = prompt_lengths(cfg.dataset, cfg.max_batch_prompts, cfg.seed, clip)
    mb = max_batch(cfg.model, pool, cfg.policy, cap, **kw)
    mb_pad = max_batch(cfg.model, pool, "padding", cap, **kw)
    computed = sum(lay.dense_tokens for lay in run.layouts)
    return {
        "setup": f"{cfg.model} {cfg.dataset} <={clip}",
        "prompts": f"{cfg.dataset}\n<={clip}",
        "ttft_s": run.ttft_s,
        "padding_ttft_s": pad.ttft_s,
        "ttft_speedup_vs_padding": pad.ttft_s / run.ttft_s,
        "prompts_per_s": run.prompts_per_s,
        "throughput_vs_padding": run.prompts_per_s / pad.prompts_per_s,
        "peak_memory_gb": run.peak_memory / 1e9,
        "padding_peak_memory_gb": pad.peak_memory / 1e9,
        "memory_vs_padding": run.peak_memory / pad.peak_memory,
        "fits": run.peak_memory <= cap,
        "padding_fits": pad.peak_memory <= cap,
        "useful_tokens": run.useful_tokens,
        "tensor_tokens": computed,
        "pad_fraction": 1.0 - run.useful_tokens / computed,
        "rows_per_batch": sum(lay.n_rows for lay in run.layouts) / len(run.layouts),
        "mean_prompt_len": float(lengths.mean()),
        "max_prompt_len_seen": int(lengths.max()),
        "max_batch": mb,
        "padding_max_batch": mb_pad,
        "max_batch_vs_padding": mb / mb_pad if mb_pad else float("nan"),
        "max_batch_capped": mb == cfg.max_batch_prompts,
        "paper_ttft_speedup_max": PAPER_TTFT_SPEEDUP_MAX,
        "paper_batch_ratio_max": PAPER_BATCH_RATIO_MAX,
    }


register_kind(ExperimentKind(
    name="prefill_batching", schema=PrefillPoint, run_point=run_point,
    description="Prepacking vs padding vs length-ordered prefill on a GPU (2404.09529)",
    metrics=("setup", "prompts", "ttft_s", "padding_ttft_s", "ttft_speedup_vs_padding", "prompts_per_s",
             "throughput_vs_padding", "peak_memory_gb", "padding_peak_memory_gb",
             "memory_vs_padding", "fits", "padding_fits", "useful_tokens", "tensor_tokens", "pad_fraction",
             "rows_per_batch", "mean_prompt_len", "max_prompt_len_seen", "max_batch",
             "padding_max_batch", "max_batch_vs_padding", "max_batch_capped",
             "paper_ttft_speedup_max", "paper_batch_ratio_max"),
))  # fmt: skip
