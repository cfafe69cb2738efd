"""NPU device model: weight-stationary systolic arrays, SIMD vector units, DMA over HBM.

Facts (../shared/docs/NEUPIMS.md section 2, from the released ONNXim-based simulator):
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

from neupims.devices.base import Cost, DeviceModel, register_device
from neupims.ops import ELEMENTWISE_KINDS, Attention, Conv2d, Elementwise, Gemm, Op, Pool2d
from neupims.ops import dtype_bytes as _dtype_bytes

#: ONNXim streams at least 4 rows per tile (``max(rows, 4)``), NEUPIMS.md section 2.
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


def attention_gemv_compute_cycles(seq_lens, heads: int, head_dim: int, cfg) -> float:
    """Systolic cycles of decode attention on the NPU (NPU-only system).

    Per request and head: logit K^T q (weights K, ceil(d/H) x ceil(s/W) tiles) and attend
    p V (weights V, ceil(s/H) x ceil(d/W) tiles), each tile streaming one query row.
    Tiles spread over all arrays.
    """
    s = cfg.systolic_array
    lens = np.asarray(seq_lens, dtype=np.int64)
    t_logit = math.ceil(head_dim / s.rows) * np.ceil(lens / s.cols)
    t_attend = np.ceil(lens / s.rows) * math.ceil(head_dim / s.cols)
    tiles = float(heads * (t_logit + t_attend).sum())
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
    from neupims.devices.dram import stream_read_cycles

    return lambda nbytes: float(stream_read_cycles(nbytes, mem)) if nbytes > 0 else 0.0


class NpuModel(DeviceModel):
    """Tile-level NPU model (``model = npu``). Utilisation = MACs / (peak MACs x cycles)."""

    name = "npu"
    kinds = ("npu",)

    def __init__(self, hw):
        super().__init__(hw)
        from neupims.config import load_hw

        self.mem = load_hw(hw.memory)
        mem_cycle_s = self.mem.timing.tck_ns * 1e-9
        self._mem_cycles = stream_cycles_fn(self.mem)
        self.cycle_s = 1.0 / hw.clock_hz
        ratio = mem_cycle_s / self.cycle_s
        self.dma_cycles = lambda nbytes: self._mem_cycles(nbytes) * ratio

    def _cost(
        self,
        op: Op,
        cycles: float,
        macs: float,
        vflops: float,
        dram: float,
        bound: str,
        extra: tuple = (),
    ) -> Cost:
        hw = self.hw
        secs = cycles * self.cycle_s
        util = macs / (hw.macs_per_cycle * cycles) if cycles > 0 else 0.0
        sram = op.min_bytes
        return Cost(
            latency_s=secs,
            flops=op.flops,
            bytes=dram,
            footprint_bytes=float(op.min_bytes),
            bound=bound,
            model=self.name,
            energy_j=npu_energy_j(hw, macs, vflops, sram, secs),
            detail=(("cycles", cycles), ("utilisation", util), *extra),
        )

    def _gemm(self, op: Op, m: int, n: int, k: int, batch: int) -> Cost:
        t = gemm_tiles(m, n, k, self.hw, batch)
        total, compute = gemm_cycles(m, n, k, self.hw, self.dma_cycles, batch)
        bound = "compute" if compute >= total else "memory"
        extra = (("tiles", t.tiles), ("m_tile_rows", t.m_tile_rows))
        return self._cost(op, total, t.macs, 0.0, t.dma_bytes, bound, extra)

    def _estimate(self, op: Op) -> Cost:
        hw = self.hw
        if isinstance(op, Gemm):
            return self._gemm(op, op.m, op.n, op.k, op.batch)
        if isinstance(op, Conv2d):
            m, n, k = op.gemm_mnk
            return self._gemm(op, m, n, k, 1)
        if isinstance(op, Attention):
            if op.q_len == 1:
                # every request has kv_len keys: batch x heads (request, head) pairs of one
                # length (the same tile count as summing batch equal requests, no array of
                # batch entries for a large batch)
                lens = np.array([op.kv_len])
                compute = attention_gemv_compute_cycles(lens, op.heads * op.batch, op.head_dim, hw)
                macs = 2.0 * op.batch * op.heads * op.kv_len * op.head_dim
            else:  # prefill: Q K^T and P V as GEMMs per (request, head)
                c1, _ = gemm_cycles(op.q_len, op.kv_len, op.head_dim, hw, lambda b: 0.0)
                c2, _ = gemm_cycles(op.q_len, op.head_dim, op.kv_len, hw, lambda b: 0.0)
                compute = (c1 + c2) * op.batch * op.heads / hw.systolic_array.count
                macs = op.flops / 2
            soft = vector_cycles(op.batch * op.heads * op.q_len * op.kv_len, 5, hw)
            dma = self.dma_cycles(op.kv_bytes)
            cycles = max(compute + soft, dma)
            bound = "memory" if dma >= compute + soft else "compute"
            return self._cost(
                op, cycles, macs, 5.0 * op.batch * op.heads * op.kv_len, op.kv_bytes, bound
            )
        if isinstance(op, Elementwise):
            f = ELEMENTWISE_KINDS[op.kind][0]
            cycles = vector_cycles(op.elems, max(f, 1.0), hw)
            return self._cost(op, cycles, 0.0, op.flops, 0.0, "vector")
        if isinstance(op, Pool2d):
            cycles = vector_cycles(op.flops, 1.0, hw)
            return self._cost(op, cycles, 0.0, op.flops, 0.0, "vector")
        # Sparse / quantised kernels are not NPU-native: the named roofline fallback.
        from neupims.devices.roofline import Roofline

        c = Roofline(hw).estimate(op)
        return Cost(
            c.latency_s,
            c.flops,
            c.bytes,
            c.footprint_bytes,
            "roofline-fallback",
            "npu(roofline)",
            detail=c.detail,
        )


register_device(NpuModel)
