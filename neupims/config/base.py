"""Shared pydantic base and constrained field types for all schemas."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from neupims.limits import MAX_DIM, MAX_ELEMS, limit_text


def at_most(limit: int) -> AfterValidator:
    """A validator refusing values above ``limit`` (a :class:`neupims.limits.Limit`), with
    the limit and its reason in the message: ``Annotated[PosInt, at_most(MAX_SEQ_LEN)]``."""

    def check(v: int) -> int:
        if v > limit:
            raise ValueError(f"{v:,} exceeds the limit {limit_text(limit)}")
        return v

    return AfterValidator(check)


#: Integers of schemas are bounded by :data:`neupims.limits.MAX_ELEMS` (2^53, the largest
#: integer float64 holds exactly); floats must be finite (``.inf`` and ``.nan`` are YAML).
PosInt = Annotated[int, Field(gt=0, strict=True), at_most(MAX_ELEMS)]
NonNegInt = Annotated[int, Field(ge=0, strict=True), at_most(MAX_ELEMS)]
#: One dimension of an op or model (d_model, heads, channels, ...), at most MAX_DIM.
Dim = Annotated[int, Field(gt=0, strict=True), at_most(MAX_DIM)]
PosFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]


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
