"""Device check for the neighborhood-attention and long-convolution models (docs/kernels.md).

Standalone (PyTorch + Triton, no neupims): ``python3 validation/kernels/measure.py OUTDIR``.

1. ``natten_naive.csv``: Triton kernels that copy the thread mapping of NATTEN's naive 1-D
   CUDA kernels (written here from the mapping described in docs/kernels.md, not from
   NATTEN's code): QK with one thread per (query, neighbour) weight, threads of a warp on
   consecutive queries, a loop over the head dimension with two scalar loads per
   multiply-add; AV with one thread per (query, channel) output and a loop over the
   neighbours. Sizes are runtime arguments, not specialised, so every load is a scalar
   load of one element, as in NATTEN. FP32. Checked against a PyTorch reference first.
2. ``softmax.csv``: PyTorch softmax over the last (neighbour) axis of B*h*T*V tensors.
3. ``longconv.csv``: the FFT long convolution as HazyResearch/safari's ``long_conv.py``
   runs it (``rfft(u, n=2N)``, multiply by a cached ``rfft(k, n=2N)``, ``irfft``), in FP32
   and FP16, the real FFT alone, and ``conv1d`` (direct, depthwise) for short N.

Timing: CUDA events around the op, 3 warm-ups, median of 10 runs; an L2 flush (a 256 MiB
write) before each run. Every row carries the device and library versions.
"""

# ruff: noqa: B023, F821  (closures are called at once, inside their loop iteration)
from __future__ import annotations

import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

DEV = "cuda"
_FLUSH = None


def env_info() -> dict:
    p = torch.cuda.get_device_properties(0)
    try:
        drv = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,clocks.max.sm,clocks.max.mem",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20,
        ).stdout.strip()  # fmt: skip
    except Exception as exc:  # noqa: BLE001
        drv = f"unknown ({exc})"
    try:
        import triton

        tv = triton.__version__
    except Exception:  # noqa: BLE001
        tv = "none"
    return {
        "device": p.name,
        "sms": p.multi_processor_count,
        "driver_and_clocks": drv,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "triton": tv,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def timeit(fn, reps: int = 10, warm: int = 3) -> tuple[float, float]:
    """Median seconds and (max - min) / median over ``reps`` runs."""
    global _FLUSH
    if _FLUSH is None:
        _FLUSH = torch.empty(256 * 2**20, dtype=torch.uint8, device=DEV)
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        _FLUSH.fill_(1)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    med = statistics.median(times)
    return med, (max(times) - min(times)) / med


# ----------------------------------------------------------------------------- NA (Triton)
def na_kernels():
    import triton
    import triton.language as tl

    @triton.jit(do_not_specialize=["L", "D", "K"])
    def qk_kernel(q, k, attn, L, D, K, BLOCK: tl.constexpr):
        tb = tl.program_id(0)
        ki = tl.program_id(1)
        bh = tl.program_id(2)
        i = tb * BLOCK + tl.arange(0, BLOCK)
        live = i < L
        start = tl.minimum(tl.maximum(i - K // 2, 0), L - K)
        qp = q + bh * L * D + i * D
        kp = k + bh * L * D + (start + ki) * D
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for c in range(0, D):
            acc += tl.load(qp + c, mask=live, other=0.0) * tl.load(kp + c, mask=live, other=0.0)
        tl.store(attn + (bh * L + i) * K + ki, acc, mask=live)

    @triton.jit(do_not_specialize=["L", "D", "K", "total"])
    def av_kernel(attn, v, out, L, D, K, total, BLOCK: tl.constexpr):
        lin = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        live = lin < total
        c = lin % D
        t = lin // D
        i = t % L
        bh = t // L
        start = tl.minimum(tl.maximum(i - K // 2, 0), L - K)
        acc = tl.zeros([BLOCK], dtype=tl.float32)
        for j in range(0, K):
            w = tl.load(attn + (bh * L + i) * K + j, mask=live, other=0.0)
            x = tl.load(v + (bh * L + start + j) * D + c, mask=live, other=0.0)
            acc += w * x
        tl.store(out + lin, acc, mask=live)

    return qk_kernel, av_kernel


def na_reference(q, k, v, K):
    bh, L, _ = q.shape
    i = torch.arange(L, device=DEV)
    start = (i - K // 2).clamp(0, L - K)
    idx = start[:, None] + torch.arange(K, device=DEV)[None, :]  # [L, K]
    kn = k[:, idx]  # [bh, L, K, D]
    attn = torch.einsum("bld,blkd->blk", q, kn)
    out = torch.einsum("blk,blkd->bld", attn, v[:, idx])
    return attn, out


def measure_na(rows: list, env: dict) -> None:
    qk_kernel, av_kernel = na_kernels()
    block = 128

    def run(q, k, v, attn, out, L, D, K):
        bh = q.shape[0]

        def qk():
            qk_kernel[(triton_cdiv(L, block), K, bh)](q, k, attn, L, D, K, BLOCK=block, num_warps=4)

        def av():
            total = bh * L * D
            av_kernel[(triton_cdiv(total, block),)](attn, v, out, L, D, K, total, BLOCK=block,
                                                   num_warps=4)  # fmt: skip

        return qk, av

    # correctness on a small problem
    q, k, v = (torch.randn(2, 300, 32, device=DEV) for _ in range(3))
    attn = torch.empty(2, 300, 7, device=DEV)
    out = torch.empty_like(q)
    qk, av = run(q, k, v, attn, out, 300, 32, 7)
    qk()
    av()
    ra, ro = na_reference(q, k, v, 7)
    err = max((attn - ra).abs().max().item(), (out - ro).abs().max().item())
    print(f"NA Triton mimic max abs error vs reference: {err:.2e}", flush=True)
    assert err < 1e-3, err

    for batch, heads, L in ((4, 8, 8192), (16, 4, 16384)):
        for D in (32, 64, 128):
            for K in (7, 31, 63):
                bh = batch * heads
                q, k, v = (torch.randn(bh, L, D, device=DEV) for _ in range(3))
                attn = torch.empty(bh, L, K, device=DEV)
                out = torch.empty_like(q)
                qk, av = run(q, k, v, attn, out, L, D, K)
                for name, fn in (("qk", qk), ("av", av)):
                    t, spread = timeit(fn)
                    rows.append({"suite": "natten_naive", "kernel": name, "batch": batch,
                                 "heads": heads, "dims": L, "kernel_size": K, "head_dim": D,
                                 "dtype": "fp32", "measured_s": t, "spread": spread, **env})  # fmt: skip
                sm_in = attn.view(bh * L, K)
                t, spread = timeit(lambda: torch.softmax(sm_in, dim=-1))
                rows.append({"suite": "softmax", "kernel": "softmax", "batch": batch,
                             "heads": heads, "dims": L, "kernel_size": K, "head_dim": D,
                             "dtype": "fp32", "measured_s": t, "spread": spread, **env})  # fmt: skip
                print(f"NA B={batch} h={heads} L={L} d={D} k={K}: "
                      f"{[round(r['measured_s'] * 1e6, 1) for r in rows[-3:]]} us", flush=True)  # fmt: skip
                del q, k, v, attn, out


def triton_cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


# ----------------------------------------------------------------------------- long conv
def measure_longconv(rows: list, env: dict) -> None:
    batch, channels = 8, 256
    for dtype in (torch.float32, torch.float16):
        dname = "fp32" if dtype == torch.float32 else "fp16"
        for N in (1024, 4096, 16384, 65536):
            u = torch.randn(batch, channels, N, device=DEV, dtype=dtype)
            kk = torch.randn(channels, N, device=DEV, dtype=dtype)
            k_f = torch.fft.rfft(kk, n=2 * N)

            def conv():
                return torch.fft.irfft(torch.fft.rfft(u, n=2 * N) * k_f, n=2 * N)[..., :N]

            def fwd():
                return torch.fft.rfft(u, n=2 * N)

            for algo, fn in (("fft", conv), ("rfft_only", fwd)):
                try:
                    t, spread = timeit(fn)
                except RuntimeError as exc:  # e.g. half-precision cuFFT limits
                    print(f"longconv {algo} {dname} N={N}: {exc}", flush=True)
                    continue
                rows.append({"suite": "longconv", "kernel": algo, "batch": batch,
                             "heads": channels, "dims": N, "dtype": dname, "measured_s": t,
                             "spread": spread, **env})  # fmt: skip
            if dtype == torch.float32 and N <= 4096:
                w = kk.flip(-1)[:, None, :]  # conv1d correlates: flip for a convolution

                def direct():
                    return torch.nn.functional.conv1d(u, w, padding=N - 1, groups=channels)[..., :N]

                t, spread = timeit(direct, reps=5, warm=1)
                rows.append({"suite": "longconv", "kernel": "direct", "batch": batch,
                             "heads": channels, "dims": N, "dtype": dname, "measured_s": t,
                             "spread": spread, **env})  # fmt: skip
            print(f"longconv {dname} N={N}: "
                  f"{[(r['kernel'], round(r['measured_s'] * 1e6, 1)) for r in rows if r['suite'] == 'longconv' and r['dims'] == N and r['dtype'] == dname]}",
                  flush=True)  # fmt: skip
            del u, kk, k_f


COLUMNS = ["suite", "kernel", "batch", "heads", "dims", "kernel_size", "head_dim", "dtype",
           "measured_s", "spread", "device", "sms", "driver_and_clocks", "torch", "cuda",
           "cudnn", "triton", "time_utc"]  # fmt: skip


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "out")
    out.mkdir(parents=True, exist_ok=True)
    env = env_info()
    (out / "env.json").write_text(json.dumps(env, indent=1))
    print(env, flush=True)
    rows: list[dict] = []
    for part in (measure_longconv, measure_na):
        try:
            part(rows, env)
        except Exception as exc:  # noqa: BLE001  (keep what the other part measured)
            import traceback

            traceback.print_exc()
            print(f"{part.__name__} failed: {exc}", flush=True)
    with open(out / "kernels.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(f"{len(rows)} rows -> {out / 'kernels.csv'}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
