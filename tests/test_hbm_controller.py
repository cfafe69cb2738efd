"""Levels 1, 2 and 4 of the test pyramid: smoke on every memory config, unloaded latency
and streaming bandwidth against closed forms, controller scheduling (FR-FCFS, dual vs
blocked PIM, refresh), and randomised streams that the independent checker must accept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neupims.config import load_hw
from neupims.devices import hbm_channel as H
from neupims.devices import pim
from neupims.devices.hbm_checker import check_log

ROOT = Path(__file__).resolve().parents[1]
MEM_CONFIGS = sorted(
    p.stem
    for p in (ROOT / "hw_configs").glob("*.yaml")
    if yaml.safe_load(p.read_text()).get("kind") == "memory"
)
MEM = load_hw("hbm2_pim_neupims")
T = MEM.timing
BL = MEM.burst_cycles


def _run(reqs=(), tiles=(), dual=True, refresh=True, mem=MEM):
    stats, ch = H.simulate(mem, list(reqs), list(tiles), dual_row_buffer=dual, refresh=refresh)
    v = check_log(ch.log, mem, dual_row_buffer=ch.dual)
    assert v is None, str(v)
    return stats, ch


# ------------------------------------------------------------------ level 1: smoke
@pytest.mark.parametrize("name", MEM_CONFIGS)
def test_smoke_every_memory_config(name):
    mem = load_hw(name)
    s, _ = _run(H.stream_requests(300, mem), mem=mem)
    assert s.reads == 300 and s.cycles > 300 * mem.burst_cycles
    s, _ = _run(H.random_requests(200, mem, seed=1, write_fraction=0.3), mem=mem)
    assert s.reads + s.writes == 200
    if mem.pim.enabled:
        s, _ = _run((), H.tiles_of(pim.gemv_program(64, 1024, mem)), mem=mem)
        assert s.commands["PIM_GEMV"] == 4 and s.commands["COMP"] == 4 * 32


def test_pim_tiles_refused_without_pim():
    mem = load_hw("hbm2_neupims_dram")
    with pytest.raises(H.NeupimsError, match="pim.enabled"):
        H.simulate(mem, [], [H.PimTile(0, 8, 1, True)])


# ------------------------------------------------------------------ level 2: closed forms
def _read_latency(reqs):
    s, _ = _run(reqs, refresh=False)
    return s.read_latency_sum


def test_unloaded_latency_hit_miss_conflict():
    miss = H.Request(0, False, 0, 0, 0, 10, 0)
    assert _read_latency([miss]) == T.tRCDRD + T.CL + BL
    hit = H.Request(500, False, 0, 0, 0, 10, 3)
    assert _read_latency([miss, hit]) - _read_latency([miss]) == T.CL + BL
    conflict = H.Request(500, False, 0, 0, 0, 11, 3)
    assert _read_latency([miss, conflict]) - _read_latency([miss]) == (T.tRP + T.tRCDRD + T.CL + BL)


def test_streaming_reaches_peak_less_refresh_and_random_does_not():
    s, _ = _run(H.stream_requests(4000, MEM))
    eff = s.reads * BL / s.cycles
    random, _ = _run(H.random_requests(1500, MEM, seed=3))
    eff_r = random.reads * BL / random.cycles
    print(f"\nstream-read efficiency {eff:.3f} of peak; random-read {eff_r:.3f}")
    assert 1 - T.tRFC / T.tREFI - 0.03 <= eff <= 1.0
    assert eff_r < 0.7 * eff
    assert s.row_hits > 0.9 * s.reads and random.row_hits < 0.1 * random.reads


def test_stream_fast_path_matches_command_level():
    n = 4000
    s, _ = _run(H.stream_requests(n, MEM))
    from neupims.devices.dram import stream_read_cycles

    fast = stream_read_cycles(n * MEM.access_bytes, MEM, channels=1)
    assert abs(fast / s.cycles - 1) < 0.03


# ------------------------------------------------------------------ level 4: scheduling
def test_fr_fcfs_serves_row_hit_before_older_miss():
    first = H.Request(0, False, 0, 0, 0, 10, 0)  # opens row 10
    older_miss = H.Request(200, False, 0, 0, 0, 20, 0)
    newer_hit = H.Request(200, False, 0, 0, 0, 10, 5)  # same cycle, queued behind
    s, ch = _run([first, older_miss, newer_hit], refresh=False)
    after = [e for e in ch.log if e[0] >= 200]
    assert after[0][1] == "RD" and after[0][5] == 10  # the hit first
    assert after[1][1] == "PRE"
    assert s.row_hits == 1 and s.row_conflicts == 1 and s.row_misses == 1


def test_fr_fcfs_without_hit_serves_oldest_first():
    reqs = [H.Request(0, False, 0, b % 4, b // 4, 5 + b, 0) for b in range(4)]
    _, ch = _run(reqs, refresh=False)
    acts = [e for e in ch.log if e[1] == "ACT"]
    assert [a[5] for a in acts] == [5, 6, 7, 8]


def _pim_and_stream(dual):
    tiles = H.tiles_of(pim.gemv_program(512, 2048, MEM))
    reqs = H.stream_requests(1500, MEM, start_row=1000)
    return _run(reqs, tiles, dual=dual)


def test_dual_reads_proceed_during_pim_gemv_blocked_waits():
    sd, chd = _pim_and_stream(True)
    sb, chb = _pim_and_stream(False)
    for ch, dual in ((chd, True), (chb, False)):
        g_first = min(e[0] for e in ch.log if e[1] == "G_ACT")
        g_last = max(e[0] for e in ch.log if e[1] == "READRES")
        during = [e for e in ch.log if e[1] == "RD" and g_first < e[0] < g_last]
        if dual:
            assert len(during) > 1000
        else:
            assert during == []
    assert sd.cycles < sb.cycles
    assert sd.last_request_done < sb.last_request_done


def test_refresh_blocks_the_channel():
    s, ch = _run(H.stream_requests(6000, MEM))
    refs = [e for e in ch.log if e[1] == "REF"]
    assert len(refs) == ch.R * (s.cycles // T.tREFI)
    for ref in refs:
        blocked = [
            e
            for e in ch.log
            if e[1] in ("ACT", "RD", "WR") and ref[0] < e[0] < ref[0] + T.tRFC and e[2] == ref[2]
        ]
        assert blocked == []
    # refresh-free run is faster by about tRFC per refresh
    s0, _ = _run(H.stream_requests(6000, MEM), refresh=False)
    assert s.cycles - s0.cycles >= len(refs) // ch.R * T.tRFC * 0.9


def test_pim_gemv_waits_for_refresh_and_matches_fast_path():
    groups = pim.gemv_program(2048, 4096, MEM)
    s, _ = _run((), H.tiles_of(groups))
    assert s.commands.get("REF", 0) > 0
    fast = pim.pim_gemv_cycles(2048, 4096, MEM)
    assert abs(fast / s.cycles - 1) < 0.03


# ------------------------------------------------------------------ randomised
_req = st.tuples(
    st.integers(0, 40),  # arrival gap
    st.booleans(),  # write
    st.integers(0, 1),
    st.integers(0, 3),
    st.integers(0, 3),
    st.integers(0, 5),  # few rows: hits, misses and conflicts
    st.integers(0, 15),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    reqs=st.lists(_req, min_size=1, max_size=60),
    n_tiles=st.integers(0, 3),
    k=st.integers(1, 32),
    dual=st.booleans(),
)
def test_random_streams_never_violate_timing(reqs, n_tiles, k, dual):
    t = 0
    requests = []
    for gap, w, ra, bg, ba, row, col in reqs:
        t += gap
        requests.append(H.Request(t, w, ra, bg, ba, row, col))
    # PIM rows 3..: some collide with the normal rows above
    tiles = [H.PimTile(3 + i, k, 1 + i % 2, i == 0) for i in range(n_tiles)]
    s, _ = _run(requests, tiles, dual=dual)
    assert s.reads + s.writes == len(requests)
    assert s.commands.get("P_HEADER", 0) == n_tiles
    # dual: one composite PIM_GEMV per tile; blocked (Newton): every COMP a command
    assert s.commands.get("PIM_GEMV", 0) == (n_tiles if dual else 0)
    assert s.commands.get("COMP", 0) == n_tiles * k


def test_random_long_stream_with_refresh_is_legal():
    reqs = H.random_requests(3000, MEM, seed=7, write_fraction=0.4, rows=8, interval=3)
    tiles = H.tiles_of(pim.gemv_program(256, 1024, MEM), first_row=4)
    for dual in (True, False):
        s, _ = _run(reqs, tiles, dual=dual)
        assert s.commands["REF"] >= 2


def test_pim_keeps_priority_under_saturating_random_reads():
    """PIM commands win the command bus and the rank's tFAW window (docs/sources/neupims.md §6):
    a GEMV next to a saturating random-read stream finishes close to its idle time."""
    tiles = H.tiles_of(pim.gemv_program(256, 2048, MEM))
    alone = pim.pim_gemv_cycles(256, 2048, MEM)
    reqs = H.random_requests(1500, MEM, seed=2)
    sd, chd = _run(reqs, tiles, dual=True)
    sb, _ = _run(reqs, tiles, dual=False)
    pim_done = max(e[0] for e in chd.log if e[1] == "READRES")
    assert pim_done < 1.05 * alone
    assert sd.last_request_done < sb.last_request_done


def test_address_mapping_is_validated_and_configurable(tmp_path):
    from neupims.errors import ConfigError

    text = (ROOT / "hw_configs/hbm2_pim_neupims.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("address_mapping: rorabgbachco", "address_mapping: rorabgbaco"))
    with pytest.raises(ConfigError, match="controller.address_mapping"):
        load_hw(bad)
    # bank bits below the column bits: a stream walks the banks, every access a row miss
    alt = tmp_path / "alt.yaml"
    alt.write_text(text.replace("address_mapping: rorabgbachco", "address_mapping: rochcobgbara"))
    mem = load_hw(alt)
    reqs = H.stream_requests(64, mem)
    assert len({(r.rank, r.bg, r.bank) for r in reqs[:32]}) == 32
    s, _ = _run(reqs, mem=mem)
    assert s.row_misses == 32 and s.row_hits == 32
