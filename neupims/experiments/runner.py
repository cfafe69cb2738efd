"""Run an experiment's points serially, on a local process pool, or on a Dask cluster.

The parent process owns the result store: workers return records and the parent writes
each one atomically as it arrives, so a point is stored once whatever the backend, and an
interrupted run (Ctrl-C, SIGKILL, a crashing worker) leaves only whole records behind.
Re-running skips points stored with status ``ok`` and retries the failed ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import platform
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from neupims import __version__
from neupims.atomic import atomic_write_text
from neupims.config import ROOT, load_hw, resolve
from neupims.errors import ConfigError, NeupimsError
from neupims.experiments.spec import Experiment, ExperimentSpec, load_experiment
from neupims.experiments.store import ResultStore, results_frame, write_results_csv
from neupims.experiments.worker import STATUS_ERROR, STATUS_OK, ignore_sigint, run_chunk, run_task
from neupims.plots import draw_figures

#: results.csv is rewritten from the store at most this often during a run (seconds), and
#: always at the end, so it stays cheap for sweeps of many fast points.
CSV_REFRESH_S = 1.0
#: the most points sent to a pool process or Dask worker as one task (see chunk_size)
MAX_CHUNK = 16


# ---------------------------------------------------------------------------- backends


def _serial(tasks: list[dict]) -> Iterator[dict]:
    for t in tasks:
        yield run_task(t)


def chunk_size(n_tasks: int, workers: int) -> int:
    """Points per task sent to a worker: about 4 chunks per worker, at most MAX_CHUNK.

    Chunks amortise the per-task cost of the pool or cluster over several cheap points;
    long sweeps of slow points still report progress chunk by chunk.
    """
    return max(1, min(MAX_CHUNK, n_tasks // (4 * max(1, workers))))


def _chunks(tasks: list[dict], size: int) -> list[list[dict]]:
    return [tasks[i : i + size] for i in range(0, len(tasks), size)]


def _new_pool(workers: int) -> ProcessPoolExecutor:
    # spawn: workers import what they need, identical on Linux, macOS and Windows.
    ctx = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=ignore_sigint)


def _pool(tasks: list[dict], jobs: int, chunk: int | None) -> Iterator[dict]:
    """Run chunks on ``jobs`` processes; if a worker process dies, find the point.

    A point that kills its worker (a segfault, ``os._exit``) breaks the whole pool and
    every unfinished chunk with it, without saying which point did it. The unfinished
    points are then run one at a time in a fresh single-process pool, so the one that
    crashes is recorded as failed and the others complete.
    """
    ex = _new_pool(jobs)
    done: set[str] = set()
    try:
        chunks = _chunks(tasks, chunk or chunk_size(len(tasks), jobs))
        futures = [ex.submit(run_chunk, c) for c in chunks]
        broken = False
        for fut in as_completed(futures):
            try:
                records = fut.result()
            except BrokenProcessPool:
                broken = True
                continue
            for rec in records:
                done.add(rec["key"])
                yield rec
        if not broken:
            return
        fresh_needed = True
        for t in tasks:
            if t["key"] in done:
                continue
            if fresh_needed:
                ex.shutdown(wait=False, cancel_futures=True)
                _terminate_workers(ex)
                ex, fresh_needed = _new_pool(1), False
            try:
                yield from ex.submit(run_chunk, [t]).result()
            except BrokenProcessPool as exc:
                yield _crashed(t, f"worker process died while running this point: {exc}")
                fresh_needed = True
    finally:
        ex.shutdown(wait=False, cancel_futures=True)
        _terminate_workers(ex)


def _terminate_workers(ex: ProcessPoolExecutor) -> None:
    """Stop points still running after an interrupt (their results would be discarded)."""
    terminate = getattr(ex, "terminate_workers", None)  # Python >= 3.14
    if terminate is not None:
        terminate()
        return
    for proc in list((getattr(ex, "_processes", None) or {}).values()):
        if proc.is_alive():
            proc.terminate()


def _crashed(task: dict, why: str) -> dict:
    rec = {k: task[k] for k in ("key", "kind", "index", "swept", "config")}
    rec.update(
        version=__version__,
        status=STATUS_ERROR,
        result=None,
        error=why,
        traceback=None,
        elapsed_s=math.nan,
        finished_unix=time.time(),
    )
    return rec


def _dask(tasks: list[dict], client, chunk: int | None) -> Iterator[dict]:
    from distributed import as_completed as dask_completed

    workers = max(1, len(client.scheduler_info().get("workers", {})))
    chunks = _chunks(tasks, chunk or chunk_size(len(tasks), workers))
    run_id = uuid.uuid4().hex[:8]  # fresh keys: a retried point is really re-run
    keys = [f"neupims-{run_id}-{i}" for i in range(len(chunks))]
    futures = client.map(run_chunk, chunks, key=keys, pure=False)
    by_key = dict(zip(keys, chunks, strict=True))
    try:
        # with_results gathers results in batches instead of one request per future
        for fut, out in dask_completed(futures, with_results=True, raise_errors=False):
            if isinstance(out, BaseException):  # a worker died or the cluster lost the task
                for t in by_key[fut.key]:
                    yield _crashed(t, f"dask task failed: {type(out).__name__}: {out}")
            else:
                yield from out
            fut.release()
    finally:
        client.cancel([f for f in futures if not f.done()])


def _local_workers(cluster: str | None) -> int:
    kind, _, n = (cluster or "").partition(":")
    if kind != "local" or not n.isdigit() or int(n) < 1:
        raise ConfigError(f"--cluster {cluster!r}: expected local:N with N >= 1 workers")
    return int(n)


def _dask_client(scheduler: str | None, cluster: str | None):
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:  # pragma: no cover - dask is a dependency
        raise NeupimsError(f"Dask distributed is not installed: {exc}") from None
    if scheduler:
        try:
            return Client(scheduler, timeout="10s"), None
        except OSError as exc:
            raise NeupimsError(f"cannot connect to Dask scheduler {scheduler}: {exc}") from None
    lc = LocalCluster(
        n_workers=_local_workers(cluster),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
    )
    return Client(lc), lc


# ---------------------------------------------------------------------------- manifest


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def _hw_names(node: Any, key: str = "") -> set[str]:
    """String values at keys named ``hw`` or ``*_hw`` anywhere in a point config."""
    out: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            out |= _hw_names(v, str(k))
    elif isinstance(node, list):
        for v in node:
            out |= _hw_names(v, key)
    elif isinstance(node, str) and (key == "hw" or key.endswith("_hw")):
        out.add(node)
    return out


def hardware_hashes(exp: Experiment) -> dict[str, str]:
    """sha256 of every hardware config file the points name (and memories NPUs attach to)."""
    names: set[str] = set()
    for p in exp.points:
        names |= _hw_names(p.config)
    out: dict[str, str] = {}
    todo = sorted(names)
    while todo:
        name = todo.pop()
        if name in out or name == "cpu":
            continue
        try:
            path = resolve(name, "hw_configs")
            out[name] = hashlib.sha256(path.read_bytes()).hexdigest()
            mem = getattr(load_hw(path), "memory", None)
            if isinstance(mem, str):
                todo.append(mem)
        except NeupimsError:
            continue
    return out


def _write_manifest(outdir: Path, exp: Experiment, stats: dict[str, Any]) -> None:
    manifest = {
        "experiment": exp.name,
        "kind": exp.kind.name,
        "source": exp.source,
        "experiment_sha256": exp.file_hash,
        "package_version": __version__,
        "git_commit": _git_commit(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "hardware_sha256": hardware_hashes(exp),
        "points": len(exp.points),
        **stats,
    }
    atomic_write_text(outdir / "manifest.json", json.dumps(manifest, indent=2, default=str))


# ---------------------------------------------------------------------------- run


def default_outdir(exp: Experiment) -> Path:
    return Path("results") / exp.name


def run(
    experiment: str | Path | dict | ExperimentSpec | Experiment,
    outdir: str | Path | None = None,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    cluster: str | None = None,
    client: Any = None,
    progress: bool = True,
    timeline: str | Path | None = None,
    figures: bool = True,
    chunk: int | None = None,
) -> pd.DataFrame:
    """Run every point of ``experiment`` not already stored in ``outdir``; return the results.

    ``jobs``: local worker processes (default: all cores; 1 runs in this process).
    ``scheduler`` (``tcp://HOST:PORT``), ``cluster`` (``local:N``) or an existing Dask
    ``client`` run points on Dask instead. ``chunk``: points per worker task (default:
    :func:`chunk_size`). Writes ``outdir/store/``, ``results.csv``,
    ``manifest.json``, ``experiment.yaml`` and the figures.
    """
    exp = experiment if isinstance(experiment, Experiment) else load_experiment(experiment)
    outdir = Path(outdir) if outdir is not None else default_outdir(exp)
    if cluster is not None:
        _local_workers(cluster)  # a malformed spec is an error before anything is written
    if timeline is not None and exp.kind.timeline is None:
        raise ConfigError(
            f"{exp.source}: kind {exp.kind.name!r} cannot export a timeline (--timeline)"
        )
    outdir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(outdir / "experiment.yaml", exp.text)
    if timeline is not None:
        first = exp.points[0]
        exp.kind.timeline(exp.kind.schema.model_validate(first.config), Path(timeline))

    store = ResultStore(outdir / "store")
    store.load()
    todo = [p for p in exp.points if not store.finished(p.key)]
    tasks = [
        {
            "key": p.key,
            "kind": exp.kind.name,
            # the module that registers the kind: a worker imports it alone, not every kind
            "kind_module": exp.kind.run_point.__module__,
            "index": p.index,
            "swept": p.swept,
            "config": p.config,
        }
        for p in todo
    ]
    metrics = exp.spec.metrics
    stats: dict[str, Any] = {
        "status": "running",
        "started_unix": time.time(),
        "cached": len(exp.points) - len(todo),
        "to_run": len(todo),
    }
    _write_manifest(outdir, exp, stats)

    backend, own_cluster = "serial", None
    if client is None and (scheduler or cluster):
        client, own_cluster = _dask_client(scheduler, cluster)
        backend = "dask"
    jobs = jobs or os.cpu_count() or 1
    if client is not None:
        backend, stream = "dask", _dask(tasks, client, chunk)
    elif jobs > 1 and len(tasks) > 1:
        backend, stream = f"pool:{jobs}", _pool(tasks, min(jobs, len(tasks)), chunk)
    else:
        stream = _serial(tasks)
    stats["backend"] = backend

    t0 = time.perf_counter()
    done = failed = 0
    metrics_checked = metrics is None or bool(exp.kind.metrics)
    last_csv = time.perf_counter()

    def write_csv() -> pd.DataFrame:
        df = results_frame(exp.points, store.records, metrics)
        write_results_csv(df, outdir / "results.csv")
        return df

    bar = _progress(len(exp.points), stats["cached"], exp.name, enabled=progress)
    try:
        for rec in stream:
            store.put(rec)
            done += 1
            failed += rec["status"] != STATUS_OK
            bar.update(1)
            if failed:
                bar.set_postfix(failed=failed, refresh=False)
            if not metrics_checked and rec["status"] == STATUS_OK:
                _check_metrics(exp, rec["result"])
                metrics_checked = True
            if time.perf_counter() - last_csv >= CSV_REFRESH_S:
                write_csv()
                last_csv = time.perf_counter()
        stats["status"] = "complete"
    except BaseException:
        stats["status"] = "interrupted"
        raise
    finally:
        close = getattr(stream, "close", None)
        if close:
            close()
        bar.close()
        if own_cluster is not None:
            client.close()
            own_cluster.close()
        wall = time.perf_counter() - t0
        df = write_csv()
        stats.update(
            ran=done,
            failed_this_run=failed,
            failed_total=int((df["status"] != STATUS_OK).sum()) if len(df) else 0,
            wall_s=wall,
            points_per_s=done / wall if wall > 0 else None,
            finished_unix=time.time(),
        )
        _write_manifest(outdir, exp, stats)
    if figures and exp.spec.figures and len(df) and (df["status"] == STATUS_OK).any():
        draw_figures(
            exp.spec.figures, df, outdir / "figures", source=str(outdir / "experiment.yaml")
        )
    return df


def _check_metrics(exp: Experiment, result: dict[str, Any]) -> None:
    for i, m in enumerate(exp.spec.metrics or []):
        if m not in result:
            raise ConfigError(
                f"{exp.source}: metrics[{i}]: unknown metric {m!r}; kind {exp.kind.name!r} "
                f"returns {sorted(result)}"
            )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kw) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar()
    return tqdm(total=total, initial=initial, desc=desc, unit="pt", file=sys.stderr)
