"""Malformed hardware YAML: each error names the file, the key path and what was expected."""

from pathlib import Path

import pytest
import yaml

from neupims.config import load_hw
from neupims.config.loader import ROOT
from neupims.errors import ConfigError

HW = ROOT / "hw_configs"


def _write_variant(tmp_path: Path, base: str, edit) -> Path:
    data = yaml.safe_load((HW / f"{base}.yaml").read_text())
    edit(data)
    out = tmp_path / f"bad_{base}.yaml"
    out.write_text(yaml.safe_dump(data))
    return out


@pytest.mark.parametrize(
    "name", ["npu_neupims", "hbm2_pim_neupims", "h100_sxm", "a100_40gb", "xeon_8480"]
)
def test_bundled_configs_load(name):
    hw = load_hw(name)
    assert hw.peak_flops("fp16") > 0 or hw.kind == "memory"


def test_bundled_numbers_derive_the_documented_peaks():
    mem = load_hw("hbm2_pim_neupims")
    assert mem.page_bytes == 1024 and mem.access_bytes == 64 and mem.banks_per_channel == 32
    assert mem.peak_bytes_per_s == pytest.approx(1024e9)  # docs/sources/neupims.md §3: 1,024 GB/s
    assert mem.pim_peak_flops == pytest.approx(16.384e12)  # ~16.4 TFLOPS PIM peak
    npu = load_hw("npu_neupims")
    assert npu.peak_flops("fp16") == pytest.approx(262.144e12)  # 8*128*128*2*1 GHz


def _set(path, value):
    def edit(d):
        cur = d
        for p in path[:-1]:
            cur = cur[p]
        cur[path[-1]] = value

    return edit


def _drop(path):
    def edit(d):
        cur = d
        for p in path[:-1]:
            cur = cur[p]
        del cur[path[-1]]

    return edit


@pytest.mark.parametrize(
    "base, edit, expected",
    [
        # a typo in a key
        ("h100_sxm", _set(["hbm_bandwith_gbps"], 3350), "hbm_bandwith_gbps: unknown key"),
        # a missing required key
        ("h100_sxm", _drop(["sms"]), "sms: required key is missing"),
        # a negative bandwidth
        (
            "h100_sxm",
            _set(["hbm_bandwidth_gbps"], -5),
            "hbm_bandwidth_gbps: Input should be greater than 0, got -5",
        ),
        # zero banks, nested path
        (
            "hbm2_pim_neupims",
            _set(["organization", "banks_per_group"], 0),
            "organization.banks_per_group: Input should be greater than 0, got 0",
        ),
        # wrong type
        (
            "npu_neupims",
            _set(["systolic_array", "rows"], "many"),
            "systolic_array.rows: Input should be a valid integer, got 'many'",
        ),
        # a float where a count is expected
        (
            "npu_neupims",
            _set(["vector_unit", "count"], 8.5),
            "vector_unit.count: Input should be a valid integer",
        ),
        # unknown device kind
        ("npu_neupims", _set(["kind"], "tpu"), "kind: unknown device kind 'tpu'"),
        # inconsistent timing
        (
            "hbm2_pim_neupims",
            _set(["timing", "tRAS"], 10),
            "timing.tRAS (10) must be >= timing.tRCDRD (14)",
        ),
        # unknown enum value
        (
            "hbm2_pim_neupims",
            _set(["controller", "page_policy"], "half-open"),
            "controller.page_policy: Input should be 'open' or 'closed'",
        ),
    ],
)
def test_bad_hardware_yaml_names_file_key_and_expectation(tmp_path, base, edit, expected):
    path = _write_variant(tmp_path, base, edit)
    with pytest.raises(ConfigError) as exc:
        load_hw(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert expected in msg


def test_yaml_syntax_error_names_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("kind: gpu\nname: [unclosed\nsms: 3\n")
    with pytest.raises(ConfigError) as exc:
        load_hw(p)
    assert (
        str(p) in str(exc.value) and "line 3" in str(exc.value) and "invalid YAML" in str(exc.value)
    )


def test_empty_and_non_mapping_files(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_hw(empty)
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping with a 'kind' key, got list"):
        load_hw(lst)


def test_unknown_config_name_lists_known_ones():
    with pytest.raises(ConfigError) as exc:
        load_hw("h200_nvl")
    assert "h100_sxm" in str(exc.value)
