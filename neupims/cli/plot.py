"""``neupims plot DIR``: redraw an experiment's figures from DIR/results.csv."""

from __future__ import annotations

import argparse

from matplotlib.figure import Figure

from neupims.errors import ConfigError
from neupims.plots import plot_dir


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="redraw an experiment's figures from its stored results",
        description="Read DIR/experiment.yaml and DIR/results.csv (written by `neupims run`) "
        "and draw the experiment's figures as PNG and PDF without re-running anything.",
    )
    p.add_argument("dir", help="experiment output folder (holds results.csv, experiment.yaml)")
    p.add_argument(
        "-o", "--output", default=None, help="folder for the figures (default: DIR/figures)"
    )
    p.add_argument(
        "--format",
        default="png,pdf",
        help="comma-separated figure formats (default: png,pdf)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    formats = tuple(f.strip().lower() for f in args.format.split(",") if f.strip())
    known = sorted(Figure().canvas.get_supported_filetypes())
    bad = [f for f in formats if f not in known]
    if bad or not formats:
        raise ConfigError(
            f"--format {args.format!r}: expected comma-separated figure formats among {known}"
        )
    paths = plot_dir(args.dir, args.output, formats=formats)
    for path in paths:
        print(path)
    return 0
