"""Stage B (MHA on the PIM) in blocked (Newton) mode against dual row buffers.

Usage: python validation/neupims/stage_b_blocked.py
Writes validation/neupims/stage_b_blocked.csv and prints it (docs/hbm_pim.md, "Blocked
(Newton) mode"). For both bundled snapshots (``rr``: round robin, the NPU+PIM baseline's
placement; ``clb``: GMLBP; GPT3-7B, TP 4: 8 heads x 128 per device) and both memory presets
(``hbm2_pim_neupims``, all-bank refresh; ``hbm2_pim_neupims_released``, the released
controller's refresh and deadline guard), and for refresh off (command level only): the
per-channel cycles of the logit phase (every request's K^T q tiles) and the attend phase
(every request's s.V tiles), each from an idle channel, in dual and in blocked mode; stage B
= max over channels of logit + max over channels of attend (the released simulator's barrier
between the two ops, docs/hbm_pim.md "Two phases"), and blocked minus dual. Fast path
(``mha_channels_phases``) and command level (``hbm_channel.simulate``, all 32 channels, both
phases) side by side, with the fast path's worst channel error. Nothing is fitted.
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
SNAPSHOTS = {s: REF / f"share-gpt2-bs512-ms7B-tp4-{s}-0.csv" for s in ("rr", "clb")}
PRESETS = ("hbm2_pim_neupims", "hbm2_pim_neupims_released")
HEADS, D_HEAD = 8, 128


def command_level(seq, ch, mem, dual: bool, refresh: bool = True) -> dict[str, np.ndarray]:
    """Per channel: cycles of the logit and the attend phase, and their GWRITEs."""
    out = {"logit": [], "attend": [], "gw_logit": [], "gw_attend": []}
    for c in range(mem.organization.channels):
        progs = [pim.mha_program(int(s), HEADS, D_HEAD, mem) for s in seq[ch == c]]
        for k, keep in (
            ("logit", lambda g: g.n_results > 1),
            ("attend", lambda g: g.n_results == 1),
        ):
            groups = [g for p in progs for g in p if keep(g)]
            stats, _ = H.simulate(
                mem, (), H.tiles_of(groups), dual_row_buffer=dual, refresh=refresh
            )
            out[k].append(stats.cycles)
            out["gw_" + k].append(stats.commands.get("GWRITE", 0))
    return {k: np.array(v, dtype=np.float64) for k, v in out.items()}


def main() -> int:
    rows = []
    for snap, path in SNAPSHOTS.items():
        mem0 = load_hw(PRESETS[0])
        seq, ch = read_snapshot(path, mem0.organization.channels)
        modes = [("refresh off", mem0, False)] + [(p, load_hw(p), True) for p in PRESETS]
        for name, mem, refresh in modes:
            res = {}
            for dual in (True, False):
                cmd = command_level(seq, ch, mem, dual, refresh)
                row = {
                    "snapshot": snap,
                    "memory": name,
                    "mode": "dual" if dual else "blocked",
                    "logit_max": cmd["logit"].max(),
                    "attend_max": cmd["attend"].max(),
                    "stage_b": cmd["logit"].max() + cmd["attend"].max(),
                    "busy_mean": (cmd["logit"] + cmd["attend"]).mean(),
                    "gwrites_on_max_channels": cmd["gw_logit"][cmd["logit"].argmax()]
                    + cmd["gw_attend"][cmd["attend"].argmax()],
                    "fast_stage_b": "",
                    "fast_worst_channel_error": "",
                }
                if refresh:
                    ph = pim.mha_channels_phases(seq, ch, HEADS, D_HEAD, mem, dual_row_buffer=dual)
                    row["fast_stage_b"] = ph.logit.cycles.max() + ph.attend.cycles.max()
                    row["fast_worst_channel_error"] = max(
                        float(np.abs(ph.logit.cycles / cmd["logit"] - 1).max()),
                        float(np.abs(ph.attend.cycles / cmd["attend"] - 1).max()),
                    )
                res[dual] = row
                rows.append(row)
            res[False]["blocked_minus_dual"] = res[False]["stage_b"] - res[True]["stage_b"]
            res[True]["blocked_minus_dual"] = ""
    cols = list(rows[0]) + ["blocked_minus_dual"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(HERE / "stage_b_blocked.csv", buf.getvalue())
    for r in rows:
        diff = r["blocked_minus_dual"]
        fast = r["fast_stage_b"]
        print(
            f"{r['snapshot']:3s} {r['memory']:26s} {r['mode']:7s} logit max "
            f"{r['logit_max']:9,.0f}  attend max {r['attend_max']:9,.0f}  stage B "
            f"{r['stage_b']:9,.0f}  busy mean {r['busy_mean']:9,.0f}  GWRITEs on the max "
            f"channels {r['gwrites_on_max_channels']:4.0f}"
            + (
                f"  fast path {fast:9,.0f} (worst {100 * r['fast_worst_channel_error']:.3f} %)"
                if fast != ""
                else ""
            )
            + (f"  blocked - dual {diff:+8,.0f}" if diff != "" else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
