"""Workloads: the model zoo (``workloads/models/*.yaml``) and op traces of one step.

    get_model(name) -> frozen spec           list_models() -> names
    trace(model, phase, batch, seq, tp=1, dtype="fp16", pp=1, stage=0) -> list[TracedOp]
    datasets.sample_requests(name, n, seed) -> (input_lens, output_lens)

``trace`` dispatches on the model's kind through :data:`TRACERS`; to add a kind, write
its schema in :mod:`neupims.workloads.specs` and its tracer, and register both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from neupims.errors import NeupimsError
from neupims.limits import MAX_BATCH, MAX_DIM, MAX_SEQ_LEN, Limit, limit_text
from neupims.ops import DTYPE_BYTES
from neupims.workloads.cnn import im2win_layers, trace_cnn
from neupims.workloads.specs import ModelSpec
from neupims.workloads.trace_io import TracedOp, read_trace, write_trace
from neupims.workloads.transformer import PHASES, trace_transformer, trace_vit
from neupims.workloads.zoo import get_model, list_models

#: model kind -> tracer(spec, name, phase, batch, seqs, tp, dtype, pp=, stage=).
TRACERS: dict[str, Callable[..., list[TracedOp]]] = {
    "decoder": trace_transformer,
    "encoder": trace_transformer,
    "vit": trace_vit,
    "cnn": trace_cnn,
}


def _positive(what: str, v: object, hi: int | None = MAX_DIM, minimum: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum:
        kind = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise NeupimsError(f"{what} must be {kind}, got {v!r}")
    if hi is not None and v > hi:
        raise NeupimsError(f"{what} = {int(v):,} exceeds the limit {limit_text(hi)}")
    return int(v)


def _lengths(batch: int, seq: int | Sequence[int], phase: str, minimum: int = 1) -> tuple[int, ...]:
    """One length per request: ``seq`` repeated ``batch`` times, or ``seq`` itself, each at
    least ``minimum``.

    A length is at most :data:`MAX_SEQ_LEN` tokens, in decode including the new token."""
    hi = (
        Limit(MAX_SEQ_LEN - 1, f"{MAX_SEQ_LEN.why}, with the new token")
        if phase == "decode"
        else MAX_SEQ_LEN
    )
    if isinstance(seq, Sequence | np.ndarray) and not isinstance(seq, str):
        if len(seq) != batch:
            raise NeupimsError(
                f"seq has {len(seq)} per-request lengths but batch is {batch}; "
                "give one length per request"
            )
        return tuple(_positive(f"seq[{i}]", v, hi, minimum) for i, v in enumerate(seq))
    return (_positive("seq", seq, hi, minimum),) * batch


def trace(
    model: str | ModelSpec,
    phase: str = "decode",
    batch: int = 1,
    seq: int | Sequence[int] = 1,
    tp: int = 1,
    dtype: str = "fp16",
    pp: int = 1,
    stage: int = 0,
) -> list[TracedOp]:
    """Ops of one forward step of ``model`` (a zoo name, YAML path or spec).

    - ``phase``: ``prefill`` (``seq`` prompt tokens per sequence) or ``decode`` (one new
      token per sequence; ``seq`` >= 0 tokens already in the KV cache, so attention reads
      ``seq + 1`` keys). Encoders run their whole input whatever the phase; ViTs and CNNs
      ignore ``phase`` and ``seq``.
    - ``seq`` may also be a list of ``batch`` per-request lengths (a ragged batch): linear
      layers then see the packed tokens (sum of lengths in prefill, batch in decode) and
      attention is one op per distinct length.
    - ``batch``: sequences (or images); ``tp``: tensor-parallel ranks (the trace is one
      rank's work); ``dtype``: element type of every op.
    - ``pp``, ``stage``: pipeline parallelism; the trace is that of ``stage`` (0-based) of
      ``pp`` equal stages of layers; the first stage embeds, the last normalises and
      projects to the vocabulary. Layer names keep their global index.
    """
    name = model if isinstance(model, str) else getattr(model, "kind", "model")
    spec = get_model(model)
    if phase not in PHASES:
        raise NeupimsError(f"phase must be one of {list(PHASES)}, got {phase!r}")
    batch = _positive("batch", batch, MAX_BATCH)
    # a decode step may start from an empty cache (it then attends to its own token only)
    empty_ok = phase == "decode" and getattr(spec, "kind", "") == "decoder"
    seqs = _lengths(batch, seq, phase, 0 if empty_ok else 1)
    tp = _positive("tp", tp)
    if not isinstance(dtype, str) or dtype not in DTYPE_BYTES:
        raise NeupimsError(f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}")
    try:
        return TRACERS[spec.kind](spec, name, phase, batch, seqs, tp, dtype, pp=pp, stage=stage)
    except NeupimsError:
        raise
    except ValueError as exc:  # an op out of its limits, e.g. batch x seq tokens > MAX_DIM
        raise NeupimsError(
            f"{name} {phase} batch={batch} seq={seq if isinstance(seq, int) else '[...]'}: {exc}"
        ) from None


__all__ = [
    "PHASES",
    "TRACERS",
    "TracedOp",
    "get_model",
    "im2win_layers",
    "list_models",
    "read_trace",
    "trace",
    "write_trace",
]
