"""One device's share of a decode step, read from the zoo's op trace (``neupims.trace``).

Systems never restate a model's architecture: they take the ops of one decoder block from
the trace of the model (Megatron tensor parallelism, the last pipeline stage) and group
them by position around the attention core:

* ``qkv``: the ops before the attention core (norm, QKV projection);
* ``attention``: the core itself, as a template :class:`~neupims.ops.Attention` (heads,
  KV heads, head size and dtype per device); the context lengths of the requests are
  supplied per iteration (:meth:`DecodeBlock.attention_ops`);
* ``projffn``: the ops after it (output projection, residual add, norm, FFN up, gated or
  not, activation, FFN down, add); :data:`~neupims.workloads.transformer.TP_ALLREDUCE_AFTER`
  names those followed by a tensor-parallel all-reduce of their output;
* ``pre`` (embedding, first stage) and ``head`` (final norm and LM head, last stage).

A context length here is the number of keys attended, the new token's included: the
trace's decode step over ``s - 1`` cached tokens (``neupims.trace(..., seq=s - 1)``).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from neupims.errors import ConfigError
from neupims.ops import Attention, Gemm, Op, dtype_bytes
from neupims.workloads import get_model, trace
from neupims.workloads.transformer import TP_ALLREDUCE_AFTER


@dataclass(frozen=True)
class BlockOp:
    """An op of the block and whether a TP all-reduce of its output follows it."""

    role: str  # the op's name within the block, e.g. ``attn.qkv``
    op: Op
    allreduce: bool = False

    @property
    def allreduce_bytes(self) -> float:
        """Bytes of the output that is all-reduced (``m x n`` of the GEMM)."""
        op = self.op
        return float(op.m * op.n * dtype_bytes(op.dtype)) if self.allreduce else 0.0


@dataclass(frozen=True)
class DecodeBlock:
    """The ops one device runs per decode step for a batch of ``batch`` requests."""

    model: str
    batch: int
    tp: int
    pp: int
    model_layers: int  # decoder blocks of the whole model
    pre: tuple[BlockOp, ...]
    qkv: tuple[BlockOp, ...]
    attention: Attention  # template: kv_len = 1, batch = 1
    projffn: tuple[BlockOp, ...]
    head: tuple[BlockOp, ...]

    @property
    def stage_layers(self) -> int:
        """Decoder blocks on one pipeline stage."""
        return self.model_layers // self.pp

    @property
    def kv_write_bytes(self) -> float:
        """Bytes of the new token's K and V written to the cache per block."""
        a = self.attention
        return 2.0 * self.batch * a.kv_heads * a.head_dim * dtype_bytes(a.dtype)

    @property
    def output_bytes(self) -> float:
        """Bytes of the block's output activations (what a pipeline stage hands on)."""
        out = self.projffn[-1].op
        return float(out.elems * dtype_bytes(out.dtype))

    @property
    def weight_params(self) -> int:
        """Linear-layer weights of one block on this device (elements)."""
        return sum(b.op.k * b.op.n * b.op.batch for b in self.linear())

    @property
    def head_params(self) -> int:
        return sum(b.op.k * b.op.n for b in self.head if isinstance(b.op, Gemm))

    def linear(self) -> list[BlockOp]:
        return [b for b in (*self.qkv, *self.projffn) if isinstance(b.op, Gemm)]

    def kv_bytes_per_token(self) -> float:
        """K and V bytes one token of context occupies per block on this device."""
        a = self.attention
        return 2.0 * a.kv_heads * a.head_dim * dtype_bytes(a.dtype)

    def attention_ops(self, seq_lens) -> list[Attention]:
        """One attention op per distinct context length, as the trace groups a ragged batch."""
        counts = Counter(int(s) for s in np.asarray(seq_lens).ravel())
        return [
            dataclasses.replace(self.attention, batch=n, kv_len=s)
            for s, n in sorted(counts.items())
        ]


def _stage_of(ops) -> tuple[list, list, list]:
    """Split one block's traced ops at the attention core (pre-core, core, post-core)."""
    core = [i for i, t in enumerate(ops) if isinstance(t.op, Attention)]
    if len(core) != 1:
        raise ConfigError(f"expected one attention op per decoder block, found {len(core)}")
    i = core[0]
    return ops[:i], [ops[i]], ops[i + 1 :]


@lru_cache(maxsize=4096)
def decode_block(model: str, batch: int, tp: int = 1, pp: int = 1, dtype: str = "fp16"):
    """The :class:`DecodeBlock` of ``model`` for ``batch`` requests on one device of a
    ``tp`` x ``pp`` split (the last pipeline stage: it holds the LM head, the slowest
    stage). Raises ConfigError for models that are not decoders."""
    spec = get_model(model)
    if getattr(spec, "kind", None) != "decoder":
        raise ConfigError(
            f"model {model!r} is a {getattr(spec, 'kind', '?')} model; the serving systems "
            "run decoder (generative) models"
        )
    stage = pp - 1
    tr = trace(model, "decode", batch, seq=1, tp=tp, dtype=dtype, pp=pp, stage=stage)
    first = spec.layers // pp * stage
    prefix = f"L{first}."

    def block_op(t, role: str) -> BlockOp:
        return BlockOp(role, t.op, role in TP_ALLREDUCE_AFTER and tp > 1)

    layer = [t for t in tr if t.layer.startswith(prefix)]
    before, core, after = _stage_of(layer)
    rest = [t for t in tr if not t.layer.startswith("L")]
    pre = tuple(block_op(t, t.layer) for t in rest if t.layer.startswith("embed"))
    head = tuple(block_op(t, t.layer) for t in rest if not t.layer.startswith("embed"))
    att = dataclasses.replace(core[0].op, batch=1, kv_len=1)
    return DecodeBlock(
        model=model,
        batch=batch,
        tp=tp,
        pp=pp,
        model_layers=spec.layers,
        pre=pre,
        qkv=tuple(block_op(t, t.layer.removeprefix(prefix)) for t in before),
        attention=att,
        projffn=tuple(block_op(t, t.layer.removeprefix(prefix)) for t in after),
        head=head,
    )
