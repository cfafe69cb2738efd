"""GPU-only: one GPU per tensor-parallel rank runs every op (system kind ``gpu``).

The ops of a decode step are the zoo trace's (:mod:`neupims.systems.block`); the GPU device
model costs them as one step (:meth:`neupims.devices.gpu.GpuModel.step`, with the system's
``dispatch``: a captured CUDA graph by default, as serving engines run decode, or eager
PyTorch). A ragged batch's attention is one paged-attention kernel per layer (one launch,
as vLLM's decode kernel), costed as the flash-decoding path over the batch's mean context
(its time is linear in the KV bytes, so the mean gives the same traffic); its FLOPs are the
trace's, one op per distinct length. TP all-reduces run on NVLink (the GPU config's
``interconnect_*``) after the row-parallel GEMMs, serially with the kernels.

The KV cache is paged (``kv_page_tokens`` per page, one pool: the GPU's memory) in what the
weights leave of ``memory_fraction`` of the GPU's memory. Cycles are reported at 1 GHz.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from neupims.config import load_hw
from neupims.config.overrides import apply_hw_overrides
from neupims.devices import get_model
from neupims.errors import ConfigError
from neupims.ops import dtype_bytes
from neupims.systems.base import GpuSystemSpec, System, register_system_kind
from neupims.systems.comm import ring_allreduce_s, send_s
from neupims.systems.kv import KvLayout
from neupims.systems.result import IterationResult

#: reporting clock of the GPU system's cycles (1 GHz, as the NPU systems)
REPORT_HZ = 1e9


@register_system_kind
class GpuSystem(System):
    kind = "gpu"
    spec_cls = GpuSystemSpec

    def __init__(self, spec, model, tp=1, pp=1, *, layers=None, comm=True, hw_overrides=None):
        gpu = load_hw(spec.hw) if not hw_overrides else apply_hw_overrides(spec.hw, hw_overrides)
        if gpu.kind != "gpu":
            raise ConfigError(f"system {spec.name}: hw {spec.hw!r} is not a GPU config")
        self.gpu = gpu
        self.dev = get_model(gpu)
        self.clock_hz = REPORT_HZ
        self._setup(spec, model, tp, pp, layers, comm)

    # -- KV cache --------------------------------------------------------------------------
    def weight_bytes(self) -> float:
        """Weights resident on this device: its blocks and its share of the LM head."""
        t = self.template
        params = t.weight_params * t.stage_layers + t.head_params
        return params * dtype_bytes(t.attention.dtype)

    def kv(self) -> KvLayout:
        t = self.template
        page = self.spec.kv_page_tokens or 1
        page_bytes = page * t.kv_bytes_per_token()  # one page of one block
        free = self.gpu.hbm_capacity_gb * 1e9 * self.spec.memory_fraction - self.weight_bytes()
        return KvLayout(
            pools=1,
            capacity=max(0, int(free // page_bytes)),
            unit=f"{page}-token KV page",
            units_per_block=lambda ctx: -(-np.asarray(ctx, dtype=np.int64) // page),
            load=lambda ctx: np.asarray(ctx, dtype=float),
            placement="round_robin",
        )

    def handoff_s(self, batch: int) -> float:
        nbytes = self.block(batch).output_bytes
        return send_s(nbytes, self.gpu.interconnect_gbps, self.gpu.interconnect_latency_us)

    # -- the iteration ---------------------------------------------------------------------
    def iteration(self, seq_lens, ch_idx=None, *, record=False, periodic=False):
        seq_lens = np.asarray(seq_lens, dtype=np.int64)
        if seq_lens.size == 0:
            raise ConfigError("an iteration needs at least one request")
        b = len(seq_lens)
        block = self.block(b)
        attn = dataclasses.replace(
            block.attention, batch=b, kv_len=int(math.ceil(float(seq_lens.mean())))
        )
        groups = {
            "QKV": [x.op for x in block.qkv],
            "MHA": [attn],
            "ProjFFN": [x.op for x in block.projffn],
        }
        layer_ops = [op for ops in groups.values() for op in ops]
        tail = []
        if self.with_head:
            tail = [x.op for x in (*(block.pre if self.pp == 1 else ()), *block.head)]
        n = self.layers
        step = self.dev.step(layer_ops * n + tail, self.spec.dispatch)
        ar = 0.0
        if self.comm:
            ar = n * sum(
                ring_allreduce_s(
                    x.allreduce_bytes,
                    self.tp,
                    self.gpu.interconnect_gbps,
                    self.gpu.interconnect_latency_us,
                )
                for x in block.projffn
            )
        total_s = step.latency_s + ar
        stage_s = {k: self.dev.step(ops, "graph").busy_s for k, ops in groups.items()}
        stage_s["ProjFFN"] += ar / n
        flops_attn = sum(o.flops for o in block.attention_ops(seq_lens))
        flops = step.flops + n * (flops_attn - attn.flops)
        t = self.template
        params = t.weight_params * n + (t.head_params if self.with_head else 0)
        energy = sum(self.dev.estimate(op).energy_j for op in layer_ops) * n
        hz = self.clock_hz
        return IterationResult(
            system=self.spec.name,
            batch=b,
            layers=n,
            sbi=False,
            stage_cycles={k: v * hz for k, v in stage_s.items()},
            stage_pim_busy_cycles={k: {"max": 0.0, "mean": 0.0} for k in stage_s},
            layer_cycles=sum(stage_s.values()) * hz,
            iteration_cycles=total_s * hz,
            wall_time_s=total_s,
            npu_utilisation=flops / (self.gpu.peak_flops("fp16") * total_s),
            pim_utilisation=0.0,
            mem_bw_utilisation=step.bytes / (self.gpu.peak_bytes_per_s * total_s),
            pim_busy_fraction=0.0,
            dram_energy_j=float("nan"),
            npu_energy_j=float(energy),
            channel_load_max_over_mean=float("nan"),
            pim_source=f"gpu model: {self.dev.name} ({step.dispatch} dispatch)",
            flops=float(flops),
            weight_params=int(params),
            clock_hz=hz,
        )
