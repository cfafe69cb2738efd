"""Golden schedules: the controller's full command logs, pinned by hash.

Speed work on :mod:`neupims.devices.hbm_channel` must leave every schedule identical. Each
pattern below runs with refresh, in dual and blocked mode, and its whole command log
(cycle, command, rank, bank group, bank, row, column of every command) is hashed. The
hashes were recorded from the controller as of commit 11b0673, before the speed rework of
issue 3, and the same logs are accepted by the independent checker. A deliberate change to
the scheduling policy changes these hashes: re-record them then (run this file's
``_digest`` over ``_patterns()``) and say why in the commit. Re-recorded once: the three
blocked-mode (``dual_row_buffer`` false) patterns with PIM tiles, when blocked mode took
Newton's command set and single row buffer (issue 12: PREA per rank, the GWRITE's row opened
and closed through the one buffer, one COMP per command; docs/hbm_pim.md "Blocked (Newton)
mode"); every dual-mode log and every request-only log kept its hash.
"""

from __future__ import annotations

import hashlib

import pytest

from neupims.config import load_hw
from neupims.devices import hbm_channel as H
from neupims.devices import pim
from neupims.devices.hbm_checker import check_log

MEM = load_hw("hbm2_pim_neupims")


def _patterns():
    gemv = H.tiles_of(pim.gemv_program(256, 1024, MEM))
    mha = H.tiles_of([g for s in (40, 300) for g in pim.mha_program(s, 2, 128, MEM)])
    few_rows = H.random_requests(1500, MEM, seed=7, write_fraction=0.4, rows=8, interval=3)
    return {
        "stream-read": (H.stream_requests(3000, MEM), []),
        "stream-write": (H.stream_requests(600, MEM, write=True, start_row=7), []),
        "random-rw": (H.random_requests(1500, MEM, seed=11, write_fraction=0.3), []),
        "random-few-rows+gemv": (
            few_rows,
            H.tiles_of(pim.gemv_program(256, 1024, MEM), first_row=4),
        ),
        "pim-gemv+stream-read": (H.stream_requests(1500, MEM, start_row=100), gemv),
        "mha": ([], mha),
    }


GOLDEN = {
    ("stream-read", True): "71e50023e60ec145818d2415",  # 3321 commands, 6320 cycles
    ("stream-read", False): "71e50023e60ec145818d2415",  # 3321 commands, 6320 cycles
    ("stream-write", True): "dcb41b65819131477707fd1c",  # 644 commands, 1218 cycles
    ("stream-write", False): "dcb41b65819131477707fd1c",  # 644 commands, 1218 cycles
    ("random-rw", True): "be922b5c6ff8810455d7bb0d",  # 4463 commands, 6999 cycles
    ("random-rw", False): "be922b5c6ff8810455d7bb0d",  # 4463 commands, 6999 cycles
    ("random-few-rows+gemv", True): "20103719e86aa1e19ab46265",  # 4199 commands, 8270 cycles
    ("random-few-rows+gemv", False): "8ad385354e5b7cdb1c09ab17",  # 4686 commands, 9457 cycles
    ("pim-gemv+stream-read", True): "f0d0d5a3f98ded2f1dcba7ac",  # 1835 commands, 4991 cycles
    ("pim-gemv+stream-read", False): "b3228619b093f1cd87b801a1",  # 2349 commands, 6434 cycles
    ("mha", True): "1d96a677a2f41c0f6009641e",  # 356 commands, 4613 cycles
    ("mha", False): "8e191f282dead438b239d4a5",  # 736 commands, 4801 cycles
}


def _digest(log) -> str:
    return hashlib.sha256(repr(log).encode()).hexdigest()[:24]


@pytest.mark.parametrize("dual", [True, False])
def test_command_logs_match_golden_and_checker(dual):
    for name, (reqs, tiles) in _patterns().items():
        stats, ch = H.simulate(MEM, reqs, tiles, dual_row_buffer=dual)
        assert _digest(ch.log) == GOLDEN[(name, dual)], f"{name} dual={dual}: schedule changed"
        # dual: COMP counts the PIM_GEMVs' COMPs (not commands); blocked: COMPs are commands
        n = sum(v for k, v in stats.commands.items() if k != "COMP" or not dual)
        assert len(ch.log) == n
        v = check_log(ch.log, MEM, dual_row_buffer=dual)
        assert v is None, f"{name} dual={dual}: {v}"


def test_golden_patterns_exercise_refresh_and_pim():
    """The pinned logs cover the paths the speed work touches: refresh, PIM, writes."""
    seen = set()
    for reqs, tiles in _patterns().values():
        _, ch = H.simulate(MEM, reqs, tiles)
        seen |= {e[1] for e in ch.log}
    assert {"REF", "PREA", "ACT", "RD", "WR", "PRE", "G_ACT", "PIM_GEMV", "READRES"} <= seen
