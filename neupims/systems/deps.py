"""Adapters from the NPU/PIM system to the HBM/PIM device layer.

The system costs attention on PIM with ``neupims.devices.pim`` / ``neupims.devices.dram``;
this module shapes their answers the way the iteration timeline uses them (per channel,
memoised per length), and gives the KV tile layout and Algorithm-1 load estimate.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from neupims.devices import dram, pim

# ---------------------------------------------------------------------------------------
# PIM: KV tiles and MHA cost
# ---------------------------------------------------------------------------------------


#: FP16 elements per 1 KB row, Algorithm 1's P (docs/sources/neupims.md §8).
def _row_elems(mem) -> int:
    return mem.page_bytes // 2


def kv_tiles(seq_lens, e_eff: int, mem) -> np.ndarray:
    """32 KB PIM tiles of one layer's K and V per request (docs/sources/neupims.md §7):
    ceil(s/B) * ceil(E/P) key tiles + ceil(s/P) * ceil(E/B) value tiles. Vectorised form of
    ``neupims.devices.pim.kv_tiles_per_request`` (tests check they agree)."""
    s = np.asarray(seq_lens, dtype=np.int64)
    b, p = mem.banks_per_channel, _row_elems(mem)
    return -(-s // b) * -(-e_eff // p) + -(-s // p) * -(-e_eff // b)


def mha_estimate_cycles(seq_lens, e_eff: int, n_heads: int, mem) -> np.ndarray:
    """Per-request MHA latency estimate (Algorithm 1), the load that placement balances."""
    return np.asarray(
        pim.neupims_mha_estimate_cycles(np.asarray(seq_lens), e_eff, n_heads, mem), dtype=np.float64
    )


#: Configs seen by the memoised helpers, keyed by id() (pydantic hashing is slow; the
#: objects are kept alive here so an id is never reused for another config).
_CONFIGS: dict[int, object] = {}


def config_key(cfg) -> int:
    k = id(cfg)
    _CONFIGS.setdefault(k, cfg)
    return k


def _req_cost(s: int, n_heads: int, d_head: int, mem, dual: bool):
    return _req_cost_cached(s, n_heads, d_head, config_key(mem), dual)


@lru_cache(maxsize=65536)
def _req_cost_cached(s: int, n_heads: int, d_head: int, mem_key: int, dual: bool):
    """(own cycles, marginal cycles when appended, marginal commands) of one request."""
    mem = _CONFIGS[mem_key]
    one = pim.mha_channel_cycles([s], n_heads, d_head, mem, dual_row_buffer=dual)
    two = pim.mha_channel_cycles([s, s], n_heads, d_head, mem, dual_row_buffer=dual)
    cmds = {k: float(two.commands.get(k, 0)) - float(one.commands.get(k, 0)) for k in two.commands}
    return float(one.cycles), float(two.cycles - one.cycles), cmds


@dataclass(frozen=True)
class ChannelMha:
    """MHA of one sub-batch on all channels: memory cycles and command counts per channel."""

    cycles: np.ndarray  # shape (channels,)
    commands: dict[str, np.ndarray]
    source: str


def _additive(mem) -> bool:
    """Whether a channel's MHA cost adds up over its requests (plus refresh): true for the
    default all-bank refresh; the rank-staggered refresh's deadline guard locks the tiles to
    the refresh grid, so there the whole channel program is costed at once."""
    ref = mem.controller.refresh
    return ref.policy == "all_bank" and not ref.pim_deadline_guard


def _from_channels(r, source: str) -> ChannelMha:
    return ChannelMha(np.asarray(r.cycles, dtype=float), dict(r.commands), source)


def mha_phases_per_channel(seq_lens, ch_idx, n_heads: int, d_head: int, mem, dual: bool):
    """(K^T q, s.V) cost per channel when every channel runs all its requests' K^T q tiles,
    then all their s.V tiles (:func:`neupims.devices.pim.mha_channels_phases`)."""
    r = pim.mha_channels_phases(seq_lens, ch_idx, n_heads, d_head, mem, dual_row_buffer=dual)
    src = "neupims.devices.pim.mha_channels_phases"
    return _from_channels(r.logit, src + " (K^T q)"), _from_channels(r.attend, src + " (s.V)")


def mha_per_channel(seq_lens, ch_idx, n_heads: int, d_head: int, mem, dual: bool) -> ChannelMha:
    """MHA cost per channel for the requests (seq_lens[i] on channel ch_idx[i])."""
    nch = mem.organization.channels
    s = np.asarray(seq_lens, dtype=np.int64)
    ch = np.asarray(ch_idx, dtype=np.int64)
    if s.size and not _additive(mem):
        r = pim.mha_channels_cycles(s, ch, n_heads, d_head, mem, dual_row_buffer=dual)
        return _from_channels(r, "neupims.devices.pim.mha_channels_cycles")
    if s.size:
        # The helper's closed form is additive over the tiles of requests run back to back
        # (plus refresh), so a channel's cost is the first request's own cost plus the
        # marginal cost of appending each further one; both memoised per sequence length.
        # tests/test_system_pim.py checks this against the direct call within 1 %.
        uniq, inv = np.unique(s, return_inverse=True)
        parts = [_req_cost(int(x), n_heads, d_head, mem, dual) for x in uniq]
        first = np.array([p[0] for p in parts])[inv]
        marg = np.array([p[1] for p in parts])[inv]
        is_first = np.zeros(len(s), bool)
        _, first_idx = np.unique(ch, return_index=True)
        is_first[first_idx] = True
        per = np.where(is_first, first, marg)
        cyc = np.bincount(ch, weights=per, minlength=nch)
        keys = sorted({k for p in parts for k in p[2]})
        cmds = {}
        for k in keys:
            v = np.array([p[2].get(k, 0.0) for p in parts])[inv]
            cmds[k] = np.bincount(ch, weights=v, minlength=nch)
        return ChannelMha(cyc, cmds, "neupims.devices.pim.mha_channel_cycles (memoised per length)")
    zeros = np.zeros(nch)
    return ChannelMha(zeros, {}, "no requests")


# ---------------------------------------------------------------------------------------
# DRAM energy
# ---------------------------------------------------------------------------------------


def dram_energy_j(commands: Mapping[str, float], mem, duration_s: float, dual: bool) -> float:
    """DRAM energy (J) of the command counts over ``duration_s`` (neupims.devices.dram)."""
    counts = {k: int(round(v)) for k, v in commands.items()}
    return float(dram.dram_energy_j(counts, mem, duration_s, dual_row_buffer=dual))
