"""Schemas of model definitions (``workloads/models/*.yaml``), validated into frozen specs.

A model file maps model names to definitions; each definition has a ``kind`` that selects
its schema in :data:`MODEL_KINDS`:

- ``decoder`` / ``encoder``: transformer stacks (:class:`TransformerSpec`);
- ``vit``: an encoder fed by a patch-embedding convolution, with a class head (:class:`VitSpec`);
- ``cnn``: an explicit layer list of conv2d / pool / fc / elementwise layers, with repeated
  groups (:class:`CnnSpec`).

Sizes are counts of elements (``d_model``, ``d_ff``, ...), never bytes. Every definition
carries a ``source`` string naming where its numbers come from.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal, Union

from pydantic import AfterValidator, Field, field_validator, model_validator

from neupims.config.base import Dim, NonNegInt, Spec, at_most
from neupims.limits import MAX_LAYERS, MAX_SEQ_LEN, limit_text
from neupims.ops import ELEMENTWISE_KINDS


def _elementwise_kind(kind: str) -> str:
    if kind not in ELEMENTWISE_KINDS:
        raise ValueError(f"expected an element-wise kind, one of {sorted(ELEMENTWISE_KINDS)}")
    return kind


#: Name of an element-wise op kind of :data:`neupims.ops.ELEMENTWISE_KINDS`.
EltKind = Annotated[str, AfterValidator(_elementwise_kind)]

# ---------------------------------------------------------------------------- transformers


class TransformerSpec(Spec):
    """A decoder (causal, generates tokens) or encoder (bidirectional) transformer stack.

    Linear layers are bias-free in the FLOP count (biases are element-wise work, not GEMM).
    ``head_dim`` defaults to ``d_model / heads``; ``kv_heads`` defaults to ``heads`` (MHA);
    fewer KV heads is grouped-query attention. ``norm_position`` is ``pre`` (GPT, Llama)
    or ``post`` (BERT: norm after each residual add, plus a norm on the embeddings).
    """

    kind: Literal["decoder", "encoder"]
    source: str = Field(min_length=1)
    layers: Annotated[Dim, at_most(MAX_LAYERS)]
    d_model: Dim
    heads: Dim
    kv_heads: Dim | None = None
    head_dim: Dim | None = None
    d_ff: Dim
    ffn: Literal["gelu", "relu", "swiglu"]
    norm: Literal["layernorm", "rmsnorm"]
    norm_position: Literal["pre", "post"] = "pre"
    vocab: Dim
    max_context: Annotated[Dim, at_most(MAX_SEQ_LEN)]
    notes: str = ""

    @model_validator(mode="after")
    def _check(self) -> TransformerSpec:
        if self.heads % self.n_kv_heads:
            raise ValueError(
                f"heads ({self.heads}) must be a multiple of kv_heads ({self.n_kv_heads})"
            )
        if self.head_dim is None and self.d_model % self.heads:
            raise ValueError(
                f"d_model ({self.d_model}) is not a multiple of heads ({self.heads}); "
                "set head_dim explicitly"
            )
        return self

    @property
    def n_kv_heads(self) -> int:
        return self.kv_heads if self.kv_heads is not None else self.heads

    @property
    def d_head(self) -> int:
        return self.head_dim if self.head_dim is not None else self.d_model // self.heads

    @property
    def gated(self) -> bool:
        """True when the FFN up projection is gate and up fused (2 x d_ff outputs)."""
        return self.ffn == "swiglu"

    @property
    def layer_linear_params(self) -> int:
        """Weights of the four GEMMs of one layer (QKV, O, FFN up, FFN down), no biases."""
        d, hd = self.d_model, self.d_head
        qkv = d * (self.heads + 2 * self.n_kv_heads) * hd
        o = self.heads * hd * d
        up = d * self.d_ff * (2 if self.gated else 1)
        down = self.d_ff * d
        return qkv + o + up + down

    @property
    def params(self) -> int:
        """Linear parameters of all layers, excluding embeddings and the LM head
        (the "params excl. embeddings" column of docs/sources/workloads.md §1)."""
        return self.layers * self.layer_linear_params

    def kv_bytes_per_token(self, dtype_bytes: float = 2.0) -> float:
        """KV-cache bytes per context token: 2 (K and V) x layers x kv_heads x d_head x bytes."""
        return 2.0 * self.layers * self.n_kv_heads * self.d_head * dtype_bytes


class VitSpec(TransformerSpec):
    """Vision transformer: a ``patch`` x ``patch`` stride-``patch`` convolution embeds a
    ``channels`` x ``image`` x ``image`` picture into (image/patch)^2 tokens, plus one CLS
    token; a pre-norm encoder follows; the class head is a [classes, d_model] GEMM on CLS."""

    kind: Literal["vit"]  # type: ignore[assignment]
    vocab: Dim = 1  # unused by ViT (no token embedding)
    image: Dim = 224
    patch: Dim = 16
    channels: Dim = 3
    classes: Dim = 1000

    @model_validator(mode="after")
    def _check_patch(self) -> VitSpec:
        if self.image % self.patch:
            raise ValueError(f"image ({self.image}) must be a multiple of patch ({self.patch})")
        return self

    @property
    def tokens(self) -> int:
        """Sequence length: patches plus the CLS token (197 for 224 / 16)."""
        return (self.image // self.patch) ** 2 + 1

    @property
    def params(self) -> int:
        """Encoder linear weights plus patch embedding and class head."""
        patch = self.channels * self.patch * self.patch * self.d_model
        return self.layers * self.layer_linear_params + patch + self.classes * self.d_model


# ----------------------------------------------------------------------------------- CNNs


class ConvLayer(Spec):
    """A conv2d on a per-image input of ``c`` x ``h`` x ``w``; ``post`` lists element-wise
    ops applied to its output (batchnorm, relu, ...)."""

    op: Literal["conv2d"]
    name: str = Field(min_length=1)
    c: Dim
    h: Dim
    w: Dim | None = None
    kout: Dim
    r: Dim
    s: Dim | None = None
    stride: Dim = 1
    pad: NonNegInt = 0
    post: tuple[EltKind, ...] = ()

    @model_validator(mode="after")
    def _check(self) -> ConvLayer:
        if self.h + 2 * self.pad < self.r or (self.w or self.h) + 2 * self.pad < (self.s or self.r):
            raise ValueError(f"filter {self.r}x{self.s or self.r} larger than padded input")
        return self


class PoolLayer(Spec):
    op: Literal["pool2d"]
    name: str = Field(min_length=1)
    kind: Literal["max", "avg"]
    c: Dim
    h: Dim
    w: Dim | None = None
    r: Dim
    s: Dim | None = None
    stride: Dim = 1
    pad: NonNegInt = 0


class FcLayer(Spec):
    """Fully connected layer, weight [n, k]; ``post`` as for conv."""

    op: Literal["fc"]
    name: str = Field(min_length=1)
    n: Dim
    k: Dim
    post: tuple[EltKind, ...] = ()


class EltLayer(Spec):
    """Element-wise op over ``c`` x ``h`` x ``w`` elements per image (e.g. a residual add)."""

    op: Literal["elementwise"]
    name: str = Field(min_length=1)
    kind: EltKind
    c: Dim
    h: Dim = 1
    w: Dim | None = None


class LayerGroup(Spec):
    """``layers`` repeated ``repeat`` times; ``name`` may contain ``{i}`` (the repeat index,
    counted from ``start``) and prefixes the names of its layers."""

    op: Literal["group"]
    name: str = Field(min_length=1)
    repeat: Annotated[Dim, at_most(MAX_LAYERS)] = 1
    start: NonNegInt = 0
    layers: tuple[CnnLayer, ...] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(v)]
        except ValueError as exc:
            raise ValueError(f"name is not a valid template ({exc})") from None
        if any(f is not None and (f != "i" or spec or conv) for f, spec, conv in fields):
            raise ValueError("name may contain only {i} (the repeat index)")
        return v

    @property
    def expanded(self) -> int:
        """Layers once repeated (groups inside counted expanded)."""
        return self.repeat * sum(getattr(x, "expanded", 1) for x in self.layers)


CnnLayer = Annotated[
    Union[ConvLayer, PoolLayer, FcLayer, EltLayer, LayerGroup],  # noqa: UP007
    Field(discriminator="op"),
]
LayerGroup.model_rebuild()


class CnnSpec(Spec):
    """A CNN as an explicit list of layers on one image (the trace multiplies by batch)."""

    kind: Literal["cnn"]
    source: str = Field(min_length=1)
    layers: tuple[CnnLayer, ...] = Field(min_length=1)
    notes: str = ""

    @model_validator(mode="after")
    def _depth(self) -> CnnSpec:
        n = sum(getattr(x, "expanded", 1) for x in self.layers)
        if n > MAX_LAYERS:
            raise ValueError(
                f"the groups expand to {n:,} layers, above the limit {limit_text(MAX_LAYERS)}"
            )
        return self


ModelSpec = TransformerSpec | VitSpec | CnnSpec

#: YAML ``kind`` -> schema class.
MODEL_KINDS: dict[str, type[Spec]] = {
    "decoder": TransformerSpec,
    "encoder": TransformerSpec,
    "vit": VitSpec,
    "cnn": CnnSpec,
}
