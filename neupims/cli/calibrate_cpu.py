"""``neupims calibrate --hw cpu [-o F.yaml]``: measure this machine's CPU, fit the CPU model's
efficiency constants and write the calibrated YAML (``neupims.devices.cpu_calibrate``).

``--hw cpu`` then uses that file whenever it runs on a machine with the same key; with
``-o`` the file goes where asked and is used as ``--hw F.yaml``.
"""

from __future__ import annotations

import argparse
import sys
import time

from neupims.devices import cpu_calibrate, cpu_fit
from neupims.errors import ConfigError


def run_cpu(args: argparse.Namespace) -> int:
    if args.measured or args.write:
        raise ConfigError("--hw cpu: --measured and --write are for GPU configs; "
                          "the CPU is measured live (use -o to choose the file)")  # fmt: skip
    t0 = time.perf_counter()
    cal = cpu_calibrate.calibrate(
        out=args.output, progress=lambda msg: print(msg, file=sys.stderr, flush=True)
    )
    cfg = cal.config
    print(f"calibrated {cfg.name!r} in {time.perf_counter() - t0:.0f} s")
    for line in cal.header[3:]:
        print(f"  {line}")
    print("fitted: " + ", ".join(f"{k}={v:g}" for k, v in sorted(cal.fit.efficiency.items())))
    by: dict[str, list[float]] = {}
    for r, e in zip(cal.rows, cpu_fit.errors(cfg, cal.rows), strict=True):
        by.setdefault(cpu_fit.op_class(r.op, r.threads), []).append(float(e))
    print("model vs the timed suite (in sample), MAPE per class:")
    for cls, es in sorted(by.items()):
        print(f"  {cls:16s} n={len(es):2d}  {sum(es) / len(es):6.1f} %")
    print(f"wrote {cal.path}")
    return 0
