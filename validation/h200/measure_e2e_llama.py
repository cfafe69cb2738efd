"""Time whole decode steps and prefills of Llama-style models (RMSNorm, SwiGLU, grouped-query
attention) on a GPU, eager and replayed from a CUDA graph: a check of neupims' GPU step model
(`GpuModel.step`, what `neupims replay --dispatch eager|graph` costs) on a model family whose
timings were never used to fit it.

Standalone (PyTorch and the standard library), so it runs on a GPU machine without neupims:

    python3 validation/h200/measure_e2e_llama.py OUTDIR

Method (as validation/h100/measure.py's GPT-3 steps): two blocks with random fp16 weights are
timed and scaled to the model's layer count, plus the final norm and LM head of the last token;
decode writes the new token's K and V into a cache of ``seq`` positions and attends to all of
them; eager steps are the median of three back-to-back timings (a host-bound step varies more
between runs than within one); graph steps replay the same two blocks captured in a CUDA graph.
Writes OUTDIR/e2e_llama.csv and OUTDIR/env.json.
"""

# ruff: noqa: B023, F821  (closures are called at once, inside their loop iteration)
from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

DEV = "cuda"
DT = torch.float16
#: name -> (layers, d_model, heads, kv_heads, d_ff, vocab), as neupims' model zoo
#: (workloads/models/llama2.yaml, chatglm2.yaml)
MODELS = {
    "llama2-7b": (32, 4096, 32, 32, 11008, 32000),
    "llama2-13b": (40, 5120, 40, 40, 13824, 32000),
    "chatglm2-6b": (28, 4096, 32, 2, 13696, 65024),
    "llama2-70b": (80, 8192, 64, 8, 28672, 32000),
}
DECODE = [(1, 512), (8, 1024), (32, 2048), (128, 1024)]
PREFILL = [(1, 512), (1, 2048), (4, 1024)]
COLUMNS = [
    "model", "phase", "batch", "seq", "d_model", "heads", "kv_heads", "d_ff", "layers", "vocab",
    "dtype", "layers_timed", "layer_s", "head_s", "measured_s", "graph_layer_s",
    "graph_measured_s", "reps", "device", "torch", "cuda", "cudnn",
]  # fmt: skip
NL = 2  # blocks timed


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
        "driver_and_clocks": drv,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "python": sys.version.split()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def bench(fn, target_s: float = 0.3, max_reps: int = 40, min_reps: int = 5) -> tuple[float, int]:
    """Median seconds of back-to-back calls of ``fn`` (CUDA events around each)."""
    fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    torch.cuda.synchronize()
    est = time.perf_counter() - t0
    n = int(min(max(target_s / max(est, 1e-6), min_reps), max_reps))
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True))
          for _ in range(n + 2)]  # fmt: skip
    for s, e in ev:
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) * 1e-3 for s, e in ev[2:]), n


def rnd(*shape):
    return torch.randn(*shape, device=DEV, dtype=DT) * 0.02


class Block:
    """One Llama block: RMSNorm, fused QKV (GQA), SDPA, O, add, RMSNorm, fused gate+up,
    SiLU * up, down, add. No biases."""

    def __init__(self, d, h, kvh, ff):
        self.d, self.h, self.kvh, self.hd = d, h, kvh, d // h
        self.wqkv = rnd((h + 2 * kvh) * self.hd, d)
        self.wo = rnd(d, d)
        self.wup = rnd(2 * ff, d)
        self.wdown = rnd(d, ff)
        self.g1 = torch.ones(d, device=DEV, dtype=DT)
        self.g2 = torch.ones(d, device=DEV, dtype=DT)

    def forward(self, x, kc, vc, pos):
        b, t, d = x.shape
        h, kvh, hd = self.h, self.kvh, self.hd
        y = F.rms_norm(x, (d,), self.g1)
        qkv = F.linear(y, self.wqkv)
        q, k, v = qkv.split([h * hd, kvh * hd, kvh * hd], dim=-1)
        q = q.view(b, t, h, hd).transpose(1, 2)
        k = k.view(b, t, kvh, hd).transpose(1, 2)
        v = v.view(b, t, kvh, hd).transpose(1, 2)
        if kc is None:
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=kvh != h)
        else:
            kc[:, :, pos : pos + 1] = k
            vc[:, :, pos : pos + 1] = v
            a = F.scaled_dot_product_attention(
                q, kc[:, :, : pos + 1], vc[:, :, : pos + 1], enable_gqa=kvh != h
            )
        a = a.transpose(1, 2).reshape(b, t, d)
        x = x + F.linear(a, self.wo)
        y = F.rms_norm(x, (d,), self.g2)
        gate, up = F.linear(y, self.wup).chunk(2, dim=-1)
        return x + F.linear(F.silu(gate) * up, self.wdown)


def main(outdir: str) -> int:
    os.makedirs(outdir, exist_ok=True)
    env = env_info()
    with open(os.path.join(outdir, "env.json"), "w") as fh:
        json.dump(env, fh, indent=1)
    common = {k: env[k] for k in ("device", "torch", "cuda", "cudnn")}
    fh = open(os.path.join(outdir, "e2e_llama.csv"), "w", newline="")
    w = csv.DictWriter(fh, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    warm = Block(1024, 8, 8, 2816)
    xw = rnd(1, 1, 1024)
    until = time.time() + 2.0  # warm the host (clocks, allocator, dispatch caches)
    while time.time() < until:
        warm.forward(xw, None, None, 0)
    torch.cuda.synchronize()
    del warm, xw
    t_start = time.time()
    for model, (L, d, h, kvh, ff, vocab) in MODELS.items():
        blocks = [Block(d, h, kvh, ff) for _ in range(NL)]
        gf = torch.ones(d, device=DEV, dtype=DT)
        wlm = rnd(vocab, d)
        hd = d // h
        for phase, grid in (("decode", DECODE), ("prefill", PREFILL)):
            for b, seq in grid:
                if time.time() - t_start > 420:
                    print("time budget reached", flush=True)
                    fh.close()
                    return 0
                try:
                    if phase == "decode":
                        x = rnd(b, 1, d)
                        caches = [(rnd(b, kvh, seq, hd), rnd(b, kvh, seq, hd)) for _ in range(NL)]
                        pos = seq - 1
                    else:
                        x = rnd(b, seq, d)
                        caches = [(None, None)] * NL
                        pos = 0

                    def body():
                        y = x
                        for blk, (kc, vc) in zip(blocks, caches, strict=True):
                            y = blk.forward(y, kc, vc, pos)
                        return y

                    def head():
                        return F.linear(F.rms_norm(x[:, -1:], (d,), gf), wlm)

                    runs = [bench(body) for _ in range(3)]
                    t_body, reps = statistics.median(r[0] for r in runs), runs[0][1]
                    t_head, _ = bench(head)
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        body()
                    torch.cuda.current_stream().wait_stream(s)
                    graph = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(graph):
                        body()
                    g_body, _ = bench(graph.replay)
                    del graph
                    w.writerow({
                        "model": model, "phase": phase, "batch": b, "seq": seq, "d_model": d,
                        "heads": h, "kv_heads": kvh, "d_ff": ff, "layers": L, "vocab": vocab,
                        "dtype": "fp16", "layers_timed": NL, "layer_s": t_body / NL,
                        "head_s": t_head, "measured_s": t_body / NL * L + t_head,
                        "graph_layer_s": g_body / NL,
                        "graph_measured_s": g_body / NL * L + t_head, "reps": reps, **common,
                    })  # fmt: skip
                    fh.flush()
                    print(f"{model} {phase} b{b} s{seq}: eager {t_body / NL * L * 1e3:.2f} ms,"
                          f" graph {g_body / NL * L * 1e3:.2f} ms", flush=True)  # fmt: skip
                    del x, caches
                except torch.OutOfMemoryError:
                    print(f"OOM {model} {phase} b{b} s{seq}", flush=True)
                torch.cuda.empty_cache()
        del blocks, wlm
        torch.cuda.empty_cache()
    fh.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "out"))
