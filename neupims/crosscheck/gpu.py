"""``neupims crosscheck --hw h100_sxm [TRACE.csv] -o DIR``: time ops with PyTorch on this
machine's CUDA GPU and compare them with the GPU model.

PyTorch is an optional extra (``pip install neupims[gpu]``), imported only here and only
when a cross-check runs. Without it, or without a CUDA device, the check says so and the
command exits non-zero.

Method (the same as ``validation/h100/measure.py``): warm-up runs, a 256 MiB write before
every timed run to flush L2, CUDA events around the op alone, median of repeats.

Writes ``gpu_crosscheck.csv`` (trace columns, measured and predicted seconds, error,
device and library versions on every row), ``gpu_errors.csv`` (MAPE per op class),
``gpu_parity.png`` (log-log measured vs predicted) and ``gpu_env.json``.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from neupims.atomic import atomic_write_text
from neupims.crosscheck import register_checker, too_big
from neupims.crosscheck.report import write_report
from neupims.devices import get_model
from neupims.errors import NeupimsError
from neupims.ops import Attention, Conv2d, Elementwise, Gemm, Op, QuantGemm


class NoGpuError(NeupimsError):
    """No PyTorch or no CUDA device: a GPU cross-check cannot run here."""


def require_cuda():
    """Import torch and check for a CUDA device; raise :class:`NoGpuError` otherwise."""
    try:
        import torch
    except ImportError:
        raise NoGpuError(
            "no GPU cross-check possible: PyTorch is not installed (it is the optional "
            "'gpu' extra: pip install 'neupims[gpu]'), and a CUDA GPU is needed. The model "
            "itself needs neither: `neupims replay --hw ...` predicts without a GPU."
        ) from None
    if not torch.cuda.is_available():
        raise NoGpuError(
            "no CUDA GPU visible to PyTorch on this machine: nothing to time. Run "
            "`neupims crosscheck` on a machine with an NVIDIA GPU (the model itself needs "
            "none: `neupims replay --hw ...` predicts without a GPU)."
        )
    return torch


def default_ops() -> list[Op]:
    """A small default set: LLM linear layers, attention, element-wise ops, convolutions."""
    ops: list[Op] = []
    for m in (1, 16, 128, 1024, 4096):
        ops += [Gemm(m, 12288, 4096), Gemm(m, 4096, 16384)]
    ops += [Attention(b, 32, 32, 1, 2048, 128) for b in (1, 16, 64)]
    ops += [Attention(b, 32, 32, 1024, 1024, 128, causal=True) for b in (1, 8)]
    ops += [Elementwise(k, 4096 * r) for k in ("layernorm", "gelu", "add") for r in (16, 4096)]
    ops += [Conv2d(32, 64, 56, 56, 64, 3, 3, pad=1, dtype=d, algo=a)
            for d in ("fp16", "fp32") for a in ("auto", "im2col")]  # fmt: skip
    return ops


def op_class(op: Op) -> str:
    if isinstance(op, Gemm):
        return "gemm" if op.m > 16 else "gemv"
    if isinstance(op, Conv2d):
        return f"conv.{op.algo}"
    return op.name


class Timer:
    """Event-based timing with an L2 flush before every timed run."""

    def __init__(self, torch):
        self.torch = torch
        self.flush = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")

    def __call__(self, fn: Callable[[], Any], target_s: float = 0.1) -> tuple[float, int]:
        torch = self.torch
        fn()
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        est = time.perf_counter() - t0
        n = int(min(max(target_s / max(est, 1e-6), 5), 30))
        ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
              for _ in range(n + 2)]  # fmt: skip
        for s, e in ev:
            self.flush.zero_()
            s.record()
            fn()
            e.record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) * 1e-3 for s, e in ev[2:]), n


def op_callable(torch, op: Op) -> Callable[[], Any] | None:
    """A zero-argument PyTorch callable computing ``op`` on random data, or None."""
    import torch.nn.functional as F

    dt = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}.get(
        getattr(op, "dtype", ""), None
    )
    if dt is None:
        return None
    dev = "cuda"
    if isinstance(op, Gemm):
        if op.batch == 1:
            x = torch.randn(op.m, op.k, device=dev, dtype=dt)
            w = torch.randn(op.n, op.k, device=dev, dtype=dt)
            return lambda: F.linear(x, w)
        a = torch.randn(op.batch, op.m, op.k, device=dev, dtype=dt)
        b = torch.randn(op.batch, op.k, op.n, device=dev, dtype=dt)
        return lambda: torch.bmm(a, b)
    if isinstance(op, Attention):
        q = torch.randn(op.batch, op.heads, op.q_len, op.head_dim, device=dev, dtype=dt)
        k = torch.randn(op.batch, op.kv_heads, op.kv_len, op.head_dim, device=dev, dtype=dt)
        v = torch.randn_like(k)
        gqa = op.heads != op.kv_heads
        causal = op.causal and op.q_len > 1
        return lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=gqa)
    if isinstance(op, Elementwise):
        x = torch.randn(op.elems, device=dev, dtype=dt)
        y = torch.randn(op.elems, device=dev, dtype=dt)
        fns = {"add": lambda: x + y, "mul": lambda: x * y, "relu": lambda: F.relu(x),
               "gelu": lambda: F.gelu(x), "silu": lambda: F.silu(x), "copy": lambda: x.clone(),
               "softmax": lambda: torch.softmax(x.view(-1, 4096) if op.elems % 4096 == 0
                                                else x, dim=-1),
               "layernorm": lambda: F.layer_norm(x.view(-1, 4096) if op.elems % 4096 == 0
                                                 else x, (4096 if op.elems % 4096 == 0
                                                          else op.elems,))}  # fmt: skip
        return fns.get(op.kind)
    if isinstance(op, Conv2d):
        x = torch.randn(op.batch, op.c, op.h, op.w, device=dev, dtype=dt)
        w = torch.randn(op.kout, op.c, op.r, op.s, device=dev, dtype=dt)
        if op.algo in ("auto", "implicit_gemm"):
            torch.backends.cudnn.benchmark = op.algo == "auto"
            return lambda: F.conv2d(x, w, stride=op.stride, padding=op.pad)
        if op.algo == "im2col":

            def im2col():
                cols = F.unfold(x, (op.r, op.s), padding=op.pad, stride=op.stride)
                return torch.matmul(w.view(op.kout, -1), cols)

            return im2col
        return None  # im2win and direct have no PyTorch kernel
    if isinstance(op, QuantGemm):
        return None
    return None


def time_ops(ops: list[Op], progress: Callable[[int, int, Op], None] | None = None):
    """Measure every op PyTorch can run; returns (rows, skipped, env)."""
    torch = require_cuda()
    p = torch.cuda.get_device_properties(0)
    env = {"device": p.name, "sms": p.multi_processor_count, "torch": torch.__version__,
           "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
           "tf32_conv": torch.backends.cudnn.allow_tf32,
           "tf32_matmul": torch.backends.cuda.matmul.allow_tf32}  # fmt: skip
    timer = Timer(torch)
    rows, skipped = [], []
    for i, op in enumerate(ops):
        if progress:
            progress(i, len(ops), op)
        fn = op_callable(torch, op)
        if fn is None:
            skipped.append(op)
            continue
        t, n = timer(fn)
        rows.append((op, t, n))
        del fn
        torch.cuda.empty_cache()
    return rows, skipped, env


def report(hw, rows, env: dict, outdir: Path) -> dict[str, float]:
    """Write measured vs predicted, the errors per class and the parity plot."""
    model = get_model(hw)
    recs = []
    for op, t, n in rows:
        pred = model.estimate(op).latency_s
        recs.append({"op": op.name, **op.fields(), "class": op_class(op), "measured_s": t,
                     "reps": n, "predicted_s": pred, **env})  # fmt: skip
    df = pd.DataFrame(recs)
    df, per = write_report(
        df,
        outdir,
        "gpu",
        f"GPU model ({hw.name}) vs PyTorch on {env['device']}",
        "measured (s, median)",
    )
    atomic_write_text(outdir / "gpu_env.json", json.dumps(env, indent=1) + "\n")
    out = {r["class"]: float(r["mape_pct"]) for _, r in per.iterrows()}
    out["all"] = float(df["ape_pct"].mean())
    return out


@register_checker("gpu")
def check(hw, trace, outdir: Path, quick: bool = False) -> int:
    """Time the trace's ops (or :func:`default_ops`) on this GPU and compare with ``hw``."""
    require_cuda()  # fail before any work when there is no GPU
    outdir = Path(outdir)
    ops = [t.op for t in trace] if trace is not None else default_ops()
    if quick:
        ops = ops[::4]
    unique = list(dict.fromkeys(ops))
    for op in [op for op in unique if too_big(op, hw.memory_capacity_bytes)]:
        print(f"skipped ({too_big(op, hw.memory_capacity_bytes)}): {op}")
        unique.remove(op)
    rows, skipped, env = time_ops(unique)
    for op in skipped:
        print(f"skipped (no PyTorch kernel for it here): {op}")
    if not rows:
        print("no op could be timed")
        return 1
    res = report(hw, rows, env, outdir)
    print(f"{len(rows)} ops timed on {env['device']}; MAPE per class:")
    for cls, v in sorted(res.items()):
        print(f"  {cls:18s} {v:6.1f} %" if not math.isnan(v) else f"  {cls:18s}   n/a")
    print(f"wrote {outdir}/gpu_crosscheck.csv, gpu_errors.csv, gpu_parity.png, gpu_env.json")
    return 0
