"""Safe YAML loading and schema validation with path-precise error messages.

Every error reads ``FILE: key.path: what was wrong (expected ...)``. YAML is loaded with
``yaml.safe_load`` only: user text is never evaluated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from neupims.errors import ConfigError

M = TypeVar("M", bound=BaseModel)

#: Repository root (the folder holding hw_configs/, workloads/, experiments/).
ROOT = Path(__file__).resolve().parents[2]


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file safely; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None


def _dotted(loc: tuple[Any, ...], prefix: str = "") -> str:
    parts = [prefix] if prefix else []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            # discriminated unions insert the tag name into the location; skip it
            parts.append(str(p))
    out = ""
    for p in parts:
        out += p if p.startswith("[") or not out else "." + p
    return out or "(top level)"


def format_validation_error(
    exc: ValidationError, source: str, model: type[BaseModel], prefix: str = ""
) -> str:
    """Turn a pydantic error into one line per problem: ``source: key.path: message``."""
    lines = []
    for err in exc.errors():
        # drop pydantic's validator names and the "[key]" marker of a bad mapping key
        loc = tuple(
            p
            for p in err["loc"]
            if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))
        )
        path = _dotted(loc, prefix)
        kind = err["type"]
        if kind == "extra_forbidden":
            msg = "unknown key (check its spelling against the documented keys)"
        elif kind == "missing":
            msg = "required key is missing"
        elif kind == "union_tag_invalid":
            ctx = err.get("ctx", {})
            msg = f"unknown kind {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
            if "input" in err and kind not in ("model_type", "dict_type"):
                msg += f", got {err['input']!r}"
        lines.append(f"{source}: {path}: {msg}")
    return "\n".join(lines)


def validate(model: type[M], data: Any, source: str, prefix: str = "") -> M:
    """Validate ``data`` against ``model``; raise ConfigError naming ``source`` and the key."""
    if data is None:
        raise ConfigError(f"{source}: the file is empty; expected a mapping of keys")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source, model, prefix)) from None


def resolve(name_or_path: str | Path, folder: str, suffix: str = ".yaml") -> Path:
    """Find a config by path, or by bare name in the repository folder ``folder``."""
    p = Path(name_or_path)
    if p.exists():
        return p
    for cand in (ROOT / folder / p, ROOT / folder / f"{p}{suffix}", Path(folder) / f"{p}{suffix}"):
        if cand.exists():
            return cand
    known = sorted(x.stem for x in (ROOT / folder).glob(f"*{suffix}"))
    raise ConfigError(
        f"{name_or_path}: no such file, and no {folder}/ entry of that name; known: {known}"
    )
