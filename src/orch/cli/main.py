"""`orch`: start, watch, signal and query the system's workflows.

This module only assembles the app from the command modules. Heavy imports (temporalio, the worker)
happen inside commands so `orch --no-wait` stays quick.
"""

from __future__ import annotations

import sys

import typer

from orch.cli.agents import agents_app
from orch.cli.cycle import cycle_app
from orch.cli.data import integrate_real_data
from orch.cli.discovery import discovery_app, restart_discovery
from orch.cli.emergency import emergency_stop, health_check, resume
from orch.cli.hft import hft_app
from orch.cli.observe import list_command, state, status, watch
from orch.cli.processes import up, worker
from orch.cli.validate import validate_algorithms

app = typer.Typer(help="Durable orchestration for the trading system, on Temporal.", no_args_is_help=True)

app.command("up")(up)
app.command("worker")(worker)
app.command("restart-discovery")(restart_discovery)
app.command("status")(status)
app.command("watch")(watch)
app.command("list")(list_command)
app.command("state")(state)
app.add_typer(discovery_app, name="discovery")
app.add_typer(hft_app, name="hft")
app.add_typer(cycle_app, name="cycle")
app.add_typer(agents_app, name="agents")
app.command("emergency-stop")(emergency_stop)
app.command("resume")(resume)
app.command("health-check")(health_check)
app.command("validate-algorithms")(validate_algorithms)
app.command("integrate-real-data")(integrate_real_data)

if __name__ == "__main__":
    sys.exit(app())
