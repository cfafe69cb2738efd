"""Measure the GPU validation set: LLM linear layers, attention, element-wise ops,
convolutions by algorithm (time and memory), weight-only quantised GEMMs, and
per-layer-scaled end-to-end GPT-3-class decode steps and prefills.

Standalone: needs only PyTorch (+ CuPy, optional, for the naive direct convolution)
and the standard library, so it runs on a GPU machine without the neupims package.

    python3 validation/h100/measure.py OUTDIR [--quick]

Writes OUTDIR/env.json (device, driver, CUDA/cuDNN/PyTorch versions), OUTDIR/ops.csv
(one row per op, trace columns + measured_s + memory) and OUTDIR/e2e.csv. Every row also
carries the device name and library versions.

Method: warm-up runs, an L2 flush (a 256 MiB write, 5x the H100's 50 MB L2) before
every timed run, CUDA events around the op alone, median of repeats. Memory: the peak
of torch.cuda.max_memory_allocated during one run minus the memory allocated before it
(so output + workspace; inputs are already resident).
"""

# ruff: noqa: B023, F821  (closures are called at once, inside their loop iteration)
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

COLUMNS = [
    "suite", "layer", "op", "impl",
    "m", "n", "k", "batch", "dtype",
    "c", "h", "w", "kout", "r", "s", "stride", "pad", "algo",
    "heads", "kv_heads", "q_len", "kv_len", "head_dim", "causal",
    "kind", "elems", "wbits", "group_size",
    "measured_s", "reps", "spread", "mem_extra_bytes", "tf32_conv", "tf32_matmul",
    "device", "torch", "cuda", "cudnn",
]  # fmt: skip
E2E_COLUMNS = [
    "model", "phase", "batch", "seq", "d_model", "heads", "d_ff", "layers", "vocab", "dtype",
    "layers_timed", "layer_s", "head_s", "measured_s", "graph_layer_s", "graph_measured_s",
    "reps", "device", "torch", "cuda", "cudnn",
]  # fmt: skip

DEV = "cuda"
_FLUSH: torch.Tensor | None = None
T_START = time.time()


def env_info() -> dict:
    p = torch.cuda.get_device_properties(0)
    try:
        drv = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=30,
        ).stdout.strip()  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        drv = f"unavailable: {exc}"
    return {
        "device": p.name,
        "sms": p.multi_processor_count,
        "total_memory_bytes": p.total_memory,
        "l2_bytes": getattr(p, "L2_cache_size", None),
        "driver_and_clocks": drv,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_conv": torch.backends.cudnn.allow_tf32,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "python": sys.version.split()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def bench(fn, *, flush: bool = True, target_s: float = 0.15, max_reps: int = 30, min_reps: int = 5):
    """Median seconds of ``fn`` over repeats, each after an L2 flush; returns (t, n, spread)."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    est = time.perf_counter() - t0
    n = int(min(max(target_s / max(est, 1e-6), min_reps), max_reps))
    warm = 2
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(n + warm)]  # fmt: skip
    for s, e in ev:
        if flush:
            _FLUSH.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    ts = [s.elapsed_time(e) * 1e-3 for s, e in ev[warm:]]
    med = statistics.median(ts)
    q = sorted(ts)
    spread = (q[int(0.75 * (len(q) - 1))] - q[int(0.25 * (len(q) - 1))]) / med if med else 0.0
    return med, n, spread


def peak_extra(fn) -> int:
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    out = fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    del out
    return int(peak - base)


class Writer:
    def __init__(self, path, cols, common):
        self.fh = open(path, "w", newline="")
        self.w = csv.DictWriter(self.fh, fieldnames=cols, lineterminator="\n")
        self.w.writeheader()
        self.common = common
        self.n = 0

    def row(self, **kw):
        r = dict(self.common)
        r.update(kw)
        self.w.writerow(r)
        self.fh.flush()
        self.n += 1


DT = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


def rnd(*shape, dtype):
    return torch.randn(*shape, device=DEV, dtype=dtype)


# ---------------------------------------------------------------- LLM linear layers
#: [N_out, K_in] per model (docs/sources/workloads.md §3).
LINEAR_SHAPES = {
    "gpt3-6.7b": [(12288, 4096), (4096, 4096), (16384, 4096), (4096, 16384)],
    "gpt3-13b": [(15360, 5120), (5120, 5120), (20480, 5120), (5120, 20480)],
    "gpt3-30b": [(21504, 7168), (7168, 7168), (28672, 7168), (7168, 28672)],
    "llama2-7b": [(22016, 4096), (4096, 11008)],
    "llama2-13b": [(27648, 5120), (5120, 13824)],
}
PROJ = ["qkv", "o", "ffn_up", "ffn_down"]


def run_linear(wr, quick):
    ms = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
    if quick:
        ms = [1, 64, 1024]
    for dname in ("fp16", "bf16"):
        dt = DT[dname]
        for model, shapes in LINEAR_SHAPES.items():
            for i, (n, k) in enumerate(shapes):
                if dname == "bf16" and model.startswith("llama"):
                    continue
                wgt = rnd(n, k, dtype=dt) * 0.02
                for m in ms:
                    x = rnd(m, k, dtype=dt)
                    t, reps, sp = bench(lambda: F.linear(x, wgt))
                    name = PROJ[i] if model.startswith("gpt3") else ("ffn_up", "ffn_down")[i]
                    wr.row(suite="linear", layer=f"{model}.{name}", op="gemm", impl="F.linear",
                           m=m, n=n, k=k, batch=1, dtype=dname, measured_s=t, reps=reps,
                           spread=sp)  # fmt: skip
                del wgt, x


def run_linear_big(wr, quick):
    """GPT-3 linear layers at prefill-sized M (8192, 16384): sustained tensor-core load."""
    for model, shapes in LINEAR_SHAPES.items():
        if not model.startswith("gpt3"):
            continue
        for i, (n, k) in enumerate(shapes):
            wgt = rnd(n, k, dtype=torch.float16) * 0.02
            for m in (8192, 16384):
                x = rnd(m, k, dtype=torch.float16)
                t, reps, sp = bench(lambda: F.linear(x, wgt))
                wr.row(suite="linear", layer=f"{model}.{PROJ[i]}", op="gemm", impl="F.linear",
                       m=m, n=n, k=k, batch=1, dtype="fp16", measured_s=t, reps=reps,
                       spread=sp)  # fmt: skip
            del wgt, x


def run_bmm(wr, quick):
    shapes = [(8, 512, 512, 512), (32, 1024, 1024, 128), (32, 1024, 128, 1024),
              (64, 2048, 2048, 128), (64, 128, 2048, 2048), (256, 1, 2048, 128),
              (256, 1, 128, 2048), (16, 4096, 4096, 64), (1, 8192, 8192, 8192),
              (1, 4096, 4096, 4096), (1, 2048, 2048, 2048), (4, 3000, 5000, 700)]  # fmt: skip
    if quick:
        shapes = shapes[:3]
    for dname in ("fp16", "bf16", "fp32"):
        dt = DT[dname]
        for b, m, n, k in shapes:
            if dname == "fp32" and m * n * k * b > 2**33:
                continue
            a = rnd(b, m, k, dtype=dt)
            bb = rnd(b, k, n, dtype=dt)
            t, reps, sp = bench(lambda: torch.bmm(a, bb))
            wr.row(
                suite="bmm",
                layer=f"bmm{b}x{m}x{n}x{k}",
                op="gemm",
                impl="torch.bmm",
                m=m,
                n=n,
                k=k,
                batch=b,
                dtype=dname,
                measured_s=t,
                reps=reps,
                spread=sp,
            )
            del a, bb


# ---------------------------------------------------------------- attention
def run_attention(wr, quick):
    cfgs = []
    for heads in (32, 40, 56):
        for b in (1, 4, 16, 64, 256):
            for L in (512, 1024, 2048):
                cfgs.append(("decode", b, heads, 1, L))
        for b in (1, 4, 16):
            for L in (512, 1024, 2048):
                cfgs.append(("prefill", b, heads, L, L))
    if quick:
        cfgs = cfgs[::9]
    for dname in ("fp16", "bf16"):
        dt = DT[dname]
        for phase, b, h, q, L in cfgs:
            if dname == "bf16" and h != 40:
                continue
            d = 128
            qq = rnd(b, h, q, d, dtype=dt)
            kk = rnd(b, h, L, d, dtype=dt)
            vv = rnd(b, h, L, d, dtype=dt)
            causal = phase == "prefill"
            t, reps, sp = bench(
                lambda: F.scaled_dot_product_attention(qq, kk, vv, is_causal=causal)
            )
            wr.row(suite="attention", layer=f"{phase}.h{h}", op="attention", impl="sdpa",
                   batch=b, heads=h, kv_heads=h, q_len=q, kv_len=L, head_dim=d, dtype=dname,
                   causal=str(causal).lower(), measured_s=t, reps=reps, spread=sp)  # fmt: skip
            del qq, kk, vv


# ---------------------------------------------------------------- element-wise
def run_elementwise(wr, quick):
    rows = [1, 16, 128, 1024, 4096, 16384]
    widths = [4096, 7168]
    if quick:
        rows = [1, 1024]
    for dname in ("fp16", "fp32"):
        dt = DT[dname]
        for d in widths:
            ln_w = torch.ones(d, device=DEV, dtype=dt)
            ln_b = torch.zeros(d, device=DEV, dtype=dt)
            for r in rows:
                x = rnd(r, d, dtype=dt)
                y = rnd(r, d, dtype=dt)
                fns = {
                    "layernorm": lambda: F.layer_norm(x, (d,), ln_w, ln_b),
                    "gelu": lambda: F.gelu(x),
                    "softmax": lambda: torch.softmax(x, dim=-1),
                    "add": lambda: x + y,
                }
                for kind, fn in fns.items():
                    t, reps, sp = bench(fn)
                    wr.row(suite="elementwise", layer=f"{kind}.{r}x{d}", op="elementwise",
                           impl=kind, kind=kind, elems=r * d, dtype=dname, measured_s=t,
                           reps=reps, spread=sp)  # fmt: skip
                del x, y


# ---------------------------------------------------------------- convolutions
#: (name, C, H, K, R, stride, pad) -- square images and filters.
RESNET50 = [
    ("conv1", 3, 224, 64, 7, 2, 3), ("res2.reduce0", 64, 56, 64, 1, 1, 0),
    ("res2.3x3", 64, 56, 64, 3, 1, 1), ("res2.expand", 64, 56, 256, 1, 1, 0),
    ("res2.reduce", 256, 56, 64, 1, 1, 0), ("res3.0.reduce", 256, 56, 128, 1, 1, 0),
    ("res3.0.3x3s2", 128, 56, 128, 3, 2, 1), ("res3.expand", 128, 28, 512, 1, 1, 0),
    ("res3.0.down", 256, 56, 512, 1, 2, 0), ("res3.reduce", 512, 28, 128, 1, 1, 0),
    ("res3.3x3", 128, 28, 128, 3, 1, 1), ("res4.0.reduce", 512, 28, 256, 1, 1, 0),
    ("res4.0.3x3s2", 256, 28, 256, 3, 2, 1), ("res4.expand", 256, 14, 1024, 1, 1, 0),
    ("res4.0.down", 512, 28, 1024, 1, 2, 0), ("res4.reduce", 1024, 14, 256, 1, 1, 0),
    ("res4.3x3", 256, 14, 256, 3, 1, 1), ("res5.0.reduce", 1024, 14, 512, 1, 1, 0),
    ("res5.0.3x3s2", 512, 14, 512, 3, 2, 1), ("res5.expand", 512, 7, 2048, 1, 1, 0),
    ("res5.0.down", 1024, 14, 2048, 1, 2, 0), ("res5.reduce", 2048, 7, 512, 1, 1, 0),
    ("res5.3x3", 512, 7, 512, 3, 1, 1),
]  # fmt: skip
VGG16 = [
    ("conv1_1", 3, 224, 64, 3, 1, 1), ("conv1_2", 64, 224, 64, 3, 1, 1),
    ("conv2_1", 64, 112, 128, 3, 1, 1), ("conv2_2", 128, 112, 128, 3, 1, 1),
    ("conv3_1", 128, 56, 256, 3, 1, 1), ("conv3_2", 256, 56, 256, 3, 1, 1),
    ("conv4_1", 256, 28, 512, 3, 1, 1), ("conv4_2", 512, 28, 512, 3, 1, 1),
    ("conv5_1", 512, 14, 512, 3, 1, 1),
]  # fmt: skip
IM2WIN = [
    ("Conv1", 3, 227, 96, 11, 4, 0), ("Conv2", 3, 231, 96, 11, 4, 0),
    ("Conv3", 3, 227, 64, 7, 2, 0), ("Conv4", 32, 224, 64, 7, 2, 0),
    ("Conv5", 96, 24, 256, 5, 1, 0), ("Conv6", 256, 12, 512, 3, 1, 0),
    ("Conv7", 3, 224, 64, 3, 1, 0), ("Conv8", 64, 112, 128, 3, 1, 0),
    ("Conv9", 64, 56, 64, 3, 1, 0), ("Conv10", 128, 28, 128, 3, 1, 0),
    ("Conv11", 256, 14, 256, 3, 1, 0), ("Conv12", 512, 7, 512, 3, 1, 0),
]  # fmt: skip

DIRECT_SRC = r"""
#include <cuda_fp16.h>
__device__ __forceinline__ float ld(const float* p, long i) { return p[i]; }
__device__ __forceinline__ float ld(const __half* p, long i) { return __half2float(p[i]); }
__device__ __forceinline__ void st(float* p, long i, float v) { p[i] = v; }
__device__ __forceinline__ void st(__half* p, long i, float v) { p[i] = __float2half(v); }
template <typename T>
__global__ void direct_conv(const T* x, const T* w, T* y, int N, int C, int H, int W,
                            int K, int R, int S, int st_, int pad, int Ho, int Wo) {
  long idx = (long)blockIdx.x * blockDim.x + threadIdx.x;
  long total = (long)N * K * Ho * Wo;
  if (idx >= total) return;
  int j = idx % Wo; long t = idx / Wo; int i = t % Ho; t /= Ho; int k = t % K; int n = t / K;
  float acc = 0.f;
  for (int c = 0; c < C; ++c)
    for (int r = 0; r < R; ++r) {
      int hi = i * st_ - pad + r;
      if (hi < 0 || hi >= H) continue;
      for (int s = 0; s < S; ++s) {
        int wi = j * st_ - pad + s;
        if (wi < 0 || wi >= W) continue;
        acc += ld(x, (((long)n * C + c) * H + hi) * W + wi) * ld(w, (((long)k * C + c) * R + r) * S + s);
      }
    }
  st(y, idx, acc);
}
"""
_DIRECT = {}


def direct_kernel(dname):
    """A naive direct convolution (one thread per output element), compiled by NVRTC."""
    if not _DIRECT:
        import cupy as cp

        mod = cp.RawModule(
            code=DIRECT_SRC,
            options=("-std=c++17",),
            name_expressions=["direct_conv<float>", "direct_conv<__half>"],
        )
        _DIRECT["fp32"] = mod.get_function("direct_conv<float>")
        _DIRECT["fp16"] = mod.get_function("direct_conv<__half>")
    return _DIRECT[dname]


def direct_conv(x, w, stride, pad, dname):
    import cupy as cp

    n, c, h, wd = x.shape
    k, _, r, s = w.shape
    ho = (h + 2 * pad - r) // stride + 1
    wo = (wd + 2 * pad - s) // stride + 1
    y = torch.empty(n, k, ho, wo, device=DEV, dtype=x.dtype)
    total = n * k * ho * wo
    fn = direct_kernel(dname)
    cx, cw, cy = cp.asarray(x), cp.asarray(w), cp.asarray(y)
    i32 = cp.int32
    fn(((total + 255) // 256,), (256,),
       (cx, cw, cy, i32(n), i32(c), i32(h), i32(wd), i32(k), i32(r), i32(s), i32(stride),
        i32(pad), i32(ho), i32(wo)))  # fmt: skip
    return y


def im2col_conv(x, w, stride, pad):
    """im2col + GEMM: unfold writes the [N, C*R*S, Ho*Wo] workspace, then one GEMM."""
    n, _, h, wd = x.shape
    k, c, r, s = w.shape
    ho = (h + 2 * pad - r) // stride + 1
    wo = (wd + 2 * pad - s) // stride + 1
    cols = F.unfold(x, (r, s), padding=pad, stride=stride)
    return torch.matmul(w.view(k, -1), cols).view(n, k, ho, wo)


def im2win_transform(x, r, stride):
    """The Im2win window tensor Win[N][C][Ho][W*R] (docs/sources/kernels.md §1), one copy kernel."""
    n, c, h, wd = x.shape
    return x.unfold(2, r, stride).contiguous()


def run_conv(wr, quick, env):
    sets = [("resnet50", RESNET50, 32), ("vgg16", VGG16, 16), ("im2win", IM2WIN, 128)]
    have_cupy = True
    try:
        direct_kernel("fp32")
    except Exception as exc:  # noqa: BLE001
        print("direct conv unavailable:", exc, flush=True)
        have_cupy = False
    for dname in ("fp32", "fp16"):
        dt = DT[dname]
        for net, layers, nb in sets:
            if quick:
                layers = layers[:2]
            for name, c, hw, k, rr, st_, pad in layers:
                if time.time() - T_START > 540:
                    print("conv: time budget reached, stopping", flush=True)
                    return
                x = rnd(nb, c, hw, hw, dtype=dt)
                w = rnd(k, c, rr, rr, dtype=dt) * 0.05
                ho = (hw + 2 * pad - rr) // st_ + 1
                common = dict(
                    suite=f"conv.{net}",
                    layer=name,
                    op="conv2d",
                    batch=nb,
                    c=c,
                    h=hw,
                    w=hw,
                    kout=k,
                    r=rr,
                    s=rr,
                    stride=st_,
                    pad=pad,
                    dtype=dname,
                )
                algos = {}
                torch.backends.cudnn.benchmark = True
                algos["auto"] = ("cudnn.benchmark", lambda: F.conv2d(x, w, stride=st_, padding=pad))
                algos["implicit_gemm"] = ("cudnn.heuristic", None)
                algos["im2col"] = ("unfold+matmul", lambda: im2col_conv(x, w, st_, pad))
                for algo, (impl, fn) in algos.items():
                    try:
                        if algo == "implicit_gemm":
                            torch.backends.cudnn.benchmark = False
                            fn = lambda: F.conv2d(x, w, stride=st_, padding=pad)  # noqa: E731
                        fn()  # cudnn.benchmark's search runs here, outside the memory peak
                        mem = peak_extra(fn)
                        t, reps, sp = bench(fn)
                        wr.row(**common, algo=algo, impl=impl, measured_s=t, reps=reps,
                               spread=sp, mem_extra_bytes=mem)  # fmt: skip
                    except torch.OutOfMemoryError:
                        print(f"OOM {net} {name} {algo} {dname}", flush=True)
                        torch.cuda.empty_cache()
                    finally:
                        torch.backends.cudnn.benchmark = True
                # im2win window transform alone (time and the window tensor it writes)
                if pad == 0:
                    fn = lambda: im2win_transform(x, rr, st_)  # noqa: E731
                    mem = peak_extra(fn)
                    t, reps, sp = bench(fn)
                    wr.row(
                        **common,
                        algo="im2win_transform",
                        impl="unfold(2).contiguous",
                        measured_s=t,
                        reps=reps,
                        spread=sp,
                        mem_extra_bytes=mem,
                    )
                # naive direct convolution on a batch of 4 (it is 100x slower)
                if have_cupy:
                    xb = x[:4].contiguous()
                    fn = lambda: direct_conv(xb, w, st_, pad, dname)  # noqa: E731
                    flops = 2 * 4 * k * c * rr * rr * ho * ho
                    if flops < 2e11:
                        mem = peak_extra(fn)
                        t, reps, sp = bench(fn, target_s=0.05, min_reps=3, max_reps=5)
                        wr.row(
                            **{**common, "batch": 4},
                            algo="direct",
                            impl="naive_cuda",
                            measured_s=t,
                            reps=reps,
                            spread=sp,
                            mem_extra_bytes=mem,
                        )
                    del xb
                del x, w
                torch.cuda.empty_cache()


# ---------------------------------------------------------------- weight-only quantised GEMM
def run_quant(wr, quick):
    shapes = [(12288, 4096), (4096, 4096), (16384, 4096), (4096, 16384)]
    ms = [1, 4, 16, 64, 256, 1024] if not quick else [1, 64]
    for n, k in shapes:
        # int8 weight-only, per-output-channel scale (group = K)
        try:
            wq = torch.randint(-127, 127, (n, k), device=DEV, dtype=torch.int8)
            sc = torch.rand(n, device=DEV, dtype=torch.bfloat16) * 0.01
            for m in ms:
                x = rnd(m, k, dtype=torch.bfloat16)
                t, reps, sp = bench(lambda: torch._weight_int8pack_mm(x, wq, sc))
                wr.row(suite="quant", layer=f"w8.{n}x{k}", op="quant_gemm",
                       impl="_weight_int8pack_mm", m=m, n=n, k=k, wbits=8, group_size=k,
                       dtype="bf16", measured_s=t, reps=reps, spread=sp)  # fmt: skip
        except Exception as exc:  # noqa: BLE001
            print("int8 weight-only GEMM unavailable:", repr(exc)[:300], flush=True)
        # int4 weight-only (tinygemm), group size 64 / 128
        for g in (64, 128):
            try:
                w4 = torch.randint(0, 255, (n, k // 2), device=DEV, dtype=torch.uint8)
                packed = torch._convert_weight_to_int4pack(w4, 8)
                sz = torch.rand(k // g, n, 2, device=DEV, dtype=torch.bfloat16)
                for m in ms:
                    x = rnd(m, k, dtype=torch.bfloat16)
                    t, reps, sp = bench(lambda: torch._weight_int4pack_mm(x, packed, g, sz))
                    wr.row(suite="quant", layer=f"w4g{g}.{n}x{k}", op="quant_gemm",
                           impl="_weight_int4pack_mm", m=m, n=n, k=k, wbits=4, group_size=g,
                           dtype="bf16", measured_s=t, reps=reps, spread=sp)  # fmt: skip
            except Exception as exc:  # noqa: BLE001
                print(f"int4 g{g} weight-only GEMM unavailable:", repr(exc)[:300], flush=True)


# ---------------------------------------------------------------- end-to-end stacks
#: GPT-3-class configs (docs/sources/workloads.md §1): layers, d_model, heads, d_ff, vocab.
GPT = {
    "gpt3-6.7b": (32, 4096, 32, 16384, 50257),
    "gpt3-13b": (40, 5120, 40, 20480, 50257),
    "gpt3-30b": (48, 7168, 56, 28672, 50257),
}


class Layer:
    def __init__(self, d, heads, ff, dt):
        s = 0.02
        self.d, self.h = d, heads
        self.wqkv = rnd(3 * d, d, dtype=dt) * s
        self.bqkv = torch.zeros(3 * d, device=DEV, dtype=dt)
        self.wo = rnd(d, d, dtype=dt) * s
        self.bo = torch.zeros(d, device=DEV, dtype=dt)
        self.w1 = rnd(ff, d, dtype=dt) * s
        self.b1 = torch.zeros(ff, device=DEV, dtype=dt)
        self.w2 = rnd(d, ff, dtype=dt) * s
        self.b2 = torch.zeros(d, device=DEV, dtype=dt)
        self.g1 = torch.ones(d, device=DEV, dtype=dt)
        self.z1 = torch.zeros(d, device=DEV, dtype=dt)
        self.g2 = torch.ones(d, device=DEV, dtype=dt)
        self.z2 = torch.zeros(d, device=DEV, dtype=dt)

    def forward(self, x, kc, vc, pos):
        """x [B, T, d]. Decode (T = 1): write k/v at ``pos`` of the cache, attend to
        pos + 1 keys. Prefill (kc is None): causal self-attention over T."""
        b, t, d = x.shape
        h, hd = self.h, d // self.h
        y = F.layer_norm(x, (d,), self.g1, self.z1)
        qkv = F.linear(y, self.wqkv, self.bqkv).view(b, t, 3, h, hd)
        q, k, v = qkv.unbind(2)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        if kc is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            kc[:, :, pos : pos + 1] = k
            vc[:, :, pos : pos + 1] = v
            a = F.scaled_dot_product_attention(q, kc[:, :, : pos + 1], vc[:, :, : pos + 1])
        a = a.transpose(1, 2).reshape(b, t, d)
        x = x + F.linear(a, self.wo, self.bo)
        y = F.layer_norm(x, (d,), self.g2, self.z2)
        y = F.gelu(F.linear(y, self.w1, self.b1))
        return x + F.linear(y, self.w2, self.b2)


def run_e2e(wr, quick):
    dname, dt = "fp16", torch.float16
    decode = [(1, 512), (1, 2048), (8, 1024), (32, 2048), (64, 512), (128, 1024), (256, 512)]
    prefill = [(1, 512), (1, 2048), (4, 1024), (8, 2048), (16, 512)]
    if quick:
        decode, prefill = decode[:1], prefill[:1]
    nl = 2
    warm_until = time.time() + 2.0  # warm the host (clocks, allocator, dispatch caches)
    w = Layer(1024, 8, 4096, dt)
    xw = rnd(1, 1, 1024, dtype=dt)
    while time.time() < warm_until:
        w.forward(xw, None, None, 0)
    torch.cuda.synchronize()
    del w, xw
    for model, (L, d, h, ff, vocab) in GPT.items():
        layers = [Layer(d, h, ff, dt) for _ in range(nl)]
        gf = torch.ones(d, device=DEV, dtype=dt)
        zf = torch.zeros(d, device=DEV, dtype=dt)
        wlm = rnd(vocab, d, dtype=dt) * 0.02
        for phase, grid in (("decode", decode), ("prefill", prefill)):
            for b, seq in grid:
                if time.time() - T_START > 560:
                    print("e2e: time budget reached", flush=True)
                    return
                hd = d // h
                try:
                    if phase == "decode":
                        x = rnd(b, 1, d, dtype=dt)
                        caches = [(rnd(b, h, seq, hd, dtype=dt), rnd(b, h, seq, hd, dtype=dt))
                                  for _ in range(nl)]  # fmt: skip
                        pos = seq - 1
                    else:
                        x = rnd(b, seq, d, dtype=dt)
                        caches = [(None, None)] * nl
                        pos = 0

                    def body():
                        y = x
                        for lyr, (kc, vc) in zip(layers, caches, strict=True):
                            y = lyr.forward(y, kc, vc, pos)
                        return y

                    def head():
                        y = F.layer_norm(x[:, -1:], (d,), gf, zf)
                        return F.linear(y, wlm)

                    # back-to-back repeats, no flush: weights and KV exceed L2 anyway, and
                    # a host-bound step then shows its launch gaps as it would in serving
                    # three separate timings, median of their medians: an eager, host-bound
                    # step varies more between runs than within one
                    runs = [bench(body, flush=False, target_s=0.3, max_reps=40) for _ in range(3)]
                    t_body, reps = statistics.median(r[0] for r in runs), runs[0][1]
                    t_head, _, _ = bench(head, max_reps=20)
                    g_body = math.nan
                    try:  # the same layers replayed from a CUDA graph: GPU time alone
                        s = torch.cuda.Stream()
                        s.wait_stream(torch.cuda.current_stream())
                        with torch.cuda.stream(s):
                            body()
                        torch.cuda.current_stream().wait_stream(s)
                        graph = torch.cuda.CUDAGraph()
                        with torch.cuda.graph(graph):
                            body()
                        g_body, _, _ = bench(graph.replay, flush=False, target_s=0.3, max_reps=20)
                        del graph
                    except Exception as exc:  # noqa: BLE001
                        print("graph capture failed:", repr(exc)[:200], flush=True)
                    wr.row(model=model, phase=phase, batch=b, seq=seq, d_model=d, heads=h,
                           d_ff=ff, layers=L, vocab=vocab, dtype=dname, layers_timed=nl,
                           layer_s=t_body / nl, head_s=t_head,
                           measured_s=t_body / nl * L + t_head,
                           graph_layer_s=g_body / nl,
                           graph_measured_s=g_body / nl * L + t_head, reps=reps)  # fmt: skip
                    del x, caches
                except torch.OutOfMemoryError:
                    print(f"OOM e2e {model} {phase} b{b} s{seq}", flush=True)
                torch.cuda.empty_cache()
        del layers, wlm
        torch.cuda.empty_cache()


def main(argv=None):
    global _FLUSH
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--quick", action="store_true", help="a few ops of each suite only")
    ap.add_argument("--only", default="", help="comma list of suites to run")
    args = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    os.makedirs(args.outdir, exist_ok=True)
    torch.manual_seed(0)
    env = env_info()
    print(json.dumps(env), flush=True)
    with open(os.path.join(args.outdir, "env.json"), "w") as fh:
        json.dump(env, fh, indent=1)
    common = {"device": env["device"], "torch": env["torch"], "cuda": env["cuda"],
              "cudnn": env["cudnn"]}  # fmt: skip
    ops = Writer(
        os.path.join(args.outdir, "ops.csv"),
        COLUMNS,
        {**common, "tf32_conv": env["tf32_conv"], "tf32_matmul": env["tf32_matmul"]},
    )
    e2e = Writer(os.path.join(args.outdir, "e2e.csv"), E2E_COLUMNS, common)
    _FLUSH = torch.empty(256 * 2**20, dtype=torch.uint8, device=DEV)
    suites = [("linear", run_linear), ("linear_big", run_linear_big), ("bmm", run_bmm), ("attention", run_attention),
              ("elementwise", run_elementwise), ("e2e", None), ("quant", run_quant),
              ("conv", lambda w, q: run_conv(w, q, env))]  # fmt: skip
    only = set(filter(None, args.only.split(",")))
    for name, fn in suites:
        if only and name not in only:
            continue
        t0 = time.time()
        n0 = ops.n + e2e.n
        try:
            if name == "e2e":
                run_e2e(e2e, args.quick)
            else:
                fn(ops, args.quick)
        except Exception:  # noqa: BLE001 - one broken suite must not lose the others
            traceback.print_exc()
            torch.cuda.empty_cache()
        print(f"{name}: {ops.n + e2e.n - n0} rows in {time.time() - t0:.1f} s "
              f"(total {time.time() - T_START:.0f} s)", flush=True)  # fmt: skip
    print(f"done: {ops.n} op rows, {e2e.n} e2e rows", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
