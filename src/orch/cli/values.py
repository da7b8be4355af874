"""The values `orch` options accept: every number, port, account and folder a user types is checked
here, before anything connects or starts.

Each is a typer parser that raises `typer.BadParameter`, so a bad value is a usage error: exit code 2
and a message that names the option, says what it must be and repeats what was given, e.g.

    Invalid value for '--timeout': inf is not a finite number of seconds (it must be more than 0
    and at most 604800)

Use them as the option's parser:

    timeout: Annotated[float | None, typer.Option(parser=seconds(), help=...)] = None
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, NoReturn

import typer

from orch.contracts.engine import ACCOUNT_PATTERN

# Longer than any command should run, and far inside what Temporal's timeouts (timedelta) can hold.
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600.0
# The most rows a listing fetches: the server pages them, but a table of more helps nobody.
MAX_LISTED = 10_000
# The contracts' ceiling on retries per step (CommandOptions.max_retries).
MAX_RETRIES = 20


class ValueParser:
    """One kind of value: `parse` returns it, or raises `typer.BadParameter` saying why not."""

    name = "value"

    def parse(self, value: Any) -> Any:
        raise NotImplementedError

    def __call__(self, value: Any) -> Any:
        return self.parse(value)

    def __repr__(self) -> str:
        return self.name

    @staticmethod
    def fail(message: str) -> NoReturn:
        raise typer.BadParameter(message)


def _format(number: float) -> str:
    return f"{int(number):,}" if float(number).is_integer() else f"{number:g}"


class FiniteNumber(ValueParser):
    """A finite float between `minimum` (excluded unless `minimum_allowed`) and `maximum` (included).

    click's FloatRange lets `nan` through (every comparison with it is false) and `inf` then overflows
    wherever the value becomes a timedelta; this refuses both by name."""

    name = "number"

    def __init__(
        self, *, minimum: float, maximum: float, minimum_allowed: bool = False, unit: str = ""
    ) -> None:
        self.minimum, self.maximum, self.minimum_allowed = minimum, maximum, minimum_allowed
        self.unit = unit
        self.name = unit or "number"

    def _range(self) -> str:
        low = "at least" if self.minimum_allowed else "more than"
        return f"{low} {_format(self.minimum)} and at most {_format(self.maximum)}"

    def parse(self, value: Any) -> float:
        noun = f"number of {self.unit}" if self.unit else "number"
        if isinstance(value, bool):
            self.fail(f"{value!r} is not a {noun}")
        try:
            number = float(value)
        except (TypeError, ValueError, OverflowError):
            self.fail(f"{value!r} is not a {noun} (it must be {self._range()})")
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite {noun} (it must be {self._range()})")
        too_low = number < self.minimum or (number == self.minimum and not self.minimum_allowed)
        if too_low or number > self.maximum:
            self.fail(f"{value} is out of range: it must be {self._range()}")
        return number


class WholeNumber(ValueParser):
    """An int between `minimum` and `maximum`, both included."""

    name = "integer"

    def __init__(self, *, minimum: int, maximum: int, noun: str = "whole number") -> None:
        self.minimum, self.maximum, self.noun = minimum, maximum, noun

    def parse(self, value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            try:
                number = int(str(value).strip())
            except ValueError:
                self.fail(
                    f"{value!r} is not a {self.noun} (it must be from {self.minimum} to {self.maximum})"
                )
        if not self.minimum <= number <= self.maximum:
            self.fail(f"{value} is out of range: it must be from {self.minimum} to {self.maximum}")
        return number


class AccountName(ValueParser):
    """An account name as `orch hft` and the trading engine accept it; it names files and workflow ids,
    so a name of dots only (a parent folder) is refused too."""

    name = "account"

    def parse(self, value: Any) -> str:
        text = str(value)
        if not re.fullmatch(ACCOUNT_PATTERN, text) or set(text) == {"."}:
            self.fail(
                f"{text!r} is not an account name: 1 to 20 letters, digits, '_', '-' or '.', not only dots"
            )
        return text


class Folder(ValueParser):
    """A folder path. `must_exist`: it must be an existing folder; otherwise it may be created, so it
    must not be an existing file."""

    name = "folder"

    def __init__(self, *, must_exist: bool) -> None:
        self.must_exist = must_exist

    def parse(self, value: Any) -> Path:
        path = Path(value)
        try:
            exists, is_dir = path.exists(), path.is_dir()
        except (OSError, ValueError) as err:
            self.fail(f"{str(value)!r} is not a usable path: {err}")
        if exists and not is_dir:
            self.fail(f"{str(value)!r} is a file, not a folder")
        if self.must_exist and not exists:
            self.fail(f"{str(value)!r}: no such folder")
        return path


def seconds(*, maximum: float = MAX_TIMEOUT_SECONDS, zero_allowed: bool = False) -> FiniteNumber:
    """A duration: finite, more than 0 (or at least 0), at most `maximum`."""
    return FiniteNumber(minimum=0.0, maximum=maximum, minimum_allowed=zero_allowed, unit="seconds")


def count(*, minimum: int = 0, maximum: int) -> WholeNumber:
    return WholeNumber(minimum=minimum, maximum=maximum)


PORT = WholeNumber(minimum=1, maximum=65535, noun="port number")
RETRIES = WholeNumber(minimum=0, maximum=MAX_RETRIES, noun="number of retries")
LISTED = WholeNumber(minimum=1, maximum=MAX_LISTED)
ACCOUNT = AccountName()
