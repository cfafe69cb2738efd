"""GPU-only system: every op of a decode block on one GPU per tensor-parallel rank.

The ops are costed by the GPU device model of the config (``neupims.devices.get_model``);
when only the roofline is registered for GPUs, the result says ``model = roofline`` so
nobody mistakes it for a detailed GPU model. Ops run one after another (one CUDA stream);
TP all-reduces use the same interconnect as the NPU systems so that only the device
differs. Attention is one ``Attention`` op over the mean context (its cost is linear in
the KV bytes, so the mean gives the same total traffic).
"""

from __future__ import annotations

import math

import numpy as np

from neupims.config import load_hw
from neupims.devices import get_model
from neupims.ops import Attention, Elementwise, Gemm


def simulate_gpu_iteration(ctx, seq_lens: np.ndarray):
    from neupims.systems.iteration import IterationResult, allreduce_cycles

    gpu = load_hw(ctx.system.hw)
    dev = get_model(gpu)
    llm, tp, b = ctx.llm, ctx.tp, len(seq_lens)
    d, f, h, dk = llm.d_model, llm.d_ff // tp, llm.heads // tp, llm.head_dim
    kvh = max(1, llm.n_kv_heads // tp)
    kv_len = int(math.ceil(float(seq_lens.mean())))
    qkv = [Elementwise("layernorm", b * d), Gemm(b, (h + 2 * kvh) * dk, d)]
    attn = [Attention(b, h, kvh, 1, kv_len, dk)]
    pf = [
        Gemm(b, d, h * dk),
        Elementwise("add", b * d),
        Elementwise("layernorm", b * d),
        Gemm(b, f, d),
        Elementwise("gelu", b * f),
        Gemm(b, d, f),
        Elementwise("add", b * d),
    ]
    ar_s = 2 * allreduce_cycles(b * d * 2.0, tp, ctx.npu) / ctx.npu.clock_hz if ctx.comm else 0.0
    costs = {
        k: [dev.estimate(op) for op in ops]
        for k, ops in (("QKV", qkv), ("MHA", attn), ("ProjFFN", pf))
    }
    stage_s = {k: sum(c.latency_s for c in v) for k, v in costs.items()}
    stage_s["ProjFFN"] += ar_s
    layer_s = sum(stage_s.values())
    head = dev.estimate(Gemm(b, -(-llm.vocab // tp), d)).latency_s if ctx.system.lm_head else 0.0
    total_s = layer_s * ctx.layers + head
    flops = sum(c.flops for v in costs.values() for c in v) * ctx.layers
    nbytes = sum(c.bytes for v in costs.values() for c in v) * ctx.layers
    energy = sum(c.energy_j for v in costs.values() for c in v) * ctx.layers
    hz = ctx.npu.clock_hz  # report cycles in the same 1 GHz units as the NPU systems
    model = costs["QKV"][1].model
    return IterationResult(
        system=ctx.system.name,
        batch=b,
        layers=ctx.layers,
        sbi=False,
        stage_cycles={k: v * hz for k, v in stage_s.items()},
        stage_pim_busy_cycles={k: {"max": 0.0, "mean": 0.0} for k in stage_s},
        layer_cycles=layer_s * hz,
        iteration_cycles=total_s * hz,
        wall_time_s=total_s,
        npu_utilisation=flops / (gpu.peak_flops("fp16") * total_s),
        pim_utilisation=0.0,
        mem_bw_utilisation=nbytes / (gpu.peak_bytes_per_s * total_s),
        pim_busy_fraction=0.0,
        dram_energy_j=float("nan"),
        npu_energy_j=float(energy),
        channel_load_max_over_mean=float("nan"),
        pim_source=f"gpu model: {model}",
    )
