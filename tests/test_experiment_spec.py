"""Experiment YAML: expansion of grid/zip sweeps and precise errors before anything runs."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from neupims.config import ROOT, load_hw
from neupims.errors import ConfigError
from neupims.experiments import apply_hw_overrides, load_experiment, run
from neupims.experiments.kinds import KINDS, ExperimentKind, register_kind


def write(tmp_path, text: str):
    p = tmp_path / "exp.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def test_grid_times_zip_expands_in_order_with_swept_values(tmp_path):
    exp = load_experiment(
        write(
            tmp_path,
            """
            name: e
            kind: synthetic
            base: {label: z}
            sweep:
              grid: {x: [1.0, 2.0]}
              zip: {y: [0, 1, 2], label: [a, b, c]}
            """,
        )
    )
    swept = [p.swept for p in exp.points]
    assert swept == [
        {"x": x, "y": y, "label": lab}
        for x in (1.0, 2.0)
        for y, lab in zip((0, 1, 2), "abc", strict=True)
    ]
    assert [p.index for p in exp.points] == list(range(6))
    # resolved configs carry every default, and keys differ per point
    assert exp.points[0].config == {
        "x": 1.0,
        "y": 0,
        "label": "a",
        "sleep_s": 0.0,
        "fail": False,
        "crash": False,
        "seed": 0,
    }
    assert len({p.key for p in exp.points}) == 6


def test_key_depends_on_config_not_on_sweep_order(tmp_path):
    a = load_experiment(
        write(tmp_path, "name: e\nkind: synthetic\nsweep: {grid: {x: [1.0], y: [2]}}\n")
    )
    b = load_experiment(
        {"name": "f", "kind": "synthetic", "sweep": {"grid": {"y": [2], "x": [1.0]}}}
    )
    c = load_experiment({"name": "e", "kind": "synthetic", "base": {"x": 1.0, "y": 3}})
    assert a.points[0].key == b.points[0].key
    assert a.points[0].key != c.points[0].key


BAD = [
    ("sweep: {}\n", "exp.yaml: sweep: empty sweep; give a grid and/or zip of dotted paths"),
    (
        "sweep: {grid: {xx: [1.0]}}\n",
        "exp.yaml: sweep.grid.xx: unknown key 'xx' in the point config; expected one of "
        "['crash', 'fail', 'label', 'seed', 'sleep_s', 'x', 'y']",
    ),
    (
        "sweep: {grid: {y: [1, two]}}\n",
        "exp.yaml: sweep.grid.y: point 2 of 2 (y='two'): Input should be a valid integer, "
        "unable to parse string as an integer, got 'two'",
    ),
    (
        "sweep: {zip: {x: [1.0, 2.0], y: [1, 2, 3]}}\n",
        "exp.yaml: sweep.zip: lists must have equal lengths, got x: 2, y: 3",
    ),
    (
        "sweep: {grid: {x: 1.0}}\n",
        "exp.yaml: sweep.grid.x: expected a list of values, got float 1.0",
    ),
    ("sweep: {grid: {x: []}}\n", "exp.yaml: sweep.grid.x: empty list of values"),
    (
        "sweep: {grid: {x.sub: [1]}}\n",
        "exp.yaml: sweep.grid.x.sub: x is a value, not a mapping with sub-keys",
    ),
    (
        "base: {y: -1.5}\n",
        "exp.yaml: base.y: point 1 of 1: Input should be a valid integer, got a number with a "
        "fractional part, got -1.5",
    ),
    (
        "metrics: [value, valu]\n",
        "exp.yaml: metrics[1]: unknown metric 'valu' of kind 'synthetic'; expected one of "
        "['value', 'measured', 'flops', 'bytes', 'latency_s', 'peak_flops_per_s', 'bytes_per_s']",
    ),
    (
        "figurs: []\n",
        "exp.yaml: figurs: unknown key (check its spelling against the documented keys)",
    ),
    (
        "sweep: {grid: {x: [1.0]}}\nfigures: [{type: lines, x: x, y: nope}]\n",
        "exp.yaml: figures[0].y: column 'nope' is neither swept nor a metric",
    ),
    (
        "sweep: {grid: {x: [1.0, 1.0]}}\n",
        "exp.yaml: sweep: points 1 and 2 resolve to the same configuration",
    ),
]


@pytest.mark.parametrize("body,message", BAD, ids=[m.split(": ")[1] for _, m in BAD])
def test_bad_experiment_is_rejected_before_anything_runs(tmp_path, body, message):
    path = write(tmp_path, "name: e\nkind: synthetic\n" + body)
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        run(path, out, jobs=1, progress=False)
    assert str(err.value).startswith(str(tmp_path / message.split(": ", 1)[0])), str(err.value)
    assert message.split(": ", 1)[1] in str(err.value)
    assert not out.exists()  # validated before any output or point


def test_unknown_kind_lists_the_registered_kinds(tmp_path):
    with pytest.raises(
        ConfigError, match=r"kind: unknown experiment kind 'nope'; expected one of \[.*'synthetic'"
    ):
        load_experiment(write(tmp_path, "name: e\nkind: nope\n"))


def test_replay_kind_errors_name_the_swept_hardware_path(tmp_path):
    base = "name: e\nkind: replay\nbase: {model: gpt3-125m, hw: h100_sxm}\n"
    with pytest.raises(ConfigError) as err:
        load_experiment(write(tmp_path, base + "sweep: {grid: {hw: [h100_sxm, h999]}}\n"))
    assert "sweep.grid.hw: point 2 of 2 (hw='h999'): h999: no such file" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_experiment(
            write(tmp_path, base + "sweep: {grid: {hw_overrides.hbm_bandwidth_gbps: [3000, -5]}}\n")
        )
    assert (
        "sweep.grid.hw_overrides.hbm_bandwidth_gbps: point 2 of 2 "
        "(hw_overrides.hbm_bandwidth_gbps=-5): hw_overrides (on h100-sxm): hbm_bandwidth_gbps: "
        "Input should be greater than 0, got -5"
    ) in str(err.value)
    with pytest.raises(ConfigError, match=r"base.model: point 1 of 1: unknown model 'gpt-9'"):
        load_experiment(
            write(tmp_path, "name: e\nkind: replay\nbase: {model: gpt-9, hw: h100_sxm}\n")
        )


def test_apply_hw_overrides_merges_and_revalidates():
    hw = load_hw("hbm2_pim_neupims")
    assert hw.pim.dual_row_buffer is True
    single = apply_hw_overrides(hw, {"pim": {"dual_row_buffer": False}})
    assert single.pim.dual_row_buffer is False
    assert single.organization == hw.organization  # the rest of the mapping is kept
    with pytest.raises(
        ConfigError, match=r"hw_overrides \(on hbm2-pim-neupims\): pim.dual_row_bufer: unknown key"
    ):
        apply_hw_overrides(hw, {"pim": {"dual_row_bufer": False}})


class _Tiny(BaseModel):
    n: int = 1


def test_unknown_metric_of_an_undeclared_kind_fails_after_the_first_point(tmp_path):
    register_kind(ExperimentKind("test_tiny", _Tiny, lambda cfg: {"double": 2 * cfg.n}))
    try:
        exp = {
            "name": "e",
            "kind": "test_tiny",
            "sweep": {"grid": {"n": [1, 2, 3]}},
            "metrics": ["tripl"],
        }
        with pytest.raises(
            ConfigError,
            match=r"metrics\[0\]: unknown metric 'tripl'; kind 'test_tiny' returns \['double'\]",
        ):
            run(exp, tmp_path / "o", jobs=1, progress=False)
        assert len(list((tmp_path / "o" / "store").glob("*.json"))) == 1  # stopped after one
    finally:
        KINDS.pop("test_tiny")


def test_quickstart_expands_to_its_documented_grid():
    exp = load_experiment(ROOT / "experiments" / "quickstart.yaml")
    assert len(exp.points) == 2 * 2 * 9
    assert {p.config["hw"] for p in exp.points} == {"h100_sxm", "npu_neupims"}
    assert sorted({p.config["batch"] for p in exp.points}) == [2**i for i in range(9)]


def test_experiment_seed_reaches_kinds_with_a_seed_key_unless_set():
    exp = load_experiment({"name": "s", "kind": "synthetic", "seed": 7})
    assert exp.points[0].config["seed"] == 7
    exp = load_experiment({"name": "s", "kind": "synthetic", "seed": 7, "base": {"seed": 2}})
    assert exp.points[0].config["seed"] == 2


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    xs=st.lists(st.integers(-50, 50), min_size=1, max_size=4, unique=True),
    labels=st.lists(st.sampled_from("abcdef"), min_size=1, max_size=3, unique=True),
    zipped=st.integers(1, 3),
)
def test_sweep_size_is_grid_product_times_zip_length(xs, labels, zipped):
    exp = load_experiment(
        {
            "name": "h",
            "kind": "synthetic",
            "sweep": {
                "grid": {"x": [float(x) for x in xs], "label": labels},
                "zip": {"y": list(range(zipped)), "sleep_s": [0.0] * zipped},
            },
        }
    )
    assert len(exp.points) == len(xs) * len(labels) * zipped
    assert len({p.key for p in exp.points}) == len(exp.points)
    for p in exp.points:  # every swept value is in the resolved config
        assert all(p.config[k] == v for k, v in p.swept.items())


def test_set_overrides_a_base_key_and_refuses_a_swept_one(tmp_path):
    """`neupims run --set KEY=VALUE`: the value (YAML) lands in the base of every point; a
    swept key or a malformed assignment is one clear error."""
    from neupims.cli.run import _assignments
    from neupims.errors import ConfigError
    from neupims.experiments import load_experiment

    f = tmp_path / "e.yaml"
    f.write_text("name: e\nkind: synthetic\nbase: {x: 1.0}\nsweep:\n  grid:\n    y: [1, 2]\n")
    exp = load_experiment(f, _assignments(["x=2.5"]))
    assert [p.config["x"] for p in exp.points] == [2.5, 2.5]
    assert "# --set x=2.5" in exp.text
    import yaml

    assert yaml.safe_load(exp.text)["base"]["x"] == 2.5  # the stored experiment is what ran
    with pytest.raises(ConfigError, match="--set y: the experiment sweeps 'y'"):
        load_experiment(f, {"y": 3})
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        _assignments(["x"])
