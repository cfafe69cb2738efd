"""Sane upper limits on the sizes users may give, defined once, each with its reason.

A dimension of 10^23 or a context of 10^11 tokens is a typo, not a workload: it would
otherwise flow through the models as a zettabyte footprint. The limits below are far
above every real workload and below where the numbers stop meaning anything; an input
beyond one is an error naming the field, the value and the limit
(:func:`check_int`). Whether a *valid* op fits a given device is a different question,
answered per device by the ``fits`` column of ``neupims replay``.

Specs layer: imports nothing from the simulator.
"""

from __future__ import annotations

import math


class Limit(int):
    """An int that carries why it is the limit (``why``), for error messages."""

    why: str

    def __new__(cls, value: int, why: str) -> Limit:
        obj = super().__new__(cls, value)
        obj.why = why
        return obj

    def __getnewargs__(self) -> tuple[int, str]:
        return int(self), self.why


#: Largest value of one op dimension (an integer field of an op: m, n, k, batch, heads,
#: c, h, w, ...), in elements. The kernels the models describe index a dimension with a
#: 32-bit signed int: cuBLAS's GEMM API takes ``int m, n, k``, cuDNN's tensor descriptors
#: ``int`` sizes, and CUTLASS / Triton kernels default to 32-bit index arithmetic;
#: PyTorch splits or refuses tensors whose indices overflow it (``canUse32BitIndexMath``).
MAX_DIM = Limit(2**31 - 1, "2^31-1: kernels index a dimension with 32-bit ints")

#: Largest element count of one tensor (an op's ``elems`` field), in elements. FLOP and
#: byte counts are float64, which represents every integer exactly only up to 2**53.
MAX_ELEMS = Limit(2**53, "2^53: counts are exact in float64 only up to it")

#: Largest compulsory traffic of one op (``Op.min_bytes``: every operand read once, every
#: result written once), in bytes: 2**50 B = 1 PiB, about 7,000 times the memory of an
#: H200 (141 GB) and beyond any machine a single kernel can address. Bounds the product of
#: the dimensions, which each dimension's limit alone does not.
MAX_OP_BYTES = Limit(2**50, "2^50 B = 1 PiB of operands and results for one op")

#: Longest sequence (prompt + generated tokens of one request, an attention op's
#: ``q_len`` / ``kv_len``, a request snapshot's ``seq_len``), in tokens: 2**24 = 16.8 M,
#: above the longest context window of any released model (Llama 4 Scout: 10 M tokens,
#: Meta, April 2025).
MAX_SEQ_LEN = Limit(2**24, "2^24 tokens: above any released model's context window")

#: Most sequences (or images) in one step, i.e. the ``batch`` of a trace or experiment
#: point: 2**24 = 16.8 M. A trace keeps one context length per request, and a batch's
#: tokens must still fit one GEMM dimension (:data:`MAX_DIM`). Serving systems run a few
#: hundred to a few thousand (vLLM's default ``max_num_seqs`` is 256; NeuPIMs reports
#: batches up to 512).
MAX_BATCH = Limit(2**24, "2^24 sequences or images per step")

#: Most layers of one model (a transformer's ``layers``, a CNN's layers once its groups
#: are expanded): 2**16. A trace holds about ten ops per layer; the deepest published
#: models have a few hundred (GPT-3 175B: 96 blocks, Llama 3.1 405B: 126; ResNet-152: 152
#: layers).
MAX_LAYERS = Limit(2**16, "2^16 layers per model")

#: Most 64 B accesses one ``neupims memsim`` run simulates: the command-level model holds
#: every request as a Python object (about 155 B each, measured with tracemalloc) and
#: issues about 10^6 commands per second, so 2**24 requests take about 2.5 GB and a minute.
MAX_MEMSIM_REQUESTS = Limit(2**24, "2^24 requests per memsim run")


def limit_text(limit: int) -> str:
    """``limit`` with its reason, as error messages print it."""
    why = getattr(limit, "why", None)
    return f"{int(limit):,} ({why}; see neupims/limits.py)" if why else f"{int(limit):,}"


def check_int(name: str, value: object, lo: int | None = 1, hi: int | None = MAX_DIM) -> int:
    """``value`` as an int in ``[lo, hi]``; ValueError naming ``name`` and what was expected.

    Booleans and non-integral numbers are refused (``True`` is not a batch size); an
    integral float such as ``64.0`` is accepted. ``lo`` or ``hi`` None: no bound.
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    if not isinstance(value, int):
        try:
            value = int(value.__index__())  # numpy integers
        except (AttributeError, TypeError):
            raise ValueError(
                f"{name} must be an integer, got {type(value).__name__} {value!r}"
            ) from None
    if lo is not None and value < lo:
        what = "positive" if lo == 1 else f">= {lo}"
        raise ValueError(f"{name} must be {what}, got {value}")
    if hi is not None and value > hi:
        raise ValueError(f"{name} = {value:,} exceeds the limit {limit_text(hi)}")
    return value


def check_finite(name: str, value: object) -> float:
    """``value`` as a finite float; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


__all__ = [
    "MAX_BATCH",
    "MAX_DIM",
    "MAX_ELEMS",
    "MAX_LAYERS",
    "MAX_MEMSIM_REQUESTS",
    "MAX_OP_BYTES",
    "MAX_SEQ_LEN",
    "Limit",
    "check_finite",
    "check_int",
    "limit_text",
]
