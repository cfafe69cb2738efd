"""Time the prefill of a randomly initialised Llama-like block stack, padded vs packed.

Sanity check of neupims' Prepacking model (docs/kernels.md). The stack has
Sheared-LLaMA-1.3B's shapes (d_model 2048, 16 heads of 128, SwiGLU 5504, RMSNorm; no RoPE,
no embedding, no LM head), ``--layers`` blocks, fp16, PyTorch SDPA. For each case of
make_cases.py (a batch of prompt lengths and its packed rows) it times one forward under:

* ``padded_mask``: one row per prompt, right-padded to the longest; a dense fp16 [B,1,W,W]
  causal + padding mask built inside the forward and given to SDPA (Hugging Face's setup);
* ``packed_mask``: the packed rows, padded to the longest row; a block-diagonal causal mask
  (the paper's Hugging Face implementation);
* ``packed_varlen``: all prompts as one flat token stream; attention per prompt through a
  jagged nested tensor (one variable-length SDPA call), or a loop of causal SDPA calls per
  prompt when nested tensors are unavailable (the column ``varlen_impl`` says which).

Every layer's K and V are kept until the forward returns (as a KV cache is). Times are CUDA
event medians of ``--reps`` forwards after ``--warmup``; memory is the peak allocated above
the weights. Usage: python measure_prefill.py CASES.json OUT.csv [--layers 4]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics

import torch
import torch.nn.functional as F

D, H, HD, FF = 2048, 16, 128, 5504
DT = torch.float16
DEV = "cuda"


def make_weights(layers: int):
    g = torch.Generator(device=DEV).manual_seed(0)

    def w(*shape):
        return (torch.randn(*shape, generator=g, device=DEV, dtype=DT) * 0.02).contiguous()

    return [dict(n1=torch.ones(D, device=DEV, dtype=DT), qkv=w(3 * D, D), o=w(D, D),
                 n2=torch.ones(D, device=DEV, dtype=DT), up=w(2 * FF, D), down=w(D, FF))
            for _ in range(layers)]  # fmt: skip


def rmsnorm(x, w):
    v = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(v + 1e-5)).to(DT) * w


def block_mask(segments: list[list[int]], width: int) -> torch.Tensor:
    """fp16 additive mask [rows, 1, width, width]: causal inside each prompt's segment;
    pad queries attend only themselves (no fully masked row, as Hugging Face ensures)."""
    rows = len(segments)
    seg = torch.full((rows, width), -1, dtype=torch.int32, device=DEV)
    for r, lens in enumerate(segments):
        s = 0
        for i, n in enumerate(lens):
            seg[r, s : s + n] = i
            s += n
    pos = torch.arange(width, device=DEV)
    same = seg[:, :, None] == seg[:, None, :]
    valid = (seg[:, :, None] >= 0) & same & (pos[None, None, :] <= pos[None, :, None])
    valid |= torch.eye(width, dtype=torch.bool, device=DEV)[None]
    m = torch.zeros((rows, width, width), dtype=DT, device=DEV)
    m.masked_fill_(~valid, torch.finfo(DT).min)
    return m[:, None]


def forward_dense(ws, x, segments):
    r, w, _ = x.shape
    mask = block_mask(segments, w)
    kv = []
    for L in ws:
        h = rmsnorm(x, L["n1"])
        q, k, v = (h @ L["qkv"].T).view(r, w, 3, H, HD).permute(2, 0, 3, 1, 4)
        kv.append((k, v))
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + a.transpose(1, 2).reshape(r, w, D) @ L["o"].T
        g, u = (rmsnorm(x, L["n2"]) @ L["up"].T).chunk(2, -1)
        x = x + (F.silu(g) * u) @ L["down"].T
    return x, kv


def forward_varlen(ws, x, lengths, impl):
    t = x.shape[1]
    offs = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], device=DEV)
    kv = []
    for L in ws:
        h = rmsnorm(x, L["n1"])
        q, k, v = (h @ L["qkv"].T).view(t, 3, H, HD).unbind(1)  # [t, H, HD]
        kv.append((k, v))
        if impl == "nested":
            nq, nk, nv = (torch.nested.nested_tensor_from_jagged(z.contiguous(), offs)
                          .transpose(1, 2) for z in (q, k, v))  # fmt: skip
            a = F.scaled_dot_product_attention(nq, nk, nv, is_causal=True)
            a = a.transpose(1, 2).contiguous().values()
        else:
            parts, s = [], 0
            for n in lengths:
                qs, ks, vs = (z[s : s + n].transpose(0, 1)[None] for z in (q, k, v))
                parts.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True)[0]
                             .transpose(0, 1))  # fmt: skip
                s += n
            a = torch.cat(parts)
        x = x + a.reshape(1, t, D) @ L["o"].T
        g, u = (rmsnorm(x, L["n2"]) @ L["up"].T).chunk(2, -1)
        x = x + (F.silu(g) * u) @ L["down"].T
    return x, kv


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        out = fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
        del out
    return times, torch.cuda.max_memory_allocated() - base


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases")
    ap.add_argument("out")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=10)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    ws = make_weights(args.layers)
    wbytes = torch.cuda.memory_allocated()
    impl = "nested"
    try:
        forward_varlen(ws, torch.randn(1, 12, D, device=DEV, dtype=DT), [5, 7], "nested")
    except Exception as exc:  # noqa: BLE001 - any failure: use the per-prompt loop
        print("nested-tensor SDPA unavailable, per-prompt loop:", repr(exc)[:200])
        impl = "loop"
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "driver": torch.cuda.get_device_properties(0).name}  # fmt: skip
    try:
        import subprocess

        meta["driver"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    except OSError:
        pass
    rows_out = []
    for case in json.load(open(args.cases)):
        lengths, rows = case["lengths"], case["rows"]
        variants = {
            "padded_mask": [[n] for n in lengths],
            "packed_mask": [[lengths[i] for i in r] for r in rows],
        }
        for name, segments in variants.items():
            width = max(sum(s) for s in segments)
            x = torch.randn(len(segments), width, D, device=DEV, dtype=DT)
            times, peak = timed(lambda x=x, s=segments: forward_dense(ws, x, s), args.warmup,
                                args.reps)  # fmt: skip
            rows_out.append({**{k: case[k] for k in ("case", "dataset", "clip", "batch", "seed")},
                             "variant": name, "varlen_impl": "", "rows": len(segments),
                             "width": width, "useful_tokens": sum(lengths),
                             "tensor_tokens": len(segments) * width, "times": times,
                             "peak": peak})  # fmt: skip
        x = torch.randn(1, sum(lengths), D, device=DEV, dtype=DT)
        times, peak = timed(lambda x=x, n=lengths: forward_varlen(ws, x, n, impl), args.warmup,
                            args.reps)  # fmt: skip
        rows_out.append({**{k: case[k] for k in ("case", "dataset", "clip", "batch", "seed")},
                         "variant": "packed_varlen", "varlen_impl": impl, "rows": 1,
                         "width": sum(lengths), "useful_tokens": sum(lengths),
                         "tensor_tokens": sum(lengths), "times": times, "peak": peak})  # fmt: skip
        print(case["case"], [(r["variant"], round(statistics.median(r["times"]), 3))
                             for r in rows_out[-3:]], flush=True)  # fmt: skip
    with open(args.out, "w", newline="") as f:
        cols = ["case", "dataset", "clip", "batch", "seed", "variant", "varlen_impl", "layers",
                "rows", "width", "useful_tokens", "tensor_tokens", "median_ms", "p10_ms",
                "p90_ms", "peak_bytes_above_weights", "weight_bytes", "device", "driver",
                "torch", "cuda", "cudnn"]  # fmt: skip
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows_out:
            t = sorted(r.pop("times"))
            w.writerow({**{k: v for k, v in r.items() if k != "peak"}, "layers": args.layers,
                        "median_ms": statistics.median(t), "p10_ms": t[len(t) // 10],
                        "p90_ms": t[(9 * len(t)) // 10], "peak_bytes_above_weights": r["peak"],
                        "weight_bytes": wbytes, **meta})  # fmt: skip


if __name__ == "__main__":
    main()
