"""``neupims crosscheck --hw cpu -o DIR``: time NumPy kernels on this CPU, compare with the model.

Times GEMM and GEMV (fp32 and fp64, one BLAS thread and all threads), im2col conv2d and
element-wise ops (NumPy runs those on one thread), writes

* ``cpu_crosscheck.csv``: every op, its thread count, measured wall median and minimum
  and CPU time, ``measured_s`` (CPU time on one thread, wall minimum on more: see
  ``cpu_fit.Measurement``), the prediction and its absolute percentage error;
* ``cpu_errors.csv``: mean and max error per class (``gemm fp32 1t``, ...);
* ``cpu_parity.png``: log-log measured vs predicted;
* ``cpu_detection.txt``: which config values of this machine (``--hw cpu``) were detected,
  measured, fitted, probed or assumed.

This machine is shared and noisy: every time is the median of at least three repeats
after a warm-up, and multi-threaded times on a busy 2-core VM vary the most (docs/cpu.md).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from neupims.atomic import atomic_write_text
from neupims.crosscheck import register_checker, too_big
from neupims.crosscheck.report import write_report
from neupims.devices.cpu_detect import describe_detection, this_cpu
from neupims.devices.cpu_fit import (
    Measurement,
    kernel,
    measure,
    op_class,
    predict,
    read_measurements,
    write_measurements,
)
from neupims.devices.cpu_probe import BlasThreads
from neupims.ops import Conv2d, Elementwise, Gemm, Gemv, Op

SUITES = ("quick", "default", "full")


def gemm_shapes(suite: str) -> list[tuple[int, int, int]]:
    """(m, n, k) of the GEMMs timed; ``full`` spans 64^3 to 4096^3 (issue 6)."""
    quick = [(64, 64, 64), (128, 128, 128), (256, 256, 256), (512, 512, 512),
             (32, 512, 512), (512, 128, 256)]  # fmt: skip
    if suite == "quick":
        return quick
    default = quick + [(1024, 1024, 1024), (256, 1024, 1024), (1024, 64, 1024),
                       (96, 96, 96), (384, 384, 384), (768, 768, 768)]  # fmt: skip
    if suite == "default":
        return default
    return default + [
        (1536, 1536, 1536), (2048, 2048, 2048), (3072, 3072, 3072), (4096, 4096, 4096),
        (16, 4096, 4096), (128, 4096, 4096), (4096, 128, 4096), (4096, 4096, 128),
        (2048, 512, 2048), (512, 2048, 512), (1024, 4096, 1024), (64, 4096, 64),
    ]  # fmt: skip


def gemv_shapes(suite: str) -> list[tuple[int, int]]:
    """(rows, cols) of the GEMVs timed; ``full`` reaches 16384 x 16384."""
    quick = [(256, 256), (1024, 1024), (2048, 2048)]
    if suite == "quick":
        return quick
    default = quick + [(512, 512), (4096, 4096), (4096, 1024), (8192, 8192)]
    if suite == "default":
        return default
    return default + [(11008, 4096), (4096, 11008), (16384, 4096), (16384, 16384)]


def other_ops(suite: str) -> list[Op]:
    """Element-wise and conv2d ops (one thread: NumPy does not thread them)."""
    sizes = [2**14, 2**20] if suite == "quick" else [2**14, 2**17, 2**20, 2**23]
    ops: list[Op] = []
    # (np.maximum, i.e. relu, takes a slower NaN-propagating path: not a streaming kernel)
    for kind in ("add", "copy") if suite == "quick" else ("add", "mul", "copy"):
        for e in sizes:
            ops.append(Elementwise(kind, e, "fp32"))
    convs = [Conv2d(2, 16, 32, 32, 32, 3, 3, algo="im2col")]
    if suite != "quick":
        convs += [
            Conv2d(2, 64, 56, 56, 64, 3, 3, algo="im2col"),
            Conv2d(1, 3, 227, 227, 96, 11, 11, stride=4, algo="im2col"),
            Conv2d(4, 128, 28, 28, 128, 3, 3, algo="im2col"),
        ]
    return ops + convs


def suite_ops(suite: str, all_threads: int) -> list[tuple[Op, int]]:
    """(op, threads) pairs of a suite: BLAS ops at 1 and ``all_threads`` threads."""
    if suite not in SUITES:
        raise ValueError(f"suite must be one of {SUITES}, got {suite!r}")
    threads = sorted({1, all_threads})
    out: list[tuple[Op, int]] = []
    for dtype in ("fp32", "fp64"):
        for p in threads:
            out += [(Gemm(m, n, k, dtype=dtype), p) for m, n, k in gemm_shapes(suite)]
            out += [(Gemv(1, r, c, dtype=dtype), p) for r, c in gemv_shapes(suite)]
    out += [(op, 1) for op in other_ops(suite)]
    return out


def _trace_ops(
    trace, all_threads: int, ram_bytes: float | None = None
) -> tuple[list[tuple[Op, int]], list[str]]:
    ops, skipped = [], []
    for t in trace:
        if why := too_big(t.op, ram_bytes):  # before kernel(), which allocates the operands
            skipped.append(f"{t.layer or t.op.name}: {why}")
            continue
        try:
            kernel(t.op)
        except ValueError as exc:
            skipped.append(f"{t.layer or t.op.name}: {exc}")
            continue
        ops.append((t.op, all_threads if isinstance(t.op, Gemm) else 1))
    return ops, skipped


#: Environment variables that fix the thread count of the common BLAS libraries at load.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def run_suite(pairs: Sequence[tuple[Op, int]], min_time: float = 0.05, progress=None,
              ctl=None):  # fmt: skip
    """Time every (op, threads) pair. The BLAS thread count is set in process (threadpoolctl
    or OpenBLAS through ctypes); when neither works, each thread count runs in a subprocess
    started with the thread environment variables set (:data:`THREAD_ENV`)."""
    ctl = ctl or BlasThreads()
    if not ctl.available:
        return _run_in_subprocesses(pairs, min_time), "subprocess with " + "/".join(THREAD_ENV)
    rows = []
    for i, (op, p) in enumerate(pairs):
        if progress:
            progress(i, len(pairs), op, p)
        rows.append(measure(op, p, ctl, min_time=min_time))
    ctl.set(max(p for _, p in pairs))
    return rows, ctl.how


def _run_in_subprocesses(pairs: Sequence[tuple[Op, int]], min_time: float):
    by_threads: dict[int, list[int]] = {}
    for i, (_, p) in enumerate(pairs):
        by_threads.setdefault(p, []).append(i)
    out: list[Measurement | None] = [None] * len(pairs)
    with tempfile.TemporaryDirectory() as tmp:
        for p, idx in by_threads.items():
            src, dst = Path(tmp) / f"in{p}.csv", Path(tmp) / f"out{p}.csv"
            # the request reuses the measurement format with zero timings
            write_measurements(src, [Measurement(pairs[i][0], p, 0.0, 0.0, 0) for i in idx])
            env = {**os.environ, **{k: str(p) for k in THREAD_ENV}}
            # the subprocess imports only the measuring module (no pandas, no matplotlib)
            code = ("from neupims.devices.cpu_fit import measure_requests; "
                    f"measure_requests({str(src)!r}, {str(dst)!r}, {min_time!r})")  # fmt: skip
            subprocess.run([sys.executable, "-c", code], env=env, check=True)
            for i, m in zip(idx, read_measurements(dst), strict=True):
                out[i] = m
    return [m for m in out if m is not None]


def report(hw, rows, outdir: Path) -> dict[str, float]:
    """Write the CSVs and the parity plot; return MAPE (%) per class plus ``all``."""
    recs = []
    for r in rows:
        pred = predict(hw, r.op, r.threads)
        recs.append({
            **r.row(), "class": op_class(r.op, r.threads), "predicted_s": pred,
            "t_median_s": r.t_median_s, "t_min_s": r.t_min_s, "t_cpu_s": r.t_cpu_s,
            "measured_s": r.t_best_s,
        })  # fmt: skip
    df = pd.DataFrame(recs)
    df, per = write_report(
        df,
        outdir,
        "cpu",
        f"CPU model vs NumPy on {hw.name}",
        "measured (s; 1 thread: CPU time, more: wall minimum)",
        band=0.15,
    )
    out = {row["class"]: float(row["mape_pct"]) for _, row in per.iterrows()}
    out["all"] = float(df["ape_pct"].mean())
    blas = df["class"].str.startswith(("gemm", "gemv"))
    one = blas & (df["threads"] == 1)
    out["gemm+gemv"] = float(df.loc[blas, "ape_pct"].mean()) if blas.any() else float("nan")
    out["gemm+gemv 1t"] = float(df.loc[one, "ape_pct"].mean()) if one.any() else float("nan")
    return out


@register_checker("cpu")
def check(hw, trace, outdir: Path, quick: bool = False, suite: str | None = None) -> int:
    """Time the suite (or the NumPy-runnable ops of ``trace``) and compare with ``hw``."""
    outdir = Path(outdir)
    det = this_cpu()
    desc = describe_detection(det)
    print(desc)
    if hw.name != det.config.name:
        print(
            f"warning: --hw {hw.name!r} is not this machine ({det.config.name!r}); "
            "comparing NumPy timings here with that config's predictions"
        )
    all_threads = min(hw.nthreads, os.cpu_count() or 1)
    if trace is not None:
        pairs, skipped = _trace_ops(trace, all_threads, det.config.memory_capacity_bytes)
        for s in skipped:
            print(f"skipped {s}")
        if not pairs:
            print("no op of the trace can be timed with NumPy")
            return 1
    else:
        pairs = suite_ops(suite or ("quick" if quick else "default"), all_threads)
    rows, how = run_suite(pairs)
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(outdir / "cpu_detection.txt", desc + f"\nthread control: {how}\n")
    res = report(hw, rows, outdir)
    print(f"{len(rows)} kernels timed (thread control: {how}); MAPE per class:")
    for cls, v in sorted(res.items()):
        print(f"  {cls:18s} {v:6.1f} %")
    print(f"wrote {outdir}/cpu_crosscheck.csv, cpu_errors.csv, cpu_parity.png")
    return 0
