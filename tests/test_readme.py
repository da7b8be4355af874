"""The README stays true: every command the CLI has and every setting the code reads is documented."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
import typer

from orch.cli.main import app
from orch.config import Settings
from orch.contracts import names
from orch.hft.config import HftSettings
from orch.workers.worker import ALL_QUEUES, ALL_WORKFLOWS

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands(group: click.Group, prefix: str) -> list[str]:
    found = []
    for name, command in group.commands.items():
        path = f"{prefix} {name}"
        found.append(path)
        if isinstance(command, click.Group):
            found += _commands(command, path)
    return found


@pytest.mark.parametrize("command", _commands(typer.main.get_command(app), "orch"))
def test_every_command_is_documented(command):
    assert f"`{command}" in README


@pytest.mark.parametrize(
    "variable",
    [f"ORCH_{name.upper()}" for name in Settings.model_fields]
    + [f"ORCH_HFT_{name.upper()}" for name in HftSettings.model_fields],
)
def test_every_setting_is_documented(variable):
    assert f"`{variable}`" in README


def _served_names() -> list[str]:
    """Task queues a worker polls, workflow types it runs, and the fixed ids."""
    types = [workflow.__temporal_workflow_definition.name for workflow in ALL_WORKFLOWS]
    return [*ALL_QUEUES, *types, names.SYSTEM_STATE_WORKFLOW_ID, names.DISCOVERY_SCHEDULE_ID]


@pytest.mark.parametrize("name", _served_names())
def test_every_public_name_is_documented(name):
    assert f"`{name}`" in README


def test_every_link_points_at_a_file_in_the_repository():
    """A clone has only what is in the repository: a link outside it (../shared/DESIGN.md) is broken."""
    root = Path(__file__).parent.parent.resolve()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README)
    local = [target for target in targets if not re.match(r"[a-z]+:", target)]
    assert local, "the README links to no file at all, not even docs/DESIGN.md"
    for target in local:
        path = (root / target).resolve()
        assert path.is_relative_to(root) and path.exists(), (
            f"README links to {target}, not a file of the repository"
        )
