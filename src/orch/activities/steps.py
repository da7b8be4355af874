"""What every command-step activity shares: attempt numbers and typed failures.

A step activity returns a `StepOutcome`; this wrapper stamps the attempt that succeeded, and on
failure raises an `ApplicationError` typed after the exception with the attempt in its details,
so the workflow can report "failed after 4 attempts: <why>" without guessing.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orch.contracts.commands import StepOutcome

P = ParamSpec("P")
OutcomeT = TypeVar("OutcomeT", bound=StepOutcome)
T = TypeVar("T")


class InvalidInput(ValueError):
    """Input no retry can fix. Its class name is in every command's non-retryable list."""


def step_activity(fn: Callable[P, Awaitable[OutcomeT]]) -> Callable[P, Awaitable[OutcomeT]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> OutcomeT:
        attempt = activity.info().attempt
        try:
            outcome = await fn(*args, **kwargs)
        except ApplicationError as err:
            raise ApplicationError(
                err.message,
                *err.details,
                {"attempt": attempt},
                type=err.type,
                non_retryable=err.non_retryable,
            ) from err
        except Exception as err:
            raise ApplicationError(str(err), {"attempt": attempt}, type=type(err).__name__) from err
        outcome.attempt = attempt
        return outcome

    return wrapper


async def heartbeat_until_done(awaitable: Awaitable[T], every_seconds: float = 1.0, detail: str = "") -> T:
    """Await `awaitable` while heartbeating, so a long wait still tells the server the worker lives
    (and a cancel from the workflow reaches us)."""
    task = asyncio.ensure_future(awaitable)
    activity.heartbeat(detail)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_seconds)
            if done:
                return task.result()
            activity.heartbeat(detail)
    finally:
        task.cancel()
