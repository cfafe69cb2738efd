"""The model's predictions, under the ``released`` preset, for the configurations of the
released simulator that are kept as independent checks (docs/sources/neupims.md §16):
the naive NPU+PIM baseline on the round-robin snapshot, the same with dual row buffers,
full NeuPIMs (dual row buffers, GMLBP, sub-batch interleaving) on the GMLBP snapshot, and
the shipped example (dual, GMLBP, no interleaving) for reference; and NeuPIMs' speed-up over
the naive baseline on the batch-512 snapshots.

A layer's time is the steady-state period of one decoder block: QKV + MHA + Proj/FFN without
sub-batch interleaving (stages A, B, E of the released simulator's one-block run), C + D with
it (its stages A-F span two blocks). GPT3-7B, TP 4, batch 512, one device, no communication.

Usage: python validation/neupims/predict_released_configs.py [-o CSV]
Writes validation/neupims/model_predictions_released_configs.csv and prints it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neupims.atomic import atomic_write_text
from neupims.cli.iteration import read_snapshot
from neupims.config.loader import ROOT
from neupims.systems.base import build_system

REF = ROOT / "validation" / "neupims" / "reference"
SNAP = {p: REF / f"share-gpt2-bs512-ms7B-tp4-{p}-0.csv" for p in ("clb", "rr")}

#: (name, system, snapshot, spec overrides)
CONFIGS = (
    ("naive NPU+PIM (blocked, round robin, no SBI)", "npu_pim", "rr", {}),
    ("NPU+PIM + dual row buffer (round robin, no SBI)", "npu_pim", "rr", {"dual_row_buffer": True}),
    ("NeuPIMs without SBI (the shipped example)", "neupims", "clb", {"sbi": False}),
    ("NeuPIMs (dual, GMLBP, SBI)", "neupims", "clb", {"sbi_min_batch": 0}),
)


def predict() -> list[dict]:
    rows = []
    for name, system, snap, ov in CONFIGS:
        sbi = ov.get("sbi", True) and system == "neupims"
        s = build_system(
            system, "gpt3-7b", 4, layers=2 if sbi else 1, comm=False, preset="released", **ov
        )
        seq, ch = read_snapshot(SNAP[snap], s.kv().pools)
        r = s.iteration(seq, ch)
        st = r.stage_cycles
        row = {"configuration": name, "system": system, "snapshot": snap, "sbi": r.sbi}
        for k, v in st.items():
            row[f"stage_{k}"] = round(v)
        row["layer_cycles"] = round(r.layer_cycles)
        row["pim_busy_mean_mha"] = round(max(v["mean"] for v in r.stage_pim_busy_cycles.values()))
        rows.append(row)
    naive = next(r for r in rows if r["configuration"].startswith("naive"))["layer_cycles"]
    for r in rows:
        r["speedup_over_naive"] = round(naive / r["layer_cycles"], 3)
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    rows = predict()
    cols: list[str] = []
    for r in rows:
        cols += [c for c in r if c not in cols]
    text = ",".join(cols) + "\n"
    text += "".join(",".join(str(r.get(c, "")) for c in cols) + "\n" for r in rows)
    out = (
        Path(args.output)
        if args.output
        else Path(__file__).with_name("model_predictions_released_configs.csv")
    )
    atomic_write_text(out, text)
    for r in rows:
        stages = ", ".join(f"{k[6:]} {v:,}" for k, v in r.items() if k.startswith("stage_"))
        print(f"{r['configuration']}: {stages}; layer {r['layer_cycles']:,} cycles, "
              f"x{r['speedup_over_naive']} over naive")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
