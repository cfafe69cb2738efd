"""Measure ResNet-50 and VGG-16 convolutions as PyTorch runs them through cuDNN, under
both of PyTorch's algorithm choices, and cuDNN's own per-algorithm timings.

Standalone: needs only PyTorch and the standard library (the cuDNN library PyTorch
loaded is called through ctypes for ``--choice legacy``), so it runs on a GPU machine
without the neupims package.

    python3 validation/h200/measure_conv.py OUTDIR --choice {heuristic,benchmark,legacy} \
        --traces validation/h200/traces/resnet-50_b1.csv validation/h200/traces/vgg-16_b1.csv

The layer shapes come from ``neupims trace`` CSVs (conv2d rows), deduplicated: layers of
identical shape are timed once and ``count`` says how often the shape occurs in the nets.
Each shape is timed at batch 1, 32 and 128 in three math settings: fp16, fp32 with TF32
allowed (``torch.backends.cudnn.allow_tf32 = True``, PyTorch's default) and fp32 with
TF32 off.

* ``heuristic``: ``torch.backends.cudnn.benchmark = False`` (PyTorch's default): cuDNN's
  heuristics pick the engine (cuDNN backend API, heuristic mode INSTANT; PyTorch runs the
  first engine config that builds and runs).
* ``benchmark``: ``cudnn.benchmark = True``: PyTorch times every engine config cuDNN
  offers (heuristic list + fallback list, each run once) and keeps the fastest.

PyTorch caches the chosen plan per shape in one cache for both choices (Conv_v8.cpp,
``benchmark_cache``, whose key does not include the benchmark flag), so each choice runs
in its own process.

Per row: the median of CUDA-event timings after warm-up, each run after an L2 flush; the
kernels of one call with their device times (torch.profiler), from which ``cudnn_algo``
classifies the algorithm cuDNN ran; the memory allocated beyond the inputs (output +
workspace).

* ``legacy``: cuDNN's legacy API on the same shapes: ``cudnnGetConvolutionForwardAlgorithm_v7``
  (the heuristic's ranking of the eight cuDNN algorithms) and
  ``cudnnFindConvolutionForwardAlgorithmEx`` (each algorithm timed by cuDNN itself, its
  workspace and status). Its times are cuDNN's own (warm L2, no flush).
"""

# ruff: noqa: B023, F821  (closures are called at once, inside their loop iteration)
from __future__ import annotations

import argparse
import csv
import ctypes
import glob
import json
import os
import statistics
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F

DEV = "cuda"
T_START = time.time()
_FLUSH: torch.Tensor | None = None

COLUMNS = [
    "suite", "layer", "count", "op", "impl", "batch", "dtype", "c", "h", "w", "kout", "r",
    "s", "stride", "pad", "algo", "tf32_conv", "conv_algo_choice", "cudnn_algo",
    "measured_s", "reps", "spread", "first_call_s", "mem_extra_bytes", "kernel_sum_s",
    "kernels", "device", "driver", "torch", "cuda", "cudnn",
]  # fmt: skip
LEGACY_COLUMNS = [
    "suite", "layer", "count", "op", "batch", "dtype", "c", "h", "w", "kout", "r", "s",
    "stride", "pad", "tf32_conv", "math_type", "source", "rank", "cudnn_algo", "status",
    "time_s", "workspace_bytes", "device", "driver", "torch", "cuda", "cudnn",
]  # fmt: skip
#: cudnnConvolutionFwdAlgo_t, in enum order (cudnn_cnn library reference)
LEGACY_ALGOS = ["implicit_gemm", "implicit_precomp_gemm", "gemm", "direct", "fft",
                "fft_tiling", "winograd", "winograd_nonfused"]  # fmt: skip
MATHS = (("fp16", True), ("fp32", True), ("fp32", False))  # (dtype, allow_tf32)
DT = {"fp16": torch.float16, "fp32": torch.float32}


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
        "python": sys.version.split()[0],
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def read_shapes(paths):
    """Unique conv2d shapes of ``neupims trace`` CSVs: [(suite, layer, count, shape)]."""
    out, index = [], {}
    for path in paths:
        net = os.path.basename(path).split("_")[0].replace("-", "")
        with open(path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["op"] != "conv2d":
                    continue
                shape = tuple(
                    int(row[k]) for k in ("c", "h", "w", "kout", "r", "s", "stride", "pad")
                )
                key = (net, shape)
                if key in index:
                    out[index[key]][2] += 1
                else:
                    index[key] = len(out)
                    out.append([f"conv.{net}", row["layer"], 1, shape])
    # interleave the nets so that a time limit cuts both evenly
    by_net: dict[str, list] = {}
    for item in out:
        by_net.setdefault(item[0], []).append(item)
    merged = []
    lists = list(by_net.values())
    for i in range(max(len(v) for v in lists)):
        merged += [v[i] for v in lists if i < len(v)]
    return merged


def bench(fn, *, target_s=0.05, min_reps=5, max_reps=30):
    """Median seconds of ``fn`` (CUDA events), each run after an L2 flush."""
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


class FlushingWriter(csv.DictWriter):
    """A CSV writer that flushes every row (a run stopped at its time limit keeps them)."""

    def __init__(self, fh, **kw):
        super().__init__(fh, **kw)
        self._fh = fh

    def writerow(self, rowdict):
        out = super().writerow(rowdict)
        self._fh.flush()
        return out


def kernels_of(fn):
    """[(kernel name, device seconds, calls)] of one call of ``fn``, by torch.profiler."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    out = []
    for ev in prof.key_averages():
        t = getattr(ev, "device_time_total", None)
        if t is None:
            t = getattr(ev, "cuda_time_total", 0.0)
        if t and t > 0:
            out.append((ev.key, t * 1e-6, ev.count))
    return out


def classify(kernels) -> str:
    """cuDNN algorithm family from the kernel names of one call: FFT tiling launches its
    r2c kernel once per tile position (or runs 1-D ``fft1d`` kernels), plain FFT twice
    (filter and input); Winograd kernels name themselves."""
    names = " ".join(k[0].lower() for k in kernels)
    if "winograd" in names:
        return "winograd_nonfused" if "nonfused" in names or "4x4" in names else "winograd"
    if "fft" in names:
        r2c = sum(k[2] for k in kernels if "r2c" in k[0].lower())
        return "fft_tiling" if "fft1d" in names or r2c > 2 else "fft"
    if "implicit_convolve" in names or "implicit_gemm" in names or "fprop" in names:
        return "implicit_gemm"
    if "explicit_convolve" in names or "im2col" in names:
        return "gemm"
    if "conv" in names:
        return "other_conv"
    return "gemm" if "gemm" in names or "nvjet" in names else "unknown"


def run_torch(args, wr, env, shapes):
    choice = args.choice
    torch.backends.cudnn.benchmark = choice == "benchmark"
    torch.backends.cudnn.deterministic = False
    for suite, layer, count, (c, h, w, k, r, s, st, pad) in shapes:
        for batch in args.batches:
            for dname, tf32 in MATHS:
                if time.time() - T_START > args.budget_s:
                    print("time budget reached, stopping", flush=True)
                    return
                torch.backends.cudnn.allow_tf32 = tf32
                dt = DT[dname]
                try:
                    x = torch.randn(batch, c, h, w, device=DEV, dtype=dt)
                    wt = torch.randn(k, c, r, s, device=DEV, dtype=dt) * 0.05
                    fn = lambda: F.conv2d(x, wt, stride=st, padding=pad)  # noqa: E731
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    fn()  # benchmark mode: cuDNN's engines are timed here
                    torch.cuda.synchronize()
                    first = time.perf_counter() - t0
                    kern = kernels_of(fn)
                    mem = peak_extra(fn)
                    t, reps, sp = bench(fn)
                except torch.OutOfMemoryError:
                    print(f"OOM {layer} b{batch} {dname} tf32={tf32}", flush=True)
                    torch.cuda.empty_cache()
                    continue
                wr.writerow({
                    "suite": suite, "layer": layer, "count": count, "op": "conv2d",
                    "impl": f"cudnn.{choice}", "batch": batch, "dtype": dname, "c": c,
                    "h": h, "w": w, "kout": k, "r": r, "s": s, "stride": st, "pad": pad,
                    "algo": "auto", "tf32_conv": tf32, "conv_algo_choice": choice,
                    "cudnn_algo": classify(kern), "measured_s": t, "reps": reps,
                    "spread": round(sp, 4), "first_call_s": round(first, 6),
                    "mem_extra_bytes": mem, "kernel_sum_s": sum(kk[1] for kk in kern),
                    "kernels": json.dumps([[n, round(d, 9), cnt] for n, d, cnt in kern]),
                    **env,
                })  # fmt: skip
                del x, wt
        print(f"{layer} {(c, h, w, k, r, s, st, pad)} done ({time.time() - T_START:.0f} s)",
              flush=True)  # fmt: skip
        torch.cuda.empty_cache()


# ------------------------------------------------------------------ cuDNN legacy API
class FwdPerf(ctypes.Structure):
    """cudnnConvolutionFwdAlgoPerf_t (cudnn_cnn library reference)."""

    _fields_ = [("algo", ctypes.c_int), ("status", ctypes.c_int), ("time", ctypes.c_float),
                ("memory", ctypes.c_size_t), ("determinism", ctypes.c_int),
                ("mathType", ctypes.c_int), ("reserved", ctypes.c_int * 3)]  # fmt: skip


def load_cudnn():
    torch.backends.cudnn.version()  # PyTorch loads libcudnn here
    with open("/proc/self/maps") as fh:
        libs = {ln.split()[-1] for ln in fh if "libcudnn.so" in ln}
    cands = sorted(libs) or sorted(glob.glob(os.path.join(
        os.path.dirname(torch.__file__), "..", "nvidia", "cudnn", "lib", "libcudnn.so*")))  # fmt: skip
    if not cands:
        raise RuntimeError("libcudnn not found")
    return ctypes.CDLL(cands[0])


def run_legacy(args, wr, env, shapes):
    lib = load_cudnn()
    vp = ctypes.c_void_p

    def ok(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: cudnn status {rc}")

    handle = vp()
    ok(lib.cudnnCreate(ctypes.byref(handle)), "cudnnCreate")
    ws_bytes = 24 << 30
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device=DEV)
    for suite, layer, count, (c, h, w, k, r, s, st, pad) in shapes:
        for batch in args.batches:
            for dname, tf32 in MATHS:
                if time.time() - T_START > args.budget_s:
                    print("time budget reached, stopping", flush=True)
                    return
                dt = DT[dname]
                cdt = 2 if dname == "fp16" else 0  # CUDNN_DATA_HALF / FLOAT
                math = 1 if dname == "fp16" else (0 if tf32 else 3)  # TENSOR_OP/DEFAULT/FMA
                ho = (h + 2 * pad - r) // st + 1
                wo = (w + 2 * pad - s) // st + 1
                xd, yd, wd, cd = vp(), vp(), vp(), vp()
                try:
                    ok(lib.cudnnCreateTensorDescriptor(ctypes.byref(xd)), "x")
                    ok(lib.cudnnCreateTensorDescriptor(ctypes.byref(yd)), "y")
                    ok(lib.cudnnCreateFilterDescriptor(ctypes.byref(wd)), "w")
                    ok(lib.cudnnCreateConvolutionDescriptor(ctypes.byref(cd)), "conv")
                    ok(lib.cudnnSetTensor4dDescriptor(xd, 0, cdt, batch, c, h, w), "x4d")
                    ok(lib.cudnnSetTensor4dDescriptor(yd, 0, cdt, batch, k, ho, wo), "y4d")
                    ok(lib.cudnnSetFilter4dDescriptor(wd, cdt, 0, k, c, r, s), "w4d")
                    ok(lib.cudnnSetConvolution2dDescriptor(cd, pad, pad, st, st, 1, 1, 1, 0),
                       "conv2d")  # fmt: skip
                    ok(lib.cudnnSetConvolutionMathType(cd, math), "math")
                    x = torch.randn(batch, c, h, w, device=DEV, dtype=dt)
                    wt = torch.randn(k, c, r, s, device=DEV, dtype=dt) * 0.05
                    y = torch.empty(batch, k, ho, wo, device=DEV, dtype=dt)
                    torch.cuda.synchronize()
                    perf = (FwdPerf * 16)()
                    n = ctypes.c_int(0)
                    ok(lib.cudnnGetConvolutionForwardAlgorithm_v7(
                        handle, xd, wd, cd, yd, 16, ctypes.byref(n), perf), "get_v7")  # fmt: skip
                    rows = [("heuristic_v7", i, perf[i]) for i in range(n.value)]
                    perf2 = (FwdPerf * 16)()
                    n2 = ctypes.c_int(0)
                    ok(lib.cudnnFindConvolutionForwardAlgorithmEx(
                        handle, xd, vp(x.data_ptr()), wd, vp(wt.data_ptr()), cd, yd,
                        vp(y.data_ptr()), 16, ctypes.byref(n2), perf2, vp(ws.data_ptr()),
                        ctypes.c_size_t(ws_bytes)), "findEx")  # fmt: skip
                    rows += [("find", i, perf2[i]) for i in range(n2.value)]
                    for src, rank, p in rows:
                        wr.writerow({
                            "suite": suite, "layer": layer, "count": count, "op": "conv2d",
                            "batch": batch, "dtype": dname, "c": c, "h": h, "w": w,
                            "kout": k, "r": r, "s": s, "stride": st, "pad": pad,
                            "tf32_conv": tf32, "math_type": p.mathType, "source": src,
                            "rank": rank,
                            "cudnn_algo": LEGACY_ALGOS[p.algo] if 0 <= p.algo < 8 else p.algo,
                            "status": p.status,
                            "time_s": p.time * 1e-3 if p.time >= 0 else "",
                            "workspace_bytes": p.memory, **env,
                        })  # fmt: skip
                    del x, wt, y
                except Exception as exc:  # noqa: BLE001 - one shape must not lose the rest
                    print(f"legacy {layer} b{batch} {dname} tf32={tf32}: {exc}", flush=True)
                finally:
                    for fn_, d in (("cudnnDestroyTensorDescriptor", xd),
                                   ("cudnnDestroyTensorDescriptor", yd),
                                   ("cudnnDestroyFilterDescriptor", wd),
                                   ("cudnnDestroyConvolutionDescriptor", cd)):  # fmt: skip
                        if d.value:
                            getattr(lib, fn_)(d)
        print(f"legacy {layer} done ({time.time() - T_START:.0f} s)", flush=True)
        torch.cuda.empty_cache()


def run_algos(args, wr, env, shapes):
    """Each of cuDNN's eight forward algorithms forced through the legacy API
    (``cudnnConvolutionForward`` with an explicit algorithm and its own workspace size),
    timed like the PyTorch rows (L2 flush, CUDA events, median) with its kernels."""
    lib = load_cudnn()
    vp = ctypes.c_void_p

    def ok(rc, what):
        if rc != 0:
            raise RuntimeError(f"{what}: cudnn status {rc}")

    handle = vp()
    ok(lib.cudnnCreate(ctypes.byref(handle)), "cudnnCreate")
    ok(lib.cudnnSetStream(handle, vp(torch.cuda.current_stream().cuda_stream)), "stream")
    one, zero = ctypes.c_float(1.0), ctypes.c_float(0.0)
    for suite, layer, count, (c, h, w, k, r, s, st, pad) in shapes:
        for batch in args.batches:
            for dname, tf32 in MATHS:
                dt = DT[dname]
                cdt = 2 if dname == "fp16" else 0
                math = 1 if dname == "fp16" else (0 if tf32 else 3)
                ho = (h + 2 * pad - r) // st + 1
                wo = (w + 2 * pad - s) // st + 1
                xd, yd, wd, cd = vp(), vp(), vp(), vp()
                try:
                    ok(lib.cudnnCreateTensorDescriptor(ctypes.byref(xd)), "x")
                    ok(lib.cudnnCreateTensorDescriptor(ctypes.byref(yd)), "y")
                    ok(lib.cudnnCreateFilterDescriptor(ctypes.byref(wd)), "w")
                    ok(lib.cudnnCreateConvolutionDescriptor(ctypes.byref(cd)), "conv")
                    ok(lib.cudnnSetTensor4dDescriptor(xd, 0, cdt, batch, c, h, w), "x4d")
                    ok(lib.cudnnSetTensor4dDescriptor(yd, 0, cdt, batch, k, ho, wo), "y4d")
                    ok(lib.cudnnSetFilter4dDescriptor(wd, cdt, 0, k, c, r, s), "w4d")
                    ok(lib.cudnnSetConvolution2dDescriptor(cd, pad, pad, st, st, 1, 1, 1, 0), "c2d")
                    ok(lib.cudnnSetConvolutionMathType(cd, math), "math")
                    x = torch.randn(batch, c, h, w, device=DEV, dtype=dt)
                    wt = torch.randn(k, c, r, s, device=DEV, dtype=dt) * 0.05
                    y = torch.empty(batch, k, ho, wo, device=DEV, dtype=dt)
                    for algo, name in enumerate(LEGACY_ALGOS):
                        if time.time() - T_START > args.budget_s:
                            print("time budget reached, stopping", flush=True)
                            return
                        size = ctypes.c_size_t(0)
                        rc = lib.cudnnGetConvolutionForwardWorkspaceSize(
                            handle, xd, wd, cd, yd, algo, ctypes.byref(size)
                        )
                        row = {
                            "suite": suite,
                            "layer": layer,
                            "count": count,
                            "op": "conv2d",
                            "impl": f"cudnn.legacy.{name}",
                            "batch": batch,
                            "dtype": dname,
                            "c": c,
                            "h": h,
                            "w": w,
                            "kout": k,
                            "r": r,
                            "s": s,
                            "stride": st,
                            "pad": pad,
                            "algo": name,
                            "tf32_conv": tf32,
                            "conv_algo_choice": "forced",
                            "cudnn_algo": f"status={rc}",
                            "mem_extra_bytes": size.value,
                            **env,
                        }
                        if rc != 0 or size.value > (20 << 30):
                            wr.writerow(row)
                            continue
                        ws = torch.empty(max(size.value, 1), dtype=torch.uint8, device=DEV)

                        def fn():
                            ok(
                                lib.cudnnConvolutionForward(
                                    handle,
                                    ctypes.byref(one),
                                    xd,
                                    vp(x.data_ptr()),
                                    wd,
                                    vp(wt.data_ptr()),
                                    cd,
                                    algo,
                                    vp(ws.data_ptr()),
                                    ctypes.c_size_t(size.value),
                                    ctypes.byref(zero),
                                    yd,
                                    vp(y.data_ptr()),
                                ),
                                "forward",
                            )

                        try:
                            t0 = time.perf_counter()
                            fn()
                            torch.cuda.synchronize()
                            first = time.perf_counter() - t0
                            kern = kernels_of(fn)
                            t, reps, sp = bench(fn, target_s=0.03, min_reps=3, max_reps=20)
                        except RuntimeError as exc:
                            row["cudnn_algo"] = str(exc)
                            wr.writerow(row)
                            continue
                        finally:
                            del ws
                        row.update(
                            {
                                "cudnn_algo": name,
                                "measured_s": t,
                                "reps": reps,
                                "spread": round(sp, 4),
                                "first_call_s": round(first, 6),
                                "kernel_sum_s": sum(kk[1] for kk in kern),
                                "kernels": json.dumps(
                                    [[n, round(d, 9), cnt] for n, d, cnt in kern]
                                ),
                            }
                        )
                        wr.writerow(row)
                    del x, wt, y
                except Exception as exc:  # noqa: BLE001 - one shape must not lose the rest
                    print(f"algos {layer} b{batch} {dname} tf32={tf32}: {exc}", flush=True)
                finally:
                    for fn_, d in (
                        ("cudnnDestroyTensorDescriptor", xd),
                        ("cudnnDestroyTensorDescriptor", yd),
                        ("cudnnDestroyFilterDescriptor", wd),
                        ("cudnnDestroyConvolutionDescriptor", cd),
                    ):
                        if d.value:
                            getattr(lib, fn_)(d)
        print(f"algos {layer} done ({time.time() - T_START:.0f} s)", flush=True)
        torch.cuda.empty_cache()


def main(argv=None):
    global _FLUSH
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument(
        "--choice", choices=("heuristic", "benchmark", "legacy", "algos"), required=True
    )
    ap.add_argument("--traces", nargs="+", required=True, help="neupims trace CSVs")
    ap.add_argument("--batches", default="1,32,128")
    ap.add_argument("--budget-s", type=float, default=150.0, help="stop starting new rows after")
    ap.add_argument("--tag", default="", help="suffix of the output file (a repeat run)")
    args = ap.parse_args(argv)
    args.batches = [int(b) for b in args.batches.split(",")]
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    os.makedirs(args.outdir, exist_ok=True)
    torch.manual_seed(0)
    info = env_info()
    print(json.dumps(info), flush=True)
    with open(os.path.join(args.outdir, f"env_{args.choice}{args.tag}.json"), "w") as fh:
        json.dump(info, fh, indent=1)
    env = {"device": info["device"], "driver": info["driver_and_clocks"].split(",")[0],
           "torch": info["torch"], "cuda": info["cuda"], "cudnn": info["cudnn"]}  # fmt: skip
    shapes = read_shapes(args.traces)
    print(f"{len(shapes)} unique conv shapes", flush=True)
    _FLUSH = torch.empty(256 * 2**20, dtype=torch.uint8, device=DEV)
    legacy = args.choice == "legacy"
    tag = f"_{args.tag}" if args.tag else ""
    path = os.path.join(args.outdir, f"conv_{args.choice}{tag}.csv")
    with open(path, "w", newline="") as fh:
        wr = FlushingWriter(fh, fieldnames=LEGACY_COLUMNS if legacy else COLUMNS,
                            lineterminator="\n")  # fmt: skip
        wr.writeheader()
        try:
            runner = {"legacy": run_legacy, "algos": run_algos}.get(args.choice, run_torch)
            runner(args, wr, env, shapes)
        except Exception:  # noqa: BLE001 - keep what was measured
            traceback.print_exc()
    print(f"done in {time.time() - T_START:.0f} s: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
