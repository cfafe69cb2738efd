"""How normal HBM traffic and PIM work slow each other down on one channel.

When the NPU streams weights from a channel while that channel's PIM runs attention tiles,
both share the channel's command bus and its banks: the PIM's G_ACTs take the rank's tFAW
window from normal ACTs, its PIM_GEMVs occupy the command bus and hold the data path after
the READRES, and in blocked mode (one row buffer, Newton) normal traffic waits for the PIM
altogether. The fast paths (``dram.stream_read_cycles``, ``pim.mha_channels_cycles``) cost
each alone; this module measures, with the command-level controller (the reference,
``neupims.devices.hbm_channel``), what each keeps when both run:

* ``stream_share``: the fraction of its stand-alone throughput a read stream keeps while the
  PIM works (0 in blocked mode);
* ``pim_stretch``: how much longer the PIM work takes beside the stream.

The pattern is one decode request's attention tile program (K^T q and s.V tiles of a
512-token context with 8 heads of 128, GWRITEs included, ``pim.mha_program``) repeated, beside
a read stream on rows the PIM does not use; memoised per memory config and mode (a "memoised
command-level result per pattern", DESIGN.md). One measurement takes about 0.1 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from neupims.devices import hbm_channel as H
from neupims.devices import pim

#: the measured pattern: a request of this many tokens, heads and head size, repeated
PATTERN_TOKENS, PATTERN_HEADS, PATTERN_HEAD_DIM, PATTERN_REQUESTS = 512, 8, 128, 2
#: reads in the stream: enough to outlast the PIM program
PATTERN_READS = 25000


@dataclass(frozen=True)
class Contention:
    stream_share: float  # fraction of stand-alone read throughput kept while the PIM works
    pim_stretch: float  # PIM time beside the stream / PIM time alone (>= 1)


def contention(mem, dual_row_buffer: bool) -> Contention:
    """The :class:`Contention` of ``mem`` in dual (``True``) or blocked mode."""
    return _measure(pim._mem_token(mem), bool(dual_row_buffer))


@lru_cache(maxsize=16)
def _measure(tok, dual: bool) -> Contention:
    mem = tok.mem
    program = pim.mha_program(PATTERN_TOKENS, PATTERN_HEADS, PATTERN_HEAD_DIM, mem)
    tiles = H.tiles_of(program * PATTERN_REQUESTS)
    reads = H.stream_requests(PATTERN_READS, mem, start_row=len(tiles) + 2)
    both, ch = H.simulate(mem, reads, tiles, dual_row_buffer=dual)
    pim_end = max(e[0] for e in ch.log if e[1] in ("READRES", "PIM_GEMV", "COMP"))
    done = sum(1 for e in ch.log if e[1] == "RD" and e[0] <= pim_end)
    _, alone = H.simulate(mem, reads, (), dual_row_buffer=dual)
    done_alone = sum(1 for e in alone.log if e[1] == "RD" and e[0] <= pim_end)
    pim_alone, _ = H.simulate(mem, (), tiles, dual_row_buffer=dual)
    return Contention(
        stream_share=done / done_alone if done_alone else 1.0,
        pim_stretch=max(1.0, pim_end / pim_alone.cycles) if pim_alone.cycles else 1.0,
    )
