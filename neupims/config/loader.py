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
from neupims.textio import read_text

M = TypeVar("M", bound=BaseModel)

#: Repository root (the folder holding hw_configs/, workloads/, experiments/).
ROOT = Path(__file__).resolve().parents[2]


#: Most values (scalars, list items and mapping entries, aliases expanded) a YAML file may
#: hold: far above any config (the largest experiment has a few hundred), and low enough
#: that an alias bomb (``a: &a [*a, *a, ...]`` nested) is refused before it is walked.
MAX_YAML_VALUES = 1_000_000


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the
    last silently, so a typo'd duplicate would win unseen)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            # merge keys (<<) may be overridden by the mapping's own keys, by design
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node, deep=True)
            first = seen.setdefault(key, key_node)
            if first is not key_node:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first given on line {first.start_mark.line + 1})",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def _check_shape(data: Any, path: Path) -> None:
    """Refuse self-referencing aliases and documents of more than MAX_YAML_VALUES values."""
    count = 0
    stack: list[tuple[Any, frozenset[int]]] = [(data, frozenset())]
    while stack:
        node, parents = stack.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise ConfigError(
                f"{path}: more than {MAX_YAML_VALUES:,} values once aliases are expanded; "
                "expected a configuration file"
            )
        if isinstance(node, dict | list | tuple | set):
            if id(node) in parents:
                raise ConfigError(f"{path}: an alias refers to a value containing itself")
            inner = parents | {id(node)}
            items = [*node.keys(), *node.values()] if isinstance(node, dict) else list(node)
            for item in items:
                stack.append((item, inner))


def load_yaml(path: str | Path) -> Any:
    """Read a YAML file safely; a syntax error names the file, line and column.

    Refused with a ConfigError: a missing, unreadable, binary or non-UTF-8 file; invalid
    YAML (including values PyYAML cannot construct, such as the date 2020-13-45); a key
    given twice in one mapping; aliases that refer to themselves or expand past
    :data:`MAX_YAML_VALUES` values.
    """
    path = Path(path)
    text = read_text(path, ConfigError)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}: {where}invalid YAML: {problem}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor refused a scalar
        raise ConfigError(f"{path}: invalid YAML value: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid YAML: nested too deeply") from None
    _check_shape(data, path)
    return data


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
    errors = exc.errors()
    failed_items = [e["loc"] for e in errors if e["type"] != "too_short"]
    for err in errors:
        # a list whose items failed is also reported too short (its valid items): noise
        if err["type"] == "too_short" and any(
            loc[: len(err["loc"])] == err["loc"] and len(loc) > len(err["loc"])
            for loc in failed_items
        ):
            continue
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
                if not isinstance(err["input"], dict):  # a whole mapping says nothing new
                    got = repr(err["input"])
                    msg += f", got {got if len(got) <= 80 else got[:77] + '...'}"
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


def _is_file_or_dir(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):  # a name too long for the OS, or with a NUL byte
        return False


def resolve(name_or_path: str | Path, folder: str, suffix: str = ".yaml") -> Path:
    """Find a config by path, or by bare name in the repository folder ``folder``."""
    p = Path(name_or_path)
    if _is_file_or_dir(p):
        return p
    for cand in (ROOT / folder / p, ROOT / folder / f"{p}{suffix}", Path(folder) / f"{p}{suffix}"):
        if _is_file_or_dir(cand):
            return cand
    known = sorted(x.stem for x in (ROOT / folder).glob(f"*{suffix}"))
    shown = str(name_or_path)
    shown = shown if shown.isprintable() else repr(shown)
    raise ConfigError(f"{shown}: no such file, and no {folder}/ entry of that name; known: {known}")
