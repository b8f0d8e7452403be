"""Numbers must be numbers: pydantic (lax mode) takes `true` for an int field as 1, so a
config `training.steps: true` would silently train one step. `NoBoolNumbers` is mixed into
every config and options model to refuse booleans where numbers are expected, and `inf` /
`nan` for every float (`training.lr=inf` would train on NaN weights)."""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError


def _wants_number(annotation: Any) -> bool:
    if typing.get_origin(annotation) is typing.Annotated:  # e.g. a float with bounds
        annotation = typing.get_args(annotation)[0]
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        return bool not in args and any(_wants_number(a) for a in args)
    return False


def _element_types(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) is tuple:
        return typing.get_args(annotation)
    return ()


class NoBoolNumbers(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # merged into the subclasses' configs

    @field_validator("*", mode="before")
    @classmethod
    def _refuse_bool_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None:
            return value
        if isinstance(value, bool) and _wants_number(field.annotation):
            raise PydanticCustomError("bool_for_number", "expected a number, not a boolean", {})
        elements = _element_types(field.annotation)
        if isinstance(value, (list, tuple)) and any(
            isinstance(v, bool) and _wants_number(t) for v, t in zip(value, elements, strict=False)
        ):
            raise PydanticCustomError("bool_for_number", "expected numbers, not booleans", {})
        return value
