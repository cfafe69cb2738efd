"""``neupims crosscheck --hw HW [TRACE.csv] -o DIR``: time ops on this machine's real
device and compare with the model. Dispatches on the config's ``kind`` through the
registry in :mod:`neupims.crosscheck` (``gpu``: PyTorch on CUDA; ``cpu``: NumPy)."""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

import neupims.devices  # noqa: F401  registers --hw cpu
from neupims.config import load_hw
from neupims.crosscheck import get_checker
from neupims.errors import NeupimsError
from neupims.workloads.trace_io import read_trace


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "crosscheck", help="time ops on this machine's device and compare with the model"
    )
    p.add_argument("trace", nargs="?", default=None, help="trace CSV (default: a built-in set)")
    p.add_argument("--hw", required=True, help="hardware YAML path or name in hw_configs/")
    p.add_argument("-o", "--output", required=True, help="directory for the results")
    p.add_argument("--quick", action="store_true", help="a smaller set, for a fast look")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    hw = load_hw(args.hw)
    trace = read_trace(args.trace) if args.trace else None
    try:
        checker = get_checker(hw.kind)
    except KeyError as exc:
        raise NeupimsError(str(exc.args[0])) from None
    kwargs = {}
    if "quick" in inspect.signature(checker).parameters:
        kwargs["quick"] = args.quick
    return int(checker(hw, trace, Path(args.output), **kwargs))
