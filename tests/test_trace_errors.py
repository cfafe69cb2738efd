"""Malformed trace CSVs: each error names the file and the line, and replay writes nothing."""

import pytest

from neupims.cli import main
from neupims.errors import TraceError
from neupims.ops import Attention, Conv2d, Elementwise, Gemm
from neupims.workloads.trace_io import TracedOp, parse_trace, read_trace, write_trace


@pytest.mark.parametrize(
    "text, expected",
    [
        ("op,m,n,k\ngemm,4,8,8\ngemm,4,-5,3\n", "line 3: n must be positive, got -5"),
        ("op,m,n,k\nmatmul,4,8,8\n", "line 2: unknown op 'matmul'"),
        ("op,m,n,k\ngemm,4,8,eight\n", "line 2: k must be an integer, got 'eight'"),
        ("op,m,n,k\ngemm,4.5,8,8\n", "line 2: m must be an integer, got '4.5'"),
        ("op,m,n\ngemm,4,8\n", "line 2: gemm needs column(s) k"),
        ("op,m,n,k,colour\ngemm,4,8,8,red\n", "line 1: unknown column(s) ['colour']"),
        ("op,m,n,k\ngemm,4,8\n", "line 2: expected 4 cells as in the header, got 3"),
        ("op,m,n,k,dtype\ngemm,4,8,8,fp12\n", "line 2: unknown dtype 'fp12'"),
        ("m,n,k\n4,8,8\n", "line 1: header has no 'op' column"),
        ("op,m,n,k\n", "no op rows after the header"),
        ("", "empty file"),
        (
            "op,batch,heads,kv_heads,q_len,kv_len,head_dim,causal\nattention,1,8,8,1,16,64,maybe\n",
            "line 2: causal must be true or false, got 'maybe'",
        ),
        ("op,m,m,n,k\ngemm,1,1,1,1\n", "line 1: duplicate column(s) ['m']"),
    ],
)
def test_malformed_trace_rows_name_the_line(text, expected):
    with pytest.raises(TraceError) as exc:
        parse_trace(text, "t.csv")
    assert str(exc.value).startswith("t.csv: ")
    assert expected in str(exc.value)


def test_round_trip_keeps_every_op_and_layer(tmp_path):
    trace = [
        TracedOp("L0.qkv", Gemm(8, 96, 32)),
        TracedOp("L0.attn", Attention(8, 4, 2, 1, 17, 8, causal=False)),
        TracedOp("conv", Conv2d(2, 3, 9, 9, 4, 3, 3, stride=2, pad=1, algo="im2win")),
        TracedOp("L0.ln", Elementwise("layernorm", 256)),
    ]
    path = tmp_path / "t.csv"
    write_trace(trace, path)
    assert read_trace(path) == trace


def test_replay_never_leaves_a_half_written_output(tmp_path, capsys):
    out = tmp_path / "costs.csv"
    out.write_text("previous results\n")
    bad = tmp_path / "bad.csv"
    bad.write_text("op,m,n,k\ngemm,4,8,8\ngemm,4,-5,3\n")
    rc = main(["replay", str(bad), "--hw", "h100_sxm", "-o", str(out)])
    assert rc == 2
    assert "line 3: n must be positive, got -5" in capsys.readouterr().err
    assert out.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_replay_writes_one_row_per_input_row_in_order(tmp_path):
    import pandas as pd

    trace = [TracedOp(f"op{i}", Gemm(2**i, 1024, 1024)) for i in range(8)]
    src = tmp_path / "t.csv"
    write_trace(trace, src)
    out = tmp_path / "c.csv"
    assert (
        main(["replay", str(src), "--hw", "h100_sxm", "--model", "roofline", "-o", str(out)]) == 0
    )
    df = pd.read_csv(out)
    assert list(df["layer"]) == [f"op{i}" for i in range(8)]
    for col in ("latency_s", "flops", "bytes", "footprint_bytes", "bound"):
        assert col in df.columns
    # The roofline: small-M GEMMs are memory bound, latency grows with M once compute bound.
    assert df["bound"].iloc[0] == "memory" and df["bound"].iloc[-1] == "memory"
    assert (df["latency_s"].diff().dropna() >= 0).all()
    assert df["flops"].tolist() == [t.op.flops for t in trace]
