"""docker-compose.yml is for users' machines (no Docker engine runs here), so it is checked
statically: the services DESIGN.md promises, commands the CLI really has, settings the code reads,
and files that exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from orch.cli.main import app
from orch.config import Settings
from orch.hft.config import HftSettings

ROOT = Path(__file__).parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
ORCH_SERVICES = [name for name, service in SERVICES.items() if "build" in service]


def test_the_cluster_has_every_part_design_md_names():
    assert {
        "postgresql",
        "temporal",
        "temporal-ui",
        "orch-worker",
        "orch-hft",
        "otel-collector",
        "jaeger",
    } <= set(SERVICES)
    assert SERVICES["temporal"]["environment"]["DB"].startswith("postgres")
    assert SERVICES["orch-worker"]["deploy"]["replicas"] >= 2


@pytest.mark.parametrize("service", ORCH_SERVICES)
def test_orch_services_run_commands_the_cli_has(service):
    command = SERVICES[service]["command"]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("service", ORCH_SERVICES)
def test_orch_services_set_only_settings_the_code_reads(service):
    known = {f"ORCH_{name.upper()}" for name in Settings.model_fields}
    known |= {f"ORCH_HFT_{name.upper()}" for name in HftSettings.model_fields}
    environment = SERVICES[service]["environment"]
    unknown = {key for key in environment if key.startswith("ORCH_")} - known
    assert not unknown, f"{service} sets variables nothing reads: {unknown}"
    assert environment["ORCH_TEMPORAL_ADDRESS"] == "temporal:7233"


def test_the_control_api_beyond_loopback_has_a_token():
    hft = SERVICES["orch-hft"]
    assert "0.0.0.0" in hft["command"]
    assert re.fullmatch(r"\$\{ORCH_HFT_TOKEN:\?.+\}", hft["environment"]["ORCH_HFT_TOKEN"])


def test_mounted_files_exist():
    for service in SERVICES.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).is_file(), source
    assert (ROOT / "Dockerfile").is_file()
    for name in ("otel-collector.yaml", "temporal-dynamicconfig.yaml"):
        yaml.safe_load((ROOT / "deploy" / name).read_text())


def test_make_shell_puts_orch_and_temporal_on_path():
    """The README's way from a fresh clone to typing `orch` and `temporal`: `make shell`."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    bin_dir = ROOT / ".venv" / "bin"
    env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": os.environ.get("HOME", "/tmp")}
    result = subprocess.run(
        # -o: treat the install stamp as up to date; this test checks the shell, not the install.
        ["make", "-s", "-o", ".venv/.installed", "shell"],
        cwd=ROOT,
        env=env,
        input="command -v orch\ncommand -v temporal\norch --help >/dev/null && echo orch-runs\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert str(bin_dir / "orch") in lines and str(bin_dir / "temporal") in lines, result.stdout
    assert "orch-runs" in lines, result.stdout + result.stderr
