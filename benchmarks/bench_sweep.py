"""Speed of the experiment runner: one 500-point sweep, serially, --jobs 2, and on Dask.

    .venv/bin/python benchmarks/bench_sweep.py                  # replay kind (real work)
    .venv/bin/python benchmarks/bench_sweep.py --kind synthetic # runner overhead only

Every mode runs the same points into a fresh output folder (nothing cached) and prints
points per second; ratios are against the serial run of the same invocation. The Dask
mode uses a 2-worker LocalCluster of processes; its start-up is timed separately.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from neupims.experiments import load_experiment, run


def experiment(kind: str, points: int, point_ms: float) -> dict:
    if kind == "synthetic":
        return {
            "name": "bench",
            "kind": "synthetic",
            "base": {"sleep_s": point_ms / 1e3},
            "sweep": {"grid": {"x": [float(i) for i in range(points)]}},
        }
    seqs = [128, 512, 1024, 2048]
    return {
        "name": "bench",
        "kind": "replay",
        "base": {"model": "gpt3-125m", "phase": "decode", "hw": "h100_sxm"},
        "sweep": {"grid": {"seq": seqs, "batch": list(range(1, points // len(seqs) + 1))}},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=["replay", "synthetic"], default="replay")
    ap.add_argument("--points", type=int, default=500)
    ap.add_argument("--point-ms", type=float, default=0.0, help="synthetic: sleep per point")
    ap.add_argument("--modes", default="serial,jobs2,dask2")
    args = ap.parse_args()
    exp = load_experiment(experiment(args.kind, args.points, args.point_ms))
    n = len(exp.points)
    print(
        f"{n} points of kind {args.kind!r}"
        + (f", {args.point_ms} ms each" if args.kind == "synthetic" else "")
    )
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            out = Path(tmp) / mode
            extra = ""
            if mode == "serial":
                t0 = time.perf_counter()
                df = run(exp, out, jobs=1, progress=False, figures=False)
            elif mode.startswith("jobs"):
                t0 = time.perf_counter()
                df = run(exp, out, jobs=int(mode[4:]), progress=False, figures=False)
            elif mode.startswith("dask"):
                from distributed import Client, LocalCluster

                t_start = time.perf_counter()
                cluster = LocalCluster(
                    n_workers=int(mode[4:]),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                )
                client = Client(cluster)
                extra = f" (cluster start-up {time.perf_counter() - t_start:.2f} s, not counted)"
                t0 = time.perf_counter()
                df = run(exp, out, client=client, progress=False, figures=False)
            else:
                raise SystemExit(f"unknown mode {mode!r}; expected serial, jobsN or daskN")
            wall = time.perf_counter() - t0
            if mode.startswith("dask"):
                client.close()
                cluster.close()
            assert len(df) == n and (df["status"] == "ok").all(), df["error"].head()
            rates[mode] = n / wall
            ratio = f", {rates[mode] / rates['serial']:.2f}x serial" if "serial" in rates else ""
            print(f"{mode:>8}: {wall:7.2f} s, {rates[mode]:8.1f} points/s{ratio}{extra}")


if __name__ == "__main__":
    main()
