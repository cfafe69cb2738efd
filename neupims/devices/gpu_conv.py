"""Convolution algorithms on the GPU model: a registry keyed by the trace's ``algo`` name.

Each algorithm returns a :class:`ConvPlan`: time (seconds), DRAM bytes, workspace (device
memory beyond input, filter and output, bytes) and details. Layouts are NCHW, as in
PyTorch and the Im2win paper (docs/sources/kernels.md section 1).

cuDNN's forward algorithms (``cudnnConvolutionFwdAlgo_t``, cuDNN API reference, cudnn_cnn
library) and the names they have here:

=====================================  ====================  ==========================
cuDNN                                  ``algo``              model
=====================================  ====================  ==========================
IMPLICIT_GEMM, IMPLICIT_PRECOMP_GEMM   ``implicit_gemm``     the GEMM-based engines, by
(and the backend API's GEMM engines)                         kernel family (see there)
FFT                                    ``fft``               :func:`fft`
FFT_TILING                             ``fft_tiling``        :func:`fft_tiling`
WINOGRAD                               ``winograd``          :func:`winograd` (fused)
WINOGRAD_NONFUSED                      ``winograd_nonfused`` :func:`winograd_nonfused`
=====================================  ====================  ==========================

``im2col`` (PyTorch unfold + matmul), ``im2win`` (Lu et al.) and ``direct`` (a naive
kernel) are not cuDNN's and run only when asked for.

``auto`` picks as the config's ``conv_algo_choice`` says (:func:`conv_plan`):

* ``heuristic`` (PyTorch's default, ``torch.backends.cudnn.benchmark = False``): PyTorch
  asks cuDNN's backend heuristics (mode INSTANT) for engine configs and runs the first that
  builds (PyTorch ``aten/src/ATen/native/cudnn/Conv_v8.cpp``, ``get_configs_from_heuristics``
  and ``try_configs``). cuDNN's heuristic is a trained model whose rules NVIDIA does not
  publish, so :func:`heuristic_algo` is a rule read off the H200 measurements
  (validation/h200/, cuDNN 9.19): docs/gpu.md says which parts are documented and which
  inferred.
* ``benchmark`` (``cudnn.benchmark = True``): PyTorch times every engine config of the
  heuristic and fallback lists once and keeps the fastest (Conv_v8.cpp,
  ``get_plans_from_find``, ``CUDNN_FIND_SAMPLE_ONCE``). Measured on the H200, those engines
  are GEMM-based or FFT: no Winograd or FFT-tiling kernel ever ran, also where cuDNN's own
  legacy search times Winograd 2.6x faster (conv3_2, batch 128, FP32). So ``benchmark`` is
  the fastest of :data:`BENCHMARK_FAMILY`, workspace permitting.
* ``exhaustive``: the fastest of all of cuDNN's algorithms the device supports
  (:data:`EXHAUSTIVE_FAMILY`), as the legacy ``cudnnFindConvolutionForwardAlgorithm``
  returns them.

Layouts are NCHW, as in PyTorch and the Im2win paper (docs/sources/kernels.md §1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

from neupims.devices.base import Cost
from neupims.devices.gpu import register_gpu_op
from neupims.errors import NeupimsError
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
#: the engines PyTorch's ``cudnn.benchmark`` times on cuDNN 9 (measured, see above)
BENCHMARK_FAMILY = ("implicit_gemm", "fft")
#: every cuDNN algorithm the model has that cuDNN 9 runs on SM90: the fused Winograd
#: kernel answered CUDNN_STATUS_NOT_SUPPORTED for every shape measured on the H200
#: (validation/h200/conv_algos.csv), so it is costed only when a trace asks for it
EXHAUSTIVE_FAMILY = ("implicit_gemm", "fft", "fft_tiling", "winograd_nonfused")


def register_conv(name: str):
    def deco(fn: ConvAlgo) -> ConvAlgo:
        CONV_ALGOS[name] = fn
        return fn

    return deco


def _io_bytes(op: Conv2d) -> tuple[float, float, float]:
    b = dtype_bytes(op.dtype)
    return op.input_elems * b, op.filter_elems * b, op.output_elems * b


def conv_gemm(model, *args, fixed_key: str = "conv_fixed_us", **kw):
    """``model.gemm_plan`` for a convolution kernel: the same tile/wave/memory model with
    the fixed time ``fixed_key`` instead of the LLM GEMMs' ``gemm_fixed_us``: cuDNN's
    implicit-GEMM kernels come with a workspace memset (measured on the H200), the 1x1
    layers' cuBLASLt GEMMs do not (6 us in all at batch 1)."""
    e = model.eff
    p = model.gemm_plan(*args, **kw)
    fixed = (e[fixed_key] - e["gemm_fixed_us"]) * 1e-6
    return dataclasses.replace(p, latency_s=p.latency_s + fixed)


def channel_align(dtype: str) -> int:
    """Channel multiple that tensor-core convolution kernels need: 8 for 16-bit operands
    (one 16-byte vector), 4 for TF32 (cuDNN developer guide, "Tensor Core requirements")."""
    return 8 if dtype_bytes(dtype) == 2 else 4


def pointwise_native(op: Conv2d) -> bool:
    """Whether cuDNN runs this convolution directly on NCHW as a GEMM, without layout
    transforms: 1x1, stride 1, no padding, and either one image (one plain GEMM) or image
    rows of a multiple of 4 elements. Read off the kernel names on the H200
    (validation/h200/conv_heuristic.csv: cutlass / nvjet / xmma_gemm kernels, no
    ``nchwToNhwc``): every 1x1 stride-1 layer with H*W = 3136, 784 or 196 (35 of 36 rows)
    and every batch-1 one ran as a GEMM; those with H*W = 49 at batch 32 and 128 went
    through NHWC transforms, as the H100's allocations showed (validation/h100/ops.csv)."""
    pointwise = op.r == 1 and op.s == 1 and op.stride == 1 and op.pad == 0
    return pointwise and (op.batch == 1 or (op.ho * op.wo) % 4 == 0)


def first_layer_tc(model, op: Conv2d) -> bool:
    """cuDNN's tensor-core kernel for 16-bit 7x7 stride-2 stems of up to 4 channels
    (kernel name ``sm90_xmma_fprop_image_first_layer_..._k64c4r7s7_stride2x2``, measured
    on the H200 for ResNet-50 conv1 in fp16; TF32 runs a CUDA-core-like kernel instead)."""
    unit, _ = model.math_of(op.dtype, conv=True)
    return (unit == "tensor" and dtype_bytes(op.dtype) == 2 and op.c <= 4
            and op.r == op.s == 7 and op.stride == 2)  # fmt: skip


def cudnn_simt(model, op: Conv2d) -> ConvPlan:
    """cuDNN's CUDA-core kernel for channel counts tensor cores cannot take (3-channel
    stems), on the FP32 pipes for every dtype (measured: 3x3 and 11x11 stems run at about
    the same TFLOPS in FP16 and FP32). Each output pixel's index arithmetic amortises over
    the filter taps, so the rate is ``conv_simt_eff`` of the FP32 SIMT peak times
    R*S / (R*S + ``conv_simt_rs0``) (measured in FP32: 16, 21 and 27 TFLOPS for 3x3,
    7x7 and 11x11 stems). Stride-1 stems are read as NCHW (measured: they allocate only
    their output). Strided ones are transformed to NHWC first, like the implicit GEMM
    (measured: input + output allocated), except with TF32 off, where cuDNN runs
    ``implicit_convolve_sgemm`` on NCHW (measured on the H200: only the output
    allocated)."""
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
    unit, _ = model.math_of(op.dtype, conv=True)
    if op.stride > 1 and unit == "tensor":
        # strided stems go through NHWC (measured: workspace of input + filter + output)
        workspace = inp + flt + out
        t_layout = layout_time(model, e["conv_layout_passes"] * workspace)
        t += t_layout
        dram += e["conv_layout_passes"] * workspace
        bound = "memory" if t_layout > t - t_layout else bound
    return ConvPlan(t, dram, workspace, bound, (("kernel", "cudnn_simt"),))


def layout_time(model, nbytes: float) -> float:
    """One of cuDNN's helper kernels inside a convolution call (layout transform, split-K
    reduction): ``conv_layout_us`` (launched back to back with the convolution by cuDNN,
    no host dispatch between them: measured 1.5-2 us kernels at batch 1 on the H200)
    plus its bytes at ``ew_bw_eff`` of HBM bandwidth."""
    e = model.eff
    return e["conv_layout_us"] * 1e-6 + nbytes / (e["ew_bw_eff"] * model.bw)


def filter_transform_time(model, op: Conv2d) -> float:
    """cuDNN's KCRS -> KRSC copy of the filter for its NHWC kernels: a transpose whose
    contiguous runs are only R*S elements long, so it moves ``conv_filter_gelems`` G
    elements/s (measured on the H200: 15 us for 512x512x3x3 at any batch, about 160 G
    elements/s, a quarter of the input copy's rate)."""
    e = model.eff
    return e["conv_layout_us"] * 1e-6 + op.filter_elems / (e["conv_filter_gelems"] * 1e9)


#: CTA tiles of cuDNN's FP32 (FMA) NCHW implicit-GEMM kernels, output pixels x output
#: channels (kernel names ``sm80_xmma_fprop_implicit_gemm_f32f32_f32f32_f32_nchwkcrs_nchw_
#: tilesize{256x64,128x32,32x32}x8``, measured on the H200)
FMA_TILES = ((256, 64), (128, 32), (32, 32))


def nchw_fma_gemm(model, op: Conv2d) -> ConvPlan:
    """FP32 convolution with TF32 off: cuDNN's CUDA-core implicit GEMM straight on NCHW
    (no layout transforms, no workspace: measured, only the output is allocated). The GEMM
    view is M = N*Ho*Wo, N = K, K = C*R*S with A gathered from the input, on the tiles of
    :data:`FMA_TILES`; each tile reaches ``simt_eff`` x ``conv_fma_scale`` of the FP32
    SIMT peak times tm*tn / (tm*tn + ``conv_fma_alpha``*(tm + tn)): a CUDA-core main loop
    loads tm + tn operands from shared memory per tm*tn FMAs, so small tiles are slower
    (measured: about 42, 28 and 25 TFLOPS for the 256x64, 128x32 and 32x32 tiles). The
    kernel never splits K: at batch 1 the layers with few output pixels ran 32x32 tiles
    whose time grows with C*R*S alone (15 us at 256, 167 us at 4608), one CTA walking the
    whole reduction."""
    e = model.eff
    inp, _, _ = _io_bytes(op)
    m, n, k = op.gemm_mnk
    peak = model.hw.cuda_core_tflops["fp32"] * 1e12
    p = conv_gemm(model, m, n, k, 1, op.dtype, unit="simt", peak=peak,
                  eff_scale=e["conv_fma_scale"], a_dram_bytes=inp, tiles=FMA_TILES,
                  tile_alpha=e["conv_fma_alpha"], split_k=False)  # fmt: skip
    detail = (("kernel", "cudnn_nchw_implicit_gemm_fma"), ("tile", f"{p.tile[0]}x{p.tile[1]}"),
              ("waves", p.waves))  # fmt: skip
    return ConvPlan(p.latency_s, p.dram_bytes, 0.0, p.bound, detail)


@register_conv("implicit_gemm")
def implicit_gemm(model, op: Conv2d) -> ConvPlan:
    """cuDNN's GEMM-based convolution engines, as its heuristics pick the kernel family for
    the shape and the math (kernel names measured on the H200, allocations on the H100):

    * C not a multiple of ``channel_align``: the CUDA-core kernel (:func:`cudnn_simt`),
      except 16-bit 7x7 stride-2 stems, which run a tensor-core "first layer" kernel with
      C padded to 4 (:func:`first_layer_tc`) between NHWC transforms.
    * FP32 with TF32 off: the CUDA-core NCHW implicit GEMM (:func:`nchw_fma_gemm`).
    * 1x1, stride 1, aligned rows or one image (:func:`pointwise_native`): a plain GEMM
      over NCHW, [K, C] x [C, H*W] per image, batched over the images, at the GEMM's own
      efficiency and ``conv_pw_dram_eff`` of HBM bandwidth (these batched GEMMs of a few
      hundred columns reached 1.7-2 TB/s on the H200); no workspace.
    * Otherwise an NHWC implicit GEMM, M = N*Ho*Wo, N = K, K = C*R*S gathered on the fly,
      at ``conv_tc_eff`` of the GEMM rate (x ``conv_tf32_scale`` for TF32). The NCHW input
      and filter are transformed to NHWC / KRSC and the output back to NCHW by kernels of
      their own (``nchwToNhwcKernel``, ``nhwcToNchwKernel``): a workspace of input +
      filter + output (measured exactly on the H200), moved ``conv_layout_passes`` times.
      At batch 1 the filter copy (:func:`filter_transform_time`) dominates for wide
      layers; 1x1 filters need none.
    * When the GEMM plan splits K (too few output tiles to fill the SMs), the fp32
      partial sums go to a workspace and a separate kernel reduces them (measured: the
      small 7x7 and 14x14 ResNet layers allocate several output-sized fp32 buffers).
    """
    e = model.eff
    unit, peak = model.math_of(op.dtype, conv=True)
    stem = op.c % channel_align(op.dtype) != 0
    if stem and not first_layer_tc(model, op):
        return cudnn_simt(model, op)
    if unit == "simt":
        return nchw_fma_gemm(model, op)
    inp, flt, out = _io_bytes(op)
    b = dtype_bytes(op.dtype)
    m, n, k_red = op.gemm_mnk
    tf32 = e["conv_tf32_scale"] if op.dtype == "fp32" and unit == "tensor" else 1.0
    if stem:  # C padded to 4 channels in the NHWC copy of the input
        k_red = 4 * op.r * op.s
        inp = inp * 4 / op.c
    if pointwise_native(op):
        # image rows that are not whole 16-byte vectors rule out the SM90 (TMA) GEMMs:
        # cuBLASLt runs an SM80 ``cutlass_80_tensorop`` kernel instead (measured on the
        # H200 for every fp16 1x1 layer with H*W = 196), at ``conv_pw_unaligned_scale``
        aligned = (op.ho * op.wo * b) % 16 == 0 or op.batch == 1
        scale = tf32 * (1.0 if aligned else e["conv_pw_unaligned_scale"])
        # the filter (A) is shared by the images: its DRAM bytes are counted once
        p = conv_gemm(model, op.kout, op.ho * op.wo, op.c, op.batch, op.dtype, unit=unit,
                      peak=peak, eff_scale=scale, fixed_key="conv_pw_fixed_us",
                      a_dram_bytes=flt / op.batch, dram_eff=e["conv_pw_dram_eff"])  # fmt: skip
        workspace, t_extra, extra_bytes = 0.0, 0.0, 0.0
        kernel = "nchw_gemm" if aligned else "nchw_gemm_sm80"
        if p.split_k > 1:  # cuBLASLt's splitKreduce_kernel (measured at batch 1, C >= 1024)
            partials = p.split_k * op.kout * op.ho * op.wo * op.batch * 4.0
            t_extra = layout_time(model, partials)
            workspace = partials
    else:
        p = conv_gemm(model, m, n, k_red, 1, op.dtype, unit=unit, peak=peak,
                      eff_scale=e["conv_tc_eff"] * tf32, a_dram_bytes=inp)  # fmt: skip
        # NCHW -> NHWC copies of the input and the filter, NHWC -> NCHW of the output
        # (measured on the H200: the extra memory is exactly input + filter + output on
        # top of the output), each a kernel of its own around the convolution
        workspace = inp + flt + out
        extra_bytes = e["conv_layout_passes"] * workspace
        t_extra = (layout_time(model, e["conv_layout_passes"] * inp)
                   + layout_time(model, e["conv_layout_passes"] * out))  # fmt: skip
        if op.r * op.s > 1:  # a 1x1 filter is already KRSC
            t_extra += filter_transform_time(model, op)
        kernel = "first_layer" if stem else "nhwc_implicit_gemm"
        if p.split_k > 1:
            partials = p.split_k * m * n * 4.0
            t_extra += layout_time(model, partials + m * n * b)
            extra_bytes += partials + m * n * b
            workspace += partials
    detail = (("kernel", f"cudnn_{kernel}_{unit}"), ("tile", f"{p.tile[0]}x{p.tile[1]}"),
              ("waves", p.waves), ("split_k", p.split_k), ("extra_kernels_s", t_extra))  # fmt: skip
    bound = "memory" if t_extra > p.latency_s else p.bound
    return ConvPlan(p.latency_s + t_extra, p.dram_bytes + extra_bytes, workspace, bound,
                    detail)  # fmt: skip


# --------------------------------------------------------------------------- FFT
#: bytes of one complex spectrum coefficient: cuDNN's FFT kernels work in complex64 for
#: every input dtype (measured kernel names: ``fft2d_r2c_*``, ``..._cf32cf32_...`` GEMMs)
COMPLEX_BYTES = 8
#: FFT sizes cuDNN's FFT kernels were seen to use (``fft2d_r2c_16x16/32x32/64x64``): the
#: padded image is rounded up to a power of two, at least 16
FFT_MIN_SIZE = 16
#: FFT_TILING's tile edge: every measured FFT_TILING call ran ``fft2d_r2c_32x32`` kernels
FFT_TILE = 32
#: cuDNN documents FFT for padded images up to 256 x 256 (API reference,
#: ``cudnnConvolutionForward``, supported configurations)
FFT_MAX_SIZE = 256


def fft_size(n: int) -> int:
    """Edge of the 2-D FFT for a padded extent of ``n`` pixels: the next power of two."""
    return max(FFT_MIN_SIZE, 1 << max(0, math.ceil(math.log2(n))))


def rfft2_coeffs(t: int) -> int:
    """Complex coefficients of a real t x t FFT: t * (t/2 + 1) (Hermitian symmetry)."""
    return t * (t // 2 + 1)


def fft2_flops(t: int) -> float:
    """FLOPs of one real 2-D FFT of t x t: half of a complex one, 5 N log2 N with
    N = t*t points (the radix-2 count; Vasilache et al., ICLR 2015, section 3)."""
    n = t * t
    return 2.5 * n * math.log2(n)


def _fft_pass(model, nbytes: float, flops: float) -> float:
    """One FFT kernel (r2c or c2r over many planes): bytes at ``fft_bw_eff`` of HBM, or its
    FLOPs at ``simt_eff`` of the FP32 SIMT peak, whichever is longer, plus a launch."""
    e = model.eff
    peak = model.hw.cuda_core_tflops["fp32"] * 1e12
    t = max(nbytes / (e["fft_bw_eff"] * model.bw), flops / (peak * e["simt_eff"]))
    return e["ew_fixed_us"] * 1e-6 + t


def _spectral_product(model, n: int, c: int, k: int, freqs: int, t: int) -> tuple[float, float]:
    """Per frequency, Y[n, k] = sum_c X[n, c] W[c, k] in complex arithmetic: a GEMM over
    the channels batched over the ``freqs`` coefficients (8 real FLOPs per complex
    multiply-add). cuDNN runs it as a complex GEMM (``..._cf32cf32_...gemm``) for FFTs up
    to 32 x 32 (``fft_cgemm_eff``) and as ``pointwise_mult_and_sum_complex`` for 64 x 64
    and up (``fft_pointwise_eff``), both on the FP32 pipes. Returns (seconds, bytes)."""
    e = model.eff
    peak = model.hw.cuda_core_tflops["fp32"] * 1e12
    eff = e["fft_cgemm_eff"] if t <= 32 else e["fft_pointwise_eff"]
    flops = 8.0 * n * c * k * freqs
    nbytes = (n * c + c * k + n * k) * freqs * COMPLEX_BYTES
    t_s = max(flops / (peak * eff), nbytes / (e["dram_eff"] * model.bw))
    return e["gemm_fixed_us"] * 1e-6 + t_s, nbytes


@register_conv("fft")
def fft(model, op: Conv2d) -> ConvPlan:
    """CUDNN_CONVOLUTION_FWD_ALGO_FFT: convolution as a product in the frequency domain
    (Mathieu et al. 2014; Vasilache et al., "Fast convolutional nets with fbfft", ICLR
    2015), the passes measured on the H200 (validation/h200/conv_algos.csv):

    1. ``flip_filter``: the K*C filters flipped and zero-padded to T x T fp32 (correlation
       as a convolution), then the r2c FFT of the padded filters: K*C planes, T*(T/2+1)
       complex coefficients each; one pass over those bytes (the flip kernel alone is
       not identifiable in the measured totals);
    2. r2c FFT of the input: N*C planes of the padded image;
    3. per frequency, a complex GEMM over the channels (:func:`_spectral_product`);
    4. c2r inverse FFT of the N*K output spectra, cropped to Ho x Wo.

    T is the padded image rounded up to a power of two (16, 32, 64, ...; the whole image,
    no tiling). The filters are transformed on every call. Workspace: the padded filters
    (K*C*T*T fp32) and the filter, input and output spectra (measured within 7 % on the
    H200, e.g. 2.49 GB for VGG-16 conv3_2 at batch 32)."""
    b = dtype_bytes(op.dtype)
    t = fft_size(max(op.h, op.w) + 2 * op.pad)
    f = rfft2_coeffs(t)
    n, c, k = op.batch, op.c, op.kout
    spec = f * COMPLEX_BYTES
    b_filter = k * c * (op.r * op.s * b + t * t * 4 + spec)
    b_input = n * c * (op.h * op.w * b + spec)
    b_output = n * k * (spec + op.ho * op.wo * b)
    t_filter = _fft_pass(model, b_filter, k * c * fft2_flops(t))
    t_input = _fft_pass(model, b_input, n * c * fft2_flops(t))
    t_prod, b_prod = _spectral_product(model, n, c, k, f, t)
    t_inv = _fft_pass(model, b_output, n * k * fft2_flops(t))
    total = t_filter + t_input + t_prod + t_inv
    workspace = k * c * (t * t * 4 + spec) + n * (c + k) * spec
    dram = b_filter + b_input + b_prod + b_output
    bound = "compute" if t_prod > total / 2 else "memory"
    detail = (("fft_size", t), ("filter_fft_s", t_filter),
              ("input_fft_s", t_input), ("product_s", t_prod), ("inverse_fft_s", t_inv))  # fmt: skip
    return ConvPlan(total, dram, workspace, bound, detail)


@register_conv("fft_tiling")
def fft_tiling(model, op: Conv2d) -> ConvPlan:
    """CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING: the FFT algorithm on 32 x 32 input tiles
    (:data:`FFT_TILE`), each giving (32 - R + 1)^2 outputs of the stride-1 convolution, so
    the spectra stay small for large images. Measured on the H200: the filter spectra are
    computed once, then for every tile position its own three launches (input r2c over
    N*C planes, the spectral product, c2r over N*K planes): 64 positions for a 224 x 224
    3x3 layer. At batch 1 the product is a GEMV that streams all filter spectra per
    position. Strided layers compute the stride-1 output (measured: 81 positions for the
    7x7 stride-2 ResNet-50 stem). Workspace: the filter spectra plus the input and output
    spectra of up to two positions in flight (measured exactly: 428 MB for conv3_2 at
    batch 32, 4 positions; 1.28 GB for conv5_1, 1 position). 1x1 layers run 1-D FFTs
    instead (:func:`_fft_tiling_1d`)."""
    b = dtype_bytes(op.dtype)
    t = FFT_TILE
    n, c, k = op.batch, op.c, op.kout
    if op.r == op.s == 1:
        return _fft_tiling_1d(model, op)
    f = rfft2_coeffs(t)
    spec = f * COMPLEX_BYTES
    edge = t - max(op.r, op.s) + 1
    ho1 = op.h + 2 * op.pad - op.r + 1
    wo1 = op.w + 2 * op.pad - op.s + 1
    positions = math.ceil(ho1 / edge) * math.ceil(wo1 / edge)
    b_filter = k * c * (op.r * op.s * b + spec)
    t_filter = _fft_pass(model, b_filter, k * c * fft2_flops(t))
    out_px = op.ho * op.wo / positions  # outputs kept per tile (strided: subsampled)
    b_in = n * c * (t * t * b + spec)
    b_out = n * k * (spec + out_px * b)
    t_in = _fft_pass(model, b_in, n * c * fft2_flops(t))
    t_prod, b_prod = _spectral_product(model, n, c, k, f, t)
    t_out = _fft_pass(model, b_out, n * k * fft2_flops(t))
    total = t_filter + positions * (t_in + t_prod + t_out)
    workspace = k * c * spec + min(positions, 2) * n * (c + k) * spec
    dram = b_filter + positions * (b_in + b_prod + b_out)
    bound = "compute" if positions * t_prod > total / 2 else "memory"
    detail = (("tile_positions", positions), ("filter_fft_s", t_filter),
              ("per_position_s", t_in + t_prod + t_out))  # fmt: skip
    return ConvPlan(total, dram, workspace, bound, detail)


def _fft_tiling_1d(model, op: Conv2d) -> ConvPlan:
    """FFT_TILING of a 1x1 stride-1 convolution: cuDNN runs 1-D FFTs of 32 points over each
    flattened H*W plane (measured kernel names ``fft1d_r2c_32``, ``fft1d_c2r_32``): q =
    ceil(H*W / 32) tiles per plane, 17 coefficients each, and per coefficient a complex
    GEMM [N*q, C] x [C, K]. No spatial overlap, so one batched launch per pass."""
    b = dtype_bytes(op.dtype)
    t = FFT_TILE
    f = t // 2 + 1
    n, c, k = op.batch, op.c, op.kout
    q = math.ceil(op.h * op.w / t)
    spec = q * f * COMPLEX_BYTES  # one plane's spectra
    flops_1d = 2.5 * t * math.log2(t)  # half of a complex 1-D FFT, per tile
    b_filter = k * c * (b + f * COMPLEX_BYTES)
    t_filter = _fft_pass(model, b_filter, k * c * flops_1d)
    b_in = n * c * (op.h * op.w * b + spec)
    t_in = _fft_pass(model, b_in, n * c * q * flops_1d)
    t_prod, b_prod = _spectral_product(model, n * q, c, k, f, t)
    b_out = n * k * (spec + op.ho * op.wo * b)
    t_out = _fft_pass(model, b_out, n * k * q * flops_1d)
    total = t_filter + t_in + t_prod + t_out
    workspace = k * c * f * COMPLEX_BYTES + n * (c + k) * spec
    bound = "compute" if t_prod > total / 2 else "memory"
    detail = (("fft_1d_tiles_per_plane", q), ("filter_fft_s", t_filter), ("input_fft_s", t_in),
              ("product_s", t_prod), ("inverse_fft_s", t_out))  # fmt: skip
    return ConvPlan(total, b_filter + b_in + b_prod + b_out, workspace, bound, detail)


# --------------------------------------------------------------------------- Winograd
#: Winograd minimal-filtering transforms (Lavin & Gray, "Fast Algorithms for
#: Convolutional Neural Networks", CVPR 2016, section 4): for F(m, r), Y = A^T [(G g) *
#: (B^T d)] in 1-D and Y = A^T [(G g G^T) * (B^T d B)] A in 2-D, tiles of alpha = m + r - 1.
WINOGRAD = {
    # F(2, 3): interpolation points 0, 1, -1 and infinity (Lavin & Gray, eq. 6-8)
    (2, 3): {
        "BT": ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        "G": ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
        "AT": ((1, 1, 1, 0), (0, 1, -1, -1)),
    },
    # F(4, 3): points 0, +-1, +-2 and infinity (Lavin & Gray, section 4.2)
    (4, 3): {
        "BT": ((4, 0, -5, 0, 1, 0), (0, -4, -4, 1, 1, 0), (0, 4, -4, -1, 1, 0),
               (0, -2, -1, 2, 1, 0), (0, 2, -1, -2, 1, 0), (0, 4, 0, -5, 0, 1)),
        "G": ((1 / 4, 0, 0), (-1 / 6, -1 / 6, -1 / 6), (-1 / 6, 1 / 6, -1 / 6),
              (1 / 24, 1 / 12, 1 / 6), (1 / 24, -1 / 12, 1 / 6), (0, 0, 1)),
        "AT": ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0),
               (0, 1, -1, 8, -8, 1)),
    },
}  # fmt: skip


def transform_ops(mat) -> int:
    """Floating-point operations of one 1-D transform y = M x, counted from the matrix:
    an addition for each nonzero beyond the first of a row and a multiplication for each
    nonzero that is not +-1. For F(2x2, 3x3) this gives Lavin & Gray's counts: 32
    additions for the 2-D data transform and 24 for the inverse (section 4.1)."""
    ops = 0
    for row in mat:
        nz = [v for v in row if v != 0]
        ops += max(len(nz) - 1, 0) + sum(1 for v in nz if abs(v) != 1)
    return ops


def winograd_transform_flops(m: int, r: int) -> dict[str, int]:
    """FLOPs of the 2-D transforms of one tile (one channel): the data transform B^T d B
    on alpha x alpha inputs (alpha 1-D transforms down the columns, then alpha along the
    rows), the filter transform G g G^T (r then alpha 1-D transforms) and the inverse
    A^T M A (alpha then m 1-D transforms)."""
    t = WINOGRAD[(m, r)]
    alpha = m + r - 1
    return {
        "data": 2 * alpha * transform_ops(t["BT"]),
        "filter": (r + alpha) * transform_ops(t["G"]),
        "output": (alpha + m) * transform_ops(t["AT"]),
    }


def winograd_tile(op: Conv2d) -> int:
    """Output tile edge m of cuDNN's Winograd kernels: 4 (F(4x4, 3x3), kernel names
    ``winogradForwardData4x4`` etc., measured) for the non-fused 3x3 algorithm."""
    return 4


def winograd_mults_per_output(m: int, r: int) -> float:
    """Element-wise multiplies per output per channel: alpha^2 / m^2 (direct: r^2)."""
    return (m + r - 1) ** 2 / m**2


#: cuDNN's non-fused Winograd works on groups of 16 images: below 16 its workspace and its
#: GEMM are those of 16 (measured on the H200: at batch 1 the workspace is 16 images' worth,
#: e.g. 240.6 MB for conv3_2, and the GEMM takes half of batch 32's time)
WINOGRAD_BATCH_GRANULE = 16


def _winograd_tiles(op: Conv2d, m: int) -> int:
    return math.ceil(op.ho / m) * math.ceil(op.wo / m)


@register_conv("winograd_nonfused")
def winograd_nonfused(model, op: Conv2d) -> ConvPlan:
    """CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED: F(4x4, 3x3) (Lavin & Gray 2016) as four
    kernels, measured on the H200 (``winogradForwardFilter4x4``, ``winogradForwardData4x4``,
    a GEMM, ``winogradForwardOutput4x4``):

    1. filter transform: K*C filters to 6 x 6 fp32 (G g G^T);
    2. data transform: each input channel cut into P = ceil(Ho/4)*ceil(Wo/4) overlapping
       6 x 6 tiles, transformed (B^T d B) and written as 36 fp32 matrices [C, N*P];
    3. 36 independent GEMMs [K, C] x [C, N*P], one per tile coordinate: 36 multiplies per
       4 x 4 outputs instead of 144 (4x fewer), run by cuDNN as an FP32 CUDA-core GEMM for
       every input dtype (measured kernel names ``..._f32f32_f32f32_f32_nn_...``);
    4. output transform (A^T M A) back to N*K*Ho*Wo.

    The transforms are streaming kernels at ``wino_bw_eff`` of HBM bandwidth; the GEMMs
    use the GEMM model at ``wino_gemm_scale``. Workspace: 36 fp32 values per tile of data,
    filter and output, 36*4*(N*C*P + K*C + N*K*P) bytes (measured exactly on the H200),
    with N rounded up to a multiple of 16 images (:data:`WINOGRAD_BATCH_GRANULE`)."""
    e = model.eff
    m, r = winograd_tile(op), op.r
    alpha = m + r - 1
    a2 = alpha * alpha
    c, k = op.c, op.kout
    n = math.ceil(op.batch / WINOGRAD_BATCH_GRANULE) * WINOGRAD_BATCH_GRANULE
    tiles = _winograd_tiles(op, m)
    inp, flt, out = _io_bytes(op)
    fl = winograd_transform_flops(m, r)
    peak32 = model.hw.cuda_core_tflops["fp32"] * 1e12

    def stream(nbytes: float, flops: float) -> float:
        t = max(nbytes / (e["wino_bw_eff"] * model.bw), flops / (peak32 * e["simt_eff"]))
        return e["ew_fixed_us"] * 1e-6 + t

    b_filter = flt + k * c * a2 * 4
    b_data = inp + n * c * tiles * a2 * 4
    b_out = n * k * tiles * a2 * 4 + out
    t_filter = stream(b_filter, k * c * fl["filter"])
    t_data = stream(b_data, n * c * tiles * fl["data"])
    p = model.gemm_plan(k, n * tiles, c, a2, "fp32", unit="simt", peak=peak32,
                        eff_scale=e["wino_gemm_scale"])  # fmt: skip
    t_out = stream(b_out, n * k * tiles * fl["output"])
    total = t_filter + t_data + p.latency_s + t_out
    workspace = a2 * 4.0 * (n * c * tiles + k * c + n * k * tiles)
    dram = b_filter + b_data + p.dram_bytes + b_out
    bound = p.bound if p.latency_s > total / 2 else "memory"
    detail = (("tile", f"F({m}x{m},{r}x{r})"), ("tiles_per_image", tiles),
              ("filter_transform_s", t_filter), ("data_transform_s", t_data),
              ("gemm_s", p.latency_s), ("output_transform_s", t_out))  # fmt: skip
    return ConvPlan(total, dram, workspace, bound, detail)


@register_conv("winograd")
def winograd(model, op: Conv2d) -> ConvPlan:
    """CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD: fused F(2x2, 3x3) (Lavin & Gray 2016, section
    4.1; their Maxwell kernel): one kernel transforms 4 x 4 input tiles and the filters in
    shared memory, multiplies (16 per 2 x 2 outputs instead of 36: 2.25x fewer) and
    transforms back, so DRAM sees only input, filter and output and no workspace is
    needed. Its GEMM-like core runs at the SIMT GEMM rate of the conv's math; the
    transforms' FLOPs (:func:`winograd_transform_flops`) are extra CUDA-core work.
    cuDNN 9 on the H200 reports it NOT_SUPPORTED for every shape measured, so this cost
    is not validated and ``auto`` never picks it."""
    e = model.eff
    m, r = 2, op.r
    alpha = m + r - 1
    n, c, k = op.batch, op.c, op.kout
    tiles = _winograd_tiles(op, m)
    inp, flt, out = _io_bytes(op)
    fl = winograd_transform_flops(m, r)
    peak32 = model.hw.cuda_core_tflops["fp32"] * 1e12
    rate = peak32 * e["simt_eff"]
    t_gemm = 2.0 * alpha * alpha * k * c * n * tiles / rate + e["gemm_fixed_us"] * 1e-6
    t_tr = (n * c * tiles * fl["data"] + k * c * fl["filter"] + n * k * tiles * fl["output"]) / rate
    t_m = (inp + flt + out) / (e["dram_eff"] * model.bw)
    total = max(t_gemm + t_tr, t_m)
    detail = (("tile", f"F({m}x{m},{r}x{r})"), ("tiles_per_image", tiles),
              ("transform_s", t_tr), ("gemm_s", t_gemm))  # fmt: skip
    return ConvPlan(total, inp + flt + out, 0.0, "compute" if total > t_m else "memory", detail)


def unsupported(op: Conv2d, algo: str) -> str | None:
    """Why cuDNN cannot run ``algo`` on ``op`` (None when it can). Winograd needs a 3x3
    filter at stride 1 (cuDNN API reference for both Winograd algorithms; measured on the
    H200: NOT_SUPPORTED for every other shape, 5x5 not measured); FFT needs stride 1 and a
    padded image of at most 256 x 256 (API reference; measured: NOT_SUPPORTED for every
    strided layer); FFT_TILING ran every measured shape except strided 1x1 ones."""
    if algo in ("winograd", "winograd_nonfused"):
        if not (op.r == op.s == 3 and op.stride == 1):
            return f"{algo} needs a 3x3 filter at stride 1, got {op.r}x{op.s} stride {op.stride}"
    elif algo == "fft":
        if op.stride != 1:
            return f"fft needs stride 1, got {op.stride}"
        if max(op.h, op.w) + 2 * op.pad > FFT_MAX_SIZE:
            return f"fft needs a padded image of at most {FFT_MAX_SIZE} pixels a side"
    elif algo == "fft_tiling":
        if op.stride != 1 and op.r == op.s == 1:
            return "fft_tiling does not run strided 1x1 convolutions (measured)"
        if max(op.r, op.s) > FFT_TILE:
            return f"fft_tiling needs filters of at most {FFT_TILE} taps a side"
    return None


# --------------------------------------------------------------------------- heuristic
#: FP32 (TF32 off) 3x3 stride-1 layers for which cuDNN's heuristic picks FFT: inferred
#: from the H200 (cuDNN 9.19, validation/h200/conv_heuristic.csv), not documented. The
#: heuristic chose FFT for 10 of the 39 such layers (ResNet-50 and VGG-16 at batch 1, 32
#: and 128) and the rule below separates all 39: C >= 128 and an output of 2^21 to
#: 2^17 * C elements (N*K*Ho*Wo). The thresholds sit between the nearest layers of
#: either side, so they are read off the data, not validated on other data.
HEUR_FFT_MIN_C = 128
HEUR_FFT_MIN_OUTPUT = 2**21
HEUR_FFT_MAX_OUTPUT_PER_C = 2**17


def heuristic_algo(model, op: Conv2d) -> str:
    """The algorithm PyTorch runs with ``cudnn.benchmark = False`` (cuDNN's heuristic).

    Measured on the H200 (cuDNN 9.19, PyTorch 2.11, 288 layers x math x batch): with
    tensor-core math (16-bit, or FP32 with TF32) it always ran a GEMM-based engine; with
    TF32 off it ran the CUDA-core implicit GEMM, except for the 3x3 stride-1 layers of
    the FFT rule above, which ran FFT. It never ran Winograd or FFT tiling."""
    unit, _ = model.math_of(op.dtype, conv=True)
    if unit == "simt" and op.r == op.s == 3 and op.stride == 1 and not unsupported(op, "fft"):
        out = op.output_elems
        if (op.c >= HEUR_FFT_MIN_C and HEUR_FFT_MIN_OUTPUT <= out
                and out <= HEUR_FFT_MAX_OUTPUT_PER_C * op.c):  # fmt: skip
            return "fft"
    return "implicit_gemm"


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
    """(algorithm, plan) of ``op``: the requested algorithm, or for ``auto`` the one the
    config's ``conv_algo_choice`` picks. ``benchmark`` and ``exhaustive`` skip algorithms
    whose workspace would not fit beside the op's tensors in device memory."""
    if op.algo != "auto":
        why = unsupported(op, op.algo)
        if why:
            raise NeupimsError(f"conv2d {op.c}x{op.h}x{op.w} -> {op.kout}: {why}")
        return op.algo, CONV_ALGOS[op.algo](model, op)
    choice = model.hw.conv_algo_choice
    if choice == "heuristic":
        algo = heuristic_algo(model, op)
        return algo, CONV_ALGOS[algo](model, op)
    family = BENCHMARK_FAMILY if choice == "benchmark" else EXHAUSTIVE_FAMILY
    free = model.hw.hbm_capacity_gb * 1e9 - sum(_io_bytes(op))
    plans = {a: CONV_ALGOS[a](model, op) for a in family if not unsupported(op, a)}
    fits = {a: p for a, p in plans.items() if p.workspace_bytes <= free} or plans
    best = min(fits, key=lambda a: fits[a].latency_s)
    return best, fits[best]


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
