"""`neupims calibrate --hw cpu` and `--hw cpu`: the pipeline's structure (fake clocks, tiny
sizes), the YAML it writes and reads back, where it goes, and the layering of load_hw.
No wall-clock accuracy is asserted here (benchmarks/bench_cpu_crosscheck.py prints it)."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from neupims.cli import main
from neupims.config import load_hw, parse_hw
from neupims.config.hw_cpu import EFFICIENCY_KEYS
from neupims.devices import cpu_calibrate, cpu_detect, cpu_probe
from neupims.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]

TINY = cpu_calibrate.Sizes(
    gemm=((16, 16, 16), (48, 32, 64)),
    gemv=((64, 64), (256, 128)),
    dram_bytes=(2**20, 2**21),
    gemm_probe_n=32,
    stream_repeats=2,
    cache_repeats=2,
    min_time=0.0,
    max_repeats=3,
    fit_iters=60,
)


class FakeClock:
    """Advances ``dt`` seconds per reading: every timed interval is exactly ``dt``."""

    def __init__(self, dt: float = 1e-3):
        self.t = itertools.count()
        self.dt = dt

    def __call__(self) -> float:
        return next(self.t) * self.dt


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "mine.yaml"
    cal = cpu_calibrate.calibrate(out=out, sizes=TINY, clock=FakeClock(), cpu_clock=FakeClock())
    return cal, out


def test_calibration_writes_a_labelled_cpu_yaml(calibration):
    cal, out = calibration
    assert cal.path == out and out.exists()
    cfg = load_hw(out)  # an ordinary CPU config: --hw F.yaml works
    assert cfg == cal.config and cfg.kind == "cpu"
    assert set(cfg.efficiency) == set(EFFICIENCY_KEYS)  # every constant written explicitly
    text = out.read_text()
    for line in text.splitlines():
        if not line.startswith("#") and not line.rstrip().endswith(":"):
            assert re.search(r" # (detected|measured|fitted|assumed)", line), line
    labels = cpu_detect.read_labels(out)
    date = cal.date
    assert labels["dram_bandwidth_gbps"].startswith(f"measured by neupims calibrate on {date}")
    assert labels["dram_bandwidth_per_core_gbps"].startswith("measured by neupims calibrate")
    assert labels["l2.bandwidth_gbps_per_core"].startswith("measured")
    assert labels["l1d.bandwidth_gbps_per_core"].startswith("assumed: ")
    assert labels["efficiency.gemm_fp32"].startswith(f"fitted by neupims calibrate on {date}")
    assert labels["efficiency.gemm_other"].startswith("assumed: documented default")
    assert labels["cores"].startswith("detected")
    assert labels["run_threads"].startswith("detected: threadpoolctl")


def test_calibration_measures_with_the_given_clock(calibration):
    """With a clock that makes every interval 1 ms, each figure is bytes or FLOPs per ms."""
    cal, _ = calibration
    cfg = cal.config
    # one GEMM of n^3: 2 n^3 FLOPs in 1 ms
    assert cal.gemm_gflops["fp32 1t"] == pytest.approx(2 * 32**3 / 1e-3 / 1e9)
    # the beyond-LLC read moves the whole working set (2 arrays) once per ms
    assert cfg.dram_bandwidth_per_core_gbps == pytest.approx(cal.bandwidth["dram_1t"], rel=1e-3)
    assert cfg.dram_bandwidth_gbps >= cfg.dram_bandwidth_per_core_gbps
    assert cfg.eff("bw_dram") > 0 and cfg.eff("bw_l1") == EFFICIENCY_KEYS["bw_l1"][1]
    assert {(r.op.name, r.threads) for r in cal.rows} >= {("gemm", 1), ("gemv", 1)}
    assert all(r.t_median_s == pytest.approx(1e-3) for r in cal.rows)


def test_yaml_round_trips_and_refuses_to_write_what_it_cannot_read(tmp_path, calibration):
    cal, _ = calibration
    labels = {"name": "detected: test", "efficiency.call_us": "fitted: test"}
    path = cpu_calibrate.write_cpu_yaml(tmp_path / "x.yaml", cal.config, labels, ["header"])
    assert parse_hw(yaml.safe_load(path.read_text()), "x") == cal.config
    back = cpu_detect.read_labels(path)
    assert back["name"] == "detected: test" and back["efficiency.call_us"] == "fitted: test"
    assert back["cores"] == cpu_calibrate.DEFAULT_LABEL
    assert cpu_calibrate._scalar(1e-05) == "1.0e-05"
    assert yaml.safe_load(cpu_calibrate._scalar(1e-05)) == 1e-05


def test_hw_cpu_uses_the_cached_calibration_of_this_machine(tmp_path, monkeypatch, calibration):
    cal, out = calibration
    monkeypatch.setenv("NEUPIMS_CACHE_DIR", str(tmp_path))
    path = cpu_detect.cache_path()
    assert path.parent == tmp_path and path.name.startswith("cpu-")
    assert not path.is_relative_to(ROOT)  # never the source tree
    path.write_text(out.read_text())
    cpu_detect.this_cpu.cache_clear()
    try:
        assert load_hw("cpu") == cal.config
        text = cpu_detect.describe_detection()
        assert f"calibrated: {path}" in text.splitlines()[0]
        assert "measured by neupims calibrate" in text and "fitted by neupims" in text
    finally:
        cpu_detect.this_cpu.cache_clear()


def test_cache_folder_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NEUPIMS_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cpu_detect.cache_dir() == tmp_path / "xdg" / "neupims"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cpu_detect.cache_dir() == tmp_path / "home" / ".cache" / "neupims"


def test_machine_key_changes_with_the_blas_thread_count():
    det = cpu_detect.detect()
    one = cpu_detect.Detection(det.config.model_copy(update={"run_threads": 1}), det.sources)
    many = cpu_detect.Detection(det.config.model_copy(update={"run_threads": 64}), det.sources)
    assert cpu_detect.machine_key(one) != cpu_detect.machine_key(many)
    assert cpu_detect.machine_key(one).startswith(
        cpu_detect.signature(det.config.name, det.config.cores)
    )


def test_uncalibrated_hw_cpu_is_a_labelled_quick_probe():
    """Tests run with an empty cache (conftest): --hw cpu is detection plus the quick probe."""
    det = cpu_detect.this_cpu()
    assert det.origin == f"probed: {cpu_detect.QUICK_LABEL}"
    src = dict(det.sources)
    for key in ("dram_bandwidth_gbps", "dram_bandwidth_per_core_gbps",
                "l2.bandwidth_gbps_per_core", "l3.bandwidth_gbps_per_core"):  # fmt: skip
        assert src[key].startswith("probed: quick probe, not calibrated; run neupims calibrate")
    assert src["fma_units"].startswith("assumed") and src["cores"].startswith("detected")
    assert det.config.eff("bw_dram") == 1.0  # the probed value is the achieved bandwidth
    text = cpu_detect.describe_detection()
    assert "quick probe, not calibrated; run neupims calibrate --hw cpu" in text.splitlines()[0]


def test_quick_probe_with_a_fake_clock_is_deterministic(monkeypatch):
    monkeypatch.setattr(cpu_detect, "QUICK_DRAM_BYTES", (2**20, 2**21))
    det = cpu_detect.detect()
    a = cpu_detect.quick_probe(det, clock=FakeClock()).config
    b = cpu_detect.quick_probe(det, clock=FakeClock()).config
    assert a == b and a.dram_bandwidth_per_core_gbps > 0


def test_stream_probe_counts_the_bytes_of_each_kernel():
    for kernel, arrays in (("read", 2), ("copy", 2), ("add", 3)):
        for threads in (1, 2):
            pr = cpu_probe.stream_bandwidth(kernel, 3 * 2**16, threads, 2, FakeClock(1e-3))
            assert pr.nbytes == arrays * (3 * 2**16 // (8 * arrays)) * 8
            assert pr.gbps == pytest.approx(pr.nbytes / 1e-3 / 1e9)


def test_other_load_and_quiet_wait_do_not_block_past_their_timeout():
    frac = cpu_probe.wait_until_quiet(threshold=-1.0, window_s=0.01, timeout_s=0.0)
    assert frac != frac or 0.0 <= frac <= 1.0  # NaN where /proc/stat is missing


def test_cli_calibrate_cpu_writes_where_asked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cpu_calibrate, "DEFAULT_SIZES", TINY)
    out = tmp_path / "c.yaml"
    assert main(["calibrate", "--hw", "cpu", "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    assert load_hw(out).kind == "cpu"
    assert not list(tmp_path.glob(".c.yaml.*"))  # atomic: no temporary left behind
    # the GPU form still needs its measurements
    assert main(["calibrate", "--hw", "h100_sxm"]) == 2
    assert "--measured" in capsys.readouterr().err
    assert main(["calibrate", "--hw", "cpu", "--measured", "x.csv"]) == 2


def test_config_layer_does_not_import_devices():
    code = (
        "import sys\n"
        "import neupims.config\n"
        "from neupims.config import load_hw\n"
        "assert not [m for m in sys.modules if m.startswith('neupims.devices')]\n"
        "try:\n"
        "    load_hw('cpu')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ}, check=True)  # fmt: skip
    assert res.stdout.startswith("ConfigError") and "import neupims.devices" in res.stdout


def test_an_unreadable_calibration_is_an_error_naming_the_file(tmp_path):
    bad = tmp_path / "cpu-x.yaml"
    bad.write_text("kind: cpu\nname: x\ncores: two\n")
    with pytest.raises(ConfigError, match=r"cpu-x\.yaml: cores"):
        cpu_detect.load_calibrated(bad)
