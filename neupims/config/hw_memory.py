"""Schema of an HBM (optionally PIM-enabled) memory configuration.

Units: cycles are memory-clock cycles of ``tck_ns`` nanoseconds; currents in mA; volts.
Numbers for the NeuPIMs device come from docs/sources/neupims.md §3-§6.
"""

from __future__ import annotations

from typing import Literal

from pydantic import field_validator, model_validator

from neupims.config.base import Fraction, NonNegInt, PosFloat, PosInt, Spec


class MemOrganization(Spec):
    channels: PosInt
    ranks: PosInt  # pseudo-ranks per channel
    bank_groups: PosInt  # per rank
    banks_per_group: PosInt
    rows: PosInt
    columns: PosInt  # column addresses per row, each one bus-width wide
    bus_bits: PosInt  # data bus width per channel
    burst_length: PosInt
    capacity_gb_per_channel: PosFloat


class MemTiming(Spec):
    """DRAM timing table, every value in cycles of ``tck_ns`` (docs/sources/neupims.md §4)."""

    tck_ns: PosFloat
    CL: PosInt
    CWL: PosInt
    tRCDRD: PosInt
    tRCDWR: PosInt
    tRP: PosInt
    tRAS: PosInt
    tRFC: PosInt
    tREFI: PosInt
    tREFIb: PosInt
    tRPRE: NonNegInt
    tWPRE: NonNegInt
    tRRD_S: PosInt
    tRRD_L: PosInt
    tWTR_S: PosInt
    tWTR_L: PosInt
    tFAW: PosInt
    tWR: PosInt
    tCCD_S: PosInt
    tCCD_L: PosInt
    tXS: PosInt
    tCKE: PosInt
    tCKSRE: PosInt
    tXP: PosInt
    tRTP_L: PosInt
    tRTP_S: PosInt


class MemPower(Spec):
    """IDD currents (mA) and supply (V) of one device, Micron-style power model."""

    vdd_v: PosFloat
    idd0_ma: PosFloat
    idd2p_ma: PosFloat
    idd2n_ma: PosFloat
    idd3p_ma: PosFloat
    idd3n_ma: PosFloat
    idd4w_ma: PosFloat
    idd4r_ma: PosFloat
    idd5ab_ma: PosFloat
    idd6x_ma: PosFloat
    comp_energy_x_read: PosFloat = 4.0  # NeuPIMs §8.2: all-bank compute = 4x READ power
    gact_energy_x_act: PosFloat = 4.0  # NewtonSim: G_ACT = 4 x ACT
    dual_buffer_background_x: PosFloat = 1.0  # extra background for the 2nd row buffer [?]


class PimSpec(Spec):
    """PIM units inside the banks (docs/sources/neupims.md §3, §6, §8)."""

    enabled: bool = True
    dual_row_buffer: bool = True
    multipliers_per_bank: PosInt = 16
    gwrite_cycles: PosInt = 96  # (tCCD_S + tCCD_L) * 32, NewtonSim
    l_gw_cycles: PosInt = 100  # Algorithm 1 global-buffer write constant
    l_tile_cycles: PosInt = 184  # Algorithm 1 one-tile GEMV constant


class RefreshSpec(Spec):
    """Refresh policy of the memory controller (docs/hbm_pim.md "Refresh policies").

    ``policy``: ``all_bank`` (default; every tREFI both ranks of a channel refresh together,
    the model's historical behaviour) or ``rank_staggered`` (every tREFI / ranks cycles one
    rank refreshes, ranks in turn 0, 1, 0, ...; traffic to the other ranks continues):
    DRAMsim3's refresh policies, ``RANK_LEVEL_STAGGERED`` being its default and the one the
    released NeuPIMs simulator runs (its ini sets no ``refresh_policy``; NewtonSim
    ``configuration.cc: InitSystemParams``, ``refresh.cc``).
    ``pim_deadline_guard``: before each PIM tile the controller estimates the tile's latency
    and, if it would not finish before the next refresh insertion, idles the PIM queue until
    that refresh has issued (NewtonSim ``neupims_command_queue.cc: CanMeetRefreshDeadline``,
    ``skip_pim_``). ``guard_precharge_cycles``: the estimate's cost per PIM row to close,
    NewtonSim's ``precharge_latency`` = AL + tRTP = 0 + 5 (its ini sets only tRTP_L/tRTP_S,
    so tRTP keeps DRAMsim3's default 5; ``channel_state.cc: EstimatePIMOperationLatency``).
    """

    policy: Literal["all_bank", "rank_staggered"] = "all_bank"
    pim_deadline_guard: bool = False
    guard_precharge_cycles: PosInt = 5


class ControllerSpec(Spec):
    command_queue: PosInt = 128
    transaction_queue: PosInt = 32
    pim_queue: PosInt = 128
    #: which requests the scheduler sees: ``shared`` (default) up to ``transaction_queue``
    #: requests in all bank queues together; ``per_bank`` up to ``command_queue`` requests in
    #: each bank's queue, admitted in arrival order (DRAMsim3 / NewtonSim per-bank command
    #: queues, ``cmd_queue_size`` 128 fed from the 32-entry transaction queue)
    queue_structure: Literal["shared", "per_bank"] = "shared"
    page_policy: Literal["open", "closed"] = "open"
    address_mapping: str = "rorabgbachco"  # fields MSB -> LSB: ro ra bg ba ch co
    efficiency: Fraction = 1.0  # fraction of peak assumed by bandwidth-only consumers
    refresh: RefreshSpec = RefreshSpec()

    @field_validator("address_mapping")
    @classmethod
    def _mapping(cls, v: str) -> str:
        fields = sorted(v[i : i + 2] for i in range(0, len(v), 2))
        if len(v) != 12 or fields != sorted(["ro", "ra", "bg", "ba", "ch", "co"]):
            raise ValueError(
                f"{v!r} must name each of ro, ra, bg, ba, ch, co exactly once "
                "(most significant first, e.g. rorabgbachco)"
            )
        return v


class MemoryConfig(Spec):
    kind: Literal["memory"]
    name: str
    standard: str = "HBM2"
    organization: MemOrganization
    timing: MemTiming
    power: MemPower
    pim: PimSpec = PimSpec(enabled=False, dual_row_buffer=False)
    controller: ControllerSpec = ControllerSpec()

    @model_validator(mode="after")
    def _check(self) -> MemoryConfig:
        t = self.timing
        if t.tRAS < t.tRCDRD:
            raise ValueError(f"timing.tRAS ({t.tRAS}) must be >= timing.tRCDRD ({t.tRCDRD})")
        if t.tREFI <= t.tRFC:
            raise ValueError(f"timing.tREFI ({t.tREFI}) must exceed timing.tRFC ({t.tRFC})")
        ref, ranks = self.controller.refresh, self.organization.ranks
        if ref.policy == "rank_staggered" and t.tREFI // ranks <= t.tRFC:
            raise ValueError(
                f"controller.refresh.policy rank_staggered refreshes one rank every tREFI / "
                f"ranks = {t.tREFI // ranks} cycles, which must exceed timing.tRFC ({t.tRFC})"
            )
        if ref.pim_deadline_guard and not self.pim.enabled:
            raise ValueError(
                "controller.refresh.pim_deadline_guard needs pim.enabled: true (it guards "
                "PIM tiles against the refresh deadline)"
            )
        return self

    @property
    def refresh_interval(self) -> int:
        """Cycles between refresh insertions: tREFI (all_bank) or tREFI // ranks
        (rank_staggered, one rank per insertion)."""
        t = self.timing
        if self.controller.refresh.policy == "rank_staggered":
            return t.tREFI // self.organization.ranks
        return t.tREFI

    # ---- derived quantities -------------------------------------------------------------
    @property
    def banks_per_channel(self) -> int:
        o = self.organization
        return o.ranks * o.bank_groups * o.banks_per_group

    @property
    def access_bytes(self) -> int:
        """Bytes moved by one RD/WR burst."""
        o = self.organization
        return o.bus_bits // 8 * o.burst_length

    @property
    def burst_cycles(self) -> int:
        """Data-bus cycles of one burst (DDR: burst_length / 2)."""
        return max(1, self.organization.burst_length // 2)

    @property
    def page_bytes(self) -> int:
        o = self.organization
        return o.columns * o.bus_bits // 8

    @property
    def channel_peak_bytes_per_s(self) -> float:
        return self.access_bytes / (self.burst_cycles * self.timing.tck_ns * 1e-9)

    @property
    def peak_bytes_per_s(self) -> float:
        return self.organization.channels * self.channel_peak_bytes_per_s

    @property
    def capacity_bytes(self) -> float:
        return self.organization.channels * self.organization.capacity_gb_per_channel * 2**30

    @property
    def memory_capacity_bytes(self) -> float:
        """Bytes of the device (every channel), as the other hardware kinds name it."""
        return self.capacity_bytes

    @property
    def pim_peak_flops(self) -> float:
        """All banks' multipliers at one COMP per tCCD_L: 2 FLOPs per MAC."""
        if not self.pim.enabled:
            return 0.0
        macs_per_cycle = self.pim.multipliers_per_bank * self.banks_per_channel / self.timing.tCCD_L
        return 2 * macs_per_cycle * self.organization.channels / (self.timing.tck_ns * 1e-9)

    def peak_flops(self, dtype: str) -> float:
        return self.pim_peak_flops if dtype in ("fp16", "bf16") else 0.0
