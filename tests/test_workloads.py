"""Model zoo and traces: FLOP closed forms, KV bytes, TP sharding, CNN MACs, round trips.

Closed forms here are written from the hyper-parameters of docs/sources/workloads.md §1-§3,
independently of the trace code.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neupims.ops import Attention, Conv2d, Gemm
from neupims.workloads import get_model, im2win_layers, list_models, trace
from neupims.workloads.trace_io import parse_trace, read_trace, write_trace

#: name -> (L, d, heads, kv, d_head, d_ff, gated, vocab) as printed in
#: docs/sources/workloads.md §1.
DOCUMENTED = {
    "gpt3-175b": (96, 12288, 96, 96, 128, 49152, False, 50257),
    "llama2-70b": (80, 8192, 64, 8, 128, 28672, True, 32000),
    "bert-base": (12, 768, 12, 12, 64, 3072, False, None),
}


def closed_form_linear_params(name: str) -> int:
    """Linear weights of all layers (no embeddings / head) from the documented numbers."""
    L, d, h, kv, dh, dff, gated, _ = DOCUMENTED[name]
    q, k, v, o = d * h * dh, d * kv * dh, d * kv * dh, h * dh * d
    ffn = (3 if gated else 2) * d * dff
    return L * (q + k + v + o + ffn)


def gemm_flops(ops, include_head: bool = True) -> float:
    return sum(
        t.op.flops
        for t in ops
        if isinstance(t.op, Gemm) and (include_head or t.layer not in ("lm_head", "head"))
    )


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
@pytest.mark.parametrize("phase", ["prefill", "decode"])
def test_gemm_flops_equal_closed_form(name, phase):
    batch, seq = 3, 37
    ops = trace(name, phase, batch, seq)
    tokens = batch * seq if (phase == "prefill" or name == "bert-base") else batch
    body = 2.0 * closed_form_linear_params(name) * tokens
    assert gemm_flops(ops, include_head=False) == pytest.approx(body, rel=1e-3)
    vocab = DOCUMENTED[name][7]
    head = 0.0 if vocab is None else 2.0 * vocab * DOCUMENTED[name][1] * batch
    assert gemm_flops(ops) == pytest.approx(body + head, rel=1e-3)
    if vocab is None:
        assert not any(t.layer == "lm_head" for t in ops)


def test_documented_parameter_counts():
    # "params excl. embeddings" column of docs/sources/workloads.md §1, in billions.
    expected = {
        "gpt3-125m": 0.08,
        "gpt3-1.3b": 1.21,
        "gpt3-6.7b": 6.44,
        "gpt3-13b": 12.58,  # printed 12.6 in the GPT-3 row, 12.58 in the NeuPIMs row
        "gpt3-175b": 173.95,
        "gpt3-30b": 29.60,
        "opt-66b": 65.23,
        "llama2-7b": 6.48,
        "llama2-70b": 68.45,
        "chatglm2-6b": 5.71,
        "bitnet-b1.58-3b": 3.22,
    }
    for name, billions in expected.items():
        got = get_model(name).params / 1e9
        assert got == pytest.approx(billions, abs=0.006 if billions > 1 else 0.005), name


@pytest.mark.parametrize(
    ("name", "kib"),
    [
        ("gpt3-125m", 36),
        ("gpt3-6.7b", 512),
        ("gpt3-175b", 4608),
        ("opt-30b", 1344),
        ("llama2-70b", 320),
        ("chatglm2-6b", 28),
        ("bitnet-b1.58-3b", 325),
    ],
)
def test_kv_bytes_per_token_of_attention_ops(name, kib):
    batch, seq = 2, 100
    ops = trace(name, "decode", batch, seq)
    attn = [t.op for t in ops if isinstance(t.op, Attention)]
    per_token = sum(a.kv_bytes for a in attn) / (batch * (seq + 1))
    assert per_token == pytest.approx(kib * 1024, rel=1e-9)


def test_decode_attention_reads_cache_plus_new_token():
    ops = trace("llama2-70b", "decode", 4, 1000)
    a = next(t.op for t in ops if t.layer == "L0.attn.core")
    assert (a.batch, a.heads, a.kv_heads, a.q_len, a.kv_len) == (4, 64, 8, 1, 1001)
    assert a.causal
    # per request: h GEMVs of d_h x L twice (docs/sources/workloads.md §4) = 4 h d_h L FLOPs
    assert a.flops == 4 * 4 * 64 * 128 * 1001


def test_prefill_is_causal_for_decoders_and_not_for_encoders():
    dec = next(t.op for t in trace("gpt3-125m", "prefill", 2, 64) if t.layer == "L0.attn.core")
    enc = next(t.op for t in trace("bert-base", "prefill", 2, 64) if t.layer == "L0.attn.core")
    assert dec.causal and (dec.q_len, dec.kv_len) == (64, 64)
    assert not enc.causal and (enc.q_len, enc.kv_len) == (64, 64)
    assert dec.flops == pytest.approx(enc.flops * (64 * 65 / 2) / (64 * 64))


def test_layer_names_and_order_of_one_decoder_layer():
    ops = trace("llama2-7b", "decode", 1, 8)
    names = [t.layer for t in ops]
    assert names[:12] == [
        "embed",
        "L0.attn.norm",
        "L0.attn.qkv",
        "L0.attn.core",
        "L0.attn.o",
        "L0.attn.add",
        "L0.mlp.norm",
        "L0.mlp.fc1",
        "L0.mlp.act",
        "L0.mlp.fc2",
        "L0.mlp.add",
        "L1.attn.norm",
    ]
    assert names[-2:] == ["final_norm", "lm_head"]
    assert sum(1 for t in ops if t.op.name == "attention") == 32
    # one softmax is inside each attention op: no separate softmax rows
    assert not any(getattr(t.op, "kind", None) == "softmax" for t in ops)
    # SwiGLU: fused gate+up = 2 x d_ff; llama2-7b fc1 [22016, 4096] (docs/sources/workloads.md §3)
    fc1 = next(t.op for t in ops if t.layer == "L0.mlp.fc1")
    assert (fc1.n, fc1.k) == (22016, 4096)


@pytest.mark.parametrize("name", list_models())
def test_every_model_traces_in_both_phases(name):
    for phase in ("prefill", "decode"):
        ops = trace(name, phase, 2, 16)
        assert ops, name
        assert all(t.op.flops > 0 or t.op.name == "elementwise" for t in ops)
        assert sum(t.op.flops for t in ops) > 0


@pytest.mark.parametrize(("name", "tp"), [("gpt3-175b", 8), ("llama2-70b", 8), ("llama2-7b", 4)])
def test_tp_divides_gemm_flops(name, tp):
    one = trace(name, "decode", 4, 128)
    many = trace(name, "decode", 4, 128, tp=tp)
    assert gemm_flops(many, include_head=False) * tp == pytest.approx(
        gemm_flops(one, include_head=False), rel=1e-12
    )
    head1 = next(t.op for t in one if t.layer == "lm_head")
    head_tp = next(t.op for t in many if t.layer == "lm_head")
    assert head_tp.n == -(-head1.n // tp)  # vocab-parallel, rounded up
    if get_model(name).n_kv_heads % tp == 0:
        attn = sum(t.op.flops for t in one if isinstance(t.op, Attention))
        attn_tp = sum(t.op.flops for t in many if isinstance(t.op, Attention))
        assert attn_tp * tp == pytest.approx(attn)


def test_tp_beyond_kv_heads_replicates_kv():
    # chatglm2-6b: 2 KV groups, tp 4 -> each rank keeps one KV head (NeuPIMs-style sharding).
    ops = trace("chatglm2-6b", "decode", 1, 10, tp=4)
    qkv = next(t.op for t in ops if t.layer == "L0.attn.qkv")
    attn = next(t.op for t in ops if t.layer == "L0.attn.core")
    assert (attn.heads, attn.kv_heads) == (8, 1)
    assert qkv.n == (8 + 2 * 1) * 128


def test_neupims_tp4_example_shapes():
    # docs/sources/workloads.md §3: NeuPIMs 7B TP 4 decode batch 512 (M x K x N).
    ops = {t.layer: t.op for t in trace("gpt3-7b", "decode", 512, 100, tp=4)}
    got = [(ops[k].m, ops[k].k, ops[k].n) for k in ("L0.attn.qkv", "L0.attn.o")]
    got += [(ops[k].m, ops[k].k, ops[k].n) for k in ("L0.mlp.fc1", "L0.mlp.fc2")]
    assert got == [(512, 4096, 3072), (512, 1024, 4096), (512, 4096, 4096), (512, 4096, 4096)]


def conv_gmac(name: str) -> float:
    return sum(t.op.flops for t in trace(name, "prefill", 1, 1) if isinstance(t.op, Conv2d)) / 2e9


def test_resnet50_and_vgg16_conv_macs_per_image():
    assert conv_gmac("resnet-50") == pytest.approx(4.09, rel=0.01)
    assert conv_gmac("vgg-16") == pytest.approx(15.35, rel=0.01)
    rn = trace("resnet-50", "prefill", 1, 1)
    assert sum(isinstance(t.op, Conv2d) for t in rn) == 53
    assert {t.op.kind for t in rn if t.op.name == "pool2d"} == {"max", "avg"}
    fc = next(t.op for t in rn if t.layer == "fc")
    assert (fc.n, fc.k) == (1000, 2048)
    vgg_fc = [(t.op.n, t.op.k) for t in trace("vgg-16", "prefill", 1, 1) if t.op.name == "gemm"]
    assert vgg_fc == [(4096, 25088), (4096, 4096), (1000, 4096)]


def test_cnn_ignores_phase_and_seq_and_scales_with_batch():
    a = trace("resnet-50", "prefill", 4, 1)
    b = trace("resnet-50", "decode", 4, 999)
    assert a == b
    one = sum(t.op.flops for t in trace("resnet-50", "prefill", 1, 1))
    assert sum(t.op.flops for t in a) == pytest.approx(4 * one)


def test_im2win_layers_match_documented_gflop():
    # docs/sources/workloads.md §7, GFLOP at N = 128 (GPU; CPU differs only for Conv4).
    gpu = [26.99, 27.98, 29.67, 305.22, 62.91, 30.20, 21.80, 228.38, 27.52, 25.52, 21.74, 15.10]
    layers = im2win_layers("gpu")
    assert [n for n, _ in layers] == [f"conv{i}" for i in range(1, 13)]
    for (_, op), gflop in zip(layers, gpu, strict=True):
        assert op.flops / 1e9 == pytest.approx(gflop, abs=0.01)
        assert (op.batch, op.dtype, op.pad) == (128, "fp32", 0)
    cpu = dict(im2win_layers("cpu"))
    assert cpu["conv4"].c == 64 and cpu["conv4"].flops / 1e9 == pytest.approx(610.4, abs=0.1)
    assert cpu["conv5"] == dict(layers)["conv5"]


def test_vit_patch_embedding_and_class_head():
    ops = trace("vit-b-16", "prefill", 2, 1)
    patch = ops[0].op
    assert isinstance(patch, Conv2d)
    assert patch.gemm_mnk == (196 * 2, 768, 768)  # docs/sources/workloads.md §2
    qkv = next(t.op for t in ops if t.layer == "L0.attn.qkv")
    assert qkv.m == 2 * 197
    head = ops[-1].op
    assert (ops[-1].layer, head.m, head.n, head.k) == ("head", 2, 1000, 768)


@pytest.mark.parametrize("name", ["llama2-70b", "resnet-50", "vit-l-16", "bert-mini"])
def test_csv_round_trip(tmp_path, name):
    ops = trace(name, "prefill", 2, 32, tp=1)
    path = tmp_path / "t.csv"
    text = write_trace(ops, path)
    assert read_trace(path) == ops
    assert parse_trace(text) == ops


def test_ragged_decode_batch_groups_attention_by_length():
    lens = [100, 7, 100, 2000]
    ops = trace("llama2-7b", "decode", 4, lens)
    cores = [t.op for t in ops if t.layer == "L0.attn.core"]
    assert [(a.batch, a.q_len, a.kv_len) for a in cores] == [(1, 1, 8), (2, 1, 101), (1, 1, 2001)]
    # per request h * d_h * (L_i + 1) MACs twice (docs/sources/workloads.md §4)
    assert sum(a.flops for a in cores) == 4 * 32 * 128 * sum(n + 1 for n in lens)
    qkv = next(t.op for t in ops if t.layer == "L0.attn.qkv")
    assert qkv.m == 4
    # equal lengths collapse to the uniform trace
    assert trace("llama2-7b", "decode", 3, [50, 50, 50]) == trace("llama2-7b", "decode", 3, 50)


def test_ragged_prefill_is_packed():
    lens = [30, 10, 30]
    ops = trace("gpt3-125m", "prefill", 3, lens)
    assert next(t.op for t in ops if t.layer == "L0.attn.qkv").m == 70  # sum of lengths
    assert next(t.op for t in ops if t.layer == "lm_head").m == 3
    cores = [t.op for t in ops if t.layer == "L0.attn.core"]
    assert [(a.batch, a.q_len, a.kv_len, a.causal) for a in cores] == [
        (1, 10, 10, True),
        (2, 30, 30, True),
    ]


@pytest.mark.parametrize(("name", "pp"), [("gpt3-175b", 4), ("bert-base", 3), ("vit-b-16", 2)])
def test_pipeline_stages_concatenate_to_the_whole_step(name, pp):
    whole = trace(name, "prefill", 2, 16, tp=2)
    stages = [trace(name, "prefill", 2, 16, tp=2, pp=pp, stage=s) for s in range(pp)]
    assert [t for st in stages for t in st] == whole
    per = get_model(name).layers // pp
    assert stages[1][0].layer.startswith(f"L{per}.")


DECODERS = [n for n in list_models() if get_model(n).kind == "decoder"]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    name=st.sampled_from(DECODERS),
    batch=st.integers(1, 64),
    seq=st.integers(1, 4096),
    tp_exp=st.integers(0, 3),
    phase=st.sampled_from(["prefill", "decode"]),
)
def test_property_step_flops_match_spec(name, batch, seq, tp_exp, phase):
    spec = get_model(name)
    tp = 2**tp_exp
    if spec.heads % tp or spec.d_ff % tp or spec.n_kv_heads % tp:
        tp = 1
    ops = trace(name, phase, batch, seq, tp=tp)
    tokens = batch * seq if phase == "prefill" else batch
    assert gemm_flops(ops, include_head=False) * tp == pytest.approx(
        2 * spec.params * tokens, rel=1e-12
    )
    # attention: 4 h d_head FLOPs per (query, key) pair; causal prefill sees (s+1)/2 keys
    pairs = seq * (seq + 1) / 2 if phase == "prefill" else seq + 1
    attn = sum(t.op.flops for t in ops if isinstance(t.op, Attention))
    expected = spec.layers * 4 * batch * spec.heads * spec.d_head * pairs
    assert attn * tp == pytest.approx(expected, rel=1e-12)
