"""Measured Llama-style steps on the H200 (llama_e2e/e2e_llama.csv) against neupims' GPU step
model under hw_configs/h200_sxm.yaml: per step and as MAPE per dispatch mode.

Usage: python validation/h200/llama_e2e_report.py
"""

from __future__ import annotations

import sys

from neupims.calibrate import error_report, load_measurements, per_sample_table
from neupims.config import load_hw
from neupims.config.loader import ROOT

CSV = ROOT / "validation" / "h200" / "llama_e2e" / "e2e_llama.csv"


def main() -> int:
    samples = load_measurements([CSV])
    hw = load_hw("h200_sxm")
    for r in per_sample_table(hw, samples):
        print(f"{r['label']:40s} measured {r['measured_s'] * 1e3:8.2f} ms  "
              f"model {r['predicted_s'] * 1e3:8.2f} ms  {r['error_pct']:+6.1f} %")  # fmt: skip
    for r in error_report(hw, samples):
        print(f"{r['group']}: {r['n']} steps, MAPE {r['mape_all']:.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
