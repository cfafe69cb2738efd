"""Adapters to the workloads and HBM/PIM layers, with clearly named private fallbacks.

The system model codes against these contracts (see the helpers' issues):

* ``neupims.workloads.get_model(name)`` and ``neupims.workloads.datasets.sample_requests``;
* ``neupims.devices.pim`` (``kv_tiles_per_request``, ``neupims_mha_estimate_cycles``,
  ``mha_channel_cycles``) and ``neupims.devices.dram`` (``stream_read_cycles``,
  ``dram_energy_j``).

When a module is not importable (it is written concurrently), the ``_fallback_*`` function
below is used instead. Each fallback implements the published fact it stands for
(../shared/docs/NEUPIMS.md sections 5, 7, 8, 11, 12) and says so; ``which()`` reports which
implementation is active, and results carry it so nobody mistakes one for the other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from neupims.errors import ConfigError

# ---------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LlmSpec:
    """Decoder dimensions used by the system model (element counts, not bytes)."""

    name: str
    layers: int
    heads: int
    d_model: int
    head_dim: int
    d_ff: int
    vocab: int
    kv_heads: int = 0  # 0 = heads (multi-head attention)

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads or self.heads

    @property
    def layer_params(self) -> int:
        """Linear-layer parameters of one decoder block (QKV, output projection, FFN)."""
        qkv = self.d_model * (self.heads + 2 * self.n_kv_heads) * self.head_dim
        proj = self.heads * self.head_dim * self.d_model
        return qkv + proj + 2 * self.d_model * self.d_ff

    @property
    def params(self) -> int:
        return self.layers * self.layer_params + self.vocab * self.d_model


#: NEUPIMS.md section 11 ([C] configs/model_configs/*.json of casys-kaist/NeuPIMs).
_FALLBACK_MODELS = {
    "gpt3-7b": LlmSpec("gpt3-7b", 32, 32, 4096, 128, 16384, 50304),
    "gpt3-13b": LlmSpec("gpt3-13b", 40, 40, 5120, 128, 20480, 50304),
    "gpt3-30b": LlmSpec("gpt3-30b", 48, 56, 7168, 128, 28672, 50304),
    "gpt3-175b": LlmSpec("gpt3-175b", 96, 96, 12288, 128, 49152, 50304),
}


def get_llm(name: str) -> LlmSpec:
    """The decoder ``name`` from the workloads zoo, else from the NEUPIMS.md table."""
    try:
        from neupims.workloads import get_model  # workloads helper
    except ImportError:
        get_model = None
    if get_model is not None:
        m = get_model(name)
        heads = int(m.heads)
        return LlmSpec(
            name=name,
            layers=int(m.layers),
            heads=heads,
            d_model=int(m.d_model),
            head_dim=int(getattr(m, "head_dim", 0) or m.d_model // heads),
            d_ff=int(m.d_ff),
            vocab=int(m.vocab),
            kv_heads=int(getattr(m, "kv_heads", 0) or heads),
        )
    if name not in _FALLBACK_MODELS:
        raise ConfigError(
            f"model: unknown model {name!r}; expected one of {sorted(_FALLBACK_MODELS)}"
        )
    return _FALLBACK_MODELS[name]


# ---------------------------------------------------------------------------------------
# Request streams
# ---------------------------------------------------------------------------------------

#: (median, p90, max) of input and output lengths, NEUPIMS.md section 12.
_FALLBACK_DATASETS = {
    "sharegpt": ((17, 118, 196710), (261, 576, 63144)),
    "alpaca": ((11, 17, 99), (41, 122, 1005)),
}


def _fallback_sample(q: tuple[int, int, int], n: int, rng: np.random.Generator) -> np.ndarray:
    """Lognormal through the median and p90 (z(0.9) = 1.2816), clipped to [1, max]."""
    med, p90, mx = q
    mu = math.log(med)
    sigma = (math.log(p90) - mu) / 1.2815515655446004
    x = np.exp(rng.normal(mu, sigma, n))
    return np.clip(np.rint(x), 1, mx).astype(np.int64)


def sample_requests(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(input_lens, output_lens) of ``n`` requests drawn with replacement, deterministic."""
    try:
        from neupims.workloads.datasets import sample_requests as ws
    except ImportError:
        ws = None
    if ws is not None:
        i, o = ws(name, n, seed)
        return np.maximum(np.asarray(i, np.int64), 1), np.maximum(np.asarray(o, np.int64), 1)
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _FALLBACK_DATASETS:
        raise ConfigError(
            f"dataset: unknown dataset {name!r}; expected one of {sorted(_FALLBACK_DATASETS)}"
        )
    rng = np.random.default_rng(seed)
    qi, qo = _FALLBACK_DATASETS[key]
    return _fallback_sample(qi, n, rng), _fallback_sample(qo, n, rng)


# ---------------------------------------------------------------------------------------
# PIM: KV tiles and MHA cost
# ---------------------------------------------------------------------------------------


#: FP16 elements per 1 KB row, Algorithm 1's P (NEUPIMS.md section 8).
def _row_elems(mem) -> int:
    return mem.page_bytes // 2


def kv_tiles(seq_lens, e_eff: int, mem) -> np.ndarray:
    """32 KB PIM tiles of one layer's K and V per request (NEUPIMS.md section 7):
    ceil(s/B) * ceil(E/P) key tiles + ceil(s/P) * ceil(E/B) value tiles. Vectorised form of
    ``neupims.devices.pim.kv_tiles_per_request`` (tests check they agree)."""
    s = np.asarray(seq_lens, dtype=np.int64)
    b, p = mem.banks_per_channel, _row_elems(mem)
    return -(-s // b) * -(-e_eff // p) + -(-s // p) * -(-e_eff // b)


def _algorithm1_cycles(seq_lens, e_eff: int, n_heads: int, mem) -> np.ndarray:
    """NeuPIMs Algorithm 1 (NEUPIMS.md section 8), memory cycles per request, one layer."""
    s = np.asarray(seq_lens, dtype=np.int64)
    b, p = mem.banks_per_channel, _row_elems(mem)
    l_gw, l_tile = mem.pim.l_gw_cycles, mem.pim.l_tile_cycles
    d_k = e_eff // n_heads
    c1 = -(-e_eff // p)
    t1 = -(-s // b)
    c2 = -(-s // p) * n_heads
    t2 = -(-d_k // b)
    return (c1 * l_gw + c1 * t1 * l_tile + c2 * l_gw + c2 * t2 * l_tile).astype(np.float64)


def mha_estimate_cycles(seq_lens, e_eff: int, n_heads: int, mem) -> np.ndarray:
    """Per-request MHA latency estimate (Algorithm 1), the load that placement balances."""
    try:
        from neupims.devices.pim import neupims_mha_estimate_cycles as f
    except ImportError:
        f = None
    if f is not None:
        return np.asarray(f(np.asarray(seq_lens), e_eff, n_heads, mem), dtype=np.float64)
    return _algorithm1_cycles(seq_lens, e_eff, n_heads, mem)


def _fallback_commands(seq_lens, e_eff: int, n_heads: int, mem) -> dict[str, np.ndarray]:
    """PIM command counts per request of Algorithm 1's tiles: per tile one G_ACT per bank
    group and rank, one COMP per 32 B chunk of the 1 KB row (16 FP16 multipliers), one
    READRES; one GWRITE per global-buffer write (NEUPIMS.md sections 6 and 8)."""
    s = np.asarray(seq_lens, dtype=np.int64)
    b, p = mem.banks_per_channel, _row_elems(mem)
    d_k = e_eff // n_heads
    gw = -(-e_eff // p) + -(-s // p) * n_heads
    tiles = -(-e_eff // p) * -(-s // b) + -(-s // p) * n_heads * -(-d_k // b)
    o = mem.organization
    comps_per_tile = mem.page_bytes // (mem.pim.multipliers_per_bank * 2)
    return {
        "GWRITE": gw.astype(float),
        "G_ACT": (tiles * o.bank_groups * o.ranks).astype(float),
        "COMP": (tiles * comps_per_tile).astype(float),
        "READRES": tiles.astype(float),
    }


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
    from neupims.devices.pim import mha_channel_cycles

    mem = _CONFIGS[mem_key]
    one = mha_channel_cycles([s], n_heads, d_head, mem, dual_row_buffer=dual)
    two = mha_channel_cycles([s, s], n_heads, d_head, mem, dual_row_buffer=dual)
    cmds = {k: float(two.commands.get(k, 0)) - float(one.commands.get(k, 0)) for k in two.commands}
    return float(one.cycles), float(two.cycles - one.cycles), cmds


@dataclass(frozen=True)
class ChannelMha:
    """MHA of one sub-batch on all channels: memory cycles and command counts per channel."""

    cycles: np.ndarray  # shape (channels,)
    commands: dict[str, np.ndarray]
    source: str


def mha_per_channel(seq_lens, ch_idx, n_heads: int, d_head: int, mem, dual: bool) -> ChannelMha:
    """MHA cost per channel for the requests (seq_lens[i] on channel ch_idx[i])."""
    nch = mem.organization.channels
    s = np.asarray(seq_lens, dtype=np.int64)
    ch = np.asarray(ch_idx, dtype=np.int64)
    try:
        from neupims.devices.pim import mha_channel_cycles
    except ImportError:
        mha_channel_cycles = None
    e_eff = n_heads * d_head
    if mha_channel_cycles is not None and s.size:
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
    per_req = _algorithm1_cycles(s, e_eff, n_heads, mem)
    cyc = np.bincount(ch, weights=per_req, minlength=nch)
    cmds = {
        k: np.bincount(ch, weights=v, minlength=nch)
        for k, v in _fallback_commands(s, e_eff, n_heads, mem).items()
    }
    return ChannelMha(cyc, cmds, "fallback: Algorithm 1 (systems.deps._algorithm1_cycles)")


# ---------------------------------------------------------------------------------------
# DRAM energy
# ---------------------------------------------------------------------------------------


def _fallback_energy_j(commands: Mapping[str, float], mem, duration_s: float, dual: bool) -> float:
    """Micron-style energy (NEUPIMS.md section 5): pJ = V * mA * ns per command, plus
    background (IDD3N per rank) and all-bank refresh over ``duration_s``."""
    p, t = mem.power, mem.timing
    tck = t.tck_ns
    trc = t.tRAS + t.tRP
    act = p.vdd_v * (p.idd0_ma * trc - p.idd3n_ma * t.tRAS - p.idd2n_ma * t.tRP) * tck
    rd = p.vdd_v * (p.idd4r_ma - p.idd3n_ma) * mem.burst_cycles * tck
    wr = p.vdd_v * (p.idd4w_ma - p.idd3n_ma) * mem.burst_cycles * tck
    ref = p.vdd_v * (p.idd5ab_ma - p.idd3n_ma) * t.tRFC * tck
    per = {
        "ACT": act,
        "RD": rd,
        "WR": wr,
        "GWRITE": 16 * rd,
        "G_ACT": p.gact_energy_x_act * act,
        "COMP": p.comp_energy_x_read * rd,
        "READRES": rd,
    }
    pj = sum(per.get(k, 0.0) * v for k, v in commands.items())
    ranks = mem.organization.channels * mem.organization.ranks
    ns = duration_s * 1e9
    bg = p.vdd_v * p.idd3n_ma * ns * ranks * (p.dual_buffer_background_x if dual else 1.0)
    refreshes = ns / (t.tREFI * tck) * ranks
    return (pj + bg + refreshes * ref) * 1e-12


def dram_energy_j(commands: Mapping[str, float], mem, duration_s: float, dual: bool) -> float:
    try:
        from neupims.devices.dram import dram_energy_j as f
    except ImportError:
        f = None
    if f is not None:
        return float(
            f(
                {k: int(round(v)) for k, v in commands.items()},
                mem,
                duration_s,
                dual_row_buffer=dual,
            )
        )
    return _fallback_energy_j(commands, mem, duration_s, dual)


def which() -> dict[str, str]:
    """Which implementation backs each dependency right now."""
    out = {}
    for mod, name in (
        ("neupims.workloads", "get_model"),
        ("neupims.workloads.datasets", "sample_requests"),
        ("neupims.devices.pim", "mha_channel_cycles"),
        ("neupims.devices.dram", "stream_read_cycles"),
        ("neupims.devices.dram", "dram_energy_j"),
    ):
        try:
            m = __import__(mod, fromlist=[name])
            ok = hasattr(m, name)
        except ImportError:
            ok = False
        out[f"{mod}.{name}"] = "helper" if ok else "fallback"
    return out
