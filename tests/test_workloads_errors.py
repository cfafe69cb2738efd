"""Malformed model YAML and bad trace arguments: each error names the file, key and problem."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from neupims.cli import main
from neupims.errors import ConfigError, NeupimsError
from neupims.workloads import get_model, trace
from neupims.workloads.zoo import MODELS_DIR, load_model_file

GOOD = {
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


def _write(tmp_path: Path, body: dict, name: str = "tiny") -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump({name: body}))
    return path


def _variant(**edits) -> dict:
    body = copy.deepcopy(GOOD)
    for k, v in edits.items():
        if v is None:
            body.pop(k)
        else:
            body[k] = v
    return body


def test_good_definition_loads_and_traces(tmp_path):
    path = _write(tmp_path, GOOD)
    spec = get_model(str(path))
    assert spec.d_head == 16 and spec.n_kv_heads == 4
    ops = trace(str(path), "decode", 2, 10)
    assert ops[-1].layer == "lm_head" and ops[-1].op.n == 100


@pytest.mark.parametrize(
    ("edits", "message"),
    [
        (
            {"layerz": 3},
            "tiny.layerz: unknown key (check its spelling against the documented keys)",
        ),
        ({"d_ff": None}, "tiny.d_ff: required key is missing"),
        ({"layers": -2}, "tiny.layers: Input should be greater than 0, got -2"),
        ({"heads": "many"}, "tiny.heads: Input should be a valid integer, got 'many'"),
        ({"ffn": "tanh"}, "tiny.ffn: Input should be 'gelu', 'relu' or 'swiglu', got 'tanh'"),
        ({"kind": "rnn"}, "tiny.kind: unknown model kind 'rnn'; expected one of"),
        ({"kind": None}, "tiny.kind: required key is missing; expected one of"),
        ({"kv_heads": 3}, "tiny: heads (4) must be a multiple of kv_heads (3)"),
        ({"d_model": 66}, "tiny: d_model (66) is not a multiple of heads (4)"),
    ],
)
def test_malformed_model_yaml(tmp_path, edits, message):
    path = _write(tmp_path, _variant(**edits))
    with pytest.raises(ConfigError) as exc:
        load_model_file(path)
    assert str(exc.value).startswith(f"{path}: {message}")


def test_malformed_cnn_layer_names_the_list_index(tmp_path):
    body = {
        "kind": "cnn",
        "source": "test",
        "layers": [
            {"op": "conv2d", "name": "c1", "c": 3, "h": 8, "kout": 4, "r": 3, "post": ["relu"]},
            {"op": "conv2d", "name": "c2", "c": 4, "h": 6, "kout": 4, "r": 3, "post": ["tanh"]},
        ],
    }
    path = _write(tmp_path, body, "net")
    with pytest.raises(ConfigError) as exc:
        load_model_file(path)
    assert str(exc.value).startswith(
        f"{path}: net.layers[1].conv2d.post[0]: expected an element-wise kind"
    )


def test_empty_and_non_mapping_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=re.escape(f"{empty}: the file is empty")):
        load_model_file(empty)
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match=re.escape(f"{listy}: expected a mapping of model")):
        load_model_file(listy)


def test_unknown_model_name_lists_close_matches():
    with pytest.raises(NeupimsError) as exc:
        get_model("llama2-7")
    msg = str(exc.value)
    assert msg.startswith("unknown model 'llama2-7'; did you mean llama2-7b")
    assert "llama2-70b" in msg


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tp": 3}, "llama2-7b: tp=3 must divide heads=32 (and d_ff=11008)"),
        ({"tp": 0}, "tp must be a positive integer, got 0"),
        ({"batch": 0}, "batch must be a positive integer, got 0"),
        ({"seq": -1}, "seq must be an integer >= 0, got -1"),  # decode: an empty cache is fine
        ({"seq": 0, "phase": "prefill"}, "seq must be a positive integer, got 0"),
        ({"phase": "train"}, "phase must be one of ['prefill', 'decode'], got 'train'"),
        ({"dtype": "fp12"}, "unknown dtype 'fp12'; expected one of"),
    ],
)
def test_bad_trace_arguments(kwargs, message):
    args = {"phase": "decode", "batch": 1, "seq": 8, **kwargs}
    with pytest.raises(NeupimsError) as exc:
        trace("llama2-7b", **args)
    assert str(exc.value).startswith(message)


def test_tp_must_divide_d_ff(tmp_path):
    path = _write(tmp_path, _variant(d_ff=255, heads=2))
    with pytest.raises(NeupimsError, match=re.escape("tp=2 must divide d_ff=255")):
        trace(str(path), "decode", 1, 4, tp=2)


def test_cli_reports_errors_cleanly(capsys, tmp_path):
    rc = main(["trace", "--model", "gpt3-175", "-o", str(tmp_path / "t.csv")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("neupims trace: error: unknown model 'gpt3-175'; did you mean gpt3-175b")
    assert not (tmp_path / "t.csv").exists()


def test_bundled_files_have_no_duplicate_names():
    seen: set[str] = set()
    for path in sorted(MODELS_DIR.glob("*.yaml")):
        names = set(load_model_file(path))
        assert not names & seen, path
        seen |= names
    assert len(seen) == 30  # 29 + sheared-llama-1.3b (Prepacking)


def test_ragged_lengths_must_match_batch_and_be_positive():
    with pytest.raises(NeupimsError, match="seq has 2 per-request lengths but batch is 3"):
        trace("gpt3-125m", "decode", 3, [5, 6])
    with pytest.raises(NeupimsError, match=re.escape("seq[1] must be a positive integer, got 0")):
        trace("gpt3-125m", "prefill", 2, [5, 0])
    with pytest.raises(NeupimsError, match=re.escape("seq[1] must be an integer >= 0, got -2")):
        trace("gpt3-125m", "decode", 2, [5, -2])
    # a decode step over an empty cache attends to its own token only
    (core,) = [t.op for t in trace("gpt3-125m", "decode", 2, [0, 0]) if t.layer == "L0.attn.core"]
    assert core.kv_len == 1 and core.batch == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pp": 5}, "gpt3-7b: pp=5 must divide layers=32"),
        ({"pp": 4, "stage": 4}, "stage must be an integer in [0, 3] for pp=4, got 4"),
        ({"pp": 0}, "pp must be a positive integer, got 0"),
    ],
)
def test_bad_pipeline_arguments(kwargs, message):
    with pytest.raises(NeupimsError) as exc:
        trace("gpt3-7b", "decode", 1, 8, **kwargs)
    assert str(exc.value) == message
    with pytest.raises(NeupimsError, match="pipeline parallelism is not modelled for CNNs"):
        trace("vgg-16", "prefill", 1, 1, pp=2)
