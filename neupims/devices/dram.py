"""HBM fast paths and energy: streaming-read latency and the Micron-style DRAM energy model.

Units: cycles are memory-clock cycles (``mem.timing.tck_ns`` ns each); energy in joules,
per-command energies in pJ (pJ = V * mA * ns, the DRAMsim3/NewtonSim formulas quoted in
docs/sources/neupims.md §5). The command-level reference model lives in
:mod:`neupims.devices.hbm_channel`; the fast paths here are checked against it by
``tests/test_hbm_fastpath.py``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from neupims.errors import ConfigError

#: Commands whose energy is accounted elsewhere or is negligible (no IDD entry): the PIM
#: header and PIM precharge (precharge energy is folded into ACT in the Micron model), the
#: composite PIM_GEMV (its COMPs are counted as COMP), and REF (refresh is charged per
#: elapsed tREFI in :func:`dram_energy_j`, because it happens whether or not traffic does).
ZERO_ENERGY_COMMANDS = frozenset({"PRE", "PREA", "P_HEADER", "PIM_PRECHARGE", "PIM_GEMV", "REF"})


def command_energy_pj(mem) -> dict[str, float]:
    """Energy of one command in pJ, one device per rank (docs/sources/neupims.md §5).

    ACT = VDD(IDD0 tRC - IDD3N tRAS - IDD2N tRP); RD/WR = VDD(IDD4R/W - IDD3N) burst;
    REF = VDD(IDD5AB - IDD3N) tRFC; GWRITE = (row bits / access bits) x RD = 16 x RD;
    G_ACT = ``gact_energy_x_act`` x ACT (4, NewtonSim); COMP = ``comp_energy_x_read`` x RD
    (4, NeuPIMs section 8.2); READRES = floor(16 banks ranks / access bits) x RD = 1 x RD.
    """
    p, t = mem.power, mem.timing
    tck = t.tck_ns
    trc = t.tRAS + t.tRP
    burst = mem.burst_cycles
    act = p.vdd_v * (p.idd0_ma * trc - p.idd3n_ma * t.tRAS - p.idd2n_ma * t.tRP) * tck
    rd = p.vdd_v * (p.idd4r_ma - p.idd3n_ma) * burst * tck
    wr = p.vdd_v * (p.idd4w_ma - p.idd3n_ma) * burst * tck
    access_bits = mem.access_bytes * 8
    row_bits = mem.page_bytes * 8
    readres_x = max(1, (16 * mem.banks_per_channel) // access_bits)
    return {
        "ACT": act,
        "RD": rd,
        "WR": wr,
        "REF": p.vdd_v * (p.idd5ab_ma - p.idd3n_ma) * t.tRFC * tck,
        "GWRITE": (row_bits / access_bits) * rd,
        "G_ACT": p.gact_energy_x_act * act,
        "COMP": p.comp_energy_x_read * rd,
        "READRES": readres_x * rd,
    }


def dram_energy_j(
    commands: Mapping[str, int],
    mem,
    duration_s: float,
    *,
    dual_row_buffer: bool,
    channels: int | None = None,
    active_fraction: float = 1.0,
) -> float:
    """Energy in joules of ``commands`` issued over ``duration_s`` on ``channels`` channels.

    Sum of per-command energies (:func:`command_energy_pj`; commands in
    :data:`ZERO_ENERGY_COMMANDS` cost nothing here) plus, per rank and nanosecond,
    background VDD * (IDD3N when a bank is open, ``active_fraction`` of the time, else IDD2N),
    times ``power.dual_buffer_background_x`` with dual row buffers, plus one all-bank refresh
    per rank per tREFI elapsed. ``channels`` defaults to all channels of ``mem``.
    Unknown command names raise :class:`ConfigError`. Counts and ``duration_s`` may be
    NumPy arrays (one entry per channel, say); the result then is an array too.
    """
    dur = np.asarray(duration_s, dtype=np.float64)
    if not np.all(np.isfinite(dur)) or np.any(dur < 0):
        raise ConfigError(f"dram_energy_j: duration_s must be finite and >= 0, got {duration_s}")
    if not 0.0 <= active_fraction <= 1.0:
        raise ConfigError(
            f"dram_energy_j: active_fraction must be in [0, 1], got {active_fraction}"
        )
    per = command_energy_pj(mem)
    pj = 0.0
    for name, count in commands.items():
        if name in per:
            if name != "REF":
                pj = pj + per[name] * np.asarray(count, dtype=np.float64)
        elif name not in ZERO_ENERGY_COMMANDS:
            raise ConfigError(
                f"dram_energy_j: unknown command {name!r}; expected one of "
                f"{sorted(set(per) | ZERO_ENERGY_COMMANDS)}"
            )
    p, t = mem.power, mem.timing
    n_ch = mem.organization.channels if channels is None else channels
    ranks = n_ch * mem.organization.ranks
    ns = dur * 1e9
    idd_bg = active_fraction * p.idd3n_ma + (1.0 - active_fraction) * p.idd2n_ma
    bg = p.vdd_v * idd_bg * ns * ranks
    if dual_row_buffer:
        bg = bg * p.dual_buffer_background_x
    refreshes = ns / (t.tREFI * t.tck_ns) * ranks
    out = (pj + bg + refreshes * per["REF"]) * 1e-12
    return float(out) if np.ndim(out) == 0 else out


#: refresh_factor per config, keyed by id() with the config kept (its hot caller, the
#: NPU's stream cost, asks per op; pydantic attribute chains cost more than the formula)
_FACTORS: dict[int, tuple[object, float]] = {}


def refresh_factor(mem) -> float:
    """Fraction of time a sequential read stream keeps the data bus busy under refresh.

    all_bank: every tREFI all ranks refresh and the stream waits, 1 - tRFC / tREFI.
    rank_staggered: every tREFI / ranks one rank refreshes. The stream goes on with another
    rank's requests when the controller sees them: when its window (``transaction_queue``
    requests with the shared queue, ``command_queue`` per bank with per-bank queues) spans
    a whole rank's run of the stream (the requests below the rank field of the address
    map, 16 columns x 16 banks = 256 for NeuPIMs' ``rorabgbachco``) plus the requests the
    bus serves during the refreshed rank's blackout (tRP + tRFC + tRCDRD): then 1 (no
    loss). Otherwise the stream stalls on every refresh: 1 - tRFC / (tREFI / ranks).
    """
    hit = _FACTORS.get(id(mem))
    if hit is not None and hit[0] is mem:
        return hit[1]
    f = _refresh_factor(mem)
    _FACTORS[id(mem)] = (mem, f)
    return f


def _refresh_factor(mem) -> float:
    t = mem.timing
    if mem.controller.refresh.policy != "rank_staggered":
        return 1.0 - t.tRFC / t.tREFI
    if _stream_window(mem) >= _rank_run(mem) + math.ceil(
        (t.tRP + t.tRFC + t.tRCDRD) / mem.burst_cycles
    ):
        return 1.0
    return 1.0 - t.tRFC / mem.refresh_interval


def _stream_window(mem) -> int:
    """Requests the controller can choose from (docs/hbm_pim.md, controller)."""
    c = mem.controller
    if c.queue_structure == "per_bank":
        return c.command_queue * mem.banks_per_channel
    return c.transaction_queue


def _rank_run(mem) -> int:
    """Consecutive requests of a sequential stream in one rank: the sizes of the address
    map's fields below ``ra`` (the channel field left out)."""
    o = mem.organization
    sizes = {
        "ro": o.rows,
        "bg": o.bank_groups,
        "ba": o.banks_per_group,
        "co": mem.page_bytes // mem.access_bytes,
    }
    m = mem.controller.address_mapping
    fields = [m[i : i + 2] for i in range(0, len(m), 2)]
    run = 1
    for f in fields[fields.index("ra") + 1 :]:
        run *= sizes.get(f, 1)
    return run


def stream_read_cycles(nbytes: float, mem, channels: int | None = None) -> float:
    """Memory cycles to stream-read ``nbytes`` spread evenly over ``channels`` (default all).

    Closed form of the command-level model on a sequential stream (rows opened ahead under
    tRRD/tFAW, so the data bus stays busy; see docs/hbm_pim.md): per channel, one burst of
    ``access_bytes`` every ``burst_cycles``, plus the unloaded first-access latency
    tRCD + CL, stretched by refresh (:func:`refresh_factor`: tRFC every tREFI under the
    default all-bank refresh; no stretch under rank-staggered refresh when the controller's
    queues let the stream go on with another rank).
    """
    n_ch = mem.organization.channels if channels is None else channels
    if n_ch <= 0 or n_ch > mem.organization.channels:
        raise ConfigError(
            f"stream_read_cycles: channels must be in 1..{mem.organization.channels}, got {n_ch}"
        )
    if nbytes <= 0:
        return 0.0
    bursts = math.ceil(nbytes / (mem.access_bytes * n_ch))
    t = mem.timing
    busy = bursts * mem.burst_cycles
    return t.tRCDRD + t.CL + busy / refresh_factor(mem)
