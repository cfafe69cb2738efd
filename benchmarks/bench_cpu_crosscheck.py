"""Time NumPy GEMM/GEMV here and print the CPU model's error for each way of getting --hw cpu.

    .venv/bin/python benchmarks/bench_cpu_crosscheck.py --calibrate      # the accuracy table
    .venv/bin/python benchmarks/bench_cpu_crosscheck.py --wait-quiet 900 --calibrate \\
        --save-to validation/cpu/measured_X.csv --calibrated-out validation/cpu/X.yaml
    .venv/bin/python benchmarks/bench_cpu_crosscheck.py --from-csv validation/cpu/X.csv \\
        --hw validation/cpu/X.yaml                                    # re-score, no timing
    .venv/bin/python benchmarks/bench_cpu_crosscheck.py --from-csv validation/cpu/Y.csv \\
        --refit validation/cpu/Y.yaml                      # refit a committed config to its data

In one run (so the ratios share the machine's state): optionally wait for a quiet machine,
calibrate (``neupims calibrate --hw cpu``'s code, written only with ``--calibrated-out``),
time the cross-check suite (GEMM 64^3 .. 4096^3, GEMV up to 16384 x 16384, fp32 and fp64,
one thread and NumPy's default thread count), and print the MAPE of every config:

* ``detected``: detection only, bandwidths from the MICROARCH table and default constants
  (what ``--hw cpu`` was before calibration existed, on a machine without committed fit);
* ``quick probe``: ``--hw cpu`` without a calibration file;
* ``calibrated``: ``--hw cpu`` after ``neupims calibrate --hw cpu``;
* any ``--hw`` file.

Statistic: one thread, process CPU time (a shared machine's waits excluded); several
threads, the wall minimum of the repeats (other processes only ever add time). The share
of the CPUs other processes used while timing is printed: above ~25 % the multi-thread
figures measure the contention, not the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def _blas(rows):
    return [r for r in rows if r.op.name in ("gemm", "gemv")]


def table(name, cfg, rows, cpu_fit) -> None:
    errs = cpu_fit.errors(cfg, rows)
    by: dict[str, list[float]] = {}
    for r, e in zip(rows, errs, strict=True):
        by.setdefault(cpu_fit.op_class(r.op, r.threads), []).append(float(e))
    blas = [(r, e) for r, e in zip(rows, errs, strict=True) if r.op.name in ("gemm", "gemv")]
    one = [e for r, e in blas if r.threads == 1]
    many = [e for r, e in blas if r.threads > 1]
    print(f"\n{name}:")
    print("  " + "  ".join(f"{c} {np.mean(v):5.1f}%" for c, v in sorted(by.items())))
    print(
        f"  GEMM+GEMV MAPE: 1 thread {np.mean(one) if one else np.nan:6.1f} % "
        f"(n={len(one)}), default threads {np.mean(many) if many else np.nan:6.1f} % "
        f"(n={len(many)}), all {np.mean(one + many):6.1f} %"
    )
    for r in rows:
        if r.op.name == "gemv" and (r.op.n, r.op.k) == (4096, 4096):
            pred = cpu_fit.predict(cfg, r.op, r.threads)
            print(
                f"  GEMV 4096x4096 {r.op.dtype} {r.threads}t: measured "
                f"{r.t_best_s * 1e3:7.3f} ms, predicted {pred * 1e3:7.3f} ms, "
                f"predicted/measured {pred / r.t_best_s:5.2f}"
            )


def refit(path: str, rows, cpu_fit) -> None:
    """Refit the efficiency constants of the config at ``path`` to ``rows`` (from the
    documented defaults, keeping measured bandwidths' 1.0) and rewrite it with labels."""
    from pathlib import Path

    from neupims.config import load_hw
    from neupims.config.hw_cpu import EFFICIENCY_KEYS
    from neupims.devices.cpu_calibrate import write_cpu_yaml
    from neupims.devices.cpu_detect import read_labels

    hw = load_hw(path)
    labels = read_labels(Path(path))
    labels.pop("efficiency", None)  # the block's own line; its keys are labelled below
    keep = {k: v for k, v in hw.efficiency.items() if k not in cpu_fit.FIT_KEYS}
    base = hw.model_copy(update={"efficiency": keep})
    res = cpu_fit.fit(base, cpu_fit.fit_rows(rows))
    eff = {k: base.eff(k) for k in EFFICIENCY_KEYS} | res.efficiency
    for k in res.efficiency:
        labels[f"efficiency.{k}"] = (
            f"fitted by benchmarks/bench_cpu_crosscheck.py --refit on {time.strftime('%Y-%m-%d')}"
            f" (cpu_fit.fit: {res.n} timings; mean |log err| {res.mean_abs_log_err:.3f})"
        )
    header = [ln[2:] for ln in Path(path).read_text().splitlines() if ln.startswith("# ")]
    write_cpu_yaml(path, hw.model_copy(update={"efficiency": eff}), labels, header)
    print(f"refitted {len(res.efficiency)} constants on {res.n} rows; wrote {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="full", choices=("quick", "default", "full"))
    ap.add_argument("--blas-only", action="store_true", help="time GEMM/GEMV only")
    ap.add_argument("--wait-quiet", type=float, default=0.0, metavar="S",
                    help="first wait up to S seconds for other processes to go quiet")  # fmt: skip
    ap.add_argument("--calibrate", action="store_true", help="calibrate here first")
    ap.add_argument("--calibrated-out", default=None, help="write the calibrated YAML here")
    ap.add_argument("--hw", nargs="*", default=[], help="more CPU YAMLs to score")
    ap.add_argument("--save-to", default=None, help="write the measurements to this CSV")
    ap.add_argument("--from-csv", default=None, help="skip timing; use these measurements")
    ap.add_argument("--refit", default=None, metavar="YAML",
                    help="refit this config's constants to the measurements and rewrite it")  # fmt: skip
    args = ap.parse_args()

    from neupims.config import load_hw
    from neupims.crosscheck.cpu import run_suite, suite_ops
    from neupims.devices import cpu_fit, cpu_probe
    from neupims.devices.cpu_detect import detect, quick_probe, this_cpu

    configs = {}
    if args.from_csv:
        rows = cpu_fit.read_measurements(args.from_csv)
        if args.refit:
            refit(args.refit, rows, cpu_fit)
            args.hw.append(args.refit)
    else:
        if args.wait_quiet:
            frac = cpu_probe.wait_until_quiet(timeout_s=args.wait_quiet)
            print(f"other processes used {frac:.0%} of the CPUs before starting")
        det = detect()
        configs["detected (table bandwidths, default constants)"] = det.config
        configs["quick probe (--hw cpu, not calibrated)"] = quick_probe(det).config
        if args.calibrate:
            from neupims.devices.cpu_calibrate import calibrate

            t0 = time.time()
            cal = calibrate(
                out=args.calibrated_out,
                write=bool(args.calibrated_out),
                progress=lambda m: print(f"\r{m[:70]:70s}", end="", file=sys.stderr),
            )
            print(f"\ncalibrated in {time.time() - t0:.0f} s; " + cal.header[-1])
            configs["calibrated (neupims calibrate --hw cpu)"] = cal.config
        else:
            configs[f"--hw cpu ({this_cpu().origin})"] = this_cpu().config
        p = det.config.nthreads
        pairs = suite_ops(args.suite, p)
        if args.blas_only:
            pairs = [(op, t) for op, t in pairs if op.name in ("gemm", "gemv")]
        others = cpu_probe.OtherLoad()
        t0 = time.time()
        rows, how = run_suite(
            pairs,
            progress=lambda i, n, op, t: print(
                f"\r{i + 1}/{n} {op.name} {t}t   ", end="", file=sys.stderr, flush=True
            ),
        )
        print(
            f"\ntimed {len(rows)} kernels in {time.time() - t0:.0f} s ({how}, default "
            f"threads {p}); other processes used {others.fraction():.0%} of the "
            f"{os.cpu_count()} CPUs meanwhile"
        )
        if args.save_to:
            cpu_fit.write_measurements(args.save_to, rows)
            print(f"wrote {args.save_to}")
    for path in args.hw:
        configs[path] = load_hw(path)
    for name, cfg in configs.items():
        table(name, cfg, rows, cpu_fit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
