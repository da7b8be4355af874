"""Every number, port, account and folder an `orch` option takes is refused up front when it is bad:
exit code 2, a message naming the option and the value, no traceback, nothing started."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from orch.cli.main import app
from orch.contracts.names import RESTART_DISCOVERY
from tests.helpers import workflow_ids

WIDE = {"COLUMNS": "400"}  # the error box wraps long messages; a wide one keeps each on one line


def invoke(argv: list[str], **env: str):
    return CliRunner().invoke(app, argv, env=WIDE | env)


BAD_VALUES = [
    (["restart-discovery", "--strategy", "hybrid_v1", "--timeout", "inf"], "--timeout", "inf"),
    (["restart-discovery", "--strategy", "hybrid_v1", "--timeout", "1e308"], "--timeout", "1e308"),
    (["restart-discovery", "--strategy", "hybrid_v1", "--timeout", "nan"], "--timeout", "nan"),
    (["restart-discovery", "--strategy", "hybrid_v1", "--timeout", "0"], "--timeout", "0"),
    (["restart-discovery", "--strategy", "hybrid_v1", "--timeout", "-5"], "--timeout", "-5"),
    (["restart-discovery", "--strategy", "hybrid_v1", "--max-retries", "-1"], "--max-retries", "-1"),
    (["restart-discovery", "--strategy", "hybrid_v1", "--max-retries", "1e3"], "--max-retries", "1e3"),
    (["list", "--limit", "-1"], "--limit", "-1"),
    (["list", "--limit", "0"], "--limit", "0"),
    (["list", "--limit", "99999999999"], "--limit", "99999999999"),
    (["integrate-real-data", "--max-data-age", "inf"], "--max-data-age", "inf"),
    (["integrate-real-data", "--timeout", "-inf"], "--timeout", "-inf"),
    (["integrate-real-data", "--max-retries", "21"], "--max-retries", "21"),
    (["hft", "--port", "0"], "--port", "0"),
    (["hft", "run", "--port", "70000"], "--port", "70000"),
    (["hft", "run", "--tick-rate", "inf"], "--tick-rate", "inf"),
    (["hft", "run", "--tick-rate", "0"], "--tick-rate", "0"),
    (["hft", "run", "--account", ".."], "--account", ".."),
    (["hft", "run", "--account", "a/b"], "--account", "a/b"),
    (["hft", "status", "--port", "-1"], "--port", "-1"),
    (["hft", "kill", "--reason", "x", "--port", "abc"], "--port", "abc"),
    (["agents", "list", "--account", "../etc"], "--account", "../etc"),
    (["validate-algorithms", "--strategies", "hybrid_v1", "--timeout", "inf"], "--timeout", "inf"),
    (["validate-algorithms", "--strategies", "hybrid_v1", "--max-retries", "-1"], "--max-retries", "-1"),
    (["validate-algorithms", "--strategies", "hybrid_v1", "--splits", "0"], "--splits", "0"),
    (["validate-algorithms", "--strategies", "hybrid_v1", "--top-n", "-3"], "--top-n", "-3"),
    (
        ["validate-algorithms", "--strategies", "hybrid_v1", "--rebalance-every", "1e9"],
        "--rebalance-every",
        "1e9",
    ),
    (
        ["validate-algorithms", "--strategies", "hybrid_v1", "--max-combinations", "0"],
        "--max-combinations",
        "0",
    ),
    (["cycle", "start", "--interval", "inf"], "--interval", "inf"),
    (["cycle", "start", "--interval", "0"], "--interval", "0"),
    (["cycle", "status", "--account", "../etc"], "--account", "../etc"),
    (["cycle", "report", "0"], "number", "0"),
]


@pytest.mark.parametrize(("argv", "option", "value"), BAD_VALUES, ids=[" ".join(a) for a, _, _ in BAD_VALUES])
def test_a_bad_value_is_refused_with_exit_2_naming_the_option(argv, option, value):
    result = invoke(argv)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.output
    assert value in result.output
    assert "Traceback" not in result.output


def test_a_file_is_not_a_data_folder(tmp_path):
    a_file = tmp_path / "journal"
    a_file.write_text("not a folder")
    result = invoke(["hft", "run", "--data-dir", str(a_file)])
    assert result.exit_code == 2, result.output
    assert "is a file, not a folder" in result.output


@pytest.mark.parametrize(
    ("variable", "value"), [("ORCH_HFT_TICK_RATE", "inf"), ("ORCH_HFT_RISK__MAX_DAILY_LOSS", "-1")]
)
def test_a_bad_hft_setting_is_refused_with_exit_2_naming_the_variable(variable, value, tmp_path):
    result = invoke(["hft", "run"], **{variable: value, "ORCH_HFT_DATA_DIR": str(tmp_path / "hft")})
    assert result.exit_code == 2, result.output
    assert variable in result.output
    assert not (tmp_path / "hft").exists(), "nothing may start (or write its journal) on a bad setting"


async def test_a_refused_timeout_starts_no_workflow(stack, orch, client):
    """Against a running system: `--timeout inf` is refused and no RestartDiscoverySystem exists after."""
    result = await orch("restart-discovery", "--strategy", "legacy_v0", "--timeout", "inf")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--timeout" in result.stderr and "Traceback" not in result.stderr
    assert await workflow_ids(client, f"WorkflowType = '{RESTART_DISCOVERY}'") == []
