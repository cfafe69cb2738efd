"""NPU device model: weight-stationary systolic arrays, SIMD vector units, DMA over HBM.

Facts (docs/sources/neupims.md §2, from the released ONNXim-based simulator):
8 arrays of 128 x 128, weight-stationary, 1 GHz, FP16; one tile of a GEMM costs
``H + W - 2 + max(rows, 4)`` cycles once the weights are in, a weight preload costs ``H``
cycles and tiles issue pipelined. Our reading (documented in docs/neupims.md):

* An array processes its tiles back to back. A tile that brings new weights (a preload)
  issues ``max(rows_prev, 4, H)`` cycles after the previous one started: the preload of
  ``H`` cycles is hidden behind the previous tile's streaming when that streams at least
  ``H`` rows (ONNXim's systolic_ws issue rule, read as a fact from its public source).
  The last tile then needs its full ``H + W - 2 + max(rows, 4)`` cycles (fill, stream,
  drain and output write of the accumulators).
* SRAM is double buffered: half of it holds one M-tile's inputs, outputs and two weight
  tiles, which decides the rows per tile (``m_tile_rows``).
* Weights stream from HBM (DMA) while the arrays compute; a GEMM lasts
  ``max(compute, DMA + one tile)``. Activations stay on chip between ops.
* Vector units run element-wise work at ``count * width`` lanes per cycle.

All cycles are NPU core cycles (``frequency_mhz``). Energy in joules from the constants
of the NPU config's ``energy`` block (documented in hw_configs/npu_neupims.yaml).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from neupims.config import load_hw
from neupims.devices.base import Cost, DeviceModel, register_device
from neupims.devices.dram import stream_read_cycles
from neupims.devices.roofline import Roofline
from neupims.ops import ELEMENTWISE_KINDS, Attention, Conv2d, Elementwise, Gemm, Op, Pool2d
from neupims.ops import dtype_bytes as _dtype_bytes

#: ONNXim streams at least 4 rows per tile (``max(rows, 4)``), docs/sources/neupims.md §2.
MIN_STREAM_ROWS = 4


@dataclass(frozen=True)
class GemmTiles:
    """Closed-form tile schedule of one GEMM on the arrays (cycles are core cycles).

    The GEMM lasts ``max(compute_cycles, DMA + post_dma_cycles)``: ``post_dma_cycles`` is the
    compute that can only run after the last weight byte has arrived.
    """

    tiles: int  # tiles issued (weight tiles x M tiles x batch, or chunks x K x N blocks)
    m_tile_rows: int
    tiles_per_array: int
    compute_cycles: float
    dma_bytes: float
    macs: float
    post_dma_cycles: float

    def utilisation(self, macs_per_cycle: int, cycles: float) -> float:
        return self.macs / (macs_per_cycle * cycles) if cycles > 0 else 0.0


def m_tile_rows(m: int, n: int, k: int, cfg) -> int:
    """Rows of A per M tile: half the SRAM (double buffering) holds the tile's inputs
    (rows x k), outputs (rows x n) and two weight tiles (H x W each)."""
    b = _dtype_bytes(cfg.precision)
    s = cfg.systolic_array
    budget = cfg.sram_bytes / 2 - 2 * s.rows * s.cols * b
    per_row = (k + n) * b
    rows = int(budget // per_row) if budget > 0 else 1
    return max(1, min(m, rows))


def _weights_stationary(m: int, n: int, k: int, batch: int, cfg) -> GemmTiles:
    """Weight tiles preloaded, the rows of an M tile stream through (see module docstring)."""
    s = cfg.systolic_array
    h, w = s.rows, s.cols
    b = _dtype_bytes(cfg.precision)
    mt = m_tile_rows(m, n, k, cfg)
    m_tiles = math.ceil(m / mt)
    w_tiles = math.ceil(k / h) * math.ceil(n / w)
    tiles = batch * m_tiles * w_tiles
    per_array = math.ceil(tiles / s.count)
    # Each tile is a preload: issue interval max(rows, 4, H); the last tile completes after
    # fill + stream + drain. A short last M tile is charged the full tile rows.
    stream = max(mt, MIN_STREAM_ROWS)
    compute = (per_array - 1) * max(stream, h) + (h + w - 2) + stream
    # Weights are re-read once per M tile (they do not stay resident across M tiles).
    dma = batch * m_tiles * k * n * b
    first = h + w - 2 + stream  # the tile that waits for the last weights
    return GemmTiles(
        tiles, mt, per_array, float(compute), float(dma), float(batch) * m * n * k, float(first)
    )


def _inputs_stationary(m: int, n: int, k: int, batch: int, cfg) -> GemmTiles:
    """Activations preloaded, weights streamed: the NeuPIMs artifact's MatMul mapping.

    Facts read from the released simulator (casys-kaist/NeuPIMs src/operations/MatMul.cc,
    src/NeuPIMSystolicWS.cc; see docs/neupims.md): the operands are swapped, so an
    ``H``-row chunk of the batch (times an ``H``-deep K slice) is preloaded in ``H`` cycles
    and the weights' ``ceil(n / W)`` column blocks stream through it, one every
    ``W / count`` cycles (the 8 arrays act as one array 8x faster); a chunk shorter than
    ``H`` rows costs a full chunk. Loops run batch chunk, K slice, N block; a weight tile is
    loaded from HBM with the first chunk and reused from SRAM by the others, and
    instructions issue in order, so the first chunk follows the weight stream and the
    other chunks run after it. If one chunk's inputs, outputs and the weights do not fit
    half the SRAM, the weights are split into L2 tiles (each runs all chunks, the next
    tile's weights load meanwhile).
    """
    s = cfg.systolic_array
    h, w = s.rows, s.cols
    b = _dtype_bytes(cfg.precision)
    interval = max(math.ceil(w / s.count), MIN_STREAM_ROWS)
    chunks = batch * math.ceil(m / h)
    k_slices, n_blocks = math.ceil(k / h), math.ceil(n / w)
    chunk = k_slices * (h + (n_blocks - 1) * interval)
    budget = cfg.sram_bytes / 2 - h * (k + n) * b
    l2_tiles = max(1, math.ceil(k * n * b / budget)) if budget > 0 else k_slices * n_blocks
    tail = h + w - 2  # the last instruction's fill and drain
    compute = chunks * chunk + tail
    post = (chunks - 1) * chunk / l2_tiles + tail
    tiles = chunks * k_slices * n_blocks
    dma = batch * k * n * b
    return GemmTiles(
        tiles,
        min(h, m),
        math.ceil(tiles / s.count),
        float(compute),
        float(dma),
        float(batch) * m * n * k,
        float(post),
    )


#: stationary operand (``systolic_array.stationary_operand``) -> tile schedule
GEMM_SCHEDULES = {"weights": _weights_stationary, "inputs": _inputs_stationary}


@lru_cache(maxsize=65536)
def _gemm_tiles_cached(m: int, n: int, k: int, batch: int, cfg) -> GemmTiles:
    return GEMM_SCHEDULES[cfg.systolic_array.stationary_operand](m, n, k, batch, cfg)


def gemm_tiles(m: int, n: int, k: int, cfg, batch: int = 1) -> GemmTiles:
    """Tile schedule of C[m,n] = A[m,k] B[k,n] (``batch`` independent GEMMs)."""
    return _gemm_tiles_cached(int(m), int(n), int(k), int(batch), cfg)


def gemm_cycles(m: int, n: int, k: int, cfg, dma_cycles_fn, batch: int = 1) -> tuple[float, float]:
    """(total cycles, systolic compute cycles) of one GEMM with weights streamed by DMA.

    ``dma_cycles_fn(nbytes)`` converts DMA bytes into NPU core cycles.
    """
    t = gemm_tiles(m, n, k, cfg, batch)
    return max(t.compute_cycles, dma_cycles_fn(t.dma_bytes) + t.post_dma_cycles), t.compute_cycles


def attention_gemv_compute_cycles(seq_lens, heads: int, head_dim: int, cfg, counts=None) -> float:
    """Systolic cycles of decode attention on the NPU (NPU-only system).

    Per request and head: logit K^T q (weights K, ceil(d/H) x ceil(s/W) tiles) and attend
    p V (weights V, ceil(s/H) x ceil(d/W) tiles), each tile streaming one query row.
    Tiles spread over all arrays. ``counts[i]``: requests of length ``seq_lens[i]`` (1 each
    by default), so a large batch of few lengths needs no array entry per request.
    """
    s = cfg.systolic_array
    lens = np.asarray(seq_lens, dtype=np.int64)
    t_logit = math.ceil(head_dim / s.rows) * np.ceil(lens / s.cols)
    t_attend = np.ceil(lens / s.rows) * math.ceil(head_dim / s.cols)
    per_len = t_logit + t_attend
    if counts is not None:
        per_len = per_len * np.asarray(counts, dtype=np.float64)
    tiles = float(heads * per_len.sum())
    per_array = math.ceil(tiles / s.count)
    if per_array == 0:
        return 0.0
    interval = max(MIN_STREAM_ROWS, s.rows)  # one query row: the preload sets the pace
    return (per_array - 1) * interval + (s.rows + s.cols - 2) + MIN_STREAM_ROWS


def vector_cycles(elems: float, flops_per_elem: float, cfg) -> float:
    """Cycles of element-wise work on all vector units (``count * width`` lanes)."""
    v = cfg.vector_unit
    if elems <= 0:
        return 0.0
    return math.ceil(elems * flops_per_elem / (v.count * v.width)) + v.op_latency_cycles


def npu_energy_j(cfg, macs: float, vector_flops: float, sram_bytes: float, seconds: float) -> float:
    """Dynamic + static NPU energy (J) from the config's documented constants."""
    e = cfg.energy
    return (
        macs * e.mac_pj + vector_flops * e.vector_op_pj + sram_bytes * e.sram_byte_pj
    ) * 1e-12 + e.static_w * seconds


def stream_cycles_fn(mem):
    """Function bytes -> memory cycles for a streaming read over all channels (DRAM fast path)."""
    return lambda nbytes: float(stream_read_cycles(nbytes, mem)) if nbytes > 0 else 0.0


@dataclass(frozen=True)
class NpuWork:
    """What one op does on the NPU, in NPU core cycles, for systems that overlap it with
    other work (the NeuPIMs stages): ``cycles`` is the op alone (``max(compute, DMA + post)``
    for a GEMM), ``compute_cycles`` the systolic arrays' busy time, ``vector_cycles`` the
    vector units', ``dma_bytes``/``dma_cycles`` its HBM reads and their streaming time,
    ``post_dma_cycles`` the compute that can only follow the last DMA byte; ``macs``,
    ``vector_flops`` and ``sram_bytes`` feed the energy model. ``stream_bytes`` is the part of
    the reads the op waits for (``dma_cycles`` is its streaming time; with activations in
    DRAM a GEMM waits for the weights and the first pass's activations, the other passes'
    activations arrive while it computes); ``write_bytes`` what it writes back to HBM."""

    cycles: float
    compute_cycles: float = 0.0
    vector_cycles: float = 0.0
    dma_bytes: float = 0.0
    dma_cycles: float = 0.0
    post_dma_cycles: float = 0.0
    macs: float = 0.0
    vector_flops: float = 0.0
    sram_bytes: float = 0.0
    bound: str = "compute"
    detail: tuple = ()
    stream_bytes: float = 0.0
    write_bytes: float = 0.0


class NpuModel(DeviceModel):
    """Tile-level NPU model (``model = npu``). Utilisation = MACs / (peak MACs x cycles).

    :meth:`work` gives the per-op breakdown (:class:`NpuWork`) that the systems compose;
    :meth:`estimate` turns it into a :class:`Cost`."""

    name = "npu"
    kinds = ("npu",)

    def __init__(self, hw):
        super().__init__(hw)
        self.mem = load_hw(hw.memory)
        mem_cycle_s = self.mem.timing.tck_ns * 1e-9
        self._mem_cycles = stream_cycles_fn(self.mem)
        self.cycle_s = 1.0 / hw.clock_hz
        #: NPU core cycles per memory cycle
        self.mem_to_npu = mem_cycle_s / self.cycle_s
        self.work = lru_cache(maxsize=65536)(self._work)

    def dma_cycles(self, nbytes: float) -> float:
        """NPU cycles to stream ``nbytes`` from HBM over all channels (DRAM fast path)."""
        return self._mem_cycles(nbytes) * self.mem_to_npu

    def _gemm_work(self, m: int, n: int, k: int, batch: int, sram: float, b: float) -> NpuWork:
        """A GEMM whose weights stream from HBM; with activations in DRAM it also reads its
        input rows (the first pass's before it can start: ``passes`` = row chunks streamed
        through the stationary activations, or M tiles of the weight-stationary mapping) and
        writes its result."""
        hw = self.hw
        t = gemm_tiles(m, n, k, hw, batch)
        stream, reads, writes = t.dma_bytes, t.dma_bytes, 0.0
        if hw.data_path.activations == "dram":
            a_bytes = batch * m * k * b
            if hw.systolic_array.stationary_operand == "weights":
                passes = batch * -(-m // t.m_tile_rows)
            else:
                passes = batch * -(-m // hw.systolic_array.rows)
            stream += a_bytes / passes
            reads += a_bytes
            if not hw.released_quirks.gemm_outputs_not_written:
                writes = batch * m * n * b
        dma = self.dma_cycles(stream)
        total = max(t.compute_cycles, dma + t.post_dma_cycles)
        return NpuWork(
            cycles=total,
            compute_cycles=t.compute_cycles,
            dma_bytes=reads,
            dma_cycles=dma,
            post_dma_cycles=t.post_dma_cycles,
            macs=t.macs,
            sram_bytes=sram,
            bound="compute" if t.compute_cycles >= total else "memory",
            detail=(("tiles", t.tiles), ("m_tile_rows", t.m_tile_rows)),
            stream_bytes=stream,
            write_bytes=writes,
        )

    def _vector_work(self, op: Op, elems: float, flops_per_elem: float) -> NpuWork:
        """Element-wise work on the vector units; with activations in DRAM the op reads its
        inputs and writes its outputs through HBM and takes the longer of the two."""
        hw = self.hw
        c = vector_cycles(elems, flops_per_elem, hw)
        if hw.data_path.activations != "dram":
            return NpuWork(c, vector_cycles=c, vector_flops=op.flops, sram_bytes=op.min_bytes,
                           bound="vector")  # fmt: skip
        if hw.released_quirks.vector_compute_free and getattr(op, "kind", "") != "softmax":
            c = 0.0
        if isinstance(op, Elementwise):
            _, n_in, n_out = ELEMENTWISE_KINDS[op.kind]
            b = _dtype_bytes(op.dtype)
            reads, writes = n_in * op.elems * b, n_out * op.elems * b
        else:  # pooling: its compulsory traffic, the output a small part of it
            reads, writes = op.min_bytes, 0.0
        dma = self.dma_cycles(reads)
        return NpuWork(
            max(c, dma),
            vector_cycles=c,
            dma_bytes=reads,
            dma_cycles=dma,
            vector_flops=op.flops,
            sram_bytes=op.min_bytes,
            bound="vector" if c >= dma else "memory",
            stream_bytes=reads,
            write_bytes=writes,
        )

    def cycles_with(self, w: NpuWork, extra_bytes: float) -> float:
        """The op's cycles when ``extra_bytes`` more (earlier ops' posted writes draining)
        share its read stream."""
        if extra_bytes <= 0 or w.stream_bytes <= 0:
            return w.cycles
        busy = max(w.compute_cycles, w.vector_cycles)
        return max(busy, self.dma_cycles(w.stream_bytes + extra_bytes) + w.post_dma_cycles)

    def _work(self, op: Op) -> NpuWork:
        if isinstance(op, Gemm):
            b = _dtype_bytes(op.dtype)
            return self._gemm_work(op.m, op.n, op.k, op.batch, op.min_bytes, b)
        if isinstance(op, Conv2d):
            m, n, k = op.gemm_mnk
            return self._gemm_work(m, n, k, 1, op.min_bytes, _dtype_bytes(op.dtype))
        if isinstance(op, Attention):
            return decode_attention_work(self, (op,)) if op.q_len == 1 else self._prefill_attn(op)
        if isinstance(op, Elementwise):
            return self._vector_work(op, op.elems, max(ELEMENTWISE_KINDS[op.kind][0], 1.0))
        if isinstance(op, Pool2d):
            return self._vector_work(op, op.flops, 1.0)
        raise NotImplementedError(op.name)

    def _prefill_attn(self, op: Attention) -> NpuWork:
        """Prefill: Q K^T and P V as GEMMs per (request, head) over all arrays, the softmax on
        the vector units, K and V read once from HBM."""
        hw = self.hw
        c1, _ = gemm_cycles(op.q_len, op.kv_len, op.head_dim, hw, lambda b: 0.0)
        c2, _ = gemm_cycles(op.q_len, op.head_dim, op.kv_len, hw, lambda b: 0.0)
        compute = (c1 + c2) * op.batch * op.heads / hw.systolic_array.count
        soft = vector_cycles(op.batch * op.heads * op.q_len * op.kv_len, 5, hw)
        dma = self.dma_cycles(op.kv_bytes)
        return NpuWork(
            cycles=max(compute + soft, dma),
            compute_cycles=compute,
            vector_cycles=soft,
            dma_bytes=op.kv_bytes,
            dma_cycles=dma,
            macs=op.flops / 2,
            vector_flops=5.0 * op.batch * op.heads * op.q_len * op.kv_len,
            sram_bytes=op.min_bytes,
            bound="memory" if dma >= compute + soft else "compute",
        )

    def _estimate(self, op: Op) -> Cost:
        hw = self.hw
        try:
            w = self.work(op)
        except NotImplementedError:
            # Sparse / quantised kernels are not NPU-native: the named roofline fallback.
            c = Roofline(hw).estimate(op)
            return Cost(c.latency_s, c.flops, c.bytes, c.footprint_bytes, "roofline-fallback",
                        "npu(roofline)", detail=c.detail)  # fmt: skip
        secs = w.cycles * self.cycle_s
        util = w.macs / (hw.macs_per_cycle * w.cycles) if w.cycles > 0 else 0.0
        return Cost(
            latency_s=secs,
            flops=op.flops,
            bytes=w.dma_bytes,
            footprint_bytes=float(op.min_bytes),
            bound=w.bound,
            model=self.name,
            energy_j=npu_energy_j(hw, w.macs, w.vector_flops, op.min_bytes, secs),
            detail=(("cycles", w.cycles), ("utilisation", util), *w.detail),
        )


def decode_attention_work(model: NpuModel, ops) -> NpuWork:
    """Decode attention of a ragged batch on the NPU (the NPU-only system): one
    :class:`~neupims.ops.Attention` op per distinct context length (as the trace has them),
    all heads' logit and attend GEMVs pooled over the arrays, K and V streamed once from HBM,
    the softmax on the vector units overlapping the stream of the next head."""
    hw = model.hw
    ops = tuple(ops)
    if not ops:
        return NpuWork(0.0)
    first = ops[0]
    lens = np.array([o.kv_len for o in ops], dtype=np.int64)
    counts = np.array([o.batch for o in ops], dtype=np.int64)
    compute = attention_gemv_compute_cycles(lens, first.heads, first.head_dim, hw, counts)
    scores = float(sum(o.batch * o.heads * o.kv_len for o in ops))
    soft = vector_cycles(scores, 5, hw)
    kv = float(sum(o.kv_bytes for o in ops))
    dma = model.dma_cycles(kv)
    return NpuWork(
        cycles=max(compute + soft, dma),
        compute_cycles=compute,
        vector_cycles=soft,
        dma_bytes=kv,
        dma_cycles=dma,
        macs=float(sum(o.flops for o in ops)) / 2,
        vector_flops=5.0 * scores,
        sram_bytes=kv,
        bound="memory" if dma >= compute + soft else "compute",
    )


register_device(NpuModel)
