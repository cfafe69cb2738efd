"""Compiled (numba) kernel of the HBM controller: the same algorithm as the pure-Python
:meth:`neupims.devices.hbm_channel.Controller._run`, restated on NumPy arrays.

The controller hands every run here when numba is importable (and ``NEUPIMS_NO_JIT`` is not
set): normal requests, PIM tiles (GEMV, MHA programs) and mixes of both, in dual and blocked
(single row buffer, Newton's commands: PREA, the vector row's ACT/GWRITE/PRE, one COMP per
command; ``Controller._expand_blocked``) mode, with refresh. The kernel follows the Python
controller step by step: FR-FCFS over a lazy heap of lower-bound keys, the issuing bank as
a fast lane, the PIM queue served first with a lower bound of its head, a tile's commands
expanded when its P_HEADER issues (as ``Controller._expand``), normal ACTs held while the
tile has G_ACTs for
the rank or the row is the PIM buffer's, and all-bank refresh every tREFI (after the tile in
progress) as PREA per rank, PIM_PRECHARGE, REF per rank; or the general refresh path
(rank-staggered refresh, the PIM refresh-deadline guard: ``Controller._run``'s ``gen``
branch) and per-bank queue capacities. State is NumPy int64 arrays: the
timing state (earliest cycle per command and bank / bank group / rank / channel), the tFAW
window as a 4-entry ring per rank, per-bank queues as fixed rows of request indices, the PIM
queue as rows (command, rank, group, bank, row, column), and the heap as rows (key, priority,
request, version, bank, command) compared lexicographically like Python tuples. It returns
the command log as an int64 array (cycle, command id, rank, bank group, bank, row, column)
that the caller turns into the usual log tuples; the golden schedules
(tests/test_hbm_golden.py) and seeded request + PIM mixes must come out identical from both
paths (tests/test_hbm_jit.py).

Units: cycles of ``mem.timing.tck_ns``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

CLOSED = -1
# scope codes of a rule row (scope, later, delay)
S_BANK, S_BG, S_RANK, S_CHANNEL = 0, 1, 2, 3
SCOPE_CODE = {"bank": S_BANK, "bg": S_BG, "rank": S_RANK, "channel": S_CHANNEL}

# result slots of the kernel's scalar output
(
    O_NLOG,
    O_LAST,
    O_BUS,
    O_OPEN_COUNT,
    O_OPEN_SINCE,
    O_ACTIVE,
    O_HITS,
    O_MISSES,
    O_CONFLICTS,
    O_READS,
    O_WRITES,
    O_LAT,
    O_DONE,
    O_END,
    O_REF_DUE,
    O_STALLED,
    O_COMPS,
    O_REF_RANK,
) = range(18)
N_OUT = 18


@njit(cache=True)
def _less(h, i, j):
    """Row i of heap h before row j, as Python compares the tuples."""
    for k in range(6):
        if h[i, k] != h[j, k]:
            return h[i, k] < h[j, k]
    return False


@njit(cache=True)
def _sift_down(h, size, pos):
    while True:
        c = 2 * pos + 1
        if c >= size:
            return
        if c + 1 < size and _less(h, c + 1, c):
            c += 1
        if _less(h, c, pos):
            for k in range(6):
                tmp = h[pos, k]
                h[pos, k] = h[c, k]
                h[c, k] = tmp
            pos = c
        else:
            return


@njit(cache=True)
def _push(h, size, a, b, c, d, e, f):
    """Push a row; returns the (possibly grown) heap."""
    if size == h.shape[0]:
        g = np.empty((2 * size, 6), np.int64)
        for i in range(size):
            for k in range(6):
                g[i, k] = h[i, k]
        h = g
    h[size, 0] = a
    h[size, 1] = b
    h[size, 2] = c
    h[size, 3] = d
    h[size, 4] = e
    h[size, 5] = f
    pos = size
    while pos > 0:
        par = (pos - 1) // 2
        if _less(h, pos, par):
            for k in range(6):
                tmp = h[pos, k]
                h[pos, k] = h[par, k]
                h[par, k] = tmp
            pos = par
        else:
            break
    return h


@njit(cache=True)
def _pop(h, size):
    """Remove the top row; returns the new size."""
    size -= 1
    if size > 0:
        for k in range(6):
            h[0, k] = h[size, k]
        _sift_down(h, size, 0)
    return size


@njit(cache=True)
def _put_log(log, nlog, t, c, r, g, b, row, col):
    """Write log row ``nlog`` (growing the log when full); returns the log. Element by
    element: numba compiles tuple stores and slice copies several seconds slower."""
    if nlog == log.shape[0]:
        grown = np.empty((2 * nlog, 7), np.int64)
        for i in range(nlog):
            for k in range(7):
                grown[i, k] = log[i, k]
        log = grown
    log[nlog, 0] = t
    log[nlog, 1] = c
    log[nlog, 2] = r
    log[nlog, 3] = g
    log[nlog, 4] = b
    log[nlog, 5] = row
    log[nlog, 6] = col
    return log


# The hot helpers (_earliest, _ring_push, _decide, _rekey) are inlined at numba level: as
# plain calls they made request-only runs 7-25 % slower than the kernel that served those
# runs alone (benchmarks/bench_memsim.py --baseline); inlined, the two are level. The price
# is compile time: about 28 s on the first call with an empty cache (10 s before).
@njit(cache=True, inline="always")
def _earliest(c, b, lo, bus, nb, ng, nr, nc, has_w, w0, B, GB, act, tfaw, acts, acts_n, acts_h):
    """Earliest cycle of bank command ``c`` to bank ``b`` (``HbmChannel.fast_earliest``)."""
    t = nc[c]
    if lo > t:
        t = lo
    if has_w[c]:
        x = bus - w0[c]
        if x > t:
            t = x
    x = nb[c, b]
    if x > t:
        t = x
    x = ng[c, b // B]
    if x > t:
        t = x
    r = b // GB
    x = nr[c, r]
    if x > t:
        t = x
    if c == act and acts_n[r] == 4:
        x = acts[r, acts_h[r]] + tfaw
        if x > t:
            t = x
    return t


@njit(cache=True)
def _wide_earliest(c, lo, bus, nc, has_w, w0):
    """Earliest cycle of a channel-wide PIM command (``HbmChannel.wide_earliest``)."""
    t = nc[c]
    if lo > t:
        t = lo
    if has_w[c]:
        x = bus - w0[c]
        if x > t:
            t = x
    return t


@njit(cache=True)
def _gact_earliest(g, r, lo, nb, ng, nr, nc, B, gact, tfaw, acts, acts_n, acts_h):
    """Earliest cycle of a G_ACT of bank group ``g`` (global index) of rank ``r``
    (``HbmChannel.gact_earliest``): the B banks of the group, and under tFAW it counts as B
    activations, so the (B - 1)-th newest activation must be tFAW old."""
    t = nc[gact]
    if lo > t:
        t = lo
    x = ng[gact, g]
    if x > t:
        t = x
    x = nr[gact, r]
    if x > t:
        t = x
    for b in range(g * B, (g + 1) * B):
        x = nb[gact, b]
        if x > t:
            t = x
    k = acts_n[r] + B - 5
    if k >= 0:
        x = acts[r, (acts_h[r] + k) % 4] + tfaw
        if x > t:
            t = x
    return t


@njit(cache=True)
def _pim_head_earliest(
    pc, ph, pt, lo, bus, nb, ng, nr, nc, has_w, w0, G, B, tfaw, acts, acts_n, acts_h, ids, dual
):
    """Earliest cycle of the PIM queue's head: the next tile's P_HEADER when the queue is
    empty, else a channel-wide command, a G_ACT or a PRE freeing the tile's row; in blocked
    mode also a PREA, the vector row's ACT and PRE, and its GWRITE (which names its bank)."""
    if ph == pt:
        return _wide_earliest(ids[6], lo, bus, nc, has_w, w0)
    c = pc[ph, 0]
    if c == ids[8]:  # G_ACT
        r = pc[ph, 1]
        return _gact_earliest(
            r * G + pc[ph, 2], r, lo, nb, ng, nr, nc, B, c, tfaw, acts, acts_n, acts_h
        )
    if c == ids[3] or c == ids[0]:  # PRE, ACT
        b = (pc[ph, 1] * G + pc[ph, 2]) * B + pc[ph, 3]
        return _earliest(
            c, b, lo, bus, nb, ng, nr, nc, has_w, w0, B, G * B, ids[0], tfaw, acts, acts_n, acts_h
        )
    if c == ids[4]:  # PREA
        return _rank_earliest(c, pc[ph, 1], lo, nb, nr, nc, ids[3], G * B, c)
    t = _wide_earliest(c, lo, bus, nc, has_w, w0)
    if c == ids[7] and not dual:  # blocked GWRITE: its row's ACT -> GWRITE gate
        x = nb[c, (pc[ph, 1] * G + pc[ph, 2]) * B + pc[ph, 3]]
        if x > t:
            t = x
    return t


@njit(cache=True)
def _update(c, t, b, rules, nrules, nb, ng, nr, nc, B, GB):
    """Apply bank command ``c`` at ``t`` to bank ``b``'s gates (``HbmChannel.fast_update``)."""
    g = b // B
    r = b // GB
    for k in range(nrules[c]):
        scope = rules[c, k, 0]
        later = rules[c, k, 1]
        v = t + rules[c, k, 2]
        if scope == S_BANK:
            if v > nb[later, b]:
                nb[later, b] = v
        elif scope == S_BG:
            if v > ng[later, g]:
                ng[later, g] = v
        elif scope == S_RANK:
            if v > nr[later, r]:
                nr[later, r] = v
        else:
            if v > nc[later]:
                nc[later] = v


@njit(cache=True)
def _wide_update(c, t, occ, wrules, nwrules, nc):
    """A channel-wide command's rules: every scope but ``bank`` is the whole channel, the
    occupancy (PIM_GEMV, a result's first COMP) added where the rule says so
    (``HbmChannel.wide_update``); ``bank`` rules (a blocked-mode GWRITE's) are
    :func:`_bank_update`'s."""
    for k in range(nwrules[c]):
        if wrules[c, k, 0] == S_BANK:
            continue
        later = wrules[c, k, 1]
        v = t + wrules[c, k, 2]
        if wrules[c, k, 3]:
            v += occ
        if v > nc[later]:
            nc[later] = v


@njit(cache=True)
def _bank_update(c, t, b, wrules, nwrules, nb):
    """The ``bank`` rules of channel-wide command ``c`` applied to the bank it names, ``b``
    (a blocked-mode GWRITE: its row's PRE waits for the copy)."""
    for k in range(nwrules[c]):
        if wrules[c, k, 0] == S_BANK:
            later = wrules[c, k, 1]
            v = t + wrules[c, k, 2]
            if v > nb[later, b]:
                nb[later, b] = v


@njit(cache=True)
def _gact_update(c, t, g, r, wrules, nwrules, nb, ng, nr, nc, B):
    """A G_ACT's rules, "bank" meaning the B banks of its group (``HbmChannel.gact_update``)."""
    for k in range(nwrules[c]):
        scope = wrules[c, k, 0]
        later = wrules[c, k, 1]
        v = t + wrules[c, k, 2]
        if scope == S_BANK:
            for b in range(g * B, (g + 1) * B):
                if v > nb[later, b]:
                    nb[later, b] = v
        elif scope == S_BG:
            if v > ng[later, g]:
                ng[later, g] = v
        elif scope == S_RANK:
            if v > nr[later, r]:
                nr[later, r] = v
        else:
            if v > nc[later]:
                nc[later] = v


@njit(cache=True, inline="always")
def _ring_push(acts, acts_n, acts_h, r, t):
    """Append activation time ``t`` to rank ``r``'s tFAW window (a deque of 4)."""
    if acts_n[r] < 4:
        acts[r, (acts_h[r] + acts_n[r]) % 4] = t
        acts_n[r] += 1
    else:
        acts[r, acts_h[r]] = t
        acts_h[r] = (acts_h[r] + 1) % 4


@njit(cache=True)
def _n_open(rows):
    n = 0
    for x in rows:
        if x != CLOSED:
            n += 1
    return n


@njit(cache=True, inline="always")
def _decide(
    b,
    mem_row,
    pim_row,
    queues,
    qlen,
    r_row,
    r_write,
    in_tile,
    tile_row,
    gact_pending,
    held,
    GB,
    ids,
):
    """FR-FCFS choice for bank ``b`` (as ``Controller.decide``): the oldest row hit as RD/WR
    (priority 1), else PRE of the open row or ACT of the oldest request's row (priority 2);
    command -1 (none) when that ACT is held by PIM work: its row is in the PIM buffer or is
    the tile's, or the tile still has G_ACTs for the rank; also -1 for every command while
    the bank's rank waits for its refresh (``held``). Returns (command, request, priority)."""
    if held[b // GB]:
        return -1, queues[b, 0], 2
    orow = mem_row[b]
    if orow != CLOSED:
        for k in range(qlen[b]):
            i = queues[b, k]
            if r_row[i] == orow:
                return (ids[2] if r_write[i] else ids[1]), i, 1
        return ids[3], queues[b, 0], 2
    i = queues[b, 0]
    row = r_row[i]
    if pim_row[b] == row or (in_tile and row == tile_row) or gact_pending[b // GB]:
        return -1, i, 2
    return ids[0], i, 2


@njit(cache=True, inline="always")
def _rekey(
    b,
    lo,
    bus,
    heap,
    hsize,
    version,
    queues,
    qlen,
    mem_row,
    pim_row,
    r_row,
    r_write,
    in_tile,
    tile_row,
    gact_pending,
    held,
    nb,
    ng,
    nr,
    nc,
    has_w,
    w0,
    B,
    GB,
    tfaw,
    acts,
    acts_n,
    acts_h,
    ids,
):
    """Bank ``b``'s candidate changed (``Controller`` refresh_bank): its heap entries go stale
    and its new FR-FCFS choice, if any, is pushed. Returns the heap and its size."""
    version[b] += 1
    if qlen[b]:
        dc, di, dp = _decide(
            b,
            mem_row,
            pim_row,
            queues,
            qlen,
            r_row,
            r_write,
            in_tile,
            tile_row,
            gact_pending,
            held,
            GB,
            ids,
        )
        if dc >= 0:
            te = _earliest(
                dc, b, lo, bus, nb, ng, nr, nc, has_w, w0, B, GB, ids[0], tfaw, acts, acts_n, acts_h
            )
            heap = _push(heap, hsize, te, dp, di, version[b], b, dc)
            hsize += 1
    return heap, hsize


@njit(cache=True)
def _rank_earliest(cmd, r, lo, nb, nr, nc, pre, GB, prea):
    """Earliest cycle of PREA or REF to rank ``r``; PREA also obeys every bank's PRE gate
    (``HbmChannel.earliest``)."""
    at = nc[cmd]
    if lo > at:
        at = lo
    if nr[cmd, r] > at:
        at = nr[cmd, r]
    if cmd == prea:
        for x in range(r * GB, (r + 1) * GB):
            if nb[pre, x] > at:
                at = nb[pre, x]
    return at


@njit(cache=True)
def _rank_apply(cmd, r, at, wrules, nwrules, nb, ng, nr, nc, mem_row, pim_row, dual, G, GB, prea):
    """PREA or REF to rank ``r`` at ``at``: its rules ("bank" meaning every bank of the rank)
    and, for PREA, the rank's MEM rows closed (blocked mode: its G_ACT rows too, one
    buffer). Returns the number of rows it closed."""
    for k in range(nwrules[cmd]):
        scope = wrules[cmd, k, 0]
        later = wrules[cmd, k, 1]
        v = at + wrules[cmd, k, 2]
        if scope == S_BANK:
            for x in range(r * GB, (r + 1) * GB):
                if v > nb[later, x]:
                    nb[later, x] = v
        elif scope == S_CHANNEL:
            if v > nc[later]:
                nc[later] = v
        elif scope == S_BG:
            for x in range(r * G, (r + 1) * G):
                if v > ng[later, x]:
                    ng[later, x] = v
        else:
            if v > nr[later, r]:
                nr[later, r] = v
    closed = 0
    if cmd == prea:
        for x in range(r * GB, (r + 1) * GB):
            if mem_row[x] != CLOSED:
                mem_row[x] = CLOSED
                closed += 1
            if not dual and pim_row[x] != CLOSED:
                pim_row[x] = CLOSED
                closed += 1
    return closed


@njit(cache=True)
def _next_ref(mem_row, pim_row, ref_rank, group, R, GB, ref_done, prea, pim_pre, ref, dual):
    """The pending refresh's next command (``Controller`` next_ref): PREA of a group rank with
    a MEM row open (blocked mode: any row), PIM_PRECHARGE while a group rank's bank holds a
    PIM row, then REF per rank. Returns (command, rank)."""
    for i in range(group):
        r = (ref_rank + i) % R
        for x in range(r * GB, (r + 1) * GB):
            if mem_row[x] != CLOSED or (not dual and pim_row[x] != CLOSED):
                return prea, r
    for i in range(group):
        r = (ref_rank + i) % R
        for x in range(r * GB, (r + 1) * GB):
            if pim_row[x] != CLOSED:
                return pim_pre, 0
    return ref, (ref_rank + ref_done) % R


@njit(cache=True)
def _pc_put(pc, pt, c, r, g, b, row, col):
    pc[pt, 0] = c
    pc[pt, 1] = r
    pc[pt, 2] = g
    pc[pt, 3] = b
    pc[pt, 4] = row
    pc[pt, 5] = col
    return pt + 1


@njit(cache=True)
def run(
    r_arr,
    r_write,
    r_rank,
    r_bg,
    r_bank,
    r_row,
    r_col,
    t_row,
    t_k,
    t_nres,
    t_gwrite,
    nb,
    ng,
    nr,
    nc,
    mem_row,
    pim_row,
    acts,
    acts_n,
    acts_h,
    counts,
    rules,
    nrules,
    wrules,
    nwrules,
    has_w,
    w0,
    w1,
    params,
    ids,
    state,
):
    """Serve the requests and the PIM tiles to the end. ``params``: R, G, B, tFAW, CL,
    burst, CWL, queue size, tREFI, refresh (0/1), dual row buffer (0/1), tCCD_L, minimum COMP
    slots, general refresh path (0/1), refresh interval, ranks per refresh, PIM deadline
    guard (0/1), the guard estimate's parts (cycles per open PIM row, fixed part, per COMP
    slot, per further result, GWRITE), per-bank queue capacity (0: shared queue), the
    blocked-mode vector row's bank and row;
    ``ids``: the command ids in ``hbm_timing.COMMANDS`` order; ``state``: last issue,
    bus free, open count, open since, active cycles, next refresh due, next refresh's first
    rank. The timing arrays,
    ``mem_row``, ``pim_row``, the tFAW ring and ``counts`` are updated in place. Returns
    (log rows, scalar results indexed by the ``O_*`` constants)."""
    R = params[0]
    G = params[1]
    B = params[2]
    tfaw = params[3]
    cl = params[4]
    burst = params[5]
    cwl = params[6]
    qsize = params[7]
    trefi = params[8]
    refresh = params[9]
    dual = params[10]
    tccd_l = params[11]
    min_slots = params[12]
    gen = params[13] != 0 and refresh != 0  # the general refresh path (Controller ref_general)
    interval = params[14]
    group = params[15]
    guard = params[16] != 0 and gen
    g_pc = params[17]
    g_fixed = params[18]
    g_comp = params[19]
    g_res = params[20]
    g_gw = params[21]
    bank_cap = params[22]
    vec_b = params[23]  # blocked mode: the vector row's bank (hbm_timing.vector_bank)
    vec_row = params[24]
    ACT = ids[0]
    RD = ids[1]
    WR = ids[2]
    PRE = ids[3]
    PREA = ids[4]
    REF = ids[5]
    P_HEADER = ids[6]
    GWRITE = ids[7]
    G_ACT = ids[8]
    PIM_GEMV = ids[9]
    READRES = ids[10]
    PIM_PRECHARGE = ids[11]
    COMP = ids[12]
    GB = G * B
    nbk = R * GB
    last = state[0]
    bus = state[1]
    open_count = state[2]
    open_since = state[3]
    active = state[4]
    ref_due = state[5] if refresh and not gen else np.int64(2**62)  # legacy all-bank
    gdue = state[5]  # general path: next refresh insertion
    ref_rank = state[6]
    ref_pend = False
    held = np.zeros(R, np.int64)  # ranks whose normal commands wait for the pending refresh
    ref_done = 0
    skip = False  # the guard idles the PIM queue until the pending refresh's REF
    rc = rr = rt = 0
    n = r_arr.shape[0]
    ntiles = t_row.shape[0]
    max_res = 0
    for x in t_nres:
        if x > max_res:
            max_res = x
    max_k = 0
    if not dual:  # blocked mode issues every COMP
        for x in t_k:
            if x > max_k:
                max_k = x
    log = np.empty((3 * n + ntiles * (6 + 2 * R + R * G + max_res + max_k) + 64, 7), np.int64)
    nlog = 0
    qbank = (r_rank * G + r_bg) * B + r_bank
    status = np.zeros(n, np.int64)
    qcap = qsize if qsize < n else n
    if bank_cap and bank_cap < qcap:
        qcap = bank_cap
    if qcap < 1:
        qcap = 1
    queues = np.empty((nbk, qcap), np.int64)
    qlen = np.zeros(nbk, np.int64)
    version = np.zeros(nbk, np.int64)
    heap = np.empty((256, 6), np.int64)
    hsize = 0
    queued = 0
    nxt = 0
    lane = -1
    hits = misses = conflicts = 0
    n_reads = n_writes = lat_sum = last_done = 0
    end = 0
    comps = 0
    # the PIM queue: the current tile's commands (command, rank, group, bank, row, column)
    pc = np.empty((8 + 2 * R + nbk + R * G + max_res + max_k, 6), np.int64)
    ph = pt = 0  # head and end of the queue
    ti = 0  # next tile
    in_tile = False
    tile_row = CLOSED
    pim_hold = _n_open(pim_row) > 0  # in a tile or a PIM row open
    gact_pending = np.zeros(R, np.int64)  # G_ACTs of the tile in progress not issued, per rank
    pim_lb = 0  # lower bound of the PIM head's earliest cycle (0: unknown)
    refreshing = -1  # step of the refresh in progress: PREA per rank, PIM_PRECHARGE, REF per rank
    stalled = 0
    bt = bc = bi = bb = 0
    lt = lc = li = lp = lb = 0
    while True:
        lo = last + 1
        # ---- admit arrivals
        while nxt < n and queued < qsize and r_arr[nxt] <= lo:
            b = qbank[nxt]
            if bank_cap and qlen[b] >= bank_cap:
                break
            queues[b, qlen[b]] = nxt
            qlen[b] += 1
            queued += 1
            nxt += 1
            rekey = False
            if qlen[b] == 1:
                rekey = True
            else:
                orow = mem_row[b]
                m = qlen[b]
                if r_row[queues[b, m - 1]] == orow and r_row[queues[b, 0]] != orow:
                    rekey = True
                    for k in range(1, m - 1):
                        if r_row[queues[b, k]] == orow:
                            rekey = False
                            break
            if rekey:
                heap, hsize = _rekey(
                    b,
                    lo,
                    bus,
                    heap,
                    hsize,
                    version,
                    queues,
                    qlen,
                    mem_row,
                    pim_row,
                    r_row,
                    r_write,
                    in_tile,
                    tile_row,
                    gact_pending,
                    held,
                    nb,
                    ng,
                    nr,
                    nc,
                    has_w,
                    w0,
                    B,
                    GB,
                    tfaw,
                    acts,
                    acts_n,
                    acts_h,
                    ids,
                )
        pim_busy = ti < ntiles or ph < pt
        if not (queued or pim_busy or nxt < n or refreshing >= 0):
            break
        # ---- refresh in progress: PREA of each rank (skipped when its rows are closed),
        # PIM_PRECHARGE (skipped when no PIM row is open), REF of each rank
        if refreshing >= 0:
            step = refreshing
            refreshing += 1
            if step < R:
                cmd = PREA
                r = step
            elif step == R:
                cmd = PIM_PRECHARGE
                r = 0
            else:
                cmd = REF
                r = step - R - 1
            skip = False
            if cmd == PREA:  # blocked mode: it also closes the rank's G_ACT rows
                skip = True
                for x in range(r * GB, (r + 1) * GB):
                    if mem_row[x] != CLOSED or (not dual and pim_row[x] != CLOSED):
                        skip = False
                        break
            elif cmd == PIM_PRECHARGE:
                skip = _n_open(pim_row) == 0
            if not skip:
                if cmd == PIM_PRECHARGE:
                    at = _wide_earliest(cmd, lo, bus, nc, has_w, w0)
                    last = at
                    counts[cmd] += 1
                    log = _put_log(log, nlog, at, cmd, -1, -1, -1, 0, 0)
                    nlog += 1
                    _wide_update(cmd, at, 0, wrules, nwrules, nc)
                    closed = _n_open(pim_row)
                    for x in range(nbk):
                        pim_row[x] = CLOSED
                    open_count -= closed
                    if open_count == 0:
                        active += at - open_since
                else:
                    at = nc[cmd]
                    if lo > at:
                        at = lo
                    if nr[cmd, r] > at:
                        at = nr[cmd, r]
                    if cmd == PREA:
                        for x in range(r * GB, (r + 1) * GB):
                            if nb[PRE, x] > at:
                                at = nb[PRE, x]
                    last = at
                    counts[cmd] += 1
                    log = _put_log(log, nlog, at, cmd, r, 0, 0, 0, 0)
                    nlog += 1
                    closed = _rank_apply(
                        cmd, r, at, wrules, nwrules, nb, ng, nr, nc, mem_row, pim_row, dual, G,
                        GB, PREA,
                    )  # fmt: skip
                    if closed:
                        open_count -= closed
                        if open_count == 0:
                            active += at - open_since
                pim_hold = in_tile or _n_open(pim_row) > 0
                if at + 1 > end:
                    end = at + 1
            if refreshing == 2 * R + 1:
                refreshing = -1
                ref_due += trefi
                for b in range(nbk):
                    if qlen[b]:
                        heap, hsize = _rekey(
                            b,
                            last + 1,
                            bus,
                            heap,
                            hsize,
                            version,
                            queues,
                            qlen,
                            mem_row,
                            pim_row,
                            r_row,
                            r_write,
                            in_tile,
                            tile_row,
                            gact_pending,
                            held,
                            nb,
                            ng,
                            nr,
                            nc,
                            has_w,
                            w0,
                            B,
                            GB,
                            tfaw,
                            acts,
                            acts_n,
                            acts_h,
                            ids,
                        )
            continue
        # ---- PIM queue head: a PRE queued to free the tile's row may no longer be needed
        while ph < pt and pc[ph, 0] == PRE:
            if mem_row[(pc[ph, 1] * G + pc[ph, 2]) * B + pc[ph, 3]] == pc[ph, 4]:
                break
            ph += 1
            pim_lb = 0
        # ---- MEM candidate (kind 0: none yet, 1: MEM, 2: PIM); blocked mode holds normal
        # requests while PIM work is queued
        kind = 0
        lane_ok = False
        mem_ok = dual or not pim_busy
        if lane >= 0:
            lb = lane
            lane = -1
            if qlen[lb] and mem_ok and not held[lb // GB]:
                li = queues[lb, 0]
                orow = mem_row[lb]
                if orow != CLOSED and r_row[li] == orow:
                    lc = WR if r_write[li] else RD
                    lp = 1
                    lane_ok = True
                else:
                    lc, li, lp = _decide(
                        lb,
                        mem_row,
                        pim_row,
                        queues,
                        qlen,
                        r_row,
                        r_write,
                        in_tile,
                        tile_row,
                        gact_pending,
                        held,
                        GB,
                        ids,
                    )
                    lane_ok = lc >= 0
                if lane_ok:
                    lt = _earliest(
                        lc,
                        lb,
                        lo,
                        bus,
                        nb,
                        ng,
                        nr,
                        nc,
                        has_w,
                        w0,
                        B,
                        GB,
                        ACT,
                        tfaw,
                        acts,
                        acts_n,
                        acts_h,
                    )
        if queued and mem_ok:
            while hsize:
                t0 = heap[0, 0]
                p0 = heap[0, 1]
                i0 = heap[0, 2]
                v0 = heap[0, 3]
                b = heap[0, 4]
                c0 = heap[0, 5]
                if v0 != version[b] or held[b // GB]:
                    hsize = _pop(heap, hsize)
                    continue
                if lane_ok and (lt < t0 or (lt == t0 and (lp < p0 or (lp == p0 and li < i0)))):
                    break
                if (
                    pim_hold
                    and c0 == ACT
                    and (
                        pim_row[b] == r_row[i0]
                        or (in_tile and r_row[i0] == tile_row)
                        or gact_pending[b // GB]
                    )
                ):
                    hsize = _pop(heap, hsize)
                    continue
                t1 = _earliest(
                    c0,
                    b,
                    lo,
                    bus,
                    nb,
                    ng,
                    nr,
                    nc,
                    has_w,
                    w0,
                    B,
                    GB,
                    ACT,
                    tfaw,
                    acts,
                    acts_n,
                    acts_h,
                )
                if t1 != t0:
                    heap[0, 0] = t1
                    _sift_down(heap, hsize, 0)
                    continue
                bt = t0
                bc = c0
                bi = i0
                bb = b
                kind = 1
                break
        if lane_ok:
            if kind == 0:
                bt = lt
                bc = lc
                bi = li
                bb = lb
                kind = 1
            else:
                version[lb] += 1
                heap = _push(heap, hsize, lt, lp, li, version[lb], lb, lc)
                hsize += 1
        # ---- PIM candidate, evaluated only when its lower bound does not lose already
        if pim_busy and not (skip or (ref_pend and not in_tile)) and (kind == 0 or pim_lb <= bt):
            pim_lb = _pim_head_earliest(
                pc,
                ph,
                pt,
                lo,
                bus,
                nb,
                ng,
                nr,
                nc,
                has_w,
                w0,
                G,
                B,
                tfaw,
                acts,
                acts_n,
                acts_h,
                ids,
                dual,
            )
            if guard and ph == pt:  # the next tile's header: would it beat the refresh?
                k = t_k[ti]
                n_open = _n_open(pim_row)
                if not dual:  # one buffer: every open row must close
                    n_open = 0
                    for x in range(nbk):
                        if pim_row[x] != CLOSED or mem_row[x] != CLOSED:
                            n_open += 1
                est = (
                    n_open * g_pc
                    + g_fixed
                    + g_comp * (k if k > min_slots else min_slots)
                    + g_res * (t_nres[ti] - 1)
                )
                if t_gwrite[ti]:
                    est += g_gw
                skip = gdue - pim_lb <= est
            if not skip and (kind == 0 or pim_lb <= bt):
                if kind == 1:
                    version[bb] += 1
                    heap = _push(
                        heap, hsize, bt, 1 if (bc == RD or bc == WR) else 2, bi, version[bb], bb, bc
                    )
                    hsize += 1
                bt = pim_lb
                kind = 2
        # ---- general refresh path: the insertion at gdue, then the pending refresh's
        # commands once no tile is in progress, none before gdue; first at equal cycles
        if gen:
            rc = -1
            rt = -1
            if not ref_pend:
                rt = gdue
            elif not in_tile:
                rc, rr = _next_ref(
                    mem_row,
                    pim_row,
                    ref_rank,
                    group,
                    R,
                    GB,
                    ref_done,
                    PREA,
                    PIM_PRECHARGE,
                    REF,
                    dual,
                )
                if rc == PIM_PRECHARGE:
                    rt = _wide_earliest(rc, lo, bus, nc, has_w, w0)
                else:
                    rt = _rank_earliest(rc, rr, lo, nb, nr, nc, PRE, GB, PREA)
                if gdue > rt:
                    rt = gdue
            if rt >= 0 and (kind == 0 or rt <= bt):
                if kind == 1:
                    version[bb] += 1
                    heap = _push(
                        heap, hsize, bt, 1 if (bc == RD or bc == WR) else 2, bi, version[bb], bb, bc
                    )
                    hsize += 1
                bt = rt
                kind = 3
        # ---- an arrival before the chosen command is admitted first
        if nxt < n and queued < qsize and not (bank_cap and qlen[qbank[nxt]] >= bank_cap):
            arr = r_arr[nxt]
            if kind == 0 or arr < bt:
                if kind == 1:
                    version[bb] += 1
                    heap = _push(
                        heap, hsize, bt, 1 if (bc == RD or bc == WR) else 2, bi, version[bb], bb, bc
                    )
                    hsize += 1
                if arr - 1 > last:
                    last = arr - 1
                continue
        if kind == 0:
            stalled = 1
            break
        if kind == 3:
            if rc < 0:  # inserted: the group's normal commands wait, no new tile starts
                ref_pend = True
                for x in range(group):
                    held[(ref_rank + x) % R] = 1
                continue
            at = bt
            last = at
            counts[rc] += 1
            if rc == PIM_PRECHARGE:
                log = _put_log(log, nlog, at, rc, -1, -1, -1, 0, 0)
                nlog += 1
                _wide_update(rc, at, 0, wrules, nwrules, nc)
                closed = _n_open(pim_row)
                for x in range(nbk):
                    pim_row[x] = CLOSED
            else:
                log = _put_log(log, nlog, at, rc, rr, 0, 0, 0, 0)
                nlog += 1
                closed = _rank_apply(
                    rc, rr, at, wrules, nwrules, nb, ng, nr, nc, mem_row, pim_row, dual, G, GB, PREA
                )
            if closed:
                open_count -= closed
                if open_count == 0:
                    active += at - open_since
            pim_hold = in_tile or _n_open(pim_row) > 0
            if at + 1 > end:
                end = at + 1
            if rc == REF:
                ref_done += 1
                if ref_done == group:  # done: release the ranks and the PIM queue
                    ref_pend = False
                    skip = False
                    for x in range(R):
                        held[x] = 0
                    ref_done = 0
                    gdue += interval
                    ref_rank = (ref_rank + group) % R
            if queued:
                for x in range(nbk):
                    if qlen[x]:
                        heap, hsize = _rekey(
                            x,
                            last + 1,
                            bus,
                            heap,
                            hsize,
                            version,
                            queues,
                            qlen,
                            mem_row,
                            pim_row,
                            r_row,
                            r_write,
                            in_tile,
                            tile_row,
                            gact_pending,
                            held,
                            nb,
                            ng,
                            nr,
                            nc,
                            has_w,
                            w0,
                            B,
                            GB,
                            tfaw,
                            acts,
                            acts_n,
                            acts_h,
                            ids,
                        )
            pim_lb = 0
            continue
        # ---- refresh due: finish the tile in progress, then refresh
        if bt >= ref_due:
            if in_tile:
                if kind == 1:  # hold normal traffic until the tile is done
                    version[bb] += 1
                    heap = _push(
                        heap, hsize, bt, 1 if (bc == RD or bc == WR) else 2, bi, version[bb], bb, bc
                    )
                    hsize += 1
                    bt = _pim_head_earliest(
                        pc,
                        ph,
                        pt,
                        lo,
                        bus,
                        nb,
                        ng,
                        nr,
                        nc,
                        has_w,
                        w0,
                        G,
                        B,
                        tfaw,
                        acts,
                        acts_n,
                        acts_h,
                        ids,
                        dual,
                    )
                    kind = 2
            else:
                if kind == 1:
                    version[bb] += 1
                    heap = _push(
                        heap, hsize, bt, 1 if (bc == RD or bc == WR) else 2, bi, version[bb], bb, bc
                    )
                    hsize += 1
                refreshing = 0
                continue
        if kind == 2:  # ---- PIM command
            if ph == pt and not dual:  # blocked mode (Controller._expand_blocked)
                ph = pt = 0
                row = t_row[ti]
                pt = _pc_put(pc, pt, P_HEADER, 0, 0, 0, row, 0)
                for r in range(R):
                    for x in range(r * GB, (r + 1) * GB):
                        if mem_row[x] != CLOSED or pim_row[x] != CLOSED:
                            pt = _pc_put(pc, pt, PREA, r, 0, 0, 0, 0)
                            break
                vr = vec_b // GB
                vg = (vec_b % GB) // B
                vk = vec_b % B
                gw = t_gwrite[ti] != 0
                if gw:
                    pt = _pc_put(pc, pt, ACT, vr, vg, vk, vec_row, 0)
                    pt = _pc_put(pc, pt, GWRITE, vr, vg, vk, vec_row, 0)
                for g in range(G):
                    for r in range(R):
                        if gw and r == vr and g == vg:
                            pt = _pc_put(pc, pt, PRE, vr, vg, vk, vec_row, 0)
                        pt = _pc_put(pc, pt, G_ACT, r, g, 0, row, 0)
                        gact_pending[r] += 1
                k = t_k[ti]
                nres = t_nres[ti]
                q = k // nres
                rem = k % nres
                for i in range(nres):  # hbm_timing.comp_split
                    ci = q + 1 if i < rem else q
                    for j in range(ci):
                        pt = _pc_put(pc, pt, COMP, 0, 0, 0, row, j)
                    pt = _pc_put(pc, pt, READRES, 0, 0, 0, row, 0)
                ti += 1
                if ti == ntiles:  # release the banks after the last tile: PREA per rank
                    for r in range(R):
                        pt = _pc_put(pc, pt, PREA, r, 0, 0, 0, 0)
                tile_row = row
                in_tile = True
            elif ph == pt:  # the next tile's commands (Controller._expand)
                ph = pt = 0
                row = t_row[ti]
                pt = _pc_put(pc, pt, P_HEADER, 0, 0, 0, row, 0)
                if t_gwrite[ti]:
                    pt = _pc_put(pc, pt, GWRITE, 0, 0, 0, row, 0)
                if _n_open(pim_row):
                    pt = _pc_put(pc, pt, PIM_PRECHARGE, 0, 0, 0, 0, 0)
                for x in range(nbk):  # MEM rows that must close first
                    mr = mem_row[x]
                    if mr != CLOSED and (not dual or mr == row):
                        pt = _pc_put(pc, pt, PRE, x // GB, (x % GB) // B, x % B, mr, 0)
                for g in range(G):
                    for r in range(R):
                        pt = _pc_put(pc, pt, G_ACT, r, g, 0, row, 0)
                        gact_pending[r] += 1
                pt = _pc_put(pc, pt, PIM_GEMV, 0, 0, 0, row, t_k[ti])
                for _ in range(t_nres[ti]):
                    pt = _pc_put(pc, pt, READRES, 0, 0, 0, row, 0)
                ti += 1
                if ti == ntiles:  # release the banks after the last tile
                    pt = _pc_put(pc, pt, PIM_PRECHARGE, 0, 0, 0, 0, 0)
                tile_row = row
                in_tile = True
            c = pc[ph, 0]
            r = pc[ph, 1]
            g = pc[ph, 2]
            bk = pc[ph, 3]
            row = pc[ph, 4]
            col = pc[ph, 5]
            ph += 1
            pim_lb = 0
            at = bt
            last = at
            counts[c] += 1
            if c == G_ACT:  # the B banks of one group open ``row`` in their PIM buffers
                log = _put_log(log, nlog, at, c, r, g, bk, row, col)
                nlog += 1
                gi = r * G + g
                _gact_update(c, at, gi, r, wrules, nwrules, nb, ng, nr, nc, B)
                for x in range(gi * B, (gi + 1) * B):
                    _ring_push(acts, acts_n, acts_h, r, at)
                    pim_row[x] = row
                if open_count == 0:
                    open_since = at
                open_count += B
                gact_pending[r] -= 1
                if not gact_pending[r] and queued:  # the rank's held ACTs may go again
                    for x in range(r * GB, (r + 1) * GB):
                        if qlen[x]:
                            heap, hsize = _rekey(
                                x,
                                last + 1,
                                bus,
                                heap,
                                hsize,
                                version,
                                queues,
                                qlen,
                                mem_row,
                                pim_row,
                                r_row,
                                r_write,
                                in_tile,
                                tile_row,
                                gact_pending,
                                held,
                                nb,
                                ng,
                                nr,
                                nc,
                                has_w,
                                w0,
                                B,
                                GB,
                                tfaw,
                                acts,
                                acts_n,
                                acts_h,
                                ids,
                            )
            elif c == PRE:
                b = (r * G + g) * B + bk
                log = _put_log(log, nlog, at, c, r, g, bk, row, col)
                nlog += 1
                _update(c, at, b, rules, nrules, nb, ng, nr, nc, B, GB)
                mem_row[b] = CLOSED
                open_count -= 1
                if open_count == 0:
                    active += at - open_since
                heap, hsize = _rekey(
                    b,
                    last + 1,
                    bus,
                    heap,
                    hsize,
                    version,
                    queues,
                    qlen,
                    mem_row,
                    pim_row,
                    r_row,
                    r_write,
                    in_tile,
                    tile_row,
                    gact_pending,
                    held,
                    nb,
                    ng,
                    nr,
                    nc,
                    has_w,
                    w0,
                    B,
                    GB,
                    tfaw,
                    acts,
                    acts_n,
                    acts_h,
                    ids,
                )
            elif c == ACT:  # blocked mode: the vector's row
                b = (r * G + g) * B + bk
                log = _put_log(log, nlog, at, c, r, g, bk, row, col)
                nlog += 1
                _update(c, at, b, rules, nrules, nb, ng, nr, nc, B, GB)
                _ring_push(acts, acts_n, acts_h, r, at)
                mem_row[b] = row
                if open_count == 0:
                    open_since = at
                open_count += 1
            elif c == PREA:  # blocked mode: a rank's rows close (ordinary precharge)
                log = _put_log(log, nlog, at, c, r, 0, 0, 0, 0)
                nlog += 1
                closed = _rank_apply(
                    c, r, at, wrules, nwrules, nb, ng, nr, nc, mem_row, pim_row, dual, G, GB, PREA
                )
                if closed:
                    open_count -= closed
                    if open_count == 0:
                        active += at - open_since
            else:  # channel-wide
                if c == GWRITE and not dual:  # blocked: it names its row's bank
                    log = _put_log(log, nlog, at, c, r, g, bk, row, col)
                    _bank_update(c, at, (r * G + g) * B + bk, wrules, nwrules, nb)
                else:
                    log = _put_log(log, nlog, at, c, -1, -1, -1, row, col)
                nlog += 1
                occ = 0
                if c == PIM_GEMV:
                    occ = tccd_l * (col if col > min_slots else min_slots)
                    comps += col
                elif c == COMP and col == 0:  # hbm_timing.comp_occupancy
                    occ = tccd_l * min_slots
                _wide_update(c, at, occ, wrules, nwrules, nc)
                if has_w[c]:
                    bus = at + w0[c] + w1[c]
                if c == PIM_PRECHARGE:
                    closed = _n_open(pim_row)
                    if closed:
                        for x in range(nbk):
                            pim_row[x] = CLOSED
                        open_count -= closed
                        if open_count == 0:
                            active += at - open_since
            if ph == pt:
                in_tile = False
            pim_hold = in_tile or _n_open(pim_row) > 0
            if queued and (c == PIM_PRECHARGE or ph == pt):
                for x in range(nbk):
                    if qlen[x]:
                        heap, hsize = _rekey(
                            x,
                            last + 1,
                            bus,
                            heap,
                            hsize,
                            version,
                            queues,
                            qlen,
                            mem_row,
                            pim_row,
                            r_row,
                            r_write,
                            in_tile,
                            tile_row,
                            gact_pending,
                            held,
                            nb,
                            ng,
                            nr,
                            nc,
                            has_w,
                            w0,
                            B,
                            GB,
                            tfaw,
                            acts,
                            acts_n,
                            acts_h,
                            ids,
                        )
            tail = w0[c] + w1[c] if has_w[c] else 1
            if at + tail > end:
                end = at + tail
            continue
        # ---- issue the MEM command
        b = bb
        version[b] += 1
        last = bt
        counts[bc] += 1
        row = r_row[bi] if bc != PRE else mem_row[b]  # PRE logs the row it closes
        log = _put_log(log, nlog, bt, bc, r_rank[bi], r_bg[bi], r_bank[bi], row, r_col[bi])
        nlog += 1
        _update(bc, bt, b, rules, nrules, nb, ng, nr, nc, B, GB)
        if bc == RD or bc == WR:
            m = qlen[b]
            k = 0
            while queues[b, k] != bi:
                k += 1
            for j in range(k, m - 1):
                queues[b, j] = queues[b, j + 1]
            qlen[b] = m - 1
            queued -= 1
            s = status[bi]
            if s == 0:
                hits += 1
            elif s == 1:
                misses += 1
            else:
                conflicts += 1
            if bc == RD:
                bus = bt + cl + burst
                n_reads += 1
                lat_sum += bus - r_arr[bi]
            else:
                bus = bt + cwl + burst
                n_writes += 1
            if bus > last_done:
                last_done = bus
            if m > 1:
                lane = b
            continue
        if bc == ACT:
            _ring_push(acts, acts_n, acts_h, b // GB, bt)
            mem_row[b] = r_row[bi]
            if open_count == 0:
                open_since = bt
            open_count += 1
            if status[bi] < 1:
                status[bi] = 1
        else:  # PRE
            mem_row[b] = CLOSED
            open_count -= 1
            if open_count == 0:
                active += bt - open_since
            status[bi] = 2
        lane = b
    out = np.zeros(N_OUT, np.int64)
    out[O_NLOG] = nlog
    out[O_LAST] = last
    out[O_BUS] = bus
    out[O_OPEN_COUNT] = open_count
    out[O_OPEN_SINCE] = open_since
    out[O_ACTIVE] = active
    out[O_HITS] = hits
    out[O_MISSES] = misses
    out[O_CONFLICTS] = conflicts
    out[O_READS] = n_reads
    out[O_WRITES] = n_writes
    out[O_LAT] = lat_sum
    out[O_DONE] = last_done
    out[O_END] = end
    out[O_REF_DUE] = gdue if gen else ref_due
    out[O_REF_RANK] = ref_rank
    out[O_STALLED] = stalled
    out[O_COMPS] = comps
    return log[:nlog], out
