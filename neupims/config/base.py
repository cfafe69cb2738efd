"""Shared pydantic base and constrained field types for all schemas."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

PosInt = Annotated[int, Field(gt=0, strict=True)]
NonNegInt = Annotated[int, Field(ge=0, strict=True)]
PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, le=1)]


class Spec(BaseModel):
    """Frozen, strict-keyed schema: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def key_of(known: Mapping[str, Any], what: str) -> Any:
    """A ``str`` type that accepts only the keys of ``known``; a typo is an error that names
    the closest known key (used for mappings such as a config's ``efficiency`` block)."""

    def check(key: str) -> str:
        if key not in known:
            close = difflib.get_close_matches(key, list(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown {what}{hint}; expected one of {sorted(known)}")
        return key

    return Annotated[str, AfterValidator(check)]
