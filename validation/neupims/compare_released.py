"""Every stage and op of the released simulator's shipped example against the model.

The reference (validation/neupims/reference/released_sim_r1_clb_dual_nosbi/, README there):
GPT3-7B, TP 4, one decoder block, the clb-0 snapshot (batch 512), dual row buffers, GMLBP
placement, no sub-batch interleaving. The model runs the same block with `neupims iteration`
semantics under a preset (default: ``released``, the one that follows the released
simulator; ``--preset paper`` shows the paper-faithful model on the same block).

Usage: python validation/neupims/compare_released.py [--preset released|paper] [-o CSV]
Writes validation/neupims/model_vs_released_r1.csv (or -o) and prints it.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from neupims.atomic import atomic_write_text
from neupims.cli.iteration import read_snapshot
from neupims.config.loader import ROOT
from neupims.systems.base import build_system

REF = ROOT / "validation" / "neupims" / "reference"
RUN = REF / "released_sim_r1_clb_dual_nosbi"
SNAPSHOT = REF / "share-gpt2-bs512-ms7B-tp4-clb-0.csv"

#: released op name -> (our stage label, our op key in IterationResult.op_cycles)
OPS = {
    "layer0.attn.ln": ("A", "qkv/attn.norm"),
    "layer0.attn.QKVgen": ("A", "qkv/attn.qkv"),
    "layer0.attn.NeuPIMSLogitSoftmax": ("B", "mha/logit"),
    "layer0.attn.NeuPIMSAttend": ("B", "mha/attend"),
    "layer0.attn.proj": ("E", "projffn/attn.o"),
    "layer0.attn.res": ("E", "projffn/attn.add"),
    "layer0.ffn.ln": ("E", "projffn/mlp.norm"),
    "layer0.ffn.fc1": ("E", "projffn/mlp.fc1"),
    "layer0.ffn.gelu": ("E", "projffn/mlp.act"),
    "layer0.ffn.fc2": ("E", "projffn/mlp.fc2"),
    "layer0.ffn.res": ("E", "projffn/mlp.add"),
}
#: the released stage labels of an SBI-off run -> ours
STAGES = {"A": "QKV", "B": "MHA", "E": "ProjFFN"}


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return [
            {k.strip(): v.strip() for k, v in row.items() if k}
            for row in csv.DictReader(fh, delimiter="\t")
        ]


def released() -> tuple[dict[str, float], dict[str, float], float]:
    """(stage cycles, op cycles, mean PIM busy of stage B) of the reference run."""
    summary = {r["Stage"]: r for r in _tsv(RUN / "_summary.tsv")}
    stages = {s: float(summary[s]["total_cycles"]) for s in STAGES}
    ops = {}
    for f in sorted(RUN.glob("*_stage_*.tsv")):
        for r in _tsv(f):
            ops[r["OpName"]] = float(r["TotalCycle"])
    return stages, ops, float(summary["B"]["pim_cycles"])


def compare(preset: str = "released") -> list[dict]:
    """Rows of (what, released, model, model / released)."""
    system = build_system("neupims", "gpt3-7b", 4, layers=1, comm=False, preset=preset, sbi=False)
    seq, ch = read_snapshot(SNAPSHOT, system.kv().pools)
    r = system.iteration(seq, ch)
    ref_stages, ref_ops, ref_pim = released()
    rows = []

    def row(what, ref, ours):
        known = ours == ours  # NaN: the preset has no such op (fused MHA phases)
        rows.append(
            {
                "what": what,
                "released_cycles": round(ref),
                "model_cycles": round(ours) if known else None,
                "model_over_released": round(ours / ref, 3) if known else None,
            }
        )

    for s, ours in STAGES.items():
        row(f"stage {s} ({ours})", ref_stages[s], r.stage_cycles[ours])
    row("stage B PIM busy, channel mean", ref_pim, r.stage_pim_busy_cycles["MHA"]["mean"])
    drain = r.op_cycles.get("projffn/write drain", 0.0)
    for name, (_, key) in OPS.items():
        ours = r.op_cycles.get(key, float("nan"))
        if key == "projffn/mlp.add":
            ours += drain  # the block's last writes drain after its last op
        row(name, ref_ops[name], ours)
    row("one layer", sum(ref_stages.values()), r.iteration_cycles)
    return rows


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="released", choices=("released", "paper"))
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args(argv)
    rows = compare(args.preset)
    out = Path(args.output) if args.output else Path(__file__).with_name("model_vs_released_r1.csv")
    if args.preset == "released" or args.output:
        cols = list(rows[0])
        text = (
            ",".join(cols)
            + "\n"
            + "".join(
                ",".join("" if r[c] is None else str(r[c]) for c in cols) + "\n" for r in rows
            )
        )
        atomic_write_text(out, text)
    w = max(len(r["what"]) for r in rows)
    print(f"{'':{w}s}  released    model   ratio   (preset {args.preset})")
    for r in rows:
        if r["model_cycles"] is None:
            print(f"{r['what']:{w}s} {r['released_cycles']:9,d}         -       -")
            continue
        print(
            f"{r['what']:{w}s} {r['released_cycles']:9,d} {r['model_cycles']:9,d}  "
            f"{r['model_over_released']:6.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
