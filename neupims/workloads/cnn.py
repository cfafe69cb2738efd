"""Op traces of CNNs (explicit layer lists) and the Im2win benchmark layers.

A CNN step is one forward pass of ``batch`` images: conv2d rows (each followed by its
``post`` element-wise rows such as batchnorm and relu), pool2d rows, fc GEMMs and
element-wise rows (residual adds). LLM notions (phase, sequence length, tensor
parallelism) do not apply and are ignored.
"""

from __future__ import annotations

from neupims.errors import NeupimsError
from neupims.ops import ELEMENTWISE_KINDS, Conv2d, Elementwise, Gemm, Pool2d
from neupims.workloads.specs import (
    CnnSpec,
    ConvLayer,
    EltLayer,
    FcLayer,
    LayerGroup,
    PoolLayer,
)
from neupims.workloads.trace_io import TracedOp
from neupims.workloads.zoo import get_model


def _post(name: str, kinds: tuple[str, ...], elems: int, dtype: str) -> list[TracedOp]:
    out = []
    for kind in kinds:
        if kind not in ELEMENTWISE_KINDS:
            raise NeupimsError(
                f"{name}: post op {kind!r} is not an element-wise kind; "
                f"expected one of {sorted(ELEMENTWISE_KINDS)}"
            )
        out.append(TracedOp(f"{name}.{kind}", Elementwise(kind, elems, dtype)))
    return out


def _layer_ops(layer, prefix: str, batch: int, dtype: str) -> list[TracedOp]:
    name = f"{prefix}{layer.name}"
    if isinstance(layer, LayerGroup):
        out = []
        for i in range(layer.start, layer.start + layer.repeat):
            sub = f"{prefix}{layer.name.format(i=i)}."
            for child in layer.layers:
                out += _layer_ops(child, sub, batch, dtype)
        return out
    if isinstance(layer, ConvLayer):
        conv = Conv2d(
            batch=batch,
            c=layer.c,
            h=layer.h,
            w=layer.w or layer.h,
            kout=layer.kout,
            r=layer.r,
            s=layer.s or layer.r,
            stride=layer.stride,
            pad=layer.pad,
            dtype=dtype,
        )
        return [TracedOp(name, conv), *_post(name, layer.post, conv.output_elems, dtype)]
    if isinstance(layer, PoolLayer):
        pool = Pool2d(
            batch=batch,
            c=layer.c,
            h=layer.h,
            w=layer.w or layer.h,
            r=layer.r,
            s=layer.s or layer.r,
            stride=layer.stride,
            pad=layer.pad,
            kind=layer.kind,
            dtype=dtype,
        )
        return [TracedOp(name, pool)]
    if isinstance(layer, FcLayer):
        fc = Gemm(batch, layer.n, layer.k, dtype=dtype)
        return [TracedOp(name, fc), *_post(name, layer.post, batch * layer.n, dtype)]
    if isinstance(layer, EltLayer):
        elems = batch * layer.c * layer.h * (layer.w or layer.h)
        if layer.kind not in ELEMENTWISE_KINDS:
            raise NeupimsError(
                f"{name}: {layer.kind!r} is not an element-wise kind; "
                f"expected one of {sorted(ELEMENTWISE_KINDS)}"
            )
        return [TracedOp(name, Elementwise(layer.kind, elems, dtype))]
    raise TypeError(f"unknown CNN layer {layer!r}")  # pragma: no cover - schema forbids it


def trace_cnn(
    spec: CnnSpec,
    name: str,
    phase: str,
    batch: int,
    seqs: tuple[int, ...],
    tp: int,
    dtype: str,
    pp: int = 1,
    stage: int = 0,
) -> list[TracedOp]:
    """One forward pass of ``batch`` images; ``phase``, ``seqs``, ``tp`` are ignored.

    Pipeline stages are not defined for CNNs: ``pp`` must be 1."""
    if pp != 1 or stage != 0:
        raise NeupimsError(f"{name}: pipeline parallelism is not modelled for CNNs (pp must be 1)")
    out: list[TracedOp] = []
    for layer in spec.layers:
        out += _layer_ops(layer, "", batch, dtype)
    return out


#: Im2win benchmark: batch 128, FP32, pad 0 (docs/sources/workloads.md §7, from seth-lu/Im2win
#: benchmarks/benchmarks.h). Conv4's input channels differ between the CUDA branch (32)
#: and the CPU benchmark on main (64, test_benchmark.cpp); the YAML model holds the GPU set.
IM2WIN_BATCH = 128
IM2WIN_CPU_CHANNELS = {"conv4": 64}


def im2win_layers(target: str = "gpu") -> list[tuple[str, Conv2d]]:
    """The twelve Im2win layers as (name, Conv2d) with batch 128, FP32, pad 0.

    ``target`` is ``gpu`` (CUDA branch, Conv4 C = 32) or ``cpu`` (main branch, C = 64).
    """
    if target not in ("gpu", "cpu"):
        raise NeupimsError(f"im2win target must be 'gpu' or 'cpu', got {target!r}")
    ops = trace_cnn(get_model("im2win"), "im2win", "prefill", IM2WIN_BATCH, (1,), 1, "fp32")
    out = []
    for t in ops:
        op = t.op
        if target == "cpu" and t.layer in IM2WIN_CPU_CHANNELS:
            op = Conv2d(**{**op.fields(), "c": IM2WIN_CPU_CHANNELS[t.layer]})
        out.append((t.layer, op))
    return out
