"""Fit a GPU config's named efficiency constants to measured kernel times.

    samples = load_measurements(["validation/h100/ops.csv", "validation/h100/e2e.csv"])
    fit = calibrate(hw, samples)            # least squares on log(predicted / measured)
    report = error_report(hw_fitted, samples)

Measured files are the CSVs written by ``validation/h100/measure.py`` (or by
``neupims crosscheck``): op files have a ``suite`` column and trace-style op columns plus
``measured_s``; end-to-end files have ``model, phase, batch, seq`` and ``measured_s``.

A deterministic third of the samples (by a CRC32 of each sample's identity) is held out
of every fit; errors are reported on the fitted part, the held-out part and both.
Constants are fitted group by group (GEMM first, since convolutions and the end-to-end
steps reuse it) with a Levenberg-Marquardt solver on the log of each constant, so they
stay positive. NumPy only.
"""

from __future__ import annotations

import csv
import io
import json
import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neupims.atomic import atomic_write_text
from neupims.devices.gpu import DEFAULTS, GpuModel
from neupims.devices.gpu_conv import im2win_window_bytes, window_copy_time
from neupims.errors import ConfigError, NeupimsError, TraceError
from neupims.ops import Op, dtype_bytes, op_from_row
from neupims.textio import read_text
from neupims.workloads import trace

#: constants fitted per group, in fitting order; each group is fitted on its own samples
GROUPS: dict[str, tuple[str, ...]] = {
    "gemm": (
        "tc_eff",
        "simt_eff",
        "tile_alpha",
        "dram_eff",
        "gemm_fixed_us",
        "l2_multicast",
        "streamk_fixup",
    ),
    "attention": ("attn_tc_eff", "attn_fixed_us", "attn_dram_eff", "attn_token_ns"),
    "elementwise": (
        "ew_fixed_us",
        "ew_rowwise_fixed_us",
        "ew_bw_eff",
        "ew_bw_eff_layernorm",
        "ew_bw_eff_softmax",
    ),
    "conv": (
        "conv_fixed_us",
        "conv_pw_fixed_us",
        "conv_pw_unaligned_scale",
        "conv_pw_dram_eff",
        "conv_filter_gelems",
        "conv_layout_us",
        "conv_tc_eff",
        "conv_tf32_scale",
        "conv_simt_eff",
        "conv_simt_rs0",
        "conv_layout_passes",
        "unfold_bw_eff",
        "unfold_fixed_us",
        "unfold_tap_ns",
        "window_bw_eff",
        "gather_gelems",
        "direct_eff",
        "direct_rs0",
        "conv_fma_scale",
        "conv_fma_alpha",
        "fft_bw_eff",
        "fft_cgemm_eff",
        "fft_pointwise_eff",
        "wino_bw_eff",
        "wino_gemm_scale",
    ),
    "quant": ("quant_tc_eff", "quant_fixed_us"),
    "e2e_graph": ("stream_overlap_us", "sustained_slowdown"),
    "e2e_eager": ("host_op_us",),
}

#: measured implementations that do not represent the kernel the model describes; kept in
#: the CSVs, left out of fits and error targets (reason in docs/gpu.md)
EXCLUDED_IMPLS = {
    "_weight_int8pack_mm": "PyTorch's CUDA int8 weight-only kernel is untuned: time grows "
    "linearly with M (about 115 us per row), unlike FineQuant's CUTLASS kernels",
}

HOLDOUT_MOD = 3  # one sample in three is held out
IRLS_ROUNDS = 3  # reweighting rounds after the plain least-squares fit
#: every constant is fitted as log(value) within [1e-3, 1e4] (all are positive)
LOG_BOUNDS = (math.log(1e-3), math.log(1e4))


@dataclass(frozen=True)
class Sample:
    key: str
    group: str  # gemm, attention, elementwise, conv, quant, e2e, excluded
    kind: str  # op | transform | e2e
    measured_s: float
    op: Op | None = None
    #: e2e: the ops of one whole step in order, as ``neupims trace`` writes them
    ops: tuple[Op, ...] = ()
    graph_s: float = math.nan
    mem_extra_bytes: float = math.nan
    label: str = ""
    meta: dict = field(default_factory=dict, compare=False, hash=False)
    #: config fields this sample was measured under (conv_fp32_math, conv_algo_choice)
    hw: tuple[tuple[str, str], ...] = ()

    @property
    def holdout(self) -> bool:
        return zlib.crc32(self.key.encode()) % HOLDOUT_MOD == 0


def _group_of(row: dict[str, str]) -> str:
    if row.get("impl") in EXCLUDED_IMPLS:
        return "excluded"
    suite = row.get("suite", "")
    if suite in ("linear", "bmm"):
        return "gemm"
    if suite.startswith("conv"):
        return "conv"
    return {"attention": "attention", "elementwise": "elementwise", "quant": "quant"}.get(
        suite, suite
    )


#: values of a measured CSV's ``conv_algo_choice`` column (GpuConfig.conv_algo_choice)
CONV_CHOICES = ("heuristic", "benchmark", "exhaustive")


def _conv_settings(row: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Config fields a conv row was measured under: ``conv_fp32_math`` from ``tf32_conv``
    and ``conv_algo_choice`` from its column, or ``benchmark`` for an ``auto`` row timed
    with ``cudnn.benchmark`` (validation/h100/ops.csv)."""
    if row.get("op") != "conv2d":
        return ()
    out = []
    tf32 = (row.get("tf32_conv") or "").strip().lower()
    if tf32 in ("true", "false"):
        out.append(("conv_fp32_math", "tf32" if tf32 == "true" else "fp32"))
    choice = (row.get("conv_algo_choice") or "").strip()
    if choice in CONV_CHOICES:
        out.append(("conv_algo_choice", choice))
    elif row.get("algo") == "auto" and row.get("impl") == "cudnn.benchmark":
        out.append(("conv_algo_choice", "benchmark"))
    return tuple(out)


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    rd = csv.DictReader(io.StringIO(read_text(path, TraceError), newline=""), strict=True)
    try:
        return list(rd.fieldnames or []), list(rd)
    except csv.Error as exc:
        raise TraceError(f"{path}: line {rd.reader.line_num}: malformed CSV: {exc}") from None


def _why(exc: Exception) -> str:
    """What was wrong with a row: a missing column is named; other errors keep their
    message."""
    if isinstance(exc, KeyError):
        return f"missing column {exc.args[0]!r}"
    return str(exc)


def _check_cells(path: Path, line: int, row: dict) -> None:
    if None in row:
        raise TraceError(f"{path}: line {line}: more cells than the header has columns")
    if any(v is None for v in row.values()):
        raise TraceError(f"{path}: line {line}: fewer cells than the header has columns")


def _op_samples(path: Path, rows: list[dict[str, str]]) -> list[Sample]:
    out = []
    for i, row in enumerate(rows, start=2):
        _check_cells(path, i, row)
        try:
            measured = float(row["measured_s"])
            algo = row.get("algo", "")
            if algo == "im2win_transform":
                cells = {**row, "op": "conv2d", "algo": "im2win"}
                kind = "transform"
            else:
                cells, kind = row, "op"
            op = op_from_row({k: v for k, v in cells.items() if k and v is not None})
            mem = float(row.get("mem_extra_bytes") or "nan")
        except (KeyError, ValueError) as exc:
            raise TraceError(f"{path}: line {i}: {_why(exc)}") from None
        if not 0 < measured < math.inf:
            raise TraceError(
                f"{path}: line {i}: measured_s must be a positive number of seconds, got {measured}"
            )
        if kind == "transform":
            if not im2win_window_bytes(op):
                continue  # the window tensor is the input itself: nothing to time
        key = "|".join([row.get("suite", ""), row.get("impl", ""), algo, repr(op)])
        settings = _conv_settings(row)
        if row.get("conv_algo_choice"):  # files that vary TF32 and the choice per row
            key += "|" + "|".join(v for _, v in settings)
        group = "conv" if kind == "transform" else _group_of(row)
        out.append(Sample(key, group, kind, measured, op=op, mem_extra_bytes=mem,
                          label=f"{row.get('suite')}:{row.get('layer')}:{algo or op.name}",
                          meta={"impl": row.get("impl", ""), "dtype": row.get("dtype", ""),
                                "device": row.get("device", "")},
                          hw=settings))  # fmt: skip
    return out


def step_ops(model: str, phase: str, batch: int, seq: int, dtype: str = "fp16") -> tuple[Op, ...]:
    """Ops of one measured step: the whole trace ``neupims trace`` writes for it, in order
    (what ``neupims replay`` costs). A measured decode step attends to ``seq`` keys, the
    trace's decode step over ``seq - 1`` cached tokens does the same."""
    ctx = seq - 1 if phase == "decode" else seq
    return tuple(t.op for t in trace(model, phase, batch, ctx, dtype=dtype))


def _e2e_samples(path: Path, rows: list[dict[str, str]]) -> list[Sample]:
    out = []
    for i, row in enumerate(rows, start=2):
        _check_cells(path, i, row)
        try:
            model, phase = row["model"], row["phase"]
            batch, seq = int(row["batch"]), int(row["seq"])
            measured = float(row["measured_s"])
            graph = float(row.get("graph_measured_s") or "nan")
            if not 0 < measured < math.inf:
                raise ValueError(f"measured_s must be a positive number of seconds, got {measured}")
            ops = step_ops(model, phase, batch, seq, row.get("dtype") or "fp16")
        except (KeyError, ValueError, NeupimsError) as exc:
            raise TraceError(f"{path}: line {i}: {_why(exc)}") from None
        key = f"e2e|{model}|{phase}|{batch}|{seq}"
        label = f"{model} {phase} b{batch} s{seq}"
        # the same step timed two ways: eager (host dispatch included) and replayed from a
        # CUDA graph (GPU time alone); both are predicted from the same trace
        out.append(Sample(key, "e2e_eager", "e2e", measured, ops=ops, graph_s=graph,
                          label=label + " eager",
                          meta={"phase": phase, "device": row.get("device", "")}))  # fmt: skip
        if graph > 0:
            out.append(Sample(key, "e2e_graph", "e2e_graph", graph, ops=ops,
                              label=label + " graph", meta={"phase": phase}))  # fmt: skip
    return out


def load_measurements(paths: Iterable[str | Path]) -> list[Sample]:
    """Read measured CSVs (op files and end-to-end files, told apart by their header)."""
    samples: list[Sample] = []
    for p in paths:
        path = Path(p)
        header, rows = _read_csv(path)
        if "measured_s" not in header:
            raise TraceError(f"{path}: line 1: no 'measured_s' column; is this a measured CSV?")
        if "phase" in header and "model" in header:
            samples += _e2e_samples(path, rows)
        elif "op" in header:
            samples += _op_samples(path, rows)
        else:
            raise TraceError(
                f"{path}: line 1: expected an op file (column 'op') or an end-to-end file "
                f"(columns 'model', 'phase'); got {header}"
            )
    if not samples:
        raise TraceError("no measured samples in " + ", ".join(map(str, paths)))
    return samples


# --------------------------------------------------------------------------- prediction
def gpu_model(hw, eff: dict[str, float] | None = None):
    """A fresh GPU model of ``hw`` with ``eff`` overriding its efficiency constants."""
    if eff is not None:
        hw = hw.model_copy(update={"efficiency": {**hw.efficiency, **eff}})
    return GpuModel(hw)


def predict_sample(model, s: Sample) -> float:
    if s.hw:  # measured under other config settings (TF32 off, cudnn.benchmark on)
        model = model.variant(**dict(s.hw))
    if s.kind == "op":
        return model.estimate(s.op).latency_s
    if s.kind == "transform":
        return window_copy_time(model, s.op)
    # whole steps: the GPU step model (GpuModel.step), as `neupims replay` applies it
    dispatch = "graph" if s.kind == "e2e_graph" else "eager"
    return model.step(s.ops, dispatch).latency_s


def predict(hw, samples: Sequence[Sample], eff: dict[str, float] | None = None) -> np.ndarray:
    model = gpu_model(hw, eff)
    return np.array([predict_sample(model, s) for s in samples])


# --------------------------------------------------------------------------- fitting
def levenberg_marquardt(
    fun: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, iters: int = 40, tol: float = 1e-6
) -> np.ndarray:
    """Minimise ||fun(x)||^2 by Levenberg-Marquardt with forward-difference Jacobians."""
    x = np.asarray(x0, dtype=float).copy()
    r = fun(x)
    cost = float(r @ r)
    lam = 1e-2
    for _ in range(iters):
        jac = np.empty((r.size, x.size))
        for j in range(x.size):
            xp = x.copy()
            xp[j] += 1e-4
            jac[:, j] = (fun(xp) - r) / 1e-4
        a = jac.T @ jac
        g = jac.T @ r
        improved = False
        while lam < 1e10:
            step = np.linalg.solve(a + lam * np.diag(np.diag(a) + 1e-9), -g)
            xn = x + step
            rn = fun(xn)
            cn = float(rn @ rn)
            if cn < cost:
                improved = (cost - cn) > tol * max(cost, 1e-12)
                x, r, cost = xn, rn, cn
                lam = max(lam / 3, 1e-9)
                break
            lam *= 4
        if not improved:
            break
    return x


@dataclass(frozen=True)
class FitResult:
    """``efficiency``: every constant (fitted ones replaced); ``n_fit``: training samples per
    group; ``fitted``: the constants actually fitted (a group with fewer samples than
    constants keeps its values)."""

    efficiency: dict[str, float]
    n_fit: dict[str, int]
    fitted: tuple[str, ...] = ()


def calibrate(
    hw, samples: Sequence[Sample], groups: dict[str, tuple[str, ...]] | None = None
) -> FitResult:
    """Fit each group's constants on that group's non-held-out samples."""
    if getattr(hw, "kind", None) != "gpu":
        raise ConfigError(f"calibrate fits GPU configs; {getattr(hw, 'name', hw)} is not one")
    groups = GROUPS if groups is None else groups
    eff = {**DEFAULTS, "launch_us": hw.launch_overhead_us, **hw.efficiency}
    n_fit: dict[str, int] = {}
    fitted: list[str] = []
    for group, names in groups.items():
        train = [s for s in samples if s.group == group and not s.holdout]
        n_fit[group] = len(train)
        if len(train) < len(names):
            continue  # nothing (or too little) measured for this group: keep the values
        meas = np.log([s.measured_s for s in train])

        def resid(x, names=names, train=train, meas=meas):
            trial = {**eff, **dict(zip(names, np.exp(np.clip(x, *LOG_BOUNDS)), strict=True))}
            model = gpu_model(hw, trial)
            return np.log([predict_sample(model, s) for s in train]) - meas

        # every fit starts from the defaults, so a calibration does not depend on the
        # values the config held before (re-running it gives the same constants)
        x0 = np.log([DEFAULTS.get(n, eff[n]) for n in names])
        if len(names) == 1:  # one constant: a grid search also handles flat regions
            grid = x0[0] + np.linspace(-3, 3, 121)
            costs = [float(np.sum(resid(np.array([g])) ** 2)) for g in grid]
            x0 = np.array([grid[int(np.argmin(costs))]])
        x = levenberg_marquardt(resid, x0)
        # iteratively reweighted least squares towards least absolute log error, which is
        # what MAPE rewards: a few outliers (kernels the model does not describe) then
        # pull the constants less
        for _ in range(IRLS_ROUNDS):
            w = 1.0 / np.sqrt(np.maximum(np.abs(resid(x)), 0.02))
            x = levenberg_marquardt(lambda z, w=w: w * resid(z), x)
        values = np.exp(np.clip(x, *LOG_BOUNDS))
        eff.update({n: float(f"{v:.5g}") for n, v in zip(names, values, strict=True)})
        fitted += names
    return FitResult(eff, n_fit, tuple(fitted))


# --------------------------------------------------------------------------- reporting
#: op-level and end-to-end targets of issue 5 (MAPE, percent)
TARGETS = {"gemm": 10.0, "attention": 10.0, "conv": 15.0, "e2e_graph": 5.0, "e2e_eager": 5.0}


def mape(pred: np.ndarray, meas: np.ndarray) -> float:
    return float(np.mean(np.abs(pred - meas) / meas) * 100) if len(meas) else math.nan


def error_report(hw, samples: Sequence[Sample]) -> list[dict]:
    """MAPE per group on the fitted part, the held-out part and all samples."""
    model = gpu_model(hw)
    pred = np.array([predict_sample(model, s) for s in samples])
    meas = np.array([s.measured_s for s in samples])
    hold = np.array([s.holdout for s in samples])
    rows = []
    for group in sorted({s.group for s in samples}):
        g = np.array([s.group == group for s in samples])
        row = {"group": group, "n": int(g.sum()), "target_mape": TARGETS.get(group, math.nan)}
        for split, mask in (("fit", g & ~hold), ("holdout", g & hold), ("all", g)):
            row[f"mape_{split}"] = mape(pred[mask], meas[mask])
        rows.append(row)
    return rows


def per_sample_table(hw, samples: Sequence[Sample]) -> list[dict]:
    model = gpu_model(hw)
    out = []
    for s in samples:
        p = predict_sample(model, s)
        row = {"group": s.group, "label": s.label, "holdout": s.holdout,
               "measured_s": s.measured_s, "predicted_s": p,
               "error_pct": (p - s.measured_s) / s.measured_s * 100}  # fmt: skip
        if s.kind.startswith("e2e"):
            row["predicted_gpu_only_s"] = model.step(s.ops, "graph").latency_s
        if s.kind == "op" and s.op is not None and not math.isnan(s.mem_extra_bytes):
            cost = (model.variant(**dict(s.hw)) if s.hw else model).estimate(s.op)
            d = dict(cost.detail)
            if "workspace_bytes" in d:
                out_b = s.op.output_elems * dtype_bytes(s.op.dtype)
                row["measured_extra_bytes"] = s.mem_extra_bytes
                row["predicted_extra_bytes"] = d["workspace_bytes"] + out_b
        out.append(row)
    return out


# --------------------------------------------------------------------------- write-back
def write_efficiency(
    path: str | Path, eff: dict[str, float], provenance: str, keys: Iterable[str] | None = None
) -> None:
    """Replace the ``efficiency`` block and ``efficiency_provenance`` of a hardware YAML,
    keeping every other line (and its source comments) as it is; atomic. ``keys``: the
    constants to write (default: every known one in ``eff``); constants left out fall back
    to their documented defaults when the config is loaded."""
    path = Path(path)
    lines = path.read_text().splitlines()
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line.startswith("efficiency:") or line.startswith("efficiency_provenance:"):
            skipping = line.startswith("efficiency:")
            continue
        if skipping and (line.startswith(" ") or not line.strip()):
            continue
        skipping = False
        kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    kept.append(f"efficiency_provenance: {json.dumps(provenance)}")
    kept.append("efficiency:                  # fitted constants (see neupims/devices/gpu.py)")
    for k in sorted(set(eff if keys is None else keys) & set(eff) & set(DEFAULTS)):
        kept.append(f"  {k}: {eff[k]:.5g}")
    atomic_write_text(path, "\n".join(kept) + "\n")
