"""``neupims memsim --hw HW.yaml --pattern P [--dual-row-buffer|--no-dual-row-buffer] [--json]``

Runs the command-level HBM/PIM channel model standalone on one synthetic pattern, like
Ramulator's or DRAMsim3's own drivers, and prints bandwidth, row-buffer statistics, energy
and the simulator's own speed. One channel is simulated; device-wide bandwidth is that
channel's times the channel count (the patterns spread evenly over channels).
"""

from __future__ import annotations

import argparse
import json
import time

from neupims.config import load_hw
from neupims.devices import hbm_channel as H
from neupims.devices import pim
from neupims.devices.hbm_checker import check_log
from neupims.errors import ConfigError
from neupims.limits import MAX_MEMSIM_REQUESTS, limit_text

PATTERNS = ("stream-read", "random-read", "pim-gemv", "pim-gemv+stream-read")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("memsim", help="run the command-level HBM/PIM channel model on a pattern")
    p.add_argument("--hw", required=True, help="memory YAML path or name in hw_configs/")
    p.add_argument("--pattern", choices=PATTERNS, default="stream-read")
    p.add_argument(
        "--dual-row-buffer",
        dest="dual",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override pim.dual_row_buffer of the config",
    )
    p.add_argument("--requests", type=int, default=20000, help="64 B accesses (default 20000)")
    p.add_argument("--gemv", default="1024x4096", help="PIM GEMV rows x cols (default 1024x4096)")
    p.add_argument("--seed", type=int, default=0, help="seed of random-read")
    p.add_argument("--no-refresh", action="store_true", help="disable refresh")
    p.add_argument("--check", action="store_true", help="replay the log through the checker")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def _gemv_shape(text: str) -> tuple[int, int]:
    try:
        rows, cols = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"--gemv: expected ROWSxCOLS such as 1024x4096, got {text!r}") from None
    if rows <= 0 or cols <= 0:
        raise ConfigError(f"--gemv: rows and cols must be positive, got {text!r}")
    return rows, cols


def simulate_pattern(
    mem,
    pattern: str,
    *,
    dual=None,
    requests=20000,
    gemv=(1024, 4096),
    seed=0,
    refresh=True,
    check=False,
) -> dict:
    """Run ``pattern`` on one channel; return the result mapping printed by the CLI."""
    if pattern.startswith("pim") and not mem.pim.enabled:
        raise ConfigError(f"{mem.name}: pattern {pattern!r} needs pim.enabled: true")
    if requests <= 0:
        raise ConfigError(f"--requests must be positive, got {requests}")
    if requests > MAX_MEMSIM_REQUESTS:
        raise ConfigError(
            f"--requests {requests:,} exceeds the limit {limit_text(MAX_MEMSIM_REQUESTS)}"
        )
    if pattern.startswith("pim"):
        need = gemv[0] * gemv[1] * 2  # FP16 weights, all on the one simulated channel
        have = mem.organization.capacity_gb_per_channel * 2**30
        if need > have:
            raise ConfigError(
                f"--gemv {gemv[0]}x{gemv[1]}: the FP16 matrix needs {need / 2**30:,.3g} GiB, "
                f"more than one channel of {mem.name} holds ({have / 2**30:g} GiB)"
            )
    reqs, tiles = [], []
    if pattern == "stream-read":
        reqs = H.stream_requests(requests, mem)
    elif pattern == "random-read":
        reqs = H.random_requests(requests, mem, seed=seed)
    if pattern.startswith("pim-gemv"):
        tiles = H.tiles_of(pim.gemv_program(*gemv, mem))
    if pattern == "pim-gemv+stream-read":  # normal rows above the PIM rows
        reqs = H.stream_requests(requests, mem, start_row=len(tiles) + 1)
    t0 = time.perf_counter()
    stats, ch = H.simulate(mem, reqs, tiles, dual_row_buffer=dual, refresh=refresh)
    wall = time.perf_counter() - t0
    sim_s = stats.cycles * mem.timing.tck_ns * 1e-9
    moved = (stats.reads + stats.writes) * mem.access_bytes
    n_cmd = len(ch.log)  # commands issued (dual mode's COMP count is inside its PIM_GEMVs)
    ch_bw = moved / sim_s if sim_s else 0.0
    out = {
        "hw": mem.name,
        "pattern": pattern,
        "dual_row_buffer": ch.dual,
        "channels": mem.organization.channels,
        "bandwidth_gbps": ch_bw * mem.organization.channels / 1e9,
        "peak_gbps": mem.peak_bytes_per_s / 1e9,
        "efficiency": ch_bw / mem.channel_peak_bytes_per_s,
        "commands": stats.commands,
        "commands_total": n_cmd,
        "sim_cycles": stats.cycles,
        "sim_seconds": sim_s,
        "wall_seconds": wall,
        "commands_per_wall_second": n_cmd / wall if wall else 0.0,
        "row_hits": stats.row_hits,
        "row_misses": stats.row_misses,
        "row_conflicts": stats.row_conflicts,
        "requests_done_cycles": stats.last_request_done,
        "mean_read_latency_cycles": stats.read_latency_sum / stats.reads if stats.reads else 0.0,
        "energy_j": ch.energy_j(stats),
    }
    if tiles:
        out["pim_gemv_fast_path_cycles"] = pim.pim_gemv_cycles(*gemv, mem, dual_row_buffer=ch.dual)
    if check:
        v = check_log(ch.log, mem, dual_row_buffer=ch.dual, refresh=ch.refresh)
        out["checker"] = "ok" if v is None else str(v)
    return out


def run(args: argparse.Namespace) -> int:
    mem = load_hw(args.hw)
    if mem.kind != "memory":
        raise ConfigError(f"--hw {args.hw}: kind is {mem.kind!r}; memsim needs a memory config")
    out = simulate_pattern(
        mem,
        args.pattern,
        dual=args.dual,
        requests=args.requests,
        gemv=_gemv_shape(args.gemv),
        seed=args.seed,
        refresh=not args.no_refresh,
        check=args.check,
    )
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0 if out.get("checker", "ok") == "ok" else 1
    print(f"{out['hw']}  pattern {out['pattern']}  dual_row_buffer={out['dual_row_buffer']}")
    print(
        f"  bandwidth {out['bandwidth_gbps']:.1f} GB/s of {out['peak_gbps']:.1f} peak "
        f"({100 * out['efficiency']:.1f} %), {out['channels']} channels"
    )
    print(
        f"  simulated {out['sim_cycles']} cycles = {out['sim_seconds'] * 1e6:.2f} us; "
        f"requests done at {out['requests_done_cycles']}"
    )
    print(
        f"  row hits {out['row_hits']}, misses {out['row_misses']}, "
        f"conflicts {out['row_conflicts']}; mean read latency "
        f"{out['mean_read_latency_cycles']:.1f} cycles"
    )
    print(f"  commands {out['commands']}")
    print(f"  energy {out['energy_j'] * 1e6:.3f} uJ (one channel)")
    if "pim_gemv_fast_path_cycles" in out:
        print(f"  PIM GEMV fast path (idle channel): {out['pim_gemv_fast_path_cycles']:.0f} cycles")
    print(
        f"  wall {out['wall_seconds']:.3f} s, "
        f"{out['commands_per_wall_second']:,.0f} commands per wall second"
    )
    if "checker" in out:
        print(f"  checker: {out['checker']}")
        return 0 if out["checker"] == "ok" else 1
    return 0
