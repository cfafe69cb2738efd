"""PIM fast paths: KV tile layout, NeuPIMs' Algorithm 1, and the closed-form MHA/GEMV latency.

Units: cycles are memory-clock cycles (``mem.timing.tck_ns`` ns); energy in joules.
Facts: docs/sources/neupims.md §6-§8 (PIM commands, tile layout, Algorithm 1).

The closed form here is derived from the command sequence that the command-level controller
(:mod:`neupims.devices.hbm_channel`) issues for a PIM GEMV tile, and is checked against it
within 3 % over 50+ shapes by ``tests/test_hbm_fastpath.py``. One *tile* is one 1 KB row in
every bank of the channel (32 KB); one tile GEMV is, in order::

    P_HEADER, [GWRITE when the vector changes], [PIM_PRECHARGE when PIM rows are open],
    G_ACT x (ranks * bank_groups), PIM_GEMV (k COMPs), READRES x n_results

Between tiles the PIM row buffers close and open again (PIM_PRECHARGE + G_ACTs under tFAW),
the dominant fixed cost; the GWRITE of the next vector overlaps that when it can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from neupims.devices import pim_scan as S
from neupims.devices.dram import dram_energy_j
from neupims.devices.hbm_timing import MIN_COMP_SLOTS, guard_parts, vector_bank
from neupims.errors import ConfigError


@dataclass(frozen=True)
class PimMhaCost:
    """MHA of all requests on one channel, one layer.

    cycles: memory-clock cycles for logit K^T q plus attend s.V of every request, refresh
    included; commands: command counts (ACT, RD, GWRITE, G_ACT, COMP, READRES, ...);
    energy_j: joules of those commands plus the channel's background over ``cycles``.
    """

    cycles: float
    commands: Mapping[str, int]
    energy_j: float


# --------------------------------------------------------------------------- layout


def _row_elems(mem) -> int:
    """FP16 elements per DRAM row (page), Algorithm 1's P = 512 for a 1 KB page."""
    return mem.page_bytes // 2


def _check_pim(mem) -> None:
    if not mem.pim.enabled:
        raise ConfigError(f"memory config {mem.name!r}: pim.enabled is false; no PIM fast path")


def kv_tiles_per_request(seq_len: int, e_eff: int, mem) -> int:
    """32 KB PIM tiles of one layer's K and V cache for one request (docs/sources/neupims.md §7).

    ceil(s/B) * ceil(E/P) key tiles (one token per bank) + ceil(s/P) * ceil(E/B) value tiles
    (one embedding element per bank, a row holds P tokens); B banks per channel, P FP16
    per row, E = e_eff.
    """
    if seq_len < 0 or e_eff <= 0:
        raise ConfigError(
            f"kv_tiles_per_request: need seq_len >= 0 and e_eff > 0, got {seq_len}, {e_eff}"
        )
    b, p = mem.banks_per_channel, _row_elems(mem)
    return -(-seq_len // b) * -(-e_eff // p) + -(-seq_len // p) * -(-e_eff // b)


def neupims_mha_estimate_cycles(seq_lens, e_eff: int, n_heads: int, mem) -> np.ndarray:
    """NeuPIMs Algorithm 1 per request (docs/sources/neupims.md §8), vectorised over ``seq_lens``.

    K^T q: c1 = ceil(E/P), t1 = ceil(s/B), lat = c1 L_GW + c1 t1 L_tile;
    s.V:   c2 = ceil(s/P) n_h, t2 = ceil(d_k/B), lat += c2 L_GW + c2 t2 L_tile,
    with L_GW = ``pim.l_gw_cycles`` (100) and L_tile = ``pim.l_tile_cycles`` (184). Returns
    float64 cycles, one per request. This is the paper's estimator for placement policies,
    not this package's latency model (that is :func:`mha_channel_cycles`).
    """
    s = np.asarray(seq_lens, dtype=np.int64)
    if n_heads <= 0 or e_eff % n_heads:
        raise ConfigError(f"e_eff ({e_eff}) must be a positive multiple of n_heads ({n_heads})")
    b, p = mem.banks_per_channel, _row_elems(mem)
    l_gw, l_tile = mem.pim.l_gw_cycles, mem.pim.l_tile_cycles
    d_k = e_eff // n_heads
    c1 = -(-e_eff // p)
    t1 = -(-s // b)
    c2 = -(-s // p) * n_heads
    t2 = -(-d_k // b)
    return (c1 * l_gw + c1 * t1 * l_tile + c2 * l_gw + c2 * t2 * l_tile).astype(np.float64)


# --------------------------------------------------------------------------- tile programs


@dataclass(frozen=True)
class TileGroup:
    """``tiles`` tile GEMVs sharing one global-buffer vector (one GWRITE before them).

    k: COMPs per tile (16 FP16 MACs per bank each); n_results: READRES per tile (one per
    accumulator, i.e. per head segment in the row); count: how many such groups in a row.
    """

    tiles: int
    k: int
    n_results: int
    count: int = 1


def _heads_in(a: int, b: int, d_head: int) -> int:
    """Number of heads whose [h d, (h+1) d) range overlaps elements [a, b)."""
    return (b - 1) // d_head - a // d_head + 1


def mha_program(seq_len: int, n_heads: int, d_head: int, mem) -> list[TileGroup]:
    """Tile GEMVs of one request's MHA (one layer) in issue order, paper section 7 layout.

    K^T q: for each 512-element chunk of E_eff, one GWRITE of that chunk of q, then
    ceil(s/B) key tiles with k = chunk/16 COMPs and one READRES per head in the chunk.
    s.V: for each head and each 512-token chunk, one GWRITE of those scores, then
    ceil(d_head/B) value tiles with k = ceil(tokens/16) COMPs and one READRES.
    """
    if seq_len <= 0:
        return []
    b, p = mem.banks_per_channel, _row_elems(mem)
    mult = mem.pim.multipliers_per_bank
    e = n_heads * d_head
    out: list[TileGroup] = []
    t1 = -(-seq_len // b)
    for a in range(0, e, p):
        n = min(p, e - a)
        out.append(TileGroup(t1, -(-n // mult), _heads_in(a, a + n, d_head)))
    t2 = -(-d_head // b)
    full, rest = divmod(seq_len, p)
    v_groups = []
    if full:
        v_groups.append(TileGroup(t2, p // mult, 1, full))
    if rest:
        v_groups.append(TileGroup(t2, -(-rest // mult), 1))
    for _ in range(n_heads):
        out.extend(v_groups)
    return out


def gemv_program(rows: int, cols: int, mem) -> list[TileGroup]:
    """Tile GEMVs of y = W x with W (rows x cols) FP16 in Newton layout on one channel:
    each bank holds whole matrix rows, a tile covers B rows x P columns; for each P-column
    chunk one GWRITE of x, then ceil(rows/B) tiles with one accumulator each."""
    if rows <= 0 or cols <= 0:
        raise ConfigError(f"pim_gemv_cycles: rows and cols must be positive, got {rows}x{cols}")
    b, p = mem.banks_per_channel, _row_elems(mem)
    mult = mem.pim.multipliers_per_bank
    t = -(-rows // b)
    full, rest = divmod(cols, p)
    out = []
    if full:
        out.append(TileGroup(t, p // mult, 1, full))
    if rest:
        out.append(TileGroup(t, -(-rest // mult), 1))
    return out


# --------------------------------------------------------------------------- closed form


@dataclass(frozen=True)
class _PimTiming:
    """Parts (cycles) of the tile sequence, derived once per memory config.

    Times are relative to the last READRES of a tile (``rr_last``). The next tile issues
    P_HEADER at +1, [GWRITE at +w], PIM_PRECHARGE at ``pre``, its G_ACTs from pre + tRP over
    ``gact_span`` cycles, and PIM_GEMV tRCDRD after the last G_ACT (and, after a GWRITE,
    CWL + gwrite cycles after it).
    """

    gact_span: int  # first G_ACT to last G_ACT of one tile
    gact_count: int
    start_to_gemv: int  # first-tile PIM_GEMV issue time (nothing open, first GWRITE)
    pre_plain: int  # earliest PIM_PRECHARGE after rr_last, same vector
    pre_gwrite: int  # ... when a GWRITE goes first
    gw_to_gemv: int  # rr_last -> PIM_GEMV bound from the GWRITE transfer
    open_to_gemv: int  # PIM_PRECHARGE -> PIM_GEMV: tRP + span + tRCDRD
    back_bound: int  # pre - rr_last >= back_bound - (occ + rr_gap (n - 1)): tRAS, tRC, tFAW
    rr_gap: int  # READRES -> READRES (and, blocked, READRES -> the next result's COMP)
    tail: int  # last READRES -> end of its data burst
    trfc: int
    trefi: int
    # GWRITE boundary: pre_gwrite / back_gw bound the step that starts it (dual: the
    # PIM_PRECHARGE; blocked: the vector row's ACT), gw_open_to_gemv runs from there to the
    # first PIM_GEMV / COMP
    back_gw: int
    gw_open_to_gemv: int
    split: bool  # blocked mode: each result's COMPs then its READRES (hbm_timing.comp_split)


def _gact_times(mem, start: int, avail: Mapping[int, int] | None = None) -> list[int]:
    """Issue times of one tile's G_ACTs, ranks interleaved, under tRRD_S/L and tFAW where a
    G_ACT counts as ``banks_per_group`` activations (at most 4 in any tFAW window); rank r's
    no earlier than ``avail[r]`` (after a refresh: its REF + tRFC)."""
    o, t = mem.organization, mem.timing
    avail = avail or {}
    acts: dict[int, list[int]] = {r: [] for r in range(o.ranks)}  # activation times per rank
    last: dict[int, int] = {}
    times = []
    now = start
    for _bg in range(o.bank_groups):
        for r in range(o.ranks):
            at = max(now, avail.get(r, now))
            if r in last:
                at = max(at, last[r] + t.tRRD_S)
            window = acts[r]
            # adding banks_per_group activations at `at`: the 4th-most-recent one before each
            # new activation must be >= tFAW earlier
            for _ in range(o.banks_per_group):
                if len(window) >= 4:
                    at = max(at, window[-4] + t.tFAW)
                window.append(at)
            times.append(at)
            last[r] = at
            now = at + 1  # one command per cycle on the C/A bus
    return times


def _blocked_start(mem, start: int, avail: Mapping[int, int], gw: bool) -> tuple[int, int]:
    """Blocked mode: (the first COMP, its lag behind rank 0's last G_ACT) of a tile whose
    commands after P_HEADER and its PREAs may
    issue from ``start`` on, with no row open (after the PREAs, the first tile or a refresh):
    [ACT of the vector row, GWRITE,] then the G_ACTs, the vector row's PRE just before its
    bank group's (hbm_channel ``Controller._expand_blocked``). Rank r activates no earlier
    than ``avail[r]``. Gates: ACT -> GWRITE tRCDRD, GWRITE -> PRE CWL + transfer, PRE ->
    G_ACT tRP, ACT -> G_ACT tRC (same bank) and tRRD_S (rank), tFAW with the ACT counting
    one activation and a G_ACT ``banks_per_group``, G_ACT -> COMP tRCDRD, GWRITE -> COMP
    CWL + transfer; one command per cycle."""

    o, t = mem.organization, mem.timing
    vr, vg, _, _ = vector_bank(mem)
    load = t.CWL + mem.pim.gwrite_cycles
    acts: dict[int, list[int]] = {r: [] for r in range(o.ranks)}
    last: dict[int, int] = {}
    now = start
    comp = 0
    if gw:
        a = max(now, avail.get(vr, now))
        acts[vr].append(a)
        last[vr] = a
        gwt = max(a + t.tRCDRD, a + 1)
        now = gwt + 1
        pre_v = max(gwt + load, a + t.tRAS)
        comp = gwt + load
    times = []
    for g in range(o.bank_groups):
        for r in range(o.ranks):
            floor = avail.get(r, now)
            if gw and r == vr and g == vg:
                p_v = max(now, pre_v)
                now = p_v + 1
                floor = max(floor, p_v + t.tRP, a + t.tRAS + t.tRP)
            at = max(now, floor)
            if r in last:
                at = max(at, last[r] + t.tRRD_S)
            window = acts[r][-4:]  # B activations at `at`: at most 4 in any tFAW window
            k = len(window) + o.banks_per_group - 5
            if k >= 0:
                at = max(at, window[k] + t.tFAW)
            acts[r].extend([at] * o.banks_per_group)
            times.append(at)
            last[r] = at
            now = at + 1
    comp = max(comp, times[-1] + t.tRCDRD)
    return comp, comp - times[o.ranks * (o.bank_groups - 1)]


@lru_cache(maxsize=64)
def _pim_timing(mem, dual: bool = True) -> _PimTiming:
    """Tile-sequence parts of ``mem`` in dual or blocked (``dual`` false) mode. Blocked mode
    (``Controller._expand_blocked``), from the previous tile's last READRES T and its work
    w (first COMP to last READRES): PREA per rank from T + max(tRTP_L, 2), or later by tRAS
    after the rank's last G_ACT, which is tRCDRD + (ranks - 1 - rank) before the first COMP
    (``back_bound`` = tRAS - tRCDRD - (ranks - 1)); the G_ACTs tRP after rank 0's PREA as in
    dual mode. With a GWRITE the vector row's ACT follows rank 0's PREA by tRP (or tRC after
    its group's previous G_ACT), then ``_blocked_start`` (ACT -> first COMP 143 cycles for
    NeuPIMs' timing: PRE of the row CWL + 96 after GWRITE, tRP, the last G_ACT pair, tRCDRD)."""
    t, o = mem.timing, mem.organization
    burst = mem.burst_cycles
    gw = mem.pim.gwrite_cycles
    g0 = _gact_times(mem, 0)
    span = g0[-1] - g0[0]
    trc = t.tRAS + t.tRP
    if not dual:
        back = max(
            t.tRAS - t.tRCDRD - (o.ranks - 1),
            trc - t.tRP - t.tRCDRD - span,
            t.tFAW - 1 - t.tRP - t.tRCDRD,
        )
        pre = max(t.tRTP_L, 2)
        return _PimTiming(
            gact_span=span,
            gact_count=len(g0),
            start_to_gemv=_blocked_start(mem, 1, {}, True)[0],
            pre_plain=pre,
            pre_gwrite=pre + t.tRP,
            gw_to_gemv=0,  # inside gw_open_to_gemv: the copy ends before the G_ACTs do
            open_to_gemv=t.tRP + span + t.tRCDRD,
            back_bound=back,
            rr_gap=max(burst, t.tCCD_L),
            tail=t.CL + burst,
            trfc=t.tRFC,
            trefi=t.tREFI,
            # the vector ACT: tRP after rank 0's PREA, tRC after its group's last G_ACT
            # (tRCDRD + ranks - 1 before the COMP), tFAW after that rank's last G_ACT
            back_gw=max(
                back + t.tRP,
                trc - t.tRCDRD - (o.ranks - 1),
                t.tFAW - t.tRCDRD - (o.ranks - 1),
            ),
            gw_open_to_gemv=_blocked_start(mem, 0, {}, True)[0],
            split=True,
        )
    # first tile: P_HEADER @0, GWRITE @1, G_ACTs from 2, PIM_GEMV after tRCDRD and GWRITE
    start = max(2 + span + t.tRCDRD, 1 + t.CWL + gw)
    # GWRITE once the data bus is free: its data (CWL after issue) follows the last READRES
    # burst, which ends CL + burst after that READRES; P_HEADER goes first at +1
    w = max(2, t.CL + burst - t.CWL)
    # the previous tile's G_ACTs sit tRCDRD (+ span) before its PIM_GEMV: tRAS to the
    # precharge, tRC (same bank) and tFAW (same rank) to the next tile's G_ACTs
    back = max(
        t.tRAS - t.tRCDRD,
        trc - t.tRP - t.tRCDRD - span,
        t.tFAW - 1 - t.tRP - t.tRCDRD,
    )
    return _PimTiming(
        gact_span=span,
        gact_count=len(g0),
        start_to_gemv=start,
        pre_plain=max(t.tRTP_L, 2),
        pre_gwrite=max(t.tRTP_L, w + 1),
        gw_to_gemv=w + t.CWL + gw,
        open_to_gemv=t.tRP + span + t.tRCDRD,
        back_bound=back,
        rr_gap=max(burst, t.tCCD_L),
        tail=t.CL + burst,
        trfc=t.tRFC,
        trefi=t.tREFI,
        back_gw=back,
        gw_open_to_gemv=t.tRP + span + t.tRCDRD,
        split=False,
    )


def _general_refresh(mem) -> bool:
    """Whether the controller takes its general refresh path (rank-staggered refresh or the
    PIM deadline guard); the all-bank default keeps the closed form below."""
    ref = mem.controller.refresh
    return ref.policy == "rank_staggered" or ref.pim_deadline_guard


@lru_cache(maxsize=64)
def _refresh_timing(mem, dual: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Constants of :mod:`neupims.devices.pim_scan` (its ``C_*`` slots) and the restart table:
    ``restart[kind, gwrite, open, 0]`` = cycles from a refresh's first command (PIM_PRECHARGE
    when PIM rows are open, else the first REF) to the restarted tile's PIM_GEMV. The
    refresh's REFs follow tRP after the PIM_PRECHARGE, one per cycle; the tile's P_HEADER
    comes the cycle after the last REF, its GWRITE next, then its G_ACTs with each refreshed
    rank's held until its REF + tRFC (the others tRP after the PIM_PRECHARGE).

    Blocked mode (``dual`` false): the refresh's first command is a refreshed rank's PREA
    (one per refreshed rank, then the REFs tRP later); the restarted tile's P_HEADER, then
    PREA of the other ranks (their G_ACT rows are still open), then its commands from
    :func:`_blocked_start` (the vector's ACT and the G_ACTs of a refreshed rank held until
    its REF + tRFC), to its first COMP; ``[..., 1]`` that COMP's lag behind rank 0's last
    G_ACT (``pim_scan._next_lag0``)."""

    if not dual:
        return _refresh_timing_blocked(mem)
    pt = _pim_timing(mem)
    t, o = mem.timing, mem.organization
    ref = mem.controller.refresh
    group = 1 if ref.policy == "rank_staggered" else o.ranks
    kinds = o.ranks if group < o.ranks else 1
    restart = np.zeros((kinds, 2, 2, 2), dtype=np.int64)
    for kind in range(kinds):
        ranks = [(kind + i) % o.ranks for i in range(group)]
        for gw in (0, 1):
            for is_open in (0, 1):
                first_ref = t.tRP if is_open else 0
                ref_at = {r: first_ref + i for i, r in enumerate(ranks)}
                header = first_ref + len(ranks)
                avail = {r: ref_at.get(r, t.tRP if is_open else 0) for r in range(o.ranks)}
                avail = {r: (a + t.tRFC if r in ref_at else a) for r, a in avail.items()}
                g = _gact_times(mem, header + 1 + gw, avail)
                gemv = g[-1] + t.tRCDRD
                if gw:
                    gemv = max(gemv, header + 1 + t.CWL + mem.pim.gwrite_cycles)
                restart[kind, gw, is_open, 0] = gemv
    return _scan_constants(mem, pt, restart, guard_parts(mem))


def _refresh_timing_blocked(mem) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_refresh_timing` for blocked mode."""

    pt = _pim_timing(mem, False)
    t, o = mem.timing, mem.organization
    ref = mem.controller.refresh
    group = 1 if ref.policy == "rank_staggered" else o.ranks
    kinds = o.ranks if group < o.ranks else 1
    restart = np.zeros((kinds, 2, 2, 2), dtype=np.int64)
    for kind in range(kinds):
        ranks = [(kind + i) % o.ranks for i in range(group)]
        others = [r for r in range(o.ranks) if r not in ranks]
        for gw in (0, 1):
            for is_open in (0, 1):
                first_ref = t.tRP if is_open else 0  # PREAs at 0, 1, ..; REFs tRP later
                ref_at = {r: first_ref + i for i, r in enumerate(ranks)}
                header = first_ref + len(ranks)
                prea = {r: header + 1 + i for i, r in enumerate(others)} if is_open else {}
                avail = {r: a + t.tRFC for r, a in ref_at.items()}
                avail.update({r: a + t.tRP for r, a in prea.items()})
                restart[kind, gw, is_open] = _blocked_start(
                    mem, header + 1 + len(prea), avail, bool(gw)
                )
    return _scan_constants(mem, pt, restart, guard_parts(mem, False))


def _scan_constants(mem, pt: _PimTiming, restart, guard):
    """The ``C_*`` constants of :mod:`neupims.devices.pim_scan` and the restart table
    (``[kind, gwrite, open, 0]``: cycles to the restarted tile's first PIM_GEMV / COMP;
    ``[..., 1]``, blocked mode: that COMP's lag behind rank 0's last G_ACT), after checking
    the refresh interval leaves room for a restarted tile."""

    t, o = mem.timing, mem.organization
    ref = mem.controller.refresh
    group = 1 if ref.policy == "rank_staggered" else o.ranks
    g0 = _gact_times(mem, 0)
    start_plain = 1 + (g0[-1] - g0[0]) + t.tRCDRD  # P_HEADER at 0, G_ACTs from 1
    cs = np.zeros(S.N_CONST, dtype=np.int64)
    g_pc, g_fixed, g_comp, g_res, g_gw = guard
    for slot, v in (
        (S.C_TCCD_L, t.tCCD_L),
        (S.C_MIN_SLOTS, MIN_COMP_SLOTS),
        (S.C_RR_GAP, pt.rr_gap),
        (S.C_BACK, pt.back_bound),
        (S.C_PRE_PLAIN, pt.pre_plain),
        (S.C_PRE_GW, pt.pre_gwrite),
        (S.C_OPEN_TO_GEMV, pt.open_to_gemv),
        (S.C_GW_TO_GEMV, pt.gw_to_gemv),
        (S.C_START_GW, pt.start_to_gemv),
        (S.C_START_PLAIN, start_plain),
        (S.C_TAIL, pt.tail),
        (S.C_GUARD, int(ref.pim_deadline_guard)),
        (S.C_INTERVAL, mem.refresh_interval),
        (S.C_GROUP, group),
        (S.C_RANKS, o.ranks),
        (S.C_PRE_REF, max(t.tRTP_L, 1)),
        (S.C_TRAS_TRCD, t.tRAS - t.tRCDRD),
        (S.C_NBANKS, mem.banks_per_channel),
        (S.C_G_PC, g_pc),
        (S.C_G_FIXED, g_fixed),
        (S.C_G_COMP, g_comp),
        (S.C_G_RES, g_res),
        (S.C_G_GW, g_gw),
        (S.C_BACK_GW, pt.back_gw),
        (S.C_GW_OPEN, pt.gw_open_to_gemv),
        (S.C_SPLIT, int(pt.split)),
        (S.C_TRAS, t.tRAS),
        (S.C_TRP, t.tRP),
        (S.C_TFAW, t.tFAW),
        (S.C_TRCDRD, t.tRCDRD),
        (S.C_LAG0, t.tRCDRD + o.ranks - 1),  # the interleaved chains' lag (back_gw's base)
    ):
        cs[slot] = v
    longest = int(restart[..., 0].max()) + 2 * (t.tCCD_L * 32 + pt.rr_gap * 16) + t.tRP
    if mem.refresh_interval <= longest:
        raise ConfigError(
            f"memory config {mem.name!r}: the PIM fast path needs a refresh interval above "
            f"{longest} cycles (a restarted tile must end before the next refresh), got "
            f"{mem.refresh_interval}; use the command-level model (hbm_channel.simulate)"
        )
    return cs, restart


def _walk_program(groups: list[TileGroup], mem, dual: bool = True) -> tuple[int, int]:
    """(cycles, refresh insertions) of a tile program under the general refresh path."""

    cs, restart = _refresh_timing(_mem_token(mem), dual)
    flat = [(g.k, g.n_results, g.tiles) for g in groups for _ in range(g.count) if g.tiles > 0]
    if not flat:
        return 0, 0
    tk, tn, tt = (np.array(col, dtype=np.int64) for col in zip(*flat, strict=True))
    cyc, nref = S.walk_groups(tk, tn, tt, np.array([0, len(flat)], dtype=np.int64), cs, restart)
    return int(cyc[0]), int(nref[0])


def _program_cycles(
    groups: list[TileGroup], mem, dual: bool = True
) -> tuple[float, dict[str, int]]:
    """Closed-form cycles and command counts of a tile program on one idle channel."""
    if not groups:
        return 0.0, {}
    last = (groups[-1].k, groups[-1].n_results)
    if _general_refresh(mem):
        cyc, n_ins = _walk_program(groups, mem, dual)
        _, cmds = _classes_cycles(_classes_of(groups), last, mem, dual)
        if not cmds:
            return 0.0, {}
        cmds.pop("REF", None)
        if n_ins:
            cmds["REF"] = n_ins * _refresh_group(mem)
        return float(cyc), cmds
    return _classes_cycles(_classes_of(groups), last, mem, dual)


def _classes_of(groups: list[TileGroup]) -> dict[tuple[int, int], list[int]]:
    classes: dict[tuple[int, int], list[int]] = {}
    for g in groups:
        acc = classes.setdefault((g.k, g.n_results), [0, 0])
        acc[0] += g.count
        acc[1] += g.count * g.tiles
    return classes


def _refresh_group(mem) -> int:
    """Ranks refreshed per insertion: 1 (rank_staggered) or all (all_bank)."""
    if mem.controller.refresh.policy == "rank_staggered":
        return 1
    return mem.organization.ranks


def _classes_cycles(
    classes: dict[tuple[int, int], list[int]], last: tuple[int, int], mem, dual: bool = True
) -> tuple[float, dict[str, int]]:
    """Cycles and command counts of a tile program given as {(k, n_results): [vector groups,
    tiles in them]} and the final group's (k, n_results); the sums do not depend on order.

    Per tile: the COMP stream tCCD_L max(k, 6) then the READRES train; between tiles, the
    gap from the last READRES to the next PIM_GEMV (``_PimTiming``), longer after a GWRITE.
    Plain Python: there are few classes, and numpy costs more per call on arrays this size.
    """
    pt = _pim_timing(_mem_token(mem), dual)
    tccd_l = mem.timing.tCCD_L
    n_tiles = gwrites = comps = readres = 0
    base = pt.start_to_gemv + pt.tail
    last_work = last_gap = 0
    for (k, n), (count, tiles) in classes.items():
        if count <= 0 or tiles <= 0:
            continue
        work, gap_plain, gap_gw = (int(x) for x in _tile_parts(k, n, pt, tccd_l))
        # each group: its tiles, a plain boundary between two of them, then one GWRITE
        # boundary before the next group
        base += tiles * work + (tiles - count) * gap_plain + count * gap_gw
        if (k, n) == last:
            last_work, last_gap = work, gap_plain
            base -= gap_gw  # no boundary after the very last group
        n_tiles += tiles
        gwrites += count
        comps += tiles * k
        readres += tiles * n
    if n_tiles == 0:
        return 0.0, {}
    boundaries = n_tiles - 1
    # refresh: due every tREFI, taken before the first tile whose P_HEADER would issue at
    # or after the due time; it replaces that tile's PIM_PRECHARGE and costs tRFC more
    last_tile = last_gap - pt.pre_plain - 1 + last_work + pt.tail
    n_ref = 0
    while n_ref < boundaries:
        horizon = base + n_ref * pt.trfc - last_tile
        nxt = min(max(0, horizon // pt.trefi), boundaries)
        if nxt <= n_ref:
            break
        n_ref = nxt
    cycles = base + n_ref * pt.trfc
    cmds = _pim_commands(n_tiles, gwrites, comps, readres, n_ref * mem.organization.ranks, pt, mem)
    return float(cycles), {c: v for c, v in cmds.items() if v}


def _pim_commands(n_tiles, gwrites, comps, readres, refs, pt: _PimTiming, mem) -> dict:
    """Command counts of a tile program (ints, or arrays per channel). Dual: a PIM_PRECHARGE
    per tile (between tiles, and one to release the banks; a refresh's replaces a tile's), one
    PIM_GEMV per tile. Blocked (``pt.split``): a PREA per rank per tile instead (the first tile
    finds nothing open, the release adds one per rank; a refresh's replaces the tile's), each
    GWRITE's ACT and PRE of its row, and every COMP as a command."""
    out = {"P_HEADER": n_tiles, "GWRITE": gwrites}
    if pt.split:
        out.update(ACT=gwrites, PRE=gwrites, PREA=n_tiles * mem.organization.ranks)
    else:
        out["PIM_PRECHARGE"] = n_tiles
    out["G_ACT"] = n_tiles * pt.gact_count
    if not pt.split:
        out["PIM_GEMV"] = n_tiles
    out.update(COMP=comps, READRES=readres, REF=refs)
    return out


class _MemToken:
    """Hashes by identity (a pydantic config hashes all its fields on every call)."""

    __slots__ = ("mem",)

    def __init__(self, mem):
        self.mem = mem

    def __getattr__(self, name):
        return getattr(self.mem, name)


_TOKENS: dict[int, _MemToken] = {}


def _mem_token(mem) -> _MemToken:
    tok = _TOKENS.get(id(mem))
    if tok is None or tok.mem is not mem:
        tok = _TOKENS[id(mem)] = _MemToken(mem)
    return tok


def _resolve_dual(mem, dual_row_buffer: bool | None) -> bool:
    return mem.pim.dual_row_buffer if dual_row_buffer is None else bool(dual_row_buffer)


def mha_channel_cycles(
    seq_lens, n_heads: int, d_head: int, mem, *, dual_row_buffer: bool | None = None
) -> PimMhaCost:
    """Fast path: MHA (K^T q and s.V) of all ``seq_lens`` requests on one channel, one layer.

    Requests run back to back in the given order with the paper's KV tile layout
    (:func:`mha_program`). ``dual_row_buffer`` (default: ``mem.pim.dual_row_buffer``) picks
    the tile sequence: dual row buffers (NeuPIMs) or blocked mode (Newton: one row buffer,
    so every GWRITE opens and closes its vector's row, +31 cycles for NeuPIMs' timing, and
    every COMP is a command; docs/hbm_pim.md "Blocked (Newton) mode"), and the background
    energy. Concurrent normal traffic is not modelled here (:mod:`neupims.devices.hbm_channel`).
    """
    _check_pim(mem)
    if n_heads <= 0 or d_head <= 0:
        raise ConfigError(
            f"mha_channel_cycles: n_heads and d_head must be positive, got {n_heads}, {d_head}"
        )
    if isinstance(seq_lens, tuple) and all(type(x) is int for x in seq_lens):
        key = seq_lens
    else:
        key = tuple(int(x) for x in np.asarray(seq_lens, dtype=np.int64).ravel())
    if any(x < 0 for x in key):
        raise ConfigError("mha_channel_cycles: sequence lengths must be >= 0")
    return _mha_cached(key, n_heads, d_head, _mem_token(mem), _resolve_dual(mem, dual_row_buffer))


@lru_cache(maxsize=8192)
def _mha_cached(key: tuple[int, ...], n_heads: int, d_head: int, tok, dual: bool) -> PimMhaCost:
    mem = tok.mem
    r = mha_channels_cycles(
        key,
        np.zeros(len(key), dtype=np.int64),
        n_heads,
        d_head,
        mem,
        dual_row_buffer=dual,
        channels=1,
    )
    cmds = {c: int(v[0]) for c, v in r.commands.items() if v[0]}
    return PimMhaCost(cycles=float(r.cycles[0]), commands=cmds, energy_j=float(r.energy_j[0]))


@dataclass(frozen=True)
class PimMhaChannels:
    """MHA of one layer on every channel: arrays indexed by channel.

    cycles: memory cycles per channel (0 where no request); commands: command name -> counts
    per channel; energy_j: joules per channel (commands plus that channel's background over
    its own cycles).
    """

    cycles: np.ndarray
    commands: dict[str, np.ndarray]
    energy_j: np.ndarray


def _tile_parts(k, n, pt: _PimTiming, tccd_l: int):
    """(work, plain gap, GWRITE gap) of tiles with k COMPs and n READRES (arrays or ints).

    work: first PIM_GEMV / COMP to last READRES, tCCD_L max(k, 6) + rr_gap (n - 1); blocked
    mode (``pt.split``), each result's COMPs c_i (``hbm_timing.comp_split``) take tCCD_L
    max(c_i, 6), a result without COMPs nothing, plus rr_gap between results. The gaps run
    from the tile's last READRES to the next tile's first PIM_GEMV / COMP (``_PimTiming``)."""
    if pt.split:
        q, r = np.divmod(k, n)
        work = (
            r * tccd_l * np.maximum(q + 1, MIN_COMP_SLOTS)
            + np.where(q > 0, (n - r) * tccd_l * np.maximum(q, MIN_COMP_SLOTS), 0)
            + pt.rr_gap * (n - 1)
        )
    else:
        work = tccd_l * np.maximum(k, MIN_COMP_SLOTS) + pt.rr_gap * (n - 1)
    back = pt.back_bound - work
    gap_plain = np.maximum(pt.pre_plain, back) + pt.open_to_gemv
    gap_gw = np.maximum(
        np.maximum(pt.pre_gwrite, pt.back_gw - work) + pt.gw_open_to_gemv, pt.gw_to_gemv
    )
    return work, gap_plain, gap_gw


def mha_channels_cycles(
    seq_lens,
    ch_idx,
    n_heads: int,
    d_head: int,
    mem,
    *,
    dual_row_buffer: bool | None = None,
    channels: int | None = None,
) -> PimMhaChannels:
    """Fast path for every channel at once: request i (``seq_lens[i]``) sits on channel
    ``ch_idx[i]``; each channel runs its requests in the given order (as
    :func:`mha_channel_cycles` does for one channel, with the same result), vectorised over
    requests with NumPy. ``channels`` defaults to ``mem.organization.channels``.

    Under the default all-bank refresh this is the closed form; with
    ``controller.refresh.policy: rank_staggered`` or ``pim_deadline_guard`` the channels'
    tile streams are walked tile by tile (:mod:`neupims.devices.pim_scan`, compiled)."""
    return _channels_memo(seq_lens, ch_idx, n_heads, d_head, mem, dual_row_buffer, channels, 0)


@dataclass(frozen=True)
class PimMhaPhases:
    """MHA of one layer costed as two phases per channel, each from an idle channel:
    ``logit`` = every request's K^T q tiles, then ``attend`` = every request's s.V tiles
    (:class:`PimMhaChannels` each). The released NeuPIMs simulator runs LogitSoftmax for all
    requests, waits for every channel, then Attend (a barrier, docs/hbm_pim.md "Two
    phases"): a caller takes max over channels of each phase."""

    logit: PimMhaChannels
    attend: PimMhaChannels


def mha_channels_phases(
    seq_lens,
    ch_idx,
    n_heads: int,
    d_head: int,
    mem,
    *,
    dual_row_buffer: bool | None = None,
    channels: int | None = None,
) -> PimMhaPhases:
    """As :func:`mha_channels_cycles`, but each channel runs all its requests' K^T q tiles
    (request order kept), then, as a separate program from an idle channel with the refresh
    grid restarted, all their s.V tiles; returns per-channel cycles, commands and energy of
    each phase. Memoised per batch like :func:`mha_channels_cycles`."""
    args = (seq_lens, ch_idx, n_heads, d_head, mem, dual_row_buffer, channels)
    return PimMhaPhases(logit=_channels_memo(*args, 1), attend=_channels_memo(*args, 2))


def _channels_memo(seq_lens, ch_idx, n_heads, d_head, mem, dual_row_buffer, channels, phase):
    _check_pim(mem)
    if n_heads <= 0 or d_head <= 0:
        raise ConfigError(
            f"mha_channel_cycles: n_heads and d_head must be positive, got {n_heads}, {d_head}"
        )
    nch = mem.organization.channels if channels is None else channels
    s = np.asarray(seq_lens, dtype=np.int64).ravel()
    ch = np.asarray(ch_idx, dtype=np.int64).ravel()
    dual = _resolve_dual(mem, dual_row_buffer)
    # every layer of a decode step sees the same batch: memoise on the batch's bytes
    key = (s.tobytes(), ch.tobytes(), n_heads, d_head, _mem_token(mem), dual, nch, phase)
    hit = _CHANNELS_CACHE.get(key)
    if hit is None:
        if len(_CHANNELS_CACHE) >= 256:
            _CHANNELS_CACHE.clear()
        hit = _CHANNELS_CACHE[key] = _mha_channels(s, ch, n_heads, d_head, mem, dual, nch, phase)
    return hit


_CHANNELS_CACHE: dict[tuple, PimMhaChannels] = {}


def _mha_channels(s, ch, n_heads, d_head, mem, dual, nch, phase=0) -> PimMhaChannels:
    """Per-channel MHA cost. ``phase`` 0: K^T q then s.V per request; 1: only the K^T q
    tiles; 2: only the s.V tiles (each run from an idle channel)."""
    if s.shape != ch.shape:
        raise ConfigError(f"seq_lens ({s.size}) and ch_idx ({ch.size}) differ in length")
    if s.size and (s.min() < 0 or ch.min() < 0 or ch.max() >= nch):
        raise ConfigError(f"sequence lengths must be >= 0 and channels in 0..{nch - 1}")
    keep = s > 0
    s, ch = s[keep], ch[keep]
    pt = _pim_timing(_mem_token(mem), dual)
    b, p = mem.banks_per_channel, _row_elems(mem)
    mult = mem.pim.multipliers_per_bank
    h = n_heads
    e = n_heads * d_head
    logit = phase != 2
    # K^T q: per E chunk one vector group of ceil(s/B) tiles
    starts = np.arange(0, e, p)
    lens = np.minimum(p, e - starts)
    k_c = -(-lens // mult)
    n_c = (starts + lens - 1) // d_head - starts // d_head + 1
    n_chunks = starts.size
    t1 = -(-s // b)
    # s.V: per head and 512-token row one vector group of ceil(d/B) tiles
    t2 = -(-d_head // b)
    k_full = p // mult
    full, rest = np.divmod(s, p)
    has_rest = (rest > 0).astype(np.int64)
    k_r = -(-rest // mult)
    h_groups = (full + has_rest) * h

    def per_ch(x):
        return np.bincount(ch, weights=x, minlength=nch).astype(np.int64)

    def pick(lg, at):
        """Per request: the K^T q part, the s.V part, or both (by ``phase``)."""
        if phase == 0:
            return lg + at
        return np.broadcast_to(lg if logit else at, s.shape)

    n_tiles = per_ch(pick(n_chunks * t1, h_groups * t2))
    if _general_refresh(mem):
        cyc, n_ins = _walk_mha(s, ch, nch, phase, h, d_head, k_c, n_c, mem, dual)
        cycles = cyc.astype(np.float64)
        n_ref = n_ins * _refresh_group(mem)
    else:
        cycles, n_ref = _closed_mha(
            s, ch, nch, phase, h, k_c, n_c, t1, t2, full, has_rest, k_r, n_tiles, pt, mem
        )
        n_ref = n_ref * mem.organization.ranks
    cmds = _pim_commands(
        n_tiles,
        per_ch(pick(n_chunks, h_groups)),
        per_ch(pick(t1 * k_c.sum(), (full * k_full + has_rest * k_r) * h * t2)),
        per_ch(pick(t1 * n_c.sum(), h_groups * t2)),
        n_ref,
        pt,
        mem,
    )
    tck = mem.timing.tck_ns * 1e-9
    energy = dram_energy_j(cmds, mem, cycles * tck, dual_row_buffer=dual, channels=1)
    return PimMhaChannels(cycles=cycles, commands=cmds, energy_j=energy)


def _walk_mha(s, ch, nch, phase, h, d_head, k_c, n_c, mem, dual=True):
    """(cycles, refresh insertions) per channel under the general refresh path."""

    tok = _mem_token(mem)
    cs, restart = _refresh_timing(tok, dual)
    order = np.argsort(ch, kind="stable")
    b, p = mem.banks_per_channel, _row_elems(mem)
    tk, tn, tt, bounds = S.mha_groups(
        s[order],
        ch[order],
        nch,
        phase,
        h,
        b,
        p,
        mem.pim.multipliers_per_bank,
        -(-d_head // b),
        k_c.astype(np.int64),
        n_c.astype(np.int64),
    )
    return S.walk_groups(tk, tn, tt, bounds, cs, restart)


def _closed_mha(s, ch, nch, phase, h, k_c, n_c, t1, t2, full, has_rest, k_r, n_tiles, pt, mem):
    """Closed form under all-bank refresh: (cycles, all-bank refreshes) per channel."""
    tccd_l = mem.timing.tCCD_L
    p, mult = _row_elems(mem), mem.pim.multipliers_per_bank
    logit, attend = phase != 2, phase != 1
    w_c, gp_c, gg_c = _tile_parts(k_c, n_c, pt, tccd_l)
    w_f, gp_f, gg_f = _tile_parts(p // mult, 1, pt, tccd_l)
    w_r, gp_r, gg_r = _tile_parts(k_r, 1, pt, tccd_l)
    contrib = 0
    if logit:
        contrib = t1 * w_c.sum() + (t1 - 1) * gp_c.sum() + gg_c.sum()
    if attend:
        contrib = (
            contrib
            + full * h * (t2 * w_f + (t2 - 1) * gp_f + gg_f)
            + has_rest * h * (t2 * w_r + (t2 - 1) * gp_r + gg_r)
        )

    def per_ch(x):
        return np.bincount(ch, weights=x, minlength=nch).astype(np.int64)

    idx = np.arange(s.size)
    last = np.full(nch, -1, dtype=np.int64)
    np.maximum.at(last, ch, idx)
    used = last >= 0
    li = last[used]
    if attend:  # the final group of a channel: its last request's last s.V group
        gg_last = np.where(has_rest[li] > 0, gg_r[li], gg_f)
        gp_last = np.where(has_rest[li] > 0, gp_r[li], gp_f)
        w_last = np.where(has_rest[li] > 0, w_r[li], w_f)
    else:  # ... or its last K^T q group
        gg_last, gp_last, w_last = gg_c[-1], gp_c[-1], w_c[-1]
    base = np.zeros(nch, dtype=np.int64)
    base[used] = pt.start_to_gemv + pt.tail + per_ch(contrib)[used] - gg_last
    boundaries = np.maximum(n_tiles - 1, 0)
    last_tile = np.zeros(nch, dtype=np.int64)
    last_tile[used] = gp_last - pt.pre_plain - 1 + w_last + pt.tail
    # refresh at tile boundaries (see _classes_cycles)
    n_ref = np.zeros(nch, dtype=np.int64)
    while True:
        horizon = base + n_ref * pt.trfc - last_tile
        nxt = np.minimum(np.maximum(horizon // pt.trefi, 0), boundaries)
        grow = nxt > n_ref
        if not grow.any():
            break
        n_ref = np.where(grow, nxt, n_ref)
    return (base + n_ref * pt.trfc).astype(np.float64), n_ref


def pim_gemv_cycles(rows: int, cols: int, mem, *, dual_row_buffer: bool | None = None) -> float:
    """Fast path: cycles of y = W x, W (rows x cols) FP16, on one idle PIM channel, in dual or
    blocked mode (``dual_row_buffer``, default ``mem.pim.dual_row_buffer``)."""
    _check_pim(mem)
    dual = _resolve_dual(mem, dual_row_buffer)
    return _program_cycles(gemv_program(rows, cols, mem), mem, dual)[0]
