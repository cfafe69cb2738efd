"""KV-cache channel placement policies (docs/sources/neupims.md §9), in a registry.

A policy places new requests on channels given each channel's current load (sum of the
Algorithm 1 MHA estimates of its requests) and free 32 KB tiles:

``policy(new_loads, new_tiles, ch_load, ch_free, state) -> channels`` where ``new_loads``
and ``new_tiles`` are per new request; it returns one channel per request, or -1 where no
channel has room. ``state`` is a dict the policy may keep between calls (the round-robin
pointer). Policies update ``ch_load`` and ``ch_free`` in place.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from neupims.errors import ConfigError

Policy = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict], np.ndarray]

POLICIES: dict[str, Policy] = {}


def register_policy(name: str):
    def deco(fn: Policy) -> Policy:
        POLICIES[name] = fn
        return fn

    return deco


def get_policy(name: str) -> Policy:
    if name not in POLICIES:
        raise ConfigError(f"placement: unknown policy {name!r}; expected one of {sorted(POLICIES)}")
    return POLICIES[name]


@register_policy("round_robin")
def round_robin(new_loads, new_tiles, ch_load, ch_free, state) -> np.ndarray:
    """NPU+PIM baseline: a pointer walks the channels, first fit on free tiles, and
    advances after each placement (docs/sources/neupims.md §9)."""
    nch = len(ch_load)
    ptr = state.get("ptr", 0)
    out = np.full(len(new_loads), -1, dtype=np.int64)
    for i in range(len(new_loads)):
        for step in range(nch):
            c = (ptr + step) % nch
            if ch_free[c] >= new_tiles[i]:
                out[i] = c
                ch_free[c] -= new_tiles[i]
                ch_load[c] += new_loads[i]
                ptr = (c + 1) % nch
                break
    state["ptr"] = ptr
    return out


@register_policy("gmlbp")
def gmlbp(new_loads, new_tiles, ch_load, ch_free, state) -> np.ndarray:
    """Greedy min-load bin packing (NeuPIMs Algorithm 2): new requests in decreasing
    load order, each to the least-loaded channel with room for its tiles."""
    out = np.full(len(new_loads), -1, dtype=np.int64)
    for i in np.argsort(-np.asarray(new_loads), kind="stable"):
        fits = ch_free >= new_tiles[i]
        if not fits.any():
            continue
        c = int(np.argmin(np.where(fits, ch_load, np.inf)))
        out[i] = c
        ch_free[c] -= new_tiles[i]
        ch_load[c] += new_loads[i]
    return out


def place_all(policy: str, loads, tiles, nch: int, capacity: float = np.inf) -> np.ndarray:
    """Place a whole snapshot from empty channels (used to re-place a reference trace)."""
    ch_load = np.zeros(nch)
    ch_free = np.full(nch, float(capacity))
    return get_policy(policy)(
        np.asarray(loads, float), np.asarray(tiles, float), ch_load, ch_free, {}
    )


def channel_loads(loads, ch_idx, nch: int) -> np.ndarray:
    return np.bincount(np.asarray(ch_idx), weights=np.asarray(loads, float), minlength=nch)
