"""Experiment YAML: schema, loading, and expansion of the sweep into validated points.

An experiment names a registered kind (``neupims.experiments.kinds``), a ``base``
configuration, and a ``sweep`` over dotted paths into it::

    name: quickstart
    kind: replay
    base: {model: gpt3-6.7b, phase: decode, batch: 1, seq: 512, hw: h100_sxm}
    sweep:
      grid: {batch: [1, 8, 64], hw: [h100_sxm, npu_neupims]}   # product
      zip:  {seq: [512, 2048], tp: [1, 2]}                      # zipped, equal lengths
    metrics: [latency_s, tokens_per_s]
    figures: [{type: lines, x: batch, y: latency_s, hue: hw}]

Every point (base with that point's swept values applied) is validated against the kind's
schema and by the kind's ``validate_point`` (the semantic checks that would otherwise fail
at run time) before anything runs; errors name the file, the sweep or base key path, the
point and what was expected, and nothing is written.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

from neupims import __version__
from neupims.config import load_hw
from neupims.config.base import Spec
from neupims.config.loader import load_yaml, validate
from neupims.errors import ConfigError, NeupimsError
from neupims.experiments.kinds import ExperimentKind, PointError, all_kinds


class FigureSpec(Spec):
    """One figure drawn from results.csv (see :mod:`neupims.plots`).

    lines: ``y`` against ``x``, one line per ``hue`` value (marker + gray level) and per
    ``style`` value (line style). grouped_bars: ``x`` categories on the axis, one bar per
    ``hue`` value in each group; ``normalise_to: {column: value}`` divides each group by the
    bar whose ``column`` equals ``value``. parity: predicted ``x`` against measured ``y``,
    log-log, with y = x and +/-10 % bands. roofline: achieved FLOP/s against arithmetic
    intensity, from the ``flops``, ``bytes`` and ``time`` columns, under the roof given by
    ``peak_flops_per_s`` and ``bytes_per_s`` (column names or numbers) or by ``hw`` (a
    hardware config name) and ``dtype``. ``facet`` draws one panel per value.
    """

    type: Literal["lines", "grouped_bars", "parity", "roofline"]
    x: str | None = None
    y: str | None = None
    hue: str | None = None
    style: str | None = None
    facet: str | None = None
    normalise_to: dict[str, Any] | None = None
    #: display order of a column's values (hue, style, x categories, facets); values not
    #: listed follow, sorted. Default: sorted.
    order: dict[str, list[Any]] = Field(default_factory=dict)
    #: panel title template; ``{facet}`` is the facet column, ``{value}`` its value
    facet_title: str = "{facet} = {value}"
    logx: bool = False
    logy: bool = False
    title: str | None = None
    xlabel: str | None = None
    ylabel: str | None = None
    file: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.\-]+$")
    # roofline only
    flops: str = "flops"
    bytes: str = "bytes"
    time: str = "latency_s"
    peak_flops_per_s: str | float | None = None
    bytes_per_s: str | float | None = None
    hw: str | None = None
    dtype: str = "fp16"

    @model_validator(mode="after")
    def _required(self) -> FigureSpec:
        if self.type in ("lines", "grouped_bars", "parity"):
            missing = [k for k in ("x", "y") if getattr(self, k) is None]
            if missing:
                raise ValueError(f"a {self.type!r} figure needs {' and '.join(missing)}")
        used = {c for c in (self.x, self.hue, self.style, self.facet) if c}
        stray = sorted(set(self.order) - used)
        if stray:
            raise ValueError(
                f"order names {stray}, which this figure does not use; expected keys among {sorted(used)}"
            )
        try:
            self.facet_title.format(facet="f", value="v")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"facet_title may use only {{facet}} and {{value}}, got {self.facet_title!r} ({exc})"
            ) from None
        if self.normalise_to is not None:
            if self.type != "grouped_bars":
                raise ValueError("normalise_to applies to grouped_bars figures only")
            if len(self.normalise_to) != 1:
                raise ValueError("normalise_to must be one {column: value} pair")
        if self.type == "roofline" and self.hw is None:
            if self.peak_flops_per_s is None or self.bytes_per_s is None:
                raise ValueError(
                    "a roofline figure needs hw: NAME or both peak_flops_per_s and bytes_per_s"
                )
        return self

    @property
    def stem(self) -> str:
        if self.file:
            return self.file
        if self.type == "roofline":
            return "roofline"
        return f"{self.type}_{self.y}_vs_{self.x}".replace(".", "_")

    def columns(self) -> list[tuple[str, str]]:
        """(key, result column) pairs this figure reads, to check against the results."""
        keys = ["x", "y", "hue", "style", "facet"]
        if self.type == "roofline":
            keys += ["flops", "bytes", "time", "peak_flops_per_s", "bytes_per_s"]
        out = [(k, getattr(self, k)) for k in keys if isinstance(getattr(self, k), str)]
        if self.normalise_to:
            out += [(f"normalise_to.{c}", c) for c in self.normalise_to]
        return out


class SweepSpec(Spec):
    """``grid``: the product over dotted paths; ``zip``: equal-length lists zipped together.

    With both, every zipped tuple is combined with every grid combination.
    """

    grid: dict[str, Any] = Field(default_factory=dict)
    zip: dict[str, Any] = Field(default_factory=dict)


class ExperimentSpec(Spec):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    kind: str
    description: str = ""
    base: dict[str, Any] = Field(default_factory=dict)
    sweep: SweepSpec | None = None
    metrics: list[str] | None = None
    figures: list[FigureSpec] = Field(default_factory=list)
    seed: int = 0


@dataclass(frozen=True)
class Point:
    """One sweep point: its index, swept values (dotted path -> value) and resolved config.

    ``config`` is the kind schema's JSON dump (every default filled in); ``key`` is the
    sha256 of the canonical JSON of (kind, config, package version): the store key.
    """

    index: int
    swept: dict[str, Any]
    config: dict[str, Any]
    key: str


@dataclass(frozen=True)
class Experiment:
    spec: ExperimentSpec
    kind: ExperimentKind
    points: list[Point]
    source: str  # file path or "<object>"
    text: str  # YAML text saved as DIR/experiment.yaml
    file_hash: str

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def swept_paths(self) -> list[str]:
        return list(self.points[0].swept) if self.points else []


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def point_key(kind: str, config: dict[str, Any], version: str = __version__) -> str:
    blob = canonical_json({"kind": kind, "config": config, "version": version})
    return hashlib.sha256(blob.encode()).hexdigest()


# ---------------------------------------------------------------------------- dotted paths


def _unwrap(annotation: Any) -> list[Any]:
    """The alternatives of a (possibly Optional / Annotated / union) annotation."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        out = []
        for a in typing.get_args(annotation):
            out += _unwrap(a)
        return out
    return [annotation]


def _is_open_mapping(annotation: Any) -> bool:
    if annotation is Any:
        return True
    origin = typing.get_origin(annotation)
    return (
        annotation is dict
        or origin in (dict, typing.Mapping)
        or (origin is not None and isinstance(origin, type) and issubclass(origin, dict))
    )


def check_path(schema: type[BaseModel], path: str) -> str | None:
    """Return why ``path`` cannot address a key of ``schema``, or None when it can.

    Paths descend through nested schemas; below a free-form mapping field (``dict``),
    any sub-key is accepted (it is validated when the point is, e.g. hardware overrides).
    """
    model: Any = schema
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = model.model_fields
        if part not in fields:
            where = ".".join(parts[:i]) or "the point config"
            return f"unknown key {part!r} in {where}; expected one of {sorted(fields)}"
        alts = _unwrap(fields[part].annotation)
        if i == len(parts) - 1:
            return None
        models = [a for a in alts if isinstance(a, type) and issubclass(a, BaseModel)]
        if any(_is_open_mapping(a) for a in alts):
            return None
        if not models:
            return f"{'.'.join(parts[: i + 1])} is a value, not a mapping with sub-keys"
        model = models[0]
    return None


def set_path(cfg: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = cfg
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = node[part] = {}
        node = nxt
    node[parts[-1]] = value


# ---------------------------------------------------------------------------- expansion


def _sweep_combinations(sweep: SweepSpec | None, source: str) -> list[dict[str, Any]]:
    if sweep is None:
        return [{}]
    if not sweep.grid and not sweep.zip:
        raise ConfigError(f"{source}: sweep: empty sweep; give a grid and/or zip of dotted paths")
    for section in ("grid", "zip"):
        for path, values in getattr(sweep, section).items():
            if not isinstance(values, list):
                raise ConfigError(
                    f"{source}: sweep.{section}.{path}: expected a list of values, "
                    f"got {type(values).__name__} {values!r}"
                )
            if not values:
                raise ConfigError(f"{source}: sweep.{section}.{path}: empty list of values")
    both = set(sweep.grid) & set(sweep.zip)
    if both:
        raise ConfigError(f"{source}: sweep: {sorted(both)} swept in both grid and zip")
    zipped: list[dict[str, Any]] = [{}]
    if sweep.zip:
        lengths = {p: len(v) for p, v in sweep.zip.items()}
        if len(set(lengths.values())) > 1:
            raise ConfigError(
                f"{source}: sweep.zip: lists must have equal lengths, got "
                + ", ".join(f"{p}: {n}" for p, n in lengths.items())
            )
        paths = list(sweep.zip)
        zipped = [
            dict(zip(paths, vals, strict=True)) for vals in zip(*sweep.zip.values(), strict=True)
        ]
    grid_paths = list(sweep.grid)
    combos = []
    for vals in itertools.product(*sweep.grid.values()):
        g = dict(zip(grid_paths, vals, strict=True))
        for z in zipped:
            combos.append({**g, **z})
    return combos


def _where(loc: str, sweep_section: dict[str, str]) -> str:
    """The experiment key a point-config key comes from: its sweep entry, else ``base``."""
    section = next(
        (
            f"sweep.{sec}.{p}"
            for p, sec in sweep_section.items()
            if loc == p or loc.startswith(p + ".") or p.startswith(loc + ".")
        ),
        None,
    )
    return section or (f"base.{loc}" if loc else "base")


def _point_label(index: int, n: int, swept: dict[str, Any]) -> str:
    what = ", ".join(f"{k}={v!r}" for k, v in swept.items())
    return f"point {index + 1} of {n}" + (f" ({what})" if what else "")


def _point_error(
    exc: ValidationError, source: str, sweep_section: dict[str, str], index: int, n: int, swept
) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        where = _where(loc, sweep_section)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling against the documented keys)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif err["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")
        elif "input" in err and err["type"] not in ("model_type", "dict_type"):
            msg += f", got {err['input']!r}"
        lines.append(f"{source}: {where}: {_point_label(index, n, swept)}: {msg}")
    return "\n".join(lines)


def _check_point(
    kind: ExperimentKind, cfg: Any, source: str, sections: dict[str, str], i: int, n: int, swept
) -> None:
    """Run the kind's semantic checks on one point; a failure names the point and key."""
    if kind.validate_point is None:
        return
    try:
        kind.validate_point(cfg)
    except PointError as exc:
        where = ", ".join(dict.fromkeys(_where(k, sections) for k in exc.keys)) or "base"
        raise ConfigError(f"{source}: {where}: {_point_label(i, n, swept)}: {exc}") from None
    except (NeupimsError, ValueError) as exc:
        raise ConfigError(f"{source}: {_point_label(i, n, swept)}: {exc}") from None


def expand(spec: ExperimentSpec, kind: ExperimentKind, source: str) -> list[Point]:
    """Expand and validate every point before anything runs (errors name the key path)."""
    schema = kind.schema
    sweep = spec.sweep
    sections = {}
    if sweep is not None:
        sections = {p: "grid" for p in sweep.grid} | {p: "zip" for p in sweep.zip}
    for path, sec in sections.items():
        why = check_path(schema, path)
        if why:
            raise ConfigError(f"{source}: sweep.{sec}.{path}: {why}")
    combos = _sweep_combinations(sweep, source)
    base = copy.deepcopy(spec.base)
    if "seed" in schema.model_fields and "seed" not in base and "seed" not in sections:
        base["seed"] = spec.seed
    points = []
    seen: dict[str, int] = {}
    for i, swept in enumerate(combos):
        raw = copy.deepcopy(base)
        for path, value in swept.items():
            set_path(raw, path, value)
        try:
            cfg = schema.model_validate(raw)
        except ValidationError as exc:
            raise ConfigError(_point_error(exc, source, sections, i, len(combos), swept)) from None
        except ConfigError as exc:
            raise ConfigError(f"{source}: point {i + 1} of {len(combos)}: {exc}") from None
        _check_point(kind, cfg, source, sections, i, len(combos), swept)
        config = cfg.model_dump(mode="json")
        key = point_key(kind.name, config)
        if key in seen:
            raise ConfigError(
                f"{source}: sweep: points {seen[key] + 1} and {i + 1} resolve to the same "
                f"configuration ({swept}); remove the duplicate value"
            )
        seen[key] = i
        points.append(Point(index=i, swept=swept, config=config, key=key))
    return points


def _check_roofline_hardware(spec: ExperimentSpec, source: str) -> None:
    """A roofline figure's ``hw`` must load and have a peak for its ``dtype`` (it is drawn
    after the run, too late to refuse)."""
    for i, fig in enumerate(spec.figures):
        if fig.type != "roofline" or fig.hw is None:
            continue
        try:
            hw = load_hw(fig.hw)
        except NeupimsError as exc:
            raise ConfigError(f"{source}: figures[{i}].hw: {exc}") from None
        try:
            hw.peak_flops(fig.dtype)
        except ValueError as exc:
            raise ConfigError(f"{source}: figures[{i}].dtype: {exc}") from None


def _check_metrics_and_figures(spec: ExperimentSpec, kind: ExperimentKind, source: str) -> None:
    declared = list(getattr(kind, "metrics", ()) or ())
    if spec.metrics is not None and declared:
        for i, m in enumerate(spec.metrics):
            if m not in declared:
                raise ConfigError(
                    f"{source}: metrics[{i}]: unknown metric {m!r} of kind {kind.name!r}; "
                    f"expected one of {declared}"
                )
    _check_roofline_hardware(spec, source)
    known = set(spec.metrics or declared)
    if not known:
        return  # checked against the results when they exist
    if spec.sweep is not None:
        known |= set(spec.sweep.grid) | set(spec.sweep.zip)
    known |= {"point", "status", "elapsed_s"}
    for i, fig in enumerate(spec.figures):
        for key, col in fig.columns():
            if col not in known:
                raise ConfigError(
                    f"{source}: figures[{i}].{key}: column {col!r} is neither swept nor a metric; "
                    f"expected one of {sorted(known)}"
                )


def set_base(data: Any, assignments: dict[str, Any], source: str) -> dict:
    """A copy of an experiment mapping with ``base`` keys set (dotted paths, as swept keys
    are written: ``preset``, ``hw_overrides.hbm_bandwidth_gbps``); a key the experiment
    sweeps is an error (the sweep would override it)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    out = copy.deepcopy(data)
    base = out.setdefault("base", {}) or {}
    out["base"] = base
    if not isinstance(base, dict):
        raise ConfigError(f"{source}: base: expected a mapping, got {type(base).__name__}")
    swept = set()
    for part in ("grid", "zip"):
        swept |= set((out.get("sweep") or {}).get(part) or {})
    for key, value in assignments.items():
        if key in swept:
            raise ConfigError(f"--set {key}: the experiment sweeps {key!r}; remove it from sweep")
        node = base
        *parents, last = key.split(".")
        for p in parents:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {key}: base.{p} is not a mapping")
            node = nxt
        node[last] = value
    return out


def load_experiment(
    experiment: str | Path | dict | ExperimentSpec, sets: dict[str, Any] | None = None
) -> Experiment:
    """Load, validate and expand an experiment (a YAML path, a mapping or a spec).
    ``sets``: ``base`` keys to set first (``neupims run --set KEY=VALUE``)."""
    if isinstance(experiment, ExperimentSpec):
        source, data = "<experiment>", experiment.model_dump(mode="json", exclude_none=True)
        text = yaml.safe_dump(data, sort_keys=False)
    elif isinstance(experiment, dict):
        source, data = "<experiment>", experiment
        text = yaml.safe_dump(data, sort_keys=False)
    else:
        source = str(experiment)
        data = load_yaml(experiment)
        text = Path(experiment).read_text()
    if sets:
        data = set_base(data, sets, source)
        # the stored experiment is the one that runs: the file with the --set keys applied
        text = "".join(f"# --set {k}={json.dumps(v)}\n" for k, v in sets.items())
        text = f"# {source} with:\n{text}" + yaml.safe_dump(data, sort_keys=False)
    spec = validate(ExperimentSpec, data, source)
    kinds = all_kinds()
    if spec.kind not in kinds:
        raise ConfigError(
            f"{source}: kind: unknown experiment kind {spec.kind!r}; expected one of {sorted(kinds)}"
        )
    kind = kinds[spec.kind]
    _check_metrics_and_figures(spec, kind, source)
    points = expand(spec, kind, source)
    return Experiment(
        spec=spec,
        kind=kind,
        points=points,
        source=source,
        text=text,
        file_hash=hashlib.sha256(text.encode()).hexdigest(),
    )
