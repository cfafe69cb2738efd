"""Paper-style figures from an experiment's results (matplotlib's object API: no pyplot, so no
global backend or figure state; PNG through Agg, PDF through the PDF backend).

Four figure types (see :class:`neupims.experiments.spec.FigureSpec`): ``lines``,
``grouped_bars`` (optionally normalised to one bar per group), ``parity`` (log-log, y = x
and +/-10 % bands) and ``roofline`` (ops placed under the compute and bandwidth roofs).
Every figure is readable in grayscale: lines differ by marker and line style as well as
gray level, bars by hatch and gray level. Each is saved as PNG (200 dpi) and PDF.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from neupims.atomic import atomic_open
from neupims.config import load_hw
from neupims.config.loader import load_yaml, validate
from neupims.devices.roofline import peak_bandwidth
from neupims.errors import ConfigError
from neupims.experiments.spec import ExperimentSpec

DPI = 200
GRAYS = ("0.0", "0.45", "0.7", "0.25", "0.85", "0.6")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", ":", "-.")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")
#: bar fills: alternate dark and light so neighbouring bars differ even without hatches
BAR_GRAYS = ("0.2", "0.6", "0.9", "1.0", "0.4", "0.75")

#: axis labels of well-known result columns; others get their unit from the suffix
LABELS = {
    "latency_s": "latency (s)",
    "tokens_per_s": "throughput (tokens/s)",
    "tflops_per_s": "achieved compute (TFLOP/s)",
    "batch": "batch size (sequences)",
    "seq": "context length (tokens)",
    "bytes": "bytes moved (B)",
    "flops": "work (FLOP)",
    "peak_footprint_bytes": "peak footprint (B)",
}
#: (column-name suffix, unit) in match order
UNIT_SUFFIXES = (
    ("_tflops_per_s", "TFLOP/s"),
    ("_flops_per_s", "FLOP/s"),
    ("_bytes_per_s", "B/s"),
    ("_per_s", "1/s"),
    ("_gbps", "GB/s"),
    ("_ms", "ms"),
    ("_us", "µs"),
    ("_ns", "ns"),
    ("_s", "s"),
    ("_bytes", "B"),
    ("_gb", "GB"),
    ("_mb", "MB"),
    ("_j", "J"),
    ("_w", "W"),
    ("_pct", "%"),
)


def axis_label(column: str, override: str | None = None) -> str:
    """A label with its unit: ``latency_s`` -> ``latency (s)``; ``override`` wins."""
    if override:
        return override
    if column in LABELS:
        return LABELS[column]
    for suffix, unit in UNIT_SUFFIXES:
        if column.endswith(suffix) and len(column) > len(suffix):
            return f"{column[: -len(suffix)].replace('_', ' ')} ({unit})"
    return column.replace("_", " ")


def _ordered(values: pd.Series, order: list[Any] | None = None) -> list[Any]:
    """Distinct values: those listed in ``order`` first, in that order, then the rest sorted."""
    uniq = list(dict.fromkeys(values.tolist()))
    if order:
        rank = {str(v): i for i, v in enumerate(order)}
        return sorted(uniq, key=lambda v: (rank.get(str(v), len(rank)), str(v)))
    try:
        return sorted(uniq)
    except TypeError:
        return uniq


def _facets(fig_spec, df: pd.DataFrame):
    groups = (
        [(None, df)]
        if not fig_spec.facet
        else [
            (v, df[df[fig_spec.facet] == v])
            for v in _ordered(df[fig_spec.facet], fig_spec.order.get(fig_spec.facet))
        ]
    )
    n = len(groups)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig = Figure(figsize=(4.2 * ncols, 3.4 * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False, sharey=True)
    flat = axes.ravel().tolist()
    for ax in flat[n:]:
        ax.set_visible(False)
    out = []
    for ax, (v, sub) in zip(flat, groups, strict=False):
        if v is not None:
            ax.set_title(fig_spec.facet_title.format(facet=fig_spec.facet, value=v), fontsize=9)
        out.append((ax, sub))
    return fig, out


def _series(fig_spec, df: pd.DataFrame):
    """(label, index of hue, index of style, rows) per hue x style combination."""
    hues = _ordered(df[fig_spec.hue], fig_spec.order.get(fig_spec.hue)) if fig_spec.hue else [None]
    styles = (
        _ordered(df[fig_spec.style], fig_spec.order.get(fig_spec.style))
        if fig_spec.style
        else [None]
    )
    for hi, h in enumerate(hues):
        for si, s in enumerate(styles):
            sub = df
            if h is not None:
                sub = sub[sub[fig_spec.hue] == h]
            if s is not None:
                sub = sub[sub[fig_spec.style] == s]
            if sub.empty:
                continue
            parts = [str(h)] if h is not None else []
            if s is not None:
                parts.append(f"{fig_spec.style}={s}")
            yield ", ".join(parts) or None, hi, si, sub


def _lines(fs, df: pd.DataFrame):
    fig, panels = _facets(fs, df)
    for ax, sub in panels:
        for label, hi, si, rows in _series(fs, sub):
            agg = rows.groupby(fs.x, sort=True)[fs.y].mean()
            ax.plot(
                agg.index,
                agg.values,
                marker=MARKERS[hi % len(MARKERS)],
                linestyle=LINESTYLES[si % len(LINESTYLES)],
                color=GRAYS[hi % len(GRAYS)],
                markerfacecolor="white" if hi % 2 else GRAYS[hi % len(GRAYS)],
                markersize=5,
                linewidth=1.4,
                label=label,
            )
        _axes(ax, fs, axis_label(fs.x, fs.xlabel), axis_label(fs.y, fs.ylabel))
    return fig


def _grouped_bars(fs, df: pd.DataFrame):
    fig, panels = _facets(fs, df)
    ylabel = axis_label(fs.y, fs.ylabel)
    if fs.normalise_to and not fs.ylabel:
        ((col, val),) = fs.normalise_to.items()
        ylabel = f"{axis_label(fs.y)}, normalised to {col} = {val}"
    for ax, sub in panels:
        cats = _ordered(sub[fs.x], fs.order.get(fs.x))
        hues = _ordered(sub[fs.hue], fs.order.get(fs.hue)) if fs.hue else [None]
        width = 0.8 / max(len(hues), 2)
        table = sub.groupby([fs.x] + ([fs.hue] if fs.hue else []), sort=False)[fs.y].mean()
        if fs.normalise_to:
            ((col, val),) = fs.normalise_to.items()
            ref = {}
            for c in cats:
                rows = sub[(sub[fs.x] == c) & (sub[col].astype(str) == str(val))]
                if rows.empty:
                    raise ConfigError(
                        f"figure {fs.stem!r}: normalise_to: no row with {col} = {val!r} "
                        f"in group {fs.x} = {c!r}"
                    )
                ref[c] = float(rows[fs.y].mean())
        for hi, h in enumerate(hues):
            xs, ys = [], []
            for ci, c in enumerate(cats):
                k = (c, h) if fs.hue else c
                if k in table.index:
                    y = float(table[k])
                    if fs.normalise_to:
                        y = y / ref[c] if ref[c] else math.nan
                    xs.append(ci + width * (hi - (len(hues) - 1) / 2))  # group centred on tick
                    ys.append(y)
            ax.bar(
                xs,
                ys,
                width=width,
                color=BAR_GRAYS[hi % len(BAR_GRAYS)],
                hatch=HATCHES[hi % len(HATCHES)],
                edgecolor="black",
                linewidth=0.6,
                label=str(h) if h is not None else None,
            )
        ax.set_xticks(range(len(cats)), [str(c) for c in cats])
        if fs.normalise_to:
            ax.axhline(1.0, color="black", linewidth=0.6, linestyle=":")
        _axes(ax, fs, axis_label(fs.x, fs.xlabel), ylabel, grid_axis="y")
    return fig


def _parity(fs, df: pd.DataFrame):
    fig, panels = _facets(fs, df)
    for ax, sub in panels:
        vals = pd.concat([sub[fs.x], sub[fs.y]]).astype(float)
        vals = vals[vals > 0]
        if vals.empty:
            continue
        lo, hi_ = float(vals.min()) / 1.5, float(vals.max()) * 1.5
        line = np.geomspace(lo, hi_, 50)
        ax.fill_between(line, line * 0.9, line * 1.1, color="0.88", label="±10 %")
        for f in (0.9, 1.1):  # dashed edges survive printers that drop light fills
            ax.plot(line, line * f, color="0.5", linewidth=0.6, linestyle="--")
        ax.plot(line, line, color="black", linewidth=1.0, label="y = x")
        for label, hi, _si, rows in _series(fs.model_copy(update={"style": None}), sub):
            ax.scatter(
                rows[fs.x],
                rows[fs.y],
                marker=MARKERS[hi % len(MARKERS)],
                facecolor="white" if hi % 2 else GRAYS[hi % len(GRAYS)],
                edgecolor="black",
                s=22,
                linewidth=0.7,
                label=label,
                zorder=3,
            )
        err = (sub[fs.y].astype(float) - sub[fs.x].astype(float)).abs() / sub[fs.x].astype(float)
        ax.text(
            0.03,
            0.95,
            f"median |err| = {100 * float(err.median()):.1f} %\n"
            f"within ±10 %: {100 * float((err <= 0.1).mean()):.0f} %",
            transform=ax.transAxes,
            va="top",
            fontsize=8,
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi_)
        ax.set_ylim(lo, hi_)
        ax.set_aspect("equal")
        _axes(ax, fs, axis_label(fs.x, fs.xlabel), axis_label(fs.y, fs.ylabel), scales=False)
    return fig


def _roofs(fs, df: pd.DataFrame) -> list[tuple[str | None, float, float]]:
    """(label, peak FLOP/s, bandwidth B/s) of each roof to draw."""
    if fs.hw is not None:
        hw = load_hw(fs.hw)
        return [(getattr(hw, "name", fs.hw), hw.peak_flops(fs.dtype), peak_bandwidth(hw))]

    def col_or_num(v, rows):
        return rows[v].astype(float) if isinstance(v, str) else pd.Series(float(v), rows.index)

    peaks = col_or_num(fs.peak_flops_per_s, df)
    bws = col_or_num(fs.bytes_per_s, df)
    roofs = []
    pairs = pd.DataFrame({"p": peaks, "b": bws, "h": df[fs.hue] if fs.hue else None})
    for (p, b), rows in pairs.groupby(["p", "b"], sort=True):
        hues = _ordered(rows["h"]) if fs.hue else []
        roofs.append((", ".join(map(str, hues)) or None, float(p), float(b)))
    return roofs


def _roofline(fs, df: pd.DataFrame):
    fig, panels = _facets(fs, df)
    for ax, sub in panels:
        flops = sub[fs.flops].astype(float)
        intensity = flops / sub[fs.bytes].astype(float)
        perf = flops / sub[fs.time].astype(float)
        roofs = _roofs(fs, sub)
        ai_lo = min([float(intensity.min())] + [p / b for _, p, b in roofs]) / 4
        ai_hi = max([float(intensity.max())] + [p / b for _, p, b in roofs]) * 4
        xs = np.geomspace(ai_lo, ai_hi, 200)
        for ri, (label, p, b) in enumerate(roofs):
            ax.plot(
                xs,
                np.minimum(p, b * xs),
                color="black",
                linestyle=LINESTYLES[ri % len(LINESTYLES)],
                linewidth=1.2,
                label=f"roof {label}" if label else "roof",
            )
        data = sub.assign(_ai=intensity, _perf=perf)
        for label, hi, _si, rows in _series(fs.model_copy(update={"style": None}), data):
            ax.scatter(
                rows["_ai"],
                rows["_perf"],
                marker=MARKERS[hi % len(MARKERS)],
                facecolor="white" if hi % 2 else GRAYS[hi % len(GRAYS)],
                edgecolor="black",
                s=22,
                linewidth=0.7,
                label=label,
                zorder=3,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        _axes(
            ax,
            fs,
            fs.xlabel or "arithmetic intensity (FLOP/B)",
            fs.ylabel or "achieved (FLOP/s)",
            scales=False,
        )
    return fig


def _axes(ax, fs, xlabel: str, ylabel: str, scales: bool = True, grid_axis: str = "both"):
    if scales:
        if fs.logx:
            ax.set_xscale("log", base=2 if _powers_of_two(ax) else 10)
        if fs.logy:
            ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis=grid_axis, color="0.85", linewidth=0.5)
    ax.set_axisbelow(True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=True, framealpha=0.9, edgecolor="0.8")


def _powers_of_two(ax) -> bool:
    xs = [x for line in ax.get_lines() for x in line.get_xdata()]
    return bool(xs) and all(
        float(x) > 0 and float(x).is_integer() and (int(x) & (int(x) - 1)) == 0 for x in xs
    )


#: inches added above the panels for a legend row and for a title
LEGEND_ROW_IN = 0.3
TITLE_IN = 0.3


#: approximate width (inches) of one character of an 8-pt legend label, and of the handle,
#: its padding and the column gap
LEGEND_CHAR_IN = 0.068
LEGEND_HANDLE_IN = 0.55
#: a legend above the panels takes at most this many rows while the figure can still widen
#: up to MAX_FIG_WIDTH_IN inches
MAX_LEGEND_ROWS = 3
MAX_FIG_WIDTH_IN = 12.0


def _legend_entry_in(labels) -> float:
    """Width (inches) of one legend column: the handle and the longest label."""
    return LEGEND_HANDLE_IN + LEGEND_CHAR_IN * max(len(str(x)) for x in labels)


def _legend_columns(labels: list[str], fig_width_in: float) -> int:
    """Legend columns that fit the figure's width, so no entry is cut off."""
    if not labels:
        return 1
    return max(1, min(len(labels), 6, int(0.95 * fig_width_in // _legend_entry_in(labels))))


def _finish(fig, title: str | None, outside: bool) -> None:
    """Lay the figure out with one legend and the title above the panels.

    One legend per figure; above the panels when ``outside`` (facets, bars), so it never
    hides data. Facets share the y axis: y labels stay on the first column only. The
    figure grows by the room the legend rows and title take, so panels keep their size.
    """
    axes = [ax for ax in fig.axes if ax.get_visible()]
    handles: dict[str, Any] = {}
    move = len(axes) > 1 or outside
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
        if move and ax.get_legend() is not None:
            ax.get_legend().remove()
        if len(axes) > 1 and ax.get_subplotspec().colspan.start != 0:
            ax.set_ylabel("")
    ncol = _legend_columns(list(handles), fig.get_figwidth())
    if move and len(handles) > MAX_LEGEND_ROWS * ncol:
        # a long legend in a narrow figure: widen the figure rather than stack the entries
        want = math.ceil(len(handles) / MAX_LEGEND_ROWS) * _legend_entry_in(handles) / 0.95
        fig.set_figwidth(max(fig.get_figwidth(), min(MAX_FIG_WIDTH_IN, want)))
        ncol = _legend_columns(list(handles), fig.get_figwidth())
    rows = math.ceil(len(handles) / ncol) if move and handles else 0
    height = fig.get_figheight()
    extra = rows * LEGEND_ROW_IN + (TITLE_IN if title else 0.0)
    fig.set_figheight(height + extra)
    top = height / (height + extra)
    fig.tight_layout(rect=(0, 0, 1, top))
    if rows:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            bbox_to_anchor=(0.5, top),
            ncol=ncol,
            fontsize=8,
            frameon=False,
        )
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.05 / (height + extra))
        fig.texts[-1].set_va("top")


DRAWERS: dict[str, Callable] = {
    "lines": _lines,
    "grouped_bars": _grouped_bars,
    "parity": _parity,
    "roofline": _roofline,
}


def draw_figures(
    figures: Sequence,
    df: pd.DataFrame,
    outdir: str | Path,
    source: str = "experiment",
    formats: Sequence[str] = ("png", "pdf"),
) -> list[Path]:
    """Draw every figure spec from the ``ok`` rows of ``df``; return the files written."""
    outdir = Path(outdir)
    data = df[df["status"] == "ok"] if "status" in df.columns else df
    written: list[Path] = []
    for i, fs in enumerate(figures):
        for key, col in fs.columns():
            if col not in df.columns:
                raise ConfigError(
                    f"{source}: figures[{i}].{key}: no column {col!r} in the results; "
                    f"columns: {[c for c in df.columns if c not in ('key', 'error')]}"
                )
        if data.empty:
            raise ConfigError(f"{source}: figures[{i}]: no successful points to plot")
        fig = DRAWERS[fs.type](fs, data)
        _finish(fig, fs.title, outside=fs.facet is not None or fs.type == "grouped_bars")
        for fmt in formats:
            path = outdir / f"{fs.stem}.{fmt}"
            with atomic_open(path, "wb") as fh:
                fig.savefig(fh, format=fmt, dpi=DPI)
            written.append(path)
    return written


def plot_dir(
    folder: str | Path, outdir: str | Path | None = None, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Redraw the figures of an experiment folder written by ``neupims run``."""
    folder = Path(folder)
    exp_file, csv = folder / "experiment.yaml", folder / "results.csv"
    for f in (exp_file, csv):
        if not f.exists():
            raise ConfigError(
                f"{folder}: no {f.name}; run `neupims run EXPERIMENT.yaml -o {folder}`"
            )
    spec = validate(ExperimentSpec, load_yaml(exp_file), str(exp_file))
    if not spec.figures:
        raise ConfigError(f"{exp_file}: figures: the experiment declares no figures")
    try:
        df = pd.read_csv(csv)
    except (ValueError, OSError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{csv}: cannot read results: {exc}") from None
    return draw_figures(spec.figures, df, outdir or folder / "figures", str(exp_file), formats)
