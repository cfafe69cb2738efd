"""Micron-style DRAM energy (docs/sources/neupims.md §5) and the streaming fast path."""

from __future__ import annotations

import pytest

from neupims.config import load_hw
from neupims.devices import dram
from neupims.errors import ConfigError

MEM = load_hw("hbm2_pim_neupims")


def test_per_command_energy_matches_the_documented_values():
    # docs/sources/neupims.md §5 (derived by hand from the ini currents): ACT 828 pJ, RD 804 pJ,
    # WR 1,068 pJ, REF 60.8 nJ, GWRITE 16 x RD, G_ACT 4 x ACT, COMP 4 x RD, READRES 1 x RD
    e = dram.command_energy_pj(MEM)
    assert e["ACT"] == pytest.approx(828)
    assert e["RD"] == pytest.approx(804)
    assert e["WR"] == pytest.approx(1068)
    assert e["REF"] == pytest.approx(60840)
    assert e["GWRITE"] == pytest.approx(16 * 804)
    assert e["G_ACT"] == pytest.approx(4 * 828)
    assert e["COMP"] == pytest.approx(4 * 804)
    assert e["READRES"] == pytest.approx(804)


def test_background_and_refresh_over_duration():
    ns = 3900 * 10
    e = dram.dram_energy_j({}, MEM, ns * 1e-9, dual_row_buffer=False, channels=1)
    p = MEM.power
    ranks = MEM.organization.ranks
    expect = (p.vdd_v * p.idd3n_ma * ns * ranks + 10 * ranks * 60840) * 1e-12
    assert e == pytest.approx(expect)
    idle = dram.dram_energy_j(
        {}, MEM, ns * 1e-9, dual_row_buffer=False, channels=1, active_fraction=0.0
    )
    assert idle < e  # precharged standby (IDD2N) costs less than active (IDD3N)
    whole = dram.dram_energy_j({}, MEM, ns * 1e-9, dual_row_buffer=False)
    assert whole == pytest.approx(e * MEM.organization.channels)


def test_commands_add_energy_and_dual_buffer_scales_background():
    base = dram.dram_energy_j({"RD": 1000}, MEM, 1e-6, dual_row_buffer=False, channels=1)
    more = dram.dram_energy_j(
        {"RD": 1000, "COMP": 10}, MEM, 1e-6, dual_row_buffer=False, channels=1
    )
    assert more - base == pytest.approx(10 * 4 * 804e-12)
    bumped = MEM.model_copy(
        update={"power": MEM.power.model_copy(update={"dual_buffer_background_x": 1.5})}
    )
    d = dram.dram_energy_j({}, bumped, 1e-6, dual_row_buffer=True, channels=1)
    s = dram.dram_energy_j({}, bumped, 1e-6, dual_row_buffer=False, channels=1)
    assert d > s


def test_energy_errors():
    with pytest.raises(ConfigError, match="unknown command"):
        dram.dram_energy_j({"FOO": 1}, MEM, 1e-6, dual_row_buffer=True)
    with pytest.raises(ConfigError, match="duration_s"):
        dram.dram_energy_j({}, MEM, -1.0, dual_row_buffer=True)


def test_stream_read_cycles_scales_with_channels():
    one = dram.stream_read_cycles(2**20, MEM, channels=1)
    all_ = dram.stream_read_cycles(2**20, MEM)
    assert one > 30 * all_  # 32 channels share the bytes, latency added once
    assert dram.stream_read_cycles(0, MEM) == 0.0
    with pytest.raises(ConfigError, match="channels"):
        dram.stream_read_cycles(10, MEM, channels=64)
