"""Both controller paths give the golden schedules: the compiled kernel
(:mod:`neupims.devices.hbm_jit`, runs of normal requests) and the pure-Python controller
(``NEUPIMS_NO_JIT=1``, or no numba). Each golden pattern runs on each path, in dual and
blocked mode with refresh; logs, statistics and the channel state after the run must match.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest

from neupims.devices import hbm_channel as H

sys.path.insert(0, os.path.dirname(__file__))
import test_hbm_golden as G  # noqa: E402

pytest.importorskip("numba")


def _run(use_jit, monkeypatch, reqs, tiles, dual):
    """One simulate() on the chosen path; returns (stats, channel, jit runs)."""
    monkeypatch.setattr(H, "USE_JIT", use_jit)
    calls = []
    real = H.Controller._run_jit

    def counted(self, jit, r, t):
        calls.append(len(r) + len(t))
        return real(self, jit, r, t)

    monkeypatch.setattr(H.Controller, "_run_jit", counted)
    stats, ch = H.simulate(G.MEM, reqs, tiles, dual_row_buffer=dual)
    return stats, ch, len(calls)


def _state(ch):
    return (
        ch.nb,
        ch.ng,
        ch.nr,
        ch.nc,
        ch.mem_row,
        [list(a) for a in ch.acts],
        ch.counts,
        ch.last_issue,
        ch.bus_free,
        ch.open_count,
        ch.open_since,
    )


@pytest.mark.parametrize("dual", [True, False])
def test_both_paths_give_the_golden_logs(dual, monkeypatch):
    jit_runs = 0
    for name, (reqs, tiles) in G._patterns().items():
        out = {}
        for use_jit in (False, True):
            stats, ch, calls = _run(use_jit, monkeypatch, reqs, tiles, dual)
            assert G._digest(ch.log) == G.GOLDEN[(name, dual)], f"{name} jit={use_jit}"
            # the kernel serves every run, PIM tiles included; the Python path never uses it
            assert calls == (1 if use_jit else 0), name
            jit_runs += calls
            out[use_jit] = (dataclasses.asdict(stats), _state(ch))
        assert out[True] == out[False], f"{name}: statistics or channel state differ"
    assert jit_runs == len(G._patterns())  # every pattern went through the kernel


def test_paths_agree_on_random_streams_with_refresh_and_queue_limits(monkeypatch):
    """Seeded random mixes beyond the golden ones: arrival gaps, few rows, small queues, and
    a second run on the same channel (state carried in and out of the kernel)."""
    for seed in range(6):
        reqs = H.random_requests(
            400, G.MEM, seed=seed, write_fraction=0.1 * seed, rows=2 + 3 * seed, interval=seed
        )
        logs = {}
        for use_jit in (False, True):
            monkeypatch.setattr(H, "USE_JIT", use_jit)
            ch = H.HbmChannel(G.MEM)
            ctl = H.Controller(ch, queue_size=4 + 5 * seed)
            ctl.run(reqs[:200])
            later = [dataclasses.replace(r, arrival=r.arrival + ch.last_issue) for r in reqs[200:]]
            s = ctl.run(later)
            logs[use_jit] = (ch.log, dataclasses.asdict(s), _state(ch), ctl.ref_due)
        assert logs[True] == logs[False], f"seed {seed}"


def test_env_var_selects_the_python_path():
    code = "from neupims.devices import hbm_channel as H; print(H.USE_JIT)"
    env = dict(os.environ, NEUPIMS_NO_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr
