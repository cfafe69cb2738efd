"""Tile-by-tile timeline of PIM tile programs under the general refresh path (rank-staggered
refresh and/or the PIM refresh-deadline guard): the fast path of :mod:`neupims.devices.pim`
for those modes, compiled with numba when it is installed (plain Python otherwise, the same
code).

Why a timeline and not an expected loss per refresh interval: a refresh restarts the tile
stream at a fixed offset from its insertion, and tiles then follow at a fixed period, so the
tile at which the guard stops the PIM queue before the next insertion is *locked* to the
refresh grid instead of being uniformly spread over a tile period. For attend tiles (k = 32,
one result) the PIM queue stops 183/184 cycles before the insertion, for logit tiles (4
results) 330/331 cycles before, against the uniform assumption's 233 and 237 (docs/hbm_pim.md,
"Refresh policies"): an expected-value formula is off by +3 % (attend) and -6 % (logit) of
PIM time on long uniform programs; walking the tiles costs about 0.2 ms for 512 requests
compiled, and equals the command level.

Units: memory cycles. Every time below follows the command-level controller
(:class:`neupims.devices.hbm_channel.Controller`) on a channel with PIM work alone; the
constants come from :func:`neupims.devices.pim._pim_timing` and ``_refresh_timing``:

* a tile with k COMPs and n results takes ``work`` = tCCD_L max(k, 6) + rr_gap (n - 1) from
  its PIM_GEMV to its last READRES (T); the next tile's PIM_GEMV follows T by the plain or
  GWRITE gap of the closed form (``_tile_parts``); the first tile's by ``start``;
* refresh: insertion j is due at D = (j + 1) x interval. The next tile's P_HEADER would issue
  at h = T + 1. The refresh comes first when h >= D or, with the guard, when D - h <= the
  guard's estimate of the tile (no tile then starts until the refresh's REF); its first
  command (PIM_PRECHARGE when PIM rows are open, else REF) issues at
  X = max(D, T + max(tRTP_L, tRAS - tRCDRD - work)), and the tile restarts: PIM_GEMV at
  X + ``restart[kind, gwrite, open, 0]``, with the refreshed rank's G_ACTs held tRFC after its
  REF (kind: the refreshed rank, or 0 for all ranks at once).

Blocked (Newton) mode (``C_SPLIT``, docs/hbm_pim.md "Blocked (Newton) mode"): a tile's work is
per result tCCD_L max(c_i, 6) (:func:`tile_work`); a refresh's first command is its rank's
PREA; rank 0's PREA and the vector row's ACT wait tRAS / tRC after rank 0's last G_ACT, so
the walk keeps that G_ACT's lag behind the previous tile's first COMP (:func:`_next_lag0`,
``restart[..., 1]`` after a refresh): it is tRCDRD + 1 in the steady state but grows after
the other rank's refresh or a short tile, and then moves the next GWRITE or refresh by a
cycle or more.
"""

from __future__ import annotations

import numpy as np

try:  # numba is a dependency; without it the same code runs as plain Python
    from numba import njit as _njit

    def _jit(f):
        return _njit(cache=True)(f)

except ImportError:  # pragma: no cover - numba is installed with the package

    def _jit(f):
        return f


# slots of the constants array ``cs``
(
    C_TCCD_L,
    C_MIN_SLOTS,
    C_RR_GAP,
    C_BACK,
    C_PRE_PLAIN,
    C_PRE_GW,
    C_OPEN_TO_GEMV,
    C_GW_TO_GEMV,
    C_START_GW,
    C_START_PLAIN,
    C_TAIL,
    C_GUARD,
    C_INTERVAL,
    C_GROUP,
    C_RANKS,
    C_PRE_REF,
    C_TRAS_TRCD,
    C_NBANKS,
    C_G_PC,
    C_G_FIXED,
    C_G_COMP,
    C_G_RES,
    C_G_GW,
    C_BACK_GW,
    C_GW_OPEN,
    C_SPLIT,
    C_TRAS,
    C_TRP,
    C_TFAW,
    C_TRCDRD,
    C_LAG0,
) = range(31)
N_CONST = 31


@_jit
def tile_work(k, n, cs):
    """Cycles from a tile's first PIM_GEMV / COMP to its last READRES: tCCD_L max(k, 6) +
    rr_gap (n - 1); blocked mode (``C_SPLIT``), per result tCCD_L max(c_i, 6) for its c_i
    COMPs (:func:`neupims.devices.hbm_timing.comp_split`; a result with none adds only its
    READRES) and rr_gap between results."""
    tccd_l = cs[C_TCCD_L]
    min_slots = cs[C_MIN_SLOTS]
    rr = cs[C_RR_GAP] * (n - 1)
    if not cs[C_SPLIT]:
        return tccd_l * (k if k > min_slots else min_slots) + rr
    q = k // n
    r = k - q * n
    w = r * tccd_l * (q + 1 if q + 1 > min_slots else min_slots)
    if q > 0:
        w += (n - r) * tccd_l * (q if q > min_slots else min_slots)
    return w + rr


@_jit
def _next_lag0(lag0, w, cs):
    """Blocked mode, a plain tile boundary (PREA of rank 0, then of rank 1, then the G_ACT
    chains, rank 0 leading): rank 0's lag behind the next first COMP, from its lag ``lag0``
    behind this tile's first COMP and this tile's work ``w``. Times from the last READRES:
    rank r's PREA no sooner than tRAS after its last G_ACT (rank 1's is tRCDRD before the
    COMP), the first G_ACT of each rank tRP after its PREA and tFAW after its last one;
    rank 1's chain then sets the COMP and rank 0's lags it by its offset + tRCDRD."""
    pre = cs[C_PRE_PLAIN]
    tras, trp, tfaw, trcd = cs[C_TRAS], cs[C_TRP], cs[C_TFAW], cs[C_TRCDRD]
    p0 = max(pre, tras - lag0 - w)
    p1 = max(p0 + 1, pre, tras - trcd - w)
    g0 = max(p0 + trp, p1 + 1, tfaw - lag0 - w)
    g1 = max(p1 + trp, g0 + 1, tfaw - trcd - w)
    return trcd + g1 - g0


@_jit
def _walk(tk, tn, tt, lo, hi, cs, restart, out_t, out_ref):
    """Walk vector groups ``lo .. hi - 1`` (group i: ``tt[i]`` tiles of ``tk[i]`` COMPs and
    ``tn[i]`` results, a GWRITE before its first tile) on an idle channel whose refresh grid
    starts at cycle 0. Returns (cycles to the end of the last READRES burst, refresh
    insertions taken) through ``out_t[0]``, ``out_ref[0]``."""
    min_slots = cs[C_MIN_SLOTS]
    back_bound = cs[C_BACK]
    guard = cs[C_GUARD]
    interval = cs[C_INTERVAL]
    ranks = cs[C_RANKS]
    group = cs[C_GROUP]
    blocked = cs[C_SPLIT] != 0
    first = True
    is_open = False  # PIM rows open (after a tile; closed by a refresh)
    t_rr = 0  # last READRES of the previous tile
    work_prev = 0
    # blocked mode: the previous tile's first COMP - rank 0's last G_ACT (tRCDRD + 1 when the
    # ranks' chains interleave one cycle apart; more after the other rank's refresh or a
    # short tile): rank 0's PREA and the vector's ACT wait tRAS / tRC for that G_ACT
    lag0 = cs[C_LAG0]
    due = interval
    n_ref = 0
    for i in range(lo, hi):
        k = tk[i]
        n = tn[i]
        slots = k if k > min_slots else min_slots
        work = tile_work(k, n, cs)
        for j in range(tt[i]):
            gw = j == 0
            h = 0 if first else t_rr + 1  # the P_HEADER's earliest cycle
            need = h >= due
            if not need and guard:
                est = cs[C_G_FIXED] + cs[C_G_COMP] * slots + cs[C_G_RES] * (n - 1)
                if is_open:
                    est += cs[C_NBANKS] * cs[C_G_PC]
                if gw:
                    est += cs[C_G_GW]
                need = due - h <= est
            if need:  # the refresh first, then this tile restarts
                kind = (n_ref * group) % ranks if group < ranks else 0
                x = due
                if is_open:  # tRAS after the refreshed rank's last G_ACT
                    back = cs[C_TRAS_TRCD] - work_prev  # dual: the last G_ACT, PIM_PRECHARGE
                    if blocked and kind == 0:  # its first PREA is rank 0's
                        back = cs[C_TRAS] - lag0 - work_prev
                    pre = cs[C_PRE_REF] if cs[C_PRE_REF] > back else back
                    if t_rr + pre > x:
                        x = t_rr + pre
                elif not first and t_rr + 1 > x:
                    x = t_rr + 1
                r_gw = 1 if gw else 0
                r_open = 1 if is_open else 0
                g = x + restart[kind, r_gw, r_open, 0]
                lag0 = restart[kind, r_gw, r_open, 1]
                n_ref += 1
                due += interval
            elif first:
                g = cs[C_START_GW] if gw else cs[C_START_PLAIN]
                lag0 = cs[C_LAG0]
            else:
                # the gap after the previous tile (its work sets the tRAS / tRC / tFAW bound)
                back = back_bound - work_prev
                if gw:
                    back = cs[C_BACK_GW] - work_prev
                    if blocked:  # measured from rank 0's last G_ACT
                        back += cs[C_LAG0] - lag0
                    a = cs[C_PRE_GW] if cs[C_PRE_GW] > back else back
                    a += cs[C_GW_OPEN]
                    if cs[C_GW_TO_GEMV] > a:
                        a = cs[C_GW_TO_GEMV]
                    lag0 = cs[C_LAG0]
                else:
                    a = cs[C_PRE_PLAIN] if cs[C_PRE_PLAIN] > back else back
                    a += cs[C_OPEN_TO_GEMV]
                    if blocked:
                        lag0 = _next_lag0(lag0, work_prev, cs)
                g = t_rr + a
            t_rr = g + work
            work_prev = work
            is_open = True
            first = False
    out_t[0] = 0 if first else t_rr + cs[C_TAIL]
    out_ref[0] = n_ref


@_jit
def walk_groups(tk, tn, tt, bounds, cs, restart):
    """Per channel c, the groups ``bounds[c] .. bounds[c + 1] - 1``: (cycles, insertions)."""
    nch = bounds.shape[0] - 1
    cyc = np.zeros(nch, np.int64)
    nref = np.zeros(nch, np.int64)
    one_t = np.zeros(1, np.int64)
    one_r = np.zeros(1, np.int64)
    for c in range(nch):
        _walk(tk, tn, tt, bounds[c], bounds[c + 1], cs, restart, one_t, one_r)
        cyc[c] = one_t[0]
        nref[c] = one_r[0]
    return cyc, nref


@_jit
def mha_groups(s, ch, nch, phase, heads, banks, p, mult, t2, k_c, n_c):
    """Vector groups of the MHA of requests ``s`` (in channel order, ``ch`` ascending) as
    flat arrays (k, n, tiles) and per-channel bounds: per request its K^T q groups (one per
    E chunk with ``k_c``, ``n_c``; ceil(s / banks) tiles) then per head its s.V groups (one
    per row of ``p`` tokens, ``t2`` tiles), as :func:`neupims.devices.pim.mha_program`
    orders them. ``phase`` 0: both per request; 1: K^T q only; 2: s.V only."""
    nreq = s.shape[0]
    total = 0
    for r in range(nreq):
        if phase != 2:
            total += k_c.shape[0]
        if phase != 1:
            total += heads * (s[r] // p + (1 if s[r] % p else 0))
    tk = np.empty(total, np.int64)
    tn = np.empty(total, np.int64)
    tt = np.empty(total, np.int64)
    bounds = np.zeros(nch + 1, np.int64)
    i = 0
    for r in range(nreq):
        if phase != 2:
            t1 = (s[r] + banks - 1) // banks
            for j in range(k_c.shape[0]):
                tk[i] = k_c[j]
                tn[i] = n_c[j]
                tt[i] = t1
                i += 1
        if phase != 1:
            full = s[r] // p
            rest = s[r] % p
            for _h in range(heads):
                for _f in range(full):
                    tk[i] = p // mult
                    tn[i] = 1
                    tt[i] = t2
                    i += 1
                if rest:
                    tk[i] = (rest + mult - 1) // mult
                    tn[i] = 1
                    tt[i] = t2
                    i += 1
        bounds[ch[r] + 1] = i
    for c in range(1, nch + 1):  # a channel without requests ends where the one before did
        if bounds[c] < bounds[c - 1]:
            bounds[c] = bounds[c - 1]
    return tk, tn, tt, bounds
