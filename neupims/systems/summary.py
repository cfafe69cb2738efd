"""Paper-vs-model summary of the NeuPIMs experiments' results.csv files.

``python -m neupims.systems.summary DIR [DIR ...]`` where each DIR holds the ``results.csv``
of neupims_fig12, neupims_fig12_baselines, neupims_fig13 or neupims_table4: prints the
ratios that docs/neupims.md quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

#: (numerator, denominator) system pairs reported when both are in a results.csv
RATIOS = (
    ("npu_pim", "npu_only"),
    ("npu_pim_sbi", "npu_only"),
    ("neupims", "npu_only"),
    ("neupims", "npu_pim"),
    ("neupims", "npu_pim_sbi"),
    ("gpu_only", "npu_only"),
)

#: Fig. 13: (step, bar before it, bar after it), in both orders of the ablation
FIG13_STEPS = (
    ("dual row buffer (no SBI)", "NPU+PIM", "+dual row buffer"),
    ("GMLBP", "+dual row buffer", "+GMLBP"),
    ("SBI", "+GMLBP", "+SBI"),
    ("SBI in blocked mode", "NPU+PIM", "NPU+PIM +SBI (blocked)"),
    ("dual row buffer (with SBI)", "NPU+PIM +SBI (blocked)", "+SBI +dual row buffer"),
)


def fig12_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, batch): throughput ratios between the systems present."""
    p = df.pivot_table(
        index=["model", "dataset", "batch"], columns="system", values="throughput_tokens_per_s"
    )
    return pd.DataFrame(
        {f"{a}/{b}": p[a] / p[b] for a, b in RATIOS if a in p.columns and b in p.columns}
    )


def fig13_steps(df: pd.DataFrame) -> pd.DataFrame:
    """Per batch: the relative gain of each ablation step present (after / before - 1)."""
    p = df.pivot_table(index="batch", columns="label", values="throughput_tokens_per_s")
    return pd.DataFrame(
        {name: p[after] / p[before] - 1 for name, before, after in FIG13_STEPS if after in p}
    )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    pd.set_option("display.width", 200)
    for d in argv:
        df = pd.read_csv(Path(d) / "results.csv")
        df = df[df["status"] == "ok"] if "status" in df else df
        print(f"== {d}")
        if "label" in df and df["label"].nunique() > 1 and "npu_pim" in set(df["system"]):
            p = df.pivot_table(index="batch", columns="label", values="throughput_tokens_per_s")
            print((p.div(p["NPU+PIM"], axis=0)).round(3).to_string())
            steps = fig13_steps(df)
            print("gain of each step (after / before - 1):")
            print(steps.round(3).to_string())
            print("mean over batch:\n" + steps.mean().round(3).to_string())
            continue
        if {"npu_only", "npu_pim", "neupims"} <= set(df["system"]) and "batch" in df:
            r = fig12_ratios(df)
            print(r.round(2).to_string())
            print("mean over all points:\n" + r.mean().round(3).to_string())
            print("by dataset:\n" + r.groupby(level="dataset").mean().round(3).to_string())
            print("by batch:\n" + r.groupby(level="batch").mean().round(3).to_string())
            print("min:\n" + r.min().round(3).to_string())
            continue
        cols = [c for c in df.columns if c not in ("point", "key", "error", "status")]
        print(df[cols].T.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
