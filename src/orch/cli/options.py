"""The options several `orch` commands share, each spelled once: the same flag, the same check, the
same help everywhere (they had drifted: `validate-algorithms --timeout inf` still overflowed after the
other commands refused it)."""

from __future__ import annotations

from typing import Annotated

import typer

from orch.cli.values import RETRIES, seconds

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Print the workflow id and return.")]
MaxRetries = Annotated[int | None, typer.Option(parser=RETRIES, help="Retries per step (default 3).")]
WorkflowTimeout = Annotated[
    float | None, typer.Option(parser=seconds(), help="Workflow timeout in seconds (default 900).")
]
