"""``neupims trace``: writes a readable trace, prints a summary, lists the models."""

from __future__ import annotations

import pytest

from neupims.cli import main
from neupims.workloads import list_models, trace
from neupims.workloads.trace_io import read_trace


def test_trace_writes_csv_and_summary(tmp_path, capsys):
    out = tmp_path / "sub" / "trace.csv"
    args = ["trace", "--model", "gpt3-6.7b", "--phase", "decode", "--batch", "8", "--seq", "512"]
    rc = main([*args, "--tp", "4", "-o", str(out)])
    assert rc == 0
    ops = read_trace(out)
    assert ops == trace("gpt3-6.7b", "decode", 8, 512, tp=4)
    gflop = sum(t.op.flops for t in ops) / 1e9
    line = capsys.readouterr().out.strip()
    assert line == (
        f"gpt3-6.7b decode batch=8 seq=512 tp=4: {len(ops)} ops, {gflop:.3f} GFLOP; wrote {out}"
    )
    assert [t.layer for t in ops[:3]] == ["embed", "L0.attn.norm", "L0.attn.qkv"]


def test_trace_dtype_and_stdout(capsys):
    rc = main(["trace", "--model", "im2win", "--batch", "128", "--dtype", "fp32"])
    assert rc == 0
    cap = capsys.readouterr()
    lines = cap.out.strip().splitlines()
    assert lines[0].startswith("op,layer,")
    assert len(lines) == 13 and all(",fp32," in ln for ln in lines[1:])
    assert "12 ops" in cap.err


def test_trace_list_has_every_model_with_its_shape(capsys):
    assert main(["trace", "--list"]) == 0
    text = capsys.readouterr().out
    rows = {ln.split()[0]: ln.split() for ln in text.splitlines()[1:] if ln.strip()}
    for name in list_models():
        assert name in rows
    assert rows["llama2-70b"][1:] == ["decoder", "80", "8192", "64/8", "68.45B"]
    assert rows["gpt3-175b"][-1] == "173.95B"
    assert rows["resnet-50"][1:3] == ["cnn", "54"]  # 53 convs + fc


@pytest.mark.parametrize("argv", [["trace"], ["trace", "--model", "bert-base", "--tp", "5"]])
def test_trace_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith("neupims trace: error: ")


SAMPLES = {
    "gpt3-7b_decode_b512_s512_tp4.csv": ("gpt3-7b", "decode", 512, 512, 4),
    "resnet-50_b32.csv": ("resnet-50", "prefill", 32, 1, 1),
    "llama2-70b_prefill_b1_s2048_tp8.csv": ("llama2-70b", "prefill", 1, 2048, 8),
}


@pytest.mark.parametrize("fname", sorted(SAMPLES))
def test_bundled_sample_traces_are_current(fname):
    # Regenerate with: neupims trace --model M --phase P --batch B --seq L --tp N -o FILE
    from neupims.workloads.zoo import MODELS_DIR

    model, phase, batch, seq, tp = SAMPLES[fname]
    ops = read_trace(MODELS_DIR.parent / "traces" / fname)
    assert ops == trace(model, phase, batch, seq, tp=tp)
