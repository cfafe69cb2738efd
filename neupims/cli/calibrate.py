"""``neupims calibrate --hw HW --measured A.csv [B.csv ...] [--write]``: fit a GPU config's
named efficiency constants to measured kernel times and report the errors.

``neupims calibrate --hw cpu [-o F.yaml]``: measure this machine's CPU and write its
calibrated YAML (:mod:`neupims.cli.calibrate_cpu`)."""

from __future__ import annotations

import argparse
import csv
import glob
import math
import time
from pathlib import Path

from neupims.atomic import atomic_open
from neupims.calibrate import (
    GROUPS,
    calibrate,
    error_report,
    load_measurements,
    per_sample_table,
    write_efficiency,
)
from neupims.cli.calibrate_cpu import run_cpu
from neupims.config import load_hw
from neupims.config.loader import resolve
from neupims.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "calibrate",
        help="fit a GPU config's efficiency constants to measured kernels (least squares); "
        "--hw cpu: measure this machine's CPU and write its calibrated YAML",
    )
    p.add_argument(
        "--hw",
        required=True,
        help="GPU hardware YAML path or name in hw_configs/; or 'cpu' (this machine)",
    )
    p.add_argument(
        "--measured",
        nargs="+",
        default=None,
        help="GPU: measured CSVs (validation/h100/measure.py or `neupims crosscheck` output); "
        "shell-style globs are expanded",
    )
    p.add_argument(
        "--write",
        action="store_true",
        help="write the fitted constants back into the YAML (with provenance)",
    )
    p.add_argument(
        "-o",
        "--output",
        default=None,
        help="GPU: per-sample CSV of measured vs predicted; --hw cpu: the YAML to write "
        "(default: the user cache, $NEUPIMS_CACHE_DIR or ~/.cache/neupims)",
    )
    p.add_argument(
        "--groups",
        default=None,
        help="comma list of constant groups to fit (default: all); the others keep the "
        "config's values, or the documented defaults where the config has none",
    )
    p.set_defaults(func=run)


def _expand(patterns: list[str]) -> list[str]:
    out: list[str] = []
    for pat in patterns:
        hits = sorted(glob.glob(pat))
        if not hits and not Path(pat).exists():
            raise ConfigError(f"--measured: no file matches {pat!r}")
        out += hits or [pat]
    return out


def _fitted_groups(fit) -> list[str]:
    return [g for g, names in GROUPS.items() if set(names) <= set(fit.fitted)]


def _table(rows: list[dict]) -> str:
    lines = [f"{'group':12s} {'n':>4s}  {'MAPE fit':>9s} {'held out':>9s} {'all':>7s}  target"]
    for r in rows:
        tgt = "" if math.isnan(r["target_mape"]) else f"<= {r['target_mape']:.0f}%"
        lines.append(
            f"{r['group']:12s} {r['n']:4d}  {r['mape_fit']:8.1f}% {r['mape_holdout']:8.1f}% "
            f"{r['mape_all']:6.1f}%  {tgt}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.hw == "cpu":
        return run_cpu(args)
    if not args.measured:
        raise ConfigError(f"{args.hw}: --measured CSV... is required to calibrate a GPU config")
    hw = load_hw(args.hw)
    if hw.kind != "gpu":
        raise ConfigError(f"{args.hw}: calibrate fits GPU configs, this is a {hw.kind!r} config")
    files = _expand(args.measured)
    samples = load_measurements(files)
    print(f"{len(samples)} measured samples from {len(files)} file(s); before fitting:")
    print(_table(error_report(hw, samples)))
    groups = None
    if args.groups:
        names = [g.strip() for g in args.groups.split(",") if g.strip()]
        unknown = sorted(set(names) - set(GROUPS))
        if unknown:
            raise ConfigError(f"--groups: unknown group(s) {unknown}; known: {sorted(GROUPS)}")
        groups = {g: GROUPS[g] for g in GROUPS if g in names}
    t0 = time.perf_counter()
    fit = calibrate(hw, samples, groups)
    fitted = hw.model_copy(update={"efficiency": fit.efficiency})
    skipped = sorted(g for g, names in (groups or GROUPS).items() if g not in _fitted_groups(fit))
    print(f"\nfitted {len(fit.fitted)} constants in {time.perf_counter() - t0:.1f} s "
          f"(held-out third excluded from every fit)"
          + (f"; kept the config's values for {', '.join(skipped)} (fewer samples than "
             "constants)" if skipped else "") + "; after:")  # fmt: skip
    print(_table(error_report(fitted, samples)))
    if args.output:
        rows = per_sample_table(fitted, samples)
        cols = sorted({k for r in rows for k in r}, key=lambda k: (k not in rows[0], k))
        with atomic_open(args.output, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=cols, lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        print(f"wrote {len(rows)} rows to {args.output}")
    if args.write:
        path = resolve(args.hw, "hw_configs")
        devices = sorted({s.meta.get("device", "") for s in samples} - {""})
        prov = (
            f"fitted by `neupims calibrate` on {time.strftime('%Y-%m-%d')} from "
            f"{', '.join(files)}: {sum(not s.holdout for s in samples)} samples fitted, "
            f"{sum(s.holdout for s in samples)} held out"
            + (f"; device: {', '.join(devices)}" if devices else "")
        )
        if groups or skipped:
            # a partial fit: the other constants keep the values (and provenance) they had
            done = ", ".join(g for g in (groups or GROUPS) if g in _fitted_groups(fit))
            prov += f"; groups fitted: {done}; the others kept from: {hw.efficiency_provenance}"
        write_efficiency(path, fit.efficiency, prov, set(hw.efficiency) | set(fit.fitted))
        print(f"wrote fitted constants to {path}")
    return 0
