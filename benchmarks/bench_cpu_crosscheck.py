"""Time the full CPU cross-check suite on this machine and print the model's error.

    .venv/bin/python benchmarks/bench_cpu_crosscheck.py             # measure, fit, print
    .venv/bin/python benchmarks/bench_cpu_crosscheck.py --save      # also write the fit data
    .venv/bin/python benchmarks/bench_cpu_crosscheck.py --from-csv validation/cpu/X.csv

Measures GEMM (64^3 .. 4096^3) and GEMV (up to 16384 x 16384), fp32 and fp64, on one and
on all BLAS threads, plus element-wise and im2col conv2d ops (about 2.5 minutes on a
2-core VM). ``--save`` writes ``validation/cpu/measured_<signature>.csv``, the data that
``cpu_detect`` fits this machine's efficiency constants on (single-thread rows; the
statistic is the CPU time of one thread, see ``cpu_fit.Measurement``). Prints the MAPE of
the defaults (no fit), of the in-sample fit and of 2-fold cross-validation (held out),
per class and over the single-thread GEMM/GEMV shapes (issue 6 target: <= 15 %).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="full", choices=("quick", "default", "full"))
    ap.add_argument("--save", action="store_true", help="write validation/cpu/measured_*.csv")
    ap.add_argument("--save-to", default=None, help="write the measurements to this CSV")
    ap.add_argument("--from-csv", default=None, help="skip timing; use these measurements")
    ap.add_argument(
        "--check-fit",
        action="store_true",
        help="also score the committed fit (validation/cpu/) on these rows: out of sample "
        "when they come from another session",
    )
    args = ap.parse_args()

    from neupims.crosscheck.cpu import run_suite, suite_ops
    from neupims.devices import cpu_fit
    from neupims.devices.cpu_detect import VALIDATION_DIR, detect, signature

    base = detect(fit=False).config
    if args.from_csv:
        rows = cpu_fit.read_measurements(args.from_csv)
    else:
        pairs = suite_ops(args.suite, os.cpu_count() or 1)
        t0 = time.time()
        load0 = os.getloadavg()[0]
        rows, how = run_suite(
            pairs,
            progress=lambda i, n, op, p: print(
                f"\r{i + 1}/{n} {op.name} {p}t   ", end="", file=sys.stderr, flush=True
            ),
        )
        print(
            f"\ntimed {len(rows)} kernels in {time.time() - t0:.0f} s ({how}); "
            f"1-min load average {load0:.1f} before, {os.getloadavg()[0]:.1f} after "
            f"on {os.cpu_count()} CPUs"
        )
        if args.save:
            path = VALIDATION_DIR / f"measured_{signature(base.name, base.cores)}.csv"
            cpu_fit.write_measurements(path, rows)
            print(f"wrote {path}")
        if args.save_to:
            cpu_fit.write_measurements(args.save_to, rows)
            print(f"wrote {args.save_to}")

    train = cpu_fit.fit_rows(rows)
    if args.check_fit:
        committed = detect().config
        blas1 = [r for r in train if r.op.name in ("gemm", "gemv")]
        print(
            f"committed fit ({committed.efficiency}) on these rows: single-thread "
            f"GEMM/GEMV MAPE {cpu_fit.mape(committed, blas1):.1f} %, all single-thread "
            f"{cpu_fit.mape(committed, train):.1f} %"
        )
    t0 = time.time()
    fitted = cpu_fit.fit(base, train)
    cfg = base.model_copy(update={"efficiency": fitted.efficiency})
    print(
        f"fit of {len(fitted.efficiency)} constants on {len(train)} single-thread rows "
        f"in {time.time() - t0:.1f} s: mean |log error| {fitted.mean_abs_log_err:.3f}"
    )
    for k, v in fitted.efficiency.items():
        print(f"  {k:12s} {v:.4g}")
    by: dict[str, list[float]] = {}
    for r, e in zip(rows, cpu_fit.errors(cfg, rows), strict=True):
        by.setdefault(cpu_fit.op_class(r.op, r.threads), []).append(float(e))
    print("APE per class (fitted; 1t: CPU time, >1t: wall median):")
    for cls, es in sorted(by.items()):
        print(f"  {cls:20s} n={len(es):3d} mean {np.mean(es):6.1f} %  max {max(es):6.1f} %")
    one = [r for r in train if r.op.name in ("gemm", "gemv")]
    many = [r for r in rows if r.op.name in ("gemm", "gemv") and r.threads > 1]
    shapes = {(r.op.m, r.op.n, r.op.k) for r in one}
    print(f"single-thread GEMM/GEMV: {len(shapes)} shapes x fp32/fp64 = {len(one)} timings")
    print(f"  defaults (no fit):          MAPE {cpu_fit.mape(base, one):6.1f} %")
    print(f"  fitted, in-sample:          MAPE {cpu_fit.mape(cfg, one):6.1f} %  (target <= 15 %)")
    print(f"  2-fold cross-validation:    MAPE {cpu_fit.cross_validate(base, one):6.1f} %")
    print(f"  fitted, vs wall median:     MAPE {cpu_fit.mape(cfg, one, 't_median_s'):6.1f} %")
    print(f"  fitted, vs wall minimum:    MAPE {cpu_fit.mape(cfg, one, 't_min_s'):6.1f} %")
    if many:
        print(
            f"multi-thread GEMM/GEMV ({len(many)} timings, wall median; not fitted): "
            f"MAPE {cpu_fit.mape(cfg, many):6.1f} %, vs wall minimum "
            f"{cpu_fit.mape(cfg, many, 't_min_s'):6.1f} %"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
