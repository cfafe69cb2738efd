"""Both controller paths give the same schedules: the compiled kernel
(:mod:`neupims.devices.hbm_jit`, every run, PIM tiles included) and the pure-Python
controller (``NEUPIMS_NO_JIT=1``, or no numba). The golden patterns, the benchmark's PIM
patterns and seeded request + PIM mixes run on each path, in dual and blocked mode with
refresh; logs, statistics and the channel state after the run must match, and the checker
must accept both logs.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from neupims.devices import hbm_channel as H
from neupims.devices import pim
from neupims.devices.hbm_checker import check_log

sys.path.insert(0, os.path.dirname(__file__))
import test_hbm_golden as G  # noqa: E402

pytest.importorskip("numba")


def _run(use_jit, monkeypatch, reqs, tiles, dual):
    """One simulate() on the chosen path; returns (stats, channel, jit runs)."""
    monkeypatch.setattr(H, "USE_JIT", use_jit)
    calls = []
    real = H.Controller._run_jit

    def counted(self, jit, r, t):
        calls.append(len(r) + len(t))
        return real(self, jit, r, t)

    monkeypatch.setattr(H.Controller, "_run_jit", counted)
    stats, ch = H.simulate(G.MEM, reqs, tiles, dual_row_buffer=dual)
    return stats, ch, len(calls)


def _state(ch):
    return (
        ch.nb,
        ch.ng,
        ch.nr,
        ch.nc,
        ch.mem_row,
        [list(a) for a in ch.acts],
        ch.counts,
        ch.last_issue,
        ch.bus_free,
        ch.open_count,
        ch.open_since,
    )


@pytest.mark.parametrize("dual", [True, False])
def test_both_paths_give_the_golden_logs(dual, monkeypatch):
    jit_runs = 0
    for name, (reqs, tiles) in G._patterns().items():
        out = {}
        for use_jit in (False, True):
            stats, ch, calls = _run(use_jit, monkeypatch, reqs, tiles, dual)
            assert G._digest(ch.log) == G.GOLDEN[(name, dual)], f"{name} jit={use_jit}"
            # the kernel serves every run, PIM tiles included; the Python path never uses it
            assert calls == (1 if use_jit else 0), name
            jit_runs += calls
            out[use_jit] = (dataclasses.asdict(stats), _state(ch))
        assert out[True] == out[False], f"{name}: statistics or channel state differ"
    assert jit_runs == len(G._patterns())  # every pattern went through the kernel


def test_paths_agree_on_random_streams_with_refresh_and_queue_limits(monkeypatch):
    """Seeded random mixes beyond the golden ones: arrival gaps, few rows, small queues, and
    a second run on the same channel (state carried in and out of the kernel)."""
    for seed in range(6):
        reqs = H.random_requests(
            400, G.MEM, seed=seed, write_fraction=0.1 * seed, rows=2 + 3 * seed, interval=seed
        )
        logs = {}
        for use_jit in (False, True):
            monkeypatch.setattr(H, "USE_JIT", use_jit)
            ch = H.HbmChannel(G.MEM)
            ctl = H.Controller(ch, queue_size=4 + 5 * seed)
            ctl.run(reqs[:200])
            later = [dataclasses.replace(r, arrival=r.arrival + ch.last_issue) for r in reqs[200:]]
            s = ctl.run(later)
            logs[use_jit] = (ch.log, dataclasses.asdict(s), _state(ch), ctl.ref_due)
        assert logs[True] == logs[False], f"seed {seed}"


def test_env_var_selects_the_python_path():
    code = "from neupims.devices import hbm_channel as H; print(H.USE_JIT)"
    env = dict(os.environ, NEUPIMS_NO_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


def _pim_state(ch):
    return _state(ch) + (ch.pim_row, ch.comps)


def _both(monkeypatch, run):
    """``run(use_jit)`` -> channel, on each path; returns {use_jit: (log, stats, state)} and
    checks that the kernel path really used the kernel and that the checker accepts it."""
    out = {}
    for use_jit in (False, True):
        monkeypatch.setattr(H, "USE_JIT", use_jit)
        calls = []
        real = H.Controller._run_jit

        def counted(self, jit, r, t, calls=calls, real=real):
            calls.append(len(t))
            return real(self, jit, r, t)

        monkeypatch.setattr(H.Controller, "_run_jit", counted)
        ch, stats = run()
        monkeypatch.setattr(H.Controller, "_run_jit", real)
        assert bool(calls) == use_jit
        out[use_jit] = (ch.log, dataclasses.asdict(stats), _pim_state(ch))
        v = check_log(ch.log, ch.mem, dual_row_buffer=ch.dual)
        assert v is None, f"jit={use_jit}: {v}"
    return out


@pytest.mark.parametrize("dual", [True, False])
@pytest.mark.parametrize("name", ["gemv", "mha", "gemv+stream-read", "gemv+random-rw"])
def test_pim_patterns_log_for_log(name, dual, monkeypatch):
    """The benchmark's PIM patterns (smaller) give the same log, statistics and channel
    state (PIM rows and COMP count included) on both paths, with refresh."""
    gemv = H.tiles_of(pim.gemv_program(512, 4096, G.MEM))
    mha = H.tiles_of([g for s in (300, 700, 120) for g in pim.mha_program(s, 8, 128, G.MEM)])
    reqs, tiles = {
        "gemv": ([], gemv),
        "mha": ([], mha),
        "gemv+stream-read": (H.stream_requests(5000, G.MEM, start_row=2000), gemv),
        "gemv+random-rw": (
            H.random_requests(3000, G.MEM, seed=3, write_fraction=0.3, rows=40, interval=2),
            gemv,
        ),
    }[name]

    def run():
        stats, ch = H.simulate(G.MEM, reqs, tiles, dual_row_buffer=dual)
        return ch, stats

    out = _both(monkeypatch, run)
    assert out[True] == out[False], f"{name} dual={dual}"
    assert any(e[1] == "REF" for e in out[True][0])  # refresh interplays with the PIM work


def _random_tiles(rng, n, rows):
    return [
        H.PimTile(
            rng.randrange(rows), rng.randrange(1, 40), rng.randrange(1, 5), rng.random() < 0.4
        )
        for _ in range(n)
    ]


@pytest.mark.parametrize("dual", [True, False])
def test_paths_agree_on_random_pim_request_mixes(dual, monkeypatch):
    """Seeded mixes of requests and PIM tiles on few rows (requests hit the tiles' rows, so
    ACTs wait for PIM precharges and PREs free the tiles' rows), with arrival gaps, small
    queues, a short tREFI (refresh deferred to tile ends), a short tFAW, refresh off, and a
    second run on the same channel (rows left open, state carried in and out of the kernel)."""
    import random

    t = G.MEM.timing
    variants = [
        G.MEM,
        G.MEM.model_copy(update={"timing": t.model_copy(update={"tREFI": 1500})}),
        G.MEM.model_copy(update={"timing": t.model_copy(update={"tFAW": 5})}),
    ]
    for seed in range(8):
        rng = random.Random(seed)
        mem = variants[seed % len(variants)]
        refresh = seed != 3
        reqs = H.random_requests(
            300, mem, seed=seed, write_fraction=0.1 * (seed % 5), rows=3 + seed, interval=seed % 4
        )
        tiles = _random_tiles(rng, 6 + seed, 3 + seed)
        tiles2 = _random_tiles(rng, 4, 3 + seed)
        qsize = 4 + 4 * seed

        def run(mem=mem, refresh=refresh, reqs=reqs, tiles=tiles, tiles2=tiles2, qsize=qsize):
            ch = H.HbmChannel(mem, dual_row_buffer=dual, refresh=refresh)
            ctl = H.Controller(ch, queue_size=qsize)
            ctl.run(reqs[:150], tiles)
            later = [dataclasses.replace(r, arrival=r.arrival + ch.last_issue) for r in reqs[150:]]
            return ch, ctl.run(later, tiles2)

        out = _both(monkeypatch, run)
        assert out[True] == out[False], f"seed {seed} dual={dual}"


def _mode(policy, guard, queues):
    c = G.MEM.controller
    refresh = c.refresh.model_copy(update={"policy": policy, "pim_deadline_guard": guard})
    ctl = c.model_copy(update={"queue_structure": queues, "refresh": refresh})
    return G.MEM.model_copy(update={"controller": ctl})


#: the general refresh path (rank-staggered refresh, the PIM deadline guard) and per-bank
#: queues, each with and without the others
GENERAL_MODES = {
    "rank_staggered": _mode("rank_staggered", False, "shared"),
    "rank_staggered+guard": _mode("rank_staggered", True, "shared"),
    "all_bank+guard": _mode("all_bank", True, "shared"),
    "released": _mode("rank_staggered", True, "per_bank"),
    "all_bank+per_bank": _mode("all_bank", False, "per_bank"),
}


@pytest.mark.parametrize("dual", [True, False])
@pytest.mark.parametrize("mode", list(GENERAL_MODES))
def test_refresh_modes_log_for_log(mode, dual, monkeypatch):
    """PIM programs, PIM + streaming / random traffic, and seeded request + PIM mixes (few
    rows, arrival gaps, small queues, a second run on the same channel) give the same log,
    statistics and channel state on both paths in every refresh / queue mode; the checker
    (with its refresh-schedule rules for the mode) accepts both."""
    import random

    mem = GENERAL_MODES[mode]
    gemv = H.tiles_of(pim.gemv_program(512, 2048, mem))
    mha = H.tiles_of([g for s in (300, 700) for g in pim.mha_program(s, 8, 128, mem)])
    cases = [
        ([], mha),
        (H.stream_requests(4000, mem, start_row=2000), gemv),
        (H.random_requests(2500, mem, seed=3, write_fraction=0.3, rows=40, interval=2), gemv),
    ]
    for seed in range(3):
        rng = random.Random(seed)
        reqs = H.random_requests(
            900, mem, seed=seed, write_fraction=0.15 * seed, rows=3 + seed, interval=seed
        )
        cases.append((reqs, _random_tiles(rng, 10 + 4 * seed, 3 + seed)))
    saw_ref = False
    for k, (reqs, tiles) in enumerate(cases):
        qsize = 6 + 5 * k if k >= 3 and mem.controller.queue_structure == "shared" else None

        def run(reqs=reqs, tiles=tiles, qsize=qsize):
            ch = H.HbmChannel(mem, dual_row_buffer=dual)
            ctl = H.Controller(ch, queue_size=qsize)
            half = len(reqs) // 2
            ctl.run(reqs[:half], tiles)
            later = [dataclasses.replace(r, arrival=r.arrival + ch.last_issue) for r in reqs[half:]]
            stats = ctl.run(later, tiles[:4])
            return ch, stats

        out = _both(monkeypatch, run)
        assert out[True] == out[False], f"{mode} dual={dual} case {k}"
        saw_ref |= any(e[1] == "REF" for e in out[True][0])
    assert saw_ref


@pytest.mark.parametrize("mode", ["all_bank", *GENERAL_MODES])
def test_blocked_mode_paths_agree_with_vector_row_traffic(mode, monkeypatch):
    """Blocked (Newton) mode specifics on both paths: requests to the GWRITE's vector row and
    its bank (``hbm_timing.vector_bank``) before, between and after tiles; tiles with fewer
    COMPs than results (a READRES straight after a READRES) and with GWRITEs; rows left open
    into a second run; every refresh / queue mode. Same log, statistics and channel state;
    the checker accepts both."""
    import random

    from neupims.devices import hbm_timing as T

    mem = G.MEM if mode == "all_bank" else GENERAL_MODES[mode]
    vr, vg, vb, vrow = T.vector_bank(mem)
    rng = random.Random(12)
    reqs = []
    t = 0
    for i in range(700):
        t += rng.randrange(0, 6)
        if i % 3 == 0:  # the vector row and its bank
            reqs.append(H.Request(t, rng.random() < 0.3, vr, vg, vb, rng.choice([vrow, 1]), 0))
        else:
            reqs.append(
                H.Request(t, rng.random() < 0.2, rng.randrange(2), rng.randrange(4), 0, 2, 0)
            )
    tiles = [
        H.PimTile(10 + i, k, n, i % 3 == 0)
        for i, (k, n) in enumerate(
            [(2, 4), (32, 4), (1, 1), (32, 1), (5, 8), (40, 3), (3, 3), (32, 4), (7, 2)] * 4
        )
    ]

    def run():
        ch = H.HbmChannel(mem, dual_row_buffer=False)
        ctl = H.Controller(ch)
        ctl.run(reqs[:400], tiles[:20])
        later = [dataclasses.replace(r, arrival=r.arrival + ch.last_issue) for r in reqs[400:]]
        return ch, ctl.run(later, tiles[20:])

    out = _both(monkeypatch, run)
    assert out[True] == out[False], mode
    log = out[True][0]
    names = [e[1] for e in log]
    assert "PIM_GEMV" not in names and "PIM_PRECHARGE" not in names
    assert any(a[1] == b[1] == "READRES" for a, b in zip(log, log[1:], strict=False))
    assert any(e[1] in ("RD", "WR") and e[2:6] == (vr, vg, vb, vrow) for e in log)
    assert "REF" in names and names.count("GWRITE") == sum(x.gwrite for x in tiles)
