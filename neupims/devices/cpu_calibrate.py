"""Calibrate the CPU model on this machine: ``neupims calibrate --hw cpu [-o F.yaml]``.

1. *Detect* (``cpu_detect.detect``): model, cores, ISA, caches, BLAS and its thread count.
2. *Measure* (``cpu_probe``): read bandwidth of one core from L2 and from L3, read bandwidth
   beyond the last-level cache on one thread and on NumPy's thread count (STREAM copy and
   add too, for reference), and BLAS GEMM throughput (fp32, fp64; one thread and NumPy's).
3. *Time* a suite of NumPy GEMMs and GEMVs (:data:`GEMM_SHAPES`, :data:`GEMV_SHAPES`; fp32
   and fp64; one thread and NumPy's) and *fit* the model's efficiency constants to it
   (``cpu_fit.fit``, starting from the measured bandwidths): all of it when other
   processes used less than :data:`BUSY_WARNING` of the CPUs meanwhile, else only the
   single-thread timings (multi-thread wall times of a busy machine measure its scheduler).
4. *Write* an ordinary ``kind: cpu`` YAML in which every value carries a comment saying
   whether it was detected, measured, fitted or assumed (and from what), atomically, to
   ``cpu_detect.cache_path()`` (a user folder, never the source tree) or to ``-o``.

Every timing takes a ``clock`` so tests can run the pipeline with a fake one.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

import yaml

from neupims.atomic import atomic_write_text
from neupims.config.hardware import parse_hw
from neupims.config.hw_cpu import EFFICIENCY_KEYS, CpuConfig
from neupims.devices import cpu_fit, cpu_probe
from neupims.devices.cpu_detect import (
    Detection,
    apply_bandwidths,
    cache_path,
    detect,
    machine_key,
    probe_sizes,
)
from neupims.ops import Gemm, Gemv, Op

#: GEMMs timed (m, n, k): call-overhead-bound to compute-bound, square and skinny.
GEMM_SHAPES = ((64, 64, 64), (96, 96, 96), (128, 128, 128), (256, 256, 256),
               (384, 384, 384), (512, 512, 512), (768, 768, 768), (1024, 1024, 1024),
               (2048, 2048, 2048), (32, 512, 512), (512, 128, 256), (256, 1024, 1024),
               (1024, 64, 1024), (16, 4096, 4096), (4096, 4096, 128))  # fmt: skip
#: GEMVs timed (rows, cols): from L1/L2-resident to far beyond any LLC.
GEMV_SHAPES = ((256, 256), (512, 512), (1024, 1024), (2048, 2048), (4096, 1024),
               (4096, 4096), (8192, 8192), (11008, 4096), (16384, 8192))  # fmt: skip
#: Beyond-LLC working set of the bandwidth probe: four times the LLC within these bounds
#: (bytes), and at most a quarter of the available memory.
DRAM_BYTES = (256 * 2**20, 2 * 2**30)
#: Size of the square GEMMs whose throughput is recorded.
GEMM_PROBE_N = 1024
#: Share of the CPUs used by other processes above which the file says to recalibrate.
BUSY_WARNING = 0.25


@dataclass(frozen=True)
class Sizes:
    """What a calibration times (tests shrink it)."""

    gemm: Sequence[tuple[int, int, int]] = GEMM_SHAPES
    gemv: Sequence[tuple[int, int]] = GEMV_SHAPES
    dram_bytes: tuple[int, int] = DRAM_BYTES
    gemm_probe_n: int = GEMM_PROBE_N
    stream_repeats: int = 5
    cache_repeats: int = 20
    min_time: float = 0.05
    max_repeats: int = 15
    fit_iters: int = 1500


#: What ``neupims calibrate --hw cpu`` times.
DEFAULT_SIZES = Sizes()


@dataclass
class Calibration:
    """Result of :func:`calibrate`: the config, each value's label, what was measured."""

    detection: Detection
    bandwidth: dict[str, float]  # GB/s: l2, l3, dram_1t, dram_all, copy_1t, add_1t, ...
    gemm_gflops: dict[str, float]  # "fp32 1t" -> GFLOP/s
    rows: list[cpu_fit.Measurement]
    fit: cpu_fit.FitResult
    date: str
    header: list[str] = field(default_factory=list)
    path: Path | None = None

    @property
    def config(self) -> CpuConfig:
        return self.detection.config


def suite(sizes: Sizes, threads: Sequence[int]) -> list[tuple[Op, int]]:
    """(op, threads) pairs timed by the calibration."""
    out: list[tuple[Op, int]] = []
    for dtype in ("fp32", "fp64"):
        for p in threads:
            out += [(Gemm(m, n, k, dtype=dtype), p) for m, n, k in sizes.gemm]
            out += [(Gemv(1, r, c, dtype=dtype), p) for r, c in sizes.gemv]
    return out


def _available_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * 2**30


def measure_bandwidths(
    cfg: CpuConfig, sizes: Sizes, ctl, clock: Callable[[], float] = perf_counter
) -> tuple[dict[str, float], dict[str, int]]:
    """Bandwidths (GB/s) of this machine; keys ``l2``, ``l3`` (one core), ``dram_1t``,
    ``dram_all`` (read), ``copy_1t``, ``copy_all``, ``add_1t``, ``add_all``; and the
    working sets (bytes) they were measured over."""
    hi = min(sizes.dram_bytes[1], _available_bytes() // 4)
    bounds = (min(sizes.dram_bytes[0], hi), hi)
    ws = probe_sizes(cfg, bounds)
    ws["dram"] = int(min(max(4 * cfg.l3.size_bytes, bounds[0]), bounds[1]))
    bw = {
        "l2": cpu_probe.cache_read_gbps(ws["l2"], sizes.cache_repeats, clock, blas=ctl).gbps,
        "l3": cpu_probe.cache_read_gbps(ws["l3"], sizes.cache_repeats, clock, blas=ctl).gbps,
    }
    p = cfg.nthreads
    for kernel in ("read", "copy", "add"):
        name = "dram" if kernel == "read" else kernel
        for threads, tag in ((1, "1t"), (p, "all")):
            if tag == "all" and p == 1:
                bw[f"{name}_all"] = bw[f"{name}_1t"]
                continue
            bw[f"{name}_{tag}"] = cpu_probe.stream_bandwidth(
                kernel, ws["dram"], threads, sizes.stream_repeats, clock, ctl
            ).gbps
    return bw, ws


def measure_gemm(cfg: CpuConfig, sizes: Sizes, ctl, clock=perf_counter) -> dict[str, float]:
    """GFLOP/s of an n x n x n GEMM per dtype on one thread and on NumPy's thread count."""
    out = {}
    for dtype in ("fp32", "fp64"):
        for p in sorted({1, cfg.nthreads}):
            g = cpu_probe.gemm_throughput(dtype, sizes.gemm_probe_n, p, ctl, 3, clock)
            out[f"{dtype} {p}t"] = g.gflops
    return out


def calibrate(
    out: str | Path | None = None,
    sizes: Sizes | None = None,
    clock: Callable[[], float] = perf_counter,
    cpu_clock: Callable[[], float] = time.thread_time,
    progress: Callable[[str], None] | None = None,
    det: Detection | None = None,
    write: bool = True,
) -> Calibration:
    """Measure this machine, fit the CPU model to it and write the calibrated YAML to
    ``out`` (default: :func:`cpu_detect.cache_path`). Returns what was measured.

    ``sizes`` (default :data:`DEFAULT_SIZES`) says what is timed; ``clock`` (wall seconds)
    and ``cpu_clock`` (the calling thread's CPU seconds) time everything (tests pass small
    sizes and fake clocks). ``write`` False measures and fits without writing a file."""
    say = progress or (lambda _msg: None)
    sizes = sizes or DEFAULT_SIZES
    det = det or detect()
    cfg = det.config
    date = time.strftime("%Y-%m-%d")
    ctl = cpu_probe.BlasThreads()
    others = cpu_probe.OtherLoad()
    try:
        say("measuring bandwidths (L2, L3, beyond the LLC; 1 and all threads) ...")
        bw, ws = measure_bandwidths(cfg, sizes, ctl, clock)
        say("measuring GEMM throughput ...")
        gflops = measure_gemm(cfg, sizes, ctl, clock)
        pairs = suite(sizes, sorted({1, cfg.nthreads}))
        rows = []
        for i, (op, p) in enumerate(pairs):
            say(f"timing {i + 1}/{len(pairs)}: {op.name} {op.m}x{op.n}x{op.k} {op.dtype} {p}t")
            rows.append(
                cpu_fit.measure(op, p, ctl, sizes.min_time, sizes.max_repeats, clock, cpu_clock)
            )
    finally:
        if ctl.available:
            ctl.set(cfg.nthreads)
    busy = others.fraction()
    quiet = not busy > BUSY_WARNING  # NaN (no /proc/stat): cannot tell, trust the timings
    if not quiet:
        say(f"warning: other processes used {busy:.0%} of the CPUs during the measurements: "
            "fitting the single-thread timings only")  # fmt: skip
    train = cpu_fit.fit_rows(rows, multi_thread=quiet)
    label = f"measured by neupims calibrate on {date}"
    probed = apply_bandwidths(det, bw, label, ws)
    say(f"fitting {len(cpu_fit.FIT_KEYS)} efficiency constants to {len(train)} timings ...")
    fit = cpu_fit.fit(probed.config, train, iters=sizes.fit_iters)
    eff = {**probed.config.efficiency, **fit.efficiency}
    final = probed.config.model_copy(update={"efficiency": eff})
    src = dict(probed.sources)
    n1 = sum(r.threads == 1 for r in train)
    nfit = len(train)
    for k in EFFICIENCY_KEYS:
        if k in fit.efficiency:
            src[f"efficiency.{k}"] = (
                f"fitted by neupims calibrate on {date} (cpu_fit.fit: {nfit} GEMM/GEMV timings, "
                f"{n1} on 1 thread; mean |log err| {fit.mean_abs_log_err:.3f})"
            )
        elif k in eff:
            src[f"efficiency.{k}"] = f"{label}: 1.0, the measured bandwidth is the achieved one"
        else:
            src[f"efficiency.{k}"] = (
                f"assumed: documented default {EFFICIENCY_KEYS[k][1]:g} (not fitted)"
            )
    src.pop("efficiency", None)
    final = final.model_copy(
        update={
            "efficiency": {k: final.eff(k) for k in EFFICIENCY_KEYS if f"efficiency.{k}" in src}
        }
    )
    mib = ws["dram"] / 2**20
    header = [
        f"This machine's CPU, calibrated by `neupims calibrate --hw cpu` on {date}.",
        f"Machine key {machine_key(det)}; BLAS: {dict(det.sources).get('blas', '?')}.",
        "Labels: detected = read from Linux or NumPy; measured = timed by neupims calibrate;",
        "fitted = cpu_fit.fit to the timed GEMM/GEMV suite; assumed = from the named source.",
        f"Bandwidths (GB/s, best of {sizes.stream_repeats}, {mib:.4g} MiB): read "
        f"{bw['dram_1t']:.1f} (1 thread) / {bw['dram_all']:.1f} ({cfg.nthreads} threads); "
        f"STREAM copy {bw['copy_1t']:.1f} / {bw['copy_all']:.1f}; "
        f"add {bw['add_1t']:.1f} / {bw['add_all']:.1f}.",
        f"GEMM {sizes.gemm_probe_n}^3 GFLOP/s (best of 3): "
        + ", ".join(f"{k} {v:.1f}" for k, v in gflops.items())
        + ".",
        f"Other processes used {busy:.0%} of the {os.cpu_count()} CPUs while this was measured"
        + (
            ": multi-thread timings are unreliable, recalibrate when the machine is quiet."
            if busy > BUSY_WARNING
            else "."
        ),
    ]
    cal = Calibration(
        Detection(final, tuple(src.items()), origin=f"calibrated on {date}"),
        bw,
        gflops,
        rows,
        fit,
        date,
        header,
    )
    if write:
        cal.path = Path(out) if out is not None else cache_path(det)
        write_cpu_yaml(cal.path, final, dict(src), header)
    return cal


# --------------------------------------------------------------------------- YAML
def _scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        s = repr(v)  # shortest text that reads back as the same float
        if "e" in s and "." not in s.split("e")[0]:
            s = s.replace("e", ".0e", 1)  # YAML 1.1 reads 1e-05 as a string
        return s
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    if isinstance(v, dict) and not v:
        return "{}"
    raise TypeError(f"cannot write {type(v).__name__} as a YAML scalar")


DEFAULT_LABEL = "assumed: schema default (neupims/config/hw_cpu.py)"


def cpu_yaml_text(cfg: CpuConfig, labels: dict[str, str], header: Sequence[str] = ()) -> str:
    """``cfg`` as YAML text, each value followed by ``# label`` (``labels`` by dotted key;
    a key without one is labelled :data:`DEFAULT_LABEL`)."""
    data = cfg.model_dump(mode="json")
    lines = [f"# {h}" for h in header]

    def emit(key: str, value, indent: int, dotted: str, inherited: str | None) -> None:
        pad = " " * indent
        label = labels.get(dotted)
        if isinstance(value, dict) and value:
            head = f"{pad}{key}:"
            lines.append(f"{head:44s} # {label}" if label else head)
            for k, v in value.items():
                emit(k, v, indent + 2, f"{dotted}.{k}", label)
            return
        if value is None:
            return
        text = f"{pad}{key}: {_scalar(value)}"
        lines.append(f"{text:44s} # {label or inherited or DEFAULT_LABEL}")

    for key, value in data.items():
        emit(key, value, 0, key, None)
    return "\n".join(lines) + "\n"


def write_cpu_yaml(
    path: str | Path, cfg: CpuConfig, labels: dict[str, str], header: Sequence[str] = ()
) -> Path:
    """Write :func:`cpu_yaml_text` atomically; check first that it reads back as ``cfg``."""
    text = cpu_yaml_text(cfg, labels, header)
    back = parse_hw(yaml.safe_load(text), str(path))
    if back != cfg:  # a formatting bug must not produce a file that means something else
        raise RuntimeError(f"{path}: the YAML written does not read back as the config")
    atomic_write_text(path, text)
    return Path(path)
