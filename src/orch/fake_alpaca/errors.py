"""Errors answered as Alpaca answers them: an HTTP status and a body {"code": ..., "message": ...}."""

from __future__ import annotations

from typing import Any

# Alpaca's error codes: the first three digits are the HTTP status.
CODE_INVALID = 40010001
CODE_UNAUTHORIZED = 40110000
CODE_FORBIDDEN = 40310000
CODE_NOT_FOUND = 40410000
CODE_UNPROCESSABLE = 42210000
CODE_RATE_LIMITED = 42910000
CODE_INTERNAL = 50010000
CODE_UNAVAILABLE = 50310000


class AlpacaError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message}


def invalid(message: str) -> AlpacaError:
    return AlpacaError(422, CODE_INVALID, message)
