"""Detect this machine's CPU as a :class:`CpuConfig` (``--hw cpu``).

What Linux tells us is *detected*: vendor, model, family, online cores and threads per core
(``/proc/cpuinfo``, ``/sys/devices/system/cpu``), SIMD width and ISA extensions (cpuinfo
flags), cache sizes and sharing (``/sys/devices/system/cpu/cpu0/cache``), the maximum or
nominal clock (cpufreq, else cpuinfo ``cpu MHz``) and the BLAS NumPy is built with.
What it cannot tell us (FMA pipes, cache and DRAM bandwidths, DRAM latency) is *assumed*
from :data:`MICROARCH`, a table with the source of each row. The model's efficiency
constants are *fitted* (``neupims.devices.cpu_fit``) when ``validation/cpu/`` holds
measurements of a CPU with the same signature, else the documented defaults are used.

``describe_detection()`` says which value came from where.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from neupims.config.hw_cpu import CpuConfig

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
    """Name and version of the BLAS NumPy uses (threadpoolctl if present, else numpy)."""
    try:
        import threadpoolctl

        for lib in threadpoolctl.threadpool_info():
            if lib.get("user_api") == "blas":
                return f"{lib.get('internal_api')} {lib.get('version')}"
    except ImportError:
        pass
    try:
        import numpy as np

        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{cfg.get('name')} {cfg.get('version')}"
    except Exception:  # numpy < 1.25 has no dict mode
        return "unknown"


#: Where measured fit data lives: ``measured_<signature>.csv`` (see cpu_fit).
VALIDATION_DIR = Path(__file__).resolve().parents[2] / "validation" / "cpu"


def signature(model_name: str, cores: int) -> str:
    """File-name key of a CPU: its lowercase model name and core count."""
    slug = re.sub(r"[^a-z0-9]+", "-", model_name.lower()).strip("-")
    return f"{slug}-{cores}c"


def fitted_efficiency(cfg: CpuConfig, csv_path: Path) -> dict[str, float]:
    """Constants fitted to ``csv_path``. The fit is cached in ``fitted_<signature>.json``
    beside it, keyed by the SHA-256 of the CSV and of the model's source (``cpu.py``,
    ``cpu_fit.py``), and redone whenever either changes."""
    import hashlib
    import json

    from neupims.atomic import atomic_write_text
    from neupims.devices import cpu as cpu_model
    from neupims.devices import cpu_fit

    h = hashlib.sha256(csv_path.read_bytes())
    for mod in (cpu_model, cpu_fit):  # a model change invalidates the cached fit
        h.update(Path(mod.__file__).read_bytes())
    digest = h.hexdigest()
    cache = csv_path.with_name(csv_path.name.replace("measured_", "fitted_")).with_suffix(".json")
    try:
        data = json.loads(cache.read_text())
        if data.get("sha256") == digest:
            return {k: float(v) for k, v in data["efficiency"].items()}
    except (OSError, ValueError, KeyError, AttributeError):
        pass
    rows = cpu_fit.fit_rows(cpu_fit.read_measurements(csv_path))
    res = cpu_fit.fit(cfg, rows)
    payload = {
        "sha256": digest,
        "source": csv_path.name,
        "rows": res.n,
        "mean_abs_log_err": res.mean_abs_log_err,
        "efficiency": res.efficiency,
    }
    try:
        atomic_write_text(cache, json.dumps(payload, indent=1) + "\n")
    except OSError:
        pass  # read-only checkout: fit again next time
    return res.efficiency


@dataclass(frozen=True)
class Detection:
    config: CpuConfig
    #: config key -> "detected: how" / "assumed: why" / "fitted: from what"
    sources: tuple[tuple[str, str], ...]


@lru_cache(maxsize=1)
def detect(fit: bool = True) -> Detection:
    """Detect this machine; ``fit`` applies fitted constants when fit data exists."""
    info = _cpuinfo()
    src: dict[str, str] = {}
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
        else:
            sizes[name] = (default, name == "l3")
            src[name + ".size_bytes"] = f"assumed: {default} B"
    per_cycle = {
        "l1d": arch.l1_bytes_per_cycle,
        "l2": arch.l2_bytes_per_cycle,
        "l3": arch.l3_bytes_per_cycle,
    }
    for name in per_cycle:
        src[name + ".bandwidth_gbps_per_core"] = f"assumed: MICROARCH row {arch.name!r}"
    for key in ("fma_units", "dram_bandwidth_gbps", "dram_latency_ns"):
        src[key] = f"assumed: MICROARCH row {arch.name!r}"
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
        src["flops_per_cycle"] = "detected ISA flags (VNNI / AVX512-BF16 / AMX), Intel rates"
    vector_regs = 32 if simd == 512 or "asimd" in flags else 16
    src["vector_registers"] = "detected: 32 with AVX-512 or AArch64, else 16"

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
    sig = signature(model_name, cores)
    fit_file = VALIDATION_DIR / f"measured_{sig}.csv"
    if fit and fit_file.exists():
        eff = fitted_efficiency(cfg, fit_file)
        cfg = cfg.model_copy(update={"efficiency": eff})
        src["efficiency"] = f"fitted: {fit_file.name} (neupims.devices.cpu_fit.fit)"
    else:
        src["efficiency"] = f"assumed: documented defaults (no {fit_file.name})"
    return Detection(cfg, tuple(src.items()))


def detect_config() -> CpuConfig:
    """This machine as a CpuConfig (``load_hw("cpu")``)."""
    return detect().config


def describe_detection() -> str:
    """One line per config value: the value and whether it was detected, assumed or fitted."""
    det = detect()
    cfg = det.config.model_dump()
    lines = [
        f"CPU detected as {det.config.name!r} (signature "
        f"{signature(det.config.name, det.config.cores)})"
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
        lines.append(f"  {key:32s} {str(val):>14s}  {how}")
    return "\n".join(lines)
