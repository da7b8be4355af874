"""The data converter every orch client and worker uses: pydantic's, parsing every payload strictly.

temporalio's pydantic converter validates JSON in pydantic's lax mode, so `{"confirm": "yes"}` became
`confirm=True` and `"0.001"` a number: a typo or a script's stringly value confirmed a resume. Strict
mode refuses a string for a bool or a number and `0` for `false`; in JSON mode it still reads ISO
datetimes, enum values, arrays for tuples and sets, and ints for floats, so every payload orch writes
reads back unchanged. It is one rule for every workflow input, update and signal argument, activity
input and result, and it never touches models built in Python (numpy scalars there stay welcome).

A payload that does not match its type raises the non-retryable `InvalidInput` ApplicationError, naming
each field: temporalio fails the workflow with it (a ValidationError would fail only the workflow task,
retried forever), rejects an update, and drops a signal.
"""

from __future__ import annotations

import functools
from typing import Any

import temporalio.api.common.v1
from pydantic import TypeAdapter, ValidationError
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)
from temporalio.exceptions import ApplicationError

from orch.contracts.errors import ErrorType


@functools.lru_cache(maxsize=1024)
def _cached_adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


def _adapter(type_hint: Any) -> TypeAdapter[Any]:
    try:
        return _cached_adapter(type_hint)
    except TypeError:  # an unhashable hint cannot be cached
        return TypeAdapter(type_hint)


def invalid_payload_message(type_hint: Any, err: ValidationError) -> str:
    """One line per field: `confirm: Input should be a valid boolean (got 'yes')`."""
    name = getattr(type_hint, "__name__", None) or str(type_hint)
    problems = []
    for error in err.errors(include_url=False):
        where = ".".join(str(part) for part in error["loc"]) or "input"
        got = f" (got {error['input']!r})" if error["type"] != "missing" else ""
        problems.append(f"{where}: {error['msg']}{got}")
    return f"invalid {name}: " + "; ".join(problems)


class StrictJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    def from_payload(self, payload: temporalio.api.common.v1.Payload, type_hint: type | None = None) -> Any:
        hint = type_hint if type_hint is not None else Any
        try:
            return _adapter(hint).validate_json(payload.data, strict=True)
        except ValidationError as err:
            raise ApplicationError(
                invalid_payload_message(hint, err), type=ErrorType.INVALID_INPUT, non_retryable=True
            ) from None


class StrictPydanticPayloadConverter(CompositePayloadConverter):
    """temporalio's default encodings, with JSON read strictly (as PydanticPayloadConverter, not lax)."""

    def __init__(self) -> None:
        defaults = DefaultPayloadConverter.default_encoding_payload_converters
        super().__init__(
            *(
                StrictJSONPayloadConverter() if isinstance(encoding, JSONPlainPayloadConverter) else encoding
                for encoding in defaults
            )
        )


DATA_CONVERTER = DataConverter(payload_converter_class=StrictPydanticPayloadConverter)
