"""The model zoo: every ``workloads/models/*.yaml`` file, validated into frozen specs.

A model file is a mapping ``name -> definition``. Keys starting with ``.`` are ignored, so
a file may hold YAML anchors (``.gpt3: &gpt3 {...}``) that definitions merge with ``<<``.
Errors read ``FILE: NAME.key.path: what was wrong``.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any

from neupims.config.loader import ROOT, load_yaml, validate
from neupims.errors import ConfigError, NeupimsError
from neupims.workloads.specs import MODEL_KINDS, ModelSpec

#: Folder of the bundled model definitions.
MODELS_DIR = ROOT / "workloads" / "models"


def parse_model(name: str, data: Any, source: str) -> ModelSpec:
    """Validate one model definition (a mapping with a ``kind``) against its schema."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: {name}: expected a mapping with a 'kind' key, got {type(data).__name__}"
        )
    kind = data.get("kind")
    if kind is None:
        raise ConfigError(
            f"{source}: {name}.kind: required key is missing; expected one of {sorted(MODEL_KINDS)}"
        )
    schema = MODEL_KINDS.get(kind) if isinstance(kind, str) else None
    if schema is None:
        raise ConfigError(
            f"{source}: {name}.kind: unknown model kind {kind!r}; "
            f"expected one of {sorted(MODEL_KINDS)}"
        )
    return validate(schema, data, source, prefix=name)


def load_model_file(path: str | Path) -> dict[str, ModelSpec]:
    """Load every model of one YAML file; raise ConfigError naming the file and key."""
    path = Path(path)
    data = load_yaml(path)
    if data is None:
        raise ConfigError(f"{path}: the file is empty; expected a mapping of model names")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of model names to definitions, got {type(data).__name__}"
        )
    out: dict[str, ModelSpec] = {}
    for name, body in data.items():
        if not isinstance(name, str):
            raise ConfigError(f"{path}: model names must be strings, got {name!r}")
        if name.startswith("."):
            continue
        if name != name.lower() or " " in name:
            raise ConfigError(f"{path}: {name}: model names are lower-case without spaces")
        out[name] = parse_model(name, body, str(path))
    return out


@lru_cache(maxsize=1)
def _zoo() -> dict[str, ModelSpec]:
    zoo: dict[str, ModelSpec] = {}
    where: dict[str, Path] = {}
    for path in sorted(MODELS_DIR.glob("*.yaml")):
        for name, spec in load_model_file(path).items():
            if name in zoo:
                raise ConfigError(f"{path}: {name}: already defined in {where[name]}")
            zoo[name] = spec
            where[name] = path
    return zoo


def list_models() -> list[str]:
    """Names of all bundled models, sorted."""
    return sorted(_zoo())


def get_model(name: str | ModelSpec) -> ModelSpec:
    """The spec of a bundled model by name, or of the single model in a YAML file path.

    An unknown name raises NeupimsError listing the closest known names.
    """
    if not isinstance(name, str):
        return name
    zoo = _zoo()
    if name in zoo:
        return zoo[name]
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.exists():
        models = load_model_file(p)
        if len(models) != 1:
            raise ConfigError(
                f"{p}: expected exactly one model in the file, found {sorted(models)}; "
                "pass one of these names after adding the file to workloads/models/"
            )
        return next(iter(models.values()))
    close = difflib.get_close_matches(name.lower(), list(zoo), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise NeupimsError(
        f"unknown model {name!r}{hint} (`neupims trace --list` lists all {len(zoo)} models)"
    )
