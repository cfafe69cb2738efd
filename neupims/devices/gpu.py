"""GPU model: tensor-core GEMM tiles and waves, the memory hierarchy, attention kernels,
element-wise kernels and convolution algorithms.

Not a roofline alone. A GEMM is costed the way cuBLAS/CUTLASS run it:

* the library picks a CTA tile (``GpuConfig.gemm_tiles``); the tile pads M and N up to
  whole tiles, so the MMA work is that of the padded problem;
* CTAs run in waves over the SMs (``ceil(ctas / (SMs x CTAs-per-SM))``: a problem of 133
  tiles on 132 SMs takes two waves); CTAs-per-SM follow from the tile's shared memory;
* flat problems (fewer tiles than SMs) split K across CTAs (split-K), paying a partial-sum
  write and read;
* each CTA's main loop reaches a fraction of the SM's peak that grows with the tile
  (``tile_eff = tm*tn / (tm*tn + tile_alpha*(tm + tn))``: operand loads per MMA);
* DRAM traffic is the compulsory traffic (operands re-read by other tiles hit L2, as
  with swizzled rasterisation) at an achieved fraction of the bandwidth; L2-to-SM traffic
  (each tile reads its A and B panels) is bounded by the L2 bandwidth;
* time = max(compute, DRAM, L2) + a fixed per-kernel time; the tile with the least time
  is the one the library's heuristic is assumed to choose.

Attention is FlashAttention-style for prefill (CTAs of 128 queries, causal imbalance,
waves) and flash-decoding-style for decode (KV streamed once; a serial per-token latency
along each CTA's KV range). Element-wise kernels stream their bytes. Convolutions are in
:mod:`neupims.devices.gpu_conv` (a registry of algorithms).

Every efficiency constant is named in the config's ``efficiency`` mapping, whose keys are
checked against :data:`neupims.config.hw_gpu.EFFICIENCY_KEYS` (meaning and starting value of
each); ``neupims calibrate`` fits them to measurements.
Units: seconds, bytes, FLOPs (2 per multiply-add).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from neupims.config.hw_gpu import EFFICIENCY_KEYS
from neupims.devices import load_models
from neupims.devices.base import Cost, DeviceModel, StepCost, footprint_bytes, register_device
from neupims.ops import (
    ELEMENTWISE_KINDS,
    Attention,
    Elementwise,
    Gemm,
    Op,
    Pool2d,
    QuantGemm,
    dtype_bytes,
)

#: Starting values of the named efficiency constants (the schema's documented defaults,
#: replaced per config by ``neupims calibrate``; see :data:`neupims.config.hw_gpu.EFFICIENCY_KEYS`).
DEFAULTS: dict[str, float] = {k: v for k, (_, v) in EFFICIENCY_KEYS.items()}

#: Row-wise element-wise kinds (one CTA reduces a row): extra fixed latency.
ROWWISE = frozenset({"layernorm", "rmsnorm", "softmax"})

#: Decode attention: queries per (batch, head) at or below this use the streaming path.
DECODE_MAX_Q = 16

#: Flash attention block sizes (FlashAttention-2 forward on SM80/SM90: 128 x 128 for
#: head_dim 128; Dao, FlashAttention-2, 2023, section 3.3).
ATTN_BLOCK_Q = 128

#: Software pipeline depth of the GEMM main loop (CUTLASS SM90 default: 4+ stages) and
#: the K-step per stage: 64 elements of 16-bit operands = 128 B rows.
GEMM_STAGES = 4
GEMM_TILE_K_BYTES = 128

#: FlashDecoding++ flat-GEMM tiles: M padded to 8 (MMA granularity), N tiles of 64..256.
FLAT_TILES = ((8, 64), (8, 128), (8, 256))


@dataclass(frozen=True)
class GemmPlan:
    latency_s: float
    tile: tuple[int, int]
    split_k: int
    waves: int
    ctas: int
    t_compute: float
    t_dram: float
    t_l2: float
    dram_bytes: float
    useful_fraction: float  # real MMA work / padded MMA work

    @property
    def bound(self) -> str:
        parts = {"compute": self.t_compute, "memory": self.t_dram, "l2": self.t_l2}
        return max(parts, key=parts.get)


class GpuModel(DeviceModel):
    name = "gpu"
    kinds = ("gpu",)

    def __init__(self, hw):
        super().__init__(hw)
        load_models()  # kernel modules register their op costs (GPU_OP_COSTS)
        self.eff = {**DEFAULTS, "launch_us": hw.launch_overhead_us, **hw.efficiency}
        self.bw = hw.hbm_bandwidth_gbps * 1e9
        self.l2_bw = hw.l2_bandwidth_gbps * 1e9

    def variant(self, **updates) -> GpuModel:
        """This model with config fields replaced (``conv_fp32_math``, ``conv_algo_choice``,
        ...) and the same efficiency constants; one instance per distinct update."""
        if not updates:
            return self
        key = tuple(sorted(updates.items()))
        cache = self.__dict__.setdefault("_variants", {})
        if key not in cache:
            cache[key] = type(self)(self.hw.model_copy(update=updates))
        return cache[key]

    # ------------------------------------------------------------------ peaks
    def math_of(self, dtype: str, *, conv: bool = False) -> tuple[str, float]:
        """(unit, peak FLOP/s) for operands of ``dtype``: ``tensor`` or ``simt``."""
        hw = self.hw
        if dtype == "fp32":
            mode = hw.conv_fp32_math if conv else hw.matmul_fp32_math
            if mode == "tf32" and "tf32" in hw.tensor_tflops:
                return "tensor", hw.tensor_tflops["tf32"] * 1e12
            return "simt", hw.cuda_core_tflops["fp32"] * 1e12
        if dtype in hw.tensor_tflops:
            return "tensor", hw.tensor_tflops[dtype] * 1e12
        return "simt", hw.peak_flops(dtype)

    def tile_eff(self, tm: int, tn: int, alpha: float | None = None) -> float:
        a = self.eff["tile_alpha"] if alpha is None else alpha
        return tm * tn / (tm * tn + a * (tm + tn))

    # ------------------------------------------------------------------ GEMM
    def gemm_plan(
        self,
        m: int,
        n: int,
        k: int,
        batch: int,
        dtype: str,
        *,
        unit: str | None = None,
        peak: float | None = None,
        eff_scale: float = 1.0,
        extra_bytes: float = 0.0,
        tiles: tuple[tuple[int, int], ...] | None = None,
        weight_bytes: float | None = None,
        a_dram_bytes: float | None = None,
        stream_k: bool = True,
        tile_alpha: float | None = None,
        split_k: bool = True,
        dram_eff: float | None = None,
    ) -> GemmPlan:
        """Best tile plan for ``batch`` GEMMs C[m,n] = A[m,k] B[k,n] of ``dtype``.

        ``unit``/``peak`` override the math unit (convolutions use TF32 for fp32);
        ``eff_scale`` scales the main-loop efficiency (implicit-GEMM gathers);
        ``extra_bytes`` adds DRAM traffic (layout transforms, workspaces);
        ``weight_bytes`` replaces the B-operand bytes (quantised weights);
        ``a_dram_bytes`` replaces the A operand's DRAM bytes (an implicit GEMM gathers its
        virtual A from a smaller tensor; its L2-to-SM panel traffic is unchanged);
        ``stream_k`` lets a partial last wave be spread over all SMs (stream-K);
        ``tile_alpha`` replaces ``tile_alpha`` in the tile efficiency (CUDA-core kernels,
        whose operand loads per FMA matter more than on tensor cores);
        ``split_k`` False keeps every CTA's whole K loop (kernels that never split K);
        ``dram_eff`` replaces the achieved fraction of HBM bandwidth.
        """
        hw, e = self.hw, self.eff
        if unit is None:
            unit, peak = self.math_of(dtype)
        b = dtype_bytes(dtype)
        sms = hw.sms
        base_eff = (e["tc_eff"] if unit == "tensor" else e["simt_eff"]) * eff_scale
        rate_sm = peak / sms * base_eff
        a_bytes = m * k * b
        b_bytes = k * n * b if weight_bytes is None else weight_bytes
        c_bytes = m * n * b
        cands = tiles or hw.gemm_tiles
        if tiles is None and hw.flat_gemm and unit == "tensor":
            cands = (*cands, *FLAT_TILES)
        tile_k = max(8, int(GEMM_TILE_K_BYTES / b))
        best: GemmPlan | None = None
        for tm, tn in cands:
            n_tiles = math.ceil(m / tm) * math.ceil(n / tn) * batch
            smem = GEMM_STAGES * (tm + tn) * tile_k * b
            per_sm = max(1, min(4, int(hw.smem_per_sm_bytes // smem)))
            slots = sms * per_sm
            split = 1
            # FlashDecoding++'s flat GEMM runs its K tiles in sequence inside a block
            if split_k and n_tiles < slots and (tm, tn) not in FLAT_TILES:
                split = max(1, min(slots // n_tiles, math.ceil(k / (4 * tile_k))))
            ctas = n_tiles * split
            waves = math.ceil(ctas / slots)
            k_cta = math.ceil(math.ceil(k / split) / tile_k) * tile_k
            cta_flops = 2.0 * tm * tn * k_cta
            t_cta = cta_flops / (rate_sm * self.tile_eff(tm, tn, tile_alpha) / per_sm)
            t_compute = waves * t_cta
            if stream_k and waves > 1 and ctas % slots:
                # stream-K (Hopper cuBLAS/CUTLASS): the last, partial wave's work is spread
                # over all SMs, paying a fix-up (partial tiles reduced) per tile
                t_compute = min(t_compute, ctas / slots * t_cta * (1 + e["streamk_fixup"]))
            partial = (split - 1) * 2.0 * m * n * 4 * batch if split > 1 else 0.0
            a_dram = a_bytes if a_dram_bytes is None else a_dram_bytes
            dram = batch * (a_dram + b_bytes + c_bytes) + partial + extra_bytes
            t_dram = dram / ((e["dram_eff"] if dram_eff is None else dram_eff) * self.bw)
            l2 = batch * (a_bytes * math.ceil(n / tn) + b_bytes * math.ceil(m / tm))
            t_l2 = l2 / e["l2_multicast"] / self.l2_bw
            t = max(t_compute, t_dram, t_l2)
            useful = (m * n * k * batch) / (n_tiles * tm * tn * k_cta * split)
            # among (near) ties, the tile that wastes the least MMA work (a heuristic
            # that pads less also draws less power)
            if (best is None or t < best.latency_s * 0.995
                    or (t <= best.latency_s * 1.005 and useful > best.useful_fraction)):  # fmt: skip
                best = GemmPlan(t, (tm, tn), split, waves, ctas, t_compute, t_dram, t_l2,
                                dram, useful)  # fmt: skip
        assert best is not None
        return dataclasses.replace(best, latency_s=best.latency_s + e["gemm_fixed_us"] * 1e-6)

    def _gemm(self, op: Gemm) -> Cost:
        p = self.gemm_plan(op.m, op.n, op.k, op.batch, op.dtype)
        return Cost(
            latency_s=p.latency_s,
            flops=op.flops,
            bytes=p.dram_bytes,
            footprint_bytes=float(op.min_bytes),
            bound=p.bound,
            model=self.name,
            detail=(
                ("tile", f"{p.tile[0]}x{p.tile[1]}"),
                ("split_k", p.split_k),
                ("waves", p.waves),
                ("ctas", p.ctas),
                ("useful_mma_fraction", round(p.useful_fraction, 4)),
                ("achieved_tflops", op.flops / p.latency_s / 1e12),
            ),
        )

    def _quant_gemm(self, op: QuantGemm) -> Cost:
        """Weight-only quantised GEMM: weights stream at wbits (+ one fp16 scale per group)
        and are dequantised in registers before 16-bit MMA (FineQuant,
        docs/sources/kernels.md §3)."""
        e = self.eff
        _, peak = self.math_of(op.dtype)
        b = dtype_bytes(op.dtype)
        dram = op.weight_bytes + (op.m * op.k + op.m * op.n) * b
        t_mem = dram / (e["dram_eff"] * self.bw)
        t_compute = op.flops / (peak * e["quant_tc_eff"])
        t = max(t_mem, t_compute) + e["quant_fixed_us"] * 1e-6
        return Cost(
            latency_s=t,
            flops=op.flops,
            bytes=dram,
            footprint_bytes=float(op.min_bytes),
            bound="memory" if t_mem >= t_compute else "compute",
            model=self.name,
            detail=(
                ("speedup_vs_fp16_bytes", (op.n * op.k * b) / op.weight_bytes),
                ("achieved_tflops", op.flops / t / 1e12),
            ),
        )

    # ------------------------------------------------------------------ attention
    def _attention(self, op: Attention) -> Cost:
        e = self.eff
        b = dtype_bytes(op.dtype)
        kv = op.kv_bytes
        qo = 2.0 * op.batch * op.heads * op.q_len * op.head_dim * b
        dram = kv + qo
        if op.q_len <= DECODE_MAX_Q:
            t_mem = dram / (e["attn_dram_eff"] * self.bw)
            t_serial = op.kv_len * e["attn_token_ns"] * 1e-9
            t = e["attn_fixed_us"] * 1e-6 + t_mem + t_serial
            path, bound = "flash_decoding", "memory"
        else:
            _, peak = self.math_of(op.dtype)
            rate_sm = peak / self.hw.sms * e["attn_tc_eff"]
            q_blocks = math.ceil(op.q_len / ATTN_BLOCK_Q)
            ctas = op.batch * op.heads * q_blocks
            # the longest CTA: the last query block sees every key (causal) or all keys
            longest = 4.0 * op.head_dim * ATTN_BLOCK_Q * op.kv_len
            total = op.flops
            t_compute = max(total / (min(ctas, self.hw.sms) * rate_sm), longest / rate_sm)
            t_mem = dram / (e["dram_eff"] * self.bw)
            t = e["attn_fixed_us"] * 1e-6 + max(t_compute, t_mem)
            path = "flash_attention"
            bound = "compute" if t_compute >= t_mem else "memory"
        return Cost(
            latency_s=t,
            flops=op.flops,
            bytes=dram,
            footprint_bytes=float(op.min_bytes),
            bound=bound,
            model=self.name,
            detail=(("kernel", path), ("achieved_tflops", op.flops / t / 1e12)),
        )

    # ------------------------------------------------------------------ element-wise
    def stream_time(self, nbytes: float, *, bw_eff: float | None = None) -> float:
        """A streaming (copy-like) kernel moving ``nbytes`` through HBM."""
        eff = self.eff["ew_bw_eff"] if bw_eff is None else bw_eff
        return self.eff["ew_fixed_us"] * 1e-6 + nbytes / (eff * self.bw)

    def _elementwise(self, op: Elementwise) -> Cost:
        e = self.eff
        bw_eff = e.get(f"ew_bw_eff_{op.kind}", e["ew_bw_eff"])
        t = self.stream_time(op.min_bytes, bw_eff=bw_eff)
        if op.kind in ROWWISE:
            t += e["ew_rowwise_fixed_us"] * 1e-6
        return Cost(
            latency_s=t,
            flops=op.flops,
            bytes=float(op.min_bytes),
            footprint_bytes=float(op.min_bytes),
            bound="memory",
            model=self.name,
            detail=(("achieved_gbps", op.min_bytes / t / 1e9),),
        )

    def _pool(self, op: Pool2d) -> Cost:
        t = self.stream_time(op.min_bytes)
        return Cost(t, op.flops, float(op.min_bytes), float(op.min_bytes), "memory", self.name)

    # ------------------------------------------------------------------ whole steps
    dispatch_modes = ("eager", "graph")

    def in_stream_s(self, cost: Cost) -> float:
        """An op's time when the GPU runs it right after another kernel of the same stream:
        its isolated latency less ``stream_overlap_us`` of fixed time (launch latency and
        prologue overlap the previous kernel's tail, which isolated timings cannot show),
        never below half of it; compute-bound ops ``sustained_slowdown`` times slower (a
        whole step of tensor-core load holds the GPU at its power limit, lowering its clock)."""
        t = cost.latency_s * (self.eff["sustained_slowdown"] if cost.bound == "compute" else 1.0)
        return max(t - self.eff["stream_overlap_us"] * 1e-6, 0.5 * t)

    def step(self, ops, dispatch: str | None = None) -> StepCost:
        """A step's ops on one stream. ``graph``: launched from a captured CUDA graph, so the
        GPU runs them back to back (the sum of :meth:`in_stream_s`). ``eager`` (plain
        PyTorch, the default): the host dispatches one op every ``host_op_us`` while the
        GPU runs them, so the step takes whichever is longer, the host's dispatch or the GPU's
        work."""
        mode = self.check_dispatch(dispatch)
        costs = [self.estimate(op) for op in ops]
        busy = float(sum(self.in_stream_s(c) for c in costs))
        host = len(costs) * self.eff["host_op_us"] * 1e-6 if mode == "eager" else 0.0
        return StepCost(
            latency_s=max(busy, host),
            dispatch=mode,
            busy_s=busy,
            host_s=host,
            isolated_s=float(sum(c.latency_s for c in costs)),
            ops=len(costs),
            flops=float(sum(c.flops for c in costs)),
            bytes=float(sum(c.bytes for c in costs)),
            peak_footprint_bytes=footprint_bytes(ops),
            model=self.name,
        )

    # ------------------------------------------------------------------ dispatch
    def _estimate(self, op: Op) -> Cost:
        for cls in type(op).__mro__:  # a subclass (Gemv) is costed as its base (Gemm)
            fn = GPU_OP_COSTS.get(cls)
            if fn is not None:
                return fn(self, op)
        # ops without a GPU kernel model (SpMM, LUT GEMM): a roofline at the achieved
        # fractions, labelled as such in ``bound``
        unit, peak = self.math_of(getattr(op, "dtype", "fp16"))
        eff = self.eff["tc_eff"] if unit == "tensor" else self.eff["simt_eff"]
        t_c = op.flops / (peak * eff)
        t_m = op.min_bytes / (self.eff["dram_eff"] * self.bw)
        t = max(t_c, t_m) + self.eff["launch_us"] * 1e-6
        bound = "compute" if t_c >= t_m else "memory"
        return Cost(t, op.flops, float(op.min_bytes), float(op.min_bytes), bound, self.name)


#: op class -> its GPU cost function ``fn(model, op) -> Cost``. A kernel model in another
#: module registers itself with :func:`register_gpu_op` (and that module is listed in
#: ``neupims.devices.MODEL_MODULES``), so a new op never touches this file.
GPU_OP_COSTS: dict[type, Callable[[GpuModel, Op], Cost]] = {}


def register_gpu_op(op_cls: type):
    """Decorator: ``fn(model, op) -> Cost`` costs ops of ``op_cls`` on :class:`GpuModel`."""

    def deco(fn: Callable[[GpuModel, Op], Cost]) -> Callable[[GpuModel, Op], Cost]:
        GPU_OP_COSTS[op_cls] = fn
        return fn

    return deco


register_gpu_op(Gemm)(GpuModel._gemm)
register_gpu_op(Attention)(GpuModel._attention)
register_gpu_op(Elementwise)(GpuModel._elementwise)
register_gpu_op(QuantGemm)(GpuModel._quant_gemm)
register_gpu_op(Pool2d)(GpuModel._pool)

assert set(ROWWISE) <= set(ELEMENTWISE_KINDS)

register_device(GpuModel)
