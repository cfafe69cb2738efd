"""One decode iteration of a system on one device: stage costs, timeline, metrics.

Per decoder block and device (tensor parallelism ``tp`` shards heads and GEMMs; the device
holds ``layers / pp`` blocks), a sub-batch of ``b`` requests does:

* QKV (NPU): LayerNorm (vector) + GEMM [b, D] x [D, 3 H d / tp] + writing the new K, V;
* MHA: on PIM, each channel runs Algorithm-1 tiles for the requests whose KV cache it holds
  (``deps.mha_per_channel``) while the vector units do the softmax head by head (only the
  last head's softmax is exposed); on the NPU (``npu_only``) the logit and attend GEMVs
  stream the KV cache from HBM through the systolic arrays;
* Proj+FFN (NPU): GEMM out-projection, TP all-reduce, add, LayerNorm, FFN up, GELU, FFN
  down, TP all-reduce, add.

Without SBI a block is QKV, MHA, Proj+FFN in sequence. With SBI the batch is split into two
sub-batches per channel (Algorithm 3) and the stages A-F of NEUPIMS.md section 10 run, so
T = A + B + (C + D)(N - 1) + E + F. Blocked mode (one row buffer): the NPU's weight DMA to a
channel waits while that channel's PIM holds the banks; dual mode: they overlap.

Cycles are NPU core cycles; memory cycles are converted with the two clocks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from neupims.config import load_hw
from neupims.devices import npu as npu_dev
from neupims.errors import ConfigError
from neupims.systems import deps
from neupims.systems.base import SystemSpec
from neupims.systems.timeline import Stage, TimelineResult, simulate


@dataclass(frozen=True)
class Ctx:
    """Resolved hardware and model for one device."""

    system: SystemSpec
    llm: deps.LlmSpec
    tp: int
    pp: int
    layers: int  # decoder blocks simulated on this device
    npu: object
    mem: object
    mem_to_npu: float  # NPU cycles per memory cycle
    comm: bool = True  # model TP all-reduce / PP hand-off over the NPU config's interconnect

    @property
    def heads(self) -> int:
        return self.llm.heads // self.tp

    @property
    def e_eff(self) -> int:
        return self.heads * self.llm.head_dim


def make_ctx(
    system: SystemSpec,
    model: str,
    tp: int,
    pp: int = 1,
    layers: int | None = None,
    npu_hw: str | None = None,
    comm: bool = True,
    npu_overrides: dict | None = None,
) -> Ctx:
    """Resolve ``system`` on ``model`` split ``tp`` x ``pp``. ``npu_overrides``: hardware
    overrides deep-merged into the NPU config (``{"systolic_array": {...}}``), validated."""
    llm = deps.get_llm(model)
    if tp < 1 or pp < 1:
        raise ConfigError(f"tp and pp must be positive, got tp={tp}, pp={pp}")
    if llm.heads % tp or llm.d_ff % tp:
        raise ConfigError(f"tp={tp} must divide heads ({llm.heads}) and d_ff ({llm.d_ff})")
    if llm.layers % pp:
        raise ConfigError(f"pp={pp} must divide the layers ({llm.layers}) of {model}")
    npu = _npu_config(
        npu_hw or (system.hw if system.device == "npu" else "npu_neupims"),
        json.dumps(npu_overrides or {}, sort_keys=True),
    )
    if npu.kind != "npu":
        raise ConfigError(f"system {system.name}: hw {system.hw!r} is not an NPU config")
    mem = load_hw(npu.memory)
    n_layers = layers if layers is not None else llm.layers // pp
    if not 1 <= n_layers <= llm.layers // pp:
        raise ConfigError(
            f"layers must be in 1..{llm.layers // pp} (the blocks of one of {pp} pipeline "
            f"stage(s) of {model}), got {n_layers}"
        )
    ratio = mem.timing.tck_ns * 1e-9 * npu.clock_hz
    return Ctx(system, llm, tp, pp, n_layers, npu, mem, ratio, comm)


@lru_cache(maxsize=64)
def _npu_config(name: str, overrides_json: str):
    """The NPU config ``name`` with JSON-encoded overrides applied (one object per pair, so
    the per-config memoisation downstream keeps hitting)."""
    from neupims.config.overrides import apply_hw_overrides

    return apply_hw_overrides(name, json.loads(overrides_json) or None, "npu_overrides")


# ---------------------------------------------------------------------------------------
# Sub-batch costs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NpuChain:
    """A serial chain of NPU work: cycles and what it consumed."""

    cycles: float = 0.0
    systolic: float = 0.0  # cycles the arrays are busy
    vector: float = 0.0  # cycles the vector units are busy
    link: float = 0.0  # cycles waiting for TP all-reduce
    macs: float = 0.0
    vec_flops: float = 0.0
    dma_bytes: float = 0.0  # HBM reads (weights, KV cache for npu_only)
    dma_cycles: float = 0.0  # NPU cycles those reads take on their own
    wr_bytes: float = 0.0  # HBM writes (new K, V)
    sram_bytes: float = 0.0

    def __add__(self, o: NpuChain) -> NpuChain:
        return NpuChain(*(a + b for a, b in zip(self._t(), o._t(), strict=True)))

    def _t(self):
        return (
            self.cycles,
            self.systolic,
            self.vector,
            self.link,
            self.macs,
            self.vec_flops,
            self.dma_bytes,
            self.dma_cycles,
            self.wr_bytes,
            self.sram_bytes,
        )


def _gemm(
    m: int,
    n: int,
    k: int,
    npu,
    mem_to_npu: float,
    mem,
    resident: bool = False,
    prefetched: float = 0.0,
) -> NpuChain:
    """One GEMM. ``resident``: its weights are already on chip (no DMA); ``prefetched``:
    bytes of its weights already loaded by an earlier DMA (they still count as traffic)."""
    g = _gemm_cached(m, n, k, deps.config_key(npu), mem_to_npu, deps.config_key(mem))
    if resident:
        return dataclasses.replace(g, cycles=g.systolic, dma_bytes=0.0, dma_cycles=0.0)
    if prefetched <= 0 or g.dma_bytes <= 0:
        return g
    left = max(0.0, 1.0 - prefetched / g.dma_bytes)
    post = npu_dev.gemm_tiles(m, n, k, npu).post_dma_cycles
    cycles = g.systolic if left == 0 else max(g.systolic, g.dma_cycles * left + post)
    return dataclasses.replace(g, cycles=cycles)


@lru_cache(maxsize=4096)
def _gemm_cached(m: int, n: int, k: int, npu_key: int, mem_to_npu: float, mem_key: int):
    npu, mem = deps._CONFIGS[npu_key], deps._CONFIGS[mem_key]
    dma_fn = npu_dev.stream_cycles_fn(mem)
    total, compute = npu_dev.gemm_cycles(m, n, k, npu, lambda b: dma_fn(b) * mem_to_npu)
    t = npu_dev.gemm_tiles(m, n, k, npu)
    b = 2.0
    return NpuChain(
        cycles=total,
        systolic=compute,
        macs=t.macs,
        dma_bytes=t.dma_bytes,
        dma_cycles=dma_fn(t.dma_bytes) * mem_to_npu,
        sram_bytes=(m * k + k * n + m * n) * b,
    )


def _vec(elems: float, flops_per_elem: float, npu) -> NpuChain:
    c = npu_dev.vector_cycles(elems, flops_per_elem, npu)
    return NpuChain(cycles=c, vector=c, vec_flops=elems * flops_per_elem)


def allreduce_cycles(nbytes: float, tp: int, npu) -> float:
    """Ring all-reduce over ``tp`` devices: 2 (tp-1)/tp of the bytes cross each link, in
    2 (tp-1) steps of one message latency each (interconnect from the NPU config)."""
    if tp <= 1:
        return 0.0
    secs = 2 * (tp - 1) / tp * nbytes / (npu.interconnect_gbps * 1e9)
    secs += 2 * (tp - 1) * npu.interconnect_latency_us * 1e-6
    return secs * npu.clock_hz


def _link(cycles: float) -> NpuChain:
    return NpuChain(cycles=cycles, link=cycles)


def qkv_chain(ctx: Ctx, b: int, resident: bool = False) -> NpuChain:
    d = ctx.llm.d_model
    n_qkv = (ctx.llm.heads + 2 * ctx.llm.n_kv_heads) * ctx.llm.head_dim // ctx.tp
    ch = _vec(b * d, 8, ctx.npu) + _gemm(b, n_qkv, d, ctx.npu, ctx.mem_to_npu, ctx.mem, resident)
    kv_write = 2.0 * b * ctx.llm.n_kv_heads // ctx.tp * ctx.llm.head_dim * 2
    return ch + NpuChain(wr_bytes=kv_write)


def projffn_chain(ctx: Ctx, b: int, resident: bool = False, prefetched: float = 0.0) -> NpuChain:
    """Out-projection, all-reduce, add, LN, FFN up, GELU, FFN down, all-reduce, add.
    ``prefetched`` bytes of weights were loaded during the MHA stage (dual row buffers),
    allotted to the GEMMs in execution order."""
    llm, npu, r, mem = ctx.llm, ctx.npu, ctx.mem_to_npu, ctx.mem
    d, f = llm.d_model, llm.d_ff // ctx.tp
    ar = _link(allreduce_cycles(b * d * 2.0, ctx.tp, npu) if ctx.comm else 0.0)
    gemms = []
    left = prefetched
    for n, k in ((d, ctx.heads * llm.head_dim), (f, d), (d, f)):
        gemms.append(_gemm(b, n, k, npu, r, mem, resident, min(left, n * k * 2.0)))
        left = max(0.0, left - n * k * 2.0)
    return (
        gemms[0]
        + ar
        + _vec(b * d, 1, npu)
        + _vec(b * d, 8, npu)
        + gemms[1]
        + _vec(b * f, 8, npu)
        + gemms[2]
        + ar
        + _vec(b * d, 1, npu)
    )


def prefetch_bytes(ctx: Ctx, mha: PimWork) -> float:
    """Weight bytes the NPU can load while the PIM runs the MHA stage (no SBI): only with
    dual row buffers (normal reads proceed beside PIM GEMVs; blocked mode holds the banks),
    at the streaming rate, up to the half of the SRAM not used by the running op."""
    if not (ctx.system.dual_row_buffer and ctx.system.prefetch_during_pim):
        return 0.0
    stage = max(float(mha.per_channel.max()), mha.softmax.cycles)
    probe = 1e8
    rate = probe / (npu_dev.stream_cycles_fn(ctx.mem)(probe) * ctx.mem_to_npu)  # bytes/cycle
    return min(ctx.npu.sram_bytes / 2, stage * rate)


def lm_head_chain(ctx: Ctx, b: int) -> NpuChain:
    d = ctx.llm.d_model
    return _vec(b * d, 8, ctx.npu) + _gemm(
        b, -(-ctx.llm.vocab // ctx.tp), d, ctx.npu, ctx.mem_to_npu, ctx.mem
    )


def npu_attention_chain(ctx: Ctx, seq_lens: np.ndarray) -> NpuChain:
    """NPU-only attention: logit and attend GEMVs on the arrays, K and V streamed from HBM;
    softmax on the vector units after each head's logits (serial with the GEMVs)."""
    npu, h, dk = ctx.npu, ctx.heads, ctx.llm.head_dim
    compute = npu_dev.attention_gemv_compute_cycles(seq_lens, h, dk, npu)
    kv_bytes = 2.0 * float(seq_lens.sum()) * ctx.llm.n_kv_heads // ctx.tp * dk * 2
    dma = npu_dev.stream_cycles_fn(ctx.mem)(kv_bytes) * ctx.mem_to_npu
    soft = _vec(float(seq_lens.sum()) * h, 5, npu)
    macs = 2.0 * float(seq_lens.sum()) * h * dk
    cyc = max(compute, dma) + soft.cycles
    return NpuChain(
        cycles=cyc,
        systolic=compute,
        vector=soft.vector,
        macs=macs,
        vec_flops=soft.vec_flops,
        dma_bytes=kv_bytes,
        dma_cycles=dma,
        sram_bytes=kv_bytes,
    )


@dataclass(frozen=True)
class PimWork:
    """One sub-batch's attention on the PIM channels."""

    per_channel: np.ndarray  # NPU cycles per channel (PIM busy), softmax tail included
    busy: np.ndarray  # NPU cycles per channel of PIM commands only
    commands: dict
    macs: float
    softmax: NpuChain  # vector-unit work overlapped with the PIM
    source: str


def pim_work(ctx: Ctx, seq_lens: np.ndarray, ch_idx: np.ndarray) -> PimWork:
    nch = ctx.mem.organization.channels
    r = deps.mha_per_channel(
        seq_lens, ch_idx, ctx.heads, ctx.llm.head_dim, ctx.mem, ctx.system.dual_row_buffer
    )
    busy = r.cycles * ctx.mem_to_npu
    # Softmax runs head by head on the vector units while the PIM computes the next head:
    # only the softmax of the last head of the longest request on a channel is exposed.
    longest = np.zeros(nch)
    np.maximum.at(longest, ch_idx, seq_lens.astype(float))
    tail = np.where(
        longest > 0,
        np.ceil(longest * 5 / (ctx.npu.vector_unit.count * ctx.npu.vector_unit.width)),
        0.0,
    )
    soft = _vec(float(seq_lens.sum()) * ctx.heads, 5, ctx.npu)
    macs = 2.0 * float(seq_lens.sum()) * ctx.e_eff
    return PimWork(busy + tail, busy, r.commands, macs, soft, r.source)


# ---------------------------------------------------------------------------------------
# Sub-batch partition (Algorithm 3)
# ---------------------------------------------------------------------------------------


def partition(ch_idx: np.ndarray, nch: int) -> np.ndarray:
    """Sub-batch of each request (0 or 1): per channel, the first half of its requests go
    to SB1; an odd channel's extra request alternates SB1, SB2, ... across channels."""
    ch_idx = np.asarray(ch_idx)
    sb = np.zeros(len(ch_idx), dtype=np.int64)
    odd_turn = 0
    for c in range(nch):
        idx = np.flatnonzero(ch_idx == c)
        n = len(idx)
        n1 = n // 2
        if n % 2:
            n1 += 1 - odd_turn
            odd_turn ^= 1
        sb[idx[n1:]] = 1
    return sb


# ---------------------------------------------------------------------------------------
# Stages and the iteration
# ---------------------------------------------------------------------------------------


@dataclass
class SubBatch:
    seq_lens: np.ndarray
    ch_idx: np.ndarray
    qkv: NpuChain
    pf: NpuChain
    attn: PimWork | NpuChain


def _npu_stage(ctx: Ctx, chain: NpuChain, concurrent: PimWork | None) -> float:
    """NPU time of a stage: its chain, the vector units' share (the PIM sub-batch's
    softmax), and in blocked mode the weight DMA that must wait for each channel's PIM."""
    t = chain.cycles
    if concurrent is None:
        return t
    t = max(t, chain.vector + concurrent.softmax.cycles)
    if not ctx.system.dual_row_buffer and chain.dma_cycles > 0:
        # Weights are striped over all channels: the stream's share on channel c starts
        # only when that channel's PIM releases its banks.
        t = max(t, float(concurrent.busy.max()) + chain.dma_cycles)
    return t


def build_stages(ctx: Ctx, sbs: list[SubBatch], sbi: bool) -> list[Stage]:
    n = ctx.layers
    stages: list[Stage] = []
    if not sbi:
        (sb,) = sbs
        for layer in range(n):
            stages.append(Stage("QKV", layer, sb.qkv.cycles, "QKV"))
            if isinstance(sb.attn, PimWork):
                soft = sb.attn.softmax.cycles
                stages.append(
                    Stage(
                        "MHA", layer, soft, "softmax (vector)", sb.attn.per_channel, f"L{layer} MHA"
                    )
                )
            else:
                stages.append(Stage("MHA", layer, sb.attn.cycles, "attention GEMV on NPU"))
            stages.append(Stage("ProjFFN", layer, sb.pf.cycles, "Proj+FFN", None, "", sb.pf.link))
        return stages
    s1, s2 = sbs

    def st(label, layer, chain, what, pim, pwhat):
        return Stage(
            label,
            layer,
            _npu_stage(ctx, chain, pim),
            what,
            None if pim is None else pim.per_channel,
            pwhat,
            chain.link,
        )

    stages.append(st("A", 0, s1.qkv, "QKV SB1", None, ""))
    stages.append(st("B", 0, s2.qkv, "QKV SB2", s1.attn, "L0 MHA SB1"))
    for layer in range(n - 1):
        stages.append(
            st(
                "C",
                layer,
                s1.pf + s1.qkv,
                "Proj+FFN SB1, next QKV SB1",
                s2.attn,
                f"L{layer} MHA SB2",
            )
        )
        stages.append(
            st(
                "D",
                layer,
                s2.pf + s2.qkv,
                "Proj+FFN SB2, next QKV SB2",
                s1.attn,
                f"L{layer + 1} MHA SB1",
            )
        )
    stages.append(st("E", n - 1, s1.pf, "Proj+FFN SB1", s2.attn, f"L{n - 1} MHA SB2"))
    stages.append(st("F", n - 1, s2.pf, "Proj+FFN SB2", None, ""))
    return stages


@dataclass
class IterationResult:
    system: str
    batch: int
    layers: int
    sbi: bool
    stage_cycles: dict[str, float]
    stage_pim_busy_cycles: dict[str, dict[str, float]]
    layer_cycles: float  # steady-state cycles of one block
    iteration_cycles: float
    wall_time_s: float
    npu_utilisation: float
    pim_utilisation: float
    mem_bw_utilisation: float
    pim_busy_fraction: float
    dram_energy_j: float
    npu_energy_j: float
    channel_load_max_over_mean: float
    pim_source: str
    timeline: TimelineResult | None = field(default=None, repr=False)

    @property
    def energy_j(self) -> float:
        return self.dram_energy_j + self.npu_energy_j

    def as_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k != "timeline"}
        d["energy_j"] = self.energy_j
        return d


def _pim_stage_busy(stages: list[Stage]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in stages:
        if s.label in out:
            continue
        if s.pim is None:
            out[s.label] = {"max": 0.0, "mean": 0.0}
        else:
            out[s.label] = {"max": float(s.pim.max()), "mean": float(s.pim.mean())}
    return out


def simulate_iteration(
    ctx: Ctx, seq_lens, ch_idx, *, record: bool = False, periodic: bool = False
) -> IterationResult:
    """Simulate one decode iteration of the requests (``seq_lens[i]`` tokens of context,
    KV cache on channel ``ch_idx[i]``) on one device of ``ctx``.

    ``periodic``: simulate the timeline of at most 3 blocks and extend it by the exact
    period of the identical middle blocks (C + D with SBI, one block without); the full
    and periodic results are equal (tested), the periodic one is cheaper for serving.
    """
    if ctx.system.device == "gpu":
        from neupims.systems.gpu_only import simulate_gpu_iteration

        return simulate_gpu_iteration(ctx, np.asarray(seq_lens))
    seq_lens = np.asarray(seq_lens, dtype=np.int64)
    ch_idx = np.asarray(ch_idx, dtype=np.int64)
    nch = ctx.mem.organization.channels
    if seq_lens.size == 0:
        raise ConfigError("an iteration needs at least one request")
    if ch_idx.min() < 0 or ch_idx.max() >= nch:
        raise ConfigError(f"ch_idx must lie in [0, {nch - 1}], got {ch_idx.min()}..{ch_idx.max()}")
    b = len(seq_lens)
    sbi = ctx.system.uses_sbi(b) and ctx.system.attention == "pim"
    if sbi and ctx.system.sbi_policy == "adaptive":
        kw = {"record": record, "periodic": periodic}
        with_sbi = _simulate(ctx, seq_lens, ch_idx, True, **kw)
        without = _simulate(ctx, seq_lens, ch_idx, False, **kw)
        return with_sbi if with_sbi.iteration_cycles <= without.iteration_cycles else without
    return _simulate(ctx, seq_lens, ch_idx, sbi, record=record, periodic=periodic)


def _simulate(ctx: Ctx, seq_lens, ch_idx, sbi: bool, *, record: bool, periodic: bool):
    nch = ctx.mem.organization.channels
    b = len(seq_lens)
    if sbi:
        part = partition(ch_idx, nch)
        groups = [part == 0, part == 1]
    else:
        groups = [np.ones(b, bool)]
    sbs = []
    for i, g in enumerate(groups):
        s, c = seq_lens[g], ch_idx[g]
        nb = int(g.sum())
        attn = pim_work(ctx, s, c) if ctx.system.attention == "pim" else npu_attention_chain(ctx, s)
        # What-if: the second sub-batch finds the block's weights still on chip.
        res = sbi and i == 1 and ctx.system.sbi_weight_reuse
        pre = prefetch_bytes(ctx, attn) if (not sbi and isinstance(attn, PimWork)) else 0.0
        pf = projffn_chain(ctx, nb, res, pre)
        sbs.append(SubBatch(s, c, qkv_chain(ctx, nb, res), pf, attn))
    n_full = ctx.layers
    if periodic and n_full > 3:
        small = dataclasses.replace(ctx, layers=3)
        st3 = build_stages(small, sbs, sbi)
        tl = simulate(st3, record)
        period = (tl.stage_end[3] - tl.stage_end[1]) if sbi else (tl.stage_end[5] - tl.stage_end[2])
        layers_total = tl.total + (n_full - 3) * period
        stages = st3
    else:
        stages = build_stages(ctx, sbs, sbi)
        tl = simulate(stages, record)
        layers_total = tl.total
        period = _period(tl, sbi, n_full)
    tail = (
        lm_head_chain(ctx, b)
        if (ctx.system.lm_head and ctx.layers == ctx.llm.layers // ctx.pp)
        else NpuChain()
    )
    total = layers_total + tail.cycles
    return _metrics(ctx, sbs, stages, tl, sbi, total, period, tail, seq_lens, ch_idx, record)


def _period(tl: TimelineResult, sbi: bool, n: int) -> float:
    e = tl.stage_end
    if sbi:
        return e[3] - e[1] if n > 1 else e[-1]
    return e[2] if n == 1 else e[5] - e[2]


def _metrics(ctx, sbs, stages, tl, sbi, total, period, tail, seq_lens, ch_idx, record):
    npu, mem, n = ctx.npu, ctx.mem, ctx.layers
    nch = mem.organization.channels
    secs = total / npu.clock_hz
    chains = [tail]
    for sb in sbs:
        chains += [sb.qkv] * n + [sb.pf] * n
        if isinstance(sb.attn, NpuChain):
            chains += [sb.attn] * n
    macs = sum(c.macs for c in chains)
    vflops = sum(c.vec_flops for c in chains)
    dma = sum(c.dma_bytes for c in chains)
    wr = sum(c.wr_bytes for c in chains)
    sram = sum(c.sram_bytes for c in chains)
    pim_macs, pim_busy, cmds = 0.0, 0.0, {}
    for sb in sbs:
        if isinstance(sb.attn, PimWork):
            pim_macs += sb.attn.macs * n
            vflops += sb.attn.softmax.vec_flops * n
            pim_busy += float(sb.attn.busy.sum()) * n
            for k, v in sb.attn.commands.items():
                cmds[k] = cmds.get(k, 0.0) + float(np.sum(v)) * n
    # Host-side commands of the NPU's DMA: one RD per burst, one ACT per 1 KB row.
    acc, page = mem.access_bytes, mem.page_bytes
    cmds["RD"] = cmds.get("RD", 0.0) + dma / acc
    cmds["WR"] = cmds.get("WR", 0.0) + wr / acc
    cmds["ACT"] = cmds.get("ACT", 0.0) + (dma + wr) / page
    ext_bytes = dma + wr + (cmds.get("GWRITE", 0.0) + cmds.get("READRES", 0.0)) * acc
    dram_e = deps.dram_energy_j(cmds, mem, secs, ctx.system.dual_row_buffer)
    npu_e = npu_dev.npu_energy_j(npu, macs, vflops, sram, secs)
    pim_peak = mem.pim.multipliers_per_bank * mem.banks_per_channel / mem.timing.tCCD_L
    pim_peak_npu_cycle = pim_peak / ctx.mem_to_npu * nch
    mha_loads = np.zeros(nch)
    if ctx.system.attention == "pim":
        for sb in sbs:
            mha_loads += sb.attn.busy
    ratio = float(mha_loads.max() / mha_loads.mean()) if mha_loads.mean() > 0 else float("nan")
    first: dict[str, float] = {}
    prev = 0.0
    for st, end in zip(stages, tl.stage_end, strict=True):
        first.setdefault(st.label, end - prev)
        prev = end
    return IterationResult(
        system=ctx.system.name,
        batch=int(len(seq_lens)),
        layers=n,
        sbi=sbi,
        stage_cycles=first,
        stage_pim_busy_cycles=_pim_stage_busy(stages),
        layer_cycles=float(period),
        iteration_cycles=float(total),
        wall_time_s=secs,
        npu_utilisation=macs / (npu.macs_per_cycle * total),
        pim_utilisation=pim_macs / (pim_peak_npu_cycle * total) if pim_peak > 0 else 0.0,
        mem_bw_utilisation=ext_bytes / (mem.peak_bytes_per_s * secs),
        pim_busy_fraction=pim_busy / (nch * total),
        dram_energy_j=dram_e,
        npu_energy_j=npu_e,
        channel_load_max_over_mean=ratio,
        pim_source=sbs[0].attn.source if isinstance(sbs[0].attn, PimWork) else "none",
        timeline=tl if record else None,
    )


def tiles_capacity_per_channel(ctx: Ctx) -> int:
    """32 KB PIM tiles per channel left after the weights (NEUPIMS.md section 7):
    floor((capacity - weights per device) / 32 KB / channels); weights = params*2 B/(tp*pp)."""
    mem = ctx.mem
    tile = mem.page_bytes * mem.banks_per_channel
    weights = ctx.llm.params * 2.0 / (ctx.tp * ctx.pp)
    free = mem.capacity_bytes - weights
    return max(0, int(math.floor(free / tile / mem.organization.channels)))


def handoff_cycles(ctx: Ctx, batch: int) -> float:
    """Pipeline hand-off of one micro-batch's activations ([b, D] FP16) to the next stage."""
    if ctx.pp <= 1 or not ctx.comm:
        return 0.0
    npu = ctx.npu
    secs = batch * ctx.llm.d_model * 2.0 / (npu.interconnect_gbps * 1e9)
    return (secs + npu.interconnect_latency_us * 1e-6) * npu.clock_hz


def simulate_step(ctx: Ctx, seq_lens, ch_idx, periodic: bool = True) -> dict:
    """One serving iteration of one pipeline stage: the device runs its ``layers / pp``
    blocks for the whole batch it holds, as the authors' simulator does (one device, the
    snapshot's batch). With ``pp`` stages, ``pp`` such batches are in flight, so the system
    emits one batch of tokens per stage time; the activations of the batch are handed to
    the next stage over the interconnect (added serially, a conservative choice).
    Returns the :class:`IterationResult` fields as a dict."""
    r = simulate_iteration(ctx, np.asarray(seq_lens), np.asarray(ch_idx), periodic=periodic)
    out = r.as_dict()
    extra = handoff_cycles(ctx, r.batch)
    if extra > 0:
        scale = r.iteration_cycles / (r.iteration_cycles + extra)
        out["iteration_cycles"] += extra
        out["wall_time_s"] += extra / ctx.npu.clock_hz
        for k in ("npu_utilisation", "pim_utilisation", "mem_bw_utilisation", "pim_busy_fraction"):
            out[k] *= scale
    return out
