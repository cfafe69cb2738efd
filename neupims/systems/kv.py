"""Where a system keeps the KV cache, and how much of it fits.

A :class:`KvLayout` is a set of equal ``pools`` (the NeuPIMs memory's channels: a request's
whole KV cache lives in one channel; a GPU's memory: one pool), each holding ``capacity``
allocation ``units`` (32 KB PIM tiles; 16-token pages). ``units_per_block(ctx)`` is what one
request of ``ctx`` keys needs per decoder block; ``load(ctx)`` the placement policy's load
estimate of a request (NeuPIMs Algorithm 1 for PIM channels).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KvLayout:
    pools: int
    capacity: int  # units per pool
    unit: str  # what one unit is, for messages
    units_per_block: Callable[[np.ndarray], np.ndarray]
    load: Callable[[np.ndarray], np.ndarray]
    placement: str  # placement policy name (neupims.systems.placement.POLICIES)

    def units(self, ctx_lens, blocks: int) -> np.ndarray:
        """Units of ``blocks`` decoder blocks' K and V for requests of ``ctx_lens`` keys."""
        return self.units_per_block(np.asarray(ctx_lens, dtype=np.int64)) * blocks
