"""Command-level model of one HBM(-PIM) channel: banks with MEM and PIM row buffers, a
timing-checked command issue API, and an FR-FCFS controller with a PIM queue.

Units: cycles of ``mem.timing.tck_ns``. Facts: docs/sources/neupims.md §3-§6; the
timing table is :func:`neupims.devices.hbm_timing.rules`.

Speed: time is never ticked. Every (command, bank / bank group / rank / channel) keeps the
earliest cycle it may issue as a plain int; a command's earliest legal cycle is the max of
those, the tFAW window, the data bus and the command bus (one command per cycle). Those
maxima and their updates are generated once per config as straight-line Python with the
gaps as constants (``HbmChannel._compile``). The controller picks the candidate with the
smallest earliest cycle (ties: PIM first, then row hits, then the oldest) and jumps there;
normal-request candidates sit in a heap of lower-bound keys re-evaluated lazily (an entry
carries its command, so re-keying needs no FR-FCFS re-decision), the bank that just issued
competes outside it (its row-hit runs cost no heap traffic), and the PIM queue head keeps a
lower bound too, timed only when it could win. The hot state (last issue, data bus) lives in
the controller's locals, and the compiled generated code is cached per config. Schedules are
pinned by tests/test_hbm_golden.py: speed work may not change a single command.
Every run (normal requests, PIM tiles, or both) goes through the same algorithm compiled
with numba (:mod:`neupims.devices.hbm_jit`, ``USE_JIT``; ``NEUPIMS_NO_JIT=1`` turns it off),
which gives identical logs (tests/test_hbm_jit.py).

Row buffers: each bank has a MEM row buffer (ACT/RD/WR/PRE). With ``dual_row_buffer`` it
also has a PIM row buffer (G_ACT/PIM_GEMV/READRES/PIM_PRECHARGE) with its own open row; a
row may not be open in both. Without (Newton, blocked mode) one buffer serves both, and
the controller holds normal requests back while PIM work is queued. Blocked mode also uses
Newton's command set (:mod:`neupims.devices.hbm_timing`): a tile closes rows with PREA per
rank, copies its vector's row with ACT + GWRITE + PRE through the one buffer, and issues its
COMPs one by one with a READRES per result (:meth:`Controller._expand`).
"""

from __future__ import annotations

import functools
import gc
import heapq
import math
import os
import random
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np

from neupims.devices import hbm_jit
from neupims.devices import hbm_timing as T
from neupims.devices.dram import dram_energy_j
from neupims.errors import ConfigError, NeupimsError

CLOSED = -1

#: Runs (normal requests and PIM tiles alike) go through the compiled kernel of
#: :mod:`neupims.devices.hbm_jit` when numba is importable; ``NEUPIMS_NO_JIT=1``
#: (or setting this to False) keeps every run on the pure-Python controller. Both give
#: identical command logs (tests/test_hbm_jit.py).
USE_JIT = os.environ.get("NEUPIMS_NO_JIT", "") in ("", "0")


def _jit_module():
    """The compiled kernel module (numba is a dependency of the package)."""
    return hbm_jit


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


@functools.lru_cache(maxsize=256)
def _compiled(src: str):
    """Code object of generated source; cached, since every channel of a config generates
    the same text and compiling it costs milliseconds per channel."""
    return compile(src, "<hbm_channel generated>", "exec")


def _run_generated(lines: list[str], ns: dict) -> None:
    """Define the generated functions in ``lines`` in namespace ``ns``."""
    exec(_compiled("\n".join(lines)), ns)  # noqa: S102 - source generated by _compile


def _needed_rules(rules):
    """The rules of one bank command that the generated update must apply. Left out, with
    no change to any earliest cycle: a gap of at most 1 cycle without occupancy (the command
    bus already puts every later command at least 1 cycle after this one), and a rank-wide
    PREA gate that a bank PRE gate of the same command covers (the earliest PREA is taken
    over every bank's PRE gate of its rank, :meth:`HbmChannel.earliest`)."""
    pre = [d for scope, later, d, _ in rules if scope == "bank" and later == T.PRE]
    out = []
    for scope, later, delay, occ in rules:
        if delay <= 1 and not occ:
            continue
        if scope == "rank" and later == T.PREA and any(d >= delay for d in pre):
            continue
        out.append((scope, later, delay, occ))
    return out


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
        vr, vg, vb, self.vec_row = T.vector_bank(mem)
        self.vec = (vr, vg, vb)  # blocked mode: the bank a GWRITE copies its row from
        self._compile(T.rules(mem, self.dual))

    # ------------------------------------------------------------------ bookkeeping
    def _compile(self, table) -> None:
        """Keep the table, and generate straight-line Python for the hot path: per bank
        command (ACT/RD/WR/PRE) an ``earliest`` and an ``update`` function with the gaps as
        constants (a plain loop over the table costs several times more per command)."""
        self.upd = table
        n = len(T.COMMANDS)
        ns = {"nb": self.nb, "ng": self.ng, "nr": self.nr, "nc": self.nc, "ch": self}
        # each command's arrays bound as names of their own (one index less per access)
        for c in range(n):
            ns[f"nb_{c}"], ns[f"ng_{c}"], ns[f"nr_{c}"] = self.nb[c], self.ng[c], self.nr[c]
        ns["acts"] = self.acts
        B, GB = self.B, self.G * self.B
        self.fast_earliest = {}
        self.fast_update = {}
        for c in (T.ACT, T.RD, T.WR, T.PRE):
            # e_c(b, lo, bus): lo = last issue + 1 (command bus), bus = cycle the data bus frees
            w = self.data[c]
            lines = [f"def e_{c}(b, lo, bus):", f"    t = nc[{c}]", "    if lo > t: t = lo"]
            if w is not None:
                lines += [f"    x = bus - {w[0]}", "    if x > t: t = x"]
            lines += [
                f"    x = nb_{c}[b]",
                "    if x > t: t = x",
                f"    x = ng_{c}[b // {B}]",
                "    if x > t: t = x",
                f"    x = nr_{c}[b // {GB}]",
                "    if x > t: t = x",
            ]
            if c == T.ACT:
                lines += [
                    f"    a = acts[b // {GB}]",
                    "    if len(a) == 4:",
                    f"        x = a[0] + {self.tfaw}",
                    "        if x > t: t = x",
                ]
            lines.append("    return t")
            upd = [f"def u_{c}(t, b):", f"    g = b // {B}", f"    r = b // {GB}"]
            for scope, later, delay, _occ in _needed_rules(table[c]):
                ref = {
                    "bank": f"nb_{later}[b]",
                    "bg": f"ng_{later}[g]",
                    "rank": f"nr_{later}[r]",
                    "channel": f"nc[{later}]",
                }[scope]
                upd += [f"    v = t + {delay}", f"    if v > {ref}: {ref} = v"]
            _run_generated(lines + upd, ns)
            self.fast_earliest[c] = ns[f"e_{c}"]
            self.fast_update[c] = ns[f"u_{c}"]
        # channel-wide PIM commands: every scope of their rules is the whole channel
        self.wide_earliest = {}
        self.wide_update = {}
        self.wide_bank_rules = {}
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
            # "bank" rules apply to the bank the command names (a blocked-mode GWRITE):
            # HbmChannel._apply; every other scope is the whole channel
            self.wide_bank_rules[c] = [(lt, d) for sc, lt, d, _ in table[c] if sc == "bank"]
            for _scope, later, delay, occ in table[c]:
                if _scope == "bank":
                    continue
                upd += [
                    f"    v = t + {delay}" + (" + occ" if occ else ""),
                    f"    if v > nc[{later}]: nc[{later}] = v",
                ]
            if len(upd) == 1:
                upd.append("    pass")
            _run_generated(lines + upd, ns)
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
        _run_generated(lines + upd, ns)
        self.gact_earliest, self.gact_update = ns["ge"], ns["gu"]

    def _bank_id(self, rank: int, bg: int, bank: int) -> int:
        return (rank * self.G + bg) * self.B + bank

    def _check_target(self, cmd: int, rank: int, bg: int, bank: int) -> None:
        if cmd in T.CHANNEL_WIDE and not (cmd == T.GWRITE and not self.dual):
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
                (rank * self.G + bg) * self.B + bank, self.last_issue + 1, self.bus_free
            )
        if cmd in self.wide_earliest:
            t = self.wide_earliest[cmd]()
            if cmd == T.GWRITE and not self.dual:  # blocked: its row's ACT -> GWRITE gate
                t = max(t, self.nb[cmd][(rank * self.G + bg) * self.B + bank])
            return t
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
        elif cmd in (T.PIM_GEMV, T.PIM_PRECHARGE) and not self.dual:
            return f"{T.COMMANDS[cmd]} is not a Newton command (single row buffer)"
        elif cmd == T.GWRITE and not self.dual:
            b = self._bank_id(rank, bg, bank)
            if self.mem_row[b] != row:
                return (
                    f"GWRITE of row {row} of bank {b}: its row must be open in the (single) "
                    f"row buffer, open row {self.mem_row[b]}"
                )
        if cmd in (T.PIM_GEMV, T.READRES, T.COMP):
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
        if cmd == G_ACT_:  # the B banks of one group open ``row`` in their PIM buffers
            self.log.append((t, "G_ACT", rank, bg, bank, row, col))
            g = rank * self.G + bg
            self.gact_update(t, g, rank)
            B = self.B
            self.acts[rank].extend([t] * B)  # B activations under tFAW
            self.pim_row[g * B : (g + 1) * B] = [row] * B
            self._set_open(B, t)
            return
        if cmd in T.CHANNEL_WIDE:
            occ = 0
            if cmd == T.PIM_GEMV:
                occ = T.occupancy(col, self.mem)
                self.comps += col
            elif cmd == T.COMP:
                occ = T.comp_occupancy(col, self.mem)
            if cmd == T.GWRITE and not self.dual:  # blocked: it names its row's bank
                self.log.append((t, "GWRITE", rank, bg, bank, row, col))
                b = (rank * self.G + bg) * self.B + bank
                for later, delay in self.wide_bank_rules[cmd]:
                    if t + delay > self.nb[later][b]:
                        self.nb[later][b] = t + delay
            else:
                self.log.append((t, T.COMMANDS[cmd], -1, -1, -1, row, col))
            self.wide_update[cmd](t, occ)
            w = self.data[cmd]
            if w is not None:
                self.bus_free = t + w[0] + w[1]
            if cmd == T.PIM_PRECHARGE:
                self._close_pim_rows(t)
            return
        self.log.append((t, T.COMMANDS[cmd], rank, bg, bank, row, col))
        if cmd in self.fast_update:
            b = (rank * self.G + bg) * self.B + bank
            self.fast_update[cmd](t, b)
            self._mem_state(cmd, rank, b, row, t)
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
                if not self.dual and self.pim_row[bb] != CLOSED:  # one buffer: closes G_ACT rows
                    self.pim_row[bb] = CLOSED
                    self._set_open(-1, t)

    def _close_pim_rows(self, t: int) -> None:
        """PIM_PRECHARGE: every bank's PIM row buffer closes."""
        pr = self.pim_row
        closed = len(pr) - pr.count(CLOSED)
        if closed:
            pr[:] = [CLOSED] * len(pr)
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
    and refresh (docs/sources/neupims.md §3, controller row): all-bank every tREFI by
    default, or as ``controller.refresh`` says, rank-staggered and / or with the PIM
    refresh-deadline guard (the general refresh path, docs/hbm_pim.md "Refresh policies").
    ``controller.queue_structure`` sets which requests the scheduler sees: up to
    ``transaction_queue`` in all bank queues (shared) or ``command_queue`` per bank."""

    def __init__(self, channel: HbmChannel, *, queue_size: int | None = None):
        self.ch = channel
        self.mem = channel.mem
        cfg = self.mem.controller
        #: per_bank (NewtonSim / DRAMsim3): each bank's command queue holds up to
        #: ``command_queue`` requests, admitted in arrival order; shared (default): up to
        #: ``transaction_queue`` requests in all bank queues together
        self.bank_cap = cfg.command_queue if cfg.queue_structure == "per_bank" else 0
        if queue_size:
            self.queue_size = queue_size
        elif self.bank_cap:
            self.queue_size = channel.nbanks * self.bank_cap
        else:
            self.queue_size = cfg.transaction_queue
        if self.mem.controller.page_policy != "open":
            raise NeupimsError(
                f"memory config {self.mem.name!r}: controller.page_policy "
                f"{self.mem.controller.page_policy!r} is not modelled; use 'open' (NeuPIMs)"
            )
        ref = self.mem.controller.refresh
        o = self.mem.organization
        #: the historical all-bank refresh (one code path, golden logs) unless the config asks
        #: for rank-staggered refresh or the PIM deadline guard; those share the general path
        self.ref_general = ref.policy == "rank_staggered" or ref.pim_deadline_guard
        self.ref_interval = self.mem.refresh_interval  # cycles between refresh insertions
        self.ref_group = 1 if ref.policy == "rank_staggered" else o.ranks  # ranks per refresh
        self.guard = ref.pim_deadline_guard
        self.ref_due = self.ref_interval  # next refresh insertion (legacy: tREFI, the same)
        self.ref_rank = 0  # first rank of the next refresh (rank_staggered: 0, 1, 0, ...)

    def run(self, requests: Sequence[Request], pim: Iterable[PimTile] = ()) -> Stats:
        """Serve ``requests`` (sorted by arrival) and the PIM tiles (in order) to the end.

        The cyclic garbage collector is paused meanwhile: the run allocates a tuple or two per
        command and builds no reference cycles, and the collector's passes over the growing
        log cost 5-15 % of the run (measured with benchmarks/bench_memsim.py).
        """
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return self._run(requests, pim)
        finally:
            if was_enabled:
                gc.enable()

    def _run(self, requests: Sequence[Request], pim: Iterable[PimTile]) -> Stats:
        """Serve ``requests`` (sorted by arrival) and the PIM tiles (in order) to the end.

        MEM candidates sit in a heap keyed (earliest cycle, priority, age). Earliest cycles
        only grow as commands issue, so a heap key is a lower bound: the top is re-evaluated
        and pushed back until it is exact, then it is the FR-FCFS choice (row hits before
        row opens at equal cycles, then the oldest request). The PIM queue's head keeps a
        lower bound the same way and is evaluated only when it could win.

        The hot state (last issue cycle, cycle the data bus frees, next refresh) lives in
        locals and is written back to the channel around the rarer PIM/refresh commands,
        which go through :meth:`HbmChannel.earliest` and :meth:`HbmChannel._apply`.
        """
        ch = self.ch
        t_ = self.mem.timing
        nbk = ch.nbanks
        B, G = ch.B, ch.G
        reqs = list(requests)
        pim = list(pim)
        if pim and not self.mem.pim.enabled:
            raise NeupimsError(f"memory config {self.mem.name!r}: pim.enabled is false")
        # the compiled kernel takes every run; its G_ACT reads the tFAW window B - 1 back,
        # which needs B <= 4 (the window holds 4)
        if USE_JIT and (not pim or ch.B <= 4):
            jit = _jit_module()
            if jit is not None:
                return self._run_jit(jit, reqs, pim)
        n = len(reqs)
        # per request: its RD/WR log entry less the cycle (rank, bank group, bank, row, column
        # at 1..5), row, write flag, arrival and bank
        r_log = [("WR" if r.write else "RD", r.rank, r.bg, r.bank, r.row, r.col) for r in reqs]
        r_row = list(map(attrgetter("row"), reqs))
        r_write = list(map(attrgetter("write"), reqs))
        r_arr = list(map(attrgetter("arrival"), reqs))
        qbank = [(r.rank * G + r.bg) * B + r.bank for r in reqs]
        status = [0] * n  # 0 hit, 1 miss, 2 conflict
        queues: list[list[int]] = [[] for _ in range(nbk)]
        version = [0] * nbk
        heap: list[
            tuple[int, int, int, int, int, int]
        ] = []  # (key, priority, request, version, bank, command)
        queued = 0
        nxt = 0
        pim_cmds: deque = deque()
        tiles = deque(pim)
        in_tile = False
        tile_row = CLOSED
        pim_hold = any(x != CLOSED for x in ch.pim_row)  # in a tile or a PIM row open
        lane = -1  # bank whose candidate changed by its own last command
        gact_pending = [0] * ch.R  # G_ACTs of the tile in progress not yet issued, per rank
        n_status = [0, 0, 0]  # served requests that were row hits, misses, conflicts
        n_reads = n_writes = lat_sum = last_done = 0
        refreshing: deque | None = None
        end = 0
        stats = ch.stats
        RD, WR, ACT, PRE = T.RD, T.WR, T.ACT, T.PRE
        mem_row, pim_row = ch.mem_row, ch.pim_row
        cl, burst, cwl = t_.CL, ch.mem.burst_cycles, t_.CWL
        dual = ch.dual
        qsize = self.queue_size
        bank_cap = self.bank_cap
        rank_of = [b // (G * B) for b in range(nbk)]
        efun = [None] * len(T.COMMANDS)  # generated earliest(b, lo, bus) per bank command
        ufun = [None] * len(T.COMMANDS)  # generated update(t, b) per bank command
        for c in (RD, WR, ACT, PRE):
            efun[c], ufun[c] = ch.fast_earliest[c], ch.fast_update[c]
        acts = ch.acts
        wide_earliest = ch.wide_earliest
        log = ch.log
        counts = ch.counts
        push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
        last, bus = ch.last_issue, ch.bus_free  # written back before ch.earliest / ch._apply
        gen = self.ref_general and ch.refresh  # the general refresh path
        ref_due = self.ref_due if ch.refresh and not gen else math.inf  # legacy all-bank
        gdue = self.ref_due  # general path: next refresh insertion
        ref_rank = self.ref_rank
        ref_pend = False  # general path: a refresh inserted and not yet done
        held = [False] * ch.R  # ranks whose normal commands wait for the pending refresh
        ref_done = 0  # REFs of the pending refresh issued
        group = self.ref_group
        interval = self.ref_interval
        guard = self.guard and gen
        skip = False  # the guard idles the PIM queue until the pending refresh's REF
        guard_est = functools.partial(T.guard_estimate, self.mem, dual=dual)
        pim_lb = 0  # lower bound of the PIM queue head's earliest cycle (0: unknown)

        def next_ref():
            """The pending refresh's next command: PREA of a group rank with a MEM row open
            (blocked mode: any row, its one buffer), PIM_PRECHARGE while a group rank's bank
            holds a PIM row, then REF per rank."""
            ranks = [(ref_rank + i) % ch.R for i in range(group)]
            for r in ranks:
                if any(
                    mem_row[x] != CLOSED or (not dual and pim_row[x] != CLOSED)
                    for x in range(r * G * B, (r + 1) * G * B)
                ):
                    return T.PREA, r
            for r in ranks:
                if any(pim_row[x] != CLOSED for x in range(r * G * B, (r + 1) * G * B)):
                    return T.PIM_PRECHARGE, 0
            return T.REF, ranks[ref_done]

        def decide(b):
            """FR-FCFS candidate of bank b: (cmd, request, priority) or None."""
            if ref_pend and held[rank_of[b]]:
                return None  # its rank is being refreshed
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

        def refresh_bank(b, lo, bus):
            version[b] += 1
            if queues[b]:
                c = decide(b)
                if c is not None:
                    push(heap, (efun[c[0]](b, lo, bus), c[2], c[1], version[b], b, c[0]))

        def unissued(te, c, req, b):
            """A chosen MEM candidate that does not issue now goes (back) into the heap."""
            version[b] += 1
            push(heap, (te, 1 if c in (RD, WR) else 2, req, version[b], b, c))

        def refresh_all(lo, bus):
            for b in range(nbk):
                if queues[b]:
                    refresh_bank(b, lo, bus)

        while True:
            lo = last + 1  # the command bus: one command per cycle
            # admit arrivals
            while nxt < n and queued < qsize and r_arr[nxt] <= lo:
                b = qbank[nxt]
                q = queues[b]
                if bank_cap and len(q) >= bank_cap:
                    break  # in arrival order: the head waits for room in its bank's queue
                q.append(nxt)
                queued += 1
                nxt += 1
                # a younger request changes the bank's FR-FCFS candidate only if the queue was
                # empty or it is the first hit to the open row; otherwise the bank keeps its
                # heap entry (or is the fast lane, or waits for a PIM precharge)
                if len(q) == 1:
                    refresh_bank(b, lo, bus)
                else:
                    orow = mem_row[b]
                    if (
                        r_row[q[-1]] == orow
                        and r_row[q[0]] != orow
                        and all(r_row[i] != orow for i in q[1:-1])
                    ):
                        refresh_bank(b, lo, bus)
            pim_busy = tiles or pim_cmds  # truthy while PIM work remains
            if not (queued or pim_busy or nxt < n or refreshing):
                break
            # ---- refresh in progress: only its commands (the current tile has finished)
            if refreshing is not None:
                cmd, r = refreshing.popleft()
                skip = (
                    cmd == T.PREA
                    and all(
                        mem_row[x] == CLOSED and (dual or pim_row[x] == CLOSED)
                        for x in range(r * G * B, (r + 1) * G * B)
                    )
                ) or (cmd == T.PIM_PRECHARGE and all(x == CLOSED for x in pim_row))
                if not skip:
                    ch.last_issue, ch.bus_free = last, bus
                    at = ch.earliest(cmd, r)
                    ch._apply(cmd, r, 0, 0, 0, 0, at)
                    pim_hold = in_tile or pim_row.count(CLOSED) != nbk
                    last, bus = ch.last_issue, ch.bus_free
                    end = max(end, at + 1)
                if not refreshing:
                    refreshing = None
                    self.ref_due += t_.tREFI
                    ref_due = self.ref_due
                    refresh_all(last + 1, bus)
                continue
            # ---- PIM queue head: a PRE queued to free the tile's row may no longer be needed
            while pim_cmds and pim_cmds[0][0] == PRE:
                x = pim_cmds[0]
                if mem_row[ch._bank_id(x[1], x[2], x[3])] == x[4]:
                    break
                pim_cmds.popleft()
                pim_lb = 0
            # ---- MEM candidate: the chosen one is (bt, bc, bi, bb) = cycle, command,
            # request, bank; kind 0: none yet, 1: MEM, 2: PIM
            kind = 0
            lane_ok = False  # the lane bank's exact (lt, lp, li) with command lc, outside the heap
            if lane >= 0:
                # fast lane: the bank that just issued competes from outside the heap, so a
                # run of its row hits needs no heap traffic
                lb = lane
                lane = -1
                q = queues[lb]
                if q and (dual or not pim_busy) and not (ref_pend and held[rank_of[lb]]):
                    li = q[0]
                    orow = mem_row[lb]
                    if orow != CLOSED and r_row[li] == orow:  # the oldest request hits
                        lc = WR if r_write[li] else RD
                        lp = 1
                        lane_ok = True
                    else:
                        c = decide(lb)
                        if c is not None:
                            lc, li, lp = c
                            lane_ok = True
                    if lane_ok:
                        lt = efun[lc](lb, lo, bus)
            if queued and (dual or not pim_busy):
                while heap:
                    t0, p0, i0, v0, b, c0 = heap[0]
                    if v0 != version[b] or (ref_pend and held[rank_of[b]]):
                        pop(heap)  # stale, or its rank is being refreshed (re-keyed after)
                        continue
                    if lane_ok and (lt < t0 or (lt == t0 and (lp < p0 or (lp == p0 and li < i0)))):
                        break  # every heap key is a lower bound: the lane wins
                    # A current entry's command and request are still the bank's FR-FCFS
                    # choice: every change of queue or open row re-keys the bank (version).
                    # Only an ACT can be held since, by PIM state (decide returns None), and
                    # only while a tile runs or a PIM row is open (pim_hold).
                    if (
                        pim_hold
                        and c0 == ACT
                        and (
                            pim_row[b] == r_row[i0]
                            or (in_tile and r_row[i0] == tile_row)
                            or gact_pending[rank_of[b]]
                        )
                    ):
                        pop(heap)
                        continue
                    bt = efun[c0](b, lo, bus)
                    if bt != t0:
                        replace(heap, (bt, p0, i0, v0, b, c0))
                        continue
                    bc, bi, bb = c0, i0, b
                    kind = 1
                    break
            if lane_ok:
                if kind == 0:
                    bt, bc, bi, bb = lt, lc, li, lb
                    kind = 1
                else:  # lost to a heap entry: back into the heap
                    version[lb] += 1
                    push(heap, (lt, lp, li, version[lb], lb, lc))
            # ---- PIM candidate, evaluated only when its lower bound does not lose already
            # (general refresh path: no new tile while a refresh is pending, none while the
            # guard idles the PIM queue)
            if (
                pim_busy
                and not (skip or (ref_pend and not in_tile))
                and (kind == 0 or pim_lb <= bt)
            ):
                ch.last_issue, ch.bus_free = last, bus
                if not pim_cmds:
                    pim_lb = wide_earliest[T.P_HEADER]()
                    if guard:  # the tile would not finish before the next refresh: idle
                        tl = tiles[0]
                        n_open = nbk - pim_row.count(CLOSED)
                        if not dual:  # one buffer: every open row must close
                            n_open = sum(
                                1
                                for x in range(nbk)
                                if pim_row[x] != CLOSED or mem_row[x] != CLOSED
                            )
                        est = guard_est(tl.k, tl.n_results, n_open, tl.gwrite)
                        skip = gdue - pim_lb <= est
                else:
                    c, r, g, bk, row, col = pim_cmds[0]
                    if c in wide_earliest and (dual or c != T.GWRITE):
                        pim_lb = wide_earliest[c]()
                    elif c == T.G_ACT:
                        pim_lb = ch.gact_earliest(r * G + g, r)
                    else:  # a PRE freeing the tile's row; blocked: PREA, the vector's ACT,
                        # GWRITE and PRE
                        pim_lb = ch.earliest(c, r, g, bk, col)
                if not skip and (kind == 0 or pim_lb <= bt):
                    if kind == 1:
                        unissued(bt, bc, bi, bb)
                    bt = pim_lb
                    kind = 2
            # ---- general refresh path: the insertion at gdue, then the pending refresh's
            # commands once no tile is in progress, none before gdue; first at equal cycles
            if gen:
                rc = -1  # -1: the insertion itself
                rt = -1
                if not ref_pend:
                    rt = gdue
                elif not in_tile:
                    rc, rr = next_ref()
                    ch.last_issue, ch.bus_free = last, bus
                    rt = max(gdue, ch.earliest(rc, rr))
                if rt >= 0 and (kind == 0 or rt <= bt):
                    if kind == 1:
                        unissued(bt, bc, bi, bb)
                    bt = rt
                    kind = 3
            # an arrival before the chosen command is admitted first
            if (
                nxt < n
                and queued < qsize
                and not (bank_cap and len(queues[qbank[nxt]]) >= bank_cap)
            ):
                arr = r_arr[nxt]
                if kind == 0 or arr < bt:
                    if kind == 1:
                        unissued(bt, bc, bi, bb)
                    if arr - 1 > last:
                        last = arr - 1
                    continue
            if kind == 0:
                raise HbmTimingError("controller stalled with work queued")  # pragma: no cover
            if kind == 3:
                if rc < 0:  # inserted: the group's normal commands wait, no new tile starts
                    ref_pend = True
                    for x in range(group):
                        held[(ref_rank + x) % ch.R] = True
                    continue
                ch.last_issue, ch.bus_free = last, bus
                ch._apply(rc, rr, 0, 0, 0, 0, bt)
                last, bus = ch.last_issue, ch.bus_free
                pim_hold = in_tile or pim_row.count(CLOSED) != nbk
                end = max(end, bt + 1)
                if rc == T.REF:
                    ref_done += 1
                    if ref_done == group:  # done: release the ranks and the PIM queue
                        ref_pend = skip = False
                        held = [False] * ch.R
                        ref_done = 0
                        gdue += interval
                        ref_rank = (ref_rank + group) % ch.R
                if queued:
                    refresh_all(last + 1, bus)
                pim_lb = 0
                continue
            # refresh due: finish the tile in progress, then refresh
            if bt >= ref_due:
                if in_tile:
                    if kind == 1:  # hold normal traffic until the tile is done
                        unissued(bt, bc, bi, bb)
                        c, r, g, bk, row, col = pim_cmds[0]
                        ch.last_issue, ch.bus_free = last, bus
                        bt = ch.earliest(c, r, g, bk, col)
                        kind = 2
                else:
                    if kind == 1:
                        unissued(bt, bc, bi, bb)
                    refreshing = deque(
                        [(T.PREA, r) for r in range(ch.R)]
                        + [(T.PIM_PRECHARGE, 0)]
                        + [(T.REF, r) for r in range(ch.R)]
                    )
                    continue
            if kind == 2:  # PIM command
                if not pim_cmds:
                    tile = tiles.popleft()
                    self._expand(tile, pim_cmds)
                    if not tiles:  # release the banks after the last tile
                        if dual:
                            pim_cmds.append((T.PIM_PRECHARGE, 0, 0, 0, 0, 0))
                        else:  # Newton: ordinary precharges, PREA per rank
                            pim_cmds.extend((T.PREA, r, 0, 0, 0, 0) for r in range(ch.R))
                    for x in pim_cmds:
                        if x[0] == T.G_ACT:
                            gact_pending[x[1]] += 1
                    tile_row = tile.row
                    in_tile = True
                c, r, g, bk, row, col = pim_cmds.popleft()
                pim_lb = 0
                at = bt  # its earliest cycle, computed above on the same state
                ch.last_issue, ch.bus_free = last, bus
                ch._apply(c, r, g, bk, row, col, at)
                last, bus = ch.last_issue, ch.bus_free
                if c == PRE:
                    refresh_bank(ch._bank_id(r, g, bk), last + 1, bus)
                elif c == T.G_ACT:
                    gact_pending[r] -= 1
                    if not gact_pending[r] and queued:  # the rank's held ACTs may go again
                        for x in range(r * G * B, (r + 1) * G * B):
                            if queues[x]:
                                refresh_bank(x, last + 1, bus)
                if not pim_cmds:
                    in_tile = False
                pim_hold = in_tile or pim_row.count(CLOSED) != nbk
                if queued and (c == T.PIM_PRECHARGE or not pim_cmds):
                    refresh_all(last + 1, bus)
                end = max(end, at + self._tail(c))
                continue
            # ---- MEM command (inlined HbmChannel._apply for the four bank commands)
            b = bb
            version[b] += 1  # its heap entries are stale now; the fast lane takes over
            last = bt
            counts[bc] += 1
            if bc == RD or bc == WR:
                log.append((bt,) + r_log[bi])
                ufun[bc](bt, b)
                q = queues[b]
                q.remove(bi)
                queued -= 1
                n_status[status[bi]] += 1
                if bc == RD:
                    bus = bt + cl + burst
                    n_reads += 1
                    lat_sum += bus - r_arr[bi]
                else:
                    bus = bt + cwl + burst
                    n_writes += 1
                if bus > last_done:
                    last_done = bus
                if q:
                    lane = b
                continue
            w = r_log[bi]
            if bc == ACT:
                log.append((bt, "ACT") + w[1:])
                ufun[ACT](bt, b)
                acts[rank_of[b]].append(bt)
                mem_row[b] = w[4]
                if ch.open_count == 0:
                    ch.open_since = bt
                ch.open_count += 1
                if status[bi] < 1:
                    status[bi] = 1
            else:  # PRE logs the row it closes
                log.append((bt, "PRE", w[1], w[2], w[3], mem_row[b], w[5]))
                ufun[PRE](bt, b)
                mem_row[b] = CLOSED
                ch.open_count -= 1
                if ch.open_count == 0:
                    stats.active_cycles += bt - ch.open_since
                status[bi] = 2
            lane = b
        ch.last_issue, ch.bus_free = last, bus
        if gen:  # a refresh still pending is inserted again by the next run
            self.ref_due, self.ref_rank = gdue, ref_rank
        stats.row_hits, stats.row_misses, stats.row_conflicts = n_status
        stats.reads, stats.writes, stats.read_latency_sum = n_reads, n_writes, lat_sum
        stats.last_request_done = last_done
        end = max(end, last_done)
        return ch.finish_stats(max(end, last + 1))

    def _run_jit(self, jit, reqs: list[Request], tiles: list[PimTile]) -> Stats:
        """The same run as :meth:`_run` in the compiled kernel: the channel's state goes in
        as int64 arrays and comes back in place, the kernel's command log rows become the
        usual log tuples."""
        ch = self.ch
        t_ = self.mem.timing
        tables = ch.__dict__.get("_jit_tables")
        if tables is None:
            tables = ch._jit_tables = _jit_tables(ch, jit)
        rules, nrules, wrules, nwrules, has_w, w0, w1, ids = tables
        n = len(reqs)
        fields = ("arrival", "write", "rank", "bg", "bank", "row", "col")
        cols = [np.fromiter(map(attrgetter(f), reqs), np.int64, n) for f in fields]
        nt = len(tiles)
        tcols = [
            np.fromiter(map(attrgetter(f), tiles), np.int64, nt)
            for f in ("row", "k", "n_results", "gwrite")
        ]
        nb = np.array(ch.nb, dtype=np.int64)
        ng = np.array(ch.ng, dtype=np.int64)
        nr = np.array(ch.nr, dtype=np.int64)
        nc = np.array(ch.nc, dtype=np.int64)
        mem_row = np.array(ch.mem_row, dtype=np.int64)
        pim_row = np.array(ch.pim_row, dtype=np.int64)
        acts = np.zeros((ch.R, 4), dtype=np.int64)
        acts_n = np.zeros(ch.R, dtype=np.int64)
        for r, a in enumerate(ch.acts):
            acts[r, : len(a)] = list(a)
            acts_n[r] = len(a)
        acts_h = np.zeros(ch.R, dtype=np.int64)
        counts = np.array(ch.counts, dtype=np.int64)
        params = np.array(
            [ch.R, ch.G, ch.B, ch.tfaw, t_.CL, ch.mem.burst_cycles, t_.CWL, self.queue_size]
            + [t_.tREFI, int(ch.refresh), int(ch.dual), t_.tCCD_L, T.MIN_COMP_SLOTS]
            + [int(self.ref_general), self.ref_interval, self.ref_group, int(self.guard)]
            + list(T.guard_parts(self.mem, ch.dual))
            + [self.bank_cap, ch._bank_id(*ch.vec), ch.vec_row],
            dtype=np.int64,
        )
        stats = ch.stats
        state = np.array(
            [ch.last_issue, ch.bus_free, ch.open_count, ch.open_since, stats.active_cycles]
            + [self.ref_due, self.ref_rank],
            dtype=np.int64,
        )
        log, out = jit.run(
            *cols,
            *tcols,
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
        )
        # the channel's state back, in place (the generated functions hold these lists)
        for dst, src in ((ch.nb, nb), (ch.ng, ng), (ch.nr, nr)):
            for c, row in enumerate(src.tolist()):
                dst[c][:] = row
        ch.nc[:] = nc.tolist()
        ch.mem_row[:] = mem_row.tolist()
        ch.pim_row[:] = pim_row.tolist()
        ch.comps += int(out[jit.O_COMPS])
        for r, a in enumerate(ch.acts):
            a.clear()
            a.extend(int(acts[r, (acts_h[r] + k) % 4]) for k in range(acts_n[r]))
        ch.counts[:] = counts.tolist()
        o = out.tolist()
        logc = log.T.tolist()  # columns: cycle, command id, rank, group, bank, row, column
        logc[1] = map(T.COMMANDS.__getitem__, logc[1])
        ch.log.extend(zip(*logc, strict=True))
        if o[jit.O_STALLED]:
            raise HbmTimingError("controller stalled with work queued")  # pragma: no cover
        ch.last_issue, ch.bus_free = o[jit.O_LAST], o[jit.O_BUS]
        ch.open_count, ch.open_since = o[jit.O_OPEN_COUNT], o[jit.O_OPEN_SINCE]
        stats.active_cycles = o[jit.O_ACTIVE]
        if ch.refresh:
            self.ref_due = o[jit.O_REF_DUE]
            self.ref_rank = o[jit.O_REF_RANK]
        stats.row_hits, stats.row_misses = o[jit.O_HITS], o[jit.O_MISSES]
        stats.row_conflicts = o[jit.O_CONFLICTS]
        stats.reads, stats.writes = o[jit.O_READS], o[jit.O_WRITES]
        stats.read_latency_sum = o[jit.O_LAT]
        stats.last_request_done = o[jit.O_DONE]
        end = max(o[jit.O_END], o[jit.O_DONE])
        return ch.finish_stats(max(end, ch.last_issue + 1))

    def _tail(self, cmd: int) -> int:
        w = self.ch.data[cmd]
        return w[0] + w[1] if w else 1

    def _expand(self, tile: PimTile, out: deque) -> None:
        """Commands of one tile GEMV in issue order (module docstring of neupims.devices.pim)."""
        ch = self.ch
        if not ch.dual:
            self._expand_blocked(tile, out)
            return
        out.append((T.P_HEADER, 0, 0, 0, tile.row, 0))
        if tile.gwrite:
            out.append((T.GWRITE, 0, 0, 0, tile.row, 0))
        if ch.pim_row.count(CLOSED) != ch.nbanks:
            out.append((T.PIM_PRECHARGE, 0, 0, 0, 0, 0))
        if ch.mem_row.count(CLOSED) != ch.nbanks:  # MEM rows that must close first
            for b, mr in enumerate(ch.mem_row):
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

    def _expand_blocked(self, tile: PimTile, out: deque) -> None:
        """Blocked mode (one row buffer, Newton's commands), in issue order: P_HEADER; PREA
        of every rank with a row open; with a new vector, ACT of its row
        (:func:`hbm_timing.vector_bank`) and GWRITE; the G_ACTs (bank groups in order, ranks
        interleaved) with, before the vector bank's group, the PRE of the vector's row; then
        per result its COMPs (``col`` = index among the result's COMPs) and its READRES."""
        ch = self.ch
        row = tile.row
        out.append((T.P_HEADER, 0, 0, 0, row, 0))
        GB = ch.G * ch.B
        for r in range(ch.R):
            if any(
                ch.mem_row[x] != CLOSED or ch.pim_row[x] != CLOSED
                for x in range(r * GB, (r + 1) * GB)
            ):
                out.append((T.PREA, r, 0, 0, 0, 0))
        vr, vg, vb = ch.vec
        if tile.gwrite:
            out.append((T.ACT, vr, vg, vb, ch.vec_row, 0))
            out.append((T.GWRITE, vr, vg, vb, ch.vec_row, 0))
        for g in range(ch.G):
            for r in range(ch.R):
                if tile.gwrite and r == vr and g == vg:
                    out.append((T.PRE, vr, vg, vb, ch.vec_row, 0))
                out.append((T.G_ACT, r, g, 0, row, 0))
        for c in T.comp_split(tile.k, tile.n_results):
            for j in range(c):
                out.append((T.COMP, 0, 0, 0, row, j))
            out.append((T.READRES, 0, 0, 0, row, 0))


def _jit_tables(ch: HbmChannel, jit):
    """The channel's timing rules as the kernel's int64 arrays: per bank command the rules
    its update applies (:func:`_needed_rules`, as the generated Python), per other command
    (PREA, REF, G_ACT and the channel-wide PIM commands) its whole table; each row (scope
    code, later command, delay, plus occupancy); each command's data window; the command ids."""
    n = len(T.COMMANDS)

    def table(cmds, pick):
        rows = {c: pick(ch.upd[c]) for c in cmds}
        width = max(1, max(len(v) for v in rows.values()))
        arr = np.zeros((n, width, 4), dtype=np.int64)
        cnt = np.zeros(n, dtype=np.int64)
        for c, rs in rows.items():
            for k, (scope, later, delay, occ) in enumerate(rs):
                arr[c, k] = (jit.SCOPE_CODE[scope], later, delay, int(occ))
            cnt[c] = len(rs)
        return arr, cnt

    bank_cmds = (T.ACT, T.RD, T.WR, T.PRE)
    rules, nrules = table(bank_cmds, _needed_rules)
    wrules, nwrules = table([c for c in range(n) if c not in bank_cmds], list)
    has_w = np.array([w is not None for w in ch.data], dtype=np.int64)
    w0 = np.array([w[0] if w is not None else 0 for w in ch.data], dtype=np.int64)
    w1 = np.array([w[1] if w is not None else 0 for w in ch.data], dtype=np.int64)
    ids = np.array([T.CMD[name] for name in T.COMMANDS], dtype=np.int64)
    return rules, nrules, wrules, nwrules, has_w, w0, w1, ids


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
