"""Fuzzing every loader of user input: random bytes and random structured mutations of
valid inputs must either load or raise the project's own errors (NeupimsError and its
ConfigError / TraceError), never another exception.

Loaders: trace CSV (``read_trace``), hardware YAML (``load_yaml`` + ``parse_hw``, then one
op costed on what loads), experiment specs (``load_experiment``), request snapshots
(``read_snapshot``), the model zoo (``load_model_file``, then a trace of what loads),
measured CSVs (``calibrate.load_measurements``) and dataset YAML (``load_dataset_file``);
and every registered op, with fields up to their limits, costed on every device model.

Hypothesis is derandomised (the same examples every run) and kept small so that the whole
file runs in a few seconds; ``NEUPIMS_FUZZ_SCALE=20`` runs twenty times the examples for
a deeper search, and ``NEUPIMS_FUZZ_RANDOM=1`` draws fresh examples (with pytest's
``--hypothesis-seed=N`` to repeat a run) (``--hypothesis-show-statistics`` shows how often each loader loaded
and which error it raised).
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io
import math
import os
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from neupims.calibrate import load_measurements
from neupims.cli.iteration import read_snapshot
from neupims.config import load_hw
from neupims.config.hardware import parse_hw
from neupims.config.loader import ROOT, load_yaml
from neupims.devices import get_model
from neupims.errors import NeupimsError
from neupims.experiments import load_experiment
from neupims.limits import MAX_DIM
from neupims.ops import (
    CONV_ALGOS,
    DTYPE_BYTES,
    ELEMENTWISE_KINDS,
    LONG_CONV_ALGOS,
    NA_ALGOS,
    OP_KINDS,
    Gemm,
)
from neupims.workloads import trace
from neupims.workloads.datasets import load_dataset_file
from neupims.workloads.trace_io import TracedOp, read_trace, trace_columns, write_trace
from neupims.workloads.zoo import load_model_file


def fuzz(n: int):
    """Deterministic, database-free Hypothesis settings with ``n`` examples (times
    ``NEUPIMS_FUZZ_SCALE``)."""
    return settings(
        derandomize="NEUPIMS_FUZZ_RANDOM" not in os.environ,
        max_examples=n * int(os.environ.get("NEUPIMS_FUZZ_SCALE", "1")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, name: str, data: bytes | str) -> Path:
    path = folder / name
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    return path


def only_our_errors(fn, *args, **kw):
    """Call ``fn``; a NeupimsError is an accepted outcome, anything else fails the test."""
    try:
        out = fn(*args, **kw)
    except NeupimsError as exc:
        assert str(exc).strip(), "an error must say what is wrong"
        event(f"refused: {type(exc).__name__}")
        return None
    event("loaded")
    return out


# ----------------------------------------------------------------------------- values

#: Cell texts: numbers of every size and sign, the float specials, names that exist and
#: names that almost exist, CSV-hostile characters, and free text.
CELL = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 4096).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(
        [
            "",
            " ",
            "inf",
            "-inf",
            "nan",
            "1e400",
            "0x10",
            "1_000",
            "true",
            "no",
            "maybe",
            "fp16",
            "fp13",
            "int4",
            "gemm",
            "gemv",
            "conv2d",
            "attention",
            "elementwise",
            "pool2d",
            "spmm",
            "quant_gemm",
            "lut_gemm",
            "matmul",
            "layernorm",
            "max",
            "im2win",
            '"',
            '""',
            ",",
            "\n",
            "\r",
            "\x00",
            "\ufeff",
            "9" * 400,
        ]
    ),  # fmt: skip
    st.text(string.printable, max_size=12),
)

#: YAML-ish values to put where a valid value was.
VALUE = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**80), 2**80),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=12),
        st.sampled_from(
            [
                "h100_sxm",
                "npu_neupims",
                "cpu",
                "fp16",
                "fp13",
                "gpt3-125m",
                "sharegpt",
                "neupims",
                "gmlbp",
                "decode",
                "prefill",
            ]
        ),  # fmt: skip
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


#: Names a mutation may put in place of another name (valid ones and near misses).
NAMES = ["h100_sxm", "a100_40gb", "npu_neupims", "hbm2_pim_neupims", "xeon_8480", "cpu",
         "fp16", "fp32", "int8", "fp13", "gpt3-125m", "gpt3-7b", "resnet-50", "sharegpt",
         "alpaca", "npu_only", "neupims", "gpu_only", "gmlbp", "round_robin", "decode",
         "prefill", "im2col", "conv3", "relu", "add", "max"]  # fmt: skip


def similar(old):
    """A value of the same type as ``old``, near it: the typo a user would make."""
    if isinstance(old, bool):
        return st.booleans()
    if isinstance(old, int):
        near = st.sampled_from([0, old - 1, old + 1, old * 1000])
        return st.integers(-1, 2 * abs(old) + 2) | near
    if isinstance(old, float) and math.isfinite(old):
        return st.floats(-1.0, 2 * abs(old) + 1.0) | st.sampled_from([0.0, -old, old * 10])
    if isinstance(old, str):
        return st.sampled_from(NAMES) | st.just(old + "x") | st.just(old.upper())
    if isinstance(old, list) and old:
        return st.lists(similar(old[0]), max_size=len(old) + 1)
    return VALUE


def _paths(node, prefix=()):
    """Every key path of a nested mapping/list (for mutations)."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw, base: dict, extra_keys: tuple[str, ...] = ()):
    """``base`` with 1-3 mutations: a value replaced, a key deleted or a key added."""
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = data
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "set":
            parent[path[-1]] = draw(similar(parent[path[-1]]) | VALUE)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            names = st.sampled_from(extra_keys) if extra_keys else st.nothing()
            key = draw(names | st.text(max_size=8))
            parent[key] = draw(VALUE)
    return data


def _text_mutation(text: str):
    """A YAML/CSV text with a few characters replaced, inserted or deleted."""

    @st.composite
    def strat(draw):
        s = text
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, max(0, len(s) - 1)))
            op = draw(st.sampled_from(["replace", "insert", "delete"]))
            ch = draw(st.sampled_from(list(":-[]{}&*!|>'\"#,\n\t 0123456789.e")) | st.characters())
            if op == "replace":
                s = s[:i] + ch + s[i + 1 :]
            elif op == "insert":
                s = s[:i] + ch + s[i:]
            else:
                s = s[:i] + s[i + 1 :]
        return s

    return strat()


# ----------------------------------------------------------------------------- ops


@st.composite
def ops(draw):
    """Any registered op with fields drawn by type, sizes up to each field's limit."""
    cls = draw(st.sampled_from(sorted(OP_KINDS.values(), key=lambda c: c.name)))
    kw = {}
    for f in dataclasses.fields(cls):
        hi = f.metadata.get("max", MAX_DIM)
        if f.name == "dtype":
            kw[f.name] = draw(st.sampled_from(sorted(DTYPE_BYTES)))
        elif f.type == "int":
            small = st.sampled_from([1, 2, 3, 7, 64, 128, 4096])
            kw[f.name] = draw(small | st.integers(1, hi) | st.integers(0, 31).map(lambda e: 2**e))
        elif f.type == "float":
            kw[f.name] = draw(st.floats(0.0, 0.99))
        elif f.type == "bool":
            kw[f.name] = draw(st.booleans())
        elif f.name == "kind":
            kw[f.name] = draw(st.sampled_from([*ELEMENTWISE_KINDS, "max", "avg"]))
        elif f.name == "algo":
            kw[f.name] = draw(st.sampled_from([*CONV_ALGOS, *NA_ALGOS, *LONG_CONV_ALGOS]))
        elif f.type == "str":  # extents (neighborhood attention), kernel names (apint_gemm)
            kw[f.name] = draw(st.sampled_from(["1", "7", "56x56", "7x7", "8x8x8", "3x0", "x", "",
                                               "bipolar_int", "cutlass_padded"]))  # fmt: skip
    try:
        return cls(**kw)
    except ValueError:
        return None  # outside an op's own checks or the size limits: refused at construction


# ----------------------------------------------------------------------------- trace CSV


@st.composite
def trace_texts(draw):
    cols = ["op", *draw(st.lists(st.sampled_from(trace_columns()[1:]), max_size=8, unique=True))]
    if draw(st.booleans()):
        cols.insert(
            draw(st.integers(0, len(cols))), draw(st.text(string.ascii_lowercase, max_size=5))
        )
    rows = draw(
        st.lists(st.lists(CELL, min_size=len(cols) - 1, max_size=len(cols) + 1), max_size=4)
    )
    if draw(st.booleans()):  # written by a CSV writer: quoting is valid
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        w.writerows(rows)
        return buf.getvalue()
    return "\n".join(",".join(r) for r in [cols, *rows]) + "\n"


#: Valid traces of 1-3 random ops as ``neupims trace`` writes them, then a few characters
#: changed: inputs one typo away from valid.
NEAR_VALID_TRACES = (
    st.lists(ops().filter(lambda o: o is not None), min_size=1, max_size=3)
    .map(lambda ops_: write_trace([TracedOp(f"l{i}", o) for i, o in enumerate(ops_)]))
    .flatmap(lambda text: st.just(text) | _text_mutation(text))
)


@fuzz(150)
@given(data=st.binary(max_size=200) | trace_texts() | NEAR_VALID_TRACES)
def test_fuzz_trace_csv(scratch, data):
    path = _write(scratch, "trace.csv", data)
    ops = only_our_errors(read_trace, path)
    assert ops is None or len(ops) >= 1


# ----------------------------------------------------------------------------- hardware YAML

HW_NAMES = ["h100_sxm", "npu_neupims", "hbm2_pim_neupims", "xeon_8480"]
HW = {n: yaml.safe_load((ROOT / "hw_configs" / f"{n}.yaml").read_text()) for n in HW_NAMES}
HW_TEXT = {n: (ROOT / "hw_configs" / f"{n}.yaml").read_text() for n in HW_NAMES}


def _load_and_cost(path: Path):
    hw = parse_hw(load_yaml(path), str(path))
    if hw.kind in ("gpu", "cpu"):  # a config that loads must cost an op (npu needs its memory)
        get_model(hw).estimate(Gemm(64, 64, 64, dtype="fp32"))
    return hw


@fuzz(120)
@given(
    data=st.binary(max_size=200)
    | st.sampled_from(HW_NAMES).flatmap(lambda n: mutated(HW[n]).map(yaml.safe_dump))
    | st.sampled_from(HW_NAMES).flatmap(lambda n: _text_mutation(HW_TEXT[n]))
)
def test_fuzz_hardware_yaml(scratch, data):
    only_our_errors(_load_and_cost, _write(scratch, "hw.yaml", data))


# ----------------------------------------------------------------------------- experiments

EXPERIMENTS = [
    {
        "name": "q",
        "kind": "replay",
        "base": {"model": "gpt3-125m", "phase": "decode", "batch": 1, "seq": 64, "hw": "h100_sxm"},
        "sweep": {"grid": {"batch": [1, 2]}, "zip": {"seq": [64, 128], "tp": [1, 2]}},
        "metrics": ["latency_s"],
        "figures": [{"type": "lines", "x": "batch", "y": "latency_s", "hue": "seq"}],
    },
    {
        "name": "s",
        "kind": "neupims_serving",
        "base": {"model": "gpt3-7b", "batch": 8, "iterations": 1, "warmup": 0},
        "sweep": {"grid": {"system": ["npu_only", "neupims"]}},
    },
    {"name": "c", "kind": "conv_algos", "sweep": {"grid": {"algo": ["im2col", "im2win"]}}},
    {"name": "t", "kind": "tmac_cpu", "base": {"wbits": 2}},
    {"name": "y", "kind": "synthetic", "sweep": {"grid": {"x": [1.0, 2.0]}}},
]
EXP_KEYS = ("dtype", "tp", "hw", "seq", "batch", "system", "dataset", "overrides", "grid")


@fuzz(120)
@given(spec=st.sampled_from(EXPERIMENTS).flatmap(lambda e: mutated(e, EXP_KEYS)))
def test_fuzz_experiment_spec(spec):
    exp = only_our_errors(load_experiment, spec)
    assert exp is None or len(exp.points) >= 1


@fuzz(40)
@given(data=st.binary(max_size=200) | _text_mutation(yaml.safe_dump(EXPERIMENTS[0])))
def test_fuzz_experiment_file(scratch, data):
    only_our_errors(load_experiment, _write(scratch, "exp.yaml", data))


# ----------------------------------------------------------------------------- snapshots


@st.composite
def snapshot_texts(draw):
    header = draw(st.sampled_from(["seq_len,ch_idx", "seq_len,ch_idx,extra", "seq_len", ""]))
    cell = st.integers(-2, 40).map(str) | CELL
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=3), max_size=5))
    return "\n".join([header, *(",".join(r) for r in rows)]) + "\n"


@fuzz(120)
@given(data=st.binary(max_size=120) | snapshot_texts())
def test_fuzz_request_snapshot(scratch, data):
    out = only_our_errors(read_snapshot, _write(scratch, "snap.csv", data), 32)
    if out is not None:
        seq, ch = out
        assert len(seq) == len(ch) >= 1 and (seq >= 1).all() and ((ch >= 0) & (ch < 32)).all()


# ----------------------------------------------------------------------------- model zoo

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
TINY_CNN = {
    "kind": "cnn",
    "source": "test",
    "layers": [
        {"op": "conv2d", "name": "c1", "c": 3, "h": 16, "kout": 8, "r": 3, "pad": 1,
         "post": ["relu"]},
        {"op": "pool2d", "name": "p", "kind": "max", "c": 8, "h": 16, "r": 2, "stride": 2},
        {"op": "group", "name": "g{i}", "repeat": 2, "layers": [
            {"op": "elementwise", "name": "e", "kind": "add", "c": 8, "h": 8}]},
        {"op": "fc", "name": "fc", "n": 10, "k": 512},
    ],
}  # fmt: skip


def _load_and_trace(path: Path):
    models = load_model_file(path)
    for spec in models.values():
        trace(spec, "decode", 2, 8)
    return models


@fuzz(120)
@given(
    data=st.binary(max_size=200)
    | st.sampled_from([TINY, TINY_CNN]).flatmap(
        lambda m: mutated({"tiny": m}).map(lambda d: yaml.safe_dump(d))
    )
)
def test_fuzz_model_zoo(scratch, data):
    only_our_errors(_load_and_trace, _write(scratch, "models.yaml", data))


# ----------------------------------------------------------------------------- measured CSV

OPS_COLS = ["suite", "op", "impl", "algo", "m", "n", "k", "dtype", "batch", "measured_s"]
E2E_COLS = ["model", "phase", "batch", "seq", "dtype", "measured_s", "graph_measured_s"]


@st.composite
def measured_texts(draw):
    cols = list(draw(st.sampled_from([OPS_COLS, E2E_COLS])))
    if draw(st.booleans()):
        cols.remove(draw(st.sampled_from(cols)))
    cell = CELL | st.sampled_from(["linear", "bmm", "conv", "gpt3-125m", "decode", "1e-5"])
    rows = draw(
        st.lists(st.lists(cell, min_size=len(cols) - 1, max_size=len(cols) + 1), max_size=3)
    )
    return "\n".join(",".join(r) for r in [cols, *rows]) + "\n"


def _head(path: str, lines: int = 3) -> str:
    return "".join((ROOT / path).read_text().splitlines(keepends=True)[:lines])


#: The first rows of the committed H100 measurements, a few characters changed.
NEAR_VALID_MEASURED = st.sampled_from(
    [_head("validation/h100/ops.csv"), _head("validation/h100/e2e.csv")]
).flatmap(lambda text: st.just(text) | _text_mutation(text))


@fuzz(100)
@given(data=st.binary(max_size=150) | measured_texts() | NEAR_VALID_MEASURED)
def test_fuzz_measured_csv(scratch, data):
    only_our_errors(load_measurements, [_write(scratch, "meas.csv", data)])


# ----------------------------------------------------------------------------- datasets

DATASET = yaml.safe_load((ROOT / "workloads" / "datasets" / "sharegpt.yaml").read_text())


@fuzz(80)
@given(data=st.binary(max_size=150) | mutated(DATASET).map(yaml.safe_dump))
def test_fuzz_dataset_yaml(scratch, data):
    only_our_errors(load_dataset_file, _write(scratch, "data.yaml", data))


# ----------------------------------------------------------------------------- ops on devices

DEVICES = [
    get_model(load_hw(name), model)
    for name in ("h100_sxm", "a100_40gb", "npu_neupims", "hbm2_pim_neupims", "xeon_8480", "rpi5")
    for model in (None, "roofline")
]


@fuzz(150)
@given(op=ops())
def test_fuzz_every_op_costs_on_every_device_or_says_why(op):
    """An op that passes its checks must get a cost, or a ConfigError naming op and device
    (a dtype without a peak), on every device model: no overflow, no memory blow-up."""
    event("op refused at construction" if op is None else f"op {op.name}")
    if op is None:
        return
    for dev in DEVICES:
        cost = only_our_errors(dev.estimate, op)
        assert cost is None or cost.latency_s >= 0
