"""HBM/PIM command set and the timing table the command-level scheduler enforces.

Units: memory-clock cycles (tCK). Facts: docs/sources/neupims.md §4 (timing table,
derived composites "following DRAMsim3 rules") and section 6 (PIM commands, single vs dual
row-buffer gaps). The independent checker (:mod:`neupims.devices.hbm_checker`) restates
these constraints in its own form; keep both in step with docs/hbm_pim.md.

A rule ``(scope, later, delay, plus_occupancy)`` attached to command A says: after A issues
at t, command ``later`` to a target in ``scope`` of A may issue no earlier than
``t + delay`` (``+ occupancy`` of A when A is a PIM_GEMV). Scopes: ``bank`` (same bank; for a
G_ACT the 4 banks of its group; for a channel-wide PIM command every bank), ``bg`` (same
bank group), ``rank``, ``channel``. A channel-wide command's ``bank`` rules apply to the
bank it names (only a blocked-mode GWRITE names one); its other rules to the whole channel.

Blocked mode (``dual_row_buffer`` false, Newton): one row buffer per bank and Newton's command
set (docs/sources/neupims.md §6: PIM_GEMV and PIM_PRECHARGE are NeuPIMs' additions). A tile
closes its rows with ordinary precharges (PREA per rank), its GWRITE copies the vector's
DRAM row through the bank's (only) row buffer (ACT, GWRITE, PRE; :func:`vector_bank`), and it
issues its COMPs one by one on the command bus, then a READRES per result
(:func:`comp_split`). The gates of that mode are added by :func:`_blocked_rules`; dual
mode's table is unchanged by them.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Command names, in the order of their integer ids.
COMMANDS = (
    "ACT",
    "RD",
    "WR",
    "PRE",
    "PREA",
    "REF",
    "P_HEADER",
    "GWRITE",
    "G_ACT",
    "PIM_GEMV",
    "READRES",
    "PIM_PRECHARGE",
    "COMP",
)
CMD = {name: i for i, name in enumerate(COMMANDS)}
(
    ACT,
    RD,
    WR,
    PRE,
    PREA,
    REF,
    P_HEADER,
    GWRITE,
    G_ACT,
    PIM_GEMV,
    READRES,
    PIM_PRECHARGE,
    COMP,
) = range(len(COMMANDS))
#: Commands broadcast to every bank of the channel (no rank/bank target). In blocked mode
#: (single row buffer) a GWRITE also names the bank whose row it copies (:func:`vector_bank`).
CHANNEL_WIDE = frozenset({P_HEADER, GWRITE, PIM_GEMV, READRES, PIM_PRECHARGE, COMP})

#: Minimum COMP slots of a PIM_GEMV: NewtonSim's composite COMPS_READRES occupies
#: 2 * (max(k, 6) + 1) ns (docs/sources/neupims.md §6, [C]); we keep max(k, 6) COMP slots of
#: tCCD_L and read the results with separate READRES commands.
MIN_COMP_SLOTS = 6


@dataclass(frozen=True)
class Gaps:
    """Composite gaps (cycles) of one memory config and row-buffer mode."""

    burst: int
    rd_rd_l: int  # max(burst, tCCD_L), same bank group
    rd_rd_s: int  # max(burst, tCCD_S), other bank group
    rd_wr: int  # CL + burst - CWL + tWPRE (DRAMsim3 read_to_write)
    wr_rd_l: int  # CWL + burst + tWTR_L
    wr_rd_s: int  # CWL + burst + tWTR_S
    rd_pre: int  # tRTP_L
    wr_pre: int  # CWL + burst + tWR
    trc: int  # tRAS + tRP
    gwrite: int  # cycles the GWRITE transfer occupies the data path
    dual: bool

    @staticmethod
    def of(mem, dual: bool) -> Gaps:
        t = mem.timing
        b = mem.burst_cycles
        return Gaps(
            burst=b,
            rd_rd_l=max(b, t.tCCD_L),
            rd_rd_s=max(b, t.tCCD_S),
            rd_wr=t.CL + b - t.CWL + t.tWPRE,
            wr_rd_l=t.CWL + b + t.tWTR_L,
            wr_rd_s=t.CWL + b + t.tWTR_S,
            rd_pre=t.tRTP_L,
            wr_pre=t.CWL + b + t.tWR,
            trc=t.tRAS + t.tRP,
            gwrite=mem.pim.gwrite_cycles,
            dual=dual,
        )


def occupancy(k: int, mem) -> int:
    """Cycles a PIM_GEMV of ``k`` COMPs holds the PIM datapath: tCCD_L * max(k, 6)."""
    return mem.timing.tCCD_L * max(k, MIN_COMP_SLOTS)


def comp_occupancy(col: int, mem) -> int:
    """Blocked mode: the pipeline gate a COMP sets on its READRES. The first COMP of a
    result (``col`` 0: a COMP's ``col`` is its index among its result's COMPs) starts the
    multiply/add pipeline, which takes MIN_COMP_SLOTS COMP slots of tCCD_L before its result
    can be read, as a PIM_GEMV does (the released NeuPIMs simulator (casys-kaist/NeuPIMs,
    NewtonSim) ``timing.cc: Timing::Timing`` and ``channel_state.cc: UpdateTimingForPIM``: the
    first COMP after a READRES holds that READRES >= the COMP + tCCD_S x 6; we keep
    MIN_COMP_SLOTS slots of tCCD_L as for PIM_GEMV); later COMPs add only their tCCD_L."""
    return mem.timing.tCCD_L * MIN_COMP_SLOTS if col == 0 else 0


def comp_split(k: int, n_results: int) -> list[int]:
    """Blocked mode: the COMPs of each of a tile's ``n_results`` results, in issue order.

    Newton has no composite GEMV: a tile issues, per result (one per head segment of the
    row, docs/sources/neupims.md §7), that result's COMPs, then its READRES (as the released
    NeuPIMs simulator (casys-kaist/NeuPIMs) ``src/operations/NeuPIMSLogitSoftmax.cc`` and
    ``NeuPIMSAttend.cc: initialize_instructions``, NEWTON branch: k COMP + 1 READRES per
    head). The tile's ``k`` COMPs
    are split evenly, the first ``k mod n`` results taking one more: exact when the heads
    cut the row into equal whole-COMP parts (d_head 64 or 128 in a 512-element row), and the
    same COMP-slot count whenever every part is at most MIN_COMP_SLOTS (d_head <= 96). A
    result left without a COMP (k < n) is read right after the previous one."""
    q, r = divmod(k, n_results)
    return [q + 1] * r + [q] * (n_results - r)


def vector_bank(mem) -> tuple[int, int, int, int]:
    """Blocked mode: (rank, bank group, bank, row) of the DRAM row a GWRITE copies into the
    global vector buffer.

    GWRITE copies one DRAM row through the bank's row buffer (docs/sources/neupims.md §6);
    with one row buffer that row must be opened, so the PIM row held there closes first and
    the tile's G_ACT of that bank group waits for the row's PRE + tRP. The vector sits in
    the last row of bank 0 of rank 0's last bank group, whose G_ACT is its rank's last in
    the tile's order: the other groups open while the row is copied. (The released NeuPIMs
    simulator, ``NeuPIMSLogitSoftmax.cc: initialize_instructions``, fixes bank (0, 0, 0),
    row 0, "FIXME"; in SINGLE mode its GWRITE pays the same PRE + ACT there,
    ``bankstate.cc: GetReadyCommandSingle``.)"""
    o = mem.organization
    return 0, o.bank_groups - 1, 0, o.rows - 1


def data_window(cmd: int, mem) -> tuple[int, int] | None:
    """(offset, length) of the data-bus burst of ``cmd`` relative to its issue, or None."""
    t = mem.timing
    if cmd in (RD, READRES):
        return t.CL, mem.burst_cycles
    if cmd == WR:
        return t.CWL, mem.burst_cycles
    if cmd == GWRITE:  # the vector comes over the channel's data path like a write
        return t.CWL, mem.pim.gwrite_cycles
    return None


def rules(mem, dual: bool) -> dict[int, list[tuple[str, int, int, bool]]]:
    """The scheduler's timing table: command -> [(scope, later command, delay, +occ)]."""
    t = mem.timing
    g = Gaps.of(mem, dual)
    # single vs dual row buffer (docs/sources/neupims.md §6 table)
    act_gact = t.tRRD_L if dual else g.trc  # ACT <-> G_ACT same bank / bank group
    rd_pim = 0 if dual else g.rd_rd_l  # RD -> COMP/READRES
    wr_pim = 0 if dual else g.wr_rd_l  # WR -> COMP/READRES
    pim_pre = 0 if dual else g.rd_pre  # PIM -> PRE same rank
    pimpre_act = 0 if dual else t.tRP  # PIM_PRECHARGE -> ACT (single buffer reopens)
    r: dict[int, list[tuple[str, int, int, bool]]] = {c: [] for c in range(len(COMMANDS))}
    r[ACT] = [
        ("bank", ACT, g.trc, False),
        ("bg", ACT, t.tRRD_L, False),
        ("rank", ACT, t.tRRD_S, False),
        ("bank", RD, t.tRCDRD, False),
        ("bank", WR, t.tRCDWR, False),
        ("bank", PRE, t.tRAS, False),
        ("rank", PREA, t.tRAS, False),
        ("bank", G_ACT, act_gact, False),
        ("bg", G_ACT, t.tRRD_L, False),
        ("rank", G_ACT, t.tRRD_S, False),
    ]
    r[RD] = [
        ("bg", RD, g.rd_rd_l, False),
        ("channel", RD, g.rd_rd_s, False),
        ("channel", WR, g.rd_wr, False),
        ("bank", PRE, g.rd_pre, False),
        ("rank", PREA, g.rd_pre, False),
        ("channel", PIM_GEMV, rd_pim, False),
        ("channel", READRES, max(rd_pim, g.rd_rd_s), False),
    ]
    r[WR] = [
        ("bg", WR, g.rd_rd_l, False),
        ("channel", WR, g.rd_rd_s, False),
        ("bg", RD, g.wr_rd_l, False),
        ("rank", RD, g.wr_rd_s, False),
        ("bank", PRE, g.wr_pre, False),
        ("rank", PREA, g.wr_pre, False),
        ("channel", PIM_GEMV, wr_pim, False),
        ("channel", READRES, wr_pim, False),
    ]
    for pre in (PRE, PREA):
        scope = "bank" if pre == PRE else "rank"
        r[pre] = [
            (scope, ACT, t.tRP, False),
            ("rank", REF, t.tRP, False),
        ]
    r[REF] = [
        ("rank", ACT, t.tRFC, False),
        ("rank", G_ACT, t.tRFC, False),
        ("rank", REF, t.tRFC, False),
    ]
    r[GWRITE] = [
        ("channel", PIM_GEMV, t.CWL + g.gwrite, False),
        ("channel", GWRITE, t.CWL + g.gwrite, False),
    ]
    r[G_ACT] = [
        ("bank", G_ACT, g.trc, False),
        ("bg", G_ACT, t.tRRD_L, False),
        ("rank", G_ACT, t.tRRD_S, False),
        ("bank", ACT, act_gact, False),
        ("bg", ACT, act_gact, False),
        ("rank", ACT, t.tRRD_S, False),
        ("channel", PIM_GEMV, t.tRCDRD, False),
        ("channel", PIM_PRECHARGE, t.tRAS, False),
    ]
    r[PIM_GEMV] = [
        ("channel", PIM_GEMV, 0, True),
        ("channel", READRES, 0, True),
        ("channel", GWRITE, 0, True),
        ("channel", PIM_PRECHARGE, t.tRTP_L, True),
        ("channel", PRE, pim_pre, True),
        ("channel", PREA, pim_pre, True),
    ]
    r[READRES] = [
        ("channel", READRES, g.rd_rd_l, False),
        ("channel", PIM_PRECHARGE, t.tRTP_L, False),
        ("channel", PRE, pim_pre, False),
        ("channel", PREA, pim_pre, False),
        ("channel", WR, g.rd_wr, False),
    ]
    r[PIM_PRECHARGE] = [
        ("channel", G_ACT, t.tRP, False),
        ("channel", ACT, pimpre_act, False),
        ("channel", REF, t.tRP, False),
    ]
    if not dual:
        _blocked_rules(r, mem, g)
    return r


def _blocked_rules(r, mem, g: Gaps) -> None:
    """The gates a single row buffer and Newton's command set add (blocked mode only).

    - The vector row (:func:`vector_bank`): ACT -> GWRITE tRCDRD (a column access to the
      row); GWRITE -> PRE of that bank CWL + the transfer (the row stays open until the copy
      into the global buffer ends, the same instant PIM_GEMV/COMP wait for). The released
      NeuPIMs simulator (casys-kaist/NeuPIMs, NewtonSim) ``timing.cc: Timing::Timing`` has
      ACT -> GWRITE tRCDRD and GWRITE -> same-bank PRECHARGE 96 (its transfer, no CWL).
    - G_ACT opens the bank's only row buffer, so it is an activation for the ordinary
      precharge: G_ACT -> PRE/PREA tRAS (per bank, so PREA waits for every bank of its rank)
      and PRE/PREA -> G_ACT tRP. (The released NeuPIMs simulator (casys-kaist/NeuPIMs,
      NewtonSim) ``timing.cc: Timing::Timing`` has no PRECHARGE -> G_ACT entry in SINGLE
      mode: a gap of its table, not physics; a G_ACT opens the bank like an ACT.)
    - COMP, one command per COMP: COMP -> COMP tCCD_L; COMP -> READRES tCCD_L, and the
      result's first COMP -> READRES tCCD_L x MIN_COMP_SLOTS (:func:`comp_occupancy`, the
      rule with occupancy); READRES -> COMP max(burst, tCCD_L) (the next result's stream);
      G_ACT -> COMP tRCDRD; GWRITE -> COMP the buffer load (CWL + transfer); COMP -> GWRITE
      tCCD_L (the buffer is read until the last COMP); RD / WR -> COMP the single-buffer
      read-to-read / write-to-read gaps and COMP -> PRE/PREA tRTP_L, as for PIM_GEMV
      (docs/sources/neupims.md §6 table).
    """
    t = mem.timing
    load = t.CWL + g.gwrite
    r[ACT].append(("bank", GWRITE, t.tRCDRD, False))
    r[GWRITE] += [("bank", PRE, load, False), ("channel", COMP, load, False)]
    r[G_ACT] += [("bank", PRE, t.tRAS, False), ("channel", COMP, t.tRCDRD, False)]
    r[PRE].append(("bank", G_ACT, t.tRP, False))
    r[PREA].append(("rank", G_ACT, t.tRP, False))
    r[READRES].append(("channel", COMP, g.rd_rd_l, False))
    r[RD].append(("channel", COMP, g.rd_rd_l, False))
    r[WR].append(("channel", COMP, g.wr_rd_l, False))
    r[COMP] = [
        ("channel", COMP, t.tCCD_L, False),
        ("channel", READRES, t.tCCD_L, False),
        ("channel", READRES, 0, True),
        ("channel", GWRITE, t.tCCD_L, False),
        ("channel", PRE, g.rd_pre, False),
        ("channel", PREA, g.rd_pre, False),
    ]


def guard_parts(mem, dual: bool = True) -> tuple[int, int, int, int, int]:
    """The PIM refresh-deadline guard's estimate (:func:`guard_estimate`) as linear parts,
    cycles: (per open PIM row, fixed, per COMP slot, per further result, per GWRITE). In
    blocked mode (``dual`` false) a GWRITE also opens its row: + tRP + tRCDRD, the released
    estimate of a GWRITE whose bank must be activated (``EstimatePIMOperationLatency``)."""
    t, o = mem.timing, mem.organization
    b = mem.burst_cycles
    return (
        mem.controller.refresh.guard_precharge_cycles,
        t.tFAW * (o.bank_groups - 1) + t.tRCDRD,
        max(b, t.tCCD_S),
        max(b, t.tCCD_L),
        mem.pim.gwrite_cycles + (0 if dual else t.tRP + t.tRCDRD),
    )


def guard_estimate(
    mem, k: int, n_results: int, open_pim_banks: int, gwrite: bool, dual: bool = True
) -> int:
    """Cycles the PIM refresh-deadline guard expects a tile GEMV to take (memory cycles).

    The released NeuPIMs controller's estimate of a GEMV header (NewtonSim
    ``channel_state.cc: EstimatePIMOperationLatency``, docs/hbm_pim.md "Refresh policies"):
    ``open_pim_banks`` x ``controller.refresh.guard_precharge_cycles`` (5, AL + tRTP) to
    close the banks' PIM rows, + tFAW (G_ACTs per rank - 1) for the G_ACT chain, + tRCDRD,
    + max(burst, tCCD_S) max(k, 6) for the COMPs, + max(burst, tCCD_L) (n_results - 1) for
    the further results. Logit tile (k 32, 4 results, 32 banks open): 334; attend tile (k 32,
    1 result): 328, as in the released simulator. Our tile carries its GWRITE (the released
    one queues it as an operation of its own), so that adds ``pim.gwrite_cycles`` (96, the
    released GWRITE estimate's transfer; in dual mode our GWRITE opens no row), and in
    blocked mode (``dual`` false) tRP + tRCDRD more for opening the vector's row (the
    released SINGLE estimate, 124 + 5 with the row's precharge, which the open-row term
    already counts). ``open_pim_banks``: banks with a row to close (blocked: any row).
    """
    pc, fixed, comp, res, gw = guard_parts(mem, dual)
    est = open_pim_banks * pc + fixed + comp * max(k, MIN_COMP_SLOTS) + res * (n_results - 1)
    return est + (gw if gwrite else 0)
