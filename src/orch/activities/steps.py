"""What every command-step activity shares: heartbeats, attempt numbers and typed failures.

A step activity returns a `StepOutcome`; this wrapper stamps the attempt that succeeded, and on
failure raises an `ApplicationError` typed after the exception with the attempt in its details,
so the workflow can report "failed after 4 attempts: <why>" without guessing.

While it runs, a step heartbeats from a background loop whenever it was started with a heartbeat
timeout: a worker killed mid-step is then noticed after that timeout (seconds) and the step retried
on another worker, instead of after the step's whole start-to-close timeout (120 s by default; the
issue measured 121 s recoveries with the discovery-scan schedule paused all along).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from orch.contracts.commands import StepOutcome
from orch.contracts.errors import ErrorType

P = ParamSpec("P")
OutcomeT = TypeVar("OutcomeT", bound=StepOutcome)
T = TypeVar("T")


class InvalidInput(ValueError):
    """Input no retry can fix: the step fails with the non-retryable `ErrorType.INVALID_INPUT`."""


def step_activity(fn: Callable[P, Awaitable[OutcomeT]]) -> Callable[P, Awaitable[OutcomeT]]:
    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> OutcomeT:
        attempt = activity.info().attempt
        try:
            outcome = await heartbeating(fn)(*args, **kwargs)
        except InvalidInput as err:
            raise ApplicationError(
                str(err), {"attempt": attempt}, type=ErrorType.INVALID_INPUT, non_retryable=True
            ) from err
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


def heartbeating(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run the activity under a background heartbeat loop whenever it was given a heartbeat timeout
    (a local activity has none, and runs as it is)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        info = activity.info()
        if not info.heartbeat_timeout:
            return await fn(*args, **kwargs)
        return await heartbeat_until_done(fn(*args, **kwargs), detail=f"{info.activity_type} running")

    return wrapper


def heartbeat_interval(default_seconds: float = 1.0) -> float:
    """A third of the activity's heartbeat timeout: one late beat (a busy loop) never costs the attempt."""
    timeout = activity.info().heartbeat_timeout
    return timeout.total_seconds() / 3 if timeout else default_seconds


async def heartbeat_until_done(awaitable: Awaitable[T], detail: str = "") -> T:
    """Await `awaitable` while heartbeating, so a long wait still tells the server the worker lives
    (and a cancel from the workflow reaches us)."""
    task = asyncio.ensure_future(awaitable)
    every_seconds = heartbeat_interval()
    activity.heartbeat(detail)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=every_seconds)
            if done:
                return task.result()
            activity.heartbeat(detail)
    finally:
        task.cancel()
