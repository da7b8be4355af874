"""`orch hft`: run the low-latency execution process for one account (outside Temporal).

`python -m orch.workers.hft` runs it from ORCH_HFT_* settings alone (the tests start it this way).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from orch.hft.config import HftSettings


def run(settings: HftSettings) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    import asyncio

    from orch.hft.process import ConfigurationError, HftProcess

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvloop does not exist on Windows
        runner = asyncio.run

    async def main() -> None:
        await HftProcess(settings).run()

    try:
        runner(main())
    except ConfigurationError as error:
        logging.getLogger("orch.hft").error("%s", error)
        return 2
    return 0


def main(**overrides: Any) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = HftSettings(**{k: v for k, v in overrides.items() if v is not None})
    return run(settings)


if __name__ == "__main__":
    sys.exit(main())
