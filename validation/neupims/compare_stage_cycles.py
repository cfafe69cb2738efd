"""Our per-stage cycles on the clb-0 reference snapshot vs the released simulator's run log.

Usage: python validation/neupims/compare_stage_cycles.py [SNAPSHOT.csv]
Writes validation/neupims/model_vs_released.csv and prints it (see README.md here).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from neupims.atomic import atomic_write_text
from neupims.cli.iteration import read_snapshot
from neupims.config.loader import ROOT
from neupims.errors import NeupimsError
from neupims.systems.base import build_system

HERE = Path(__file__).resolve().parent
#: the NeuPIMs artifact's GMLBP snapshot, bundled unmodified (reference/README.md here)
SNAPSHOT = ROOT / "validation/neupims/reference/share-gpt2-bs512-ms7B-tp4-clb-0.csv"

#: what each stage holds (docs/sources/neupims.md §10): the NPU chain and the PIM sub-batch
CONTENT = {
    "A": "QKV SB1 | -",
    "B": "QKV SB2 | MHA SB1",
    "C": "Proj+FFN+QKV SB1 | MHA SB2",
    "D": "Proj+FFN+QKV SB2 | MHA SB1",
    "E": "Proj+FFN SB1 | MHA SB2",
    "F": "Proj+FFN SB2 | -",
}


def main(argv: list[str]) -> int:
    path = Path(argv[0]) if argv else SNAPSHOT
    system = build_system("neupims", "gpt3-7b", 4, layers=2, comm=False)
    try:
        seq, ch = read_snapshot(path, system.kv().pools)
    except NeupimsError as e:  # missing or malformed snapshot: one line, exit 2
        print(e, file=sys.stderr)
        return 2
    r = system.iteration(seq, ch)
    ref = pd.read_csv(HERE / "released_sim_stage_cycles.csv").set_index("stage")
    rows = []
    for stage, content in CONTENT.items():
        ours = float(r.stage_cycles[stage])
        pim = float(r.stage_pim_busy_cycles[stage]["max"])
        theirs = float(ref.loc[stage, "cycles"])
        rows.append(
            {
                "stage": stage,
                "npu | pim work": content,
                "model_cycles": round(ours),
                "model_pim_max_channel": round(pim),
                "released_cycles": round(theirs),
                "model_over_released": round(ours / theirs, 3),
            }
        )
    df = pd.DataFrame(rows)
    atomic_write_text(HERE / "model_vs_released.csv", df.to_csv(index=False))
    print(df.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
