"""Paper-vs-model summary of the NeuPIMs experiments' results.csv files.

``python -m neupims.systems.summary DIR [DIR ...]`` where each DIR holds the ``results.csv``
of neupims_fig12, neupims_fig12_baselines, neupims_fig13 or neupims_table4: prints the
ratios that docs/neupims.md quotes, then one table of the headline numbers of every DIR
beside the paper's (run the same experiment under both presets, e.g. ``neupims run
experiments/neupims_fig12.yaml -o out/fig12_released --set preset=released``, and pass both
folders to compare them).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import yaml

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


#: The paper's headline numbers (docs/sources/neupims.md §15): name -> value
PAPER = {
    "Fig. 12 NeuPIMs / NPU-only (mean)": 2.4,
    "Fig. 12 NeuPIMs / NPU+PIM (mean)": 1.6,
    "Fig. 12 NPU+PIM / NPU-only (mean)": 1.5,
    "Fig. 12 GPU-only / NPU-only (mean)": 1.0,
    "Fig. 13 dual row buffer gain (mean)": 0.697,
    "Table 4 NPU utilisation, NPU+PIM": 0.280,
    "Table 4 NPU utilisation, NeuPIMs": 0.649,
    "Table 4 PIM utilisation, NPU+PIM": 0.17,
    "Table 4 PIM utilisation, NeuPIMs": 0.264,
    "Table 5 memory power, NeuPIMs / NPU-only": 1.8,
    "Table 5 energy per token, NeuPIMs / NPU-only - 1": -0.25,
}


def headlines(df: pd.DataFrame) -> dict[str, float]:
    """The :data:`PAPER` numbers this results table holds."""
    out: dict[str, float] = {}
    systems = set(df["system"])
    if "label" in df and df["label"].nunique() > 1 and "npu_pim" in systems:
        steps = fig13_steps(df).mean()
        for name in ("dual row buffer (with SBI)", "dual row buffer (no SBI)"):
            if name in steps:
                out["Fig. 13 dual row buffer gain (mean)"] = float(steps[name])
                break
        return out
    if (
        {"npu_only", "npu_pim", "neupims"} <= systems
        and "batch" in df
        and df["batch"].nunique() > 1
    ):
        r = fig12_ratios(df).mean()
        for key, col in (("NeuPIMs / NPU-only", "neupims/npu_only"),
                         ("NeuPIMs / NPU+PIM", "neupims/npu_pim"),
                         ("NPU+PIM / NPU-only", "npu_pim/npu_only"),
                         ("GPU-only / NPU-only", "gpu_only/npu_only")):  # fmt: skip
            if col in r:
                out[f"Fig. 12 {key} (mean)"] = float(r[col])
        return out
    by = df.set_index("system")
    for sysname, label in (("npu_pim", "NPU+PIM"), ("neupims", "NeuPIMs")):
        if sysname in by.index:
            out[f"Table 4 NPU utilisation, {label}"] = float(by.loc[sysname, "npu_utilisation"])
            # the paper's PIM utilisation read as the PIM's busy fraction (docs/neupims.md)
            out[f"Table 4 PIM utilisation, {label}"] = float(by.loc[sysname, "pim_busy_fraction"])
    if {"neupims", "npu_only"} <= set(by.index) and "memory_power_w" in by:
        out["Table 5 memory power, NeuPIMs / NPU-only"] = float(
            by.loc["neupims", "memory_power_w"] / by.loc["npu_only", "memory_power_w"]
        )
        out["Table 5 energy per token, NeuPIMs / NPU-only - 1"] = float(
            by.loc["neupims", "energy_per_token_j"] / by.loc["npu_only", "energy_per_token_j"] - 1
        )
    return out


def against_paper(folders: list[str]) -> pd.DataFrame:
    """One row per headline number: the paper's and the model's under each preset (the
    folders run under one preset are read together)."""
    cols: dict[str, dict[str, float]] = {}
    for d in folders:
        df = _results(d)
        cols.setdefault(f"model ({_preset(d, df)} preset)", {}).update(headlines(df))
    rows = sorted({k for c in cols.values() for k in c}, key=list(PAPER).index)
    table = pd.DataFrame({"paper": [PAPER[k] for k in rows]}, index=rows)
    for name, vals in cols.items():
        table[name] = [vals.get(k, float("nan")) for k in rows]
    return table


def _preset(d: str, df: pd.DataFrame) -> str:
    """The preset the folder's points ran under (swept, or set in the stored experiment)."""
    if "preset" in df and df["preset"].nunique() == 1:
        return str(df["preset"].iloc[0])
    exp = Path(d) / "experiment.yaml"
    if exp.exists():
        base = (yaml.safe_load(exp.read_text()) or {}).get("base") or {}
        return str(base.get("preset", "paper"))
    return "paper"


def _results(d: str) -> pd.DataFrame:
    df = pd.read_csv(Path(d) / "results.csv")
    return df[df["status"] == "ok"] if "status" in df else df


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
        df = _results(d)
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
    table = against_paper(argv)
    if len(table):
        print("== against the paper (docs/sources/neupims.md §15)")
        print(table.round(3).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
