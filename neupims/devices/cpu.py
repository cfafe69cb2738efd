"""CPU device model: cores, SIMD, caches and DRAM (issue 6; docs/cpu.md).

Latency of one op on a multicore CPU, built from the config (``neupims.config.hw_cpu``):

* **GEMM** follows the Goto/BLIS blocking that BLIS and OpenBLAS use (Goto & van de Geijn,
  TOMS 2008; Low et al., "Analytical modeling is enough for high-performance BLIS", TOMS
  2016): an ``mr x nr`` register micro-tile, a ``kc x nr`` B micro-panel that lives in L1,
  an ``mc x kc`` packed A block in L2 and a ``kc x nc`` packed B panel in L3. Compute is
  counted in whole micro-tiles (edge waste), each call paying a fixed ``gemm_k0`` k-steps
  (C-tile load/store); packing A and B and updating C stream from the level that holds
  the operands. Threads split the micro-tiles; OpenBLAS's rule for how many threads a
  call may use is applied (:func:`blas_threads`).
* **GEMV** and **element-wise** ops stream their bytes from the cache level that holds the
  working set (a blend when it partly fits), or compute, whichever is slower.
* **conv2d**: ``im2col`` (unfold + GEMM per image, as PyTorch's CPU path), ``im2win``
  (window tensor + packed micro-kernel, no GEMM packing) and ``direct`` (loop nest,
  load-port bound); ``auto`` picks the fastest.
* **SpMM** (4x1 block-sparse int8 weights, Intel's sparse kernels) and **LutGemm** (T-MAC
  table lookups, linear in the bit width) are instruction-count models.

Units: seconds, bytes, FLOPs (one FMA = 2 FLOPs), cycles at ``frequency_ghz``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neupims.config.hw_cpu import CpuConfig
from neupims.devices.base import Cost, DeviceModel, register_device
from neupims.devices.roofline import Roofline, footprint
from neupims.ops import (
    ELEMENTWISE_KINDS,
    Attention,
    Conv2d,
    Elementwise,
    Gemm,
    Gemv,
    LutGemm,
    Op,
    Pool2d,
    SpMM,
    dtype_bytes,
)

#: OpenBLAS runs a GEMM on one thread when m*n*k <= SMP_THRESHOLD_MIN * GEMM_MULTITHREAD_
#: THRESHOLD = 65536 * 4, and otherwise on at most m*n*k / that many threads
#: (OpenBLAS interface/gemm.c, 0.3.x; the defaults of both constants).
GEMM_THREAD_WORK = 65536 * 4
#: OpenBLAS runs a GEMV on one thread when m*n < 2304 * GEMM_MULTITHREAD_THRESHOLD
#: (OpenBLAS interface/gemv.c, 0.3.x).
GEMV_THREAD_WORK = 2304 * 4
#: Element-wise kernels split work in chunks of at least this many elements
#: (PyTorch ``at::internal::GRAIN_SIZE`` = 32768).
ELEMENTWISE_GRAIN = 32768


def blas_threads(hw: CpuConfig, m: int, n: int, k: int) -> int:
    """Threads OpenBLAS uses for an m x n x k GEMM (see :data:`GEMM_THREAD_WORK`)."""
    mnk = float(m) * n * k
    if mnk <= GEMM_THREAD_WORK:
        return 1
    return max(1, min(hw.nthreads, int(mnk / GEMM_THREAD_WORK)))


# --------------------------------------------------------------------------- caches
def level_bandwidth(hw: CpuConfig, level: str, threads: int) -> float:
    """Achieved streaming bandwidth (B/s) of ``threads`` cores reading from ``level``."""
    if level == "dram":
        nominal = min(threads * hw.dram_gbps_per_core, hw.dram_bandwidth_gbps)
        return nominal * 1e9 * hw.eff("bw_dram")
    cache = {"l1": hw.l1d, "l2": hw.l2, "l3": hw.l3}[level]
    return cache.bandwidth_gbps_per_core * threads * 1e9 * hw.eff(f"bw_{level}")


def _capacities(hw: CpuConfig, threads: int) -> list[tuple[str, float]]:
    """(level, bytes available to ``threads`` cores), innermost first."""
    out = []
    for name, c in (("l1", hw.l1d), ("l2", hw.l2), ("l3", hw.l3)):
        size = c.size_bytes if c.shared else c.size_bytes * threads
        if name == "l3":
            size *= hw.eff("cache_share")
        out.append((name, float(size)))
    return out


def stream_time(hw: CpuConfig, nbytes: float, working_set: float, threads: int) -> float:
    """Seconds to stream ``nbytes`` whose data set is ``working_set`` bytes, warm.

    The innermost level that holds the working set serves it, except the fraction
    ``capacity / working_set`` that the level inside it still holds (adaptive replacement
    keeps part of a cyclic stream, LRU would keep none): a set just over the threads' L2s
    runs near L2 speed, one beyond the last level partly from it and the rest from DRAM.
    """
    if nbytes <= 0:
        return 0.0
    levels = [*_capacities(hw, threads), ("dram", math.inf)]
    i = next(j for j, (_, cap) in enumerate(levels) if working_set <= cap)
    per_byte = 1.0 / level_bandwidth(hw, levels[i][0], threads)
    if i > 0:
        inner, inner_cap = levels[i - 1]
        hit = inner_cap / working_set
        per_byte = hit / level_bandwidth(hw, inner, threads) + (1 - hit) * per_byte
    return nbytes * per_byte


def first_touch_time(hw: CpuConfig, nbytes: float, working_set: float, threads: int) -> float:
    """Seconds for the first read of an op's inputs: from where they live when ``hw.warm``
    (the op was just run on the same data, as when timing it in a loop), else from DRAM
    (a trace of distinct layers, whose weights were last touched a whole step ago)."""
    if hw.warm:
        return stream_time(hw, nbytes, working_set, threads)
    return nbytes / level_bandwidth(hw, "dram", threads) if nbytes > 0 else 0.0


def overhead_s(hw: CpuConfig, threads: int) -> float:
    """Fixed cost of one library call run on ``threads`` threads: the call itself plus a
    fork/join that wakes and gathers the threads as a tree, ``thread_us`` per level."""
    levels = math.ceil(math.log2(threads)) if threads > 1 else 0
    return (hw.eff("call_us") + hw.eff("thread_us") * levels) * 1e-6


# --------------------------------------------------------------------------- GEMM
@dataclass(frozen=True)
class Blocking:
    """Goto/BLIS blocking of one dtype: register tile mr x nr, cache blocks kc, mc, nc."""

    mr: int
    nr: int
    kc: int
    mc: int
    nc: int


def _round_down(x: float, mult: int, lo: int) -> int:
    return max(lo, int(x // mult) * mult)


def blocking(hw: CpuConfig, dtype: str) -> Blocking:
    """Analytical blocking (Low et al. 2016): nr = two vectors, mr fills the accumulator
    registers (all but 4 of them, 2 per row), kc x nr of B fills half of L1, mc x kc of A
    half of L2 and kc x nc of B half of this core's share of L3."""
    b = dtype_bytes(dtype)
    lanes = max(1, int(hw.simd_bits / (8 * b)))
    nr = 2 * lanes
    mr = max(1, (hw.vector_registers - 4) // 2)
    kc = _round_down(hw.l1d.size_bytes / 2 / (nr * b), 8, 16)
    mc = _round_down(hw.l2.size_bytes / 2 / (kc * b), mr, mr)
    l3_core = hw.l3.size_bytes * hw.eff("cache_share") / (hw.cores if hw.l3.shared else 1)
    nc = _round_down(l3_core / 2 / (kc * b), nr, nr)
    return Blocking(mr, nr, kc, mc, nc)


def _gemm_eff(hw: CpuConfig, dtype: str) -> float:
    return hw.eff({"fp32": "gemm_fp32", "fp64": "gemm_fp64"}.get(dtype, "gemm_other"))


def gemm_time(
    hw: CpuConfig, m: int, n: int, k: int, dtype: str, threads: int | None = None, pack: bool = True
) -> tuple[float, dict]:
    """Seconds for one m x n x k GEMM and a detail dict (threads, blocking, bound).

    ``threads`` None applies OpenBLAS's thread rule; ``pack`` False drops the packing
    traffic (a kernel whose operands are laid out for it in advance, as im2win's).
    """
    p = blas_threads(hw, m, n, k) if threads is None else threads
    blk = blocking(hw, dtype)
    b = dtype_bytes(dtype)
    f = hw.frequency_ghz * 1e9
    tiles = math.ceil(m / blk.mr) * math.ceil(n / blk.nr)
    n_kc = math.ceil(k / blk.kc)
    n_nc = math.ceil(n / blk.nc)
    cyc_per_k = 2.0 * blk.mr * blk.nr / hw.flops_per_cycle_core(dtype)
    tiles_per_thread = math.ceil(tiles / p)
    t_compute = tiles_per_thread * (k + n_kc * hw.eff("gemm_k0")) * cyc_per_k
    t_compute /= f * _gemm_eff(hw, dtype)
    ws = (m * k + k * n + m * n) * b
    # packing reads A (once per nc panel) and B (once) from where they live and writes
    # them into cache-resident buffers (mc x kc in L2, kc x nc in L3)
    first = (m * k + k * n) * b
    if pack:
        t_pack = first_touch_time(hw, first, ws, p)
        t_pack += stream_time(hw, m * k * (n_nc - 1) * b, ws, p)
    else:
        t_pack = 0.0  # the caller streams its pre-laid-out operands itself
    if pack:
        t_pack += m * k * n_nc * b / level_bandwidth(hw, "l2", p)
        t_pack += k * n * b / level_bandwidth(hw, "l3", p)
    # BLAS reads and writes C once per kc block; a kernel on pre-laid-out operands
    # (pack False) keeps the first block's sums in registers and only writes them
    c_bytes = (2.0 * n_kc if pack else 2.0 * n_kc - 1) * m * n * b
    t_mem = t_pack + stream_time(hw, c_bytes, ws, p)
    t = overhead_s(hw, p) + t_compute + t_mem
    bound = "compute" if t_compute >= t_mem else "memory"
    detail = {
        "threads": p,
        "mr": blk.mr,
        "nr": blk.nr,
        "kc": blk.kc,
        "mc": blk.mc,
        "nc": blk.nc,
        "t_compute_s": t_compute,
        "t_mem_s": t_mem,
        "bound": bound,
    }
    return t, detail


def gemv_time(
    hw: CpuConfig, rows: int, cols: int, dtype: str, vectors: int = 1, threads: int | None = None
) -> tuple[float, dict]:
    """Seconds for y = W x with W rows x cols (``vectors`` right-hand sides, read once)."""
    p = (1 if rows * cols < GEMV_THREAD_WORK else hw.nthreads) if threads is None else threads
    b = dtype_bytes(dtype)
    mat = rows * cols * b
    nbytes = mat + vectors * (rows + cols) * b
    t_mem = first_touch_time(hw, nbytes, nbytes, p)
    flops = 2.0 * rows * cols * vectors
    t_compute = flops / (hw.flops_per_cycle_core(dtype) * hw.frequency_ghz * 1e9 * p)
    t = overhead_s(hw, p) + max(t_mem, t_compute)
    return t, {"threads": p, "bound": "memory" if t_mem >= t_compute else "compute"}


# --------------------------------------------------------------------------- others
def elementwise_time(
    hw: CpuConfig, op: Elementwise, threads: int | None = None
) -> tuple[float, dict]:
    """Streaming kernel: reads ``n_in`` and writes one tensor (write-allocate adds a read
    when the output does not stay in cache); vector ALU work overlaps the traffic."""
    fl, n_in, n_out = ELEMENTWISE_KINDS[op.kind]
    p = threads or max(1, min(hw.nthreads, op.elems // ELEMENTWISE_GRAIN))
    b = dtype_bytes(op.dtype)
    ws = (n_in + n_out) * op.elems * b
    nbytes = ws
    if hw.write_allocate and ws > _capacities(hw, p)[-1][1]:
        nbytes += n_out * op.elems * b
    t_in = first_touch_time(hw, n_in * op.elems * b, ws, p)
    t_mem = t_in + stream_time(hw, nbytes - n_in * op.elems * b, ws, p)
    lanes = hw.simd_bits / (8 * b)
    t_compute = fl * op.elems / (lanes * hw.vector_alu_per_cycle * hw.frequency_ghz * 1e9 * p)
    t = overhead_s(hw, p) + max(t_mem, t_compute)
    return t, {"threads": p, "bound": "memory" if t_mem >= t_compute else "compute"}


def conv_time(hw: CpuConfig, op: Conv2d, algo: str) -> tuple[float, dict]:
    """Seconds for one conv2d with ``algo`` in im2col, im2win, direct."""
    b = dtype_bytes(op.dtype)
    m, n, kk = op.kout, op.ho * op.wo, op.c * op.r * op.s  # per image: W[K, CRS] @ X[CRS, HoWo]
    p = hw.nthreads
    in_img = op.c * (op.h + 2 * op.pad) * (op.w + 2 * op.pad) * b
    if algo == "im2col":
        buf = op.im2col_elems / op.batch * b
        t_tr = stream_time(hw, in_img + buf, in_img + buf, p)
        # the unfolded buffer was just written and the filter is reused by every image:
        # the per-image GEMM finds both in cache
        t_g, d = gemm_time(hw.model_copy(update={"warm": True}), m, n, kk, op.dtype)
        # each image's input is fetched and its output written back through the memory
        # level that holds the whole batch (DRAM for the paper's batch of 128)
        io = op.batch * (in_img + n * m * b)
        t_io = stream_time(hw, io, io, p)
        t = op.batch * (t_tr + t_g) + t_io
        return t, {"algo": algo, "threads": d["threads"], "transform_s": op.batch * t_tr}
    if algo == "im2win":
        # one call over the whole batch: build the window tensor, then a micro-kernel whose
        # operands are already laid out (no GEMM packing); the window tensor is read once
        # per block of mc output channels
        buf = op.im2win_elems * b
        t_tr = stream_time(hw, op.batch * in_img + buf, op.batch * in_img + buf, p)
        t_g, d = gemm_time(hw, m, op.batch * n, kk, op.dtype, threads=p, pack=False)
        blk = blocking(hw, op.dtype)
        t_rd = stream_time(hw, math.ceil(m / blk.mc) * buf, buf, p)
        return t_tr + t_g + t_rd, {"algo": algo, "threads": p, "transform_s": t_tr}
    if algo == "direct":
        # Vectorised over output width with no register blocking across channels: each
        # vector FMA also loads one input vector (s vectors' worth of lanes at stride s)
        # and broadcasts one weight, so the load ports, not the FMA pipes, set the pace.
        fma_rate = min(float(hw.fma_units), DIRECT_LOAD_PORTS / (op.stride + 1.0))
        per_core = fma_rate / hw.fma_units * hw.flops_per_cycle_core(op.dtype)
        t_c = op.flops / (per_core * hw.frequency_ghz * 1e9 * p * _gemm_eff(hw, op.dtype))
        t_m = stream_time(hw, op.min_bytes, op.min_bytes, p)
        return overhead_s(hw, p) + max(t_c, t_m), {"algo": algo, "threads": p}
    raise ValueError(f"unknown conv algorithm {algo!r}")


CPU_CONV_ALGOS = ("im2col", "im2win", "direct")
#: Vector load ports per core assumed by the direct-convolution rule (Zen 3 and Golden
#: Cove both sustain two 256/512-bit loads per cycle: AMD and Intel optimisation manuals).
DIRECT_LOAD_PORTS = 2.0


def conv_footprint(op: Conv2d, algo: str) -> float:
    """Resident bytes: input, filter, output and the algorithm's whole-batch workspace."""
    b = dtype_bytes(op.dtype)
    ws = {"im2col": op.im2col_elems, "im2win": op.im2win_elems, "direct": 0}[algo]
    return (op.input_elems + op.filter_elems + op.output_elems + ws) * b


#: Vector instructions around one 4x4 group of four 4x1 blocks for 16 tokens, besides its
#: four VNNI dot products: interleaving the four gathered 16-byte activation rows into the
#: VNNI dword layout takes two byte-unpacks and two word-unpacks (derived, docs/cpu.md).
SPMM_REORDER_OPS = 4
#: Lanes of one VNNI dot product (tokens per instruction for int8 in 512 bits / 4 B).
SPMM_MACS_PER_VNNI_LANE = 4


def spmm_time(hw: CpuConfig, op: SpMM) -> tuple[float, dict]:
    """4x1 block-sparse int8 weight x dense activation (Shen et al., arXiv 2306.16601).

    Per group of four non-zero 4x1 blocks and per vector of tokens: four VNNI dot products
    plus :data:`SPMM_REORDER_OPS` shuffles that share the vector ports.
    """
    p = hw.nthreads
    lanes = hw.simd_bits // 32  # int32 accumulators = tokens per vector
    nnz_blocks = (1.0 - op.sparsity) * op.n * op.k / (op.block_n * op.block_k)
    groups = nnz_blocks / SPMM_MACS_PER_VNNI_LANE
    token_vecs = math.ceil(op.m / lanes)
    instr = groups * token_vecs * (op.block_n + SPMM_REORDER_OPS)
    t_c = instr / (hw.fma_units * hw.frequency_ghz * 1e9 * p * hw.eff("gemm_other"))
    ws = op.min_bytes
    t_m = first_touch_time(hw, op.min_bytes, ws, p)
    return overhead_s(hw, p) + max(t_c, t_m), {
        "threads": p,
        "bound": "compute" if t_c >= t_m else "memory",
    }


#: Vector instructions per 16 table lookups in T-MAC's inner loop: one TBL/PSHUFB, one
#: widening accumulate and one nibble unpack of the packed weight indices (derived from
#: the algorithm in docs/sources/kernels.md §5; docs/cpu.md).
LUT_INSTR_PER_16 = 3.0
LUT_SHUFFLES_PER_16 = 1.0


def lut_time(hw: CpuConfig, op: LutGemm) -> tuple[float, dict]:
    """T-MAC LUT GEMV/GEMM: table build + lookups (linear in bits) or weight streaming."""
    p = hw.nthreads
    f = hw.frequency_ghz * 1e9
    lanes16 = hw.simd_bits / 16
    # tables: mirror symmetry halves the 2**g entries; one add per entry in int16 lanes
    t_build = op.table_entries / 2 / (lanes16 * hw.vector_alu_per_cycle * f * p)
    n16 = op.lookups / 16
    t_look = max(
        n16 * LUT_SHUFFLES_PER_16 / hw.shuffle_per_cycle,
        n16 * LUT_INSTR_PER_16 / hw.vector_alu_per_cycle,
    ) / (f * p)
    t_look /= hw.eff("gemm_other")
    t_m = first_touch_time(hw, op.min_bytes, op.min_bytes, p)
    t_c = t_build + t_look
    return overhead_s(hw, p) + max(t_c, t_m), {
        "threads": p,
        "t_build_s": t_build,
        "t_lookup_s": t_look,
        "bound": "compute" if t_c >= t_m else "memory",
    }


def attention_time(hw: CpuConfig, op: Attention) -> tuple[float, dict]:
    """Unfused attention as a CPU runtime runs it: per (batch, head) pair, S = Q K^T, a
    softmax over S and O = P V as single-thread GEMMs (GEMVs when q_len = 1), the pairs
    spread over the threads. Causal masking skips the masked fraction of both products.
    K and V stream from memory once (query heads sharing a KV head find it in cache), so
    the step is no faster than that stream."""
    p = hw.nthreads
    one = hw.model_copy(update={"run_threads": 1})
    frac = op.score_pairs / (op.q_len * op.kv_len)
    if op.q_len == 1:
        t_qk, _ = gemv_time(one, op.kv_len, op.head_dim, op.dtype, threads=1)
        t_pv, _ = gemv_time(one, op.head_dim, op.kv_len, op.dtype, threads=1)
    else:
        t_qk, _ = gemm_time(one, op.q_len, op.kv_len, op.head_dim, op.dtype, threads=1)
        t_pv, _ = gemm_time(one, op.q_len, op.head_dim, op.kv_len, op.dtype, threads=1)
    scores = op.q_len * op.kv_len * frac
    t_sm, _ = elementwise_time(one, Elementwise("softmax", max(1, int(scores)), op.dtype), 1)
    pairs = op.batch * op.heads
    waves = math.ceil(pairs / p)
    # one batched call covers all pairs: no per-pair call overhead
    t_pair = max(0.0, (t_qk + t_pv) * frac + t_sm - 3 * overhead_s(one, 1))
    # the K/V stream is shared by all threads: not faster than the memory system allows
    t_kv = first_touch_time(hw, op.kv_bytes, op.kv_bytes, min(p, pairs))
    t = overhead_s(hw, min(p, pairs)) + max(waves * t_pair, t_kv)
    return t, {"threads": min(p, pairs), "bound": "memory" if t_kv >= waves * t_pair else
               "compute"}  # fmt: skip


def pool_time(hw: CpuConfig, op: Pool2d) -> tuple[float, dict]:
    p = max(1, min(hw.nthreads, op.batch * op.c))
    t_m = stream_time(hw, op.min_bytes, op.min_bytes, p)
    lanes = hw.simd_bits / (8 * dtype_bytes(op.dtype))
    t_c = op.flops / (lanes * hw.vector_alu_per_cycle * hw.frequency_ghz * 1e9 * p)
    return overhead_s(hw, p) + max(t_m, t_c), {"threads": p}


# --------------------------------------------------------------------------- model
class CpuModel(DeviceModel):
    """Cache-blocking CPU model; ops it has no rule for fall back to the roofline."""

    name = "cpu"
    kinds = ("cpu",)

    def _estimate(self, op: Op) -> Cost:
        hw: CpuConfig = self.hw
        fp = footprint(op)
        nbytes = op.min_bytes
        if isinstance(op, Gemm):  # Gemv is a Gemm subclass
            if min(op.m, op.n) == 1 or isinstance(op, Gemv) and op.m <= 4:
                rows, cols = (op.n, op.k) if op.m <= op.n else (op.m, op.k)
                t, d = gemv_time(hw, rows, cols, op.dtype, vectors=min(op.m, op.n))
            else:
                t, d = gemm_time(hw, op.m, op.n, op.k, op.dtype)
            t *= op.batch
        elif isinstance(op, Conv2d):
            algos = CPU_CONV_ALGOS if op.algo in ("auto", "implicit_gemm") else (op.algo,)
            best = min(((conv_time(hw, op, a), a) for a in algos), key=lambda x: x[0][0])
            (t, d), algo = best
            fp = conv_footprint(op, algo)
            d = {**d, "bound": "compute"}
        elif isinstance(op, Elementwise):
            t, d = elementwise_time(hw, op)
        elif isinstance(op, SpMM):
            t, d = spmm_time(hw, op)
        elif isinstance(op, LutGemm):
            t, d = lut_time(hw, op)
        elif isinstance(op, Attention):
            t, d = attention_time(hw, op)
        elif isinstance(op, Pool2d):
            t, d = pool_time(hw, op)
            d["bound"] = "memory"
        else:
            c = Roofline(hw).estimate(op)
            return Cost(
                c.latency_s,
                c.flops,
                c.bytes,
                c.footprint_bytes,
                c.bound,
                self.name,
                detail=(("fallback", "roofline"),),
            )
        bound = str(d.pop("bound", "compute"))
        detail = tuple((k, v) for k, v in d.items() if k not in ("t_compute_s", "t_mem_s"))
        return Cost(
            latency_s=t,
            flops=op.flops,
            bytes=nbytes,
            footprint_bytes=fp,
            bound=bound,
            model=self.name,
            detail=detail,
        )


register_device(CpuModel)
