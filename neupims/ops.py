"""Operator specs: frozen dataclasses with their FLOP count and minimal bytes moved.

Every op is hashable, so device models memoise their costs by ``(op, config)``.
Units: FLOPs count one multiply-add as 2 FLOPs; bytes are bytes; sizes are elements.

The trace CSV (format in the README, "Formats") names an op in column ``op``; :data:`OP_KINDS` maps that
name to its class, and :func:`op_from_row` builds and validates an op from CSV cells.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from neupims.errors import TraceError
from neupims.limits import (
    MAX_DIM,
    MAX_ELEMS,
    MAX_OP_BYTES,
    MAX_SEQ_LEN,
    check_finite,
    check_int,
    limit_text,
)

#: Bytes per element of every supported dtype. Sub-byte dtypes are fractional.
DTYPE_BYTES: dict[str, float] = {
    "fp64": 8,
    "fp32": 4,
    "tf32": 4,
    "fp16": 2,
    "bf16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
    "int2": 0.25,
    "int1": 0.125,
}


def dtype_bytes(dtype: str) -> float:
    """Bytes per element of ``dtype``; raises ValueError naming the known dtypes."""
    try:
        return DTYPE_BYTES[dtype]
    except KeyError:
        raise ValueError(
            f"unknown dtype {dtype!r}; expected one of {sorted(DTYPE_BYTES)}"
        ) from None


OP_KINDS: dict[str, type[Op]] = {}


def register_op(cls: type[Op]) -> type[Op]:
    """Class decorator: make ``cls`` available in traces under ``cls.name``."""
    OP_KINDS[cls.name] = cls
    return cls


@functools.cache
def _field_checks(cls: type) -> tuple[tuple[str, str, int | None, int | None], ...]:
    """(name, type, min, max) of each field of an op class, as :meth:`Op.validate` checks
    them: ``type`` is int, float, bool, str or dtype; min/max come from the field's
    metadata (defaults 1 and :data:`MAX_DIM`) and apply to ints."""
    out = []
    for f in dataclasses.fields(cls):
        typ = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        typ = "dtype" if f.name == "dtype" else typ
        out.append((f.name, typ, f.metadata.get("min", 1), f.metadata.get("max", MAX_DIM)))
    return tuple(out)


@dataclass(frozen=True)
class Op:
    """Base of all operators. Subclasses set ``name`` and implement the two counts."""

    name: ClassVar[str] = "op"

    @property
    def flops(self) -> float:
        raise NotImplementedError

    @property
    def min_bytes(self) -> float:
        """Compulsory traffic: every input read once and every output written once."""
        raise NotImplementedError

    @property
    def resident_bytes(self) -> float:
        """Bytes that stay in device memory across a whole step (weights, KV caches), as
        opposed to activations that live only while the op runs; counted once per op."""
        return 0.0

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOP per byte of compulsory traffic."""
        return self.flops / self.min_bytes if self.min_bytes else math.inf

    def validate(self) -> None:
        """Raise ValueError naming the first bad field.

        Generic over every registered op: integer fields must be integers in
        ``[min, max]`` (field metadata; defaults 1 and :data:`neupims.limits.MAX_DIM`),
        float fields finite, ``dtype`` a known dtype. Integral values are normalised to
        ``int`` (``64.0`` and numpy integers become ``64``). Subclasses add their own checks
        after calling this.
        """
        for name, typ, lo, hi in _field_checks(type(self)):
            v = getattr(self, name)
            if typ == "int":
                if type(v) is int and (lo is None or v >= lo) and (hi is None or v <= hi):
                    continue  # the common case, without a call
                object.__setattr__(self, name, check_int(name, v, lo, hi))
            elif typ == "dtype":
                if not isinstance(v, str):
                    raise ValueError(f"dtype must be a name, got {v!r}")
                dtype_bytes(v)
            elif typ == "bool":
                if v not in (True, False) or isinstance(v, float):
                    raise ValueError(f"{name} must be true or false, got {v!r}")
                object.__setattr__(self, name, bool(v))
            elif typ == "float":
                check_finite(name, v)
            elif typ == "str" and not isinstance(v, str):
                raise ValueError(f"{name} must be a name, got {v!r}")

    def check_size(self) -> None:
        """Raise ValueError when the op's compulsory traffic exceeds
        :data:`neupims.limits.MAX_OP_BYTES` (a product of dimensions no machine holds)."""
        nbytes = self.min_bytes
        if not nbytes <= MAX_OP_BYTES:
            raise ValueError(
                f"{self.name} operands and results total {nbytes:.3g} bytes, above the limit "
                f"{limit_text(MAX_OP_BYTES)}; check the dimensions"
            )

    def __post_init__(self) -> None:
        self.validate()
        self.check_size()

    def fields(self) -> dict[str, Any]:
        """The op's fields as a plain dict (the trace CSV columns besides ``op``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _nonneg() -> Any:
    return field(default=0, metadata={"min": 0})


@register_op
@dataclass(frozen=True)
class Gemm(Op):
    """C[m, n] = A[m, k] @ B[k, n], repeated ``batch`` times with distinct operands."""

    name: ClassVar[str] = "gemm"
    m: int
    n: int
    k: int
    batch: int = 1
    dtype: str = "fp16"

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.m * self.n * self.k

    @property
    def min_bytes(self) -> float:
        b = dtype_bytes(self.dtype)
        return self.batch * (self.m * self.k + self.k * self.n + self.m * self.n) * b

    @property
    def resident_bytes(self) -> float:
        """The B operand (a linear layer's weights)."""
        return float(self.batch * self.k * self.n * dtype_bytes(self.dtype))


@register_op
@dataclass(frozen=True)
class Gemv(Gemm):
    """A GEMM whose activation side is a vector or a few rows (decode-time linear layers,
    attention GEMVs). Same fields and counts as :class:`Gemm`; device models may pick a
    GEMV kernel for it."""

    name: ClassVar[str] = "gemv"


class _Window2d:
    """Output geometry of a sliding r x s window over a padded h x w input (conv, pool)."""

    h: int
    w: int
    r: int
    s: int
    stride: int
    pad: int

    def _check_window(self) -> None:
        if self.h + 2 * self.pad < self.r or self.w + 2 * self.pad < self.s:
            raise ValueError(
                f"filter {self.r}x{self.s} larger than padded input "
                f"{self.h + 2 * self.pad}x{self.w + 2 * self.pad}"
            )

    @property
    def ho(self) -> int:
        return (self.h + 2 * self.pad - self.r) // self.stride + 1

    @property
    def wo(self) -> int:
        return (self.w + 2 * self.pad - self.s) // self.stride + 1


CONV_ALGOS = ("auto", "implicit_gemm", "fft", "fft_tiling", "winograd", "winograd_nonfused",
              "im2col", "im2win", "direct")  # fmt: skip


@register_op
@dataclass(frozen=True)
class Conv2d(Op, _Window2d):
    """2-D convolution, NCHW input [batch, c, h, w], filter [kout, c, r, s]."""

    name: ClassVar[str] = "conv2d"
    batch: int
    c: int
    h: int
    w: int
    kout: int
    r: int
    s: int
    stride: int = 1
    pad: int = field(default=0, metadata={"min": 0})
    dtype: str = "fp32"
    algo: str = "auto"

    def validate(self) -> None:
        super().validate()
        if self.algo not in CONV_ALGOS:
            raise ValueError(f"algo must be one of {list(CONV_ALGOS)}, got {self.algo!r}")
        self._check_window()

    @property
    def gemm_mnk(self) -> tuple[int, int, int]:
        """Implicit-GEMM view: M = batch*Ho*Wo, N = kout, K = c*r*s."""
        return self.batch * self.ho * self.wo, self.kout, self.c * self.r * self.s

    @property
    def flops(self) -> float:
        return 2.0 * self.batch * self.kout * self.c * self.r * self.s * self.ho * self.wo

    @property
    def input_elems(self) -> int:
        return self.batch * self.c * self.h * self.w

    @property
    def filter_elems(self) -> int:
        return self.kout * self.c * self.r * self.s

    @property
    def output_elems(self) -> int:
        return self.batch * self.kout * self.ho * self.wo

    @property
    def im2col_elems(self) -> int:
        """Workspace of im2col: batch*c*r*s*Ho*Wo elements (docs/sources/kernels.md §1)."""
        return self.batch * self.c * self.r * self.s * self.ho * self.wo

    @property
    def im2win_elems(self) -> int:
        """Window tensor of im2win: batch*c*Ho*W*r elements (docs/sources/kernels.md §1)."""
        return self.batch * self.c * self.ho * (self.w + 2 * self.pad) * self.r

    @property
    def min_bytes(self) -> float:
        b = dtype_bytes(self.dtype)
        return (self.input_elems + self.filter_elems + self.output_elems) * b

    @property
    def resident_bytes(self) -> float:
        return float(self.filter_elems * dtype_bytes(self.dtype))


@register_op
@dataclass(frozen=True)
class Attention(Op):
    """Scaled dot-product attention: softmax(Q K^T / sqrt(d)) V per (batch, head).

    ``kv_heads`` < ``heads`` is grouped-query attention. With ``causal`` true, query i
    (0-based, of ``q_len``) sees the first ``kv_len - q_len + i + 1`` keys.
    """

    name: ClassVar[str] = "attention"
    batch: int
    heads: int
    kv_heads: int
    q_len: int = field(metadata={"max": MAX_SEQ_LEN})
    kv_len: int = field(metadata={"max": MAX_SEQ_LEN})
    head_dim: int
    dtype: str = "fp16"
    causal: bool = False

    def validate(self) -> None:
        super().validate()
        if self.heads % self.kv_heads:
            raise ValueError(
                f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})"
            )
        if self.causal and self.q_len > self.kv_len:
            raise ValueError(
                f"causal attention needs q_len <= kv_len, got {self.q_len} > {self.kv_len}"
            )

    @property
    def score_pairs(self) -> float:
        """Number of (query, key) pairs evaluated per (batch, head)."""
        if not self.causal:
            return float(self.q_len) * self.kv_len
        q, kv = self.q_len, self.kv_len
        return q * (kv - q) + q * (q + 1) / 2

    @property
    def flops(self) -> float:
        # Q K^T and P V: 2 GEMMs of 2*d FLOPs per pair; softmax not counted (as FlashAttention).
        return 4.0 * self.batch * self.heads * self.head_dim * self.score_pairs

    @property
    def kv_bytes(self) -> float:
        return (
            2.0 * self.batch * self.kv_heads * self.kv_len * self.head_dim * dtype_bytes(self.dtype)
        )

    @property
    def min_bytes(self) -> float:
        qo = 2.0 * self.batch * self.heads * self.q_len * self.head_dim * dtype_bytes(self.dtype)
        return qo + self.kv_bytes

    @property
    def resident_bytes(self) -> float:
        """The KV cache."""
        return self.kv_bytes


#: Element-wise kinds: (FLOPs per element, input tensors read, output tensors written).
#: FLOP counts are conventional estimates: layernorm = mean, var, normalise, scale, shift.
ELEMENTWISE_KINDS: dict[str, tuple[float, int, int]] = {
    "add": (1, 2, 1),
    "mul": (1, 2, 1),
    "relu": (1, 1, 1),
    "gelu": (8, 1, 1),
    "silu": (4, 1, 1),
    "swiglu": (5, 2, 1),
    "softmax": (5, 1, 1),
    "layernorm": (8, 1, 1),
    "rmsnorm": (5, 1, 1),
    "batchnorm": (2, 1, 1),
    "embedding": (0, 1, 1),
    "copy": (0, 1, 1),
}


@register_op
@dataclass(frozen=True)
class Elementwise(Op):
    """An element-wise or row-wise vector op over ``elems`` output elements."""

    name: ClassVar[str] = "elementwise"
    kind: str
    elems: int = field(metadata={"max": MAX_ELEMS})
    dtype: str = "fp16"

    def validate(self) -> None:
        super().validate()
        if self.kind not in ELEMENTWISE_KINDS:
            raise ValueError(f"kind must be one of {sorted(ELEMENTWISE_KINDS)}, got {self.kind!r}")

    @property
    def flops(self) -> float:
        return ELEMENTWISE_KINDS[self.kind][0] * self.elems

    @property
    def min_bytes(self) -> float:
        _, n_in, n_out = ELEMENTWISE_KINDS[self.kind]
        return (n_in + n_out) * self.elems * dtype_bytes(self.dtype)


@register_op
@dataclass(frozen=True)
class Pool2d(Op, _Window2d):
    """Max or average pooling over [batch, c, h, w] with an r x s window."""

    name: ClassVar[str] = "pool2d"
    batch: int
    c: int
    h: int
    w: int
    r: int
    s: int
    stride: int = 1
    pad: int = field(default=0, metadata={"min": 0})
    kind: str = "max"
    dtype: str = "fp32"

    def validate(self) -> None:
        super().validate()
        if self.kind not in ("max", "avg"):
            raise ValueError(f"kind must be 'max' or 'avg', got {self.kind!r}")
        self._check_window()

    @property
    def flops(self) -> float:
        return float(self.batch * self.c * self.ho * self.wo * self.r * self.s)

    @property
    def min_bytes(self) -> float:
        return (self.batch * self.c * (self.h * self.w + self.ho * self.wo)) * dtype_bytes(
            self.dtype
        )


@register_op
@dataclass(frozen=True)
class SpMM(Op):
    """Block-sparse weight times dense activation: C[m, n] = A[m, k] @ W[k, n], where the
    weight W has a fraction ``sparsity`` of zero blocks of ``block_n`` x ``block_k``
    (4 x 1 in the Intel sparse-inference paper, docs/sources/kernels.md §4)."""

    name: ClassVar[str] = "spmm"
    m: int
    n: int
    k: int
    sparsity: float = 0.8
    block_n: int = 4
    block_k: int = 1
    dtype: str = "int8"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in [0, 1), got {self.sparsity}")

    @property
    def flops(self) -> float:
        return 2.0 * (1.0 - self.sparsity) * self.m * self.n * self.k

    @property
    def min_bytes(self) -> float:
        b = dtype_bytes(self.dtype)
        nnz_blocks = (1.0 - self.sparsity) * self.n * self.k / (self.block_n * self.block_k)
        weights = nnz_blocks * self.block_n * self.block_k * b + nnz_blocks * 4  # int32 index
        return weights + (self.m * self.k) * b + self.m * self.n * 4  # int32/fp32 output


@register_op
@dataclass(frozen=True)
class QuantGemm(Op):
    """Weight-only quantised GEMM (FineQuant-style): activations ``dtype``, weights of
    ``wbits`` bits with one fp16 scale per ``group_size`` weights along k
    (docs/sources/kernels.md §3). C[m, n] = A[m, k] @ dequant(W)[k, n]."""

    name: ClassVar[str] = "quant_gemm"
    m: int
    n: int
    k: int
    wbits: int = field(default=4, metadata={"max": 8})
    group_size: int = 64
    dtype: str = "fp16"

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    @property
    def weight_bytes(self) -> float:
        return self.n * self.k * self.wbits / 8 + (self.n * self.k / self.group_size) * 2

    @property
    def resident_bytes(self) -> float:
        return self.weight_bytes

    @property
    def min_bytes(self) -> float:
        b = dtype_bytes(self.dtype)
        return self.weight_bytes + (self.m * self.k + self.m * self.n) * b


# ----------------------------------------------------------------------- apint_gemm
#: Bit widths an arbitrary-precision integer GEMM accepts, for weights and activations.
APINT_BITS = range(1, 9)
#: How an :class:`ApintGemm` runs: ``bipolar_int`` decomposes it into wbits x abits one-bit
#: tensor-core GEMMs (Ma et al., arXiv 2409.17870, docs/sources/kernels.md section 7);
#: ``cutlass_padded`` is the CUTLASS baseline, an int4 or int8 tensor-core GEMM on the
#: precision padded up (a 3-bit operand runs as int4, 5 to 8 bits as int8).
APINT_KERNELS = ("bipolar_int", "cutlass_padded")


@register_op
@dataclass(frozen=True)
class ApintGemm(Op):
    """Arbitrary-precision integer GEMM C[m, n] = A[m, k] @ W[k, n] with ``wbits``-bit
    weights and ``abits``-bit activations (1 to 8 bits each), producing ``dtype`` outputs.

    ``kernel`` picks the implementation (:data:`APINT_KERNELS`). Counts: ``flops`` is the
    equivalent dense work (2 per multiply-add, as T-MAC and the paper report throughput);
    ``bit_mmas`` the one-bit multiply-accumulates of the bit-plane decomposition
    (wbits x abits x m x n x k); ``min_bytes`` the weights at wbits/8 bytes per element,
    the activations at abits/8 and the outputs at ``dtype``.
    """

    name: ClassVar[str] = "apint_gemm"
    m: int
    n: int
    k: int
    wbits: int = 2
    abits: int = 2
    dtype: str = "fp16"
    kernel: str = "bipolar_int"

    def validate(self) -> None:
        for what in ("wbits", "abits"):  # before the generic check: say the range
            v = getattr(self, what)
            if isinstance(v, bool) or v not in APINT_BITS:
                raise ValueError(f"{what} must be an integer from 1 to 8 bits, got {v!r}")
        super().validate()
        if self.kernel not in APINT_KERNELS:
            raise ValueError(f"kernel must be one of {list(APINT_KERNELS)}, got {self.kernel!r}")

    @property
    def flops(self) -> float:
        return 2.0 * self.m * self.n * self.k

    @property
    def bit_mmas(self) -> float:
        """One-bit multiply-accumulates of the bit-plane decomposition: w*a*m*n*k."""
        return float(self.wbits * self.abits) * self.m * self.n * self.k

    @property
    def weight_bytes(self) -> float:
        """Weights packed at wbits bits per element (n x k / 8 bytes per bit-plane)."""
        return self.n * self.k * self.wbits / 8

    @property
    def act_bytes(self) -> float:
        """Activations packed at abits bits per element (m x k / 8 bytes per bit-plane)."""
        return self.m * self.k * self.abits / 8

    @property
    def min_bytes(self) -> float:
        return self.weight_bytes + self.act_bytes + self.m * self.n * dtype_bytes(self.dtype)


@register_op
@dataclass(frozen=True)
class LutGemm(Op):
    """LUT-based low-bit GEMM/GEMV (T-MAC, docs/sources/kernels.md §5): ``wbits``-bit weights
    [n, k] split into one-bit planes, activations grouped by ``lut_group`` into tables of
    2**lut_group entries. m = 1 is the decode GEMV."""

    name: ClassVar[str] = "lut_gemm"
    m: int
    n: int
    k: int
    wbits: int = field(default=2, metadata={"max": 8})
    #: activations per table: 2**lut_group entries each (T-MAC uses 4); at most 16
    lut_group: int = field(default=4, metadata={"max": 16})
    weight_group: int = 128
    dtype: str = "int8"

    @property
    def flops(self) -> float:
        # Equivalent dense work, as T-MAC reports throughput.
        return 2.0 * self.m * self.n * self.k

    @property
    def lookups(self) -> float:
        """Table lookups (and adds): m * n * (k / g) * bits -- linear in the bit width."""
        return self.m * self.n * (self.k / self.lut_group) * self.wbits

    @property
    def table_entries(self) -> float:
        """LUT entries built per step: m * (k / g) * 2**g."""
        return self.m * (self.k / self.lut_group) * 2**self.lut_group

    @property
    def weight_bytes(self) -> float:
        return self.n * self.k * self.wbits / 8 + (self.n * self.k / self.weight_group) * 2

    @property
    def resident_bytes(self) -> float:
        return self.weight_bytes

    @property
    def min_bytes(self) -> float:
        b = dtype_bytes(self.dtype)
        return self.weight_bytes + (self.m * self.k) * b + self.m * self.n * 2


# --------------------------------------------------------------------------------------
# Neighborhood attention and long convolutions (kernels in neupims.devices.gpu_natten and
# neupims.devices.gpu_longconv; sources: docs/sources/kernels.md sections 6 and 9)
# --------------------------------------------------------------------------------------

#: Neighborhood-attention kernels: NATTEN's naive CUDA kernels, its GEMM-based kernels and
#: fused neighborhood attention (Hassani et al., arXiv 2403.04690).
NA_ALGOS = ("naive", "gemm", "fused")
#: Floating-point dtypes the NATTEN kernels take.
NA_DTYPES = ("fp64", "fp32", "fp16", "bf16")


def parse_extents(name: str, text: str, rank: int | None = None) -> tuple[int, ...]:
    """Per-axis sizes written as positive integers joined by ``x`` (``56x56``, ``7``).

    With ``rank`` given, a single integer applies to every axis (``7`` -> ``7x7``) and any
    other count than ``rank`` is an error. Raises ValueError naming the field.
    """
    parts = [p.strip() for p in str(text).strip().lower().split("x")]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(
            f"{name} must be 1 to 3 positive integers joined by 'x' (e.g. 56x56), got {text!r}"
        ) from None
    if not 1 <= len(vals) <= 3 or min(vals) < 1:
        raise ValueError(
            f"{name} must be 1 to 3 positive integers joined by 'x' (e.g. 56x56), got {text!r}"
        )
    if rank is not None and len(vals) != rank:
        if len(vals) == 1:
            return vals * rank
        raise ValueError(f"{name} {text!r} has {len(vals)} axes but dims has {rank}")
    return vals


def _extents_text(vals: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in vals)


@register_op
@dataclass(frozen=True)
class NeighborhoodAttention(Op):
    """Neighborhood attention (NA) over a 1-D, 2-D or 3-D token grid, heads-first layout
    [batch, heads, *dims, head_dim]: each query attends to the ``kernel`` window of keys
    around it (shifted inward at the borders, so every query sees exactly V keys), with
    keys ``dilation`` apart along each axis (Hassani et al., arXiv 2403.04690;
    docs/sources/kernels.md section 6).

    Trace cells: ``dims`` = ``56x56`` (tokens per axis), ``kernel`` = ``7x7`` or ``7`` (the
    same on every axis), ``dilation`` = ``1x1`` or ``1``. Cells are normalised to one
    value per axis, so ``7`` and ``7x7`` are the same op. Counts follow NATTEN's FLOP
    convention (NATTEN docs/flops.md): only the two GEMMs, MACs = 2*B*h*T*V*d with
    T = prod(dims) and V = prod(kernel), FLOPs = 2 * MACs; softmax is not counted.
    """

    name: ClassVar[str] = "neighborhood_attention"
    batch: int
    heads: int
    dims: str
    kernel: str
    dilation: str = "1"
    head_dim: int = 32
    dtype: str = "fp16"
    algo: str = "fused"

    def __post_init__(self) -> None:
        dims = parse_extents("dims", self.dims)
        object.__setattr__(self, "dims", _extents_text(dims))
        for f in ("kernel", "dilation"):
            vals = parse_extents(f, getattr(self, f), rank=len(dims))
            object.__setattr__(self, f, _extents_text(vals))
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.dtype not in NA_DTYPES:
            raise ValueError(f"dtype must be one of {list(NA_DTYPES)}, got {self.dtype!r}")
        if self.algo not in NA_ALGOS:
            raise ValueError(f"algo must be one of {list(NA_ALGOS)}, got {self.algo!r}")
        axes = zip(self.spatial, self.window, self.dilations, strict=True)
        for axis, (n, k, dil) in enumerate(axes, 1):
            if k * dil > n:
                raise ValueError(
                    f"kernel {k} x dilation {dil} on axis {axis} spans {k * dil} tokens, "
                    f"more than dims {n}"
                )
        if self.algo == "fused" and self.dtype == "fp64":
            raise ValueError("algo 'fused' takes fp32, fp16 or bf16 (NATTEN's fused kernels)")
        if self.algo == "gemm" and self.rank > 2:
            raise ValueError(
                "algo 'gemm' has no 3-D kernel (NATTEN's GEMM-based NA covers 1-D and 2-D); "
                "use 'naive' or 'fused'"
            )

    @property
    def spatial(self) -> tuple[int, ...]:
        """Tokens per axis."""
        return parse_extents("dims", self.dims)

    @property
    def window(self) -> tuple[int, ...]:
        """Kernel (window) size per axis."""
        return parse_extents("kernel", self.kernel, rank=len(self.spatial))

    @property
    def dilations(self) -> tuple[int, ...]:
        return parse_extents("dilation", self.dilation, rank=len(self.spatial))

    @property
    def rank(self) -> int:
        """Number of spatial axes (1, 2 or 3)."""
        return len(self.spatial)

    @property
    def tokens(self) -> int:
        """T: tokens per (batch, head)."""
        return math.prod(self.spatial)

    @property
    def neighbours(self) -> int:
        """V: keys each query attends to."""
        return math.prod(self.window)

    @property
    def attn_elems(self) -> int:
        """Elements of the B*h*T*V attention tensor an unfused kernel writes and reads."""
        return self.batch * self.heads * self.tokens * self.neighbours

    @property
    def macs(self) -> float:
        return 2.0 * self.batch * self.heads * self.tokens * self.neighbours * self.head_dim

    @property
    def flops(self) -> float:
        return 2.0 * self.macs

    @property
    def min_bytes(self) -> float:
        """Q, K, V read and O written once: 4*B*h*T*d elements."""
        return 4.0 * self.batch * self.heads * self.tokens * self.head_dim * dtype_bytes(self.dtype)


#: Long-convolution algorithms: PyTorch's cuFFT path, FlashButterfly's Monarch/Butterfly
#: decomposition on tensor cores (Fu et al., arXiv 2302.06646) and direct (reference).
LONG_CONV_ALGOS = ("fft", "butterfly", "direct")
LONG_CONV_DTYPES = ("fp32", "fp16", "bf16")


@register_op
@dataclass(frozen=True)
class LongConv(Op):
    """Causal depthwise long convolution y[b, c, t] = sum_{s<=t} k[c, s] u[b, c, t - s]
    with a kernel as long as the sequence (``length`` = N), one kernel per channel
    shared over the batch (Fu et al., arXiv 2302.06646; docs/sources/kernels.md section 9).

    FLOPs count the FFT convolution the paper builds on: the input's real FFT and the
    inverse real FFT at the zero-padded length n = 2N, 2.5*n*log2(n) FLOPs each (half the
    usual 5*n*log2(n) of a complex FFT), plus a complex multiply (6 FLOPs) for each of the
    n/2 + 1 frequencies; the kernel's FFT is cached (inference). :attr:`direct_flops` is
    the direct convolution's count, N*(N+1) per channel (causal). Bytes: u and y once
    each, the kernel once.
    """

    name: ClassVar[str] = "long_conv"
    batch: int
    channels: int
    length: int
    dtype: str = "fp32"
    algo: str = "fft"

    def validate(self) -> None:
        super().validate()
        if self.dtype not in LONG_CONV_DTYPES:
            raise ValueError(f"dtype must be one of {list(LONG_CONV_DTYPES)}, got {self.dtype!r}")
        if self.algo not in LONG_CONV_ALGOS:
            raise ValueError(f"algo must be one of {list(LONG_CONV_ALGOS)}, got {self.algo!r}")

    @property
    def sequences(self) -> int:
        """Independent (batch, channel) sequences."""
        return self.batch * self.channels

    @property
    def fft_size(self) -> int:
        """n = 2N: the zero-padded length that makes the circular convolution causal."""
        return 2 * self.length

    @property
    def flops(self) -> float:
        n = self.fft_size
        return self.sequences * (2 * 2.5 * n * math.log2(n) + 6.0 * (n // 2 + 1))

    @property
    def direct_flops(self) -> float:
        return self.sequences * float(self.length) * (self.length + 1)

    @property
    def min_bytes(self) -> float:
        b = dtype_bytes(self.dtype)
        return (2.0 * self.sequences + self.channels) * self.length * b


def _show(raw: str, width: int = 40) -> str:
    """``raw`` quoted for an error message, cut to ``width`` characters."""
    return repr(raw if len(raw) <= width else raw[:width] + "...")


def _parse_cell(name: str, typ: Any, raw: str) -> Any:
    text = raw.strip()
    if typ in (int, "int"):
        try:
            return int(text)
        except ValueError:
            pass
        try:
            f = float(text)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {_show(raw)}") from None
        if not math.isfinite(f) or f != int(f):
            raise ValueError(f"{name} must be an integer, got {_show(raw)}")
        return int(f)
    if typ in (float, "float"):
        try:
            f = float(text)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {_show(raw)}") from None
        if not math.isfinite(f):
            raise ValueError(f"{name} must be a finite number, got {_show(raw)}")
        return f
    if typ in (bool, "bool"):
        low = text.lower()
        if low in ("1", "true", "yes"):
            return True
        if low in ("0", "false", "no"):
            return False
        raise ValueError(f"{name} must be true or false, got {_show(raw)}")
    return text


def op_from_row(row: dict[str, str]) -> Op:
    """Build an op from a trace row (column -> cell text). Empty cells mean the default.

    Raises ValueError with a message naming the bad column; unknown columns that are not
    fields of this op are ignored only when empty.
    """
    kind = (row.get("op") or "").strip()
    if not kind:
        raise ValueError("column 'op' is empty")
    cls = OP_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"unknown op {_show(kind)}; expected one of {sorted(OP_KINDS)}")
    kwargs: dict[str, Any] = {}
    missing = []
    for f in dataclasses.fields(cls):
        raw = row.get(f.name)
        if raw is None or str(raw).strip() == "":
            if f.default is dataclasses.MISSING:
                missing.append(f.name)
            continue
        kwargs[f.name] = _parse_cell(f.name, f.type, str(raw))
    if missing:
        raise ValueError(f"{kind} needs column(s) {', '.join(missing)}")
    return cls(**kwargs)


def op_columns() -> list[str]:
    """Union of all op fields, in a stable order, for writing trace CSVs."""
    cols: list[str] = []
    for cls in OP_KINDS.values():
        for f in dataclasses.fields(cls):
            if f.name not in cols:
                cols.append(f.name)
    return cols


__all__ = [
    "DTYPE_BYTES",
    "OP_KINDS",
    "Attention",
    "Conv2d",
    "Elementwise",
    "Gemm",
    "Gemv",
    "LongConv",
    "LutGemm",
    "NeighborhoodAttention",
    "Op",
    "Pool2d",
    "QuantGemm",
    "SpMM",
    "TraceError",
    "dtype_bytes",
    "op_columns",
    "op_from_row",
    "register_op",
]
