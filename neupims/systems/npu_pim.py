"""An NPU sharing HBM with PIM channels: NPU-only, NPU+PIM and NeuPIMs (system kind ``npu``).

Per decoder block and device, a sub-batch of ``b`` requests runs the ops of the zoo's trace
(:mod:`neupims.systems.block`), each costed by the NPU device model
(:meth:`neupims.devices.npu.NpuModel.work`):

* QKV (NPU): the ops before the attention core (norm, QKV GEMM), plus writing the new K, V;
* MHA: where ``attention`` says (:data:`ATTENTION`): on PIM, each channel runs Algorithm-1
  tiles for the requests whose KV cache it holds (``deps.mha_per_channel``) while the vector
  units do the softmax head by head (only the last head's softmax is exposed); on the NPU
  (``npu_only``) the logit and attend GEMVs stream the KV cache from HBM through the arrays;
* Proj+FFN (NPU): the ops after the core, with a TP all-reduce after the row-parallel GEMMs.

Without SBI a block is QKV, MHA, Proj+FFN in sequence. With SBI the batch is split into two
sub-batches per channel (Algorithm 3) and the stages A-F of docs/sources/neupims.md §10 run,
so T = A + B + (C + D)(N - 1) + E + F. Blocked mode (one row buffer): the NPU's weight DMA to
a channel waits while that channel's PIM holds the banks; dual mode: they overlap.

Cycles are NPU core cycles; memory cycles are converted with the two clocks.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from neupims.config import load_hw
from neupims.config.overrides import apply_hw_overrides
from neupims.devices import get_model
from neupims.devices.npu import decode_attention_work, npu_energy_j, vector_cycles
from neupims.devices.pim_contention import contention
from neupims.errors import ConfigError
from neupims.ops import Gemm, dtype_bytes
from neupims.systems import deps
from neupims.systems.base import NpuSystemSpec, System, register_system_kind
from neupims.systems.block import BlockOp, DecodeBlock
from neupims.systems.comm import ring_allreduce_s, send_s
from neupims.systems.kv import KvLayout
from neupims.systems.result import IterationResult
from neupims.systems.timeline import Stage, TimelineResult, simulate


@lru_cache(maxsize=64)
def _npu_config(name: str, overrides_json: str):
    """The NPU config ``name`` with JSON-encoded overrides applied (one object per pair, so
    the per-config memoisation downstream keeps hitting)."""
    return apply_hw_overrides(name, json.loads(overrides_json) or None, "hw_overrides")


# ---------------------------------------------------------------------------------------
# NPU chains
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
    flops: float = 0.0  # FLOPs of the trace's ops (attention's are in AttnWork.flops)
    ops: tuple = ()  # (op name, cycles) of each op in the chain, in order
    #: (busy, stream, post) of each op in order: it lasts max(busy, stream + post), where
    #: ``stream`` is its HBM traffic's time at the full streaming rate (see ``overlap``)
    segments: tuple = ()

    @classmethod
    def of(cls, w, **fields) -> NpuChain:
        """The chain of one op's :class:`~neupims.devices.npu.NpuWork` (``fields`` replace
        what the composition changes: cycles, the DMA actually done, ...)."""
        base = dict(
            cycles=w.cycles,
            systolic=w.compute_cycles,
            vector=w.vector_cycles,
            macs=w.macs,
            vec_flops=w.vector_flops,
            dma_bytes=w.dma_bytes,
            dma_cycles=w.dma_cycles,
            sram_bytes=w.sram_bytes,
        )
        return cls(**{**base, **fields})

    def __add__(self, o: NpuChain) -> NpuChain:
        return NpuChain(*(a + b for a, b in zip(self._t(), o._t(), strict=True)))

    def _t(self):
        return tuple(getattr(self, f.name) for f in dataclasses.fields(self))


@dataclass(frozen=True)
class AttnWork:
    """One sub-batch's decode attention. ``npu``: the work on the NPU meanwhile (the
    softmax when the PIM runs the GEMVs; everything for ``npu_only``). ``pim``: NPU cycles
    each channel's PIM is busy, softmax tail included (None: no PIM work); ``busy``: cycles
    of PIM commands only; ``flops``: the attention's FLOPs as the trace counts them."""

    npu: NpuChain
    pim: np.ndarray | None
    busy: np.ndarray | None
    commands: dict
    pim_macs: float
    flops: float
    source: str
    phases: dict = dataclasses.field(default_factory=dict)  # named spans, for op_cycles


@dataclass
class SubBatch:
    seq_lens: np.ndarray
    ch_idx: np.ndarray
    qkv: NpuChain
    pf: NpuChain
    attn: AttnWork


# ---------------------------------------------------------------------------------------
# Attention engines (the system's ``attention`` field)
# ---------------------------------------------------------------------------------------


def pim_attention(sys: NpuPimSystem, block: DecodeBlock, seq_lens, ch_idx) -> AttnWork:
    """The logit and attend GEMVs on each channel's PIM; the softmax on the vector units.

    ``pim_phases: fused``: each channel runs its requests' K^T q and s.V back to back, and
    the softmax of each head overlaps the PIM's next head: only the last head of the longest
    request on a channel is exposed. ``barrier``: every channel first runs all its K^T q
    tiles; the s.V phase starts when the slowest channel and the softmax that follows it are
    done. With activations in DRAM the logits (and attention outputs) are written back
    behind each channel's PIM commands, so their drain is exposed after each phase."""
    a, npu = block.attention, sys.npu
    nch = sys.channels
    lanes = npu.vector_unit.count * npu.vector_unit.width
    scores = float(seq_lens.sum()) * a.heads
    soft = vector_cycles(scores, 5, npu)
    longest = np.zeros(nch)
    np.maximum.at(longest, ch_idx, seq_lens.astype(float))
    # the softmax of the last head of the longest request on a channel
    tail = np.where(longest > 0, np.ceil(longest * 5 / lanes), 0.0)
    b = dtype_bytes(a.dtype)
    dram = npu.data_path.activations == "dram"
    logit_out = scores * b if dram else 0.0  # one score per key and head
    attend_out = float(len(seq_lens)) * a.heads * a.head_dim * b if dram else 0.0
    ops = block.attention_ops(seq_lens)
    flops = float(sum(o.flops for o in ops))
    macs = 2.0 * float(seq_lens.sum()) * a.heads * a.head_dim
    chain = NpuChain(
        cycles=soft, vector=soft, vec_flops=scores * 5, wr_bytes=logit_out + attend_out
    )
    r2m = sys.mem_to_npu
    if sys.spec.pim_phases == "barrier":
        logit, attend = deps.mha_phases_per_channel(
            seq_lens, ch_idx, a.heads, a.head_dim, sys.mem, sys.dual
        )
        t_logit = logit.cycles * r2m
        t_attend = attend.cycles * r2m
        tail_1 = float(tail.max()) + sys.dev.dma_cycles(logit_out)
        tail_2 = sys.dev.dma_cycles(attend_out)
        start_2 = float(t_logit.max()) + tail_1
        # channel c ends its s.V phase start_2 + t_attend[c] after the stage starts
        pim = np.where(t_attend > 0, start_2 + t_attend + tail_2, t_logit + tail)
        busy = t_logit + t_attend
        cmds = {k: logit.commands.get(k, 0) + attend.commands.get(k, 0)
                for k in {*logit.commands, *attend.commands}}  # fmt: skip
        phases = {"logit": start_2, "attend": float(t_attend.max()) + tail_2}
        source = logit.source.split(" (")[0]
    else:
        r = deps.mha_per_channel(seq_lens, ch_idx, a.heads, a.head_dim, sys.mem, sys.dual)
        busy = r.cycles * r2m
        drain = sys.dev.dma_cycles(logit_out + attend_out)
        pim = busy + tail + drain
        cmds, source = r.commands, r.source
        phases = {"pim (busiest channel)": float(pim.max())}
    phases["softmax (vector)"] = soft
    return AttnWork(
        npu=chain,
        pim=pim,
        busy=busy,
        commands=cmds,
        pim_macs=macs,
        flops=flops,
        source=source,
        phases=phases,
    )


def npu_attention(sys: NpuPimSystem, block: DecodeBlock, seq_lens, ch_idx) -> AttnWork:
    """NPU-only: the trace's attention ops on the systolic arrays (device model)."""
    ops = block.attention_ops(seq_lens)
    chain = NpuChain.of(decode_attention_work(sys.dev, ops))
    return AttnWork(chain, None, None, {}, 0.0, float(sum(o.flops for o in ops)), "none")


#: ``attention`` field -> engine(system, block, seq_lens, ch_idx) -> AttnWork
ATTENTION: dict[str, Callable[..., AttnWork]] = {"pim": pim_attention, "npu": npu_attention}


def overlap(segments, pim_end: float, share: float) -> tuple[float, float]:
    """Run a chain's ops (``(busy, stream, post)`` each: an op lasts max(busy, stream + post)
    from its start) while the PIM works until ``pim_end``: before then a stream progresses at
    ``share`` of its full rate, after it at the full rate (a fluid model of the channels the
    stream is striped over). Returns (the chain's end, the time its streams were active
    before ``pim_end``)."""
    t = active = 0.0
    for busy, stream, post in segments:
        if stream <= 0:
            t += busy
            continue
        if t >= pim_end or share >= 1.0:
            s_end = t + stream
        else:
            cap = (pim_end - t) * share  # stream work done by pim_end
            s_end = t + stream / share if stream <= cap else pim_end + (stream - cap)
            active += min(s_end, pim_end) - t
        t = max(t + busy, s_end + post)
    return t, active


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
# The system
# ---------------------------------------------------------------------------------------


@register_system_kind
class NpuPimSystem(System):
    kind = "npu"
    spec_cls = NpuSystemSpec

    def __init__(self, spec, model, tp=1, pp=1, *, layers=None, comm=True, hw_overrides=None):
        self.npu = _npu_config(spec.hw, json.dumps(hw_overrides or {}, sort_keys=True))
        if self.npu.kind != "npu":
            raise ConfigError(f"system {spec.name}: hw {spec.hw!r} is not an NPU config")
        self.mem = load_hw(self.npu.memory)
        self.dev = get_model(self.npu)
        self.mem_to_npu = self.dev.mem_to_npu
        self.clock_hz = self.npu.clock_hz
        self.channels = self.mem.organization.channels
        self.dual = spec.dual_row_buffer
        self.dtype = self.npu.precision
        self._setup(spec, model, tp, pp, layers, comm)
        self.attend = ATTENTION[spec.attention]

    # -- composition of one sub-batch ------------------------------------------------------
    def chain(self, ops: tuple[BlockOp, ...], resident=False, prefetched=0.0) -> NpuChain:
        """The ops back to back on the NPU, a TP all-reduce after each that needs one.
        ``resident``: the GEMM weights are already on chip (no DMA); ``prefetched``: bytes of
        weights loaded by an earlier DMA, allotted to the GEMMs in order (still counted as
        traffic). With activations in DRAM an op's result is written back; posted writes
        drain while the next op streams its reads, the chain's last writes at its end."""
        out = NpuChain()
        left = prefetched
        posted = self.npu.data_path.posted_writes
        pending = 0.0  # posted write bytes not drained yet
        for b in ops:
            w = self.dev.work(b.op)
            busy = max(w.compute_cycles, w.vector_cycles)
            stream, post = w.dma_cycles, w.post_dma_cycles
            dma_bytes, dma_cycles = w.dma_bytes, w.dma_cycles
            if w.dma_bytes > 0 and resident:
                stream, dma_bytes, dma_cycles = 0.0, 0.0, 0.0
                busy = w.compute_cycles
            elif left > 0 and isinstance(b.op, Gemm):
                weights = b.op.k * b.op.n * b.op.batch * dtype_bytes(b.op.dtype)
                got = min(left, weights)
                left -= got
                rest = max(0.0, 1.0 - got / w.dma_bytes)
                stream, post = (w.dma_cycles * rest, w.post_dma_cycles) if rest else (0.0, 0.0)
            elif pending > 0 and w.stream_bytes > 0:
                stream = self.dev.dma_cycles(w.stream_bytes + pending)
                pending = 0.0
            if stream <= 0 and w.stream_bytes <= 0:
                busy = max(busy, w.cycles)  # an op with no HBM traffic: its own time
            segs = [(busy, stream, post)]
            if w.write_bytes > 0:
                if posted:
                    pending += w.write_bytes
                else:
                    segs.append((0.0, self.dev.dma_cycles(w.write_bytes), 0.0))
            cyc = sum(max(bz, st + po) for bz, st, po in segs)
            out = out + NpuChain.of(
                w,
                cycles=cyc,
                dma_bytes=dma_bytes,
                dma_cycles=dma_cycles,
                wr_bytes=w.write_bytes,
                flops=b.op.flops,
                ops=((b.role, cyc),),
                segments=tuple(segs),
            )
            if b.allreduce and self.comm:
                s = ring_allreduce_s(
                    b.allreduce_bytes,
                    self.tp,
                    self.npu.interconnect_gbps,
                    self.npu.interconnect_latency_us,
                )
                link = s * self.clock_hz
                out = out + NpuChain(
                    cycles=link,
                    link=link,
                    ops=((f"{b.role}.allreduce", link),),
                    segments=((link, 0.0, 0.0),),
                )
        if pending > 0:  # the last writes drain before the chain's work is done
            drain = self.dev.dma_cycles(pending)
            out = out + NpuChain(
                cycles=drain, ops=(("write drain", drain),), segments=((0.0, drain, 0.0),)
            )
        return out

    def qkv_chain(self, block: DecodeBlock, resident: bool = False) -> NpuChain:
        return self.chain(block.qkv, resident) + NpuChain(wr_bytes=block.kv_write_bytes)

    def projffn_chain(self, block: DecodeBlock, resident=False, prefetched=0.0) -> NpuChain:
        return self.chain(block.projffn, resident, prefetched)

    def tail_chain(self, batch: int) -> NpuChain:
        """Embedding (single stage) and final norm + LM head, once per iteration."""
        if not self.with_head:
            return NpuChain()
        block = self.block(batch)
        pre = block.pre if self.pp == 1 else ()
        return self.chain((*pre, *block.head))

    def prefetch_bytes(self, attn: AttnWork) -> float:
        """Weight bytes the NPU can load while the PIM runs the MHA stage (no SBI): only with
        dual row buffers (normal reads proceed beside PIM GEMVs; blocked mode holds the
        banks), at the streaming rate, up to the half of the SRAM not used by the running op."""
        if attn.pim is None or not (self.dual and self.spec.prefetch_during_pim):
            return 0.0
        stage = max(float(attn.pim.max()), attn.npu.cycles)
        probe = 1e8
        rate = probe / self.dev.dma_cycles(probe)  # bytes per NPU cycle
        share = contention(self.mem, self.dual).stream_share  # the PIM keeps the channels busy
        return min(self.npu.sram_bytes / 2, stage * rate * share)

    # -- KV cache --------------------------------------------------------------------------
    def weight_bytes(self) -> float:
        """Weights per device as the NeuPIMs trace generator counts them: all the model's
        linear weights and LM head over tp x pp devices (docs/sources/neupims.md §7)."""
        t = self.template
        total = (t.weight_params * t.model_layers + t.head_params) * self.tp
        return total * dtype_bytes(t.attention.dtype) / (self.tp * self.pp)

    def tiles_capacity_per_channel(self) -> int:
        """32 KB PIM tiles per channel left after the weights (docs/sources/neupims.md §7):
        floor((capacity - weights per device) / 32 KB / channels)."""
        mem = self.mem
        tile = mem.page_bytes * mem.banks_per_channel
        free = mem.capacity_bytes - self.weight_bytes()
        return max(0, int(math.floor(free / tile / self.channels)))

    def kv(self) -> KvLayout:
        a = self.template.attention
        e_kv = a.kv_heads * a.head_dim
        e_eff = a.heads * a.head_dim
        mem = self.mem
        return KvLayout(
            pools=self.channels,
            capacity=self.tiles_capacity_per_channel(),
            unit="32 KB PIM tile",
            units_per_block=lambda ctx: deps.kv_tiles(ctx, e_kv, mem),
            load=lambda ctx: deps.mha_estimate_cycles(ctx, e_eff, a.heads, mem),
            placement=self.spec.placement,
        )

    def handoff_s(self, batch: int) -> float:
        nbytes = self.block(batch).output_bytes
        return send_s(nbytes, self.npu.interconnect_gbps, self.npu.interconnect_latency_us)

    # -- the iteration ---------------------------------------------------------------------
    def iteration(self, seq_lens, ch_idx=None, *, record=False, periodic=False):
        """Simulate one decode iteration of the requests on one device.

        ``periodic``: simulate the timeline of at most 3 blocks and extend it by the exact
        period of the identical middle blocks (C + D with SBI, one block without); the full
        and periodic results are equal (tested), the periodic one is cheaper for serving.
        """
        seq_lens = np.asarray(seq_lens, dtype=np.int64)
        if seq_lens.size == 0:
            raise ConfigError("an iteration needs at least one request")
        if ch_idx is None:
            raise ConfigError(f"system {self.spec.name}: each request needs its KV channel")
        ch_idx = np.asarray(ch_idx, dtype=np.int64)
        nch = self.channels
        if ch_idx.min() < 0 or ch_idx.max() >= nch:
            raise ConfigError(
                f"ch_idx must lie in [0, {nch - 1}], got {ch_idx.min()}..{ch_idx.max()}"
            )
        b = len(seq_lens)
        sbi = self.spec.uses_sbi(b)
        kw = {"record": record, "periodic": periodic}
        if sbi and self.spec.sbi_policy == "adaptive":
            with_sbi = self._simulate(seq_lens, ch_idx, True, **kw)
            without = self._simulate(seq_lens, ch_idx, False, **kw)
            return with_sbi if with_sbi.iteration_cycles <= without.iteration_cycles else without
        return self._simulate(seq_lens, ch_idx, sbi, **kw)

    def _subbatches(self, seq_lens, ch_idx, sbi: bool) -> list[SubBatch]:
        if sbi:
            part = partition(ch_idx, self.channels)
            groups = [part == 0, part == 1]
        else:
            groups = [np.ones(len(seq_lens), bool)]
        sbs = []
        for i, g in enumerate(groups):
            s, c = seq_lens[g], ch_idx[g]
            block = self.block(int(g.sum()))
            attn = self.attend(self, block, s, c)
            # What-if: the second sub-batch finds the block's weights still on chip.
            res = sbi and i == 1 and self.spec.sbi_weight_reuse
            pre = 0.0 if sbi else self.prefetch_bytes(attn)
            pf = self.projffn_chain(block, res, pre)
            sbs.append(SubBatch(s, c, self.qkv_chain(block, res), pf, attn))
        return sbs

    def _stage(self, chain: NpuChain, attn: AttnWork | None):
        """(NPU cycles, PIM end and PIM busy cycles per channel) of a stage where the NPU
        runs ``chain`` while the PIM runs ``attn`` (None: the PIM idles). The vector units also run the PIM
        sub-batch's softmax; the NPU's HBM streams share the channels with the PIM tiles
        (:func:`neupims.devices.pim_contention.contention`, measured on the command-level
        model: a stream keeps ``stream_share`` of its rate while the PIM works, none in
        blocked mode, and the PIM takes ``pim_stretch`` times longer meanwhile)."""
        if attn is None or attn.pim is None:
            return chain.cycles, None, None
        c = contention(self.mem, self.dual)
        pim_end = float(attn.busy.max())
        npu, active = overlap(chain.segments, pim_end, c.stream_share)
        npu = max(npu, chain.vector + attn.npu.cycles)
        stretch = 1.0 + (c.pim_stretch - 1.0) * (active / pim_end if pim_end > 0 else 0.0)
        return npu, attn.pim * stretch, attn.busy * stretch

    def build_stages(self, sbs: list[SubBatch], sbi: bool, n: int) -> list[Stage]:
        stages: list[Stage] = []
        if not sbi:
            (sb,) = sbs
            where = "softmax (vector)" if sb.attn.pim is not None else "attention GEMV on NPU"
            for layer in range(n):
                stages.append(Stage("QKV", layer, sb.qkv.cycles, "QKV"))
                stages.append(
                    Stage(
                        "MHA",
                        layer,
                        sb.attn.npu.cycles,
                        where,
                        sb.attn.pim,
                        f"L{layer} MHA",
                        pim_busy=sb.attn.busy,
                    )  # fmt: skip
                )
                stages.append(
                    Stage("ProjFFN", layer, sb.pf.cycles, "Proj+FFN", None, "", sb.pf.link)
                )
            return stages
        s1, s2 = sbs

        def st(label, layer, chain, what, attn, pwhat):
            npu, pim, busy = self._stage(chain, attn)
            return Stage(label, layer, npu, what, pim, pwhat, chain.link, busy)

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
                )  # fmt: skip
            )
            stages.append(
                st(
                    "D",
                    layer,
                    s2.pf + s2.qkv,
                    "Proj+FFN SB2, next QKV SB2",
                    s1.attn,
                    f"L{layer + 1} MHA SB1",
                )  # fmt: skip
            )
        stages.append(st("E", n - 1, s1.pf, "Proj+FFN SB1", s2.attn, f"L{n - 1} MHA SB2"))
        stages.append(st("F", n - 1, s2.pf, "Proj+FFN SB2", None, ""))
        return stages

    def _simulate(self, seq_lens, ch_idx, sbi: bool, *, record: bool, periodic: bool):
        sbs = self._subbatches(seq_lens, ch_idx, sbi)
        n_full = self.layers
        if periodic and n_full > 3:
            stages = self.build_stages(sbs, sbi, 3)
            tl = simulate(stages, record)
            e = tl.stage_end
            period = (e[3] - e[1]) if sbi else (e[5] - e[2])
            layers_total = tl.total + (n_full - 3) * period
        else:
            stages = self.build_stages(sbs, sbi, n_full)
            tl = simulate(stages, record)
            layers_total = tl.total
            period = _period(tl, sbi, n_full)
        tail = self.tail_chain(len(seq_lens))
        total = layers_total + tail.cycles
        return self._metrics(sbs, stages, tl, sbi, total, period, tail, len(seq_lens), record)

    def _metrics(self, sbs, stages, tl, sbi, total, period, tail, batch, record):
        npu, mem, n = self.npu, self.mem, self.layers
        nch = self.channels
        secs = total / npu.clock_hz
        chains = [tail]
        for sb in sbs:
            chains += [sb.qkv] * n + [sb.pf] * n + [sb.attn.npu] * n
        macs = sum(c.macs for c in chains)
        vflops = sum(c.vec_flops for c in chains)
        dma = sum(c.dma_bytes for c in chains)
        wr = sum(c.wr_bytes for c in chains)
        sram = sum(c.sram_bytes for c in chains)
        flops = sum(c.flops for c in chains) + sum(sb.attn.flops for sb in sbs) * n
        pim_macs, pim_busy, cmds = 0.0, 0.0, {}
        loads = np.zeros(nch)
        for sb in sbs:
            if sb.attn.busy is not None:
                pim_macs += sb.attn.pim_macs * n
                pim_busy += float(sb.attn.busy.sum()) * n
                loads += sb.attn.busy
                for k, v in sb.attn.commands.items():
                    cmds[k] = cmds.get(k, 0.0) + float(np.sum(v)) * n
        # Host-side commands of the NPU's DMA: one RD per burst, one ACT per 1 KB row.
        acc, page = mem.access_bytes, mem.page_bytes
        cmds["RD"] = cmds.get("RD", 0.0) + dma / acc
        cmds["WR"] = cmds.get("WR", 0.0) + wr / acc
        cmds["ACT"] = cmds.get("ACT", 0.0) + (dma + wr) / page
        ext_bytes = dma + wr + (cmds.get("GWRITE", 0.0) + cmds.get("READRES", 0.0)) * acc
        dram_e = deps.dram_energy_j(cmds, mem, secs, self.dual)
        npu_e = npu_energy_j(npu, macs, vflops, sram, secs)
        pim_peak = mem.pim.multipliers_per_bank * mem.banks_per_channel / mem.timing.tCCD_L
        pim_peak_npu_cycle = pim_peak / self.mem_to_npu * nch
        ratio = float(loads.max() / loads.mean()) if loads.mean() > 0 else float("nan")
        first: dict[str, float] = {}
        prev = 0.0
        for st, end in zip(stages, tl.stage_end, strict=True):
            first.setdefault(st.label, end - prev)
            prev = end
        t = self.template
        params = t.weight_params * n + (t.head_params if self.with_head else 0)
        sb = sbs[0]
        ops = {f"qkv/{k}": v for k, v in sb.qkv.ops}
        ops.update({f"projffn/{k}": v for k, v in sb.pf.ops})
        ops.update({f"mha/{k}": v for k, v in sb.attn.phases.items()})
        return IterationResult(
            system=self.spec.name,
            batch=int(batch),
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
            pim_source=sbs[0].attn.source,
            flops=float(flops),
            weight_params=int(params),
            op_cycles=ops,
            clock_hz=npu.clock_hz,
            timeline=tl if record else None,
        )


def _period(tl: TimelineResult, sbi: bool, n: int) -> float:
    e = tl.stage_end
    if sbi:
        return e[3] - e[1] if n > 1 else e[-1]
    return e[2] if n == 1 else e[5] - e[2]


def _pim_stage_busy(stages: list[Stage]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in stages:
        if s.label in out:
            continue
        if s.pim is None:
            out[s.label] = {"max": 0.0, "mean": 0.0}
        else:
            busy = s.pim if s.pim_busy is None else s.pim_busy
            out[s.label] = {"max": float(busy.max()), "mean": float(busy.mean())}
    return out
