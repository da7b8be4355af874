"""How a worker's activities reach `orch hft`: one `HftClient` per worker process, made on first use.

The address and token come from the worker's settings: ORCH_HFT_URL (default: the process's own
ORCH_HFT_HOST/PORT) and ORCH_HFT_TOKEN, else the token file `orch hft` writes beside its journal
(ORCH_HFT_DATA_DIR, or <ORCH_HOME>/hft where `orch up` puts it). The client is kept because an
emergency stop should not pay for a new connection pool; it is dropped when the process rejects the
token, since a restarted process without ORCH_HFT_TOKEN writes a new one.
"""

from __future__ import annotations

import os
from pathlib import Path

from orch.config import Settings
from orch.hft.client import HftApiError, HftClient
from orch.hft.config import HftSettings


def hft_address(settings: Settings) -> tuple[str, str | None]:
    """(base URL, token) of the `orch hft` process these settings point at."""
    process = HftSettings()
    url = settings.hft_url or process.base_url
    if settings.hft_token is not None:
        return url, settings.hft_token.get_secret_value()
    if process.token is not None:
        return url, process.token.get_secret_value()
    data_dir = process.data_dir if "ORCH_HFT_DATA_DIR" in os.environ else Path(settings.home) / "hft"
    token_file = data_dir / f"{process.account}.token"
    return url, token_file.read_text().strip() if token_file.exists() else None


class HftLink:
    """The worker's connection to `orch hft`, shared by the emergency, health and review activities."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: HftClient | None = None
        self.url, _ = hft_address(settings)

    def client(self) -> HftClient:
        if self._client is None:
            self.url, token = hft_address(self._settings)
            self._client = HftClient(
                self.url, token=token, timeout_seconds=self._settings.hft_timeout_seconds
            )
        return self._client

    def forget(self, error: Exception) -> None:
        """Drop the client after a rejected token, so the next call reads the token again."""
        if isinstance(error, HftApiError) and error.status == 401:
            self._client = None  # its few pooled connections close when it is collected

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
