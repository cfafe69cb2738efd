"""Measure this machine's memory bandwidths and BLAS throughput with NumPy (``--hw cpu``).

The probes are STREAM-like (McCalpin, "Memory bandwidth and machine balance in current
high performance computers", IEEE TCCA newsletter 1995): a kernel streams arrays of a
chosen size and the best of several repeats is kept (a shared machine only ever adds
time). Bytes are counted as STREAM does: what the kernel reads and writes, without the
extra read a write-allocate cache adds.

* ``read``: ``numpy.dot`` of two fp64 halves of one buffer, a read-only stream done by the
  BLAS, the access pattern of a GEMV. This is the bandwidth the CPU model uses.
* ``copy`` (c = a) and ``add`` (c = a + b; NumPy has no fused triad), for reference.

Several threads: the buffer is split into one chunk per thread and each chunk is streamed
by a Python thread (NumPy and the BLAS release the GIL in these loops) with the BLAS held at
one thread, so the probe does not depend on which calls a BLAS threads.

Every probe takes a ``clock`` (seconds, monotonic) so tests can drive it with a fake one.
Units: bytes, seconds, GB/s = 1e9 B/s, GFLOP/s = 1e9 FLOP/s.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import numpy as np
import threadpoolctl

Clock = Callable[[], float]


# --------------------------------------------------------------------------- threads
class BlasThreads:
    """Set the thread count of the BLAS that NumPy loaded: through threadpoolctl when it
    sees that library, else OpenBLAS's own ``openblas_set_num_threads`` through ctypes
    (a build threadpoolctl does not recognise); :attr:`available` is False when neither can."""

    _SYMBOLS = (
        "scipy_openblas_set_num_threads64_",
        "scipy_openblas_set_num_threads",
        "openblas_set_num_threads64_",
        "openblas_set_num_threads",
    )

    def __init__(self) -> None:
        self._setter: Callable[[int], None] | None = None
        self.how = "none"
        ctl = threadpoolctl.ThreadpoolController()  # NumPy (imported above) loaded the BLAS
        if ctl.select(user_api="blas").info():
            self._setter = lambda n: ctl.limit(limits=n, user_api="blas")  # noqa: E731
            self.how = "threadpoolctl"
            return
        maps = Path("/proc/self/maps").read_text() if Path("/proc/self/maps").exists() else ""
        for lib in sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", maps))):
            handle = ctypes.CDLL(lib)
            for sym in self._SYMBOLS:
                if hasattr(handle, sym):
                    fn = getattr(handle, sym)
                    self._setter = lambda n, fn=fn: fn(int(n))  # noqa: E731
                    self.how = f"ctypes {sym}"
                    return

    @property
    def available(self) -> bool:
        return self._setter is not None

    def set(self, n: int) -> None:
        if self._setter is None:
            raise RuntimeError(
                "cannot set the BLAS thread count (neither threadpoolctl nor OpenBLAS)"
            )
        self._setter(n)


#: Elements per chunk below which a probe would time NumPy's call path, not memory.
MIN_ELEMS = 1024


@dataclass(frozen=True)
class BandwidthProbe:
    """One bandwidth measurement: ``kernel`` over ``nbytes`` of working set (all arrays) on
    ``threads`` threads; ``gbps`` counts the bytes the kernel reads and writes per pass."""

    kernel: str
    nbytes: int
    threads: int
    gbps: float
    repeats: int
    seconds: float  # best pass


@dataclass(frozen=True)
class GemmProbe:
    """Throughput of an n x n x n GEMM of ``dtype`` on ``threads`` BLAS threads."""

    dtype: str
    n: int
    threads: int
    gflops: float
    repeats: int
    seconds: float


def best_time(fn: Callable[[], object], repeats: int, clock: Clock = perf_counter) -> float:
    """Minimum wall time (s) of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = clock()
        fn()
        best = min(best, clock() - t0)
    return max(best, 1e-12)


def _split(n: int, parts: int) -> list[slice]:
    return [slice(i * n // parts, (i + 1) * n // parts) for i in range(parts)]


class _Runner:
    """Runs one callable per chunk, on the calling thread or on a pool of ``threads``."""

    def __init__(self, threads: int):
        self.threads = threads
        self.pool = ThreadPoolExecutor(threads) if threads > 1 else None

    def __call__(self, fns: Sequence[Callable[[], object]]) -> None:
        if self.pool is None:
            for f in fns:
                f()
        else:
            list(self.pool.map(lambda f: f(), fns))

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()


def stream_bandwidth(
    kernel: str,
    nbytes: int,
    threads: int = 1,
    repeats: int = 5,
    clock: Clock = perf_counter,
    blas=None,
) -> BandwidthProbe:
    """Best-of-``repeats`` bandwidth of ``kernel`` (read, copy, add) over ``nbytes`` of fp64
    arrays on ``threads`` threads. ``blas`` (a :class:`BlasThreads`) is set to one thread,
    so each Python thread runs a single-thread BLAS call (OpenBLAS threads a long ``dot``
    itself otherwise); the caller restores its thread count."""
    arrays = {"read": 2, "copy": 2, "add": 3}[kernel]
    n = max(MIN_ELEMS * threads, int(nbytes) // (8 * arrays))
    buf = np.empty(arrays * n)
    buf.fill(0.5)  # touch every page before timing
    a, b = buf[:n], buf[n : 2 * n]
    c = buf[2 * n :] if arrays == 3 else b
    parts = _split(n, threads)
    if kernel == "read":
        fns = [lambda s=s: np.dot(a[s], b[s]) for s in parts]
    elif kernel == "copy":
        fns = [lambda s=s: np.copyto(b[s], a[s]) for s in parts]
    else:
        fns = [lambda s=s: np.add(a[s], b[s], out=c[s]) for s in parts]
    runner = _Runner(threads)
    if blas is not None and blas.available:
        blas.set(1)
    try:
        t = best_time(lambda: runner(fns), repeats, clock)
    finally:
        runner.close()
    moved = arrays * n * 8
    return BandwidthProbe(kernel, moved, threads, moved / t / 1e9, repeats, t)


def call_overhead_s(repeats: int = 50, clock: Clock = perf_counter) -> float:
    """Seconds of one tiny ``numpy.dot`` call: subtracted from cache-sized read probes."""
    x = np.ones(64)
    return best_time(lambda: np.dot(x, x), repeats, clock)


def cache_read_gbps(
    nbytes: int, repeats: int = 20, clock: Clock = perf_counter, calls: int = 8, blas=None
) -> BandwidthProbe:
    """One core's read bandwidth from a working set of ``nbytes`` (sized to sit in one cache
    level): ``calls`` back-to-back dots per timed pass, NumPy's call overhead subtracted."""
    if blas is not None and blas.available:
        blas.set(1)
    n = max(MIN_ELEMS, int(nbytes) // 16)
    buf = np.full(2 * n, 0.5)
    a, b = buf[:n], buf[n:]

    def passes() -> None:
        for _ in range(calls):
            np.dot(a, b)

    t = best_time(passes, repeats, clock)
    over = call_overhead_s(clock=clock)
    t_data = max(t - calls * over, t * 0.5)  # never credit more than half to the overhead
    moved = 2 * n * 8 * calls
    return BandwidthProbe("read", 2 * n * 8, 1, moved / t_data / 1e9, repeats, t / calls)


def gemm_throughput(
    dtype: str, n: int, threads: int, blas=None, repeats: int = 3, clock: Clock = perf_counter
) -> GemmProbe:
    """Best-of-``repeats`` GFLOP/s of ``numpy.matmul`` on n x n matrices of ``dtype`` with
    the BLAS set to ``threads`` threads (when ``blas`` can set it)."""
    dt = {"fp32": np.float32, "fp64": np.float64}[dtype]
    a = np.full((n, n), 0.5, dtype=dt)
    b = np.full((n, n), 0.25, dtype=dt)
    c = np.empty((n, n), dtype=dt)
    if blas is not None and blas.available:
        blas.set(threads)
    t = best_time(lambda: np.matmul(a, b, out=c), repeats, clock)
    return GemmProbe(dtype, n, threads, 2.0 * n**3 / t / 1e9, repeats, t)


# --------------------------------------------------------------------------- contention
def _cpu_jiffies() -> tuple[float, float] | None:
    """(busy, total) seconds of all CPUs since boot, from /proc/stat (None elsewhere)."""
    try:
        fields = open("/proc/stat").readline().split()[1:]
    except OSError:
        return None
    vals = [float(x) for x in fields]
    idle = vals[3] + (vals[4] if len(vals) > 4 else 0.0)  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    return (sum(vals) - idle) / hz, sum(vals) / hz


class OtherLoad:
    """Fraction of the machine's CPUs that *other* processes used since :meth:`start`:
    (busy CPU time of all CPUs - this process's CPU time) / (wall time x CPUs). A shared
    machine's timings are only as good as this is low; calibration records it."""

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._j0 = _cpu_jiffies()
        t = os.times()
        self._own0 = t.user + t.system

    def fraction(self) -> float:
        """Others' share of all CPUs (0..1) since start; NaN where /proc/stat is missing."""
        j1 = _cpu_jiffies()
        if j1 is None or self._j0 is None:
            return math.nan
        t = os.times()
        own = t.user + t.system - self._own0
        busy, total = j1[0] - self._j0[0], j1[1] - self._j0[1]
        if total <= 0:
            return math.nan
        return min(1.0, max(0.0, (busy - own) / total))


def wait_until_quiet(
    threshold: float = 0.1, window_s: float = 2.0, timeout_s: float = 0.0, sleep=None
) -> float:
    """Block until other processes use less than ``threshold`` of the CPUs over a
    ``window_s`` window, or ``timeout_s`` has passed; return the last fraction seen."""
    sleep = sleep or time.sleep
    deadline = time.monotonic() + timeout_s
    while True:
        probe = OtherLoad()
        sleep(window_s)
        frac = probe.fraction()
        if not frac >= threshold or time.monotonic() >= deadline:  # NaN: cannot tell, go on
            return frac
