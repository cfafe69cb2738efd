"""Independent checker: replays a command log against the HBM/PIM timing table.

It restates every constraint from docs/sources/neupims.md §4 and §6 as a named
pairwise rule ("command A then command B on related targets needs >= gap cycles"), keeps its
own bank state and history, and scans the log in order. It shares no bookkeeping with the
scheduler (:mod:`neupims.devices.hbm_channel`), so a scheduler bug shows up as a violation.

Log rows: ``(cycle, command, rank, bank_group, bank, row, col)``; channel-wide PIM commands
use -1 for rank/bank group/bank; a PIM_GEMV carries its COMP count k in ``col``; a G_ACT
addresses all banks of its bank group (bank field ignored).

Refresh (docs/hbm_pim.md "Refresh policies"), for every policy: a REF needs every bank of
its rank closed (both buffers), blocks ACT/G_ACT/REF of the rank for tRFC, and the k-th REF
goes to rank k mod ranks. With ``controller.refresh.policy: rank_staggered`` or the PIM
deadline guard (the controller's general refresh path), when refresh is on: insertion j is
due at (j + 1) x the refresh interval (tREFI / ranks, or tREFI for all_bank) and covers one
rank (all ranks for all_bank); its REFs issue no earlier; from the insertion to a rank's REF
no ACT/RD/WR goes to that rank; no tile starts (P_HEADER) while an insertion is due and not
refreshed; and with the guard a P_HEADER issues only if the guard's estimate of its tile
(restated here from the released controller's formula) ends before the next insertion.

Blocked mode (``dual_row_buffer`` false: one row buffer, Newton's command set): PIM_GEMV and
PIM_PRECHARGE (NeuPIMs' additions) are refused; a G_ACT row is an ordinary open row (PRE/PREA
close it, tRAS before and tRP after); a GWRITE names the bank whose row it copies, which must
be open there (tRCDRD after its ACT, and open until the copy ends); COMPs come one per
command, each result's READRES no sooner than tCCD_L after its last COMP and MIN_COMP_SLOTS
slots after its first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

WIDE = {"P_HEADER", "GWRITE", "PIM_GEMV", "READRES", "PIM_PRECHARGE", "COMP"}
#: COMP slots of tCCD_L a result's pipeline needs from its first COMP to its READRES
#: (restated from docs/sources/neupims.md §6: NewtonSim's 2 (max(k, 6) + 1) composite)
PIPELINE_SLOTS = 6


@dataclass(frozen=True)
class Violation:
    """The first broken constraint: its name, the offending log entry (and its index), the
    earlier entry it conflicts with (None for state errors) and the cycles required."""

    constraint: str
    index: int
    command: tuple
    earlier: tuple | None
    required: int | None
    actual: int | None

    def __str__(self) -> str:
        if self.earlier is None:
            return f"log[{self.index}] {self.command}: {self.constraint}"
        return (
            f"log[{self.index}] {self.command} violates {self.constraint}: needs "
            f">= {self.required} cycles after {self.earlier}, got {self.actual}"
        )


@dataclass(frozen=True)
class _Rule:
    name: str
    first: frozenset
    second: frozenset
    scope: str  # bank | bg | rank | any
    gap: Callable[[tuple], int]  # of the earlier log entry
    window: int  # no earlier entry older than this can matter


def _rules(mem, dual: bool) -> list[_Rule]:
    t = mem.timing
    bl = mem.burst_cycles
    tcl = t.tCCD_L

    def occ(e):
        return tcl * max(e[6], 6)

    def const(v):
        return lambda e: v

    big = tcl * 4096
    spec = [
        # name, first, second, scope, gap
        ("tRC", {"ACT"}, {"ACT"}, "bank", t.tRAS + t.tRP),
        ("tRRD_L", {"ACT", "G_ACT"}, {"ACT", "G_ACT"}, "bg", t.tRRD_L),
        ("tRRD_S", {"ACT", "G_ACT"}, {"ACT", "G_ACT"}, "rank", t.tRRD_S),
        ("tRCDRD", {"ACT"}, {"RD"}, "bank", t.tRCDRD),
        ("tRCDWR", {"ACT"}, {"WR"}, "bank", t.tRCDWR),
        ("tRAS", {"ACT"}, {"PRE", "PREA"}, "bank", t.tRAS),
        ("tRP", {"PRE", "PREA"}, {"ACT"}, "bank", t.tRP),
        ("tRP(REF)", {"PRE", "PREA"}, {"REF"}, "rank", t.tRP),
        ("tCCD_L(RD)", {"RD"}, {"RD"}, "bg", max(bl, tcl)),
        ("tCCD_S(RD)", {"RD"}, {"RD"}, "any", max(bl, t.tCCD_S)),
        ("tCCD_L(WR)", {"WR"}, {"WR"}, "bg", max(bl, tcl)),
        ("tCCD_S(WR)", {"WR"}, {"WR"}, "any", max(bl, t.tCCD_S)),
        ("read_to_write", {"RD", "READRES"}, {"WR"}, "any", t.CL + bl - t.CWL + t.tWPRE),
        ("tWTR_L", {"WR"}, {"RD"}, "bg", t.CWL + bl + t.tWTR_L),
        ("tWTR_S", {"WR"}, {"RD"}, "rank", t.CWL + bl + t.tWTR_S),
        ("tRTP", {"RD"}, {"PRE", "PREA"}, "bank", t.tRTP_L),
        ("tWR", {"WR"}, {"PRE", "PREA"}, "bank", t.CWL + bl + t.tWR),
        ("tRFC", {"REF"}, {"ACT", "G_ACT", "REF"}, "rank", t.tRFC),
        # PIM (section 6); COMP: Newton's single dot-product command (blocked mode)
        ("ACT<->G_ACT", {"ACT"}, {"G_ACT"}, "bank", t.tRRD_L if dual else t.tRAS + t.tRP),
        ("G_ACT->ACT", {"G_ACT"}, {"ACT"}, "bg", t.tRRD_L if dual else t.tRAS + t.tRP),
        ("tRC(PIM)", {"G_ACT"}, {"G_ACT"}, "bank", t.tRAS + t.tRP),
        ("tRCDRD(PIM)", {"G_ACT"}, {"PIM_GEMV", "COMP"}, "any", t.tRCDRD),
        ("tRAS(PIM)", {"G_ACT"}, {"PIM_PRECHARGE"}, "any", t.tRAS),
        ("tRP(PIM)", {"PIM_PRECHARGE"}, {"G_ACT", "REF"}, "any", t.tRP),
        (
            "global_buffer_load",
            {"GWRITE"},
            {"PIM_GEMV", "GWRITE", "COMP"},
            "any",
            t.CWL + mem.pim.gwrite_cycles,
        ),
        ("PIM_GEMV_occupancy", {"PIM_GEMV"}, {"PIM_GEMV", "READRES", "GWRITE"}, "any", None),
        ("PIM_read_to_precharge", {"READRES"}, {"PIM_PRECHARGE"}, "any", t.tRTP_L),
        ("PIM_GEMV_to_precharge", {"PIM_GEMV"}, {"PIM_PRECHARGE"}, "any", None),
        ("READRES_to_READRES", {"READRES"}, {"READRES"}, "any", max(bl, tcl)),
        ("COMP_to_COMP", {"COMP"}, {"COMP"}, "any", tcl),
        ("COMP_to_READRES", {"COMP"}, {"READRES"}, "any", tcl),
        ("READRES_to_COMP", {"READRES"}, {"COMP"}, "any", max(bl, tcl)),
        ("COMP_to_GWRITE (buffer in use)", {"COMP"}, {"GWRITE"}, "any", tcl),
    ]
    if not dual:  # Newton single row buffer: normal-buffer gaps apply to PIM commands
        spec += [
            (
                "RD->COMP/READRES(single)",
                {"RD"},
                {"PIM_GEMV", "READRES", "COMP"},
                "any",
                max(bl, tcl),
            ),
            (
                "WR->COMP/READRES(single)",
                {"WR"},
                {"PIM_GEMV", "READRES", "COMP"},
                "any",
                t.CWL + bl + t.tWTR_L,
            ),
            ("PIM->PRE(single)", {"READRES", "COMP"}, {"PRE", "PREA"}, "any", t.tRTP_L),
            ("PIM_PRECHARGE->ACT(single)", {"PIM_PRECHARGE"}, {"ACT"}, "any", t.tRP),
            # one buffer: a G_ACT row is an ordinary open row
            ("tRAS(G_ACT->PRE, single)", {"G_ACT"}, {"PRE", "PREA"}, "bank", t.tRAS),
            ("tRP(PRE->G_ACT, single)", {"PRE", "PREA"}, {"G_ACT"}, "bank", t.tRP),
            # the GWRITE copies its row through the buffer
            ("tRCDRD(GWRITE, single)", {"ACT"}, {"GWRITE"}, "bank", t.tRCDRD),
            (
                "GWRITE->PRE(single: row open until the copy ends)",
                {"GWRITE"},
                {"PRE", "PREA"},
                "bank",
                t.CWL + mem.pim.gwrite_cycles,
            ),
        ]
    out = []
    for name, a, b, scope, gap in spec:
        if gap is None:
            fn = (
                (lambda e: occ(e))
                if name == "PIM_GEMV_occupancy"
                else (lambda e: occ(e) + t.tRTP_L)
            )
            win = big + t.tRTP_L
        else:
            fn, win = const(gap), gap
        out.append(_Rule(name, frozenset(a), frozenset(b), scope, fn, win))
    return out


def _data_window(e: tuple, mem) -> tuple[int, int] | None:
    t = mem.timing
    c = e[1]
    if c in ("RD", "READRES"):
        return e[0] + t.CL, e[0] + t.CL + mem.burst_cycles
    if c == "WR":
        return e[0] + t.CWL, e[0] + t.CWL + mem.burst_cycles
    if c == "GWRITE":
        return e[0] + t.CWL, e[0] + t.CWL + mem.pim.gwrite_cycles
    return None


def _related(scope: str, a: tuple, b: tuple) -> bool:
    """Does the scope relate log entries a and b? Channel-wide commands touch every bank;
    a channel-wide command that names a bank (a blocked-mode GWRITE) that bank."""
    if scope == "any" or (a[1] in WIDE and a[2] < 0) or (b[1] in WIDE and b[2] < 0):
        return True
    if a[2] != b[2]:
        return False
    if scope == "rank" or a[1] in ("PREA", "REF") or b[1] in ("PREA", "REF"):
        return True  # PREA and REF address every bank of their rank
    if a[3] != b[3]:
        return False
    if scope == "bg" or a[1] == "G_ACT" or b[1] == "G_ACT":
        return True  # a G_ACT addresses every bank of its group
    return a[4] == b[4]


def _tiles_of_log(log: list) -> dict[int, tuple[int, int, bool]]:
    """Per P_HEADER index: (k of its PIM_GEMV, READRES count, GWRITE present) of its tile."""
    out = {}
    cur = None
    for i, e in enumerate(log):
        if e[1] == "P_HEADER":
            cur = i
            out[i] = [0, 0, False]
        elif cur is not None:
            if e[1] == "GWRITE":
                out[cur][2] = True
            elif e[1] == "PIM_GEMV":
                out[cur][0] = e[6]
            elif e[1] == "COMP":
                out[cur][0] += 1
            elif e[1] == "READRES":
                out[cur][1] += 1
    return {i: tuple(v) for i, v in out.items()}


def _guard_estimate(mem, k: int, n_res: int, open_banks: int, gwrite: bool, dual: bool) -> int:
    """The released controller's latency estimate of a GEMV header (NewtonSim
    EstimatePIMOperationLatency), restated: open PIM rows x precharge latency + tFAW x
    (G_ACTs per rank - 1) + tRCDRD + max(burst, tCCD_S) max(k, 6) + max(burst, tCCD_L)
    (results - 1), + the GWRITE transfer when the tile carries one (blocked mode: + tRP +
    tRCDRD to open the vector's row, as the released GWRITE estimate)."""
    t, o = mem.timing, mem.organization
    bl = mem.burst_cycles
    n_gact_per_rank = o.bank_groups
    est = (
        open_banks * mem.controller.refresh.guard_precharge_cycles
        + t.tFAW * (n_gact_per_rank - 1)
        + t.tRCDRD
        + max(bl, t.tCCD_S) * max(k, 6)
        + max(bl, t.tCCD_L) * (n_res - 1)
    )
    if gwrite:
        est += mem.pim.gwrite_cycles + (0 if dual else t.tRP + t.tRCDRD)
    return est


def check_log(
    log: Iterable[tuple], mem, *, dual_row_buffer: bool, refresh: bool = True
) -> Violation | None:
    """Replay ``log``; return the first :class:`Violation`, or None when it is legal.
    ``refresh``: whether the run refreshed (the refresh schedule rules of the general path
    apply only then; the log of a fresh channel is assumed)."""
    o, t = mem.organization, mem.timing
    log = list(log)
    rs = mem.controller.refresh
    general = refresh and (rs.policy == "rank_staggered" or rs.pim_deadline_guard)
    group = 1 if rs.policy == "rank_staggered" else o.ranks
    interval = t.tREFI // o.ranks if rs.policy == "rank_staggered" else t.tREFI
    tiles = _tiles_of_log(log) if general and rs.pim_deadline_guard else {}
    n_ref = 0  # REFs so far
    rules = _rules(mem, dual_row_buffer)
    by_second: dict[str, list[_Rule]] = {}
    for r in rules:
        for c in r.second:
            by_second.setdefault(c, []).append(r)
    hist: dict[str, list[tuple]] = {}
    acts: dict[int, list[tuple]] = {}
    data: list[tuple[int, int, tuple]] = []
    mem_open: dict[tuple, int] = {}
    comp_first = None  # the first COMP of the result in progress
    pim_open: dict[tuple, int] = {}
    banks = [
        (r, g, b)
        for r in range(o.ranks)
        for g in range(o.bank_groups)
        for b in range(o.banks_per_group)
    ]
    last = None
    for i, e in enumerate(log):
        cyc, cmd = e[0], e[1]

        def bad(name, earlier=None, req=None, act=None, _i=i, _e=e):
            return Violation(name, _i, tuple(_e), earlier, req, act)

        if last is not None and cyc <= last[0]:
            return bad("command_bus (one command per cycle, in time order)", last, 1, cyc - last[0])
        # ---- refresh schedule
        if cmd == "REF":
            if e[2] != n_ref % o.ranks:
                return bad(
                    f"refresh_rank_order (REF number {n_ref} goes to rank {n_ref % o.ranks})"
                )
            due = (n_ref // group + 1) * interval
            if general and cyc < due:
                return bad("refresh_not_before_insertion", None, due, cyc)
            n_ref += 1
        if general:
            j = n_ref // group  # the first insertion not yet refreshed
            due = (j + 1) * interval
            pend = {(j * group + x) % o.ranks for x in range(n_ref % group, group)}
            if cyc >= due and cmd in ("ACT", "RD", "WR") and e[2] in pend:
                return bad(f"refresh_pending (rank {e[2]} inserted at {due}, not yet refreshed)")
            if cmd == "P_HEADER":
                if cyc >= due:
                    return bad(f"tile_during_pending_refresh (inserted at {due})")
                if rs.pim_deadline_guard:
                    k, n_res, gw = tiles[i]
                    n_open = (
                        len(pim_open) if dual_row_buffer else len(set(pim_open) | set(mem_open))
                    )
                    est = _guard_estimate(mem, k, n_res, n_open, gw, dual_row_buffer)
                    if due - cyc <= est:
                        return bad(
                            f"pim_deadline_guard (tile estimate {est} cycles, "
                            f"next refresh at {due})"
                        )
        # ---- timing rules
        for rule in by_second.get(cmd, ()):
            for f in rule.first:
                for p in reversed(hist.get(f, ())):
                    if cyc - p[0] > rule.window:
                        break
                    if not _related(rule.scope, p, e):
                        continue
                    need = rule.gap(p)
                    if cyc - p[0] < need:
                        return bad(rule.name, p, need, cyc - p[0])
        # ---- tFAW: at most 4 activations per rank in any tFAW window
        if cmd in ("ACT", "G_ACT"):
            n_new = o.banks_per_group if cmd == "G_ACT" else 1
            recent = [a for a in acts.get(e[2], []) if cyc - a[0] < t.tFAW]
            if len(recent) + n_new > 4:
                return bad("tFAW", recent[0], t.tFAW, cyc - recent[0][0])
            acts.setdefault(e[2], []).extend([e] * n_new)
            acts[e[2]] = acts[e[2]][-8:]
        # ---- data bus
        w = _data_window(e, mem)
        if w is not None:
            for s, en, p in data[-8:]:
                if w[0] < en and s < w[1]:
                    return bad("data_bus_overlap", p, en - e[0], w[0] - e[0])
            data.append((w[0], w[1], e))
        # ---- a result's COMP pipeline: its READRES >= its first COMP + PIPELINE_SLOTS slots
        if cmd == "COMP" and comp_first is None:
            comp_first = e
        elif cmd == "READRES" and comp_first is not None:
            need = t.tCCD_L * PIPELINE_SLOTS
            if cyc - comp_first[0] < need:
                return bad(
                    "COMP_pipeline (first COMP to READRES)", comp_first, need, cyc - comp_first[0]
                )
            comp_first = None
        # ---- bank state
        err = _state(e, mem_open, pim_open, banks, dual_row_buffer)
        if err:
            return bad(err)
        hist.setdefault(cmd, []).append(e)
        last = e
    return None


def _state(e, mem_open, pim_open, banks, dual) -> str | None:
    cmd, r, g, b, row = e[1], e[2], e[3], e[4], e[5]
    key = (r, g, b)
    if not dual and cmd in ("PIM_GEMV", "PIM_PRECHARGE"):
        return f"state: {cmd} is not a Newton command (single row buffer)"
    if cmd == "ACT":
        if key in mem_open:
            return f"state: ACT to open bank {key}"
        if not dual and key in pim_open:
            return f"state: ACT to bank {key} held by PIM (single row buffer)"
        if pim_open.get(key) == row:
            return f"state: ACT of row {row} open in the PIM buffer of {key}"
        mem_open[key] = row
    elif cmd in ("RD", "WR"):
        if mem_open.get(key) != row:
            return f"state: {cmd} to row {row} of {key}, open row {mem_open.get(key)}"
    elif cmd == "PRE":
        if key in mem_open:
            del mem_open[key]
        elif not dual and key in pim_open:  # one buffer: PRE closes a G_ACT row too
            del pim_open[key]
        else:
            return f"state: PRE to closed bank {key}"
    elif cmd == "PREA":
        for k in [k for k in mem_open if k[0] == r]:
            del mem_open[k]
        if not dual:
            for k in [k for k in pim_open if k[0] == r]:
                del pim_open[k]
    elif cmd == "GWRITE" and not dual:
        if r < 0 or mem_open.get(key) != row:
            return (
                f"state: GWRITE of row {row} of {key} needs that row open in the bank's "
                f"(single) row buffer, open row {mem_open.get(key)}"
            )
    elif cmd == "REF":
        if any(k[0] == r for k in mem_open) or any(k[0] == r for k in pim_open):
            return f"state: REF to rank {r} with banks open"
    elif cmd == "G_ACT":
        for k in banks:
            if k[0] == r and k[1] == g:
                if k in pim_open:
                    return f"state: G_ACT to {k} with a PIM row open"
                if not dual and k in mem_open:
                    return f"state: G_ACT to {k} with a MEM row open (single row buffer)"
                if mem_open.get(k) == row:
                    return f"state: G_ACT of row {row} open in the MEM buffer of {k}"
                pim_open[k] = row
    elif cmd in ("PIM_GEMV", "READRES", "COMP"):
        rows = {pim_open.get(k) for k in banks}
        if len(rows) != 1 or None in rows:
            return f"state: {cmd} without one PIM row open in every bank"
    elif cmd == "PIM_PRECHARGE":
        pim_open.clear()
    return None
