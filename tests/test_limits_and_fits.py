"""Size limits (neupims/limits.py), replay's ``fits`` column, and whole-sweep refusal."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import yaml

from neupims.cli import main
from neupims.config import load_hw
from neupims.config.loader import ROOT
from neupims.crosscheck import too_big
from neupims.limits import MAX_DIM, MAX_OP_BYTES, MAX_SEQ_LEN, check_int, limit_text
from neupims.ops import Attention, Gemm
from neupims.replay import fits_warning, replay
from neupims.workloads.trace_io import TracedOp, write_trace

SMALL = TracedOp("small", Gemm(64, 64, 64))
#: 2e9 x 32 x 64 fp16: A 256 GB + C 128 GB + B: far beyond 80 GiB, and within every limit
BIG = TracedOp("big", Gemm(2_000_000_000, 32, 64))
MEDIUM = TracedOp("medium", Gemm(2_000_000_000, 8, 16))


def test_limits_carry_their_reason_and_survive_pickling():
    assert MAX_DIM == 2**31 - 1 and MAX_SEQ_LEN == 2**24 and MAX_OP_BYTES == 2**50
    assert "32-bit" in limit_text(MAX_DIM) and "neupims/limits.py" in limit_text(MAX_DIM)
    copy = pickle.loads(pickle.dumps(MAX_SEQ_LEN))
    assert copy == MAX_SEQ_LEN and copy.why == MAX_SEQ_LEN.why


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (True, "x must be an integer, got True"),
        (1.5, "x must be an integer, got 1.5"),
        (float("inf"), "x must be an integer, got inf"),
        ("7", "x must be an integer, got str '7'"),
        (0, "x must be positive, got 0"),
        (2**31, "x = 2,147,483,648 exceeds the limit 2,147,483,647"),
    ],
)
def test_check_int_refuses_what_is_not_a_size(value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_int("x", value)


def test_integral_values_are_normalised_to_int_so_ops_hash_alike():
    op = Gemm(np.int64(64), 64.0, 64)
    assert type(op.m) is int and type(op.n) is int
    assert op == Gemm(64, 64, 64) and hash(op) == hash(Gemm(64, 64, 64))


def test_limits_apply_to_every_registered_op_field():
    with pytest.raises(ValueError, match="k = 2,147,483,648 exceeds"):
        Gemm(1, 1, 2**31)
    with pytest.raises(ValueError, match="kv_len = 16,777,217 exceeds the limit 16,777,216"):
        Attention(1, 1, 1, 1, 2**24 + 1, 64)
    with pytest.raises(ValueError, match="operands and results total .* above the limit"):
        Gemm(2**30, 2**30, 8)


def test_fits_column_compares_each_footprint_with_the_device_memory():
    h100 = load_hw("h100_sxm")
    assert h100.memory_capacity_bytes == 80 * 2**30
    df = replay([SMALL, BIG, MEDIUM], h100)
    assert list(df["fits"]) == [True, False, False]
    assert (df["footprint_bytes"] > h100.memory_capacity_bytes).tolist() == [False, True, True]
    warning = fits_warning(df, h100)
    assert warning.startswith("warning: 2 of 3 ops do not fit in the 80.0 GiB memory of h100-sxm")
    assert "the largest, op 2 (gemm, layer big)" in warning


def test_fits_uses_the_npu_s_attached_memory_and_is_empty_without_a_known_capacity():
    from neupims.replay import device_memory_bytes

    npu = load_hw("npu_neupims")
    assert device_memory_bytes(npu) == load_hw("hbm2_pim_neupims").capacity_bytes == 32 * 2**30
    assert list(replay([SMALL, BIG], npu)["fits"]) == [True, False]
    xeon = load_hw("xeon_8480")  # the preset gives no RAM size
    df = replay([SMALL, BIG], xeon)
    assert df["fits"].isna().all() and fits_warning(df, xeon) is None


def test_replay_cli_writes_fits_and_prints_the_warning(tmp_path, capsys):
    src, out = tmp_path / "t.csv", tmp_path / "c.csv"
    write_trace([SMALL, BIG], src)
    assert main(["replay", str(src), "--hw", "h100_sxm", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "warning: 1 of 2 ops do not fit" in printed
    assert list(pd.read_csv(out)["fits"]) == [True, False]
    assert main(["replay", str(src), "--hw", "h100_sxm", "--model", "roofline"]) == 0


def test_crosscheck_skips_ops_that_do_not_fit_before_allocating_them():
    from neupims.crosscheck.cpu import _trace_ops

    assert too_big(SMALL.op, 2**30) is None and too_big(BIG.op, None) is None
    assert "more than 50% of the device's 1.0 GiB" in too_big(BIG.op, 2**30)
    small = TracedOp("small", Gemm(64, 64, 64, dtype="fp32"))  # NumPy times fp32/fp64
    big = TracedOp("big", Gemm(2_000_000_000, 32, 64, dtype="fp32"))
    pairs, skipped = _trace_ops([small, big], 1, ram_bytes=2**30)
    assert [op for op, _ in pairs] == [small.op]
    assert skipped == [f"big: {too_big(big.op, 2**30)}"]


def test_quickstart_with_an_unknown_dtype_is_refused_whole_and_writes_nothing(tmp_path, capsys):
    exp = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    exp["base"]["dtype"] = "fp13"
    path = tmp_path / "quickstart.yaml"
    path.write_text(yaml.safe_dump(exp, sort_keys=False))
    out = tmp_path / "results"
    assert main(["run", str(path), "-o", str(out), "--no-progress", "-j", "1"]) == 2
    err = capsys.readouterr().err
    assert "quickstart.yaml: base.dtype: point 1 of 36 (hw='h100_sxm', seq=512, batch=1)" in err
    assert "unknown dtype 'fp13'" in err
    assert not out.exists()
