"""Level 3 of the test pyramid: every timing gate is tight to the cycle.

For each gate a prior command is issued, the probe ``earliest`` must equal the closed-form
cycle from the timing table (docs/sources/neupims.md §4/§6), issuing one cycle early is refused by
the channel AND the independent checker rejects a log with the command one cycle early,
and issuing exactly on time is accepted by both.
"""

from __future__ import annotations

import pytest

from neupims.config import load_hw
from neupims.devices.hbm_channel import HbmChannel, HbmTimingError
from neupims.devices.hbm_checker import check_log

MEM = load_hw("hbm2_pim_neupims")
T = MEM.timing
BL = MEM.burst_cycles


def _gate(ch: HbmChannel, cmd: str, expected: int, rank=0, bg=0, bank=0, row=0, col=0):
    """Assert ``cmd`` becomes legal at exactly ``expected``; then issue it there."""
    assert ch.earliest(cmd, rank, bg, bank) == expected
    early = (expected - 1, cmd, rank, bg, bank, row, col)
    if cmd in ("P_HEADER", "GWRITE", "PIM_GEMV", "READRES", "PIM_PRECHARGE"):
        early = (expected - 1, cmd, -1, -1, -1, row, col)
    bad = check_log([*ch.log, early], ch.mem, dual_row_buffer=ch.dual)
    assert bad is not None, f"checker accepted {cmd} one cycle early"
    with pytest.raises(HbmTimingError):
        ch.issue(cmd, rank, bg, bank, row, col, at=expected - 1)
    ch.issue(cmd, rank, bg, bank, row, col, at=expected)
    assert check_log(ch.log, ch.mem, dual_row_buffer=ch.dual) is None
    return bad


def _ch(dual=True):
    return HbmChannel(MEM, dual_row_buffer=dual, refresh=False)


def test_trcd_read_and_write():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=5, at=0)
    ch.issue("ACT", 0, 1, 0, row=5, at=T.tRRD_S)
    v = _gate(ch, "RD", T.tRCDRD, row=5)
    assert v.constraint == "tRCDRD"
    ch = _ch()
    ch.issue("ACT", 0, 1, 0, row=5, at=0)
    assert _gate(ch, "WR", T.tRCDWR, bg=1, row=5).constraint == "tRCDWR"


def test_tras_trp_trc():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    assert _gate(ch, "PRE", T.tRAS, row=1).constraint == "tRAS"
    _gate(ch, "ACT", T.tRAS + T.tRP, row=2)  # tRC = tRAS + tRP
    ch.issue("PRE", 0, 0, 0, row=2, at=200)
    assert _gate(ch, "ACT", 200 + T.tRP, row=3).constraint == "tRP"


def test_trrd_l_and_s_and_tfaw():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    assert _gate(ch, "ACT", T.tRRD_L, bank=1, row=1).constraint in ("tRRD_L",)
    _gate(ch, "ACT", T.tRRD_L + T.tRRD_S, bg=1, row=1)
    _gate(ch, "ACT", T.tRRD_L + 2 * T.tRRD_S, bg=2, row=1)
    # four activations in the window: the fifth waits for tFAW after the first
    v = _gate(ch, "ACT", T.tFAW, bg=3, row=1)
    assert v.constraint == "tFAW"


def test_other_rank_not_bound_by_rrd():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    assert ch.earliest("ACT", 1, 0, 0) == 1  # only the command bus


def test_column_gates():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    ch.issue("ACT", 0, 0, 1, row=1, at=T.tRRD_L)
    ch.issue("ACT", 0, 1, 0, row=1, at=T.tRRD_L + T.tRRD_S)
    t0 = 40
    ch.issue("RD", 0, 0, 0, row=1, at=t0)
    _gate(ch, "RD", t0 + max(BL, T.tCCD_L), bank=1, row=1)  # same bank group
    t1 = t0 + max(BL, T.tCCD_L)
    _gate(ch, "RD", t1 + max(BL, T.tCCD_S), bg=1, row=1)  # other bank group
    t2 = t1 + max(BL, T.tCCD_S)
    v = _gate(ch, "WR", t2 + T.CL + BL - T.CWL + T.tWPRE, row=1)  # read to write
    assert v.constraint == "read_to_write"
    t3 = t2 + T.CL + BL - T.CWL + T.tWPRE
    v = _gate(ch, "RD", t3 + T.CWL + BL + T.tWTR_L, bank=1, row=1)  # tWTR_L same group
    assert v.constraint == "tWTR_L"


def test_twtr_s_other_group():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    ch.issue("ACT", 0, 1, 0, row=1, at=T.tRRD_S)
    ch.issue("WR", 0, 0, 0, row=1, at=30)
    assert _gate(ch, "RD", 30 + T.CWL + BL + T.tWTR_S, bg=1, row=1).constraint == "tWTR_S"


def test_trtp_and_twr():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    ch.issue("ACT", 0, 1, 0, row=1, at=T.tRRD_S)
    ch.issue("RD", 0, 0, 0, row=1, at=60)
    assert _gate(ch, "PRE", 60 + T.tRTP_L, row=1).constraint == "tRTP"
    ch.issue("WR", 0, 1, 0, row=1, at=100)
    assert _gate(ch, "PRE", 100 + T.CWL + BL + T.tWR, bg=1, row=1).constraint == "tWR"


def test_refresh_gates():
    ch = _ch()
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    ch.issue("PRE", 0, 0, 0, row=1, at=T.tRAS)
    _gate(ch, "REF", T.tRAS + T.tRP)
    t = T.tRAS + T.tRP
    assert _gate(ch, "ACT", t + T.tRFC, row=2).constraint == "tRFC"


def test_pim_tile_gates():
    ch = _ch(True)
    ch.issue("P_HEADER", row=9, at=0)
    ch.issue("GWRITE", row=9, at=1)
    ch.issue("G_ACT", 0, 0, row=9, at=2)
    # G_ACT counts as four activations: the next one in the rank waits a whole tFAW
    v = _gate(ch, "G_ACT", 2 + T.tFAW, 0, 1, row=9)
    assert v.constraint == "tFAW"
    ch.issue("G_ACT", 0, 2, row=9, at=2 + 2 * T.tFAW)
    ch.issue("G_ACT", 0, 3, row=9, at=2 + 3 * T.tFAW)
    for g in range(4):
        ch.issue("G_ACT", 1, g, row=9)
    last = ch.log[-1][0]
    _gate(ch, "PIM_GEMV", max(last + T.tRCDRD, 1 + T.CWL + MEM.pim.gwrite_cycles), row=9, col=32)
    g = ch.log[-1][0]
    occ = T.tCCD_L * 32
    assert _gate(ch, "READRES", g + occ, row=9).constraint == "PIM_GEMV_occupancy"
    _gate(ch, "READRES", g + occ + max(BL, T.tCCD_L), row=9)
    r = ch.log[-1][0]
    _gate(ch, "PIM_PRECHARGE", r + T.tRTP_L)
    p = ch.log[-1][0]
    assert _gate(ch, "G_ACT", p + T.tRP, 0, 0, row=10).constraint == "tRP(PIM)"


def _gate_wide(ch, cmd, expected, rank=-1, bg=-1, bank=-1, row=0, col=0):
    """``_gate`` for a channel-wide command whose log row names a bank (blocked GWRITE) or
    not (-1)."""
    assert ch.earliest(cmd, max(rank, 0), max(bg, 0), max(bank, 0)) == expected
    bad = check_log(
        [*ch.log, (expected - 1, cmd, rank, bg, bank, row, col)], ch.mem, dual_row_buffer=False
    )
    assert bad is not None, f"checker accepted {cmd} one cycle early"
    with pytest.raises(HbmTimingError):
        ch.issue(cmd, max(rank, 0), max(bg, 0), max(bank, 0), row, col, at=expected - 1)
    ch.issue(cmd, max(rank, 0), max(bg, 0), max(bank, 0), row, col, at=expected)
    assert check_log(ch.log, ch.mem, dual_row_buffer=False) is None
    return bad


def test_blocked_tile_gates():
    """Blocked mode (one row buffer, Newton's commands, docs/hbm_pim.md "Blocked (Newton)
    mode"): the vector row's ACT -> GWRITE tRCDRD, GWRITE -> PRE CWL + transfer, PRE -> G_ACT
    tRP, G_ACT -> PREA tRAS, PREA -> G_ACT tRP; COMP -> COMP tCCD_L, a result's READRES
    tCCD_L x 6 after its first COMP and tCCD_L after its last, READRES -> COMP; each one
    cycle early refused by channel and checker."""
    ch = _ch(False)
    vr, vg, vb, vrow = 0, 3, 0, 99
    ch.issue("P_HEADER", row=9, at=0)
    ch.issue("ACT", vr, vg, vb, row=vrow, at=1)
    v = _gate_wide(ch, "GWRITE", 1 + T.tRCDRD, vr, vg, vb, row=vrow)
    assert v.constraint.startswith("tRCDRD(GWRITE")
    gw = ch.log[-1][0]
    load = T.CWL + MEM.pim.gwrite_cycles
    v = _gate(ch, "PRE", gw + load, vr, vg, vb, row=vrow)
    assert v.constraint.startswith("GWRITE->PRE")
    pre = ch.log[-1][0]
    assert _gate(ch, "G_ACT", pre + T.tRP, vr, vg, row=9).constraint.startswith("tRP(PRE->G_ACT")
    for g in range(3):
        ch.issue("G_ACT", 0, g, row=9)
    for g in range(4):
        ch.issue("G_ACT", 1, g, row=9)
    last = ch.log[-1][0]
    v = _gate_wide(ch, "COMP", last + T.tRCDRD, row=9, col=0)
    assert v.constraint == "tRCDRD(PIM)"
    c0 = ch.log[-1][0]
    assert _gate_wide(ch, "COMP", c0 + T.tCCD_L, row=9, col=1).constraint == "COMP_to_COMP"
    # 2 COMPs: the pipeline (6 slots from the first COMP) sets the READRES
    v = _gate_wide(ch, "READRES", c0 + 6 * T.tCCD_L, row=9)
    assert v.constraint.startswith("COMP_pipeline")
    r0 = ch.log[-1][0]
    v = _gate_wide(ch, "COMP", r0 + max(BL, T.tCCD_L), row=9, col=0)
    assert v.constraint == "READRES_to_COMP"
    c = ch.log[-1][0]
    for j in range(1, 8):  # 8 COMPs: the last one sets the READRES
        c = ch.issue("COMP", row=9, col=j, at=c + T.tCCD_L)
    assert _gate_wide(ch, "READRES", c + T.tCCD_L, row=9).constraint == "COMP_to_READRES"
    r1 = ch.log[-1][0]
    v = _gate(ch, "PREA", r1 + T.tRTP_L)
    assert v.constraint == "PIM->PRE(single)"
    prea = ch.log[-1][0]
    ch.issue("PREA", 1, at=prea + 1)
    assert _gate(ch, "G_ACT", prea + T.tRP, 0, 0, row=10).constraint.startswith("tRP(PRE->G_ACT")


def test_blocked_gact_row_needs_tras_before_prea():
    ch = _ch(False)
    ch.issue("G_ACT", 0, 0, row=9, at=0)
    assert _gate(ch, "PREA", T.tRAS).constraint.startswith("tRAS(G_ACT->PRE")


def test_checker_rejects_blocked_gwrite_without_its_row_and_newton_commands():
    """One row buffer: a GWRITE copies its row through the bank's buffer, so the row must be
    open there (the channel refuses it too); PIM_GEMV and PIM_PRECHARGE are NeuPIMs'
    commands, not Newton's."""
    ok = [(0, "ACT", 0, 3, 0, 99, 0), (14, "GWRITE", 0, 3, 0, 99, 0)]
    assert check_log(ok, MEM, dual_row_buffer=False) is None
    for bad in (
        [(14, "GWRITE", 0, 3, 0, 99, 0)],  # no row open
        [(0, "ACT", 0, 3, 0, 98, 0), (14, "GWRITE", 0, 3, 0, 99, 0)],  # another row open
        [(0, "ACT", 0, 3, 0, 99, 0), (14, "GWRITE", -1, -1, -1, 99, 0)],  # names no bank
    ):
        v = check_log(bad, MEM, dual_row_buffer=False)
        assert v is not None and "GWRITE" in v.constraint and "row" in v.constraint, v
    # the same GWRITE without a row is dual mode's (the vector comes over the data path)
    assert check_log([(14, "GWRITE", -1, -1, -1, 99, 0)], MEM, dual_row_buffer=True) is None
    ch = _ch(False)
    with pytest.raises(HbmTimingError, match="must be open"):
        ch.issue("GWRITE", 0, 3, 0, row=99, at=20)
    for cmd in ("PIM_GEMV", "PIM_PRECHARGE"):
        v = check_log([(0, cmd, -1, -1, -1, 0, 8)], MEM, dual_row_buffer=False)
        assert "not a Newton command" in v.constraint
        with pytest.raises(HbmTimingError, match="not a Newton command"):
            _ch(False).issue(cmd, row=0, col=8, at=0)


def test_global_buffer_gate():
    ch = _ch()
    for g in range(4):
        for r in range(2):
            ch.issue("G_ACT", r, g, row=3)
    t = ch.issue("GWRITE", row=0)
    v = _gate(ch, "PIM_GEMV", t + T.CWL + MEM.pim.gwrite_cycles, row=3, col=8)
    assert v.constraint == "global_buffer_load"


@pytest.mark.parametrize("dual,gap", [(True, T.tRRD_L), (False, T.tRAS + T.tRP)])
def test_act_to_gact_same_bank_dual_vs_single(dual, gap):
    """docs/sources/neupims.md §6: ACT <-> G_ACT same bank is tRRD_L with dual buffers, tRC without.
    A G_ACT counts as four activations, so with the real tFAW (30) the window hides tRRD_L;
    a config with a short tFAW exposes the gate itself."""
    short = MEM.model_copy(update={"timing": T.model_copy(update={"tFAW": 5})})
    ch = HbmChannel(short, dual_row_buffer=dual, refresh=False)
    ch.issue("ACT", 0, 0, 0, row=1, at=0)
    if not dual:  # one buffer: the row must close first (PRE at tRAS, then tRP)
        ch.issue("PRE", 0, 0, 0, row=1, at=T.tRAS)
    _gate(ch, "G_ACT", gap, 0, 0, row=7)


def test_dual_pim_row_not_openable_by_act():
    ch = _ch(True)
    ch.issue("G_ACT", 0, 0, row=7, at=0)
    with pytest.raises(HbmTimingError, match="PIM buffer"):
        ch.issue("ACT", 0, 0, 1, row=7, at=100)
    ch.issue("ACT", 0, 0, 1, row=8, at=100)  # any other row is fine
    bad = [(0, "G_ACT", 0, 0, 0, 7, 0), (100, "ACT", 0, 0, 1, 7, 0)]
    assert "PIM buffer" in check_log(bad, MEM, dual_row_buffer=True).constraint


def test_checker_state_errors():
    assert "state" in check_log([(0, "RD", 0, 0, 0, 1, 0)], MEM, dual_row_buffer=True).constraint
    log = [(0, "ACT", 0, 0, 0, 1, 0), (300, "REF", 0, 0, 0, 0, 0)]
    assert "REF" in check_log(log, MEM, dual_row_buffer=True).constraint
    log = [(0, "ACT", 0, 0, 0, 1, 0), (0, "ACT", 0, 1, 0, 1, 0)]
    assert "command_bus" in check_log(log, MEM, dual_row_buffer=True).constraint
    single = [(0, "G_ACT", 0, 0, 0, 7, 0), (100, "ACT", 0, 0, 1, 8, 0)]
    assert "single" in check_log(single, MEM, dual_row_buffer=False).constraint
