"""Convolution algorithms on the GPU model: a registry keyed by the trace's ``algo`` name.

Each algorithm returns a :class:`ConvPlan`: time, DRAM bytes, workspace (device memory
beyond input, filter and output) and details. ``auto`` is the fastest of the algorithms
cuDNN itself offers (implicit GEMM, im2col + GEMM, direct), as ``cudnn.benchmark`` picks;
``im2win`` is not in cuDNN and is only chosen when asked for.

Layouts are NCHW, as in PyTorch and the Im2win paper (docs/sources/kernels.md §1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from neupims.devices.base import Cost
from neupims.devices.gpu import register_gpu_op
from neupims.ops import Conv2d, dtype_bytes


@dataclass(frozen=True)
class ConvPlan:
    latency_s: float
    dram_bytes: float
    workspace_bytes: float
    bound: str
    detail: tuple[tuple[str, object], ...] = ()


ConvAlgo = Callable[["object", Conv2d], ConvPlan]
CONV_ALGOS: dict[str, ConvAlgo] = {}
#: the algorithms cuDNN offers, among which ``auto`` picks the fastest
CUDNN_FAMILY = ("implicit_gemm", "im2col", "direct")


def register_conv(name: str):
    def deco(fn: ConvAlgo) -> ConvAlgo:
        CONV_ALGOS[name] = fn
        return fn

    return deco


def _io_bytes(op: Conv2d) -> tuple[float, float, float]:
    b = dtype_bytes(op.dtype)
    return op.input_elems * b, op.filter_elems * b, op.output_elems * b


def channel_align(dtype: str) -> int:
    """Channel multiple that tensor-core convolution kernels need: 8 for 16-bit operands
    (one 16-byte vector), 4 for TF32 (cuDNN developer guide, "Tensor Core requirements")."""
    return 8 if dtype_bytes(dtype) == 2 else 4


def pointwise_native(op: Conv2d) -> bool:
    """Whether cuDNN runs this convolution directly on NCHW as a GEMM, without layout
    transforms: 1x1, stride 1, no padding, and image rows H*W a whole number of 16-byte
    vectors (the B operand's contiguous dimension; 16-byte aligned rows are what vector
    and TMA loads need, CUDA C++ Programming Guide, "Tensor Memory Access"). Measured on
    the H100 (validation/h100/ops.csv, cuDNN 9.19): every 1x1 stride-1 layer with
    H*W = 3136 or 784 allocated only its output; the 7x7 (H*W = 49) ones allocated an
    NHWC workspace of input + output."""
    pointwise = op.r == 1 and op.s == 1 and op.stride == 1 and op.pad == 0
    return pointwise and (op.ho * op.wo) % channel_align(op.dtype) == 0


def cudnn_simt(model, op: Conv2d) -> ConvPlan:
    """cuDNN's CUDA-core kernel for channel counts tensor cores cannot take (3-channel
    stems), on the FP32 pipes for every dtype (measured: 3x3 and 11x11 stems run at about
    the same TFLOPS in FP16 and FP32). Each output pixel's index arithmetic amortises over
    the filter taps, so the rate is ``conv_simt_eff`` of the FP32 SIMT peak times
    R*S / (R*S + ``conv_simt_rs0``) (measured in FP32: 16, 21 and 27 TFLOPS for 3x3,
    7x7 and 11x11 stems). Stride-1 stems are read as NCHW (measured: they allocate only
    their output); strided ones are transformed to NHWC first, like the implicit GEMM
    (measured: input + output allocated; the measured set cannot tell whether stride or
    filter size > 3 decides, as every strided stem also has a 7x7 or 11x11 filter)."""
    e = model.eff
    inp, flt, out = _io_bytes(op)
    rs = op.r * op.s
    peak = model.hw.cuda_core_tflops["fp32"] * 1e12
    t_c = op.flops / (peak * e["conv_simt_eff"] * rs / (rs + e["conv_simt_rs0"]))
    dram = inp + flt + out
    t_m = dram / (e["dram_eff"] * model.bw)
    t = max(t_c, t_m) + e["gemm_fixed_us"] * 1e-6
    bound = "compute" if t_c >= t_m else "memory"
    workspace = 0.0
    if op.stride > 1:
        # strided stems go through NHWC (measured: workspace of input + output)
        workspace = inp + out
        t_layout = model.stream_time(e["conv_layout_passes"] * workspace)
        t += t_layout
        dram += e["conv_layout_passes"] * workspace
        bound = "memory" if t_layout > t - t_layout else bound
    return ConvPlan(t, dram, workspace, bound, (("kernel", "cudnn_simt"),))


@register_conv("implicit_gemm")
def implicit_gemm(model, op: Conv2d) -> ConvPlan:
    """cuDNN's convolution, as its heuristics pick the kernel family for the shape.

    * C not a multiple of ``channel_align``: the CUDA-core NCHW kernel (:func:`cudnn_simt`).
    * 1x1, stride 1, 16-byte aligned image rows (:func:`pointwise_native`): a plain GEMM
      over NCHW, [K, C] x [C, H*W] per image, batched over the images, at the GEMM's own
      efficiency; no workspace.
    * Otherwise an NHWC implicit GEMM, M = N*Ho*Wo, N = K, K = C*R*S gathered on the fly,
      at ``conv_tc_eff`` of the GEMM rate (x ``conv_tf32_scale`` for TF32). The NCHW input
      and output are transformed to and from NHWC by kernels of their own: a workspace of
      input + output (measured: cuDNN's extra memory is about that), moved
      ``conv_layout_passes`` times, before and after the convolution kernel.
    * When the GEMM plan splits K (too few output tiles to fill the SMs), the fp32
      partial sums go to a workspace and a separate kernel reduces them (measured: the
      small 7x7 and 14x14 ResNet layers allocate several output-sized fp32 buffers).
    """
    e = model.eff
    if op.c % channel_align(op.dtype):
        return cudnn_simt(model, op)
    inp, flt, out = _io_bytes(op)
    b = dtype_bytes(op.dtype)
    m, n, k_red = op.gemm_mnk
    unit, peak = model.math_of(op.dtype, conv=True)
    tf32 = e["conv_tf32_scale"] if op.dtype == "fp32" and unit == "tensor" else 1.0
    if pointwise_native(op):
        # the filter (A) is shared by the images: its DRAM bytes are counted once
        p = model.gemm_plan(op.kout, op.ho * op.wo, op.c, op.batch, op.dtype, unit=unit,
                            peak=peak, eff_scale=tf32,
                            a_dram_bytes=flt / op.batch)  # fmt: skip
        workspace, t_extra, extra_bytes, kernel = 0.0, 0.0, 0.0, "nchw_gemm"
    else:
        p = model.gemm_plan(m, n, k_red, 1, op.dtype, unit=unit, peak=peak,
                            eff_scale=e["conv_tc_eff"] * tf32, a_dram_bytes=inp)  # fmt: skip
        workspace = inp + out
        extra_bytes = e["conv_layout_passes"] * workspace
        # the layout transforms are kernels of their own, before and after the convolution
        t_extra = model.stream_time(extra_bytes)
        kernel = "nhwc_implicit_gemm"
        if p.split_k > 1:
            partials = p.split_k * m * n * 4.0
            t_extra += model.stream_time(partials + m * n * b)
            extra_bytes += partials + m * n * b
            workspace += partials
    detail = (("kernel", f"cudnn_{kernel}_{unit}"), ("tile", f"{p.tile[0]}x{p.tile[1]}"),
              ("waves", p.waves), ("split_k", p.split_k), ("extra_kernels_s", t_extra))  # fmt: skip
    bound = "memory" if t_extra > p.latency_s else p.bound
    return ConvPlan(p.latency_s + t_extra, p.dram_bytes + extra_bytes, workspace, bound,
                    detail)  # fmt: skip


#: resident threads per SM on SM80/SM90 (CUDA C++ Programming Guide, "Compute
#: Capabilities", table of technical specifications: 2048 for compute capability 8.0/9.0)
MAX_THREADS_PER_SM = 2048


def unfold_serial_time(model, op: Conv2d) -> float:
    """Latency floor of one image's unfold kernel, in seconds.

    PyTorch's CUDA im2col runs one thread per (input channel, output pixel), C*Ho*Wo
    threads per image, and each thread walks the R*S filter taps in sequence, one load
    and one store per tap. With few channels (3-channel stems) the kernel cannot fill
    the GPU, so the taps' latency is not hidden: the time is the waves of resident
    threads times R*S taps at ``unfold_tap_ns`` each (the measured 11x11 stride-4 stems
    unfold at ~25 us per image, several times their byte or element rate)."""
    threads = op.c * op.ho * op.wo
    waves = math.ceil(threads / (model.hw.sms * MAX_THREADS_PER_SM))
    return waves * op.r * op.s * model.eff["unfold_tap_ns"] * 1e-9


@register_conv("im2col")
def im2col(model, op: Conv2d) -> ConvPlan:
    """im2col + GEMM (PyTorch ``F.unfold`` then ``matmul``): unfold reads the input and
    writes the [N, C*R*S, Ho*Wo] workspace with one kernel per image (``unfold_fixed_us``
    each, plus bytes at ``unfold_bw_eff``); a batched GEMM (batch N) multiplies
    the [K, C*R*S] filter by it. FP32 GEMMs use the matmul math (no TF32 by default)."""
    e = model.eff
    b = dtype_bytes(op.dtype)
    inp, flt, out = _io_bytes(op)
    col = op.im2col_elems * b
    # PyTorch's CUDA unfold launches one im2col kernel per image
    per_image = (inp + col) / op.batch
    per_image_elems = op.im2col_elems / op.batch
    t_unfold = op.batch * (e["unfold_fixed_us"] * 1e-6
                           + max(per_image / (e["unfold_bw_eff"] * model.bw),
                                 per_image_elems / (e["gather_gelems"] * 1e9),
                                 unfold_serial_time(model, op)))  # fmt: skip
    # A = filter [K, C*R*S] (broadcast over the batch), B = columns, C = output
    # (the filter is shared by the images: its DRAM bytes are counted once)
    p = model.gemm_plan(op.kout, op.ho * op.wo, op.c * op.r * op.s, op.batch, op.dtype,
                        a_dram_bytes=flt / op.batch)  # fmt: skip
    dram = inp + col + p.dram_bytes
    t = t_unfold + p.latency_s
    detail = (("unfold_s", t_unfold), ("gemm_s", p.latency_s),
              ("tile", f"{p.tile[0]}x{p.tile[1]}"))  # fmt: skip
    return ConvPlan(t, dram, col, "memory" if t_unfold > p.latency_s else p.bound, detail)


def im2win_window_bytes(op: Conv2d) -> float:
    """Bytes of the window tensor Win[N][C][Ho][W*R]; zero when it is the input itself
    (R = 1, stride 1, no padding: each output row owns exactly one input row)."""
    if op.r == 1 and op.stride == 1 and op.pad == 0:
        return 0.0
    return op.im2win_elems * dtype_bytes(op.dtype)


def window_read_bytes(op: Conv2d) -> float:
    """Input bytes the window copy reads: every input row that some window uses, once
    (rows shared by overlapping windows come from L2); with R < stride some rows are
    never used."""
    inp = op.input_elems * dtype_bytes(op.dtype)
    return inp * min(1.0, op.ho * op.r / (op.h + 2 * op.pad))


def window_copy_time(model, op: Conv2d) -> float:
    """The window copy: a strided gather whose innermost run is only R elements long, so
    it is bound by bytes (``window_bw_eff``) or by elements written (``gather_gelems``,
    G elements/s; measured: FP16 copies are only ~1.3x faster than FP32)."""
    e = model.eff
    nbytes = window_read_bytes(op) + im2win_window_bytes(op)
    t_bytes = nbytes / (e["window_bw_eff"] * model.bw)
    t_elems = op.im2win_elems / (e["gather_gelems"] * 1e9)
    return e["ew_fixed_us"] * 1e-6 + max(t_bytes, t_elems)


@register_conv("im2win")
def im2win(model, op: Conv2d) -> ConvPlan:
    """Im2win (Lu et al., Euro-Par 2023; docs/sources/kernels.md §1): a copy kernel writes the
    window tensor, then an implicit GEMM over it with 128x128 CTA tiles on CUDA cores
    (the paper's kernel is FP32 SIMT). The paper's code pads C < 8 to 8 for its loads;
    its reported TFLOPS on those layers (8 TFLOPS on Conv1) exceed what padded work would
    allow, so the padding is not counted as work here. ``im2win_eff`` comes from the
    paper, not from measurement."""
    e = model.eff
    inp, flt, out = _io_bytes(op)
    win = im2win_window_bytes(op)
    t_win = window_copy_time(model, op) if win else 0.0
    peak = model.hw.cuda_core_tflops.get(op.dtype, model.hw.cuda_core_tflops["fp32"]) * 1e12
    m, n = op.kout, op.batch * op.ho * op.wo
    k = op.c * op.r * op.s
    tiles = math.ceil(m / 128) * math.ceil(n / 128)
    waves = math.ceil(tiles / model.hw.sms)
    t_c = waves * 2.0 * 128 * 128 * k / (peak / model.hw.sms * e["im2win_eff"])
    dram = (win or inp) + flt + out
    t_m = dram / (e["dram_eff"] * model.bw)
    t_kernel = max(t_c, t_m) + e["gemm_fixed_us"] * 1e-6
    detail = (("transform_s", t_win), ("kernel_s", t_kernel), ("waves", waves))
    bound = "compute" if t_c >= t_m else "memory"
    return ConvPlan(t_win + t_kernel, dram + (inp if win else 0.0), win, bound, detail)


@register_conv("direct")
def direct(model, op: Conv2d) -> ConvPlan:
    """Naive direct convolution: one thread per output element loops over C, R, S. Its
    rate is ``direct_eff`` of the FP32 SIMT peak, growing with the inner-loop length
    R*S as R*S / (R*S + direct_rs0) (loop overhead per filter row)."""
    e = model.eff
    inp, flt, out = _io_bytes(op)
    rs = op.r * op.s
    peak = model.hw.cuda_core_tflops["fp32"] * 1e12
    rate = peak * e["direct_eff"] * rs / (rs + e["direct_rs0"])
    t_c = op.flops / rate
    dram = inp + flt + out
    t = max(t_c, dram / (e["dram_eff"] * model.bw)) + e["launch_us"] * 1e-6
    return ConvPlan(t, dram, 0.0, "compute", (("kernel", "naive_direct"),))


def conv_plan(model, op: Conv2d) -> tuple[str, ConvPlan]:
    if op.algo == "auto":
        plans = {a: CONV_ALGOS[a](model, op) for a in CUDNN_FAMILY}
        best = min(plans, key=lambda a: plans[a].latency_s)
        return best, plans[best]
    return op.algo, CONV_ALGOS[op.algo](model, op)


@register_gpu_op(Conv2d)
def conv_cost(model, op: Conv2d) -> Cost:
    algo, p = conv_plan(model, op)
    inp, flt, out = _io_bytes(op)
    return Cost(
        latency_s=p.latency_s,
        flops=op.flops,
        bytes=p.dram_bytes,
        footprint_bytes=inp + flt + out + p.workspace_bytes,
        bound=p.bound,
        model=model.name,
        detail=(
            ("algo_used", algo),
            ("workspace_bytes", p.workspace_bytes),
            ("achieved_tflops", op.flops / p.latency_s / 1e12),
            *p.detail,
        ),
    )
