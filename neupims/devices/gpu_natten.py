"""Neighborhood attention (NA) on the GPU model: NATTEN's three kernel families.

Sources: Hassani, Hwu, Shi, "Faster Neighborhood Attention", arXiv 2403.04690 (NeurIPS
2024), and the NATTEN repository (SHI-Labs/NATTEN, MIT); restated in
docs/sources/kernels.md section 6 and discussed in docs/kernels.md. Units: seconds, bytes,
FLOPs (2 per multiply-add), cycles of the SM clock.

An NA problem is B*h independent grids of T = prod(dims) tokens; each query attends to
V = prod(kernel) keys. A dilation of r on an axis splits it into r interleaved sub-grids,
each an NA problem with the same kernel, so every count below works per sub-grid.

``naive``: NATTEN's original CUDA-core kernels, three launches.

* QK ("PN"): one thread per (query, neighbour) weight, a loop over the head dimension
  with two scalar loads per multiply-add (``NATTEN csrc/include/natten/cuda/naive/
  pointwise_neighborhood_1d.cuh``: threads of a warp are consecutive queries, so each
  load of the warp touches 32 rows ``head_dim`` elements apart). L1 serves such a load
  one 128-byte line per clock: 32 clocks for 32 distinct lines; 16-bit kernels load
  ``half2`` pairs. 2-D problems with head_dim 32 and kernel 3..13
  use NATTEN's shared-memory "tiled" QK kernels instead (``naive/tiled/base.cuh``): their
  operands come from shared memory, and the two loads per multiply-add are bound by the
  load/store units (``LSU_LANES`` per SM: one warp-wide load per clock).
* softmax over the B*h*T*V attention tensor (PyTorch, read + write).
* AV ("NN"): one thread per (query, channel) output, a loop over the V neighbours: a
  weight (the same for the queries' threads) and a coalesced value row per multiply-add
  (``neighborhood_neighborhood_1d.cuh``); bound by the load/store units.

Each launch takes max(its L1/LSU time, its DRAM time) + ``ew_fixed_us``. The QK bound is
physics alone (checked on the H200: validation/kernels); the AV loop reaches
``na_naive_av_eff`` of its bound, fitted there (validation/kernels/fit.py).

``gemm``: NATTEN's GEMM-based kernels (paper section 3.1, Fig. 3): a CTA owns a query tile
laid out in space (1-D: 128 queries; 2-D: 8x8, 11x11 beyond kernel 13) and computes its
dot products against the haloed key tile (query tile + kernel - 1 per axis) as a dense
tensor-core GEMM (:meth:`GpuModel.gemm_plan`, with the CTA tiles of NATTEN's SM80
instances: ``scripts/autogen_cuda_gemm_{1d,2d}.py``), then scatters the valid weights into
the B*h*T*V attention tensor with one-element (alignment 1) stores; AV gathers them back
one element at a time into a GEMM against the haloed value tile. The element-wise
scatter/gather runs at ``gather_gelems`` (the measured rate of a strided element gather,
docs/gpu.md). FP32 runs on TF32 tensor cores (NATTEN enables TF32 for its GEMM kernels by
default: ``kEnableGemmTF32``, ``tools/profile_1d.py --disable-tf32``). The softmax between
them is the same PyTorch kernel as in ``naive``.

``fused``: fused neighborhood attention (FNA, paper section 3.2, Fig. 4): FlashAttention-
style CTAs of 64 queries (1-D 64, 2-D 8x8, 3-D 4x4x4) iterate over the haloed key/value
region in KV tiles of the same shape; both GEMMs run on tensor cores at ``attn_tc_eff``
(FP32 as 3xTF32, ``OpMultiplyAddFastF32`` in NATTEN's ``fna/gemm_kernel_utils.h``: a
third of the TF32 rate); the attention weights never leave the SM, so DRAM sees Q, K, V
and O once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from neupims.devices.base import Cost
from neupims.devices.gpu import GpuModel, register_gpu_op
from neupims.ops import NeighborhoodAttention, dtype_bytes

#: L1 data path per SM per clock. 128 B/clk is the Volta SM's theoretical L1 bandwidth
#: (Jia et al., "Dissecting the NVIDIA Volta GPU Architecture via Microbenchmarking",
#: 2018); assumed unchanged on Ampere/Hopper, whose whitepapers give L1 sizes only.
L1_BYTES_PER_CLK = 128
#: Bytes per L1/L2 sector (CUDA C++ Best Practices Guide, "Coalesced Access to Global Memory").
SECTOR_BYTES = 32
#: Load/store lanes per SM: 4 processing blocks x 8 LD/ST units (NVIDIA A100 whitepaper,
#: GA100 SM diagram; the same on H100), i.e. one warp-wide load or store per clock.
LSU_LANES = 32
WARP = 32

#: NATTEN's naive 2-D QK kernels with a shared-memory ("tiled") variant: kernel sizes and
#: head dim (NATTEN csrc/include/natten/cuda/naive/tiled/base.cuh).
TILED_KERNELS = frozenset({3, 5, 7, 9, 11, 13})
TILED_HEAD_DIM = 32

#: FNA query / KV tile, tokens per axis by spatial rank (64 tokens per CTA, the xFormers
#: FMHA forward tile on SM80 that FNA extends).
FUSED_TILE = {1: (64,), 2: (8, 8), 3: (4, 4, 4)}


@dataclass(frozen=True)
class Tiling:
    """Space-aware tiling of one (batch, head) NA problem."""

    tiles: int  # query tiles per (batch, head), over all dilation sub-grids
    queries: int  # queries in a (full) tile
    halo: int  # keys of the haloed key tile of a (full) tile
    halo_axes: tuple[int, ...]  # haloed extent per axis


def tiling(op: NeighborhoodAttention, q_tile: tuple[int, ...]) -> Tiling:
    """Tile each dilation sub-grid with ``q_tile`` queries per axis; the key tile is the
    query tile widened by kernel - 1 per axis (its halo), clipped to the sub-grid."""
    tiles, queries, halo, axes = 1, 1, 1, []
    for n, k, dil, t in zip(op.spatial, op.window, op.dilations, q_tile, strict=True):
        sub = math.ceil(n / dil)  # tokens per sub-grid along this axis
        q = min(t, sub)
        tiles *= dil * math.ceil(sub / q)
        h = min(q + k - 1, sub)
        queries *= q
        halo *= h
        axes.append(h)
    return Tiling(tiles, queries, halo, tuple(axes))


def sm_clock_rate(model: GpuModel) -> float:
    """SM-clocks per second over the whole GPU."""
    return model.hw.sms * model.hw.boost_clock_mhz * 1e6


def warp_load_wavefronts(stride_bytes: float, width_bytes: float) -> float:
    """L1 clocks one warp-wide load takes when its 32 threads read ``width_bytes`` each,
    ``stride_bytes`` apart: one wavefront per distinct 128-byte line it touches (a line's
    tag is looked up once per clock), and at least its bytes / ``L1_BYTES_PER_CLK``.
    Measured on the H200 (validation/kernels): a strided QK load with 32 distinct lines
    takes 32 clocks, not the 8 that its 32 sectors' bytes alone would need."""
    span = (WARP - 1) * stride_bytes + width_bytes
    lines = min(float(WARP), max(1.0, math.ceil(span / L1_BYTES_PER_CLK)))
    sectors = min(float(WARP), max(1.0, math.ceil(span / SECTOR_BYTES)))
    return max(lines, sectors * SECTOR_BYTES / L1_BYTES_PER_CLK)


@dataclass(frozen=True)
class NaiveKernel:
    """One naive launch: SM-clocks of its L1/LSU-bound loop summed over the SMs, the
    fraction of that bound it reaches, and the DRAM bytes it moves."""

    cycles: float
    eff: float
    dram_bytes: float
    variant: str = ""

    def time(self, model: GpuModel) -> float:
        e = model.eff
        t_loop = self.cycles / (sm_clock_rate(model) * self.eff)
        t_mem = self.dram_bytes / (e["dram_eff"] * model.bw)
        return max(t_loop, t_mem) + e["ew_fixed_us"] * 1e-6


def naive_qk(model: GpuModel, op: NeighborhoodAttention) -> NaiveKernel:
    """NATTEN's naive QK kernel: one thread per (query, neighbour), a head-dim loop with two
    scalar (16-bit: pair) loads per multiply-add. Untiled, consecutive threads read rows
    ``head_dim`` elements apart (one L1 wavefront per line: :func:`warp_load_wavefronts`);
    the 2-D tiled variant reads shared memory, bound by the load/store units."""
    b = dtype_bytes(op.dtype)
    vec = 2 if b == 2 else 1  # half2 / bfloat162 loads in 16-bit kernels
    steps = math.ceil(op.head_dim / vec)
    warps = math.ceil(op.attn_elems / WARP)
    lsu = 2.0 * WARP / LSU_LANES  # two warp-wide loads per multiply-add step
    x = op.batch * op.heads * op.tokens * op.head_dim * b
    dram = 2 * x + op.attn_elems * b
    tiled = (
        op.rank == 2
        and op.head_dim == TILED_HEAD_DIM
        and all(k in TILED_KERNELS for k in op.window)
        and len(set(op.window)) == 1
    )
    if tiled:
        return NaiveKernel(warps * steps * lsu, 1.0, dram, "tiled")
    l1 = 2.0 * warp_load_wavefronts(op.head_dim * b, vec * b)
    return NaiveKernel(warps * steps * max(l1, lsu), 1.0, dram, "strided")


def naive_av(model: GpuModel, op: NeighborhoodAttention) -> NaiveKernel:
    """NATTEN's naive AV kernel: one thread per (query, channel or channel pair), a loop
    over the V neighbours loading a weight (shared by the query's threads) and a coalesced
    value row segment per multiply-add; bound by the load/store units, reached at
    ``na_naive_av_eff`` (value rows re-read by neighbouring queries partly miss L1)."""
    b = dtype_bytes(op.dtype)
    vec = 2 if b == 2 else 1
    lanes = math.ceil(op.head_dim / vec)  # threads per query
    threads = op.batch * op.heads * op.tokens * lanes
    warps = math.ceil(threads / WARP)
    queries_per_warp = min(float(WARP), max(1.0, WARP / lanes))
    # the warp's queries read element j of their weight rows, V elements apart
    span = (queries_per_warp - 1) * op.neighbours * b + b
    weights = min(queries_per_warp, max(1.0, math.ceil(span / L1_BYTES_PER_CLK)))
    values = warp_load_wavefronts(vec * b, vec * b)
    lsu = 2.0 * WARP / LSU_LANES
    x = op.batch * op.heads * op.tokens * op.head_dim * b
    dram = 2 * x + op.attn_elems * b
    cycles = warps * op.neighbours * max(weights + values, lsu)
    return NaiveKernel(cycles, model.eff["na_naive_av_eff"], dram)


def softmax_time(model: GpuModel, op: NeighborhoodAttention) -> float:
    e = model.eff
    attn = op.attn_elems * dtype_bytes(op.dtype)
    return (
        model.stream_time(2 * attn, bw_eff=e["ew_bw_eff_softmax"]) + e["ew_rowwise_fixed_us"] * 1e-6
    )


def _qkvo_bytes(op: NeighborhoodAttention) -> float:
    """Bytes of one of Q, K, V, O."""
    return op.batch * op.heads * op.tokens * op.head_dim * dtype_bytes(op.dtype)


def _naive(model: GpuModel, op: NeighborhoodAttention) -> tuple[float, float, dict]:
    qk, av = naive_qk(model, op), naive_av(model, op)
    t_qk, t_av = qk.time(model), av.time(model)
    t_sm = softmax_time(model, op)
    dram = qk.dram_bytes + 2 * op.attn_elems * dtype_bytes(op.dtype) + av.dram_bytes
    return (
        t_qk + t_sm + t_av,
        dram,
        {
            "qk_kernel": qk.variant,
            "qk_s": t_qk,
            "softmax_s": t_sm,
            "av_s": t_av,
        },
    )


def gemm_tiles(
    op: NeighborhoodAttention,
) -> tuple[tuple[int, ...], tuple[int, int], tuple[int, int]]:
    """(query tile per axis, QK CTA tile, AV CTA tile) of NATTEN's SM80 GEMM kernels
    (``scripts/autogen_cuda_gemm_1d.py``, ``autogen_cuda_gemm_2d.py``): QK 128x128 in 1-D,
    64x64 in 2-D up to kernel 13 and 128x128 beyond; AV 64x32 (FP32/FP64) or 64x64 (16-bit)."""
    b = dtype_bytes(op.dtype)
    av = (64, 64) if b == 2 else (64, 32)
    if op.rank == 1:
        return (128,), (128, 128), av
    if max(op.window) <= 13:
        return (8, 8), (64, 64), av
    return (11, 11), (128, 128), av


def _gemm(model: GpuModel, op: NeighborhoodAttention) -> tuple[float, float, dict]:
    e = model.eff
    if op.dtype == "fp32" and "tf32" in model.hw.tensor_tflops:
        unit, peak = "tensor", model.hw.tensor_tflops["tf32"] * 1e12
    else:
        unit, peak = model.math_of(op.dtype)
    q_tile, qk_cta, av_cta = gemm_tiles(op)
    til = tiling(op, q_tile)
    n_tiles = op.batch * op.heads * til.tiles
    d = op.head_dim
    attn = op.attn_elems * dtype_bytes(op.dtype)
    x = _qkvo_bytes(op)
    bw = e["dram_eff"] * model.bw
    t_elem = op.attn_elems / (e["gather_gelems"] * 1e9)  # one-element scatter / gather
    fixed = e["gemm_fixed_us"] * 1e-6
    qk = model.gemm_plan(til.queries, til.halo, d, n_tiles, op.dtype, unit=unit, peak=peak,
                         tiles=(qk_cta,))  # fmt: skip
    t_qk = max(qk.t_compute, qk.t_l2, (2 * x + attn) / bw, t_elem) + fixed
    t_sm = softmax_time(model, op)
    av = model.gemm_plan(til.queries, d, til.halo, n_tiles, op.dtype, unit=unit, peak=peak,
                         tiles=(av_cta,))  # fmt: skip
    t_av = max(av.t_compute, av.t_l2, (2 * x + attn) / bw, t_elem) + fixed
    mma_flops = 2.0 * n_tiles * 2 * til.queries * til.halo * d
    return (
        t_qk + t_sm + t_av,
        4 * x + 4 * attn,
        {
            "qk_s": t_qk,
            "softmax_s": t_sm,
            "av_s": t_av,
            "query_tile": "x".join(map(str, q_tile)),
            "halo_keys": til.halo,
            "useful_mma_fraction": op.flops / mma_flops,
            "scatter_s": t_elem,
        },
    )


def _fused(model: GpuModel, op: NeighborhoodAttention) -> tuple[float, float, dict]:
    e = model.eff
    hw = model.hw
    if op.dtype == "fp32" and "tf32" in hw.tensor_tflops:
        peak = hw.tensor_tflops["tf32"] * 1e12 / 3  # 3xTF32 (OpMultiplyAddFastF32)
    else:
        _, peak = model.math_of(op.dtype)
    tile = FUSED_TILE[op.rank]
    til = tiling(op, tile)
    kv_tiles = math.prod(math.ceil(h / t) for h, t in zip(til.halo_axes, tile, strict=True))
    tile_tokens = math.prod(tile)
    ctas = op.batch * op.heads * til.tiles
    # both GEMMs over every KV tile the haloed region touches (masked entries included)
    cta_flops = 2 * 2.0 * tile_tokens * kv_tiles * tile_tokens * op.head_dim
    rate_sm = peak / hw.sms * e["attn_tc_eff"]
    t_compute = ctas * cta_flops / (min(ctas, hw.sms) * rate_sm)
    dram = 4 * _qkvo_bytes(op)
    t_mem = dram / (e["dram_eff"] * model.bw)
    t = e["attn_fixed_us"] * 1e-6 + max(t_compute, t_mem)
    return (
        t,
        dram,
        {
            "kv_tiles_per_query_tile": kv_tiles,
            "useful_mma_fraction": op.flops / (ctas * cta_flops),
            "bound_part": "compute" if t_compute >= t_mem else "memory",
        },
    )


ALGOS = {"naive": _naive, "gemm": _gemm, "fused": _fused}


@register_gpu_op(NeighborhoodAttention)
def neighborhood_attention(model: GpuModel, op: NeighborhoodAttention) -> Cost:
    t, dram, detail = ALGOS[op.algo](model, op)
    b = dtype_bytes(op.dtype)
    footprint = 4 * _qkvo_bytes(op)
    if op.algo != "fused":
        footprint += op.attn_elems * b  # the attention tensor lives in device memory
    bound = detail.pop("bound_part", "memory" if dram / (model.eff["dram_eff"] * model.bw) > 0.5 * t
                       else "compute")  # fmt: skip
    return Cost(
        latency_s=t,
        flops=op.flops,
        bytes=dram,
        footprint_bytes=float(footprint),
        bound=bound,
        model=model.name,
        detail=(("algo", op.algo), *detail.items(), ("achieved_tflops", op.flops / t / 1e12)),
    )
