"""Paper-vs-model summary of the NeuPIMs experiments' results.csv files.

``python -m neupims.systems.summary DIR`` where DIR holds ``results.csv`` of
neupims_fig12 (or fig13 / table4): prints the ratios that docs/neupims.md quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def fig12_ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per (model, dataset, batch): throughput ratios between the systems."""
    p = df.pivot_table(
        index=["model", "dataset", "batch"], columns="system", values="throughput_tokens_per_s"
    )
    return pd.DataFrame(
        {
            "npu_pim/npu_only": p["npu_pim"] / p["npu_only"],
            "neupims/npu_only": p["neupims"] / p["npu_only"],
            "neupims/npu_pim": p["neupims"] / p["npu_pim"],
            "gpu_only/npu_only": p["gpu_only"] / p["npu_only"],
        }
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
            continue
        if {"npu_only", "npu_pim", "neupims", "gpu_only"} <= set(df["system"]):
            r = fig12_ratios(df)
            print(r.round(2).to_string())
            print("mean over all points:\n" + r.mean().round(3).to_string())
            print("by dataset:\n" + r.groupby(level="dataset").mean().round(3).to_string())
            print("by batch:\n" + r.groupby(level="batch").mean().round(3).to_string())
            print("min neupims/npu_pim:", round(float(r["neupims/npu_pim"].min()), 3))
            continue
        cols = [c for c in df.columns if c not in ("point", "key", "error", "status")]
        print(df[cols].T.to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
