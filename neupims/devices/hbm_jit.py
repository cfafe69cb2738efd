"""Compiled (numba) kernel of the HBM controller for runs of normal requests only.

:meth:`neupims.devices.hbm_channel.Controller._run` hands a run here when it has no PIM
tiles, the channel has no PIM row open, and numba is importable (and ``NEUPIMS_NO_JIT`` is
not set). The kernel is the same algorithm as the Python controller restricted to that case
(FR-FCFS over a lazy heap of lower-bound keys, the issuing bank as a fast lane, all-bank
refresh every tREFI as PREA / REF per rank), on NumPy int64 arrays: the timing state
(earliest cycle per command and bank / bank group / rank / channel), the tFAW window as a
4-entry ring per rank, per-bank queues as fixed rows of request indices, and the heap as
rows (key, priority, request, version, bank, command) compared lexicographically like
Python tuples. It returns the command log as an int64 array (cycle, command id, rank, bank
group, bank, row, column) that the caller turns into the usual log tuples; the golden
schedules (tests/test_hbm_golden.py) must come out identical from both paths
(tests/test_hbm_jit.py).

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
) = range(16)
N_OUT = 16


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


@njit(cache=True)
def _earliest(c, b, lo, bus, nb, ng, nr, nc, has_w, w0, B, GB, act, tfaw, acts, acts_n, acts_h):
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
def _update(c, t, b, rules, nrules, nb, ng, nr, nc, B, GB):
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
def _decide(b, mem_row, queues, qlen, r_row, r_write, ACT, RD, WR, PRE):
    """FR-FCFS choice for bank ``b`` (as ``Controller.decide``): the oldest row hit as RD/WR
    (priority 1), else PRE of the open row or ACT of the oldest request's row (priority 2).
    The command ids are the caller's. Returns (command, request index, priority)."""
    orow = mem_row[b]
    if orow == CLOSED:
        return ACT, queues[b, 0], 2
    for k in range(qlen[b]):
        i = queues[b, k]
        if r_row[i] == orow:
            return (WR if r_write[i] else RD), i, 1
    return PRE, queues[b, 0], 2


@njit(cache=True)
def run_requests(
    r_arr,
    r_write,
    r_rank,
    r_bg,
    r_bank,
    r_row,
    r_col,
    nb,
    ng,
    nr,
    nc,
    mem_row,
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
    params,
    state,
):
    """Serve the requests to the end. ``params``: R, G, B, tFAW, CL, burst, CWL, queue
    size, tREFI, refresh (0/1), and the ids ACT, RD, WR, PRE, PREA, REF. ``state``: last
    issue, bus free, open count, open since, active cycles, next refresh due. The timing
    arrays, ``mem_row``, the tFAW ring and ``counts`` are updated in place. Returns (log
    rows, scalar results indexed by the ``O_*`` constants)."""
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
    ACT = params[10]
    RD = params[11]
    WR = params[12]
    PRE = params[13]
    PREA = params[14]
    REF = params[15]
    GB = G * B
    nbk = R * GB
    last = state[0]
    bus = state[1]
    open_count = state[2]
    open_since = state[3]
    active = state[4]
    ref_due = state[5] if refresh else np.int64(2**62)
    n = r_arr.shape[0]
    log = np.empty((3 * n + 64, 7), np.int64)
    nlog = 0
    qbank = (r_rank * G + r_bg) * B + r_bank
    status = np.zeros(n, np.int64)
    qcap = qsize if qsize < n else n
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
    refreshing = -1  # step of the refresh in progress: PREA per rank, REF per rank
    stalled = 0
    bt = bc = bi = bb = 0
    lt = lc = li = lp = 0
    while True:
        lo = last + 1
        # ---- admit arrivals
        while nxt < n and queued < qsize and r_arr[nxt] <= lo:
            b = qbank[nxt]
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
                version[b] += 1
                dc, di, dp = _decide(b, mem_row, queues, qlen, r_row, r_write, ACT, RD, WR, PRE)
                te = _earliest(
                    dc,
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
                heap = _push(heap, hsize, te, dp, di, version[b], b, dc)
                hsize += 1
        if not (queued or nxt < n or refreshing >= 0):
            break
        # ---- refresh in progress: PREA of each rank (skipped when its rows are closed),
        # then REF of each rank (the PIM_PRECHARGE between them: no PIM row is open here)
        if refreshing >= 0:
            step = refreshing
            refreshing += 1
            r = step if step < R else step - R
            cmd = PREA if step < R else REF
            skip = False
            if cmd == PREA:
                skip = True
                for x in range(r * GB, (r + 1) * GB):
                    if mem_row[x] != CLOSED:
                        skip = False
                        break
            if not skip:
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
                if cmd == PREA:
                    for x in range(r * GB, (r + 1) * GB):
                        if mem_row[x] != CLOSED:
                            mem_row[x] = CLOSED
                            open_count -= 1
                            if open_count == 0:
                                active += at - open_since
                if at + 1 > end:
                    end = at + 1
            if refreshing == 2 * R:
                refreshing = -1
                ref_due += trefi
                lo2 = last + 1
                for b in range(nbk):
                    if qlen[b]:
                        version[b] += 1
                        dc, di, dp = _decide(
                            b, mem_row, queues, qlen, r_row, r_write, ACT, RD, WR, PRE
                        )
                        te = _earliest(
                            dc,
                            b,
                            lo2,
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
                        heap = _push(heap, hsize, te, dp, di, version[b], b, dc)
                        hsize += 1
            continue
        # ---- MEM candidate
        kind = 0
        lane_ok = False
        if lane >= 0:
            lb = lane
            lane = -1
            if qlen[lb]:
                li = queues[lb, 0]
                orow = mem_row[lb]
                if orow != CLOSED and r_row[li] == orow:
                    lc = WR if r_write[li] else RD
                    lp = 1
                elif orow != CLOSED:
                    lc = PRE
                    li = queues[lb, 0]
                    lp = 2
                    for k in range(qlen[lb]):
                        i = queues[lb, k]
                        if r_row[i] == orow:
                            lc = WR if r_write[i] else RD
                            li = i
                            lp = 1
                            break
                else:
                    lc = ACT
                    li = queues[lb, 0]
                    lp = 2
                lane_ok = True
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
        if queued:
            while hsize:
                t0 = heap[0, 0]
                p0 = heap[0, 1]
                i0 = heap[0, 2]
                v0 = heap[0, 3]
                b = heap[0, 4]
                c0 = heap[0, 5]
                if v0 != version[b]:
                    hsize = _pop(heap, hsize)
                    continue
                if lane_ok and (lt < t0 or (lt == t0 and (lp < p0 or (lp == p0 and li < i0)))):
                    break
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
        # ---- an arrival before the chosen command is admitted first
        if nxt < n and queued < qsize:
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
        if bt >= ref_due:
            version[bb] += 1
            heap = _push(
                heap, hsize, bt, 1 if (bc == RD or bc == WR) else 2, bi, version[bb], bb, bc
            )
            hsize += 1
            refreshing = 0
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
            r = b // GB
            if acts_n[r] < 4:
                acts[r, (acts_h[r] + acts_n[r]) % 4] = bt
                acts_n[r] += 1
            else:
                acts[r, acts_h[r]] = bt
                acts_h[r] = (acts_h[r] + 1) % 4
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
    out[O_REF_DUE] = ref_due
    out[O_STALLED] = stalled
    return log[:nlog], out
