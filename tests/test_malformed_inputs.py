"""The table of malformed inputs tried against every loader and CLI subcommand.

Each case is a bad input and the substring its error must contain (naming the file, key
or line and what was expected). Every case goes through the command line in-process and
must end with exit status 2 and one ``neupims CMD: error: ...`` line on stderr, never a
traceback. Commands that write must leave nothing behind.

Families: trace CSV (replay), hardware YAML, experiment YAML (run), request snapshots
(iteration), model YAML (trace), measured CSVs (calibrate), dataset YAML (experiments)
and plain command-line arguments.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from neupims.cli import main
from neupims.config.loader import ROOT

BINARY = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
LATIN1 = "op,m,n,k\ngemm,4,8,8 # na\xefve\n".encode("latin-1")


def _materialise(tmp_path: Path, content, name: str) -> Path:
    """Write ``content`` (text, bytes, or the marker DIR for a directory) to tmp_path/name."""
    path = tmp_path / name
    if content == "DIR":
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _fails(capsys, argv: list[str], expected: str, lines: int | None = 1) -> str:
    """Run the CLI; assert exit status 2 and an error line containing ``expected``."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    assert expected in err, err
    assert err.startswith(f"neupims {argv[0]}: error: "), err
    if lines is not None:
        assert len(err.strip().splitlines()) == lines, err
    return err


# ----------------------------------------------------------------------------- trace CSV

TRACE_CASES = [
    ("DIR", "trace.csv: is a directory; expected a file"),
    (BINARY, "trace.csv: line 1 (byte 0): not UTF-8 text (byte 0x89)"),
    (LATIN1, "trace.csv: line 2 (byte 24): not UTF-8 text (byte 0xef)"),
    ("op,m,n,k\ngemm,4,8\x00,8\n", "trace.csv: line 2 (byte 17): NUL byte"),
    ("", "trace.csv: empty file; expected a header row starting with 'op'"),
    ("\n\n", "trace.csv: empty file"),
    ("m,n,k\n4,8,8\n", "trace.csv: line 1: header has no 'op' column"),
    ("op,m,n,k\n", "trace.csv: no op rows after the header"),
    ("op,m,n,k,colour\ngemm,4,8,8,red\n", "trace.csv: line 1: unknown column(s) ['colour']"),
    ("op,m,m,n,k\ngemm,1,1,1,1\n", "trace.csv: line 1: duplicate column(s) ['m']"),
    ("op,m,n,k\ngemm,4,8\n", "trace.csv: line 2: expected 4 cells as in the header, got 3"),
    ("op,m,n,k\ngemm,4,8,8,9\n", "trace.csv: line 2: expected 4 cells as in the header, got 5"),
    ('op,m,n,k\n"gemm,4,8,8\n', "trace.csv: line 2: malformed CSV: unexpected end of data"),
    ('op,m,n,k\ngemm,4,8,"8"x\n', "trace.csv: line 2: malformed CSV: ',' expected after '\"'"),
    ("op,m,n,k\nmatmul,4,8,8\n", "trace.csv: line 2: unknown op 'matmul'"),
    ("op,m,n,k\n,4,8,8\n", "trace.csv: line 2: column 'op' is empty"),
    ("op,m,n\ngemm,4,8\n", "trace.csv: line 2: gemm needs column(s) k"),
    ("op,m,n,k\ngemm,4,8,eight\n", "trace.csv: line 2: k must be an integer, got 'eight'"),
    ("op,m,n,k\ngemm,4.5,8,8\n", "trace.csv: line 2: m must be an integer, got '4.5'"),
    ("op,m,n,k\ngemm,inf,8,8\n", "trace.csv: line 2: m must be an integer, got 'inf'"),
    ("op,m,n,k\ngemm,nan,8,8\n", "trace.csv: line 2: m must be an integer, got 'nan'"),
    ("op,m,n,k\ngemm,1e400,8,8\n", "trace.csv: line 2: m must be an integer, got '1e400'"),
    ("op,m,n,k\ngemm," + "9" * 5000 + ",8,8\n", "line 2: m must be an integer, got '9999"),
    ("op,m,n,k\ngemm,4,-5,3\n", "trace.csv: line 2: n must be positive, got -5"),
    ("op,m,n,k\ngemm,0,5,3\n", "trace.csv: line 2: m must be positive, got 0"),
    (
        "op,m,n,k\ngemm,100000000000000000000000,8,8\n",
        "trace.csv: line 2: m = 100,000,000,000,000,000,000,000 exceeds the limit 2,147,483,647",
    ),
    ("op,m,n,k\ngemm,2147483648,8,8\n", "line 2: m = 2,147,483,648 exceeds the limit"),
    (
        "op,m,n,k\ngemm,2000000000,2000000000,8\n",
        "trace.csv: line 2: gemm operands and results total 8e+18 bytes, above the limit",
    ),
    ("op,m,n,k,dtype\ngemm,4,8,8,fp12\n", "trace.csv: line 2: unknown dtype 'fp12'"),
    ("op,m,n,k,batch\ngemm,4,8,8,0\n", "trace.csv: line 2: batch must be positive, got 0"),
    (
        "op,batch,heads,kv_heads,q_len,kv_len,head_dim,causal\nattention,1,8,8,1,16,64,maybe\n",
        "trace.csv: line 2: causal must be true or false, got 'maybe'",
    ),
    (
        "op,batch,heads,kv_heads,q_len,kv_len,head_dim\nattention,1,8,3,1,16,64\n",
        "trace.csv: line 2: heads (8) must be a multiple of kv_heads (3)",
    ),
    (
        "op,batch,heads,kv_heads,q_len,kv_len,head_dim,causal\nattention,1,8,8,32,16,64,true\n",
        "trace.csv: line 2: causal attention needs q_len <= kv_len, got 32 > 16",
    ),
    (
        "op,batch,heads,kv_heads,q_len,kv_len,head_dim\nattention,1,8,8,1,99999999999,64\n",
        "trace.csv: line 2: kv_len = 99,999,999,999 exceeds the limit 16,777,216",
    ),
    (
        "op,batch,c,h,w,kout,r,s,stride\nconv2d,1,3,8,8,4,3,3,0\n",
        "trace.csv: line 2: stride must be positive, got 0",
    ),
    (
        "op,batch,c,h,w,kout,r,s\nconv2d,1,3,2,2,4,5,5\n",
        "trace.csv: line 2: filter 5x5 larger than padded input 2x2",
    ),
    (
        "op,batch,c,h,w,kout,r,s,algo\nconv2d,1,3,8,8,4,3,3,wino\n",
        "trace.csv: line 2: algo must be one of",
    ),
    (
        "op,batch,c,h,w,kout,r,s,pad\nconv2d,1,3,8,8,4,3,3,-1\n",
        "trace.csv: line 2: pad must be >= 0, got -1",
    ),
    ("op,kind,elems\nelementwise,,8\n", "trace.csv: line 2: elementwise needs column(s) kind"),
    ("op,kind,elems\nelementwise,tanhh,8\n", "trace.csv: line 2: kind must be one of"),
    (
        "op,kind,elems\nelementwise,add,4503599627370496\n",
        "trace.csv: line 2: elementwise operands and results total 2.7e+16 bytes, above the limit",
    ),
    (
        "op,kind,elems\nelementwise,add,99999999999999999\n",
        "line 2: elems = 99,999,999,999,999,999 exceeds the limit 9,007,199,254,740,992",
    ),
    ("op,batch,c,h,w,r,s,kind\npool2d,1,3,8,8,2,2,min\n", "line 2: kind must be 'max' or 'avg'"),
    ("op,m,n,k,sparsity\nspmm,4,8,8,1.0\n", "trace.csv: line 2: sparsity must be in [0, 1)"),
    ("op,m,n,k,sparsity\nspmm,4,8,8,nan\n", "line 2: sparsity must be a finite number, got 'nan'"),
    ("op,m,n,k,sparsity\nspmm,4,8,8,lots\n", "line 2: sparsity must be a number, got 'lots'"),
    ("op,m,n,k,wbits\nquant_gemm,4,8,8,16\n", "line 2: wbits = 16 exceeds the limit 8"),
    ("op,m,n,k,lut_group\nlut_gemm,1,8,8,40\n", "line 2: lut_group = 40 exceeds the limit 16"),
    ("op,m,n,k,dtype\ngemm,4,8,8,int4\n", "h100-sxm: no peak for dtype 'int4'"),
]


@pytest.mark.parametrize(("content", "expected"), TRACE_CASES)
def test_malformed_trace_csv(tmp_path, capsys, content, expected):
    path = _materialise(tmp_path, content, "trace.csv")
    out = tmp_path / "costs.csv"
    _fails(capsys, ["replay", path, "--hw", "h100_sxm", "-o", out], expected)
    assert not out.exists()


# ----------------------------------------------------------------------------- hardware YAML

H100 = (ROOT / "hw_configs" / "h100_sxm.yaml").read_text()
TRACE_OK = "op,layer,m,n,k\ngemm,l0,64,64,64\n"


def _hw_edit(path: tuple, value) -> str:
    data = yaml.safe_load(H100)
    node = data
    for p in path[:-1]:
        node = node[p]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return yaml.safe_dump(data)


HW_CASES = [
    ("DIR", "hw.yaml: is a directory; expected a file"),
    (BINARY, "hw.yaml: line 1 (byte 0): not UTF-8 text (byte 0x89)"),
    ("", "hw.yaml: the file is empty"),
    ("- 1\n- 2\n", "hw.yaml: expected a mapping with a 'kind' key, got list"),
    ("kind: gpu\nname: [unclosed\n", "hw.yaml: line 3, column 1: invalid YAML"),
    ("kind: tpu\n", "hw.yaml: kind: unknown device kind 'tpu'"),
    ("name: x\n", "hw.yaml: kind: required key is missing"),
    (H100 + "\nsms: 140\n", "invalid YAML: duplicate key 'sms' (first given on line 5)"),
    (H100 + "\nbuilt: 2020-13-45\n", "hw.yaml: invalid YAML value: month must be in 1..12"),
    ("a: &x [*x]\nkind: gpu\n", "hw.yaml: an alias refers to a value containing itself"),
    (
        _hw_edit(("hbm_bandwidth_gbps",), float("inf")),
        "hbm_bandwidth_gbps: Input should be a finite number",
    ),
    (
        _hw_edit(("hbm_capacity_gb",), float("nan")),
        "hbm_capacity_gb: Input should be a finite number",
    ),
    (
        _hw_edit(("hbm_bandwidth_gbps",), -5),
        "hbm_bandwidth_gbps: Input should be greater than 0, got -5",
    ),
    (
        _hw_edit(("sms",), 10**30),
        "sms: 1,000,000,000,000,000,000,000,000,000,000 exceeds the limit",
    ),
    (_hw_edit(("sms",), 13.5), "sms: Input should be a valid integer, got 13.5"),
    (_hw_edit(("sms",), "many"), "sms: Input should be a valid integer, got 'many'"),
    (_hw_edit(("sms",), KeyError), "sms: required key is missing"),
    (_hw_edit(("smz",), 132), "smz: unknown key"),
    (
        _hw_edit(("efficiency", "tc_efff"), 0.5),
        "efficiency.tc_efff: unknown efficiency constant (did you mean 'tc_eff'?)",
    ),
    (_hw_edit(("tensor_tflops", "fp16"), 0), "tensor_tflops.fp16: Input should be greater than 0"),
    (
        _hw_edit(("max_bandwidth_fraction",), 1.5),
        "max_bandwidth_fraction: Input should be less than or equal to 1",
    ),
    (
        _hw_edit(("gemm_tiles",), [[64, 0]]),
        "gemm_tiles[0][1]: Input should be greater than 0, got 0",
    ),
    (_hw_edit(("conv_fp32_math",), "fp16"), "conv_fp32_math: Input should be 'tf32' or 'fp32'"),
]


@pytest.mark.parametrize(("content", "expected"), HW_CASES)
def test_malformed_hardware_yaml(tmp_path, capsys, content, expected):
    trace = _materialise(tmp_path, TRACE_OK, "trace.csv")
    hw = _materialise(tmp_path, content, "hw.yaml")
    _fails(capsys, ["replay", trace, "--hw", hw], expected)


# ----------------------------------------------------------------------------- experiment YAML

QUICK = {
    "name": "t",
    "kind": "replay",
    "base": {"model": "gpt3-125m", "phase": "decode", "batch": 1, "seq": 64, "hw": "h100_sxm"},
    "sweep": {"grid": {"batch": [1, 2, 4], "hw": ["h100_sxm", "npu_neupims"]}},
}
SERVE = {
    "name": "s",
    "kind": "neupims_serving",
    "base": {"model": "gpt3-7b", "batch": 8, "iterations": 1, "warmup": 0},
    "sweep": {"grid": {"system": ["npu_only", "neupims"]}},
}


def _exp(base: dict, **edits) -> dict:
    """``base`` with dotted keys set (``base.dtype``) or removed (value KeyError)."""
    d = copy.deepcopy(base)
    for dotted, value in edits.items():
        node = d
        parts = dotted.split("__")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        if value is KeyError:
            node.pop(parts[-1], None)
        else:
            node[parts[-1]] = value
    return d


EXPERIMENT_CASES = [
    ("DIR", "exp.yaml: is a directory; expected a file"),
    (BINARY, "exp.yaml: line 1 (byte 0): not UTF-8 text"),
    ("", "exp.yaml: the file is empty"),
    (
        "name: x\nname: y\nkind: replay\n",
        "exp.yaml: line 2, column 1: invalid YAML: duplicate key 'name'",
    ),
    (
        _exp(QUICK, base__dtype="fp13"),
        "exp.yaml: base.dtype: point 1 of 6 (batch=1, hw='h100_sxm'): unknown dtype 'fp13'",
    ),
    (
        _exp(QUICK, sweep__grid__dtype=["fp16", "fp13"]),
        "exp.yaml: sweep.grid.dtype: point 3 of 12 (batch=1, dtype='fp13', hw='h100_sxm'): unknown dtype 'fp13'",
    ),
    (
        _exp(QUICK, base__dtype="int4"),
        "base.dtype: point 1 of 6 (batch=1, hw='h100_sxm'): h100-sxm: no peak for dtype 'int4'",
    ),
    (
        _exp(QUICK, base__tp=5),
        "base.tp: point 1 of 6 (batch=1, hw='h100_sxm'): gpt3-125m: tp=5 must divide heads=12",
    ),
    (
        _exp(QUICK, base__device_model="npu"),
        "base.device_model: point 1 of 6 (batch=1, hw='h100_sxm'): device model 'npu' does not model 'gpu' hardware",
    ),
    (
        _exp(QUICK, base__device_model="nosuch"),
        "base.device_model: point 1 of 6 (batch=1, hw='h100_sxm'): unknown device model 'nosuch'",
    ),
    (
        _exp(QUICK, base__model="gpt5"),
        "base.model: point 1 of 6 (batch=1, hw='h100_sxm'): unknown model 'gpt5'",
    ),
    (
        _exp(QUICK, sweep__grid__hw=["h100_sxm", "tpu_v9"]),
        "sweep.grid.hw: point 2 of 6 (batch=1, hw='tpu_v9'): tpu_v9: no such file",
    ),
    (
        _exp(QUICK, base__seq=99_999_999_999),
        "base.seq: point 1 of 6 (batch=1, hw='h100_sxm'): 99,999,999,999 exceeds the limit 16,777,216",
    ),
    (
        _exp(QUICK, sweep__grid__batch=[1, 2**30]),
        "sweep.grid.batch: point 3 of 4 (batch=1073741824, hw='h100_sxm'): 1,073,741,824 exceeds the limit 16,777,216",
    ),
    (
        _exp(QUICK, base__phase="prefill", base__seq=65536, sweep__grid__batch=[1, 65536]),
        "sweep.grid.batch, base.seq: point 3 of 4 (batch=65536, hw='h100_sxm'): gpt3-125m prefill batch=65536 seq=65536: m = 4,294,967,296 exceeds the limit 2,147,483,647",
    ),
    (
        _exp(QUICK, base__hw_overrides={"smz": 1}),
        "base.hw_overrides: point 1 of 6 (batch=1, hw='h100_sxm'): hw_overrides (on h100-sxm): smz: unknown key",
    ),
    (
        _exp(QUICK, base__batch=0, sweep__grid__batch=KeyError),
        "base.batch: point 1 of 2 (hw='h100_sxm'): Input should be greater than 0, got 0",
    ),
    (
        _exp(QUICK, sweep__grid__batch=[1, 1]),
        "exp.yaml: sweep: points 1 and 3 resolve to the same configuration",
    ),
    (_exp(QUICK, sweep__grid__batchh=[1]), "exp.yaml: sweep.grid.batchh: unknown key 'batchh'"),
    (_exp(QUICK, kind="replai"), "exp.yaml: kind: unknown experiment kind 'replai'"),
    (
        _exp(SERVE, sweep__grid__system=["npu_only", "tpu"]),
        "exp.yaml: sweep.grid.system: point 2 of 2 (system='tpu'): system: unknown system 'tpu'",
    ),
    (
        _exp(SERVE, base__overrides={"dual_row_bufer": True}),
        "exp.yaml: base.overrides: point 1 of 2 (system='npu_only'): system npu_only: unknown override(s) ['dual_row_bufer']",
    ),
    (
        _exp(SERVE, base__overrides={"placement": "random"}),
        "base.overrides.placement: point 1 of 2 (system='npu_only'): placement: unknown policy 'random'",
    ),
    (
        _exp(SERVE, base__dataset="sharegtp"),
        "base.dataset: point 1 of 2 (system='npu_only'): unknown dataset 'sharegtp'",
    ),
    (
        _exp(SERVE, base__model="resnet-50"),
        "base.model: point 1 of 2 (system='npu_only'): model 'resnet-50' is of kind 'cnn'; serving needs a decoder",
    ),
    (
        _exp(SERVE, base__tp=3),
        "base.tp, base.pp: point 1 of 2 (system='npu_only'): gpt3-7b: tp=3 must divide heads=32 (and d_ff=16384)",
    ),
    (
        _exp(SERVE, base__hw_overrides={"systolic_array": {"rows": -1}}),
        "base.hw_overrides: point 1 of 2 (system='npu_only'): hw_overrides (on neupims-npu): systolic_array.rows: Input should be greater than 0",
    ),
    (
        _exp(SERVE, base__max_seq_len=10**9),
        "base.max_seq_len: point 1 of 2 (system='npu_only'): 1,000,000,000 exceeds the limit 16,777,216",
    ),
    (
        _exp(SERVE, base__max_seq_len=1),
        "base.batch, base.max_seq_len, base.tp, base.pp: point 1 of 2 (system='npu_only'): max_seq_len must be at least 2, got 1",
    ),
    (
        _exp(SERVE, base__seed=-1),
        "base.seed: point 1 of 2 (system='npu_only'): Input should be greater than or equal to 0, got -1",
    ),
    (
        _exp(QUICK, figures=[{"type": "roofline", "hw": "tpu9"}]),
        "exp.yaml: figures[0].hw: tpu9: no such file, and no hw_configs/ entry of that name",
    ),
    (
        _exp(QUICK, figures=[{"type": "roofline", "hw": "h100_sxm", "dtype": "int4"}]),
        "exp.yaml: figures[0].dtype: h100-sxm: no peak for dtype 'int4'",
    ),
    (
        {"name": "c", "kind": "conv_algos", "base": {"hw": "npu_neupims"}},
        "exp.yaml: base.hw: point 1 of 1: hw: 'npu_neupims' is a npu config; conv_algos needs a gpu",
    ),
    (
        {"name": "c", "kind": "conv_algos", "base": {"context_gb": float("nan")}},
        "base.context_gb: point 1 of 1: Input should be a finite number",
    ),
    (
        {"name": "c", "kind": "cpu_spmm", "base": {"hw": "h100_sxm"}},
        "exp.yaml: base.hw: point 1 of 1: hw: 'h100_sxm' is a gpu config; these experiments need a cpu",
    ),
    (
        {"name": "c", "kind": "tmac_cpu", "base": {"lut_group": 40}},
        "base.lut_group, base.weight_group: point 1 of 1: lut_group = 40 exceeds the limit 16",
    ),
    (
        {"name": "c", "kind": "im2win_cpu", "base": {"hw": "a100_40gb"}},
        "base.hw: point 1 of 1: hw: 'a100_40gb' is a gpu config; these experiments need a cpu",
    ),
]


@pytest.mark.parametrize(("content", "expected"), EXPERIMENT_CASES)
def test_malformed_experiment_refused_before_anything_is_written(
    tmp_path, capsys, content, expected
):
    if isinstance(content, dict):
        content = yaml.safe_dump(content)
    exp = _materialise(tmp_path, content, "exp.yaml")
    out = tmp_path / "results"
    _fails(capsys, ["run", exp, "-o", out, "--no-progress", "-j", "1"], expected)
    assert not out.exists()  # no results folder, no manifest


# ----------------------------------------------------------------------------- request snapshots

SNAPSHOT_CASES = [
    ("DIR", "snap.csv: is a directory; expected a file"),
    (BINARY, "snap.csv: line 1 (byte 0): not UTF-8 text"),
    ("", "snap.csv: line 1: expected the header 'seq_len,ch_idx', got None"),
    ("seq_len\n3\n", "snap.csv: line 1: expected the header 'seq_len,ch_idx', got ['seq_len']"),
    ("seq_len,ch_idx\n", "snap.csv: no requests"),
    ("seq_len,ch_idx\n100\n", "snap.csv: line 2: expected 2 columns, got 1"),
    (
        "seq_len,ch_idx\n1e3,0\n",
        "snap.csv: line 2: seq_len and ch_idx must be integers, got ['1e3', '0']",
    ),
    ("seq_len,ch_idx\n100,x\n", "snap.csv: line 2: seq_len and ch_idx must be integers"),
    ("seq_len,ch_idx\n0,0\n", "snap.csv: line 2: need seq_len >= 1 and ch_idx >= 0, got 0, 0"),
    (
        "seq_len,ch_idx\n100,-1\n",
        "snap.csv: line 2: need seq_len >= 1 and ch_idx >= 0, got 100, -1",
    ),
    (
        "seq_len,ch_idx\n100,32\n",
        "snap.csv: line 2: ch_idx 32 out of range 0..31 (the memory has 32 channels)",
    ),
    (
        "seq_len,ch_idx\n99999999999,0\n",
        "snap.csv: line 2: seq_len = 99,999,999,999 exceeds the limit 16,777,216",
    ),
    ('seq_len,ch_idx\n"100,0\n', "snap.csv: line 2: malformed CSV: unexpected end of data"),
    (
        "seq_len,ch_idx\n10,0\n" + "9" * 5000 + ",0\n",
        "snap.csv: line 3: seq_len and ch_idx must be integers, got ['999",
    ),
]


@pytest.mark.parametrize(("content", "expected"), SNAPSHOT_CASES)
def test_malformed_request_snapshot(tmp_path, capsys, content, expected):
    snap = _materialise(tmp_path, content, "snap.csv")
    argv = ["iteration", "--system", "npu_only", "--layers", "1", "--requests", snap]
    _fails(capsys, argv, expected)


# ----------------------------------------------------------------------------- model YAML

TINY = {
    "kind": "decoder",
    "source": "test",
    "layers": 2,
    "d_model": 64,
    "heads": 4,
    "d_ff": 256,
    "ffn": "gelu",
    "norm": "layernorm",
    "vocab": 100,
    "max_context": 128,
}


def _model(**edits) -> str:
    body = copy.deepcopy(TINY)
    for k, v in edits.items():
        if v is KeyError:
            body.pop(k)
        else:
            body[k] = v
    return yaml.safe_dump({"tiny": body})


MODEL_CASES = [
    (BINARY, "models.yaml: line 1 (byte 0): not UTF-8 text"),
    ("", "models.yaml: the file is empty; expected a mapping of model names"),
    ("- tiny\n", "models.yaml: expected a mapping of model names to definitions, got list"),
    (
        "tiny: {kind: decoder}\ntiny: {kind: encoder}\n",
        "models.yaml: line 2, column 1: invalid YAML: duplicate key 'tiny'",
    ),
    (
        "Tiny Model: {kind: decoder}\n",
        "models.yaml: Tiny Model: model names are lower-case without spaces",
    ),
    ("tiny: 3\n", "models.yaml: tiny: expected a mapping with a 'kind' key, got int"),
    (_model(kind="rnn"), "models.yaml: tiny.kind: unknown model kind 'rnn'"),
    (
        _model(d_model=2**40),
        "models.yaml: tiny.d_model: 1,099,511,627,776 exceeds the limit 2,147,483,647",
    ),
    (
        _model(max_context=10**9),
        "models.yaml: tiny.max_context: 1,000,000,000 exceeds the limit 16,777,216",
    ),
    (_model(heads=5), "models.yaml: tiny: d_model (64) is not a multiple of heads (5)"),
    (_model(layers=0), "models.yaml: tiny.layers: Input should be greater than 0, got 0"),
    (_model(vocab=KeyError), "models.yaml: tiny.vocab: required key is missing"),
    (
        _model(ffn="tanh"),
        "models.yaml: tiny.ffn: Input should be 'gelu', 'relu' or 'swiglu', got 'tanh'",
    ),
]


@pytest.mark.parametrize(("content", "expected"), MODEL_CASES)
def test_malformed_model_yaml(tmp_path, capsys, content, expected):
    path = _materialise(tmp_path, content, "models.yaml")
    _fails(capsys, ["trace", "--model", path], expected)


# ----------------------------------------------------------------------------- measured CSVs

OPS_HEADER = "suite,op,m,n,k,dtype,measured_s\n"
MEASURED_CASES = [
    ("DIR", "meas.csv: is a directory; expected a file"),
    (BINARY, "meas.csv: line 1 (byte 0): not UTF-8 text"),
    ("op,m,n,k\ngemm,4,8,8\n", "meas.csv: line 1: no 'measured_s' column; is this a measured CSV?"),
    (
        "a,measured_s\n1,2\n",
        "meas.csv: line 1: expected an op file (column 'op') or an end-to-end file",
    ),
    (OPS_HEADER, "no measured samples in"),
    (
        OPS_HEADER + "linear,gemm,4,8,8,fp16,-1\n",
        "meas.csv: line 2: measured_s must be a positive number of seconds, got -1.0",
    ),
    (
        OPS_HEADER + "linear,gemm,4,8,8,fp16,inf\n",
        "meas.csv: line 2: measured_s must be a positive number of seconds, got inf",
    ),
    (
        OPS_HEADER + "linear,gemm,4,8,8,fp16,fast\n",
        "meas.csv: line 2: could not convert string to float: 'fast'",
    ),
    (
        OPS_HEADER + "linear,gemm,4,8,8,fp16\n",
        "meas.csv: line 2: fewer cells than the header has columns",
    ),
    (
        OPS_HEADER + "linear,gemm,4,8,8,fp16,1e-5,7\n",
        "meas.csv: line 2: more cells than the header has columns",
    ),
    (
        OPS_HEADER + "linear,gemm,4,8,10000000000,fp16,1e-5\n",
        "meas.csv: line 2: k = 10,000,000,000 exceeds the limit",
    ),
    (
        OPS_HEADER + 'linear,gemm,4,8,8,fp16,"1e-5\n',
        "meas.csv: line 2: malformed CSV: unexpected end of data",
    ),
    (
        "model,phase,batch,seq,measured_s\ngpt3-7b,decode,1,99999999999,0.01\n",
        "meas.csv: line 2: seq = 99,999,999,998 exceeds the limit",
    ),
    (
        "model,phase,batch,seq,measured_s\ngpt5,decode,1,128,0.01\n",
        "meas.csv: line 2: unknown model 'gpt5'",
    ),
    (
        "model,phase,batch,seq,measured_s\ngpt3-7b,decode,x,128,0.01\n",
        "meas.csv: line 2: invalid literal for int() with base 10: 'x'",
    ),
]


@pytest.mark.parametrize(("content", "expected"), MEASURED_CASES)
def test_malformed_measured_csv(tmp_path, capsys, content, expected):
    path = _materialise(tmp_path, content, "meas.csv")
    _fails(capsys, ["calibrate", "--hw", "h100_sxm", "--measured", path], expected)


# ----------------------------------------------------------------------------- dataset YAML

DATASET_CASES = [
    (
        "name: d\nsource: s\npairs: 10\n"
        "input: {mean: 5, median: 3, p90: 3, p99: 4, max: 10}\n"
        "output: {mean: 5, median: 3, p90: 3, p99: 4, max: 10}\n",
        "data.yaml: tokenizer: required key is missing",
    ),
    (
        "name: d\nsource: s\ntokenizer: t\npairs: 10\n"
        "input: {mean: 5, median: 9, p90: 3, p99: 4, max: 10}\n"
        "output: {mean: 5, median: 3, p90: 3, p99: 4, max: 10}\n",
        "data.yaml: input: expected median <= p90 <= p99 <= max, got 9, 3, 4, 10",
    ),
    (BINARY, "data.yaml: line 1 (byte 0): not UTF-8 text"),
]


@pytest.mark.parametrize(("content", "expected"), DATASET_CASES)
def test_malformed_dataset_yaml_refused_before_serving(tmp_path, capsys, content, expected):
    data = _materialise(tmp_path, content, "data.yaml")
    exp = _materialise(tmp_path, yaml.safe_dump(_exp(SERVE, base__dataset=str(data))), "e.yaml")
    out = tmp_path / "results"
    err = _fails(capsys, ["run", exp, "-o", out, "--no-progress", "-j", "1"], expected)
    assert "e.yaml: base.dataset: point 1 of 2 (system='npu_only'): " in err
    assert not out.exists()


# ----------------------------------------------------------------------------- arguments


def _trace_file(tmp_path: Path) -> Path:
    return _materialise(tmp_path, TRACE_OK, "ok.csv")


ARG_CASES = [
    (
        ["trace", "--model", "gpt3-7b", "--batch", "100000000000"],
        "batch = 100,000,000,000 exceeds the limit 16,777,216",
    ),
    (
        ["trace", "--model", "gpt3-7b", "--seq", "99999999999"],
        "seq = 99,999,999,999 exceeds the limit 16,777,215",
    ),
    (["trace", "--model", "gpt3-7b", "--batch", "0"], "batch must be a positive integer, got 0"),
    (["trace", "--model", "gpt3-7b", "--tp", "7"], "gpt3-7b: tp=7 must divide heads=32"),
    (["trace", "--model", "gpt3-7b", "--pp", "3"], "gpt3-7b: pp=3 must divide layers=32"),
    (
        ["trace", "--model", "gpt3-7b", "--pp", "2", "--stage", "5"],
        "stage must be an integer in [0, 1] for pp=2, got 5",
    ),
    (["trace", "--model", "gpt3-7b", "--dtype", "fp13"], "unknown dtype 'fp13'"),
    (["trace", "--model", "gpt5"], "unknown model 'gpt5'"),
    (
        [
            "trace",
            "--model",
            "gpt3-7b",
            "--phase",
            "prefill",
            "--batch",
            "3000000",
            "--seq",
            "3000",
        ],
        "m = 9,000,000,000 exceeds the limit 2,147,483,647",
    ),
    (
        ["trace", "--model", "gpt3-7b", "-o", "{tmp}"],
        ": is a directory; expected a file path to write",
    ),
    (["replay", "{ok}", "--hw", "h100_sxm", "--model", "nosuch"], "unknown device model 'nosuch'"),
    (
        ["replay", "{ok}", "--hw", "h100_sxm", "--model", "npu"],
        "device model 'npu' does not model 'gpu' hardware",
    ),
    (
        ["replay", "{ok}", "--hw", "tpu_v9"],
        "tpu_v9: no such file, and no hw_configs/ entry of that name",
    ),
    (
        ["replay", "{ok}", "--hw", "h100_sxm", "-o", "{tmp}"],
        ": is a directory; expected a file path to write",
    ),
    (["replay", "{tmp}/missing.csv", "--hw", "h100_sxm"], "missing.csv: file not found"),
    (
        ["memsim", "--hw", "hbm2_pim_neupims", "--requests", "1000000000000"],
        "--requests 1,000,000,000,000 exceeds the limit 16,777,216",
    ),
    (
        ["memsim", "--hw", "hbm2_pim_neupims", "--requests", "0"],
        "--requests must be positive, got 0",
    ),
    (
        ["memsim", "--hw", "hbm2_pim_neupims", "--pattern", "pim-gemv", "--gemv", "65536x65536"],
        "--gemv 65536x65536: the FP16 matrix needs 8 GiB, more than one channel",
    ),
    (
        ["memsim", "--hw", "hbm2_pim_neupims", "--gemv", "12x"],
        "--gemv: expected ROWSxCOLS such as 1024x4096, got '12x'",
    ),
    (["memsim", "--hw", "h100_sxm"], "kind is 'gpu'; memsim needs a memory config"),
    (
        ["iteration", "--system", "npu_only", "--requests", "{snap}", "--layers", "1000000000"],
        "layers must be in 1..32",
    ),
    (
        ["iteration", "--system", "npu_only", "--requests", "{snap}", "--tp", "0"],
        "tp must be a positive integer, got 0",
    ),
    (["iteration", "--system", "tpu", "--requests", "{snap}"], "system: unknown system 'tpu'"),
    (
        ["iteration", "--system", "npu_only", "--requests", "{snap}", "--placement", "random"],
        "placement: unknown policy 'random'",
    ),
    (["run"], "give an experiment YAML file (or --list-kinds)"),
    (["run", "{exp}", "--jobs", "0"], "--jobs 0: expected a positive number of processes"),
    (["run", "{exp}", "--cluster", "remote:4"], "--cluster 'remote:4': expected local:N"),
    (["plot", "{tmp}"], ": no experiment.yaml; run `neupims run EXPERIMENT.yaml"),
    (
        ["plot", "{tmp}", "--format", "xyz"],
        "--format 'xyz': expected comma-separated figure formats",
    ),
    (
        ["iteration", "--system", "npu_only", "--model", "resnet-50", "--requests", "{snap}"],
        "model 'resnet-50' is a cnn model; the serving systems run decoder (generative) models",
    ),
    (
        ["iteration", "--system", "npu_only", "--requests", "{snap}", "--timeline", "{tmp}"],
        ": is a directory; expected a file path to write",
    ),
    (["run", "{exp}", "-o", "{exp}"], "exp.yaml: File exists"),
    (
        ["calibrate", "--hw", "npu_neupims", "--measured", "{ok}"],
        "npu_neupims: calibrate fits GPU configs, this is a 'npu' config",
    ),
    (
        ["calibrate", "--hw", "h100_sxm", "--measured", "{tmp}/none*.csv"],
        "--measured: no file matches",
    ),
    (["crosscheck", "--hw", "npu_neupims", "-o", "{tmp}/x"], "no cross-check for 'npu' hardware"),
    (
        ["crosscheck", "--hw", "h100_sxm", "{tmp}", "-o", "{tmp}/x"],
        ": is a directory; expected a file",
    ),
]


@pytest.mark.parametrize(("argv", "expected"), ARG_CASES)
def test_bad_command_line_arguments(tmp_path, capsys, argv, expected):
    subs = {
        "{ok}": str(_trace_file(tmp_path)),
        "{snap}": str(_materialise(tmp_path, "seq_len,ch_idx\n100,0\n", "snap.csv")),
        "{exp}": str(_materialise(tmp_path, yaml.safe_dump(QUICK), "exp.yaml")),
        "{tmp}": str(tmp_path),
    }
    args = []
    for a in argv:
        for k, v in subs.items():
            a = a.replace(k, v)
        args.append(a)
    _fails(capsys, args, expected)


def test_the_table_holds_at_least_a_hundred_cases():
    tables = (
        TRACE_CASES,
        HW_CASES,
        EXPERIMENT_CASES,
        SNAPSHOT_CASES,
        MODEL_CASES,
        MEASURED_CASES,
        DATASET_CASES,
        ARG_CASES,
    )
    assert sum(len(t) for t in tables) >= 100
