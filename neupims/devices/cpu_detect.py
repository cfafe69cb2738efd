"""This machine's CPU as a :class:`CpuConfig`: ``--hw cpu`` (``load_hw("cpu")``).

What Linux tells us is *detected*: vendor, model, family, online cores and threads per core
(``/proc/cpuinfo``, ``/sys/devices/system/cpu``), SIMD width and ISA extensions (cpuinfo
flags), cache sizes and sharing (``/sys/devices/system/cpu/cpu0/cache``), the maximum or
nominal clock (cpufreq, else cpuinfo ``cpu MHz``), the BLAS NumPy uses and how many threads
it runs (threadpoolctl). What it cannot tell us (FMA pipes, cache and DRAM bandwidths, DRAM
latency) is *assumed* from :data:`MICROARCH`, a table with the source of each row.

``load_hw("cpu")`` (registered here with :func:`neupims.config.hardware.register_hw_name`)
returns, in this order:

1. the calibrated YAML of this machine, ``cpu-<key>.yaml`` in :func:`cache_dir`, written by
   ``neupims calibrate --hw cpu`` (bandwidths *measured*, efficiency constants *fitted*);
2. else detection plus a quick bandwidth probe (about a second) whose values are labelled
   ``probed: quick probe, not calibrated; run neupims calibrate --hw cpu``.

Nothing is written at load time. ``describe_detection()`` says which value came from where.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from time import perf_counter

import numpy as np
import threadpoolctl

from neupims.config.hardware import parse_hw, register_hw_name
from neupims.config.hw_cpu import CpuConfig
from neupims.config.loader import load_yaml
from neupims.devices import cpu_probe
from neupims.devices.cpu_probe import BlasThreads
from neupims.errors import ConfigError

SYS_CPU = Path("/sys/devices/system/cpu")


@dataclass(frozen=True)
class Microarch:
    """Per-core facts Linux does not expose, for one family of cores."""

    name: str
    vendor: str  # substring of the cpuinfo vendor id / implementer
    families: tuple[int, ...]  # cpuinfo "cpu family" values (x86) or () for any
    needs_flag: str  # a cpuinfo flag the row requires ("" for none)
    fma_units: int  # FMA pipes per core
    l1_bytes_per_cycle: float  # L1 load bandwidth per core
    l2_bytes_per_cycle: float  # L2 -> L1 fill bandwidth per core
    l3_bytes_per_cycle: float  # L3 -> L2 fill bandwidth per core
    dram_gbps: float  # socket DRAM bandwidth of the server part
    dram_latency_ns: float
    source: str


#: First matching row wins; the last row is the generic fallback.
MICROARCH: tuple[Microarch, ...] = (
    Microarch(
        "AMD Zen 3/4",
        "AMD",
        (25,),
        "avx2",
        2,
        64,
        32,
        32,
        204.8,
        100.0,
        "AMD Software Optimization Guide for Family 19h (two 256-bit FMA pipes, two 256-bit "
        "loads/cycle, 32 B/cycle L2 and L3 fills); EPYC 7003: 8 x DDR4-3200 = 204.8 GB/s; "
        "latency: typical microbenchmark value (assumed)",
    ),
    Microarch(
        "AMD Zen 2",
        "AMD",
        (23,),
        "avx2",
        2,
        64,
        32,
        32,
        204.8,
        100.0,
        "AMD Software Optimization Guide for Family 17h; EPYC 7002: 8 x DDR4-3200",
    ),
    Microarch(
        "Intel AVX-512 server",
        "Intel",
        (6,),
        "avx512f",
        2,
        128,
        64,
        16,
        307.2,
        110.0,
        "Intel optimisation manual (Skylake-SP .. Sapphire Rapids: two 512-bit FMA ports on "
        "Gold/Platinum, 2 x 64 B loads, 64 B/cycle L2); SPR: 8 x DDR5-4800 = 307.2 GB/s",
    ),
    Microarch(
        "Intel AVX2 client",
        "Intel",
        (6,),
        "avx2",
        2,
        64,
        64,
        32,
        76.8,
        90.0,
        "Intel optimisation manual (Haswell .. Alder Lake P-core: two 256-bit FMA ports); "
        "2 x DDR5-4800 = 76.8 GB/s (assumed dual channel)",
    ),
    Microarch(
        "Arm Cortex-A76 class",
        "0x41",
        (),
        "",
        2,
        32,
        32,
        16,
        17.1,
        110.0,
        "Arm Cortex-A76 software optimisation guide (two 128-bit FP/ASIMD pipes); "
        "LPDDR4X-4267 x 32 bit = 17.1 GB/s (Raspberry Pi 5)",
    ),
    Microarch(
        "generic",
        "",
        (),
        "",
        2,
        64,
        32,
        16,
        51.2,
        100.0,
        "generic assumption: two FMA pipes, dual-channel DDR4-3200 (51.2 GB/s)",
    ),
)


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cpuinfo() -> dict[str, str]:
    """Fields of the first processor block of /proc/cpuinfo."""
    text = _read(Path("/proc/cpuinfo")) or ""
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, val = line.partition(":")
        out.setdefault(key.strip(), val.strip())
    return out


def _meminfo_gib() -> float | None:
    """MemTotal of /proc/meminfo (kB, i.e. KiB) in GiB; None where there is none."""
    for line in (_read(Path("/proc/meminfo")) or "").splitlines():
        key, _, val = line.partition(":")
        if key.strip() == "MemTotal":
            kib = val.split()[0] if val.split() else ""
            return int(kib) / 2**20 if kib.isdigit() and int(kib) > 0 else None
    return None


def _size(text: str) -> int:
    m = re.fullmatch(r"(\d+)\s*([KMG]?)", text.strip().upper())
    if not m:
        raise ValueError(f"cache size {text!r}")
    return int(m.group(1)) * {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[m.group(2)]


def _cpu_list_len(text: str) -> int:
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi) - int(lo) + 1 if hi else 1
    return n


def _caches() -> dict[str, tuple[int, bool]]:
    """level name -> (bytes, shared by more than one CPU), from sysfs."""
    out = {}
    base = SYS_CPU / "cpu0" / "cache"
    for idx in sorted(base.glob("index*")) if base.exists() else []:
        level, typ, size = (_read(idx / f) for f in ("level", "type", "size"))
        if not (level and typ and size) or typ == "Instruction":
            continue
        shared = _read(idx / "shared_cpu_list") or "0"
        name = {"1": "l1d", "2": "l2", "3": "l3"}.get(level)
        if name:
            out[name] = (_size(size), _cpu_list_len(shared) > 1)
    return out


def blas_info() -> str:
    """Name and version of the BLAS NumPy uses (threadpoolctl when it sees the library,
    else NumPy's build configuration)."""
    for lib in threadpoolctl.threadpool_info():
        if lib.get("user_api") == "blas":
            return f"{lib.get('internal_api')} {lib.get('version')}"
    try:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # numpy < 1.25 has no dict mode
        return "unknown"


def numpy_threads() -> tuple[int, str]:
    """Threads NumPy's BLAS runs a large call with, and how that was found: threadpoolctl
    (what the loaded library reports), else the BLAS environment variables, else one per
    online CPU (what OpenBLAS and MKL default to)."""
    try:
        for lib in threadpoolctl.threadpool_info():  # NumPy (imported above) loaded the BLAS
            if lib.get("user_api") == "blas":
                return int(lib["num_threads"]), (
                    f"detected: threadpoolctl ({lib.get('internal_api')} "
                    f"{lib.get('threading_layer', '')}, {lib.get('architecture', '')} kernels)"
                )
    except (KeyError, TypeError, ValueError):
        pass
    for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS", "OMP_NUM_THREADS"):
        val = os.environ.get(var, "").split(",")[0].strip()
        if val.isdigit() and int(val) > 0:
            return int(val), f"detected: ${var}"
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    how = "assumed: one per usable CPU (threadpoolctl sees no BLAS, no BLAS thread env var)"
    return max(1, n or 1), how


def signature(model_name: str, cores: int) -> str:
    """Readable key of a CPU: its lowercase model name and core count (``amd-epyc-2c``)."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    return f"{slug}-{cores}c"


@dataclass(frozen=True)
class Detection:
    config: CpuConfig
    #: config key -> "detected: how" / "assumed: why" / "probed: ..." / "measured: ..." /
    #: "fitted: ..."
    sources: tuple[tuple[str, str], ...]
    #: where the whole config came from (detection, quick probe, or the calibrated file)
    origin: str = "detected"


@lru_cache(maxsize=1)
def detect() -> Detection:
    """Detect this machine (Linux and NumPy facts, the rest assumed from :data:`MICROARCH`);
    no timing, no file read besides /proc and /sys. Efficiency constants: the defaults."""
    info = _cpuinfo()
    src: dict[str, str] = {"kind": "detected: a CPU (schema neupims/config/hw_cpu.py)"}
    vendor = info.get("vendor_id") or info.get("CPU implementer") or platform.machine()
    model_name = info.get("model name") or info.get("Model") or platform.processor() or "cpu"
    family = int(info.get("cpu family", "0") or 0)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    online = _read(SYS_CPU / "online")
    cpus = _cpu_list_len(online) if online else (os.cpu_count() or 1)
    src["name"] = "detected: /proc/cpuinfo model name"
    siblings = int(info.get("siblings", cpus) or cpus)
    cores_per = int(info.get("cpu cores", siblings) or siblings)
    tpc = max(1, siblings // max(1, cores_per))
    cores = max(1, cpus // tpc)
    src["cores"] = src["threads"] = "detected: /sys/devices/system/cpu/online, cpuinfo siblings"

    if "avx512f" in flags:
        simd = 512
    elif "avx2" in flags or "avx" in flags:
        simd = 256
    else:
        simd = 128  # SSE2 / NEON
    src["simd_bits"] = "detected: cpuinfo flags"
    isa = sorted(
        {
            "avx2",
            "avx512f",
            "avx512_vnni",
            "avx512_bf16",
            "avx_vnni",
            "amx_tile",
            "amx_bf16",
            "amx_int8",
            "fma",
            "asimd",
            "asimddp",
            "sve",
            "i8mm",
        }
        & flags
    )
    src["isa"] = "detected: cpuinfo flags"

    arch = next(
        a
        for a in MICROARCH
        if (not a.vendor or a.vendor.lower() in vendor.lower())
        and (not a.families or family in a.families)
        and (not a.needs_flag or a.needs_flag in flags)
    )
    max_khz = _read(SYS_CPU / "cpu0" / "cpufreq" / "cpuinfo_max_freq")
    if max_khz:
        ghz = int(max_khz) / 1e6
        src["frequency_ghz"] = "detected: cpufreq cpuinfo_max_freq"
    elif info.get("cpu MHz"):
        ghz = float(info["cpu MHz"]) / 1e3
        src["frequency_ghz"] = "detected: cpuinfo 'cpu MHz' (nominal; turbo is in the fit)"
    else:
        ghz = 2.0
        src["frequency_ghz"] = "assumed: 2.0 GHz (no cpufreq, no cpuinfo MHz)"

    caches = _caches()
    sizes = {}
    for name, default in (("l1d", 32768), ("l2", 524288), ("l3", 8 * 2**20)):
        if name in caches:
            sizes[name] = caches[name]
            src[name + ".size_bytes"] = "detected: sysfs cache"
            src[name + ".shared"] = "detected: sysfs cache shared_cpu_list"
        else:
            sizes[name] = (default, name == "l3")
            src[name + ".size_bytes"] = f"assumed: {default} B (no sysfs cache entry)"
            src[name + ".shared"] = "assumed: only the last level is shared"
    per_cycle = {
        "l1d": arch.l1_bytes_per_cycle,
        "l2": arch.l2_bytes_per_cycle,
        "l3": arch.l3_bytes_per_cycle,
    }
    for name, bpc in per_cycle.items():
        src[name + ".bandwidth_gbps_per_core"] = (
            f"assumed: {bpc:g} B/cycle x clock, MICROARCH row {arch.name!r}"
        )
    src["fma_units"] = f"assumed: MICROARCH row {arch.name!r}"
    src["dram_bandwidth_gbps"] = f"assumed: socket DRAM of MICROARCH row {arch.name!r}"
    src["dram_latency_ns"] = f"assumed: MICROARCH row {arch.name!r}"
    src["microarch"] = f"assumed: {arch.name}: {arch.source}"
    # dtypes whose units differ from the FMA pipes (per core per cycle, 2 ops per MAC):
    # VNNI vpdpbusd does 4 int8 MACs per 32-bit lane, AVX512-BF16 vdpbf16ps 2 per lane
    # (Intel SDM); AMX does 1024 int8 or 512 bf16 MACs per cycle (Intel AMX overview)
    fpc: dict[str, float] = {}
    lanes32 = simd / 32
    if "avx512_vnni" in flags or "avx_vnni" in flags:
        fpc["int8"] = lanes32 * 4 * 2 * arch.fma_units
    if "avx512_bf16" in flags:
        fpc["bf16"] = lanes32 * 2 * 2 * arch.fma_units
    if "amx_int8" in flags:
        fpc["int8"] = 2048.0
    if "amx_bf16" in flags:
        fpc["bf16"] = 1024.0
    if fpc:
        src["flops_per_cycle"] = "detected: ISA flags (VNNI / AVX512-BF16 / AMX), Intel rates"
    vector_regs = 32 if simd == 512 or "asimd" in flags else 16
    src["vector_registers"] = "detected: 32 with AVX-512 or AArch64, else 16"
    run_threads, how = numpy_threads()
    src["run_threads"] = how

    data = {
        "kind": "cpu",
        "name": model_name,
        "cores": cores,
        "threads": cores * tpc,
        "frequency_ghz": ghz,
        "simd_bits": simd,
        "fma_units": arch.fma_units,
        "isa": isa,
        "vector_registers": vector_regs,
        "flops_per_cycle": fpc,
        "dram_bandwidth_gbps": arch.dram_gbps,
        "dram_latency_ns": arch.dram_latency_ns,
        "run_threads": run_threads,
    }
    ram = _meminfo_gib()
    if ram is not None:
        data["dram_capacity_gb"] = ram
        src["dram_capacity_gb"] = "detected: MemTotal of /proc/meminfo"
    else:
        src["dram_capacity_gb"] = "unknown: no /proc/meminfo (replay's fits column is empty)"
    for name, (size, shared) in sizes.items():
        data[name] = {
            "size_bytes": size,
            "bandwidth_gbps_per_core": per_cycle[name] * ghz,
            "shared": shared,
        }
    cfg = CpuConfig(**data)
    src["blas"] = f"detected: {blas_info()}"
    src["efficiency"] = "assumed: documented defaults (EFFICIENCY_KEYS in neupims/config/hw_cpu.py)"
    return Detection(cfg, tuple(src.items()))


# --------------------------------------------------------------------------- cache file
def machine_key(det: Detection | None = None) -> str:
    """File-name key of this machine's calibration: :func:`signature` plus a short hash of
    what a calibration depends on (CPU model, cores, ISA, cache sizes, BLAS and its thread
    count, NumPy version), so a new BLAS or ``OPENBLAS_NUM_THREADS=1`` gets its own file."""
    det = det or detect()
    c = det.config
    facts = [c.name, c.cores, c.threads, c.simd_bits, c.isa, c.l1d.size_bytes,
             c.l2.size_bytes, c.l3.size_bytes, blas_info(), np.__version__, c.run_threads]  # fmt: skip
    digest = hashlib.sha256(json.dumps(facts).encode()).hexdigest()[:8]
    return f"{signature(c.name, c.cores)}-{digest}"


def cache_dir() -> Path:
    """The user folder for calibrations: ``$NEUPIMS_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/neupims``, else ``~/.cache/neupims``. Never inside the package."""
    env = os.environ.get("NEUPIMS_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "neupims"


def cache_path(det: Detection | None = None) -> Path:
    """Where ``neupims calibrate --hw cpu`` writes, and ``--hw cpu`` looks for, this machine."""
    return cache_dir() / f"cpu-{machine_key(det)}.yaml"


_LABEL_LINE = re.compile(r"^(\s*)([A-Za-z0-9_]+):(.*?)\s+# (.*)$")


def read_labels(path: Path) -> dict[str, str]:
    """The per-key provenance comments of a YAML written by :func:`write_cpu_yaml`
    (``key: value  # label``; nested keys as ``l2.bandwidth_gbps_per_core``)."""
    out: dict[str, str] = {}
    parents: list[tuple[int, str]] = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key = line.strip().split(":", 1)[0]
        while parents and parents[-1][0] >= indent:
            parents.pop()
        dotted = ".".join([p for _, p in parents] + [key])
        m = _LABEL_LINE.match(line)
        if m:
            out[dotted] = m.group(4).strip()
        if line.rstrip().endswith(":") or (m and not m.group(3).strip()):
            parents.append((indent, key))
    return out


def load_calibrated(path: Path) -> Detection:
    """A calibrated YAML as a Detection whose sources are the file's own labels."""
    cfg = parse_hw(load_yaml(path), str(path))
    if cfg.kind != "cpu":
        raise ConfigError(f"{path}: kind: expected 'cpu' in a CPU calibration, got {cfg.kind!r}")
    labels = read_labels(path)
    sources = tuple((k, v) for k, v in labels.items())
    return Detection(cfg, sources, origin=f"calibrated: {path}")


# --------------------------------------------------------------------------- probing
#: The quick probe's DRAM working set: twice the LLC, within these bounds (bytes). The upper
#: bound keeps the probe near a second where first-touch page faults are slow (VMs).
QUICK_DRAM_BYTES = (64 * 2**20, 128 * 2**20)
QUICK_LABEL = "quick probe, not calibrated; run neupims calibrate --hw cpu"


def probe_sizes(cfg: CpuConfig, dram_bounds: tuple[int, int]) -> dict[str, int]:
    """Working sets (bytes) that sit in L2 (half of it), in L3 (four L2s per core, at most a
    quarter of L3) and beyond (twice L3 within ``dram_bounds``)."""
    l2, l3 = cfg.l2.size_bytes, cfg.l3.size_bytes
    return {
        "l2": l2 // 2,
        "l3": int(min(max(4 * l2 * cfg.cores, 2 * l2), max(l3 // 4, 2 * l2))),
        "dram": int(min(max(2 * l3, dram_bounds[0]), dram_bounds[1])),
    }


def apply_bandwidths(
    det: Detection, bw: dict[str, float], label: str, sizes: dict[str, int]
) -> Detection:
    """``det`` with the probed bandwidths (GB/s): ``l2``, ``l3`` per core, ``dram_1t`` and
    ``dram_all`` (``run_threads`` threads). A measured bandwidth is the achieved one, so its
    ``bw_*`` efficiency becomes 1.0 (the defaults are fractions of nominal table values)."""
    cfg = det.config
    src = dict(det.sources)
    upd: dict = {}
    eff = dict(cfg.efficiency)
    p = cfg.nthreads
    mib = {k: v / 2**20 for k, v in sizes.items()}
    bw = {k: float(f"{v:.4g}") for k, v in bw.items()}  # 4 digits: more would be noise
    for lvl in ("l2", "l3"):
        if lvl in bw:
            upd[lvl] = getattr(cfg, lvl).model_copy(update={"bandwidth_gbps_per_core": bw[lvl]})
            src[f"{lvl}.bandwidth_gbps_per_core"] = (
                f"{label} (1-thread read, {mib[lvl]:.3g} MiB working set)"
            )
            eff[f"bw_{lvl}"] = 1.0
    if "dram_1t" in bw:
        upd["dram_bandwidth_per_core_gbps"] = bw["dram_1t"]
        src["dram_bandwidth_per_core_gbps"] = f"{label} (1-thread read, {mib['dram']:.4g} MiB)"
        all_core = max(bw.get("dram_all", bw["dram_1t"]), bw["dram_1t"])
        upd["dram_bandwidth_gbps"] = all_core
        src["dram_bandwidth_gbps"] = (
            f"{label} ({p}-thread read, {mib['dram']:.4g} MiB; at least the 1-thread value)"
        )
        eff["bw_dram"] = 1.0
        src["mlp_lines"] = "assumed: schema default, unused (per-core DRAM bandwidth measured)"
    upd["efficiency"] = eff
    src["efficiency"] = (
        f"{label}: bw_* = 1.0 for measured levels (the value is the achieved bandwidth); "
        "others: documented defaults"
    )
    return Detection(cfg.model_copy(update=upd), tuple(src.items()), det.origin)


def quick_probe(det: Detection | None = None, clock=None) -> Detection:
    """Detection plus a quick bandwidth probe (about a second): L2 and L3 read bandwidth of
    one core, and DRAM read bandwidth on one and on ``run_threads`` threads over a working
    set of :data:`QUICK_DRAM_BYTES` (which a large LLC may partly hold: then it is high)."""
    det = det or detect()
    clock = clock or perf_counter
    cfg = det.config
    sizes = probe_sizes(cfg, QUICK_DRAM_BYTES)
    ctl = BlasThreads()
    try:
        bw = {
            "l2": cpu_probe.cache_read_gbps(sizes["l2"], 10, clock, blas=ctl).gbps,
            "l3": cpu_probe.cache_read_gbps(sizes["l3"], 3, clock, blas=ctl).gbps,
            "dram_1t": cpu_probe.stream_bandwidth("read", sizes["dram"], 1, 3, clock, ctl).gbps,
        }
        if cfg.nthreads > 1:
            bw["dram_all"] = cpu_probe.stream_bandwidth(
                "read", sizes["dram"], cfg.nthreads, 3, clock, ctl
            ).gbps
    finally:
        if ctl.available:
            ctl.set(cfg.nthreads)
    out = apply_bandwidths(det, bw, f"probed: {QUICK_LABEL}", sizes)
    return Detection(out.config, out.sources, origin=f"probed: {QUICK_LABEL}")


@lru_cache(maxsize=1)
def this_cpu() -> Detection:
    """What ``--hw cpu`` means here: the calibrated file if there is one for this machine's
    key, else detection plus the quick probe. Computed once per process."""
    det = detect()
    path = cache_path(det)
    if path.exists():
        return load_calibrated(path)
    return quick_probe(det)


def detect_config() -> CpuConfig:
    """This machine as a CpuConfig (``load_hw("cpu")``)."""
    return this_cpu().config


register_hw_name("cpu", detect_config, "this machine's CPU (calibrated file, else quick probe)")


def describe_detection(det: Detection | None = None) -> str:
    """One line per config value: the value and whether it was detected, measured, fitted,
    probed or assumed; the first line says where the config as a whole came from."""
    det = det or this_cpu()
    cfg = det.config.model_dump()
    lines = [
        f"CPU {det.config.name!r} (key {machine_key()}): {det.origin}",
    ]
    for key, how in det.sources:
        head, _, sub = key.partition(".")
        val = cfg.get(head, "")
        if sub and isinstance(val, dict):
            val = val.get(sub)
        if key == "efficiency":
            val = ", ".join(f"{k}={v:.3g}" for k, v in sorted(det.config.efficiency.items()))
        if key in ("blas", "microarch"):
            val = ""
        if isinstance(val, float):
            val = f"{val:.4g}"
        lines.append(f"  {key:32s} {str(val):>14s}  {how}")
    return "\n".join(lines)
