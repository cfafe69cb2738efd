"""Stage B (MHA on the PIM) per channel under each refresh mode vs the released simulator.

Usage: python validation/neupims/stage_b_refresh.py
Writes validation/neupims/stage_b_refresh.csv and prints it (docs/hbm_pim.md, "Refresh
policies"). For the bundled GMLBP snapshot (GPT3-7B, TP 4: 8 heads x 128 per device; each
request's KV cache on channel ``ch_idx``) and each memory mode, the per-channel PIM cycles of
the logit phase (every request's K^T q tiles) and the attend phase (every request's s.V
tiles), each from an idle channel, and of the two interleaved per request; the fast path
(``mha_channels_phases`` / ``mha_channels_cycles``) and the command-level controller
(``hbm_channel.simulate``, all 32 channels), mean and max over channels. Reference: the
released simulator's run in ``reference/released_sim_r1_clb_dual_nosbi/``: mean PIM busy
(``_summary.tsv``) and the LogitSoftmax / Attend op spans (``PIM_stage_B.tsv``).
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import numpy as np

from neupims.atomic import atomic_write_text
from neupims.cli.iteration import read_snapshot
from neupims.config import load_hw
from neupims.devices import hbm_channel as H
from neupims.devices import pim

HERE = Path(__file__).resolve().parent
REF = HERE / "reference"
SNAPSHOT = REF / "share-gpt2-bs512-ms7B-tp4-clb-0.csv"
RUN = REF / "released_sim_r1_clb_dual_nosbi"
HEADS, D_HEAD = 8, 128


def _tsv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


def reference() -> dict[str, float]:
    """The released run's stage-B numbers: mean PIM busy and the two op spans."""
    busy = next(float(r["pim_cycles"]) for r in _tsv(RUN / "_summary.tsv") if r["Stage"] == "B")
    spans = {
        r["OpName"].rsplit(".", 1)[-1]: float(r["TotalCycle"])
        for r in _tsv(RUN / "PIM_stage_B.tsv")
    }
    return {
        "busy": busy,
        "logit": spans["NeuPIMSLogitSoftmax"],
        "attend": spans["NeuPIMSAttend"],
    }


def _modes() -> dict[str, object]:
    base = load_hw("hbm2_pim_neupims")
    refresh = base.controller.refresh.model_copy(update={"policy": "rank_staggered"})
    staggered = base.model_copy(
        update={"controller": base.controller.model_copy(update={"refresh": refresh})}
    )
    return {
        "hbm2_pim_neupims (all_bank)": base,
        "rank_staggered, no guard": staggered,
        "hbm2_pim_neupims_released": load_hw("hbm2_pim_neupims_released"),
    }


def _command_level(seq, ch, mem, refresh=True) -> dict[str, np.ndarray]:
    out = {"logit": [], "attend": [], "interleaved": []}
    for c in range(mem.organization.channels):
        progs = [pim.mha_program(int(s), HEADS, D_HEAD, mem) for s in seq[ch == c]]
        parts = {
            "logit": [g for p in progs for g in p if g.n_results > 1],
            "attend": [g for p in progs for g in p if g.n_results == 1],
            "interleaved": [g for p in progs for g in p],
        }
        for k, groups in parts.items():
            stats, _ = H.simulate(mem, (), H.tiles_of(groups), refresh=refresh)
            out[k].append(stats.cycles)
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def main() -> int:
    mem0 = load_hw("hbm2_pim_neupims")
    seq, ch = read_snapshot(SNAPSHOT, mem0.organization.channels)
    ref = reference()
    rows = []

    def add(mode, path, parts):
        busy = parts["logit"] + parts["attend"]
        rows.append(
            {
                "mode": mode,
                "path": path,
                "logit_mean": parts["logit"].mean(),
                "logit_max": parts["logit"].max(),
                "attend_mean": parts["attend"].mean(),
                "attend_max": parts["attend"].max(),
                "busy_mean": busy.mean(),
                "busy_vs_released": busy.mean() / ref["busy"],
                "interleaved_mean": parts["interleaved"].mean(),
                "interleaved_max": parts["interleaved"].max(),
            }
        )

    add("no refresh", "command level", _command_level(seq, ch, mem0, refresh=False))
    for name, mem in _modes().items():
        ph = pim.mha_channels_phases(seq, ch, HEADS, D_HEAD, mem)
        one = pim.mha_channels_cycles(seq, ch, HEADS, D_HEAD, mem)
        fast = {"logit": ph.logit.cycles, "attend": ph.attend.cycles, "interleaved": one.cycles}
        cmd = _command_level(seq, ch, mem)
        add(name, "fast path", fast)
        add(name, "command level", cmd)
        err = max(float(np.abs(fast[k] / cmd[k] - 1).max()) for k in fast)
        rows[-2]["worst_channel_error_vs_command_level"] = err
    buf = io.StringIO()
    cols = list(rows[0]) + ["worst_channel_error_vs_command_level"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(HERE / "stage_b_refresh.csv", buf.getvalue())
    print(
        f"released simulator: PIM busy mean {ref['busy']:,.0f}; LogitSoftmax op "
        f"{ref['logit']:,.0f}; Attend op {ref['attend']:,.0f} (cycles)"
    )
    for r in rows:
        err = r.get("worst_channel_error_vs_command_level")
        print(
            f"{r['mode']:30s} {r['path']:13s} logit mean/max {r['logit_mean']:9,.0f} "
            f"{r['logit_max']:9,.0f}  attend {r['attend_mean']:9,.0f} {r['attend_max']:9,.0f}  "
            f"busy mean {r['busy_mean']:9,.0f} ({r['busy_vs_released']:.3f} x released)  "
            f"interleaved {r['interleaved_mean']:9,.0f} {r['interleaved_max']:9,.0f}"
            + (f"  fast vs command level worst {100 * err:.3f} %" if err is not None else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
