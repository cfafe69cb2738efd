"""``neupims replay TRACE.csv --hw HW.yaml -o costs.csv``."""

from __future__ import annotations

import argparse

from neupims.atomic import atomic_open


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("replay", help="estimate every op of a trace on a hardware config")
    p.add_argument("trace", help="trace CSV (see `neupims trace`)")
    p.add_argument(
        "--hw",
        required=True,
        help="hardware YAML path or name in hw_configs/ ('cpu' = this machine)",
    )
    p.add_argument(
        "--model", default=None, help="device model name (default: the most detailed for the kind)"
    )
    p.add_argument(
        "-o", "--output", default=None, help="costs CSV to write (default: print summary only)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neupims.config import load_hw
    from neupims.replay import fits_warning, replay, summarise
    from neupims.workloads.trace_io import read_trace

    trace = read_trace(args.trace)
    hw = load_hw(args.hw)
    df = replay(trace, hw, args.model)
    if args.output:
        with atomic_open(args.output, "w", newline="") as fh:
            df.to_csv(fh, index=False)
    print(summarise(df).text())
    if warning := fits_warning(df, hw):
        print(warning)
    if args.output:
        print(f"wrote {len(df)} rows to {args.output}")
    return 0
