"""Time NumPy kernels on this CPU and fit the CPU model's efficiency constants to them.

* :func:`measure` times one op with NumPy (GEMM, GEMV, element-wise, im2col conv2d) at a
  given BLAS thread count and returns the median and minimum of its repeats.
* :func:`fit` finds the :data:`neupims.config.hw_cpu.EFFICIENCY_KEYS` values that minimise
  the mean absolute log error between the model and the measurements (robust to the
  outliers a shared machine produces) (Nelder-Mead in log
  space, written here so there is no SciPy dependency), starting from the defaults.
* :func:`errors` gives the absolute percentage error of every measurement.

Measurements are CSV rows: the op's trace columns (``op``, ``m``, ``n``, ...), ``threads``,
``t_median_s``, ``t_min_s``, ``repeats``, ``t_cpu_s``. ``neupims calibrate --hw cpu``
(``cpu_calibrate``) times a suite and fits on it; ``validation/cpu/measured_*.csv`` hold
committed measurements of past machines, used as validation data by the tests.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from neupims.atomic import atomic_open
from neupims.config.hw_cpu import EFFICIENCY_KEYS, CpuConfig
from neupims.devices.cpu import CpuModel
from neupims.devices.cpu_probe import BlasThreads
from neupims.errors import TraceError
from neupims.ops import Conv2d, Elementwise, Gemm, Gemv, Op, op_columns, op_from_row

#: Constants :func:`fit` adjusts (the others keep their defaults).
FIT_KEYS = (
    "gemm_fp32", "gemm_fp64", "gemm_k0", "call_us", "thread_us",
    "bw_l2", "bw_l3", "bw_dram", "cache_share",
)  # fmt: skip
#: Weight of the pull towards the defaults, per squared e-fold of change (see :func:`fit`).
FIT_PRIOR = 1e-3
#: No constant moves more than this many e-folds (x e^4 = 55) from its default.
FIT_SPAN = 4.0
#: Upper bounds of constants that are fractions.
FIT_MAX = {"cache_share": 1.0}

NP_DTYPES = {"fp32": np.float32, "fp64": np.float64}


# --------------------------------------------------------------------------- timing
def _median_min(
    fn: Callable[[], object],
    min_time: float,
    max_repeats: int,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> tuple[float, float, float, int]:
    """Median and minimum wall time and median CPU time (``cpu_clock``) of repeated calls
    (at least 3, more until ``min_time`` seconds have passed, at most ``max_repeats``)."""
    fn()  # warm caches, fault in pages, wake BLAS threads
    times: list[float] = []
    cpu: list[float] = []
    start = clock()
    while len(times) < 3 or (clock() - start < min_time and len(times) < max_repeats):
        c0 = cpu_clock()
        t0 = clock()
        fn()
        times.append(clock() - t0)
        cpu.append(cpu_clock() - c0)
    return float(np.median(times)), float(min(times)), float(np.median(cpu)), len(times)


def _conv_im2col(x: np.ndarray, w: np.ndarray, op: Conv2d) -> np.ndarray:
    """NumPy im2col convolution, one image at a time as PyTorch's CPU path."""
    wmat = w.reshape(op.kout, -1)
    out = np.empty((op.batch, op.kout, op.ho * op.wo), dtype=x.dtype)
    for i in range(op.batch):
        win = sliding_window_view(x[i], (op.r, op.s), axis=(1, 2))
        win = win[:, :: op.stride, :: op.stride][:, : op.ho, : op.wo]  # c, ho, wo, r, s
        cols = np.ascontiguousarray(win.transpose(0, 3, 4, 1, 2)).reshape(-1, op.ho * op.wo)
        np.matmul(wmat, cols, out=out[i])
    return out


def kernel(op: Op) -> Callable[[], object]:
    """A zero-argument NumPy callable that runs ``op`` (operands allocated here)."""
    if isinstance(op, Gemm | Conv2d | Elementwise) and op.dtype not in NP_DTYPES:
        raise ValueError(f"NumPy timing supports {sorted(NP_DTYPES)}, got {op.dtype}")
    dt = NP_DTYPES[op.dtype]
    if isinstance(op, Gemm):
        if isinstance(op, Gemv) or op.m == 1:
            a = np.full((op.n, op.k), 0.5, dtype=dt)
            x = np.full(op.k, 0.25, dtype=dt)
            y = np.empty(op.n, dtype=dt)
            return lambda: np.matmul(a, x, out=y)
        a = np.full((op.m, op.k), 0.5, dtype=dt)
        b = np.full((op.k, op.n), 0.25, dtype=dt)
        c = np.empty((op.m, op.n), dtype=dt)
        return lambda: np.matmul(a, b, out=c)
    if isinstance(op, Elementwise):
        a = np.full(op.elems, 0.5, dtype=dt)
        b = np.full(op.elems, 0.25, dtype=dt)
        c = np.empty(op.elems, dtype=dt)
        fns = {
            "add": lambda: np.add(a, b, out=c),
            "mul": lambda: np.multiply(a, b, out=c),
            "relu": lambda: np.maximum(a, 0, out=c),
            "copy": lambda: np.copyto(c, a),
        }
        if op.kind not in fns:
            raise ValueError(f"NumPy timing supports element-wise {sorted(fns)}, got {op.kind}")
        return fns[op.kind]
    if isinstance(op, Conv2d):
        if op.pad:
            raise ValueError("NumPy conv timing supports pad 0 only")
        x = np.full((op.batch, op.c, op.h, op.w), 0.5, dtype=dt)
        w = np.full((op.kout, op.c, op.r, op.s), 0.25, dtype=dt)
        return lambda: _conv_im2col(x, w, op)
    raise ValueError(f"no NumPy kernel for {op.name}")


@dataclass(frozen=True)
class Measurement:
    """Timings of one op: wall-clock median and minimum, and the median CPU time of the
    calling thread (``time.thread_time``; the process's before 2026-12, as in the committed
    AMD data). On one BLAS thread the work runs on the calling thread and its CPU time
    excludes the time it waits while other processes hold the core, so it is the robust
    estimate of the uncontended time on a shared machine (the thread's own CPU time also
    leaves out BLAS workers still spinning after an earlier multi-thread call)."""

    op: Op
    threads: int
    t_median_s: float
    t_min_s: float
    repeats: int
    t_cpu_s: float = math.nan

    @property
    def t_best_s(self) -> float:
        """The statistic the model is fitted and judged on: CPU time on one thread, the wall
        minimum on several (other processes only ever add time, and the process CPU time of
        several threads counts the BLAS workers' spinning)."""
        if self.threads == 1 and math.isfinite(self.t_cpu_s) and self.t_cpu_s > 0:
            return self.t_cpu_s
        return self.t_min_s

    def row(self) -> dict:
        return {
            "op": self.op.name,
            **self.op.fields(),
            "threads": self.threads,
            "t_median_s": f"{self.t_median_s:.6e}",
            "t_min_s": f"{self.t_min_s:.6e}",
            "repeats": self.repeats,
            "t_cpu_s": f"{self.t_cpu_s:.6e}",
        }


def measure(
    op: Op,
    threads: int,
    ctl: BlasThreads | None,
    min_time: float = 0.05,
    max_repeats: int = 15,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.thread_time,
) -> Measurement:
    """Time ``op`` with NumPy on ``threads`` BLAS threads (median and min of repeats;
    ``clock`` and ``cpu_clock`` are wall and process-CPU seconds, replaceable in tests)."""
    if ctl is not None and ctl.available:
        ctl.set(threads)
    fn = kernel(op)
    med, mn, cpu, reps = _median_min(fn, min_time, max_repeats, clock, cpu_clock)
    return Measurement(op, threads, med, mn, reps, cpu)


COLUMNS_TAIL = ("threads", "t_median_s", "t_min_s", "repeats", "t_cpu_s")


def write_measurements(path: Path, rows: Sequence[Measurement]) -> None:
    cols = ["op", *op_columns(), *COLUMNS_TAIL]
    with atomic_open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r.row())


def read_measurements(path: str | Path) -> list[Measurement]:
    """Read a measurement CSV; a bad row raises TraceError naming the file and line."""
    out = []
    with open(path, newline="") as fh:
        for line, row in enumerate(csv.DictReader(fh), start=2):
            try:
                op = op_from_row({k: v for k, v in row.items() if k not in COLUMNS_TAIL})
                out.append(
                    Measurement(
                        op,
                        int(row["threads"]),
                        float(row["t_median_s"]),
                        float(row["t_min_s"]),
                        int(row["repeats"]),
                        float(row.get("t_cpu_s") or "nan"),
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise TraceError(f"{path}: line {line}: {exc}") from None
    return out


def measure_requests(src: str | Path, dst: str | Path, min_time: float) -> None:
    """Time the ops a measurement file ``src`` requests (its timings are ignored), as they
    come, with the BLAS threads the environment fixed, and write the measurements to ``dst``
    (the subprocess side of ``neupims.crosscheck.cpu.run_suite`` without thread control)."""
    reqs = read_measurements(src)
    write_measurements(Path(dst), [measure(r.op, r.threads, None, min_time) for r in reqs])


# --------------------------------------------------------------------------- model side
def op_class(op: Op, threads: int) -> str:
    """Error class of a measurement, e.g. ``gemm fp32 1t``."""
    name = "gemv" if isinstance(op, Gemv) or (isinstance(op, Gemm) and op.m == 1) else op.name
    return f"{name} {getattr(op, 'dtype', '')} {threads}t"


def predict(hw: CpuConfig, op: Op, threads: int) -> float:
    """Model latency of ``op`` on ``hw`` run with ``threads`` threads, timed in a loop (warm
    caches, as :func:`measure` does); not memoised."""
    hw_t = hw.model_copy(update={"run_threads": threads, "warm": True})
    return CpuModel(hw_t)._estimate(op).latency_s


def errors(hw: CpuConfig, rows: Sequence[Measurement], stat: str = "t_best_s") -> np.ndarray:
    """Absolute percentage error (%) of the model against each measurement."""
    meas = np.array([getattr(r, stat) for r in rows])
    pred = np.array([predict(hw, r.op, r.threads) for r in rows])
    return 100.0 * np.abs(pred - meas) / meas


def nelder_mead(
    f: Callable[[np.ndarray], float],
    x0: np.ndarray,
    step: float = 0.3,
    iters: int = 1500,
    tol: float = 1e-7,
) -> np.ndarray:
    """Minimise ``f`` from ``x0`` (standard Nelder-Mead: reflect 1, expand 2, contract 1/2,
    shrink 1/2)."""
    n = len(x0)
    pts = [x0.astype(float)] + [x0 + step * np.eye(n)[i] for i in range(n)]
    vals = [f(p) for p in pts]
    for _ in range(iters):
        order = np.argsort(vals)
        pts = [pts[i] for i in order]
        vals = [vals[i] for i in order]
        if abs(vals[-1] - vals[0]) < tol:
            break
        centroid = np.mean(pts[:-1], axis=0)
        xr = centroid + (centroid - pts[-1])
        fr = f(xr)
        if fr < vals[0]:
            xe = centroid + 2 * (centroid - pts[-1])
            fe = f(xe)
            pts[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
        elif fr < vals[-2]:
            pts[-1], vals[-1] = xr, fr
        else:
            xc = centroid + 0.5 * (pts[-1] - centroid)
            fc = f(xc)
            if fc < vals[-1]:
                pts[-1], vals[-1] = xc, fc
            else:
                pts = [pts[0] + 0.5 * (p - pts[0]) for p in pts]
                vals = [f(p) for p in pts]
    return pts[int(np.argmin(vals))]


@dataclass(frozen=True)
class FitResult:
    efficiency: dict[str, float]
    mean_abs_log_err: float  # mean |log(predicted / measured)| at the optimum
    n: int


def _relevant_keys(rows: Sequence[Measurement]) -> list[str]:
    dtypes = {getattr(r.op, "dtype", "") for r in rows if isinstance(r.op, Gemm)}
    keys = [k for k in FIT_KEYS if not (k.startswith("gemm_fp") and k[5:] not in dtypes)]
    if all(r.threads == 1 for r in rows):
        keys.remove("thread_us")
    return keys


def fit_rows(rows: Sequence[Measurement], multi_thread: bool = False) -> list[Measurement]:
    """The measurements the constants are fitted on: the single-thread ones, and the
    multi-thread ones too when ``multi_thread`` (the machine was quiet while they were
    timed). Multi-thread wall times on a busy VM with fewer free cores than threads measure
    the scheduler (a BLAS thread waits a whole time slice for a core), not the hardware;
    then they are reported, not fitted (docs/cpu.md)."""
    return [r for r in rows if multi_thread or r.threads == 1]


def fit(
    hw: CpuConfig, rows: Sequence[Measurement], stat: str = "t_best_s", iters: int = 1500
) -> FitResult:
    """Fit the efficiency constants of ``hw`` to ``rows`` (minimum mean absolute log error)."""
    if not rows:
        raise ValueError("no measurements to fit")
    keys = _relevant_keys(rows)
    base = {k: hw.eff(k) for k in EFFICIENCY_KEYS}
    meas = np.log([getattr(r, stat) for r in rows])

    def values(x: np.ndarray) -> dict[str, float]:
        out = dict(base)
        for k, v in zip(keys, x, strict=True):
            out[k] = min(math.exp(v), FIT_MAX.get(k, math.inf))
        return out

    x0 = np.log([base[k] for k in keys])

    def abs_log_err(x: np.ndarray) -> float:
        cfg = hw.model_copy(update={"efficiency": values(x)})
        with np.errstate(all="ignore"):
            pred = np.log([predict(cfg, r.op, r.threads) for r in rows])
        err = float(np.mean(np.abs(pred - meas)))
        return err if math.isfinite(err) else 1e9

    def loss(x: np.ndarray) -> float:
        # A weak pull towards the documented defaults (FIT_PRIOR per squared e-fold) keeps
        # constants the data cannot see (e.g. DRAM bandwidth without DRAM-sized rows) put.
        if np.any(np.abs(x - x0) > FIT_SPAN):
            return 1e9
        return abs_log_err(x) + FIT_PRIOR * float(np.mean((x - x0) ** 2))

    x = x0
    for _ in range(2):  # a restart escapes a collapsed simplex
        x = nelder_mead(loss, x, iters=iters)
    if loss(x) > loss(x0):
        x = x0
    eff = {k: round(v, 4) for k, v in values(x).items() if k in keys}
    return FitResult(eff, abs_log_err(x), len(rows))


def mean_abs_log_err(hw: CpuConfig, rows: Sequence[Measurement], stat: str = "t_best_s") -> float:
    """Mean |log(predicted / measured)|, the quantity :func:`fit` minimises."""
    meas = np.array([getattr(r, stat) for r in rows])
    pred = np.array([predict(hw, r.op, r.threads) for r in rows])
    return float(np.mean(np.abs(np.log(pred / meas))))


def mape(hw: CpuConfig, rows: Sequence[Measurement], stat: str = "t_best_s") -> float:
    return float(np.mean(errors(hw, rows, stat)))


def cross_validate(
    hw: CpuConfig, rows: Sequence[Measurement], folds: int = 2, stat: str = "t_best_s"
) -> float:
    """MAPE (%) on held-out rows: fit on all folds but one, test on it, average the folds."""
    errs: list[float] = []
    for i in range(folds):
        train = fit_rows([r for j, r in enumerate(rows) if j % folds != i])
        test = [r for j, r in enumerate(rows) if j % folds == i]
        eff = fit(hw, train, stat).efficiency
        cfg = hw.model_copy(update={"efficiency": {**hw.efficiency, **eff}})
        errs.extend(errors(cfg, test, stat))
    return float(np.mean(errs))
