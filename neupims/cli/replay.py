"""``neupims replay TRACE.csv --hw HW [--dispatch {eager,graph}] [-o costs.csv] [--summary F.json]``."""

from __future__ import annotations

import argparse
import json

from neupims.atomic import atomic_open, atomic_write_text
from neupims.config import load_hw
from neupims.replay import fits_warning, replay_step, step_text
from neupims.workloads.trace_io import read_trace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="cost a trace on a hardware config: every op, and the whole step"
    )
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
        "--dispatch",
        choices=("eager", "graph", "serial"),
        default=None,
        help="how the host launches the step's ops: GPUs 'eager' (plain PyTorch, the default) "
        "or 'graph' (a captured CUDA graph); other devices run ops back to back ('serial')",
    )
    p.add_argument(
        "-o", "--output", default=None, help="per-op costs CSV to write (isolated op times)"
    )
    p.add_argument(
        "--summary",
        default=None,
        help="JSON file for the step: step_latency_s, dispatch, gpu_busy_s (busy_s), host_s, "
        "sum_isolated_s, ops, flops, bytes, peak_footprint_bytes",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    trace = read_trace(args.trace)
    hw = load_hw(args.hw)
    df, step = replay_step(trace, hw, args.model, args.dispatch)
    if args.output:
        with atomic_open(args.output, "w", newline="") as fh:
            df.to_csv(fh, index=False)
    if args.summary:
        d = {"trace": str(args.trace), "hw": hw.name, **step.as_dict()}
        atomic_write_text(args.summary, json.dumps(d, indent=1) + "\n")
    print(step_text(step))
    if warning := fits_warning(df, hw):
        print(warning)
    if args.output:
        print(f"wrote {len(df)} rows to {args.output}")
    if args.summary:
        print(f"wrote the step summary to {args.summary}")
    return 0
