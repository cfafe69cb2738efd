"""Prefill batching policies: padding, length-ordered batching and Prepacking.

Prepacking (Zhao, Israel, Van den Broeck, Grover, arXiv 2404.09529, AISTATS 2025;
docs/sources/kernels.md section 8) prefills a batch of prompts of different lengths without
padding them to the longest: the prompts are bin-packed into rows whose capacity is the
longest prompt of the batch, each row gets a block-diagonal causal mask and restarted
position ids, and each prompt's KV cache is sliced back out. Its baselines are "full
batching" (random batches padded to their longest prompt) and "length-ordered" batching
(the prompts sorted by length, then cut into batches, each padded).

A policy (:data:`PREFILL_POLICIES`, keyed ``padding``, ``length_ordered``, ``prepacking``)
says how a stream of prompts is cut into batches (arrival order or sorted by length) and how
one batch is laid out (padded rows, one per prompt, or packed rows). For a layout,
:func:`prefill_ops` gives the op trace of its prefill step and :func:`prefill_memory` the
peak device memory; :func:`run_prefill` costs a whole prompt set through
:func:`neupims.serving.costing.step_time`.

Packing (:data:`PACKERS`): ``best_fit_decreasing`` is what the paper's code runs (its
"greedy" packer is ``binpacking.to_constant_volume``: prompts in decreasing length, each
into the fullest row it fits, a new row when none fits); ``first_fit_decreasing`` puts each
into the first row it fits. Ties go to the lower index, so packing is deterministic.

Attention (:data:`ATTENTION_MODES`):

* ``sdpa_mask`` (the paper's Hugging Face setup): a dense [rows, 1, W, W] fp16 mask is built
  and every row runs SDPA over all W x W (query, key) pairs of the padded width W, masked
  pairs included (a kernel given an arbitrary mask cannot skip blocks);
* ``eager``: the same pairs, with the score matrix materialised (Q K^T GEMM, softmax, P V
  GEMM; fp32 softmax as Hugging Face's eager attention);
* ``varlen``: a variable-length causal kernel (FlashAttention varlen): one causal attention
  per prompt, sum L_i^2 / 2 pairs, no mask. Packed rows are then one flat token stream
  (sum L_i tokens through the linear layers); padded rows still carry their pads through
  the linear layers (only attention is unpadded).

Units: tokens, bytes, seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from neupims.errors import NeupimsError
from neupims.ops import Attention, Elementwise, Gemm, dtype_bytes
from neupims.serving.costing import step_time
from neupims.workloads import TracedOp, get_model, trace
from neupims.workloads.datasets import sample_requests
from neupims.workloads.specs import TransformerSpec

ATTENTION_MODES = ("sdpa_mask", "eager", "varlen")
#: ``all``: logits of every position, as a Hugging Face forward returns them (fp16 out of
#: the LM head, then an fp32 copy: ``logits.float()``); ``last``: only each prompt's last
LOGITS_MODES = ("all", "last")

# ----------------------------------------------------------------------------- packing


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Rows of item indices: items by decreasing length, each into the fullest row it fits."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        best = -1
        for r, f in enumerate(fill):
            if f + lengths[i] <= capacity and (best < 0 or f > fill[best]):
                best = r
        if best < 0:
            rows.append([])
            fill.append(0)
            best = len(rows) - 1
        rows[best].append(i)
        fill[best] += lengths[i]
    return rows


def first_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Rows of item indices: items by decreasing length, each into the first row it fits."""
    rows: list[list[int]] = []
    fill: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        for r, f in enumerate(fill):
            if f + lengths[i] <= capacity:
                rows[r].append(i)
                fill[r] += lengths[i]
                break
        else:
            rows.append([i])
            fill.append(lengths[i])
    return rows


#: packer name -> fn(lengths, capacity) -> rows of indices into ``lengths``
PACKERS: dict[str, Callable[[Sequence[int], int], list[list[int]]]] = {
    "best_fit_decreasing": best_fit_decreasing,
    "first_fit_decreasing": first_fit_decreasing,
}


def pack(lengths: Sequence[int], packer: str = "best_fit_decreasing") -> list[list[int]]:
    """Pack prompts of ``lengths`` tokens into rows of capacity max(lengths)."""
    if packer not in PACKERS:
        raise NeupimsError(f"unknown packer {packer!r}; expected one of {sorted(PACKERS)}")
    _check_lengths(lengths)
    return PACKERS[packer](list(lengths), max(lengths))


def _check_lengths(lengths: Sequence[int]) -> None:
    if len(lengths) == 0:
        raise NeupimsError("a prefill batch needs at least one prompt length")
    for i, n in enumerate(lengths):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
            raise NeupimsError(f"prompt length [{i}] must be a positive integer, got {n!r}")


# ----------------------------------------------------------------------------- layouts


@dataclass(frozen=True)
class Layout:
    """How one prefill batch sits in the input tensor: ``rows`` of prompt indices (into
    ``lengths``), each row the prompts placed one after another; the tensor is
    ``n_rows`` x ``width`` tokens, every row padded to the longest."""

    lengths: tuple[int, ...]
    rows: tuple[tuple[int, ...], ...]
    packed: bool

    @property
    def n_prompts(self) -> int:
        return len(self.lengths)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def row_lens(self) -> tuple[int, ...]:
        return tuple(sum(self.lengths[i] for i in r) for r in self.rows)

    @property
    def width(self) -> int:
        """Padded width of the input tensor: the longest row."""
        return max(self.row_lens)

    @property
    def useful_tokens(self) -> int:
        return sum(self.lengths)

    @property
    def dense_tokens(self) -> int:
        """Tokens of the padded n_rows x width tensor (pads included)."""
        return self.n_rows * self.width


def padded_layout(lengths: Sequence[int]) -> Layout:
    """One row per prompt, padded to the batch's longest prompt."""
    _check_lengths(lengths)
    return Layout(tuple(int(n) for n in lengths), tuple((i,) for i in range(len(lengths))), False)


def packed_layout(lengths: Sequence[int], packer: str = "best_fit_decreasing") -> Layout:
    """Prompts bin-packed into rows of capacity max(lengths) (Prepacking)."""
    rows = pack(lengths, packer)
    return Layout(tuple(int(n) for n in lengths), tuple(tuple(r) for r in rows), True)


# ----------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class PrefillPolicy:
    """How prompts are batched (``order``) and how a batch is laid out (``packed``)."""

    name: str
    order: Literal["arrival", "length"]
    packed: bool
    description: str

    def batches(self, lengths: Sequence[int], batch_size: int) -> list[tuple[int, ...]]:
        """Indices into ``lengths`` of each batch, in the order they run."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise NeupimsError(f"batch_size must be a positive integer, got {batch_size!r}")
        idx = list(range(len(lengths)))
        if self.order == "length":  # stable: equal lengths keep arrival order
            idx.sort(key=lambda i: lengths[i])
        return [tuple(idx[s : s + batch_size]) for s in range(0, len(idx), batch_size)]

    def layout(self, lengths: Sequence[int], packer: str = "best_fit_decreasing") -> Layout:
        return packed_layout(lengths, packer) if self.packed else padded_layout(lengths)


PREFILL_POLICIES: dict[str, PrefillPolicy] = {}


def register_policy(policy: PrefillPolicy) -> PrefillPolicy:
    PREFILL_POLICIES[policy.name] = policy
    return policy


def get_policy(name: str) -> PrefillPolicy:
    if name not in PREFILL_POLICIES:
        raise NeupimsError(
            f"unknown prefill policy {name!r}; expected one of {sorted(PREFILL_POLICIES)}"
        )
    return PREFILL_POLICIES[name]


register_policy(
    PrefillPolicy(
        "padding",
        "arrival",
        False,
        "full batching: prompts in arrival order, each batch padded to its longest prompt",
    )
)
register_policy(
    PrefillPolicy(
        "length_ordered",
        "length",
        False,
        "prompts sorted by length, cut into batches, each padded to its longest prompt",
    )
)
register_policy(PrefillPolicy(
    "prepacking", "arrival", True,
    "prompts in arrival order, each batch bin-packed into rows of its longest prompt"))  # fmt: skip

# ----------------------------------------------------------------------------- op trace


def _spec(model: str | TransformerSpec) -> TransformerSpec:
    spec = get_model(model)
    if not isinstance(spec, TransformerSpec) or spec.kind != "decoder":
        raise NeupimsError(f"prefill policies need a decoder model, got {model!r}")
    return spec


def _check_modes(attention: str, logits: str) -> None:
    if attention not in ATTENTION_MODES:
        raise NeupimsError(f"attention must be one of {list(ATTENTION_MODES)}, got {attention!r}")
    if logits not in LOGITS_MODES:
        raise NeupimsError(f"logits must be one of {list(LOGITS_MODES)}, got {logits!r}")


def linear_tokens(layout: Layout, attention: str) -> int:
    """Tokens through the linear layers: the padded tensor, except packed + varlen (flat)."""
    if attention == "varlen" and layout.packed:
        return layout.useful_tokens
    return layout.dense_tokens


def attention_ops(
    spec: TransformerSpec, layout: Layout, attention: str, dtype: str
) -> list[tuple[str, object]]:
    """(name suffix, op) of one layer's attention for ``layout``."""
    h, kv, hd = spec.heads, spec.n_kv_heads, spec.d_head
    r, w = layout.n_rows, layout.width
    if attention == "varlen":
        counts = Counter(layout.lengths)
        return [("attn.core", Attention(c, h, kv, n, n, hd, dtype, causal=True))
                for n, c in sorted(counts.items())]  # fmt: skip
    if attention == "sdpa_mask":
        return [("attn.core", Attention(r, h, kv, w, w, hd, dtype, causal=False))]
    return [  # eager: scores through HBM
        ("attn.scores", Gemm(w, w, hd, batch=r * h, dtype=dtype)),
        ("attn.softmax", Elementwise("softmax", r * h * w * w, dtype)),
        ("attn.pv", Gemm(w, hd, w, batch=r * h, dtype=dtype)),
    ]


def prefill_ops(
    model: str | TransformerSpec,
    layout: Layout,
    *,
    attention: str = "sdpa_mask",
    logits: str = "all",
    dtype: str = "fp16",
) -> list[TracedOp]:
    """Op trace of one prefill step of ``layout`` (module docstring for the modes).

    Linear layers, norms and element-wise ops see :func:`linear_tokens` rows (from
    :func:`neupims.workloads.trace`); each layer's attention is :func:`attention_ops`; with a
    dense mask one mask-building copy of n_rows x width^2 elements runs once; the LM head
    projects every position (``logits="all"``) or each prompt's last (``"last"``).
    """
    _check_modes(attention, logits)
    spec = _spec(model)
    tokens = linear_tokens(layout, attention)
    base = trace(spec, "prefill", batch=1, seq=tokens, dtype=dtype)
    attn = attention_ops(spec, layout, attention, dtype)
    out: list[TracedOp] = []
    for t in base:
        if t.layer.endswith(".attn.core"):
            prefix = t.layer[: -len("attn.core")]
            out += [TracedOp(prefix + name, op) for name, op in attn]
        elif t.layer == "lm_head":
            rows = tokens if logits == "all" else layout.n_prompts
            out.append(TracedOp("lm_head", Gemm(rows, t.op.n, t.op.k, dtype=dtype)))
        else:
            out.append(t)
            if t.layer == "embed" and attention != "varlen":
                mask = Elementwise("copy", layout.n_rows * layout.width**2, dtype)
                out.append(TracedOp("attn.mask", mask))
    return out


# ----------------------------------------------------------------------------- memory


@dataclass(frozen=True)
class PrefillMemory:
    """Peak device memory of one prefill step, in bytes, by part.

    ``weights``: linear layers at ``weight_bits`` plus the embedding and LM head in fp16
    (8-bit loading keeps them in fp16); ``kv``: the KV cache the forward returns, every
    layer's, for every token of the tensor (pads included: the cache is dense);
    ``mask``: the materialised 4-D attention mask; ``activations``: the largest transient
    of one layer (residual, normed input, QKV, attention output; or residual, normed input,
    gate and up projections and their product; plus the scores under ``eager``);
    ``logits``: the LM head's output and its fp32 copy. The peak is weights + kv + mask +
    max(activations, logits): the KV of every layer is held until the forward returns.
    """

    weights: float
    kv: float
    mask: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.weights + self.kv + self.mask + max(self.activations, self.logits)


def weight_bytes(spec: TransformerSpec, weight_bits: int, dtype: str = "fp16") -> float:
    """Linear weights at ``weight_bits`` + untied embedding and LM head at ``dtype``."""
    emb = 2.0 * spec.vocab * spec.d_model * dtype_bytes(dtype)
    return spec.params * weight_bits / 8 + emb


def prefill_memory(
    model: str | TransformerSpec,
    layout: Layout,
    *,
    attention: str = "sdpa_mask",
    logits: str = "all",
    weight_bits: int = 16,
    dtype: str = "fp16",
) -> PrefillMemory:
    """Peak memory of the prefill step of ``layout`` (see :class:`PrefillMemory`)."""
    _check_modes(attention, logits)
    spec = _spec(model)
    if weight_bits not in (4, 8, 16):
        raise NeupimsError(f"weight_bits must be 4, 8 or 16, got {weight_bits!r}")
    b = dtype_bytes(dtype)
    t = linear_tokens(layout, attention)
    d, hd, h, kvh = spec.d_model, spec.d_head, spec.heads, spec.n_kv_heads
    up = spec.d_ff * (2 if spec.gated else 1)
    kv = 2.0 * spec.layers * kvh * hd * b * t
    dense = attention != "varlen"
    r, w = layout.n_rows, layout.width
    mask = r * w * w * b if dense else 0.0
    attn_part = t * (3 * d + (h + 2 * kvh) * hd + h * hd)
    mlp_part = t * (2 * d + up + spec.d_ff)
    act = max(attn_part, mlp_part) * b
    if attention == "eager":
        act += r * h * w * w * (b + 4.0)  # scores in fp16 and their fp32 softmax
    rows = t if logits == "all" else layout.n_prompts
    lg = rows * spec.vocab * (b + 4.0)
    return PrefillMemory(weight_bytes(spec, weight_bits, dtype), kv, mask, act, lg)


# ----------------------------------------------------------------------------- runs


def prompt_lengths(dataset: str, n: int, seed: int = 0, max_len: int | None = None) -> np.ndarray:
    """``n`` prompt (input) lengths of a dataset (seeded), clipped to ``max_len`` tokens
    (the tokenizer truncates at the model's context)."""
    lengths, _ = sample_requests(dataset, n, seed)
    return np.minimum(lengths, max_len) if max_len else lengths


@dataclass(frozen=True)
class PrefillRun:
    """A prompt set prefilled batch by batch under one policy: per batch its layout,
    seconds and peak bytes."""

    policy: str
    batch_size: int
    layouts: tuple[Layout, ...]
    seconds: tuple[float, ...]
    peak_bytes: tuple[float, ...]

    @property
    def n_prompts(self) -> int:
        return sum(lay.n_prompts for lay in self.layouts)

    @property
    def ttft_s(self) -> float:
        """Mean over prompts of the prefill time of the batch each prompt is in."""
        return sum(lay.n_prompts * s for lay, s in zip(self.layouts, self.seconds, strict=True)) / (
            self.n_prompts
        )

    @property
    def prompts_per_s(self) -> float:
        return self.n_prompts / sum(self.seconds)

    @property
    def peak_memory(self) -> float:
        return max(self.peak_bytes)

    @property
    def useful_tokens(self) -> int:
        return sum(lay.useful_tokens for lay in self.layouts)


def run_prefill(
    hw,
    model: str | TransformerSpec,
    lengths: Sequence[int],
    policy: str,
    batch_size: int,
    *,
    packer: str = "best_fit_decreasing",
    attention: str = "sdpa_mask",
    logits: str = "all",
    weight_bits: int = 16,
    dtype: str = "fp16",
    timed: bool = True,
    dispatch: str | None = None,
) -> PrefillRun:
    """Prefill every prompt of ``lengths`` under ``policy`` on ``hw`` (seconds via
    :func:`step_time` with ``dispatch``, the device's default when None; ``timed=False``
    skips the costing and reports memory only)."""
    pol = get_policy(policy)
    _check_lengths(lengths)
    layouts, secs, peaks = [], [], []
    for idx in pol.batches(lengths, batch_size):
        lay = pol.layout([int(lengths[i]) for i in idx], packer)
        layouts.append(lay)
        peaks.append(prefill_memory(model, lay, attention=attention, logits=logits,
                                    weight_bits=weight_bits, dtype=dtype).total)  # fmt: skip
        if timed:
            ops = prefill_ops(model, lay, attention=attention, logits=logits, dtype=dtype)
            secs.append(step_time(hw, ops, dispatch).seconds)
        else:
            secs.append(float("nan"))
    return PrefillRun(policy, batch_size, tuple(layouts), tuple(secs), tuple(peaks))


def batch_candidates(n_prompts: int) -> list[int]:
    """Batch sizes tried by :func:`max_batch`: powers of two below ``n_prompts``, then it."""
    out, b = [], 1
    while b < n_prompts:
        out.append(b)
        b *= 2
    return [*out, n_prompts]


def max_batch(
    model: str | TransformerSpec,
    lengths: Sequence[int],
    policy: str,
    capacity_bytes: float,
    **kw,
) -> int:
    """Largest batch size of :func:`batch_candidates` for which every batch of the prompt
    set fits in ``capacity_bytes``, trying them in increasing order and stopping at the
    first that does not fit (0 when batch 1 does not). Memory only; ``kw`` as
    :func:`run_prefill` (packer, attention, logits, weight_bits, dtype)."""
    best = 0
    for b in batch_candidates(len(lengths)):
        run = run_prefill(None, model, lengths, policy, b, timed=False, **kw)
        if run.peak_memory <= capacity_bytes:
            best = b
        else:
            break
    return best


__all__ = [
    "ATTENTION_MODES",
    "LOGITS_MODES",
    "PACKERS",
    "PREFILL_POLICIES",
    "Layout",
    "PrefillMemory",
    "PrefillPolicy",
    "PrefillRun",
    "attention_ops",
    "batch_candidates",
    "best_fit_decreasing",
    "first_fit_decreasing",
    "get_policy",
    "linear_tokens",
    "max_batch",
    "pack",
    "packed_layout",
    "padded_layout",
    "prefill_memory",
    "prefill_ops",
    "prompt_lengths",
    "register_policy",
    "run_prefill",
    "weight_bytes",
]
