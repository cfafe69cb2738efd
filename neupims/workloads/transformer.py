"""Op traces of one forward step of a transformer (decoder, encoder, ViT).

Per layer (pre-norm order; post-norm moves each norm after its residual add):

    norm, QKV gemm, attention (softmax inside), O gemm, add, norm, FFN up gemm,
    activation, FFN down gemm, add

Shapes follow docs/sources/workloads.md §3 and §4. Linear layers have M = tokens in the step
(batch in decode, batch x seq in prefill). Tensor parallelism is Megatron style: QKV and
FFN up are column-parallel (N / tp), O and FFN down row-parallel (K / tp), heads are
split across ranks and KV heads too, replicated when tp exceeds kv_heads. The trace is
the work of one tensor-parallel rank; the all-reduces are communication, left to the
system models. The LM head (decoders) is vocab-parallel: ceil(vocab / tp) outputs per rank.
Pipeline parallelism splits the layers into ``pp`` equal contiguous stages; a stage's trace
holds its layers, the embedding on stage 0 and the final norm and head on the last stage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from neupims.errors import NeupimsError
from neupims.ops import Attention, Conv2d, Elementwise, Gemm
from neupims.workloads.specs import TransformerSpec, VitSpec
from neupims.workloads.trace_io import TracedOp

PHASES = ("prefill", "decode")

#: Ops (by their name within a block) whose outputs are partial sums under the Megatron
#: sharding above: row-parallel GEMMs, each followed by a TP all-reduce of its output.
TP_ALLREDUCE_AFTER = ("attn.o", "mlp.fc2")


@dataclass(frozen=True)
class Step:
    """Token geometry of one step: ``tokens`` rows through linear layers and attention
    ``groups`` of (sequences, q_len, kv_len), one group per distinct request length."""

    batch: int
    tokens: int
    groups: tuple[tuple[int, int, int], ...]
    causal: bool


def make_step(kind: str, phase: str, seqs: tuple[int, ...]) -> Step:
    """Step of a batch whose request ``i`` has length ``seqs[i]``.

    Decoder prefill: ``seqs[i]`` prompt tokens, causal; linear layers see the packed
    sum of lengths (equal lengths give the padded batch x seq). Decode: one new token per
    request over ``seqs[i]`` cached tokens, so attention reads ``seqs[i] + 1`` keys.
    Encoders: the whole input, bidirectional, whatever the phase.
    """
    counts = Counter(seqs)
    batch = len(seqs)
    if kind == "decoder" and phase == "decode":
        groups = tuple((n, 1, s + 1) for s, n in sorted(counts.items()))
        return Step(batch, batch, groups, causal=True)
    groups = tuple((n, s, s) for s, n in sorted(counts.items()))
    return Step(batch, sum(seqs), groups, causal=kind == "decoder")


def shard(spec: TransformerSpec, tp: int, name: str) -> tuple[int, int, int]:
    """(heads, kv_heads, d_ff) per tensor-parallel rank; NeupimsError when tp does not fit."""
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise NeupimsError(f"tp must be a positive integer, got {tp!r}")
    if spec.heads % tp:
        raise NeupimsError(f"{name}: tp={tp} must divide heads={spec.heads} (and d_ff={spec.d_ff})")
    if spec.d_ff % tp:
        raise NeupimsError(f"{name}: tp={tp} must divide d_ff={spec.d_ff}")
    kv = spec.n_kv_heads
    if kv % tp and tp % kv:
        raise NeupimsError(
            f"{name}: tp={tp} and kv_heads={kv} must divide one another "
            "(KV heads are split, or replicated when tp > kv_heads)"
        )
    return spec.heads // tp, max(kv // tp, 1), spec.d_ff // tp


def stage_layers(spec: TransformerSpec, pp: int, stage: int, name: str) -> range:
    """Layer indices of pipeline ``stage`` of ``pp`` (contiguous, equal-sized stages)."""
    if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
        raise NeupimsError(f"pp must be a positive integer, got {pp!r}")
    if spec.layers % pp:
        raise NeupimsError(f"{name}: pp={pp} must divide layers={spec.layers}")
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < pp:
        raise NeupimsError(f"stage must be an integer in [0, {pp - 1}] for pp={pp}, got {stage!r}")
    per = spec.layers // pp
    return range(stage * per, (stage + 1) * per)


def encoder_layers(
    spec: TransformerSpec,
    step: Step,
    tp: int,
    dtype: str,
    name: str,
    layers: range | None = None,
) -> list[TracedOp]:
    """Transformer blocks ``layers`` (default all) of one step (no embedding, no head)."""
    heads, kv, d_ff = shard(spec, tp, name)
    d, hd, m = spec.d_model, spec.d_head, step.tokens
    up_n = d_ff * (2 if spec.gated else 1)
    # Every layer has the same ops; build them once (ops are immutable) and name per layer.
    norm = Elementwise(spec.norm, m * d, dtype)
    add = Elementwise("add", m * d, dtype)
    cores = [
        ("attn.core", Attention(n, heads, kv, q_len, kv_len, hd, dtype, step.causal))
        for n, q_len, kv_len in step.groups
    ]
    attn = [
        ("attn.qkv", Gemm(m, (heads + 2 * kv) * hd, d, dtype=dtype)),
        *cores,
        ("attn.o", Gemm(m, d, heads * hd, dtype=dtype)),
        ("attn.add", add),
    ]
    mlp = [
        ("mlp.fc1", Gemm(m, up_n, d, dtype=dtype)),
        ("mlp.act", Elementwise(spec.ffn, m * d_ff, dtype)),
        ("mlp.fc2", Gemm(m, d, d_ff, dtype=dtype)),
        ("mlp.add", add),
    ]
    if spec.norm_position == "pre":
        block = [("attn.norm", norm), *attn, ("mlp.norm", norm), *mlp]
    else:
        block = [*attn, ("attn.norm", norm), *mlp, ("mlp.norm", norm)]
    out: list[TracedOp] = []
    for i in layers if layers is not None else range(spec.layers):
        out += [TracedOp(f"L{i}.{part}", op) for part, op in block]
    return out


def trace_transformer(
    spec: TransformerSpec,
    name: str,
    phase: str,
    batch: int,
    seqs: tuple[int, ...],
    tp: int,
    dtype: str,
    pp: int = 1,
    stage: int = 0,
) -> list[TracedOp]:
    """One forward step of a decoder or encoder: embed, layers, final norm, LM head.

    ``seqs`` holds one length per request (``batch`` of them). Ragged lengths give one
    attention op per distinct length, all named ``L{i}.attn.core``. With pipeline
    parallelism the trace is that of ``stage``: its layers, plus the embedding on the
    first stage and the final norm and head on the last.
    """
    layers = stage_layers(spec, pp, stage, name)
    step = make_step(spec.kind, phase, seqs)
    d = spec.d_model
    out = []
    if stage == 0:
        out.append(TracedOp("embed", Elementwise("embedding", step.tokens * d, dtype)))
        if spec.norm_position == "post":
            out.append(TracedOp("embed.norm", Elementwise(spec.norm, step.tokens * d, dtype)))
    out += encoder_layers(spec, step, tp, dtype, name, layers)
    if stage < pp - 1:
        return out
    if spec.norm_position == "pre":
        out.append(TracedOp("final_norm", Elementwise(spec.norm, step.tokens * d, dtype)))
    if spec.kind == "decoder":
        # Logits for the last token of each sequence only (the one that is sampled).
        vocab_rank = -(-spec.vocab // tp)
        out.append(TracedOp("lm_head", Gemm(batch, vocab_rank, d, dtype=dtype)))
    return out


def trace_vit(
    spec: VitSpec,
    name: str,
    phase: str,
    batch: int,
    seqs: tuple[int, ...],
    tp: int,
    dtype: str,
    pp: int = 1,
    stage: int = 0,
) -> list[TracedOp]:
    """One image batch through a ViT; ``phase`` and ``seqs`` are ignored (seq = patches + 1)."""
    layers = stage_layers(spec, pp, stage, name)
    s, d = spec.tokens, spec.d_model
    step = make_step("encoder", "prefill", (s,) * batch)
    patch = Conv2d(
        batch=batch,
        c=spec.channels,
        h=spec.image,
        w=spec.image,
        kout=d,
        r=spec.patch,
        s=spec.patch,
        stride=spec.patch,
        pad=0,
        dtype=dtype,
    )
    out = []
    if stage == 0:
        out.append(TracedOp("embed.patch", patch))
        # CLS token concatenated, position embeddings added
        out.append(TracedOp("embed.pos", Elementwise("add", step.tokens * d, dtype)))
    out += encoder_layers(spec, step, tp, dtype, name, layers)
    if stage < pp - 1:
        return out
    out.append(TracedOp("final_norm", Elementwise(spec.norm, step.tokens * d, dtype)))
    classes_rank = -(-spec.classes // tp)
    out.append(TracedOp("head", Gemm(batch, classes_rank, d, dtype=dtype)))
    return out
