"""``neupims trace --model NAME --phase {prefill,decode} --batch B --seq L [--tp N]
[--pp P --stage S] [--dtype D] -o FILE`` and ``neupims trace --list``."""

from __future__ import annotations

import argparse
import sys

from neupims.errors import NeupimsError
from neupims.workloads import get_model, list_models, trace, write_trace
from neupims.workloads.specs import CnnSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("trace", help="write the op trace of one forward step of a model")
    p.add_argument("--list", action="store_true", help="list the bundled models and exit")
    p.add_argument("--model", help="model name (see --list) or a model YAML file")
    p.add_argument("--phase", choices=["prefill", "decode"], default="decode")
    p.add_argument("--batch", type=int, default=1, help="sequences (or images) per step")
    p.add_argument(
        "--seq",
        type=int,
        default=1,
        help="prompt length (prefill) or tokens already in the KV cache (decode)",
    )
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel ranks (trace of one rank)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages (default 1)")
    p.add_argument("--stage", type=int, default=0, help="pipeline stage to trace, 0-based")
    p.add_argument("--dtype", default="fp16", help="element type of every op (default fp16)")
    p.add_argument("-o", "--output", help="trace CSV to write (default: standard output)")
    p.set_defaults(func=run)


def model_table() -> str:
    """One line per model: name, kind, layers, d_model, heads/kv, parameters."""
    rows = [("name", "kind", "layers", "d_model", "heads/kv", "params")]
    for name in list_models():
        m = get_model(name)
        if isinstance(m, CnnSpec):
            ops = trace(name, "prefill", 1, 1)
            convs = sum(1 for t in ops if t.op.name in ("conv2d", "gemm"))
            params = sum(
                t.op.filter_elems if t.op.name == "conv2d" else t.op.n * t.op.k
                for t in ops
                if t.op.name in ("conv2d", "gemm")
            )
            rows.append((name, m.kind, str(convs), "-", "-", _human(params)))
        else:
            rows.append(
                (
                    name,
                    m.kind,
                    str(m.layers),
                    str(m.d_model),
                    f"{m.heads}/{m.n_kv_heads}",
                    _human(m.params),
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    note = (
        "params: linear weights excluding embeddings and LM head "
        "(CNN/ViT: all conv and fc weights); CNN layers = conv + fc count"
    )
    return "\n".join([*lines, "", note])


def _human(n: float) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(int(n))


def run(args: argparse.Namespace) -> int:
    if args.list:
        print(model_table())
        return 0
    if not args.model:
        raise NeupimsError("--model is required (or --list to see the models)")
    ops = trace(
        args.model,
        args.phase,
        args.batch,
        args.seq,
        tp=args.tp,
        dtype=args.dtype,
        pp=args.pp,
        stage=args.stage,
    )
    text = write_trace(ops, args.output)
    gflop = sum(t.op.flops for t in ops) / 1e9
    summary = (
        f"{args.model} {args.phase} batch={args.batch} seq={args.seq} tp={args.tp}"
        + (f" pp={args.pp} stage={args.stage}" if args.pp > 1 else "")
        + ": "
        f"{len(ops)} ops, {gflop:.3f} GFLOP"
    )
    if args.output:
        print(f"{summary}; wrote {args.output}")
    else:
        sys.stdout.write(text)
        print(summary, file=sys.stderr)
    return 0
