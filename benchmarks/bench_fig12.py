"""Time `neupims run experiments/neupims_fig12.yaml` (160 serving points) and one iteration.

Run: .venv/bin/python benchmarks/bench_fig12.py [--jobs N]
Prints the wall time of the whole experiment (target < 1 min on 2 cores, limit 5 min) and
the cost of one simulated decode iteration of a random 512-request batch (GPT3-7B, TP 4),
with warm caches, as a full 32-block timeline and as the 3-block periodic one serving uses.
The machine's other load changes the experiment time a lot: compare runs on an idle machine.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def one_iteration() -> None:
    from neupims.systems.base import build_system

    rng = np.random.default_rng(0)
    seq = rng.integers(16, 2048, 512)
    ch = rng.integers(0, 32, 512)
    for name in ("npu_only", "npu_pim", "neupims"):
        system = build_system(name, "gpt3-7b", 4)
        n = 20
        for i in range(n):  # warm the per-length PIM memo (serving reuses lengths heavily)
            system.iteration(seq + i, ch, periodic=True)
        for periodic in (False, True):
            t = time.perf_counter()
            for i in range(n):
                system.iteration(seq + i, ch, periodic=periodic)
            dt = (time.perf_counter() - t) / n
            print(
                f"one iteration {name:9s} 32 blocks, periodic={periodic!s:5s}: {dt * 1e3:6.2f} ms"
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-experiment", action="store_true")
    args = ap.parse_args()
    one_iteration()
    if args.skip_experiment:
        return
    from neupims.cli import main as cli

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        rc = cli(
            [
                "run",
                str(ROOT / "experiments/neupims_fig12.yaml"),
                "-o",
                out,
                "--jobs",
                str(args.jobs),
            ]
        )
        dt = time.perf_counter() - t
    print(
        f"neupims run experiments/neupims_fig12.yaml --jobs {args.jobs}: {dt:.1f} s (rc {rc}); "
        f"target < 60 s, limit 300 s"
    )


if __name__ == "__main__":
    main()
