"""The error registry (contracts/errors.py) is the only place an `ApplicationError` type is spelled.

A type written as a string elsewhere can drift from the retry policies' non-retryable lists, or from a
comparison that tells failures apart, without any test noticing; so the source itself is checked.
"""

from __future__ import annotations

import re
from pathlib import Path

from orch.contracts.errors import NON_RETRYABLE_ERROR_TYPES, ErrorType

SOURCE = Path(__file__).resolve().parent.parent / "src" / "orch"
REGISTRY = SOURCE / "contracts" / "errors.py"
# `type="…"` in a raise, or a quoted name of a registered type anywhere (a comparison, a list, a return).
TYPE_LITERAL = re.compile(r"""\btype=["']""")
REGISTERED_NAME = re.compile("[\"'](" + "|".join(t.value for t in ErrorType) + ")[\"']")
LITERAL_LIST = re.compile(r"non_retryable_error_types=\[")


def _offending_lines() -> list[str]:
    found = []
    for path in sorted(SOURCE.rglob("*.py")):
        if path == REGISTRY:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if TYPE_LITERAL.search(line) or REGISTERED_NAME.search(line) or LITERAL_LIST.search(line):
                found.append(f"{path.relative_to(SOURCE)}:{number}: {line.strip()}")
    return found


def test_no_error_type_is_spelled_outside_the_registry():
    assert _offending_lines() == []


def test_the_non_retryable_list_is_every_type_a_retry_cannot_fix():
    assert [t.value for t in ErrorType if not t.retryable] == NON_RETRYABLE_ERROR_TYPES
    assert {"InvalidInput", "UnknownStrategy", "CommandRejected", "HftRequestRejected", "AgentError"} <= set(
        NON_RETRYABLE_ERROR_TYPES
    )
    assert "HftUnavailable" not in NON_RETRYABLE_ERROR_TYPES
