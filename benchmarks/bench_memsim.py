"""Speed and agreement of the HBM/PIM models. Prints, does not assert.

1. Command-level model: DRAM commands simulated per wall second (target >= 300,000) on
   stream-read, random-read, PIM GEMV, MHA and PIM GEMV + stream-read, one core; the default
   path (the numba kernel, when numba is installed) and the pure-Python path
   (``NEUPIMS_NO_JIT=1``) interleaved, with their logs compared, and the kernel's
   first-call time (compile, or load from numba's cache) printed apart.
   ``--cold-jit`` points numba's cache at an empty folder so that time is the compile.
2. Fast path vs command-level model: worst relative error over random MHA/GEMV shapes, per
   refresh mode (all-bank default, rank-staggered, the released preset: rank-staggered + the
   PIM deadline guard), in dual and in blocked (Newton) mode.
3. Fast path: wall time for all MHA of one GPT-3 175B decode iteration at batch 512
   (TP 8 x PP 4 as in docs/sources/neupims.md §11: 12 heads of 128 per device, 96 layers, 32
   channels), cold (every layer recomputed) and as a caller sees it (memoised); and one
   call per refresh mode (one channel set, both phases too).

Run: ``.venv/bin/python benchmarks/bench_memsim.py [--quick] [--baseline OLD_hbm_channel.py]``

``--baseline`` loads another version of :mod:`neupims.devices.hbm_channel` from a file (e.g.
``git show 11b0673:neupims/devices/hbm_channel.py > /tmp/old.py``), runs it on the same
patterns interleaved with the current one, and prints both speeds, their ratio and whether
the two command logs are identical (they must be: speed work may not change schedules).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time

import numpy as np

from neupims.cli.iteration import read_snapshot
from neupims.config import load_hw
from neupims.config.loader import ROOT
from neupims.devices import hbm_channel as H
from neupims.devices import pim

#: the NeuPIMs artifact's request snapshots, bundled unmodified
REFERENCE = ROOT / "validation" / "neupims" / "reference"


def _load_module(path: str):
    """Import a file as a module (registered, so its dataclasses work)."""
    spec = importlib.util.spec_from_file_location("hbm_channel_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def _timed(sim, mem, reqs, tiles):
    t0 = time.perf_counter()
    stats, ch = sim(mem, reqs, tiles)
    return time.perf_counter() - t0, stats, ch


def _py_simulate(mem, reqs, tiles):
    """simulate() on the pure-Python controller (as with NEUPIMS_NO_JIT=1)."""
    was = H.USE_JIT
    H.USE_JIT = False
    try:
        return H.simulate(mem, reqs, tiles)
    finally:
        H.USE_JIT = was


def jit_first_call(mem) -> None:
    """Time of the kernel's first call: numba compiles it, or loads it from its cache."""
    if not H.USE_JIT or H._jit_module() is None:
        print("numba kernel: off (NEUPIMS_NO_JIT set or numba not installed)")
        return
    t0 = time.perf_counter()
    H.simulate(mem, H.random_requests(20, mem, seed=0, write_fraction=0.5), [])
    dt = time.perf_counter() - t0
    where = os.environ.get("NUMBA_CACHE_DIR", "neupims/devices/__pycache__")
    print(f"numba kernel first call (compile, or load from the cache in {where}): {dt:.2f} s")


def command_speed(mem, quick: bool, baseline=None) -> None:
    jit_first_call(mem)
    scale = 4 if quick else 1
    repeat = 1 if quick else 3
    if baseline is not None:  # at least 2: the first run of each pays one-off warm-up costs
        repeat = 2 if quick else 5
    gemv = pim.gemv_program(1024 // scale, 4096, mem)
    mha = [g for s in (300, 700, 1200) for g in pim.mha_program(s // scale, 8, 128, mem)]
    cases = [
        ("stream-read", H.stream_requests(40000 // scale, mem), []),
        ("random-read", H.random_requests(10000 // scale, mem, seed=1), []),
        ("pim-gemv 1024x4096", [], H.tiles_of(gemv)),
        ("mha 3 requests x 8 heads", [], H.tiles_of(mha)),
        (
            "pim-gemv+stream-read",
            H.stream_requests(10000 // scale, mem, start_row=2000),
            H.tiles_of(gemv),
        ),
    ]
    total_cmd = total_wall = total_base = total_py = 0.0
    print(
        f"command-level model (one channel, refresh on; best of {repeat}; "
        "default path, then the pure-Python path):"
    )
    for name, reqs, tiles in cases:
        wall = base = py = float("inf")
        for _ in range(repeat):  # best of `repeat`: the machine may be shared
            w, stats, ch = _timed(H.simulate, mem, reqs, tiles)
            wall = min(wall, w)
            w, _, ch_py = _timed(_py_simulate, mem, reqs, tiles)  # interleaved
            py = min(py, w)
            if baseline is not None:  # interleaved, so both see the same machine load
                w, _, ch_b = _timed(baseline.simulate, mem, reqs, tiles)
                base = min(base, w)
        n = sum(v for k, v in stats.commands.items() if k != "COMP")
        total_cmd += n
        total_wall += wall
        total_py += py
        line = (
            f"  {name:28s} {n:8d} commands {stats.cycles:9d} cycles "
            f"{wall:6.3f} s  {n / wall:10,.0f} commands/s  python {n / py:10,.0f}/s  "
            f"log {'identical' if ch.log == ch_py.log else 'DIFFERS'}"
        )
        if baseline is not None:
            total_base += base
            same = ch.log == ch_b.log
            line += (
                f"  baseline {n / base:10,.0f}/s  x{base / wall:.2f}  "
                f"log {'identical' if same else 'DIFFERS'}"
            )
        print(line)
    line = (
        f"  {'all':28s} {int(total_cmd):8d} commands {'':16s}{total_wall:6.3f} s  "
        f"{total_cmd / total_wall:10,.0f} commands/s  python {total_cmd / total_py:10,.0f}/s"
        "  (target >= 300,000)"
    )
    if baseline is not None:
        line += f"  baseline {total_cmd / total_base:10,.0f}/s  x{total_base / total_wall:.2f}"
    print(line)


def _modes(mem):
    """The refresh modes whose fast paths are checked: name -> memory config."""
    refresh = mem.controller.refresh.model_copy(update={"policy": "rank_staggered"})
    staggered = mem.model_copy(
        update={"controller": mem.controller.model_copy(update={"refresh": refresh})}
    )
    return {
        "all_bank (default)": mem,
        "rank_staggered": staggered,
        "released (rank_staggered + guard)": load_hw("hbm2_pim_neupims_released"),
    }


def agreement(mem, quick: bool) -> None:
    for dual in (True, False):
        for name, m in _modes(mem).items():
            print(f"[{name}, {'dual' if dual else 'blocked'}] ", end="")
            _agreement(m, quick, dual)


def _agreement(mem, quick: bool, dual: bool = True) -> None:
    rng = np.random.default_rng(7)
    worst = (0.0, None)
    n = 20 if quick else 60
    for _ in range(n):
        seq = [int(x) for x in rng.integers(1, 1500, int(rng.integers(1, 5)))]
        h = int(rng.choice([1, 2, 4, 8, 12]))
        d = int(rng.choice([64, 96, 128]))
        groups = [g for s in seq for g in pim.mha_program(s, h, d, mem)]
        ref, _ = H.simulate(mem, (), H.tiles_of(groups), dual_row_buffer=dual)
        err = pim.mha_channel_cycles(seq, h, d, mem, dual_row_buffer=dual).cycles / ref.cycles - 1
        if abs(err) >= abs(worst[0]):
            worst = (err, f"MHA seq={seq} heads={h} d={d}")
    for rows, cols in ((32, 512), (100, 700), (1024, 1024), (2048, 4096), (64, 8192)):
        ref, _ = H.simulate(
            mem, (), H.tiles_of(pim.gemv_program(rows, cols, mem)), dual_row_buffer=dual
        )
        err = pim.pim_gemv_cycles(rows, cols, mem, dual_row_buffer=dual) / ref.cycles - 1
        if abs(err) >= abs(worst[0]):
            worst = (err, f"GEMV {rows}x{cols}")
    print(
        f"fast path vs command level over {n + 5} shapes: worst {100 * worst[0]:+.3f} % "
        f"({worst[1]})"
    )


def _batch(mem):
    """512 (seq_len, channel) pairs: the released NeuPIMs ShareGPT snapshot (GMLBP), bundled in
    validation/neupims/reference/ (read with the CLI's validated reader: errors name the file
    and line)."""
    ref = REFERENCE / "share-gpt2-bs512-ms7B-tp4-clb-0.csv"
    seq, ch = read_snapshot(ref, mem.organization.channels)
    return seq, ch, ref.name


def gpt3_175b(mem) -> None:
    seq, ch, src = _batch(mem)
    heads, d_head, layers = 96 // 8, 128, 96
    nch = mem.organization.channels
    per_ch = [tuple(int(x) for x in seq[ch == c]) for c in range(nch)]
    t0 = time.perf_counter()
    for _ in range(layers):
        pim._CHANNELS_CACHE.clear()
        vec = pim.mha_channels_cycles(seq, ch, heads, d_head, mem)
    t_vec = time.perf_counter() - t0
    pim._CHANNELS_CACHE.clear()
    t0 = time.perf_counter()
    for _ in range(layers):
        pim.mha_channels_cycles(seq, ch, heads, d_head, mem)
    t_vec_memo = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(layers):
        pim._mha_cached.cache_clear()
        cold = [pim.mha_channel_cycles(s, heads, d_head, mem) for s in per_ch]
    t_cold = time.perf_counter() - t0
    pim._mha_cached.cache_clear()
    t0 = time.perf_counter()
    for _ in range(layers):
        [pim.mha_channel_cycles(s, heads, d_head, mem) for s in per_ch]
    t_memo = time.perf_counter() - t0
    assert np.allclose(vec.cycles, [c.cycles for c in cold])
    cyc = np.array([c.cycles for c in cold])
    est = np.array(
        [pim.neupims_mha_estimate_cycles(s, heads * d_head, heads, mem).sum() for s in per_ch]
    )
    print(
        f"GPT-3 175B decode, batch 512 ({src}), {heads} heads x {d_head} per device, "
        f"{layers} layers x {nch} channels = {layers * nch} channel calls:"
    )
    print(
        f"  mha_channels_cycles (all channels per call), memoised:    {1e3 * t_vec_memo:7.1f} ms"
        "  (target < 50 ms)"
    )
    print(f"  mha_channels_cycles (all channels per call), every layer: {1e3 * t_vec:7.1f} ms")
    print(f"  mha_channel_cycles per channel, every layer recomputed:  {1e3 * t_cold:7.1f} ms")
    print(f"  mha_channel_cycles per channel, memoised across layers:  {1e3 * t_memo:7.1f} ms")
    print(
        f"  MHA stage per layer (max channel): {cyc.max():,.0f} cycles "
        f"(max/mean {cyc.max() / cyc.mean():.2f}); Algorithm 1 estimate {est.max():,.0f} "
        f"(model/estimate {cyc.max() / est.max():.3f})"
    )
    for name, m in _modes(mem).items():
        pim.mha_channels_cycles(seq[:4], ch[:4], heads, d_head, m)  # compile / load kernels
        calls = []
        for _ in range(5):
            pim._CHANNELS_CACHE.clear()
            t0 = time.perf_counter()
            r = pim.mha_channels_cycles(seq, ch, heads, d_head, m)
            t1 = time.perf_counter()
            ph = pim.mha_channels_phases(seq, ch, heads, d_head, m)
            calls.append((t1 - t0, time.perf_counter() - t1))
        one, two = (min(c[i] for c in calls) for i in (0, 1))
        busy = ph.logit.cycles + ph.attend.cycles
        print(
            f"  [{name}] one call {1e3 * one:5.2f} ms, two phases {1e3 * two:5.2f} ms; "
            f"max channel {r.cycles.max():,.0f}; phases mean {busy.mean():,.0f} "
            f"(logit max {ph.logit.cycles.max():,.0f}, attend max {ph.attend.cycles.max():,.0f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument(
        "--baseline",
        metavar="FILE",
        help="another hbm_channel.py to time against, interleaved (and compare logs)",
    )
    ap.add_argument("--speed-only", action="store_true", help="only the command-level speed")
    ap.add_argument(
        "--cold-jit",
        action="store_true",
        help="an empty numba cache, so the kernel's first-call time is its compile time",
    )
    args = ap.parse_args()
    if args.cold_jit:  # read by numba when it is first imported (by the first kernel run)
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="neupims-numba-")
    mem = load_hw("hbm2_pim_neupims")
    baseline = _load_module(args.baseline) if args.baseline else None
    command_speed(mem, args.quick, baseline)
    if args.speed_only:
        return
    agreement(mem, args.quick)
    gpt3_175b(mem)


if __name__ == "__main__":
    main()
