"""Command-level model of one HBM(-PIM) channel: banks with MEM and PIM row buffers, a
timing-checked command issue API, and an FR-FCFS controller with a PIM queue.

Units: cycles of ``mem.timing.tck_ns``. Facts: ../shared/docs/NEUPIMS.md sections 3-6; the
timing table is :func:`neupims.devices.hbm_timing.rules`.

Speed: time is never ticked. Every (command, bank / bank group / rank / channel) keeps the
earliest cycle it may issue as a plain int; a command's earliest legal cycle is the max of
those, the tFAW window, the data bus and the command bus (one command per cycle). Those
maxima and their updates are generated once per config as straight-line Python with the
gaps as constants (``HbmChannel._compile``). The controller picks the candidate with the
smallest earliest cycle (ties: PIM first, then row hits, then the oldest) and jumps there;
normal-request candidates sit in a heap of lower-bound keys re-evaluated lazily, and the
bank that just issued competes outside it (its row-hit runs cost no heap traffic).

Row buffers: each bank has a MEM row buffer (ACT/RD/WR/PRE). With ``dual_row_buffer`` it
also has a PIM row buffer (G_ACT/PIM_GEMV/READRES/PIM_PRECHARGE) with its own open row; a
row may not be open in both. Without (Newton, blocked mode) one buffer serves both, and
the controller holds normal requests back while PIM work is queued.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from neupims.devices import hbm_timing as T
from neupims.devices.dram import dram_energy_j
from neupims.errors import ConfigError, NeupimsError

CLOSED = -1


class HbmTimingError(NeupimsError):
    """A command was issued before its earliest legal cycle or in an illegal bank state."""


@dataclass(frozen=True)
class Request:
    """One 64 B access: ``arrival`` cycle, write flag, target bank and row/column."""

    arrival: int
    write: bool
    rank: int
    bg: int
    bank: int
    row: int
    col: int


@dataclass(frozen=True)
class PimTile:
    """One tile GEMV: ``row`` opened in every bank's PIM buffer, ``k`` COMPs, ``n_results``
    READRES; ``gwrite`` when a new vector must be written to the global buffer first."""

    row: int
    k: int
    n_results: int
    gwrite: bool


@dataclass
class Stats:
    """Counters of one run. cycles: simulated cycles until the last data burst ends."""

    commands: dict[str, int] = field(default_factory=dict)
    row_hits: int = 0
    row_misses: int = 0
    row_conflicts: int = 0
    reads: int = 0
    writes: int = 0
    cycles: int = 0
    active_cycles: int = 0  # cycles with at least one row open (background IDD3N)
    read_latency_sum: int = 0  # arrival -> end of data, over reads
    last_request_done: int = 0  # end of the last normal request's data


def decode_address(
    addr: int, mem, mapping: str | None = None
) -> tuple[int, int, int, int, int, int]:
    """Split a byte address into (channel, rank, bg, bank, row, col) by an address map.

    ``mapping`` (default ``controller.address_mapping``, NeuPIMs' ``rorabgbachco``) lists
    fields from most to least significant in two-letter codes: ro, ra, bg, ba, ch, co. The
    lowest log2(access_bytes) bits are the byte offset inside one burst.
    """
    mapping = mapping or mem.controller.address_mapping
    o = mem.organization
    sizes = {
        "ro": o.rows,
        "ra": o.ranks,
        "bg": o.bank_groups,
        "ba": o.banks_per_group,
        "ch": o.channels,
        "co": mem.page_bytes // mem.access_bytes,
    }
    fields = [mapping[i : i + 2] for i in range(0, len(mapping), 2)]
    if sorted(fields) != sorted(sizes):
        raise ConfigError(
            f"controller.address_mapping: {mapping!r} must name each of ro ra bg ba ch co once"
        )
    v = addr // mem.access_bytes
    out = {}
    for f in reversed(fields):
        out[f] = v % sizes[f]
        v //= sizes[f]
    return out["ch"], out["ra"], out["bg"], out["ba"], out["ro"] % o.rows, out["co"]


class HbmChannel:
    """One channel: state, timing bookkeeping, issue API, command log and statistics."""

    def __init__(self, mem, *, dual_row_buffer: bool | None = None, refresh: bool = True):
        self.mem = mem
        self.dual = mem.pim.dual_row_buffer if dual_row_buffer is None else bool(dual_row_buffer)
        o = mem.organization
        self.R, self.G, self.B = o.ranks, o.bank_groups, o.banks_per_group
        self.nbanks = self.R * self.G * self.B
        self.ngroups = self.R * self.G
        n = len(T.COMMANDS)
        self.nb = [[0] * self.nbanks for _ in range(n)]
        self.ng = [[0] * self.ngroups for _ in range(n)]
        self.nr = [[0] * self.R for _ in range(n)]
        self.nc = [0] * n
        self.mem_row = [CLOSED] * self.nbanks
        self.pim_row = [CLOSED] * self.nbanks
        self.open_count = 0
        self.open_since = 0
        self.acts = [deque(maxlen=4) for _ in range(self.R)]  # last 4 activation times
        self.bus_free = 0
        self.last_issue = -1
        self.log: list[tuple[int, str, int, int, int, int, int]] = []
        self.counts = [0] * n
        self.comps = 0
        self.stats = Stats()
        self.refresh = refresh
        self.t = mem.timing
        self.tfaw = mem.timing.tFAW
        self.data = [T.data_window(c, mem) for c in range(n)]
        self._compile(T.rules(mem, self.dual))

    # ------------------------------------------------------------------ bookkeeping
    def _compile(self, table) -> None:
        """Keep the table, and generate straight-line Python for the hot path: per bank
        command (ACT/RD/WR/PRE) an ``earliest`` and an ``update`` function with the gaps as
        constants (a plain loop over the table costs several times more per command)."""
        self.upd = table
        ns = {"nb": self.nb, "ng": self.ng, "nr": self.nr, "nc": self.nc, "ch": self}
        self.fast_earliest = {}
        self.fast_update = {}
        for c in (T.ACT, T.RD, T.WR, T.PRE):
            w = self.data[c]
            lines = [
                f"def e_{c}(b, g, r):",
                f"    t = nc[{c}]",
                "    x = ch.last_issue + 1",
                "    if x > t: t = x",
                f"    x = nb[{c}][b]",
                "    if x > t: t = x",
                f"    x = ng[{c}][g]",
                "    if x > t: t = x",
                f"    x = nr[{c}][r]",
                "    if x > t: t = x",
            ]
            if w is not None:
                lines += [f"    x = ch.bus_free - {w[0]}", "    if x > t: t = x"]
            if c == T.ACT:
                lines += [
                    "    a = ch.acts[r]",
                    "    if len(a) == 4:",
                    f"        x = a[0] + {self.tfaw}",
                    "        if x > t: t = x",
                ]
            lines.append("    return t")
            upd = [f"def u_{c}(t, b, g, r):"]
            for scope, later, delay, _occ in table[c]:
                ref = {
                    "bank": f"nb[{later}][b]",
                    "bg": f"ng[{later}][g]",
                    "rank": f"nr[{later}][r]",
                    "channel": f"nc[{later}]",
                }[scope]
                upd += [f"    v = t + {delay}", f"    if v > {ref}: {ref} = v"]
            if len(upd) == 1:
                upd.append("    pass")
            exec("\n".join(lines) + "\n" + "\n".join(upd), ns)  # noqa: S102 - generated above
            self.fast_earliest[c] = ns[f"e_{c}"]
            self.fast_update[c] = ns[f"u_{c}"]
        # channel-wide PIM commands: every scope of their rules is the whole channel
        self.wide_earliest = {}
        self.wide_update = {}
        for c in T.CHANNEL_WIDE:
            w = self.data[c]
            lines = [
                f"def we_{c}():",
                f"    t = nc[{c}]",
                "    x = ch.last_issue + 1",
                "    if x > t: t = x",
            ]
            if w is not None:
                lines += [f"    x = ch.bus_free - {w[0]}", "    if x > t: t = x"]
            lines.append("    return t")
            upd = [f"def wu_{c}(t, occ):"]
            for _scope, later, delay, occ in table[c]:
                upd += [
                    f"    v = t + {delay}" + (" + occ" if occ else ""),
                    f"    if v > nc[{later}]: nc[{later}] = v",
                ]
            if len(upd) == 1:
                upd.append("    pass")
            exec("\n".join(lines) + "\n" + "\n".join(upd), ns)  # noqa: S102 - generated above
            self.wide_earliest[c] = ns[f"we_{c}"]
            self.wide_update[c] = ns[f"wu_{c}"]
        # G_ACT: the B banks of its group, unrolled; counts as B activations under tFAW
        c = T.G_ACT
        lines = [
            "def ge(g, r):",
            f"    t = nc[{c}]",
            "    x = ch.last_issue + 1",
            "    if x > t: t = x",
            f"    x = ng[{c}][g]",
            "    if x > t: t = x",
            f"    x = nr[{c}][r]",
            "    if x > t: t = x",
            f"    nbc = nb[{c}]",
            f"    b0 = g * {self.B}",
        ]
        for i in range(self.B):
            lines += [f"    x = nbc[b0 + {i}]", "    if x > t: t = x"]
        lines += [
            "    a = ch.acts[r]",
            f"    k = len(a) + {self.B} - 5",
            "    if k >= 0:",
            f"        x = a[k] + {self.tfaw}",
            "        if x > t: t = x",
            "    return t",
        ]
        upd = ["def gu(t, g, r):", f"    b0 = g * {self.B}"]
        for scope, later, delay, _occ in table[c]:
            upd.append(f"    v = t + {delay}")
            if scope == "bank":
                upd.append(f"    arr = nb[{later}]")
                for i in range(self.B):
                    upd.append(f"    if v > arr[b0 + {i}]: arr[b0 + {i}] = v")
            else:
                ref = {
                    "bg": f"ng[{later}][g]",
                    "rank": f"nr[{later}][r]",
                    "channel": f"nc[{later}]",
                }[scope]
                upd.append(f"    if v > {ref}: {ref} = v")
        exec("\n".join(lines) + "\n" + "\n".join(upd), ns)  # noqa: S102 - generated above
        self.gact_earliest, self.gact_update = ns["ge"], ns["gu"]

    def _bank_id(self, rank: int, bg: int, bank: int) -> int:
        return (rank * self.G + bg) * self.B + bank

    def _check_target(self, cmd: int, rank: int, bg: int, bank: int) -> None:
        if cmd in T.CHANNEL_WIDE:
            return
        if not 0 <= rank < self.R or not 0 <= bg < self.G:
            raise HbmTimingError(f"{T.COMMANDS[cmd]}: rank {rank}/bank group {bg} out of range")
        if cmd not in (PREA_, REF_, G_ACT_) and not 0 <= bank < self.B:
            raise HbmTimingError(f"{T.COMMANDS[cmd]}: bank {bank} out of range")

    def earliest(
        self, cmd: int | str, rank: int = 0, bg: int = 0, bank: int = 0, k: int = 0
    ) -> int:
        """Earliest legal issue cycle of ``cmd`` by the timing table (state not checked)."""
        cmd = T.CMD[cmd] if isinstance(cmd, str) else cmd
        if cmd in self.fast_earliest:  # generated code, the same the controller runs
            return self.fast_earliest[cmd](
                (rank * self.G + bg) * self.B + bank, rank * self.G + bg, rank
            )
        if cmd in self.wide_earliest:
            return self.wide_earliest[cmd]()
        if cmd == T.G_ACT:
            return self.gact_earliest(rank * self.G + bg, rank)
        # PREA / REF: rank-wide; PREA also obeys every bank's precharge gate
        t = max(self.nc[cmd], self.last_issue + 1, self.nr[cmd][rank])
        if cmd == T.PREA:
            base = rank * self.G * self.B
            nb = self.nb[T.PRE]
            for b in range(base, base + self.G * self.B):
                t = max(t, nb[b])
        return t

    def state_error(self, cmd: int, rank: int, bg: int, bank: int, row: int) -> str | None:
        """Why ``cmd`` is illegal in the current bank state, or None."""
        if cmd in (T.ACT, T.RD, T.WR, T.PRE):
            b = self._bank_id(rank, bg, bank)
            if cmd == T.ACT:
                if self.mem_row[b] != CLOSED:
                    return f"ACT to bank {b} with row {self.mem_row[b]} open"
                if not self.dual and self.pim_row[b] != CLOSED:
                    return f"ACT to bank {b} held by PIM (single row buffer)"
                if self.pim_row[b] == row:
                    return f"ACT to row {row} of bank {b}, open in the PIM buffer"
            elif cmd == T.PRE:
                if self.mem_row[b] == CLOSED:
                    return f"PRE to closed bank {b}"
            elif self.mem_row[b] != row:
                return f"{T.COMMANDS[cmd]} to row {row} of bank {b}, open row {self.mem_row[b]}"
        elif cmd == T.G_ACT:
            base = (rank * self.G + bg) * self.B
            for b in range(base, base + self.B):
                if self.pim_row[b] != CLOSED:
                    return f"G_ACT to bank {b} with PIM row {self.pim_row[b]} open"
                if not self.dual and self.mem_row[b] != CLOSED:
                    return f"G_ACT to bank {b} with MEM row open (single row buffer)"
                if self.mem_row[b] == row:
                    return f"G_ACT of row {row}, open in bank {b}'s MEM buffer"
        elif cmd in (T.PIM_GEMV, T.READRES):
            rows = set(self.pim_row)
            if len(rows) != 1 or CLOSED in rows:
                return f"{T.COMMANDS[cmd]} needs one PIM row open in every bank"
        elif cmd == T.REF:
            base = rank * self.G * self.B
            for b in range(base, base + self.G * self.B):
                if self.mem_row[b] != CLOSED or self.pim_row[b] != CLOSED:
                    return f"REF to rank {rank} with bank {b} open"
        return None

    def issue(
        self,
        cmd: int | str,
        rank: int = 0,
        bg: int = 0,
        bank: int = 0,
        row: int = 0,
        col: int = 0,
        at: int | None = None,
    ) -> int:
        """Issue ``cmd`` at cycle ``at`` (default: its earliest); raise HbmTimingError when
        that is before the earliest legal cycle or the bank state forbids it. For PIM_GEMV
        ``col`` is the number of COMPs k. Returns the issue cycle."""
        cmd = T.CMD[cmd] if isinstance(cmd, str) else cmd
        self._check_target(cmd, rank, bg, bank)
        e = self.earliest(cmd, rank, bg, bank)
        if at is None:
            at = e
        elif at < e:
            raise HbmTimingError(
                f"{T.COMMANDS[cmd]} at cycle {at} is early: earliest legal cycle is {e}"
            )
        err = self.state_error(cmd, rank, bg, bank, row)
        if err:
            raise HbmTimingError(f"cycle {at}: {err}")
        self._apply(cmd, rank, bg, bank, row, col, at)
        return at

    def _set_open(self, delta: int, t: int) -> None:
        before = self.open_count
        self.open_count += delta
        if before == 0 and self.open_count > 0:
            self.open_since = t
        elif before > 0 and self.open_count == 0:
            self.stats.active_cycles += t - self.open_since

    def _apply(self, cmd: int, rank: int, bg: int, bank: int, row: int, col: int, t: int) -> None:
        self.last_issue = t
        self.counts[cmd] += 1
        wide = cmd in T.CHANNEL_WIDE
        if wide:
            self.log.append((t, T.COMMANDS[cmd], -1, -1, -1, row, col))
        else:
            self.log.append((t, T.COMMANDS[cmd], rank, bg, bank, row, col))
        occ = T.occupancy(col, self.mem) if cmd == T.PIM_GEMV else 0
        if cmd == T.PIM_GEMV:
            self.comps += col
        g = rank * self.G + bg
        b = g * self.B + bank
        if cmd in self.fast_update:
            self.fast_update[cmd](t, b, g, rank)
            self._mem_state(cmd, rank, b, row, t)
            return
        if wide:
            self.wide_update[cmd](t, occ)
        elif cmd == T.G_ACT:
            self.gact_update(t, g, rank)
        if wide or cmd == T.G_ACT:
            w = self.data[cmd]
            if w is not None:
                self.bus_free = t + w[0] + w[1]
            self._pim_state(cmd, rank, g, row, t)
            return
        # PREA and REF (rank-wide; rare): straight from the table; "bank" means every bank
        rank_banks = range(rank * self.G * self.B, (rank + 1) * self.G * self.B)
        for scope, later, delay, _plus in self.upd[cmd]:
            v = t + delay
            if scope == "bank":
                arr = self.nb[later]
                for bb in rank_banks:
                    if v > arr[bb]:
                        arr[bb] = v
            elif scope == "channel":
                self.nc[later] = max(self.nc[later], v)
            elif scope == "bg":
                arr = self.ng[later]
                for gg in range(rank * self.G, (rank + 1) * self.G):
                    arr[gg] = max(arr[gg], v)
            else:
                self.nr[later][rank] = max(self.nr[later][rank], v)
        if cmd == T.PREA:
            for bb in rank_banks:
                if self.mem_row[bb] != CLOSED:
                    self.mem_row[bb] = CLOSED
                    self._set_open(-1, t)

    def _pim_state(self, cmd: int, rank: int, g: int, row: int, t: int) -> None:
        if cmd == T.G_ACT:
            acts = self.acts[rank]
            base = g * self.B
            for bb in range(base, base + self.B):
                acts.append(t)
                self.pim_row[bb] = row
            self._set_open(self.B, t)
        elif cmd == T.PIM_PRECHARGE:
            pr = self.pim_row
            closed = 0
            for bb in range(self.nbanks):
                if pr[bb] != CLOSED:
                    pr[bb] = CLOSED
                    closed += 1
            if closed:
                self._set_open(-closed, t)

    def _mem_state(self, cmd: int, rank: int, b: int, row: int, t: int) -> None:
        w = self.data[cmd]
        if w is not None:
            self.bus_free = t + w[0] + w[1]
        if cmd == T.ACT:
            self.acts[rank].append(t)
            self.mem_row[b] = row
            self._set_open(1, t)
        elif cmd == T.PRE:
            self.mem_row[b] = CLOSED
            self._set_open(-1, t)

    # ------------------------------------------------------------------ results
    def finish_stats(self, end: int) -> Stats:
        s = self.stats
        if self.open_count > 0:
            s.active_cycles += end - self.open_since
            self.open_since = end
        s.cycles = end
        s.commands = {T.COMMANDS[c]: n for c, n in enumerate(self.counts) if n}
        if self.comps:
            s.commands["COMP"] = self.comps
        return s

    def energy_j(self, stats: Stats) -> float:
        dur = stats.cycles * self.t.tck_ns * 1e-9
        frac = stats.active_cycles / stats.cycles if stats.cycles else 0.0
        return dram_energy_j(
            stats.commands,
            self.mem,
            dur,
            dual_row_buffer=self.dual,
            channels=1,
            active_fraction=min(1.0, frac),
        )


PREA_, REF_, G_ACT_ = T.PREA, T.REF, T.G_ACT


# ---------------------------------------------------------------------- controller


class Controller:
    """FR-FCFS controller with per-bank queues, open-page policy, a PIM queue served first
    and all-bank refresh every tREFI (NEUPIMS.md section 3, controller row)."""

    def __init__(self, channel: HbmChannel, *, queue_size: int | None = None):
        self.ch = channel
        self.mem = channel.mem
        self.queue_size = queue_size or self.mem.controller.transaction_queue
        if self.mem.controller.page_policy != "open":
            raise NeupimsError(
                f"memory config {self.mem.name!r}: controller.page_policy "
                f"{self.mem.controller.page_policy!r} is not modelled; use 'open' (NeuPIMs)"
            )
        self.ref_due = self.mem.timing.tREFI

    def run(self, requests: Sequence[Request], pim: Iterable[PimTile] = ()) -> Stats:
        """Serve ``requests`` (sorted by arrival) and the PIM tiles (in order) to the end.

        MEM candidates sit in a heap keyed (earliest cycle, priority, age). Earliest cycles
        only grow as commands issue, so a heap key is a lower bound: the top is re-evaluated
        and pushed back until it is exact, then it is the FR-FCFS choice (row hits before
        row opens at equal cycles, then the oldest request).
        """
        ch = self.ch
        t_ = self.mem.timing
        nbk = ch.nbanks
        B, G = ch.B, ch.G
        reqs = list(requests)
        pim = list(pim)
        if pim and not self.mem.pim.enabled:
            raise NeupimsError(f"memory config {self.mem.name!r}: pim.enabled is false")
        n = len(reqs)
        r_row = [r.row for r in reqs]
        r_write = [r.write for r in reqs]
        r_arr = [r.arrival for r in reqs]
        qbank = [ch._bank_id(r.rank, r.bg, r.bank) for r in reqs]
        status = [0] * n  # 0 hit, 1 miss, 2 conflict
        queues: list[list[int]] = [[] for _ in range(nbk)]
        version = [0] * nbk
        heap: list[tuple[int, int, int, int, int]] = []
        queued = 0
        nxt = 0
        pim_cmds: deque = deque()
        tiles = deque(pim)
        in_tile = False
        tile_row = CLOSED
        lane = -1  # bank whose candidate changed by its own last command
        gact_pending = [0] * ch.R  # G_ACTs of the tile in progress not yet issued, per rank
        r_where = [(r.rank, r.bg, r.bank, r.row, r.col) for r in reqs]  # log fields
        n_status = [0, 0, 0]  # served requests that were row hits, misses, conflicts
        n_reads = n_writes = lat_sum = last_done = 0
        refreshing: deque | None = None
        end = 0
        stats = ch.stats
        RD, WR, ACT, PRE = T.RD, T.WR, T.ACT, T.PRE
        fe = ch.fast_earliest
        e_rd, e_wr, e_act, e_pre = fe[RD], fe[WR], fe[ACT], fe[PRE]
        mem_row, pim_row = ch.mem_row, ch.pim_row
        cl, burst, cwl = t_.CL, ch.mem.burst_cycles, t_.CWL
        dual = ch.dual
        qsize = self.queue_size
        rank_of = [b // (G * B) for b in range(nbk)]
        group_of = [b // B for b in range(nbk)]
        apply_fast = ch.fast_update
        log = ch.log
        counts = ch.counts
        names = T.COMMANDS
        push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace

        def decide(b):
            """FR-FCFS candidate of bank b: (cmd, request, priority) or None."""
            q = queues[b]
            open_row = mem_row[b]
            if open_row != CLOSED:
                for i in q:
                    if r_row[i] == open_row:
                        return (WR if r_write[i] else RD), i, 1
                return PRE, q[0], 2
            i = q[0]
            row = r_row[i]
            if pim_row[b] == row or (in_tile and row == tile_row):
                return None  # the row is held by PIM: wait for its precharge
            if gact_pending[rank_of[b]]:
                return None  # PIM priority: the tile's G_ACTs get this rank's tFAW window
            return ACT, i, 2

        efun = [None] * len(T.COMMANDS)
        efun[RD], efun[WR], efun[ACT], efun[PRE] = e_rd, e_wr, e_act, e_pre

        def earliest_of(cmd, b):
            return efun[cmd](b, group_of[b], rank_of[b])

        def refresh_bank(b):
            version[b] += 1
            if queues[b]:
                c = decide(b)
                if c is not None:
                    push(heap, (earliest_of(c[0], b), c[2], c[1], version[b], b))

        def unissued(cand):
            """A chosen MEM candidate that does not issue now goes (back) into the heap."""
            te, c, req, b = cand
            version[b] += 1
            push(heap, (te, 1 if c in (RD, WR) else 2, req, version[b], b))

        def refresh_all():
            for b in range(nbk):
                if queues[b]:
                    refresh_bank(b)

        while True:
            # admit arrivals
            while nxt < n and queued < qsize and r_arr[nxt] <= ch.last_issue + 1:
                b = qbank[nxt]
                q = queues[b]
                q.append(nxt)
                queued += 1
                nxt += 1
                # a younger request changes the bank's FR-FCFS candidate only if the queue was
                # empty or it is the first hit to the open row; otherwise the bank keeps its
                # heap entry (or is the fast lane, or waits for a PIM precharge)
                if len(q) == 1:
                    refresh_bank(b)
                else:
                    orow = mem_row[b]
                    if (
                        r_row[q[-1]] == orow
                        and r_row[q[0]] != orow
                        and all(r_row[i] != orow for i in q[1:-1])
                    ):
                        refresh_bank(b)
            pim_busy = bool(tiles or pim_cmds)
            if not (queued or pim_busy or nxt < n or refreshing):
                break
            # ---- refresh in progress: only its commands (the current tile has finished)
            if refreshing is not None:
                cmd, r = refreshing.popleft()
                skip = (
                    cmd == T.PREA
                    and all(mem_row[x] == CLOSED for x in range(r * G * B, (r + 1) * G * B))
                ) or (cmd == T.PIM_PRECHARGE and all(x == CLOSED for x in pim_row))
                if not skip:
                    at = ch.earliest(cmd, r)
                    ch._apply(cmd, r, 0, 0, 0, 0, at)
                    end = max(end, at + 1)
                if not refreshing:
                    refreshing = None
                    self.ref_due += t_.tREFI
                    refresh_all()
                continue
            # ---- PIM candidate
            pim_t = None
            while pim_cmds and pim_cmds[0][0] == PRE:
                x = pim_cmds[0]  # a PRE queued to free the tile's row: still needed?
                if mem_row[ch._bank_id(x[1], x[2], x[3])] == x[4]:
                    break
                pim_cmds.popleft()
            if pim_busy:
                if pim_cmds:
                    c, r, g, bk, row, col = pim_cmds[0]
                    pim_t = ch.earliest(c, r, g, bk, col)
                else:
                    pim_t = ch.earliest(T.P_HEADER)
            # ---- MEM candidate: make the heap top exact
            best = None
            lane_key = None  # the lane bank's exact (key, cmd, request, bank), outside the heap
            if lane >= 0:
                # fast lane: the bank that just issued competes from outside the heap, so a
                # run of its row hits needs no heap traffic
                b = lane
                lane = -1
                if queues[b] and (dual or not pim_busy):
                    c = decide(b)
                    if c is not None:
                        te = efun[c[0]](b, group_of[b], rank_of[b])
                        lane_key = ((te, c[2], c[1]), c[0], b)
            if queued and (dual or not pim_busy):
                while heap:
                    t0, p0, i0, v0, b = heap[0]
                    if v0 != version[b] or not queues[b]:
                        pop(heap)
                        continue
                    if lane_key is not None and lane_key[0] < (t0, p0, i0):
                        break  # every heap key is a lower bound: the lane wins
                    c = decide(b)
                    if c is None:
                        pop(heap)
                        continue
                    te = earliest_of(c[0], b)
                    if (te, c[2], c[1]) != (t0, p0, i0):
                        replace(heap, (te, c[2], c[1], v0, b))
                        continue
                    best = (te, c[0], c[1], b)
                    break
            if best is None and lane_key is not None:
                (te, _p, req), c, b = lane_key
                best = (te, c, req, b)
                lane_key = None
            if lane_key is not None:  # lost to a heap entry: back into the heap
                (te, p_, req), _c, b = lane_key
                version[b] += 1
                push(heap, (te, p_, req, version[b], b))
            best_t = best[0] if best is not None else None
            if pim_t is not None and (best_t is None or pim_t <= best_t):
                if best is not None:
                    unissued(best)
                best_t, best = pim_t, None
            # an arrival before the chosen command is admitted first
            if nxt < n and queued < qsize:
                arr = r_arr[nxt]
                if best_t is None or arr < best_t:
                    if best is not None:
                        unissued(best)
                    if arr - 1 > ch.last_issue:
                        ch.last_issue = arr - 1
                    continue
            if best_t is None:
                raise HbmTimingError("controller stalled with work queued")  # pragma: no cover
            # refresh due: finish the tile in progress, then refresh
            if ch.refresh and best_t >= self.ref_due:
                if in_tile:
                    if best is not None:  # hold normal traffic until the tile is done
                        unissued(best)
                        c, r, g, bk, row, col = pim_cmds[0]
                        best_t = ch.earliest(c, r, g, bk, col)
                        best = None
                else:
                    if best is not None:
                        unissued(best)
                    refreshing = deque(
                        [(T.PREA, r) for r in range(ch.R)]
                        + [(T.PIM_PRECHARGE, 0)]
                        + [(T.REF, r) for r in range(ch.R)]
                    )
                    continue
            if best is None:  # PIM command
                if not pim_cmds:
                    tile = tiles.popleft()
                    self._expand(tile, pim_cmds)
                    if not tiles:  # release the banks after the last tile
                        pim_cmds.append((T.PIM_PRECHARGE, 0, 0, 0, 0, 0))
                    for x in pim_cmds:
                        if x[0] == T.G_ACT:
                            gact_pending[x[1]] += 1
                    tile_row = tile.row
                    in_tile = True
                c, r, g, bk, row, col = pim_cmds.popleft()
                at = best_t  # its earliest cycle, computed above on the same state
                ch._apply(c, r, g, bk, row, col, at)
                if c == PRE:
                    refresh_bank(ch._bank_id(r, g, bk))
                elif c == T.G_ACT:
                    gact_pending[r] -= 1
                    if not gact_pending[r]:  # the rank's held ACTs may go again
                        for x in range(r * G * B, (r + 1) * G * B):
                            if queues[x]:
                                refresh_bank(x)
                if not pim_cmds:
                    in_tile = False
                if c == T.PIM_PRECHARGE or not pim_cmds:
                    refresh_all()
                end = max(end, at + self._tail(c))
                continue
            # ---- MEM command (inlined HbmChannel._apply for the four bank commands)
            at, cmd, req, b = best
            version[b] += 1  # its heap entries are stale now; the fast lane takes over
            ch.last_issue = at
            counts[cmd] += 1
            if cmd == RD or cmd == WR:
                log.append((at, names[cmd], *r_where[req]))
                apply_fast[cmd](at, b, group_of[b], rank_of[b])
                q = queues[b]
                q.remove(req)
                queued -= 1
                n_status[status[req]] += 1
                if cmd == RD:
                    done = at + cl + burst
                    n_reads += 1
                    lat_sum += done - r_arr[req]
                else:
                    done = at + cwl + burst
                    n_writes += 1
                ch.bus_free = done
                if done > last_done:
                    last_done = done
                if q:
                    lane = b
                continue
            rank = rank_of[b]
            w = r_where[req]
            if cmd == ACT:
                log.append((at, "ACT", *w))
                apply_fast[cmd](at, b, group_of[b], rank)
                ch.acts[rank].append(at)
                mem_row[b] = w[3]
                ch._set_open(1, at)
                if status[req] < 1:
                    status[req] = 1
            else:  # PRE logs the row it closes
                log.append((at, "PRE", w[0], w[1], w[2], mem_row[b], w[4]))
                apply_fast[cmd](at, b, group_of[b], rank)
                mem_row[b] = CLOSED
                ch._set_open(-1, at)
                status[req] = 2
            lane = b
        stats.row_hits, stats.row_misses, stats.row_conflicts = n_status
        stats.reads, stats.writes, stats.read_latency_sum = n_reads, n_writes, lat_sum
        stats.last_request_done = last_done
        end = max(end, last_done)
        return ch.finish_stats(max(end, ch.last_issue + 1))

    def _tail(self, cmd: int) -> int:
        w = self.ch.data[cmd]
        return w[0] + w[1] if w else 1

    def _expand(self, tile: PimTile, out: deque) -> None:
        """Commands of one tile GEMV in issue order (module docstring of neupims.devices.pim)."""
        ch = self.ch
        out.append((T.P_HEADER, 0, 0, 0, tile.row, 0))
        if tile.gwrite:
            out.append((T.GWRITE, 0, 0, 0, tile.row, 0))
        if any(r != CLOSED for r in ch.pim_row):
            out.append((T.PIM_PRECHARGE, 0, 0, 0, 0, 0))
        for b in range(ch.nbanks):  # MEM rows that must close first
            mr = ch.mem_row[b]
            if mr != CLOSED and (not ch.dual or mr == tile.row):
                r, rem = divmod(b, ch.G * ch.B)
                g, bk = divmod(rem, ch.B)
                out.append((T.PRE, r, g, bk, mr, 0))
        for g in range(ch.G):
            for r in range(ch.R):
                out.append((T.G_ACT, r, g, 0, tile.row, 0))
        out.append((T.PIM_GEMV, 0, 0, 0, tile.row, tile.k))
        for _ in range(tile.n_results):
            out.append((T.READRES, 0, 0, 0, tile.row, 0))


# ---------------------------------------------------------------------- patterns


def stream_requests(n: int, mem, *, write: bool = False, start_row: int = 0) -> list[Request]:
    """``n`` sequential 64 B accesses of channel 0, all queued at cycle 0: the channel-0
    addresses in increasing order under the configured address map (mixed radix over the
    map's fields without ``ch``), starting at row ``start_row``."""
    o = mem.organization
    mapping = mem.controller.address_mapping
    decode_address(0, mem)  # validates the mapping
    sizes = {
        "ro": o.rows,
        "ra": o.ranks,
        "bg": o.bank_groups,
        "ba": o.banks_per_group,
        "co": mem.page_bytes // mem.access_bytes,
    }
    fields = [mapping[i : i + 2] for i in range(0, len(mapping), 2) if mapping[i : i + 2] != "ch"]
    below_row = 1
    for f in fields[fields.index("ro") + 1 :]:
        below_row *= sizes[f]
    out = []
    for i in range(n):
        v = i + start_row * below_row if fields[0] == "ro" else i
        val = {}
        for f in reversed(fields):
            val[f] = v % sizes[f]
            v //= sizes[f]
        row = (val["ro"] + (0 if fields[0] == "ro" else start_row)) % o.rows
        out.append(Request(0, write, val["ra"], val["bg"], val["ba"], row, val["co"]))
    return out


def random_requests(
    n: int,
    mem,
    *,
    seed: int = 0,
    write_fraction: float = 0.0,
    rows: int | None = None,
    interval: int = 0,
) -> list[Request]:
    """``n`` accesses to uniformly random banks, rows (< ``rows``) and columns of one
    channel; arrivals every ``interval`` cycles (0: all queued at cycle 0). Seeded."""
    import random

    rng = random.Random(seed)
    o = mem.organization
    nrows = rows or o.rows
    ncol = mem.page_bytes // mem.access_bytes
    return [
        Request(
            i * interval,
            rng.random() < write_fraction,
            rng.randrange(o.ranks),
            rng.randrange(o.bank_groups),
            rng.randrange(o.banks_per_group),
            rng.randrange(nrows),
            rng.randrange(ncol),
        )
        for i in range(n)
    ]


def tiles_of(groups, *, first_row: int = 0) -> list[PimTile]:
    """Expand :class:`neupims.devices.pim.TileGroup` lists into tiles on consecutive rows."""
    out = []
    row = first_row
    for grp in groups:
        for _ in range(grp.count):
            for j in range(grp.tiles):
                out.append(PimTile(row, grp.k, grp.n_results, j == 0))
                row += 1
    return out


def simulate(
    mem, requests=(), tiles=(), *, dual_row_buffer: bool | None = None, refresh: bool = True
) -> tuple[Stats, HbmChannel]:
    """Run one channel to completion; returns its statistics and the channel (with log)."""
    ch = HbmChannel(mem, dual_row_buffer=dual_row_buffer, refresh=refresh)
    stats = Controller(ch).run(requests, tiles)
    return stats, ch
