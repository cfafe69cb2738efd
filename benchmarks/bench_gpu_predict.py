"""Speed of the GPU model: predict every op of the committed H100 validation set (and the
36 end-to-end steps) with a fresh, uncached model. Target (issue 5): 300+ ops in < 1 s.

    .venv/bin/python benchmarks/bench_gpu_predict.py
"""

from __future__ import annotations

import time
from pathlib import Path

from neupims.calibrate import gpu_model, load_measurements, predict_sample
from neupims.config import load_hw

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    hw = load_hw("h100_sxm")
    files = [ROOT / "validation/h100" / f for f in ("ops.csv", "ops_big_m.csv", "e2e.csv")]
    samples = load_measurements(files)
    ops = [s for s in samples if s.kind == "op"]
    steps = [s for s in samples if s.kind == "e2e"]
    best = float("inf")
    for _ in range(5):
        model = gpu_model(hw)  # fresh: nothing memoised
        t0 = time.perf_counter()
        for s in ops:
            predict_sample(model, s)
        best = min(best, time.perf_counter() - t0)
    print(f"{len(ops)} validation ops predicted in {best * 1e3:.1f} ms "
          f"({best / len(ops) * 1e6:.1f} us per op, fresh model, best of 5); target < 1 s")  # fmt: skip
    model = gpu_model(hw)
    t0 = time.perf_counter()
    n_ops = sum(len(s.ops) for s in steps)
    for s in steps:
        predict_sample(model, s)
    dt = time.perf_counter() - t0
    print(f"{len(steps)} whole GPT-3 steps ({n_ops} traced ops) predicted in {dt * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
