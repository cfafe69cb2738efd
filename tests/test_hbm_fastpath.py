"""The fast path agrees with the command-level model within 3 % over 50+ shapes, under the
default all-bank refresh (closed form) and under rank-staggered refresh with and without the
PIM refresh-deadline guard (tile walk, docs/hbm_pim.md "Refresh policies")."""

from __future__ import annotations

import json

import numpy as np
import pytest

from neupims.cli import main as cli_main
from neupims.config import load_hw
from neupims.devices import hbm_channel as H
from neupims.devices import pim
from neupims.devices.hbm_checker import check_log

MEM = load_hw("hbm2_pim_neupims")
TOL = 0.03


def _staggered(mem):
    refresh = mem.controller.refresh.model_copy(update={"policy": "rank_staggered"})
    return mem.model_copy(
        update={"controller": mem.controller.model_copy(update={"refresh": refresh})}
    )


#: refresh modes: the default, rank-staggered alone, and the released preset (+ the guard)
MODES = {
    "all_bank": MEM,
    "rank_staggered": _staggered(MEM),
    "released": load_hw("hbm2_pim_neupims_released"),
}


def _mha_shapes():
    rng = np.random.default_rng(2024)
    out = []
    for _ in range(36):
        n = int(rng.integers(1, 4))
        seq = [int(x) for x in rng.integers(1, 700, n)]
        heads = int(rng.choice([1, 2, 4]))
        d = int(rng.choice([64, 96, 128]))
        out.append((seq, heads, d))
    out += [([512], 2, 128), ([513], 1, 128), ([32, 33], 2, 64), ([1], 1, 128)]
    return out


GEMV_SHAPES = [
    (32, 512),
    (64, 16),
    (100, 700),
    (256, 1024),
    (512, 512),
    (33, 2048),
    (1024, 256),
    (2048, 96),
    (300, 1500),
    (128, 4096),
    (2048, 2048),
    (64, 8192),
]


def _command_level(groups, dual=True, mem=MEM, refresh=True):
    stats, ch = H.simulate(mem, (), H.tiles_of(groups), dual_row_buffer=dual, refresh=refresh)
    return stats, ch


#: the commands a tile program issues in each mode: dual (NeuPIMs) and blocked (Newton)
PIM_COMMANDS = {
    True: ("P_HEADER", "G_ACT", "PIM_GEMV", "PIM_PRECHARGE", "COMP", "READRES", "GWRITE"),
    False: ("P_HEADER", "G_ACT", "PREA", "ACT", "PRE", "COMP", "READRES", "GWRITE"),
}


@pytest.mark.parametrize("dual", [True, False])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("seq,heads,d", _mha_shapes())
def test_mha_fast_path_within_3_percent(seq, heads, d, mode, dual):
    mem = MODES[mode]
    groups = [g for s in seq for g in pim.mha_program(s, heads, d, mem)]
    stats, _ = _command_level(groups, dual, mem=mem)
    fast = pim.mha_channel_cycles(seq, heads, d, mem, dual_row_buffer=dual)
    assert abs(fast.cycles / stats.cycles - 1) < TOL
    for name in PIM_COMMANDS[dual]:
        assert fast.commands[name] == stats.commands[name], name
    assert "PIM_GEMV" not in (stats.commands if not dual else {})
    if mode != "all_bank":  # the walk takes the controller's refreshes one by one
        assert fast.commands.get("REF", 0) == stats.commands.get("REF", 0)


@pytest.mark.parametrize("dual", [True, False])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("rows,cols", GEMV_SHAPES)
def test_gemv_fast_path_within_3_percent(rows, cols, mode, dual):
    mem = MODES[mode]
    stats, _ = _command_level(pim.gemv_program(rows, cols, mem), dual, mem=mem)
    fast = pim.pim_gemv_cycles(rows, cols, mem, dual_row_buffer=dual)
    assert abs(fast / stats.cycles - 1) < TOL


def _first_comps_and_last_readres(log):
    """Per tile (P_HEADER to P_HEADER): its first PIM_GEMV / COMP and its last READRES."""
    out, cur = [], None
    for e in log:
        if e[1] == "P_HEADER":
            cur = [None, None]
            out.append(cur)
        elif e[1] in ("PIM_GEMV", "COMP") and cur[0] is None:
            cur[0] = e[0]
        elif e[1] == "READRES":
            cur[1] = e[0]
    return out


def test_blocked_tile_timing_from_the_timing_table():
    """Blocked (Newton) tile timing, derived from the timing table (docs/hbm_pim.md "Blocked
    (Newton) mode") and found in the command-level log (refresh off):
    - work (first COMP to last READRES): per result tCCD_L max(c, 6), 2 between results:
      attend (k 32, 1 result) 64, logit (4 results of 8) 70, logit at d_head 64 (8 of 4) 110;
    - a plain boundary (last READRES to first COMP): PREA tRTP_L after the READRES, G_ACTs
      tRP later, the span of the G_ACT chains ((bank groups - 1) tFAW + 1), tRCDRD: 125;
    - a GWRITE boundary: the vector row's ACT tRP after rank 0's PREA, GWRITE tRCDRD later,
      the row's PRE CWL + 96 after it, its group's G_ACT tRP later, the other rank's 1 later,
      tRCDRD: tRTP_L + tRP + tRCDRD + CWL + 96 + tRP + 1 + tRCDRD = 163, 31 more than dual's
      GWRITE boundary (132: the vector comes over the data path, no row to open);
    - the first tile with its GWRITE: 1 + 143 = 144.
    The fast path gives the same cycles, in both modes."""
    t, gw = MEM.timing, MEM.pim.gwrite_cycles
    span = (MEM.organization.bank_groups - 1) * t.tFAW + 1
    plain = t.tRTP_L + t.tRP + span + t.tRCDRD
    gw_open = t.tRCDRD + t.CWL + gw + t.tRP + 1 + t.tRCDRD
    gw_gap = t.tRTP_L + t.tRP + gw_open
    assert (plain, gw_gap, gw_open) == (125, 163, 143)
    cases = {  # groups -> expected work per tile
        (pim.TileGroup(4, 32, 1, 2),): 64,
        (pim.TileGroup(3, 32, 4, 2),): 70,
        (pim.TileGroup(3, 32, 8, 2),): 8 * t.tCCD_L * 6 + 7 * max(MEM.burst_cycles, t.tCCD_L),
    }
    for groups, work in cases.items():
        per_group = groups[0].tiles
        for dual in (True, False):
            stats, ch = _command_level(list(groups), dual, refresh=False)
            assert check_log(ch.log, MEM, dual_row_buffer=dual, refresh=False) is None
            tiles = _first_comps_and_last_readres(ch.log)
            if not dual:
                assert [rr - c for c, rr in tiles] == [work] * len(tiles)
                assert tiles[0][0] == 1 + gw_open
            gaps = [tiles[i + 1][0] - tiles[i][1] for i in range(len(tiles) - 1)]
            expect = [gw_gap if (i + 1) % per_group == 0 else plain for i in range(len(gaps))]
            if dual:  # the dual GWRITE boundary: the PIM_PRECHARGE waits for the bus, 13
                expect = [132 if g == gw_gap else g for g in expect]
            assert gaps == expect, (dual, work)
            fast = pim._program_cycles(list(groups), MEM, dual)[0]
            assert stats.cycles == pytest.approx(fast, rel=0.001)


def test_blocked_mha_slower_than_dual_by_its_gwrites():
    """Alone on a channel (no refresh), blocked mode differs from dual only at GWRITE
    boundaries (31 cycles each, docs/hbm_pim.md) for d_head >= 96; energies both > 0."""
    groups = pim.mha_program(300, 2, 128, MEM)
    sd, _ = _command_level(groups, True, refresh=False)
    sb, chb = _command_level(groups, False, refresh=False)
    assert check_log(chb.log, MEM, dual_row_buffer=False, refresh=False) is None
    n_gw = sum(g.count for g in groups) - 1  # the first GWRITE has no boundary before it
    assert sb.cycles - sd.cycles == 31 * n_gw + (144 - 107)
    fd = pim.mha_channel_cycles([300], 2, 128, MEM, dual_row_buffer=True)
    fb = pim.mha_channel_cycles([300], 2, 128, MEM, dual_row_buffer=False)
    assert fb.cycles > fd.cycles and fd.energy_j > 0 and fb.energy_j > 0
    assert fb.commands["ACT"] == fb.commands["GWRITE"] == sum(g.count for g in groups)


def test_order_of_requests_matters_only_at_the_end():
    a = pim.mha_channel_cycles([100, 900, 300], 4, 128, MEM).cycles
    b = pim.mha_channel_cycles([900, 300, 100], 4, 128, MEM).cycles
    assert abs(a / b - 1) < 0.01


def test_tile_layout_matches_paper_example():
    # docs/sources/neupims.md §7: s = 512, E = 1024 -> 32 + 32 tiles = 2 MB, the raw K + V bytes
    tiles = pim.kv_tiles_per_request(512, 1024, MEM)
    assert tiles == 64
    assert tiles * 32 * MEM.page_bytes == 2 * 512 * 1024 * 2
    groups = pim.mha_program(512, 8, 128, MEM)
    assert sum(g.tiles * g.count for g in groups) == tiles


def test_algorithm1_matches_formula_and_vectorises():
    # Algorithm 1 for s = 512, E = 1024, 8 heads: c1 = 2, t1 = 16, c2 = 8, t2 = 4
    per = 2 * 100 + 2 * 16 * 184 + 8 * 100 + 8 * 4 * 184
    got = pim.neupims_mha_estimate_cycles([512, 512], 1024, 8, MEM)
    assert got.tolist() == [per, per]
    # the estimator and the model agree to within the paper's constants' rounding
    model = pim.mha_channel_cycles([512], 8, 128, MEM).cycles
    assert 0.8 < model / per < 1.25


def test_bad_inputs_raise_clear_errors():
    from neupims.errors import ConfigError

    with pytest.raises(ConfigError, match="multiple of n_heads"):
        pim.neupims_mha_estimate_cycles([5], 100, 3, MEM)
    with pytest.raises(ConfigError, match="rows and cols"):
        pim.pim_gemv_cycles(0, 10, MEM)
    with pytest.raises(ConfigError, match="pim.enabled"):
        pim.mha_channel_cycles([5], 1, 64, load_hw("hbm2_neupims_dram"))
    assert pim.mha_channel_cycles([], 1, 64, MEM).cycles == 0.0


def test_memsim_cli_json(capsys):
    rc = cli_main(
        [
            "memsim",
            "--hw",
            "hbm2_pim_neupims",
            "--pattern",
            "pim-gemv+stream-read",
            "--requests",
            "800",
            "--gemv",
            "256x1024",
            "--json",
            "--check",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["checker"] == "ok"
    for key in (
        "bandwidth_gbps",
        "peak_gbps",
        "commands",
        "sim_seconds",
        "wall_seconds",
        "row_hits",
        "row_misses",
        "energy_j",
    ):
        assert key in out
    assert out["peak_gbps"] == pytest.approx(1024.0)
    assert out["commands"]["RD"] == 800 and out["energy_j"] > 0


def test_memsim_cli_dual_beats_blocked(capsys):
    res = {}
    for flag in ("--dual-row-buffer", "--no-dual-row-buffer"):
        cli_main(
            [
                "memsim",
                "--hw",
                "hbm2_pim_neupims",
                "--pattern",
                "pim-gemv+stream-read",
                "--requests",
                "800",
                "--gemv",
                "256x1024",
                "--json",
                flag,
            ]
        )
        res[flag] = json.loads(capsys.readouterr().out)
    assert res["--dual-row-buffer"]["sim_seconds"] < res["--no-dual-row-buffer"]["sim_seconds"]


def test_memsim_cli_errors(capsys):
    assert cli_main(["memsim", "--hw", "hbm2_neupims_dram", "--pattern", "pim-gemv"]) == 2
    assert "pim.enabled" in capsys.readouterr().err
    assert cli_main(["memsim", "--hw", "hbm2_pim_neupims", "--gemv", "axb"]) == 2
    assert "ROWSxCOLS" in capsys.readouterr().err


def test_all_channels_at_once_equals_per_channel_calls():
    rng = np.random.default_rng(5)
    seq = rng.integers(0, 2100, 200)
    ch = rng.integers(0, 32, 200)
    allc = pim.mha_channels_cycles(seq, ch, 12, 128, MEM)
    assert pim.mha_channels_cycles(seq, ch, 12, 128, MEM) is allc  # memoised per batch
    for c in range(32):
        one = pim.mha_channel_cycles(seq[ch == c], 12, 128, MEM)
        assert allc.cycles[c] == one.cycles
        assert allc.energy_j[c] == pytest.approx(one.energy_j)
        for name, v in one.commands.items():
            assert allc.commands[name][c] == v
