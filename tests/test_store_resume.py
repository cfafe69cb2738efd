"""Result store: SIGKILL mid-sweep then resume, failing points, CSV/store consistency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from neupims.experiments import load_experiment, run
from neupims.experiments.store import ResultStore

METRIC_COLS = ["point", "x", "y", "status", "value", "measured", "flops", "latency_s", "key"]


def slow_experiment(tmp_path, n_x=6, sleep_s=0.08):
    xs = ", ".join(f"{1.0 + i}" for i in range(n_x))
    p = tmp_path / "slow.yaml"
    p.write_text(
        "name: slow\nkind: synthetic\n"
        f"base: {{sleep_s: {sleep_s}}}\n"
        f"sweep: {{grid: {{x: [{xs}], y: [0, 1]}}}}\n"
        "metrics: [value, measured, flops, latency_s]\n"
    )
    return p


def stored(folder) -> int:
    return len(list((folder / "store").glob("*.json")))


def test_sigkill_mid_sweep_then_resume_gives_every_point_exactly_once(tmp_path):
    exp_path = slow_experiment(tmp_path)
    n = len(load_experiment(exp_path).points)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "neupims", "run", str(exp_path), "-o", str(out)]
    cmd += ["--jobs", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while stored(out) < 3 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = stored(out)
    assert proc.returncode == -signal.SIGKILL
    assert 3 <= before < n, "the sweep must be interrupted part-way"
    # every stored file is a whole record (atomic writes), and results.csv is a subset
    keys = {json.loads(f.read_text())["key"] for f in (out / "store").glob("*.json")}
    assert len(keys) == before
    if (out / "results.csv").exists():
        assert set(pd.read_csv(out / "results.csv")["key"]) <= keys

    resumed = run(exp_path, out, jobs=1, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["cached"] == before and manifest["ran"] == n - before
    assert stored(out) == n
    assert sorted(resumed["point"]) == list(range(n)) and resumed["key"].is_unique

    clean = run(exp_path, tmp_path / "clean", jobs=1, progress=False)
    pd.testing.assert_frame_equal(resumed[METRIC_COLS], clean[METRIC_COLS])
    on_disk = pd.read_csv(out / "results.csv")
    assert list(on_disk["key"]) == list(clean["key"])


def test_failing_point_is_recorded_others_finish_and_rerun_retries_it(tmp_path):
    exp = {
        "name": "f",
        "kind": "synthetic",
        "sweep": {"grid": {"x": [1.0, 2.0, 3.0], "fail": [False, True]}},
    }
    df = run(exp, tmp_path, jobs=1, progress=False)
    assert list(df["status"]) == ["ok", "error"] * 3
    bad = df[df["status"] == "error"]
    assert all(bad["error"].str.startswith("RuntimeError: synthetic point failed on purpose"))
    assert df.loc[df["status"] == "ok", "value"].tolist() == [1.0, 2.0, 3.0]
    rec = json.loads((tmp_path / "store" / f"{bad.iloc[0]['key']}.json").read_text())
    assert "Traceback" in rec["traceback"] and rec["result"] is None
    import yaml

    from neupims.cli import main

    (tmp_path / "f.yaml").write_text(yaml.safe_dump(exp))
    argv = ["run", str(tmp_path / "f.yaml"), "-o", str(tmp_path), "--jobs", "1", "--no-progress"]
    assert main(argv) == 1  # some points failed
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["cached"], manifest["ran"], manifest["failed_total"]) == (3, 3, 3)


def test_a_point_that_kills_its_worker_is_found_and_the_others_finish(tmp_path):
    exp = {
        "name": "c",
        "kind": "synthetic",
        "sweep": {"zip": {"x": [1.0, 2.0, 3.0, 4.0], "crash": [False, True, False, False]}},
    }
    df = run(exp, tmp_path, jobs=2, chunk=1, progress=False)
    assert list(df["status"]) == ["ok", "error", "ok", "ok"]
    assert df["error"][1].startswith("worker process died while running this point")
    assert df["value"].tolist()[::2] == [1.0, 3.0] and df["value"][3] == 4.0


def test_store_ignores_foreign_and_partial_files(tmp_path):
    store = ResultStore(tmp_path)
    store.put({"key": "abc", "status": "ok", "result": {"v": 1}})
    (tmp_path / "def.json").write_text('{"key": "def", "stat')  # torn write by another tool
    (tmp_path / "ghi.json").write_text('{"key": "not-ghi"}')  # renamed file
    assert list(ResultStore(tmp_path).load()) == ["abc"]


def test_changed_config_is_a_new_point_and_metrics_filter_columns(tmp_path):
    a = {"name": "m", "kind": "synthetic", "sweep": {"grid": {"x": [1.0, 2.0]}}}
    run(a, tmp_path, jobs=1, progress=False)
    b = {**a, "sweep": {"grid": {"x": [2.0, 5.0]}}, "metrics": ["value"]}
    df = run(b, tmp_path, jobs=1, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert (manifest["cached"], manifest["ran"]) == (1, 1)
    assert list(df.columns) == ["point", "x", "status", "value", "error", "elapsed_s", "key"]
    assert df["value"].tolist() == [2.0, 5.0]


@pytest.mark.parametrize("backend", ["pool", "dask"])
def test_parallel_backends_match_serial(tmp_path, backend):
    exp = {"name": "p", "kind": "synthetic", "sweep": {"grid": {"x": [1.0, 2.0], "y": [0, 7]}}}
    serial = run(exp, tmp_path / "s", jobs=1, progress=False)
    if backend == "pool":
        par = run(exp, tmp_path / "p", jobs=2, progress=False)
    else:
        from distributed import Client, LocalCluster

        with (
            LocalCluster(
                n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            par = run(exp, tmp_path / "p", client=client, progress=False)
    cols = ["point", "x", "y", "status", "value", "measured", "key"]
    pd.testing.assert_frame_equal(serial[cols], par[cols])
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    assert manifest["backend"] == ("pool:2" if backend == "pool" else "dask")
