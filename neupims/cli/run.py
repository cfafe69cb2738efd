"""``neupims run EXPERIMENT.yaml [-o DIR] [--jobs N] [--scheduler ADDR | --cluster local:N]``."""

from __future__ import annotations

import argparse

import yaml

from neupims.errors import ConfigError
from neupims.experiments.kinds import all_kinds
from neupims.experiments.runner import default_outdir
from neupims.experiments.runner import run as run_experiment
from neupims.experiments.spec import load_experiment


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run an experiment sweep (resumable) and draw its figures",
        description="Run every point of an experiment YAML not already in DIR/store/, then "
        "write DIR/results.csv, DIR/manifest.json and the figures. Re-running resumes: "
        "finished points are skipped, failed ones retried.",
    )
    p.add_argument("experiment", nargs="?", help="experiment YAML (see docs/experiments.md)")
    p.add_argument(
        "--list-kinds", action="store_true", help="list the experiment kinds and their keys"
    )
    p.add_argument(
        "-o", "--output", default=None, help="output folder (default: results/<experiment name>)"
    )
    p.add_argument(
        "-j", "--jobs", type=int, default=None, help="local worker processes (default: all cores)"
    )
    dist = p.add_mutually_exclusive_group()
    dist.add_argument(
        "--scheduler", default=None, help="run on an existing Dask cluster (tcp://HOST:PORT)"
    )
    dist.add_argument(
        "--cluster", default=None, help="start a local Dask cluster of N workers (local:N)"
    )
    p.add_argument(
        "--timeline", default=None, help="also write a Chrome-trace JSON timeline of point 1"
    )
    p.add_argument(
        "--chunk",
        type=int,
        default=None,
        help="points per worker task (default: about 4 tasks per worker, at most 16)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a key of the experiment's base before expanding it (VALUE is YAML; repeatable), "
        "e.g. --set preset=released",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--no-figures", action="store_true", help="skip drawing the figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list_kinds:
        for name, kind in sorted(all_kinds().items()):
            keys = ", ".join(kind.schema.model_fields)
            print(f"{name}: {kind.description}\n    keys: {keys}")
            if kind.metrics:
                print(f"    metrics: {', '.join(kind.metrics)}")
        return 0
    if args.experiment is None:
        raise ConfigError("give an experiment YAML file (or --list-kinds)")
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: expected a positive number of processes")
    if args.chunk is not None and args.chunk < 1:
        raise ConfigError(f"--chunk {args.chunk}: expected a positive number of points")
    exp = load_experiment(args.experiment, _assignments(args.set))
    outdir = args.output or default_outdir(exp)
    df = run_experiment(
        exp,
        outdir,
        jobs=args.jobs,
        scheduler=args.scheduler,
        cluster=args.cluster,
        progress=not args.no_progress,
        timeline=args.timeline,
        figures=not args.no_figures,
        chunk=args.chunk,
    )
    failed = int((df["status"] != "ok").sum()) if len(df) else 0
    print(f"{exp.name}: {len(df)} of {len(exp.points)} points stored, {failed} failed -> {outdir}")
    if failed:
        first = df[df["status"] != "ok"].iloc[0]
        print(f"first failure (point {first['point']}): {first['error']}")
    if args.timeline:
        print(f"timeline of point 0 written to {args.timeline}")
    return 1 if failed else 0


def _assignments(items: list[str]) -> dict:
    """``KEY=VALUE`` strings to a mapping, each VALUE read as YAML (safely)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE (e.g. --set preset=released)")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: VALUE is not valid YAML: {exc}") from None
    return out
