"""``neupims iteration --system NAME --model M --tp N --requests TRACE.csv [--json]``.

Simulates one decode iteration of an explicit batch: TRACE.csv has the columns
``seq_len,ch_idx`` (the request snapshot format of the NeuPIMs artifact).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
from pathlib import Path

import numpy as np

from neupims.errors import ConfigError, TraceError
from neupims.limits import MAX_SEQ_LEN, limit_text
from neupims.systems.base import build_system
from neupims.systems.placement import place_all
from neupims.systems.timeline import write_chrome_trace
from neupims.textio import read_text


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("iteration", help="simulate one decode iteration of a request snapshot")
    p.add_argument(
        "--system",
        required=True,
        help="a registered system: npu_only, npu_pim, npu_pim_sbi, neupims, gpu_only",
    )
    p.add_argument("--model", default="gpt3-7b")
    p.add_argument("--tp", type=int, default=4)
    p.add_argument("--pp", type=int, default=1)
    p.add_argument("--requests", required=True, help="CSV with columns seq_len,ch_idx")
    p.add_argument("--layers", type=int, default=None, help="decoder blocks (default: all)")
    p.add_argument("--placement", default=None, help="re-place the requests: round_robin|gmlbp")
    p.add_argument("--sbi", choices=("on", "off"), default=None, help="override sub-batching")
    p.add_argument("--dual-row-buffer", choices=("on", "off"), default=None)
    p.add_argument("--comm", action="store_true", help="model TP all-reduce on the interconnect")
    p.add_argument(
        "--preset",
        default="paper",
        help="'paper' (the hardware as the paper describes it) or 'released' (as the released "
        "NeuPIMs simulator runs it; docs/neupims.md, Presets)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--timeline", default=None, help="write a Chrome trace JSON of the iteration")
    p.set_defaults(func=run)


def read_snapshot(path: str | Path, channels: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Read ``seq_len,ch_idx`` rows for a memory of ``channels`` channels (None: any channel
    index is accepted); errors name the file and line. ``seq_len`` is at most :data:`neupims.limits.MAX_SEQ_LEN` tokens."""
    path = Path(path)
    text = read_text(path, TraceError).removeprefix("\ufeff")
    rows = csv.reader(io.StringIO(text), strict=True)
    try:
        return _snapshot_rows(rows, path, channels, MAX_SEQ_LEN, limit_text(MAX_SEQ_LEN))
    except csv.Error as exc:
        raise TraceError(f"{path}: line {rows.line_num}: malformed CSV: {exc}") from None


def _snapshot_rows(rows, path: Path, channels: int | None, max_seq: int, max_text: str):
    header = next(rows, None)
    if header is None or [h.strip() for h in header[:2]] != ["seq_len", "ch_idx"]:
        got = header if header is None or len(repr(header)) < 80 else repr(header)[:80] + "..."
        raise TraceError(f"{path}: line 1: expected the header 'seq_len,ch_idx', got {got}")
    seq, ch = [], []
    for row in rows:
        line = rows.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2:
            raise TraceError(f"{path}: line {line}: expected 2 columns, got {len(row)}")
        try:
            s, c = int(row[0]), int(row[1])
        except ValueError:
            cells = [c if len(c) <= 30 else c[:30] + "..." for c in row[:2]]
            raise TraceError(
                f"{path}: line {line}: seq_len and ch_idx must be integers, got {cells}"
            ) from None
        if s < 1 or c < 0:
            raise TraceError(
                f"{path}: line {line}: need seq_len >= 1 and ch_idx >= 0, got {s}, {c}"
            )
        if s > max_seq:
            raise TraceError(f"{path}: line {line}: seq_len = {s:,} exceeds the limit {max_text}")
        if channels is not None and c >= channels:
            raise TraceError(
                f"{path}: line {line}: ch_idx {c} out of range 0..{channels - 1} "
                f"(the memory has {channels} channels)"
            )
        seq.append(s)
        ch.append(c)
    if not seq:
        raise TraceError(f"{path}: no requests")
    return np.array(seq, np.int64), np.array(ch, np.int64)


def run(args: argparse.Namespace) -> int:
    overrides = {}
    if args.placement:
        overrides["placement"] = args.placement
    if args.sbi:
        overrides["sbi"] = args.sbi == "on"
        if args.sbi == "on":
            overrides["sbi_min_batch"] = 0
    if args.dual_row_buffer:
        overrides["dual_row_buffer"] = args.dual_row_buffer == "on"
    system = build_system(
        args.system,
        args.model,
        args.tp,
        args.pp,
        layers=args.layers,
        comm=args.comm,
        preset=args.preset,
        **overrides,
    )
    kv = system.kv()
    # one KV pool (a GPU's memory): the snapshot's PIM channels do not apply
    seq, ch = read_snapshot(args.requests, kv.pools if kv.pools > 1 else None)
    if kv.pools == 1:
        ch = np.zeros_like(ch)
    if args.placement:
        ch = place_all(args.placement, kv.load(seq), kv.units(seq, 1), kv.pools)
    r = system.iteration(seq, ch, record=bool(args.timeline))
    if args.timeline:
        if r.timeline is None:
            raise ConfigError(f"--timeline: system {args.system} has no stage timeline to export")
        write_chrome_trace(r.timeline, args.timeline, 1e9 / r.clock_hz)
    d = r.as_dict()
    d.update(
        model=args.model,
        tp=args.tp,
        pp=args.pp,
        preset=args.preset,
        placement=args.placement or "from trace",
    )
    if args.json:
        print(json.dumps(d, indent=2, default=float))
    else:
        stages = ", ".join(f"{k} {v:,.0f}" for k, v in r.stage_cycles.items())
        print(f"{system.spec.name} {args.model} tp={args.tp} batch={r.batch} sbi={r.sbi}")
        print(f"  stage cycles (first block): {stages}")
        print(
            f"  cycles per block {r.layer_cycles:,.0f}; per iteration {r.iteration_cycles:,.0f}"
            f" ({r.wall_time_s * 1e3:.3f} ms, {r.layers} blocks)"
        )
        print(
            f"  compute util {r.npu_utilisation:.1%}, PIM util {r.pim_utilisation:.1%}, PIM busy "
            f"{r.pim_busy_fraction:.1%}, memory BW {r.mem_bw_utilisation:.1%}; channel load "
            f"max/mean {r.channel_load_max_over_mean:.2f}"
        )
    if args.timeline:
        print(f"wrote timeline to {args.timeline}")
    return 0
